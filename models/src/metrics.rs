//! Evaluation metrics on a holdout: ranking (AUC, PR-AUC), probability quality (Brier,
//! log loss, calibration) and operating point (precision and recall at capacity).

use serde::{Deserialize, Serialize};

/// ROC AUC (ties count one half), or `None` with a single class.
pub fn auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let pos = labels.iter().filter(|l| **l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    // Sum of positive ranks with average ranks for ties (Mann–Whitney U).
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in &idx[i..=j] {
            if labels[*k] {
                rank_sum += avg;
            }
        }
        i = j + 1;
    }
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// Average precision (area under the precision–recall curve, step-wise as scikit-learn's
/// `average_precision_score`).
pub fn pr_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let pos = labels.iter().filter(|l| **l).count();
    if pos == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    let (mut tp, mut fp, mut ap, mut last_recall) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        for k in &idx[i..=j] {
            if labels[*k] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
        }
        let recall = tp / pos as f64;
        let precision = tp / (tp + fp);
        ap += (recall - last_recall) * precision;
        last_recall = recall;
        i = j + 1;
    }
    Some(ap)
}

pub fn brier(p: &[f64], labels: &[bool]) -> f64 {
    let n = p.len().max(1) as f64;
    p.iter()
        .zip(labels)
        .map(|(p, y)| (p - *y as u8 as f64).powi(2))
        .sum::<f64>()
        / n
}

pub fn log_loss(p: &[f64], labels: &[bool]) -> f64 {
    let n = p.len().max(1) as f64;
    -p.iter()
        .zip(labels)
        .map(|(p, y)| {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            if *y {
                p.ln()
            } else {
                (1.0 - p).ln()
            }
        })
        .sum::<f64>()
        / n
}

/// One calibration bin: mean predicted vs observed rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    pub mean_predicted: Option<f64>,
    pub observed_rate: Option<f64>,
}

/// Ten equal-width probability bins.
pub fn calibration(p: &[f64], labels: &[bool], bins: usize) -> Vec<CalibrationBin> {
    let mut out: Vec<(usize, f64, usize)> = vec![(0, 0.0, 0); bins];
    for (p, y) in p.iter().zip(labels) {
        let b = ((p * bins as f64) as usize).min(bins - 1);
        out[b].0 += 1;
        out[b].1 += p;
        out[b].2 += *y as usize;
    }
    out.into_iter()
        .enumerate()
        .map(|(i, (n, sp, sy))| CalibrationBin {
            lower: i as f64 / bins as f64,
            upper: (i + 1) as f64 / bins as f64,
            count: n,
            mean_predicted: (n > 0).then(|| sp / n as f64),
            observed_rate: (n > 0).then(|| sy as f64 / n as f64),
        })
        .collect()
}

/// The `k` highest scores flagged (ties broken by order): precision and recall.
pub fn at_capacity(scores: &[f64], labels: &[bool], k: usize) -> (f64, f64) {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b)));
    let k = k.min(idx.len());
    let tp = idx[..k].iter().filter(|i| labels[**i]).count() as f64;
    let pos = labels.iter().filter(|l| **l).count() as f64;
    (
        if k == 0 { 0.0 } else { tp / k as f64 },
        if pos == 0.0 { 0.0 } else { tp / pos },
    )
}

/// The flags of the top `k` scores.
pub fn flag_top(scores: &[f64], k: usize) -> Vec<bool> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b)));
    let mut flags = vec![false; scores.len()];
    for i in idx.into_iter().take(k) {
        flags[i] = true;
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        let s = [0.1, 0.4, 0.35, 0.8];
        let y = [false, false, true, true];
        // Pairs (pos, neg): (0.35,0.1) ok, (0.35,0.4) wrong, (0.8,·) ok twice → 3/4.
        assert_eq!(auc(&s, &y), Some(0.75));
        // Ranked: 0.8 (P) p=1 r=.5; 0.4 (N); 0.35 (P) p=2/3 r=1 → .5*1 + .5*2/3.
        assert!((pr_auc(&s, &y).unwrap() - (0.5 + 1.0 / 3.0)).abs() < 1e-12);
        assert!((brier(&s, &y) - (0.01 + 0.16 + 0.4225 + 0.04) / 4.0).abs() < 1e-12);
        assert_eq!(at_capacity(&s, &y, 2), (0.5, 0.5));
        assert_eq!(auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(auc(&[0.5], &[true]), None);
        let cal = calibration(&s, &y, 10);
        assert_eq!(cal[3].count, 1);
        assert_eq!(cal[8].observed_rate, Some(1.0));
        assert!((log_loss(&[0.5, 0.5], &[true, false]) - std::f64::consts::LN_2).abs() < 1e-12);
    }
}

/// Points of the ROC curve (false-positive rate, true-positive rate), thinned to at most
/// `max_points` evenly spaced thresholds plus both ends.
pub fn roc_curve(scores: &[f64], labels: &[bool], max_points: usize) -> Vec<(f64, f64)> {
    let pos = labels.iter().filter(|l| **l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return Vec::new();
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    let step = (idx.len() / max_points.max(1)).max(1);
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut out = vec![(0.0, 0.0)];
    for (n, i) in idx.iter().enumerate() {
        if labels[*i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        if (n + 1) % step == 0 {
            out.push((fp / neg, tp / pos));
        }
    }
    out.push((1.0, 1.0));
    out
}

/// A square SVG line chart of `points` in the unit square, with the diagonal for
/// reference: used for the ROC and calibration plots of model cards.
pub fn svg_plot(title: &str, x_label: &str, y_label: &str, points: &[(f64, f64)]) -> String {
    let size = 320.0;
    let pad = 40.0;
    let px = |x: f64| pad + x.clamp(0.0, 1.0) * (size - 2.0 * pad);
    let py = |y: f64| size - pad - y.clamp(0.0, 1.0) * (size - 2.0 * pad);
    let path: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
        .collect();
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 {size} {size}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="{cx}" y="18" text-anchor="middle" font-size="13">{title}</text>
<rect x="{pad}" y="{pad}" width="{w}" height="{w}" fill="none" stroke="#999"/>
<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#bbb" stroke-dasharray="4 3"/>
<polyline points="{path}" fill="none" stroke="#1f5fa8" stroke-width="2"/>
<text x="{cx}" y="{xl}" text-anchor="middle">{xlab}</text>
<text x="12" y="{cx}" text-anchor="middle" transform="rotate(-90 12 {cx})">{ylab}</text>
</svg>
"##,
        cx = size / 2.0,
        w = size - 2.0 * pad,
        x0 = px(0.0),
        y0 = py(0.0),
        x1 = px(1.0),
        y1 = py(1.0),
        path = path.join(" "),
        xl = size - 10.0,
        title = escape(title),
        xlab = escape(x_label),
        ylab = escape(y_label),
    )
}

#[cfg(test)]
mod curve_tests {
    use super::*;

    #[test]
    fn roc_runs_from_corner_to_corner_and_plots_render() {
        let s = [0.9, 0.8, 0.7, 0.2];
        let y = [true, false, true, false];
        let roc = roc_curve(&s, &y, 10);
        assert_eq!(roc.first(), Some(&(0.0, 0.0)));
        assert_eq!(roc.last(), Some(&(1.0, 1.0)));
        assert!(roc.contains(&(0.5, 1.0)));
        let svg = svg_plot("ROC <holdout>", "FPR", "TPR", &roc);
        assert!(
            svg.starts_with("<svg") && svg.contains("&lt;holdout&gt;") && svg.contains("polyline")
        );
    }
}
