//! The store: canonical records in SQLite (embedded default) or PostgreSQL (scale).
//!
//! Both backends share one schema shape (see `migrations/`), integer keys derived at the
//! edge, and the same write path: multi-row `INSERT … ON CONFLICT` in one transaction per
//! input file. PostgreSQL loads events with `COPY` into a staging table instead.

mod write;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row};

pub use write::{Batch, IngestTx, RunCounts, WriteOutcome};

/// Runs `$body` (which uses `$tx`) in one write transaction on either backend and
/// commits it; on SQLite the transaction takes the write lock up front (`BEGIN
/// IMMEDIATE`). The body is expanded once per backend, so it may bind any values.
#[macro_export]
macro_rules! in_write_tx {
    ($store:expr, |$tx:ident| $body:block) => {
        match $store {
            $crate::store::Store::Sqlite(p) => {
                let mut $tx = p.begin_with("BEGIN IMMEDIATE").await?;
                $body
                $tx.commit().await?;
            }
            $crate::store::Store::Postgres(p) => {
                let mut $tx = p.begin().await?;
                $body
                $tx.commit().await?;
            }
        }
    };
}

/// Evaluates `$body` with `$pool` bound to the store's pool, whichever backend it is.
/// The body is expanded once per backend, so it may use any query and bind any values.
#[macro_export]
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool) => $body,
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("database url `{url}` is not supported: expected sqlite://PATH or postgres://…")]
    Url { url: String },
    #[error("cannot open the store: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot migrate the store schema: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error(
        "the {which} key (fingerprint {given}) is not the key this store was built with \
         (fingerprint {stored}); pseudonyms would not match"
    )]
    KeyMismatch {
        which: &'static str,
        given: String,
        stored: String,
    },
}

/// A connection pool to one store.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Row counts of the main tables, for reports and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreCounts {
    pub persons: i64,
    pub vault: i64,
    pub codes: i64,
    pub events: i64,
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
    "residences",
    "relations",
    "fhir_refs",
    "protected_attributes",
    "ingest_runs",
    "quarantine",
];

