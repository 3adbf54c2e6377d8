//! What the caseworker service reads and writes: a unit's open suggestions (paged, most
//! urgent first), one suggestion, the vault entry behind it, and decisions. Every
//! function that touches a person's data takes the access check's pass.

use super::suggestions::{stored, StoredRow, STORED_COLUMNS};
use super::{AppendAudit, Store, StoreError};
use crate::access::AccessPass;
use crate::domain::{Band, DecisionOutcome, SuggestionStatus};
use crate::store::StoredSuggestion;
use tidig_governance::audit::EncodedRecord;

/// What the access check needs about a suggestion: no personal data but the pseudonym
/// (which the audit entry names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuggestionTarget {
    pub id: String,
    pub unit: String,
    pub pseudonym: String,
}

/// One listed suggestion.
#[derive(Clone, Debug, PartialEq)]
pub struct SuggestionSummaryRow {
    pub id: String,
    pub pseudonym: String,
    pub unit: String,
    pub score: f64,
    pub band: Band,
    pub created_at: String,
    pub expires_at: String,
}

impl SuggestionSummaryRow {
    /// Where the next page starts after this row.
    pub fn key(&self) -> PageKey {
        PageKey {
            band: self.band.as_str().to_string(),
            score: self.score,
            created_at: self.created_at.clone(),
            id: self.id.clone(),
        }
    }
}

/// A position in the listing order (band and score descending, oldest first, id).
#[derive(Clone, Debug, PartialEq)]
pub struct PageKey {
    /// The band's stored form (`high` sorts after `elevated`: listed descending).
    pub band: String,
    pub score: f64,
    pub created_at: String,
    pub id: String,
}

/// A decision to record.
#[derive(Clone, Debug)]
pub struct DecisionInput<'a> {
    pub id: &'a str,
    pub outcome: DecisionOutcome,
    pub reason_code: &'a str,
    pub note: &'a str,
    pub idempotency_key: &'a str,
    /// SHA-256 of what the request asks (suggestion, outcome, reason, note): a repeated
    /// key with other content is not a repeat.
    pub request_digest: &'a str,
    pub at: &'a str,
    /// Today (`YYYY-MM-DD`): a suggestion expires at the start of its `expires_at` day.
    pub today: &'a str,
}

/// What recording a decision came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecideResult {
    /// Recorded now, with its audit entry.
    Recorded {
        id: String,
        at: String,
        audit_seq: u64,
    },
    /// The same request (same principal, key and content) was recorded before: its
    /// answer.
    Repeated {
        id: String,
        at: String,
        audit_seq: u64,
    },
    /// Someone decided it already (or this key was used for another request).
    AlreadyDecided {
        by_key: bool,
    },
    /// Not open: superseded, withdrawn or expired.
    NotOpen {
        status: SuggestionStatus,
    },
    /// Passed its expiry date.
    Expired {
        expires_at: String,
    },
    NotFound,
}

/// What a group commit wrote.
#[derive(Clone, Debug)]
pub struct Committed {
    /// The records' sequence numbers, in order.
    pub seqs: Vec<u64>,
    /// What each decision came to, in the order given.
    pub results: Vec<DecideResult>,
    /// The log's head after the batch; `None` when it appended nothing.
    pub head: Option<super::AuditHead>,
}

/// A decision ready to record, owned so that it can wait in the audit writer's queue.
/// Only an access pass for a suggestion makes one.
#[derive(Clone, Debug)]
pub struct Decision {
    suggestion: String,
    unit: String,
    by: String,
    auth: &'static str,
    /// The pass's audit entry; `None` when the app records nothing (a benchmark's
    /// baseline).
    record: Option<EncodedRecord>,
    id: String,
    outcome: DecisionOutcome,
    reason_code: String,
    note: String,
    idempotency_key: String,
    request_digest: String,
    at: String,
    today: String,
}

