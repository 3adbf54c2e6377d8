//! Evaluating requests against a rule pack: the decision, the deciding rule ids and any
//! rule errors. A rule error fails closed.
//!
//! Requests are plain values ([`Request`]); the evaluator turns one into Cedar entities,
//! a context and a request checked against the pack's schema. Rules see attributes, never
//! identities: the scored person is always `Tidig::Person::"subject"`. Because a decision
//! depends on nothing but the request, [`Evaluator`] memoizes decisions by the whole
//! request value.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityUid,
    Request as CedarRequest, RestrictedExpression,
};
use serde::{Deserialize, Serialize};

use crate::rules::{RulePack, Stage};

/// The deployment's legal footing (empty string: not named in its configuration).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Deployment {
    pub legal_basis: String,
    pub dpia_ref: String,
    pub fria_ref: String,
    /// The GDPR Art 9(2) basis for health data.
    pub art9_basis: String,
    /// The stop switch.
    pub stopped: bool,
}

/// The intervention a model scores for, with its age scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intervention {
    pub id: String,
    pub min_age: i64,
    pub max_age: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFacts {
    pub id: String,
    pub kind: String,
    pub feature_set: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureFacts {
    pub id: String,
    /// `health`, `social` or `population`.
    pub source: String,
    /// `ordinary`, `health`, `protected` or `prohibited`.
    pub sensitivity: String,
    /// The attribute or registry category the feature reads.
    pub category: String,
    pub subject: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonFacts {
    pub age: i64,
    pub objection: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuggestionFacts {
    pub score_permille: i64,
    pub band: String,
    pub age: i64,
    pub evidence_registries: i64,
    pub active_case_at_unit: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewerFacts {
    pub unit: String,
    pub role: String,
    pub health_authority: bool,
}

/// One question to the rules.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    UseFeature {
        model: ModelFacts,
        feature: FeatureFacts,
        deployment: Deployment,
    },
    TrainOn {
        model: ModelFacts,
        person: PersonFacts,
        deployment: Deployment,
    },
    Score {
        model: ModelFacts,
        person: PersonFacts,
        deployment: Deployment,
        intervention: Intervention,
    },
    Suggest {
        unit: String,
        suggestion: SuggestionFacts,
        deployment: Deployment,
        intervention: Intervention,
    },
    ViewFactor {
        viewer: ViewerFacts,
        feature: FeatureFacts,
        deployment: Deployment,
    },
}

impl Request {
    pub fn action(&self) -> &'static str {
        match self {
            Request::UseFeature { .. } => "use_feature",
            Request::TrainOn { .. } => "train_on",
            Request::Score { .. } => "score",
            Request::Suggest { .. } => "suggest",
            Request::ViewFactor { .. } => "view_factor",
        }
    }

    pub fn stage(&self) -> Stage {
        match self {
            Request::UseFeature { .. } => Stage::Data,
            Request::TrainOn { .. } | Request::Score { .. } => Stage::Eligibility,
            Request::Suggest { .. } | Request::ViewFactor { .. } => Stage::Output,
        }
    }
}

/// A decision with its reasons.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    /// The rules that decided: the permits that allowed, or the forbids that denied.
    /// Empty on a deny means no rule permits the request.
    pub rules: Vec<String>,
    /// Rule errors (Cedar diagnostics). Any error makes the decision a deny.
    pub errors: Vec<String>,
}

/// Why a request could not be put to the rules at all (a fact that does not fit the
/// schema). The pipeline treats it as a deny.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    #[error("the request does not fit the rule schema: {0}")]
    Schema(String),
}

fn uid(kind: &str, id: &str) -> Result<EntityUid, RequestError> {
    let quoted = serde_json::to_string(id).map_err(|e| RequestError::Schema(e.to_string()))?;
    EntityUid::from_str(&format!("Tidig::{kind}::{quoted}"))
        .map_err(|e| RequestError::Schema(e.to_string()))
}

fn s(v: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(v.to_string())
}

fn record(pairs: Vec<(&str, RestrictedExpression)>) -> Result<RestrictedExpression, RequestError> {
    RestrictedExpression::new_record(pairs.into_iter().map(|(k, v)| (k.to_string(), v)))
        .map_err(|e| RequestError::Schema(e.to_string()))
}

