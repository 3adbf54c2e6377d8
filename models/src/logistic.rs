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

    /// The rows on the model's input scale, column-major: the solver's gradient is
    /// `Xᵀ r`, which ndarray (without BLAS) computes row by row of `Xᵀ` — contiguous
    /// columns of `X` here, strided ones (a cache miss per element) in row-major order.
    pub fn matrix(&self, rows: &[Vec<Option<f64>>]) -> Array2<f64> {
        use ndarray::ShapeBuilder as _;
        let width = self.means.len();
        let mut m = Array2::zeros((rows.len(), width).f());
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

/// The solver stops when the gradient of the summed objective is this small per
/// training row. linfa's own default (1e-4 on the *sum*) grows ever stricter as rows
/// grow and is never reached on a town's data; per row it is the tolerance of the mean
/// loss, as scikit-learn states its own. 1e-7 per row keeps the coefficients within 1e-5
/// of the tight optimum (`models/src/logistic.rs` tests).
pub const GRADIENT_TOLERANCE_PER_ROW: f64 = 1e-7;

/// The solver's iteration cap: never reached at the tolerance above on tidig's data; a
/// fit that would need more stops here rather than run on.
pub const MAX_ITERATIONS: u64 = 1000;

/// Newton steps that finish a kept model ([`Design::fit_exact`]): from L-BFGS's solution
/// two or three reach the optimum to rounding.
pub const NEWTON_STEPS: usize = 8;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Solves `H x = b` for a symmetric positive definite `H` (row-major `m × m`,
/// overwritten by its Cholesky factor); `None` when `H` is not positive definite.
fn cholesky_solve(h: &mut [f64], b: &[f64], m: usize) -> Option<Vec<f64>> {
    for j in 0..m {
        let mut s = h[j * m + j];
        for k in 0..j {
            s -= h[j * m + k] * h[j * m + k];
        }
        if s <= 0.0 || !s.is_finite() {
            return None;
        }
        let l = s.sqrt();
        h[j * m + j] = l;
        for i in j + 1..m {
            let mut s = h[i * m + j];
            for k in 0..j {
                s -= h[i * m + k] * h[j * m + k];
            }
            h[i * m + j] = s / l;
        }
    }
    let mut x = b.to_vec();
    for i in 0..m {
        for k in 0..i {
            x[i] -= h[i * m + k] * x[k];
        }
        x[i] /= h[i * m + i];
    }
    for i in (0..m).rev() {
        for k in i + 1..m {
            x[i] -= h[k * m + i] * x[k];
        }
        x[i] /= h[i * m + i];
    }
    Some(x)
}

/// A fit's solution in the solver's own orientation (intercept last): the start of the
/// next fit on the same standardised rows (a warm start along the L2 path).
#[derive(Clone, Debug)]
pub struct WarmStart(Array1<f64>);

/// Training rows standardised once, to be fitted at one or more L2 strengths.
#[derive(Clone, Debug)]
pub struct Design {
    scaler: Scaler,
    x: Array2<f64>,
    y: Array1<bool>,
    background: Vec<f64>,
}

impl Design {
    /// Checks the rows (one width, both classes), fits the scaler on them and builds the
    /// standardised matrix. `log1p` marks the columns to log-transform.
    pub fn new(
        rows: &[Vec<Option<f64>>],
        labels: &[bool],
        log1p: &[bool],
    ) -> Result<Design, TrainError> {
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
        Ok(Design {
            scaler,
            x,
            y: Array1::from_iter(labels.iter().copied()),
            background,
        })
    }

    pub fn rows(&self) -> usize {
        self.x.nrows()
    }

    /// Fits at `alpha` from `warm` (zeros when `None`), to the default tolerance.
    pub fn fit(
        &self,
        alpha: f64,
        warm: Option<&WarmStart>,
    ) -> Result<(Logistic, WarmStart), TrainError> {
        let tolerance = GRADIENT_TOLERANCE_PER_ROW * self.rows() as f64;
        self.fit_to(alpha, warm, tolerance, MAX_ITERATIONS)
    }

    /// Fits at `alpha` until the summed objective's gradient is below `tolerance` or
    /// `max_iterations` have run.
    pub fn fit_to(
        &self,
        alpha: f64,
        warm: Option<&WarmStart>,
        tolerance: f64,
        max_iterations: u64,
    ) -> Result<(Logistic, WarmStart), TrainError> {
        let data = DatasetBase::new(self.x.view(), self.y.view());
        let mut solver = LogisticRegression::default()
            .alpha(alpha)
            .gradient_tolerance(tolerance)
            .max_iterations(max_iterations);
        if let Some(WarmStart(p)) = warm.filter(|w| w.0.len() == self.x.ncols() + 1) {
            solver = solver.initial_params(p.clone());
        }
        let fitted = solver
            .fit(&data)
            .map_err(|e| TrainError::Fit(e.to_string()))?;
        let mut raw = fitted.params().to_vec();
        raw.push(fitted.intercept());
        // Orient towards `true`: linfa's "positive" is the larger class.
        let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
        Ok((
            Logistic {
                scaler: self.scaler.clone(),
                weights: fitted.params().iter().map(|w| sign * w).collect(),
                intercept: sign * fitted.intercept(),
                alpha,
                background: self.background.clone(),
            },
            WarmStart(Array1::from(raw)),
        ))
    }

    /// Fits at `alpha` from `warm` to the default tolerance, then finishes with Newton
    /// steps ([`Design::newton`]): the model a training run keeps. Where correlated inputs
    /// leave the objective nearly flat along some direction, L-BFGS stops with the
    /// objective at the optimum to 1e-9 but coefficients up to 0.016 away (400,000-person
    /// town, α 0.1); Newton's steps use the curvature L-BFGS only estimates.
    pub fn fit_exact(
        &self,
        alpha: f64,
        warm: Option<&WarmStart>,
    ) -> Result<(Logistic, WarmStart), TrainError> {
        let (mut model, warm) = self.fit(alpha, warm)?;
        self.newton(&mut model, NEWTON_STEPS);
        Ok((model, warm))
    }

    /// Newton steps on `model`'s weights and intercept for its own objective, each
    /// accepted only when it lowers the objective (halved up to 30 times otherwise);
    /// stops when a step moves no coefficient by more than 1e-12. Returns the steps
    /// taken. One step costs a pass over the columns for the Hessian `XᵀDX + αI`
    /// (D the logistic variances), solved by Cholesky.
    pub fn newton(&self, model: &mut Logistic, max_steps: usize) -> usize {
        let (n, d) = (self.x.nrows(), self.x.ncols());
        let y: Vec<f64> = self.y.iter().map(|&t| if t { 1.0 } else { 0.0 }).collect();
        // The design matrix is column-major (`Scaler::matrix`), so each column is a slice.
        let Some(columns) = (0..d)
            .map(|j| self.x.column(j).to_slice())
            .collect::<Option<Vec<&[f64]>>>()
        else {
            return 0;
        };
        let mut objective = self.objective(model);
        for step in 0..max_steps {
            let mut z = vec![model.intercept; n];
            for (col, w) in columns.iter().zip(&model.weights) {
                for (zi, xi) in z.iter_mut().zip(col.iter()) {
                    *zi += xi * w;
                }
            }
            let mut r = vec![0.0; n];
            let mut v = vec![0.0; n];
            for i in 0..n {
                let p = 1.0 / (1.0 + (-z[i]).exp());
                r[i] = p - y[i];
                v[i] = p * (1.0 - p);
            }
            // Gradient and Hessian in the order (weights…, intercept).
            let m = d + 1;
            let mut g = vec![0.0; m];
            let mut h = vec![0.0; m * m];
            for j in 0..d {
                g[j] = dot(columns[j], &r) + model.alpha * model.weights[j];
                let weighted: Vec<f64> = columns[j].iter().zip(&v).map(|(x, v)| x * v).collect();
                for k in 0..=j {
                    let hjk = dot(&weighted, columns[k]);
                    h[j * m + k] = hjk;
                    h[k * m + j] = hjk;
                }
                h[j * m + j] += model.alpha;
                let hjb = weighted.iter().sum::<f64>();
                h[j * m + d] = hjb;
                h[d * m + j] = hjb;
            }
            g[d] = r.iter().sum();
            h[d * m + d] = v.iter().sum();
            let Some(delta) = cholesky_solve(&mut h, &g, m) else {
                return step;
            };
            let mut t = 1.0;
            let mut accepted = false;
            for _ in 0..30 {
                let mut next = model.clone();
                for (w, dw) in next.weights.iter_mut().zip(&delta) {
                    *w -= t * dw;
                }
                next.intercept -= t * delta[d];
                let o = self.objective(&next);
                if o <= objective {
                    *model = next;
                    objective = o;
                    accepted = true;
                    break;
                }
                t *= 0.5;
            }
            let moved = t * delta.iter().fold(0.0f64, |a, x| a.max(x.abs()));
            if !accepted || moved <= 1e-12 {
                return step + usize::from(accepted);
            }
        }
        max_steps
    }

    /// The objective the solver minimises for `model` at its L2 strength: the summed
    /// log loss on these rows plus `alpha / 2 · ‖w‖²` (the intercept unpenalised).
    pub fn objective(&self, model: &Logistic) -> f64 {
        let mut loss = 0.0;
        for (row, &y) in self.x.outer_iter().zip(self.y.iter()) {
            let z = model.intercept
                + row
                    .iter()
                    .zip(&model.weights)
                    .map(|(x, w)| x * w)
                    .sum::<f64>();
            // −log σ(±z), stably.
            let m = if y { -z } else { z };
            loss += if m > 0.0 {
                m + (-m).exp().ln_1p()
            } else {
                m.exp().ln_1p()
            };
        }
        loss + 0.5 * model.alpha * model.weights.iter().map(|w| w * w).sum::<f64>()
    }
}

/// Fits the model with L2 strength `alpha`; `log1p` marks the columns to log-transform.
pub fn fit(
    rows: &[Vec<Option<f64>>],
    labels: &[bool],
    alpha: f64,
    log1p: &[bool],
) -> Result<Logistic, TrainError> {
    Ok(Design::new(rows, labels, log1p)?.fit(alpha, None)?.0)
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

    /// A seeded xorshift stream of uniforms in [0, 1).
    fn uniform(seed: u64) -> impl FnMut() -> f64 {
        let mut state = seed;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// A planted signal: feature 0 raises the risk, feature 1 lowers it, feature 2 is noise.
    fn planted(n: usize, seed: u64) -> (Vec<Vec<Option<f64>>>, Vec<bool>) {
        let mut next = uniform(seed);
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

    /// A town-like fixture: 16 inputs (counts with a long tail, correlated pairs, noise,
    /// a missing share), a rare outcome.
    fn townlike(n: usize, seed: u64) -> (Vec<Vec<Option<f64>>>, Vec<bool>, Vec<bool>) {
        let mut next = uniform(seed);
        let (mut rows, mut labels) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let need = next() * next() * 6.0;
            let mut row = Vec::new();
            for j in 0..16 {
                let v = match j % 4 {
                    0 => (need * next() * 3.0).floor(),
                    1 => need + next(),
                    2 => next() * 10.0,
                    _ => (need * 40.0 * next()).floor(),
                };
                row.push((next() > 0.05).then_some(v));
            }
            labels.push(next() < crate::sigmoid(-4.5 + 0.8 * need));
            rows.push(row);
        }
        let log1p = (0..16).map(|j| j % 4 == 0 || j % 4 == 3).collect();
        (rows, labels, log1p)
    }

    /// The largest difference of two models' weights and intercepts.
    fn largest_difference(a: &Logistic, b: &Logistic) -> f64 {
        a.weights
            .iter()
            .zip(&b.weights)
            .map(|(x, y)| (x - y).abs())
            .chain([(a.intercept - b.intercept).abs()])
            .fold(0.0, f64::max)
    }

    #[test]
    fn the_default_tolerance_reaches_the_tight_optimum() {
        let (rows, labels, log1p) = townlike(10_000, 3);
        let design = Design::new(&rows, &labels, &log1p).unwrap();
        for alpha in [0.1, 10.0] {
            let (tight, _) = design.fit_to(alpha, None, 1e-9, 20_000).unwrap();
            let (fast, warm) = design.fit(alpha, None).unwrap();
            let (o_tight, o_fast) = (design.objective(&tight), design.objective(&fast));
            assert!(
                (o_fast - o_tight).abs() <= 1e-6 * o_tight,
                "alpha {alpha}: objective {o_fast} against {o_tight}"
            );
            let gap = |m: &Logistic| largest_difference(m, &tight);
            assert!(
                gap(&fast) < 1e-5,
                "alpha {alpha}: coefficients {}",
                gap(&fast)
            );
            // A warm start from the solution (and from another strength's) ends at the
            // same optimum.
            let (again, _) = design.fit(alpha, Some(&warm)).unwrap();
            assert!(gap(&again) < 1e-5, "alpha {alpha}: warm {}", gap(&again));
            let (other, other_warm) = design.fit(100.0, None).unwrap();
            assert!(
                gap(&other) > 1e-3,
                "a different strength is a different optimum"
            );
            let (path, _) = design.fit(alpha, Some(&other_warm)).unwrap();
            assert!(
                gap(&path) < 1e-5,
                "alpha {alpha}: along the path {}",
                gap(&path)
            );
        }
    }

    /// Nearly collinear inputs (as income-support months and amounts are): L-BFGS stops
    /// with the objective at the optimum but coefficients off along the flat direction
    /// (3.6e-5 here); the Newton finish reaches the reference's coefficients (a tight
    /// L-BFGS fit run on by Newton to convergence) to 1e-8.
    #[test]
    fn newton_steps_finish_an_ill_conditioned_fit_at_the_optimum() {
        let mut u = uniform(11);
        let n = 20_000;
        let mut rows = Vec::with_capacity(n);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let a = u() * 4.0 - 2.0;
            let b = a + (u() - 0.5) * 1e-3;
            let c = u() * 2.0 - 1.0;
            let z = -2.0 + 0.8 * a + 0.7 * b + 0.5 * c;
            labels.push(u() < 1.0 / (1.0 + (-z).exp()));
            rows.push(vec![Some(a), Some(b), Some(c)]);
        }
        let design = Design::new(&rows, &labels, &[false; 3]).unwrap();
        let alpha = 0.01;
        let (tight, _) = design.fit_to(alpha, None, 1e-10, 200_000).unwrap();
        let mut reference = tight.clone();
        design.newton(&mut reference, 50);
        let gap = |m: &Logistic| largest_difference(m, &reference);
        let (fast, _) = design.fit(alpha, None).unwrap();
        let (exact, _) = design.fit_exact(alpha, None).unwrap();
        let (o_ref, o_fast) = (design.objective(&reference), design.objective(&fast));
        assert!(
            (o_fast - o_ref).abs() <= 1e-6 * o_ref,
            "{o_fast} against {o_ref}"
        );
        // L-BFGS alone misses "coefficients within 1e-5" here.
        assert!(gap(&fast) > 1e-5, "L-BFGS alone: {}", gap(&fast));
        assert!(gap(&exact) < 1e-8, "with Newton: {}", gap(&exact));
        // And independently of the Newton code: the tight L-BFGS fit (gradient 1e-10)
        // (itself still 8e-7 off along the flat direction) agrees with the finished model
        // far closer than with the default stop.
        let to_tight = |m: &Logistic| largest_difference(m, &tight);
        assert!(to_tight(&exact) < 2e-6, "{}", to_tight(&exact));
        assert!(to_tight(&fast) > 1e-5, "{}", to_tight(&fast));
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
