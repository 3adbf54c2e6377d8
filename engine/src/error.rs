//! The engine's errors: one enum whose variants a server maps one-to-one to gRPC status
//! codes, each carrying what a person needs to act on it.
//!
//! Messages follow one style: lowercase, no trailing period, user input in backticks,
//! never a Rust type name and never a raw national ID.

use chrono::NaiveDate;

use crate::domain::ModelState;
use crate::store::StoreError;

/// Why an engine operation did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Nothing by that id (NOT_FOUND).
    #[error("no {what} `{id}`")]
    NotFound { what: &'static str, id: String },
    /// A request that can never succeed as given (INVALID_ARGUMENT).
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// The system is not in the state the operation needs (FAILED_PRECONDITION).
    #[error(transparent)]
    FailedPrecondition(#[from] Precondition),
    /// The principal may not do this (PERMISSION_DENIED); `rules` names what decided.
    #[error("{reason}")]
    PermissionDenied { reason: String, rules: Vec<String> },
    /// Someone else changed the same thing first (ABORTED).
    #[error("{reason}")]
    Conflict { reason: String },
    /// What the request would create exists already (ALREADY_EXISTS).
    #[error("{reason}")]
    AlreadyExists { reason: String },
    /// The store could not be reached or failed (UNAVAILABLE).
    #[error(transparent)]
    Unavailable(#[from] StoreError),
    /// A file the operation reads or writes (the path is the operator's own input).
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    /// A bug or a broken invariant (INTERNAL).
    #[error("internal error: {0}")]
    Internal(String),
}

/// What must change before the operation can run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Precondition {
    #[error(
        "no active model: approve one (`tidig models approve`) and activate it (`tidig models activate`)"
    )]
    NoActiveModel,
    #[error("{count} models are active; activation keeps one: retire all but one")]
    SeveralActive { count: usize },
    #[error("model `{model}` is `{state}`; {needed}")]
    ModelState {
        model: String,
        state: ModelState,
        needed: &'static str,
    },
    #[error(
        "model `{model}` replaced no model, so there is nothing to roll back to: activate another approved model instead"
    )]
    NothingToRollBack { model: String },
    #[error("permit `{permit}` is revoked: nothing more is done under it")]
    PermitRevoked { permit: String },
    #[error("model `{model}` failed its release gate and cannot be approved: {failures}")]
    GateFailed { model: String, failures: String },
    #[error(
        "model `{model}` was trained on feature set version {needed}; the given set is {given}"
    )]
    FeatureSetMismatch {
        model: String,
        needed: String,
        given: String,
    },
    #[error("model input `{feature}` is not in feature set `{set}`")]
    UnknownInput { feature: String, set: String },
    #[error("the data-stage rules (pack {pack}) refuse {} of the model's inputs: {}", refused.len(), refused.join("; "))]
    InputsRefused {
        pack: String,
        refused: Vec<String>,
        /// The deciding rules (empty when no rule permitted an input).
        rules: Vec<String>,
    },
    #[error("the label of the {date} snapshot is not observed yet: choose an earlier --as-of")]
    LabelNotObserved { date: NaiveDate },
    #[error("cannot train: {0}")]
    CannotTrain(String),
    #[error("suggestion `{suggestion}` is `{status}`: only an open suggestion can be decided")]
    NotOpen {
        suggestion: String,
        status: crate::domain::SuggestionStatus,
    },
    #[error(
        "scoring is stopped (since {since}, by {by}: {reason}); a data-protection officer \
         resumes it (`tidig client resume-scoring`)"
    )]
    ScoringStopped {
        since: String,
        by: String,
        reason: String,
    },
    #[error("suggestion `{suggestion}` expired on {expires_at} and can no longer be decided")]
    Expired {
        suggestion: String,
        expires_at: String,
    },
}

impl EngineError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> EngineError {
        EngineError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn file(path: &std::path::Path, reason: impl std::fmt::Display) -> EngineError {
        // A path may be named after a person (`PNR_0101005038.txt`): never echo an ID.
        EngineError::File {
            path: tidig_connectors::redact::scrub(&path.display().to_string()).into_owned(),
            reason: tidig_connectors::redact::scrub(&reason.to_string()).into_owned(),
        }
    }

    /// The error's kind, as the audit trail records a failure (and gRPC names codes).
    pub fn kind(&self) -> &'static str {
        match self {
            EngineError::NotFound { .. } => "not_found",
            EngineError::InvalidArgument { .. } => "invalid_argument",
            EngineError::FailedPrecondition(_) => "failed_precondition",
            EngineError::PermissionDenied { .. } => "permission_denied",
            EngineError::Conflict { .. } => "conflict",
            EngineError::AlreadyExists { .. } => "already_exists",
            EngineError::Unavailable(_) => "unavailable",
            EngineError::File { .. } => "file",
            EngineError::Internal(_) => "internal",
        }
    }

    /// The rules that refused the action, when a rule did: a four-eyes or access rule,
    /// the release gate, the data-stage rules.
    pub fn deciding_rules(&self) -> Option<Vec<String>> {
        match self {
            EngineError::PermissionDenied { rules, .. } => Some(rules.clone()),
            EngineError::FailedPrecondition(Precondition::GateFailed { .. }) => {
                Some(vec!["release-gate".into()])
            }
            EngineError::FailedPrecondition(Precondition::InputsRefused { rules, .. }) => {
                Some(if rules.is_empty() {
                    vec!["data-stage:no-permit".into()]
                } else {
                    rules.clone()
                })
            }
            _ => None,
        }
    }

    pub(crate) fn internal(what: impl std::fmt::Display) -> EngineError {
        EngineError::Internal(what.to_string())
    }
}

impl From<sqlx::Error> for EngineError {
    fn from(e: sqlx::Error) -> EngineError {
        EngineError::Unavailable(StoreError::Sql(e))
    }
}

impl From<serde_json::Error> for EngineError {
    fn from(e: serde_json::Error) -> EngineError {
        EngineError::internal(format_args!("stored JSON does not decode: {e}"))
    }
}

/// The engine's result type.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
