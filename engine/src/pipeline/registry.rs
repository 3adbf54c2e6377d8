//! The model registry's use cases: list, show, approve (never by the trainer, never past
//! a failed gate), activate (only when the data-stage rules allow every input; the model
//! active before is retired in the same transaction), retire and roll back (the model
//! the active one replaced is active again). Every change passes the access policy and
//! commits with its audit entry.

use serde::Serialize;
use serde_json::json;
use tidig_governance::audit::Record;
use tidig_governance::eval::ModelFacts;
use tidig_models::features::FeatureSet;

use tidig_governance::access::Operation;

use crate::access::Target;
use crate::app::App;
use crate::domain::ModelState;
use crate::error::{EngineError, Precondition};
use crate::pipeline::train::Artifact;
use crate::principal::Principal;
use crate::store::{ModelRow, Transition, TransitionOutcome};

type Result<T, E = EngineError> = std::result::Result<T, E>;

/// A model with its artifact.
#[derive(Clone, Debug, Serialize)]
pub struct Model {
    pub row: ModelRow,
    pub artifact: Artifact,
}

/// Every registered model, oldest first.
pub async fn list(app: &App) -> Result<Vec<ModelRow>> {
    Ok(app.store().models().await?)
}

/// A model by id or unique id prefix (hexadecimal; never a pattern).
pub async fn show(app: &App, id: &str) -> Result<Model> {
    let id = id.trim();
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(EngineError::invalid(
            "model id",
            format!("`{id}` is not a model id or prefix (1–64 hexadecimal characters)"),
        ));
    }
    let id = id.to_ascii_lowercase();
    let mut rows = app.store().models_with_prefix(&id).await?;
    let row = match rows.len() {
        1 => rows.remove(0),
        0 => return Err(EngineError::NotFound { what: "model", id }),
        n => {
            return Err(EngineError::invalid(
                "model id",
                format!("`{id}` matches {n} models: give more of the id"),
            ))
        }
    };
    let text =
        app.store().model_artifact(&row.id).await?.ok_or_else(|| {
            EngineError::internal(format_args!("model `{}` has no artifact", row.id))
        })?;
    Ok(Model {
        row,
        artifact: serde_json::from_str(&text)?,
    })
}

/// The one active model, if any.
pub async fn active(app: &App) -> Result<Option<Model>> {
    let ids = app.store().active_models().await?;
    match ids.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some(show(app, id).await?)),
        more => Err(Precondition::SeveralActive { count: more.len() }.into()),
    }
}

/// How a transition is asked for.
struct Step<'a> {
    from: &'a [ModelState],
    to: ModelState,
    needed: &'static str,
    expect_active: Option<&'a str>,
    record_replaced: bool,
}

/// Carries out a transition and turns the store's refusals into errors.
async fn change(
    app: &App,
    by: &Principal,
    row: &ModelRow,
    step: Step<'_>,
    record: &Record,
) -> Result<ModelRow> {
    let at = app.clock().stamp();
    let outcome = app
        .store()
        .transition(&Transition {
            id: &row.id,
            from: step.from,
            to: step.to,
            at: &at,
            by: by.id(),
            auth: by.auth.as_str(),
            audit: record,
            expect_active: step.expect_active,
            record_replaced: step.record_replaced,
        })
        .await?;
    match outcome {
        TransitionOutcome::Done { retired } => Ok(ModelRow {
            state: step.to,
            replaced: match (step.record_replaced, retired.as_slice()) {
                (true, [before]) => Some(before.clone()),
                _ => row.replaced.clone(),
            },
            ..row.clone()
        }),
        TransitionOutcome::WrongState(state) => Err(Precondition::ModelState {
            model: row.id.clone(),
            state,
            needed: step.needed,
        }
        .into()),
        TransitionOutcome::Raced => Err(EngineError::Conflict {
            reason: format!(
                "model `{}` was not activated: another model was activated at the same time; check `tidig models list` and retry",
                &row.id[..16.min(row.id.len())]
            ),
        }),
    }
}

/// The record of a registry action on the model `id` names (as given: a prefix until
/// it is resolved).
fn model_record(app: &App, by: &Principal, op: Operation, id: &str) -> Record {
    let mut r = app
        .record(by, &crate::access::action(op))
        .with(json!({"model": id}));
    r.versions.model = Some(id.to_string());
    r
}

/// Runs a registry change for whoever the access policy lets make it (the operator on
/// the command line, the data-protection officer through the oversight service) and
/// records it: the change and its entry commit together; a refusal or failure is
/// recorded with its reason and deciding rule.
async fn audited_change<T>(
    app: &App,
    by: &Principal,
    op: Operation,
    id: &str,
    run: impl AsyncFnOnce(Model, Record) -> Result<T>,
) -> Result<T> {
    let record = model_record(app, by, op, id);
    let pass = app
        .check_access(by, op, Target::deployment(), record.clone())
        .await?;
    let result = async {
        let model = show(app, id).await?;
        let mut resolved = pass
            .pending_record(json!({"model": model.row.id}))
            .unwrap_or_else(|| model_record(app, by, op, &model.row.id));
        resolved.versions.model = Some(model.row.id.clone());
        run(model, resolved).await
    }
    .await;
    app.audited(record, result).await
}

