//! `tidig train --as-of DATE`: a time-split training run that ends in a registered,
//! content-hashed model artifact and a model card.
//!
//! The holdout is the snapshot one horizon before the as-of date (its labels are observed
//! by the as-of date); training uses the snapshots one and two horizons before that, so
//! no training label overlaps the holdout period. Standardisation is fitted on the
//! training rows only, the L2 strength by cross-validation within them (folds by person).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tidig_models::fairness::{self, FairnessReport};
use tidig_models::features::{FeatureSet, Sensitivity};
use tidig_models::forest::{Forest, ForestParams};
use tidig_models::logistic::Logistic;
use tidig_models::metrics::{self, CalibrationBin};
use tidig_models::select::{cross_validate, CvResult};

use crate::features::{build, load_vectors};
use crate::store::{now, Store};

/// Release-gate thresholds (a model that fails them cannot be approved).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gate {
    pub min_demographic_parity_ratio: f64,
    pub max_equalized_odds_difference: f64,
    pub min_auc: f64,
    /// Groups smaller than this are suppressed in fairness reports.
    pub min_group: usize,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            min_demographic_parity_ratio: 0.8,
            max_equalized_odds_difference: 0.2,
            min_auc: 0.65,
            min_group: 20,
        }
    }
}

/// Holdout figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Evaluation {
    pub rows: usize,
    pub positives: usize,
    pub base_rate: f64,
    pub auc: Option<f64>,
    pub pr_auc: Option<f64>,
    pub brier: f64,
    pub log_loss: f64,
    pub calibration: Vec<CalibrationBin>,
    /// Flags available per holdout snapshot (the top-k the units can act on).
    pub capacity: usize,
    pub precision_at_capacity: f64,
    pub recall_at_capacity: f64,
    /// ROC curve points (FPR, TPR), thinned, for the card's plot.
    pub roc: Vec<(f64, f64)>,
}

/// Everything a model is, as a persisted artifact.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Artifact {
    pub kind: String,
    pub feature_set: String,
    pub feature_set_version: String,
    pub features: Vec<String>,
    /// Declared features that are not inputs, and why.
    pub excluded_features: BTreeMap<String, String>,
    pub label: String,
    pub label_text: String,
    pub train_snapshots: Vec<String>,
    pub holdout_snapshot: String,
    pub cohort: BTreeMap<String, usize>,
    pub model: Logistic,
    pub cross_validation: Vec<CvResult>,
    pub evaluation: Evaluation,
    pub fairness: Vec<FairnessReport>,
    /// The challenger from another model family, on the same holdout at the same flag
    /// rate (absent when training was asked to skip it).
    #[serde(default)]
    pub challenger: Option<Challenger>,
    pub gate: Gate,
    pub gate_passed: bool,
    pub gate_failures: Vec<String>,
    pub code_version: String,
}

impl Artifact {
    /// The content hash: the model's id.
    pub fn hash(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&canonical))
    }
}

/// The challenger's figures beside the default model's.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Challenger {
    pub kind: String,
    pub params: ForestParams,
    pub auc: Option<f64>,
    pub pr_auc: Option<f64>,
    pub brier: f64,
    pub precision_at_capacity: f64,
    pub recall_at_capacity: f64,
    /// Challenger AUC minus the default model's: what the explainable model gives up
    /// (negative: the default model ranks better).
    pub auc_gap: Option<f64>,
    /// Positives among the challenger's flags minus among the default model's, at the same
    /// capacity.
    pub true_flags_gap: i64,
    /// Share of the default model's flags the challenger flags too.
    pub flag_overlap: f64,
}

/// A training run's result.
#[derive(Clone, Debug, Serialize)]
pub struct TrainReport {
    pub model_id: String,
    pub state: String,
    pub seconds: f64,
    /// The challenger's training time (kept out of the artifact, whose hash must not
    /// depend on how fast the machine was).
    pub challenger_seconds: Option<f64>,
    pub artifact: Artifact,
}

type Snapshot = (
    Vec<i64>,
    Vec<Vec<Option<f64>>>,
    Vec<bool>,
    Vec<BTreeMap<String, Option<String>>>,
);

/// The eligibility rules (`train_on`) applied to every person of every snapshot.
struct Screen<'p> {
    ev: tidig_governance::Evaluator<'p>,
    model: tidig_governance::eval::ModelFacts,
    deployment: tidig_governance::eval::Deployment,
    objectors: std::collections::HashSet<i64>,
    births: HashMap<i64, i64>,
    /// Person-snapshots left out, per deciding rule.
    excluded: BTreeMap<String, usize>,
}

