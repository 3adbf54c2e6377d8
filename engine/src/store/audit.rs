//! The audit aggregate: the append-only entry table, its head row (size, last leaf hash
//! and the Merkle compact range), signed checkpoints and first-seen facts.
//!
//! Appending locks the head row in the appending transaction (PostgreSQL `FOR UPDATE`,
//! as Trillian Tessera's PostgreSQL storage does; SQLite holds the write lock of
//! `BEGIN IMMEDIATE`), so any number of processes extend one chain without forks or
//! gaps: a rolled-back append leaves the head as it was and its number unused by
//! nobody. Actions that change the store append their entry inside their own
//! transaction ([`AppendAudit`]); the unique `leaf_hash` and `prev_hash` columns are the
//! backstop against a fork.

use sqlx::{PgConnection, SqliteConnection};
use tidig_governance::audit::merkle::{leaf_hash, Hash};
use tidig_governance::audit::{CompactRange, Entry, Record};

use super::{Store, StoreError};

/// A stored entry with its index columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: u64,
    pub at: String,
    pub principal: String,
    pub action: String,
    pub outcome: String,
    pub subject: Option<String>,
    /// The canonical encoding, as hashed.
    pub entry: String,
    pub leaf_hash: Vec<u8>,
    pub prev_hash: Vec<u8>,
}

type RawRow = (
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    Vec<u8>,
    Vec<u8>,
);

const ROW_COLUMNS: &str =
    "seq, at, principal, action, outcome, subject, entry, leaf_hash, prev_hash";

fn audit_row(r: RawRow) -> AuditRow {
    AuditRow {
        seq: r.0 as u64,
        at: r.1,
        principal: r.2,
        action: r.3,
        outcome: r.4,
        subject: r.5,
        entry: r.6,
        leaf_hash: r.7,
        prev_hash: r.8,
    }
}

/// The head row: where the next entry goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditHead {
    pub size: u64,
    pub last_hash: Hash,
    pub range: CompactRange,
}

/// A stored signed checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub root: Vec<u8>,
    pub note: String,
    pub at: String,
}

/// What `audit query` selects; every filter is optional.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// RFC 3339 times: `from <= at < to`.
    pub from: Option<String>,
    pub to: Option<String>,
    pub principal: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    /// A pseudonym.
    pub subject: Option<String>,
}

fn corrupt_head(what: &str) -> StoreError {
    StoreError::Corrupt {
        what: "audit head",
        value: what.into(),
    }
}

fn head_from(size: i64, last: Vec<u8>, frontier: Vec<u8>) -> Result<AuditHead, StoreError> {
    let size = u64::try_from(size).map_err(|_| corrupt_head("negative size"))?;
    let last_hash: Hash = last
        .try_into()
        .map_err(|_| corrupt_head("last hash is not 32 bytes"))?;
    let range = CompactRange::from_parts(size, &frontier)
        .ok_or_else(|| corrupt_head("the compact range does not fit the size"))?;
    Ok(AuditHead {
        size,
        last_hash,
        range,
    })
}

const INSERT: &str = "INSERT INTO audit_log (seq, at, principal, action, outcome, subject, entry, leaf_hash, prev_hash) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const UPDATE_HEAD: &str =
    "UPDATE audit_head SET size = $1, last_hash = $2, frontier = $3 WHERE id = 1";

/// Appending audit entries inside a transaction the caller commits: the entries become
/// durable exactly when the action's own changes do.
pub(crate) trait AppendAudit {
    /// Appends `records` in order; returns their sequence numbers.
    async fn append_audit(&mut self, records: &[Record]) -> Result<Vec<u64>, StoreError>;
}