/// Approves a trained model: never one that failed its gate, never by its trainer
/// (compared by the authenticated principal's id, case and spacing ignored).
pub async fn approve(app: &App, by: &Principal, id: &str) -> Result<ModelRow> {
    audited_change(
        app,
        by,
        Operation::ApproveModel,
        id,
        async |Model { row, artifact }, record| {
            if row.state != ModelState::Trained {
                return Err(Precondition::ModelState {
                    model: row.id,
                    state: row.state,
                    needed: "only a trained model can be approved",
                }
                .into());
            }
            if !artifact.gate_passed {
                return Err(Precondition::GateFailed {
                    model: row.id,
                    failures: artifact.gate_failures.join("; "),
                }
                .into());
            }
            if by.same_person(&row.created_by) {
                return Err(EngineError::PermissionDenied {
                    reason: format!(
                        "model `{}` was trained by `{}`; it must be approved by someone else (four-eyes)",
                        row.id, row.created_by
                    ),
                    rules: vec!["four-eyes".into()],
                });
            }
            change(
                app,
                by,
                &row,
                Step {
                    from: &[ModelState::Trained],
                    to: ModelState::Approved,
                    needed: "only a trained model can be approved",
                    expect_active: None,
                    record_replaced: false,
                },
                &record,
            )
            .await
        },
    )
    .await
}

/// Checks that a model may score now: trained on `set`, every input allowed by the
/// data-stage rules of the app's pack.
fn check_usable(app: &App, row: &ModelRow, artifact: &Artifact, set: &FeatureSet) -> Result<()> {
    if set.hash() != artifact.feature_set_version {
        return Err(Precondition::FeatureSetMismatch {
            model: row.id[..16].to_string(),
            needed: artifact.feature_set_version[..12].to_string(),
            given: set.hash()[..12].to_string(),
        }
        .into());
    }
    crate::pipeline::rules::check_inputs(
        app.pack(),
        &app.settings().deployment,
        &model_facts(&row.id, artifact),
        set,
        &artifact.features,
    )?;
    Ok(())
}

/// Activates an approved model for scoring. Its inputs must pass the data-stage rules
/// of the app's pack; the model active before it (if any) is retired in the same
/// transaction and remembered as the one a rollback returns to.
pub async fn activate(app: &App, by: &Principal, id: &str, set: &FeatureSet) -> Result<ModelRow> {
    audited_change(
        app,
        by,
        Operation::ActivateModel,
        id,
        async |Model { row, artifact }, mut record| {
            record.versions.feature_set = Some(artifact.feature_set_version.clone());
            if row.state != ModelState::Approved {
                return Err(Precondition::ModelState {
                    model: row.id,
                    state: row.state,
                    needed: "only an approved model can be activated",
                }
                .into());
            }
            check_usable(app, &row, &artifact, set)?;
            change(
                app,
                by,
                &row,
                Step {
                    from: &[ModelState::Approved],
                    to: ModelState::Active,
                    needed: "only an approved model can be activated",
                    expect_active: None,
                    record_replaced: true,
                },
                &record,
            )
            .await
        },
    )
    .await
}

/// Retires a model: it is never used for scoring again (unless a rollback returns to
/// it).
pub async fn retire(app: &App, by: &Principal, id: &str) -> Result<ModelRow> {
    audited_change(
        app,
        by,
        Operation::RetireModel,
        id,
        async |Model { row, .. }, record| {
            change(
                app,
                by,
                &row,
                Step {
                    from: &[
                        ModelState::Trained,
                        ModelState::Approved,
                        ModelState::Active,
                    ],
                    to: ModelState::Retired,
                    needed: "it is already retired",
                    expect_active: None,
                    record_replaced: false,
                },
                &record,
            )
            .await
        },
    )
    .await
}

/// A rollback's result.
#[derive(Clone, Debug, Serialize)]
pub struct Rollback {
    /// The model active again.
    pub activated: ModelRow,
    /// The model that was active, now retired.
    pub retired: String,
}

/// Rolls back the last activation in one step: the model the active one replaced is
/// active again (its inputs checked against today's rules, as an activation would) and
/// the active one is retired, in one transaction that is refused if the active model
/// changed meanwhile. A second rollback walks one activation further back.
pub async fn rollback(app: &App, by: &Principal, set: &FeatureSet) -> Result<Rollback> {
    let op = Operation::RollbackModel;
    let record = model_record(app, by, op, "active");
    let pass = app
        .check_access(by, op, Target::deployment(), record.clone())
        .await?;
    let result = async {
        let current = active(app).await?.ok_or(Precondition::NoActiveModel)?;
        let retired = current.row.id;
        let previous = current
            .row
            .replaced
            .ok_or_else(|| Precondition::NothingToRollBack {
                model: retired.clone(),
            })?;
        let Model { row, artifact } = show(app, &previous).await?;
        let details = json!({"model": row.id, "rolled_back": retired});
        let mut record = pass
            .pending_record(details.clone())
            .unwrap_or_else(|| model_record(app, by, op, &row.id).with(details));
        record.versions.model = Some(row.id.clone());
        record.versions.feature_set = Some(artifact.feature_set_version.clone());
        check_usable(app, &row, &artifact, set)?;
        let step = Step {
            from: &[ModelState::Retired],
            to: ModelState::Active,
            needed: "only the retired model the active one replaced can be rolled back to",
            expect_active: Some(&retired),
            record_replaced: false,
        };
        let activated = change(app, by, &row, step, &record).await?;
        Ok(Rollback { activated, retired })
    }
    .await;
    app.audited(record, result).await
}

/// What the rules see of a model.
pub fn model_facts(id: &str, a: &Artifact) -> ModelFacts {
    ModelFacts {
        id: id.into(),
        kind: a.kind.clone(),
        feature_set: a.feature_set.clone(),
    }
}
