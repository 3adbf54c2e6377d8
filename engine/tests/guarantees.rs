//! README "Guarantees" tried the way they break, with the real binary: processes run at
//! once (repeated, on SQLite and PostgreSQL), IDs planted in file names and columns,
//! hostile files, and the small things an impatient operator does.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failure here is a test failure"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{command, dump, pg, quickstart, tidig};
use tidig_engine::store::Store;

mod common;

fn spawn(dir: &Path, args: &[&str]) -> Child {
    command(dir, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child`, failing the test (instead of hanging it) after `limit`.
fn finish(mut child: Child, limit: Duration) -> Output {
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("tidig did not finish within {limit:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fresh store URL per backend here: a new SQLite file, and a new PostgreSQL database.
async fn fresh(dir: &Path, name: &str) -> Vec<(&'static str, String)> {
    let mut out = vec![(
        "sqlite",
        format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
    )];
    if let Some(pg) = pg() {
        out.push(("postgres", pg.create_database(name).await.unwrap()));
    }
    out
}

/// A fresh store URL on one backend.
async fn fresh_one(dir: &Path, backend: &str, name: &str) -> String {
    if backend == "sqlite" {
        return format!("sqlite://{}", dir.join(format!("{name}.db")).display());
    }
    pg().unwrap().create_database(name).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ingests_into_a_new_store_end_with_the_single_run_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = tidig(
        d,
        &[
            "synth",
            "--out",
            "s",
            "--persons",
            "600",
            "--corrupt-rate",
            "0.01",
        ],
    );
    assert!(s.status.success(), "{}", text(&s));
    for (backend, url) in fresh(d, "single").await {
        let one = tidig(d, &["--db", &url, "ingest", "s"]);
        assert!(one.status.success(), "{backend}: {}", text(&one));
        let expected = dump(&url).await;
        assert!(expected.len() > 1_000);
        // Each round: a brand-new store (so migrations race too) and three processes at
        // once, over the whole town, over events without their patients, and over the
        // patients and persons.
        for round in 0..3 {
            let url = fresh_one(d, backend, &format!("race{round}")).await;
            let runs = [
                vec!["--db", &url, "ingest", "s"],
                vec![
                    "--db",
                    &url,
                    "ingest",
                    "s/health/Encounter.000.ndjson",
                    "s/health/Observation.000.ndjson",
                    "s/health/MedicationRequest.000.ndjson",
                ],
                vec![
                    "--db",
                    &url,
                    "ingest",
                    "s/health/Patient.000.ndjson",
                    "s/population",
                ],
            ];
            let children: Vec<Child> = runs.iter().map(|a| spawn(d, a)).collect();
            for c in children {
                let o = finish(c, Duration::from_secs(300));
                assert!(o.status.success(), "{backend} round {round}: {}", text(&o));
            }
            let got = dump(&url).await;
            assert_eq!(got.len(), expected.len(), "{backend} round {round}");
            assert!(
                got == expected,
                "{backend} round {round}: the stores differ"
            );
            // And nothing is left that a re-run would change.
            let again = tidig(d, &["--json", "--db", &url, "ingest", "s"]);
            let v: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
            assert_eq!(v["loaded"], 0, "{backend} round {round}");
            assert_eq!(v["pending_total"], 0, "{backend} round {round}");
        }
    }
}

/// The settings file the capacity test scores under: the demo deployment and both
/// default units with a weekly capacity of `cap`.
fn capped_settings(cap: usize) -> String {
    format!(
        r#"[deployment]
legal_basis = "demo on synthetic data"
dpia_ref = "DPIA-T"
fria_ref = "FRIA-T"
art9_basis = "GDPR Art 9(2)(h)"

[scoring]
elevated = 0.02

[[scoring.units]]
id = "family-services-central"
name = "Central"
municipalities = ["091"]
postcode_prefixes = ["001", "002", "003", "004", "005"]
weekly_capacity = {cap}

[[scoring.units]]
id = "family-services-outer"
name = "Outer"
municipalities = ["091"]
weekly_capacity = {cap}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_scores_in_one_week_never_exceed_a_units_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (backend, url) in fresh(d, "capacity").await {
        quickstart(d, Some(&url));
        std::fs::write(d.join("tidig.toml"), capped_settings(10)).unwrap();
        // Three ISO weeks, each scored by two processes at once on two of its dates.
        for (a, b) in [
            ("2026-01-05", "2026-01-07"),
            ("2026-01-12", "2026-01-16"),
            ("2026-01-19", "2026-01-20"),
        ] {
            let children =
                [a, b].map(|day| spawn(d, &["--db", &url, "--json", "score", "--as-of", day]));
            let mut written = 0;
            for c in children {
                let o = finish(c, Duration::from_secs(600));
                assert!(o.status.success(), "{backend} {a}: {}", text(&o));
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                written += v["report"]["suggestions"].as_u64().unwrap();
            }
            assert!(written > 0, "{backend}: nothing to cap in the week of {a}");
            let store = Store::open(&url).await.unwrap();
            let mut per_unit = std::collections::BTreeMap::<String, usize>::new();
            for day in [a, b] {
                let date = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
                let days = (date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days();
                for s in store.open_suggestions(days).await.unwrap() {
                    *per_unit.entry(s.unit).or_default() += 1;
                }
            }
            store.close().await;
            assert!(
                !per_unit.is_empty(),
                "{backend}: nothing open in the week of {a}"
            );
            for (unit, n) in &per_unit {
                assert!(
                    *n <= 10,
                    "{backend}: {unit} has {n} open suggestions in the week of {a}"
                );
            }
        }
        std::fs::remove_file(d.join("tidig.toml")).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_raw_national_id_in_file_names_reasons_output_or_any_table() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let inbox = d.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let cpr_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/national_ids/dk_cpr/cprdirect_test_responses");
    let mut planted: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(&cpr_dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        // PNR_0101005038.txt: the file is named after the person.
        planted.push(name[4..14].to_string());
        std::fs::copy(&p, inbox.join(&name)).unwrap();
    }
    // Case events with IDs in every column, named after a person too.
    std::fs::write(
        inbox.join("cases_0101005038.csv"),
        "record_id,national_id,code,start_date,end_date,amount,unit\n\
         r1,0101005038,KPO,2024-01-01,,500,family\n\
         0107529039,0101429059,KPO,2024-01-01,,500,family\n\
         r3,0101520013,010682-362A,2024-01-01,,500,family\n\
         r4,0101965058,KPO,0101980014,,500,family\n\
         r5,0101965058,KPO,2024-01-01,0108610018,500,family\n\
         r6,0101965058,KPO,2024-01-01,,0108610069,family\n\
         r7,0101965058,KPO,2024-01-01,,500,0307610078\n\
         r8,0701614011,KPO,2024-01-01,,500,family\n",
    )
    .unwrap();
    planted.extend(["010682-362A".to_string(), "0101005038".to_string()]);
    let mut spellings: Vec<String> = Vec::new();
    for id in &planted {
        spellings.push(id.clone());
        if id.len() == 10 && id.chars().all(|c| c.is_ascii_digit()) {
            spellings.push(format!("{}-{}", &id[..6], &id[6..]));
        }
    }
    for (backend, url) in fresh(d, "noid").await {
        let mut outputs = Vec::new();
        for args in [
            vec!["--db", &url, "ingest", "--country", "dk", "inbox"],
            vec!["--db", &url, "--json", "ingest", "--country", "dk", "inbox"],
            vec![
                "--db",
                &url,
                "ingest",
                "--country",
                "dk",
                "--force",
                "inbox/PNR_0101005038.txt",
            ],
            vec![
                "--db",
                &url,
                "ingest",
                "--country",
                "dk",
                "inbox/PNR_0000000000.txt",
            ],
            vec!["--db", &url, "status"],
            // A DPO looking a person up by national ID: pseudonymized at once.
            vec!["--db", &url, "audit", "query", "--person", "0101005038"],
            vec!["--db", &url, "audit", "query", "--person", "010682-362A"],
        ] {
            outputs.push(tidig(d, &args));
        }
        let store = Store::open(&url).await.unwrap();
        assert!(store.count("persons").await.unwrap() >= 10, "{backend}");
        // The code, dates and amount columns holding IDs are quarantined (an ID as a
        // record id or unit is never stored as such).
        assert!(store.count("quarantine").await.unwrap() >= 4, "{backend}");
        store.close().await;
        let mut haystack = dump(&url).await.join("\n");
        // The run log and the audit trail too: file names, errors and queries are
        // recorded there.
        let store = Store::open(&url).await.unwrap();
        assert!(store.count("audit_log").await.unwrap() >= 10, "{backend}");
        for t in [
            "ingest_runs",
            "audit_log",
            "audit_checkpoints",
            "audit_seen",
        ] {
            haystack.push_str(&store.dump_table(t, &[]).await.unwrap().join("\n"));
        }
        store.close().await;
        for o in &outputs {
            haystack.push_str(&String::from_utf8_lossy(&o.stdout));
            haystack.push_str(&String::from_utf8_lossy(&o.stderr));
        }
        if backend == "sqlite" {
            let file = url.trim_start_matches("sqlite://");
            haystack.push_str(&String::from_utf8_lossy(&std::fs::read(file).unwrap()));
        }
        for id in &spellings {
            assert!(
                !haystack.contains(id.as_str()),
                "{backend}: raw ID {id} found"
            );
        }
        // The stored name still tells files apart: the same file keeps one name.
        let names: Vec<&str> = haystack
            .lines()
            .filter_map(|l| l.split("PNR_").nth(1))
            .map(|l| &l[..l.find(['.', ' ', '"']).unwrap_or(l.len())])
            .collect();
        assert!(
            !names.is_empty() && names.iter().all(|n| n.starts_with("id-")),
            "{names:?}"
        );
    }
}

#[test]
fn hostile_input_is_bounded_and_never_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = tidig(d, &["synth", "--out", "s", "--persons", "200"]);
    assert!(s.status.success(), "{}", text(&s));
    // One 200 MiB line, gzip-compressed to a few hundred KiB.
    let big = d.join("s/health/Huge.000.ndjson.gz");
    {
        let f = std::fs::File::create(&big).unwrap();
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        gz.write_all(br#"{"resourceType":"Observation","note":""#)
            .unwrap();
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..200 {
            gz.write_all(&chunk).unwrap();
        }
        gz.write_all(b"\"}\n").unwrap();
        gz.finish().unwrap();
    }
    assert!(std::fs::metadata(&big).unwrap().len() < 4 << 20);
    // A FIFO named like data (nobody writes to it), and a symlink to a directory.
    let fifo = d.join("s/health/stuck.ndjson");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    std::os::unix::fs::symlink(d.join("s"), d.join("s/population/loop")).unwrap();
    // And a data file nobody can read as data.
    std::fs::write(d.join("s/social/garbage.csv"), "\u{1}\u{2}\n").unwrap();

    let o = finish(
        spawn(d, &["--json", "ingest", "s"]),
        Duration::from_secs(600),
    );
    assert!(
        !o.status.success(),
        "the garbage file fails the run: {}",
        text(&o)
    );
    // Exactly one JSON object on stdout, even though a file failed.
    let mut stream =
        serde_json::Deserializer::from_slice(&o.stdout).into_iter::<serde_json::Value>();
    let v = stream.next().unwrap().unwrap();
    assert!(
        stream.next().is_none(),
        "more than one JSON object: {}",
        text(&o)
    );
    assert_eq!(v["ok"], false);
    let files = v["files"].as_array().unwrap();
    let status_of = |needle: &str| {
        files
            .iter()
            .find(|f| f["file"].as_str().unwrap().ends_with(needle))
            .unwrap_or_else(|| panic!("{needle} not reported: {}", text(&o)))
            .clone()
    };
    assert_eq!(status_of("stuck.ndjson")["status"], "ignored");
    assert_eq!(status_of("loop")["status"], "ignored");
    assert_eq!(status_of("garbage.csv")["status"], "failed");
    let huge = status_of("Huge.000.ndjson.gz");
    assert_eq!(
        (huge["status"].as_str(), huge["rejected"].as_u64()),
        (Some("loaded"), Some(1))
    );
    // Everything else loaded, and memory stayed far below the line's size.
    assert!(v["loaded"].as_u64().unwrap() > 1_000);
    let rss = v["peak_rss_mb"].as_f64().unwrap();
    assert!(rss < 150.0, "peak RSS {rss} MiB for a 200 MiB line");
}

#[test]
fn the_impatient_operators_small_cases() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A reference that is a number stays a reference.
    let o = command(d, &["--json", "status"])
        .env("TIDIG__DEPLOYMENT__DPIA_REF", "2026")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // Out-of-range settings are refused naming the key; a broken file in one line.
    std::fs::write(d.join("tidig.toml"), "[scoring]\nelevated = -1\n").unwrap();
    let o = tidig(d, &["status"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("scoring.elevated"),
        "{}",
        text(&o)
    );
    std::fs::write(d.join("tidig.toml"), "[scoring\nhigh = = 2\n").unwrap();
    let o = tidig(d, &["--json", "status"]);
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim().lines().count(),
        1,
        "{}",
        text(&o)
    );
    let mut stream =
        serde_json::Deserializer::from_slice(&o.stdout).into_iter::<serde_json::Value>();
    assert_eq!(stream.next().unwrap().unwrap()["ok"], false);
    assert!(stream.next().is_none());
    std::fs::remove_file(d.join("tidig.toml")).unwrap();

    // A trained model: its trainer cannot approve it under another spelling of their
    // name, and an id prefix is never a pattern.
    let v = quickstart(d, None);
    let active = v["model"]["id"].as_str().unwrap().to_string();
    std::fs::write(
        d.join("tidig.toml"),
        "[deployment]\nlegal_basis = \"demo\"\ndpia_ref = \"D\"\nfria_ref = \"F\"\n\
         art9_basis = \"GDPR Art 9(2)(h)\"\n\
         [gate]\nmin_auc = 0.0\nmin_demographic_parity_ratio = 0.0\nmax_equalized_odds_difference = 1.0\n",
    )
    .unwrap();
    let t = tidig(
        d,
        &["--json", "--as", "alice", "train", "--as-of", "2025-01-01"],
    );
    assert!(t.status.success(), "{}", text(&t));
    let tv: serde_json::Value = serde_json::from_slice(&t.stdout).unwrap();
    let trained = tv["model_id"].as_str().unwrap().to_string();
    for me in ["alice ", "Alice", " ALICE"] {
        let o = tidig(d, &["--as", me, "models", "approve", &trained]);
        assert!(!o.status.success(), "{me:?} approved their own model");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("approved by someone else"),
            "{}",
            text(&o)
        );
    }
    for pattern in ["%", "_", "*"] {
        let o = tidig(d, &["--as", "bob", "models", "retire", pattern]);
        assert!(
            !o.status.success(),
            "`models retire {pattern}` acted: {}",
            text(&o)
        );
    }
    // After a command exits 0, the database file alone holds its change.
    let o = tidig(d, &["--as", "bob", "models", "retire", &active]);
    assert!(o.status.success(), "{}", text(&o));
    let wal = d.join("tidig.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "the change sits in the WAL"
    );
    std::fs::copy(d.join("tidig.db"), d.join("backup.db")).unwrap();
    let o = tidig(
        d,
        &["--db", "sqlite://backup.db", "--json", "models", "list"],
    );
    let lv: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = lv["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == active.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["state"], "retired", "{row}");
}
