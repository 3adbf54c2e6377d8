//! The release gate: the thresholds a model must meet before anyone may approve it.
//!
//! It lives beside the model and its evaluation because it is a judgement on their
//! figures alone: holdout AUC and the per-group fairness summaries.

use serde::{Deserialize, Serialize};

use crate::fairness::FairnessReport;

/// Release-gate thresholds (a model that fails them cannot be approved).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gate {
    pub min_demographic_parity_ratio: f64,
    pub max_equalized_odds_difference: f64,
    pub min_auc: f64,
    /// Groups smaller than this are suppressed in fairness reports.
    pub min_group: usize,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            min_demographic_parity_ratio: 0.8,
            max_equalized_odds_difference: 0.2,
            min_auc: 0.65,
            min_group: 20,
        }
    }
}

impl Gate {
    /// Every threshold the figures miss, in plain language; empty when the gate passes.
    pub fn failures(&self, auc: Option<f64>, fairness: &[FairnessReport]) -> Vec<String> {
        let mut failures = Vec::new();
        if auc.is_none_or(|a| a < self.min_auc) {
            failures.push(format!("holdout AUC {auc:?} is below {}", self.min_auc));
        }
        for f in fairness {
            if let Some(r) = f.demographic_parity_ratio {
                if r < self.min_demographic_parity_ratio {
                    failures.push(format!(
                        "{}: demographic parity ratio {r:.3} < {}",
                        f.attribute, self.min_demographic_parity_ratio
                    ));
                }
            }
            if let Some(d) = f.equalized_odds_difference {
                if d > self.max_equalized_odds_difference {
                    failures.push(format!(
                        "{}: equalized odds difference {d:.3} > {}",
                        f.attribute, self.max_equalized_odds_difference
                    ));
                }
            }
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(attribute: &str, dp: Option<f64>, eo: Option<f64>) -> FairnessReport {
        FairnessReport {
            attribute: attribute.into(),
            groups: Vec::new(),
            demographic_parity_ratio: dp,
            demographic_parity_difference: None,
            equalized_odds_ratio: None,
            equalized_odds_difference: eo,
        }
    }

    #[test]
    fn the_gate_names_every_threshold_missed() {
        let g = Gate::default();
        assert!(g
            .failures(Some(0.8), &[summary("sex", Some(0.9), Some(0.1))])
            .is_empty());
        let f = g.failures(
            Some(0.6),
            &[
                summary("sex", Some(0.7), Some(0.1)),
                summary("municipality", None, Some(0.3)),
            ],
        );
        assert_eq!(
            f,
            [
                "holdout AUC Some(0.6) is below 0.65",
                "sex: demographic parity ratio 0.700 < 0.8",
                "municipality: equalized odds difference 0.300 > 0.2",
            ]
        );
        assert_eq!(g.failures(None, &[]).len(), 1, "an unmeasurable AUC fails");
    }
}
