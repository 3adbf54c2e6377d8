//! Fairness per protected group, with Fairlearn's definitions:
//! demographic parity difference/ratio = max − min / min ÷ max of group selection rates;
//! equalized odds difference = the larger of the TPR and FPR differences; equalized odds
//! ratio = the smaller of the TPR and FPR ratios.
//!
//! Every rate carries its support (the persons it divides by) and a Wilson score
//! interval. A group smaller than the minimum size is suppressed whole; a rate whose
//! denominator or numerator is below its floor is suppressed alone. Suppressed rates
//! take no part in the summaries.
//!
//! Where the summary differs from Fairlearn's `MetricFrame.difference()` / `.ratio()`:
//! a group without positives (or negatives) has no TPR (FPR) here and is left out, while
//! Fairlearn counts it as 0 — a rate with nothing to divide by is unknown, not zero — and
//! suppressed groups and rates are left out too.
//!
//! The gate does not judge the point estimates, which small groups make noisy (one child
//! with the outcome, flagged, is a TPR of 1.0). It judges the *bounds*: with every rate's
//! interval at the Bonferroni-adjusted level (confidence `c` shared by the `k` rates of a
//! summary, so each interval has level `1 − (1 − c)/k`), the true largest rate is at
//! least the largest lower end and the true smallest at most the smallest upper end, all
//! at once with probability at least `c`. So the true difference is at least
//! `max lower − min upper` and the true ratio at most `min upper ÷ max lower`; the gate
//! fails only when that bound is beyond its threshold.

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
    /// The supports: persons with and without the outcome, and flagged (absent when the
    /// group is suppressed, and in models trained before tidig reported them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positives: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negatives: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flagged: Option<usize>,
    /// Wilson 95% intervals of the rates shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection_rate_ci: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpr_ci: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fpr_ci: Option<[f64; 2]>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FairnessReport {
    pub attribute: String,
    pub groups: Vec<GroupMetrics>,
    pub demographic_parity_difference: Option<f64>,
    pub demographic_parity_ratio: Option<f64>,
    pub equalized_odds_difference: Option<f64>,
    pub equalized_odds_ratio: Option<f64>,
    /// Groups below the minimum size.
    #[serde(default)]
    pub groups_suppressed: usize,
    /// The joint confidence of the bounds below (absent in older models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// At most this demographic parity ratio, with `confidence` (1 when the data cannot
    /// tell the groups apart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demographic_parity_ratio_bound: Option<f64>,
    /// At least this equalized odds difference, with `confidence` (0 when the data
    /// cannot tell the groups apart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equalized_odds_difference_bound: Option<f64>,
}

