//! The access policy: who may call which operation on which unit's suggestions, for which
//! purpose. Deny by default, written in Cedar with its own schema (`access/`), decided
//! with the same shape as the ethics pack ([`Decision`]: allowed, the deciding rule ids,
//! rule errors that fail closed), and tested by golden cases.
//!
//! A request holds only the caller's verified claims, the operation and the unit the data
//! belongs to; never a person. The engine turns an allow into the only value its
//! operations on personal data accept.

use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityUid, PolicyId, PolicySet, Request as CedarRequest,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::eval::Decision;
use crate::rules::{diagnostic_problems, PackError, Problem, Source};

/// The built-in policy's sources.
pub const ACCESS_SCHEMA: &str = include_str!("../access/access.cedarschema");
pub const ACCESS_RULES: &str = include_str!("../access/access.cedar");
pub const ACCESS_GOLDEN: &str = include_str!("../access/golden.json");

/// The rule id a refusal names when no rule permits the request.
pub const DEFAULT_DENY: &str = "access.default-deny";

/// An operation of the caseworker or oversight service, as the policy names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    ListSuggestions,
    GetSuggestion,
    RecordDecision,
    Reidentify,
    WatchSuggestions,
    ExportRiskAssessment,
    StopScoring,
    ResumeScoring,
    RegisterObjection,
    WithdrawObjection,
    ListObjections,
    QueryAudit,
    VerifyAudit,
    ProveInclusion,
    ExportAudit,
    ListModels,
    GetModelCard,
    ApproveModel,
    ActivateModel,
    RetireModel,
    RollbackModel,
    GetStatistics,
    SubjectAccessReport,
    RegisterPermit,
    AmendPermit,
    RevokePermit,
    ListPermits,
    GetPermit,
    StartResearchRun,
    GetResearchResults,
}

impl Operation {
    pub const ALL: &'static [Operation] = &[
        Operation::ListSuggestions,
        Operation::GetSuggestion,
        Operation::RecordDecision,
        Operation::Reidentify,
        Operation::WatchSuggestions,
        Operation::ExportRiskAssessment,
        Operation::StopScoring,
        Operation::ResumeScoring,
        Operation::RegisterObjection,
        Operation::WithdrawObjection,
        Operation::ListObjections,
        Operation::QueryAudit,
        Operation::VerifyAudit,
        Operation::ProveInclusion,
        Operation::ExportAudit,
        Operation::ListModels,
        Operation::GetModelCard,
        Operation::ApproveModel,
        Operation::ActivateModel,
        Operation::RetireModel,
        Operation::RollbackModel,
        Operation::GetStatistics,
        Operation::SubjectAccessReport,
        Operation::RegisterPermit,
        Operation::AmendPermit,
        Operation::RevokePermit,
        Operation::ListPermits,
        Operation::GetPermit,
        Operation::StartResearchRun,
        Operation::GetResearchResults,
    ];

    /// Whether the operation belongs to the oversight service (the rest are the
    /// caseworker's).
    pub fn is_oversight(self) -> bool {
        matches!(
            self,
            Operation::StopScoring
                | Operation::ResumeScoring
                | Operation::RegisterObjection
                | Operation::WithdrawObjection
                | Operation::ListObjections
                | Operation::QueryAudit
                | Operation::VerifyAudit
                | Operation::ProveInclusion
                | Operation::ExportAudit
                | Operation::ListModels
                | Operation::GetModelCard
                | Operation::ApproveModel
                | Operation::ActivateModel
                | Operation::RetireModel
                | Operation::RollbackModel
                | Operation::GetStatistics
                | Operation::SubjectAccessReport
                | Operation::RegisterPermit
                | Operation::AmendPermit
                | Operation::RevokePermit
                | Operation::ListPermits
                | Operation::GetPermit
        )
    }

    /// Whether the operation changes the store: its audit entry is then appended by the
    /// transaction that makes the change, not before.
    pub fn is_change(self) -> bool {
        matches!(
            self,
            Operation::RecordDecision
                | Operation::StopScoring
                | Operation::ResumeScoring
                | Operation::RegisterObjection
                | Operation::WithdrawObjection
                | Operation::ApproveModel
                | Operation::ActivateModel
                | Operation::RetireModel
                | Operation::RollbackModel
                | Operation::RegisterPermit
                | Operation::AmendPermit
                | Operation::RevokePermit
                | Operation::StartResearchRun
        )
    }

    /// The Cedar action id, and the name the audit trail records.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::ListSuggestions => "list_suggestions",
            Operation::GetSuggestion => "get_suggestion",
            Operation::RecordDecision => "record_decision",
            Operation::Reidentify => "reidentify",
            Operation::WatchSuggestions => "watch_suggestions",
            Operation::ExportRiskAssessment => "export_risk_assessment",
            Operation::StopScoring => "stop_scoring",
            Operation::ResumeScoring => "resume_scoring",
            Operation::RegisterObjection => "register_objection",
            Operation::WithdrawObjection => "withdraw_objection",
            Operation::ListObjections => "list_objections",
            Operation::QueryAudit => "query_audit",
            Operation::VerifyAudit => "verify_audit",
            Operation::ProveInclusion => "prove_inclusion",
            Operation::ExportAudit => "export_audit",
            Operation::ListModels => "list_models",
            Operation::GetModelCard => "get_model_card",
            Operation::ApproveModel => "approve_model",
            Operation::ActivateModel => "activate_model",
            Operation::RetireModel => "retire_model",
            Operation::RollbackModel => "rollback_model",
            Operation::GetStatistics => "get_statistics",
            Operation::SubjectAccessReport => "subject_access_report",
            Operation::RegisterPermit => "register_permit",
            Operation::AmendPermit => "amend_permit",
            Operation::RevokePermit => "revoke_permit",
            Operation::ListPermits => "list_permits",
            Operation::GetPermit => "get_permit",
            Operation::StartResearchRun => "start_research_run",
            Operation::GetResearchResults => "get_research_results",
        }
    }
}

