//! The rule layer: the default pack, its golden cases, pack checks with positions, fail
//! closed on rule errors, and versioning.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failure here is a test failure"
)]

use tidig_governance::eval::{
    Deployment, FeatureFacts, Intervention, ModelFacts, PersonFacts, SuggestionFacts, ViewerFacts,
};
use tidig_governance::rules::{DEFAULT_GOLDEN, DEFAULT_RULES, DEFAULT_SCHEMA};
use tidig_governance::{golden, Evaluator, Request, RulePack, Source, Stage};

fn pack_with(rules: &str) -> Result<RulePack, tidig_governance::PackError> {
    RulePack::load(
        Source {
            name: "tidig.cedarschema",
            text: DEFAULT_SCHEMA,
        },
        &[Source {
            name: "rules.cedar",
            text: rules,
        }],
    )
}

fn deployment() -> Deployment {
    Deployment {
        legal_basis: "Social Welfare Act s 5".into(),
        dpia_ref: "DPIA-1".into(),
        fria_ref: "FRIA-1".into(),
        art9_basis: "GDPR Art 9(2)(h)".into(),
        stopped: false,
    }
}

fn score(age: i64, objection: bool) -> Request {
    Request::Score {
        model: ModelFacts {
            id: "m".into(),
            kind: "logistic".into(),
            feature_set: "child_family".into(),
        },
        person: PersonFacts { age, objection },
        deployment: deployment(),
        intervention: Intervention {
            id: "family_support".into(),
            min_age: 0,
            max_age: 17,
        },
    }
}

#[test]
fn the_default_pack_is_valid_and_every_rule_is_annotated() {
    let pack = RulePack::default_pack().unwrap();
    assert_eq!(pack.version().len(), 64);
    let stages = pack.by_stage();
    for stage in [Stage::Data, Stage::Eligibility, Stage::Output] {
        assert!(stages.contains_key(&stage), "{stage:?}");
    }
    for r in pack.rules() {
        assert!(!r.title.is_empty() && !r.legal.is_empty(), "{}", r.id);
        assert!(r.line > 0, "{} has no position", r.id);
        assert!(
            DEFAULT_RULES
                .lines()
                .nth(r.line - 1)
                .unwrap()
                .contains(&format!("@id(\"{}\")", r.id)),
            "{} at line {}",
            r.id,
            r.line
        );
    }
}

#[test]
fn golden_cases_pass_and_cover_every_rule() {
    let pack = RulePack::default_pack().unwrap();
    let report = golden::run(&pack, "golden.json", DEFAULT_GOLDEN).unwrap();
    let failed: Vec<_> = report.cases.iter().filter(|c| !c.passed).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(report.passed >= 25, "{}", report.passed);
    // Every rule decides at least one case, and every forbid also appears in a case it
    // does not decide (its negative).
    for r in pack.rules() {
        let decides = report.cases.iter().any(|c| c.got.rules.contains(&r.id));
        assert!(decides, "no golden case is decided by `{}`", r.id);
    }
    // Every forbid also has a negative: a case of its own action that it lets through.
    let golden: serde_json::Value = serde_json::from_str(DEFAULT_GOLDEN).unwrap();
    for r in pack.rules().iter().filter(|r| r.effect == "forbid") {
        let rule_text = DEFAULT_RULES
            .lines()
            .skip(r.line - 1)
            .take_while(|l| !l.trim_end().ends_with(';'))
            .collect::<Vec<_>>()
            .join(" ");
        let negative = report
            .cases
            .iter()
            .zip(golden["cases"].as_array().unwrap())
            .any(|(c, g)| {
                let action = g["request"]["action"].as_str().unwrap();
                c.got.allowed && rule_text.contains(&format!("Tidig::Action::\"{action}\""))
            });
        assert!(
            negative,
            "no golden case shows `{}` letting a request through",
            r.id
        );
    }
}

#[test]
fn a_wrong_expectation_fails_its_case() {
    let pack = RulePack::default_pack().unwrap();
    let text = r#"{"cases": [{"name": "objector", "request": {"action": "score",
        "model": {"id": "m", "kind": "logistic", "feature_set": "x"},
        "person": {"age": 5, "objection": true},
        "deployment": {"legal_basis": "b", "dpia_ref": "d", "fria_ref": "f", "art9_basis": "", "stopped": false},
        "intervention": {"id": "i", "min_age": 0, "max_age": 17}},
        "expect": {"allowed": true, "rules": ["eligibility.baseline"]}}]}"#;
    let report = golden::run(&pack, "g.json", text).unwrap();
    assert_eq!(report.failed, 1);
    assert_eq!(report.cases[0].got.rules, vec!["eligibility.objection"]);
}

