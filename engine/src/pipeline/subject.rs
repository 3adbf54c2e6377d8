//! The subject-access report (GDPR Art 15; EU AI Act Art 86): for one person, everything
//! tidig holds about them with its source and dates, every feature snapshot, every score
//! that became a suggestion with its explanation and rule trace, every decision, every
//! access to their data recorded in the audit trail, their objection, and a
//! plain-language account of the logic involved. One value that serializes to the JSON
//! document a data-protection officer hands over; the request is audited like any
//! oversight call, before anything is read.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};
use tidig_governance::access::Operation;
use tidig_models::features::FeatureSet;

use crate::access::Target;
use crate::app::App;
use crate::dates;
use crate::error::EngineError;
use crate::principal::Principal;
use crate::store::{AuditFilter, Loaded, ObjectionRow, SubjectData};

type Result<T, E = EngineError> = std::result::Result<T, E>;

/// The longest request reference.
pub const MAX_REFERENCE_CHARS: usize = 200;

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct SubjectAccessReport {
    /// `tidig subject-access-report v1`.
    pub format: &'static str,
    /// The person's pseudonym (the national ID the request named is not repeated).
    pub pseudonym: String,
    pub generated_at: String,
    pub generated_by: String,
    /// The data-protection office's reference for the request.
    pub reference: String,
    /// Whether the registries loaded into tidig hold the person at all.
    pub held: bool,
    pub person: Option<PersonSection>,
    /// Registry records: health and social-services events, residences, relations,
    /// protected attributes; each with its dates and source file.
    pub records: Vec<HeldRecord>,
    pub snapshots: Vec<Snapshot>,
    /// Scores that became suggestions, with explanation, rule trace and decision.
    pub suggestions: Vec<SuggestionSection>,
    /// Every audit entry about the person: who, when, for what purpose, what.
    pub accesses: Vec<Access>,
    pub objection: Option<ObjectionRow>,
    /// The logic involved, in plain language.
    pub logic: Vec<String>,
    /// What tidig does not keep, so that the report's gaps are not mistaken for
    /// omissions.
    pub not_kept: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PersonSection {
    /// The national-ID scheme (`fi`, `se`, `dk`, `no`, `opaque`).
    pub scheme: String,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    pub death_date: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct HeldRecord {
    /// `health`, `social` or `population`.
    pub registry: &'static str,
    /// `condition`, `encounter`, …, `social_case`, `residence`, `relation`,
    /// `protected_attribute`.
    pub category: String,
    /// What the record says, in words.
    pub description: String,
    pub code_system: Option<String>,
    pub code: Option<String>,
    pub detail: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub value: Option<f64>,
    /// `occurred` or `not_done` for events.
    pub status: Option<&'static str>,
    /// The file it was loaded from, and when.
    pub source_file: Option<String>,
    pub loaded_at: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub feature_set: String,
    pub feature_set_name: Option<String>,
    pub as_of: String,
    pub features: Vec<FeatureValue>,
    /// The outcome the model learns (1 = it happened within the horizon), once known.
    pub label: Option<f64>,
    pub label_complete: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct FeatureValue {
    pub id: String,
    pub text: String,
    /// `None`: missing.
    pub value: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SuggestionSection {
    pub id: String,
    pub as_of: String,
    pub unit: String,
    pub score: f64,
    pub band: String,
    pub status: String,
    pub created_at: String,
    pub expires_at: String,
    pub model_id: String,
    pub rules_version: String,
    pub feature_set_version: String,
    pub explanation: Value,
    pub interventions: Value,
    pub rule_trace: Value,
    pub decision: Option<DecisionSection>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DecisionSection {
    pub outcome: String,
    pub reason_code: String,
    pub note: String,
    pub decided_by: String,
    pub decided_at: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Access {
    pub seq: u64,
    pub at: String,
    pub principal: String,
    pub role: String,
    pub purpose: String,
    pub action: String,
    pub outcome: String,
    pub details: Value,
}

/// `SubjectAccessReport`: the report on the person `person` names (a national ID,
/// pseudonymized here and never echoed, or a pseudonym).
pub async fn subject_access_report(
    app: &App,
    by: &Principal,
    person: &str,
    reference: &str,
) -> Result<SubjectAccessReport> {
    let op = Operation::SubjectAccessReport;
    let reference = tidig_connectors::redact::scrub(reference.trim()).into_owned();
    let rec = app
        .record(by, &crate::access::action(op))
        .with(json!({"reference": reference}));
    let checked = (|| {
        if reference.chars().count() > MAX_REFERENCE_CHARS
            || reference.chars().any(char::is_control)
        {
            return Err(EngineError::invalid(
                "reference",
                format!("at most {MAX_REFERENCE_CHARS} characters without control characters"),
            ));
        }
        crate::pipeline::audit::person_pseudonym(app, "national_id", person)
    })();
    let pseudonym = app.audited(rec.clone(), checked).await?;
    let target = Target {
        subject: Some(pseudonym.clone()),
        ..Target::deployment()
    };
    // The call's entry (subject: the person) is durable before anything is read, and
    // is itself among the accesses the report lists.
    let pass = app.check_access(by, op, target, rec).await?;
    let data = app.store().subject_data(&pass).await?;
    let accesses = accesses(app, &pseudonym).await?;
    let set = crate::pipeline::load_feature_set(None)?;
    Ok(SubjectAccessReport {
        format: "tidig subject-access-report v1",
        held: data.person.is_some(),
        person: data.person.as_ref().map(|p| PersonSection {
            scheme: p.scheme.clone(),
            birth_date: p.birth_date.and_then(day),
            sex: p.sex.clone(),
            death_date: p.death_date.and_then(day),
        }),
        records: records(&data),
        snapshots: snapshots(&data)?,
        suggestions: suggestions(&data)?,
        accesses,
        objection: data.objection.clone(),
        logic: logic(app, &set).await?,
        not_kept: not_kept(),
        pseudonym,
        generated_at: app.clock().stamp(),
        generated_by: by.id().to_string(),
        reference,
    })
}

fn day(days: i64) -> Option<String> {
    dates::from_days(days).map(|d| d.to_string())
}

fn instant(seconds: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn event_kind(kind: i64) -> (&'static str, &'static str) {
    match kind {
        1 => ("health", "encounter"),
        2 => ("health", "condition"),
        3 => ("health", "observation"),
        4 => ("health", "medication"),
        5 => ("health", "procedure"),
        6 => ("health", "immunization"),
        40 => ("social", "social_case"),
        _ => ("health", "other"),
    }
}

fn source(l: &Loaded) -> (Option<String>, Option<String>) {
    (l.file.clone(), l.loaded_at.clone())
}

fn records(d: &SubjectData) -> Vec<HeldRecord> {
    let mut out = Vec::new();
    for e in &d.events {
        let (registry, category) = event_kind(e.kind);
        let (source_file, loaded_at) = source(&e.loaded);
        let detail = e.detail.as_ref().map(|(s, c)| format!("{s}|{c}"));
        out.push(HeldRecord {
            registry,
            category: category.into(),
            description: match (registry, &e.detail) {
                ("social", Some((_, local))) => {
                    format!(
                        "social-services case event: {} (local code {local})",
                        e.code
                    )
                }
                ("social", None) => format!("social-services case event: {}", e.code),
                _ => format!("{category}: {} code {}", e.code_system, e.code),
            },
            code_system: Some(e.code_system.clone()),
            code: Some(e.code.clone()),
            detail,
            start: instant(e.start),
            end: e.end.and_then(instant),
            value: e.value,
            status: Some(if e.status == 0 {
                "occurred"
            } else {
                "not_done"
            }),
            source_file,
            loaded_at,
        });
    }
    for r in &d.residences {
        let (source_file, loaded_at) = source(&r.loaded);
        out.push(HeldRecord {
            registry: "population",
            category: "residence".into(),
            description: format!(
                "lived in municipality {}{}{}",
                r.municipality,
                r.postcode
                    .as_deref()
                    .map_or(String::new(), |p| format!(", postcode {p}")),
                if r.household_recorded {
                    ", in a recorded household"
                } else {
                    ""
                }
            ),
            code_system: None,
            code: None,
            detail: None,
            start: day(r.valid_from),
            end: r.valid_to.and_then(day),
            value: None,
            status: None,
            source_file,
            loaded_at,
        });
    }
    for r in &d.relations {
        let (source_file, loaded_at) = source(&r.loaded);
        out.push(HeldRecord {
            registry: "population",
            category: "relation".into(),
            description: if r.as_child {
                format!("has a registered {} (parent)", r.relation)
            } else {
                format!("is registered as {} of a child", r.relation)
            },
            code_system: None,
            code: None,
            detail: None,
            start: r.valid_from.and_then(day),
            end: r.valid_to.and_then(day),
            value: None,
            status: None,
            source_file,
            loaded_at,
        });
    }
    for (attribute, value) in &d.protected {
        out.push(HeldRecord {
            registry: "population",
            category: "protected_attribute".into(),
            description: format!(
                "{attribute}: {value} (used only to measure the model's fairness, never as an input)"
            ),
            code_system: None,
            code: Some(attribute.clone()),
            detail: Some(value.clone()),
            start: None,
            end: None,
            value: None,
            status: None,
            source_file: None,
            loaded_at: None,
        });
    }
    out
}

fn snapshots(d: &SubjectData) -> Result<Vec<Snapshot>> {
    d.snapshots
        .iter()
        .map(|s| {
            let values: Vec<Option<f64>> = serde_json::from_str(&s.values_json)?;
            let set: Option<FeatureSet> = s
                .definition
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok());
            let features = values
                .into_iter()
                .enumerate()
                .map(|(i, value)| {
                    let def = set.as_ref().and_then(|f| f.features.get(i));
                    FeatureValue {
                        id: def.map_or_else(|| format!("#{i}"), |f| f.id.clone()),
                        text: def.map_or_else(String::new, |f| f.text.clone()),
                        value,
                    }
                })
                .collect();
            Ok(Snapshot {
                feature_set: s.feature_set.clone(),
                feature_set_name: s.feature_set_name.clone(),
                as_of: day(s.as_of).unwrap_or_default(),
                features,
                label: s.label,
                label_complete: s.label_complete,
            })
        })
        .collect()
}

fn suggestions(d: &SubjectData) -> Result<Vec<SuggestionSection>> {
    let decisions: BTreeMap<&str, &crate::store::SubjectDecision> = d
        .decisions
        .iter()
        .map(|x| (x.suggestion_id.as_str(), x))
        .collect();
    d.suggestions
        .iter()
        .map(|s| {
            Ok(SuggestionSection {
                id: s.id.clone(),
                as_of: day(s.day).unwrap_or_default(),
                unit: s.unit.clone(),
                score: s.score,
                band: s.band.as_str().into(),
                status: s.status.as_str().into(),
                created_at: s.created_at.clone(),
                expires_at: s.expires_at.clone(),
                model_id: s.model_id.clone(),
                rules_version: s.rules_version.clone(),
                feature_set_version: s.feature_set_version.clone(),
                explanation: serde_json::from_str(&s.factors_json)?,
                interventions: serde_json::from_str(&s.interventions_json)?,
                rule_trace: serde_json::from_str(&s.trace_json)?,
                decision: decisions.get(s.id.as_str()).map(|x| DecisionSection {
                    outcome: x.outcome.clone(),
                    reason_code: x.reason_code.clone(),
                    note: x.note.clone(),
                    decided_by: x.decided_by.clone(),
                    decided_at: x.decided_at.clone(),
                }),
            })
        })
        .collect()
}

/// Every audit entry about the person, oldest first.
async fn accesses(app: &App, pseudonym: &str) -> Result<Vec<Access>> {
    let filter = AuditFilter {
        subject: Some(pseudonym.to_string()),
        ..AuditFilter::default()
    };
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let rows = app.store().audit_query(&filter, after, 1000).await?;
        let Some(last) = rows.last().map(|r| r.seq) else {
            return Ok(out);
        };
        for r in rows {
            let e: Value = serde_json::from_str(&r.entry)?;
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            out.push(Access {
                seq: r.seq,
                at: r.at,
                principal: text(&e["principal"]["id"]),
                role: text(&e["principal"]["role"]),
                purpose: text(&e["purpose"]),
                action: r.action,
                outcome: r.outcome,
                details: e["details"].clone(),
            });
        }
        after = Some(last);
    }
}

/// How tidig reasons, in words, from the active model and the deployment's settings.
async fn logic(app: &App, set: &FeatureSet) -> Result<Vec<String>> {
    let s = &app.settings().scoring;
    let mut out = vec![format!(
        "tidig helps the municipality's family services notice early when a child and family \
         may need support. It is used for children aged {}–{} who live in the municipality.",
        set.cohort.min_age, set.cohort.max_age
    )];
    match crate::pipeline::registry::active(app).await? {
        Some(m) => {
            let texts: Vec<String> = m
                .artifact
                .features
                .iter()
                .map(|id| {
                    set.features
                        .iter()
                        .find(|f| &f.id == id)
                        .map_or_else(|| id.clone(), |f| f.text.clone())
                })
                .collect();
            out.push(format!(
                "A statistical model ({} regression, model {}) estimates how likely it is that \
                 this will happen: {}. It learned from earlier records of other children, and \
                 it uses these {} facts from the registers: {}.",
                m.artifact.kind,
                &m.row.id[..12],
                m.artifact.label_text,
                texts.len(),
                texts.join("; ")
            ));
        }
        None => out.push("No model is in use at the moment.".into()),
    }
    out.push(format!(
        "An estimate of {:.0}% or more is called elevated and {:.0}% or more high. Ethics rules \
         written down in advance decide who may be assessed at all (for example not a person \
         who objected, or a family that already has a child-welfare case), which facts may be \
         used and what may be shown. Each unit receives at most a fixed number of suggestions \
         a week, the highest estimates first.",
        s.elevated * 100.0,
        s.high * 100.0
    ));
    out.push(format!(
        "A suggestion is not a decision. A caseworker of the family's own unit reads it \
         together with the facts that raised the estimate, and decides whether to offer \
         support, which the family may decline. A suggestion nobody decides on expires after \
         {} days. Every access to a person's data is recorded in a tamper-evident audit trail.",
        s.expiry_days
    ));
    out.push(
        "Protected characteristics (such as sex or mother tongue) are never used by the \
         model; they are kept only to check that the model treats groups fairly."
            .into(),
    );
    Ok(out)
}

fn not_kept() -> Vec<String> {
    vec![
        "The national ID is not stored in readable form: records are kept under a keyed \
         pseudonym, and the ID itself only encrypted, to show it to a caseworker handling the \
         case."
            .into(),
        "A score that did not become a suggestion (below the elevated band, or held back by \
         a rule) is not kept; only the run's totals are."
            .into(),
        "Records that could not be linked to a person, or lines of a file that failed \
         validation, are not linked to anyone and are not listed here."
            .into(),
    ]
}
