//! The store: the only place in tidig that runs SQL, over SQLite (embedded default) or
//! PostgreSQL (scale).
//!
//! Both backends share one schema shape (see `migrations/`), integer keys derived at the
//! edge, and the same write path: multi-row `INSERT … ON CONFLICT` in one transaction per
//! input file. PostgreSQL loads events with `COPY` into a staging table instead. One
//! module per aggregate: `ingest` (runs and the write path), `population` (persons,
//! residences, relations, objections as of a date), `features` (events, codes, vectors),
//! `registry` (models), `suggestions` (suggestions and scoring runs), `inspect` (counts
//! and dumps for reports and tests). Values cross this boundary as typed rows; states
//! are parsed here.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::ConnectOptions;

pub(crate) use audit::AppendAudit;
pub use audit::{AuditFilter, AuditHead, AuditRow, AuditRowRef, StoredCheckpoint};
pub use casework::{
    Committed, DecideResult, Decision, DecisionInput, PageKey, SuggestionSummaryRow,
    SuggestionTarget,
};
pub use features::{BuildRecord, EventRow, StoredVector, VectorRow};
pub use ingest::{Batch, IngestTx, RunCounts, RunRecord, WriteOutcome};
pub use inspect::{StoreCounts, AUDIT_TABLES, TABLES};
pub use permits::{PermitChangeKind, PermitRow, PermitWritten};
pub use population::{ObjectionChange, ObjectionRow, PersonDates, Residence};
pub use registry::{ModelRow, NewModel, Transition, TransitionOutcome};
pub use research::{NewResearchRun, ResearchRunRow};
pub use stats::{DecisionFact, RunFact, SuggestionFact};
pub use subject::{
    Loaded, SubjectData, SubjectDecision, SubjectEvent, SubjectPerson, SubjectRelation,
    SubjectResidence, SubjectSnapshot,
};
pub use suggestions::{
    Capacity, ScoringRunRecord, StoredSuggestion, SuggestionRow, WriteCounts, Written,
};
pub use switch::{ScoringSwitch, SwitchChange};

/// Runs `$body` (which uses `$tx`) in one write transaction on either backend and
/// commits it, evaluating to the body's value; on SQLite the transaction takes the write
/// lock up front (`BEGIN IMMEDIATE`). The body is expanded once per backend, so it may
/// bind any values. Private to the store: nothing outside it runs SQL.
macro_rules! in_write_tx {
    ($store:expr, |$tx:ident| $body:block) => {
        match $store {
            $crate::store::Store::Sqlite(s) => {
                let mut $tx = s.write.begin_with("BEGIN IMMEDIATE").await?;
                let value = $body;
                $tx.commit().await?;
                value
            }
            $crate::store::Store::Postgres(p) => {
                let mut $tx = p.begin().await?;
                let value = $body;
                $tx.commit().await?;
                value
            }
        }
    };
}

/// Evaluates `$body` with `$pool` bound to the store's pool, whichever backend it is.
/// The body is expanded once per backend, so it may use any query and bind any values.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite(s) => {
                let $pool = &s.read;
                $body
            }
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}

/// Streams the rows of a query through `$body`, on either backend, without holding them.
macro_rules! for_each_row {
    ($store:expr, $ty:ty, $sql:expr, [$($bind:expr),*], |$row:pat_param| $body:block) => {
        match $store {
            $crate::store::Store::Sqlite(s) => {
                let mut rows = sqlx::query_as::<_, $ty>($sql)$(.bind($bind))*.fetch(&s.read);
                while let Some($row) = futures_util::TryStreamExt::try_next(&mut rows).await? $body
            }
            $crate::store::Store::Postgres(p) => {
                let mut rows = sqlx::query_as::<_, $ty>($sql)$(.bind($bind))*.fetch(p);
                while let Some($row) = futures_util::TryStreamExt::try_next(&mut rows).await? $body
            }
        }
    };
}

/// All rows of a query, on either backend.
macro_rules! fetch_all {
    ($store:expr, $ty:ty, $sql:expr $(, $bind:expr)*) => {
        match $store {
            $crate::store::Store::Sqlite(s) => sqlx::query_as::<_, $ty>($sql)$(.bind($bind))*.fetch_all(&s.read).await?,
            $crate::store::Store::Postgres(p) => sqlx::query_as::<_, $ty>($sql)$(.bind($bind))*.fetch_all(p).await?,
        }
    };
}

