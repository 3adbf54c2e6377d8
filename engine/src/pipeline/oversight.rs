//! Oversight use cases for the data-protection officer, through the same access policy
//! and audit trail as the caseworker's. So far the stop switch (EU AI Act Art 14).

use serde_json::json;
use tidig_governance::access::Operation;

use crate::access::Target;
use crate::app::App;
use crate::error::EngineError;
use crate::pipeline::audit;
use crate::principal::Principal;
use crate::store::{ObjectionChange, ObjectionRow, SwitchChange};

type Result<T, E = EngineError> = std::result::Result<T, E>;

/// The longest reason a switch takes.
pub const MAX_REASON_CHARS: usize = 500;

/// `StopScoring`: no scoring run writes suggestions until `resume_scoring`.
pub async fn stop_scoring(app: &App, by: &Principal, reason: &str) -> Result<SwitchChange> {
    switch(app, by, Operation::StopScoring, true, reason).await
}

/// `ResumeScoring`.
pub async fn resume_scoring(app: &App, by: &Principal, reason: &str) -> Result<SwitchChange> {
    switch(app, by, Operation::ResumeScoring, false, reason).await
}

async fn switch(
    app: &App,
    by: &Principal,
    op: Operation,
    stopped: bool,
    reason: &str,
) -> Result<SwitchChange> {
    // A reason typed by a person may quote an ID: it is kept and recorded scrubbed.
    let reason = tidig_connectors::redact::scrub(reason.trim()).into_owned();
    let rec = app
        .record(by, &crate::access::action(op))
        .with(json!({"reason": reason}));
    let chars = reason.chars().count();
    let checked = if chars == 0 || chars > MAX_REASON_CHARS || reason.chars().any(char::is_control)
    {
        Err(EngineError::invalid(
            "reason",
            format!("required: 1..={MAX_REASON_CHARS} characters without control characters"),
        ))
    } else {
        Ok(())
    };
    app.audited(rec.clone(), checked).await?;
    // The switch concerns the whole deployment, no unit's data.
    let target = Target::deployment();
    let pass = app.check_access(by, op, target, rec.clone()).await?;
    let at = app.clock().stamp();
    let result = app
        .store()
        .set_scoring_switch(&pass, stopped, &reason, &at, json!({}))
        .await
        .map_err(EngineError::from);
    // A failed change wrote nothing, its entry included: record the failure.
    app.audited(rec, result).await
}

/// The longest objection reference.
pub const MAX_REFERENCE_CHARS: usize = 200;

/// `RegisterObjection` (GDPR Art 21): from now on the person is not scored or trained
/// on, and their open suggestions are withdrawn. `person` is a national ID (or the
/// pseudonym), pseudonymized here and never echoed or stored.
pub async fn register_objection(
    app: &App,
    by: &Principal,
    person: &str,
    reference: &str,
) -> Result<ObjectionChange> {
    objection(
        app,
        by,
        Operation::RegisterObjection,
        true,
        person,
        reference,
    )
    .await
}

/// `WithdrawObjection`: the person may be scored and trained on again.
pub async fn withdraw_objection(
    app: &App,
    by: &Principal,
    person: &str,
    reference: &str,
) -> Result<ObjectionChange> {
    objection(
        app,
        by,
        Operation::WithdrawObjection,
        false,
        person,
        reference,
    )
    .await
}

async fn objection(
    app: &App,
    by: &Principal,
    op: Operation,
    active: bool,
    person: &str,
    reference: &str,
) -> Result<ObjectionChange> {
    let reference = tidig_connectors::redact::scrub(reference.trim()).into_owned();
    let rec = app
        .record(by, &crate::access::action(op))
        .with(json!({"reference": reference}));
    let checked = (|| {
        let chars = reference.chars().count();
        if chars == 0 || chars > MAX_REFERENCE_CHARS || reference.chars().any(char::is_control) {
            return Err(EngineError::invalid(
                "reference",
                format!(
                    "required: 1..={MAX_REFERENCE_CHARS} characters without control characters"
                ),
            ));
        }
        crate::pipeline::audit::person_pseudonym(app, "national_id", person)
    })();
    let pseudonym = app.audited(rec.clone(), checked).await?;
    let target = Target {
        subject: Some(pseudonym),
        ..Target::deployment()
    };
    let pass = app.check_access(by, op, target, rec.clone()).await?;
    let at = app.clock().stamp();
    let result = app
        .store()
        .set_objection(&pass, active, &reference, &at)
        .await
        .map_err(EngineError::from);
    app.audited(rec, result).await
}

