//! Research under a secondary-use permit: an evaluation reads only what the permit
//! allows (its features, its cohort, its period; objectors never), fits the model on
//! it, and releases aggregates only — cohort sizes, holdout metrics and the factor
//! report — with every count below the permit's minimum cell suppressed. The permit is
//! enforced here, not by the caller: the researcher must be named in it and it must be
//! valid; a request outside it is refused naming what. Whether the results are released
//! is decided in the transaction that records them, against the permit as it stands then
//! (revoked, amended or expired meanwhile: withheld, nothing kept).

use chrono::{Datelike, Duration, NaiveDate};
use serde::Serialize;
use serde_json::json;
use sha2::Digest;
use tidig_governance::access::Operation;
use tidig_governance::permit::{FeatureScope, Permit, Registry, Request};
use tidig_models::features::{FeatureSet, Source};
use tidig_models::research::{cell, factor_report, Cell, FactorReport};

use crate::access::Target;
use crate::app::App;
use crate::dates;
use crate::error::{EngineError, Precondition};
use crate::pipeline::features::load_vectors;
use crate::principal::Principal;
use crate::store::{NewResearchRun, ResearchRunRow};

type Result<T, E = EngineError> = std::result::Result<T, E>;

/// What an evaluation may release.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
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
    pub factors: FactorReport,
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

