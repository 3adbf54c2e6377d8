//! `tidig train --as-of DATE`: a time-split training run that ends in a registered,
//! content-hashed model artifact and a model card.
//!
//! The holdout is the snapshot one horizon before the as-of date (its labels are observed
//! by the as-of date); training uses the snapshots one and two horizons before that, so
//! no training label overlaps the holdout period. Standardisation is fitted on the
//! training rows only, the L2 strength by cross-validation within them (folds by person).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tidig_models::fairness::{self, FairnessReport};
use tidig_models::features::{FeatureSet, Sensitivity};
use tidig_models::forest::{Forest, ForestParams};
use tidig_models::gate::Gate;
use tidig_models::logistic::Logistic;
use tidig_models::metrics::{self, CalibrationBin};
use tidig_models::select::{cross_validate, CvResult};

use crate::app::App;
use crate::dates;
use crate::domain::ModelState;
use crate::error::{EngineError, Precondition};
use crate::pipeline::decide::count_deny;
use crate::pipeline::features::{build, load_vectors};
use crate::principal::Principal;
use crate::progress::Quiet;
use crate::store::NewModel;

type Result<T, E = EngineError> = std::result::Result<T, E>;

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
    /// The training distribution of every input and of the score, binned once, that
    /// every scoring run's drift is measured against (absent in models trained before
    /// tidig measured drift).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<tidig_models::drift::DriftReference>,
    /// The secondary-use permit a researcher trained it under (absent when an operator
    /// trained it for the deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permit: Option<PermitRef>,
}

/// A permit version, as a model trained under it names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermitRef {
    pub id: String,
    pub version: i64,
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
    pub state: ModelState,
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
    /// The permit a research run is scoped by: only its cohort is read, and snapshots
    /// are read as built (a researcher does not build features).
    permit: Option<&'p tidig_governance::permit::Permit>,
}

impl Screen<'_> {
    fn allows(&mut self, pid: i64, on: NaiveDate) -> bool {
        let age = self
            .births
            .get(&pid)
            .and_then(|b| dates::from_days(*b))
            .map_or(-1, |b| dates::age_years(b, on));
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
            count_deny(&mut self.excluded, &d);
        }
        d.allowed
    }
}

/// The refusal to read a snapshot whose features are not built: under a permit, building
/// is an operator's job, not the researcher's.
pub(crate) fn not_built(date: NaiveDate) -> EngineError {
    Precondition::CannotTrain(format!(
        "features for {date} are not built: an operator runs `tidig features build --as-of {date}`"
    ))
    .into()
}

/// Who of a snapshot a permit's cohort holds: born in its years and living, on the
/// snapshot date, in one of its municipalities (any, when it names none).
pub(crate) struct PermitCohort<'p> {
    permit: &'p tidig_governance::permit::Permit,
    residence: HashMap<i64, String>,
}

impl<'p> PermitCohort<'p> {
    pub(crate) async fn on(
        app: &App,
        permit: &'p tidig_governance::permit::Permit,
        date: NaiveDate,
    ) -> Result<PermitCohort<'p>> {
        let residence = app
            .store()
            .residences_on(dates::days(date))
            .await?
            .into_iter()
            .map(|r| (r.person, r.municipality))
            .collect();
        Ok(PermitCohort { permit, residence })
    }

    /// Whether person `pid` (`births`: days since the epoch per person) is in it.
    pub(crate) fn holds(&self, births: &HashMap<i64, i64>, pid: i64) -> bool {
        births
            .get(&pid)
            .and_then(|b| dates::from_days(*b))
            .is_some_and(|b| {
                self.permit.in_cohort(
                    chrono::Datelike::year(&b),
                    self.residence.get(&pid).map(String::as_str),
                )
            })
    }
}

