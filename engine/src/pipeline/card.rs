//! The model card: a Markdown page for people, the artifact as JSON for machines, and
//! ROC and calibration plots as SVG beside them.

use std::collections::HashMap;
use std::path::Path;

use tidig_models::features::FeatureSet;
use tidig_models::metrics;

use crate::error::EngineError;
use crate::pipeline::train::Artifact;

/// Writes `<id16>.md`, `<id16>.json` and the plots into `dir`.
pub fn write_files(
    dir: &Path,
    id: &str,
    a: &Artifact,
    set: &FeatureSet,
) -> Result<(), EngineError> {
    let write = |name: String, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| EngineError::file(&path, format!("cannot write: {e}")))
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| EngineError::file(dir, format!("cannot create: {e}")))?;
    let short = &id[..16.min(id.len())];
    write(format!("{short}.md"), &card(id, a, set))?;
    write(format!("{short}.json"), &serde_json::to_string_pretty(a)?)?;
    for (suffix, svg) in plots(a) {
        write(format!("{short}-{suffix}.svg"), &svg)?;
    }
    Ok(())
}

/// The card's plots as SVG: (file suffix, document).
pub fn plots(a: &Artifact) -> Vec<(&'static str, String)> {
    let cal: Vec<(f64, f64)> = a
        .evaluation
        .calibration
        .iter()
        .filter_map(|b| Some((b.mean_predicted?, b.observed_rate?)))
        .collect();
    vec![
        (
            "roc",
            metrics::svg_plot(
                "ROC on the holdout",
                "false-positive rate",
                "true-positive rate",
                &a.evaluation.roc,
            ),
        ),
        (
            "calibration",
            metrics::svg_plot(
                "Calibration (10 bins)",
                "mean predicted",
                "observed rate",
                &cal,
            ),
        ),
    ]
}

