//! Layered settings (defaults → `tidig.toml` → `TIDIG__…` environment → flags) and the
//! secret keys, which never live in the store or the settings file.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use tidig_connectors::edge::{EdgeConfig, PersonSystem};
use tidig_connectors::national_id::{Country, IdRules};
use tidig_connectors::pseudonym::{Pseudonymizer, SecretKey, Vault};
use tidig_connectors::social::CodeTable;
use tidig_governance::audit::NoteSigner;
use tidig_governance::eval::{Deployment, Intervention};
use tidig_models::gate::Gate;

use crate::error::EngineError;

type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Everything configurable, with defaults that run the demo.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Country whose national IDs population and social-services extracts carry.
    pub country: String,
    pub keys: KeySettings,
    pub health: HealthSettings,
    pub social: SocialSettings,
    pub ids: IdSettings,
    /// The deployment's legal footing and stop switch, as the rules see it.
    pub deployment: Deployment,
    pub rules: RuleSettings,
    pub scoring: ScoringSettings,
    pub gate: Gate,
    pub ingest: IngestSettings,
    pub audit: AuditSettings,
    pub service: ServiceSettings,
    pub statistics: StatisticsSettings,
}

/// The oversight statistics (`tidig stats`, `GetStatistics`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatisticsSettings {
    /// A count of persons below this (and above zero) is not shown, nor any rate or
    /// median computed from one (statistical disclosure control; default 5).
    pub min_cell: u64,
}

impl Default for StatisticsSettings {
    fn default() -> StatisticsSettings {
        StatisticsSettings { min_cell: 5 }
    }
}

/// The gRPC service (`tidig serve`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceSettings {
    /// Address to listen on.
    pub listen: String,
    /// Static demo tokens: for the quickstart on synthetic data only.
    pub demo: bool,
    /// Tokens from the municipality's identity provider, checked offline.
    pub jwt: Option<JwtSettings>,
    /// TLS for the service, and client certificates as a way to authenticate (mTLS).
    pub tls: Option<TlsSettings>,
    /// The reason codes a decision may give (`RecordDecision.reason_code`).
    pub reason_codes: Vec<String>,
    /// How often a watch looks for new suggestions, in milliseconds (a scoring run in
    /// another process reaches watchers within this).
    pub watch_poll_ms: u64,
}

impl Default for ServiceSettings {
    fn default() -> ServiceSettings {
        ServiceSettings {
            listen: "127.0.0.1:50051".into(),
            demo: false,
            jwt: None,
            tls: None,
            reason_codes: [
                "support-offered",
                "family-declined-contact",
                "already-supported",
                "facts-outdated",
                "not-in-scope",
                "other",
            ]
            .map(String::from)
            .to_vec(),
            watch_poll_ms: 1000,
        }
    }
}

/// TLS for the service (`[service.tls]`). With `client_ca`, clients may authenticate
/// with a certificate that CA signed, and the certificate's subject is looked up in
/// `clients`; a bearer token, when a request carries one, still decides who calls.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// The server certificate's private key (PEM).
    pub key: PathBuf,
    /// The CA whose client certificates are accepted (PEM). Without it no client
    /// certificate is asked for.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Certificate subjects → principals.
    #[serde(default)]
    pub clients: Vec<ClientCertSettings>,
}

/// One client certificate subject and the principal it is (`[[service.tls.clients]]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertSettings {
    /// The certificate's subject as `ATTR=value` parts in the certificate's order,
    /// separated by commas, e.g. `CN=case-system-north, O=Example Municipality` (spaces
    /// around the commas do not matter). `tidig serve` names the subject of a
    /// certificate it cannot map, ready to copy here.
    pub subject: String,
    /// The principal's id in the audit trail (default: the subject).
    #[serde(default)]
    pub id: Option<String>,
    /// `caseworker`, `dpo`, `auditor` or `researcher`.
    pub role: String,
    /// A `[[scoring.units]]` id.
    #[serde(default)]
    pub unit: Option<String>,
    /// The purpose the certificate's holder acts for (e.g. `case-handling`).
    pub purpose: String,
    /// Whether the holder may see health data.
    #[serde(default)]
    pub health_authority: bool,
}

