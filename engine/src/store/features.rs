//! The feature aggregate: the code list, events streamed by time window, and the stored
//! feature vectors with their builds.

use std::collections::BTreeMap;

use tidig_governance::audit::Record;

use super::audit::AppendAudit;
use super::{Backend, Store, StoreError};

/// One event as the feature build reads it.
#[derive(Clone, Copy, Debug, PartialEq, sqlx::FromRow)]
pub struct EventRow {
    pub person_id: i64,
    pub kind: i64,
    pub code_id: i64,
    pub detail_id: Option<i64>,
    pub status: i64,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub value: Option<f64>,
}

/// One feature vector to store: values, protected attributes and label, as JSON text.
#[derive(Clone, Debug)]
pub struct VectorRow {
    pub person: i64,
    pub values_json: String,
    pub protected_json: String,
    pub label: Option<f64>,
}

/// A stored vector, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredVector {
    pub values: Vec<Option<f64>>,
    pub protected: BTreeMap<String, Option<String>>,
    pub label: Option<f64>,
}

/// The record of one feature build.
#[derive(Clone, Debug)]
pub struct BuildRecord<'a> {
    pub feature_set: &'a str,
    pub day: i64,
    pub persons: i64,
    pub built_at: &'a str,
    pub report_json: &'a str,
}

impl Store {
    /// Every code: (id, system, code).
    pub async fn codes(&self) -> Result<Vec<(i64, String, String)>, StoreError> {
        Ok(fetch_all!(
            self,
            (i64, String, String),
            "SELECT id, system, code FROM codes"
        ))
    }

    /// Streams the events that start in `(after, up_to]` (seconds) through `each`,
    /// without holding them.
    pub async fn for_each_event(
        &self,
        after: i64,
        up_to: i64,
        mut each: impl FnMut(EventRow),
    ) -> Result<(), StoreError> {
        for_each_row!(
            self,
            EventRow,
            "SELECT person_id, kind, code_id, detail_id, status, start_time, end_time, value \
             FROM events WHERE start_time > $1 AND start_time <= $2",
            [after, up_to],
            |row| {
                each(row);
            }
        );
        Ok(())
    }

    /// The start of the latest event (seconds), if any: how far the data reach.
    pub async fn latest_event_time(&self) -> Result<Option<i64>, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_scalar(
            "SELECT MAX(start_time) FROM events"
        )
        .fetch_one(p)
        .await?))
    }

    /// Replaces the vectors of (`version`, `day`) with `rows` and registers the set's
    /// definition, in one transaction.
    #[expect(
        clippy::too_many_arguments,
        reason = "one row of the feature_sets table and the vectors that belong to it"
    )]
    pub async fn replace_vectors(
        &self,
        version: &str,
        name: &str,
        definition_json: &str,
        created_at: &str,
        day: i64,
        label_complete: bool,
        rows: &[VectorRow],
        audit: &Record,
    ) -> Result<(), StoreError> {
        let complete = label_complete as i64;
        let backend = self.backend();
        let row_sql = |o: usize| match backend {
            Backend::Sqlite => "(?,?,?,?,?,?,?)".to_string(),
            Backend::Postgres => format!(
                "(${},${},${},${},${},${},${})",
                o + 1,
                o + 2,
                o + 3,
                o + 4,
                o + 5,
                o + 6,
                o + 7
            ),
        };
        in_write_tx!(self, |tx| {
            sqlx::query("INSERT INTO feature_sets (hash, name, definition, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (hash) DO NOTHING")
                .bind(version).bind(name).bind(definition_json).bind(created_at)
                .execute(&mut *tx).await?;
            sqlx::query("DELETE FROM feature_vectors WHERE feature_set = $1 AND as_of = $2")
                .bind(version)
                .bind(day)
                .execute(&mut *tx)
                .await?;
            for chunk in rows.chunks(500) {
                let mut sql = String::from("INSERT INTO feature_vectors (feature_set, as_of, person_id, vals, protected, label, label_complete) VALUES ");
                for i in 0..chunk.len() {
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&row_sql(i * 7));
                }
                let mut q = sqlx::query(&sql);
                for r in chunk {
                    q = q
                        .bind(version)
                        .bind(day)
                        .bind(r.person)
                        .bind(&r.values_json)
                        .bind(&r.protected_json)
                        .bind(r.label)
                        .bind(complete);
                }
                q.execute(&mut *tx).await?;
            }
            tx.append_audit(std::slice::from_ref(audit)).await?;
        });
        Ok(())
    }

    /// Records (or replaces) the record of a build.
    pub async fn record_build(&self, b: &BuildRecord<'_>) -> Result<(), StoreError> {
        let sql = "INSERT INTO feature_builds (feature_set, as_of, persons, built_at, report) VALUES ($1, $2, $3, $4, $5) \
                   ON CONFLICT (feature_set, as_of) DO UPDATE SET persons = excluded.persons, \
                   built_at = excluded.built_at, report = excluded.report";
        on_pool!(self, |p| {
            sqlx::query(sql)
                .bind(b.feature_set)
                .bind(b.day)
                .bind(b.persons)
                .bind(b.built_at)
                .bind(b.report_json)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// The stored vectors of one build: person → vector.
    pub async fn vectors(
        &self,
        version: &str,
        day: i64,
    ) -> Result<BTreeMap<i64, StoredVector>, StoreError> {
        let rows: Vec<(i64, String, String, Option<f64>)> = fetch_all!(
            self,
            (i64, String, String, Option<f64>),
            "SELECT person_id, vals, protected, label FROM feature_vectors WHERE feature_set = $1 AND as_of = $2",
            version,
            day
        );
        let mut out = BTreeMap::new();
        for (pid, vals, prot, label) in rows {
            let corrupt = |what: &'static str, text: &str| StoreError::Corrupt {
                what,
                value: text.chars().take(40).collect(),
            };
            out.insert(
                pid,
                StoredVector {
                    values: serde_json::from_str(&vals)
                        .map_err(|_| corrupt("feature vector", &vals))?,
                    protected: serde_json::from_str(&prot)
                        .map_err(|_| corrupt("protected attributes", &prot))?,
                    label,
                },
            );
        }
        Ok(out)
    }
}
