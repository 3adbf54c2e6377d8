//! The challenger: a random forest from another model family (smartcore), trained on the
//! same rows and compared on the same holdout at the same flag rate, so the model card can
//! say what the explainable logistic model gives up.
//!
//! smartcore's forest *classifier* only votes hard labels, which cannot rank persons. A
//! regression forest on the 0/1 label estimates the probability directly (each leaf holds
//! the share of positives among its training rows), so that is what is fitted. Missing
//! values become [`MISSING`]: every feature is non-negative, so a tree can split the
//! missing rows off on their own.

use serde::{Deserialize, Serialize};
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor, RandomForestRegressorParameters,
};
use smartcore::linalg::basic::matrix::DenseMatrix;

use crate::logistic::TrainError;

/// The value that stands for a missing feature on the forest's input scale.
pub const MISSING: f64 = -1.0;

/// The forest's hyper-parameters, recorded in the artifact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForestParams {
    pub trees: usize,
    pub max_depth: u16,
    pub min_samples_leaf: usize,
    /// Features tried per split (`None`: the square root of the width).
    pub features_per_split: Option<usize>,
    pub seed: u64,
}

impl Default for ForestParams {
    fn default() -> ForestParams {
        ForestParams {
            trees: 60,
            max_depth: 10,
            min_samples_leaf: 25,
            features_per_split: None,
            seed: 7,
        }
    }
}

/// A fitted probability forest.
pub struct Forest {
    inner: RandomForestRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>,
    width: usize,
}

impl std::fmt::Debug for Forest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forest")
            .field("width", &self.width)
            .finish()
    }
}

fn matrix(rows: &[Vec<Option<f64>>], width: usize) -> Result<DenseMatrix<f64>, TrainError> {
    let mut values = Vec::with_capacity(rows.len() * width);
    for r in rows {
        if r.len() != width {
            return Err(TrainError::Shape {
                expected: width,
                found: r.len(),
            });
        }
        values.extend(r.iter().map(|v| v.unwrap_or(MISSING)));
    }
    // Row-major layout: `column_major = false`.
    DenseMatrix::new(rows.len(), width, values, false).map_err(|e| TrainError::Fit(e.to_string()))
}

impl Forest {
    /// Fits the forest on `rows` (feature values, `None` for missing) and 0/1 `labels`.
    pub fn fit(
        rows: &[Vec<Option<f64>>],
        labels: &[bool],
        params: &ForestParams,
    ) -> Result<Forest, TrainError> {
        let positives = labels.iter().filter(|l| **l).count();
        if positives == 0 || positives == labels.len() {
            return Err(TrainError::OneClass {
                rows: labels.len(),
                positives,
            });
        }
        let width = rows.first().map_or(0, Vec::len);
        let x = matrix(rows, width)?;
        let y: Vec<f64> = labels.iter().map(|&l| f64::from(u8::from(l))).collect();
        let mut p = RandomForestRegressorParameters::default()
            .with_n_trees(params.trees)
            .with_max_depth(params.max_depth)
            .with_min_samples_leaf(params.min_samples_leaf)
            .with_min_samples_split(2 * params.min_samples_leaf)
            .with_seed(params.seed);
        if let Some(m) = params.features_per_split {
            p = p.with_m(m);
        }
        let inner =
            RandomForestRegressor::fit(&x, &y, p).map_err(|e| TrainError::Fit(e.to_string()))?;
        Ok(Forest { inner, width })
    }

    /// The estimated probability for each row.
    pub fn probabilities(&self, rows: &[Vec<Option<f64>>]) -> Result<Vec<f64>, TrainError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let x = matrix(rows, self.width)?;
        let p = self
            .inner
            .predict(&x)
            .map_err(|e| TrainError::Fit(e.to_string()))?;
        Ok(p.into_iter().map(|v| v.clamp(0.0, 1.0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::auc;

    /// A planted interaction a linear model cannot represent (positive only when both
    /// inputs are high, or when the first is missing): the forest must rank it well.
    #[test]
    fn forest_learns_an_interaction_and_missingness() {
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..4000 {
            let a = next() * 10.0;
            let b = next() * 10.0;
            let missing = next() < 0.1;
            let positive = (a > 6.0 && b > 6.0) || missing;
            let noise = next() < 0.05;
            rows.push(vec![(!missing).then_some(a), Some(b), Some(next())]);
            labels.push(positive != noise);
        }
        let (train, test) = rows.split_at(3000);
        let (ltrain, ltest) = labels.split_at(3000);
        let forest = Forest::fit(train, ltrain, &ForestParams::default()).unwrap();
        let p = forest.probabilities(test).unwrap();
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
        let a = auc(&p, ltest).unwrap();
        assert!(a > 0.9, "forest AUC {a}");
    }

    #[test]
    fn one_class_and_ragged_rows_are_refused() {
        let rows = vec![vec![Some(1.0)], vec![Some(2.0)]];
        assert!(matches!(
            Forest::fit(&rows, &[false, false], &ForestParams::default()),
            Err(TrainError::OneClass { .. })
        ));
        let ragged = vec![vec![Some(1.0)], vec![Some(2.0), None]];
        assert!(matches!(
            Forest::fit(&ragged, &[true, false], &ForestParams::default()),
            Err(TrainError::Shape { .. })
        ));
    }
}
