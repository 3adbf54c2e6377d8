//! Research runs: released, withheld or failed, decided in the transaction that records
//! them against the permit as it stands then. A model trained under a permit is
//! registered by that same transaction, and only when the run is released.

use tidig_governance::audit::Outcome;

use super::{AppendAudit, NewModel, Store, StoreError};
use crate::access::AccessPass;

/// A finished run to record.
#[derive(Clone, Debug)]
pub struct NewResearchRun<'a> {
    pub id: &'a str,
    pub permit_id: &'a str,
    /// The permit version the run started under.
    pub permit_version: i64,
    pub kind: &'a str,
    /// Days since the epoch.
    pub as_of: i64,
    pub started_at: &'a str,
    pub finished_at: &'a str,
    /// Today, `YYYY-MM-DD`: the permit must still be valid on it.
    pub today: &'a str,
    /// The aggregates to release (JSON); `None` when the run stopped before it had any.
    pub results: Option<&'a str>,
    /// Why the run stopped early, when it did (the permit changed while it ran).
    pub stopped: Option<String>,
    /// How the run failed, when it did (recorded as `failed`, nothing released).
    pub failure: Option<Outcome>,
    /// The model a training run registers when it is released.
    pub model: Option<NewModel<'a>>,
    /// What the run read (features, snapshot dates, persons): the audit entry lists it.
    pub read: serde_json::Value,
}

/// A recorded run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ResearchRunRow {
    pub id: String,
    pub permit_id: String,
    pub permit_version: i64,
    pub principal: String,
    pub kind: String,
    pub as_of: i64,
    /// `released`, `withheld` or `failed`.
    pub state: String,
    pub reason: Option<String>,
    pub started_at: String,
    pub finished_at: String,
    /// The aggregates, when released.
    pub results: Option<String>,
    pub audit_seq: i64,
}

type Row = (
    String,
    String,
    i64,
    String,
    String,
    i64,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    i64,
);

const COLUMNS: &str = "id, permit_id, permit_version, principal, kind, as_of, state, reason, \
                       started_at, finished_at, results, audit_seq";

fn row(r: Row) -> ResearchRunRow {
    ResearchRunRow {
        id: r.0,
        permit_id: r.1,
        permit_version: r.2,
        principal: r.3,
        kind: r.4,
        as_of: r.5,
        state: r.6,
        reason: r.7,
        started_at: r.8,
        finished_at: r.9,
        results: r.10,
        audit_seq: r.11,
    }
}

impl Store {
    /// Records a finished run: released if the permit's newest version is still the one
    /// it started under, not revoked, and valid `today`; withheld (results dropped) with
    /// the reason otherwise. The run's audit entry commits with it.
    pub async fn record_research_run(
        &self,
        pass: &AccessPass,
        run: &NewResearchRun<'_>,
    ) -> Result<ResearchRunRow, StoreError> {
        let lock = match self {
            Store::Sqlite(_) => "",
            Store::Postgres(_) => " FOR UPDATE",
        };
        let latest = format!(
            "SELECT version, change, definition FROM permits WHERE id = $1 \
             ORDER BY version DESC LIMIT 1{lock}"
        );
        Ok(in_write_tx!(self, |tx| {
            let current: Option<(i64, String, String)> = sqlx::query_as(&latest)
                .bind(run.permit_id)
                .fetch_optional(&mut *tx)
                .await?;
            let permit = withheld_reason(current.as_ref(), run.permit_version, run.today);
            let (state, reason) = match (&run.failure, permit, &run.stopped, run.results) {
                (Some(Outcome::Failed { reason, .. } | Outcome::Denied { reason, .. }), ..) => {
                    ("failed", Some(reason.clone()))
                }
                (_, Some(why), ..) => ("withheld", Some(why)),
                (_, None, Some(why), _) => ("withheld", Some(why.clone())),
                (_, None, None, None) => ("withheld", Some("the run released nothing".into())),
                _ => ("released", None),
            };
            let results = if state == "released" {
                run.results
            } else {
                None
            };
            let model = run.model.as_ref().filter(|_| state == "released");
            let registered = match model {
                Some(m) => insert_model_rows!(tx, m) > 0,
                None => false,
            };
            let mut records = Vec::new();
            if let Some(r) = pass.pending_record(serde_json::json!({
                "run": run.id, "state": state, "reason": reason, "read": run.read,
                "model": model.map(|m| m.id),
            })) {
                records.push(match &run.failure {
                    Some(o) => r.with_outcome(o.clone()),
                    None => r,
                });
            }
            let own = !records.is_empty();
            if let Some(m) = model {
                records.push(m.audit.clone().with(serde_json::json!({"new": registered})));
            }
            let seqs = if records.is_empty() {
                Vec::new()
            } else {
                tx.append_audit(&records).await?
            };
            let seq = if own { seqs[0] } else { 0 };
            let seq = i64::try_from(seq).unwrap_or(i64::MAX);
            let principal = pass.principal().id().to_string();
            sqlx::query(&format!(
                "INSERT INTO research_runs ({COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ))
            .bind(run.id)
            .bind(run.permit_id)
            .bind(run.permit_version)
            .bind(&principal)
            .bind(run.kind)
            .bind(run.as_of)
            .bind(state)
            .bind(&reason)
            .bind(run.started_at)
            .bind(run.finished_at)
            .bind(results)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
            ResearchRunRow {
                id: run.id.into(),
                permit_id: run.permit_id.into(),
                permit_version: run.permit_version,
                principal,
                kind: run.kind.into(),
                as_of: run.as_of,
                state: state.into(),
                reason,
                started_at: run.started_at.into(),
                finished_at: run.finished_at.into(),
                results: results.map(Into::into),
                audit_seq: seq,
            }
        }))
    }

    /// Why a run under version `version` of permit `permit_id` may no longer release
    /// anything `today` (`YYYY-MM-DD`), if so: the check a run makes between its stages.
    pub async fn research_permit_check(
        &self,
        permit_id: &str,
        version: i64,
        today: &str,
    ) -> Result<Option<String>, StoreError> {
        let current: Option<(i64, String, String)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT version, change, definition FROM permits WHERE id = $1 \
             ORDER BY version DESC LIMIT 1"
        )
        .bind(permit_id)
        .fetch_optional(p)
        .await?);
        Ok(withheld_reason(current.as_ref(), version, today))
    }

    /// A recorded run, if any.
    pub async fn research_run(
        &self,
        _pass: &AccessPass,
        id: &str,
    ) -> Result<Option<ResearchRunRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM research_runs WHERE id = $1");
        let r: Option<Row> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(p)
            .await?);
        Ok(r.map(row))
    }
}

/// Why a run that started under `version` may release nothing, given the permit's newest
/// row (version, change, definition) and `today`: gone, revoked, amended or expired.
fn withheld_reason(
    current: Option<&(i64, String, String)>,
    version: i64,
    today: &str,
) -> Option<String> {
    match current {
        None => Some("the permit is no longer registered".to_string()),
        Some((_, change, _)) if change == "revoked" => {
            Some("the permit was revoked before the run finished".into())
        }
        Some((v, _, _)) if *v != version => Some(format!(
            "the permit was amended (version {v}) before the run finished"
        )),
        Some((_, _, definition)) => {
            let d: Option<serde_json::Value> = serde_json::from_str(definition).ok();
            let to = d.as_ref().and_then(|d| d["valid"]["to"].as_str());
            match to {
                Some(to) if today > to => Some(format!(
                    "the permit expired on {to} before the run finished"
                )),
                _ => None,
            }
        }
    }
}
