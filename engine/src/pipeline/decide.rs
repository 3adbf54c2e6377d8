//! The pure per-person decision: eligibility → score → band → route → output rules →
//! shown factors → interventions. No store, no clock, no I/O: the batch shell in
//! `score` loads the facts and writes the results, and the coming "get one suggestion",
//! explanation and subject-access calls reuse the same function for one person.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tidig_governance::eval::{
    Deployment, FeatureFacts, ModelFacts, PersonFacts, Request, SuggestionFacts, ViewerFacts,
};
use tidig_governance::{Decision, Evaluator, Stage};
use tidig_models::features::FeatureDef;
use tidig_models::logistic::Logistic;

use crate::domain::Band;
use crate::settings::{ScoringSettings, UnitSettings};

/// One factor of a suggestion's explanation, as the unit's viewer role may see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    /// The feature id; absent when redacted.
    pub feature: Option<String>,
    /// Plain language: "mother: substance-use diagnosis in the past 2 years".
    pub text: String,
    pub source: String,
    pub value: Option<f64>,
    /// Contribution to the log-odds; absent when redacted.
    pub contribution: Option<f64>,
    pub redacted: bool,
    /// The rule that redacted it.
    pub rule: Option<String>,
}

/// One factor of a suggestion's explanation as stored: everything, with the facts the
/// output rules decide its visibility on. What a viewer sees of it is decided when it is
/// read ([`view_factors`]), for that viewer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredFactor {
    pub feature: String,
    pub text: String,
    pub value: Option<f64>,
    /// Contribution to the log-odds (SHAP value).
    pub contribution: f64,
    pub facts: FeatureFacts,
}

/// One rule decision on a suggestion's way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceEntry {
    pub stage: Stage,
    pub action: String,
    pub subject: String,
    pub allowed: bool,
    pub rules: Vec<String>,
    pub errors: Vec<String>,
}

/// A suggested intervention from the catalogue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Suggested {
    pub id: String,
    pub title: String,
    /// The factor that called for it (absent for the fallback).
    pub because_of: Option<String>,
}

/// What the decision needs to know about the model and the deployment; the same for
/// every person of a run.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub model: &'a Logistic,
    pub model_facts: &'a ModelFacts,
    /// The model's inputs, in input order, with what the rules see of each.
    pub defs: &'a [&'a FeatureDef],
    pub facts: &'a [FeatureFacts],
    pub deployment: &'a Deployment,
    pub scoring: &'a ScoringSettings,
    /// The data-stage entry every trace starts with.
    pub data_trace: &'a TraceEntry,
}

/// What the decision needs to know about one person, as of the date.
#[derive(Clone, Copy, Debug)]
pub struct Person<'a> {
    pub id: i64,
    /// Feature values in the model's input order.
    pub values: &'a [Option<f64>],
    /// Whole years; -1 when unknown.
    pub age: i64,
    pub objection: bool,
    /// Municipality and postcode of the residence on the date.
    pub residence: Option<(&'a str, Option<&'a str>)>,
    /// The person or their household is in active child-welfare care.
    pub active_case: bool,
}

/// A suggestion before capacity and storage.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub person: i64,
    /// Index of the receiving unit in the scoring settings.
    pub unit: usize,
    pub score: f64,
    pub band: Band,
    /// The whole explanation, stored; each reader sees it through [`view_factors`].
    pub explanation: Vec<StoredFactor>,
    /// The explanation as the unit's configured viewer sees it.
    pub factors: Vec<Factor>,
    pub interventions: Vec<Suggested>,
    pub trace: Vec<TraceEntry>,
}

/// Where one person's way ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The eligibility rules refused scoring.
    Excluded(Decision),
    /// Scored below the `elevated` band.
    BelowBand,
    /// Elevated, but no unit serves where they live.
    Unrouted,
    /// The output rules refused a suggestion.
    Suppressed(Decision),
    Suggest(Candidate),
}

/// Time spent per phase, summed over persons (for the run's report).
#[derive(Clone, Copy, Debug, Default)]
pub struct Phases {
    pub score: Duration,
    pub rules: Duration,
}

