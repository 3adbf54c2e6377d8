//! The non-negotiables: denials the engine applies whatever a rule pack says.
//!
//! The default pack states each of these as a Cedar rule, and a deployment may replace
//! the pack. A replacement may add restrictions; it can never remove these. So every
//! decision passes through [`floor`] after the pack: if the pack permits what the floor
//! forbids, the request is denied and the floor's rule id (`engine.…`) is named instead.
//! When the pack already denies, its own rules are the reasons and the floor adds
//! nothing. This is defence in depth, not a second policy language: the floor is short,
//! fixed and tested against a permit-everything pack.

use crate::eval::{Deployment, Request};

/// One non-negotiable, with the id a decision names when it applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloorRule {
    pub id: &'static str,
    pub title: &'static str,
}

pub const STOP_SWITCH: FloorRule = FloorRule {
    id: "engine.stop-switch",
    title: "The stop switch halts all scoring and all new suggestions",
};
pub const LEGAL_FOOTING: FloorRule = FloorRule {
    id: "engine.legal-footing",
    title: "Nothing is scored or suggested unless the deployment names a legal basis, a \
            DPIA and a FRIA",
};
pub const ART9_BASIS: FloorRule = FloorRule {
    id: "engine.health-needs-art9-basis",
    title: "Health data is a model input only under a configured Art 9(2) basis",
};
pub const NEVER_INPUTS: FloorRule = FloorRule {
    id: "engine.never-inputs",
    title: "Prohibited and protected attributes, and the Art 9 categories other than \
            health and their proxies, are never model inputs",
};
pub const OBJECTION: FloorRule = FloorRule {
    id: "engine.objection",
    title: "A person who objected is never scored or trained on",
};
pub const HEALTH_REDACTION: FloorRule = FloorRule {
    id: "engine.health-redaction",
    title: "Health factors are hidden from viewers without health authority",
};

/// Every non-negotiable, for documentation and listings.
pub const ALL: &[FloorRule] = &[
    STOP_SWITCH,
    LEGAL_FOOTING,
    ART9_BASIS,
    NEVER_INPUTS,
    OBJECTION,
    HEALTH_REDACTION,
];

/// Feature categories that are never inputs whatever their declared sensitivity: the
/// Art 9(1) categories other than health, and the proxies of ethnic origin.
pub const PROHIBITED_CATEGORIES: &[&str] = &[
    "ethnic_origin",
    "race",
    "religion",
    "belief",
    "political_opinion",
    "trade_union",
    "genetic",
    "biometric",
    "sex_life",
    "sexual_orientation",
    "mother_tongue",
    "citizenship",
    "country_of_birth",
];

fn footing_missing(d: &Deployment) -> bool {
    [&d.legal_basis, &d.dpia_ref, &d.fria_ref]
        .iter()
        .any(|s| s.trim().is_empty())
}

/// The non-negotiable that forbids `request`, if any (the first that applies).
pub fn floor(request: &Request) -> Option<FloorRule> {
    match request {
        Request::UseFeature {
            feature,
            deployment,
            ..
        } => {
            if matches!(feature.sensitivity.as_str(), "prohibited" | "protected")
                || PROHIBITED_CATEGORIES.contains(&feature.category.as_str())
            {
                Some(NEVER_INPUTS)
            } else if feature.sensitivity == "health" && deployment.art9_basis.trim().is_empty() {
                Some(ART9_BASIS)
            } else {
                None
            }
        }
        Request::TrainOn { person, .. } => person.objection.then_some(OBJECTION),
        Request::Score {
            person, deployment, ..
        } => {
            if deployment.stopped {
                Some(STOP_SWITCH)
            } else if footing_missing(deployment) {
                Some(LEGAL_FOOTING)
            } else if person.objection {
                Some(OBJECTION)
            } else {
                None
            }
        }
        Request::Suggest { deployment, .. } => {
            if deployment.stopped {
                Some(STOP_SWITCH)
            } else if footing_missing(deployment) {
                Some(LEGAL_FOOTING)
            } else {
                None
            }
        }
        Request::ViewFactor {
            viewer, feature, ..
        } => (feature.sensitivity == "health" && !viewer.health_authority)
            .then_some(HEALTH_REDACTION),
    }
}
