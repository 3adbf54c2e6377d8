//! The use cases. Each takes `&App` (and a `&Principal` where someone acts) and returns
//! values; none prints, parses flags or runs SQL.
//!
//! * `ingest` — registry extracts in, canonical records and quarantine out;
//! * `features` — point-in-time feature vectors;
//! * `train` — time-split training, evaluation, fairness, the release gate, registration;
//! * `registry` — list, show, approve (four-eyes), activate, retire;
//! * `score` — the batch shell around `decide`, the pure per-person decision;
//! * `card` — the model card and its plots;
//! * `rules` — rule packs from disk and the facts the rules see;
//! * `audit` — verify, checkpoint, prove, query and export the audit trail;
//! * `casework` — the caseworker service's use cases;
//! * `oversight` — the data-protection officer's (the stop switch).

pub mod audit;
pub mod card;
pub mod casework;
pub mod decide;
pub mod features;
pub mod ingest;
pub mod oversight;
pub mod permits;
pub mod registry;
pub mod research;
pub mod rules;
pub mod score;
pub mod stats;
pub mod subject;
pub mod train;

use tidig_models::features::FeatureSet;

use crate::error::EngineError;

/// The feature set in `path`, or the built-in child-and-family set.
pub fn load_feature_set(path: Option<&std::path::Path>) -> Result<FeatureSet, EngineError> {
    match path {
        None => tidig_models::features::child_family()
            .map_err(|e| EngineError::internal(format_args!("the built-in feature set: {e}"))),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| EngineError::file(p, format!("cannot read feature set: {e}")))?;
            tidig_models::features::parse_feature_set(&p.display().to_string(), &text)
                .map_err(|e| EngineError::invalid("--set", e.to_string()))
        }
    }
}

/// Row counts of the store and its backend, for `tidig status`.
pub async fn status(
    app: &crate::app::App,
) -> Result<(crate::store::StoreCounts, crate::store::Backend), EngineError> {
    Ok((app.store().counts().await?, app.store().backend()))
}
