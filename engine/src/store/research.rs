//! Research runs: released or withheld, decided in the transaction that records them
//! against the permit as it stands then.

use super::{AppendAudit, Store, StoreError};
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
    /// The aggregates to release (JSON).
    pub results: &'a str,
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
    /// `released` or `withheld`.
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
            let reason = match &current {
                None => Some("the permit is no longer registered".to_string()),
                Some((_, change, _)) if change == "revoked" => {
                    Some("the permit was revoked before the run finished".into())
                }
                Some((v, _, _)) if *v != run.permit_version => Some(format!(
                    "the permit was amended (version {v}) before the run finished"
                )),
                Some((_, _, definition)) => {
                    let valid: Option<serde_json::Value> = serde_json::from_str(definition).ok();
                    let to = valid
                        .as_ref()
                        .and_then(|d| d["valid"]["to"].as_str().map(str::to_string));
                    match to {
                        Some(to) if run.today > to.as_str() => Some(format!(
                            "the permit expired on {to} before the run finished"
                        )),
                        _ => None,
                    }
                }
            };
            let state = if reason.is_none() {
                "released"
            } else {
                "withheld"
            };
            let results = reason.is_none().then_some(run.results);
            let seq = match pass.pending_record(serde_json::json!({
                "run": run.id, "state": state, "reason": reason, "read": run.read,
            })) {
                Some(r) => tx.append_audit(std::slice::from_ref(&r)).await?[0],
                None => 0,
            };
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