macro_rules! impl_append {
    ($conn:ty, $lock:expr) => {
        impl AppendAudit for $conn {
            async fn append_audit(&mut self, records: &[Record]) -> Result<Vec<u64>, StoreError> {
                if records.is_empty() {
                    return Ok(Vec::new());
                }
                crate::testkit_hooks::audit_fault()?;
                let (size, last, frontier): (i64, Vec<u8>, Vec<u8>) =
                    sqlx::query_as($lock).fetch_one(&mut *self).await?;
                let head = head_from(size, last, frontier)?;
                let (mut range, mut prev) = (head.range, head.last_hash);
                let mut seqs = Vec::with_capacity(records.len());
                for r in records {
                    let seq = range.size();
                    let entry = Entry {
                        seq,
                        prev,
                        record: r.clone(),
                    };
                    let text = entry.canonical();
                    let leaf = leaf_hash(text.as_bytes());
                    sqlx::query(INSERT)
                        .bind(seq as i64)
                        .bind(&r.at)
                        .bind(&r.principal.id)
                        .bind(&r.action)
                        .bind(r.outcome.kind())
                        .bind(&r.subject)
                        .bind(&text)
                        .bind(&leaf[..])
                        .bind(&prev[..])
                        .execute(&mut *self)
                        .await?;
                    range.push(leaf);
                    prev = leaf;
                    seqs.push(seq);
                }
                sqlx::query(UPDATE_HEAD)
                    .bind(range.size() as i64)
                    .bind(&prev[..])
                    .bind(range.packed())
                    .execute(&mut *self)
                    .await?;
                Ok(seqs)
            }
        }
    };
}

impl_append!(
    SqliteConnection,
    "SELECT size, last_hash, frontier FROM audit_head WHERE id = 1"
);
impl_append!(
    PgConnection,
    "SELECT size, last_hash, frontier FROM audit_head WHERE id = 1 FOR UPDATE"
);

impl Store {
    /// Appends `records` in one transaction of their own (group commit: the caller
    /// batches concurrent appends); durable when this returns.
    pub async fn audit_append(&self, records: &[Record]) -> Result<Vec<u64>, StoreError> {
        Ok(in_write_tx!(self, |tx| { tx.append_audit(records).await? }))
    }

    /// Appends `record` unless `(kind, value)` was seen before, in one transaction;
    /// returns its sequence number when it was appended.
    pub async fn audit_first_seen(
        &self,
        kind: &str,
        value: &str,
        record: &Record,
    ) -> Result<Option<u64>, StoreError> {
        let seen = "SELECT seq FROM audit_seen WHERE kind = $1 AND value = $2";
        // Most opens see nothing new: look first without taking the write lock.
        let known: Option<i64> = on_pool!(self, |p| sqlx::query_scalar(seen)
            .bind(kind)
            .bind(value)
            .fetch_optional(p)
            .await?);
        if known.is_some() {
            return Ok(None);
        }
        // Claim the fact first: a concurrent claimant waits on this row (PostgreSQL)
        // or the write lock (SQLite) and then finds it taken, so exactly one records it.
        let claim = "INSERT INTO audit_seen (kind, value, seq) VALUES ($1, $2, -1) \
                     ON CONFLICT (kind, value) DO NOTHING";
        let set_seq = "UPDATE audit_seen SET seq = $3 WHERE kind = $1 AND value = $2";
        Ok(in_write_tx!(self, |tx| {
            let claimed = sqlx::query(claim)
                .bind(kind)
                .bind(value)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if claimed {
                let seq = tx.append_audit(std::slice::from_ref(record)).await?[0];
                sqlx::query(set_seq)
                    .bind(kind)
                    .bind(value)
                    .bind(seq as i64)
                    .execute(&mut *tx)
                    .await?;
                Some(seq)
            } else {
                None
            }
        }))
    }

    pub async fn audit_head(&self) -> Result<AuditHead, StoreError> {
        let sql = "SELECT size, last_hash, frontier FROM audit_head WHERE id = 1";
        let (size, last, frontier): (i64, Vec<u8>, Vec<u8>) =
            on_pool!(self, |p| sqlx::query_as(sql).fetch_one(p).await?);
        head_from(size, last, frontier)
    }

