//! The suggestions aggregate: suggestions for receiving units and the record of every
//! scoring run with its oversight counts (how many persons each rule excluded or
//! suppressed; never who).

use std::collections::{HashMap, HashSet};

use tidig_governance::audit::Record;

use super::{AppendAudit, Store, StoreError};
use crate::domain::{Band, SuggestionStatus};

/// A suggestion to store; its explanation parts are JSON text.
#[derive(Clone, Debug)]
pub struct SuggestionRow<'a> {
    pub id: &'a str,
    pub person_id: i64,
    pub unit: &'a str,
    pub score: f64,
    pub band: Band,
    pub factors_json: String,
    pub interventions_json: String,
    pub trace_json: String,
    pub model_id: &'a str,
    pub rules_version: &'a str,
    pub feature_set_version: &'a str,
    pub expires_at: &'a str,
}

/// Who ran a scoring run, and when.
#[derive(Clone, Debug)]
pub struct ScoringRunRecord<'a> {
    pub day: i64,
    pub model_id: &'a str,
    pub rules_version: &'a str,
    pub feature_set_version: &'a str,
    pub at: &'a str,
    pub by: &'a str,
    pub auth: &'a str,
}

/// What writing a date's suggestions changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteCounts {
    pub new: usize,
    pub unchanged: usize,
    pub superseded: usize,
    /// Ids of the candidates written (within capacity), in priority order.
    pub kept: Vec<String>,
    /// Candidates over their unit's weekly capacity, per unit.
    pub deferred: std::collections::BTreeMap<String, usize>,
}

/// Each unit's weekly capacity and the ISO week a scoring date falls in.
#[derive(Clone, Debug)]
pub struct Capacity {
    /// First day (days since the epoch) of the week, and the day after its last.
    pub week: (i64, i64),
    pub per_unit: HashMap<String, usize>,
}

/// The PostgreSQL advisory lock key that serialises suggestion writes ("tidig-sc").
pub(super) const SCORE_LOCK: i64 = 0x7469_6469_672d_7363;

/// A stored suggestion with its person's pseudonym; explanation parts as JSON text.
#[derive(Clone, Debug)]
pub struct StoredSuggestion {
    pub pseudonym: String,
    pub id: String,
    pub day: i64,
    pub person_id: i64,
    pub unit: String,
    pub score: f64,
    pub band: Band,
    pub factors_json: String,
    pub interventions_json: String,
    pub trace_json: String,
    pub model_id: String,
    pub rules_version: String,
    pub feature_set_version: String,
    pub expires_at: String,
    pub status: SuggestionStatus,
    /// When the scoring run wrote it.
    pub created_at: String,
}

/// What a scoring run's write came to.
#[derive(Debug)]
pub enum Written {
    Suggestions(WriteCounts),
    /// Scoring was stopped when the run came to write: it wrote nothing.
    Stopped(super::ScoringSwitch),
}

