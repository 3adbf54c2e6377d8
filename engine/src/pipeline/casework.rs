//! The caseworker's use cases: list a unit's open suggestions, read one (shown as the
//! rules decide for the reader), re-identify its person, decide on it, watch for new ones
//! and export it as FHIR. The gRPC server and the command line call these.
//!
//! Every call leaves exactly one audit entry: a request refused before the access check
//! (malformed, unknown suggestion) is recorded as failed; the check records a refusal or
//! an allowed read; a decision's entry commits with the decision, and an attempt that
//! changes nothing is recorded with its reason.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};
use tidig_connectors::pseudonym::{PersonKey, Sealed};
use tidig_governance::access::Operation;
use tidig_governance::audit::Record;
use tidig_governance::eval::ViewerFacts;

use crate::access::{AccessPass, Target};
use crate::app::App;
use crate::audit::outcome_of;
use crate::domain::{Band, DecisionOutcome, SuggestionStatus};
use crate::error::EngineError;
use crate::pipeline::decide::{view_for, Factor, StoredFactor, Suggested, TraceEntry};
use crate::principal::Principal;
use crate::read_cache::PageQuery;
use crate::store::{
    DecideResult, Decision, DecisionInput, PageKey, ScoringSwitch, StoredSuggestion,
    SuggestionSummaryRow,
};

type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Default and largest page sizes of a list.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 200;
/// Longest decision note, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;

/// One page of a unit's open suggestions.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    pub suggestions: Vec<SuggestionSummaryRow>,
    /// Empty on the last page.
    pub next_page_token: String,
    /// The stop switch, while it holds scoring: what is listed was written before.
    pub scoring_stop: Option<ScoringSwitch>,
}

/// A suggestion as its reader may see it, and the stop switch while it holds scoring.
#[derive(Clone, Debug, PartialEq)]
pub struct Shown {
    pub view: SuggestionView,
    pub scoring_stop: Option<ScoringSwitch>,
}

/// A suggestion as one reader may see it.
#[derive(Clone, Debug, PartialEq)]
pub struct SuggestionView {
    pub summary: SuggestionSummaryRow,
    pub status: SuggestionStatus,
    pub factors: Vec<ShownFactor>,
    pub interventions: Vec<Suggested>,
    pub rule_trace: Vec<TraceEntry>,
    pub model_id: String,
    pub rules_version: String,
    pub feature_set_version: String,
}

/// A factor with whose fact it is.
#[derive(Clone, Debug, PartialEq)]
pub struct ShownFactor {
    pub factor: Factor,
    /// `self`, `mother`, `father`, `sibling`, `household`.
    pub relation: String,
}

/// A decision as asked.
#[derive(Clone, Debug, Default)]
pub struct DecisionRequest {
    pub suggestion_id: String,
    /// `None`: the request left it unset.
    pub outcome: Option<DecisionOutcome>,
    pub reason_code: String,
    pub note: String,
    pub idempotency_key: String,
}

/// A recorded decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionRecorded {
    pub id: String,
    pub at: String,
    pub audit_seq: u64,
    /// The same request was recorded before; this is its answer.
    pub repeated: bool,
}

/// A national ID, for the caseworker's eyes only (never logged: no `Debug` of the value).
#[derive(Clone, PartialEq, Eq)]
pub struct Reidentified {
    pub national_id: String,
    pub audit_seq: u64,
}

impl std::fmt::Debug for Reidentified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reidentified(<redacted>, audit {})", self.audit_seq)
    }
}

fn record(app: &App, by: &Principal, op: Operation, details: serde_json::Value) -> Record {
    app.record(by, &crate::access::action(op)).with(details)
}

/// Runs `body` with failures before the access check recorded as the call's entry.
async fn before_check<T>(app: &App, record: &Record, result: Result<T>) -> Result<T> {
    app.audited(record.clone(), result).await
}