impl Decision {
    /// The decision `d` on the pass's suggestion, its audit entry carrying `details`;
    /// `None` when the pass names no suggestion.
    pub fn new(
        pass: &AccessPass,
        d: &DecisionInput<'_>,
        details: serde_json::Value,
    ) -> Option<Decision> {
        let by = pass.principal();
        Some(Decision {
            suggestion: pass.suggestion()?.to_string(),
            unit: pass.unit().to_string(),
            by: by.id().to_string(),
            auth: by.auth.as_str(),
            record: pass.pending_record(details).map(EncodedRecord::new),
            id: d.id.to_string(),
            outcome: d.outcome,
            reason_code: d.reason_code.to_string(),
            note: d.note.to_string(),
            idempotency_key: d.idempotency_key.to_string(),
            request_digest: d.request_digest.to_string(),
            at: d.at.to_string(),
            today: d.today.to_string(),
        })
    }

    pub fn suggestion(&self) -> &str {
        &self.suggestion
    }

    pub fn unit(&self) -> &str {
        &self.unit
    }

    /// Who decides and with which idempotency key (unique per principal).
    pub fn key(&self) -> (&str, &str) {
        (&self.by, &self.idempotency_key)
    }
}

const SUMMARY_COLUMNS: &str =
    "s.id, s.pseudonym, s.unit, s.score, s.band, s.created_at, s.expires_at";

type SummaryTuple = (String, String, String, f64, String, String, String);

fn summary(r: SummaryTuple) -> Result<SuggestionSummaryRow, StoreError> {
    Ok(SuggestionSummaryRow {
        band: Band::parse(&r.4).ok_or_else(|| StoreError::Corrupt {
            what: "band",
            value: r.4.clone(),
        })?,
        id: r.0,
        pseudonym: r.1,
        unit: r.2,
        score: r.3,
        created_at: r.5,
        expires_at: r.6,
    })
}

impl Store {
    /// The suggestion's unit and pseudonym, for the access check.
    pub async fn suggestion_target(
        &self,
        id: &str,
    ) -> Result<Option<SuggestionTarget>, StoreError> {
        let rows: Vec<(String, String)> = fetch_all!(
            self,
            (String, String),
            "SELECT s.unit, s.pseudonym FROM suggestions s WHERE s.id = $1",
            id
        );
        Ok(rows
            .into_iter()
            .next()
            .map(|(unit, pseudonym)| SuggestionTarget {
                id: id.to_string(),
                unit,
                pseudonym,
            }))
    }

