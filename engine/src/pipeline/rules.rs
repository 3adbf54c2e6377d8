//! The engine's side of the rule layer: reading packs from disk, and the facts the rules
//! see about features and models.

use std::path::Path;

use tidig_governance::eval::{Deployment, FeatureFacts, ModelFacts, Request};
use tidig_governance::{Decision, RulePack, Source};
use tidig_models::features::{FeatureDef, FeatureSet, Sensitivity, Source as Registry};

use crate::error::{EngineError, Precondition};

type Result<T, E = EngineError> = std::result::Result<T, E>;

fn pack_error(e: tidig_governance::rules::PackError) -> EngineError {
    EngineError::invalid("rule pack", e.to_string())
}

/// Loads a pack directory: exactly one `*.cedarschema` and one or more `*.cedar` files;
/// `None` is the built-in pack.
pub fn load_pack(dir: Option<&Path>) -> Result<RulePack> {
    let Some(dir) = dir else {
        return RulePack::default_pack().map_err(pack_error);
    };
    let (schema, rules) = read_pack(dir)?;
    let sources: Vec<Source<'_>> = rules
        .iter()
        .map(|(n, t)| Source { name: n, text: t })
        .collect();
    RulePack::load(
        Source {
            name: &schema.0,
            text: &schema.1,
        },
        &sources,
    )
    .map_err(pack_error)
}

type Named = (String, String);

fn read_pack(dir: &Path) -> Result<(Named, Vec<Named>)> {
    if !dir.is_dir() {
        return Err(EngineError::file(
            dir,
            "not a rule-pack directory (expected *.cedarschema and *.cedar files)",
        ));
    }
    let mut schema = Vec::new();
    let mut rules = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .and_then(|d| d.collect::<std::io::Result<Vec<_>>>())
        .map_err(|e| EngineError::file(dir, format!("cannot read: {e}")))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = path.display().to_string();
        match path.extension().and_then(|x| x.to_str()) {
            Some("cedarschema") => schema.push((
                name.clone(),
                std::fs::read_to_string(&path)
                    .map_err(|e| EngineError::file(&path, format!("cannot read: {e}")))?,
            )),
            Some("cedar") => rules.push((
                name.clone(),
                std::fs::read_to_string(&path)
                    .map_err(|e| EngineError::file(&path, format!("cannot read: {e}")))?,
            )),
            _ => {}
        }
    }
    if schema.len() != 1 {
        return Err(EngineError::file(
            dir,
            format!(
                "a rule pack has exactly one *.cedarschema file, found {}",
                schema.len()
            ),
        ));
    }
    if rules.is_empty() {
        return Err(EngineError::file(dir, "no *.cedar rule files"));
    }
    Ok((schema.remove(0), rules))
}

/// The golden-case file of a pack: `golden.json` in its directory, or the built-in one.
pub fn golden_text(dir: Option<&Path>) -> Result<(String, String)> {
    match dir {
        None => Ok((
            "default/golden.json".into(),
            tidig_governance::rules::DEFAULT_GOLDEN.into(),
        )),
        Some(d) => {
            let p = d.join("golden.json");
            let text = std::fs::read_to_string(&p)
                .map_err(|e| EngineError::file(&p, format!("cannot read golden cases: {e}")))?;
            Ok((p.display().to_string(), text))
        }
    }
}

fn registry(s: Registry) -> &'static str {
    match s {
        Registry::Health => "health",
        Registry::Social => "social",
        Registry::Population => "population",
    }
}

fn sensitivity(s: Sensitivity) -> &'static str {
    match s {
        Sensitivity::Ordinary => "ordinary",
        Sensitivity::Health => "health",
        Sensitivity::Prohibited => "prohibited",
        Sensitivity::Protected => "protected",
    }
}

/// What the rules see of a feature. The category is the attribute for attribute
/// features, otherwise the registry's kind of record.
pub fn feature_facts(f: &FeatureDef) -> FeatureFacts {
    let category = match &f.attribute {
        Some(a) => a.clone(),
        None => match f.source {
            Registry::Health => "health_record".into(),
            Registry::Social => "social_services".into(),
            Registry::Population => "population_register".into(),
        },
    };
    FeatureFacts {
        id: f.id.clone(),
        source: registry(f.source).into(),
        sensitivity: sensitivity(f.sensitivity).into(),
        category,
        subject: serde_json::to_value(f.subject)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
    }
}

/// The data-stage decision for every input of a model; `Err` names each refused feature
/// with the rules that refused it.
pub fn check_inputs(
    pack: &RulePack,
    deployment: &Deployment,
    model: &ModelFacts,
    set: &FeatureSet,
    inputs: &[String],
) -> Result<Vec<(String, Decision)>> {
    let mut out = Vec::new();
    let mut refused = Vec::new();
    let mut deciding = std::collections::BTreeSet::new();
    for id in inputs {
        let Some(def) = set.features.iter().find(|f| &f.id == id) else {
            return Err(Precondition::UnknownInput {
                feature: id.clone(),
                set: set.name.clone(),
            }
            .into());
        };
        let d = pack.evaluate(&Request::UseFeature {
            model: model.clone(),
            feature: feature_facts(def),
            deployment: deployment.clone(),
        });
        if !d.allowed {
            let why = if d.errors.is_empty() {
                if d.rules.is_empty() {
                    "no rule permits it".to_string()
                } else {
                    d.rules.join(", ")
                }
            } else {
                d.errors.join("; ")
            };
            refused.push(format!("`{id}` ({why})"));
            deciding.extend(d.rules.iter().cloned());
        }
        out.push((id.clone(), d));
    }
    if !refused.is_empty() {
        return Err(Precondition::InputsRefused {
            pack: pack.version()[..12].to_string(),
            refused,
            rules: deciding.into_iter().collect(),
        }
        .into());
    }
    Ok(out)
}
