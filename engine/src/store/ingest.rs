//! The ingest aggregate: runs over input files, key fingerprints, FHIR reference aliases,
//! and the write path (batches of canonical records into one transaction per file).

use std::collections::HashMap;

use sqlx::{Postgres, Sqlite, Transaction};
use tidig_connectors::national_id::Sex;
use tidig_connectors::record::{
    AliasRow, CodeRow, EventRow, PendingRow, PersonRow, ProtectedRow, Record, Rejection,
    RelationRow, ResidenceRow,
};

use tidig_governance::audit::Record as AuditRecord;

use super::copy::{self, CopyRows};
use super::{AppendAudit, Store, StoreError};

/// Records gathered from the parser, written together.
#[derive(Debug, Default)]
pub struct Batch {
    /// Persons by id; a later mention fills in facts an earlier one lacked.
    pub persons: HashMap<i64, PersonRow>,
    pub codes: Vec<CodeRow>,
    pub events: Vec<EventRow>,
    pub residences: Vec<ResidenceRow>,
    pub relations: Vec<RelationRow>,
    pub aliases: HashMap<i64, AliasRow>,
    pub protected: HashMap<(i64, &'static str), ProtectedRow>,
    /// Events whose patient is not known yet; kept until the reference resolves.
    pub pending: Vec<PendingRow>,
    pub rejections: Vec<Rejection>,
}

impl Batch {
    pub fn push(&mut self, record: Record) {
        match record {
            Record::Person(p) => match self.persons.get_mut(&p.key.id) {
                Some(old) => {
                    old.birth_date = p.birth_date.or(old.birth_date);
                    old.sex = p.sex.or(old.sex);
                    old.death_date = p.death_date.or(old.death_date);
                    if old.sealed.is_none() {
                        old.sealed = p.sealed;
                    }
                }
                None => {
                    self.persons.insert(p.key.id, p);
                }
            },
            Record::Code(c) => self.codes.push(c),
            Record::Event(e) => self.events.push(e),
            Record::Residence(r) => self.residences.push(r),
            Record::Relation(r) => self.relations.push(r),
            Record::Alias(a) => {
                self.aliases.insert(a.ref_key, a);
            }
            Record::Protected(p) => {
                self.protected
                    .insert((p.person_id, p.attribute.as_str()), p);
            }
            Record::Pending(p) => self.pending.push(p),
        }
    }

    /// Rows held, to decide when to flush.
    pub fn len(&self) -> usize {
        self.persons.len()
            + self.codes.len()
            + self.events.len()
            + self.residences.len()
            + self.relations.len()
            + self.aliases.len()
            + self.protected.len()
            + self.pending.len()
            + self.rejections.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a batch changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Keyed records (events, residences, relations) newly inserted.
    pub inserted: u64,
    /// Keyed records already present (in the store or earlier in the file).
    pub duplicate: u64,
    /// Events newly kept as pending (their patient is not loaded yet).
    pub pending: u64,
}

enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// The transaction that loads one file; nothing is visible until [`IngestTx::commit`].
pub struct IngestTx {
    tx: Tx,
    /// PostgreSQL: the load's temporary tables (see `copy`).
    temps: copy::Temps,
    run_id: i64,
    file: String,
    sha256: String,
    started_at: String,
}

impl std::fmt::Debug for IngestTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IngestTx(run {}, {})", self.run_id, self.file)
    }
}

/// The PostgreSQL advisory lock key that serialises the commits of loads ("tidig-in").
const INGEST_LOCK: i64 = 0x7469_6469_672d_696e;

/// SQLite's bound-parameter limit in the bundled library (32766), with margin.
const SQLITE_PARAMS: usize = 32_000;
/// Rows per statement: larger statements cost more to prepare than they save.
const MAX_ROWS: usize = 512;