/// All rows of `SELECT cols rest` as `Vec<ty>` (a tuple), on either backend. On SQLite the
/// rows come back as one JSON array that SQLite builds (`json_group_array`) instead of a
/// row at a time from sqlx's worker thread, which costs microseconds per row (a
/// population of 100,000 is half a million rows). Integers and text only: SQLite's JSON
/// writes doubles with 15 significant digits. `cols` are plain column names of `rest`.
macro_rules! fetch_all_packed {
    ($store:expr, $ty:ty, $cols:expr, $rest:expr $(, $bind:expr)*) => {
        match $store {
            $crate::store::Store::Sqlite(s) => {
                let sql = format!(
                    "SELECT json_group_array(json_array({c})) FROM (SELECT {c} {r})",
                    c = $cols,
                    r = $rest
                );
                let text: Option<String> =
                    sqlx::query_scalar(&sql)$(.bind($bind))*.fetch_one(&s.read).await?;
                serde_json::from_str::<Vec<$ty>>(text.as_deref().unwrap_or("[]")).map_err(|e| {
                    $crate::store::StoreError::Corrupt {
                        what: "rows packed as JSON",
                        value: e.to_string(),
                    }
                })?
            }
            $crate::store::Store::Postgres(p) => {
                let sql = format!("SELECT {} {}", $cols, $rest);
                sqlx::query_as::<_, $ty>(&sql)$(.bind($bind))*.fetch_all(p).await?
            }
        }
    };
}

mod audit;
mod casework;
mod copy;
mod features;
mod ingest;
mod inspect;
mod permits;
mod population;
#[macro_use]
mod registry;
mod research;
mod stats;
mod subject;
mod suggestions;
mod switch;

/// Holds an exclusive lock on `<db>-lock` while migrations run; none for in-memory stores.
async fn migration_lock(db_path: &str) -> Result<Option<std::fs::File>, StoreError> {
    if db_path.is_empty() || db_path.starts_with(':') || db_path.contains("mode=memory") {
        return Ok(None);
    }
    let path = format!("{}-lock", db_path.split('?').next().unwrap_or(db_path));
    let locked = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(|e| StoreError::Connect(sqlx::Error::Io(std::io::Error::other(e))))?;
    locked
        .map(Some)
        .map_err(|e| StoreError::Connect(sqlx::Error::Io(e)))
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
    #[error("the audit trail could not be written, so the action did not happen: {0}")]
    Audit(String),
    #[error("stored {what} `{value}` is not one this version knows")]
    Corrupt { what: &'static str, value: String },
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

impl StoreError {
    /// Whether retrying may succeed: a lost or refused connection, a busy or locked
    /// database, a serialisation conflict, resources running out. A statement the
    /// database cannot run at all (an unknown column, a syntax or type error, a
    /// violated constraint) is a defect, not an outage, and so is stored data this
    /// version cannot read.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Connect(_) | StoreError::Audit(_) => true,
            StoreError::Sql(sqlx::Error::Database(e)) => {
                let code = e.code().unwrap_or_default();
                match self.backend_is_postgres(e.as_ref()) {
                    // SQLSTATE classes: 08 connection, 40 rollback (serialisation,
                    // deadlock), 53 resources, 57 operator intervention, 58 system.
                    true => ["08", "40", "53", "57", "58"]
                        .iter()
                        .any(|class| code.starts_with(class)),
                    // SQLite result codes (primary in the low byte): BUSY 5, LOCKED 6,
                    // NOMEM 7, IOERR 10, FULL 13, CANTOPEN 14, PROTOCOL 15.
                    false => code
                        .parse::<i64>()
                        .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 7 | 10 | 13 | 14 | 15)),
                }
            }
            StoreError::Sql(
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_),
            ) => true,
            StoreError::Sql(_)
            | StoreError::Url { .. }
            | StoreError::Migrate(_)
            | StoreError::Corrupt { .. }
            | StoreError::KeyMismatch { .. } => false,
        }
    }

    /// Whether the transaction lost a deadlock or a serialisation conflict with another
    /// (PostgreSQL SQLSTATE 40P01, 40001): it was rolled back, and running it again
    /// from the start is the remedy.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Sql(sqlx::Error::Database(e))
            if matches!(e.code().as_deref(), Some("40P01" | "40001")))
    }

    fn backend_is_postgres(&self, e: &dyn sqlx::error::DatabaseError) -> bool {
        e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some()
    }
}

/// Reader connections of a SQLite store (each with its own page cache). Eight readers
/// measured no faster than two under `tidig bench serve`.
const SQLITE_READERS: u32 = 2;

