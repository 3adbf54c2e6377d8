//! End-to-end ingest: synthetic municipality and real files into SQLite and PostgreSQL.

use std::collections::{BTreeMap, HashSet};

use tidig_connectors::national_id::Country;
use tidig_engine::domain::FileStatus;
use tidig_engine::pipeline::ingest::IngestOptions;
use tidig_tests::{dump, edge, load, load_with, raw_ids, shared, stores, synth};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthetic_municipality_loads_identically_into_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("synth");
    let report = synth(&out, 1_500, |_| {});
    let edge = edge(Country::Fi, &[]);
    let mut dumps = Vec::new();
    for (backend, store) in stores(dir.path(), "parity").await {
        let r = load(&store, &edge, std::slice::from_ref(&out)).await;
        assert_eq!(
            r.rejected,
            0,
            "{backend}: {:?}",
            store.quarantine().await.unwrap()
        );
        assert_eq!(r.failed_files, 0, "{backend}");
        let counts = store.counts().await.unwrap();
        assert_eq!(counts.persons as u64, report.persons, "{backend}");
        assert_eq!(counts.vault as u64, report.persons, "{backend}");
        // Every FHIR resource but the Patients, and every case event, is one event.
        assert_eq!(
            counts.events as u64,
            report.fhir_resources - report.persons + report.social_events,
            "{backend}"
        );
        // Mother tongue, citizenship and country of birth for everyone.
        assert_eq!(
            counts.protected_attributes as u64,
            3 * report.persons,
            "{backend}"
        );
        assert!(counts.relations > 0 && counts.residences as u64 >= report.persons);
        dumps.push((backend, dump(&store).await));
    }
    let (_, a) = &dumps[0];
    for (other, b) in &dumps[1..] {
        for (table, rows) in a {
            assert_eq!(
                rows.len(),
                b[table].len(),
                "{table}: row counts differ between sqlite and {other}"
            );
            assert_eq!(
                rows, &b[table],
                "{table}: contents differ between sqlite and {other}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reingesting_adds_nothing_and_forced_reparse_counts_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("synth");
    synth(&out, 600, |_| {});
    let edge = edge(Country::Fi, &[]);
    for (backend, store) in stores(dir.path(), "idem").await {
        let first = load(&store, &edge, std::slice::from_ref(&out)).await;
        let before = dump(&store).await;
        let second = load(&store, &edge, std::slice::from_ref(&out)).await;
        assert_eq!(second.loaded, 0, "{backend}");
        assert!(second
            .files
            .iter()
            .filter(|f| f.format.is_some() && f.format.as_deref() != Some("fhir-bulk-log"))
            .all(|f| f.status == FileStatus::Unchanged));
        assert_eq!(
            dump(&store).await,
            before,
            "{backend}: an unchanged re-run changed the store"
        );
        let opts = IngestOptions {
            force: true,
            ..IngestOptions::default()
        };
        let forced = load_with(&store, &edge, std::slice::from_ref(&out), &opts).await;
        assert_eq!(
            dump(&store).await,
            before,
            "{backend}: a forced re-parse changed the store"
        );
        // Every keyed record is now a duplicate.
        let keyed_first: u64 = first
            .files
            .iter()
            .filter(|f| !f.file.contains("persons.csv") && !f.file.contains("Patient"))
            .map(|f| f.loaded)
            .sum();
        assert_eq!(forced.duplicate, keyed_first, "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_lines_are_quarantined_with_reasons_and_the_rest_loads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("synth");
    let report = synth(&out, 1_200, |c| c.corrupt_rate = 0.01);
    assert!(
        report.corruptions > 50,
        "only {} faults injected",
        report.corruptions
    );
    let truth = std::fs::read_to_string(out.join("truth/corruptions.csv")).unwrap();
    let faults: Vec<(String, i64, String)> = truth
        .lines()
        .skip(1)
        .map(|l| {
            let mut p = l.split(',');
            let file = p.next().unwrap().to_string();
            let line = p.next().unwrap().parse().unwrap();
            (file, line, p.next().unwrap().to_string())
        })
        .collect();
    let kinds: HashSet<&str> = faults.iter().map(|f| f.2.as_str()).collect();
    for k in [
        "malformed",
        "invalid_id",
        "unknown_code",
        "duplicate",
        "impossible_date",
    ] {
        assert!(kinds.contains(k), "no {k} fault injected");
    }
    let ids = raw_ids(&out);
    let edge = edge(Country::Fi, &[]);
    for (backend, store) in stores(dir.path(), "corrupt").await {
        let r = load(&store, &edge, std::slice::from_ref(&out)).await;
        assert_eq!(r.failed_files, 0, "{backend}");
        let quarantine = store.quarantine().await.unwrap();
        let at: BTreeMap<(String, i64), (String, String)> = quarantine
            .iter()
            .map(|(file, line, field, reason)| {
                let rel = file.split("synth/").last().unwrap().to_string();
                ((rel, *line), (field.clone(), reason.clone()))
            })
            .collect();
        let mut expected_rejections = 0;
        let mut expected_duplicates = 0;
        for (file, line, kind) in &faults {
            if kind == "duplicate" {
                expected_duplicates += 1;
                continue;
            }
            expected_rejections += 1;
            let (field, reason) = at
                .get(&(file.clone(), *line))
                .unwrap_or_else(|| panic!("{backend}: {kind} at {file}:{line} not quarantined"));
            match kind.as_str() {
                "invalid_id" => assert!(
                    field.contains("national_id") || field.contains("child_id"),
                    "{file}:{line} {field}: {reason}"
                ),
                "unknown_code" => assert!(field == "code" || field == "relation", "{field}"),
                "impossible_date" => assert!(reason.contains("does not exist"), "{reason}"),
                _ => {}
            }
        }
        assert_eq!(
            r.rejected, expected_rejections,
            "{backend}: rejections beyond the faults"
        );
        assert_eq!(r.duplicate, expected_duplicates, "{backend}");
        // The valid rest loaded: every line read is loaded, rejected or a duplicate.
        assert_eq!(
            r.read,
            r.loaded + r.rejected + r.duplicate + r.skipped,
            "{backend}"
        );
        // Reasons never carry the personal data of the line.
        for (_, _, field, reason) in &quarantine {
            for id in ids.iter().take(2_000) {
                assert!(!reason.contains(id.as_str()) && !field.contains(id.as_str()));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_raw_national_id_reaches_any_table_or_the_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("synth");
    synth(&out, 800, |c| c.corrupt_rate = 0.01);
    let ids = raw_ids(&out);
    assert!(ids.len() > 700);
    // Needles: the spelling in the files and the digits without separators.
    let needles: Vec<String> = ids
        .iter()
        .flat_map(|id| [id.clone(), id.replace(['-', '+', 'A'], "")])
        .filter(|n| n.len() >= 9)
        .collect();
    let finder = aho_corasick::AhoCorasick::new(&needles).unwrap();
    // The scan can fail: it finds the IDs in the extract itself.
    let extract = std::fs::read(out.join("population/persons.csv")).unwrap();
    assert!(finder.find(&extract).is_some());
    let edge = edge(Country::Fi, &[]);
    for (backend, store) in stores(dir.path(), "leak").await {
        load(&store, &edge, std::slice::from_ref(&out)).await;
        for table in tidig_engine::store::TABLES {
            let rows = store.dump_table(table, &[]).await.unwrap().join("\n");
            assert_eq!(
                finder.find(&rows).map(|m| m.start()),
                None,
                "{backend}.{table} holds a raw national id at this byte"
            );
        }
        store.close().await;
    }
    // The database file itself, after the pool has checkpointed and closed.
    let mut bytes = std::fs::read(dir.path().join("leak.db")).unwrap();
    if let Ok(wal) = std::fs::read(dir.path().join("leak.db-wal")) {
        bytes.extend(wal);
    }
    assert!(
        finder.find(&bytes).is_none(),
        "the SQLite file holds a raw national id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_fhir_exports_load_without_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let edge = edge(Country::Fi, &["http://hl7.org/fhir/sid/us-ssn"]);
    for (backend, store) in stores(dir.path(), "realfhir").await {
        let r = load(
            &store,
            &edge,
            &[shared("fhir/bulk-export-13"), shared("fhir/synthea-100")],
        )
        .await;
        assert_eq!(
            r.rejected,
            0,
            "{backend}: {:?}",
            store.quarantine().await.unwrap()
        );
        assert_eq!(r.failed_files, 0);
        let counts = store.counts().await.unwrap();
        assert_eq!(counts.persons, 113, "{backend}");
        let obs = r
            .files
            .iter()
            .find(|f| f.file.contains("Observation.ndjson.gz"))
            .unwrap();
        assert_eq!((obs.read, obs.loaded), (16_315, 16_315), "{backend}");
        let device = r.files.iter().find(|f| f.file.contains("Device")).unwrap();
        assert_eq!(
            device.skipped, 16,
            "unsupported resources are skipped, not rejected"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn danish_cpr_extracts_load_into_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let edge = edge(Country::Dk, &[]);
    for (backend, store) in stores(dir.path(), "cpr").await {
        let r = load(
            &store,
            &edge,
            &[shared("national_ids/dk_cpr/cprdirect_test_responses")],
        )
        .await;
        assert_eq!(r.rejected, 0, "{backend}");
        assert_eq!(
            r.files
                .iter()
                .filter(|f| f.status == FileStatus::Loaded)
                .count(),
            10
        );
        let c = store.counts().await.unwrap();
        assert_eq!(c.residences, 7, "{backend}");
        assert!(c.relations >= 4, "{backend}: {}", c.relations);
        assert!(c.persons >= 10, "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_countries_gzip_and_json_lines_load_cleanly() {
    for (country, gzip, jsonl) in [
        (Country::Se, true, true),
        (Country::Dk, false, true),
        (Country::No, true, false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("synth");
        let report = synth(&out, 400, |c| {
            c.country = country;
            c.gzip = gzip;
            c.social_jsonl = jsonl;
        });
        let edge = edge(country, &[]);
        let store = tidig_engine::store::Store::open(&format!(
            "sqlite://{}",
            dir.path().join("c.db").display()
        ))
        .await
        .unwrap();
        let r = load(&store, &edge, std::slice::from_ref(&out)).await;
        assert_eq!(
            r.rejected,
            0,
            "{country:?}: {:?}",
            store.quarantine().await.unwrap()
        );
        let c = store.counts().await.unwrap();
        assert_eq!(c.persons as u64, report.persons, "{country:?}");
        assert_eq!(
            c.events as u64,
            report.fhir_resources - report.persons + report.social_events,
            "{country:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_refuses_a_different_pseudonym_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("synth");
    synth(&out, 50, |_| {});
    let store = tidig_engine::store::Store::open(&format!(
        "sqlite://{}",
        dir.path().join("k.db").display()
    ))
    .await
    .unwrap();
    load(&store, &edge(Country::Fi, &[]), std::slice::from_ref(&out)).await;
    let mut other = edge(Country::Fi, &[]);
    other.pseudonymizer = tidig_connectors::pseudonym::Pseudonymizer::new(
        &tidig_connectors::pseudonym::SecretKey::from_bytes([1; 32]),
    );
    let err = tidig_engine::pipeline::ingest::ingest_with(
        &tidig_tests::app(&store),
        &tidig_tests::operator("loader"),
        &other,
        &tidig_connectors::social::CodeTable::default_table(),
        &[out],
        &IngestOptions::default(),
        &tidig_engine::progress::Quiet,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            tidig_engine::EngineError::Unavailable(tidig_engine::store::StoreError::KeyMismatch {
                which: "pseudonym",
                ..
            })
        ),
        "{err}"
    );
}
