//! The scoring pipeline end to end on both backends, one behaviour per test: activation
//! under the data-stage rules, suggestions with redaction, routing and capacity,
//! idempotent re-scoring, objections, the stop switch, a changed pack, a forbidden input,
//! a broken rule, and racing activations.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failure here is a test failure"
)]

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use tidig_connectors::national_id::Country;
use tidig_engine::domain::ModelState;
use tidig_engine::pipeline::registry::{activate, approve, list};
use tidig_engine::pipeline::score::{open_suggestions, score, ScoreReport, Suggestion};
use tidig_engine::pipeline::train::train;
use tidig_engine::settings::{ScoringSettings, Settings};
use tidig_engine::store::Store;
use tidig_engine::{EngineError, Precondition};
use tidig_governance::eval::Deployment;
use tidig_governance::rules::{DEFAULT_RULES, DEFAULT_SCHEMA};
use tidig_governance::{RulePack, Source};
use tidig_models::features::child_family;
use tidig_models::gate::Gate;
use tidig_tests::{app_with, edge, load, operator, stores, synth, train_options};

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn deployment() -> Deployment {
    Deployment {
        legal_basis: "Social Welfare Act 1301/2014 s 5".into(),
        dpia_ref: "DPIA-T".into(),
        fria_ref: "FRIA-T".into(),
        art9_basis: "GDPR Art 9(2)(h)".into(),
        stopped: false,
    }
}

fn pack(rules: &str) -> RulePack {
    RulePack::load(
        Source {
            name: "s",
            text: DEFAULT_SCHEMA,
        },
        &[Source {
            name: "r",
            text: rules,
        }],
    )
    .unwrap()
}

/// Scores 2026-01-01 under `pack` and `settings`.
async fn run(
    store: &Store,
    pack: &RulePack,
    settings: Settings,
) -> Result<ScoreReport, EngineError> {
    let set = child_family().unwrap();
    let app = app_with(store, settings, pack.clone());
    Ok(score(&app, &operator("scorer"), &set, date("2026-01-01"))
        .await?
        .0)
}

fn settings_with(d: Deployment, scoring: ScoringSettings) -> Settings {
    Settings {
        deployment: d,
        scoring,
        ..Settings::default()
    }
}

/// Every allowed suggestion is written, and scores from 0.05 count as elevated.
fn uncapped() -> ScoringSettings {
    let mut s = ScoringSettings {
        elevated: 0.05,
        ..ScoringSettings::default()
    };
    for u in &mut s.units {
        u.weekly_capacity = 1_000_000;
    }
    s
}

async fn open(store: &Store) -> Vec<(String, Suggestion)> {
    open_with(store, &RulePack::default_pack().unwrap()).await
}

/// The open suggestions as a reader under `pack` sees them (what is shown is decided when
/// read, by the reader's pack).
async fn open_with(store: &Store, pack: &RulePack) -> Vec<(String, Suggestion)> {
    let app = app_with(store, Settings::default(), pack.clone());
    open_suggestions(&app, date("2026-01-01")).await.unwrap()
}

async fn dump_suggestions(store: &Store) -> Vec<String> {
    store
        .dump_table("suggestions", &["created_at"])
        .await
        .unwrap()
}

/// The synthetic municipality all scoring tests share, generated once per test binary.
fn municipality() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep().join("s");
        synth(&dir, 2_500, |_| {});
        dir
    })
}

/// A gate every model passes: these tests are about scoring, not about the gate.
fn lenient() -> Gate {
    Gate {
        min_demographic_parity_ratio: 0.0,
        max_equalized_odds_difference: 1.0,
        min_auc: 0.0,
        ..Gate::default()
    }
}