/// A certificate subject in one spelling: its `ATTR=value` parts trimmed and joined
/// with `", "`, as the certificate parser prints them.
pub fn normalize_subject(subject: &str) -> String {
    subject
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// How JWTs are checked: against the identity provider's key set, read offline.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// The identity provider's JSON Web Key Set (a file).
    pub jwks: std::path::PathBuf,
    /// The one accepted `iss`.
    pub issuer: String,
    /// The `aud` a token must name.
    pub audience: String,
    /// The claim holding the role (`caseworker`, `dpo`, `auditor`, `researcher`).
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// The claim holding the unit (a `[[scoring.units]]` id).
    #[serde(default = "default_unit_claim")]
    pub unit_claim: String,
    /// The claim holding the purpose (`case-handling`, `oversight`, `research`).
    #[serde(default = "default_purpose_claim")]
    pub purpose_claim: String,
    /// The boolean claim saying the caller may see health data (absent: may not).
    #[serde(default = "default_health_authority_claim")]
    pub health_authority_claim: String,
}

fn default_role_claim() -> String {
    "role".into()
}
fn default_unit_claim() -> String {
    "unit".into()
}
fn default_purpose_claim() -> String {
    "purpose".into()
}
fn default_health_authority_claim() -> String {
    "health_authority".into()
}

/// The audit trail.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// The log's origin: the first line of every checkpoint and the name of the signing
    /// key `tidig keys generate` creates (no spaces, no `+`).
    pub origin: String,
    /// While entries arrive, a checkpoint is signed at most this often (and at the end of
    /// every command).
    pub checkpoint_seconds: u64,
    /// How long entries must be kept (days; at least 183, six months, EU AI Act
    /// Art 26(6)). tidig never deletes an entry; this is what is reported.
    pub retention_days: u32,
}

impl Default for AuditSettings {
    fn default() -> AuditSettings {
        AuditSettings {
            origin: "tidig.example/audit".into(),
            checkpoint_seconds: 5,
            retention_days: 365 * 2,
        }
    }
}

/// Bounds on what one input may make the ingest hold.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// The longest line read; a longer one is quarantined without being held.
    pub max_line_bytes: usize,
    /// The largest FHIR Bundle read (Bundles are parsed whole).
    pub max_bundle_bytes: u64,
}

impl Default for IngestSettings {
    fn default() -> IngestSettings {
        let l = tidig_connectors::edge::Limits::default();
        IngestSettings {
            max_line_bytes: l.max_line_bytes,
            max_bundle_bytes: l.max_bundle_bytes,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleSettings {
    /// A rule-pack directory (`*.cedarschema`, `*.cedar`); the built-in pack when absent.
    pub pack: Option<PathBuf>,
}

/// How scores become suggestions.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringSettings {
    /// The intervention models score for, with its age scope.
    pub intervention: Intervention,
    /// Probability from which a score is `high`.
    pub high: f64,
    /// Probability from which a score is `elevated` and may become a suggestion.
    pub elevated: f64,
    /// Factors shown per suggestion.
    pub top_factors: usize,
    /// A factor counts as evidence (for minimum evidence) from this contribution (log-odds).
    pub evidence_min_contribution: f64,
    /// Days until an open suggestion expires.
    pub expiry_days: u32,
    /// Receiving units, matched in order; the first match routes.
    pub units: Vec<UnitSettings>,
    /// Suggested interventions, mapped from the dominant factors.
    pub catalogue: Vec<CatalogueEntry>,
}

/// A receiving unit and what routes to it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitSettings {
    pub id: String,
    pub name: String,
    /// Municipality codes served (empty: any).
    #[serde(default)]
    pub municipalities: Vec<String>,
    /// Postcode prefixes served (empty: any).
    #[serde(default)]
    pub postcode_prefixes: Vec<String>,
    /// At most this many new suggestions per ISO week, highest need first.
    pub weekly_capacity: usize,
    /// The role whose view of factors reports and the command line show (a caller of the
    /// service sees them as the rules decide for that caller).
    #[serde(default = "caseworker")]
    pub viewer_role: String,
    #[serde(default)]
    pub viewer_health_authority: bool,
}

fn caseworker() -> String {
    "caseworker".into()
}

impl ScoringSettings {
    /// The configured viewer of unit `unit` (a unit no longer configured: a caseworker
    /// without health authority).
    pub fn unit_viewer(&self, unit: &str) -> tidig_governance::eval::ViewerFacts {
        let configured = self.units.iter().find(|u| u.id == unit);
        tidig_governance::eval::ViewerFacts {
            unit: unit.to_string(),
            role: configured.map_or_else(caseworker, |u| u.viewer_role.clone()),
            health_authority: configured.is_some_and(|u| u.viewer_health_authority),
        }
    }
}

/// A suggested intervention and the factors that call for it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueEntry {
    pub id: String,
    pub title: String,
    /// Feature-id patterns (`*` matches any run of characters); empty: the fallback when
    /// no other entry matches.
    #[serde(default)]
    pub factors: Vec<String>,
}