#[test]
fn golden_files_with_unknown_ids_or_bad_json_are_refused_with_positions() {
    let pack = RulePack::default_pack().unwrap();
    let text = "{\"cases\": [\n {\"name\": \"a\", \"request\": {\"action\": \"score\"},\n  \"expect\": {\"allowed\": false, \"rules\": [\"eligibility.no-such-rule\"]}}]}";
    let err = golden::run(&pack, "g.json", text).unwrap_err().to_string();
    assert!(err.contains("g.json:2:1"), "{err}");
    assert!(
        err.contains("unknown rule id `eligibility.no-such-rule`"),
        "{err}"
    );
    assert!(err.contains("missing field"), "{err}");
    let err = golden::run(&pack, "g.json", "{\"cases\": [\n  {\"name\": 3}]}")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("g.json:2:"), "{err}");
}

#[test]
fn a_broken_rule_fails_closed_and_is_reported() {
    // Valid against the schema, but overflows at run time for any age ≥ 2.
    let broken = format!(
        "{DEFAULT_RULES}\n@id(\"eligibility.broken\")\n@title(\"overflows\")\n@legal(\"none\")\n@stage(\"eligibility\")\n\
         forbid (principal, action == Tidig::Action::\"score\", resource)\n\
         when {{ resource.age * 4611686018427387904 > 0 }};\n"
    );
    let pack = pack_with(&broken).unwrap();
    let d = pack.evaluate(&score(9, false));
    assert!(!d.allowed, "a rule error must deny");
    assert_eq!(d.errors.len(), 1, "{d:?}");
    assert!(d.errors[0].contains("eligibility.broken"), "{d:?}");
    assert!(
        d.rules.is_empty(),
        "a permit did not decide this deny: {d:?}"
    );
    // Without the error (age 0 does not overflow) the same request is allowed.
    let d = pack.evaluate(&score(0, false));
    assert!(d.allowed && d.errors.is_empty(), "{d:?}");
    // The default pack allows the age-9 request.
    assert!(
        RulePack::default_pack()
            .unwrap()
            .evaluate(&score(9, false))
            .allowed
    );
}

#[test]
fn changing_a_rule_changes_the_version() {
    let a = RulePack::default_pack().unwrap();
    let b = pack_with(&DEFAULT_RULES.replace("evidence_registries < 2", "evidence_registries < 3"))
        .unwrap();
    assert_ne!(a.version(), b.version());
    let again = pack_with(DEFAULT_RULES).unwrap();
    assert_eq!(again.version(), pack_with(DEFAULT_RULES).unwrap().version());
}

fn problems(rules: &str) -> Vec<String> {
    pack_with(rules)
        .unwrap_err()
        .problems()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn pack_problems_name_file_line_and_what_is_wrong() {
    // Syntax error on line 3.
    let p = problems("@id(\"a\")\n@title(\"t\")\npermit (principal, action == , resource);\n");
    assert!(p[0].starts_with("rules.cedar:3:"), "{p:?}");

    // Missing annotations, bad stage, stage/action mismatch, no action, duplicate id.
    let text = "\
@id(\"x.one\")\n@title(\"t\")\n@stage(\"data\")\npermit (principal, action == Tidig::Action::\"use_feature\", resource);\n\
\n\
@id(\"x.two\")\n@title(\"t\")\n@legal(\"l\")\n@stage(\"later\")\npermit (principal, action == Tidig::Action::\"use_feature\", resource);\n\
\n\
@id(\"x.three\")\n@title(\"t\")\n@legal(\"l\")\n@stage(\"data\")\nforbid (principal, action == Tidig::Action::\"score\", resource);\n\
\n\
@id(\"x.four\")\n@title(\"t\")\n@legal(\"l\")\n@stage(\"output\")\nforbid (principal, action, resource);\n\
\n\
@id(\"x.five\")\n@title(\"t\")\n@legal(\"l\")\n@stage(\"data\")\npermit (principal, action == Tidig::Action::\"use_feature\", resource);\n\
\n\
@id(\"x.five\")\n@title(\"t\")\n@legal(\"l\")\n@stage(\"data\")\nforbid (principal, action == Tidig::Action::\"use_feature\", resource);\n";
    let p = problems(text);
    let joined = p.join("\n");
    assert!(
        joined.contains("rules.cedar:1:1: rule `x.one` lacks @legal"),
        "{joined}"
    );
    assert!(
        joined.contains("rules.cedar:6:1: rule `x.two`: @stage(\"later\")"),
        "{joined}"
    );
    assert!(
        joined.contains("rules.cedar:12:1: rule `x.three` is @stage(\"data\") but governs"),
        "{joined}"
    );
    assert!(
        joined.contains("rules.cedar:18:1: rule `x.four` must name its action"),
        "{joined}"
    );
    assert!(joined.contains("@id(\"x.five\") is used twice"), "{joined}");
    assert!(pack_with(text).is_err());

    // A schema violation: an attribute persons do not have, placed on its line.
    let text = "@id(\"e.typo\")\n@title(\"t\")\n@legal(\"l\")\n@stage(\"eligibility\")\n\
                forbid (principal, action == Tidig::Action::\"score\", resource)\n\
                when { resource.agee > 3 };\n";
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("rules.cedar:6:"), "{p:?}");
    assert!(p[0].contains("e.typo") && p[0].contains("agee"), "{p:?}");
}