/// `INSERT INTO table (cols) VALUES (?, …), (…) tail` for `rows` rows, on SQLite.
/// Anonymous `?` parameters: numbered ones are looked up by name while the statement is
/// prepared, which is quadratic in their number.
fn values_sql(table_cols: &str, ncols: usize, rows: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(64 + rows * ncols * 2);
    // `OR IGNORE` (unlike `ON CONFLICT DO NOTHING` with NOT NULL columns) lets no row
    // abort the statement, so SQLite needs no statement journal for it: every page a
    // multi-row insert touches would otherwise be copied there first.
    let ignore = tail.ends_with("DO NOTHING");
    if ignore {
        sql.push_str("INSERT OR IGNORE INTO ");
    } else {
        sql.push_str("INSERT INTO ");
    }
    sql.push_str(table_cols);
    sql.push_str(" VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..ncols {
            if c > 0 {
                sql.push(',');
            }
            sql.push('?');
        }
        sql.push(')');
    }
    if !ignore {
        sql.push(' ');
        sql.push_str(tail);
    }
    sql
}

/// Splits `rows` into chunks of a few fixed sizes (`max`, 64, 8, 1), so that only a handful
/// of distinct statements is ever prepared and cached per table: a cached statement with
/// thousands of parameters costs megabytes.
fn fixed_chunks<T>(rows: &[T], max: usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut rest = rows;
    for size in [max, 64, 8, 1] {
        let size = size.min(max);
        while rest.len() >= size {
            let (head, tail) = rest.split_at(size);
            out.push(head);
            rest = tail;
        }
    }
    out
}

/// Inserts `rows` in multi-row statements on SQLite; evaluates to the rows affected.
macro_rules! insert_rows {
    ($tx:expr, $table_cols:expr, $ncols:expr, $tail:expr, $rows:expr, |$q:ident, $r:ident| $bind:expr) => {{
        let rows = $rows;
        let mut affected = 0u64;
        for chunk in fixed_chunks(rows, (SQLITE_PARAMS / $ncols).clamp(1, MAX_ROWS)) {
            let sql = values_sql($table_cols, $ncols, chunk.len(), $tail);
            let mut $q = sqlx::query(&sql);
            for $r in chunk {
                $q = $bind;
            }
            affected += $q.execute(&mut **$tx).await?.rows_affected();
        }
        affected
    }};
}

fn sex_text(s: Option<Sex>) -> Option<&'static str> {
    s.map(|s| match s {
        Sex::Female => "F",
        Sex::Male => "M",
    })
}

impl IngestTx {
    async fn begin(
        store: &Store,
        file: &str,
        sha256: &str,
        format: &str,
        started_at: String,
    ) -> Result<IngestTx, StoreError> {
        let sql = "INSERT INTO ingest_runs (file, sha256, format, status, started_at) \
                   VALUES ($1, $2, $3, 'running', $4) RETURNING id";
        macro_rules! record_run {
            ($tx:expr) => {
                sqlx::query_scalar::<_, i64>(sql)
                    .bind(file)
                    .bind(sha256)
                    .bind(format)
                    .bind(&started_at)
                    .fetch_one(&mut *$tx)
                    .await?
            };
        }
        let (tx, run_id) = match store {
            Store::Sqlite(s) => {
                // IMMEDIATE takes the write lock now, so concurrent writers queue on the
                // busy timeout instead of failing with "database is locked" later.
                let mut tx = s.write.begin_with("BEGIN IMMEDIATE").await?;
                let id = record_run!(tx);
                (Tx::Sqlite(tx), id)
            }
            Store::Postgres(p) => {
                // No lock while writing: a load copies its records under their own keys
                // and stages shared rows in temporary tables; the ingest lock is taken
                // at commit (see `commit`), so loads of different files run at once.
                let mut tx = p.begin().await?;
                let id = record_run!(tx);
                (Tx::Postgres(tx), id)
            }
        };
        Ok(IngestTx {
            tx,
            temps: copy::Temps::default(),
            run_id,
            file: file.into(),
            sha256: sha256.into(),
            started_at,
        })
    }

    pub fn run_id(&self) -> i64 {
        self.run_id
    }

    pub fn started_at(&self) -> &str {
        &self.started_at
    }