impl Default for ScoringSettings {
    fn default() -> ScoringSettings {
        let entry = |id: &str, title: &str, factors: &[&str]| CatalogueEntry {
            id: id.into(),
            title: title.into(),
            factors: factors.iter().map(|f| f.to_string()).collect(),
        };
        ScoringSettings {
            intervention: Intervention {
                id: "family_support".into(),
                min_age: 0,
                max_age: 17,
            },
            high: 0.25,
            elevated: 0.10,
            top_factors: 5,
            evidence_min_contribution: 0.05,
            expiry_days: 28,
            units: vec![
                UnitSettings {
                    id: "family-services-central".into(),
                    name: "Family services, central districts".into(),
                    municipalities: vec!["091".into()],
                    postcode_prefixes: ["001", "002", "003", "004", "005"]
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                    weekly_capacity: 40,
                    viewer_role: caseworker(),
                    viewer_health_authority: false,
                },
                UnitSettings {
                    id: "family-services-outer".into(),
                    name: "Family services, outer districts".into(),
                    municipalities: vec!["091".into()],
                    postcode_prefixes: vec![],
                    weekly_capacity: 40,
                    viewer_role: caseworker(),
                    viewer_health_authority: false,
                },
            ],
            catalogue: vec![
                entry(
                    "substance-use-family-work",
                    "Family work with a substance-use service",
                    &["*substance*", "*alcohol*"],
                ),
                entry(
                    "parental-mental-health",
                    "Support for a parent's mental health (Let's Talk about Children)",
                    &["*mental_health*", "*antidepressant*", "*anxiolytic*"],
                ),
                entry(
                    "economic-counselling",
                    "Economic and debt counselling",
                    &["*income_support*", "*housing_support*"],
                ),
                entry(
                    "employment-services",
                    "Employment services for the parents",
                    &["*unemployment*"],
                ),
                entry(
                    "school-social-work",
                    "School social worker",
                    &["*school_absence*"],
                ),
                entry(
                    "child-health-follow-up",
                    "Child-health clinic follow-up",
                    &[
                        "*missed_child_health*",
                        "*er_visits*",
                        "*injury*",
                        "immunizations_not_done*",
                    ],
                ),
                entry(
                    "family-support-assessment",
                    "Assessment of the family's need for support",
                    &[],
                ),
            ],
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeySettings {
    /// Directory holding `pseudonym.key` and `vault.key` (hex, mode 0600).
    pub dir: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    /// FHIR identifier systems that name a person, in order of preference.
    pub person_systems: Vec<PersonSystemSetting>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonSystemSetting {
    pub system: String,
    /// `fi`, `se`, `dk` or `no` for a validated national ID; absent for an opaque one.
    pub country: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocialSettings {
    /// A TOML code table; the built-in default table when absent.
    pub code_table: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdSettings {
    /// Accept Finnish temporary identity numbers (individual number 900–999).
    pub allow_temporary: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            country: "fi".into(),
            keys: KeySettings::default(),
            health: HealthSettings::default(),
            social: SocialSettings::default(),
            ids: IdSettings::default(),
            deployment: Deployment::default(),
            rules: RuleSettings::default(),
            scoring: ScoringSettings::default(),
            gate: Gate::default(),
            ingest: IngestSettings::default(),
            service: ServiceSettings::default(),
            audit: AuditSettings::default(),
            statistics: StatisticsSettings::default(),
        }
    }
}

impl Default for KeySettings {
    fn default() -> KeySettings {
        KeySettings {
            dir: PathBuf::from("tidig-keys"),
        }
    }
}

impl Default for HealthSettings {
    fn default() -> HealthSettings {
        HealthSettings {
            person_systems: PersonSystem::nordic()
                .into_iter()
                .map(|p| PersonSystemSetting {
                    system: p.system,
                    country: p.country.map(|c| c.code().to_string()),
                })
                .collect(),
        }
    }
}

/// A settings error in one line: figment's parse errors quote the source with carets
/// over several lines; the message and the key are what a reader needs.
fn one_line(e: &figment::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for err in e.clone() {
        let text = err.to_string();
        let kept: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .filter(|l| {
                !l.trim_start_matches(|c: char| c.is_ascii_digit())
                    .trim_start()
                    .starts_with('|')
            })
            .collect();
        parts.push(kept.join(": "));
    }
    parts.join("; ")
}

impl Settings {
    /// Loads defaults, then `path` (or `./tidig.toml` if it exists), then `TIDIG__…`
    /// environment variables (`TIDIG__KEYS__DIR=/secrets`), and validates the result.
    ///
    /// Environment values are text: `TIDIG__DEPLOYMENT__DPIA_REF=2026` is the reference
    /// "2026", and a numeric setting takes a number written as text. Errors are one line
    /// naming the key.
    pub fn load(path: Option<&Path>) -> Result<Settings> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        match path {
            Some(p) => {
                if !p.exists() {
                    return Err(EngineError::file(p, "settings file not found"));
                }
                fig = fig.merge(Toml::file(p));
            }
            None if Path::new("tidig.toml").exists() => fig = fig.merge(Toml::file("tidig.toml")),
            None => {}
        }
        for (key, value) in Env::prefixed("TIDIG__").split("__").iter() {
            fig = fig.merge(Serialized::default(key.as_str(), value));
        }
        let settings: Settings = fig
            .extract_lossy()
            .map_err(|e| EngineError::invalid("settings", one_line(&e)))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Refuses values outside their meaningful range, naming the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: String| Err(EngineError::invalid(key, why));
        let unit = |key: &str, v: f64| -> Result<()> {
            if v.is_finite() && v > 0.0 && v <= 1.0 {
                Ok(())
            } else {
                bad(key, format!("{v} is not a probability in (0, 1]"))
            }
        };
        let s = &self.scoring;
        unit("scoring.high", s.high)?;
        unit("scoring.elevated", s.elevated)?;
        if s.elevated > s.high {
            return bad(
                "scoring.elevated",
                format!("{} is above scoring.high ({})", s.elevated, s.high),
            );
        }
        if s.top_factors == 0 {
            return bad("scoring.top_factors", "must be at least 1".into());
        }
        if s.expiry_days == 0 {
            return bad("scoring.expiry_days", "must be at least 1".into());
        }
        if !(s.evidence_min_contribution.is_finite() && s.evidence_min_contribution >= 0.0) {
            return bad(
                "scoring.evidence_min_contribution",
                format!(
                    "{} is not a log-odds contribution >= 0",
                    s.evidence_min_contribution
                ),
            );
        }
        if s.intervention.min_age > s.intervention.max_age {
            return bad(
                "scoring.intervention.min_age",
                format!(
                    "{} is above max_age {}",
                    s.intervention.min_age, s.intervention.max_age
                ),
            );
        }
        let mut ids = std::collections::HashSet::new();
        for u in &s.units {
            if u.id.trim().is_empty() || !ids.insert(u.id.as_str()) {
                return bad(
                    "scoring.units.id",
                    format!("`{}` is empty or named twice", u.id),
                );
            }
        }
        let g = &self.gate;
        let in01 = |key: &str, v: f64| -> Result<()> {
            if v.is_finite() && (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                bad(key, format!("{v} is not in [0, 1]"))
            }
        };
        if self.ingest.max_line_bytes < 1024 {
            return bad(
                "ingest.max_line_bytes",
                format!("{} is below 1024 bytes", self.ingest.max_line_bytes),
            );
        }
        if !(2..=1000).contains(&self.statistics.min_cell) {
            return bad(
                "statistics.min_cell",
                format!(
                    "{} is not a minimum cell size in 2..=1000",
                    self.statistics.min_cell
                ),
            );
        }
        if self.audit.retention_days < 183 {
            return bad(
                "audit.retention_days",
                format!(
                    "{} days is below six months (183 days, EU AI Act Art 26(6))",
                    self.audit.retention_days
                ),
            );
        }
        let sv = &self.service;
        if sv.reason_codes.is_empty()
            || sv.reason_codes.iter().any(|c| {
                c.is_empty()
                    || c.len() > 64
                    || !c.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    })
            })
        {
            return bad(
                "service.reason_codes",
                "needs at least one code, each 1..=64 of a-z, 0-9, `-` and `_`".into(),
            );
        }
        if let Some(tls) = &sv.tls {
            if !tls.clients.is_empty() && tls.client_ca.is_none() {
                return bad(
                    "service.tls.clients",
                    "client certificates are mapped but no client_ca says which CA \
                     signs them"
                        .into(),
                );
            }
            let mut seen = std::collections::HashSet::new();
            for (i, c) in tls.clients.iter().enumerate() {
                let field = |f: &str| format!("service.tls.clients[{i}].{f}");
                let subject = normalize_subject(&c.subject);
                if subject.is_empty() || !subject.contains('=') {
                    return bad(
                        &field("subject"),
                        format!("`{}` is not `ATTR=value, …`", c.subject),
                    );
                }
                if !seen.insert(subject.clone()) {
                    return bad(&field("subject"), format!("`{subject}` is mapped twice"));
                }
                if crate::principal::Role::parse(&c.role).is_none() {
                    return bad(
                        &field("role"),
                        format!("`{}` is not caseworker, dpo, auditor or researcher", c.role),
                    );
                }
                if let Some(u) = &c.unit {
                    if !self.scoring.units.iter().any(|x| &x.id == u) {
                        return bad(
                            &field("unit"),
                            format!("`{u}` is not a [[scoring.units]] id"),
                        );
                    }
                }
                if c.purpose.trim().is_empty() {
                    return bad(&field("purpose"), "is empty".into());
                }
            }
        }
        if !(50..=60_000).contains(&sv.watch_poll_ms) {
            return bad(
                "service.watch_poll_ms",
                format!("{} is not in 50..=60000", sv.watch_poll_ms),
            );
        }
        if self.audit.checkpoint_seconds == 0 || self.audit.checkpoint_seconds > 3600 {
            return bad(
                "audit.checkpoint_seconds",
                format!("{} is not in 1..=3600", self.audit.checkpoint_seconds),
            );
        }
        if tidig_governance::audit::NoteSigner::from_seed(&self.audit.origin, [0; 32]).is_err() {
            return bad(
                "audit.origin",
                format!("`{}` is empty or has spaces or `+`", self.audit.origin),
            );
        }
        in01("gate.min_auc", g.min_auc)?;
        in01(
            "gate.min_demographic_parity_ratio",
            g.min_demographic_parity_ratio,
        )?;
        in01(
            "gate.max_equalized_odds_difference",
            g.max_equalized_odds_difference,
        )?;
        if !(g.confidence >= 0.5 && g.confidence < 1.0) {
            return bad(
                "gate.confidence",
                format!("{} is not in [0.5, 1)", g.confidence),
            );
        }
        if g.groupings.is_empty() || g.groupings.iter().any(|x| x.trim().is_empty()) {
            return bad(
                "gate.groupings",
                "name at least one grouping (protected attributes, or two joined by ` x `)".into(),
            );
        }
        Ok(())
    }

    /// How often checkpoints are signed while entries arrive.
    pub fn audit_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.audit.checkpoint_seconds)
    }

    pub fn country(&self) -> Result<Country> {
        Country::from_code(&self.country).ok_or_else(|| {
            EngineError::invalid(
                "country",
                format!("`{}` is not one of fi, se, dk, no", self.country),
            )
        })
    }

    pub fn person_systems(&self) -> Result<Vec<PersonSystem>> {
        self.health
            .person_systems
            .iter()
            .map(|p| {
                let country = match &p.country {
                    None => None,
                    Some(c) => Some(Country::from_code(c).ok_or_else(|| {
                        EngineError::invalid(
                            "health.person_systems",
                            format!("country `{c}` is not one of fi, se, dk, no"),
                        )
                    })?),
                };
                Ok(PersonSystem {
                    system: p.system.clone(),
                    country,
                })
            })
            .collect()
    }

    pub fn code_table(&self) -> Result<CodeTable> {
        match &self.social.code_table {
            None => Ok(CodeTable::default_table()),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| EngineError::file(p, format!("cannot read code table: {e}")))?;
                CodeTable::from_toml(&text)
                    .map_err(|e| EngineError::file(p, format!("invalid code table: {e}")))
            }
        }
    }

    /// The edge configuration with keys loaded.
    pub fn edge(&self, today: NaiveDate) -> Result<EdgeConfig> {
        let keys = Keys::load(&self.keys.dir)?;
        let mut id_rules = IdRules::new(today);
        id_rules.allow_temporary = self.ids.allow_temporary;
        Ok(EdgeConfig {
            pseudonymizer: Pseudonymizer::new(&keys.pseudonym),
            vault: Vault::new(&keys.vault),
            id_rules,
            country: self.country()?,
            person_systems: self.person_systems()?,
            limits: tidig_connectors::edge::Limits {
                max_line_bytes: self.ingest.max_line_bytes,
                max_bundle_bytes: self.ingest.max_bundle_bytes,
            },
        })
    }
}

