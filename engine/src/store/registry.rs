//! The model registry: content-hashed artifacts, their state (trained → approved →
//! active → retired) and the history of who changed it, when and how they were
//! authenticated. Every state change reads and writes the state in one transaction; a
//! unique index keeps at most one model active even when activations race.

use serde::Serialize;

use tidig_governance::audit::Record;

use super::{AppendAudit, Store, StoreError};
use crate::domain::ModelState;

/// A registry row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelRow {
    pub id: String,
    pub kind: String,
    pub state: ModelState,
    pub gate_passed: bool,
    pub created_at: String,
    pub created_by: String,
    /// How the trainer was authenticated.
    pub created_auth: String,
    /// The model its activation retired: what a rollback reactivates.
    pub replaced: Option<String>,
}

type RawRow = (
    String,
    String,
    String,
    i64,
    String,
    String,
    String,
    Option<String>,
);

const COLUMNS: &str =
    "id, kind, state, gate_passed, created_at, created_by, created_auth, replaced";

fn parse_state(text: &str) -> Result<ModelState, StoreError> {
    ModelState::parse(text).ok_or_else(|| StoreError::Corrupt {
        what: "model state",
        value: text.into(),
    })
}

fn row(r: RawRow) -> Result<ModelRow, StoreError> {
    Ok(ModelRow {
        state: parse_state(&r.2)?,
        id: r.0,
        kind: r.1,
        gate_passed: r.3 != 0,
        created_at: r.4,
        created_by: r.5,
        created_auth: r.6,
        replaced: r.7,
    })
}

/// A model to register.
#[derive(Clone, Debug)]
pub struct NewModel<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub feature_set_version: &'a str,
    pub gate_passed: bool,
    pub artifact_json: &'a str,
    pub at: &'a str,
    pub by: &'a str,
    pub auth: &'a str,
    /// The entry recording the training, appended in the registering transaction.
    pub audit: &'a Record,
}

/// A requested state change.
#[derive(Clone, Debug)]
pub struct Transition<'a> {
    pub id: &'a str,
    /// The states the model may be in for the change to happen.
    pub from: &'a [ModelState],
    pub to: ModelState,
    pub at: &'a str,
    pub by: &'a str,
    pub auth: &'a str,
    /// The entry recording the change, appended in its transaction.
    pub audit: &'a Record,
    /// For an activation: the one model that must be active when it happens (a
    /// rollback's), else it is refused as [`TransitionOutcome::Raced`].
    pub expect_active: Option<&'a str>,
    /// For an activation: remember the model it retires as the one a rollback returns
    /// to (not for a rollback itself, which keeps the chain).
    pub record_replaced: bool,
}

/// The result of a state change that the store could carry out or refuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransitionOutcome {
    /// Done; for an activation, the models it retired.
    Done { retired: Vec<String> },
    /// The model was not in one of the `from` states (it is in this one).
    WrongState(ModelState),
    /// Another activation committed first (the one-active index refused this one).
    Raced,
}

/// Inserts model `$m` (state `trained`) and its first history row in transaction `$tx`,
/// unless the id is registered already; evaluates to the rows inserted (0 or 1). One
/// text for `insert_model` and a research run's release.
macro_rules! insert_model_rows {
    ($tx:ident, $m:expr) => {{
        let m: &$crate::store::NewModel<'_> = $m;
        let n = sqlx::query(
            "INSERT INTO models (id, kind, feature_set, state, gate_passed, created_at, created_by, created_auth, artifact) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
        )
        .bind(m.id)
        .bind(m.kind)
        .bind(m.feature_set_version)
        .bind($crate::domain::ModelState::Trained.as_str())
        .bind(m.gate_passed as i64)
        .bind(m.at)
        .bind(m.by)
        .bind(m.auth)
        .bind(m.artifact_json)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        if n > 0 {
            sqlx::query($crate::store::registry::HISTORY)
                .bind(m.id)
                .bind($crate::domain::ModelState::Trained.as_str())
                .bind(m.at)
                .bind(m.by)
                .bind(m.auth)
                .execute(&mut *$tx)
                .await?;
        }
        n
    }};
}

pub(super) const HISTORY: &str =
    "INSERT INTO model_history (model_id, state, at, by_whom, by_auth) VALUES ($1, $2, $3, $4, $5)";

impl Store {
    /// Registers a model (idempotent: the id is the artifact's content hash). Returns
    /// whether it was new.
    pub async fn insert_model(&self, m: &NewModel<'_>) -> Result<bool, StoreError> {
        let inserted = in_write_tx!(self, |tx| {
            let n = insert_model_rows!(tx, m);
            let record = m.audit.clone().with(serde_json::json!({"new": n > 0}));
            tx.append_audit(&[record]).await?;
            n > 0
        });
        Ok(inserted)
    }

