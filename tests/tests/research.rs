//! Research under a permit: the engine reads only what the permit allows and releases
//! aggregates only; a request outside the permit is refused naming what; a revoked or
//! amended permit releases nothing.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failure here is a test failure"
)]

use chrono::NaiveDate;
use serde_json::Value;
use tidig_connectors::national_id::Country;
use tidig_engine::pipeline::permits::{amend, register, revoke};
use tidig_engine::pipeline::research::{evaluate, results};
use tidig_engine::pipeline::train::train;
use tidig_engine::principal::Principal;
use tidig_engine::{EngineError, Precondition};
use tidig_models::features::{child_family, Source};
use tidig_models::gate::Gate;
use tidig_tests::{app, edge, load, operator, stores, synth, train_options};

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn permit(birth_years: &str) -> String {
    format!(
        r#"
id = "THL/77/2026"
issuer = "Findata"
holder = "University of Eastern Finland"
researchers = ["rita"]
purpose = "scientific_research"
registries = ["social", "population"]
features = ["*"]
cohort = {{ birth_years = {birth_years} }}
data_period = {{ from = "2022-01-01", to = "2025-12-31" }}
valid = {{ from = "2026-01-01", to = "2026-12-31" }}
"#
    )
}

fn researcher(id: &str) -> Principal {
    Principal::researcher(Some(id)).unwrap()
}