/// `ListObjections`: the register, newest first (pseudonyms only).
pub async fn list_objections(app: &App, by: &Principal) -> Result<Vec<ObjectionRow>> {
    let op = Operation::ListObjections;
    let rec = app.record(by, &crate::access::action(op));
    let target = Target::deployment();
    // An allowed read's entry is written by the check, before anything is read.
    let pass = app.check_access(by, op, target, rec).await?;
    Ok(app.store().objections(&pass).await?)
}

/// One page of `QueryAudit`: the entries exactly as the trail hashed them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditPage {
    pub entries: Vec<String>,
    pub next_page_token: Option<String>,
}

/// `QueryAudit`: a page of the entries matching `q` (a person by national ID or
/// pseudonym, pseudonymized here). The call's entry records the filter and is durable
/// before anything is read.
pub async fn query_audit(app: &App, by: &Principal, q: &audit::Query) -> Result<AuditPage> {
    let op = Operation::QueryAudit;
    let rec = app.record(by, &crate::access::action(op));
    let checked = audit::checked_query(app, q, |field| field);
    let (filter, after) = app.audited(rec.clone(), checked).await?;
    let target = Target {
        subject: filter.subject.clone(),
        ..Target::deployment()
    };
    let rec = rec.with(audit::query_details(&filter, after));
    let _pass = app.check_access(by, op, target, rec).await?;
    let mut rows = app
        .store()
        .audit_query(&filter, after, q.page_size + 1)
        .await?;
    let more = rows.len() > q.page_size as usize;
    rows.truncate(q.page_size as usize);
    Ok(AuditPage {
        next_page_token: more
            .then(|| rows.last().map(|r| r.seq.to_string()))
            .flatten(),
        entries: rows.into_iter().map(|r| r.entry).collect(),
    })
}

/// `VerifyAudit`: `tidig audit verify`'s report, and the key that checks its signed
/// checkpoints (none when this deployment has no signing key).
pub async fn verify_audit(
    app: &App,
    by: &Principal,
) -> Result<(audit::VerifyReport, Option<String>)> {
    let op = Operation::VerifyAudit;
    let rec = app.record(by, &crate::access::action(op));
    let _pass = app.check_access(by, op, Target::deployment(), rec).await?;
    let verifier = app.audit().verifier();
    let report = audit::verify(app, verifier.as_ref(), None).await?;
    Ok((report, verifier.map(|v| v.to_text())))
}

/// `ProveInclusion`: entry `seq`'s inclusion proof in the latest signed checkpoint.
pub async fn prove_inclusion(app: &App, by: &Principal, seq: u64) -> Result<audit::InclusionProof> {
    let op = Operation::ProveInclusion;
    let rec = app
        .record(by, &crate::access::action(op))
        .with(json!({"seq": seq}));
    let _pass = app.check_access(by, op, Target::deployment(), rec).await?;
    audit::prove(app, seq).await
}

/// `ExportAudit`'s start: signs a checkpoint of the trail as it stands (this call's entry
/// included) and returns the export's header line and how many entries follow it; the
/// caller then streams them with [`audit::export_lines`].
pub async fn export_audit(app: &App, by: &Principal) -> Result<(String, u64)> {
    let op = Operation::ExportAudit;
    let rec = app.record(by, &crate::access::action(op));
    let _pass = app.check_access(by, op, Target::deployment(), rec).await?;
    let cp = audit::checkpoint(app).await?;
    let verifier = app
        .audit()
        .verifier()
        .ok_or_else(|| EngineError::internal("a checkpoint without a key"))?;
    Ok((audit::export_header(&verifier, &cp).to_string(), cp.size))
}

/// `ListModels`: the registry, oldest first.
pub async fn list_models(app: &App, by: &Principal) -> Result<Vec<crate::store::ModelRow>> {
    let op = Operation::ListModels;
    let rec = app.record(by, &crate::access::action(op));
    let _pass = app.check_access(by, op, Target::deployment(), rec).await?;
    crate::pipeline::registry::list(app).await
}

/// `GetModelCard`: one model (id or unique prefix), its card rendered against `set`
/// and its artifact.
pub async fn model_card(
    app: &App,
    by: &Principal,
    id: &str,
    set: &tidig_models::features::FeatureSet,
) -> Result<(crate::pipeline::registry::Model, String)> {
    let op = Operation::GetModelCard;
    let rec = app
        .record(by, &crate::access::action(op))
        .with(json!({"model": id}));
    let _pass = app.check_access(by, op, Target::deployment(), rec).await?;
    let model = crate::pipeline::registry::show(app, id).await?;
    let card = crate::pipeline::card::card(&model.row.id, &model.artifact, set);
    Ok((model, card))
}
