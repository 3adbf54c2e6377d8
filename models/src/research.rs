//! What research under a permit may release: population-level findings, never a person.
//!
//! The factor report is Espoo's 2017–18 group-level finding done properly: for each
//! feature, how common it is among children with and without the outcome, the univariate
//! odds ratio with a 95% confidence interval, and the model's coefficient. Every cell is
//! a count of persons and is subject to the permit's minimum cell size, including cells
//! that could be recovered from published totals (complementary suppression).
//!
//! The tables published beside the report give the number of positives `P` and
//! negatives `N`. A feature's 2×2 table has `a` exposed and `c` unexposed positives
//! (`a + c = P`) and `b` exposed and `d` unexposed negatives (`b + d = N`), so hiding `a`
//! alone would not hide it: `a = P − c`. The rule is therefore per column: when either
//! cell of a column is a small cell (1..min), both cells of that column are suppressed,
//! and so is every figure computed from them (prevalence, odds ratio, interval). Row
//! totals (how many are exposed) are never published.

use serde::{Deserialize, Serialize};

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// A count that may be released, or `None` when suppressed.
pub type Cell = Option<u64>;

/// One feature's association with the outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    pub feature: String,
    /// What "exposed" means for this feature: `value > threshold`.
    pub threshold: f64,
    /// Exposed and unexposed persons with the outcome.
    pub exposed_positive: Cell,
    pub unexposed_positive: Cell,
    /// Exposed and unexposed persons without the outcome.
    pub exposed_negative: Cell,
    pub unexposed_negative: Cell,
    /// Share exposed among persons with the outcome, and without it.
    pub prevalence_positive: Option<f64>,
    pub prevalence_negative: Option<f64>,
    /// The univariate odds ratio (Haldane–Anscombe correction when a cell is zero) and
    /// its 95% Woolf interval.
    pub odds_ratio: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// The fitted model's coefficient (log-odds per standard deviation of the
    /// standardised input); absent for a feature the model does not use.
    pub coefficient: Option<f64>,
}

/// The factor report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FactorReport {
    pub min_cell: u64,
    /// Persons with and without the outcome (what the cells add up to per column).
    pub positives: Cell,
    pub negatives: Cell,
    pub factors: Vec<Factor>,
}

/// `n` unless it is a small cell.
pub fn cell(n: u64, min: u64) -> Cell {
    (n == 0 || n >= min).then_some(n)
}

/// The median of the present values (0 when none).
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The factor report of `rows` (values per feature, in `names` order) against `labels`.
/// Exposed means above the cohort's median (for event counts, whose median is 0: at
/// least one event); a missing value is unexposed. `coefficients[j]` is the model's
/// weight of feature `j`, if it uses it.
pub fn factor_report(
    rows: &[Vec<Option<f64>>],
    labels: &[bool],
    names: &[String],
    coefficients: &[Option<f64>],
    min_cell: u64,
) -> FactorReport {
    let positives = labels.iter().filter(|l| **l).count() as u64;
    let negatives = labels.len() as u64 - positives;
    let factors = names
        .iter()
        .enumerate()
        .map(|(j, name)| {
            let values: Vec<Option<f64>> =
                rows.iter().map(|r| r.get(j).copied().flatten()).collect();
            let threshold = median(values.iter().flatten().copied().collect());
            let (mut a, mut b) = (0u64, 0u64);
            for (v, l) in values.iter().zip(labels) {
                if v.is_some_and(|v| v > threshold) {
                    if *l {
                        a += 1;
                    } else {
                        b += 1;
                    }
                }
            }
            let (c, d) = (positives - a, negatives - b);
            table(
                name,
                threshold,
                [a, b, c, d],
                coefficients.get(j).copied().flatten(),
                min_cell,
            )
        })
        .collect();
    FactorReport {
        min_cell,
        positives: cell(positives, min_cell),
        negatives: cell(negatives, min_cell),
        factors,
    }
}

/// One feature's row from its 2×2 table `[a, b, c, d]` (exposed positive, exposed
/// negative, unexposed positive, unexposed negative), suppressed per column.
pub fn table(
    feature: &str,
    threshold: f64,
    [a, b, c, d]: [u64; 4],
    coefficient: Option<f64>,
    min: u64,
) -> Factor {
    let small = |n: u64| cell(n, min).is_none();
    let positive_column = !(small(a) || small(c));
    let negative_column = !(small(b) || small(d));
    let keep = |ok: bool, n: u64| ok.then_some(n);
    let share = |x: u64, y: u64| (x + y > 0).then(|| x as f64 / (x + y) as f64);
    let all = positive_column && negative_column;
    let (or, low, high) = if all {
        let corr = if a == 0 || b == 0 || c == 0 || d == 0 {
            0.5
        } else {
            0.0
        };
        let (a, b, c, d) = (
            a as f64 + corr,
            b as f64 + corr,
            c as f64 + corr,
            d as f64 + corr,
        );
        let or = (a * d) / (b * c);
        let se = (1.0 / a + 1.0 / b + 1.0 / c + 1.0 / d).sqrt();
        (
            Some(or),
            Some((or.ln() - Z95 * se).exp()),
            Some((or.ln() + Z95 * se).exp()),
        )
    } else {
        (None, None, None)
    };
    Factor {
        feature: feature.into(),
        threshold,
        exposed_positive: keep(positive_column, a),
        unexposed_positive: keep(positive_column, c),
        exposed_negative: keep(negative_column, b),
        unexposed_negative: keep(negative_column, d),
        prevalence_positive: if positive_column { share(a, c) } else { None },
        prevalence_negative: if negative_column { share(b, d) } else { None },
        odds_ratio: or,
        ci_low: low,
        ci_high: high,
        coefficient,
    }
}

