//! The release gate: the thresholds a model must meet before anyone may approve it.
//!
//! It lives beside the model and its evaluation because it is a judgement on their
//! figures alone: holdout AUC and the per-group fairness summaries.

use serde::{Deserialize, Serialize};

use crate::fairness::{FairnessReport, Floors};

/// Release-gate thresholds (a model that fails them cannot be approved).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gate {
    pub min_demographic_parity_ratio: f64,
    pub max_equalized_odds_difference: f64,
    pub min_auc: f64,
    /// Groups smaller than this are suppressed in fairness reports.
    pub min_group: usize,
    /// A rate dividing by fewer persons (a group's persons, positives or negatives) is
    /// suppressed and takes no part in the summaries.
    pub min_rate_denominator: usize,
    /// A rate counting fewer persons is suppressed too (0: none is).
    pub min_rate_numerator: usize,
    /// The joint confidence with which a disparity must exceed its threshold for the
    /// gate to fail.
    pub confidence: f64,
    /// The groupings fairness is measured over: protected attributes of the feature set,
    /// or two joined by ` x ` (`sex x mother_tongue`). A one-municipality deployment
    /// measures districts or postcode areas, not municipalities.
    pub groupings: Vec<String>,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            min_demographic_parity_ratio: 0.8,
            max_equalized_odds_difference: 0.2,
            min_auc: 0.65,
            min_group: 20,
            min_rate_denominator: 10,
            min_rate_numerator: 0,
            confidence: 0.95,
            groupings: [
                "sex",
                "mother_tongue",
                "citizenship",
                "municipality",
                "sex x mother_tongue",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl Gate {
    /// The suppression floors and confidence fairness reports use.
    pub fn floors(&self) -> Floors {
        Floors {
            min_group: self.min_group,
            min_denominator: self.min_rate_denominator,
            min_numerator: self.min_rate_numerator,
            confidence: self.confidence,
        }
    }

    /// The rule in words, for the model card.
    pub fn rule(&self) -> String {
        format!(
            "holdout AUC at least {auc}; for every grouping, the demographic parity ratio must \
             not be below {dp} and the equalized odds difference not above {eo} *with {c:.0}% \
             confidence*: each group's rates get Wilson intervals at the Bonferroni-adjusted \
             level, and the gate fails only when even the most favourable reading of the \
             intervals (ratio: smallest upper ÷ largest lower end; difference: largest lower \
             − smallest upper end) is beyond the threshold. Groups under {g} persons and \
             rates dividing by fewer than {d} persons{n} are suppressed and not judged",
            auc = self.min_auc,
            dp = self.min_demographic_parity_ratio,
            eo = self.max_equalized_odds_difference,
            c = 100.0 * self.confidence,
            g = self.min_group,
            d = self.min_rate_denominator,
            n = if self.min_rate_numerator > 0 {
                format!(" or counting fewer than {}", self.min_rate_numerator)
            } else {
                String::new()
            },
        )
    }

    /// Every threshold the figures miss, in plain language; empty when the gate passes.
    /// A fairness summary is judged by its confidence bound when it has one (see
    /// [`crate::fairness`]), by its point estimate in reports made before bounds.
    pub fn failures(&self, auc: Option<f64>, fairness: &[FairnessReport]) -> Vec<String> {
        let mut failures = Vec::new();
        if auc.is_none_or(|a| a < self.min_auc) {
            failures.push(format!("holdout AUC {auc:?} is below {}", self.min_auc));
        }
        let sure = |f: &FairnessReport| {
            f.confidence.map_or(String::new(), |c| {
                format!(" with {:.0}% confidence", 100.0 * c)
            })
        };
        for f in fairness {
            let dp = match f.confidence {
                Some(_) => f.demographic_parity_ratio_bound,
                None => f.demographic_parity_ratio,
            };
            if let Some(r) = dp.filter(|r| *r < self.min_demographic_parity_ratio) {
                failures.push(format!(
                    "{}: demographic parity ratio at most {r:.3}{} < {} (point estimate {})",
                    f.attribute,
                    sure(f),
                    self.min_demographic_parity_ratio,
                    f.demographic_parity_ratio
                        .map_or("-".into(), |v| format!("{v:.3}"))
                ));
            }
            let eo = match f.confidence {
                Some(_) => f.equalized_odds_difference_bound,
                None => f.equalized_odds_difference,
            };
            if let Some(d) = eo.filter(|d| *d > self.max_equalized_odds_difference) {
                failures.push(format!(
                    "{}: equalized odds difference at least {d:.3}{} > {} (point estimate {})",
                    f.attribute,
                    sure(f),
                    self.max_equalized_odds_difference,
                    f.equalized_odds_difference
                        .map_or("-".into(), |v| format!("{v:.3}"))
                ));
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
            groups_suppressed: 0,
            confidence: None,
            demographic_parity_ratio_bound: None,
            equalized_odds_difference_bound: None,
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
                "sex: demographic parity ratio at most 0.700 < 0.8 (point estimate 0.700)",
                "municipality: equalized odds difference at least 0.300 > 0.2 (point estimate 0.300)",
            ]
        );
        assert_eq!(g.failures(None, &[]).len(), 1, "an unmeasurable AUC fails");
    }

    #[test]
    fn the_gate_judges_the_bounds_not_the_noise() {
        let g = Gate::default();
        // The point estimate (1.0: one child, flagged) is beyond 0.2, the bound is not.
        let noisy = FairnessReport {
            confidence: Some(0.95),
            equalized_odds_difference_bound: Some(0.05),
            demographic_parity_ratio_bound: Some(1.0),
            ..summary("municipality", Some(0.4), Some(1.0))
        };
        assert!(g.failures(Some(0.8), &[noisy]).is_empty());
        let real = FairnessReport {
            confidence: Some(0.95),
            equalized_odds_difference_bound: Some(0.31),
            demographic_parity_ratio_bound: Some(0.7),
            ..summary("sex", Some(0.6), Some(0.4))
        };
        assert_eq!(
            g.failures(Some(0.8), &[real]),
            [
                "sex: demographic parity ratio at most 0.700 with 95% confidence < 0.8 (point estimate 0.600)",
                "sex: equalized odds difference at least 0.310 with 95% confidence > 0.2 (point estimate 0.400)",
            ]
        );
        assert!(g.rule().contains("95% confidence"), "{}", g.rule());
    }
}