impl Screen<'_> {
    fn allows(&mut self, pid: i64, on: NaiveDate) -> bool {
        let age = self
            .births
            .get(&pid)
            .and_then(|b| crate::score::date_of(*b))
            .map_or(-1, |b| crate::score::age_years(b, on));
        let d = self
            .ev
            .decide(tidig_governance::Request::TrainOn {
                model: self.model.clone(),
                person: tidig_governance::eval::PersonFacts {
                    age,
                    objection: self.objectors.contains(&pid),
                },
                deployment: self.deployment.clone(),
            })
            .clone();
        if !d.allowed {
            crate::score::count_deny(&mut self.excluded, &d);
        }
        d.allowed
    }
}

/// Loads (building if needed) one snapshot's labelled vectors of the persons the
/// eligibility rules let training use.
async fn snapshot(
    store: &Store,
    set: &FeatureSet,
    as_of: NaiveDate,
    screen: &mut Screen<'_>,
) -> Result<Snapshot> {
    let version = set.hash();
    let mut vectors = load_vectors(store, &version, as_of).await?;
    // Build when missing, and rebuild when labels were unobserved then: data may have
    // arrived since.
    if vectors.is_empty() || vectors.values().any(|v| v.2.is_none()) {
        build(store, set, as_of, &indicatif::ProgressBar::hidden()).await?;
        vectors = load_vectors(store, &version, as_of).await?;
    }
    let mut out: Snapshot = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (pid, (vals, prot, label)) in vectors {
        let Some(label) = label else {
            bail!(
                "the label of the {as_of} snapshot is not observed yet: choose an earlier --as-of"
            );
        };
        if !screen.allows(pid, as_of) {
            continue;
        }
        out.0.push(pid);
        out.1.push(vals);
        out.2.push(label > 0.5);
        out.3.push(prot);
    }
    Ok(out)
}

pub async fn objections(store: &Store) -> Result<std::collections::HashSet<i64>> {
    let sql = "SELECT person_id FROM objections";
    let ids: Vec<i64> = match store {
        Store::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await?,
        Store::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await?,
    };
    Ok(ids.into_iter().collect())
}

/// The fairness groupings reported: single attributes and sex × mother tongue.
fn groupings(prot: &[BTreeMap<String, Option<String>>]) -> Vec<(String, Vec<String>)> {
    let get = |m: &BTreeMap<String, Option<String>>, k: &str| {
        m.get(k)
            .cloned()
            .flatten()
            .unwrap_or_else(|| "unknown".into())
    };
    let tongue = |m: &BTreeMap<String, Option<String>>| match get(m, "mother_tongue").as_str() {
        "fi" | "sv" => "fi/sv".to_string(),
        "unknown" => "unknown".to_string(),
        _ => "other".to_string(),
    };
    vec![
        ("sex".into(), prot.iter().map(|m| get(m, "sex")).collect()),
        ("mother_tongue".into(), prot.iter().map(tongue).collect()),
        (
            "citizenship".into(),
            prot.iter()
                .map(|m| {
                    if get(m, "citizenship") == "fi" {
                        "fi".into()
                    } else {
                        "other".into()
                    }
                })
                .collect(),
        ),
        (
            "municipality".into(),
            prot.iter().map(|m| get(m, "municipality")).collect(),
        ),
        (
            "sex x mother_tongue".into(),
            prot.iter()
                .map(|m| format!("{} x {}", get(m, "sex"), tongue(m)))
                .collect(),
        ),
    ]
}

/// How a model is trained, and under which rules.
#[derive(Clone, Copy, Debug)]
pub struct TrainConfig<'a> {
    /// Share of the holdout the units can act on (flags at capacity).
    pub capacity_share: f64,
    pub gate: &'a Gate,
    /// The challenger's parameters; `None` skips it.
    pub challenger: Option<&'a ForestParams>,
    /// The rule pack and deployment: the data-stage rules decide the inputs, the
    /// eligibility rules (`train_on`) whose data may be used.
    pub pack: &'a tidig_governance::RulePack,
    pub deployment: &'a tidig_governance::eval::Deployment,
    pub who: &'a str,
}