/// Loads (building if needed) one snapshot's labelled vectors of the persons the
/// eligibility rules let training use.
async fn snapshot(
    app: &App,
    by: &Principal,
    set: &FeatureSet,
    as_of: NaiveDate,
    screen: &mut Screen<'_>,
) -> Result<Snapshot> {
    let version = set.hash();
    let mut vectors = load_vectors(app, &version, as_of).await?;
    // Build when missing, and rebuild when labels were unobserved then: data may have
    // arrived since.
    let stale = vectors.is_empty() || vectors.values().any(|v| v.label.is_none());
    if stale && screen.permit.is_some() {
        return Err(not_built(as_of));
    }
    if stale {
        build(app, by, set, as_of, &Quiet).await?;
        vectors = load_vectors(app, &version, as_of).await?;
    }
    let cohort = match screen.permit {
        Some(permit) => Some(PermitCohort::on(app, permit, as_of).await?),
        None => None,
    };
    let mut out: Snapshot = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (pid, v) in vectors {
        let (vals, prot) = (v.values, v.protected);
        let Some(label) = v.label else {
            return Err(Precondition::LabelNotObserved { date: as_of }.into());
        };
        if cohort
            .as_ref()
            .is_some_and(|c| !c.holds(&screen.births, pid))
        {
            *screen
                .excluded
                .entry("the permit's cohort".into())
                .or_default() += 1;
            continue;
        }
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

/// Whether a feature enters the model as `log1p` of its value: counts, amounts and
/// durations, whose tails would otherwise dominate.
pub(crate) fn log_transformed(f: &tidig_models::features::FeatureDef) -> bool {
    use tidig_models::features::Aggregation as A;
    matches!(
        f.aggregation,
        A::Count | A::Sum | A::Duration | A::DaysSinceLast | A::Moves
    )
}

/// One person's value of a protected attribute as fairness groups it: mother tongue as
/// `fi/sv`, `other` or `unknown`; citizenship as `fi` or `other`; any other attribute as
/// it is (`unknown` when missing).
fn bucket(attribute: &str, m: &BTreeMap<String, Option<String>>) -> String {
    let v = m
        .get(attribute)
        .cloned()
        .flatten()
        .unwrap_or_else(|| "unknown".into());
    match attribute {
        "mother_tongue" => match v.as_str() {
            "fi" | "sv" => "fi/sv".into(),
            "unknown" => "unknown".into(),
            _ => "other".into(),
        },
        "citizenship" if v != "fi" => "other".into(),
        _ => v,
    }
}

/// The fairness groupings `specs` (protected attributes of `set`, or two joined by
/// ` x `) over the holdout's protected attributes; an unknown attribute is refused
/// naming `gate.groupings`.
pub(crate) fn groupings(
    set: &FeatureSet,
    specs: &[String],
    prot: &[BTreeMap<String, Option<String>>],
) -> Result<Vec<(String, Vec<String>)>> {
    let protected: Vec<&str> = set
        .features
        .iter()
        .filter(|f| f.sensitivity == Sensitivity::Protected)
        .map(|f| f.id.as_str())
        .collect();
    specs
        .iter()
        .map(|spec| {
            let parts: Vec<&str> = spec.split(" x ").map(str::trim).collect();
            if let Some(bad) = parts.iter().find(|p| !protected.contains(p)) {
                return Err(EngineError::invalid(
                    "gate.groupings",
                    format!(
                        "`{bad}` in `{spec}` is not a protected attribute of feature set `{}` (it has {})",
                        set.name,
                        protected.join(", ")
                    ),
                ));
            }
            let groups = prot
                .iter()
                .map(|m| {
                    parts
                        .iter()
                        .map(|p| bucket(p, m))
                        .collect::<Vec<_>>()
                        .join(" x ")
                })
                .collect();
            Ok((spec.clone(), groups))
        })
        .collect()
}

/// How a model is trained; the rule pack and deployment come from the `App`.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Share of the holdout the units can act on (flags at capacity).
    pub capacity_share: f64,
    /// The release gate the model must pass to be approvable.
    pub gate: Gate,
    /// The challenger's parameters; `None` skips it.
    pub challenger: Option<ForestParams>,
    /// Where the model card (Markdown, JSON, SVG plots) is written; `None` writes none.
    pub cards: Option<std::path::PathBuf>,
}

impl TrainOptions {
    /// Validates the capacity share: a fraction in (0, 1].
    pub fn new(capacity_share: f64, gate: Gate) -> Result<TrainOptions> {
        if !(capacity_share > 0.0 && capacity_share <= 1.0) {
            return Err(EngineError::invalid(
                "--capacity",
                format!("{capacity_share} is not a share between 0 and 1"),
            ));
        }
        Ok(TrainOptions {
            capacity_share,
            gate,
            challenger: Some(ForestParams::default()),
            cards: None,
        })
    }
}

/// Trains, evaluates and registers a model. The registration and its audit entry
/// (cohort counts, persons excluded per rule, the gate) commit together; a refusal (the
/// data-stage rules) or failure is recorded too.
pub async fn train(
    app: &App,
    by: &Principal,
    set: &FeatureSet,
    as_of: NaiveDate,
    options: &TrainOptions,
) -> Result<TrainReport> {
    let mut record = app
        .record(by, "model.train")
        .with(serde_json::json!({"as_of": as_of.to_string(), "feature_set": set.name}));
    record.versions.feature_set = Some(set.hash());
    let result = train_inner(app, by, set, as_of, options, &record).await;
    app.audited(record, result).await
}

async fn train_inner(
    app: &App,
    by: &Principal,
    set: &FeatureSet,
    as_of: NaiveDate,
    options: &TrainOptions,
    record: &tidig_governance::audit::Record,
) -> Result<TrainReport> {
    let started = Instant::now();
    let (artifact, challenger_seconds, _) = fit(app, by, set, as_of, options, None).await?;
    let id = artifact.hash();
    let record = registration(record, &id, &artifact);
    app.store()
        .insert_model(&NewModel {
            audit: &record,
            id: &id,
            kind: &artifact.kind,
            feature_set_version: &artifact.feature_set_version,
            gate_passed: artifact.gate_passed,
            artifact_json: &serde_json::to_string(&artifact)?,
            at: &app.clock().stamp(),
            by: by.id(),
            auth: by.auth.as_str(),
        })
        .await?;
    let report = TrainReport {
        model_id: id,
        state: ModelState::Trained,
        seconds: started.elapsed().as_secs_f64(),
        challenger_seconds,
        artifact,
    };
    if let Some(dir) = &options.cards {
        crate::pipeline::card::write_files(dir, &report.model_id, &report.artifact, set)?;
    }
    Ok(report)
}

/// The holdout as the fit saw it, for aggregates computed beside the artifact (a
/// research run's tables). Held in memory only; never stored.
pub(crate) struct Holdout {
    pub scores: Vec<f64>,
    pub labels: Vec<bool>,
    /// Flagged at the options' capacity share.
    pub flags: Vec<bool>,
    /// The fairness groupings: (name, group per holdout person).
    pub groupings: Vec<(String, Vec<String>)>,
}

/// The training's audit record with what it registered.
pub(crate) fn registration(
    record: &tidig_governance::audit::Record,
    id: &str,
    artifact: &Artifact,
) -> tidig_governance::audit::Record {
    let mut record = record.clone().with(serde_json::json!({
        "model": id,
        "cohort": artifact.cohort,
        "gate_passed": artifact.gate_passed,
        "gate_failures": artifact.gate_failures,
        "holdout_auc": artifact.evaluation.auc.map(|a| format!("{a:.6}")),
        "permit": artifact.permit,
    }));
    record.versions.model = Some(id.to_string());
    record
}

/// Fits and evaluates a model: the artifact, not yet registered, and the challenger's
/// seconds. Under a permit only its cohort is read (the caller has checked its features
/// and period) and the artifact names it.
pub(crate) async fn fit(
    app: &App,
    by: &Principal,
    set: &FeatureSet,
    as_of: NaiveDate,
    options: &TrainOptions,
    permit: Option<(&tidig_governance::permit::Permit, i64)>,
) -> Result<(Artifact, Option<f64>, Holdout)> {
    let store = app.store();
    let (pack, deployment) = (app.pack(), &app.settings().deployment);
    let (capacity_share, gate) = (options.capacity_share, &options.gate);
    let challenger = options.challenger.as_ref();
    // Inputs: the numeric features, each allowed by the data-stage rules.
    let inputs: Vec<&tidig_models::features::FeatureDef> = set.numeric().collect();
    let candidate = tidig_governance::eval::ModelFacts {
        id: "candidate".into(),
        kind: "logistic".into(),
        feature_set: set.name.clone(),
    };
    let ids: Vec<String> = inputs.iter().map(|f| f.id.clone()).collect();
    crate::pipeline::rules::check_inputs(pack, deployment, &candidate, set, &ids)?;
    let mut screen = Screen {
        ev: tidig_governance::Evaluator::new(pack),
        model: candidate,
        deployment: deployment.clone(),
        objectors: store.objectors().await?,
        births: store.births().await?,
        excluded: BTreeMap::new(),
        permit: permit.map(|(p, _)| p),
    };
    let horizon = Duration::days(set.label.horizon_days as i64);
    let holdout = as_of - horizon;
    let train_dates = [holdout - horizon - horizon, holdout - horizon];
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    let mut folds = Vec::new();
    let mut cohort = BTreeMap::new();
    for d in train_dates {
        let (ids, r, l, _) = snapshot(app, by, set, d, &mut screen).await?;
        cohort.insert(format!("train {d}"), ids.len());
        folds.extend(ids.iter().map(|id| (*id as u64 % 1_000_003) as usize));
        rows.extend(r);
        labels.extend(l);
    }
    let (ids, hrows, hlabels, hprot) = snapshot(app, by, set, holdout, &mut screen).await?;
    cohort.insert(format!("holdout {holdout}"), ids.len());
    cohort.insert("objections registered".into(), screen.objectors.len());
    for (rule, n) in &screen.excluded {
        cohort.insert(format!("person-snapshots excluded by {rule}"), *n);
    }
    // Counts, amounts and durations are log-transformed; recorded in the artifact's scaler.
    let log1p: Vec<bool> = inputs.iter().map(|f| log_transformed(f)).collect();
    let (model, cv) = cross_validate(&rows, &labels, &folds, 3, &[0.1, 1.0, 10.0, 100.0], &log1p)
        .map_err(|e| Precondition::CannotTrain(e.to_string()))?;
    let p: Vec<f64> = hrows.iter().map(|r| model.probability(r)).collect();
    let train_scores: Vec<f64> = rows.iter().map(|r| model.probability(r)).collect();
    let drift = tidig_models::drift::DriftReference::fit(&rows, &train_scores);
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
            let forest = Forest::fit(&rows, &labels, params)
                .map_err(|e| Precondition::CannotTrain(format!("the challenger: {e}")))?;
            let q = forest
                .probabilities(&hrows)
                .map_err(|e| EngineError::internal(format_args!("the challenger: {e}")))?;
            let compared = compare(params, &p, &q, &hlabels, capacity);
            // Its fit, holdout predictions and comparison: all of it is the challenger's.
            challenger_seconds = Some(t.elapsed().as_secs_f64());
            Some(compared)
        }
        None => None,
    };
    let grouped = groupings(set, &gate.groupings, &hprot)?;
    let fairness: Vec<FairnessReport> = grouped
        .iter()
        .map(|(name, groups)| fairness::report(name, groups, &flags, &hlabels, &p, &gate.floors()))
        .collect();
    let failures = gate.failures(evaluation.auc, &fairness);
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
        drift: Some(drift),
        permit: permit.map(|(p, version)| PermitRef {
            id: p.id.clone(),
            version,
        }),
    };
    let holdout = Holdout {
        scores: p,
        labels: hlabels,
        flags,
        groupings: grouped,
    };
    Ok((artifact, challenger_seconds, holdout))
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
