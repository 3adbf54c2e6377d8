//! Population drift: the population stability index (PSI) of a feature or the score
//! against the distribution the model was trained on.
//!
//! The bins are fixed at training ([`Bins::fit`]: deciles of the training values, equal
//! edges merged, plus one bin for missing values) and stored in the model's artifact, so
//! that every scoring run is compared with the same reference. PSI =
//! Σ (aᵢ − eᵢ) · ln(aᵢ / eᵢ) over the bins, with shares below 0.0001 raised to 0.0001
//! (an empty bin would otherwise make it infinite). Above [`WARN`] (0.25) the population
//! has shifted enough that the model's estimates should not be trusted without review;
//! 0.1–0.25 is a moderate shift.

use serde::{Deserialize, Serialize};

/// The PSI above which a run warns.
pub const WARN: f64 = 0.25;

/// The smallest share a bin counts with.
const FLOOR: f64 = 1e-4;

/// A fixed binning and the training distribution over it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bins {
    /// Upper bounds (inclusive) of every bin but the last, ascending.
    pub edges: Vec<f64>,
    /// The training share of each bin: `edges.len() + 1` value bins, then missing.
    pub expected: Vec<f64>,
}

impl Bins {
    /// Deciles of the present values (equal edges merged); missing values get a bin of
    /// their own.
    pub fn fit(values: &[Option<f64>]) -> Bins {
        let mut present: Vec<f64> = values
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        present.sort_by(f64::total_cmp);
        let mut edges: Vec<f64> = Vec::new();
        if !present.is_empty() {
            for k in 1..10 {
                let e = present[(present.len() * k / 10).min(present.len() - 1)];
                if edges.last() != Some(&e) && present.last() != Some(&e) {
                    edges.push(e);
                }
            }
        }
        let mut bins = Bins {
            edges,
            expected: Vec::new(),
        };
        bins.expected = bins.shares(values);
        bins
    }

    fn bin(&self, v: Option<f64>) -> usize {
        match v.filter(|v| v.is_finite()) {
            None => self.edges.len() + 1,
            Some(v) => self.edges.partition_point(|e| *e < v),
        }
    }

    /// The share of `values` in each bin (missing last).
    pub fn shares(&self, values: &[Option<f64>]) -> Vec<f64> {
        let mut counts = vec![0u64; self.edges.len() + 2];
        for v in values {
            counts[self.bin(*v)] += 1;
        }
        let n = values.len().max(1) as f64;
        counts.into_iter().map(|c| c as f64 / n).collect()
    }

    /// The PSI of `values` against the training distribution.
    pub fn psi(&self, values: &[Option<f64>]) -> f64 {
        psi(&self.expected, &self.shares(values))
    }
}

/// The PSI of `actual` shares against `expected` shares over the same bins.
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    expected
        .iter()
        .zip(actual)
        .map(|(e, a)| {
            let (e, a) = (e.max(FLOOR), a.max(FLOOR));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// The reference a model's artifact keeps: one binning per input (in the model's input
/// order) and one of the score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftReference {
    pub features: Vec<Bins>,
    pub score: Bins,
}

impl DriftReference {
    /// The reference of training `rows` (inputs in model order) and their `scores`.
    pub fn fit(rows: &[Vec<Option<f64>>], scores: &[f64]) -> DriftReference {
        let width = rows.first().map_or(0, Vec::len);
        DriftReference {
            features: (0..width)
                .map(|j| {
                    Bins::fit(
                        &rows
                            .iter()
                            .map(|r| r.get(j).copied().flatten())
                            .collect::<Vec<_>>(),
                    )
                })
                .collect(),
            score: Bins::fit(&scores.iter().map(|s| Some(*s)).collect::<Vec<_>>()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_matches_a_value_computed_by_hand() {
        // Bins 0.5/0.5 against 0.3/0.7: (0.3−0.5)·ln(0.3/0.5) + (0.7−0.5)·ln(0.7/0.5)
        // = 0.2·0.510826 + 0.2·0.336472 = 0.169460.
        let v = psi(&[0.5, 0.5], &[0.3, 0.7]);
        assert!((v - 0.169_459_6).abs() < 1e-6, "{v}");
        assert_eq!(psi(&[0.2, 0.8], &[0.2, 0.8]), 0.0);
        // An empty bin counts as 0.0001, not as infinity.
        assert!(psi(&[0.0, 1.0], &[0.5, 0.5]).is_finite());
    }

    #[test]
    fn the_same_population_does_not_drift_and_a_shifted_one_does() {
        let train: Vec<Option<f64>> = (0..1000).map(|i| Some((i % 100) as f64)).collect();
        let bins = Bins::fit(&train);
        assert_eq!(bins.edges.len(), 9);
        assert_eq!(bins.expected.len(), 11);
        assert!(bins.psi(&train) < 1e-12);
        let shifted: Vec<Option<f64>> = (0..1000).map(|i| Some((i % 100) as f64 + 30.0)).collect();
        assert!(bins.psi(&shifted) > WARN, "{}", bins.psi(&shifted));
        // Values turning missing is drift too.
        let missing: Vec<Option<f64>> = (0..1000)
            .map(|i| (i % 2 == 0).then_some((i % 100) as f64))
            .collect();
        assert!(bins.psi(&missing) > WARN);
    }

    #[test]
    fn a_mostly_zero_count_keeps_a_few_bins() {
        let train: Vec<Option<f64>> = (0..1000)
            .map(|i| Some(if i % 10 == 0 { 2.0 } else { 0.0 }))
            .collect();
        let bins = Bins::fit(&train);
        assert_eq!(bins.edges, [0.0]);
        assert!((bins.expected[0] - 0.9).abs() < 1e-12 && (bins.expected[1] - 0.1).abs() < 1e-12);
    }
}
