//! One audit entry and its canonical encoding, defined once here.
//!
//! # Canonical encoding (version 1)
//!
//! An entry is a JSON object written as RFC 8785 (JCS) writes it: keys sorted by their
//! bytes at every level (all keys are ASCII), no whitespace, strings with only `"`, `\`
//! and control characters escaped (`\b \f \n \r \t`, else `\u00xx` lowercase), integers
//! in decimal. Entries hold no fractional numbers: a float in `details` is written as a
//! string of its shortest round-trip decimal form before hashing. The members:
//!
//! | key | value |
//! |---|---|
//! | `v` | 1, the encoding version |
//! | `seq` | the entry's index in the log, from 0, no gaps |
//! | `prev` | lowercase hex SHA-256 leaf hash of entry `seq - 1` (64 zeros for entry 0) |
//! | `at` | RFC 3339 UTC time with milliseconds, when the entry was appended |
//! | `principal` | `{auth, id, role, unit}` (`unit` null when none) |
//! | `purpose` | the purpose the principal acted under |
//! | `action` | dotted action name (`model.approve`, `ingest.file`, …) |
//! | `outcome` | `{kind: "allowed"}`, `{kind: "denied", reason, rules}` or `{kind: "failed", error, reason}` |
//! | `subject` | the person's pseudonym when one person is concerned, else null |
//! | `versions` | `{feature_set, model, rules}`, each a string or null |
//! | `details` | an object: counts, file hashes, suggestion ids |
//!
//! The leaf hash is SHA-256(0x00 ‖ the encoding's UTF-8 bytes) (RFC 6962); `prev` links
//! each entry to the one before, and the leaves form the log's Merkle tree.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::merkle::{leaf_hash, Hash};

/// The encoding version written in `v`.
pub const ENCODING_VERSION: u64 = 1;

/// Who acted, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub id: String,
    pub role: String,
    pub unit: Option<String>,
    /// How the identity was established (`cli-flag`, `jwt`, `mtls`, `demo`, …).
    pub auth: String,
}

/// What came of the action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    Allowed,
    /// Refused by a rule; `rules` names the deciding rules.
    Denied {
        rules: Vec<String>,
        reason: String,
    },
    /// Failed for another reason; `error` is the error kind.
    Failed {
        error: String,
        reason: String,
    },
}

impl Outcome {
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied { .. } => "denied",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// The versions an action involved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    pub model: Option<String>,
    pub rules: Option<String>,
    pub feature_set: Option<String>,
}

/// What happened: an entry without its place in the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub at: String,
    pub principal: Actor,
    pub purpose: String,
    pub action: String,
    pub outcome: Outcome,
    pub subject: Option<String>,
    pub versions: Versions,
    /// A JSON object.
    pub details: Value,
}

impl Record {
    /// An allowed action with no details yet.
    pub fn new(at: String, principal: Actor, purpose: &str, action: &str) -> Record {
        Record {
            at,
            principal,
            purpose: purpose.into(),
            action: action.into(),
            outcome: Outcome::Allowed,
            subject: None,
            versions: Versions::default(),
            details: Value::Object(Map::new()),
        }
    }

    /// Adds (or replaces) members of `details`.
    pub fn with(mut self, details: Value) -> Record {
        if let (Value::Object(mine), Value::Object(more)) = (&mut self.details, details) {
            mine.extend(more);
        }
        self
    }

    pub fn with_outcome(mut self, outcome: Outcome) -> Record {
        self.outcome = outcome;
        self
    }
}

/// A record at its place in the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub prev: Hash,
    pub record: Record,
}

/// Why stored text is not an entry.
#[derive(Debug, thiserror::Error)]
#[error("not an audit entry: {0}")]
pub struct EntryError(String);

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u64,
    seq: u64,
    prev: String,
    at: String,
    principal: Actor,
    purpose: String,
    action: String,
    outcome: Outcome,
    subject: Option<String>,
    versions: Versions,
    details: Value,
}

impl Entry {
    /// The canonical encoding (see the module documentation).
    pub fn canonical(&self) -> String {
        let r = &self.record;
        let wire = Wire {
            v: ENCODING_VERSION,
            seq: self.seq,
            prev: hex::encode(self.prev),
            at: r.at.clone(),
            principal: r.principal.clone(),
            purpose: r.purpose.clone(),
            action: r.action.clone(),
            outcome: r.outcome.clone(),
            subject: r.subject.clone(),
            versions: r.versions.clone(),
            details: match &r.details {
                Value::Object(_) => r.details.clone(),
                Value::Null => Value::Object(Map::new()),
                other => serde_json::json!({ "value": other }),
            },
        };
        // Serialising plain strings, integers and objects cannot fail.
        let value = serde_json::to_value(&wire).unwrap_or(Value::Null);
        canonical_json(&value)
    }

