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

/// One group's (or one calibration bin's) line in a released table. A line whose
/// persons, positives, negatives or flagged persons include a small cell is hidden whole
/// (its counts and every rate), and so is a second line when only one would be: the
/// lines add up to published totals. A rate is shown only when the counts it divides
/// (numerator and what remains of the denominator) are releasable too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// The group's value, or the bin's range (`0.1–0.2`).
    pub group: String,
    pub persons: Cell,
    pub positives: Cell,
    /// Flagged at the table's flag share (absent in calibration tables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flagged: Cell,
    pub observed_rate: Option<f64>,
    pub mean_predicted: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fpr: Option<f64>,
}

/// A released table: a fairness grouping or the calibration bins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub name: String,
    pub lines: Vec<Line>,
    /// Lines hidden by small-cell or complementary suppression.
    pub suppressed: usize,
}

/// Counts behind one line.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    persons: u64,
    positives: u64,
    flagged: u64,
    true_flags: u64,
    score_sum: f64,
}

/// Which lines may be shown: none with a small cell among `counts`; when exactly one
/// line is hidden, the smallest shown non-empty line is hidden too.
fn visible(counts: &[Counts], min: u64, flags: bool) -> Vec<bool> {
    let small = |n: u64| cell(n, min).is_none();
    let mut show: Vec<bool> = counts
        .iter()
        .map(|c| {
            let mut cells = vec![c.persons, c.positives, c.persons - c.positives];
            if flags {
                cells.push(c.flagged);
            }
            !cells.into_iter().any(small)
        })
        .collect();
    if show.iter().filter(|s| !**s).count() == 1 {
        if let Some(i) = (0..counts.len())
            .filter(|&i| show[i] && counts[i].persons > 0)
            .min_by_key(|&i| counts[i].persons)
        {
            show[i] = false;
        }
    }
    show
}

/// `num / den` when both `num` and `den − num` are releasable and `den > 0`.
fn rate(num: u64, den: u64, min: u64) -> Option<f64> {
    (den > 0 && cell(num, min).is_some() && cell(den - num, min).is_some())
        .then(|| num as f64 / den as f64)
}

fn lines(keys: Vec<String>, counts: &[Counts], min: u64, flags: bool) -> Table {
    let show = visible(counts, min, flags);
    let lines = keys
        .into_iter()
        .zip(counts)
        .zip(&show)
        .map(|((group, c), &shown)| {
            let negatives = c.persons - c.positives;
            let on = |v: Option<f64>| v.filter(|_| shown);
            Line {
                group,
                persons: shown.then_some(c.persons),
                positives: shown.then_some(c.positives),
                flagged: (flags && shown).then_some(c.flagged),
                observed_rate: on(rate(c.positives, c.persons, min)),
                mean_predicted: on((c.persons > 0).then(|| c.score_sum / c.persons as f64)),
                selection_rate: on(rate(c.flagged, c.persons, min).filter(|_| flags)),
                tpr: on(rate(c.true_flags, c.positives, min).filter(|_| flags)),
                fpr: on(rate(c.flagged - c.true_flags, negatives, min).filter(|_| flags)),
            }
        })
        .collect();
    Table {
        name: String::new(),
        lines,
        suppressed: show.iter().filter(|s| !**s).count(),
    }
}

/// The fairness table of one grouping: per group (ordered by name) persons, positives,
/// flagged, and the rates Fairlearn reports (selection rate, TPR, FPR), suppressed as
/// [`Line`] says.
pub fn group_table(
    name: &str,
    groups: &[String],
    flags: &[bool],
    labels: &[bool],
    scores: &[f64],
    min: u64,
) -> Table {
    let mut by: std::collections::BTreeMap<&str, Counts> = Default::default();
    for i in 0..groups.len() {
        let c = by.entry(groups[i].as_str()).or_default();
        c.persons += 1;
        c.positives += labels[i] as u64;
        c.flagged += flags[i] as u64;
        c.true_flags += (flags[i] && labels[i]) as u64;
        c.score_sum += scores[i];
    }
    let keys = by.keys().map(|k| k.to_string()).collect();
    let counts: Vec<Counts> = by.into_values().collect();
    Table {
        name: name.to_string(),
        ..lines(keys, &counts, min, true)
    }
}

