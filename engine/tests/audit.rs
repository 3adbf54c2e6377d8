//! The audit trail as a data-protection officer relies on it, driven through the binary
//! on SQLite and PostgreSQL: every kind of tampering with the table is detected and
//! located; processes appending at once give one gap-free chain with exactly their
//! entries; a failing audit write fails the action and leaves nothing behind; an export
//! verifies without the store.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure here is a test failure"
)]

use std::path::Path;

use common::{command, pg, tidig};
use serde_json::Value;
use sqlx::{Connection, PgConnection, Row, SqliteConnection};
use tidig_governance::audit::merkle::leaf_hash;
use tidig_governance::audit::{CompactRange, Entry};

mod common;

fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn json_of(o: &std::process::Output) -> Value {
    let text = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A raw connection for the attacker with database access.
enum Db {
    Lite(SqliteConnection),
    Pg(PgConnection),
}

/// A bind value.
enum B {
    I(i64),
    T(String),
    Bl(Vec<u8>),
}

macro_rules! on_db {
    ($db:expr, |$c:ident| $body:expr) => {
        match $db {
            Db::Lite($c) => $body,
            Db::Pg($c) => $body,
        }
    };
}

impl Db {
    async fn open(url: &str) -> Db {
        if url.starts_with("postgres") {
            Db::Pg(PgConnection::connect(url).await.unwrap())
        } else {
            Db::Lite(SqliteConnection::connect(url).await.unwrap())
        }
    }

    async fn exec(&mut self, sql: &str, binds: Vec<B>) {
        self.try_exec(sql, binds).await.unwrap();
    }

    async fn try_exec(&mut self, sql: &str, binds: Vec<B>) -> Result<(), sqlx::Error> {
        on_db!(self, |c| {
            let mut q = sqlx::query(sql);
            for b in binds {
                q = match b {
                    B::I(i) => q.bind(i),
                    B::T(t) => q.bind(t),
                    B::Bl(v) => q.bind(v),
                };
            }
            q.execute(&mut *c).await.map(|_| ())
        })
    }

    /// (seq, entry) in order.
    async fn entries(&mut self) -> Vec<(i64, String)> {
        let sql = "SELECT seq, entry FROM audit_log ORDER BY seq";
        on_db!(self, |c| sqlx::query(sql)
            .fetch_all(&mut *c)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1)))
            .collect())
    }

    async fn close(self) {
        on_db!(self, |c| c.close().await.unwrap())
    }
}

/// Rewrites row `seq` to hold `text` and the hash that goes with it, as an attacker who
/// knows the format would (the query columns follow: the database generates them).
async fn put(db: &mut Db, seq: i64, text: &str) {
    db.exec(
        "UPDATE audit_log SET entry = $1, leaf_hash = $2 WHERE seq = $3",
        vec![
            B::T(text.into()),
            B::Bl(leaf_hash(text.as_bytes()).to_vec()),
            B::I(seq),
        ],
    )
    .await;
}

/// Builds a log with ~20 entries by real commands on `url` and archives its checkpoint
/// in `dir/archived.txt`.
fn build_log(dir: &Path, url: &str) {
    ok(&tidig(dir, &["--db", url, "--as", "alice", "ingest", "s"]));
    for who in ["bob", "carol"] {
        ok(&tidig(dir, &["--db", url, "--as", who, "audit", "query"]));
    }
    let note = ok(&tidig(dir, &["--db", url, "audit", "checkpoint"]));
    std::fs::write(dir.join("archived.txt"), note).unwrap();
    ok(&tidig(
        dir,
        &["--db", url, "--as", "dave", "audit", "query"],
    ));
}

fn verify(dir: &Path, url: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--db", url, "--json", "audit", "verify"];
    args.extend(extra);
    let o = tidig(dir, &args);
    let v = json_of(&o);
    assert_eq!(
        o.status.success(),
        v["ok"] == true,
        "exit status and verdict agree: {v}"
    );
    v
}

