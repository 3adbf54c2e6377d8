//! Fairness per protected group, with Fairlearn's definitions:
//! demographic parity difference/ratio = max − min / min ÷ max of group selection rates;
//! equalized odds difference = the larger of the TPR and FPR differences; equalized odds
//! ratio = the smaller of the TPR and FPR ratios. Groups smaller than the suppression
//! threshold are reported as suppressed, not as numbers, and take no part in the
//! summary metrics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupMetrics {
    pub group: String,
    pub count: usize,
    /// Too small to report: the numbers below are absent.
    pub suppressed: bool,
    pub selection_rate: Option<f64>,
    pub tpr: Option<f64>,
    pub fpr: Option<f64>,
    pub mean_predicted: Option<f64>,
    pub observed_rate: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FairnessReport {
    pub attribute: String,
    pub groups: Vec<GroupMetrics>,
    pub demographic_parity_difference: Option<f64>,
    pub demographic_parity_ratio: Option<f64>,
    pub equalized_odds_difference: Option<f64>,
    pub equalized_odds_ratio: Option<f64>,
}

fn ratio(v: &[f64]) -> Option<f64> {
    let max = v.iter().copied().fold(f64::NAN, f64::max);
    let min = v.iter().copied().fold(f64::NAN, f64::min);
    (v.len() >= 2 && max > 0.0).then(|| min / max)
}

fn diff(v: &[f64]) -> Option<f64> {
    let max = v.iter().copied().fold(f64::NAN, f64::max);
    let min = v.iter().copied().fold(f64::NAN, f64::min);
    (v.len() >= 2).then_some(max - min)
}

/// Metrics of `flags` (the decisions) against `labels` for each value of `groups`.
pub fn report(
    attribute: &str,
    groups: &[String],
    flags: &[bool],
    labels: &[bool],
    probabilities: &[f64],
    min_group: usize,
) -> FairnessReport {
    let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        by.entry(g.as_str()).or_default().push(i);
    }
    let mut out = Vec::new();
    for (g, idx) in by {
        let n = idx.len();
        let suppressed = n < min_group;
        let rate = |f: &dyn Fn(usize) -> bool, among: &dyn Fn(usize) -> bool| {
            let pool: Vec<usize> = idx.iter().copied().filter(|i| among(*i)).collect();
            (!pool.is_empty())
                .then(|| pool.iter().filter(|i| f(**i)).count() as f64 / pool.len() as f64)
        };
        let m = GroupMetrics {
            group: g.to_string(),
            count: n,
            suppressed,
            selection_rate: rate(&|i| flags[i], &|_| true),
            tpr: rate(&|i| flags[i], &|i| labels[i]),
            fpr: rate(&|i| flags[i], &|i| !labels[i]),
            mean_predicted: Some(idx.iter().map(|i| probabilities[*i]).sum::<f64>() / n as f64),
            observed_rate: rate(&|i| labels[i], &|_| true),
        };
        out.push(if suppressed {
            GroupMetrics {
                selection_rate: None,
                tpr: None,
                fpr: None,
                mean_predicted: None,
                observed_rate: None,
                ..m
            }
        } else {
            m
        });
    }
    let reported: Vec<&GroupMetrics> = out.iter().filter(|g| !g.suppressed).collect();
    let sel: Vec<f64> = reported.iter().filter_map(|g| g.selection_rate).collect();
    let tpr: Vec<f64> = reported.iter().filter_map(|g| g.tpr).collect();
    let fpr: Vec<f64> = reported.iter().filter_map(|g| g.fpr).collect();
    let eo_diff = match (diff(&tpr), diff(&fpr)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    };
    let eo_ratio = match (ratio(&tpr), ratio(&fpr)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        _ => None,
    };
    FairnessReport {
        attribute: attribute.into(),
        groups: out,
        demographic_parity_difference: diff(&sel),
        demographic_parity_ratio: ratio(&sel),
        equalized_odds_difference: eo_diff,
        equalized_odds_ratio: eo_ratio,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computed_fairlearn_values() {
        // Group a: 4 people, flags 2 (1 TP of 2 positives, 1 FP of 2 negatives).
        // Group b: 4 people, flags 1 (1 TP of 1 positive, 0 FP of 3 negatives).
        let g: Vec<String> = ["a", "a", "a", "a", "b", "b", "b", "b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let flags = [true, true, false, false, true, false, false, false];
        let labels = [true, false, true, false, true, false, false, false];
        let p = [0.5; 8];
        let r = report("x", &g, &flags, &labels, &p, 1);
        assert_eq!(r.groups[0].selection_rate, Some(0.5));
        assert_eq!(r.groups[1].selection_rate, Some(0.25));
        assert_eq!(r.demographic_parity_difference, Some(0.25));
        assert_eq!(r.demographic_parity_ratio, Some(0.5));
        // TPR a=0.5, b=1.0 → diff 0.5, ratio 0.5; FPR a=0.5, b=0 → diff 0.5, ratio 0.
        assert_eq!(r.equalized_odds_difference, Some(0.5));
        assert_eq!(r.equalized_odds_ratio, Some(0.0));
        // With a minimum group size of 5 both groups are suppressed: no numbers at all.
        let s = report("x", &g, &flags, &labels, &p, 5);
        assert!(s
            .groups
            .iter()
            .all(|g| g.suppressed && g.selection_rate.is_none()));
        assert_eq!(s.demographic_parity_ratio, None);
    }
}