    /// One page of the pass's unit's open, unexpired suggestions after `after`, most
    /// urgent first: high band before elevated, higher score first, older first. Read in
    /// the order of the `suggestions_unit_queue` index, so a page costs its own rows.
    pub async fn open_page(
        &self,
        pass: &AccessPass,
        today: &str,
        after: Option<&PageKey>,
        limit: usize,
    ) -> Result<Vec<SuggestionSummaryRow>, StoreError> {
        let first = after.is_none();
        let start = after.cloned().unwrap_or(PageKey {
            band: String::new(),
            score: 0.0,
            created_at: String::new(),
            id: String::new(),
        });
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM suggestions s \
             WHERE s.unit = $1 AND s.status = 'open' AND s.expires_at > $2 \
               AND ($3 OR s.band < $4 \
                 OR (s.band = $4 AND s.score < $5) \
                 OR (s.band = $4 AND s.score = $5 AND s.created_at > $6) \
                 OR (s.band = $4 AND s.score = $5 AND s.created_at = $6 AND s.id > $7)) \
             ORDER BY s.band DESC, s.score DESC, s.created_at, s.id LIMIT $8"
        );
        let rows: Vec<SummaryTuple> = fetch_all!(
            self,
            SummaryTuple,
            &sql,
            pass.unit(),
            today,
            first,
            &start.band,
            start.score,
            &start.created_at,
            &start.id,
            limit as i64
        );
        rows.into_iter().map(summary).collect()
    }

    /// The pass's unit's open suggestions written after write position `after`, in the
    /// order they were written, each with its position (what a watch sends next).
    pub async fn open_since(
        &self,
        pass: &AccessPass,
        today: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, SuggestionSummaryRow)>, StoreError> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS}, s.write_seq FROM suggestions s \
             WHERE s.unit = $1 AND s.write_seq > $2 AND s.status = 'open' AND s.expires_at > $3 \
             ORDER BY s.write_seq LIMIT $4"
        );
        type Row = (String, String, String, f64, String, String, String, i64);
        let rows: Vec<Row> = fetch_all!(self, Row, &sql, pass.unit(), after, today, limit as i64);
        rows.into_iter()
            .map(|r| Ok((r.7, summary((r.0, r.1, r.2, r.3, r.4, r.5, r.6))?)))
            .collect()
    }

    /// The latest write position: where a new watch starts.
    pub async fn latest_write_seq(&self, _pass: &AccessPass) -> Result<i64, StoreError> {
        let rows: Vec<(i64,)> = fetch_all!(
            self,
            (i64,),
            "SELECT COALESCE(MAX(write_seq), 0) FROM suggestions"
        );
        Ok(rows.first().map_or(0, |r| r.0))
    }

    /// The pass's suggestion in full.
    pub async fn suggestion(
        &self,
        pass: &AccessPass,
    ) -> Result<Option<StoredSuggestion>, StoreError> {
        let Some(id) = pass.suggestion() else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT {STORED_COLUMNS} FROM suggestions s \
             WHERE s.id = $1"
        );
        let rows: Vec<StoredRow> = fetch_all!(self, StoredRow, &sql, id);
        rows.into_iter().next().map(stored).transpose()
    }

    /// The sealed national ID of the pass's person: `(nonce, ciphertext)`.
    pub async fn sealed_identity(
        &self,
        pass: &AccessPass,
    ) -> Result<Option<(i64, Vec<u8>, Vec<u8>)>, StoreError> {
        let Some(id) = pass.suggestion() else {
            return Ok(None);
        };
        let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = fetch_all!(
            self,
            (i64, Vec<u8>, Vec<u8>),
            "SELECT v.person_id, v.nonce, v.ciphertext FROM suggestions s \
             JOIN vault v ON v.person_id = s.person_id WHERE s.id = $1",
            id
        );
        Ok(rows.into_iter().next())
    }

    /// One write transaction for a group commit: `decisions` first, each with its own
    /// audit entry, then the `records`. The audit entries of the batch are one
    /// contiguous range starting at the head the transaction locked.
    ///
    /// A decision is recorded only on an open, unexpired, undecided suggestion, unless it
    /// is the same request repeated. Writes are serialised (`BEGIN IMMEDIATE` on SQLite;
    /// on PostgreSQL row locks on the suggestions, taken in id order, then the audit
    /// head, and the decision rows are inserted only under the head's lock), and the
    /// unique keys are the backstop: a decision that meets one is answered as already
    /// decided, and the rest of the batch commits. Two decisions of one batch must not
    /// name the same suggestion or the same principal's idempotency key (the audit
    /// writer defers the later one to the next batch).
    pub async fn commit_batch(
        &self,
        records: &[EncodedRecord],
        decisions: &[Decision],
    ) -> Result<Committed, StoreError> {
        let postgres = self.backend() == super::Backend::Postgres;
        let lock_sql = if postgres {
            "SELECT status, expires_at FROM suggestions WHERE id = $1 FOR UPDATE"
        } else {
            "SELECT status, expires_at FROM suggestions WHERE id = $1"
        };
        let mut order: Vec<usize> = (0..decisions.len()).collect();
        order.sort_by(|a, b| decisions[*a].suggestion.cmp(&decisions[*b].suggestion));
        let result = in_write_tx!(self, |tx| {
            let mut new_head = None;
            let mut results: Vec<DecideResult> = vec![DecideResult::NotFound; decisions.len()];
            // The decisions that may be recorded, in id order.
            let mut open: Vec<usize> = Vec::new();
            for &i in &order {
                let d = &decisions[i];
                let row: Option<(String, String)> = sqlx::query_as(lock_sql)
                    .bind(&d.suggestion)
                    .fetch_optional(&mut *tx)
                    .await?;
                let earlier: Option<(String, String, String, String, i64, String)> =
                    sqlx::query_as(
                        "SELECT id, decided_by, idempotency_key, decided_at, audit_seq, \
                         request_digest FROM decisions \
                         WHERE suggestion_id = $1 OR (decided_by = $2 AND idempotency_key = $3)",
                    )
                    .bind(&d.suggestion)
                    .bind(&d.by)
                    .bind(&d.idempotency_key)
                    .fetch_optional(&mut *tx)
                    .await?;
                results[i] = match (row, earlier) {
                    (None, _) => DecideResult::NotFound,
                    (_, Some((id, who, key, at, seq, digest))) => {
                        let by_key = who == d.by && key == d.idempotency_key;
                        if by_key && digest == d.request_digest {
                            DecideResult::Repeated {
                                id,
                                at,
                                audit_seq: seq as u64,
                            }
                        } else {
                            DecideResult::AlreadyDecided { by_key }
                        }
                    }
                    (Some((status, expires_at)), None) => {
                        let status = SuggestionStatus::parse(&status).ok_or_else(|| {
                            StoreError::Corrupt {
                                what: "suggestion status",
                                value: status.clone(),
                            }
                        })?;
                        if status != SuggestionStatus::Open {
                            DecideResult::NotOpen { status }
                        } else if expires_at.as_str() <= d.today.as_str() {
                            DecideResult::Expired { expires_at }
                        } else {
                            open.push(i);
                            continue;
                        }
                    }
                };
            }
            let mut seqs = Vec::new();
            if !open.is_empty() || !records.is_empty() {
                let head = tx.lock_audit_head().await?;
                let mut next = head.size;
                let mut entries: Vec<EncodedRecord> = Vec::new();
                for &i in &open {
                    let d = &decisions[i];
                    let seq = if d.record.is_some() { next } else { 0 };
                    let inserted = sqlx::query(
                        "INSERT INTO decisions (id, suggestion_id, unit, outcome, reason_code, \
                         note, decided_by, decided_auth, idempotency_key, request_digest, \
                         decided_at, audit_seq) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(&d.id)
                    .bind(&d.suggestion)
                    .bind(&d.unit)
                    .bind(d.outcome.as_str())
                    .bind(&d.reason_code)
                    .bind(&d.note)
                    .bind(&d.by)
                    .bind(d.auth)
                    .bind(&d.idempotency_key)
                    .bind(&d.request_digest)
                    .bind(&d.at)
                    .bind(seq as i64)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if inserted == 0 {
                        results[i] = DecideResult::AlreadyDecided { by_key: true };
                        continue;
                    }
                    sqlx::query("UPDATE suggestions SET status = $1 WHERE id = $2")
                        .bind(SuggestionStatus::Decided.as_str())
                        .bind(&d.suggestion)
                        .execute(&mut *tx)
                        .await?;
                    if let Some(r) = &d.record {
                        entries.push(r.clone());
                        next += 1;
                    }
                    results[i] = DecideResult::Recorded {
                        id: d.id.clone(),
                        at: d.at.clone(),
                        audit_seq: seq,
                    };
                }
                let decided = entries.len();
                entries.extend_from_slice(records);
                let (all, after) = tx.append_after(head, &entries).await?;
                seqs = all;
                seqs.drain(..decided);
                new_head = Some(after);
            }
            Committed {
                seqs,
                results,
                head: new_head,
            }
        });
        Ok(result)
    }
}