fn deployment(d: &Deployment) -> Result<RestrictedExpression, RequestError> {
    record(vec![
        ("legal_basis", s(&d.legal_basis)),
        ("dpia_ref", s(&d.dpia_ref)),
        ("fria_ref", s(&d.fria_ref)),
        ("art9_basis", s(&d.art9_basis)),
        ("stopped", RestrictedExpression::new_bool(d.stopped)),
    ])
}

fn intervention(i: &Intervention) -> Result<RestrictedExpression, RequestError> {
    record(vec![
        ("id", s(&i.id)),
        ("min_age", RestrictedExpression::new_long(i.min_age)),
        ("max_age", RestrictedExpression::new_long(i.max_age)),
    ])
}

fn entity(
    uid: EntityUid,
    attrs: Vec<(&str, RestrictedExpression)>,
    parents: Vec<EntityUid>,
) -> Result<Entity, RequestError> {
    Entity::new(
        uid,
        attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        parents.into_iter().collect::<HashSet<_>>(),
    )
    .map_err(|e| RequestError::Schema(e.to_string()))
}

fn model_entity(m: &ModelFacts) -> Result<(EntityUid, Entity), RequestError> {
    let u = uid("Model", &m.id)?;
    let e = entity(
        u.clone(),
        vec![("kind", s(&m.kind)), ("feature_set", s(&m.feature_set))],
        vec![],
    )?;
    Ok((u, e))
}

fn feature_entity(f: &FeatureFacts) -> Result<(EntityUid, Entity), RequestError> {
    let u = uid("Feature", &f.id)?;
    let e = entity(
        u.clone(),
        vec![
            ("source", s(&f.source)),
            ("sensitivity", s(&f.sensitivity)),
            ("category", s(&f.category)),
            ("subject", s(&f.subject)),
        ],
        vec![],
    )?;
    Ok((u, e))
}

fn person_entity(p: &PersonFacts) -> Result<(EntityUid, Entity), RequestError> {
    let u = uid("Person", "subject")?;
    let e = entity(
        u.clone(),
        vec![
            ("age", RestrictedExpression::new_long(p.age)),
            ("objection", RestrictedExpression::new_bool(p.objection)),
        ],
        vec![],
    )?;
    Ok((u, e))
}

impl RulePack {
    /// Evaluates one request. Never panics and never fails open: a request that does not
    /// fit the schema, or a rule that errors, is a deny with the error listed.
    ///
    /// The engine's non-negotiables ([`crate::floor`]) apply after the pack: a pack that
    /// permits what they forbid is overruled, and the decision names the floor's rule.
    pub fn evaluate(&self, request: &Request) -> Decision {
        let decision = match self.try_evaluate(request) {
            Ok(d) => d,
            Err(e) => Decision {
                allowed: false,
                rules: Vec::new(),
                errors: vec![e.to_string()],
            },
        };
        match crate::floor::floor(request) {
            Some(rule) if decision.allowed => Decision {
                allowed: false,
                rules: vec![rule.id.to_string()],
                errors: decision.errors,
            },
            _ => decision,
        }
    }