    /// Writes one batch.
    pub async fn write(&mut self, mut batch: Batch) -> Result<WriteOutcome, StoreError> {
        // In key order, consecutive inserts walk the same index pages.
        batch.events.sort_unstable_by_key(|e| e.record_key);
        let run_id = self.run_id;
        let (file, sha) = (&self.file, &self.sha256);
        let tx = match &mut self.tx {
            Tx::Sqlite(tx) => tx,
            Tx::Postgres(tx) => {
                return write_postgres(tx, &mut self.temps, &batch, run_id, file, sha).await
            }
        };
        let batch = &batch;
        let mut out = WriteOutcome::default();

        let persons: Vec<&PersonRow> = batch.persons.values().collect();
        insert_rows!(
            tx,
            "persons (id, pseudonym, scheme, birth_date, sex, death_date)",
            6,
            "ON CONFLICT (id) DO UPDATE SET \
             birth_date = COALESCE(excluded.birth_date, persons.birth_date), \
             sex = COALESCE(excluded.sex, persons.sex), \
             death_date = COALESCE(excluded.death_date, persons.death_date)",
            &persons,
            |q, p| q
                .bind(p.key.id)
                .bind(p.key.pseudonym())
                .bind(p.scheme)
                .bind(p.birth_date.map(i64::from))
                .bind(sex_text(p.sex))
                .bind(p.death_date.map(i64::from))
        );
        let sealed: Vec<(i64, &tidig_connectors::pseudonym::Sealed)> = batch
            .persons
            .values()
            .filter_map(|p| p.sealed.as_ref().map(|s| (p.key.id, s)))
            .collect();
        insert_rows!(
            tx,
            "vault (person_id, nonce, ciphertext)",
            3,
            "ON CONFLICT (person_id) DO NOTHING",
            &sealed,
            |q, s| q
                .bind(s.0)
                .bind(s.1.nonce.to_vec())
                .bind(s.1.ciphertext.clone())
        );
        insert_rows!(
            tx,
            "codes (id, system, code)",
            3,
            "ON CONFLICT (id) DO NOTHING",
            &batch.codes,
            |q, c| q.bind(c.id).bind(&c.system).bind(&c.code)
        );
        let aliases: Vec<&AliasRow> = batch.aliases.values().collect();
        insert_rows!(
            tx,
            "fhir_refs (ref_key, person_id)",
            2,
            "ON CONFLICT (ref_key) DO UPDATE SET person_id = excluded.person_id",
            &aliases,
            |q, a| q.bind(a.ref_key).bind(a.person_id)
        );
        let protected: Vec<&ProtectedRow> = batch.protected.values().collect();
        insert_rows!(
            tx,
            "protected_attributes (person_id, attribute, value)",
            3,
            "ON CONFLICT (person_id, attribute) DO UPDATE SET value = excluded.value",
            &protected,
            |q, p| q
                .bind(p.person_id)
                .bind(p.attribute.as_str())
                .bind(&p.value)
        );
        let n = insert_rows!(
            tx,
            "residences (record_key, person_id, valid_from, valid_to, municipality, postcode, household_key, run_id)",
            8,
            "ON CONFLICT (record_key) DO NOTHING",
            &batch.residences,
            |q, r| q
                .bind(r.record_key)
                .bind(r.person_id)
                .bind(r.valid_from as i64)
                .bind(r.valid_to.map(i64::from))
                .bind(&r.municipality)
                .bind(&r.postcode)
                .bind(r.household_key)
                .bind(run_id)
        );
        out.inserted += n;
        out.duplicate += batch.residences.len() as u64 - n;
        let n = insert_rows!(
            tx,
            "relations (record_key, child_id, parent_id, relation, valid_from, valid_to, run_id)",
            7,
            "ON CONFLICT (record_key) DO NOTHING",
            &batch.relations,
            |q, r| q
                .bind(r.record_key)
                .bind(r.child_id)
                .bind(r.parent_id)
                .bind(r.relation.as_str())
                .bind(r.valid_from.map(i64::from))
                .bind(r.valid_to.map(i64::from))
                .bind(run_id)
        );
        out.inserted += n;
        out.duplicate += batch.relations.len() as u64 - n;
        let n = insert_rows!(
            tx,
            "pending_events (record_key, subject_ref, kind, code_id, detail_id, status, start_time, end_time, value, run_id)",
            10,
            "ON CONFLICT (record_key) DO NOTHING",
            &batch.pending,
            |q, p| q
                .bind(p.event.record_key)
                .bind(p.subject_ref)
                .bind(p.event.kind.code())
                .bind(p.event.code_id)
                .bind(p.event.detail_id)
                .bind(p.event.status as u8 as i64)
                .bind(p.event.start)
                .bind(p.event.end)
                .bind(p.event.value)
                .bind(run_id)
        );
        out.pending += n;
        out.duplicate += batch.pending.len() as u64 - n;
        let n = insert_rows!(
            tx,
            "events (record_key, person_id, kind, code_id, detail_id, status, start_time, end_time, value, run_id)",
            10,
            "ON CONFLICT (record_key) DO NOTHING",
            &batch.events,
            |q, e| q
                .bind(e.record_key)
                .bind(e.person_id)
                .bind(e.kind.code())
                .bind(e.code_id)
                .bind(e.detail_id)
                .bind(e.status as u8 as i64)
                .bind(e.start)
                .bind(e.end)
                .bind(e.value)
                .bind(run_id)
        );
        out.inserted += n;
        out.duplicate += batch.events.len() as u64 - n;
        insert_rows!(
            tx,
            "quarantine (sha256, line, field, reason, file, run_id)",
            6,
            "ON CONFLICT (sha256, line, field) DO NOTHING",
            &batch.rejections,
            |q, r| q
                .bind(sha)
                .bind(r.line as i64)
                .bind(&r.field)
                .bind(&r.reason)
                .bind(file)
                .bind(run_id)
        );
        Ok(out)
    }

