//! The ingest guarantees of README "Guarantees", in process on both backends: files in
//! every order and under any name end with the store one ordered run gives; a rejected
//! line leaves nothing behind; nothing valid is passed over in silence; values are
//! checked at the edge; and a property test over random splits, orders and concurrent
//! runs. (Real processes at once: `engine/tests/guarantees.rs`.)

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failure here is a test failure"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use tidig_connectors::national_id::Country;
use tidig_engine::domain::FileStatus;
use tidig_engine::store::Store;
use tidig_tests::{dump, edge, load, shared, stores, synth};

type Dump = BTreeMap<&'static str, Vec<String>>;

/// A small municipality shared by the tests of this binary, without faults.
fn town() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep().join("town");
        synth(&dir, 300, |c| c.history_years = 3);
        dir
    })
}

fn health(name: &str) -> PathBuf {
    town().join("health").join(format!("{name}.000.ndjson"))
}

/// The store after one ordered run over the whole municipality, per backend.
async fn reference(dir: &Path, name: &str) -> Vec<Dump> {
    let mut out = Vec::new();
    for (_, store) in stores(dir, name).await {
        let r = load(&store, &edge(Country::Fi, &[]), &[town().to_path_buf()]).await;
        assert_eq!((r.failed_files, r.rejected), (0, 0));
        out.push(dump(&store).await);
    }
    out
}

