//! The audit aggregate: the append-only entry table, its head row (size, last leaf hash
//! and the Merkle compact range), signed checkpoints and first-seen facts.
//!
//! Appending locks the head row in the appending transaction (PostgreSQL `FOR UPDATE`,
//! as Trillian Tessera's PostgreSQL storage does; SQLite holds the write lock of
//! `BEGIN IMMEDIATE`), so any number of processes extend one chain without forks or
//! gaps: a rolled-back append leaves the head as it was, so its number is taken by the
//! next append. Actions that change the store append their entry inside their own
//! transaction ([`AppendAudit`]). The primary key on `seq` is the backstop against a
//! fork (two entries at one place); each entry's `prev` member, inside its hashed
//! encoding, is the link. Hash columns carry no unique index: a random key in a B-tree
//! costs a page write per entry, most of a durable append's cost (migration 0008).
//!
//! Reading the log back is a long scan (verification, export). Rows come from the
//! database in chunks of [`SCAN_CHUNK`] aggregated into a few long strings per chunk by
//! the database itself, which is several times faster than a row at a time through the
//! driver; a chunk whose strings do not split back into exactly its rows (an odd
//! value, a gap, a row out of place: tampering, or a separator inside a value) is read
//! again row by row, so the fast path never decides what a row holds.

use sqlx::{PgConnection, SqliteConnection};
use tidig_governance::audit::merkle::{leaf_hash, Hash};
use tidig_governance::audit::{CompactRange, EncodedRecord, Record};

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
}

/// A stored entry as a long scan reads it, borrowed from what the database returned
/// (no copy per row). The query columns are generated from `entry` by the database, so
/// a scan has no need of them.
#[derive(Clone, Copy, Debug)]
pub struct AuditRowRef<'r> {
    pub seq: u64,
    pub entry: &'r str,
    pub leaf_hash: &'r [u8],
}

/// Reads an [`AuditRowRef`] from a `seq, entry, leaf_hash` row of either backend.
macro_rules! row_ref {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = $row;
        AuditRowRef {
            seq: row.try_get::<i64, _>(0)? as u64,
            entry: row.try_get(1)?,
            leaf_hash: row.try_get(2)?,
        }
    }};
}

/// Rows per chunk of a long scan, and chunks read ahead of the one being worked on.
const SCAN_CHUNK: i64 = 4096;
const SCAN_AHEAD: usize = 2;

/// A chunk of the log in one row: its count, the values that are NULL where none may
/// be, the leaf hashes that are not 32 bytes, the sequence numbers joined by commas, the
/// entries joined by newlines (which canonical entries never contain) and the leaf
/// hashes as hex.
const CHUNK_SQLITE: &str = "SELECT count(*), count(*) * 2 - count(entry) - count(leaf_hash), \
    sum(CASE WHEN length(leaf_hash) = 32 THEN 0 ELSE 1 END), \
    group_concat(seq, ','), group_concat(entry, char(10)), group_concat(hex(leaf_hash), '') \
    FROM (SELECT seq, entry, leaf_hash FROM audit_log WHERE seq >= $1 AND seq < $2 ORDER BY seq) AS c";
const CHUNK_POSTGRES: &str = "SELECT count(*), count(*) * 2 - count(entry) - count(leaf_hash), \
    sum(CASE WHEN length(leaf_hash) = 32 THEN 0 ELSE 1 END)::BIGINT, \
    string_agg(seq::text, ','), string_agg(entry, E'\\n'), string_agg(encode(leaf_hash, 'hex'), '') \
    FROM (SELECT seq, entry, leaf_hash FROM audit_log WHERE seq >= $1 AND seq < $2 ORDER BY seq) AS c";