fn problem(v: &Value) -> (String, Option<u64>) {
    let p = &v["verify"]["problem"];
    (
        p["kind"].as_str().unwrap_or("none").into(),
        p["seq"].as_u64(),
    )
}

/// Every tampering case: a copy of the built log, the attack, and what verify must say.
async fn tamper_cases(dir: &Path, backend: &str, copy: &dyn Fn(&str) -> String) {
    // Nothing done: OK, and it extends the archived checkpoint.
    let url = copy("intact");
    let v = verify(dir, &url, &["--against", "archived.txt"]);
    assert_eq!(v["ok"], true, "{backend}: {v}");
    let n = v["verify"]["entries"].as_u64().unwrap();
    assert!(n >= 15, "{backend}: {n} entries");
    assert!(v["verify"]["against"]["size"].as_u64().unwrap() < n);

    // Change a field (the principal of entry 5), leaving the hashes.
    let url = copy("altered");
    let mut db = Db::open(&url).await;
    let e5 = db.entries().await[5].1.clone();
    let forged = e5.replace("\"id\":\"alice\"", "\"id\":\"mallory\"");
    assert_ne!(forged, e5);
    db.exec(
        "UPDATE audit_log SET entry = $1 WHERE seq = 5",
        vec![B::T(forged)],
    )
    .await;
    db.close().await;
    assert_eq!(
        problem(&verify(dir, &url, &[])),
        ("altered".into(), Some(5)),
        "{backend}"
    );

    // Change a field and recompute that entry's hash: entry 6 still commits to the
    // original, which locates the change at 5.
    let url = copy("rehashed");
    let mut db = Db::open(&url).await;
    let mut e = Entry::parse(&db.entries().await[5].1).unwrap();
    e.record.principal.id = "mallory".into();
    put(&mut db, 5, &e.canonical()).await;
    db.close().await;
    assert_eq!(
        problem(&verify(dir, &url, &[])),
        ("altered".into(), Some(5)),
        "{backend}"
    );

    // Change a query column alone (to hide who acted from queries): the database
    // refuses, as it generates those columns from the entry...
    let url = copy("column");
    let mut db = Db::open(&url).await;
    let written = db
        .try_exec(
            "UPDATE audit_log SET principal = 'mallory' WHERE seq = 5",
            vec![],
        )
        .await;
    assert!(
        written.is_err(),
        "{backend}: a query column was written on its own"
    );
    // ...so the table must be redefined with plain columns first, which verify sees.
    for sql in [
        "CREATE TABLE audit_plain AS SELECT * FROM audit_log",
        "DROP TABLE audit_log",
        "ALTER TABLE audit_plain RENAME TO audit_log",
        "UPDATE audit_log SET principal = 'mallory' WHERE seq = 5",
    ] {
        db.exec(sql, vec![]).await;
    }
    db.close().await;
    assert_eq!(
        problem(&verify(dir, &url, &[])),
        ("altered".into(), None),
        "{backend}"
    );

    // Remove a row from the query index, to hide entry 5 from queries by principal.
    let url = copy("unindexed");
    let mut db = Db::open(&url).await;
    db.exec(
        "DELETE FROM audit_index WHERE kind = 'principal' AND seq = 5",
        vec![],
    )
    .await;
    db.close().await;
    let v = verify(dir, &url, &[]);
    assert_eq!(problem(&v), ("altered".into(), None), "{backend}");
    assert!(
        v["verify"]["problem"]["detail"]
            .as_str()
            .unwrap()
            .contains("query index"),
        "{backend}: {v}"
    );

    // Delete an entry.
    let url = copy("deleted");
    let mut db = Db::open(&url).await;
    db.exec("DELETE FROM audit_log WHERE seq = 7", vec![]).await;
    db.close().await;
    assert_eq!(
        problem(&verify(dir, &url, &[])),
        ("removed".into(), Some(7)),
        "{backend}"
    );

    // Delete an entry and renumber the rest down to close the gap.
    let url = copy("renumbered");
    let mut db = Db::open(&url).await;
    db.exec("DELETE FROM audit_log WHERE seq = 7", vec![]).await;
    db.exec("UPDATE audit_log SET seq = -seq WHERE seq > 7", vec![])
        .await;
    db.exec("UPDATE audit_log SET seq = -seq - 1 WHERE seq < 0", vec![])
        .await;
    db.close().await;
    assert_eq!(
        problem(&verify(dir, &url, &[])),
        ("removed".into(), Some(7)),
        "{backend}"
    );

    // Insert one: move entries 6.. up and put a well-formed entry at 6 that links to 5.
    let url = copy("inserted");
    let mut db = Db::open(&url).await;
    let all = db.entries().await;
    let mut fake = Entry::parse(&all[6].1).unwrap();
    fake.prev = leaf_hash(all[5].1.as_bytes());
    fake.record.principal.id = "mallory".into();
    fake.record.action = "model.approve".into();
    let text = fake.canonical();
    db.exec("UPDATE audit_log SET seq = -seq WHERE seq >= 6", vec![])
        .await;
    db.exec("UPDATE audit_log SET seq = -seq + 1 WHERE seq < 0", vec![])
        .await;
    db.exec(
        "INSERT INTO audit_log (seq, entry, leaf_hash) VALUES (6, $1, $2)",
        vec![
            B::T(text.clone()),
            B::Bl(leaf_hash(text.as_bytes()).to_vec()),
        ],
    )
    .await;
    db.close().await;
    assert_eq!(
        problem(&verify(dir, &url, &[])),
        ("inserted".into(), Some(6)),
        "{backend}"
    );

    // Swap two entries (their whole rows but the sequence number).
    let url = copy("swapped");
    let mut db = Db::open(&url).await;
    db.exec("UPDATE audit_log SET seq = -1 WHERE seq = 4", vec![])
        .await;
    db.exec("UPDATE audit_log SET seq = 4 WHERE seq = 8", vec![])
        .await;
    db.exec("UPDATE audit_log SET seq = 8 WHERE seq = -1", vec![])
        .await;
    db.close().await;
    assert_eq!(
        problem(&verify(dir, &url, &[])),
        ("reordered".into(), Some(4)),
        "{backend}"
    );

    // Truncate the tail.
    let url = copy("truncated");
    let mut db = Db::open(&url).await;
    let keep = (n - 4) as i64;
    db.exec("DELETE FROM audit_log WHERE seq >= $1", vec![B::I(keep)])
        .await;
    db.close().await;
    assert_eq!(
        problem(&verify(dir, &url, &[])),
        ("truncated".into(), Some(keep as u64)),
        "{backend}"
    );

    // Rewrite the whole chain consistently from entry 3 on (hashes, links, head), as
    // someone with database access but without the signing key can. With its stored
    // checkpoints the rewrite shows at once (their signed roots differ).
    let url = copy("rewritten");
    rewrite(&url, false).await;
    assert_eq!(problem(&verify(dir, &url, &[])).0, "rewritten", "{backend}");
    // With the checkpoints deleted too the table is self-consistent; the checkpoint
    // archived elsewhere catches it.
    let url = copy("rewritten_nocp");
    rewrite(&url, true).await;
    assert_eq!(verify(dir, &url, &[])["ok"], true, "{backend}");
    assert_eq!(
        problem(&verify(dir, &url, &["--against", "archived.txt"])).0,
        "rewritten",
        "{backend}"
    );

    // A forged checkpoint (a root changed in the stored note) fails its signature.
    let url = copy("forged");
    let mut db = Db::open(&url).await;
    db.exec(
        "UPDATE audit_checkpoints SET note = replace(note, '\n\n', ' \n\n')",
        vec![],
    )
    .await;
    db.close().await;
    assert_eq!(
        problem(&verify(dir, &url, &[])).0,
        "bad_checkpoint",
        "{backend}"
    );
}

