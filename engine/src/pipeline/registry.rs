//! The model registry's use cases: list, show, approve (never by the trainer, never past
//! a failed gate), activate (only when the data-stage rules allow every input; the model
//! active before is retired in the same transaction) and retire.

use serde::Serialize;
use serde_json::json;
use tidig_governance::audit::Record;
use tidig_governance::eval::ModelFacts;
use tidig_models::features::FeatureSet;

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

/// Carries out a transition and turns the store's refusals into errors.
async fn change(
    app: &App,
    by: &Principal,
    row: &ModelRow,
    from: &[ModelState],
    to: ModelState,
    needed: &'static str,
    record: &Record,
) -> Result<ModelRow> {
    let at = app.clock().stamp();
    let outcome = app
        .store()
        .transition(&Transition {
            id: &row.id,
            from,
            to,
            at: &at,
            by: by.id(),
            auth: by.auth.as_str(),
            audit: record,
        })
        .await?;
    match outcome {
        TransitionOutcome::Done { .. } => Ok(ModelRow {
            state: to,
            ..row.clone()
        }),
        TransitionOutcome::WrongState(state) => Err(Precondition::ModelState {
            model: row.id.clone(),
            state,
            needed,
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
fn model_record(app: &App, by: &Principal, action: &str, id: &str) -> Record {
    let mut r = app.record(by, action).with(json!({"model": id}));
    r.versions.model = Some(id.to_string());
    r
}

/// Runs a registry action and records it: the change and its entry commit together; a
/// refusal or failure is recorded with its reason and deciding rule.
async fn audited_change(
    app: &App,
    by: &Principal,
    action: &str,
    id: &str,
    op: impl AsyncFnOnce(Model, Record) -> Result<ModelRow>,
) -> Result<ModelRow> {
    let record = model_record(app, by, action, id);
    let result = async {
        let model = show(app, id).await?;
        let resolved = model_record(app, by, action, &model.row.id);
        op(model, resolved).await
    }
    .await;
    app.audited(record, result).await
}

/// Approves a trained model: never one that failed its gate, never by its trainer.
pub async fn approve(app: &App, by: &Principal, id: &str) -> Result<ModelRow> {
    audited_change(
        app,
        by,
        "model.approve",
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
                        "model `{}` was trained by `{}`; it must be approved by someone else",
                        row.id, row.created_by
                    ),
                    rules: vec!["four-eyes".into()],
                });
            }
            change(
                app,
                by,
                &row,
                &[ModelState::Trained],
                ModelState::Approved,
                "only a trained model can be approved",
                &record,
            )
            .await
        },
    )
    .await
}

/// Activates an approved model for scoring. Its inputs must pass the data-stage rules
/// of the app's pack; the model active before it (if any) is retired in the same
/// transaction.
pub async fn activate(app: &App, by: &Principal, id: &str, set: &FeatureSet) -> Result<ModelRow> {
    audited_change(
        app,
        by,
        "model.activate",
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
                &model_facts(&row.id, &artifact),
                set,
                &artifact.features,
            )?;
            change(
                app,
                by,
                &row,
                &[ModelState::Approved],
                ModelState::Active,
                "only an approved model can be activated",
                &record,
            )
            .await
        },
    )
    .await
}

/// Retires a model: it is never used for scoring again.
pub async fn retire(app: &App, by: &Principal, id: &str) -> Result<ModelRow> {
    audited_change(
        app,
        by,
        "model.retire",
        id,
        async |Model { row, .. }, record| {
            change(
                app,
                by,
                &row,
                &[
                    ModelState::Trained,
                    ModelState::Approved,
                    ModelState::Active,
                ],
                ModelState::Retired,
                "it is already retired",
                &record,
            )
            .await
        },
    )
    .await
}

/// What the rules see of a model.
pub fn model_facts(id: &str, a: &Artifact) -> ModelFacts {
    ModelFacts {
        id: id.into(),
        kind: a.kind.clone(),
        feature_set: a.feature_set.clone(),
    }
}