type ChunkRow = (
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// One chunk as read, with its leaf hashes decoded.
struct Chunk {
    from: i64,
    to: i64,
    /// The chunk splits back into exactly its rows: `from..to` each once, in order,
    /// every value present and every leaf hash 32 bytes.
    sound: bool,
    count: usize,
    entries: String,
    leaves: Vec<u8>,
}

impl Chunk {
    fn new(from: i64, to: i64, raw: ChunkRow) -> Chunk {
        let (count, nulls, bad_hashes) = (raw.0, raw.1, raw.2.unwrap_or(0));
        let seqs = raw.3.unwrap_or_default();
        let in_order = if count == 0 {
            seqs.is_empty()
        } else {
            seqs.split(',')
                .map(|s| s.parse::<i64>().ok())
                .eq((from..from + count).map(Some))
        };
        let hex_leaves = raw.5.unwrap_or_default();
        let mut leaves = vec![0u8; count as usize * 32];
        let sound = nulls == 0
            && bad_hashes == 0
            && in_order
            && const_hex::decode_to_slice(&hex_leaves, &mut leaves).is_ok();
        Chunk {
            from,
            to,
            sound,
            count: count as usize,
            entries: raw.4.unwrap_or_default(),
            leaves,
        }
    }

    /// The chunk's rows, or `None` when it must be read row by row.
    fn rows(&self) -> Option<Vec<AuditRowRef<'_>>> {
        if !self.sound {
            return None;
        }
        if self.count == 0 {
            return Some(Vec::new());
        }
        let mut entries = self.entries.split('\n');
        let mut rows = Vec::with_capacity(self.count);
        for (k, leaf) in self.leaves.chunks_exact(32).enumerate() {
            rows.push(AuditRowRef {
                seq: (self.from + k as i64) as u64,
                entry: entries.next()?,
                leaf_hash: leaf,
            });
        }
        entries.next().is_none().then_some(rows)
    }
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
);

const ROW_COLUMNS: &str = "seq, at, principal, action, outcome, subject, entry, leaf_hash";

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

/// The most rows one multi-row `INSERT` takes (3 parameters each: well inside SQLite's
/// 32,766 and PostgreSQL's 65,535 parameters per statement). The query columns are
/// generated by the database from the entry.
const ROWS_PER_INSERT: usize = 512;

/// Splits `n` rows into statement sizes that are powers of two (52 = 32 + 16 + 4), so
/// that a handful of prepared statements serve every batch size from the statement
/// cache instead of one freshly prepared statement per size.
fn insert_sizes(mut n: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if n == 0 {
            return None;
        }
        let size = if n >= ROWS_PER_INSERT {
            ROWS_PER_INSERT
        } else {
            1 << (usize::BITS - 1 - n.leading_zeros())
        };
        n -= size;
        Some(size)
    })
}

/// One entry ready to store: its canonical text and leaf hash.
struct Prepared {
    seq: u64,
    text: String,
    leaf: Hash,
}

/// Encodes `records` as the entries after `head`, and the head after them.
fn prepare(head: AuditHead, records: &[EncodedRecord]) -> (Vec<Prepared>, CompactRange) {
    let (mut range, mut prev) = (head.range, head.last_hash);
    let mut out = Vec::with_capacity(records.len());
    for encoded in records {
        let seq = range.size();
        let text = encoded.entry(seq, &prev);
        let leaf = leaf_hash(text.as_bytes());
        range.push(leaf);
        out.push(Prepared { seq, text, leaf });
        prev = leaf;
    }
    (out, range)
}

/// Appending audit entries inside a transaction the caller commits: the entries become
/// durable exactly when the action's own changes do.
pub(crate) trait AppendAudit {
    /// Appends `records` in order; returns their sequence numbers.
    async fn append_audit(&mut self, records: &[Record]) -> Result<Vec<u64>, StoreError> {
        let encoded: Vec<EncodedRecord> = records.iter().cloned().map(EncodedRecord::new).collect();
        self.append_encoded(&encoded).await
    }