/// `tidig research run`: evaluates the model family on what permit `permit_id` allows,
/// as of `as_of` (the holdout is one label horizon before it, the training snapshots the
/// two horizons before that). `features`: the features asked for (all that the permit
/// allows when empty).
pub async fn evaluate(
    app: &App,
    by: &Principal,
    permit_id: &str,
    as_of: NaiveDate,
    features: &[String],
    set: &FeatureSet,
) -> Result<ResearchRun> {
    let op = Operation::StartResearchRun;
    let started_at = app.clock().stamp();
    let rec = app.record(by, &crate::access::action(op)).with(json!({
        "permit": permit_id, "as_of": as_of.to_string(), "asked": features,
    }));
    let pass = app
        .check_access(by, op, Target::deployment(), rec.clone())
        .await?;
    let result = async {
        let history = app.store().permit_history(&pass, permit_id).await?;
        let current = history.last().ok_or_else(|| EngineError::NotFound {
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
        // The features: the asked ones, or every numeric feature the permit allows.
        let numeric: Vec<&tidig_models::features::FeatureDef> = set.numeric().collect();
        let chosen: Vec<usize> = if features.is_empty() {
            (0..numeric.len())
                .filter(|&j| {
                    permit.allows_feature(&FeatureScope {
                        id: &numeric[j].id,
                        registry: registry(numeric[j].source),
                    })
                })
                .collect()
        } else {
            features
                .iter()
                .map(|f| {
                    numeric.iter().position(|d| &d.id == f).ok_or_else(|| {
                        EngineError::invalid(
                            "features",
                            format!("`{f}` is not a numeric feature of set `{}`", set.name),
                        )
                    })
                })
                .collect::<Result<_>>()?
        };
        let scopes: Vec<FeatureScope<'_>> = chosen
            .iter()
            .map(|&j| FeatureScope {
                id: &numeric[j].id,
                registry: registry(numeric[j].source),
            })
            .collect();
        let horizon = Duration::days(set.label.horizon_days as i64);
        let holdout = as_of - horizon;
        let dates_read = [holdout - horizon - horizon, holdout - horizon, holdout];
        permit
            .allows(&Request {
                principal: by.id(),
                today: app.clock().today(),
                features: &scopes,
                snapshots: &dates_read,
            })
            .map_err(refused)?;
        if chosen.is_empty() {
            return Err(EngineError::invalid(
                "features",
                "the permit allows none of the feature set's numeric features",
            ));
        }

        // Read: only the chosen columns, only the cohort, never an objector.
        let store = app.store();
        let births = store.births().await?;
        let objectors = store.objectors().await?;
        let version = set.hash();
        let mut parts = Vec::new();
        for d in dates_read {
            let vectors = load_vectors(app, &version, d).await?;
            if vectors.is_empty() {
                return Err(Precondition::CannotTrain(format!(
                    "features for {d} are not built: an operator runs `tidig features build --as-of {d}`"
                ))
                .into());
            }
            let residence: std::collections::HashMap<i64, String> = store
                .residences_on(dates::days(d))
                .await?
                .into_iter()
                .map(|r| (r.person, r.municipality))
                .collect();
            let (mut rows, mut labels) = (Vec::new(), Vec::new());
            for (pid, v) in vectors {
                let born = births
                    .get(&pid)
                    .and_then(|b| dates::from_days(*b))
                    .map(|b| b.year());
                let inside = born.is_some_and(|y| {
                    permit.in_cohort(y, residence.get(&pid).map(String::as_str))
                });
                if !inside || objectors.contains(&pid) {
                    continue;
                }
                let Some(label) = v.label else {
                    return Err(Precondition::LabelNotObserved { date: d }.into());
                };
                rows.push(
                    chosen
                        .iter()
                        .map(|&j| v.values.get(j).copied().flatten())
                        .collect::<Vec<_>>(),
                );
                labels.push(label > 0.5);
            }
            parts.push((rows, labels));
        }
        let (hrows, hlabels) = parts.pop().unwrap_or_default();
        let (mut rows, mut labels) = (Vec::new(), Vec::new());
        for (r, l) in parts {
            rows.extend(r);
            labels.extend(l);
        }
        let log1p: Vec<bool> = chosen
            .iter()
            .map(|&j| {
                use tidig_models::features::Aggregation as A;
                matches!(
                    numeric[j].aggregation,
                    A::Count | A::Sum | A::Duration | A::DaysSinceLast | A::Moves
                )
            })
            .collect();
        let model = tidig_models::logistic::fit(&rows, &labels, 1.0, &log1p)
            .map_err(|e| Precondition::CannotTrain(e.to_string()))?;
        let p: Vec<f64> = hrows.iter().map(|r| model.probability(r)).collect();
        let names: Vec<String> = chosen.iter().map(|&j| numeric[j].id.clone()).collect();
        let coefficients: Vec<Option<f64>> = model.weights.iter().map(|w| Some(*w)).collect();
        let min = permit.min_cell;
        let positives = hlabels.iter().filter(|l| **l).count() as u64;
        let results = Results {
            permit: permit.id.clone(),
            permit_version: current.version,
            as_of: as_of.to_string(),
            snapshots: dates_read.iter().map(|d| d.to_string()).collect(),
            min_cell: min,
            train_persons: cell(rows.len() as u64, min),
            holdout_persons: cell(hrows.len() as u64, min),
            holdout_positives: cell(positives, min),
            // A metric over a small holdout or few positives would describe a handful
            // of persons: withheld with them.
            auc: (cell(positives, min).is_some() && cell(hrows.len() as u64 - positives, min).is_some())
                .then(|| tidig_models::metrics::auc(&p, &hlabels))
                .flatten(),
            brier: cell(hrows.len() as u64, min)
                .is_some()
                .then(|| tidig_models::metrics::brier(&p, &hlabels)),
            factors: factor_report(&rows, &labels, &names, &coefficients, min),
            features: names,
        };
        let text = serde_json::to_string(&results)?;
        let id = hex::encode(sha2::Sha256::digest(
            format!("{permit_id}\0{}\0{started_at}\0{text}", by.id()).as_bytes(),
        ))[..32]
            .to_string();
        let run = app
            .store()
            .record_research_run(
                &pass,
                &NewResearchRun {
                    id: &id,
                    permit_id,
                    permit_version: current.version,
                    kind: "evaluate",
                    as_of: dates::days(as_of),
                    started_at: &started_at,
                    finished_at: &app.clock().stamp(),
                    today: &app.clock().today().to_string(),
                    results: &text,
                    read: json!({
                        "features": results.features,
                        "snapshots": results.snapshots,
                        "persons": {"train": rows.len(), "holdout": hrows.len()},
                        "cohort": permit.cohort,
                        "objectors_excluded": true,
                    }),
                },
            )
            .await?;
        Ok(ResearchRun {
            results: run.results.as_deref().map(serde_json::from_str).transpose()?,
            run,
        })
    }
    .await;
    app.audited(rec, result).await
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
