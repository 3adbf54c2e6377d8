//! Helpers shared by the tests that drive the `tidig` binary: the command with fixed test
//! keys, and a dump of a store for comparisons.

#![allow(dead_code, reason = "each test binary uses a subset")]
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure here is a test failure"
)]

use std::path::Path;
use std::process::{Command, Output};

use std::sync::OnceLock;

use tidig_engine::store::{Store, TABLES};
use tidig_engine::testkit::pgtemp::TempPostgres;

/// The audit signer the tests sign checkpoints with (an Ed25519 seed of 0x33 bytes).
pub const AUDIT_KEY: &str =
    "PRIVATE+KEY+test.example/audit+16a10d76+ATMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMz";

/// `tidig args` in `dir`, with fixed test keys and no `TIDIG_DB` from the environment.
pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tidig"));
    c.current_dir(dir)
        .env_remove("TIDIG_DB")
        .env("TIDIG_PSEUDONYM_KEY", "11".repeat(32))
        .env("TIDIG_VAULT_KEY", "22".repeat(32))
        .env("TIDIG_AUDIT_KEY", AUDIT_KEY)
        .args(args);
    c
}

pub fn tidig(dir: &Path, args: &[&str]) -> Output {
    command(dir, args).output().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The quickstart on a small synthetic town, ending without serving.
pub const QUICKSTART: [&str; 7] = [
    "--json",
    "quickstart",
    "--persons",
    "6000",
    "--out",
    "s",
    "--no-serve",
];

/// `tidig [--db DB] QUICKSTART…` in `dir`: its JSON object, once it succeeded.
pub fn quickstart(dir: &Path, db: Option<&str>) -> serde_json::Value {
    let mut args = db.map_or(Vec::new(), |db| vec!["--db", db]);
    args.extend(QUICKSTART);
    let out = tidig(dir, &args);
    assert!(
        out.status.success(),
        "quickstart {args:?}: status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every table but the run log (whose `unchanged` rows legitimately grow), without
/// volatile columns.
pub async fn dump(url: &str) -> Vec<String> {
    let store = Store::open(url).await.unwrap();
    let mut all = Vec::new();
    for t in TABLES {
        if *t == "ingest_runs" {
            continue;
        }
        for row in store
            .dump_table(t, &["run_id", "id", "started_at", "finished_at"])
            .await
            .unwrap()
        {
            all.push(format!("{t}: {row}"));
        }
    }
    store.close().await;
    all
}

/// The throwaway PostgreSQL cluster of this test binary (started once), or `None` where
/// no server binaries exist outside CI.
static PG: OnceLock<Option<TempPostgres>> = OnceLock::new();

pub fn pg() -> Option<&'static TempPostgres> {
    PG.get_or_init(|| match TempPostgres::start(true).unwrap() {
        Some(pg) => Some(pg),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but no PostgreSQL server binaries were found"
            );
            eprintln!("PostgreSQL server binaries not found: skipping the PostgreSQL half");
            None
        }
    })
    .as_ref()
}
