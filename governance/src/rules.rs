//! Rule packs: Cedar policies with tidig's annotations, validated against tidig's schema,
//! versioned by content hash.
//!
//! A pack is a Cedar schema and one or more policy files. Every rule carries `@id`
//! (unique in the pack; it becomes the Cedar policy id, so decisions name it), `@title`
//! (plain language), `@legal` (the legal reference) and `@stage` (`data`, `eligibility`
//! or `output`), and names the action(s) of its stage in its scope.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, EntityUid, Policy, PolicyId, PolicySet, Schema, ValidationMode, Validator,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where a rule applies, and what its deny means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// May this feature be a model input? (training, activation, every scoring run)
    Data,
    /// May this person be scored (or trained on) at all?
    Eligibility,
    /// May this score become a suggestion, and which factors may a viewer see?
    Output,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Data => "data",
            Stage::Eligibility => "eligibility",
            Stage::Output => "output",
        }
    }

    /// The actions a rule of this stage may govern.
    pub fn actions(self) -> &'static [&'static str] {
        match self {
            Stage::Data => &["use_feature"],
            Stage::Eligibility => &["score", "train_on"],
            Stage::Output => &["suggest", "view_factor"],
        }
    }

    fn parse(s: &str) -> Option<Stage> {
        match s {
            "data" => Some(Stage::Data),
            "eligibility" => Some(Stage::Eligibility),
            "output" => Some(Stage::Output),
            _ => None,
        }
    }
}

/// A rule's annotations and where it is written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleMeta {
    pub id: String,
    pub title: String,
    pub legal: String,
    pub stage: Stage,
    /// `permit` or `forbid`.
    pub effect: String,
    pub file: String,
    pub line: usize,
}

/// One problem in a pack, with its position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: String,
    /// 1-based; 0 when the problem has no position.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

/// Why a pack was refused: every problem found, each with file, line and column.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    #[error("{} problem(s) in the rule pack:\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl PackError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            PackError::Invalid(p) => p,
        }
    }
}

/// A source file of a pack: its name (for messages) and text.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

/// A validated rule pack.
#[derive(Clone)]
pub struct RulePack {
    pub(crate) schema: Schema,
    pub(crate) policies: PolicySet,
    rules: Vec<RuleMeta>,
    by_id: HashMap<String, usize>,
    version: String,
}

impl fmt::Debug for RulePack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RulePack")
            .field("version", &self.version)
            .field("rules", &self.rules.len())
            .finish()
    }
}

/// 1-based line and column of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |n| offset - n - 1) + 1;
    (line, column)
}

/// Problems from a miette diagnostic, placed by its first label (or unplaced).
pub(crate) fn diagnostic_problems(file: &str, text: &str, d: &dyn miette::Diagnostic) -> Problem {
    let mut message = d.to_string();
    if let Some(help) = d.help() {
        message.push_str(&format!(" (help: {help})"));
    }
    let (line, column) = d
        .labels()
        .and_then(|mut l| l.next())
        .map_or((0, 0), |l| position(text, l.offset()));
    Problem {
        file: file.into(),
        line,
        column,
        message,
    }
}

/// The built-in default pack's sources.
pub const DEFAULT_SCHEMA: &str = include_str!("../packs/default/tidig.cedarschema");
pub const DEFAULT_RULES: &str = include_str!("../packs/default/rules.cedar");
pub const DEFAULT_GOLDEN: &str = include_str!("../packs/default/golden.json");

impl RulePack {
    /// The pack shipped with tidig.
    pub fn default_pack() -> Result<RulePack, PackError> {
        RulePack::load(
            Source {
                name: "default/tidig.cedarschema",
                text: DEFAULT_SCHEMA,
            },
            &[Source {
                name: "default/rules.cedar",
                text: DEFAULT_RULES,
            }],
        )
    }