/// Every count in the released results is 0 or at least `min`, and no string in them
/// is a pseudonym (`p` + 32 hex digits): nothing person-level.
fn walk(v: &Value, key: &str, min: u64) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, x)| walk(x, k, min)),
        Value::Array(a) => a.iter().for_each(|x| walk(x, key, min)),
        Value::String(s) => assert!(
            !(s.len() == 33 && s.starts_with('p') && s[1..].bytes().all(|b| b.is_ascii_hexdigit())),
            "a pseudonym under `{key}`"
        ),
        Value::Number(n) => {
            let counts = [
                "train_persons",
                "holdout_persons",
                "holdout_positives",
                "positives",
                "negatives",
                "exposed_positive",
                "unexposed_positive",
                "exposed_negative",
                "unexposed_negative",
            ];
            if counts.contains(&key) {
                let n = n.as_u64().unwrap();
                assert!(n == 0 || n >= min, "`{key}` = {n} is a small cell");
            }
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn research_reads_only_what_the_permit_allows_and_releases_aggregates_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s");
    synth(&s, 2_500, |_| {});
    let set = child_family().unwrap();
    let lenient = Gate {
        min_demographic_parity_ratio: 0.0,
        max_equalized_odds_difference: 1.0,
        min_auc: 0.0,
        ..Gate::default()
    };
    for (backend, store) in stores(dir.path(), "research").await {
        load(&store, &edge(Country::Fi, &[]), std::slice::from_ref(&s)).await;
        let app = app(&store);
        // Training builds the snapshots research reads (as an operator would).
        train(
            &app,
            &operator("alice"),
            &set,
            date("2026-01-01"),
            &train_options(0.05, lenient.clone(), None),
        )
        .await
        .unwrap();
        let op = operator("olli");
        register(&app, &op, &permit("[1990, 2025]")).await.unwrap();
        let rita = researcher("rita");

        let run = evaluate(&app, &rita, "THL/77/2026", date("2026-01-01"), &[], &set)
            .await
            .unwrap();
        assert_eq!(run.run.state, "released", "{backend}: {:?}", run.run);
        let res = run.results.clone().unwrap();
        walk(&res, "", 5);
        let features: Vec<&str> = res["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert!(!features.is_empty());
        for f in &features {
            let def = set.features.iter().find(|d| d.id == *f).unwrap();
            assert_ne!(def.source, Source::Health, "{f} is not in the permit");
        }
        assert!(res["auc"].as_f64().unwrap() > 0.5, "{backend}: {res}");
        let full = res["train_persons"].as_u64().unwrap();
        // The run's audit entry lists exactly what was read.
        app.audit().close().await.unwrap();
        let entry = store
            .audit_entry(run.run.audit_seq as u64)
            .await
            .unwrap()
            .unwrap();
        let e: Value = serde_json::from_str(&entry.entry).unwrap();
        assert_eq!(e["action"], "research.start_research_run");
        assert_eq!(e["details"]["read"]["features"], res["features"]);
        assert_eq!(e["details"]["read"]["snapshots"], res["snapshots"]);
        // The researcher reads it back; another researcher does not find it.
        let again = results(&app, &rita, &run.run.id).await.unwrap();
        assert_eq!(again.results, run.results);
        let e = results(&app, &researcher("sami"), &run.run.id)
            .await
            .unwrap_err();
        assert!(matches!(e, EngineError::NotFound { .. }), "{e}");

        // Refused, each naming what: a person the permit does not name, a feature
        // outside it, a period outside it.
        let refusal = |e: EngineError| match e {
            EngineError::PermissionDenied { reason, rules } => (reason, rules),
            other => panic!("{backend}: {other}"),
        };
        let (why, rules) = refusal(
            evaluate(
                &app,
                &researcher("mallory"),
                "THL/77/2026",
                date("2026-01-01"),
                &[],
                &set,
            )
            .await
            .unwrap_err(),
        );
        assert_eq!(rules, ["permit.researcher"]);
        assert!(why.contains("mallory"), "{why}");
        let (why, rules) = refusal(
            evaluate(
                &app,
                &rita,
                "THL/77/2026",
                date("2026-01-01"),
                &["child_er_visits_12m".to_string()],
                &set,
            )
            .await
            .unwrap_err(),
        );
        assert_eq!(rules, ["permit.feature"]);
        assert!(why.contains("child_er_visits_12m"), "{why}");
        let (why, rules) = refusal(
            evaluate(&app, &rita, "THL/77/2026", date("2027-06-01"), &[], &set)
                .await
                .unwrap_err(),
        );
        assert_eq!(rules, ["permit.period"]);
        assert!(why.contains("2026-"), "{why}");

        // A narrower cohort reads fewer persons; those outside it are never read.
        amend(&app, &op, &permit("[2015, 2025]")).await.unwrap();
        let narrow = evaluate(&app, &rita, "THL/77/2026", date("2026-01-01"), &[], &set)
            .await
            .unwrap();
        let fewer = narrow.results.unwrap()["train_persons"].as_u64().unwrap();
        assert!(fewer < full, "{backend}: {fewer} < {full}");

        // Results of a run that started under version 2 and finishes after an amendment
        // are withheld, nothing kept; a revoked permit runs nothing.
        let rec = app.record(&rita, "research.start_research_run");
        let pass = app
            .check_access(
                &rita,
                tidig_governance::access::Operation::StartResearchRun,
                tidig_engine::access::Target::deployment(),
                rec,
            )
            .await
            .unwrap();
        amend(&app, &op, &permit("[2016, 2025]")).await.unwrap();
        let late = store
            .record_research_run(
                &pass,
                &tidig_engine::store::NewResearchRun {
                    id: "late",
                    permit_id: "THL/77/2026",
                    permit_version: 2,
                    kind: "evaluate",
                    as_of: 0,
                    started_at: "2026-11-22T00:00:00.000Z",
                    finished_at: "2026-11-22T00:01:00.000Z",
                    today: "2026-11-22",
                    results: "{\"auc\": 0.7}",
                    read: serde_json::json!({}),
                },
            )
            .await
            .unwrap();
        assert_eq!((late.state.as_str(), late.results), ("withheld", None));
        assert!(late.reason.unwrap().contains("amended"));
        revoke(&app, &op, "THL/77/2026", "study ended")
            .await
            .unwrap();
        let e = evaluate(&app, &rita, "THL/77/2026", date("2026-01-01"), &[], &set)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                EngineError::FailedPrecondition(Precondition::PermitRevoked { .. })
            ),
            "{e}"
        );
    }
}
