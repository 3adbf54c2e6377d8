//! Research under a secondary-use permit: a run reads only what the permit allows (its
//! features, its cohort, its period; objectors never), evaluates or trains the model on
//! it, and releases aggregates only — cohort sizes, holdout metrics, calibration and
//! fairness tables, the factor report and, for a training run, the model's card summary
//! — with every count below the permit's minimum cell suppressed. The permit is enforced
//! here, not by the caller: the researcher must be named in it and it must be valid; a
//! request outside it is refused naming what. A run checks the permit again between its
//! stages and stops when it was revoked, amended or expired meanwhile; whether anything
//! is released is decided in the transaction that records the run, against the permit
//! as it stands then (a model trained under it is registered only then, as `trained`).
//!
//! A run is [`start`]ed (every refusal happens there) and then [`Prepared::run`]: the
//! command line runs it at once, the service in the background while a client watches
//! its [`Step`]s.

use chrono::{Duration, NaiveDate};
use serde::Serialize;
use serde_json::json;
use sha2::Digest;
use tidig_governance::access::Operation;
use tidig_governance::audit::Record;
use tidig_governance::permit::{FeatureScope, Permit, Registry, Request};
use tidig_models::features::{FeatureSet, Source};
use tidig_models::research::{
    calibration_table, cell, factor_report, group_table, Cell, FactorReport, Table,
};

use crate::access::{AccessPass, Target};
use crate::app::App;
use crate::dates;
use crate::error::{EngineError, Precondition};
use crate::pipeline::features::load_vectors;
use crate::pipeline::train::{self, TrainOptions};
use crate::principal::Principal;
use crate::store::{NewModel, NewResearchRun, ResearchRunRow};

type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Share of the holdout flagged (highest scores) for the fairness tables of an
/// evaluation: the deployment's usual capacity.
const FLAG_SHARE: f64 = 0.05;

/// What a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Fit on the permitted data and report, registering nothing.
    Evaluate,
    /// Train the deployment's model on the permitted data: registered as `trained`
    /// with the permit in its artifact and card; approval stays with oversight.
    Train,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Evaluate => "evaluate",
            Kind::Train => "train",
        }
    }
}

/// A run asked for.
#[derive(Clone, Debug)]
pub struct RunRequest {
    pub permit: String,
    pub kind: Kind,
    /// Labels up to this date: the holdout one horizon before it, training before that.
    pub as_of: NaiveDate,
    /// The features asked for (every one the permit allows when empty; a training run
    /// uses the feature set's).
    pub features: Vec<String>,
    /// A narrower cohort asked for: birth years (first, last) and municipalities (the
    /// permit's own when `None` / empty).
    pub birth_years: Option<[i32; 2]>,
    pub municipalities: Vec<String>,
}

impl RunRequest {
    /// A run over everything the permit allows.
    pub fn new(permit: &str, kind: Kind, as_of: NaiveDate) -> RunRequest {
        RunRequest {
            permit: permit.into(),
            kind,
            as_of,
            features: Vec::new(),
            birth_years: None,
            municipalities: Vec::new(),
        }
    }
}

/// Where a run is: a stage and how far the whole run is, in percent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    pub stage: String,
    pub percent: u32,
}

/// Receives a run's steps as it makes them.
pub type OnStep<'a> = &'a (dyn Fn(&Step) + Send + Sync);

/// What a run may release.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub kind: Kind,
    pub permit: String,
    pub permit_version: i64,
    pub as_of: String,
    /// Exactly the features read.
    pub features: Vec<String>,
    /// The snapshot dates read (training, then holdout).
    pub snapshots: Vec<String>,
    pub min_cell: u64,
    /// Persons in the training and holdout snapshots after the permit's cohort and the
    /// objection register.
    pub train_persons: Cell,
    pub holdout_persons: Cell,
    pub holdout_positives: Cell,
    pub auc: Option<f64>,
    pub brier: Option<f64>,
    /// Observed rate against mean score per score bin.
    pub calibration: Table,
    /// Per protected grouping (when the permit includes the population registry),
    /// flags at the top `flag_share` of scores.
    pub flag_share: f64,
    pub fairness: Vec<Table>,
    pub factors: FactorReport,
    /// The model a training run registered, as its card summarises it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSummary>,
}

