//! The stop switch (EU AI Act Art 14): one row saying whether scoring is stopped. A
//! change takes the same serialisation as a scoring run's write (`BEGIN IMMEDIATE` on
//! SQLite, the scoring advisory lock on PostgreSQL), and the run checks the switch
//! inside that transaction, so a run either commits before a stop or writes nothing.

use super::{AppendAudit, Store, StoreError};
use crate::access::AccessPass;

/// The switch as stored: the last change.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ScoringSwitch {
    pub stopped: bool,
    /// Why, as the person who switched it said.
    pub reason: String,
    /// Who switched it (a principal id) and how they authenticated.
    pub by: String,
    pub auth: String,
    pub at: String,
    /// The audit entry that records the change.
    pub audit_seq: u64,
}

pub(super) const SWITCH_SQL: &str =
    "SELECT stopped, reason, by_whom, by_auth, at, audit_seq FROM scoring_switch WHERE id = 1";

pub(super) type SwitchRow = (bool, String, String, String, String, i64);

pub(super) fn switch(r: SwitchRow) -> ScoringSwitch {
    ScoringSwitch {
        stopped: r.0,
        reason: r.1,
        by: r.2,
        auth: r.3,
        at: r.4,
        audit_seq: r.5 as u64,
    }
}

/// What switching came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwitchChange {
    /// The switch afterwards (unchanged when it was already where it was asked to be).
    pub state: ScoringSwitch,
    pub changed: bool,
    /// The audit entry of this call.
    pub audit_seq: u64,
}

impl Store {
    /// The stop switch; `None` when it was never used (scoring runs).
    pub async fn scoring_switch(&self) -> Result<Option<ScoringSwitch>, StoreError> {
        let rows: Vec<SwitchRow> = fetch_all!(self, SwitchRow, SWITCH_SQL);
        Ok(rows.into_iter().next().map(switch))
    }

    /// Stops (`stopped`) or resumes scoring with the pass's audit entry, which records
    /// `details` and whether anything changed. Asking for the state it is in changes
    /// nothing (the earlier change stays the record of who and why) but is recorded.
    pub async fn set_scoring_switch(
        &self,
        pass: &AccessPass,
        stopped: bool,
        reason: &str,
        at: &str,
        details: serde_json::Value,
    ) -> Result<SwitchChange, StoreError> {
        let by = pass.principal();
        let postgres = self.backend() == super::Backend::Postgres;
        Ok(in_write_tx!(self, |tx| {
            if postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(super::suggestions::SCORE_LOCK)
                    .execute(&mut *tx)
                    .await?;
            }
            let before: Option<SwitchRow> =
                sqlx::query_as(SWITCH_SQL).fetch_optional(&mut *tx).await?;
            let before = before.map(switch);
            let changed = before.as_ref().map_or(stopped, |b| b.stopped != stopped);
            let mut details = details;
            if let Some(d) = details.as_object_mut() {
                d.insert("changed".into(), changed.into());
            }
            let seq = match pass.pending_record(details) {
                Some(r) => tx.append_audit(std::slice::from_ref(&r)).await?[0],
                None => 0,
            };
            let state = match before {
                Some(b) if !changed => b,
                _ => {
                    let state = ScoringSwitch {
                        stopped,
                        reason: reason.to_string(),
                        by: by.id().to_string(),
                        auth: by.auth.as_str().to_string(),
                        at: at.to_string(),
                        audit_seq: seq,
                    };
                    sqlx::query(
                        "INSERT INTO scoring_switch (id, stopped, reason, by_whom, by_auth, at, \
                         audit_seq) VALUES (1, $1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (id) DO UPDATE SET stopped = excluded.stopped, \
                         reason = excluded.reason, by_whom = excluded.by_whom, \
                         by_auth = excluded.by_auth, at = excluded.at, \
                         audit_seq = excluded.audit_seq",
                    )
                    .bind(state.stopped)
                    .bind(&state.reason)
                    .bind(&state.by)
                    .bind(&state.auth)
                    .bind(&state.at)
                    .bind(seq as i64)
                    .execute(&mut *tx)
                    .await?;
                    state
                }
            };
            SwitchChange {
                state,
                changed,
                audit_seq: seq,
            }
        }))
    }
}
