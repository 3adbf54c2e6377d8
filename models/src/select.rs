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
    // Every (alpha, fold) fit is independent: run them on the available cores.
    let jobs: Vec<(usize, usize)> = (0..alphas.len())
        .flat_map(|a| (0..folds).map(move |k| (a, k)))
        .collect();
    let fit_one = |&(a, k): &(usize, usize)| -> Option<(f64, Option<f64>)> {
        let (mut tr, mut trl, mut te, mut tel) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, row) in rows.iter().enumerate() {
            if fold_of[i] % folds == k {
                te.push(row.clone());
                tel.push(labels[i]);
            } else {
                tr.push(row.clone());
                trl.push(labels[i]);
            }
        }
        let m = fit(&tr, &trl, alphas[a], log1p).ok()?;
        let p: Vec<f64> = te.iter().map(|r| m.probability(r)).collect();
        Some((log_loss(&p, &tel), auc(&p, &tel)))
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs.len().max(1));
    let mut outcomes: Vec<Option<(f64, Option<f64>)>> = vec![None; jobs.len()];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let jobs = &jobs;
                let fit_one = &fit_one;
                scope.spawn(move || {
                    jobs.iter()
                        .enumerate()
                        .filter(|(i, _)| i % workers == w)
                        .map(|(i, job)| (i, fit_one(job)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            // A worker that panicked loses its folds; the candidates are then judged on
            // the folds that remain.
            if let Ok(done) = h.join() {
                for (i, o) in done {
                    outcomes[i] = o;
                }
            }
        }
    });
    let mut results = Vec::new();
    for (a, &alpha) in alphas.iter().enumerate() {
        let (mut losses, mut aucs) = (Vec::new(), Vec::new());
        for (j, &(ja, _)) in jobs.iter().enumerate() {
            if ja != a {
                continue;
            }
            if let Some((loss, auc)) = outcomes[j] {
                losses.push(loss);
                if let Some(v) = auc {
                    aucs.push(v);
                }
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