    /// Number of stored entries (which tampering may make differ from the head).
    pub async fn audit_count(&self) -> Result<u64, StoreError> {
        let n: i64 = on_pool!(self, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_log"
        )
        .fetch_one(p)
        .await?);
        Ok(n as u64)
    }

    /// Stores a signed checkpoint; false when one of that size exists (Ed25519 is
    /// deterministic: another process signing the same head wrote the same note).
    pub async fn audit_add_checkpoint(&self, cp: &StoredCheckpoint) -> Result<bool, StoreError> {
        let sql = "INSERT INTO audit_checkpoints (size, root, note, at) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (size) DO NOTHING";
        let n = on_pool!(self, |p| sqlx::query(sql)
            .bind(cp.size as i64)
            .bind(&cp.root)
            .bind(&cp.note)
            .bind(&cp.at)
            .execute(p)
            .await?
            .rows_affected());
        Ok(n == 1)
    }

    /// Every stored checkpoint, smallest first.
    pub async fn audit_checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let rows: Vec<(i64, Vec<u8>, String, String)> = fetch_all!(
            self,
            (i64, Vec<u8>, String, String),
            "SELECT size, root, note, at FROM audit_checkpoints ORDER BY size"
        );
        Ok(rows
            .into_iter()
            .map(|(size, root, note, at)| StoredCheckpoint {
                size: size as u64,
                root,
                note,
                at,
            })
            .collect())
    }

    /// The size of the largest checkpoint, if any.
    pub async fn audit_checkpointed_size(&self) -> Result<Option<u64>, StoreError> {
        let n: Option<i64> = on_pool!(self, |p| sqlx::query_scalar(
            "SELECT MAX(size) FROM audit_checkpoints"
        )
        .fetch_one(p)
        .await?);
        Ok(n.map(|n| n as u64))
    }

    /// Streams every entry in sequence order through `f`, without holding them.
    pub async fn audit_for_each(
        &self,
        mut f: impl FnMut(AuditRow) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let sql = format!("SELECT {ROW_COLUMNS} FROM audit_log ORDER BY seq");
        for_each_row!(self, RawRow, &sql, [], |r| { f(audit_row(r))? });
        Ok(())
    }

    /// The stored leaf hashes of entries `0..size`, in order.
    pub async fn audit_leaf_hashes(&self, size: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let sql = "SELECT leaf_hash FROM audit_log WHERE seq < $1 ORDER BY seq";
        let mut out = Vec::with_capacity(size as usize);
        for_each_row!(self, (Vec<u8>,), sql, [size as i64], |r| { out.push(r.0) });
        Ok(out)
    }

    /// One entry by its sequence number.
    pub async fn audit_entry(&self, seq: u64) -> Result<Option<AuditRow>, StoreError> {
        let sql = format!("SELECT {ROW_COLUMNS} FROM audit_log WHERE seq = $1");
        let row: Option<RawRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(seq as i64)
            .fetch_optional(p)
            .await?);
        Ok(row.map(audit_row))
    }

    /// Entries matching `filter` after sequence number `after` (exclusive), oldest
    /// first, at most `limit`.
    pub async fn audit_query(
        &self,
        filter: &AuditFilter,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let mut sql = format!("SELECT {ROW_COLUMNS} FROM audit_log WHERE seq > $1");
        let mut binds: Vec<&str> = Vec::new();
        for (column, op, value) in [
            ("at", ">=", &filter.from),
            ("at", "<", &filter.to),
            ("principal", "=", &filter.principal),
            ("action", "=", &filter.action),
            ("outcome", "=", &filter.outcome),
            ("subject", "=", &filter.subject),
        ] {
            if let Some(v) = value {
                binds.push(v);
                sql.push_str(&format!(" AND {column} {op} ${}", binds.len() + 2));
            }
        }
        sql.push_str(" ORDER BY seq LIMIT $2");
        let after = after.map_or(-1, |a| a as i64);
        let rows: Vec<RawRow> = on_pool!(self, |p| {
            let mut q = sqlx::query_as(&sql).bind(after).bind(i64::from(limit));
            for b in &binds {
                q = q.bind(*b);
            }
            q.fetch_all(p).await?
        });
        Ok(rows.into_iter().map(audit_row).collect())
    }
}