impl Store {
    /// Writes one date's suggestions in one transaction, unless scoring is stopped. `rows` are candidates in
    /// priority order (highest need first); each unit takes them up to its weekly
    /// capacity, counting the open suggestions of the week's other dates as they stand
    /// inside this transaction, so two runs at once can never exceed it together (writes
    /// are serialised: `BEGIN IMMEDIATE` on SQLite, an advisory lock on PostgreSQL).
    /// Identical ones stay (with their creation time), earlier open ones not produced
    /// again are superseded, new ones are inserted; then the run is recorded with the
    /// report `report` renders from what changed.
    pub async fn write_suggestions(
        &self,
        run: &ScoringRunRecord<'_>,
        rows: &[SuggestionRow<'_>],
        capacity: &Capacity,
        report: impl FnOnce(&WriteCounts) -> String,
        audit: impl FnOnce(&WriteCounts) -> Record,
    ) -> Result<Written, StoreError> {
        let mut counts = WriteCounts::default();
        let mut report = Some(report);
        let mut audit = Some(audit);
        let postgres = self.backend() == super::Backend::Postgres;
        in_write_tx!(self, |tx| {
            if postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(SCORE_LOCK)
                    .execute(&mut *tx)
                    .await?;
            }
            // The stop switch, under the lock its changes take: stopped now means
            // nothing is written.
            let switch: Option<super::switch::SwitchRow> =
                sqlx::query_as(super::switch::SWITCH_SQL)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(stop) = switch.map(super::switch::switch).filter(|s| s.stopped) {
                tx.rollback().await?;
                return Ok(Written::Stopped(stop));
            }
            let used: Vec<(String, i64)> = sqlx::query_as(
                "SELECT unit, COUNT(*) FROM suggestions WHERE as_of >= $1 AND as_of < $2 \
                 AND as_of <> $3 AND status = $4 GROUP BY unit",
            )
            .bind(capacity.week.0)
            .bind(capacity.week.1)
            .bind(run.day)
            .bind(SuggestionStatus::Open.as_str())
            .fetch_all(&mut *tx)
            .await?;
            let mut left: HashMap<&str, i64> = capacity
                .per_unit
                .iter()
                .map(|(u, c)| (u.as_str(), *c as i64))
                .collect();
            for (unit, n) in &used {
                if let Some(l) = left.get_mut(unit.as_str()) {
                    *l -= n;
                }
            }
            let rows: Vec<&SuggestionRow<'_>> = rows
                .iter()
                .filter(|s| {
                    let l = left.entry(s.unit).or_insert(0);
                    if *l > 0 {
                        *l -= 1;
                        true
                    } else {
                        *counts.deferred.entry(s.unit.to_string()).or_default() += 1;
                        false
                    }
                })
                .collect();
            counts.kept = rows.iter().map(|s| s.id.to_string()).collect();
            let existing: Vec<(String, String)> =
                sqlx::query_as("SELECT id, status FROM suggestions WHERE as_of = $1")
                    .bind(run.day)
                    .fetch_all(&mut *tx)
                    .await?;
            let existing: HashMap<String, String> = existing.into_iter().collect();
            let new_ids: HashSet<&str> = rows.iter().map(|s| s.id).collect();
            // Inside the serialised transaction: grows in commit order (watchers).
            let mut write_seq: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(write_seq), 0) FROM suggestions")
                    .fetch_one(&mut *tx)
                    .await?;
            for (id, status) in &existing {
                if status == SuggestionStatus::Open.as_str() && !new_ids.contains(id.as_str()) {
                    sqlx::query("UPDATE suggestions SET status = $1 WHERE id = $2")
                        .bind(SuggestionStatus::Superseded.as_str())
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    counts.superseded += 1;
                }
            }
            for s in &rows {
                if existing.contains_key(s.id) {
                    counts.unchanged += 1;
                    continue;
                }
                sqlx::query(
                    "INSERT INTO suggestions (id, as_of, person_id, unit, score, band, factors, \
                     interventions, rule_trace, model_id, rules_version, feature_set_version, \
                     created_at, expires_at, status, write_seq, pseudonym) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                     (SELECT pseudonym FROM persons WHERE id = $3))",
                )
                .bind(s.id)
                .bind(run.day)
                .bind(s.person_id)
                .bind(s.unit)
                .bind(s.score)
                .bind(s.band.as_str())
                .bind(&s.factors_json)
                .bind(&s.interventions_json)
                .bind(&s.trace_json)
                .bind(s.model_id)
                .bind(s.rules_version)
                .bind(s.feature_set_version)
                .bind(run.at)
                .bind(s.expires_at)
                .bind(SuggestionStatus::Open.as_str())
                .bind({
                    write_seq += 1;
                    write_seq
                })
                .execute(&mut *tx)
                .await?;
                counts.new += 1;
            }
            let text = report.take().map(|r| r(&counts)).unwrap_or_default();
            sqlx::query(
                "INSERT INTO scoring_runs (as_of, model_id, rules_version, feature_set_version, at, by_whom, by_auth, report) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(run.day)
            .bind(run.model_id)
            .bind(run.rules_version)
            .bind(run.feature_set_version)
            .bind(run.at)
            .bind(run.by)
            .bind(run.auth)
            .bind(text)
            .execute(&mut *tx)
            .await?;
            if let Some(record) = audit.take().map(|a| a(&counts)) {
                tx.append_audit(&[record]).await?;
            }
        });
        Ok(Written::Suggestions(counts))
    }

    /// The open suggestions of a date with their pseudonyms, highest score first.
    pub async fn open_suggestions(&self, day: i64) -> Result<Vec<StoredSuggestion>, StoreError> {
        let sql = format!(
            "SELECT {STORED_COLUMNS} FROM suggestions s \
             WHERE s.as_of = $1 AND s.status = $2 ORDER BY s.score DESC, s.person_id"
        );
        let rows: Vec<StoredRow> =
            fetch_all!(self, StoredRow, &sql, day, SuggestionStatus::Open.as_str());
        rows.into_iter().map(stored).collect()
    }
}

/// The columns of a [`StoredSuggestion`] (from suggestion `s`, which carries its
/// person's pseudonym).
pub(super) const STORED_COLUMNS: &str = "s.id, s.as_of, s.person_id, s.unit, s.score, s.band, \
     s.factors, s.interventions, s.rule_trace, s.model_id, s.rules_version, \
     s.feature_set_version, s.expires_at, s.status, s.pseudonym, s.created_at";

pub(super) type StoredRow = (
    String,
    i64,
    i64,
    String,
    f64,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
);

/// A row of [`STORED_COLUMNS`], its band and status parsed.
pub(super) fn stored(r: StoredRow) -> Result<StoredSuggestion, StoreError> {
    Ok(StoredSuggestion {
        band: Band::parse(&r.5).ok_or_else(|| StoreError::Corrupt {
            what: "band",
            value: r.5.clone(),
        })?,
        status: SuggestionStatus::parse(&r.13).ok_or_else(|| StoreError::Corrupt {
            what: "suggestion status",
            value: r.13.clone(),
        })?,
        id: r.0,
        day: r.1,
        person_id: r.2,
        unit: r.3,
        score: r.4,
        factors_json: r.6,
        interventions_json: r.7,
        trace_json: r.8,
        model_id: r.9,
        rules_version: r.10,
        feature_set_version: r.11,
        expires_at: r.12,
        pseudonym: r.14,
        created_at: r.15,
    })
}