    /// Resolves pending events, marks the run loaded with its counts and commits
    /// everything at once. Returns the events that moved from pending into the store
    /// (this file's and any earlier run's whose patient this file brought).
    pub async fn commit(
        mut self,
        counts: &RunCounts,
        finished: &str,
        audit: &AuditRecord,
    ) -> Result<u64, StoreError> {
        const RESOLVE: &str = "INSERT INTO events (record_key, person_id, kind, code_id, \
             detail_id, status, start_time, end_time, value, run_id) \
             SELECT p.record_key, r.person_id, p.kind, p.code_id, p.detail_id, p.status, \
             p.start_time, p.end_time, p.value, p.run_id \
             FROM pending_events p JOIN fhir_refs r ON r.ref_key = p.subject_ref \
             WHERE true ON CONFLICT (record_key) DO NOTHING";
        const CLEAR: &str = "DELETE FROM pending_events WHERE EXISTS \
             (SELECT 1 FROM fhir_refs r WHERE r.ref_key = pending_events.subject_ref)";
        let sql =
            "UPDATE ingest_runs SET status = 'loaded', finished_at = $1, read = $2, loaded = $3, \
                   rejected = $4, duplicate = $5, skipped = $6, pending = $7, resolved = $8 \
                   WHERE id = $9";
        macro_rules! go {
            ($tx:expr) => {{
                let resolved = sqlx::query(RESOLVE)
                    .execute(&mut **$tx)
                    .await?
                    .rows_affected();
                sqlx::query(CLEAR).execute(&mut **$tx).await?;
                sqlx::query(sql)
                    .bind(finished)
                    .bind(counts.read as i64)
                    .bind(counts.loaded as i64)
                    .bind(counts.rejected as i64)
                    .bind(counts.duplicate as i64)
                    .bind(counts.skipped as i64)
                    .bind(counts.pending as i64)
                    .bind(resolved as i64)
                    .bind(self.run_id)
                    .execute(&mut **$tx)
                    .await?;
                let record = audit.clone().with(serde_json::json!({
                    "run": self.run_id, "resolved_pending": resolved,
                }));
                $tx.append_audit(&[record]).await?;
                resolved
            }};
        }
        let resolved = match &mut self.tx {
            Tx::Sqlite(tx) => go!(tx),
            Tx::Postgres(tx) => {
                // One committing load at a time, as SQLite's one writer gives: a commit
                // then sees every alias and pending event an earlier commit stored, so
                // pending events resolve whatever the interleaving. The shared rows are
                // merged only now, under the lock and in key order, so two loads never
                // wait on each other's rows in opposite orders.
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(INGEST_LOCK)
                    .execute(&mut **tx)
                    .await?;
                copy::merge_shared(tx, &self.temps).await?;
                go!(tx)
            }
        };
        match self.tx {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(resolved)
    }
}

/// One batch on PostgreSQL: every table through `COPY` (see `copy`).
async fn write_postgres(
    tx: &mut Transaction<'static, Postgres>,
    temps: &mut copy::Temps,
    batch: &Batch,
    run_id: i64,
    file: &str,
    sha256: &str,
) -> Result<WriteOutcome, StoreError> {
    let mut out = WriteOutcome::default();
    let mut rows = CopyRows::with_capacity(batch.persons.len() * 100);
    let mut sealed = CopyRows::with_capacity(batch.persons.len() * 200);
    for p in batch.persons.values() {
        rows.int(p.key.id)
            .text(&p.key.pseudonym())
            .text(p.scheme)
            .opt_int(p.birth_date.map(i64::from))
            .opt_text(sex_text(p.sex))
            .opt_int(p.death_date.map(i64::from))
            .end();
        if let Some(s) = &p.sealed {
            sealed
                .int(p.key.id)
                .bytes(&s.nonce)
                .bytes(&s.ciphertext)
                .end();
        }
    }
    copy::write_shared(tx, temps, copy::PERSONS, rows).await?;
    copy::write_shared(tx, temps, copy::VAULT, sealed).await?;
    let mut rows = CopyRows::with_capacity(batch.codes.len() * 40);
    for c in &batch.codes {
        rows.int(c.id).text(&c.system).text(&c.code).end();
    }
    copy::write_shared(tx, temps, copy::CODES, rows).await?;
    let mut rows = CopyRows::with_capacity(batch.aliases.len() * 40);
    for a in batch.aliases.values() {
        rows.int(a.ref_key).int(a.person_id).end();
    }
    copy::write_shared(tx, temps, copy::ALIASES, rows).await?;
    let mut rows = CopyRows::with_capacity(batch.protected.len() * 40);
    for p in batch.protected.values() {
        rows.int(p.person_id)
            .text(p.attribute.as_str())
            .text(&p.value)
            .end();
    }
    copy::write_shared(tx, temps, copy::PROTECTED, rows).await?;

    let mut rows = CopyRows::with_capacity(batch.residences.len() * 80);
    for r in &batch.residences {
        rows.int(r.record_key)
            .int(r.person_id)
            .int(i64::from(r.valid_from))
            .opt_int(r.valid_to.map(i64::from))
            .text(&r.municipality)
            .opt_text(r.postcode.as_deref())
            .opt_int(r.household_key)
            .int(run_id)
            .end();
    }
    let n = copy::write_keyed(tx, temps, copy::RESIDENCES, rows).await?;
    out.inserted += n;
    out.duplicate += batch.residences.len() as u64 - n;
    let mut rows = CopyRows::with_capacity(batch.relations.len() * 80);
    for r in &batch.relations {
        rows.int(r.record_key)
            .int(r.child_id)
            .int(r.parent_id)
            .text(r.relation.as_str())
            .opt_int(r.valid_from.map(i64::from))
            .opt_int(r.valid_to.map(i64::from))
            .int(run_id)
            .end();
    }
    let n = copy::write_keyed(tx, temps, copy::RELATIONS, rows).await?;
    out.inserted += n;
    out.duplicate += batch.relations.len() as u64 - n;
    let event = |rows: &mut CopyRows, e: &EventRow, who: i64| {
        rows.int(e.record_key)
            .int(who)
            .int(e.kind.code())
            .int(e.code_id)
            .opt_int(e.detail_id)
            .int(e.status as u8 as i64)
            .int(e.start)
            .opt_int(e.end)
            .opt_float(e.value)
            .int(run_id)
            .end();
    };
    let mut rows = CopyRows::with_capacity(batch.pending.len() * 90);
    for p in &batch.pending {
        event(&mut rows, &p.event, p.subject_ref);
    }
    let n = copy::write_keyed(tx, temps, copy::PENDING, rows).await?;
    out.pending += n;
    out.duplicate += batch.pending.len() as u64 - n;
    let mut rows = CopyRows::with_capacity(batch.events.len() * 90);
    for e in &batch.events {
        event(&mut rows, e, e.person_id);
    }
    let n = copy::write_keyed(tx, temps, copy::EVENTS, rows).await?;
    out.inserted += n;
    out.duplicate += batch.events.len() as u64 - n;
    let mut rows = CopyRows::with_capacity(batch.rejections.len() * 120);
    for r in &batch.rejections {
        rows.text(sha256)
            .int(r.line as i64)
            .text(&r.field)
            .text(&r.reason)
            .text(file)
            .int(run_id)
            .end();
    }
    copy::write_keyed(tx, temps, copy::QUARANTINE, rows).await?;
    Ok(out)
}

/// The figures a committed run records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunCounts {
    pub read: u64,
    pub loaded: u64,
    pub rejected: u64,
    pub duplicate: u64,
    pub skipped: u64,
    /// Events kept pending: their patient is not loaded yet.
    pub pending: u64,
}