/// The model card as Markdown for people (the JSON card is the artifact itself).
pub fn card(id: &str, a: &Artifact, set: &FeatureSet) -> String {
    let e = &a.evaluation;
    let f = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.3}"));
    let mut md = format!(
        "# Model card: {kind} `{short}`\n\n\
         **Intended use.** Advisory ranking of children by need for early family support, \
         for caseworkers who decide; never an automated decision. Not for eligibility, \
         sanctions or any use outside the feature set's cohort ({min}–{max} years).\n\n\
         **Label.** {label} (`{label_id}`). Holdout base rate {br:.1}% ({pos} of {rows}).\n\n\
         **Data.** Feature set `{fs}` version `{fsv}`; trained on snapshots {train}, \
         evaluated on the later snapshot {hold}. Cohort: {cohort:?}.\n\n\
         ## Holdout\n\n| metric | value |\n|---|---|\n\
         | AUC | {auc} |\n| PR-AUC | {prauc} |\n| Brier | {brier:.4} |\n| log loss | {ll:.4} |\n\
         | precision at capacity ({cap}) | {prec:.3} |\n| recall at capacity | {rec:.3} |\n\n\
         ![ROC]({short16}-roc.svg) ![calibration]({short16}-calibration.svg)\n\n",
        kind = a.kind,
        short = &id[..12.min(id.len())],
        short16 = &id[..16.min(id.len())],
        min = set.cohort.min_age,
        max = set.cohort.max_age,
        label = a.label_text,
        label_id = a.label,
        br = 100.0 * e.base_rate,
        pos = e.positives,
        rows = e.rows,
        fs = a.feature_set,
        fsv = &a.feature_set_version[..12],
        train = a.train_snapshots.join(", "),
        hold = a.holdout_snapshot,
        cohort = a.cohort,
        auc = f(e.auc),
        prauc = f(e.pr_auc),
        brier = e.brier,
        ll = e.log_loss,
        cap = e.capacity,
        prec = e.precision_at_capacity,
        rec = e.recall_at_capacity,
    );
    if let Some(p) = &a.permit {
        md.push_str(&format!(
            "**Trained under secondary-use permit** `{}` (version {}): only its cohort and \
             data period were read; approval and activation are oversight's.\n\n",
            p.id, p.version
        ));
    }
    md.push_str("## Fairness (flags at capacity; small groups and rates suppressed)\n\nEach rate with its Wilson 95% interval and, in the group's row, its support (positives / negatives / flagged).\n\n| grouping | group | n (pos / neg / flagged) | selection rate | TPR | FPR | mean predicted | observed |\n|---|---|---|---|---|---|---|---|\n");
    let rate = |v: Option<f64>, ci: Option<[f64; 2]>| match (v, ci) {
        (Some(v), Some([lo, hi])) => format!("{v:.3} [{lo:.2}, {hi:.2}]"),
        (Some(v), None) => format!("{v:.3}"),
        _ => "–".to_string(),
    };
    for r in &a.fairness {
        for g in r.groups.iter().filter(|g| !g.suppressed) {
            let support = match (g.positives, g.negatives, g.flagged) {
                (Some(p), Some(n), Some(fl)) => format!("{} ({p} / {n} / {fl})", g.count),
                _ => g.count.to_string(),
            };
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.attribute,
                g.group,
                support,
                rate(g.selection_rate, g.selection_rate_ci),
                rate(g.tpr, g.tpr_ci),
                rate(g.fpr, g.fpr_ci),
                f(g.mean_predicted),
                f(g.observed_rate)
            ));
        }
        let hidden = r.groups.iter().filter(|g| g.suppressed).count();
        if hidden > 0 {
            md.push_str(&format!(
                "| {} | {hidden} group{} below the minimum size ({}) | | | | | | |\n",
                r.attribute,
                if hidden == 1 { "" } else { "s" },
                a.gate.min_group
            ));
        }
        let bounds = match (
            r.confidence,
            r.demographic_parity_ratio_bound,
            r.equalized_odds_difference_bound,
        ) {
            (Some(c), dp, eo) => format!(
                " (with {:.0}% confidence: DP ratio at most {}, EO difference at least {})",
                100.0 * c,
                f(dp),
                f(eo)
            ),
            _ => String::new(),
        };
        md.push_str(&format!(
            "| {} | **summary** | | DP ratio {} / diff {} | EO ratio {} / diff {}{} | | | |\n",
            r.attribute,
            f(r.demographic_parity_ratio),
            f(r.demographic_parity_difference),
            f(r.equalized_odds_ratio),
            f(r.equalized_odds_difference),
            bounds
        ));
    }
    md.push_str(&format!(
        "\nWhere these summaries differ from Fairlearn's: a group without positives (negatives) has no TPR (FPR) and is left out, where Fairlearn counts it as 0; suppressed groups and rates are left out too.\n\n**Gate rule:** {}.\n",
        a.gate.rule()
    ));
    md.push_str(&format!(
        "\n**Release gate:** {}.{}\n\n## Inputs\n\n",
        if a.gate_passed {
            "passed"
        } else {
            "FAILED — this model cannot be approved"
        },
        if a.gate_failures.is_empty() {
            String::new()
        } else {
            format!(" {}", a.gate_failures.join("; "))
        }
    ));
    let texts: HashMap<&str, &str> = set
        .features
        .iter()
        .map(|f| (f.id.as_str(), f.text.as_str()))
        .collect();
    md.push_str("| feature | meaning | weight (standardised) |\n|---|---|---|\n");
    for (id, w) in a.features.iter().zip(&a.model.weights) {
        md.push_str(&format!(
            "| `{id}` | {} | {w:+.3} |\n",
            texts.get(id.as_str()).unwrap_or(&"")
        ));
    }
    md.push_str("\n**Excluded and why:**\n\n");
    for (id, why) in &a.excluded_features {
        md.push_str(&format!("- `{id}`: {why}\n"));
    }
    md.push_str("\n## Challenger\n\n");
    match &a.challenger {
        Some(c) => md.push_str(&format!(
            "A {kind} ({trees} trees, depth ≤ {depth}, ≥ {leaf} rows per leaf), trained on the \
             same rows and evaluated on the same holdout at the same capacity \
             ({cap} flags):\n\n\
             | metric | this model | challenger |\n|---|---|---|\n\
             | AUC | {auc} | {cauc} |\n| PR-AUC | {prauc} | {cprauc} |\n\
             | Brier | {brier:.4} | {cbrier:.4} |\n\
             | precision at capacity | {prec:.3} | {cprec:.3} |\n\
             | recall at capacity | {rec:.3} | {crec:.3} |\n\n\
             **What the explainable model gives up:** {gap}; the challenger finds {tf:+} \
             true cases among the same number of flags, and {overlap:.0}% of its flags are \
             this model's too.\n",
            kind = c.kind,
            trees = c.params.trees,
            depth = c.params.max_depth,
            leaf = c.params.min_samples_leaf,
            cap = e.capacity,
            auc = f(e.auc),
            cauc = f(c.auc),
            prauc = f(e.pr_auc),
            cprauc = f(c.pr_auc),
            brier = e.brier,
            cbrier = c.brier,
            prec = e.precision_at_capacity,
            cprec = c.precision_at_capacity,
            rec = e.recall_at_capacity,
            crec = c.recall_at_capacity,
            gap = match c.auc_gap {
                Some(g) if g > 0.0 => format!("{g:.3} AUC"),
                Some(g) => format!("nothing in AUC (the challenger is {:.3} lower)", -g),
                None => "not measurable (one class in the holdout)".into(),
            },
            tf = c.true_flags_gap,
            overlap = 100.0 * c.flag_overlap,
        )),
        None => md.push_str("Not trained for this model (`--no-challenger`).\n"),
    }
    md.push_str(&format!(
        "\n**Hyper-parameters.** L2 alpha {} chosen by 3-fold cross-validation (folds by person) on the training window: {}.\n\n\
         **Limitations.** Trained on registry events, which reflect who was *seen* by services \
         as much as who needed help: groups reported more often (see the fairness table) get \
         higher scores at equal need. Scores are calibrated on the holdout period only.\n",
        a.model.alpha,
        a.cross_validation
            .iter()
            .map(|c| format!("alpha {} → log loss {:.4}", c.alpha, c.mean_log_loss))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    md
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tidig_models::fairness::{FairnessReport, GroupMetrics};
    use tidig_models::forest::ForestParams;
    use tidig_models::gate::Gate;
    use tidig_models::logistic::{Logistic, Scaler};
    use tidig_models::metrics::CalibrationBin;
    use tidig_models::select::CvResult;

    use super::*;
    use crate::pipeline::train::{Challenger, Evaluation};

    /// A small, fixed artifact: every section of the card has something to show.
    fn artifact(set: &FeatureSet) -> Artifact {
        let inputs: Vec<String> = set.numeric().take(3).map(|f| f.id.clone()).collect();
        let group = |name: &str, count: usize, suppressed: bool| GroupMetrics {
            group: name.into(),
            count,
            suppressed,
            selection_rate: (!suppressed).then_some(0.05),
            tpr: (!suppressed).then_some(0.4),
            fpr: (!suppressed).then_some(0.03),
            mean_predicted: (!suppressed).then_some(0.041),
            observed_rate: (!suppressed).then_some(0.039),
            positives: (!suppressed).then_some(40),
            negatives: (!suppressed).then_some(count.saturating_sub(40)),
            flagged: (!suppressed).then_some(50),
            selection_rate_ci: (!suppressed).then_some([0.04, 0.06]),
            tpr_ci: (!suppressed).then_some([0.25, 0.56]),
            fpr_ci: None,
        };
        Artifact {
            kind: "logistic".into(),
            feature_set: set.name.clone(),
            feature_set_version: "0123456789abcdef0123".into(),
            features: inputs,
            excluded_features: BTreeMap::from([(
                "mother_tongue".to_string(),
                "prohibited: an Art 9 category or proxy, never an input".to_string(),
            )]),
            label: set.label.id.clone(),
            label_text: set.label.text.clone(),
            train_snapshots: vec!["2023-01-02".into(), "2024-01-02".into()],
            holdout_snapshot: "2025-01-01".into(),
            cohort: BTreeMap::from([("holdout 2025-01-01".to_string(), 1000)]),
            model: Logistic {
                scaler: Scaler {
                    means: vec![0.0; 3],
                    scales: vec![1.0; 3],
                    log1p: vec![false; 3],
                },
                weights: vec![0.5, -0.25, 0.125],
                intercept: -3.0,
                alpha: 10.0,
                background: vec![0.0; 3],
            },
            cross_validation: vec![CvResult {
                alpha: 10.0,
                mean_log_loss: 0.1234,
                mean_auc: Some(0.77),
            }],
            evaluation: Evaluation {
                rows: 1000,
                positives: 40,
                base_rate: 0.04,
                auc: Some(0.781),
                pr_auc: Some(0.19),
                brier: 0.0351,
                log_loss: 0.1402,
                calibration: vec![CalibrationBin {
                    lower: 0.0,
                    upper: 0.1,
                    count: 900,
                    mean_predicted: Some(0.03),
                    observed_rate: Some(0.028),
                }],
                capacity: 50,
                precision_at_capacity: 0.2,
                recall_at_capacity: 0.25,
                roc: vec![(0.0, 0.0), (0.5, 0.8), (1.0, 1.0)],
            },
            fairness: vec![FairnessReport {
                attribute: "sex".into(),
                groups: vec![
                    group("F", 490, false),
                    group("M", 500, false),
                    group("X", 10, true),
                ],
                demographic_parity_difference: Some(0.01),
                demographic_parity_ratio: Some(0.9),
                equalized_odds_difference: Some(0.05),
                equalized_odds_ratio: Some(0.85),
                groups_suppressed: 1,
                confidence: Some(0.95),
                demographic_parity_ratio_bound: Some(1.0),
                equalized_odds_difference_bound: Some(0.0),
            }],
            challenger: Some(Challenger {
                kind: "random forest".into(),
                params: ForestParams::default(),
                auc: Some(0.77),
                pr_auc: Some(0.18),
                brier: 0.0355,
                precision_at_capacity: 0.18,
                recall_at_capacity: 0.225,
                auc_gap: Some(-0.011),
                true_flags_gap: -1,
                flag_overlap: 0.8,
            }),
            gate: Gate::default(),
            gate_passed: true,
            gate_failures: Vec::new(),
            code_version: "0.1.0".into(),
            drift: None,
            permit: None,
        }
    }

    #[test]
    fn the_model_card_renders_every_section() {
        let set = tidig_models::features::child_family().unwrap_or_else(|e| panic!("{e}"));
        let a = artifact(&set);
        let md = card("fedcba9876543210fedcba9876543210", &a, &set);
        expect_test::expect_file!["snapshots/model_card.md"].assert_eq(&md);
    }
}