/// The card of a model trained under a permit, as far as a researcher may see it.
#[derive(Clone, Debug, Serialize)]
pub struct ModelSummary {
    pub id: String,
    pub state: &'static str,
    pub kind: String,
    pub feature_set_version: String,
    pub label: String,
    pub permit: train::PermitRef,
    /// The L2 strength cross-validation chose.
    pub alpha: f64,
    pub pr_auc: Option<f64>,
    pub log_loss: f64,
    pub gate_passed: bool,
    pub gate_failures: Vec<String>,
    /// What happens next: approval and activation stay with oversight (four-eyes).
    pub next: String,
}

/// A recorded run and its results, when released.
#[derive(Clone, Debug, Serialize)]
pub struct ResearchRun {
    pub run: ResearchRunRow,
    pub results: Option<serde_json::Value>,
}

fn registry(source: Source) -> Registry {
    match source {
        Source::Health => Registry::Health,
        Source::Social => Registry::Social,
        Source::Population => Registry::Population,
    }
}

/// A refusal by the permit, as the access policy's refusals look.
fn refused(e: tidig_governance::permit::PermitError) -> EngineError {
    EngineError::PermissionDenied {
        reason: e.to_string(),
        rules: vec![format!("permit.{}", e.scope())],
    }
}

/// A run that passed every check and may now read.
#[derive(Debug)]
pub struct Prepared {
    id: String,
    by: Principal,
    kind: Kind,
    as_of: NaiveDate,
    permit: Permit,
    version: i64,
    /// Indexes into the set's numeric features.
    chosen: Vec<usize>,
    /// Training snapshots, then the holdout.
    dates: [NaiveDate; 3],
    started_at: String,
    record: Record,
    pass: AccessPass,
}

/// Checks a run against the access policy and the permit; every refusal happens (and is
/// audited) here, naming what is outside the permit.
pub async fn start(
    app: &App,
    by: &Principal,
    request: &RunRequest,
    set: &FeatureSet,
) -> Result<Prepared> {
    let op = Operation::StartResearchRun;
    let started_at = app.clock().stamp();
    let record = app.record(by, &crate::access::action(op)).with(json!({
        "permit": request.permit, "kind": request.kind, "as_of": request.as_of.to_string(),
        "asked": request.features, "birth_years": request.birth_years,
        "municipalities": request.municipalities,
    }));
    let pass = app
        .check_access(by, op, Target::deployment(), record.clone())
        .await?;
    let checked = check(app, &pass, by, request, set).await;
    let (permit, version, chosen, dates) = app.audited(record.clone(), checked).await?;
    let nonce: u64 = rand::random();
    let id = hex::encode(sha2::Sha256::digest(
        format!("{}\0{}\0{started_at}\0{nonce}", request.permit, by.id()).as_bytes(),
    ))[..32]
        .to_string();
    Ok(Prepared {
        id,
        by: by.clone(),
        kind: request.kind,
        as_of: request.as_of,
        permit,
        version,
        chosen,
        dates,
        started_at,
        record,
        pass,
    })
}