/// The two secrets: one keys pseudonyms, the other seals raw IDs in the vault.
#[derive(Debug)]
pub struct Keys {
    pub pseudonym: SecretKey,
    pub vault: SecretKey,
}

const PSEUDONYM_FILE: &str = "pseudonym.key";
const VAULT_FILE: &str = "vault.key";
/// The audit log's signed-note signer key (`PRIVATE+KEY+origin+hash+base64`).
const AUDIT_FILE: &str = "audit-signer.key";
const AUDIT_ENV: &str = "TIDIG_AUDIT_KEY";

/// The audit log's checkpoint signer: `TIDIG_AUDIT_KEY` or `audit-signer.key` in the key
/// directory; `None` when neither exists (entries are still hash-linked, but no
/// checkpoint can be signed).
pub fn audit_signer(dir: &Path) -> Result<Option<NoteSigner>> {
    let parse = |text: &str, what: &str| {
        NoteSigner::parse(text).map_err(|e| EngineError::invalid(what, e.to_string()))
    };
    if let Ok(v) = std::env::var(AUDIT_ENV) {
        return parse(&v, AUDIT_ENV).map(Some);
    }
    let path = dir.join(AUDIT_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = read_secret(&path)?;
    parse(&text, &path.display().to_string()).map(Some)
}

/// Creates the audit signer key (0600) named `origin` unless one exists.
pub fn ensure_audit_signer(dir: &Path, origin: &str) -> Result<Option<PathBuf>> {
    let path = dir.join(AUDIT_FILE);
    if path.exists() {
        return Ok(None);
    }
    let signer = NoteSigner::from_seed(origin, random_32()?)
        .map_err(|e| EngineError::invalid("audit.origin", e.to_string()))?;
    write_secret(&path, &signer.to_text())?;
    Ok(Some(path))
}

fn random_32() -> Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| EngineError::internal(format_args!("no randomness: {e}")))?;
    Ok(bytes)
}

