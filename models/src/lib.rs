//! Pure model training, scoring and explanation (linfa, smartcore).
//!
//! Architecture invariant: this crate takes feature matrices and returns models, scores
//! and explanations as values; it never reads the store or the network.

pub mod drift;
pub mod fairness;
pub mod features;
pub mod forest;
pub mod gate;
pub mod logistic;
pub mod metrics;
pub mod research;
pub mod select;

/// The logistic function: log-odds to probability.
pub fn sigmoid(log_odds: f64) -> f64 {
    1.0 / (1.0 + (-log_odds).exp())
}

/// The inverse of [`sigmoid`], clamped away from 0 and 1.
pub fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-15, 1.0 - 1e-15);
    (p / (1.0 - p)).ln()
}

#[cfg(test)]
mod tests {
    #[test]
    fn logit_inverts_sigmoid() {
        for x in [-20.0, -3.0, 0.0, 0.5, 7.0] {
            assert!((super::logit(super::sigmoid(x)) - x).abs() < 1e-6, "{x}");
        }
    }
}
