//! The `tidig` binary as a user runs it: exit codes, one-line errors, `--json`, and the
//! kill-and-rerun guarantee.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure here is a test failure"
)]

use std::path::Path;
use std::process::Command;

use common::{dump, stderr, tidig, QUICKSTART};
use tidig_engine::testkit::pgtemp::TempPostgres;

mod common;

/// Kills ingest (abort, no cleanup) after `kill_after` batches, runs it again, and
/// compares with an uninterrupted run.
async fn kill_and_rerun(dir: &Path, synth: &str, clean_url: &str, url_for: impl Fn(u64) -> String) {
    let clean = tidig(
        dir,
        &["--db", clean_url, "ingest", synth, "--batch-rows", "500"],
    );
    assert!(clean.status.success(), "{}", stderr(&clean));
    let expected = dump(clean_url).await;
    assert!(expected.len() > 1_000);
    for kill_after in [1u64, 4, 9, 17] {
        let url = url_for(kill_after);
        let killed = Command::new(env!("CARGO_BIN_EXE_tidig"))
            .current_dir(dir)
            .env("TIDIG_PSEUDONYM_KEY", "11".repeat(32))
            .env("TIDIG_VAULT_KEY", "22".repeat(32))
            .env("TIDIG_FAULT_ABORT_AFTER_BATCHES", kill_after.to_string())
            .args(["--db", &url, "ingest", synth, "--batch-rows", "500"])
            .output()
            .unwrap();
        assert!(
            !killed.status.success(),
            "the fault did not fire at batch {kill_after}"
        );
        let partial = dump(&url).await;
        assert!(
            partial.len() < expected.len(),
            "kill at {kill_after} left a complete store"
        );
        let rerun = tidig(dir, &["--db", &url, "ingest", synth, "--batch-rows", "500"]);
        assert!(rerun.status.success(), "{}", stderr(&rerun));
        assert_eq!(
            dump(&url).await,
            expected,
            "kill after batch {kill_after} then re-run differs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_ingest_rerun_ends_with_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = tidig(
        d,
        &[
            "synth",
            "--out",
            "s",
            "--persons",
            "700",
            "--corrupt-rate",
            "0.01",
        ],
    );
    assert!(s.status.success(), "{}", stderr(&s));
    let clean = format!("sqlite://{}", d.join("clean.db").display());
    kill_and_rerun(d, "s", &clean, |k| {
        format!("sqlite://{}", d.join(format!("killed{k}.db")).display())
    })
    .await;
    match TempPostgres::start(true).unwrap() {
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but no PostgreSQL server binaries were found"
            );
            eprintln!("PostgreSQL server binaries not found: skipping the PostgreSQL half")
        }
        Some(pg) => {
            let clean = pg.create_database("clean").await.unwrap();
            let mut urls = Vec::new();
            for k in [1u64, 4, 9, 17] {
                urls.push((k, pg.create_database(&format!("killed{k}")).await.unwrap()));
            }
            kill_and_rerun(d, "s", &clean, |k| {
                urls.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, u)| u.clone())
                    .unwrap()
            })
            .await;
        }
    }
}

