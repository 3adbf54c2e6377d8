//! Training: registry, gate, approval, objections, explanations on the holdout.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure here is a test failure"
)]

use chrono::NaiveDate;
use tidig_connectors::national_id::Country;
use tidig_engine::domain::ModelState;
use tidig_engine::pipeline::features::load_vectors;
use tidig_engine::pipeline::registry::{approve, list, show};
use tidig_engine::pipeline::train::train;
use tidig_engine::store::Store;
use tidig_engine::{EngineError, Precondition};
use tidig_models::features::{child_family, Sensitivity};
use tidig_models::forest::ForestParams;
use tidig_models::gate::Gate;
use tidig_tests::{app, app_with, edge, load, operator, settings, synth, train_options};

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
    let app = app(&store);
    let alice = operator("alice");
    let set = child_family().unwrap();
    // A gate no model can pass: approval must then be refused to anyone.
    let unreachable = Gate {
        min_auc: 0.9999,
        ..Gate::default()
    };
    let r = train(
        &app,
        &alice,
        &set,
        date("2026-01-01"),
        &train_options(0.05, unreachable.clone(), Some(ForestParams::default())),
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
        &app,
        &alice,
        &set,
        date("2026-01-01"),
        &train_options(0.05, unreachable, Some(ForestParams::default())),
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
    let card = tidig_engine::pipeline::card::card(&r.model_id, a, &set);
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
    let holdout = load_vectors(&app, &set.hash(), date(&a.holdout_snapshot))
        .await
        .unwrap();
    for v in holdout.values().take(300) {
        let e = a.model.explain(&v.values);
        let sum: f64 = e.contributions.iter().sum();
        assert!((e.base_value + sum - e.logit).abs() < 1e-9);
    }
    let listed = list(&app).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, ModelState::Trained);
    assert_eq!(listed[0].created_by, "alice");
    assert_eq!(listed[0].created_auth, "cli-flag");
    let again = show(&app, &r.model_id[..10]).await.unwrap();
    assert_eq!(again.artifact.hash(), r.model_id);
    // A model that failed its gate cannot be approved by anyone.
    assert!(!a.gate_passed);
    assert!(
        a.gate_failures[0].starts_with("holdout AUC"),
        "{:?}",
        a.gate_failures
    );
    let err = approve(&app, &operator("bob"), &r.model_id)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::FailedPrecondition(Precondition::GateFailed { .. })
        ),
        "{err}"
    );
    // A lenient gate passes; the trainer still cannot approve their own model.
    let lenient = Gate {
        min_demographic_parity_ratio: 0.0,
        max_equalized_odds_difference: 1.0,
        min_auc: 0.0,
        ..Gate::default()
    };
    let r2 = train(
        &app,
        &alice,
        &set,
        date("2026-01-01"),
        &train_options(0.10, lenient, None),
    )
    .await
    .unwrap();
    assert!(r2.artifact.gate_passed);
    // Four-eyes compares normalised principals: " alice " is alice.
    for same in ["alice", " alice "] {
        let err = approve(&app, &operator(same), &r2.model_id)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, EngineError::PermissionDenied { rules, .. } if rules == &["four-eyes"]),
            "{err}"
        );
    }
    let ok = approve(&app, &operator("bob"), &r2.model_id).await.unwrap();
    assert_eq!(ok.state, ModelState::Approved);
    let err = approve(&app, &operator("carol"), &r2.model_id)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::FailedPrecondition(Precondition::ModelState {
                state: ModelState::Approved,
                ..
            })
        ),
        "approved twice: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persons_who_objected_are_left_out_of_training_and_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let store = municipality(dir.path()).await;
    let app = app(&store);
    let alice = operator("alice");
    let set = child_family().unwrap();
    let options = train_options(0.05, Gate::default(), None);
    let before = train(&app, &alice, &set, date("2026-01-01"), &options)
        .await
        .unwrap();
    let holdout = date(&before.artifact.holdout_snapshot);
    let ids: Vec<i64> = load_vectors(&app, &set.hash(), holdout)
        .await
        .unwrap()
        .into_keys()
        .take(40)
        .collect();
    for id in &ids {
        store.add_objection(*id, "2025-06-01").await.unwrap();
    }
    let after = train(&app, &alice, &set, date("2026-01-01"), &options)
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
    let alice = operator("alice");
    let options = train_options(0.05, Gate::default(), None);
    // Health inputs without an Art 9(2) basis.
    let mut no_art9 = settings();
    no_art9.deployment.art9_basis = String::new();
    let app1 = app_with(&store, no_art9, tidig_tests::default_pack().clone());
    let err = train(&app1, &alice, &set, date("2026-01-01"), &options)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            EngineError::FailedPrecondition(Precondition::InputsRefused { .. })
        ),
        "{err}"
    );
    let msg = err.to_string();
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
    let app2 = app_with(&store, settings(), pack);
    let msg = train(&app2, &alice, &set, date("2026-01-01"), &options)
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("`moves_36m` (data.no-moves)"), "{msg}");
    assert!(list(&app2).await.unwrap().is_empty());
}