#[test]
fn the_evaluator_memoizes_by_request() {
    let pack = RulePack::default_pack().unwrap();
    let mut ev = Evaluator::new(&pack);
    for age in 0..40 {
        for _ in 0..10 {
            let allowed = ev.decide(score(age % 20, false)).allowed;
            assert_eq!(allowed, age % 20 <= 17);
        }
    }
    assert_eq!(ev.evaluated, 20);
    assert_eq!(ev.memoized, 380);
}

/// A pack of plain permits, one per stage: it forbids nothing.
const PERMIT_EVERYTHING: &str = include_str!("data/permit_everything.cedar");

fn feature(sensitivity: &str, category: &str) -> FeatureFacts {
    FeatureFacts {
        id: "f".into(),
        source: "health".into(),
        sensitivity: sensitivity.into(),
        category: category.into(),
        subject: "child".into(),
    }
}

fn model() -> ModelFacts {
    ModelFacts {
        id: "m".into(),
        kind: "logistic".into(),
        feature_set: "child_family".into(),
    }
}

fn suggest(deployment: Deployment) -> Request {
    Request::Suggest {
        unit: "u".into(),
        suggestion: SuggestionFacts {
            score_permille: 900,
            band: "high".into(),
            age: 5,
            evidence_registries: 1,
            active_case_at_unit: true,
        },
        deployment,
        intervention: Intervention {
            id: "family_support".into(),
            min_age: 0,
            max_age: 17,
        },
    }
}

#[test]
fn the_non_negotiables_hold_under_a_pack_that_permits_everything() {
    let lax = pack_with(PERMIT_EVERYTHING).unwrap();
    let default = RulePack::default_pack().unwrap();
    let denied_by = |pack: &RulePack, r: &Request| -> Option<Vec<String>> {
        let d = pack.evaluate(r);
        (!d.allowed).then_some(d.rules)
    };
    let with = |f: &dyn Fn(&mut Deployment)| {
        let mut d = deployment();
        f(&mut d);
        d
    };
    let score_under = |d: Deployment, objection: bool| {
        let Request::Score {
            model,
            person,
            intervention,
            ..
        } = score(9, objection)
        else {
            unreachable!()
        };
        Request::Score {
            model,
            person,
            deployment: d,
            intervention,
        }
    };
    let cases: Vec<(Request, &str)> = vec![
        (
            score_under(with(&|d| d.stopped = true), false),
            "engine.stop-switch",
        ),
        (suggest(with(&|d| d.stopped = true)), "engine.stop-switch"),
        (
            score_under(with(&|d| d.legal_basis.clear()), false),
            "engine.legal-footing",
        ),
        (
            score_under(with(&|d| d.dpia_ref = "  ".into()), false),
            "engine.legal-footing",
        ),
        (
            suggest(with(&|d| d.fria_ref.clear())),
            "engine.legal-footing",
        ),
        (score_under(deployment(), true), "engine.objection"),
        (
            Request::TrainOn {
                model: model(),
                person: PersonFacts {
                    age: 9,
                    objection: true,
                },
                deployment: deployment(),
            },
            "engine.objection",
        ),
        (
            Request::UseFeature {
                model: model(),
                feature: feature("health", "diagnosis"),
                deployment: with(&|d| d.art9_basis.clear()),
            },
            "engine.health-needs-art9-basis",
        ),
        (
            Request::UseFeature {
                model: model(),
                feature: feature("ordinary", "mother_tongue"),
                deployment: deployment(),
            },
            "engine.never-inputs",
        ),
        (
            Request::UseFeature {
                model: model(),
                feature: feature("protected", "sex"),
                deployment: deployment(),
            },
            "engine.never-inputs",
        ),
        (
            Request::ViewFactor {
                viewer: ViewerFacts {
                    unit: "u".into(),
                    role: "caseworker".into(),
                    health_authority: false,
                },
                feature: feature("health", "diagnosis"),
                deployment: deployment(),
            },
            "engine.health-redaction",
        ),
    ];
    for (request, rule) in &cases {
        assert_eq!(
            denied_by(&lax, request),
            Some(vec![rule.to_string()]),
            "{request:?}"
        );
        // The default pack denies each of them too (defence in depth). A blank-but-not-empty
        // reference slips past its Cedar rule (Cedar cannot trim), and the floor names it.
        let own = denied_by(&default, request).unwrap_or_default();
        assert!(!own.is_empty(), "{request:?}");
    }
    // What the floor does not cover stays the pack's to decide.
    assert!(lax.evaluate(&score(9, false)).allowed);
    assert!(lax.evaluate(&suggest(deployment())).allowed);
    assert!(!default.evaluate(&suggest(deployment())).allowed);
}
