//! The default model: L2-regularised logistic regression (linfa-logistic) on standardised
//! inputs, with exact additive explanations.
//!
//! linfa-logistic 0.8.1 treats the *more frequent* class as the positive one; with a rare
//! outcome its probabilities and coefficient signs would describe "no intervention".
//! [`fit`] reads the fitted model's `labels()` and stores weights oriented towards the
//! `true` class, whichever class linfa chose.

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

/// Why training failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    #[error(
        "the training data has {rows} rows and {positives} positives: both classes are needed"
    )]
    OneClass { rows: usize, positives: usize },
    #[error("rows have {found} values, the model expects {expected}")]
    Shape { expected: usize, found: usize },
    #[error("the optimiser failed: {0}")]
    Fit(String),
}

/// Standardisation fitted on the training rows only: chosen columns (counts, amounts,
/// durations) first go through `ln(1 + max(x, 0))`, which makes event rates that grow
/// exponentially with need linear in it; missing values become the training mean (0 after
/// scaling); constant columns are left unscaled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    pub means: Vec<f64>,
    pub scales: Vec<f64>,
    #[serde(default)]
    pub log1p: Vec<bool>,
}

impl Scaler {
    fn pre(&self, j: usize, v: f64) -> f64 {
        if self.log1p.get(j).copied().unwrap_or(false) {
            v.max(0.0).ln_1p()
        } else {
            v
        }
    }

    pub fn fit(rows: &[Vec<Option<f64>>], width: usize, log1p: &[bool]) -> Scaler {
        let mut means = vec![0.0; width];
        let mut scales = vec![1.0; width];
        let log1p: Vec<bool> = (0..width)
            .map(|j| log1p.get(j).copied().unwrap_or(false))
            .collect();
        let probe = Scaler {
            means: means.clone(),
            scales: scales.clone(),
            log1p: log1p.clone(),
        };
        for j in 0..width {
            let vals: Vec<f64> = rows
                .iter()
                .filter_map(|r| r[j])
                .map(|v| probe.pre(j, v))
                .collect();
            if vals.is_empty() {
                continue;
            }
            let n = vals.len() as f64;
            let mean = vals.iter().sum::<f64>() / n;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            means[j] = mean;
            scales[j] = if var > 1e-12 { var.sqrt() } else { 1.0 };
        }
        Scaler {
            means,
            scales,
            log1p,
        }
    }

    /// One row on the model's input scale.
    pub fn transform(&self, row: &[Option<f64>]) -> Vec<f64> {
        row.iter()
            .enumerate()
            .map(|(j, v)| v.map_or(0.0, |v| (self.pre(j, v) - self.means[j]) / self.scales[j]))
            .collect()
    }

    pub fn matrix(&self, rows: &[Vec<Option<f64>>]) -> Array2<f64> {
        let width = self.means.len();
        let mut m = Array2::zeros((rows.len(), width));
        for (i, r) in rows.iter().enumerate() {
            for (j, v) in self.transform(r).into_iter().enumerate() {
                m[[i, j]] = v;
            }
        }
        m
    }
}

/// A fitted logistic model, oriented towards the positive (`true`) class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    pub scaler: Scaler,
    /// Weights on the standardised scale.
    pub weights: Vec<f64>,
    pub intercept: f64,
    /// L2 strength used.
    pub alpha: f64,
    /// Mean of each standardised input over the training rows (the SHAP background).
    pub background: Vec<f64>,
}

/// One prediction with its explanation in log-odds.
#[derive(Clone, Debug, PartialEq)]
pub struct Explained {
    pub probability: f64,
    pub logit: f64,
    /// The logit at the background means.
    pub base_value: f64,
    /// Per input: `w_i · (x_i − mean_i)`; they sum to `logit − base_value`.
    pub contributions: Vec<f64>,
}