/// The permit as it stands, the features chosen and the snapshot dates: or why not.
async fn check(
    app: &App,
    pass: &AccessPass,
    by: &Principal,
    request: &RunRequest,
    set: &FeatureSet,
) -> Result<(Permit, i64, Vec<usize>, [NaiveDate; 3])> {
    let permit_id = request.permit.as_str();
    let history = app.store().permit_history(pass, permit_id).await?;
    let current = history
        .into_iter()
        .last()
        .ok_or_else(|| EngineError::NotFound {
            what: "permit",
            id: permit_id.into(),
        })?;
    if current.revoked() {
        return Err(Precondition::PermitRevoked {
            permit: permit_id.into(),
        }
        .into());
    }
    let permit: Permit = serde_json::from_str(&current.definition)?;
    let numeric: Vec<&tidig_models::features::FeatureDef> = set.numeric().collect();
    let scope = |j: usize| FeatureScope {
        id: &numeric[j].id,
        registry: registry(numeric[j].source),
    };
    // The features: a training run trains the deployment's model on all of them (the
    // permit must allow each); an evaluation the asked ones, or all the permit allows.
    let chosen: Vec<usize> = match (request.kind, request.features.is_empty()) {
        (Kind::Train, true) => (0..numeric.len()).collect(),
        (Kind::Train, false) => return Err(EngineError::invalid(
            "features",
            "a training run uses the deployment's feature set; choose features for an evaluation",
        )),
        (Kind::Evaluate, true) => (0..numeric.len())
            .filter(|&j| permit.allows_feature(&scope(j)))
            .collect(),
        (Kind::Evaluate, false) => request
            .features
            .iter()
            .map(|f| {
                numeric.iter().position(|d| &d.id == f).ok_or_else(|| {
                    EngineError::invalid(
                        "features",
                        format!("`{f}` is not a numeric feature of set `{}`", set.name),
                    )
                })
            })
            .collect::<Result<_>>()?,
    };
    let scopes: Vec<FeatureScope<'_>> = chosen.iter().map(|&j| scope(j)).collect();
    let horizon = Duration::days(set.label.horizon_days as i64);
    let holdout = request.as_of - horizon;
    let dates = [holdout - horizon - horizon, holdout - horizon, holdout];
    permit
        .allows(&Request {
            principal: by.id(),
            today: app.clock().today(),
            features: &scopes,
            snapshots: &dates,
        })
        .map_err(refused)?;
    permit
        .allows_cohort(request.birth_years, &request.municipalities)
        .map_err(refused)?;
    if chosen.is_empty() {
        return Err(EngineError::invalid(
            "features",
            "the permit allows none of the feature set's numeric features",
        ));
    }
    // The cohort read: the permit's, narrowed to what was asked.
    let mut permit = permit;
    if let Some(years) = request.birth_years {
        permit.cohort.birth_years = years;
    }
    if !request.municipalities.is_empty() {
        permit.cohort.municipalities = request.municipalities.clone();
    }
    Ok((permit, current.version, chosen, dates))
}

/// `tidig research run`: [`start`] and [`Prepared::run`] an evaluation at once.
pub async fn evaluate(
    app: &App,
    by: &Principal,
    permit_id: &str,
    as_of: NaiveDate,
    features: &[String],
    set: &FeatureSet,
) -> Result<ResearchRun> {
    let request = RunRequest {
        features: features.to_vec(),
        ..RunRequest::new(permit_id, Kind::Evaluate, as_of)
    };
    let prepared = start(app, by, &request, set).await?;
    let options = TrainOptions::new(FLAG_SHARE, app.settings().gate.clone())?;
    prepared.run(app, set, &options, &|_| {}).await
}

/// What a run read, held for its record.
struct Read {
    train: (Vec<Vec<Option<f64>>>, Vec<bool>),
    holdout: (Vec<Vec<Option<f64>>>, Vec<bool>),
    /// Protected attributes per holdout person (only with the population registry).
    protected: Vec<std::collections::BTreeMap<String, Option<String>>>,
}