/// Decides one person. `top` is a reusable buffer for the explanation.
pub fn decide(
    ev: &mut Evaluator<'_>,
    ctx: &Context<'_>,
    person: &Person<'_>,
    top: &mut Vec<(u16, f64)>,
    phases: &mut Phases,
) -> Outcome {
    let scoring = ctx.scoring;
    // Stage eligibility.
    let clock = Instant::now();
    let eligibility = ev
        .decide(Request::Score {
            model: ctx.model_facts.clone(),
            person: PersonFacts {
                age: person.age,
                objection: person.objection,
            },
            deployment: ctx.deployment.clone(),
            intervention: scoring.intervention.clone(),
        })
        .clone();
    phases.rules += clock.elapsed();
    if !eligibility.allowed {
        return Outcome::Excluded(eligibility);
    }
    let clock = Instant::now();
    let p = ctx
        .model
        .score_top(person.values, scoring.top_factors.max(1), top);
    phases.score += clock.elapsed();
    if p < scoring.elevated {
        return Outcome::BelowBand;
    }
    let units = &scoring.units;
    let Some((unit_index, unit)) = person.residence.and_then(|(m, pc)| {
        route(units, m, pc).and_then(|u| units.iter().position(|x| x.id == u.id).map(|i| (i, u)))
    }) else {
        return Outcome::Unrouted;
    };
    let evidence: HashSet<&str> = top
        .iter()
        .filter(|(_, c)| *c >= scoring.evidence_min_contribution)
        .map(|(j, _)| ctx.facts[*j as usize].source.as_str())
        .collect();
    let band = if p >= scoring.high {
        Band::High
    } else {
        Band::Elevated
    };
    // Stage output: may the score become a suggestion?
    let clock = Instant::now();
    let suggest = ev
        .decide(Request::Suggest {
            unit: unit.id.clone(),
            suggestion: SuggestionFacts {
                score_permille: (p * 1000.0).round() as i64,
                band: band.as_str().into(),
                age: person.age,
                evidence_registries: evidence.len() as i64,
                active_case_at_unit: person.active_case,
            },
            deployment: ctx.deployment.clone(),
            intervention: scoring.intervention.clone(),
        })
        .clone();
    phases.rules += clock.elapsed();
    if !suggest.allowed {
        return Outcome::Suppressed(suggest);
    }
    // Stage output: which factors the unit's viewer may see.
    let viewer = ViewerFacts {
        unit: unit.id.clone(),
        role: unit.viewer_role.clone(),
        health_authority: unit.viewer_health_authority,
    };
    let mut trace_entries = vec![
        ctx.data_trace.clone(),
        trace(Stage::Eligibility, "score", "person", &eligibility),
        trace(Stage::Output, "suggest", "suggestion", &suggest),
    ];
    let explanation: Vec<StoredFactor> = top
        .iter()
        .map(|&(j, contribution)| {
            let j = j as usize;
            StoredFactor {
                feature: ctx.defs[j].id.clone(),
                text: ctx.defs[j].text.clone(),
                value: person.values[j],
                contribution,
                facts: ctx.facts[j].clone(),
            }
        })
        .collect();
    let clock = Instant::now();
    let factors = view_factors(
        ev,
        ctx.deployment,
        &viewer,
        &explanation,
        &mut trace_entries,
    );
    phases.rules += clock.elapsed();
    let interventions = interventions(&scoring.catalogue, &factors);
    Outcome::Suggest(Candidate {
        person: person.id,
        unit: unit_index,
        score: p,
        band,
        explanation,
        factors,
        interventions,
        trace: trace_entries,
    })
}

/// The explanation as `viewer` may see it: the output rules decide each factor (one
/// trace entry each), and a refused factor is replaced by its registry alone, naming the
/// rule. Scoring calls it for the unit's configured viewer; every read calls it for the
/// reader.
pub fn view_factors(
    ev: &mut Evaluator<'_>,
    deployment: &Deployment,
    viewer: &ViewerFacts,
    explanation: &[StoredFactor],
    trace_entries: &mut Vec<TraceEntry>,
) -> Vec<Factor> {
    let mut factors = Vec::with_capacity(explanation.len());
    for f in explanation {
        let view = ev.decide(Request::ViewFactor {
            viewer: viewer.clone(),
            feature: f.facts.clone(),
            deployment: deployment.clone(),
        });
        trace_entries.push(trace(
            Stage::Output,
            "view_factor",
            &format!("factor {}", f.feature),
            view,
        ));
        if view.allowed {
            factors.push(Factor {
                feature: Some(f.feature.clone()),
                text: f.text.clone(),
                source: f.facts.source.clone(),
                value: f.value,
                contribution: Some(f.contribution),
                redacted: false,
                rule: None,
            });
        } else {
            factors.push(Factor {
                feature: None,
                text: format!("a {} factor (not shown to this role)", f.facts.source),
                source: f.facts.source.clone(),
                value: None,
                contribution: None,
                redacted: true,
                rule: view
                    .rules
                    .first()
                    .cloned()
                    .or_else(|| Some("rule-error".into())),
            });
        }
    }
    factors
}

/// What `viewer` sees of a stored suggestion: its factors, the interventions those call
/// for, and the stored trace with the view decisions made now for this viewer.
pub fn view_for(
    ev: &mut Evaluator<'_>,
    deployment: &Deployment,
    catalogue: &[crate::settings::CatalogueEntry],
    viewer: &ViewerFacts,
    explanation: &[StoredFactor],
    stored_trace: &[TraceEntry],
) -> (Vec<Factor>, Vec<Suggested>, Vec<TraceEntry>) {
    let mut trace_entries: Vec<TraceEntry> = stored_trace
        .iter()
        .filter(|t| t.action != "view_factor")
        .cloned()
        .collect();
    let factors = view_factors(ev, deployment, viewer, explanation, &mut trace_entries);
    let interventions = interventions(catalogue, &factors);
    (factors, interventions, trace_entries)
}

