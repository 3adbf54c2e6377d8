//! Choosing the L2 strength by cross-validation on the training window.

use serde::{Deserialize, Serialize};

use crate::logistic::{Design, Logistic, TrainError, WarmStart};
use crate::metrics::{auc, log_loss};

/// One candidate's cross-validated figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CvResult {
    pub alpha: f64,
    pub mean_log_loss: f64,
    pub mean_auc: Option<f64>,
}

/// One fold's fit at one strength: held-out log loss and AUC, and the solution.
type FoldFit = (f64, Option<f64>, WarmStart);

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
    // The strongest penalty first: each fit of a fold starts from the one before it on
    // the same standardised rows (a warm start along the L2 path). Folds are independent
    // and run on the available cores.
    let mut order: Vec<usize> = (0..alphas.len()).collect();
    order.sort_by(|&a, &b| alphas[b].total_cmp(&alphas[a]));
    let fold = |k: usize| -> Vec<Option<FoldFit>> {
        let (mut tr, mut trl, mut te, mut tel) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, row) in rows.iter().enumerate() {
            if fold_of[i] % folds == k {
                te.push(row.as_slice());
                tel.push(labels[i]);
            } else {
                tr.push(row.clone());
                trl.push(labels[i]);
            }
        }
        let mut out = vec![None; alphas.len()];
        let Ok(design) = Design::new(&tr, &trl, log1p) else {
            return out;
        };
        let mut warm: Option<WarmStart> = None;
        for &a in &order {
            let Ok((m, w)) = design.fit(alphas[a], warm.as_ref()) else {
                continue;
            };
            let p: Vec<f64> = te.iter().map(|r| m.probability(r)).collect();
            out[a] = Some((log_loss(&p, &tel), auc(&p, &tel), w.clone()));
            warm = Some(w);
        }
        out
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(folds.max(1));
    let mut per_fold: Vec<Vec<Option<FoldFit>>> = vec![Vec::new(); folds];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let fold = &fold;
                scope.spawn(move || {
                    (0..folds)
                        .filter(|k| k % workers == w)
                        .map(|k| (k, fold(k)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            // A worker that panicked loses its folds; the candidates are then judged on
            // the folds that remain.
            if let Ok(done) = h.join() {
                for (k, o) in done {
                    per_fold[k] = o;
                }
            }
        }
    });
    let mut results = Vec::new();
    for (a, &alpha) in alphas.iter().enumerate() {
        let (mut losses, mut aucs) = (Vec::new(), Vec::new());
        for outcome in per_fold.iter().filter_map(|f| f.get(a)).flatten() {
            losses.push(outcome.0);
            if let Some(v) = outcome.1 {
                aucs.push(v);
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
    let (best, at) = results
        .iter()
        .min_by(|a, b| a.mean_log_loss.total_cmp(&b.mean_log_loss))
        .map_or((1.0, None), |r| {
            (r.alpha, alphas.iter().position(|a| *a == r.alpha))
        });
    // The final fit starts from a fold's solution at the chosen strength and is finished
    // by Newton steps (cross-validation only compares strengths; the kept model must be
    // the optimum).
    let warm = at.and_then(|a| {
        per_fold
            .iter()
            .find_map(|f| f.get(a).cloned().flatten().map(|o| o.2))
    });
    let design = Design::new(rows, labels, log1p)?;
    Ok((design.fit_exact(best, warm.as_ref())?.0, results))
}