#[test]
fn errors_are_one_clear_line_with_a_failing_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let missing = tidig(d, &["ingest", "no/such/file.ndjson"]);
    assert!(!missing.status.success());
    let err = stderr(&missing);
    assert!(err.contains("no/such/file.ndjson"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    std::fs::write(d.join("notes.txt"), "hello\n").unwrap();
    let unknown = tidig(d, &["ingest", "notes.txt"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("notes.txt: format not recognised"),
        "{}",
        stderr(&unknown)
    );

    // An empty export (nothing new today) is not an error: nothing to load.
    std::fs::write(d.join("empty.ndjson"), "").unwrap();
    std::fs::write(d.join("blank.csv"), "\n  \n").unwrap();
    let empty = tidig(d, &["--json", "ingest", "empty.ndjson", "blank.csv"]);
    assert!(empty.status.success(), "{}", stderr(&empty));
    let report: serde_json::Value = serde_json::from_slice(&empty.stdout).unwrap();
    let files = report["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{report}");
    for f in files {
        assert_eq!(f["status"], "ignored", "{report}");
        assert_eq!(f["error"], "empty: no records", "{report}");
    }

    let bad_db = tidig(d, &["--db", "mysql://x", "status"]);
    assert!(!bad_db.status.success());
    assert!(stderr(&bad_db).contains("mysql://x"), "{}", stderr(&bad_db));

    let bad_rate = tidig(d, &["synth", "--out", "x", "--corrupt-rate", "2"]);
    assert!(!bad_rate.status.success());
    assert!(stderr(&bad_rate).contains("--corrupt-rate"));
}

#[test]
fn json_output_is_one_object_and_progress_stays_off_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = tidig(d, &["--json", "synth", "--out", "s", "--persons", "120"]);
    assert!(s.status.success(), "{}", stderr(&s));
    let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert!(v["persons"].as_u64().unwrap() >= 120);
    let i = tidig(d, &["--json", "ingest", "s"]);
    assert!(i.status.success(), "{}", stderr(&i));
    let v: serde_json::Value = serde_json::from_slice(&i.stdout).unwrap();
    assert_eq!(v["rejected"], 0);
    assert!(v["loaded"].as_u64().unwrap() > 1_000);
    assert!(v["peak_rss_mb"].as_f64().unwrap() > 0.0);
    // A bad line in a loaded file is reported, and the file still loads.
    std::fs::write(
        d.join("cases.csv"),
        "record_id,national_id,code,start_date,end_date,amount,unit\n\
         r1,131052-308T,TT,2024-01-01,,500,u\n\
         r2,131052-308U,TT,2024-01-01,,500,u\n",
    )
    .unwrap();
    let c = tidig(d, &["--json", "ingest", "cases.csv"]);
    assert!(c.status.success(), "{}", stderr(&c));
    let v: serde_json::Value = serde_json::from_slice(&c.stdout).unwrap();
    assert_eq!(
        (v["loaded"].as_u64(), v["rejected"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(!String::from_utf8_lossy(&c.stdout).contains("308U"));
}

#[test]
fn an_invalid_feature_set_is_rejected_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = tidig_models::features::CHILD_FAMILY;
    let bad = good.replacen("aggregation = \"count\"", "aggregation = \"median\"", 1);
    let line = bad[..bad.find("\"median\"").unwrap()].matches('\n').count() + 1;
    std::fs::write(d.join("bad.toml"), bad).unwrap();
    let out = tidig(
        d,
        &[
            "features",
            "build",
            "--as-of",
            "2024-01-01",
            "--set",
            "bad.toml",
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("bad.toml:{line}: `aggregation`")),
        "{err}"
    );
    assert!(err.contains("`median` is not one of"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn rule_packs_are_checked_and_tested_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let ok = tidig(dir.path(), &["rules", "check", "--json"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["version"].as_str().unwrap().len(), 64);
    assert!(v["rules"].as_array().unwrap().len() >= 10);
    let ok = tidig(dir.path(), &["rules", "test"]);
    assert!(ok.status.success(), "{}", stderr(&ok));

    // A copy of the default pack with a typo in a rule: refused with file, line, column.
    let pack = dir.path().join("pack");
    std::fs::create_dir(&pack).unwrap();
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../governance/packs/default");
    for f in ["tidig.cedarschema", "rules.cedar", "golden.json"] {
        std::fs::copy(default.join(f), pack.join(f)).unwrap();
    }
    let rules = std::fs::read_to_string(pack.join("rules.cedar")).unwrap();
    let line = rules
        .lines()
        .position(|l| l.contains("resource.evidence_registries < 2"))
        .unwrap()
        + 1;
    std::fs::write(
        pack.join("rules.cedar"),
        rules.replace("resource.evidence_registries < 2", "resource.evidence < 2"),
    )
    .unwrap();
    let bad = tidig(dir.path(), &["rules", "check", pack.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    let err = stderr(&bad);
    assert!(err.contains(&format!("rules.cedar:{line}:")), "{err}");
    assert!(
        err.contains("output.minimum-evidence") && err.contains("evidence"),
        "{err}"
    );

    // A valid but changed rule: the golden case that pins it fails, and says which.
    std::fs::write(
        pack.join("rules.cedar"),
        rules.replace(
            "resource.evidence_registries < 2",
            "resource.evidence_registries < 1",
        ),
    )
    .unwrap();
    let failed = tidig(dir.path(), &["rules", "test", pack.to_str().unwrap()]);
    assert_eq!(failed.status.code(), Some(1));
    let out = String::from_utf8_lossy(&failed.stdout);
    assert!(
        out.contains("FAIL one registry of evidence is not enough"),
        "{out}"
    );
    assert!(
        stderr(&failed).contains("1 golden case(s) failed"),
        "{}",
        stderr(&failed)
    );

    // Scoring needs an active model.
    let db = format!("sqlite://{}", dir.path().join("t.db").display());
    let none = tidig(dir.path(), &["--db", &db, "score", "--as-of", "2026-01-01"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(
        stderr(&none).contains("no active model"),
        "{}",
        stderr(&none)
    );
}

/// The README's first command, on a small town: the whole pipeline runs, the second run
/// reuses the synthetic extracts and changes no suggestion, and no raw national ID
/// reaches the output.
#[test]
fn quickstart_runs_the_whole_pipeline_and_a_rerun_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = QUICKSTART;
    let first = tidig(d, &args);
    assert!(first.status.success(), "{}", stderr(&first));
    let v: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert!(v["synth"].is_object(), "the first run generates the town");
    assert_eq!(v["ingest"]["rejected"], 0);
    assert_eq!(v["model"]["gate_passed"], true);
    assert!(d.join(v["model"]["card"].as_str().unwrap()).exists());
    let written = v["score"]["suggestions"].as_u64().unwrap();
    assert!(written > 0, "no suggestions: {}", v["score"]);
    assert_eq!(v["score"]["new"].as_u64(), Some(written));
    let top = v["top"].as_array().unwrap();
    assert!(!top.is_empty() && top.len() <= 3);
    for t in top {
        let factors = t["suggestion"]["factors"].as_array().unwrap();
        assert!(!factors.is_empty(), "{t}");
    }

    let persons = std::fs::read_to_string(d.join("s/population/persons.csv")).unwrap();
    let out = String::from_utf8_lossy(&first.stdout);
    for line in persons.lines().skip(1).take(500) {
        let nid = line.split(',').next().unwrap();
        assert!(!out.contains(nid), "a raw national ID in the output");
    }

    let again = tidig(d, &args);
    assert!(again.status.success(), "{}", stderr(&again));
    let w: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert!(w["synth"].is_null(), "the second run reuses the extracts");
    assert_eq!(w["model"]["id"], v["model"]["id"]);
    assert_eq!(w["score"]["unchanged"].as_u64(), Some(written));
    assert_eq!(w["score"]["new"].as_u64(), Some(0));

    // The objection register from the command line: the ID read from standard input,
    // never echoed; listed by pseudonym; withdrawn with its record kept.
    let nid = persons.lines().nth(1).unwrap().split(',').next().unwrap();
    let with_stdin = |args: &[&str]| {
        use std::io::Write as _;
        let mut child = common::command(d, args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{nid}").unwrap();
        child.wait_with_output().unwrap()
    };
    let added = with_stdin(&["--json", "objections", "add", "-", "--reference", "DPO-1"]);
    assert!(added.status.success(), "{}", stderr(&added));
    let a: serde_json::Value = serde_json::from_slice(&added.stdout).unwrap();
    assert_eq!(a["objection"]["changed"], true, "{a}");
    let pseudonym = a["objection"]["pseudonym"].as_str().unwrap().to_string();
    let withdrawn = with_stdin(&["objections", "withdraw", "-", "--reference", "DPO-1b"]);
    assert!(withdrawn.status.success(), "{}", stderr(&withdrawn));
    let listed = tidig(d, &["--json", "objections", "list"]);
    let l: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let register = l["objections"].as_array().unwrap();
    assert_eq!(register.len(), 1, "{l}");
    assert_eq!(register[0]["pseudonym"], pseudonym.as_str());
    assert_eq!(register[0]["reference"], "DPO-1");
    assert_eq!(register[0]["withdrawn_reference"], "DPO-1b");
    for o in [&added, &withdrawn, &listed] {
        assert!(!String::from_utf8_lossy(&o.stdout).contains(nid));
        assert!(!stderr(o).contains(nid));
    }

    // The statistics: one JSON object with the run the quickstart scored, its
    // suggestions counted per unit and week, and the active model's fairness table.
    let stats = tidig(d, &["--json", "stats"]);
    assert!(stats.status.success(), "{}", stderr(&stats));
    let st: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let st = &st["statistics"];
    assert_eq!(st["min_cell"], 5);
    let runs = st["runs"].as_array().unwrap();
    assert!(!runs.is_empty(), "{st}");
    let weekly: u64 = st["suggestions_per_week"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["suggestions"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(weekly, written, "{st}");
    assert_eq!(st["fairness"]["model_id"], v["model"]["id"]);
    // The demo research run under the demo permit: released, aggregates only, read back
    // by its researcher.
    assert_eq!(v["research"]["state"], "released", "{v}");
    let run = v["research"]["run"].as_str().unwrap();
    let read = tidig(
        d,
        &[
            "--json",
            "research",
            "results",
            run,
            "--as",
            "demo-researcher",
        ],
    );
    assert!(read.status.success(), "{}", stderr(&read));
    let r: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
    assert!(
        !r["results"]["factors"]["factors"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{r}"
    );
    let other = tidig(d, &["research", "results", run, "--as", "someone-else"]);
    assert!(!other.status.success());
    let text = tidig(d, &["stats"]);
    assert!(text.status.success(), "{}", stderr(&text));
    assert!(String::from_utf8_lossy(&text.stdout).contains("suggestions per unit and ISO week"));
}