    /// Every registered model, oldest first.
    pub async fn models(&self) -> Result<Vec<ModelRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM models ORDER BY created_at, id");
        let rows: Vec<RawRow> = fetch_all!(self, RawRow, &sql);
        rows.into_iter().map(row).collect()
    }

    /// The models whose id starts with `prefix`, compared literally (no pattern
    /// characters: `%` and `_` are themselves).
    pub async fn models_with_prefix(&self, prefix: &str) -> Result<Vec<ModelRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM models WHERE substr(id, 1, $1) = $2 ORDER BY created_at, id"
        );
        let len = prefix.chars().count() as i32;
        let rows: Vec<RawRow> = fetch_all!(self, RawRow, &sql, len, prefix);
        rows.into_iter().map(row).collect()
    }

    /// The stored artifact (JSON) of a model.
    pub async fn model_artifact(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_scalar(
            "SELECT artifact FROM models WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(p)
        .await?))
    }

    /// The ids of the active models (at most one, by the unique index).
    pub async fn active_models(&self) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT id FROM models WHERE state = $1 ORDER BY created_at, id";
        Ok(on_pool!(self, |p| sqlx::query_scalar(sql)
            .bind(ModelState::Active.as_str())
            .fetch_all(p)
            .await?))
    }

    /// Changes a model's state if it is in one of `t.from`, reading and writing in one
    /// transaction. Activating retires the model active before it in the same
    /// transaction.
    pub async fn transition(&self, t: &Transition<'_>) -> Result<TransitionOutcome, StoreError> {
        let lock = match self {
            Store::Sqlite(_) => "",
            Store::Postgres(_) => " FOR UPDATE",
        };
        let select = format!("SELECT state FROM models WHERE id = $1{lock}");
        let result: Result<TransitionOutcome, StoreError> = async {
            Ok(in_write_tx!(self, |tx| {
                let state: Option<String> = sqlx::query_scalar(&select)
                    .bind(t.id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let state = match state {
                    None => {
                        return Err(StoreError::Corrupt {
                            what: "model id",
                            value: t.id.into(),
                        });
                    }
                    Some(s) => parse_state(&s)?,
                };
                if !t.from.contains(&state) {
                    TransitionOutcome::WrongState(state)
                } else {
                    let mut retired = Vec::new();
                    if t.to == ModelState::Active {
                        retired = sqlx::query_scalar(
                            "SELECT id FROM models WHERE state = $1 AND id <> $2",
                        )
                        .bind(ModelState::Active.as_str())
                        .bind(t.id)
                        .fetch_all(&mut *tx)
                        .await?;
                        if let Some(expected) = t.expect_active {
                            if retired != [expected] {
                                return Ok(TransitionOutcome::Raced);
                            }
                        }
                        if t.record_replaced {
                            if let [before] = retired.as_slice() {
                                sqlx::query("UPDATE models SET replaced = $1 WHERE id = $2")
                                    .bind(before)
                                    .bind(t.id)
                                    .execute(&mut *tx)
                                    .await?;
                            }
                        }
                        for p in &retired {
                            sqlx::query("UPDATE models SET state = $1 WHERE id = $2")
                                .bind(ModelState::Retired.as_str())
                                .bind(p)
                                .execute(&mut *tx)
                                .await?;
                            sqlx::query(HISTORY)
                                .bind(p)
                                .bind(ModelState::Retired.as_str())
                                .bind(t.at)
                                .bind(t.by)
                                .bind(t.auth)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    sqlx::query("UPDATE models SET state = $1 WHERE id = $2")
                        .bind(t.to.as_str())
                        .bind(t.id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(HISTORY)
                        .bind(t.id)
                        .bind(t.to.as_str())
                        .bind(t.at)
                        .bind(t.by)
                        .bind(t.auth)
                        .execute(&mut *tx)
                        .await?;
                    let record = t.audit.clone().with(serde_json::json!({
                        "from": state.as_str(), "to": t.to.as_str(), "retired": retired,
                    }));
                    tx.append_audit(&[record]).await?;
                    TransitionOutcome::Done { retired }
                }
            }))
        }
        .await;
        match result {
            Ok(o) => Ok(o),
            // The one-active index refused a second active model.
            Err(StoreError::Sql(sqlx::Error::Database(e)))
                if e.is_unique_violation()
                    && e.table() != Some("audit_log")
                    && !e.message().contains("audit_log") =>
            {
                Ok(TransitionOutcome::Raced)
            }
            Err(e) => Err(e),
        }
    }
}