/// When a group or a rate is reported, and how sure the bounds are.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Floors {
    /// Groups with fewer persons are suppressed whole.
    pub min_group: usize,
    /// A rate dividing by fewer persons is suppressed.
    pub min_denominator: usize,
    /// A rate counting fewer persons (flagged, or flagged among positives / negatives) is
    /// suppressed; 0 shows every count.
    pub min_numerator: usize,
    /// The joint confidence of the summary bounds.
    pub confidence: f64,
}

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The standard normal quantile (Acklam's rational approximation: relative error below
/// 1.2e-9 on (0, 1), far finer than the intervals need).
pub fn normal_quantile(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return if p <= 0.0 {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.024_25 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.024_25 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// The Wilson score interval of `k` successes in `n` at `z`.
pub fn wilson(k: usize, n: usize, z: f64) -> Option<[f64; 2]> {
    if n == 0 {
        return None;
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    Some([(centre - half).max(0.0), (centre + half).min(1.0)])
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

/// Counts behind one group's rates.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    n: usize,
    positives: usize,
    flagged: usize,
    true_flags: usize,
    score_sum: f64,
}

/// z for one of `k` intervals sharing the joint `confidence` (Bonferroni).
fn joint_z(confidence: f64, k: usize) -> f64 {
    normal_quantile(1.0 - (1.0 - confidence) / (2.0 * k.max(1) as f64))
}

/// The bounds of the largest true gap (`max lower − min upper`, at least 0) and the
/// smallest true ratio (`min upper ÷ max lower`, at most 1) among `rates` ((k, n) each),
/// their intervals sharing a joint confidence with `k_total` intervals.
fn bounds(rates: &[(usize, usize)], confidence: f64, k_total: usize) -> Option<(f64, f64)> {
    if rates.len() < 2 {
        return None;
    }
    let z = joint_z(confidence, k_total);
    let ci: Vec<[f64; 2]> = rates.iter().filter_map(|&(k, n)| wilson(k, n, z)).collect();
    let max_lower = ci.iter().map(|c| c[0]).fold(0.0, f64::max);
    let min_upper = ci.iter().map(|c| c[1]).fold(1.0, f64::min);
    let gap = (max_lower - min_upper).max(0.0);
    let ratio = if max_lower > 0.0 {
        (min_upper / max_lower).min(1.0)
    } else {
        1.0
    };
    Some((gap, ratio))
}

/// Metrics of `flags` (the decisions) against `labels` for each value of `groups`.
pub fn report(
    attribute: &str,
    groups: &[String],
    flags: &[bool],
    labels: &[bool],
    probabilities: &[f64],
    floors: &Floors,
) -> FairnessReport {
    let mut by: BTreeMap<&str, Counts> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        let c = by.entry(g.as_str()).or_default();
        c.n += 1;
        c.positives += labels[i] as usize;
        c.flagged += flags[i] as usize;
        c.true_flags += (flags[i] && labels[i]) as usize;
        c.score_sum += probabilities[i];
    }
    // A rate, its interval and its counts, unless a floor suppresses it.
    let shown = |k: usize, n: usize| -> Option<(usize, usize)> {
        (n > 0 && n >= floors.min_denominator && k >= floors.min_numerator).then_some((k, n))
    };
    let mut out = Vec::new();
    let (mut sel, mut tpr, mut fpr) = (Vec::new(), Vec::new(), Vec::new());
    let mut suppressed_groups = 0;
    for (g, c) in by {
        let negatives = c.n - c.positives;
        if c.n < floors.min_group {
            suppressed_groups += 1;
            out.push(GroupMetrics {
                group: g.to_string(),
                count: c.n,
                suppressed: true,
                selection_rate: None,
                tpr: None,
                fpr: None,
                mean_predicted: None,
                observed_rate: None,
                positives: None,
                negatives: None,
                flagged: None,
                selection_rate_ci: None,
                tpr_ci: None,
                fpr_ci: None,
            });
            continue;
        }
        let s = shown(c.flagged, c.n);
        let t = shown(c.true_flags, c.positives);
        let f = shown(c.flagged - c.true_flags, negatives);
        sel.extend(s);
        tpr.extend(t);
        fpr.extend(f);
        let rate = |r: Option<(usize, usize)>| r.map(|(k, n)| k as f64 / n as f64);
        let ci = |r: Option<(usize, usize)>| r.and_then(|(k, n)| wilson(k, n, Z95));
        out.push(GroupMetrics {
            group: g.to_string(),
            count: c.n,
            suppressed: false,
            selection_rate: rate(s),
            tpr: rate(t),
            fpr: rate(f),
            mean_predicted: Some(c.score_sum / c.n as f64),
            observed_rate: Some(c.positives as f64 / c.n as f64),
            positives: Some(c.positives),
            negatives: Some(negatives),
            flagged: Some(c.flagged),
            selection_rate_ci: ci(s),
            tpr_ci: ci(t),
            fpr_ci: ci(f),
        });
    }
    let values = |v: &[(usize, usize)]| -> Vec<f64> {
        v.iter().map(|&(k, n)| k as f64 / n as f64).collect()
    };
    let (sv, tv, fv) = (values(&sel), values(&tpr), values(&fpr));
    let eo_diff = match (diff(&tv), diff(&fv)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let eo_ratio = match (ratio(&tv), ratio(&fv)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    // The TPR and FPR intervals share one joint confidence; so do the selection rates.
    let eo_k = tpr.len() + fpr.len();
    let eo_bound = match (
        bounds(&tpr, floors.confidence, eo_k),
        bounds(&fpr, floors.confidence, eo_k),
    ) {
        (Some(a), Some(b)) => Some(a.0.max(b.0)),
        (a, b) => a.or(b).map(|x| x.0),
    };
    FairnessReport {
        attribute: attribute.into(),
        groups: out,
        demographic_parity_difference: diff(&sv),
        demographic_parity_ratio: ratio(&sv),
        equalized_odds_difference: eo_diff,
        equalized_odds_ratio: eo_ratio,
        groups_suppressed: suppressed_groups,
        confidence: Some(floors.confidence),
        demographic_parity_ratio_bound: bounds(&sel, floors.confidence, sel.len()).map(|b| b.1),
        equalized_odds_difference_bound: eo_bound,
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
        let r = report("x", &g, &flags, &labels, &p, &open(1));
        assert_eq!(r.groups[0].selection_rate, Some(0.5));
        assert_eq!(r.groups[1].selection_rate, Some(0.25));
        assert_eq!(r.demographic_parity_difference, Some(0.25));
        assert_eq!(r.demographic_parity_ratio, Some(0.5));
        // TPR a=0.5, b=1.0 → diff 0.5, ratio 0.5; FPR a=0.5, b=0 → diff 0.5, ratio 0.
        assert_eq!(r.equalized_odds_difference, Some(0.5));
        assert_eq!(r.equalized_odds_ratio, Some(0.0));
        // With a minimum group size of 5 both groups are suppressed: no numbers at all.
        let s = report("x", &g, &flags, &labels, &p, &open(5));
        assert!(s
            .groups
            .iter()
            .all(|g| g.suppressed && g.selection_rate.is_none()));
        assert_eq!(s.demographic_parity_ratio, None);
        assert_eq!(s.groups_suppressed, 2);
    }

    fn open(min_group: usize) -> Floors {
        Floors {
            min_group,
            min_denominator: 1,
            min_numerator: 0,
            confidence: 0.95,
        }
    }

    #[test]
    fn the_normal_quantile_and_wilson_intervals_match_published_values() {
        assert!((normal_quantile(0.975) - Z95).abs() < 1e-8);
        // Bonferroni for two rates at 95%: the 1 − 0.0125 quantile.
        assert!((normal_quantile(0.9875) - 2.241_402_727_604_947).abs() < 1e-8);
        assert!((normal_quantile(0.001) + 3.090_232_306_167_813).abs() < 1e-8);
        // 3 of 10 at 95% (by hand): centre (0.3 + z²/20)/(1 + z²/10) = 0.3555066,
        // half-width z·√(0.021 + z²/400)/(1 + z²/10) = 0.2477153 → [0.1077913, 0.6032219].
        let [lo, hi] = wilson(3, 10, Z95).unwrap();
        assert!((lo - 0.107_791_3).abs() < 1e-7, "{lo}");
        assert!((hi - 0.603_221_9).abs() < 1e-7, "{hi}");
        // 0 of 20: [0, z²/(n + z²)] = [0, 0.1611252].
        let [lo, hi] = wilson(0, 20, Z95).unwrap();
        assert_eq!(lo, 0.0);
        assert!((hi - 0.161_125_2).abs() < 1e-7, "{hi}");
        assert_eq!(wilson(0, 0, Z95), None);
    }

    /// Persons of one group: (flagged positives, unflagged positives, flagged
    /// negatives, unflagged negatives).
    fn group(
        name: &str,
        tp: usize,
        fn_: usize,
        fp: usize,
        tn: usize,
        out: &mut (Vec<String>, Vec<bool>, Vec<bool>),
    ) {
        for (n, flag, label) in [
            (tp, true, true),
            (fn_, false, true),
            (fp, true, false),
            (tn, false, false),
        ] {
            for _ in 0..n {
                out.0.push(name.to_string());
                out.1.push(flag);
                out.2.push(label);
            }
        }
    }

    #[test]
    fn rates_below_their_floor_are_suppressed_and_carry_support_and_intervals() {
        let mut d = (Vec::new(), Vec::new(), Vec::new());
        // a: 60 persons, 12 positives (3 flagged), 48 negatives (6 flagged).
        group("a", 3, 9, 6, 42, &mut d);
        // b: 30 persons, 2 positives (2 flagged), 28 negatives (1 flagged): the TPR of
        // 1.0 rests on two children.
        group("b", 2, 0, 1, 27, &mut d);
        // c: 10 persons: below the minimum group size.
        group("c", 1, 0, 0, 9, &mut d);
        let p = vec![0.1; d.0.len()];
        let floors = Floors {
            min_group: 20,
            min_denominator: 10,
            min_numerator: 0,
            confidence: 0.95,
        };
        let r = report("x", &d.0, &d.1, &d.2, &p, &floors);
        assert_eq!(r.groups_suppressed, 1);
        let a = &r.groups[0];
        assert_eq!(
            (a.positives, a.negatives, a.flagged),
            (Some(12), Some(48), Some(9))
        );
        assert_eq!(a.tpr, Some(0.25));
        assert_eq!(a.selection_rate, Some(0.15));
        let [lo, hi] = a.tpr_ci.unwrap();
        assert_eq!(Some([lo, hi]), wilson(3, 12, Z95));
        let b = &r.groups[1];
        assert_eq!(
            b.tpr, None,
            "2 positives are below the denominator floor of 10"
        );
        assert_eq!(b.fpr, Some(1.0 / 28.0));
        assert!(r.groups[2].suppressed && r.groups[2].selection_rate.is_none());
        // The summaries use only the rates shown: FPR a = 6/48, b = 1/28; TPR a only.
        let eo = r.equalized_odds_difference.unwrap();
        assert!((eo - (6.0 / 48.0 - 1.0 / 28.0)).abs() < 1e-12, "{eo}");
        // With a numerator floor of 3, b's FPR (1 flagged) goes too.
        let r = report(
            "x",
            &d.0,
            &d.1,
            &d.2,
            &p,
            &Floors {
                min_numerator: 3,
                ..floors
            },
        );
        assert_eq!(r.groups[1].fpr, None);
    }

    #[test]
    fn the_bounds_separate_noise_from_a_real_disparity() {
        let floors = Floors {
            min_group: 20,
            min_denominator: 10,
            min_numerator: 0,
            confidence: 0.95,
        };
        // Noise: TPR 50/100 against 8/10 (a point difference of 0.3), FPRs equal.
        let mut d = (Vec::new(), Vec::new(), Vec::new());
        group("a", 50, 50, 50, 850, &mut d);
        group("b", 8, 2, 5, 85, &mut d);
        let p = vec![0.1; d.0.len()];
        let r = report("x", &d.0, &d.1, &d.2, &p, &floors);
        assert!((r.equalized_odds_difference.unwrap() - 0.3).abs() < 1e-12);
        // Four rates share the 95%: z = Φ⁻¹(1 − 0.05/8). The TPR bound is
        // max(lower a, lower b) − min(upper a, upper b) < 0 → 0; the FPR bound too.
        let z = normal_quantile(1.0 - 0.05 / 8.0);
        let (la, ua) = (wilson(50, 100, z).unwrap(), wilson(8, 10, z).unwrap());
        assert!(la[0].max(ua[0]) < la[1].min(ua[1]));
        assert_eq!(r.equalized_odds_difference_bound, Some(0.0));
        // A real one: TPR 300/1000 against 700/1000.
        let mut d = (Vec::new(), Vec::new(), Vec::new());
        group("a", 300, 700, 100, 8900, &mut d);
        group("b", 700, 300, 100, 8900, &mut d);
        let p = vec![0.1; d.0.len()];
        let r = report("x", &d.0, &d.1, &d.2, &p, &floors);
        let lower_b = wilson(700, 1000, z).unwrap()[0];
        let upper_a = wilson(300, 1000, z).unwrap()[1];
        let bound = r.equalized_odds_difference_bound.unwrap();
        assert!((bound - (lower_b - upper_a)).abs() < 1e-12, "{bound}");
        assert!(bound > 0.3, "{bound}");
    }
}