/// Writes a new secret file with mode 0600; never overwrites.
fn write_secret(path: &Path, text: &str) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| EngineError::file(path, format!("cannot create key file: {e}")))?;
    writeln!(f, "{text}")
        .and_then(|()| f.sync_all())
        .map_err(|e| EngineError::file(path, format!("cannot write key file: {e}")))
}

/// Reads a secret file, refusing one that others can read.
fn read_secret(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EngineError::file(path, format!("cannot read key file: {e}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| EngineError::file(path, e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(EngineError::file(
                path,
                format!(
                    "key file is readable by others (mode {:o}); chmod 600 it",
                    mode & 0o777
                ),
            ));
        }
    }
    Ok(text)
}

impl Keys {
    /// Loads the keys from `TIDIG_PSEUDONYM_KEY` / `TIDIG_VAULT_KEY` (hex) or from the
    /// key directory.
    pub fn load(dir: &Path) -> Result<Keys> {
        Ok(Keys {
            pseudonym: load_key("TIDIG_PSEUDONYM_KEY", &dir.join(PSEUDONYM_FILE))?,
            vault: load_key("TIDIG_VAULT_KEY", &dir.join(VAULT_FILE))?,
        })
    }

    /// Creates the pseudonym and vault keys and the audit signer (named `origin`), each
    /// 0600, where they do not exist; never overwrites a key, since a new pseudonym key
    /// would break every link to data already loaded and a new signer every checkpoint
    /// archived outside.
    pub fn ensure(dir: &Path, origin: &str) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)
            .map_err(|e| EngineError::file(dir, format!("cannot create: {e}")))?;
        let mut created = Vec::new();
        for name in [PSEUDONYM_FILE, VAULT_FILE] {
            let path = dir.join(name);
            if path.exists() {
                continue;
            }
            let key = SecretKey::from_bytes(random_32()?);
            write_secret(&path, &key.to_hex())?;
            created.push(path);
        }
        created.extend(ensure_audit_signer(dir, origin)?);
        Ok(created)
    }
}