/// A run row written outside a load transaction.
#[derive(Debug)]
pub struct RunRecord<'a> {
    pub file: &'a str,
    pub sha256: &'a str,
    pub format: &'a str,
    pub status: crate::domain::FileStatus,
    pub error: Option<&'a str>,
    pub started_at: &'a str,
    pub finished_at: &'a str,
}

impl Store {
    /// Records a key's fingerprint on first use (with its audit entry, in one
    /// transaction) and refuses a different key later.
    pub async fn check_key(
        &self,
        which: &'static str,
        fingerprint: &str,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        let key = format!("{which}_key_fingerprint");
        let select = "SELECT value FROM store_meta WHERE key = $1";
        let insert =
            "INSERT INTO store_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";
        let known: Option<String> = on_pool!(self, |p| sqlx::query_scalar(select)
            .bind(&key)
            .fetch_optional(p)
            .await?);
        let stored = match known {
            Some(s) => s,
            None => in_write_tx!(self, |tx| {
                // Claim first: a concurrent first use waits, then finds the key taken.
                let claimed = sqlx::query(insert)
                    .bind(&key)
                    .bind(fingerprint)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if claimed {
                    let record = audit.clone().with(serde_json::json!({
                        "key": which, "fingerprint": fingerprint,
                    }));
                    tx.append_audit(&[record]).await?;
                }
                let stored: String = sqlx::query_scalar(select)
                    .bind(&key)
                    .fetch_one(&mut *tx)
                    .await?;
                stored
            }),
        };
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
        let rows: Vec<(i64, i64)> =
            fetch_all!(self, (i64, i64), "SELECT ref_key, person_id FROM fhir_refs");
        Ok(rows.into_iter().collect())
    }