impl Prepared {
    /// The run's id, known before it reads anything.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Reads, fits and records the run: released, withheld (the permit changed while it
    /// ran; nothing kept) or failed (recorded, and the error returned).
    pub async fn run(
        self,
        app: &App,
        set: &FeatureSet,
        options: &TrainOptions,
        on_step: OnStep<'_>,
    ) -> Result<ResearchRun> {
        let outcome = self.work(app, set, options, on_step).await;
        let (results, stopped, failure, artifact) = match &outcome {
            Ok(Work::Done(results, artifact)) => (
                Some((**results).clone()),
                None,
                None,
                artifact.as_deref().cloned(),
            ),
            Ok(Work::Stopped(why)) => (None, Some(why.clone()), None, None),
            Err(e) => (None, None, Some(crate::audit::outcome_of(e)), None),
        };
        on_step(&Step {
            stage: "recording".into(),
            percent: 95,
        });
        let text = results.as_ref().map(serde_json::to_string).transpose()?;
        let artifact_json = artifact.as_ref().map(serde_json::to_string).transpose()?;
        let at = app.clock().stamp();
        let model_record = artifact.as_ref().map(|a| {
            let mut r = app.record(&self.by, "model.train").with(json!({
                "as_of": self.as_of.to_string(), "feature_set": set.name, "research_run": self.id,
            }));
            r.versions.feature_set = Some(set.hash());
            train::registration(&r, &a.hash(), a)
        });
        let model_id = artifact.as_ref().map(train::Artifact::hash);
        let model = match (&artifact, &artifact_json, &model_record, &model_id) {
            (Some(a), Some(json), Some(record), Some(id)) => Some(NewModel {
                audit: record,
                id,
                kind: &a.kind,
                feature_set_version: &a.feature_set_version,
                gate_passed: a.gate_passed,
                artifact_json: json,
                at: &at,
                by: self.by.id(),
                auth: self.by.auth.as_str(),
            }),
            _ => None,
        };
        let read = json!({
            "features": self.chosen.iter().map(|&j| set.numeric().nth(j).map(|f| f.id.clone())).collect::<Vec<_>>(),
            "snapshots": self.dates.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            "protected": if self.reads_protected() { json!(["sex", "mother_tongue", "citizenship", "municipality"]) } else { json!([]) },
            "cohort": self.permit.cohort,
            "objectors_excluded": true,
        });
        let recorded = app
            .store()
            .record_research_run(
                &self.pass,
                &NewResearchRun {
                    id: &self.id,
                    permit_id: &self.permit.id,
                    permit_version: self.version,
                    kind: self.kind.as_str(),
                    as_of: dates::days(self.as_of),
                    started_at: &self.started_at,
                    finished_at: &at,
                    today: &app.clock().today().to_string(),
                    results: text.as_deref(),
                    stopped,
                    failure,
                    model,
                    read,
                },
            )
            .await;
        let run = match (recorded, outcome) {
            (Ok(_), Err(e)) => return Err(e),
            (Err(e), Err(first)) => {
                tracing::error!("recording a failed research run: {e}");
                return app.audited(self.record, Err(first)).await;
            }
            (Err(e), Ok(_)) => return app.audited(self.record, Err(e.into())).await,
            (Ok(run), Ok(_)) => run,
        };
        if let (Some(a), Some(dir), "released") = (&artifact, &options.cards, run.state.as_str()) {
            crate::pipeline::card::write_files(dir, &a.hash(), a, set)?;
        }
        Ok(ResearchRun {
            results: run
                .results
                .as_deref()
                .map(serde_json::from_str)
                .transpose()?,
            run,
        })
    }

    fn reads_protected(&self) -> bool {
        self.permit.registries.contains(&Registry::Population)
    }

    /// Between stages: the step, then whether the permit still holds.
    async fn checkpoint(
        &self,
        app: &App,
        on_step: OnStep<'_>,
        stage: &str,
        percent: u32,
    ) -> Result<Option<String>> {
        on_step(&Step {
            stage: stage.into(),
            percent,
        });
        Ok(app
            .store()
            .research_permit_check(
                &self.permit.id,
                self.version,
                &app.clock().today().to_string(),
            )
            .await?)
    }

    async fn work(
        &self,
        app: &App,
        set: &FeatureSet,
        options: &TrainOptions,
        on_step: OnStep<'_>,
    ) -> Result<Work> {
        match self.kind {
            Kind::Evaluate => self.evaluate(app, set, on_step).await,
            Kind::Train => self.train(app, set, options, on_step).await,
        }
    }

