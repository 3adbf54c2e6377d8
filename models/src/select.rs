//! Choosing the L2 strength by cross-validation on the training window.

use serde::{Deserialize, Serialize};

use crate::logistic::{fit, Logistic, TrainError};
use crate::metrics::{auc, log_loss};

/// One candidate's cross-validated figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CvResult {
    pub alpha: f64,
    pub mean_log_loss: f64,
    pub mean_auc: Option<f64>,
}

/// K-fold cross-validation over `alphas` (folds by `fold_of`, e.g. a hash of the person so
/// that one person's snapshots stay in one fold); returns the model refitted on all rows
/// with the alpha of the lowest mean log loss, and every candidate's figures.
pub fn cross_validate(
    rows: &[Vec<Option<f64>>],
    labels: &[bool],
    fold_of: &[usize],
    folds: usize,
    alphas: &[f64],
    log1p: &[bool],
) -> Result<(Logistic, Vec<CvResult>), TrainError> {
    let mut results = Vec::new();
    for &alpha in alphas {
        let (mut losses, mut aucs) = (Vec::new(), Vec::new());
        for k in 0..folds {
            let (mut tr, mut trl, mut te, mut tel) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (i, row) in rows.iter().enumerate() {
                if fold_of[i] % folds == k {
                    te.push(row.clone());
                    tel.push(labels[i]);
                } else {
                    tr.push(row.clone());
                    trl.push(labels[i]);
                }
            }
            let Ok(m) = fit(&tr, &trl, alpha, log1p) else {
                continue;
            };
            let p: Vec<f64> = te.iter().map(|r| m.probability(r)).collect();
            losses.push(log_loss(&p, &tel));
            if let Some(a) = auc(&p, &tel) {
                aucs.push(a);
            }
        }
        if losses.is_empty() {
            continue;
        }
        results.push(CvResult {
            alpha,
            mean_log_loss: losses.iter().sum::<f64>() / losses.len() as f64,
            mean_auc: (!aucs.is_empty()).then(|| aucs.iter().sum::<f64>() / aucs.len() as f64),
        });
    }
    let best = results
        .iter()
        .min_by(|a, b| a.mean_log_loss.total_cmp(&b.mean_log_loss))
        .map_or(1.0, |r| r.alpha);
    Ok((fit(rows, labels, best, log1p)?, results))
}