/// Fits the model with L2 strength `alpha`; `log1p` marks the columns to log-transform.
pub fn fit(
    rows: &[Vec<Option<f64>>],
    labels: &[bool],
    alpha: f64,
    log1p: &[bool],
) -> Result<Logistic, TrainError> {
    let width = rows.first().map_or(0, Vec::len);
    if let Some(bad) = rows.iter().find(|r| r.len() != width) {
        return Err(TrainError::Shape {
            expected: width,
            found: bad.len(),
        });
    }
    let positives = labels.iter().filter(|l| **l).count();
    if positives == 0 || positives == labels.len() {
        return Err(TrainError::OneClass {
            rows: labels.len(),
            positives,
        });
    }
    let scaler = Scaler::fit(rows, width, log1p);
    let x = scaler.matrix(rows);
    let background: Vec<f64> = (0..width)
        .map(|j| x.column(j).mean().unwrap_or(0.0))
        .collect();
    let y = Array1::from_iter(labels.iter().copied());
    let data = Dataset::new(x, y);
    let fitted = LogisticRegression::default()
        .alpha(alpha)
        .max_iterations(200)
        .fit(&data)
        .map_err(|e| TrainError::Fit(e.to_string()))?;
    // Orient towards `true`: linfa's "positive" is the larger class.
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    Ok(Logistic {
        scaler,
        weights: fitted.params().iter().map(|w| sign * w).collect(),
        intercept: sign * fitted.intercept(),
        alpha,
        background,
    })
}

impl Logistic {
    /// The log-odds of the positive class for a standardised row.
    pub fn logit_scaled(&self, x: &[f64]) -> f64 {
        self.intercept + self.weights.iter().zip(x).map(|(w, v)| w * v).sum::<f64>()
    }

    pub fn probability(&self, row: &[Option<f64>]) -> f64 {
        crate::sigmoid(self.logit_scaled(&self.scaler.transform(row)))
    }

    /// The prediction with exact SHAP values for a linear model with an independent
    /// background: `w_i · (x_i − mean_i)`, summing to the logit minus the base value.
    pub fn explain(&self, row: &[Option<f64>]) -> Explained {
        let x = self.scaler.transform(row);
        let logit = self.logit_scaled(&x);
        let base_value = self.logit_scaled(&self.background);
        let contributions: Vec<f64> = self
            .weights
            .iter()
            .zip(&x)
            .zip(&self.background)
            .map(|((w, v), m)| w * (v - m))
            .collect();
        Explained {
            probability: crate::sigmoid(logit),
            logit,
            base_value,
            contributions,
        }
    }
}

