//! Counts and dumps of the store, for reports, comparisons (kill-and-rerun, backend
//! parity) and scans for raw identifiers.

use sqlx::Row;

use super::{Store, StoreError};

/// Row counts of the main tables, for reports and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreCounts {
    pub persons: i64,
    pub vault: i64,
    pub codes: i64,
    pub events: i64,
    /// Events waiting for their Patient (see `pending_events`).
    pub pending_events: i64,
    pub residences: i64,
    pub relations: i64,
    pub protected_attributes: i64,
    pub quarantine: i64,
    pub ingest_runs: i64,
}

/// Every table, in a fixed order, for dumps and scans.
pub const TABLES: &[&str] = &[
    "store_meta",
    "persons",
    "vault",
    "codes",
    "events",
    "pending_events",
    "residences",
    "relations",
    "fhir_refs",
    "protected_attributes",
    "ingest_runs",
    "quarantine",
    "feature_sets",
    "feature_vectors",
    "feature_builds",
    "models",
    "model_history",
    "objections",
    "suggestions",
    "scoring_runs",
    "decisions",
    "scoring_switch",
    "permits",
    "research_runs",
];

/// The audit trail's tables: a record of what was done, not data; kept apart from
/// [`TABLES`] so that comparing two stores' data ignores who loaded them when.
pub const AUDIT_TABLES: &[&str] = &[
    "audit_log",
    "audit_head",
    "audit_checkpoints",
    "audit_seen",
    "audit_index",
    "audit_indexed",
];

impl Store {
    pub async fn counts(&self) -> Result<StoreCounts, StoreError> {
        let mut c = StoreCounts::default();
        for (table, slot) in [
            ("persons", &mut c.persons),
            ("vault", &mut c.vault),
            ("codes", &mut c.codes),
            ("events", &mut c.events),
            ("pending_events", &mut c.pending_events),
            ("residences", &mut c.residences),
            ("relations", &mut c.relations),
            ("protected_attributes", &mut c.protected_attributes),
            ("quarantine", &mut c.quarantine),
            ("ingest_runs", &mut c.ingest_runs),
        ] {
            *slot = self.count(table).await?;
        }
        Ok(c)
    }

    /// The number of rows of one of [`TABLES`].
    pub async fn count(&self, table: &str) -> Result<i64, StoreError> {
        let table = known(table)?;
        let sql = format!("SELECT COUNT(*) FROM {table}");
        Ok(on_pool!(self, |p| sqlx::query_scalar(&sql)
            .fetch_one(p)
            .await?))
    }

    /// Every row of one of [`TABLES`] rendered as text, sorted, with the columns that
    /// legitimately differ between equivalent runs (run ids, timestamps) left out.
    pub async fn dump_table(&self, table: &str, skip: &[&str]) -> Result<Vec<String>, StoreError> {
        let table = known(table)?;
        let sql = format!("SELECT * FROM {table}");
        let mut out = Vec::new();
        on_pool!(self, |p| {
            for row in sqlx::query(&sql).fetch_all(p).await? {
                out.push(render_row(&row, skip));
            }
        });
        out.sort();
        Ok(out)
    }

    /// The quarantine, as (file, line, field, reason), sorted.
    pub async fn quarantine(&self) -> Result<Vec<(String, i64, String, String)>, StoreError> {
        let sql = "SELECT file, line, field, reason FROM quarantine ORDER BY file, line, field";
        Ok(fetch_all!(self, (String, i64, String, String), sql))
    }
}

/// Table names are never taken from input: only the known tables are interpolated.
fn known(table: &str) -> Result<&'static str, StoreError> {
    TABLES
        .iter()
        .chain(AUDIT_TABLES)
        .find(|t| **t == table)
        .copied()
        .ok_or_else(|| StoreError::Corrupt {
            what: "table name",
            value: table.into(),
        })
}

fn render_row<R>(row: &R, skip: &[&str]) -> String
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    i64: sqlx::Type<R::Database> + for<'r> sqlx::Decode<'r, R::Database>,
    f64: sqlx::Type<R::Database> + for<'r> sqlx::Decode<'r, R::Database>,
    String: sqlx::Type<R::Database> + for<'r> sqlx::Decode<'r, R::Database>,
    Vec<u8>: sqlx::Type<R::Database> + for<'r> sqlx::Decode<'r, R::Database>,
{
    use sqlx::Column;
    let mut parts = Vec::new();
    for col in row.columns() {
        let name = col.name();
        if skip.contains(&name) {
            continue;
        }
        let text = if let Ok(v) = row.try_get::<Option<i64>, _>(name) {
            v.map_or("NULL".into(), |v| v.to_string())
        } else if let Ok(v) = row.try_get::<Option<f64>, _>(name) {
            v.map_or("NULL".into(), |v| v.to_string())
        } else if let Ok(v) = row.try_get::<Option<String>, _>(name) {
            v.unwrap_or_else(|| "NULL".into())
        } else if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(name) {
            v.map_or("NULL".into(), hex::encode)
        } else {
            "?".into()
        };
        parts.push(format!("{name}={text}"));
    }
    parts.join("|")
}