    /// Appends records encoded ahead (outside the lock) in order.
    async fn append_encoded(&mut self, records: &[EncodedRecord]) -> Result<Vec<u64>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let head = self.lock_audit_head().await?;
        Ok(self.append_after(head, records).await?.0)
    }

    /// Reads the log's head, locking it until the transaction ends (PostgreSQL's row
    /// lock; SQLite's write transaction holds the lock already). Whoever holds it
    /// appends next.
    async fn lock_audit_head(&mut self) -> Result<AuditHead, StoreError>;

    /// Appends `records` after `head`, which this transaction locked and nothing has
    /// appended to since; returns their sequence numbers and the head after them.
    async fn append_after(
        &mut self,
        head: AuditHead,
        records: &[EncodedRecord],
    ) -> Result<(Vec<u64>, AuditHead), StoreError>;
}

macro_rules! impl_append {
    ($conn:ty, $db:ty, $insert:expr, $lock:expr, merged: $merged:expr) => {
        impl AppendAudit for $conn {
            async fn lock_audit_head(&mut self) -> Result<AuditHead, StoreError> {
                let (size, last, frontier): (i64, Vec<u8>, Vec<u8>) =
                    sqlx::query_as($lock).fetch_one(&mut *self).await?;
                head_from(size, last, frontier)
            }

            async fn append_after(
                &mut self,
                head: AuditHead,
                records: &[EncodedRecord],
            ) -> Result<(Vec<u64>, AuditHead), StoreError> {
                if records.is_empty() {
                    return Ok((Vec::new(), head));
                }
                crate::testkit_hooks::audit_fault()?;
                let (entries, range) = prepare(head, records);
                let last = entries.last().map(|e| e.leaf).unwrap_or_default();
                let packed = range.packed();
                // The inserts and the head update go to the database together: on SQLite
                // (`merged`) as one query of several statements, one hand-over to its
                // connection thread; on PostgreSQL, which takes one statement per query
                // with parameters, the last insert and the update as one statement (the
                // insert in a `WITH`), after any earlier chunks of a large batch.
                let mut query = sqlx::QueryBuilder::<$db>::new("");
                let mut start = 0;
                for size in insert_sizes(entries.len()) {
                    let chunk = &entries[start..start + size];
                    start += size;
                    if !$merged && start == entries.len() {
                        query.push("WITH inserted AS (");
                    }
                    query.push($insert);
                    query.push_values(chunk, |mut row, e| {
                        row.push_bind(e.seq as i64)
                            .push_bind(&e.text)
                            .push_bind(&e.leaf[..]);
                    });
                    if $merged {
                        query.push("; ");
                    } else if start < entries.len() {
                        query.build().execute(&mut *self).await?;
                        query.reset();
                    } else {
                        // The last insert and the head update in one statement.
                        query.push(" RETURNING 1) ");
                    }
                }
                query
                    .push("UPDATE audit_head SET size = ")
                    .push_bind(range.size() as i64)
                    .push(", last_hash = ")
                    .push_bind(&last[..])
                    .push(", frontier = ")
                    .push_bind(&packed)
                    .push(" WHERE id = 1");
                query.build().execute(&mut *self).await?;
                let seqs = entries.iter().map(|e| e.seq).collect();
                Ok((
                    seqs,
                    AuditHead {
                        size: range.size(),
                        last_hash: last,
                        range,
                    },
                ))
            }
        }
    };
}

impl_append!(
    SqliteConnection,
    sqlx::Sqlite,
    // OR FAIL: a conflict still fails the statement (and so the append), but SQLite need
    // not journal every page the multi-row statement touches to undo it: the caller's
    // transaction is rolled back on any error anyway.
    "INSERT OR FAIL INTO audit_log (seq, entry, leaf_hash) ",
    "SELECT size, last_hash, frontier FROM audit_head WHERE id = 1",
    merged: true
);
impl_append!(
    PgConnection,
    sqlx::Postgres,
    "INSERT INTO audit_log (seq, entry, leaf_hash) ",
    "SELECT size, last_hash, frontier FROM audit_head WHERE id = 1 FOR UPDATE",
    // PostgreSQL takes one statement per query when it has parameters.
    merged: false
);