/// The calibration table: `bins` equal-width score bins with persons, positives, the
/// observed rate and the mean score, suppressed as [`Line`] says.
pub fn calibration_table(scores: &[f64], labels: &[bool], bins: usize, min: u64) -> Table {
    let mut counts = vec![Counts::default(); bins.max(1)];
    for (p, y) in scores.iter().zip(labels) {
        let b = ((p * counts.len() as f64) as usize).min(counts.len() - 1);
        counts[b].persons += 1;
        counts[b].positives += *y as u64;
        counts[b].score_sum += p;
    }
    let n = counts.len() as f64;
    let keys = (0..counts.len())
        .map(|i| format!("{:.2}–{:.2}", i as f64 / n, (i + 1) as f64 / n))
        .collect();
    Table {
        name: "calibration".into(),
        ..lines(keys, &counts, min, false)
    }
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

    fn groups(spec: &[(&str, usize, usize, usize, usize)]) -> (Vec<String>, Vec<bool>, Vec<bool>) {
        // (group, true flags, flagged negatives, unflagged positives, unflagged negatives)
        let (mut g, mut f, mut l) = (Vec::new(), Vec::new(), Vec::new());
        for &(name, tp, fp, fn_, tn) in spec {
            for (n, flag, label) in [
                (tp, true, true),
                (fp, true, false),
                (fn_, false, true),
                (tn, false, false),
            ] {
                for _ in 0..n {
                    g.push(name.to_string());
                    f.push(flag);
                    l.push(label);
                }
            }
        }
        (g, f, l)
    }

    #[test]
    fn group_lines_with_a_small_cell_are_hidden_with_a_complementary_line() {
        // Hand-computed, min 5:
        //   a: 40 persons, 12 positives (6 flagged), 28 negatives (4 flagged): shown;
        //      TPR 6/12 = 0.5 (6 flagged and 6 not: releasable), FPR 4/28 hidden (4 is a
        //      small cell), selection 10/40 = 0.25, observed 12/40 = 0.3.
        //   b: 30 persons, 3 positives: a small cell, hidden.
        //   c: 20 persons, 8 positives, 5 flagged: the smallest shown line, hidden with b
        //      (else b = total − a − c).
        //   d: 100 persons, 20 positives, 0 flagged: shown (zeros are not small).
        let (g, f, l) = groups(&[
            ("a", 6, 4, 6, 24),
            ("b", 2, 3, 1, 24),
            ("c", 5, 0, 3, 12),
            ("d", 0, 0, 20, 80),
        ]);
        let scores = vec![0.25; g.len()];
        let t = group_table("x", &g, &f, &l, &scores, 5);
        assert_eq!(t.suppressed, 2);
        let by = |k: &str| t.lines.iter().find(|x| x.group == k).unwrap().clone();
        let a = by("a");
        assert_eq!(
            (a.persons, a.positives, a.flagged),
            (Some(40), Some(12), Some(10))
        );
        assert_eq!(a.tpr, Some(0.5));
        assert_eq!(a.fpr, None);
        assert_eq!(a.selection_rate, Some(0.25));
        assert_eq!(a.observed_rate, Some(0.3));
        assert_eq!(a.mean_predicted, Some(0.25));
        for hidden in [by("b"), by("c")] {
            assert_eq!(
                (
                    hidden.persons,
                    hidden.positives,
                    hidden.flagged,
                    hidden.tpr,
                    hidden.observed_rate,
                    hidden.mean_predicted
                ),
                (None, None, None, None, None, None),
                "{hidden:?}"
            );
        }
        let d = by("d");
        assert_eq!(
            (d.persons, d.positives, d.flagged),
            (Some(100), Some(20), Some(0))
        );
        // 0 of 20: a zero is not a small cell, and the rest (20) is releasable.
        assert_eq!((d.tpr, d.selection_rate), (Some(0.0), Some(0.0)));
    }

    #[test]
    fn calibration_bins_hide_small_cells_and_their_complement() {
        // Four bins, min 5: [0, .25) 50 persons 5 positives; [.25, .5) 12 persons 2
        // positives (small); [.5, .75) 30 persons 15 positives (the smallest shown:
        // complementary); [.75, 1] 8 persons 6 positives → 2 negatives: small as well,
        // so two are hidden by their own cells and no complement is needed.
        let mut p = Vec::new();
        let mut y = Vec::new();
        for (score, n, pos) in [(0.1, 50, 5), (0.3, 12, 2), (0.6, 30, 15), (0.9, 8, 6)] {
            for i in 0..n {
                p.push(score);
                y.push(i < pos);
            }
        }
        let t = calibration_table(&p, &y, 4, 5);
        assert_eq!(t.suppressed, 2);
        let shown: Vec<(&str, Cell, Option<f64>)> = t
            .lines
            .iter()
            .map(|l| (l.group.as_str(), l.persons, l.observed_rate))
            .collect();
        assert_eq!(
            shown,
            [
                ("0.00–0.25", Some(50), Some(0.1)),
                ("0.25–0.50", None, None),
                ("0.50–0.75", Some(30), Some(0.5)),
                ("0.75–1.00", None, None),
            ]
        );
        // Only the second bin small: the third (smallest shown) goes with it.
        let t = calibration_table(&p[..92], &y[..92], 4, 5);
        assert_eq!(t.suppressed, 2);
        assert_eq!(t.lines[2].persons, None);
        assert_eq!(t.lines[0].persons, Some(50));
    }
}
