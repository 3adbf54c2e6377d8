//! Training: registry, gate, approval, objections, explanations on the holdout.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure here is a test failure"
)]

use chrono::NaiveDate;
use tidig_connectors::national_id::Country;
use tidig_engine::features::load_vectors;
use tidig_engine::store::Store;
use tidig_engine::train::{approve, list, show, train, Gate};
use tidig_models::features::{child_family, Sensitivity};
use tidig_models::forest::ForestParams;
use tidig_tests::{config, edge, load, synth};

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

async fn municipality(dir: &std::path::Path) -> Store {
    let out = dir.join("s");
    synth(&out, 2_500, |_| {});
    let store = Store::open(&format!("sqlite://{}", dir.join("t.db").display()))
        .await
        .unwrap();
    load(&store, &edge(Country::Fi, &[]), &[out]).await;
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trained_model_is_registered_explained_and_gated() {
    let dir = tempfile::tempdir().unwrap();
    let store = municipality(dir.path()).await;
    let set = child_family().unwrap();
    let strict = Gate::default();
    let r = train(
        &store,
        &set,
        date("2026-01-01"),
        &config(0.05, &strict, Some(&ForestParams::default()), "alice"),
    )
    .await
    .unwrap();
    let a = &r.artifact;
    assert_eq!(
        r.model_id,
        a.hash(),
        "the id is the artifact's content hash"
    );
    // Training is deterministic (timings stay out of the artifact): the same run
    // registers the same model, once.
    let again = train(
        &store,
        &set,
        date("2026-01-01"),
        &config(0.05, &strict, Some(&ForestParams::default()), "alice"),
    )
    .await
    .unwrap();
    assert_eq!(again.model_id, r.model_id);
    assert!(again.challenger_seconds.is_some());
    assert!(a.evaluation.auc.unwrap() > 0.6, "{:?}", a.evaluation.auc);
    assert_eq!(a.features.len(), set.numeric().count());
    // The challenger ran on the same holdout at the same capacity, and the card says so.
    let c = a.challenger.as_ref().unwrap();
    assert!(c.auc.unwrap() > 0.55, "challenger AUC {:?}", c.auc);
    assert!((c.auc.unwrap() - a.evaluation.auc.unwrap() - c.auc_gap.unwrap()).abs() < 1e-12);
    assert!((0.0..=1.0).contains(&c.flag_overlap));
    let card = tidig_engine::train::card(&r.model_id, a, &set);
    assert!(card.contains("## Challenger") && card.contains("What the explainable model gives up"));
    for f in &set.features {
        if matches!(
            f.sensitivity,
            Sensitivity::Prohibited | Sensitivity::Protected
        ) {
            assert!(!a.features.contains(&f.id), "{} is an input", f.id);
            assert!(a.excluded_features.contains_key(&f.id));
        }
    }
    // Explanations on real holdout rows add up exactly.
    let holdout = load_vectors(&store, &set.hash(), date(&a.holdout_snapshot))
        .await
        .unwrap();
    for (vals, _, _) in holdout.values().take(300) {
        let e = a.model.explain(vals);
        let sum: f64 = e.contributions.iter().sum();
        assert!((e.base_value + sum - e.logit).abs() < 1e-9);
    }
    let listed = list(&store).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, "trained");
    let (_, again) = show(&store, &r.model_id[..10]).await.unwrap();
    assert_eq!(again.hash(), r.model_id);
    // The synthetic municipality has a built-in reporting bias: the strict gate fails,
    // and a model that failed its gate cannot be approved by anyone.
    if !a.gate_passed {
        let err = approve(&store, &r.model_id, "bob").await.unwrap_err();
        assert!(
            format!("{err:#}").contains("failed its release gate"),
            "{err:#}"
        );
    }
    // A lenient gate passes; the trainer still cannot approve their own model.
    let lenient = Gate {
        min_demographic_parity_ratio: 0.0,
        max_equalized_odds_difference: 1.0,
        min_auc: 0.0,
        ..Gate::default()
    };
    let r2 = train(
        &store,
        &set,
        date("2026-01-01"),
        &config(0.10, &lenient, None, "alice"),
    )
    .await
    .unwrap();
    assert!(r2.artifact.gate_passed);
    let err = approve(&store, &r2.model_id, "alice").await.unwrap_err();
    assert!(
        format!("{err:#}").contains("approved by someone else"),
        "{err:#}"
    );
    let ok = approve(&store, &r2.model_id, "bob").await.unwrap();
    assert_eq!(ok.state, "approved");
    assert!(
        approve(&store, &r2.model_id, "carol").await.is_err(),
        "approved twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persons_who_objected_are_left_out_of_training_and_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let store = municipality(dir.path()).await;
    let set = child_family().unwrap();
    let gate = Gate::default();
    let before = train(
        &store,
        &set,
        date("2026-01-01"),
        &config(0.05, &gate, None, "alice"),
    )
    .await
    .unwrap();
    let holdout = date(&before.artifact.holdout_snapshot);
    let ids: Vec<i64> = load_vectors(&store, &set.hash(), holdout)
        .await
        .unwrap()
        .into_keys()
        .take(40)
        .collect();
    let Store::Sqlite(pool) = &store else {
        unreachable!()
    };
    for id in &ids {
        sqlx::query("INSERT INTO objections (person_id, registered_at) VALUES ($1, '2025-06-01')")
            .bind(id)
            .execute(pool)
            .await
            .unwrap();
    }
    let after = train(
        &store,
        &set,
        date("2026-01-01"),
        &config(0.05, &gate, None, "alice"),
    )
    .await
    .unwrap();
    let key = format!("holdout {holdout}");
    assert_eq!(
        after.artifact.cohort[&key],
        before.artifact.cohort[&key] - ids.len()
    );
    assert_eq!(after.artifact.cohort["objections registered"], ids.len());
    // The eligibility rule excluded them, from the holdout and from any training snapshot
    // they also appear in.
    let by_rule = after.artifact.cohort["person-snapshots excluded by eligibility.objection"];
    assert!(by_rule >= ids.len(), "{:?}", after.artifact.cohort);
    assert_ne!(after.model_id, before.model_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_refuses_inputs_the_data_stage_rules_deny() {
    let dir = tempfile::tempdir().unwrap();
    let store = municipality(dir.path()).await;
    let set = child_family().unwrap();
    let gate = Gate::default();
    // Health inputs without an Art 9(2) basis.
    let no_art9 = tidig_governance::eval::Deployment {
        art9_basis: String::new(),
        ..tidig_tests::full_deployment().clone()
    };
    let c = tidig_engine::train::TrainConfig {
        deployment: &no_art9,
        ..config(0.05, &gate, None, "alice")
    };
    let err = train(&store, &set, date("2026-01-01"), &c)
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.starts_with("training refused"), "{msg}");
    assert!(
        msg.contains("`mother_substance_use_dx_24m` (data.health-needs-art9-basis)"),
        "{msg}"
    );
    assert!(
        !msg.contains("`household_size`"),
        "an ordinary input was refused: {msg}"
    );
    // A deployment's own pack deny-lists a feature; nothing is registered.
    let rules = format!(
        "{}\n@id(\"data.no-moves\")\n@title(\"moves are not used\")\n@legal(\"local policy\")\n@stage(\"data\")\n\
         forbid (principal, action == Tidig::Action::\"use_feature\", resource)\n\
         when {{ resource.source == \"population\" && resource.category == \"population_register\" }};\n",
        tidig_governance::rules::DEFAULT_RULES
    );
    let pack = tidig_governance::RulePack::load(
        tidig_governance::Source {
            name: "s",
            text: tidig_governance::rules::DEFAULT_SCHEMA,
        },
        &[tidig_governance::Source {
            name: "r",
            text: &rules,
        }],
    )
    .unwrap();
    let c = tidig_engine::train::TrainConfig {
        pack: &pack,
        ..config(0.05, &gate, None, "alice")
    };
    let msg = format!(
        "{:#}",
        train(&store, &set, date("2026-01-01"), &c)
            .await
            .unwrap_err()
    );
    assert!(msg.contains("`moves_36m` (data.no-moves)"), "{msg}");
    assert!(list(&store).await.unwrap().is_empty());
}
