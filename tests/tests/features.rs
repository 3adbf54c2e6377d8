//! The feature store: point in time, windows, household relations, parity, idempotency.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure here is a test failure"
)]

use std::path::Path;

use chrono::NaiveDate;
use tidig_connectors::national_id::{Country, Sex};
use tidig_engine::pipeline::features::{build, load_vectors};
use tidig_engine::progress::Quiet;
use tidig_engine::store::Store;
use tidig_engine::synth::ids;
use tidig_models::features::{child_family, FeatureSet};
use tidig_tests::{app, edge, load, operator, stores, synth};

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn index(set: &FeatureSet, id: &str) -> usize {
    set.numeric()
        .position(|f| f.id == id)
        .unwrap_or_else(|| panic!("no feature {id}"))
}

/// A family written by hand: child C, mother M, father F; F moves out on 2023-06-01.
struct Family {
    child: String,
    mother: String,
    father: String,
}

fn family_files(dir: &Path) -> Family {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let f = Family {
        child: ids::make(Country::Fi, date("2015-06-01"), Sex::Female, &mut rng),
        mother: ids::make(Country::Fi, date("1985-02-03"), Sex::Female, &mut rng),
        father: ids::make(Country::Fi, date("1984-04-05"), Sex::Male, &mut rng),
    };
    let (c, m, fa) = (&f.child, &f.mother, &f.father);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("persons.csv"),
        format!(
            "national_id,birth_date,sex,death_date,mother_tongue,citizenship,country_of_birth\n\
             {c},2015-06-01,F,,fi,fi,fi\n{m},1985-02-03,F,,fi,fi,fi\n{fa},1984-04-05,M,,fi,fi,fi\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("addresses.csv"),
        format!(
            "national_id,valid_from,valid_to,municipality,postcode,household_id\n\
             {c},2015-06-01,,091,00100,H1\n{m},2010-01-01,,091,00100,H1\n\
             {fa},2010-01-01,2023-06-01,091,00100,H1\n{fa},2023-06-01,,091,00200,H2\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("relations.csv"),
        format!(
            "child_id,parent_id,relation,valid_from,valid_to\n\
             {c},{m},mother,2015-06-01,\n{c},{fa},father,2015-06-01,\n"
        ),
    )
    .unwrap();
    let patient = |id: &str, nid: &str| {
        format!(
            r#"{{"resourceType":"Patient","id":"{id}","identifier":[{{"system":"urn:oid:1.2.246.21","value":"{nid}"}}]}}"#
        )
    };
    let condition = |id: &str, who: &str, code: &str, when: &str| {
        format!(
            r#"{{"resourceType":"Condition","id":"{id}","code":{{"coding":[{{"system":"http://hl7.org/fhir/sid/icd-10","code":"{code}"}}]}},"subject":{{"reference":"Patient/{who}"}},"onsetDateTime":"{when}"}}"#
        )
    };
    std::fs::write(
        dir.join("Patient.000.ndjson"),
        format!(
            "{}\n{}\n{}\n",
            patient("pc", c),
            patient("pm", m),
            patient("pf", fa)
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("Condition.000.ndjson"),
        [
            // Mother: depression a month before the as-of date.
            condition("c1", "pm", "F32.1", "2023-12-01T10:00:00+02:00"),
            // Father: substance use, but he no longer lives with the child.
            condition("c2", "pf", "F10.2", "2023-12-01T10:00:00+02:00"),
            // The child: a mental-health diagnosis the day after the as-of date.
            condition("c3", "pc", "F91.0", "2024-01-02T10:00:00+02:00"),
        ]
        .join("\n"),
    )
    .unwrap();
    // School absence reports around the 365-day window edge and the as-of date.
    std::fs::write(
        dir.join("cases.csv"),
        format!(
            "record_id,national_id,code,start_date,end_date,amount,unit\n\
             a1,{c},KPO,2023-01-01,,5,u\n\
             a2,{c},KPO,2023-01-02,,7,u\n\
             a3,{c},KPO,2024-01-01,,11,u\n\
             a4,{c},KPO,2024-01-02,,13,u\n\
             i1,{c},LS-AVO,2024-06-01,2024-09-01,,u\n\
             a5,{c},KPO,2025-02-01,,1,u\n"
        ),
    )
    .unwrap();
    f
}

async fn one(store: &Store, set: &FeatureSet, as_of: &str) -> Vec<Option<f64>> {
    let r = build(&app(store), &operator("builder"), set, date(as_of), &Quiet)
        .await
        .unwrap();
    assert_eq!(r.persons, 1, "the cohort is the one child");
    let v = load_vectors(&app(store), &set.hash(), date(as_of))
        .await
        .unwrap();
    v.into_values().next().unwrap().values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_as_of_and_household_relations() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("family");
    family_files(&files);
    let set = child_family().unwrap();
    let edge = edge(Country::Fi, &[]);
    for (backend, store) in stores(dir.path(), "family").await {
        let r = load(&store, &edge, std::slice::from_ref(&files)).await;
        assert_eq!(
            r.rejected,
            0,
            "{backend}: {:?}",
            store.quarantine().await.unwrap()
        );
        let v = one(&store, &set, "2024-01-01").await;
        let at = |id: &str| v[index(&set, id)];
        // Window: 2023-01-01 is exactly 365 days before and falls out; 2023-01-02 and the
        // as-of date itself (00:00) count; 2024-01-02 is after the as-of date.
        assert_eq!(at("school_absence_reports_12m"), Some(2.0), "{backend}");
        assert_eq!(at("school_absence_days_12m"), Some(18.0), "{backend}");
        // Nothing after the as-of date leaks in.
        assert_eq!(at("child_mental_health_dx_24m"), Some(0.0), "{backend}");
        // The mother's diagnosis reaches the child through the mother relation only.
        assert_eq!(at("mother_mental_health_dx_24m"), Some(1.0), "{backend}");
        assert_eq!(at("mother_substance_use_dx_24m"), Some(0.0), "{backend}");
        // The father moved out before the as-of date: he is not in the household.
        assert_eq!(at("father_substance_use_dx_24m"), None, "{backend}");
        assert_eq!(at("father_age"), None, "{backend}");
        assert_eq!(at("mother_age"), Some(38.0), "{backend}");
        assert_eq!(at("age_years"), Some(8.0), "{backend}");
        assert_eq!(at("household_size"), Some(2.0), "{backend}");
        assert_eq!(at("parents_in_household"), Some(1.0), "{backend}");
        // Before he moved out, the father's features were there (and still zero: the
        // diagnosis came later).
        let before = one(&store, &set, "2023-05-01").await;
        assert_eq!(
            before[index(&set, "father_substance_use_dx_24m")],
            Some(0.0),
            "{backend}"
        );
        assert_eq!(
            before[index(&set, "household_size")],
            Some(3.0),
            "{backend}"
        );
        // The label sees the intervention in the 365 days after 2024-01-01 (the data
        // reach past the horizon, so the label is observed).
        let vecs = load_vectors(&app(&store), &set.hash(), date("2024-01-01"))
            .await
            .unwrap();
        let tidig_engine::store::StoredVector {
            protected, label, ..
        } = vecs.into_values().next().unwrap();
        assert_eq!(label, Some(1.0), "{backend}");
        assert_eq!(protected["mother_tongue"].as_deref(), Some("fi"));
        assert_eq!(protected["municipality"].as_deref(), Some("091"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_after_the_as_of_date_change_nothing_and_rebuilds_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    synth(&out, 800, |_| {});
    let set = child_family().unwrap();
    let as_of = date("2024-01-01");
    let store = Store::open(&format!("sqlite://{}", dir.path().join("l.db").display()))
        .await
        .unwrap();
    let edge = edge(Country::Fi, &[]);
    load(&store, &edge, std::slice::from_ref(&out)).await;
    build(&app(&store), &operator("builder"), &set, as_of, &Quiet)
        .await
        .unwrap();
    let first = load_vectors(&app(&store), &set.hash(), as_of)
        .await
        .unwrap();
    assert!(first.len() > 150);
    // Rebuild: same rows.
    build(&app(&store), &operator("builder"), &set, as_of, &Quiet)
        .await
        .unwrap();
    assert_eq!(
        load_vectors(&app(&store), &set.hash(), as_of)
            .await
            .unwrap(),
        first
    );
    // Add a burst of events for every person, all after the as-of date.
    let persons = std::fs::read_to_string(out.join("population/persons.csv")).unwrap();
    let mut extra = String::from("record_id,national_id,code,start_date,end_date,amount,unit\n");
    for (i, line) in persons.lines().skip(1).enumerate() {
        let nid = line.split(',').next().unwrap();
        for (j, code) in ["LSIL", "KPO", "TT", "PAV"].iter().enumerate() {
            extra.push_str(&format!("late{i}-{j},{nid},{code},2024-01-02,,100,u\n"));
        }
    }
    let late = dir.path().join("late.csv");
    std::fs::write(&late, extra).unwrap();
    let r = load(&store, &edge, &[late]).await;
    assert!(r.loaded > 3_000);
    build(&app(&store), &operator("builder"), &set, as_of, &Quiet)
        .await
        .unwrap();
    let after = load_vectors(&app(&store), &set.hash(), as_of)
        .await
        .unwrap();
    for (pid, v) in &first {
        let vals = &v.values;
        assert_eq!(
            &after[pid].values, vals,
            "a later event leaked into person {pid}'s features"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_build_the_same_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    synth(&out, 1_200, |_| {});
    let set = child_family().unwrap();
    let edge = edge(Country::Fi, &[]);
    let mut all = Vec::new();
    for (backend, store) in stores(dir.path(), "fparity").await {
        load(&store, &edge, std::slice::from_ref(&out)).await;
        let report = build(
            &app(&store),
            &operator("builder"),
            &set,
            date("2024-06-30"),
            &Quiet,
        )
        .await
        .unwrap();
        assert!(
            report.label_complete && report.label_positive > 0,
            "{backend}: {report:?}"
        );
        all.push((
            backend,
            load_vectors(&app(&store), &set.hash(), date("2024-06-30"))
                .await
                .unwrap(),
        ));
    }
    let (_, sqlite) = &all[0];
    for (backend, other) in &all[1..] {
        assert_eq!(sqlite.len(), other.len(), "{backend}");
        assert!(sqlite == other, "SQLite and {backend} vectors differ");
    }
}