/// SQLite's connections: one writer and a small pool of readers.
///
/// SQLite has one writer at a time anyway. Giving it one connection of its own keeps
/// that connection's page cache valid from one transaction to the next (a connection
/// discards its cache whenever another connection has written), and readers in WAL mode
/// never wait for it.
#[derive(Clone, Debug)]
pub struct SqlitePools {
    pub(crate) write: SqlitePool,
    pub(crate) read: SqlitePool,
}

/// A connection pool to one store.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePools),
    Postgres(PgPool),
}

impl Store {
    /// Opens (creating if needed) and migrates the store at `url`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)
                .map_err(StoreError::Connect)?
                .log_statements(log::LevelFilter::Off)
                .log_slow_statements(log::LevelFilter::Off, Duration::from_secs(60));
            // No ping before every acquire (a round trip per statement): a connection the
            // server closed fails its next statement, and the pool replaces it.
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .test_before_acquire(false)
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
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(60))
            // Page cache per connection (KiB); with at most three connections (one
            // writer, two readers) this bounds SQLite's memory at ~144 MiB whatever the
            // store size.
            .pragma("cache_size", "-49152")
            .pragma("temp_store", "memory")
            .log_statements(log::LevelFilter::Off)
            .log_slow_statements(log::LevelFilter::Off, Duration::from_secs(60));
        // sqlx takes no lock for SQLite migrations, and switching a new file to WAL can
        // fail at once with "database is locked": two processes opening a new store at
        // once would race. A lock file beside the database (like its `-wal` and `-shm`)
        // held over connecting and migrating makes the second wait and then find nothing
        // to do.
        let lock = migration_lock(path).await?;
        // One writer connection (see `SqlitePools`) and `SQLITE_READERS` readers; each carries its own
        // page cache. A file connection does not go stale: no ping before every acquire.
        // Writers in this process queue on the writer for as long as writers in other
        // processes may wait on the lock (the busy timeout).
        let pool = |n: u32| {
            SqlitePoolOptions::new()
                .max_connections(n)
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(60))
        };
        let write = pool(1)
            .connect_with(opts.clone())
            .await
            .map_err(StoreError::Connect)?;
        let migrated = sqlx::migrate!("./migrations/sqlite").run(&write).await;
        drop(lock);
        migrated.map_err(StoreError::Migrate)?;
        // Long scans (verifying the audit trail) hand rows over in bigger batches.
        let read = pool(SQLITE_READERS)
            .connect_with(opts.row_buffer_size(1024))
            .await
            .map_err(StoreError::Connect)?;
        Ok(Store::Sqlite(SqlitePools { write, read }))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite(_) => Backend::Sqlite,
            Store::Postgres(_) => Backend::Postgres,
        }
    }

    /// Closes the pool. On SQLite the WAL is checkpointed into the database file first,
    /// so that a command that exited 0 has its change in the file a backup copies (when
    /// another process still reads, the checkpoint does what it can and SQLite finishes
    /// it later).
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => {
                s.read.close().await;
                let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(&s.write)
                    .await;
                s.write.close().await
            }
            Store::Postgres(p) => p.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_statement_the_database_cannot_run_is_a_defect_and_a_timeout_an_outage() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url).await.unwrap();
        let Store::Sqlite(s) = &store else {
            unreachable!("a sqlite:// url opens SQLite")
        };
        let e: StoreError = sqlx::query("SELECT no_such_column FROM persons")
            .execute(&s.read)
            .await
            .unwrap_err()
            .into();
        assert!(!e.is_transient(), "{e}");
        assert!(StoreError::Sql(sqlx::Error::PoolTimedOut).is_transient());
        assert!(!StoreError::Corrupt {
            what: "band",
            value: "x".into()
        }
        .is_transient());
    }

    #[cfg(feature = "testkit")]
    #[tokio::test]
    async fn on_postgresql_an_unknown_column_is_a_defect_and_a_closed_pool_an_outage() {
        let Some(pg) = crate::testkit::pgtemp::TempPostgres::start(true).unwrap() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but no PostgreSQL server binaries were found"
            );
            return;
        };
        let url = pg.create_database("transient").await.unwrap();
        let store = Store::open(&url).await.unwrap();
        let Store::Postgres(p) = &store else {
            unreachable!("a postgres:// url opens PostgreSQL")
        };
        let e: StoreError = sqlx::query("SELECT no_such_column FROM persons")
            .execute(p)
            .await
            .unwrap_err()
            .into();
        assert!(!e.is_transient(), "{e}");
        p.close().await;
        let e: StoreError = sqlx::query("SELECT 1").execute(p).await.unwrap_err().into();
        assert!(e.is_transient(), "{e}");
    }
}