/// Trains, evaluates and registers a model.
pub async fn train(
    store: &Store,
    set: &FeatureSet,
    as_of: NaiveDate,
    config: &TrainConfig<'_>,
) -> Result<TrainReport> {
    let TrainConfig {
        capacity_share,
        gate,
        challenger,
        pack,
        deployment,
        who,
    } = *config;
    let started = Instant::now();
    // Inputs: the numeric features, each allowed by the data-stage rules.
    let inputs: Vec<&tidig_models::features::FeatureDef> = set.numeric().collect();
    let candidate = tidig_governance::eval::ModelFacts {
        id: "candidate".into(),
        kind: "logistic".into(),
        feature_set: set.name.clone(),
    };
    let ids: Vec<String> = inputs.iter().map(|f| f.id.clone()).collect();
    crate::rules::check_inputs(pack, deployment, &candidate, set, &ids)
        .context("training refused")?;
    let mut screen = Screen {
        ev: tidig_governance::Evaluator::new(pack),
        model: candidate,
        deployment: deployment.clone(),
        objectors: objections(store).await?,
        births: crate::score::births(store).await?,
        excluded: BTreeMap::new(),
    };
    let horizon = Duration::days(set.label.horizon_days as i64);
    let holdout = as_of - horizon;
    let train_dates = [holdout - horizon - horizon, holdout - horizon];
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    let mut folds = Vec::new();
    let mut cohort = BTreeMap::new();
    for d in train_dates {
        let (ids, r, l, _) = snapshot(store, set, d, &mut screen).await?;
        cohort.insert(format!("train {d}"), ids.len());
        folds.extend(ids.iter().map(|id| (*id as u64 % 1_000_003) as usize));
        rows.extend(r);
        labels.extend(l);
    }
    let (ids, hrows, hlabels, hprot) = snapshot(store, set, holdout, &mut screen).await?;
    cohort.insert(format!("holdout {holdout}"), ids.len());
    cohort.insert("objections registered".into(), screen.objectors.len());
    for (rule, n) in &screen.excluded {
        cohort.insert(format!("person-snapshots excluded by {rule}"), *n);
    }
    // Counts, amounts and durations are log-transformed; recorded in the artifact's scaler.
    let log1p: Vec<bool> = inputs
        .iter()
        .map(|f| {
            use tidig_models::features::Aggregation as A;
            matches!(
                f.aggregation,
                A::Count | A::Sum | A::Duration | A::DaysSinceLast | A::Moves
            )
        })
        .collect();
    let (model, cv) = cross_validate(&rows, &labels, &folds, 3, &[0.1, 1.0, 10.0, 100.0], &log1p)
        .context("training the logistic model")?;
    let p: Vec<f64> = hrows.iter().map(|r| model.probability(r)).collect();
    let capacity = ((hrows.len() as f64 * capacity_share).ceil() as usize).max(1);
    let flags = metrics::flag_top(&p, capacity);
    let (precision, recall) = metrics::at_capacity(&p, &hlabels, capacity);
    let positives = hlabels.iter().filter(|l| **l).count();
    let evaluation = Evaluation {
        rows: hrows.len(),
        positives,
        base_rate: positives as f64 / hrows.len().max(1) as f64,
        auc: metrics::auc(&p, &hlabels),
        pr_auc: metrics::pr_auc(&p, &hlabels),
        brier: metrics::brier(&p, &hlabels),
        log_loss: metrics::log_loss(&p, &hlabels),
        calibration: metrics::calibration(&p, &hlabels, 10),
        capacity,
        precision_at_capacity: precision,
        recall_at_capacity: recall,
        roc: metrics::roc_curve(&p, &hlabels, 100),
    };
    let mut challenger_seconds = None;
    let challenger = match challenger {
        Some(params) => {
            let t = Instant::now();
            let forest = Forest::fit(&rows, &labels, params).context("training the challenger")?;
            challenger_seconds = Some(t.elapsed().as_secs_f64());
            let q = forest.probabilities(&hrows)?;
            Some(compare(params, &p, &q, &hlabels, capacity))
        }
        None => None,
    };
    let fairness: Vec<FairnessReport> = groupings(&hprot)
        .into_iter()
        .map(|(name, groups)| {
            fairness::report(&name, &groups, &flags, &hlabels, &p, gate.min_group)
        })
        .collect();
    let mut failures = Vec::new();
    if evaluation.auc.is_none_or(|a| a < gate.min_auc) {
        failures.push(format!(
            "holdout AUC {:?} is below {}",
            evaluation.auc, gate.min_auc
        ));
    }
    for f in &fairness {
        if let Some(r) = f.demographic_parity_ratio {
            if r < gate.min_demographic_parity_ratio {
                failures.push(format!(
                    "{}: demographic parity ratio {r:.3} < {}",
                    f.attribute, gate.min_demographic_parity_ratio
                ));
            }
        }
        if let Some(d) = f.equalized_odds_difference {
            if d > gate.max_equalized_odds_difference {
                failures.push(format!(
                    "{}: equalized odds difference {d:.3} > {}",
                    f.attribute, gate.max_equalized_odds_difference
                ));
            }
        }
    }
    let excluded_features = set
        .features
        .iter()
        .filter(|f| {
            matches!(
                f.sensitivity,
                Sensitivity::Prohibited | Sensitivity::Protected
            )
        })
        .map(|f| {
            let why = match f.sensitivity {
                Sensitivity::Prohibited => "prohibited: an Art 9 category or proxy, never an input",
                _ => "protected: kept only to measure fairness",
            };
            (f.id.clone(), why.to_string())
        })
        .collect();
    let artifact = Artifact {
        kind: "logistic".into(),
        feature_set: set.name.clone(),
        feature_set_version: set.hash(),
        features: inputs.iter().map(|f| f.id.clone()).collect(),
        excluded_features,
        label: set.label.id.clone(),
        label_text: set.label.text.clone(),
        train_snapshots: train_dates.iter().map(|d| d.to_string()).collect(),
        holdout_snapshot: holdout.to_string(),
        cohort,
        model,
        cross_validation: cv,
        evaluation,
        challenger,
        fairness,
        gate: gate.clone(),
        gate_passed: failures.is_empty(),
        gate_failures: failures,
        code_version: env!("CARGO_PKG_VERSION").into(),
    };
    let id = artifact.hash();
    register(store, &id, &artifact, who).await?;
    Ok(TrainReport {
        model_id: id,
        state: "trained".into(),
        seconds: started.elapsed().as_secs_f64(),
        challenger_seconds,
        artifact,
    })
}