    /// Parses, checks and validates a pack; every problem is reported, not just the first.
    pub fn load(schema_src: Source<'_>, files: &[Source<'_>]) -> Result<RulePack, PackError> {
        let mut problems = Vec::new();
        let schema = match Schema::from_cedarschema_str(schema_src.text) {
            Ok((schema, _warnings)) => Some(schema),
            Err(e) => {
                problems.push(diagnostic_problems(schema_src.name, schema_src.text, &e));
                None
            }
        };
        let mut policies = PolicySet::new();
        let mut rules: Vec<RuleMeta> = Vec::new();
        let mut by_id: HashMap<String, usize> = HashMap::new();
        // Which file each rule came from, for validation messages.
        let mut origin: HashMap<String, usize> = HashMap::new();
        for (fi, file) in files.iter().enumerate() {
            let parsed = match PolicySet::from_str(file.text) {
                Ok(p) => p,
                Err(e) => {
                    for d in e.iter() {
                        problems.push(diagnostic_problems(file.name, file.text, d));
                    }
                    continue;
                }
            };
            if parsed.templates().next().is_some() {
                problems.push(Problem {
                    file: file.name.into(),
                    line: 0,
                    column: 0,
                    message: "templates are not supported in a rule pack: write static rules"
                        .into(),
                });
            }
            let mut found: Vec<(usize, Policy, RuleMeta)> = Vec::new();
            for p in parsed.policies() {
                match check_rule(file, p) {
                    Ok((offset, meta)) => found.push((offset, p.clone(), meta)),
                    Err(problem) => problems.push(problem),
                }
            }
            found.sort_by_key(|(offset, _, _)| *offset);
            for (_, p, meta) in found {
                if let Some(&first) = by_id.get(&meta.id) {
                    problems.push(Problem {
                        file: meta.file.clone(),
                        line: meta.line,
                        column: 1,
                        message: format!(
                            "@id(\"{}\") is used twice (first at {}:{})",
                            meta.id, rules[first].file, rules[first].line
                        ),
                    });
                    continue;
                }
                let renamed = p.new_id(PolicyId::new(&meta.id));
                if let Err(e) = policies.add(renamed) {
                    problems.push(Problem {
                        file: meta.file.clone(),
                        line: meta.line,
                        column: 1,
                        message: e.to_string(),
                    });
                    continue;
                }
                by_id.insert(meta.id.clone(), rules.len());
                origin.insert(meta.id.clone(), fi);
                rules.push(meta);
            }
        }
        if rules.is_empty() && problems.is_empty() {
            problems.push(Problem {
                file: files.first().map_or("(no files)", |f| f.name).into(),
                line: 0,
                column: 0,
                message: "the pack has no rules".into(),
            });
        }
        let Some(schema) = schema else {
            return Err(PackError::Invalid(problems));
        };
        let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        for e in validation.validation_errors() {
            let id = e.policy_id().to_string();
            let file = origin.get(&id).map_or(files[0], |&i| files[i]);
            let mut p = diagnostic_problems(file.name, file.text, e);
            p.message = format!("rule `{id}`: {}", p.message);
            problems.push(p);
        }
        if !problems.is_empty() {
            return Err(PackError::Invalid(problems));
        }
        let mut h = Sha256::new();
        h.update(b"tidig rule pack v1\0schema\0");
        h.update(schema_src.text.as_bytes());
        let mut sorted: Vec<&Source<'_>> = files.iter().collect();
        sorted.sort_by_key(|f| f.name);
        for f in sorted {
            h.update(b"\0file\0");
            h.update(f.name.as_bytes());
            h.update(b"\0");
            h.update(f.text.as_bytes());
        }
        Ok(RulePack {
            schema,
            policies,
            rules,
            by_id,
            version: hex::encode(h.finalize()),
        })
    }

    /// The pack's version: the SHA-256 of its schema and rule files.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Every rule, in file order.
    pub fn rules(&self) -> &[RuleMeta] {
        &self.rules
    }

    pub fn rule(&self, id: &str) -> Option<&RuleMeta> {
        self.by_id.get(id).map(|&i| &self.rules[i])
    }

    /// Rules per stage, for reports.
    pub fn by_stage(&self) -> BTreeMap<Stage, Vec<&RuleMeta>> {
        let mut m: BTreeMap<Stage, Vec<&RuleMeta>> = BTreeMap::new();
        for r in &self.rules {
            m.entry(r.stage).or_default().push(r);
        }
        m
    }
}

/// Reads and checks one rule's annotations and scope.
fn check_rule(file: &Source<'_>, p: &Policy) -> Result<(usize, RuleMeta), Problem> {
    let problem = |offset: usize, message: String| {
        let (line, column) = if offset == usize::MAX {
            (0, 0)
        } else {
            position(file.text, offset)
        };
        Problem {
            file: file.name.into(),
            line,
            column,
            message,
        }
    };
    let offset = p
        .annotation("id")
        .and_then(|id| file.text.find(&format!("@id(\"{id}\")")))
        .or_else(|| file.text.find(p.to_string().trim()))
        .unwrap_or(usize::MAX);
    let Some(id) = p.annotation("id").filter(|s| !s.trim().is_empty()) else {
        return Err(problem(offset, "a rule without @id(\"…\")".into()));
    };
    let mut missing = Vec::new();
    for key in ["title", "legal", "stage"] {
        if p.annotation(key).is_none_or(|v| v.trim().is_empty()) {
            missing.push(format!("@{key}"));
        }
    }
    if !missing.is_empty() {
        return Err(problem(
            offset,
            format!("rule `{id}` lacks {}", missing.join(", ")),
        ));
    }
    let stage_text = p.annotation("stage").unwrap_or_default();
    let Some(stage) = Stage::parse(stage_text) else {
        return Err(problem(
            offset,
            format!(
                "rule `{id}`: @stage(\"{stage_text}\") is not one of data, eligibility, output"
            ),
        ));
    };
    let allowed: Vec<EntityUid> = stage
        .actions()
        .iter()
        .filter_map(|a| EntityUid::from_str(&format!("Tidig::Action::\"{a}\"")).ok())
        .collect();
    let named = match p.action_constraint() {
        ActionConstraint::Any => Vec::new(),
        ActionConstraint::Eq(a) => vec![a],
        ActionConstraint::In(v) => v,
    };
    if named.is_empty() {
        return Err(problem(
            offset,
            format!(
                "rule `{id}` must name its action(s) in its scope (stage {}: {})",
                stage.name(),
                stage.actions().join(", ")
            ),
        ));
    }
    if let Some(bad) = named.iter().find(|a| !allowed.contains(a)) {
        return Err(problem(
            offset,
            format!(
                "rule `{id}` is @stage(\"{}\") but governs {bad}; that stage's actions are {}",
                stage.name(),
                stage.actions().join(", ")
            ),
        ));
    }
    let meta = RuleMeta {
        id: id.to_string(),
        title: p.annotation("title").unwrap_or_default().to_string(),
        legal: p.annotation("legal").unwrap_or_default().to_string(),
        stage,
        effect: match p.effect() {
            cedar_policy::Effect::Permit => "permit".into(),
            cedar_policy::Effect::Forbid => "forbid".into(),
        },
        file: file.name.into(),
        line: if offset == usize::MAX {
            0
        } else {
            position(file.text, offset).0
        },
    };
    Ok((offset, meta))
}
