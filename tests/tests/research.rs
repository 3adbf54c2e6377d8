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
use tidig_engine::pipeline::research::{evaluate, results, start, Kind, RunRequest, Step};
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

/// Nothing person-level in released results: no pseudonym, no person key, no small count.
fn walk(v: &Value, min: u64) {
    assert_eq!(
        tidig_engine::testkit::person_level(v, min),
        Vec::<String>::new(),
        "person-level content: {v}"
    );
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
        walk(&res, 5);
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

        // A cohort asked for outside the permit's is refused naming it.
        let wide = RunRequest {
            birth_years: Some([2010, 2025]),
            ..RunRequest::new("THL/77/2026", Kind::Evaluate, date("2026-01-01"))
        };
        let (why, rules) = refusal(start(&app, &rita, &wide, &set).await.unwrap_err());
        assert_eq!(rules, ["permit.cohort"]);
        assert!(why.contains("2010–2025"), "{why}");

        // A run that started under a version and finds the permit amended, revoked or
        // expired when it goes on stops there and releases nothing.
        let options = train_options(0.05, lenient.clone(), None);
        let steps = std::sync::Mutex::new(Vec::new());
        let on_step = |s: &Step| steps.lock().unwrap().push(s.clone());
        let evaluation = RunRequest::new("THL/77/2026", Kind::Evaluate, date("2026-01-01"));
        let held = start(&app, &rita, &evaluation, &set).await.unwrap();
        amend(&app, &op, &permit("[2016, 2025]")).await.unwrap();
        let run = held.run(&app, &set, &options, &on_step).await.unwrap();
        assert_eq!(
            (run.run.state.as_str(), &run.results),
            ("withheld", &None),
            "{backend}"
        );
        assert!(
            run.run.reason.as_deref().unwrap().contains("amended"),
            "{:?}",
            run.run
        );
        // It stopped before reading anything.
        let stages: Vec<String> = steps
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.stage.clone())
            .collect();
        assert_eq!(
            stages,
            ["reading snapshot 2023-01-02", "recording"],
            "{backend}"
        );

        // A model trained under the permit: registered as trained, naming the permit;
        // its results are aggregates with the card's summary.
        let models_before = store.models().await.unwrap().len();
        let training = RunRequest::new("THL/77/2026", Kind::Train, date("2026-01-01"));
        let refused_health = start(&app, &rita, &training, &set).await.unwrap_err();
        let (why, rules) = refusal(refused_health);
        assert_eq!(
            rules,
            ["permit.feature"],
            "the model's health inputs are outside"
        );
        assert!(why.contains("child_"), "{why}");
        let everything = permit("[2016, 2025]").replace(
            r#"registries = ["social", "population"]"#,
            r#"registries = ["social", "population", "health"]"#,
        );
        amend(&app, &op, &everything).await.unwrap();
        let trained = start(&app, &rita, &training, &set)
            .await
            .unwrap()
            .run(&app, &set, &options, &|_| {})
            .await
            .unwrap();
        assert_eq!(
            trained.run.state, "released",
            "{backend}: {:?}",
            trained.run
        );
        let res = trained.results.clone().unwrap();
        walk(&res, 5);
        let model_id = res["model"]["id"].as_str().unwrap().to_string();
        assert_eq!(res["model"]["state"], "trained");
        assert_eq!(res["model"]["permit"]["id"], "THL/77/2026");
        let models = store.models().await.unwrap();
        assert_eq!(models.len(), models_before + 1);
        let row = models.iter().find(|m| m.id == model_id).unwrap();
        assert_eq!(row.state.as_str(), "trained");
        assert_eq!(row.created_by, "rita");
        let artifact: Value =
            serde_json::from_str(&store.model_artifact(&model_id).await.unwrap().unwrap()).unwrap();
        assert_eq!(artifact["permit"]["id"], "THL/77/2026");
        assert_eq!(artifact["permit"]["version"], 4);
        assert!(
            artifact["cohort"]["person-snapshots excluded by the permit's cohort"]
                .as_u64()
                .unwrap()
                > 0
        );

        // The same training, with the permit expiring while it runs: nothing registered.
        amend(&app, &op, &everything.replace("2026-12-31", "2026-11-22"))
            .await
            .unwrap();
        let held = start(&app, &rita, &training, &set).await.unwrap();
        let tomorrow = tidig_engine::app::App::with_store(
            store.clone(),
            tidig_tests::settings(),
            tidig_tests::default_pack().clone(),
            tidig_engine::clock::Clock::fixed_on(date("2026-11-23")),
        );
        let run = held.run(&tomorrow, &set, &options, &|_| {}).await.unwrap();
        assert_eq!(
            (run.run.state.as_str(), &run.results),
            ("withheld", &None),
            "{backend}"
        );
        assert!(
            run.run
                .reason
                .as_deref()
                .unwrap()
                .contains("expired on 2026-11-22"),
            "{:?}",
            run.run
        );
        tomorrow.audit().close().await.unwrap();
        assert_eq!(
            store.models().await.unwrap().len(),
            models_before + 1,
            "{backend}"
        );

        // Revoked while a training holds it: stopped, nothing registered.
        amend(&app, &op, &everything).await.unwrap();
        let held = start(&app, &rita, &training, &set).await.unwrap();
        revoke(&app, &op, "THL/77/2026", "study ended")
            .await
            .unwrap();
        let run = held.run(&app, &set, &options, &|_| {}).await.unwrap();
        assert_eq!(
            (run.run.state.as_str(), &run.results),
            ("withheld", &None),
            "{backend}"
        );
        assert!(run.run.reason.as_deref().unwrap().contains("revoked"));
        assert_eq!(
            store.models().await.unwrap().len(),
            models_before + 1,
            "{backend}"
        );
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