fn load_key(env: &str, path: &Path) -> Result<SecretKey> {
    if let Ok(v) = std::env::var(env) {
        return SecretKey::from_hex(&v)
            .ok_or_else(|| EngineError::invalid(env, "expected 64 hexadecimal characters"));
    }
    if !path.exists() {
        return Err(EngineError::file(
            path,
            format!("key not found (set {env}, or run `tidig keys generate` for a demo key)"),
        ));
    }
    let text = read_secret(path)?;
    SecretKey::from_hex(&text)
        .ok_or_else(|| EngineError::file(path, "expected 64 hexadecimal characters"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_keys_are_private_files_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let created = Keys::ensure(dir.path(), "test.example/log").unwrap();
        assert_eq!(created.len(), 3);
        #[cfg(unix)]
        for p in &created {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let first = Keys::load(dir.path()).unwrap();
        assert!(Keys::ensure(dir.path(), "test.example/log")
            .unwrap()
            .is_empty());
        let again = Keys::load(dir.path()).unwrap();
        assert_eq!(first.pseudonym.fingerprint(), again.pseudonym.fingerprint());
        assert_ne!(first.pseudonym.fingerprint(), first.vault.fingerprint());
    }

    #[test]
    fn a_key_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Keys::ensure(dir.path(), "test.example/log").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.path().join(PSEUDONYM_FILE);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = Keys::load(dir.path()).unwrap_err();
            assert!(format!("{err:#}").contains("chmod 600"), "{err:#}");
        }
    }

    #[test]
    fn the_service_settings_contract_parses_with_its_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tidig.toml");
        std::fs::write(
            &p,
            "[service]\nlisten = \"127.0.0.1:50051\"\ndemo = false\n\
             [service.jwt]\njwks = \"/etc/tidig/jwks.json\"\n\
             issuer = \"https://login.example.fi\"\naudience = \"tidig\"\n\
             role_claim = \"role\"\nunit_claim = \"unit\"\npurpose_claim = \"purpose\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&p)).unwrap();
        let jwt = s.service.jwt.unwrap();
        assert_eq!(jwt.jwks, std::path::Path::new("/etc/tidig/jwks.json"));
        assert_eq!(
            (jwt.issuer.as_str(), jwt.audience.as_str()),
            ("https://login.example.fi", "tidig")
        );
        // The claim names default; demo is off and nothing authenticates by default.
        std::fs::write(
            &p,
            "[service.jwt]\njwks = \"k.json\"\nissuer = \"i\"\naudience = \"a\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&p)).unwrap();
        let jwt = s.service.jwt.unwrap();
        assert_eq!(
            (
                jwt.role_claim.as_str(),
                jwt.unit_claim.as_str(),
                jwt.purpose_claim.as_str()
            ),
            ("role", "unit", "purpose")
        );
        assert!(!s.service.demo);
        assert!(Settings::default().service.jwt.is_none());
        std::fs::write(&p, "[service.jwt]\njwks = \"k.json\"\n").unwrap();
        let err = Settings::load(Some(&p)).unwrap_err();
        assert!(format!("{err:#}").contains("issuer"), "{err:#}");
    }

    #[test]
    fn client_certificate_mappings_are_validated_with_the_offending_entry() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tidig.toml");
        let tls = "[service.tls]\ncert = \"s.crt\"\nkey = \"s.key\"\n";
        let client = |role: &str, unit: &str| {
            format!(
                "[[service.tls.clients]]\nsubject = \" CN=a ,O=b\"\nrole = \"{role}\"\n\
                 unit = \"{unit}\"\npurpose = \"case-handling\"\n"
            )
        };
        let unit = "family-services-central";
        let ca = "client_ca = \"ca.crt\"\n";
        for (text, field) in [
            (
                format!("{tls}{}", client("caseworker", unit)),
                "service.tls.clients",
            ),
            (
                format!("{tls}{ca}{}", client("boss", unit)),
                "service.tls.clients[0].role",
            ),
            (
                format!("{tls}{ca}{}", client("caseworker", "nowhere")),
                "service.tls.clients[0].unit",
            ),
            (
                format!(
                    "{tls}{ca}{}{}",
                    client("caseworker", unit),
                    client("dpo", unit).replace("CN=a ,O=b", "CN=a, O=b")
                ),
                "service.tls.clients[1].subject",
            ),
        ] {
            std::fs::write(&p, &text).unwrap();
            let err = Settings::load(Some(&p)).unwrap_err();
            assert!(format!("{err:#}").contains(field), "{field}: {err:#}");
        }
        std::fs::write(&p, format!("{tls}{ca}{}", client("caseworker", unit))).unwrap();
        let s = Settings::load(Some(&p)).unwrap();
        let c = &s.service.tls.unwrap().clients[0];
        assert_eq!(normalize_subject(&c.subject), "CN=a, O=b");
    }

    #[test]
    fn settings_files_are_validated_with_the_offending_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tidig.toml");
        std::fs::write(&p, "country = \"fi\"\n[keys]\ndirr = \"x\"\n").unwrap();
        let err = Settings::load(Some(&p)).unwrap_err();
        assert!(format!("{err:#}").contains("dirr"), "{err:#}");
        std::fs::write(&p, "country = \"xx\"\n").unwrap();
        let s = Settings::load(Some(&p)).unwrap();
        assert!(s.country().is_err());
    }

    #[test]
    fn out_of_range_settings_are_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tidig.toml");
        for (text, key) in [
            ("[scoring]\nelevated = -1\n", "scoring.elevated"),
            ("[scoring]\nhigh = 7\n", "scoring.high"),
            (
                "[scoring]\nelevated = 0.5\nhigh = 0.3\n",
                "scoring.elevated",
            ),
            ("[gate]\nmin_auc = -5\n", "gate.min_auc"),
            ("[scoring]\ntop_factors = 0\n", "scoring.top_factors"),
        ] {
            std::fs::write(&p, text).unwrap();
            let err = format!("{:#}", Settings::load(Some(&p)).unwrap_err());
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn a_malformed_settings_file_is_one_line_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tidig.toml");
        std::fs::write(&p, "country = \"fi\"\n[scoring\nhigh = = 3\n").unwrap();
        let err = format!("{:#}", Settings::load(Some(&p)).unwrap_err());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("tidig.toml"), "{err}");
    }
}