    fn try_evaluate(&self, request: &Request) -> Result<Decision, RequestError> {
        let action = uid("Action", request.action())?;
        let mut entities = Vec::new();
        let (principal, resource, context) = match request {
            Request::UseFeature {
                model,
                feature,
                deployment: d,
            } => {
                let (p, pe) = model_entity(model)?;
                let (r, re) = feature_entity(feature)?;
                entities.extend([pe, re]);
                (p, r, vec![("deployment", deployment(d)?)])
            }
            Request::TrainOn {
                model,
                person,
                deployment: d,
            } => {
                let (p, pe) = model_entity(model)?;
                let (r, re) = person_entity(person)?;
                entities.extend([pe, re]);
                (p, r, vec![("deployment", deployment(d)?)])
            }
            Request::Score {
                model,
                person,
                deployment: d,
                intervention: i,
            } => {
                let (p, pe) = model_entity(model)?;
                let (r, re) = person_entity(person)?;
                entities.extend([pe, re]);
                (
                    p,
                    r,
                    vec![
                        ("deployment", deployment(d)?),
                        ("intervention", intervention(i)?),
                    ],
                )
            }
            Request::Suggest {
                unit,
                suggestion: g,
                deployment: d,
                intervention: i,
            } => {
                let p = uid("Unit", unit)?;
                entities.push(entity(p.clone(), vec![], vec![])?);
                let r = uid("Suggestion", "candidate")?;
                entities.push(entity(
                    r.clone(),
                    vec![
                        (
                            "score_permille",
                            RestrictedExpression::new_long(g.score_permille),
                        ),
                        ("band", s(&g.band)),
                        ("age", RestrictedExpression::new_long(g.age)),
                        (
                            "evidence_registries",
                            RestrictedExpression::new_long(g.evidence_registries),
                        ),
                        (
                            "active_case_at_unit",
                            RestrictedExpression::new_bool(g.active_case_at_unit),
                        ),
                    ],
                    vec![],
                )?);
                (
                    p,
                    r,
                    vec![
                        ("deployment", deployment(d)?),
                        ("intervention", intervention(i)?),
                    ],
                )
            }
            Request::ViewFactor {
                viewer,
                feature,
                deployment: d,
            } => {
                let unit = uid("Unit", &viewer.unit)?;
                entities.push(entity(unit.clone(), vec![], vec![])?);
                let p = uid("Principal", &format!("{}/{}", viewer.unit, viewer.role))?;
                entities.push(entity(
                    p.clone(),
                    vec![
                        ("role", s(&viewer.role)),
                        (
                            "health_authority",
                            RestrictedExpression::new_bool(viewer.health_authority),
                        ),
                    ],
                    vec![unit],
                )?);
                let (r, re) = feature_entity(feature)?;
                entities.push(re);
                (p, r, vec![("deployment", deployment(d)?)])
            }
        };
        let entities = Entities::from_entities(entities, Some(&self.schema))
            .map_err(|e| RequestError::Schema(e.to_string()))?;
        let context = Context::from_pairs(context.into_iter().map(|(k, v)| (k.to_string(), v)))
            .map_err(|e| RequestError::Schema(e.to_string()))?;
        let cedar = CedarRequest::new(principal, action, resource, context, Some(&self.schema))
            .map_err(|e| RequestError::Schema(e.to_string()))?;
        let response = Authorizer::new().is_authorized(&cedar, &self.policies, &entities);
        Ok(decision(&response, |id| {
            self.rule(id).is_some_and(|r| r.effect == "forbid")
        }))
    }
}

/// A Cedar response as a [`Decision`]: the deciding rules sorted, any rule error failing
/// closed. A deny is decided by forbids only (`is_forbid`): when a rule error turned an
/// allow into a deny, the permits that matched did not decide anything.
pub(crate) fn decision(
    response: &cedar_policy::Response,
    is_forbid: impl Fn(&str) -> bool,
) -> Decision {
    let mut rules: Vec<String> = response
        .diagnostics()
        .reason()
        .map(|id| id.to_string())
        .collect();
    rules.sort();
    let errors: Vec<String> = response
        .diagnostics()
        .errors()
        .map(|e| format!("{e} (fails closed)"))
        .collect();
    let allowed = response.decision() == CedarDecision::Allow && errors.is_empty();
    if !allowed {
        rules.retain(|id| is_forbid(id));
    }
    Decision {
        allowed,
        rules,
        errors,
    }
}

/// Memoizing evaluator for pipeline runs: a decision depends only on the request, so
/// equal requests share one evaluation.
#[derive(Debug)]
pub struct Evaluator<'a> {
    pack: &'a RulePack,
    memo: HashMap<Request, Decision>,
    /// Requests put to Cedar (cache misses) and answered from the memo.
    pub evaluated: usize,
    pub memoized: usize,
}

impl<'a> Evaluator<'a> {
    pub fn new(pack: &'a RulePack) -> Evaluator<'a> {
        Evaluator {
            pack,
            memo: HashMap::new(),
            evaluated: 0,
            memoized: 0,
        }
    }

    /// An evaluator that starts from earlier decisions of the same pack (a long-lived
    /// caller keeps them between calls with [`Evaluator::into_memo`]).
    pub fn with_memo(pack: &'a RulePack, memo: HashMap<Request, Decision>) -> Evaluator<'a> {
        Evaluator {
            memo,
            ..Evaluator::new(pack)
        }
    }

    /// The decisions made so far, to start the next evaluator of the same pack with.
    pub fn into_memo(self) -> HashMap<Request, Decision> {
        self.memo
    }

    pub fn pack(&self) -> &'a RulePack {
        self.pack
    }

    pub fn decide(&mut self, request: Request) -> &Decision {
        use std::collections::hash_map::Entry;
        match self.memo.entry(request) {
            Entry::Occupied(e) => {
                self.memoized += 1;
                e.into_mut()
            }
            Entry::Vacant(v) => {
                self.evaluated += 1;
                let d = self.pack.evaluate(v.key());
                v.insert(d)
            }
        }
    }
}