/// Rewrites the chain from entry 3 on with a changed principal, recomputing every
/// hash, link and the head; optionally deletes the stored checkpoints too.
async fn rewrite(url: &str, drop_checkpoints: bool) {
    let mut db = Db::open(url).await;
    let all = db.entries().await;
    let mut range = CompactRange::new();
    let mut prev = [0u8; 32];
    for (seq, text) in &all {
        let mut e = Entry::parse(text).unwrap();
        e.prev = prev;
        if *seq == 3 {
            e.record.principal.id = "mallory".into();
        }
        let text = e.canonical();
        put(&mut db, *seq, &text).await;
        prev = leaf_hash(text.as_bytes());
        range.push(prev);
    }
    db.exec(
        "UPDATE audit_head SET size = $1, last_hash = $2, frontier = $3",
        vec![
            B::I(range.size() as i64),
            B::Bl(prev.to_vec()),
            B::Bl(range.packed()),
        ],
    )
    .await;
    if drop_checkpoints {
        db.exec("DELETE FROM audit_checkpoints", vec![]).await;
    }
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_tampering_is_detected_and_located_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&tidig(d, &["synth", "--out", "s", "--persons", "80"]));
    // SQLite: one built log, copied file by file.
    let base = d.join("base.db");
    build_log(d, &format!("sqlite://{}", base.display()));
    let copy = |name: &str| {
        let to = d.join(format!("{name}.db"));
        std::fs::copy(&base, &to).unwrap();
        format!("sqlite://{}", to.display())
    };
    tamper_cases(d, "sqlite", &copy).await;
    // PostgreSQL: one built database, copied as templates.
    if let Some(pg) = pg() {
        let url = pg.create_database("base").await.unwrap();
        build_log(d, &url);
        let admin = pg.url("postgres");
        let copy = |name: &str| {
            let admin = admin.clone();
            let db = name.to_string();
            std::thread::spawn(move || {
                tokio::runtime::Runtime::new().unwrap().block_on(async {
                    let mut c = PgConnection::connect(&admin).await.unwrap();
                    sqlx::query(&format!("CREATE DATABASE \"{db}\" TEMPLATE base"))
                        .execute(&mut c)
                        .await
                        .unwrap();
                    c.close().await.unwrap();
                })
            })
            .join()
            .unwrap();
            pg.url(name)
        };
        tamper_cases(d, "postgres", &copy).await;
    }
}