impl Store {
    /// Appends `records` right after `head` in one statement, without a transaction or
    /// a lock, if the log's head is still `head` (the group-commit writer's guess: the
    /// head its last batch left). `None` when another writer appended since (or on
    /// SQLite, whose single writer gains nothing): nothing was written, take the
    /// locking path. Otherwise the sequence numbers and the new head, durable.
    ///
    /// The statement moves the head only `WHERE size = <head's size>` and inserts the
    /// entries only if it moved; PostgreSQL re-checks that condition on the newest row
    /// version when a concurrent append committed first, so two writers never both
    /// append after one head.
    pub async fn audit_append_after(
        &self,
        head: &AuditHead,
        records: &[EncodedRecord],
    ) -> Result<Option<(Vec<u64>, AuditHead)>, StoreError> {
        let Store::Postgres(pool) = self else {
            return Ok(None);
        };
        if records.is_empty() || records.len() > ROWS_PER_INSERT {
            return Ok(None);
        }
        crate::testkit_hooks::audit_fault()?;
        let (entries, range) = prepare(head.clone(), records);
        let last = entries.last().map(|e| e.leaf).unwrap_or_default();
        let packed = range.packed();
        let mut query = sqlx::QueryBuilder::<sqlx::Postgres>::new(
            "WITH moved AS (UPDATE audit_head SET size = ",
        );
        query
            .push_bind(range.size() as i64)
            .push(", last_hash = ")
            .push_bind(&last[..])
            .push(", frontier = ")
            .push_bind(&packed)
            .push(" WHERE id = 1 AND size = ")
            .push_bind(head.size as i64)
            .push(" RETURNING 1) INSERT INTO audit_log (seq, entry, leaf_hash) SELECT v.seq, v.entry, v.leaf FROM (");
        query.push_values(&entries, |mut row, e| {
            row.push_bind(e.seq as i64)
                .push_bind(&e.text)
                .push_bind(&e.leaf[..]);
        });
        query.push(") AS v (seq, entry, leaf) WHERE EXISTS (SELECT 1 FROM moved)");
        let inserted = query.build().execute(pool).await?.rows_affected();
        if inserted == 0 {
            return Ok(None);
        }
        if inserted != entries.len() as u64 {
            return Err(StoreError::Corrupt {
                what: "audit append",
                value: format!("{inserted} of {} entries inserted", entries.len()),
            });
        }
        let seqs = entries.iter().map(|e| e.seq).collect();
        Ok(Some((
            seqs,
            AuditHead {
                size: range.size(),
                last_hash: last,
                range,
            },
        )))
    }

