//! The access policy: deny by default, its golden cases, the whole role × operation ×
//! unit matrix, and policy checks with positions.

use tidig_governance::access::{
    run_golden, AccessPolicy, AccessRequest, CallerFacts, Operation, ACCESS_GOLDEN, ACCESS_SCHEMA,
};
use tidig_governance::Source;

fn caller(role: &str, unit: Option<&str>, purpose: &str) -> CallerFacts {
    CallerFacts {
        role: role.into(),
        unit: unit.map(Into::into),
        purpose: purpose.into(),
        health_authority: false,
    }
}

fn decide(p: &AccessPolicy, c: &CallerFacts, op: Operation, unit: &str) -> (bool, Vec<String>) {
    let d = p.decide(&AccessRequest {
        caller: c.clone(),
        operation: op,
        target_unit: unit.into(),
    });
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    (d.allowed, d.rules)
}

#[test]
fn the_golden_cases_get_their_decisions() {
    let policy = AccessPolicy::builtin().unwrap();
    let (total, failures) = run_golden(&policy, "access/golden.json", ACCESS_GOLDEN).unwrap();
    assert!(total >= 15, "{total}");
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn exactly_the_intended_role_purpose_unit_and_operation_combinations_are_allowed() {
    let policy = AccessPolicy::builtin().unwrap();
    let roles = ["caseworker", "dpo", "auditor", "researcher", "operator"];
    let purposes = ["case-handling", "oversight", "research", "operations"];
    let mut allowed = 0;
    for role in roles {
        for purpose in purposes {
            for unit in [Some("north"), None] {
                let c = caller(role, unit, purpose);
                for &op in Operation::ALL {
                    for target in ["north", "south"] {
                        let (ok, rules) = decide(&policy, &c, op, target);
                        let audit_read = matches!(
                            op,
                            Operation::QueryAudit
                                | Operation::VerifyAudit
                                | Operation::ProveInclusion
                                | Operation::ExportAudit
                        );
                        let model_read =
                            matches!(op, Operation::ListModels | Operation::GetModelCard);
                        let model_change = matches!(
                            op,
                            Operation::ApproveModel
                                | Operation::ActivateModel
                                | Operation::RetireModel
                                | Operation::RollbackModel
                        );
                        let stats = op == Operation::GetStatistics;
                        let permit_change = matches!(
                            op,
                            Operation::RegisterPermit
                                | Operation::AmendPermit
                                | Operation::RevokePermit
                        );
                        let permit_read =
                            matches!(op, Operation::ListPermits | Operation::GetPermit);
                        let register = matches!(
                            op,
                            Operation::RegisterObjection
                                | Operation::WithdrawObjection
                                | Operation::ListObjections
                        );
                        let research = matches!(
                            op,
                            Operation::StartResearchRun | Operation::GetResearchResults
                        );
                        let caseworker = role == "caseworker"
                            && purpose == "case-handling"
                            && unit == Some(target)
                            && !op.is_oversight()
                            && !research;
                        let researcher = role == "researcher" && purpose == "research" && research;
                        let research_read = op == Operation::GetResearchResults;
                        let dpo = role == "dpo"
                            && purpose == "oversight"
                            && (op == Operation::GetSuggestion
                                || op.is_oversight()
                                || research_read);
                        let operator = role == "operator"
                            && purpose == "operations"
                            && (register
                                || model_read
                                || model_change
                                || stats
                                || permit_change
                                || permit_read);
                        let auditor = role == "auditor"
                            && purpose == "oversight"
                            && (audit_read || model_read || stats || permit_read || research_read);
                        assert_eq!(
                            ok,
                            caseworker || dpo || operator || auditor || researcher,
                            "{c:?} {op:?} on {target}"
                        );
                        if ok {
                            allowed += 1;
                            assert_eq!(rules.len(), 1, "{rules:?}");
                        }
                        // A decision by anyone but a caseworker of the unit names its rule.
                        if op == Operation::RecordDecision
                            && !(role == "caseworker" && unit == Some(target))
                        {
                            assert_eq!(rules, ["access.human-decision-by-own-caseworker"]);
                        }
                    }
                }
            }
        }
    }
    // 6 operations for the one matching caseworker claim set; the DPO's read and the 22
    // oversight operations; the operator's 3 register, 2 registry reads, 4 model changes,
    // the statistics and 5 permit operations; the auditor's 4 audit reads, 2 registry
    // reads, the statistics and 2 permit reads; each on two targets, with and without a
    // unit claim.
    // The researcher's 2 research operations; the DPO and auditor also read results.
    assert_eq!(
        allowed,
        6 + 24 * 2 * 2 + 15 * 2 * 2 + 10 * 2 * 2 + 2 * 2 * 2
    );
}

#[test]
fn a_policy_without_legal_references_or_with_type_errors_is_refused_with_positions() {
    let load = |rules: &str| {
        AccessPolicy::load(
            Source {
                name: "access.cedarschema",
                text: ACCESS_SCHEMA,
            },
            Source {
                name: "mine.cedar",
                text: rules,
            },
        )
    };
    let e = load("@id(\"a\")\n@title(\"t\")\npermit (principal, action, resource);").unwrap_err();
    assert!(e.to_string().contains("mine.cedar:1:1"), "{e}");
    assert!(e.to_string().contains("@legal"), "{e}");
    let e = load(
        "@id(\"a\")\n@title(\"t\")\n@legal(\"l\")\npermit (principal, action, resource) when { principal.unit == 3 };",
    )
    .unwrap_err();
    assert!(e.to_string().contains("rule `a`"), "{e}");
    let e = load(
        "@id(\"access.default-deny\")\n@title(\"t\")\n@legal(\"l\")\npermit (principal, action, resource);",
    )
    .unwrap_err();
    assert!(e.to_string().contains("reserved"), "{e}");
    // A valid policy of its own gets its own version.
    let own =
        load("@id(\"a\")\n@title(\"t\")\n@legal(\"l\")\nforbid (principal, action, resource);")
            .unwrap();
    assert_ne!(own.version(), AccessPolicy::builtin().unwrap().version());
    let c = caller("caseworker", Some("north"), "case-handling");
    assert_eq!(
        decide(
            &AccessPolicy::deny_all(),
            &c,
            Operation::ListSuggestions,
            "north"
        ),
        (false, vec![])
    );
    assert_eq!(
        decide(&own, &c, Operation::ListSuggestions, "north"),
        (false, vec!["a".to_string()])
    );
}