/// A store per backend with the municipality loaded and a model trained by alice under
/// a lenient gate (not yet approved); returns the model id too.
async fn trained(dir: &Path, name: &str) -> Vec<(&'static str, Store, String)> {
    let set = child_family().unwrap();
    let lenient = lenient();
    let mut out = Vec::new();
    for (backend, store) in stores(dir, name).await {
        load(
            &store,
            &edge(Country::Fi, &[]),
            &[municipality().to_path_buf()],
        )
        .await;
        let app = tidig_tests::app(&store);
        let model = train(
            &app,
            &operator("alice"),
            &set,
            date("2026-01-01"),
            &train_options(0.05, lenient.clone(), None),
        )
        .await
        .unwrap();
        out.push((backend, store, model.model_id));
    }
    out
}

/// As [`trained`], with the model approved and activated by bob.
async fn active(dir: &Path, name: &str) -> Vec<(&'static str, Store, String)> {
    let set = child_family().unwrap();
    let out = trained(dir, name).await;
    for (_, store, id) in &out {
        let app = tidig_tests::app(store);
        approve(&app, &operator("bob"), id).await.unwrap();
        activate(&app, &operator("bob"), id, &set).await.unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_approved_model_with_allowed_inputs_becomes_active() {
    let dir = tempfile::tempdir().unwrap();
    let set = child_family().unwrap();
    let default_pack = RulePack::default_pack().unwrap();
    for (backend, store, id) in trained(dir.path(), "activation").await {
        let app = tidig_tests::app(&store);
        let err = run(
            &store,
            &default_pack,
            settings_with(deployment(), uncapped()),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                err,
                EngineError::FailedPrecondition(Precondition::NoActiveModel)
            ),
            "{backend}: {err}"
        );
        let err = activate(&app, &operator("bob"), &id, &set)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                EngineError::FailedPrecondition(Precondition::ModelState {
                    state: ModelState::Trained,
                    ..
                })
            ),
            "{backend}: {err}"
        );
        approve(&app, &operator("bob"), &id).await.unwrap();
        // Health inputs need an Art 9(2) basis.
        let no_art9 = Deployment {
            art9_basis: String::new(),
            ..deployment()
        };
        let strict = app_with(
            &store,
            settings_with(no_art9, uncapped()),
            default_pack.clone(),
        );
        let err = activate(&strict, &operator("bob"), &id, &set)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, EngineError::FailedPrecondition(Precondition::InputsRefused { refused, .. })
                if refused.iter().any(|r| r.contains("data.health-needs-art9-basis"))),
            "{backend}: {err}"
        );
        let row = activate(&app, &operator("bob"), &id, &set).await.unwrap();
        assert_eq!(row.state, ModelState::Active);
        // A prefix is never a pattern.
        for pattern in ["%", "_", "%25"] {
            let err = tidig_engine::pipeline::registry::retire(&app, &operator("bob"), pattern)
                .await
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    EngineError::InvalidArgument { .. } | EngineError::NotFound { .. }
                ),
                "{backend}: `{pattern}` matched: {err}"
            );
        }
        let states: Vec<ModelState> = list(&app).await.unwrap().iter().map(|m| m.state).collect();
        assert_eq!(states, [ModelState::Active], "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_keeps_the_highest_need_and_health_factors_stay_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let default_pack = RulePack::default_pack().unwrap();
    for (backend, store, id) in active(dir.path(), "capacity").await {
        run(
            &store,
            &default_pack,
            settings_with(deployment(), uncapped()),
        )
        .await
        .unwrap();
        let mut allowed: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
        for (_, s) in open(&store).await {
            allowed.entry(s.unit.clone()).or_default().push(s.score);
        }
        // Then with small capacities so the capacity step bites.
        let mut scoring = uncapped();
        for u in &mut scoring.units {
            u.weekly_capacity = 6;
        }
        let r = run(
            &store,
            &default_pack,
            settings_with(deployment(), scoring.clone()),
        )
        .await
        .unwrap();
        assert!(r.suggestions > 0, "{backend}: {r:?}");
        assert_eq!(r.rules_version, default_pack.version());
        assert_eq!(r.rule_errors, 0);
        assert!(r.per_unit.values().all(|n| *n <= 6), "{r:?}");
        assert!(
            !r.deferred_by_capacity.is_empty(),
            "capacity did not bite: {r:?}"
        );
        assert!(
            r.factors_redacted > 0,
            "no health factor was redacted: {r:?}"
        );
        assert!(
            r.suppressed.contains_key("output.minimum-evidence")
                || r.suppressed.contains_key("output.active-case"),
            "{r:?}"
        );
        assert_eq!(
            r.scored + r.excluded.values().sum::<usize>(),
            r.cohort,
            "every cohort member is scored or excluded once: {r:?}"
        );
        let open = open(&store).await;
        assert_eq!(open.len(), r.suggestions);
        for (pseudonym, s) in &open {
            assert!(pseudonym.starts_with('p'), "{pseudonym}");
            assert!(s.score >= scoring.elevated);
            assert_eq!(s.rules_version, default_pack.version());
            assert_eq!(s.model_id, id);
            // A caseworker without health authority never sees a health factor, and no
            // intervention is named after one.
            for f in &s.factors {
                assert!(f.source != "health" || f.redacted, "{f:?}");
            }
            for i in s.interventions.iter().filter_map(|i| i.because_of.as_ref()) {
                assert!(s.factors.iter().any(|x| x.feature.as_ref() == Some(i)));
            }
            let actions: Vec<&str> = s.rule_trace.iter().map(|t| t.action.as_str()).collect();
            assert!(
                actions.starts_with(&["use_feature", "score", "suggest"]),
                "{actions:?}"
            );
        }
        // Highest need first within each unit: what was taken is the unit's top 6 of all
        // the suggestions the rules allowed.
        for (unit, mut all) in allowed {
            all.sort_by(|a, b| b.total_cmp(a));
            all.truncate(6);
            let mut taken: Vec<f64> = open
                .iter()
                .filter(|(_, s)| s.unit == unit)
                .map(|(_, s)| s.score)
                .collect();
            taken.sort_by(|a, b| b.total_cmp(a));
            assert_eq!(taken, all, "{backend}: {unit}");
        }
        // Re-scoring the same date changes nothing.
        let before = dump_suggestions(&store).await;
        let again = run(
            &store,
            &default_pack,
            settings_with(deployment(), scoring.clone()),
        )
        .await
        .unwrap();
        assert_eq!(
            (again.new, again.unchanged, again.superseded),
            (0, r.suggestions, 0)
        );
        assert_eq!(dump_suggestions(&store).await, before, "{backend}");
        // A viewer role with health authority sees every factor.
        let mut nurses = scoring.clone();
        for u in &mut nurses.units {
            u.viewer_health_authority = true;
        }
        let shown = run(&store, &default_pack, settings_with(deployment(), nurses))
            .await
            .unwrap();
        assert_eq!(shown.factors_redacted, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_objector_is_excluded_and_a_new_pack_supersedes_open_suggestions() {
    let dir = tempfile::tempdir().unwrap();
    let default_pack = RulePack::default_pack().unwrap();
    for (backend, store, _) in active(dir.path(), "objection").await {
        run(
            &store,
            &default_pack,
            settings_with(deployment(), uncapped()),
        )
        .await
        .unwrap();
        let top = open(&store).await[0].1.person_id;
        store.add_objection(top, "2025-12-01").await.unwrap();
        let r2 = run(
            &store,
            &default_pack,
            settings_with(deployment(), uncapped()),
        )
        .await
        .unwrap();
        assert_eq!(
            r2.excluded.get("eligibility.objection"),
            Some(&1),
            "{backend}: {r2:?}"
        );
        assert!(open(&store).await.iter().all(|(_, s)| s.person_id != top));
        // A changed rule is a new pack version, recorded on the new suggestions; the
        // earlier ones are superseded.
        let stricter =
            pack(&DEFAULT_RULES.replace("evidence_registries < 2", "evidence_registries < 3"));
        assert_ne!(stricter.version(), default_pack.version());
        let r3 = run(&store, &stricter, settings_with(deployment(), uncapped()))
            .await
            .unwrap();
        assert!(r3.superseded > 0, "{r3:?}");
        for (_, s) in open(&store).await {
            assert_eq!(s.rules_version, stricter.version());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_switch_and_a_missing_dpia_exclude_everyone() {
    let dir = tempfile::tempdir().unwrap();
    let default_pack = RulePack::default_pack().unwrap();
    for (backend, store, _) in active(dir.path(), "stop").await {
        let stopped = Deployment {
            stopped: true,
            ..deployment()
        };
        let r4 = run(&store, &default_pack, settings_with(stopped, uncapped()))
            .await
            .unwrap();
        assert_eq!((r4.scored, r4.suggestions), (0, 0), "{backend}");
        assert_eq!(r4.excluded.get("eligibility.stop-switch"), Some(&r4.cohort));
        let bare = Deployment {
            dpia_ref: String::new(),
            ..deployment()
        };
        let r5 = run(&store, &default_pack, settings_with(bare, uncapped()))
            .await
            .unwrap();
        assert_eq!(
            r5.excluded.get("eligibility.legal-footing"),
            Some(&r5.cohort)
        );
        assert!(open(&store).await.is_empty(), "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_input_stops_scoring_and_a_broken_rule_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let default_pack = RulePack::default_pack().unwrap();
    for (backend, store, _) in active(dir.path(), "broken").await {
        // A model whose inputs the deployment no longer allows is not used for scoring.
        let no_art9 = Deployment {
            art9_basis: String::new(),
            ..deployment()
        };
        let err = run(&store, &default_pack, settings_with(no_art9, uncapped()))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, EngineError::FailedPrecondition(Precondition::InputsRefused { refused, .. })
                if refused.iter().any(|r| r.contains("data.health-needs-art9-basis"))),
            "{backend}: {err}"
        );
        let r = run(
            &store,
            &default_pack,
            settings_with(deployment(), uncapped()),
        )
        .await
        .unwrap();
        // A broken rule fails closed: persons whose evaluation errors are left out and
        // reported; nobody is scored past it.
        let broken = pack(&format!(
            "{DEFAULT_RULES}\n@id(\"eligibility.broken\")\n@title(\"overflows\")\n@legal(\"none\")\n@stage(\"eligibility\")\n\
             forbid (principal, action == Tidig::Action::\"score\", resource)\n\
             when {{ resource.age * 4611686018427387904 > 0 }};\n"
        ));
        let r6 = run(&store, &broken, settings_with(deployment(), uncapped()))
            .await
            .unwrap();
        assert!(r6.rule_errors > 0, "{r6:?}");
        assert_eq!(r6.excluded.get("rule-error"), Some(&r6.rule_errors));
        assert!(
            r6.rule_error_samples[0].contains("eligibility.broken"),
            "{r6:?}"
        );
        assert!(r6.scored < r.scored, "{r6:?}");
        assert!(!r6.excluded.contains_key("eligibility.baseline"), "{r6:?}");
        let forbidden = r6.excluded.get("eligibility.broken").copied().unwrap_or(0);
        assert!(
            r6.scored + r6.rule_errors + forbidden >= r6.cohort - 1,
            "{r6:?}"
        );
    }
}

/// Two activations of different models racing on separate connections: at most one
/// model ends active (the unique index), and a loser is told it lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_activations_leave_exactly_one_model_active() {
    let dir = tempfile::tempdir().unwrap();
    let set = child_family().unwrap();
    let gate = lenient();
    for (backend, store, first) in trained(dir.path(), "race").await {
        let app = tidig_tests::app(&store);
        let second = train(
            &app,
            &operator("alice"),
            &set,
            date("2026-01-01"),
            &train_options(0.10, gate.clone(), None),
        )
        .await
        .unwrap()
        .model_id;
        assert_ne!(first, second);
        for id in [&first, &second] {
            approve(&app, &operator("bob"), id).await.unwrap();
        }
        let (a, b) = (tidig_tests::app(&store), tidig_tests::app(&store));
        let (bob, carol) = (operator("bob"), operator("carol"));
        let (ra, rb) = tokio::join!(
            activate(&a, &bob, &first, &set),
            activate(&b, &carol, &second, &set)
        );
        for r in [&ra, &rb] {
            assert!(
                matches!(r, Ok(_) | Err(EngineError::Conflict { .. })),
                "{backend}: {r:?}"
            );
        }
        assert!(ra.is_ok() || rb.is_ok(), "{backend}: nobody won");
        let active: Vec<String> = list(&app)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.state == ModelState::Active)
            .map(|m| m.id)
            .collect();
        assert_eq!(active.len(), 1, "{backend}: {active:?}");
    }
}

/// Three plain `permit` rules: a replacement pack that tries to allow everything.
const PERMIT_EVERYTHING: &str = include_str!("../../governance/tests/data/permit_everything.cedar");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_that_permits_everything_cannot_remove_the_non_negotiables() {
    let dir = tempfile::tempdir().unwrap();
    let lax = pack(PERMIT_EVERYTHING);
    for (backend, store, _) in active(dir.path(), "lax").await {
        // No Art 9 basis: the health inputs are refused and nothing is scored at all.
        let bare = Deployment {
            legal_basis: String::new(),
            dpia_ref: String::new(),
            fria_ref: String::new(),
            art9_basis: String::new(),
            stopped: true,
        };
        let refused = run(&store, &lax, settings_with(bare, uncapped())).await;
        assert!(
            matches!(
                &refused,
                Err(EngineError::FailedPrecondition(Precondition::InputsRefused { refused, .. }))
                    if refused.iter().all(|r| r.contains("engine.health-needs-art9-basis"))
            ),
            "{backend}: {refused:?}"
        );
        // Stopped, with no legal basis, DPIA or FRIA: nobody is scored.
        let stopped = Deployment {
            legal_basis: String::new(),
            dpia_ref: String::new(),
            fria_ref: String::new(),
            stopped: true,
            ..deployment()
        };
        let r = run(&store, &lax, settings_with(stopped, uncapped()))
            .await
            .unwrap();
        assert_eq!((r.scored, r.suggestions), (0, 0), "{backend}: {r:?}");
        assert_eq!(r.excluded.get("engine.stop-switch"), Some(&r.cohort));
        // Not stopped but without a DPIA: still nobody.
        let no_dpia = Deployment {
            dpia_ref: "   ".into(),
            ..deployment()
        };
        let r = run(&store, &lax, settings_with(no_dpia, uncapped()))
            .await
            .unwrap();
        assert_eq!((r.scored, r.suggestions), (0, 0), "{backend}: {r:?}");
        assert_eq!(r.excluded.get("engine.legal-footing"), Some(&r.cohort));
        // With its footing, the lax pack scores, and health factors stay hidden from a
        // caseworker without health authority whatever the pack says.
        let r = run(&store, &lax, settings_with(deployment(), uncapped()))
            .await
            .unwrap();
        assert!(r.suggestions > 0, "{backend}: {r:?}");
        assert!(r.factors_redacted > 0, "{backend}: {r:?}");
        for (_, s) in open_with(&store, &lax).await {
            for f in &s.factors {
                assert!(f.source != "health" || f.redacted, "{backend}: {f:?}");
                if f.redacted {
                    assert_eq!(f.rule.as_deref(), Some("engine.health-redaction"));
                }
            }
        }
    }
}
