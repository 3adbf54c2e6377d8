//! The scoring pipeline end to end on both backends: activation under the data-stage
//! rules, suggestions with redaction, routing and capacity, idempotent re-scoring,
//! objections, the stop switch, a changed pack, a forbidden input and a broken rule.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failure here is a test failure"
)]

use chrono::NaiveDate;
use tidig_connectors::national_id::Country;
use tidig_engine::score::{open_suggestions, score, ScoreOptions, ScoreReport};
use tidig_engine::settings::ScoringSettings;
use tidig_engine::store::Store;
use tidig_engine::train::{activate, approve, train, Gate};
use tidig_governance::eval::Deployment;
use tidig_governance::rules::{DEFAULT_RULES, DEFAULT_SCHEMA};
use tidig_governance::{RulePack, Source};
use tidig_models::features::{child_family, FeatureSet};
use tidig_tests::{config, edge, load, stores, synth};

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

async fn run(
    store: &Store,
    pack: &RulePack,
    d: &Deployment,
    s: &ScoringSettings,
    set: &FeatureSet,
) -> anyhow::Result<ScoreReport> {
    Ok(score(
        store,
        ScoreOptions {
            as_of: date("2026-01-01"),
            pack,
            deployment: d,
            scoring: s,
            set,
            by: "tester",
        },
    )
    .await?
    .0)
}

async fn dump_suggestions(store: &Store) -> Vec<String> {
    store
        .dump_table("suggestions", &["created_at"])
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoring_turns_an_active_model_into_governed_suggestions() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    synth(&out, 2_500, |_| {});
    let set = child_family().unwrap();
    let lenient = Gate {
        min_demographic_parity_ratio: 0.0,
        max_equalized_odds_difference: 1.0,
        min_auc: 0.0,
        ..Gate::default()
    };
    let default_pack = RulePack::default_pack().unwrap();
    for (backend, store) in stores(dir.path(), "score").await {
        load(&store, &edge(Country::Fi, &[]), std::slice::from_ref(&out)).await;
        let model = train(
            &store,
            &set,
            date("2026-01-01"),
            &config(0.05, &lenient, None, "alice"),
        )
        .await
        .unwrap();
        let id = model.model_id.clone();

        // No active model yet.
        let mut scoring = ScoringSettings::default();
        let err = run(&store, &default_pack, &deployment(), &scoring, &set)
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("no active model"),
            "{backend}: {err:#}"
        );

        // Only an approved model can be activated, and only when its inputs pass the
        // data-stage rules: health inputs need an Art 9(2) basis.
        let err = activate(&store, &id, "bob", &default_pack, &deployment(), &set)
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("only an approved model"),
            "{err:#}"
        );
        approve(&store, &id, "bob").await.unwrap();
        let no_art9 = Deployment {
            art9_basis: String::new(),
            ..deployment()
        };
        let err = activate(&store, &id, "bob", &default_pack, &no_art9, &set)
            .await
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("cannot be activated"), "{msg}");
        assert!(msg.contains("data.health-needs-art9-basis"), "{msg}");
        activate(&store, &id, "bob", &default_pack, &deployment(), &set)
            .await
            .unwrap();

        // First without a capacity limit: every allowed suggestion, per unit.
        scoring.elevated = 0.05;
        for u in &mut scoring.units {
            u.weekly_capacity = 1_000_000;
        }
        run(&store, &default_pack, &deployment(), &scoring, &set)
            .await
            .unwrap();
        let mut allowed: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
        for (_, s) in open_suggestions(&store, date("2026-01-01")).await.unwrap() {
            allowed.entry(s.unit.clone()).or_default().push(s.score);
        }
        // Then with small capacities so the capacity step bites.
        for u in &mut scoring.units {
            u.weekly_capacity = 6;
        }
        let r = run(&store, &default_pack, &deployment(), &scoring, &set)
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
        let open = open_suggestions(&store, date("2026-01-01")).await.unwrap();
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
            for i in &s.interventions {
                if let Some(f) = &i.because_of {
                    assert!(s.factors.iter().any(|x| x.feature.as_deref() == Some(f)));
                }
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
        let again = run(&store, &default_pack, &deployment(), &scoring, &set)
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
        let shown = run(&store, &default_pack, &deployment(), &nurses, &set)
            .await
            .unwrap();
        assert_eq!(shown.factors_redacted, 0);

        // An objection: the top person is excluded and counted, never listed.
        let top = open[0].1.person_id;
        tidig_engine::on_pool!(&store, |p| sqlx::query(
            "INSERT INTO objections (person_id, registered_at) VALUES ($1, '2025-12-01')"
        )
        .bind(top)
        .execute(p)
        .await
        .map(|_| ())
        .unwrap());
        let r2 = run(&store, &default_pack, &deployment(), &scoring, &set)
            .await
            .unwrap();
        assert_eq!(r2.excluded.get("eligibility.objection"), Some(&1), "{r2:?}");
        let open2 = open_suggestions(&store, date("2026-01-01")).await.unwrap();
        assert!(open2.iter().all(|(_, s)| s.person_id != top));

        // A changed rule is a new pack version, recorded on the new suggestions; the
        // earlier ones are superseded.
        let stricter =
            pack(&DEFAULT_RULES.replace("evidence_registries < 2", "evidence_registries < 3"));
        assert_ne!(stricter.version(), default_pack.version());
        let r3 = run(&store, &stricter, &deployment(), &scoring, &set)
            .await
            .unwrap();
        assert!(r3.superseded > 0, "{r3:?}");
        for (_, s) in open_suggestions(&store, date("2026-01-01")).await.unwrap() {
            assert_eq!(s.rules_version, stricter.version());
        }

        // The stop switch halts all scoring.
        let stopped = Deployment {
            stopped: true,
            ..deployment()
        };
        let r4 = run(&store, &default_pack, &stopped, &scoring, &set)
            .await
            .unwrap();
        assert_eq!(r4.scored, 0);
        assert_eq!(r4.suggestions, 0);
        assert_eq!(r4.excluded.get("eligibility.stop-switch"), Some(&r4.cohort));

        // Without a legal basis, DPIA and FRIA nobody is scored.
        let bare = Deployment {
            dpia_ref: String::new(),
            ..deployment()
        };
        let r5 = run(&store, &default_pack, &bare, &scoring, &set)
            .await
            .unwrap();
        assert_eq!(
            r5.excluded.get("eligibility.legal-footing"),
            Some(&r5.cohort)
        );

        // A model whose inputs the deployment no longer allows is not used for scoring.
        let err = run(&store, &default_pack, &no_art9, &scoring, &set)
            .await
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("may not be used for scoring"), "{msg}");
        assert!(msg.contains("data.health-needs-art9-basis"), "{msg}");

        // A broken rule fails closed: persons whose evaluation errors are left out and
        // reported; nobody is scored past it.
        let broken = pack(&format!(
            "{DEFAULT_RULES}\n@id(\"eligibility.broken\")\n@title(\"overflows\")\n@legal(\"none\")\n@stage(\"eligibility\")\n\
             forbid (principal, action == Tidig::Action::\"score\", resource)\n\
             when {{ resource.age * 4611686018427387904 > 0 }};\n"
        ));
        let r6 = run(&store, &broken, &deployment(), &scoring, &set)
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
        store.close().await;
    }
}