/// Every FHIR file of the town as `(resource type, path)`.
fn fhir_files() -> Vec<(&'static str, PathBuf)> {
    [
        "Patient",
        "Encounter",
        "Condition",
        "Observation",
        "MedicationRequest",
        "Immunization",
    ]
    .into_iter()
    .map(|t| (t, health(t)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_files_in_every_order_and_under_any_name_end_with_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let expected = reference(d, "order_ref").await;
    let e = edge(Country::Fi, &[]);
    let population = town().join("population");
    let social = town().join("social");

    // The issue's case: events first, alone; then the people; then the events again.
    for ((backend, store), want) in stores(d, "late").await.into_iter().zip(&expected) {
        let first = load(&store, &e, &[health("Encounter")]).await;
        assert_eq!(
            first.rejected, 0,
            "{backend}: an unknown patient is not a fault"
        );
        assert!(first.pending > 0, "{backend}");
        let r = load(
            &store,
            &e,
            &[population.clone(), social.clone(), health("Patient")],
        )
        .await;
        assert_eq!(r.resolved, first.pending, "{backend}");
        let again = load(&store, &e, &[health("Encounter")]).await;
        assert_eq!(again.files[0].status, FileStatus::Unchanged, "{backend}");
        let rest: Vec<PathBuf> = fhir_files().into_iter().map(|(_, p)| p).collect();
        load(&store, &e, &rest).await;
        assert_eq!(store.count("pending_events").await.unwrap(), 0);
        assert_eq!(&dump(&store).await, want, "{backend}");
    }

    // Every file on its own, in reverse load order (events before patients before
    // persons).
    for ((backend, store), want) in stores(d, "reverse").await.into_iter().zip(&expected) {
        let mut files: Vec<PathBuf> = fhir_files().into_iter().map(|(_, p)| p).collect();
        files.reverse();
        files.push(social.join("case_events.csv"));
        for f in ["relations.csv", "addresses.csv", "persons.csv"] {
            files.push(population.join(f));
        }
        for f in &files {
            let r = load(&store, &e, std::slice::from_ref(f)).await;
            assert_eq!((r.failed_files, r.rejected), (0, 0), "{backend}: {f:?}");
        }
        assert_eq!(&dump(&store).await, want, "{backend}");
    }

    // Names that say nothing (and sort events first): content decides, and what comes
    // too early waits.
    let renamed = d.join("renamed");
    std::fs::create_dir_all(&renamed).unwrap();
    for (i, (t, p)) in fhir_files().into_iter().rev().enumerate() {
        let name = format!("{i}-{}s.ndjson", t.to_lowercase());
        std::fs::copy(p, renamed.join(name)).unwrap();
    }
    for ((backend, store), want) in stores(d, "renamed").await.into_iter().zip(&expected) {
        let r = load(
            &store,
            &e,
            &[renamed.clone(), population.clone(), social.clone()],
        )
        .await;
        assert_eq!((r.failed_files, r.rejected), (0, 0), "{backend}");
        assert_eq!(r.pending_total, 0, "{backend}");
        assert_eq!(&dump(&store).await, want, "{backend}");
    }
}

/// `file` with line `n` (1-based) replaced by `with`, or removed when `with` is `None`
/// (bytes: CPR extracts are Latin-1).
fn edited(file: &Path, n: usize, with: Option<&[u8]>) -> Vec<u8> {
    let text = std::fs::read(file).unwrap();
    let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    match with {
        Some(w) => lines[n - 1] = w,
        None => {
            lines.remove(n - 1);
        }
    }
    let mut out = lines.join(&b'\n');
    out.push(b'\n');
    out
}

/// Loads `bad` into one store and `good` (the same without the bad line) into another;
/// everything but the quarantine must be equal, and the quarantine holds exactly the
/// rejected lines.
async fn leaves_nothing(
    d: &Path,
    name: &str,
    country: Country,
    bad: &[u8],
    good: &[u8],
    file: &str,
) {
    let e = edge(country, &[]);
    let bad_dir = d.join(format!("{name}-bad"));
    let good_dir = d.join(format!("{name}-good"));
    for (dir, text) in [(&bad_dir, bad), (&good_dir, good)] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
    }
    let with_bad = stores(d, &format!("{name}_bad")).await;
    let with_good = stores(d, &format!("{name}_good")).await;
    for ((backend, b), (_, g)) in with_bad.into_iter().zip(with_good) {
        let rb = load(&b, &e, std::slice::from_ref(&bad_dir)).await;
        let rg = load(&g, &e, std::slice::from_ref(&good_dir)).await;
        assert_eq!(rb.rejected, 1, "{backend}: {name}");
        assert_eq!(rg.rejected, 0, "{backend}: {name}");
        assert_eq!(
            rb.loaded, rg.loaded,
            "{backend}: {name}: loaded counts the kept lines"
        );
        assert_eq!(
            b.count("quarantine").await.unwrap() as u64,
            rb.rejected,
            "{backend}: {name}: the counts match the quarantine"
        );
        let (mut db, mut dg) = (dump(&b).await, dump(&g).await);
        db.remove("quarantine");
        dg.remove("quarantine");
        assert_eq!(
            db, dg,
            "{backend}: {name}: the rejected line left something behind"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_line_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A person whose mother tongue is not a code: no person, no vault entry.
    let persons = town().join("population/persons.csv");
    let text = std::fs::read_to_string(&persons).unwrap();
    let line3: Vec<&str> = text.lines().nth(2).unwrap().split(',').collect();
    let mut bad_line = line3.clone();
    bad_line[4] = "f1";
    leaves_nothing(
        d,
        "tongue",
        Country::Fi,
        &edited(&persons, 3, Some(bad_line.join(",").as_bytes())),
        &edited(&persons, 3, None),
        "persons.csv",
    )
    .await;

    // A CPR parents record (015) whose father's PNR is invalid: not even the mother's
    // relation (nor the mother as a person) stays.
    let cpr = shared("national_ids/dk_cpr/cprdirect_test_responses/PNR_0101005038.txt");
    let text = std::fs::read(&cpr).unwrap();
    let (n, parents) = text
        .split(|&b| b == b'\n')
        .enumerate()
        .find(|(_, l)| l.starts_with(b"015"))
        .unwrap();
    let parents = parents.trim_ascii_end();
    let father = &parents[parents.len() - 10..];
    assert!(father.iter().all(u8::is_ascii_digit), "{parents:?}");
    let mut broken = parents[..parents.len() - 10].to_vec();
    broken.extend_from_slice(b"99");
    broken.extend_from_slice(&father[2..]);
    leaves_nothing(
        d,
        "cpr",
        Country::Dk,
        &edited(&cpr, n + 1, Some(&broken)),
        &edited(&cpr, n + 1, None),
        "extract.txt",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_valid_is_passed_over_in_silence() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let e = edge(Country::Fi, &[]);
    let patients = std::fs::read_to_string(health("Patient")).unwrap();
    let encounter = std::fs::read_to_string(health("Encounter"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    // `contained` before the resource's own type.
    let contained_first = encounter.replacen(
        '{',
        r#"{"contained":[{"resourceType":"Practitioner","id":"pr1"}],"#,
        1,
    );
    assert!(contained_first.find("Practitioner") < contained_first.find("\"Encounter\""));
    let inbox = d.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("patients.ndjson"), &patients).unwrap();
    // A blank first line and a broken second line: still recognised, the rest loads.
    std::fs::write(
        inbox.join("visits.ndjson"),
        format!("\n{{\"resourceType\": broken\n{contained_first}\n"),
    )
    .unwrap();
    // A data file nobody can read as data fails the run instead of being passed over.
    std::fs::write(inbox.join("garbage.ndjson"), "hello\nworld\n").unwrap();
    // Invalid UTF-8 on line 3 and a bad sex on line 4: both are reported, each on its
    // own line.
    let mut persons =
        b"national_id,birth_date,sex,death_date,mother_tongue,citizenship,country_of_birth\n\
                        131052-308T,1952-10-13,F,,fi,fi,fi\n"
            .to_vec();
    persons.extend_from_slice(b"010682-362A,1982-06-01,\xff\xfe,,fi,fi,fi\n");
    persons.extend_from_slice(b"120464-126J,1964-04-12,Q,,fi,fi,fi\n");
    std::fs::write(inbox.join("persons.csv"), persons).unwrap();

    for (backend, store) in stores(d, "silent").await {
        let r = load(&store, &e, std::slice::from_ref(&inbox)).await;
        let by_name = |n: &str| r.files.iter().find(|f| f.file.ends_with(n)).unwrap();
        assert_eq!(
            by_name("garbage.ndjson").status,
            FileStatus::Failed,
            "{backend}"
        );
        assert_eq!(r.failed_files, 1, "{backend}");
        let visits = by_name("visits.ndjson");
        assert_eq!(visits.status, FileStatus::Loaded, "{backend}");
        assert_eq!(
            (visits.loaded, visits.rejected, visits.skipped),
            (1, 1, 0),
            "{backend}"
        );
        let q: Vec<(String, i64)> = store
            .quarantine()
            .await
            .unwrap()
            .into_iter()
            .filter(|(f, ..)| f.ends_with("persons.csv"))
            .map(|(_, line, field, _)| (field, line))
            .collect();
        assert_eq!(
            q,
            vec![("-".to_string(), 3), ("sex".to_string(), 4)],
            "{backend}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implausible_values_are_quarantined_with_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let e = edge(Country::Fi, &[]);
    let patient = std::fs::read_to_string(health("Patient"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let first = |t: &str, needle: &str| -> String {
        std::fs::read_to_string(health(t))
            .unwrap()
            .lines()
            .find(|l| l.contains(needle))
            .unwrap()
            .to_string()
    };
    let subject = {
        let id = patient.split("\"id\":\"").nth(1).unwrap();
        format!("Patient/{}", &id[..id.find('"').unwrap()])
    };
    let retarget = |l: String| {
        let at = l.find("Patient/").unwrap();
        let end = at + l[at..].find('"').unwrap();
        format!("{}{}{}", &l[..at], subject, &l[end..])
    };
    let weight = retarget(first("Observation", "29463-7"));
    let v = weight.split("\"value\":").last().unwrap();
    let v = &v[..v.find([',', '}']).unwrap()];
    let huge = weight.replace(&format!("\"value\":{v}"), "\"value\":1.7e308");
    let negative = weight.replace(&format!("\"value\":{v}"), "\"value\":-3");
    let encounter = retarget(first("Encounter", "period"));
    let start = encounter.split("\"start\":\"").nth(1).unwrap();
    let start = &start[..start.find('"').unwrap()];
    let year0 = encounter.replace(start, "0000-01-01T00:00:00+02:00");
    let year9999 = encounter.replace(start, "9999-12-31T00:00:00+02:00");
    let offset = encounter.replace(start, &format!("{}+99:99", &start[..19]));
    let lines = [
        patient.clone(),
        huge,
        negative,
        year0,
        year9999,
        offset,
        weight.clone(),
        encounter.clone(),
    ];
    let file = d.join("values.ndjson");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    for (backend, store) in stores(d, "values").await {
        let r = load(&store, &e, std::slice::from_ref(&file)).await;
        assert_eq!((r.loaded, r.rejected), (3, 5), "{backend}: {:?}", r.files);
        let q = store.quarantine().await.unwrap();
        let fields: Vec<&str> = q.iter().map(|(_, _, f, _)| f.as_str()).collect();
        assert_eq!(
            fields.iter().filter(|f| f.contains("value")).count(),
            2,
            "{fields:?}"
        );
        assert_eq!(
            fields.iter().filter(|f| f.contains("period")).count(),
            3,
            "{fields:?}"
        );
        for (_, _, _, reason) in &q {
            assert!(!reason.is_empty());
        }
    }
}

/// A random split of the town's extracts into files: FHIR lines and CSV rows dealt into
/// `parts` files per source (CSV files keep their header), in a random order, and cut
/// into groups that run concurrently.
#[derive(Clone, Debug)]
struct Plan {
    /// Seeds the deal of lines to parts and the order of the files.
    seed: u64,
    /// Files per source.
    parts: u8,
    /// How many concurrent runs (1–3).
    runs: u8,
}

fn plans() -> impl Strategy<Value = Plan> {
    (2u8..5, 1u8..4, any::<u64>()).prop_map(|(parts, runs, seed)| Plan { seed, parts, runs })
}

/// Writes the split files for `plan` under `out`; returns them in the plan's order.
fn split(plan: &Plan, out: &Path) -> Vec<PathBuf> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(plan.seed);
    std::fs::create_dir_all(out).unwrap();
    let mut sources: Vec<(PathBuf, bool)> =
        fhir_files().into_iter().map(|(_, p)| (p, false)).collect();
    for f in ["persons.csv", "addresses.csv", "relations.csv"] {
        sources.push((town().join("population").join(f), true));
    }
    sources.push((town().join("social/case_events.csv"), true));
    let mut files = Vec::new();
    for (si, (src, csv)) in sources.iter().enumerate() {
        let text = std::fs::read_to_string(src).unwrap();
        let mut lines = text.lines();
        let header = if *csv { lines.next() } else { None };
        let mut parts: Vec<String> =
            vec![header.map(|h| format!("{h}\n")).unwrap_or_default(); plan.parts as usize];
        for line in lines {
            let p = rng.gen_range(0..plan.parts) as usize;
            parts[p].push_str(line);
            parts[p].push('\n');
        }
        let ext = if *csv { "csv" } else { "ndjson" };
        let stem = src.file_stem().unwrap().to_string_lossy().to_string();
        for (pi, body) in parts.into_iter().enumerate() {
            // Neutral names: nothing in a name says what is inside.
            let path = out.join(format!("part-{si}-{pi}-{}.{ext}", stem.len()));
            std::fs::write(&path, body).unwrap();
            files.push(path);
        }
    }
    let mut keyed: Vec<(u32, PathBuf)> = files.into_iter().map(|p| (rng.r#gen(), p)).collect();
    keyed.sort();
    keyed.into_iter().map(|(_, p)| p).collect()
}

/// Loads `files` as `runs` concurrent runs over one store (each with its own pool, as
/// separate processes would have), then once more in full, as an operator re-running a
/// directory would.
async fn run_plan(url: &str, files: &[PathBuf], runs: usize) -> Dump {
    let e = edge(Country::Fi, &[]);
    let chunk = files.len().div_ceil(runs);
    let mut tasks = Vec::new();
    for group in files.chunks(chunk) {
        let (url, e, group) = (url.to_string(), e.clone(), group.to_vec());
        tasks.push(tokio::spawn(async move {
            let store = Store::open(&url).await.unwrap();
            let r = load(&store, &e, &group).await;
            store.close().await;
            r
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!((r.failed_files, r.rejected), (0, 0), "{:?}", r.files);
    }
    let store = Store::open(url).await.unwrap();
    let again = load(&store, &e, files).await;
    // Nothing left to do: every file unchanged, but a part the deal left without a
    // line, which is ignored as empty each time (nothing in it to load).
    assert!(
        again.files.iter().all(|f| f.status == FileStatus::Unchanged
            || (f.status == FileStatus::Ignored
                && f.read == 0
                && std::fs::read_to_string(&f.file).is_ok_and(|t| t.lines().count() <= 1))),
        "a re-run found work left: {:?}",
        again.files
    );
    let d = dump(&store).await;
    store.close().await;
    d
}

#[test]
fn random_splits_orders_and_concurrent_runs_end_with_the_single_run_store() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let mut references = rt.block_on(reference(&d, "split_ref"));
    let expected = references.remove(0);
    let case = std::sync::atomic::AtomicU32::new(0);
    let config = ProptestConfig {
        cases: 6,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest::test_runner::TestRunner::new(config)
        .run(&plans(), |plan| {
            let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let files = split(&plan, &d.join(format!("split{case}")));
            let url = format!("sqlite://{}", d.join(format!("split{case}.db")).display());
            let got = rt.block_on(run_plan(&url, &files, plan.runs as usize));
            prop_assert_eq!(&got, &expected);
            Ok(())
        })
        .unwrap();
    // The same on PostgreSQL, for one plan of three concurrent runs.
    if let Some(pg) = tidig_tests::pg() {
        let plan = Plan {
            seed: 11,
            parts: 3,
            runs: 3,
        };
        let files = split(&plan, &d.join("split-pg"));
        let url = rt
            .block_on(pg.create_database(&format!("split_{}", std::process::id())))
            .unwrap();
        let got = rt.block_on(run_plan(&url, &files, 3));
        let pg_expected = references.remove(0);
        assert_eq!(got, pg_expected);
    }
}
