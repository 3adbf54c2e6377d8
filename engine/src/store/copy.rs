//! PostgreSQL's bulk path for a load: every table a batch writes goes through `COPY`.
//!
//! Two kinds of table, two routes:
//!
//! - **Keyed records** (events, residences, relations, pending events, quarantine): each
//!   file's records have their own keys, so a batch is copied straight into its table
//!   under a savepoint. When the copy meets a key that is already stored (a file loaded
//!   again, a record twice in one file) the savepoint is rolled back and the batch goes
//!   through a temporary table into `INSERT … ON CONFLICT DO NOTHING`: the same rows end
//!   up stored either way, and the common case (new records) writes each row once.
//! - **Shared rows** (persons, vault, codes, FHIR reference aliases, protected attributes),
//!   which other files upsert too: batches are copied into a temporary table of the
//!   load's own (`<table>_stage`; a batch repeating a key there is merged by the same
//!   `ON CONFLICT` rule the store uses, so a later mention fills in what an earlier one
//!   lacked) and only merged into the store at commit, in key order, under the ingest
//!   lock — a plain insert when none of the keys is stored yet, else the table's rule.
//!   So two loads never hold each other's shared rows while they write, and loads of
//!   different files run at once.
//!
//! Temporary tables are created on first use and dropped at commit or rollback.

use std::collections::HashSet;

use sqlx::{Postgres, Transaction};

use super::StoreError;

/// One table a load writes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Table {
    pub name: &'static str,
    pub cols: &'static str,
    /// Orders the merge at commit (shared tables): rows are locked in one order.
    pub key: &'static str,
    /// What a row whose key is stored does; table columns are qualified by `name`.
    pub on_conflict: &'static str,
}

pub(super) const PERSONS: Table = Table {
    name: "persons",
    cols: "id, pseudonym, scheme, birth_date, sex, death_date",
    key: "id",
    // Only a row that gains something is written again: an update that changes nothing
    // would still write a new row version, its index entries and its WAL.
    on_conflict: "ON CONFLICT (id) DO UPDATE SET \
         birth_date = COALESCE(excluded.birth_date, persons.birth_date), \
         sex = COALESCE(excluded.sex, persons.sex), \
         death_date = COALESCE(excluded.death_date, persons.death_date) \
         WHERE excluded.birth_date IS DISTINCT FROM persons.birth_date \
            AND excluded.birth_date IS NOT NULL \
         OR excluded.sex IS DISTINCT FROM persons.sex AND excluded.sex IS NOT NULL \
         OR excluded.death_date IS DISTINCT FROM persons.death_date \
            AND excluded.death_date IS NOT NULL",
};
pub(super) const VAULT: Table = Table {
    name: "vault",
    cols: "person_id, nonce, ciphertext",
    key: "person_id",
    on_conflict: "ON CONFLICT (person_id) DO NOTHING",
};
pub(super) const CODES: Table = Table {
    name: "codes",
    cols: "id, system, code",
    key: "id",
    on_conflict: "ON CONFLICT (id) DO NOTHING",
};
pub(super) const ALIASES: Table = Table {
    name: "fhir_refs",
    cols: "ref_key, person_id",
    key: "ref_key",
    on_conflict: "ON CONFLICT (ref_key) DO UPDATE SET person_id = excluded.person_id \
         WHERE fhir_refs.person_id <> excluded.person_id",
};
pub(super) const PROTECTED: Table = Table {
    name: "protected_attributes",
    cols: "person_id, attribute, value",
    key: "person_id, attribute",
    on_conflict: "ON CONFLICT (person_id, attribute) DO UPDATE SET value = excluded.value \
         WHERE protected_attributes.value <> excluded.value",
};
/// The shared tables, in the order they are merged at commit.
pub(super) const SHARED: [Table; 5] = [PERSONS, VAULT, CODES, ALIASES, PROTECTED];

pub(super) const EVENTS: Table = Table {
    name: "events",
    cols: "record_key, person_id, kind, code_id, detail_id, status, start_time, end_time, value, run_id",
    key: "record_key",
    on_conflict: "ON CONFLICT (record_key) DO NOTHING",
};
pub(super) const RESIDENCES: Table = Table {
    name: "residences",
    cols:
        "record_key, person_id, valid_from, valid_to, municipality, postcode, household_key, run_id",
    key: "record_key",
    on_conflict: "ON CONFLICT (record_key) DO NOTHING",
};
pub(super) const RELATIONS: Table = Table {
    name: "relations",
    cols: "record_key, child_id, parent_id, relation, valid_from, valid_to, run_id",
    key: "record_key",
    on_conflict: "ON CONFLICT (record_key) DO NOTHING",
};
pub(super) const PENDING: Table = Table {
    name: "pending_events",
    cols: "record_key, subject_ref, kind, code_id, detail_id, status, start_time, end_time, value, run_id",
    key: "record_key",
    on_conflict: "ON CONFLICT (record_key) DO NOTHING",
};
pub(super) const QUARANTINE: Table = Table {
    name: "quarantine",
    cols: "sha256, line, field, reason, file, run_id",
    key: "sha256, line, field",
    on_conflict: "ON CONFLICT (sha256, line, field) DO NOTHING",
};