impl Store {
    /// Opens (creating if needed) and migrates the store at `url`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)
                .map_err(StoreError::Connect)?
                .log_statements(log::LevelFilter::Off)
                .log_slow_statements(log::LevelFilter::Off, Duration::from_secs(60));
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts)
                .await
                .map_err(StoreError::Connect)?;
            sqlx::migrate!("./migrations/postgres")
                .run(&pool)
                .await
                .map_err(StoreError::Migrate)?;
            return Ok(Store::Postgres(pool));
        }
        let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        else {
            return Err(StoreError::Url { url: url.into() });
        };
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .page_size(16_384)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(60))
            // Page cache per connection (KiB); with at most two connections this bounds
            // SQLite's memory at ~96 MiB whatever the store size.
            .pragma("cache_size", "-49152")
            .pragma("temp_store", "memory")
            .log_statements(log::LevelFilter::Off)
            .log_slow_statements(log::LevelFilter::Off, Duration::from_secs(60));
        // SQLite has one writer at a time anyway; each extra connection would carry its
        // own page cache.
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(opts)
            .await
            .map_err(StoreError::Connect)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(StoreError::Migrate)?;
        Ok(Store::Sqlite(pool))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite(_) => Backend::Sqlite,
            Store::Postgres(_) => Backend::Postgres,
        }
    }

    pub async fn close(&self) {
        match self {
            Store::Sqlite(p) => p.close().await,
            Store::Postgres(p) => p.close().await,
        }
    }

    /// Records the key fingerprints on first use and refuses a different key later.
    pub async fn check_key(
        &self,
        which: &'static str,
        fingerprint: &str,
    ) -> Result<(), StoreError> {
        let key = format!("{which}_key_fingerprint");
        let sql =
            "INSERT INTO store_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";
        let stored: String = crate::on_pool!(self, |p| {
            sqlx::query(sql)
                .bind(&key)
                .bind(fingerprint)
                .execute(p)
                .await?;
            sqlx::query_scalar("SELECT value FROM store_meta WHERE key = $1")
                .bind(&key)
                .fetch_one(p)
                .await?
        });
        if stored != fingerprint {
            return Err(StoreError::KeyMismatch {
                which,
                given: fingerprint.into(),
                stored,
            });
        }
        Ok(())
    }

    /// All FHIR reference aliases (keyed reference hash → person id).
    pub async fn aliases(&self) -> Result<HashMap<i64, i64>, StoreError> {
        let sql = "SELECT ref_key, person_id FROM fhir_refs";
        let rows: Vec<(i64, i64)> = match self {
            Store::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await?,
            Store::Postgres(p) => sqlx::query_as(sql).fetch_all(p).await?,
        };
        Ok(rows.into_iter().collect())
    }

    /// The id of an earlier successful run over a file with this content, if any.
    pub async fn loaded_run(&self, sha256: &str) -> Result<Option<i64>, StoreError> {
        let sql = "SELECT id FROM ingest_runs WHERE sha256 = $1 AND status = 'loaded' ORDER BY id LIMIT 1";
        Ok(match self {
            Store::Sqlite(p) => {
                sqlx::query_scalar(sql)
                    .bind(sha256)
                    .fetch_optional(p)
                    .await?
            }
            Store::Postgres(p) => {
                sqlx::query_scalar(sql)
                    .bind(sha256)
                    .fetch_optional(p)
                    .await?
            }
        })
    }

    /// Records a run that did not load anything (unchanged, failed, unrecognised), in
    /// its own transaction.
    pub async fn record_run(&self, run: &RunRecord<'_>) -> Result<i64, StoreError> {
        let sql = "INSERT INTO ingest_runs (file, sha256, format, status, error, started_at, finished_at, \
                   read, loaded, rejected, duplicate, skipped) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, 0, 0, 0) RETURNING id";
        macro_rules! go {
            ($p:expr) => {
                sqlx::query_scalar(sql)
                    .bind(run.file)
                    .bind(run.sha256)
                    .bind(run.format)
                    .bind(run.status)
                    .bind(run.error)
                    .bind(run.started_at)
                    .bind(now())
                    .fetch_one($p)
                    .await?
            };
        }
        Ok(match self {
            Store::Sqlite(p) => go!(p),
            Store::Postgres(p) => go!(p),
        })
    }

    /// Starts the transaction that loads one file.
    pub async fn begin_file(
        &self,
        file: &str,
        sha256: &str,
        format: &str,
    ) -> Result<IngestTx, StoreError> {
        IngestTx::begin(self, file, sha256, format).await
    }

    pub async fn counts(&self) -> Result<StoreCounts, StoreError> {
        let mut c = StoreCounts::default();
        for (table, slot) in [
            ("persons", &mut c.persons),
            ("vault", &mut c.vault),
            ("codes", &mut c.codes),
            ("events", &mut c.events),
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

    async fn count(&self, table: &str) -> Result<i64, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        Ok(match self {
            Store::Sqlite(p) => sqlx::query_scalar(&sql).fetch_one(p).await?,
            Store::Postgres(p) => sqlx::query_scalar(&sql).fetch_one(p).await?,
        })
    }

    /// Every row of `table` rendered as text, sorted, with the columns that legitimately
    /// differ between equivalent runs (run ids, timestamps) left out. Used to compare
    /// stores (kill-and-rerun, SQLite/PostgreSQL parity) and to scan for raw IDs.
    pub async fn dump_table(&self, table: &str, skip: &[&str]) -> Result<Vec<String>, StoreError> {
        let sql = format!("SELECT * FROM {table}");
        let mut out = Vec::new();
        match self {
            Store::Sqlite(p) => {
                for row in sqlx::query(&sql).fetch_all(p).await? {
                    out.push(render_row(&row, skip));
                }
            }
            Store::Postgres(p) => {
                for row in sqlx::query(&sql).fetch_all(p).await? {
                    out.push(render_row(&row, skip));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The quarantine, as (file, line, field, reason), sorted.
    pub async fn quarantine(&self) -> Result<Vec<(String, i64, String, String)>, StoreError> {
        let sql = "SELECT file, line, field, reason FROM quarantine ORDER BY file, line, field";
        Ok(match self {
            Store::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await?,
            Store::Postgres(p) => sqlx::query_as(sql).fetch_all(p).await?,
        })
    }
}

/// A run row written outside a load transaction.
#[derive(Debug)]
pub struct RunRecord<'a> {
    pub file: &'a str,
    pub sha256: &'a str,
    pub format: &'a str,
    pub status: &'a str,
    pub error: Option<&'a str>,
    pub started_at: &'a str,
}

/// Today's date (UTC).
pub fn today() -> chrono::NaiveDate {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    chrono::NaiveDate::from_num_days_from_ce_opt(secs.div_euclid(86_400) as i32 + 719_163)
        .unwrap_or_default()
}

/// The current UTC time as RFC 3339 text.
pub fn now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let days = secs.div_euclid(86_400) as i32;
    let rem = secs.rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        tidig_connectors::time::format_days(days),
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_millis()
    )
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
