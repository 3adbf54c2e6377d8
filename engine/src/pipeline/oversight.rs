//! Oversight use cases for the data-protection officer, through the same access policy
//! and audit trail as the caseworker's. So far the stop switch (EU AI Act Art 14).

use serde_json::json;
use tidig_governance::access::Operation;

use crate::access::Target;
use crate::app::App;
use crate::error::EngineError;
use crate::principal::Principal;
use crate::store::SwitchChange;

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
    let target = Target {
        unit: String::new(),
        suggestion: None,
        subject: None,
    };
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
