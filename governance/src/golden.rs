//! Golden cases: a JSON file of requests with the decision and reasons they must get.
//!
//! ```json
//! { "defaults": { "deployment": { … }, "model": { … }, "intervention": { … } },
//!   "cases": [ { "name": "…", "request": { "action": "score", "person": { … } },
//!                "expect": { "allowed": false, "rules": ["eligibility.objection"] } } ] }
//! ```
//!
//! A case's request takes each field its action needs from `defaults` when it does not
//! give it; an object it gives is laid over the default one field by field. `rules` lists
//! the deciding rule ids exactly (order does not matter); `errors: true` expects a rule
//! error (and so a deny).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::eval::{Decision, Request};
use crate::rules::{Problem, RulePack};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    defaults: Map<String, Value>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    request: Map<String, Value>,
    expect: Expect,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub allowed: bool,
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub errors: bool,
}

/// One case's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub passed: bool,
    pub expected: Expect,
    pub got: Decision,
}

/// Every case's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct GoldenReport {
    pub file: String,
    pub pack_version: String,
    pub passed: usize,
    pub failed: usize,
    pub cases: Vec<CaseResult>,
}

/// Why a golden file could not be run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GoldenError {
    #[error("{file}:{line}:{column}: not a golden-case file: {message}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{} problem(s) in {file}:\n{}", .problems.len(), .problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Cases {
        file: String,
        problems: Vec<Problem>,
    },
}

fn fields(action: &str) -> &'static [&'static str] {
    match action {
        "use_feature" => &["model", "feature", "deployment"],
        "train_on" => &["model", "person", "deployment"],
        "score" => &["model", "person", "deployment", "intervention"],
        "suggest" => &["unit", "suggestion", "deployment", "intervention"],
        "view_factor" => &["viewer", "feature", "deployment"],
        _ => &[],
    }
}

/// The line of the n-th case (its `"name"` key) for messages.
fn case_line(text: &str, name: &str) -> usize {
    let needle = format!("\"{name}\"");
    text.find(&needle)
        .map_or(0, |o| text[..o].matches('\n').count() + 1)
}

/// Runs a golden file against a pack.
pub fn run(pack: &RulePack, file: &str, text: &str) -> Result<GoldenReport, GoldenError> {
    let parsed: File = serde_json::from_str(text).map_err(|e| GoldenError::Syntax {
        file: file.into(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let mut problems = Vec::new();
    let mut requests = Vec::new();
    for case in &parsed.cases {
        let line = case_line(text, &case.name);
        let problem = |message: String| Problem {
            file: file.into(),
            line,
            column: 1,
            message: format!("case `{}`: {message}", case.name),
        };
        for id in &case.expect.rules {
            if pack.rule(id).is_none() {
                problems.push(problem(format!("unknown rule id `{id}`")));
            }
        }
        let mut request = case.request.clone();
        let action = request
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        for key in fields(&action) {
            match (parsed.defaults.get(*key), request.get_mut(*key)) {
                (Some(d), None) => {
                    request.insert((*key).to_string(), d.clone());
                }
                (Some(Value::Object(d)), Some(Value::Object(given))) => {
                    for (k, v) in d {
                        given.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                _ => {}
            }
        }
        match serde_json::from_value::<Request>(Value::Object(request)) {
            Ok(r) => requests.push(Some(r)),
            Err(e) => {
                problems.push(problem(format!("request: {e}")));
                requests.push(None);
            }
        }
    }
    if !problems.is_empty() {
        return Err(GoldenError::Cases {
            file: file.into(),
            problems,
        });
    }
    let mut cases = Vec::new();
    for (case, request) in parsed.cases.into_iter().zip(requests) {
        let Some(request) = request else { continue };
        let got = pack.evaluate(&request);
        let mut want = case.expect.rules.clone();
        want.sort();
        let passed = got.allowed == case.expect.allowed
            && got.rules == want
            && got.errors.is_empty() != case.expect.errors;
        cases.push(CaseResult {
            name: case.name,
            passed,
            expected: case.expect,
            got,
        });
    }
    let passed = cases.iter().filter(|c| c.passed).count();
    Ok(GoldenReport {
        file: file.into(),
        pack_version: pack.version().into(),
        passed,
        failed: cases.len() - passed,
        cases,
    })
}