/// The caller's verified claims.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerFacts {
    pub role: String,
    #[serde(default)]
    pub unit: Option<String>,
    pub purpose: String,
    #[serde(default)]
    pub health_authority: bool,
}

/// One question to the access policy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccessRequest {
    pub caller: CallerFacts,
    pub operation: Operation,
    /// The unit whose suggestions the operation touches.
    pub target_unit: String,
}

/// A rule of the policy, for messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccessRule {
    pub id: String,
    pub title: String,
    pub legal: String,
    /// `permit` or `forbid`.
    pub effect: String,
}

/// The validated access policy.
#[derive(Clone)]
pub struct AccessPolicy {
    /// `None` only for [`AccessPolicy::deny_all`].
    schema: Option<Schema>,
    policies: PolicySet,
    rules: Vec<AccessRule>,
    version: String,
}

impl std::fmt::Debug for AccessPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessPolicy")
            .field("version", &self.version)
            .field("rules", &self.rules.len())
            .finish()
    }
}

impl AccessPolicy {
    /// The policy shipped with tidig.
    pub fn builtin() -> Result<AccessPolicy, PackError> {
        AccessPolicy::load(
            Source {
                name: "access/access.cedarschema",
                text: ACCESS_SCHEMA,
            },
            Source {
                name: "access/access.cedar",
                text: ACCESS_RULES,
            },
        )
    }

    /// Parses and validates a policy (strict mode); every rule needs `@id`, `@title` and
    /// `@legal`. Every problem is reported with its position.
    pub fn load(schema_src: Source<'_>, rules_src: Source<'_>) -> Result<AccessPolicy, PackError> {
        let mut problems = Vec::new();
        let schema = match Schema::from_cedarschema_str(schema_src.text) {
            Ok((schema, _)) => Some(schema),
            Err(e) => {
                problems.push(diagnostic_problems(schema_src.name, schema_src.text, &e));
                None
            }
        };
        let parsed = match PolicySet::from_str(rules_src.text) {
            Ok(p) => p,
            Err(e) => {
                problems.extend(
                    e.iter()
                        .map(|d| diagnostic_problems(rules_src.name, rules_src.text, d)),
                );
                return Err(PackError::Invalid(problems));
            }
        };
        let mut policies = PolicySet::new();
        let mut rules = Vec::new();
        let mut found: Vec<_> = parsed.policies().collect();
        // Where each rule is written (by its @id), for messages and file order.
        let offset = |p: &cedar_policy::Policy| {
            p.annotation("id")
                .and_then(|id| rules_src.text.find(&format!("@id(\"{id}\")")))
                .unwrap_or(0)
        };
        found.sort_by_key(|p| offset(p));
        for p in found {
            let line = rules_src.text[..offset(p)].matches('\n').count() + 1;
            let annotation = |key: &str| {
                p.annotation(key)
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
            };
            let (Some(id), Some(title), Some(legal)) =
                (annotation("id"), annotation("title"), annotation("legal"))
            else {
                problems.push(Problem {
                    file: rules_src.name.into(),
                    line,
                    column: 1,
                    message: "every access rule needs @id, @title and @legal".into(),
                });
                continue;
            };
            if id == DEFAULT_DENY || rules.iter().any(|r: &AccessRule| r.id == id) {
                problems.push(Problem {
                    file: rules_src.name.into(),
                    line,
                    column: 1,
                    message: format!("@id(\"{id}\") is used twice or reserved"),
                });
                continue;
            }
            if let Err(e) = policies.add(p.new_id(PolicyId::new(&id))) {
                problems.push(Problem {
                    file: rules_src.name.into(),
                    line,
                    column: 1,
                    message: e.to_string(),
                });
                continue;
            }
            rules.push(AccessRule {
                id,
                title,
                legal,
                effect: p.effect().to_string(),
            });
        }
        let Some(schema) = schema else {
            return Err(PackError::Invalid(problems));
        };
        let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        for e in validation.validation_errors() {
            let mut problem = diagnostic_problems(rules_src.name, rules_src.text, e);
            problem.message = format!("rule `{}`: {}", e.policy_id(), problem.message);
            problems.push(problem);
        }
        if !problems.is_empty() {
            return Err(PackError::Invalid(problems));
        }
        let mut h = Sha256::new();
        h.update(b"tidig access policy v1\0schema\0");
        h.update(schema_src.text.as_bytes());
        h.update(b"\0rules\0");
        h.update(rules_src.text.as_bytes());
        Ok(AccessPolicy {
            schema: Some(schema),
            policies,
            rules,
            version: hex::encode(h.finalize()),
        })
    }