    async fn train(
        &self,
        app: &App,
        set: &FeatureSet,
        options: &TrainOptions,
        on_step: OnStep<'_>,
    ) -> Result<Work> {
        if let Some(why) = self.checkpoint(app, on_step, "training", 10).await? {
            return Ok(Work::Stopped(why));
        }
        let (artifact, _, holdout) = train::fit(
            app,
            &self.by,
            set,
            self.as_of,
            options,
            Some((&self.permit, self.version)),
        )
        .await?;
        crate::testkit_hooks::pause_during_research().await;
        if let Some(why) = self.checkpoint(app, on_step, "aggregating", 85).await? {
            return Ok(Work::Stopped(why));
        }
        let min = self.permit.min_cell;
        let e = &artifact.evaluation;
        let train_persons: usize = artifact
            .cohort
            .iter()
            .filter(|(k, _)| k.starts_with("train "))
            .map(|(_, n)| n)
            .sum();
        let id = artifact.hash();
        let positives = e.positives as u64;
        let negatives = e.rows as u64 - positives;
        let results = Results {
            kind: self.kind,
            permit: self.permit.id.clone(),
            permit_version: self.version,
            as_of: self.as_of.to_string(),
            features: artifact.features.clone(),
            snapshots: self.dates.iter().map(|d| d.to_string()).collect(),
            min_cell: min,
            train_persons: cell(train_persons as u64, min),
            holdout_persons: cell(e.rows as u64, min),
            holdout_positives: cell(positives, min),
            auc: (cell(positives, min).is_some() && cell(negatives, min).is_some())
                .then_some(e.auc)
                .flatten(),
            brier: cell(e.rows as u64, min).map(|_| e.brier),
            calibration: calibration_table(&holdout.scores, &holdout.labels, 10, min),
            flag_share: options.capacity_share,
            fairness: holdout
                .groupings
                .iter()
                .map(|(name, groups)| {
                    group_table(name, groups, &holdout.flags, &holdout.labels, &holdout.scores, min)
                })
                .collect(),
            factors: FactorReport {
                min_cell: min,
                positives: None,
                negatives: None,
                factors: Vec::new(),
            },
            model: Some(ModelSummary {
                id: id.clone(),
                state: "trained",
                kind: artifact.kind.clone(),
                feature_set_version: artifact.feature_set_version.clone(),
                label: artifact.label.clone(),
                permit: train::PermitRef {
                    id: self.permit.id.clone(),
                    version: self.version,
                },
                alpha: artifact.model.alpha,
                pr_auc: (cell(positives, min).is_some()).then_some(e.pr_auc).flatten(),
                log_loss: e.log_loss,
                gate_passed: artifact.gate_passed,
                gate_failures: artifact.gate_failures.clone(),
                next: format!(
                    "an oversight principal reviews `tidig models show {}` and approves; another activates",
                    &id[..12]
                ),
            }),
        };
        Ok(Work::Done(Box::new(results), Some(Box::new(artifact))))
    }

    async fn evaluate(&self, app: &App, set: &FeatureSet, on_step: OnStep<'_>) -> Result<Work> {
        let numeric: Vec<&tidig_models::features::FeatureDef> = set.numeric().collect();
        let read = match self.read(app, set, on_step).await? {
            Ok(read) => read,
            Err(why) => return Ok(Work::Stopped(why)),
        };
        crate::testkit_hooks::pause_during_research().await;
        if let Some(why) = self.checkpoint(app, on_step, "fitting", 70).await? {
            return Ok(Work::Stopped(why));
        }
        let (rows, labels) = &read.train;
        let (hrows, hlabels) = &read.holdout;
        let log1p: Vec<bool> = self
            .chosen
            .iter()
            .map(|&j| train::log_transformed(numeric[j]))
            .collect();
        let model = tidig_models::logistic::fit(rows, labels, 1.0, &log1p)
            .map_err(|e| Precondition::CannotTrain(e.to_string()))?;
        if let Some(why) = self.checkpoint(app, on_step, "aggregating", 85).await? {
            return Ok(Work::Stopped(why));
        }
        let p: Vec<f64> = hrows.iter().map(|r| model.probability(r)).collect();
        let names: Vec<String> = self.chosen.iter().map(|&j| numeric[j].id.clone()).collect();
        let coefficients: Vec<Option<f64>> = model.weights.iter().map(|w| Some(*w)).collect();
        let min = self.permit.min_cell;
        let positives = hlabels.iter().filter(|l| **l).count() as u64;
        let negatives = hlabels.len() as u64 - positives;
        let capacity = ((hrows.len() as f64 * FLAG_SHARE).ceil() as usize).max(1);
        let flags = tidig_models::metrics::flag_top(&p, capacity);
        let fairness = if self.reads_protected() {
            train::groupings(set, &app.settings().gate.groupings, &read.protected)?
                .into_iter()
                .map(|(name, groups)| group_table(&name, &groups, &flags, hlabels, &p, min))
                .collect()
        } else {
            Vec::new()
        };
        let results = Results {
            kind: self.kind,
            permit: self.permit.id.clone(),
            permit_version: self.version,
            as_of: self.as_of.to_string(),
            snapshots: self.dates.iter().map(|d| d.to_string()).collect(),
            min_cell: min,
            train_persons: cell(rows.len() as u64, min),
            holdout_persons: cell(hrows.len() as u64, min),
            holdout_positives: cell(positives, min),
            // A metric over a small holdout or few positives would describe a handful
            // of persons: withheld with them.
            auc: (cell(positives, min).is_some() && cell(negatives, min).is_some())
                .then(|| tidig_models::metrics::auc(&p, hlabels))
                .flatten(),
            brier: cell(hrows.len() as u64, min).map(|_| tidig_models::metrics::brier(&p, hlabels)),
            calibration: calibration_table(&p, hlabels, 10, min),
            flag_share: FLAG_SHARE,
            fairness,
            factors: factor_report(rows, labels, &names, &coefficients, min),
            features: names,
            model: None,
        };
        Ok(Work::Done(Box::new(results), None))
    }