    /// RFC 6962 leaf hash of the canonical encoding.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(self.canonical().as_bytes())
    }

    /// Parses a stored encoding (it must be version 1).
    pub fn parse(text: &str) -> Result<Entry, EntryError> {
        let w: Wire = serde_json::from_str(text).map_err(|e| EntryError(e.to_string()))?;
        if w.v != ENCODING_VERSION {
            return Err(EntryError(format!("encoding version {} is unknown", w.v)));
        }
        let prev: Hash = hex::decode(&w.prev)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| EntryError("`prev` is not a hex SHA-256 hash".into()))?;
        Ok(Entry {
            seq: w.seq,
            prev,
            record: Record {
                at: w.at,
                principal: w.principal,
                purpose: w.purpose,
                action: w.action,
                outcome: w.outcome,
                subject: w.subject,
                versions: w.versions,
                details: w.details,
            },
        })
    }
}

/// The members of a stored entry that verification and the query index need, read
/// without building the whole entry.
#[derive(Debug, Deserialize)]
pub struct EntryView<'a> {
    pub v: u64,
    pub seq: u64,
    #[serde(borrow)]
    pub prev: Cow<'a, str>,
    #[serde(borrow)]
    pub at: Cow<'a, str>,
    #[serde(borrow)]
    pub action: Cow<'a, str>,
    #[serde(borrow)]
    pub principal: ActorView<'a>,
    #[serde(borrow)]
    pub outcome: OutcomeView<'a>,
    #[serde(borrow)]
    pub subject: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub struct ActorView<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
pub struct OutcomeView<'a> {
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
}

impl<'a> EntryView<'a> {
    pub fn parse(text: &'a str) -> Result<EntryView<'a>, EntryError> {
        serde_json::from_str(text).map_err(|e| EntryError(e.to_string()))
    }
}

/// A JSON value in its canonical form: sorted keys, no whitespace, floats as strings.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::with_capacity(512);
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else {
                write_string(&n.to_string(), out);
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(v, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_value(&map[k], out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry() -> Entry {
        Entry {
            seq: 3,
            prev: [0xab; 32],
            record: Record {
                at: "2026-11-23T10:00:00.000Z".into(),
                principal: Actor {
                    id: "anna \"the\" approver\n".into(),
                    role: "operator".into(),
                    unit: None,
                    auth: "cli-flag".into(),
                },
                purpose: "operations".into(),
                action: "model.approve".into(),
                outcome: Outcome::Denied {
                    rules: vec!["four-eyes".into()],
                    reason: "trained by anna".into(),
                },
                subject: None,
                versions: Versions {
                    model: Some("abc".into()),
                    ..Versions::default()
                },
                details: json!({"z": 1, "a": {"y": [1, 2.5, "x"], "b": null}, "ä": "\u{1}"}),
            },
        }
    }

    #[test]
    fn the_encoding_is_canonical_and_documented() {
        let e = entry();
        let text = e.canonical();
        expect_test::expect![[r#"{"action":"model.approve","at":"2026-11-23T10:00:00.000Z","details":{"a":{"b":null,"y":[1,"2.5","x"]},"z":1,"ä":"\u0001"},"outcome":{"kind":"denied","reason":"trained by anna","rules":["four-eyes"]},"prev":"abababababababababababababababababababababababababababababababab","principal":{"auth":"cli-flag","id":"anna \"the\" approver\n","role":"operator","unit":null},"purpose":"operations","seq":3,"subject":null,"v":1,"versions":{"feature_set":null,"model":"abc","rules":null}}"#]].assert_eq(&text);
        // Parsing and encoding again gives the same bytes, so another implementation
        // that parses and re-encodes recomputes the same hash.
        let back = Entry::parse(&text).unwrap();
        assert_eq!(back.canonical(), text);
        let view = EntryView::parse(&text).unwrap();
        assert_eq!((view.seq, view.action.as_ref()), (3, "model.approve"));
        assert_eq!(view.principal.id, "anna \"the\" approver\n");
        assert_eq!(view.outcome.kind, "denied");
    }

    #[test]
    fn any_changed_member_changes_the_hash() {
        let e = entry();
        let h = e.leaf_hash();
        let mut f = e.clone();
        f.seq = 4;
        assert_ne!(f.leaf_hash(), h);
        let mut f = e.clone();
        f.record.principal.unit = Some("north".into());
        assert_ne!(f.leaf_hash(), h);
        let mut f = e;
        f.record.details = json!({"z": 2});
        assert_ne!(f.leaf_hash(), h);
    }
}
