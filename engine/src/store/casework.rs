//! What the caseworker service reads and writes: a unit's open suggestions (paged, most
//! urgent first), one suggestion, the vault entry behind it, and decisions. Every
//! function that touches a person's data takes the access check's pass.

use super::suggestions::{stored, StoredRow, STORED_COLUMNS};
use super::{AppendAudit, Store, StoreError};
use crate::access::AccessPass;
use crate::domain::{Band, DecisionOutcome, SuggestionStatus};
use crate::store::StoredSuggestion;

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

    /// Records a decision on the pass's suggestion with the pass's audit entry, in one
    /// transaction: the suggestion must be open and unexpired and undecided, unless this
    /// is the same request repeated. Writes are serialised (`BEGIN IMMEDIATE` on
    /// SQLite, a row lock on PostgreSQL), and the unique keys are the backstop.
    pub async fn record_decision(
        &self,
        pass: &AccessPass,
        d: &DecisionInput<'_>,
        details: serde_json::Value,
    ) -> Result<DecideResult, StoreError> {
        let Some(suggestion) = pass.suggestion() else {
            return Ok(DecideResult::NotFound);
        };
        // None only when the app records nothing (a benchmark's baseline).
        let record = pass.pending_record(details);
        let by = pass.principal();
        let postgres = self.backend() == super::Backend::Postgres;
        let lock_sql = if postgres {
            "SELECT status, expires_at FROM suggestions WHERE id = $1 FOR UPDATE"
        } else {
            "SELECT status, expires_at FROM suggestions WHERE id = $1"
        };
        let result = in_write_tx!(self, |tx| {
            let row: Option<(String, String)> = sqlx::query_as(lock_sql)
                .bind(suggestion)
                .fetch_optional(&mut *tx)
                .await?;
            let earlier: Option<(String, String, String, String, i64, String)> = sqlx::query_as(
                "SELECT id, decided_by, idempotency_key, decided_at, audit_seq, request_digest \
                 FROM decisions WHERE suggestion_id = $1 OR (decided_by = $2 AND idempotency_key = $3)",
            )
            .bind(suggestion)
            .bind(by.id())
            .bind(d.idempotency_key)
            .fetch_optional(&mut *tx)
            .await?;
            match (row, earlier) {
                (None, _) => DecideResult::NotFound,
                (_, Some((id, who, key, at, seq, digest))) => {
                    if who == by.id() && key == d.idempotency_key && digest == d.request_digest {
                        DecideResult::Repeated {
                            id,
                            at,
                            audit_seq: seq as u64,
                        }
                    } else {
                        DecideResult::AlreadyDecided {
                            by_key: who == by.id() && key == d.idempotency_key,
                        }
                    }
                }
                (Some((status, expires_at)), None) => {
                    let status =
                        SuggestionStatus::parse(&status).ok_or_else(|| StoreError::Corrupt {
                            what: "suggestion status",
                            value: status.clone(),
                        })?;
                    if status != SuggestionStatus::Open {
                        DecideResult::NotOpen { status }
                    } else if expires_at.as_str() <= d.today {
                        DecideResult::Expired { expires_at }
                    } else {
                        let seq = match &record {
                            Some(r) => tx.append_audit(std::slice::from_ref(r)).await?[0],
                            None => 0,
                        };
                        sqlx::query(
                            "INSERT INTO decisions (id, suggestion_id, unit, outcome, reason_code, note, \
                             decided_by, decided_auth, idempotency_key, request_digest, decided_at, audit_seq) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                        )
                        .bind(d.id)
                        .bind(suggestion)
                        .bind(pass.unit())
                        .bind(d.outcome.as_str())
                        .bind(d.reason_code)
                        .bind(d.note)
                        .bind(by.id())
                        .bind(by.auth.as_str())
                        .bind(d.idempotency_key)
                        .bind(d.request_digest)
                        .bind(d.at)
                        .bind(seq as i64)
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query("UPDATE suggestions SET status = $1 WHERE id = $2")
                            .bind(SuggestionStatus::Decided.as_str())
                            .bind(suggestion)
                            .execute(&mut *tx)
                            .await?;
                        DecideResult::Recorded {
                            id: d.id.to_string(),
                            at: d.at.to_string(),
                            audit_seq: seq,
                        }
                    }
                }
            }
        });
        Ok(result)
    }
}
