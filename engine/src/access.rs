//! The access check: the one way to obtain an [`AccessPass`], the value every engine
//! operation on a person's data takes as an argument. Skipping the check does not
//! compile; making it records the call in the audit trail.
//!
//! - A refusal appends a `denied` entry naming the deciding rules and returns
//!   [`EngineError::PermissionDenied`].
//! - An allowed read appends its `allowed` entry before the pass exists, so nothing is
//!   read before the trail says who read it.
//! - An allowed change (a decision, the stop switch, an objection) carries its record in
//!   the pass; the change's own transaction appends it, so the change and its entry
//!   commit together.

use serde_json::json;
use tidig_governance::access::{AccessRequest, CallerFacts, Operation, DEFAULT_DENY};
use tidig_governance::audit::{Outcome, Record};

use crate::app::App;
use crate::error::EngineError;
use crate::principal::Principal;

/// What an operation touches.
#[derive(Clone, Debug)]
pub struct Target {
    /// The unit whose suggestions are touched (for a list or a watch, the caller's own).
    pub unit: String,
    /// The suggestion, when one is concerned.
    pub suggestion: Option<String>,
    /// The person's pseudonym, when one person is concerned.
    pub subject: Option<String>,
}

impl Target {
    /// The target of an operation on the whole deployment (no unit's data, no person).
    pub fn deployment() -> Target {
        Target {
            unit: String::new(),
            suggestion: None,
            subject: None,
        }
    }
}

/// Proof that the access policy allowed `principal` to run `operation` on `target`, and
/// that the audit trail has (or will have, in the same transaction) the call's entry.
/// Only [`App::check_access`] makes one.
#[derive(Debug)]
pub struct AccessPass {
    principal: Principal,
    operation: Operation,
    target: Target,
    entry: Entry,
}

#[derive(Debug)]
enum Entry {
    /// Appended by the check (reads).
    Written(u64),
    /// To be appended by the change's transaction.
    Pending(Box<Record>),
}

impl AccessPass {
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn operation(&self) -> Operation {
        self.operation
    }

    pub fn unit(&self) -> &str {
        &self.target.unit
    }

    pub fn suggestion(&self) -> Option<&str> {
        self.target.suggestion.as_deref()
    }

    pub fn subject(&self) -> Option<&str> {
        self.target.subject.as_deref()
    }

    /// The sequence number of the entry the check appended (reads).
    pub fn audit_seq(&self) -> Option<u64> {
        match self.entry {
            Entry::Written(seq) => Some(seq),
            Entry::Pending(_) => None,
        }
    }

    /// The record a change appends in its own transaction, with `details` added.
    pub(crate) fn pending_record(&self, details: serde_json::Value) -> Option<Record> {
        match &self.entry {
            Entry::Pending(r) => Some((**r).clone().with(details)),
            Entry::Written(_) => None,
        }
    }
}

/// The access policy's view of a principal.
pub fn caller_facts(p: &Principal) -> CallerFacts {
    CallerFacts {
        role: p.role.as_str().to_string(),
        unit: p.unit.clone(),
        purpose: p.purpose.clone(),
        health_authority: p.health_authority,
    }
}

/// The audit action a call of `op` records.
pub fn action(op: Operation) -> String {
    // The registry's changes keep one name whether the CLI or the service asked.
    match op {
        Operation::ApproveModel => return "model.approve".into(),
        Operation::ActivateModel => return "model.activate".into(),
        Operation::RetireModel => return "model.retire".into(),
        Operation::RollbackModel => return "model.rollback".into(),
        _ => {}
    }
    let service = if op.is_oversight() {
        "oversight"
    } else if matches!(
        op,
        Operation::StartResearchRun | Operation::GetResearchResults
    ) {
        "research"
    } else {
        "casework"
    };
    format!("{service}.{}", op.as_str())
}

impl App {
    /// Puts the call to the access policy. `record` is the call's audit record (its
    /// action, details and subject); it is appended now with the decision, except for an
    /// allowed change, whose transaction appends it.
    pub async fn check_access(
        &self,
        by: &Principal,
        operation: Operation,
        target: Target,
        mut record: Record,
    ) -> Result<AccessPass, EngineError> {
        record.subject = target.subject.clone();
        let decision = self.decide_access(&AccessRequest {
            caller: caller_facts(by),
            operation,
            target_unit: target.unit.clone(),
        });
        if !decision.allowed {
            let rules = if decision.rules.is_empty() {
                vec![DEFAULT_DENY.to_string()]
            } else {
                decision.rules.clone()
            };
            let mut reason = format!(
                "{} `{}` ({}{}, purpose `{}`) may not {} {}: {}",
                by.role.as_str(),
                by.id(),
                by.unit
                    .as_deref()
                    .map_or("no unit".into(), |u| format!("unit `{u}`")),
                if by.health_authority {
                    ", health authority"
                } else {
                    ""
                },
                by.purpose,
                operation.as_str().replace('_', " "),
                if target.unit.is_empty() && operation.is_oversight() {
                    "(an oversight operation)".to_string()
                } else if target.unit.is_empty() {
                    "without a unit".to_string()
                } else {
                    format!("in unit `{}`", target.unit)
                },
                rules.join(", ")
            );
            if !decision.errors.is_empty() {
                reason.push_str(&format!(" (rule errors: {})", decision.errors.join("; ")));
            }
            self.audit()
                .append(record.with_outcome(Outcome::Denied {
                    rules: rules.clone(),
                    reason: reason.clone(),
                }))
                .await?;
            return Err(EngineError::PermissionDenied { reason, rules });
        }
        let record = record.with(json!({"access_rules": decision.rules}));
        let entry = if self.audit().is_off() {
            Entry::Written(0)
        } else if operation.is_change() {
            Entry::Pending(Box::new(record))
        } else {
            Entry::Written(self.audit().append(record).await?)
        };
        Ok(AccessPass {
            principal: by.clone(),
            operation,
            target,
            entry,
        })
    }
}