/// The challenger's holdout figures next to the default model's probabilities `p`.
fn compare(
    params: &ForestParams,
    p: &[f64],
    q: &[f64],
    labels: &[bool],
    capacity: usize,
) -> Challenger {
    let (precision, recall) = metrics::at_capacity(q, labels, capacity);
    let (fp, fq) = (
        metrics::flag_top(p, capacity),
        metrics::flag_top(q, capacity),
    );
    let positives = |f: &[bool]| f.iter().zip(labels).filter(|(f, l)| **f && **l).count() as i64;
    let both = fp.iter().zip(&fq).filter(|(a, b)| **a && **b).count();
    let flagged = fp.iter().filter(|f| **f).count().max(1);
    let auc = metrics::auc(q, labels);
    Challenger {
        kind: "random forest (smartcore regression forest on the 0/1 label)".into(),
        params: params.clone(),
        auc,
        pr_auc: metrics::pr_auc(q, labels),
        brier: metrics::brier(q, labels),
        precision_at_capacity: precision,
        recall_at_capacity: recall,
        auc_gap: auc.zip(metrics::auc(p, labels)).map(|(c, d)| c - d),
        true_flags_gap: positives(&fq) - positives(&fp),
        flag_overlap: both as f64 / flagged as f64,
    }
}

async fn register(store: &Store, id: &str, a: &Artifact, who: &str) -> Result<()> {
    let text = serde_json::to_string(a)?;
    let at = now();
    let insert = "INSERT INTO models (id, kind, feature_set, state, gate_passed, created_at, created_by, artifact) \
                  VALUES ($1, $2, $3, 'trained', $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING";
    let history =
        "INSERT INTO model_history (model_id, state, at, by_whom) VALUES ($1, 'trained', $2, $3)";
    macro_rules! go {
        ($tx:expr) => {{
            let n = sqlx::query(insert)
                .bind(id)
                .bind(&a.kind)
                .bind(&a.feature_set_version)
                .bind(a.gate_passed as i64)
                .bind(&at)
                .bind(who)
                .bind(&text)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
            if n > 0 {
                sqlx::query(history)
                    .bind(id)
                    .bind(&at)
                    .bind(who)
                    .execute(&mut *$tx)
                    .await?;
            }
        }};
    }
    crate::in_write_tx!(store, |tx| {
        go!(tx);
    });
    Ok(())
}

