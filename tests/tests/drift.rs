//! Drift: every scoring run measures each input's and the score's population stability
//! index against the training distribution the model's artifact keeps; a population
//! shifted on purpose is named, the one trained on is not.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failure here is a test failure"
)]

use chrono::NaiveDate;
use tidig_connectors::national_id::Country;
use tidig_engine::pipeline::features::build;
use tidig_engine::pipeline::registry::{activate, approve};
use tidig_engine::pipeline::score::score;
use tidig_engine::pipeline::train::train;
use tidig_engine::progress::Quiet;
use tidig_models::features::child_family;
use tidig_models::gate::Gate;
use tidig_tests::{app, edge, load, operator, stores, synth, train_options};

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shifted_population_is_named_and_the_one_trained_on_is_not() {
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
    // Income support every month of 2025 for everyone: families' income-support
    // features jump, and with them the score.
    let persons = std::fs::read_to_string(s.join("population/persons.csv")).unwrap();
    let shift = dir.path().join("shift");
    std::fs::create_dir_all(&shift).unwrap();
    let mut csv = String::from("record_id,national_id,code,start_date,end_date,amount,unit\n");
    for (i, line) in persons.lines().skip(1).enumerate() {
        let nid = line.split(',').next().unwrap();
        for m in 1..=12 {
            csv.push_str(&format!(
                "case-shift-{i}-{m},{nid},TT,2025-{m:02}-01,2025-{m:02}-28,900,family-services\n"
            ));
        }
    }
    std::fs::write(shift.join("shift_case_events.csv"), csv).unwrap();

    for (backend, store) in stores(dir.path(), "drift").await {
        load(&store, &edge(Country::Fi, &[]), std::slice::from_ref(&s)).await;
        let app = app(&store);
        let model = train(
            &app,
            &operator("alice"),
            &set,
            date("2026-01-01"),
            &train_options(0.05, lenient.clone(), None),
        )
        .await
        .unwrap();
        let reference = model.artifact.drift.as_ref().unwrap();
        assert_eq!(reference.features.len(), model.artifact.features.len());
        approve(&app, &operator("bob"), &model.model_id)
            .await
            .unwrap();
        activate(&app, &operator("bob"), &model.model_id, &set)
            .await
            .unwrap();

        // The population the model was trained on (a year on): nothing is named.
        let (same, _) = score(&app, &operator("scorer"), &set, date("2026-01-01"))
            .await
            .unwrap();
        let d = same.drift.as_ref().unwrap();
        assert!(d.warnings.is_empty(), "{backend}: {d:?}");
        assert!(d.score_psi < 0.1, "{backend}: {d:?}");
        assert_eq!(d.features.len(), model.artifact.features.len());

        // The shifted one: the income-support inputs and the score are named.
        let report = load(
            &store,
            &edge(Country::Fi, &[]),
            std::slice::from_ref(&shift),
        )
        .await;
        assert_eq!(report.failed_files, 0, "{backend}: {report:?}");
        build(&app, &operator("builder"), &set, date("2026-01-01"), &Quiet)
            .await
            .unwrap();
        let (moved, _) = score(&app, &operator("scorer"), &set, date("2026-01-01"))
            .await
            .unwrap();
        let d = moved.drift.as_ref().unwrap();
        assert!(d.warnings.iter().any(|w| w == "score"), "{backend}: {d:?}");
        assert!(
            d.warnings.iter().any(|w| w.contains("income_support")),
            "{backend}: {d:?}"
        );
        for w in d.warnings.iter().filter(|w| *w != "score") {
            assert!(d.features[w] > tidig_models::drift::WARN);
        }
        // The run's audit entry carries the figures.
        app.audit().close().await.unwrap();
        let head = store.audit_head().await.unwrap().size;
        let mut found = false;
        for seq in (0..head).rev() {
            let row = store.audit_entry(seq).await.unwrap().unwrap();
            if row.action == "score.run" {
                let e: serde_json::Value = serde_json::from_str(&row.entry).unwrap();
                assert_eq!(
                    e["details"]["drift"]["warnings"],
                    serde_json::to_value(&d.warnings).unwrap()
                );
                found = true;
                break;
            }
        }
        assert!(found, "{backend}");
    }
}