    /// Events waiting for their patient, over all runs.
    pub async fn pending_events(&self) -> Result<u64, StoreError> {
        let sql = "SELECT COUNT(*) FROM pending_events";
        let n: i64 = on_pool!(self, |p| sqlx::query_scalar(sql).fetch_one(p).await?);
        Ok(n as u64)
    }

    /// The id of an earlier successful run over a file with this content, if any.
    pub async fn loaded_run(&self, sha256: &str) -> Result<Option<i64>, StoreError> {
        let sql = "SELECT id FROM ingest_runs WHERE sha256 = $1 AND status = 'loaded' ORDER BY id LIMIT 1";
        Ok(on_pool!(self, |p| sqlx::query_scalar(sql)
            .bind(sha256)
            .fetch_optional(p)
            .await?))
    }

    /// Records a run that did not load anything (unchanged, failed, unrecognised) and its
    /// audit entry, in one transaction.
    pub async fn record_run(
        &self,
        run: &RunRecord<'_>,
        audit: &AuditRecord,
    ) -> Result<i64, StoreError> {
        let sql = "INSERT INTO ingest_runs (file, sha256, format, status, error, started_at, finished_at, \
                   read, loaded, rejected, duplicate, skipped) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, 0, 0, 0) RETURNING id";
        Ok(in_write_tx!(self, |tx| {
            let id: i64 = sqlx::query_scalar(sql)
                .bind(run.file)
                .bind(run.sha256)
                .bind(run.format)
                .bind(run.status.as_str())
                .bind(run.error)
                .bind(run.started_at)
                .bind(run.finished_at)
                .fetch_one(&mut *tx)
                .await?;
            let record = audit.clone().with(serde_json::json!({"run": id}));
            tx.append_audit(&[record]).await?;
            id
        }))
    }

    /// Starts the transaction that loads one file.
    pub async fn begin_file(
        &self,
        file: &str,
        sha256: &str,
        format: &str,
        started_at: String,
    ) -> Result<IngestTx, StoreError> {
        IngestTx::begin(self, file, sha256, format, started_at).await
    }
}