/// A registry row.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct ModelRow {
    pub id: String,
    pub kind: String,
    pub state: String,
    pub gate_passed: i64,
    pub created_at: String,
    pub created_by: String,
}

pub async fn list(store: &Store) -> Result<Vec<ModelRow>> {
    let sql = "SELECT id, kind, state, gate_passed, created_at, created_by FROM models ORDER BY created_at, id";
    Ok(match store {
        Store::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await?,
        Store::Postgres(p) => sqlx::query_as(sql).fetch_all(p).await?,
    })
}

/// The artifact of a model by id or unique id prefix.
pub async fn show(store: &Store, id: &str) -> Result<(ModelRow, Artifact)> {
    let like = format!("{id}%");
    let sql =
        "SELECT id, kind, state, gate_passed, created_at, created_by FROM models WHERE id LIKE $1";
    let rows: Vec<ModelRow> = match store {
        Store::Sqlite(p) => sqlx::query_as(sql).bind(&like).fetch_all(p).await?,
        Store::Postgres(p) => sqlx::query_as(sql).bind(&like).fetch_all(p).await?,
    };
    let row = match rows.len() {
        1 => rows.into_iter().next().context("model vanished")?,
        0 => bail!("no model `{id}`"),
        n => bail!("`{id}` matches {n} models: give more of the id"),
    };
    let sql = "SELECT artifact FROM models WHERE id = $1";
    let text: String = match store {
        Store::Sqlite(p) => sqlx::query_scalar(sql).bind(&row.id).fetch_one(p).await?,
        Store::Postgres(p) => sqlx::query_scalar(sql).bind(&row.id).fetch_one(p).await?,
    };
    Ok((row, serde_json::from_str(&text)?))
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
    md.push_str("## Fairness (flags at capacity; small groups suppressed)\n\n| grouping | group | n | selection rate | TPR | FPR | mean predicted | observed |\n|---|---|---|---|---|---|---|---|\n");
    for r in &a.fairness {
        for g in &r.groups {
            if g.suppressed {
                md.push_str(&format!(
                    "| {} | {} | <{} | suppressed | | | | |\n",
                    r.attribute, g.group, a.gate.min_group
                ));
            } else {
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    r.attribute,
                    g.group,
                    g.count,
                    f(g.selection_rate),
                    f(g.tpr),
                    f(g.fpr),
                    f(g.mean_predicted),
                    f(g.observed_rate)
                ));
            }
        }
        md.push_str(&format!(
            "| {} | **summary** | | DP ratio {} / diff {} | EO ratio {} / diff {} | | | |\n",
            r.attribute,
            f(r.demographic_parity_ratio),
            f(r.demographic_parity_difference),
            f(r.equalized_odds_ratio),
            f(r.equalized_odds_difference)
        ));
    }
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

/// Why a registry change was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    #[error("model `{0}` failed its release gate and cannot be approved: {1}")]
    GateFailed(String, String),
    #[error("model `{0}` was trained by `{1}`; it must be approved by someone else")]
    SelfApproval(String, String),
    #[error("model `{id}` is `{state}`; only a trained model can be approved")]
    State { id: String, state: String },
    #[error("model `{id}` is `{state}`; only an approved model can be activated")]
    NotApproved { id: String, state: String },
}

/// Approves a trained model: never one that failed its gate, never by its trainer.
pub async fn approve(store: &Store, id: &str, by: &str) -> Result<ModelRow> {
    let (row, artifact) = show(store, id).await?;
    if row.state != "trained" {
        return Err(RegistryError::State {
            id: row.id,
            state: row.state,
        }
        .into());
    }
    if !artifact.gate_passed {
        return Err(RegistryError::GateFailed(row.id, artifact.gate_failures.join("; ")).into());
    }
    if row.created_by == by {
        return Err(RegistryError::SelfApproval(row.id, by.into()).into());
    }
    let at = now();
    macro_rules! go {
        ($tx:expr) => {{
            sqlx::query("UPDATE models SET state = 'approved' WHERE id = $1 AND state = 'trained'")
                .bind(&row.id).execute(&mut *$tx).await?;
            sqlx::query("INSERT INTO model_history (model_id, state, at, by_whom) VALUES ($1, 'approved', $2, $3)")
                .bind(&row.id).bind(&at).bind(by).execute(&mut *$tx).await?;
        }};
    }
    crate::in_write_tx!(store, |tx| {
        go!(tx);
    });
    Ok(ModelRow {
        state: "approved".into(),
        ..row
    })
}