/// Appends `n` query entries as principal `who`, one process per entry.
fn appender(
    dir: std::path::PathBuf,
    url: String,
    who: &'static str,
    n: usize,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for _ in 0..n {
            let o = command(
                &dir,
                &[
                    "--db",
                    &url,
                    "--as",
                    who,
                    "--json",
                    "audit",
                    "query",
                    "--page-size",
                    "1",
                ],
            )
            .output()
            .unwrap();
            ok(&o);
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_appending_at_once_give_one_gap_free_chain_with_exactly_their_entries() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let mut urls = vec![("sqlite", format!("sqlite://{}", d.join("c.db").display()))];
    if let Some(pg) = pg() {
        urls.push(("postgres", pg.create_database("concurrent").await.unwrap()));
    }
    for (backend, url) in urls {
        for round in 0..2 {
            let a = appender(d.clone(), url.clone(), "writer-a", 12);
            let b = appender(d.clone(), url.clone(), "writer-b", 12);
            a.join().unwrap();
            b.join().unwrap();
            let v = verify(&d, &url, &[]);
            assert_eq!(v["ok"], true, "{backend} round {round}: {v}");
            for who in ["writer-a", "writer-b"] {
                let o = tidig(
                    &d,
                    &[
                        "--db",
                        &url,
                        "--json",
                        "audit",
                        "query",
                        "--principal",
                        who,
                        "--action",
                        "audit.query",
                        "--page-size",
                        "1000",
                    ],
                );
                let n = json_of(&o)["entries"].as_array().unwrap().len();
                assert_eq!(n, 12 * (round + 1), "{backend}: {who}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_audit_write_fails_the_action_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&tidig(d, &["synth", "--out", "s", "--persons", "40"]));
    let mut urls = vec![("sqlite", format!("sqlite://{}", d.join("f.db").display()))];
    if let Some(pg) = pg() {
        urls.push(("postgres", pg.create_database("fault").await.unwrap()));
    }
    for (backend, url) in urls {
        let o = command(d, &["--db", &url, "ingest", "s"])
            .env("TIDIG_FAULT_AUDIT", "1")
            .output()
            .unwrap();
        assert!(!o.status.success(), "{backend}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("audit trail could not be written"),
            "{backend}: {err}"
        );
        let store = tidig_engine::store::Store::open(&url).await.unwrap();
        for t in [
            "persons",
            "events",
            "ingest_runs",
            "store_meta",
            "audit_log",
        ] {
            assert_eq!(store.count(t).await.unwrap(), 0, "{backend}: {t}");
        }
        store.close().await;
        // Without the fault the same command loads, and its log verifies.
        ok(&tidig(d, &["--db", &url, "ingest", "s"]));
        assert_eq!(verify(d, &url, &[])["ok"], true, "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_verifies_without_the_store_and_not_when_changed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&tidig(d, &["synth", "--out", "s", "--persons", "40"]));
    let url = format!("sqlite://{}", d.join("e.db").display());
    ok(&tidig(d, &["--db", &url, "ingest", "s"]));
    ok(&tidig(
        d,
        &["--db", &url, "audit", "export", "--out", "log.jsonl"],
    ));
    let key = ok(&tidig(d, &["keys", "verifier"]));
    std::fs::write(d.join("verifier.txt"), &key).unwrap();
    let o = tidig(
        d,
        &[
            "--json",
            "audit",
            "verify-export",
            "log.jsonl",
            "--verifier",
            "verifier.txt",
        ],
    );
    let v = json_of(&o);
    assert_eq!(v["ok"], true, "{v}");
    let text = std::fs::read_to_string(d.join("log.jsonl")).unwrap();
    let lines = text.lines().count() as u64;
    assert_eq!(v["checkpoint"]["size"].as_u64().unwrap() + 1, lines);
    // One changed character anywhere in an entry fails.
    let changed = text.replacen("\"ingest.file\"", "\"ingest.fil\"", 1);
    std::fs::write(d.join("changed.jsonl"), changed).unwrap();
    let o = tidig(
        d,
        &[
            "audit",
            "verify-export",
            "changed.jsonl",
            "--verifier",
            "verifier.txt",
        ],
    );
    assert!(!o.status.success());
    // Another key is not the log's.
    let other =
        tidig_governance::audit::NoteSigner::from_seed("test.example/audit", [9; 32]).unwrap();
    let o = tidig(
        d,
        &[
            "audit",
            "verify-export",
            "log.jsonl",
            "--verifier",
            &other.verifier().to_text(),
        ],
    );
    assert!(!o.status.success());
}

/// Queries by principal and by person find every entry, whether the query index has
/// caught up with it yet or not, and verification notices rows removed from the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_find_entries_before_and_after_the_index_catches_up_on_both_backends() {
    use tidig_engine::store::{AuditFilter, Store};
    use tidig_governance::audit::{Actor, EncodedRecord, Record};

    let dir = tempfile::tempdir().unwrap();
    let mut urls = vec![format!("sqlite://{}", dir.path().join("q.db").display())];
    if let Some(pg) = pg() {
        urls.push(pg.create_database("queries").await.unwrap());
    }
    let record = |who: &str, whom: Option<&str>, i: usize| {
        let actor = Actor {
            id: who.into(),
            role: "caseworker".into(),
            unit: None,
            auth: "test".into(),
        };
        let mut r = Record::new(
            format!("2026-11-23T10:00:{:02}.000Z", i % 60),
            actor,
            "casework",
            "suggestion.get",
        );
        r.subject = whom.map(Into::into);
        EncodedRecord::new(r)
    };
    for url in urls {
        let store = Store::open(&url).await.unwrap();
        let seqs = |rows: Vec<tidig_engine::store::AuditRow>| -> Vec<u64> {
            rows.into_iter().map(|r| r.seq).collect()
        };
        let by_person = |p: &str| AuditFilter {
            subject: Some(p.into()),
            ..AuditFilter::default()
        };
        let by_principal = |p: &str| AuditFilter {
            principal: Some(p.into()),
            ..AuditFilter::default()
        };
        // Ten entries, not yet indexed: found by reading the log itself.
        let first: Vec<EncodedRecord> = (0..10)
            .map(|i| record(["anna", "ben"][i % 2], (i % 3 == 0).then_some("p-x"), i))
            .collect();
        store.audit_append(&first).await.unwrap();
        let q = |f: AuditFilter| {
            let store = store.clone();
            async move { seqs(store.audit_query(&f, None, 100).await.unwrap()) }
        };
        assert_eq!(q(by_person("p-x")).await, vec![0, 3, 6, 9], "{url}");
        assert_eq!(q(by_principal("ben")).await, vec![1, 3, 5, 7, 9], "{url}");
        // Indexed: the same answers, now from the index.
        assert_eq!(store.audit_index_catch_up().await.unwrap(), 10);
        assert_eq!(store.audit_index_extent().await.unwrap(), (10, 14), "{url}");
        assert_eq!(q(by_person("p-x")).await, vec![0, 3, 6, 9], "{url}");
        // Five more, not indexed: answers join the index and the log's tail.
        let more: Vec<EncodedRecord> = (10..15)
            .map(|i| record("ben", (i == 12).then_some("p-x"), i))
            .collect();
        store.audit_append(&more).await.unwrap();
        assert_eq!(q(by_person("p-x")).await, vec![0, 3, 6, 9, 12], "{url}");
        assert_eq!(
            q(by_principal("ben")).await,
            vec![1, 3, 5, 7, 9, 10, 11, 12, 13, 14],
            "{url}"
        );
        let both = AuditFilter {
            principal: Some("anna".into()),
            subject: Some("p-x".into()),
            ..AuditFilter::default()
        };
        assert_eq!(q(both).await, vec![0, 6], "{url}");
        assert_eq!(store.audit_index_catch_up().await.unwrap(), 5);
        assert_eq!(store.audit_index_catch_up().await.unwrap(), 0);
        assert_eq!(q(by_person("p-x")).await, vec![0, 3, 6, 9, 12], "{url}");
        store.close().await;
    }
}

/// `audit prove` gives an inclusion proof that an outside verifier accepts against the
/// signed checkpoint's root, for the stored entry's own hash; and only for that entry.
#[test]
fn an_inclusion_proof_verifies_against_the_signed_root() {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    use tidig_governance::audit::merkle::verify_inclusion;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&tidig(d, &["synth", "--out", "s", "--persons", "40"]));
    let url = format!("sqlite://{}", d.join("p.db").display());
    build_log(d, &url);
    let b = |v: &Value| B64.decode(v.as_str().unwrap()).unwrap();
    for seq in ["0", "3", "9"] {
        let p =
            json_of(&tidig(d, &["--db", &url, "--json", "audit", "prove", seq]))["proof"].clone();
        let proof: Vec<Vec<u8>> = p["proof"].as_array().unwrap().iter().map(b).collect();
        let (index, size) = (p["seq"].as_u64().unwrap(), p["tree_size"].as_u64().unwrap());
        let (leaf, root) = (b(&p["leaf_hash"]), b(&p["root"]));
        assert_eq!(index.to_string(), seq);
        assert!(p["checkpoint"]
            .as_str()
            .unwrap()
            .contains(p["root"].as_str().unwrap()));
        verify_inclusion(index, size, &leaf, &proof, &root).unwrap();
        // The same proof does not place another leaf there.
        let mut other = leaf.clone();
        other[0] ^= 1;
        assert!(verify_inclusion(index, size, &other, &proof, &root).is_err());
    }
}