    /// A policy without rules: every request is refused ([`DEFAULT_DENY`]). What a
    /// process falls back to if its policy cannot be loaded.
    pub fn deny_all() -> AccessPolicy {
        AccessPolicy {
            schema: None,
            policies: PolicySet::new(),
            rules: Vec::new(),
            version: "deny-all".into(),
        }
    }

    /// The SHA-256 of the schema and rules.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn rules(&self) -> &[AccessRule] {
        &self.rules
    }

    pub fn rule(&self, id: &str) -> Option<&AccessRule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// Decides one request; never fails open. A deny with no deciding rule means no rule
    /// permits the request ([`DEFAULT_DENY`] names that in refusals).
    pub fn decide(&self, request: &AccessRequest) -> Decision {
        match self.try_decide(request) {
            Ok(d) => d,
            Err(e) => Decision {
                allowed: false,
                rules: Vec::new(),
                errors: vec![e],
            },
        }
    }

    fn try_decide(&self, request: &AccessRequest) -> Result<Decision, String> {
        let uid = |kind: &str, id: &str| {
            EntityUid::from_str(&format!(
                "TidigAccess::{kind}::{}",
                serde_json::to_string(id).map_err(|e| e.to_string())?
            ))
            .map_err(|e| e.to_string())
        };
        let s = |v: &str| RestrictedExpression::new_string(v.to_string());
        let c = &request.caller;
        let principal = uid("Caller", "caller")?;
        let resource = uid("Target", "target")?;
        let caller = Entity::new(
            principal.clone(),
            [
                ("role".to_string(), s(&c.role)),
                ("purpose".to_string(), s(&c.purpose)),
                (
                    "has_unit".to_string(),
                    RestrictedExpression::new_bool(c.unit.is_some()),
                ),
                ("unit".to_string(), s(c.unit.as_deref().unwrap_or_default())),
                (
                    "health_authority".to_string(),
                    RestrictedExpression::new_bool(c.health_authority),
                ),
            ]
            .into_iter()
            .collect(),
            Default::default(),
        )
        .map_err(|e| e.to_string())?;
        let target = Entity::new(
            resource.clone(),
            [("unit".to_string(), s(&request.target_unit))]
                .into_iter()
                .collect(),
            Default::default(),
        )
        .map_err(|e| e.to_string())?;
        let entities = Entities::from_entities([caller, target], self.schema.as_ref())
            .map_err(|e| e.to_string())?;
        let cedar = CedarRequest::new(
            principal,
            uid("Action", request.operation.as_str())?,
            resource,
            Context::empty(),
            self.schema.as_ref(),
        )
        .map_err(|e| e.to_string())?;
        let response = Authorizer::new().is_authorized(&cedar, &self.policies, &entities);
        Ok(crate::eval::decision(&response, |id| {
            self.rule(id).is_some_and(|r| r.effect == "forbid")
        }))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GoldenFile {
    cases: Vec<GoldenCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GoldenCase {
    name: String,
    caller: CallerFacts,
    operation: Operation,
    target_unit: String,
    expect: crate::golden::Expect,
}

/// One golden case that did not get its expected decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoldenFailure {
    pub name: String,
    pub expected: crate::golden::Expect,
    pub got: Decision,
}

/// Runs golden cases (`access/golden.json` shape) against a policy: the failures, or why
/// the file could not be read.
pub fn run_golden(
    policy: &AccessPolicy,
    file: &str,
    text: &str,
) -> Result<(usize, Vec<GoldenFailure>), PackError> {
    let parsed: GoldenFile = serde_json::from_str(text).map_err(|e| {
        PackError::Invalid(vec![Problem {
            file: file.into(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        }])
    })?;
    let unknown: Vec<Problem> = parsed
        .cases
        .iter()
        .flat_map(|c| c.expect.rules.iter().map(move |r| (c, r)))
        .filter(|(_, r)| policy.rule(r).is_none())
        .map(|(c, r)| Problem {
            file: file.into(),
            line: 0,
            column: 0,
            message: format!("case `{}`: unknown rule id `{r}`", c.name),
        })
        .collect();
    if !unknown.is_empty() {
        return Err(PackError::Invalid(unknown));
    }
    let total = parsed.cases.len();
    let failures = parsed
        .cases
        .into_iter()
        .filter_map(|c| {
            let got = policy.decide(&AccessRequest {
                caller: c.caller,
                operation: c.operation,
                target_unit: c.target_unit,
            });
            let mut want = c.expect.rules.clone();
            want.sort();
            let passed = got.allowed == c.expect.allowed
                && got.rules == want
                && got.errors.is_empty() != c.expect.errors;
            (!passed).then_some(GoldenFailure {
                name: c.name,
                expected: c.expect,
                got,
            })
        })
        .collect();
    Ok((total, failures))
}