/// Activates an approved model for scoring. Its inputs must pass the data-stage rules of
/// `pack` under `deployment`; the model active before it (if any) is retired in the same
/// transaction.
pub async fn activate(
    store: &Store,
    id: &str,
    by: &str,
    pack: &tidig_governance::RulePack,
    deployment: &tidig_governance::eval::Deployment,
    set: &FeatureSet,
) -> Result<ModelRow> {
    let (row, artifact) = show(store, id).await?;
    if row.state != "approved" {
        return Err(RegistryError::NotApproved {
            id: row.id,
            state: row.state,
        }
        .into());
    }
    if set.hash() != artifact.feature_set_version {
        bail!(
            "model `{}` was trained on feature set version {}, the given set is {}",
            &row.id[..16],
            &artifact.feature_set_version[..12],
            &set.hash()[..12]
        );
    }
    crate::rules::check_inputs(
        pack,
        deployment,
        &model_facts(&row.id, &artifact),
        set,
        &artifact.features,
    )
    .with_context(|| format!("model `{}` cannot be activated", &row.id[..16]))?;
    let at = now();
    macro_rules! go {
        ($tx:expr) => {{
            let previous: Vec<String> =
                sqlx::query_scalar("SELECT id FROM models WHERE state = 'active' AND id <> $1")
                    .bind(&row.id)
                    .fetch_all(&mut *$tx)
                    .await?;
            for p in previous {
                sqlx::query("UPDATE models SET state = 'retired' WHERE id = $1")
                    .bind(&p).execute(&mut *$tx).await?;
                sqlx::query("INSERT INTO model_history (model_id, state, at, by_whom) VALUES ($1, 'retired', $2, $3)")
                    .bind(&p).bind(&at).bind(by).execute(&mut *$tx).await?;
            }
            sqlx::query("UPDATE models SET state = 'active' WHERE id = $1")
                .bind(&row.id).execute(&mut *$tx).await?;
            sqlx::query("INSERT INTO model_history (model_id, state, at, by_whom) VALUES ($1, 'active', $2, $3)")
                .bind(&row.id).bind(&at).bind(by).execute(&mut *$tx).await?;
        }};
    }
    crate::in_write_tx!(store, |tx| {
        go!(tx);
    });
    Ok(ModelRow {
        state: "active".into(),
        ..row
    })
}

/// Retires an approved or active model: it is never used for scoring again.
pub async fn retire(store: &Store, id: &str, by: &str) -> Result<ModelRow> {
    let (row, _) = show(store, id).await?;
    if row.state == "retired" {
        bail!("model `{}` is already retired", row.id);
    }
    let at = now();
    macro_rules! go {
        ($tx:expr) => {{
            sqlx::query("UPDATE models SET state = 'retired' WHERE id = $1")
                .bind(&row.id).execute(&mut *$tx).await?;
            sqlx::query("INSERT INTO model_history (model_id, state, at, by_whom) VALUES ($1, 'retired', $2, $3)")
                .bind(&row.id).bind(&at).bind(by).execute(&mut *$tx).await?;
        }};
    }
    crate::in_write_tx!(store, |tx| {
        go!(tx);
    });
    Ok(ModelRow {
        state: "retired".into(),
        ..row
    })
}

/// The one active model, if any.
pub async fn active(store: &Store) -> Result<Option<(ModelRow, Artifact)>> {
    let sql = "SELECT id FROM models WHERE state = 'active' ORDER BY created_at, id";
    let ids: Vec<String> = crate::on_pool!(store, |p| sqlx::query_scalar(sql).fetch_all(p).await?);
    match ids.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some(show(store, id).await?)),
        more => bail!(
            "{} models are active; activation keeps one: retire all but one",
            more.len()
        ),
    }
}

/// What the rules see of a model.
pub fn model_facts(id: &str, a: &Artifact) -> tidig_governance::eval::ModelFacts {
    tidig_governance::eval::ModelFacts {
        id: id.into(),
        kind: a.kind.clone(),
        feature_set: a.feature_set.clone(),
    }
}