/// A suggestion's target for the access check; unknown ids are NOT_FOUND.
async fn target(app: &App, id: &str) -> Result<Target> {
    let (unit, pseudonym) =
        match app.known_target(id) {
            Some(known) => known,
            None => {
                let t = app.store().suggestion_target(id).await?.ok_or_else(|| {
                    EngineError::NotFound {
                        what: "suggestion",
                        id: id.to_string(),
                    }
                })?;
                app.remember_targets([(id, t.unit.as_str(), t.pseudonym.as_str())]);
                (t.unit, t.pseudonym)
            }
        };
    Ok(Target {
        unit,
        suggestion: Some(id.to_string()),
        subject: Some(pseudonym),
    })
}

fn check_id(field: &str, id: &str) -> Result<()> {
    if id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        Ok(())
    } else {
        Err(EngineError::invalid(
            field,
            "expected a suggestion id (32 lowercase hex characters)",
        ))
    }
}

/// The caller's own unit as a target (list, watch).
fn own_unit(by: &Principal) -> Target {
    Target {
        unit: by.unit.clone().unwrap_or_default(),
        suggestion: None,
        subject: None,
    }
}

const TOKEN_VERSION: &str = "v1";

fn encode_token(k: &PageKey) -> String {
    use base64::Engine as _;
    let raw = format!(
        "{TOKEN_VERSION}\n{}\n{:016x}\n{}\n{}",
        k.band,
        k.score.to_bits(),
        k.created_at,
        k.id
    );
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_token(token: &str) -> Result<Option<PageKey>> {
    use base64::Engine as _;
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || {
        EngineError::invalid(
            "page_token",
            "not a token this service issued (pass `next_page_token` unchanged)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let parts: Vec<&str> = raw.split('\n').collect();
    let [TOKEN_VERSION, band, bits, created_at, id] = parts.as_slice() else {
        return Err(bad());
    };
    let band = Band::parse(band).ok_or_else(bad)?;
    Ok(Some(PageKey {
        band: band.as_str().to_string(),
        score: f64::from_bits(u64::from_str_radix(bits, 16).map_err(|_| bad())?),
        created_at: (*created_at).to_string(),
        id: (*id).to_string(),
    }))
}

/// `ListSuggestions`: a page of the caller's unit's open, unexpired suggestions, most
/// urgent first.
pub async fn list_suggestions(
    app: &App,
    by: &Principal,
    page_size: u32,
    page_token: &str,
) -> Result<Page> {
    let rec = record(
        app,
        by,
        Operation::ListSuggestions,
        json!({"page_size": page_size, "continued": !page_token.is_empty()}),
    );
    let checked = (|| {
        if page_size > MAX_PAGE_SIZE {
            return Err(EngineError::invalid(
                "page_size",
                format!("{page_size} is above {MAX_PAGE_SIZE}"),
            ));
        }
        decode_token(page_token)
    })();
    let after = before_check(app, &rec, checked).await?;
    let pass = app
        .check_access(by, Operation::ListSuggestions, own_unit(by), rec)
        .await?;
    let limit = if page_size == 0 {
        DEFAULT_PAGE_SIZE
    } else {
        page_size
    } as usize;
    let today = app.clock().today().to_string();
    let cache = app.audit().read_cache();
    let query = PageQuery::new(pass.unit(), &today, after.as_ref(), limit + 1);
    let page = match cache.page(&pass, &query) {
        Some(page) => page,
        None => {
            let epoch = cache.begin(&pass);
            let page = Arc::new(
                app.store()
                    .open_page(&pass, &today, after.as_ref(), limit + 1)
                    .await?,
            );
            app.remember_targets(
                page.iter()
                    .map(|r| (r.id.as_str(), r.unit.as_str(), r.pseudonym.as_str())),
            );
            cache.fill_page(epoch, query, page.clone());
            page
        }
    };
    let mut rows = page.to_vec();
    let next_page_token = if rows.len() > limit {
        rows.truncate(limit);
        rows.last()
            .map(|r| encode_token(&r.key()))
            .unwrap_or_default()
    } else {
        String::new()
    };
    Ok(Page {
        suggestions: rows,
        next_page_token,
        scoring_stop: scoring_stop(app, &pass).await?,
    })
}

/// The stop switch while it holds scoring: the deployment settings' (`[deployment]
/// stopped = true`) or the store's (`StopScoring`), kept in the read cache.
pub(crate) async fn scoring_stop(app: &App, pass: &AccessPass) -> Result<Option<ScoringSwitch>> {
    if app.settings().deployment.stopped {
        return Ok(Some(ScoringSwitch {
            stopped: true,
            reason: "stopped in the deployment settings ([deployment] stopped = true)".into(),
            by: "configuration".into(),
            auth: "configuration".into(),
            at: String::new(),
            audit_seq: 0,
        }));
    }
    let cache = app.audit().read_cache();
    let switch = match cache.switch(pass) {
        Some(kept) => kept,
        None => {
            let epoch = cache.begin(pass);
            let switch = app.store().scoring_switch().await?;
            cache.fill_switch(epoch, switch.clone());
            switch
        }
    };
    Ok(switch.filter(|s| s.stopped))
}

/// `GetSuggestion`: the suggestion in full, shown as the rules decide for `by`.
pub async fn get_suggestion(app: &App, by: &Principal, id: &str) -> Result<Shown> {
    let rec = record(app, by, Operation::GetSuggestion, json!({"suggestion": id}));
    let target = before_check(
        app,
        &rec,
        async {
            check_id("id", id)?;
            target(app, id).await
        }
        .await,
    )
    .await?;
    let pass = app
        .check_access(by, Operation::GetSuggestion, target, rec)
        .await?;
    Ok(Shown {
        view: view(app, &pass).await?,
        scoring_stop: scoring_stop(app, &pass).await?,
    })
}

/// The pass's suggestion as its principal may see it.
async fn view(app: &App, pass: &AccessPass) -> Result<SuggestionView> {
    let cache = app.audit().read_cache();
    let s = match cache.row(pass) {
        Some(row) => row,
        None => {
            let epoch = cache.begin(pass);
            let row = Arc::new(
                app.store()
                    .suggestion(pass)
                    .await?
                    .ok_or_else(|| EngineError::internal("a checked suggestion vanished"))?,
            );
            cache.fill_row(epoch, row.clone());
            row
        }
    };
    let by = pass.principal();
    let viewer = ViewerFacts {
        unit: by.unit.clone().unwrap_or_default(),
        role: by.role.as_str().to_string(),
        health_authority: by.health_authority,
    };
    let key = (
        viewer.unit.clone(),
        viewer.role.clone(),
        viewer.health_authority,
    );
    let view = app.view_of(&s, key, || view_as(app, &s, &viewer))?;
    Ok((*view).clone())
}

/// `viewer`'s view of the stored suggestion `s`: its explanation and rule trace as the
/// rules let this viewer see them.
fn view_as(app: &App, s: &StoredSuggestion, viewer: &ViewerFacts) -> Result<SuggestionView> {
    let explanation: Vec<StoredFactor> = serde_json::from_str(&s.factors_json)?;
    let stored_trace: Vec<TraceEntry> = serde_json::from_str(&s.trace_json)?;
    let settings = app.settings();
    let (factors, interventions, rule_trace) = app.with_view_evaluator(|ev| {
        view_for(
            ev,
            &settings.deployment,
            &settings.scoring.catalogue,
            viewer,
            &explanation,
            &stored_trace,
        )
    });
    let factors = factors
        .into_iter()
        .zip(&explanation)
        .map(|(factor, stored)| ShownFactor {
            relation: stored.facts.subject.clone(),
            factor,
        })
        .collect();
    Ok(SuggestionView {
        summary: SuggestionSummaryRow {
            id: s.id.clone(),
            pseudonym: s.pseudonym.clone(),
            unit: s.unit.clone(),
            score: s.score,
            band: s.band,
            created_at: s.created_at.clone(),
            expires_at: s.expires_at.clone(),
        },
        status: s.status,
        factors,
        interventions,
        rule_trace,
        model_id: s.model_id.clone(),
        rules_version: s.rules_version.clone(),
        feature_set_version: s.feature_set_version.clone(),
    })
}

/// `RecordDecision`: the human decision, the only way a suggestion leaves `open`.
pub async fn record_decision(
    app: &App,
    by: &Principal,
    req: &DecisionRequest,
) -> Result<DecisionRecorded> {
    let rec = record(
        app,
        by,
        Operation::RecordDecision,
        json!({
            "suggestion": req.suggestion_id,
            "outcome": req.outcome.map(DecisionOutcome::as_str),
            "reason_code": req.reason_code,
        }),
    );
    let target = before_check(
        app,
        &rec,
        async {
            check_id("suggestion_id", &req.suggestion_id)?;
            let Some(outcome) = req.outcome else {
                return Err(EngineError::invalid(
                    "outcome",
                    "required: accepted, declined, already_known or not_relevant",
                ));
            };
            let _ = outcome;
            let codes = &app.settings().service.reason_codes;
            if !codes.iter().any(|c| c == &req.reason_code) {
                return Err(EngineError::invalid(
                    "reason_code",
                    format!(
                        "`{}` is not a configured reason code (one of: {})",
                        tidig_connectors::redact::scrub(&req.reason_code),
                        codes.join(", ")
                    ),
                ));
            }
            let chars = req.note.chars().count();
            if chars > MAX_NOTE_CHARS {
                return Err(EngineError::invalid(
                    "note",
                    format!("{chars} characters is above {MAX_NOTE_CHARS}"),
                ));
            }
            let key = &req.idempotency_key;
            if key.is_empty() || key.chars().count() > 128 || key.chars().any(char::is_control) {
                return Err(EngineError::invalid(
                    "idempotency_key",
                    "required: 1..=128 characters without control characters",
                ));
            }
            target(app, &req.suggestion_id).await
        }
        .await,
    )
    .await?;
    let outcome = req.outcome.unwrap_or(DecisionOutcome::NotRelevant);
    let pass = app
        .check_access(by, Operation::RecordDecision, target, rec.clone())
        .await?;
    let digest = hex::encode(Sha256::digest(
        format!(
            "{}\0{}\0{}\0{}",
            req.suggestion_id,
            outcome.as_str(),
            req.reason_code,
            req.note
        )
        .as_bytes(),
    ));
    let at = app.clock().stamp();
    let id = hex::encode(
        &Sha256::digest(format!("{}\0{}\0{}", req.suggestion_id, by.id(), at).as_bytes())[..16],
    );
    let today = app.clock().today().to_string();
    let input = DecisionInput {
        id: &id,
        outcome,
        reason_code: &req.reason_code,
        note: &req.note,
        idempotency_key: &req.idempotency_key,
        request_digest: &digest,
        at: &at,
        today: &today,
    };
    let result = match Decision::new(&pass, &input, json!({"decision": id})) {
        Some(decision) => app.audit().decide(decision).await,
        None => Ok(DecideResult::NotFound),
    };
    let refused = |e: EngineError| async {
        let mut rec = rec.clone().with_outcome(outcome_of(&e));
        rec.subject = pass.subject().map(str::to_string);
        app.audit().append(rec).await?;
        Err(e)
    };
    match result {
        Err(e) => refused(e).await,
        // The audit writer evicted it from the read cache before answering: the
        // decider's next read no longer finds it open.
        Ok(DecideResult::Recorded { id, at, audit_seq }) => Ok(DecisionRecorded {
            id,
            at,
            audit_seq,
            repeated: false,
        }),
        Ok(DecideResult::Repeated { id, at, audit_seq }) => {
            let mut again = rec.with(json!({"decision": id, "repeated": true}));
            again.subject = pass.subject().map(str::to_string);
            app.audit().append(again).await?;
            Ok(DecisionRecorded {
                id,
                at,
                audit_seq,
                repeated: true,
            })
        }
        Ok(DecideResult::AlreadyDecided { by_key }) => {
            refused(EngineError::AlreadyExists {
                reason: if by_key {
                    "this idempotency key was used for a different decision request".into()
                } else {
                    format!(
                        "suggestion `{}` has already been decided",
                        req.suggestion_id
                    )
                },
            })
            .await
        }
        Ok(DecideResult::NotOpen { status }) => {
            refused(EngineError::FailedPrecondition(
                crate::error::Precondition::NotOpen {
                    suggestion: req.suggestion_id.clone(),
                    status,
                },
            ))
            .await
        }
        Ok(DecideResult::Expired { expires_at }) => {
            refused(EngineError::FailedPrecondition(
                crate::error::Precondition::Expired {
                    suggestion: req.suggestion_id.clone(),
                    expires_at,
                },
            ))
            .await
        }
        Ok(DecideResult::NotFound) => {
            refused(EngineError::NotFound {
                what: "suggestion",
                id: req.suggestion_id.clone(),
            })
            .await
        }
    }
}

/// `Reidentify`: the national ID behind a suggestion, for a stated purpose.
pub async fn reidentify(
    app: &App,
    by: &Principal,
    suggestion_id: &str,
    stated_purpose: &str,
) -> Result<Reidentified> {
    // A purpose typed by a person may quote an ID: it is recorded scrubbed.
    let purpose = tidig_connectors::redact::scrub(stated_purpose.trim()).into_owned();
    let rec = record(
        app,
        by,
        Operation::Reidentify,
        json!({"suggestion": suggestion_id, "stated_purpose": purpose}),
    );
    let target = before_check(
        app,
        &rec,
        async {
            check_id("suggestion_id", suggestion_id)?;
            let n = purpose.chars().count();
            if !(4..=500).contains(&n) {
                return Err(EngineError::invalid(
                    "purpose",
                    format!("state why the national ID is needed in 4..=500 characters (got {n})"),
                ));
            }
            target(app, suggestion_id).await
        }
        .await,
    )
    .await?;
    let pass = app
        .check_access(by, Operation::Reidentify, target, rec)
        .await?;
    let audit_seq = pass
        .audit_seq()
        .ok_or_else(|| EngineError::internal("a read's pass has no audit entry"))?;
    let (person_id, nonce, ciphertext) =
        app.store()
            .sealed_identity(&pass)
            .await?
            .ok_or_else(|| EngineError::NotFound {
                what: "vault entry for suggestion",
                id: suggestion_id.to_string(),
            })?;
    let tag = pass
        .subject()
        .and_then(|p| p.strip_prefix('p'))
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| EngineError::internal("a stored pseudonym is not `p` + 32 hex"))?;
    let sealed = Sealed {
        nonce: <[u8; 24]>::try_from(nonce.as_slice())
            .map_err(|_| EngineError::internal("a vault nonce is not 24 bytes"))?,
        ciphertext,
    };
    let opened = app
        .edge()?
        .vault
        .open(&sealed, &PersonKey { id: person_id, tag })
        .map_err(|e| EngineError::internal(format_args!("{e}")))?;
    let national_id = opened
        .split_once('|')
        .map_or(opened.as_str(), |(_, v)| v)
        .to_string();
    Ok(Reidentified {
        national_id,
        audit_seq,
    })
}

/// `ExportRiskAssessment`: the suggestion, as the caller may see it, as a FHIR R4
/// `RiskAssessment`.
pub async fn export_risk_assessment(
    app: &App,
    by: &Principal,
    id: &str,
) -> Result<serde_json::Value> {
    let rec = record(
        app,
        by,
        Operation::ExportRiskAssessment,
        json!({"suggestion": id}),
    );
    let target = before_check(
        app,
        &rec,
        async {
            check_id("suggestion_id", id)?;
            target(app, id).await
        }
        .await,
    )
    .await?;
    let pass = app
        .check_access(by, Operation::ExportRiskAssessment, target, rec)
        .await?;
    let v = view(app, &pass).await?;
    Ok(risk_assessment(&v))
}

/// A suggestion view as an HL7 FHIR R4 `RiskAssessment`: the probability as a
/// percentage (invariant ras-2), the band as `qualitativeRisk`, the shown factors as the
/// rationale, the model as method and performer, the rule trace as the basis.
pub fn risk_assessment(v: &SuggestionView) -> serde_json::Value {
    let status = match v.status {
        SuggestionStatus::Open => "preliminary",
        SuggestionStatus::Decided => "final",
        SuggestionStatus::Superseded | SuggestionStatus::Expired | SuggestionStatus::Withdrawn => {
            "cancelled"
        }
    };
    let (risk_code, risk_display) = match v.summary.band {
        Band::High => ("high", "High likelihood"),
        Band::Elevated => ("moderate", "Moderate likelihood"),
    };
    let rationale = v
        .factors
        .iter()
        .map(|f| match f.factor.contribution {
            Some(c) if !f.factor.redacted => format!(
                "{} ({} registry, {}; contribution {c:+.3})",
                f.factor.text, f.factor.source, f.relation
            ),
            _ => format!(
                "{} (redacted by {})",
                f.factor.text,
                f.factor.rule.as_deref().unwrap_or("a rule")
            ),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let basis: Vec<serde_json::Value> = v
        .rule_trace
        .iter()
        .map(|t| {
            json!({"display": format!(
                "{} rules: {} {} {} ({})",
                t.stage.name(),
                t.action,
                t.subject,
                if t.allowed { "allowed" } else { "refused" },
                if t.rules.is_empty() { "no rule".to_string() } else { t.rules.join(", ") }
            )})
        })
        .collect();
    let model = json!({
        "identifier": {"system": "urn:tidig:model", "value": v.model_id},
        "display": format!("tidig model {}", &v.model_id[..v.model_id.len().min(12)]),
    });
    // Scores are in [0, 1]; ras-2 wants a percentage, kept to four decimals.
    let percent = (v.summary.score * 100.0 * 10_000.0).round() / 10_000.0;
    json!({
        "resourceType": "RiskAssessment",
        "id": v.summary.id,
        "identifier": [{"system": "urn:tidig:suggestion", "value": v.summary.id}],
        "status": status,
        "method": {
            "coding": [{"system": "urn:tidig:model", "code": v.model_id}],
            "text": format!(
                "tidig logistic model {}, rule pack {}, feature set {}",
                &v.model_id[..v.model_id.len().min(12)],
                &v.rules_version[..v.rules_version.len().min(12)],
                &v.feature_set_version[..v.feature_set_version.len().min(12)]
            ),
        },
        "subject": {
            "identifier": {"system": "urn:tidig:pseudonym", "value": v.summary.pseudonym},
        },
        "occurrenceDateTime": v.summary.created_at,
        "performer": model,
        "basis": basis,
        "prediction": [{
            "outcome": {"text": "need for early family support"},
            "probabilityDecimal": percent,
            "qualitativeRisk": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/risk-probability",
                "code": risk_code,
                "display": risk_display,
            }]},
            "rationale": rationale,
        }],
        "note": [{"text": format!("Decision support only: a caseworker decides. Expires {}.", v.summary.expires_at)}],
    })
}

/// A running `WatchSuggestions`: yields the unit's new open suggestions as they are
/// written, by this process or another.
#[derive(Debug)]
pub struct Watch {
    pass: AccessPass,
    /// The write position of the last suggestion sent (see `suggestions.write_seq`).
    after: i64,
    every: Duration,
}

/// `WatchSuggestions`: starts at the unit's newest suggestion; only later ones are sent.
pub async fn watch_suggestions(app: &App, by: &Principal) -> Result<Watch> {
    let rec = record(app, by, Operation::WatchSuggestions, json!({}));
    let pass = app
        .check_access(by, Operation::WatchSuggestions, own_unit(by), rec)
        .await?;
    let after = app.store().latest_write_seq(&pass).await?;
    Ok(Watch {
        pass,
        after,
        every: Duration::from_millis(app.settings().service.watch_poll_ms),
    })
}

/// The watch's next new suggestions, waiting (polling every `watch_poll_ms`) until there
/// are some.
pub async fn next_suggestions(app: &App, w: &mut Watch) -> Result<Vec<SuggestionSummaryRow>> {
    loop {
        let today = app.clock().today().to_string();
        let rows = app
            .store()
            .open_since(&w.pass, &today, w.after, 256)
            .await?;
        if let Some((seq, _)) = rows.last() {
            w.after = *seq;
            return Ok(rows.into_iter().map(|(_, r)| r).collect());
        }
        tokio::time::sleep(w.every).await;
    }
}
