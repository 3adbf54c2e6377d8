//! Who acts: every state change and every access names a principal, never a free string.
//!
//! The command line acts as an *operator* named by `--as`, `TIDIG_ACTOR` or the OS user;
//! the coming gRPC service builds principals from verified credentials. Four-eyes checks
//! compare principal ids after normalisation.

use std::fmt;

use crate::error::EngineError;

/// What a principal is allowed to be, in the access policy's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Runs the pipeline from the command line (ingest, training, scoring, registry).
    Operator,
    Caseworker,
    /// Data-protection officer.
    Dpo,
    Auditor,
    Researcher,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Caseworker => "caseworker",
            Role::Dpo => "dpo",
            Role::Auditor => "auditor",
            Role::Researcher => "researcher",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Some(match text {
            "operator" => Role::Operator,
            "caseworker" => Role::Caseworker,
            "dpo" => Role::Dpo,
            "auditor" => Role::Auditor,
            "researcher" => Role::Researcher,
            _ => return None,
        })
    }
}

/// How the principal's identity was established; recorded with every change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMethod {
    /// `--as NAME` on the command line (asserted, not verified).
    Flag,
    /// The `TIDIG_ACTOR` environment variable (asserted, not verified).
    Environment,
    /// The operating-system user running the command.
    OsUser,
    /// A fixed name the quickstart uses on synthetic data.
    Demo,
    /// A JWT from the identity provider, checked against its key set.
    Jwt,
    /// A TLS client certificate signed by the configured client CA, its subject mapped
    /// to this principal in `[[service.tls.clients]]`.
    ClientCert,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Flag => "cli-flag",
            AuthMethod::Environment => "cli-env",
            AuthMethod::OsUser => "os-user",
            AuthMethod::Demo => "demo",
            AuthMethod::Jwt => "jwt",
            AuthMethod::ClientCert => "mtls",
        }
    }
}

/// An authenticated (or, on the command line, asserted) actor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Normalised id: trimmed, non-empty, no control characters; stored and shown as
    /// given (case kept), compared case-insensitively for four-eyes
    /// ([`Principal::same_person`]).
    id: String,
    pub role: Role,
    /// The receiving unit a caseworker belongs to.
    pub unit: Option<String>,
    /// The purpose the principal acts under (`operations`, `case-handling`, …).
    pub purpose: String,
    pub auth: AuthMethod,
    /// Authorised to see health data (a health-care professional's claim): the output
    /// rules show health factors only to such a viewer.
    pub health_authority: bool,
}

impl Principal {
    /// A principal with a normalised id; refuses an empty id or control characters.
    pub fn new(id: &str, role: Role, auth: AuthMethod) -> Result<Principal, EngineError> {
        let id = id.trim();
        if id.is_empty() {
            return Err(EngineError::invalid("principal", "the id is empty"));
        }
        if id.chars().any(char::is_control) || id.len() > 256 {
            return Err(EngineError::invalid(
                "principal",
                "the id has control characters or is longer than 256 bytes",
            ));
        }
        Ok(Principal {
            id: id.to_string(),
            role,
            unit: None,
            purpose: "operations".into(),
            auth,
            health_authority: false,
        })
    }

    /// The command line's operator: `--as`, else `TIDIG_ACTOR`, else the OS user.
    pub fn operator(flag: Option<&str>) -> Result<Principal, EngineError> {
        if let Some(name) = flag {
            return Principal::new(name, Role::Operator, AuthMethod::Flag);
        }
        if let Some(name) = std::env::var("TIDIG_ACTOR")
            .ok()
            .filter(|n| !n.trim().is_empty())
        {
            return Principal::new(&name, Role::Operator, AuthMethod::Environment);
        }
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into());
        Principal::new(&user, Role::Operator, AuthMethod::OsUser)
    }

    /// The command line's researcher (`tidig research`): named as [`Principal::operator`]
    /// is, acting for research; whether they may read anything is their permit's to say.
    pub fn researcher(flag: Option<&str>) -> Result<Principal, EngineError> {
        let mut p = Principal::operator(flag)?;
        p.role = Role::Researcher;
        p.purpose = "research".into();
        Ok(p)
    }

    /// A fixed demo principal (quickstart on synthetic data).
    pub fn demo(id: &str) -> Result<Principal, EngineError> {
        Principal::new(id, Role::Operator, AuthMethod::Demo)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether two principals are the same person (four-eyes). Stricter than equality:
    /// ids that differ only in case or surrounding whitespace (`Alice`, `alice `) are the
    /// same person here, so that retyping one's own name can never pass as a second pair
    /// of eyes.
    pub fn same_person(&self, other_id: &str) -> bool {
        self.id.to_lowercase() == other_id.trim().to_lowercase()
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, {})",
            self.id,
            self.role.as_str(),
            self.auth.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_trimmed_and_four_eyes_ignores_case() {
        let p = Principal::new("  alice ", Role::Operator, AuthMethod::Flag)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.id(), "alice");
        assert!(p.same_person("alice "));
        assert!(p.same_person("Alice"));
        assert!(p.same_person(" ALICE"));
        assert!(!p.same_person("alicia"));
        assert_eq!(p.to_string(), "alice (operator, cli-flag)");
    }

    #[test]
    fn empty_and_control_ids_are_refused() {
        for bad in ["", "   ", "al\nice", "a\u{7}"] {
            assert!(matches!(
                Principal::new(bad, Role::Operator, AuthMethod::Flag),
                Err(EngineError::InvalidArgument { .. })
            ));
        }
    }
}