/// Interventions from the dominant factors the viewer may see (a service named after a
/// redacted factor would disclose it), or the catalogue's fallback.
fn interventions(
    catalogue: &[crate::settings::CatalogueEntry],
    factors: &[Factor],
) -> Vec<Suggested> {
    let mut out: Vec<Suggested> = Vec::new();
    for f in factors
        .iter()
        .filter(|f| !f.redacted && f.contribution.is_some_and(|c| c > 0.0))
    {
        let Some(id) = f.feature.as_deref() else {
            continue;
        };
        for c in catalogue {
            if c.factors.iter().any(|pat| glob(pat, id)) && !out.iter().any(|s| s.id == c.id) {
                out.push(Suggested {
                    id: c.id.clone(),
                    title: c.title.clone(),
                    because_of: Some(id.to_string()),
                });
            }
        }
    }
    if out.is_empty() {
        if let Some(c) = catalogue.iter().find(|c| c.factors.is_empty()) {
            out.push(Suggested {
                id: c.id.clone(),
                title: c.title.clone(),
                because_of: None,
            });
        }
    }
    out
}

/// `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(pos) = rest.find(part) else {
                return false;
            };
            rest = &rest[pos + part.len()..];
        }
    }
    true
}

/// The first unit whose municipalities and postcode prefixes both match.
pub fn route<'u>(
    units: &'u [UnitSettings],
    municipality: &str,
    postcode: Option<&str>,
) -> Option<&'u UnitSettings> {
    units.iter().find(|u| {
        (u.municipalities.is_empty() || u.municipalities.iter().any(|m| m == municipality))
            && (u.postcode_prefixes.is_empty()
                || postcode.is_some_and(|p| u.postcode_prefixes.iter().any(|x| p.starts_with(x))))
    })
}

fn trace(stage: Stage, action: &str, subject: &str, d: &Decision) -> TraceEntry {
    TraceEntry {
        stage,
        action: action.into(),
        subject: subject.into(),
        allowed: d.allowed,
        rules: d.rules.clone(),
        errors: d.errors.clone(),
    }
}

/// Counts a deny under each deciding rule (or under `rule-error` / `no-permit`).
pub fn count_deny(map: &mut BTreeMap<String, usize>, d: &Decision) {
    if !d.errors.is_empty() {
        *map.entry("rule-error".into()).or_default() += 1;
    } else if d.rules.is_empty() {
        *map.entry("no-permit".into()).or_default() += 1;
    }
    for r in &d.rules {
        *map.entry(r.clone()).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_anywhere() {
        assert!(glob("*substance*", "mother_substance_use_dx_24m"));
        assert!(glob(
            "immunizations_not_done*",
            "immunizations_not_done_36m"
        ));
        assert!(!glob("immunizations_not_done*", "x_immunizations_not_done"));
        assert!(glob("exact", "exact") && !glob("exact", "exactly"));
        assert!(glob("*_24m", "mother_substance_use_dx_24m"));
        assert!(!glob("*_12m", "mother_substance_use_dx_24m"));
    }

    #[test]
    fn routing_takes_the_first_matching_unit() {
        let s = ScoringSettings::default();
        assert_eq!(
            route(&s.units, "091", Some("00250")).map(|u| u.id.as_str()),
            Some("family-services-central")
        );
        assert_eq!(
            route(&s.units, "091", Some("00920")).map(|u| u.id.as_str()),
            Some("family-services-outer")
        );
        assert_eq!(
            route(&s.units, "091", None).map(|u| u.id.as_str()),
            Some("family-services-outer")
        );
        assert!(route(&s.units, "049", Some("02100")).is_none());
    }

    #[test]
    fn denies_are_counted_per_rule_with_errors_and_missing_permits_named() {
        let mut m = BTreeMap::new();
        let deny = |rules: &[&str], errors: &[&str]| Decision {
            allowed: false,
            rules: rules.iter().map(|s| s.to_string()).collect(),
            errors: errors.iter().map(|s| s.to_string()).collect(),
        };
        count_deny(&mut m, &deny(&["a", "b"], &[]));
        count_deny(&mut m, &deny(&["a"], &[]));
        count_deny(&mut m, &deny(&[], &[]));
        count_deny(&mut m, &deny(&[], &["boom"]));
        let got: Vec<(&str, usize)> = m.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            got,
            [("a", 2), ("b", 1), ("no-permit", 1), ("rule-error", 1)]
        );
    }
}