/// Counts per group that add up to a published total, with small cells suppressed and,
/// when exactly one would be hidden, the next smallest hidden too (so that no hidden
/// cell is the total minus the shown ones).
pub fn suppress_with_total(counts: &[u64], min: u64) -> Vec<Cell> {
    let mut out: Vec<Cell> = counts.iter().map(|&n| cell(n, min)).collect();
    let hidden = out.iter().filter(|c| c.is_none()).count();
    if hidden == 1 {
        if let Some((i, _)) = counts
            .iter()
            .enumerate()
            .filter(|(i, _)| out[*i].is_some())
            .filter(|(_, n)| **n > 0)
            .min_by_key(|(_, n)| **n)
        {
            out[i] = None;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_odds_ratio_and_its_interval_match_values_computed_by_hand() {
        // a=20 exposed positives, b=80 exposed negatives, c=30, d=870:
        // OR = 20·870 / (80·30) = 7.25; SE = √(1/20 + 1/80 + 1/30 + 1/870) = 0.311421;
        // CI = exp(ln 7.25 ± 1.959964·0.311421) = [3.937824, 13.348106].
        let f = table("x", 0.0, [20, 80, 30, 870], Some(0.8), 5);
        assert!((f.odds_ratio.unwrap() - 7.25).abs() < 1e-12);
        assert!((f.ci_low.unwrap() - 3.937_824).abs() < 1e-6, "{f:?}");
        assert!((f.ci_high.unwrap() - 13.348_106).abs() < 1e-6, "{f:?}");
        assert_eq!(f.prevalence_positive, Some(0.4));
        assert_eq!(f.prevalence_negative, Some(80.0 / 950.0));
        assert_eq!(f.coefficient, Some(0.8));
    }

    #[test]
    fn a_small_cell_hides_its_whole_column_and_everything_computed_from_it() {
        // 3 exposed positives: a = P − c would give it away, so c goes too.
        let f = table("x", 0.0, [3, 80, 47, 870], None, 5);
        assert_eq!((f.exposed_positive, f.unexposed_positive), (None, None));
        assert_eq!(
            (f.exposed_negative, f.unexposed_negative),
            (Some(80), Some(870))
        );
        assert_eq!(f.prevalence_positive, None);
        assert_eq!(f.prevalence_negative, Some(80.0 / 950.0));
        assert_eq!((f.odds_ratio, f.ci_low, f.ci_high), (None, None, None));
        // Zero is not a small cell: shown, and the odds ratio takes the 0.5 correction:
        // (0.5·870.5)/(80.5·50.5) = 0.107066.
        let z = table("x", 0.0, [0, 80, 50, 870], None, 5);
        assert_eq!(z.exposed_positive, Some(0));
        assert!((z.odds_ratio.unwrap() - 0.107_066).abs() < 1e-5, "{z:?}");
    }

    #[test]
    fn the_report_uses_the_median_as_exposure_and_sums_to_the_totals() {
        // 10 persons: feature 0 is a count (median 0 → exposed = any event), feature 1
        // an age (median 7.5 → exposed = older).
        let rows: Vec<Vec<Option<f64>>> = (0..10)
            .map(|i| vec![Some(if i < 4 { 1.0 } else { 0.0 }), Some(i as f64 + 3.0)])
            .collect();
        let labels: Vec<bool> = (0..10).map(|i| i < 3 || i == 9).collect();
        let names = vec!["events".to_string(), "age".to_string()];
        let r = factor_report(&rows, &labels, &names, &[Some(1.0), None], 1);
        assert_eq!((r.positives, r.negatives), (Some(4), Some(6)));
        let e = &r.factors[0];
        assert_eq!(e.threshold, 0.0);
        // Exposed: persons 0–3; positives 0,1,2 (and 9 unexposed); negative 3.
        assert_eq!(
            (
                e.exposed_positive,
                e.unexposed_positive,
                e.exposed_negative,
                e.unexposed_negative
            ),
            (Some(3), Some(1), Some(1), Some(5))
        );
        let a = &r.factors[1];
        assert_eq!(a.threshold, 7.5);
        // Older than 7.5: persons 5–9; positive 9 only.
        assert_eq!((a.exposed_positive, a.exposed_negative), (Some(1), Some(4)));
        assert_eq!(a.coefficient, None);
        // With the default minimum of 5 every column here is small.
        let r5 = factor_report(&rows, &labels, &names, &[None, None], 5);
        assert_eq!(r5.positives, None);
        assert!(r5.factors.iter().all(|f| f.odds_ratio.is_none()));
    }

    #[test]
    fn one_hidden_count_of_a_published_total_takes_the_next_smallest_with_it() {
        assert_eq!(
            suppress_with_total(&[40, 3, 12, 9], 5),
            [Some(40), None, Some(12), None]
        );
        assert_eq!(
            suppress_with_total(&[40, 3, 2, 9], 5),
            [Some(40), None, None, Some(9)]
        );
        assert_eq!(
            suppress_with_total(&[40, 0, 9], 5),
            [Some(40), Some(0), Some(9)]
        );
    }
}