/// The `k` largest contributions (input index, log-odds), largest first, ties in input
/// order: the explanation a suggestion shows. One routine serves production and the
/// benchmarks; it reuses the caller's buffer, so scoring a cohort does not allocate per
/// person.
impl Logistic {
    /// The probability, with `top` refilled with the `k` largest exact SHAP values
    /// (`w_i · (x_i − mean_i)`). The probability is bit-identical to
    /// [`Logistic::probability`].
    pub fn score_top(&self, row: &[Option<f64>], k: usize, top: &mut Vec<(u16, f64)>) -> f64 {
        top.clear();
        let mut sum = 0.0;
        for (j, v) in row.iter().enumerate() {
            let x = v.map_or(0.0, |v| {
                (self.scaler.pre(j, v) - self.scaler.means[j]) / self.scaler.scales[j]
            });
            let w = self.weights[j];
            sum += w * x;
            let c = w * (x - self.background[j]);
            if k == 0 || (top.len() == k && top[k - 1].1 >= c) {
                continue;
            }
            // Insert after every entry at least as large (earlier inputs win ties).
            let at = top.partition_point(|e| e.1 >= c);
            if top.len() == k {
                top.pop();
            }
            top.insert(at, (j as u16, c));
        }
        crate::sigmoid(self.intercept + sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A planted signal: feature 0 raises the risk, feature 1 lowers it, feature 2 is noise.
    fn planted(n: usize, seed: u64) -> (Vec<Vec<Option<f64>>>, Vec<bool>) {
        let mut state = seed;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..n {
            let (a, b, c) = (next() * 4.0, next() * 4.0, next());
            let p = crate::sigmoid(-4.0 + 1.5 * a - 1.0 * b);
            labels.push(next() < p);
            rows.push(vec![Some(a), Some(b), Some(c)]);
        }
        (rows, labels)
    }

    #[test]
    fn coefficient_signs_follow_the_planted_signal_despite_a_rare_positive() {
        let (rows, labels) = planted(4_000, 7);
        let rate = labels.iter().filter(|l| **l).count() as f64 / labels.len() as f64;
        assert!(
            rate < 0.3,
            "the positive class must be the rare one here: {rate}"
        );
        let m = fit(&rows, &labels, 1.0, &[]).unwrap();
        assert!(m.weights[0] > 0.5, "{:?}", m.weights);
        assert!(m.weights[1] < -0.3, "{:?}", m.weights);
        assert!(m.weights[2].abs() < 0.2, "{:?}", m.weights);
        // Higher risk input, higher probability of the *positive* class.
        let hi = m.probability(&[Some(4.0), Some(0.0), Some(0.5)]);
        let lo = m.probability(&[Some(0.0), Some(4.0), Some(0.5)]);
        assert!(hi > 0.5 && lo < 0.05, "{hi} {lo}");
    }

    #[test]
    fn explanations_are_exactly_additive_and_match_a_reference_computation() {
        let (rows, labels) = planted(2_000, 11);
        let m = fit(&rows, &labels, 1.0, &[]).unwrap();
        for row in rows.iter().take(200) {
            let e = m.explain(row);
            let sum: f64 = e.contributions.iter().sum();
            assert!((e.base_value + sum - e.logit).abs() < 1e-9);
            assert!((crate::sigmoid(e.logit) - e.probability).abs() < 1e-12);
            // Reference: SHAP for a linear model on raw inputs is
            // beta_i * (raw_i - raw_mean_i) with beta_i = w_i / scale_i.
            for (j, raw) in row.iter().enumerate() {
                let beta = m.weights[j] / m.scaler.scales[j];
                let raw_mean = m.scaler.means[j] + m.background[j] * m.scaler.scales[j];
                let reference = beta * (raw.unwrap() - raw_mean);
                assert!((reference - e.contributions[j]).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn the_top_factors_are_the_full_explanation_sorted_and_cut() {
        let (rows, labels) = planted(1_000, 5);
        let m = fit(&rows, &labels, 1.0, &[]).unwrap();
        let mut top = Vec::new();
        for k in [0, 1, 2, 3, 5] {
            for row in rows.iter().take(100) {
                let e = m.explain(row);
                let p = m.score_top(row, k, &mut top);
                assert_eq!(p.to_bits(), m.probability(row).to_bits());
                let mut order: Vec<usize> = (0..e.contributions.len()).collect();
                order.sort_by(|a, b| {
                    e.contributions[*b]
                        .total_cmp(&e.contributions[*a])
                        .then(a.cmp(b))
                });
                let want: Vec<(u16, f64)> = order
                    .iter()
                    .take(k)
                    .map(|&j| (j as u16, e.contributions[j]))
                    .collect();
                assert_eq!(top, want, "k = {k}");
            }
        }
    }

    #[test]
    fn equal_contributions_keep_input_order() {
        let m = Logistic {
            scaler: Scaler {
                means: vec![0.0; 3],
                scales: vec![1.0; 3],
                log1p: vec![false; 3],
            },
            weights: vec![1.0, 1.0, 1.0],
            intercept: 0.0,
            alpha: 1.0,
            background: vec![0.0; 3],
        };
        let mut top = Vec::new();
        m.score_top(&[Some(1.0), Some(2.0), Some(1.0)], 2, &mut top);
        assert_eq!(top, [(1, 2.0), (0, 1.0)]);
    }

    #[test]
    fn missing_values_take_the_training_mean_and_one_class_is_refused() {
        let (rows, labels) = planted(500, 3);
        let m = fit(&rows, &labels, 1.0, &[]).unwrap();
        let e = m.explain(&[None, Some(1.0), None]);
        assert!(e.contributions[0].abs() < 1e-9 && e.contributions[2].abs() < 1e-9);
        let err = fit(&rows, &vec![false; rows.len()], 1.0, &[]).unwrap_err();
        assert!(err.to_string().contains("both classes"));
    }
}