/// Rows in `COPY … FROM STDIN (FORMAT binary)`: each field its length and its bytes in
/// network order, so nothing is formatted as text or parsed back, and nothing needs
/// escaping. Every column a load writes is `BIGINT`, `DOUBLE PRECISION`, `TEXT` or
/// `BYTEA`, whose binary forms are the integer, the IEEE double, the UTF-8 bytes and the
/// bytes.
#[derive(Debug)]
pub(super) struct CopyRows {
    buf: Vec<u8>,
    rows: u64,
    /// Where the current row's field count goes, and the count so far.
    row_start: usize,
    fields: i16,
    finished: bool,
}

impl CopyRows {
    pub fn with_capacity(bytes: usize) -> CopyRows {
        let mut buf = Vec::with_capacity(bytes + 32);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        CopyRows {
            buf,
            rows: 0,
            row_start: usize::MAX,
            fields: 0,
            finished: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// One field: its length and bytes, or length -1 for NULL.
    fn field(&mut self, bytes: Option<&[u8]>) -> &mut Self {
        if self.row_start == usize::MAX {
            self.row_start = self.buf.len();
            self.buf.extend_from_slice(&0i16.to_be_bytes());
        }
        match bytes {
            Some(b) => {
                self.buf.extend_from_slice(&(b.len() as i32).to_be_bytes());
                self.buf.extend_from_slice(b);
            }
            None => self.buf.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        self.fields += 1;
        self
    }

    pub fn int(&mut self, v: i64) -> &mut Self {
        self.field(Some(&v.to_be_bytes()))
    }

    pub fn opt_int(&mut self, v: Option<i64>) -> &mut Self {
        match v {
            Some(v) => self.int(v),
            None => self.null(),
        }
    }

    pub fn opt_float(&mut self, v: Option<f64>) -> &mut Self {
        match v {
            Some(v) => self.field(Some(&v.to_bits().to_be_bytes())),
            None => self.null(),
        }
    }

    pub fn text(&mut self, s: &str) -> &mut Self {
        self.field(Some(s.as_bytes()))
    }

    pub fn opt_text(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.field(Some(b))
    }

    pub fn null(&mut self) -> &mut Self {
        self.field(None)
    }

    /// Ends a row: writes its field count where it began.
    pub fn end(&mut self) {
        let at = self.row_start;
        self.buf[at..at + 2].copy_from_slice(&self.fields.to_be_bytes());
        self.row_start = usize::MAX;
        self.fields = 0;
        self.rows += 1;
    }

    /// The whole copy stream, with its trailer (added once: a stream may be sent twice).
    fn finish(&mut self) -> &[u8] {
        if !self.finished {
            self.buf.extend_from_slice(&(-1i16).to_be_bytes());
            self.finished = true;
        }
        &self.buf
    }
}

/// The temporary tables a load has created so far.
#[derive(Debug, Default)]
pub(super) struct Temps(HashSet<String>);

impl Temps {
    /// Creates `pg_temp.<name>` like `table` once per transaction: with the table's
    /// keys when it is to take the same `ON CONFLICT` rule (a stage), without when it
    /// takes a batch as it comes (which may name a key twice).
    async fn ensure(
        &mut self,
        tx: &mut Transaction<'static, Postgres>,
        name: &str,
        table: &str,
        keys: bool,
    ) -> Result<(), StoreError> {
        if self.0.contains(name) {
            return Ok(());
        }
        let indexes = if keys { " INCLUDING INDEXES" } else { "" };
        sqlx::query(&format!(
            "CREATE TEMP TABLE {name} (LIKE {table} INCLUDING DEFAULTS{indexes}) ON COMMIT DROP"
        ))
        .execute(&mut **tx)
        .await?;
        self.0.insert(name.to_string());
        Ok(())
    }

    fn has(&self, name: &str) -> bool {
        self.0.contains(name)
    }
}

async fn copy_into(
    tx: &mut Transaction<'static, Postgres>,
    target: &str,
    cols: &str,
    rows: &mut CopyRows,
) -> Result<u64, sqlx::Error> {
    let mut copy = tx
        .copy_in_raw(&format!(
            "COPY {target} ({cols}) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    copy.send(rows.finish()).await?;
    copy.finish().await
}

/// A key already stored (SQLSTATE 23505).
fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

/// Runs the fast route under a savepoint. `Ok(Some(rows))` when it worked; `Ok(None)`
/// when it met a stored key (the savepoint rolled back, the transaction usable again).
async fn unless_stored(
    tx: &mut Transaction<'static, Postgres>,
    fast: Result<u64, sqlx::Error>,
) -> Result<Option<u64>, StoreError> {
    match fast {
        Ok(n) => {
            sqlx::query("RELEASE SAVEPOINT tidig_fast")
                .execute(&mut **tx)
                .await?;
            Ok(Some(n))
        }
        Err(e) if unique_violation(&e) => {
            for sql in [
                "ROLLBACK TO SAVEPOINT tidig_fast",
                "RELEASE SAVEPOINT tidig_fast",
            ] {
                sqlx::query(sql).execute(&mut **tx).await?;
            }
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

async fn savepoint(tx: &mut Transaction<'static, Postgres>) -> Result<(), StoreError> {
    sqlx::query("SAVEPOINT tidig_fast")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Copies `rows` into `target`; if one of their keys is there already, copies them into
/// a temporary `<table>_in` and inserts from there into `target` under the table's
/// `ON CONFLICT` rule (`target` named as `table` for it). Returns the rows inserted.
async fn copy_or_merge(
    tx: &mut Transaction<'static, Postgres>,
    temps: &mut Temps,
    table: Table,
    target: &str,
    mut rows: CopyRows,
) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    savepoint(tx).await?;
    let fast = copy_into(tx, target, table.cols, &mut rows).await;
    if let Some(n) = unless_stored(tx, fast).await? {
        return Ok(n);
    }
    let incoming = format!("{}_in", table.name);
    temps.ensure(tx, &incoming, table.name, false).await?;
    copy_into(tx, &incoming, table.cols, &mut rows).await?;
    let inserted = sqlx::query(&format!(
        "INSERT INTO {target} AS {t} ({c}) SELECT {c} FROM {incoming} {on}",
        t = table.name,
        c = table.cols,
        on = table.on_conflict,
    ))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    sqlx::query(&format!("TRUNCATE {incoming}"))
        .execute(&mut **tx)
        .await?;
    Ok(inserted)
}

/// Keyed records: copied straight into `table`, through `ON CONFLICT DO NOTHING` only
/// when a key is stored already. Returns the rows inserted.
pub(super) async fn write_keyed(
    tx: &mut Transaction<'static, Postgres>,
    temps: &mut Temps,
    table: Table,
    rows: CopyRows,
) -> Result<u64, StoreError> {
    copy_or_merge(tx, temps, table, table.name, rows).await
}

/// Shared rows: copied into this load's `<table>_stage`, merged there by the table's
/// own rule when a batch repeats a key; the store sees them at [`merge_shared`].
pub(super) async fn write_shared(
    tx: &mut Transaction<'static, Postgres>,
    temps: &mut Temps,
    table: Table,
    rows: CopyRows,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let stage = format!("{}_stage", table.name);
    temps.ensure(tx, &stage, table.name, true).await?;
    copy_or_merge(tx, temps, table, &stage, rows).await?;
    Ok(())
}

/// Moves every staged shared row into the store, each table in key order: a plain insert
/// when none of the keys is stored yet (half the work of `ON CONFLICT`), else the table's
/// rule.
pub(super) async fn merge_shared(
    tx: &mut Transaction<'static, Postgres>,
    temps: &Temps,
) -> Result<(), StoreError> {
    for table in SHARED {
        let stage = format!("{}_stage", table.name);
        if !temps.has(&stage) {
            continue;
        }
        let insert = format!(
            "INSERT INTO {t} ({c}) SELECT {c} FROM {stage} ORDER BY {k}",
            t = table.name,
            c = table.cols,
            k = table.key,
        );
        savepoint(tx).await?;
        let fast = sqlx::query(&insert)
            .execute(&mut **tx)
            .await
            .map(|r| r.rows_affected());
        if unless_stored(tx, fast).await?.is_none() {
            sqlx::query(&format!("{insert} {}", table.on_conflict))
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_rows_are_postgresql_binary_copy() {
        let mut t = CopyRows::with_capacity(0);
        t.int(-2)
            .opt_int(None)
            .text("a\tb")
            .opt_float(Some(0.5))
            .bytes(&[0, 255]);
        t.end();
        let mut want = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        want.extend_from_slice(&[0, 5]); // five fields
        want.extend_from_slice(&[0, 0, 0, 8, 255, 255, 255, 255, 255, 255, 255, 254]);
        want.extend_from_slice(&[255, 255, 255, 255]); // NULL
        want.extend_from_slice(&[0, 0, 0, 3, b'a', b'\t', b'b']);
        want.extend_from_slice(&[0, 0, 0, 8, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[0, 0, 0, 2, 0, 255]);
        want.extend_from_slice(&[255, 255]); // trailer
        assert_eq!(t.finish(), want);
        assert_eq!(t.rows, 1);
    }
}