    /// Reads the three snapshots: only the chosen columns, only the cohort, never an
    /// objector; `Err(why)` when the permit stopped holding meanwhile.
    async fn read(
        &self,
        app: &App,
        set: &FeatureSet,
        on_step: OnStep<'_>,
    ) -> Result<std::result::Result<Read, String>> {
        let store = app.store();
        let births = store.births().await?;
        let objectors = store.objectors().await?;
        let version = set.hash();
        let mut parts = Vec::new();
        let mut protected = Vec::new();
        for (i, d) in self.dates.into_iter().enumerate() {
            let stage = format!("reading snapshot {d}");
            if let Some(why) = self
                .checkpoint(app, on_step, &stage, 10 + 20 * i as u32)
                .await?
            {
                return Ok(Err(why));
            }
            let vectors = load_vectors(app, &version, d).await?;
            if vectors.is_empty() {
                return Err(train::not_built(d));
            }
            let cohort = train::PermitCohort::on(app, &self.permit, d).await?;
            let (mut rows, mut labels) = (Vec::new(), Vec::new());
            for (pid, v) in vectors {
                if !cohort.holds(&births, pid) || objectors.contains(&pid) {
                    continue;
                }
                let Some(label) = v.label else {
                    return Err(Precondition::LabelNotObserved { date: d }.into());
                };
                rows.push(
                    self.chosen
                        .iter()
                        .map(|&j| v.values.get(j).copied().flatten())
                        .collect::<Vec<_>>(),
                );
                labels.push(label > 0.5);
                if i == 2 && self.reads_protected() {
                    protected.push(v.protected);
                }
            }
            parts.push((rows, labels));
        }
        let holdout = parts.pop().unwrap_or_default();
        let (mut rows, mut labels) = (Vec::new(), Vec::new());
        for (r, l) in parts {
            rows.extend(r);
            labels.extend(l);
        }
        Ok(Ok(Read {
            train: (rows, labels),
            holdout,
            protected,
        }))
    }
}

/// How a run's work ended.
enum Work {
    /// The results and, for a training run, the model to register.
    Done(Box<Results>, Option<Box<train::Artifact>>),
    /// The permit stopped holding: why.
    Stopped(String),
}

/// Whether `by` may follow run `id`, which `owner` started and which has not been
/// recorded yet: the access policy's check (audited), and a researcher only their own.
pub async fn may_follow(app: &App, by: &Principal, id: &str, owner: &str) -> Result<()> {
    let op = Operation::GetResearchResults;
    let rec = app
        .record(by, &crate::access::action(op))
        .with(json!({"run": id, "running": true}));
    app.check_access(by, op, Target::deployment(), rec).await?;
    if by.role.as_str() == "researcher" && !by.same_person(owner) {
        return Err(EngineError::NotFound {
            what: "research run",
            id: id.into(),
        });
    }
    Ok(())
}

/// `tidig research results`: a run's record and, when released, its aggregates. A
/// researcher reads only their own runs.
pub async fn results(app: &App, by: &Principal, id: &str) -> Result<ResearchRun> {
    let op = Operation::GetResearchResults;
    let rec = app
        .record(by, &crate::access::action(op))
        .with(json!({"run": id}));
    let pass = app.check_access(by, op, Target::deployment(), rec).await?;
    let run = app
        .store()
        .research_run(&pass, id)
        .await?
        .filter(|r| by.role.as_str() != "researcher" || by.same_person(&r.principal))
        .ok_or_else(|| EngineError::NotFound {
            what: "research run",
            id: id.into(),
        })?;
    Ok(ResearchRun {
        results: run
            .results
            .as_deref()
            .map(serde_json::from_str)
            .transpose()?,
        run,
    })
}