    /// Appends `records` in one transaction of their own (group commit: the caller
    /// batches concurrent appends); durable when this returns.
    pub async fn audit_append(&self, records: &[EncodedRecord]) -> Result<Vec<u64>, StoreError> {
        Ok(in_write_tx!(self, |tx| {
            tx.append_encoded(records).await?
        }))
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

    /// Streams the entries with `from <= seq < to` in sequence order through `f`,
    /// borrowed: nothing is held beyond the chunk being read. The next chunks are read
    /// while `f` works through this one.
    pub async fn audit_scan(
        &self,
        from: i64,
        to: i64,
        mut f: impl FnMut(AuditRowRef<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut ahead = std::collections::VecDeque::new();
        let mut next = from;
        let fetch = |ahead: &mut std::collections::VecDeque<_>, next: &mut i64| {
            while ahead.len() < SCAN_AHEAD && *next < to {
                let end = next.saturating_add(SCAN_CHUNK).min(to);
                let store = self.clone();
                let start = *next;
                ahead.push_back(tokio::spawn(
                    async move { store.audit_chunk(start, end).await },
                ));
                *next = end;
            }
        };
        fetch(&mut ahead, &mut next);
        while let Some(task) = ahead.pop_front() {
            let chunk = task
                .await
                .map_err(|e| StoreError::Audit(format!("reading the audit log: {e}")))??;
            fetch(&mut ahead, &mut next);
            match chunk.rows() {
                Some(rows) => {
                    for row in rows {
                        f(row)?;
                    }
                }
                None => self.audit_scan_rows(chunk.from, chunk.to, &mut f).await?,
            }
        }
        Ok(())
    }

    /// [`Store::audit_scan`] a row at a time through the driver: for chunks whose
    /// aggregate does not split back into their rows.
    async fn audit_scan_rows(
        &self,
        from: i64,
        to: i64,
        f: &mut impl FnMut(AuditRowRef<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let sql = "SELECT seq, entry, leaf_hash FROM audit_log WHERE seq >= $1 AND seq < $2 \
                   ORDER BY seq";
        on_pool!(self, |p| {
            let mut rows = sqlx::query(sql).bind(from).bind(to).fetch(p);
            while let Some(row) = futures_util::TryStreamExt::try_next(&mut rows).await? {
                f(row_ref!(&row))?;
            }
        });
        Ok(())
    }

    /// Entries `from <= seq < to` aggregated by the database into one row.
    async fn audit_chunk(&self, from: i64, to: i64) -> Result<Chunk, StoreError> {
        let sql = match self {
            Store::Sqlite(_) => CHUNK_SQLITE,
            Store::Postgres(_) => CHUNK_POSTGRES,
        };
        let raw: ChunkRow = on_pool!(self, |p| sqlx::query_as(sql)
            .bind(from)
            .bind(to)
            .fetch_one(p)
            .await?);
        Ok(Chunk::new(from, to, raw))
    }

    /// Brings the query index up to the head: the principal and person of every entry
    /// not yet in it, inserted in key order a batch at a time (each batch its own short
    /// write transaction, so appenders wait at most one batch). Returns the entries
    /// indexed. Any process may run it; the `audit_indexed` row serialises them.
    pub async fn audit_index_catch_up(&self) -> Result<u64, StoreError> {
        const BATCH: i64 = 32_768;
        let lock = match self {
            Store::Sqlite(_) => "SELECT upto FROM audit_indexed WHERE id = 1",
            Store::Postgres(_) => "SELECT upto FROM audit_indexed WHERE id = 1 FOR UPDATE",
        };
        let fill = "INSERT INTO audit_index (kind, value, seq) \
                    SELECT 'principal', principal, seq FROM audit_log WHERE seq >= $1 AND seq < $2 \
                    UNION ALL \
                    SELECT 'subject', subject, seq FROM audit_log \
                    WHERE seq >= $1 AND seq < $2 AND subject IS NOT NULL \
                    ORDER BY 1, 2, 3";
        // Most calls find nothing to do: look first, without taking the write lock.
        let behind: bool = on_pool!(self, |p| sqlx::query_scalar(
            "SELECT (SELECT upto FROM audit_indexed WHERE id = 1) < \
                    (SELECT size FROM audit_head WHERE id = 1)"
        )
        .fetch_one(p)
        .await?);
        if !behind {
            return Ok(0);
        }
        let mut indexed = 0u64;
        loop {
            let done = in_write_tx!(self, |tx| {
                let upto: i64 = sqlx::query_scalar(lock).fetch_one(&mut *tx).await?;
                let size: i64 = sqlx::query_scalar("SELECT size FROM audit_head WHERE id = 1")
                    .fetch_one(&mut *tx)
                    .await?;
                if upto >= size {
                    true
                } else {
                    let end = size.min(upto + BATCH);
                    sqlx::query(fill)
                        .bind(upto)
                        .bind(end)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("UPDATE audit_indexed SET upto = $1 WHERE id = 1")
                        .bind(end)
                        .execute(&mut *tx)
                        .await?;
                    indexed += (end - upto) as u64;
                    false
                }
            });
            if done {
                return Ok(indexed);
            }
        }
    }

    /// How far the query index reaches (`upto`) and how many rows it holds.
    pub async fn audit_index_extent(&self) -> Result<(u64, u64), StoreError> {
        let (upto, rows): (i64, i64) = on_pool!(self, |p| {
            sqlx::query_as(
            "SELECT (SELECT upto FROM audit_indexed WHERE id = 1), (SELECT count(*) FROM audit_index)"
        )
        .fetch_one(p)
        .await?
        });
        Ok((upto.max(0) as u64, rows.max(0) as u64))
    }

    /// Whether the five query columns of `audit_log` are still generated by the
    /// database (migration 0008), so that they cannot disagree with the entries.
    pub async fn audit_query_columns_generated(&self) -> Result<bool, StoreError> {
        let sql = match self {
            Store::Sqlite(_) => {
                "SELECT count(*) FROM pragma_table_xinfo('audit_log') \
                 WHERE name IN ('at', 'principal', 'action', 'outcome', 'subject') \
                 AND hidden IN (2, 3)"
            }
            Store::Postgres(_) => {
                "SELECT count(*) FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = 'audit_log' \
                 AND column_name IN ('at', 'principal', 'action', 'outcome', 'subject') \
                 AND is_generated = 'ALWAYS'"
            }
        };
        let n: i64 = on_pool!(self, |p| sqlx::query_scalar(sql).fetch_one(p).await?);
        Ok(n == 5)
    }

    /// The lowest and highest stored sequence numbers (whatever the head says), if any.
    pub async fn audit_seq_bounds(&self) -> Result<Option<(i64, i64)>, StoreError> {
        let (lo, hi): (Option<i64>, Option<i64>) = on_pool!(self, |p| sqlx::query_as(
            "SELECT MIN(seq), MAX(seq) FROM audit_log"
        )
        .fetch_one(p)
        .await?);
        Ok(lo.zip(hi))
    }

    /// Streams every stored entry in sequence order through `f` (also rows that do
    /// not belong: verification must see them).
    pub async fn audit_for_each(
        &self,
        f: impl FnMut(AuditRowRef<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        match self.audit_seq_bounds().await? {
            Some((lo, hi)) => self.audit_scan(lo, hi.saturating_add(1), f).await,
            None => Ok(()),
        }
    }

    /// The stored leaf hashes of entries `0..size`, in order.
    pub async fn audit_leaf_hashes(&self, size: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        // Through the chunked scan: a proof in a long log reads every earlier hash.
        let from = self
            .audit_seq_bounds()
            .await?
            .map_or(0, |(lo, _)| lo.min(0));
        let mut out = Vec::with_capacity(size as usize);
        self.audit_scan(from, i64::try_from(size).unwrap_or(i64::MAX), |r| {
            out.push(r.leaf_hash.to_vec());
            Ok(())
        })
        .await?;
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
            ("action", "=", &filter.action),
            ("outcome", "=", &filter.outcome),
        ] {
            if let Some(v) = value {
                binds.push(v);
                sql.push_str(&format!(" AND {column} {op} ${}", binds.len() + 2));
            }
        }
        // Principals and persons through the query index, and the entries not yet in
        // it read directly.
        for (kind, value) in [
            ("principal", &filter.principal),
            ("subject", &filter.subject),
        ] {
            if let Some(v) = value {
                binds.push(v);
                let n = binds.len() + 2;
                sql.push_str(&format!(
                    " AND seq IN (SELECT seq FROM audit_index WHERE kind = '{kind}' AND value = ${n} \
                     UNION ALL SELECT seq FROM audit_log WHERE {kind} = ${n} \
                     AND seq >= (SELECT upto FROM audit_indexed WHERE id = 1))"
                ));
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
