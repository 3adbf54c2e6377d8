//! The permit register's use cases: register, amend and revoke secondary-use permits
//! (each a new version, audited in its transaction), list and show them. Who may do
//! what is the access policy's (`access.permit-register`, `access.permit-read`); what a
//! permit says is checked by `tidig_governance::permit` and against the feature set.

use serde::Serialize;
use serde_json::json;
use tidig_governance::access::Operation;
use tidig_governance::permit::Permit;
use tidig_models::features::FeatureSet;

use crate::access::Target;
use crate::app::App;
use crate::error::{EngineError, Precondition};
use crate::principal::Principal;
use crate::store::{PermitChangeKind, PermitRow, PermitWritten};

type Result<T, E = EngineError> = std::result::Result<T, E>;

/// The longest revocation reason.
pub const MAX_REASON_CHARS: usize = 500;

/// A permit as it stands, with the version that says so.
#[derive(Clone, Debug, Serialize)]
pub struct PermitView {
    pub permit: Permit,
    pub version: i64,
    /// `registered`, `amended` or `revoked`.
    pub state: String,
    pub revoked_reason: Option<String>,
    pub recorded_at: String,
    pub recorded_by: String,
}

impl PermitView {
    fn of(row: PermitRow) -> Result<PermitView> {
        Ok(PermitView {
            permit: serde_json::from_str(&row.definition)?,
            version: row.version,
            state: row.change,
            revoked_reason: row.reason,
            recorded_at: row.recorded_at,
            recorded_by: row.recorded_by,
        })
    }
}

/// Parses and validates a permit's TOML, and checks that every feature it names
/// explicitly is in `set`.
pub fn parse(text: &str, set: &FeatureSet) -> Result<Permit> {
    let permit = Permit::parse(text).map_err(|e| EngineError::invalid("permit", e.to_string()))?;
    for f in permit.features.iter().filter(|f| !f.ends_with('*')) {
        if !set.features.iter().any(|d| &d.id == f) {
            return Err(EngineError::invalid(
                "permit",
                format!(
                    "permit field `features`: `{f}` is not a feature of set `{}`",
                    set.name
                ),
            ));
        }
    }
    Ok(permit)
}

/// Registers a new permit from its TOML.
pub async fn register(app: &App, by: &Principal, text: &str) -> Result<PermitView> {
    write(app, by, Operation::RegisterPermit, text).await
}

/// Amends a registered permit: the TOML names its id; the new terms are a new version.
pub async fn amend(app: &App, by: &Principal, text: &str) -> Result<PermitView> {
    write(app, by, Operation::AmendPermit, text).await
}

async fn write(app: &App, by: &Principal, op: Operation, text: &str) -> Result<PermitView> {
    let rec = app.record(by, &crate::access::action(op));
    let set = crate::pipeline::load_feature_set(None)?;
    let permit = app.audited(rec.clone(), parse(text, &set)).await?;
    let rec = rec.with(json!({"permit": permit.id}));
    let kind = if op == Operation::RegisterPermit {
        PermitChangeKind::Registered
    } else {
        PermitChangeKind::Amended
    };
    let pass = app
        .check_access(by, op, Target::deployment(), rec.clone())
        .await?;
    let definition = serde_json::to_string(&permit)?;
    let at = app.clock().stamp();
    let result = app
        .store()
        .change_permit(&pass, &permit.id, kind, &definition, None, &at)
        .await
        .map_err(EngineError::from)
        .and_then(|w| written(w, &permit.id));
    app.audited(rec, result).await
}

fn written(w: PermitWritten, id: &str) -> Result<PermitView> {
    match w {
        PermitWritten::Done(row) => PermitView::of(row),
        PermitWritten::Exists => Err(EngineError::AlreadyExists {
            reason: format!("permit `{id}` is registered already: amend it instead"),
        }),
        PermitWritten::Missing => Err(EngineError::NotFound {
            what: "permit",
            id: id.into(),
        }),
        PermitWritten::Revoked => Err(Precondition::PermitRevoked { permit: id.into() }.into()),
    }
}

/// Revokes a permit: from now on nothing runs under it, and a run under it that has not
/// finished releases nothing.
pub async fn revoke(app: &App, by: &Principal, id: &str, reason: &str) -> Result<PermitView> {
    let op = Operation::RevokePermit;
    let reason = tidig_connectors::redact::scrub(reason.trim()).into_owned();
    let rec = app
        .record(by, &crate::access::action(op))
        .with(json!({"permit": id, "reason": reason}));
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
    let pass = app
        .check_access(by, op, Target::deployment(), rec.clone())
        .await?;
    let result = async {
        let history = app.store().permit_history(&pass, id).await?;
        let current = history.last().ok_or_else(|| EngineError::NotFound {
            what: "permit",
            id: id.into(),
        })?;
        let at = app.clock().stamp();
        let w = app
            .store()
            .change_permit(
                &pass,
                id,
                PermitChangeKind::Revoked,
                &current.definition,
                Some(&reason),
                &at,
            )
            .await?;
        written(w, id)
    }
    .await;
    app.audited(rec, result).await
}

/// Every permit as it stands, by id.
pub async fn list(app: &App, by: &Principal) -> Result<Vec<PermitView>> {
    let op = Operation::ListPermits;
    let rec = app.record(by, &crate::access::action(op));
    let pass = app.check_access(by, op, Target::deployment(), rec).await?;
    app.store()
        .permits(&pass)
        .await?
        .into_iter()
        .map(PermitView::of)
        .collect()
}

/// One permit's versions, oldest first.
pub async fn show(app: &App, by: &Principal, id: &str) -> Result<Vec<PermitView>> {
    let op = Operation::GetPermit;
    let rec = app
        .record(by, &crate::access::action(op))
        .with(json!({"permit": id}));
    let pass = app.check_access(by, op, Target::deployment(), rec).await?;
    let rows = app.store().permit_history(&pass, id).await?;
    if rows.is_empty() {
        return Err(EngineError::NotFound {
            what: "permit",
            id: id.into(),
        });
    }
    rows.into_iter().map(PermitView::of).collect()
}
