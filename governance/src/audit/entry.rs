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

/// A record encoded ahead of its place in the log.
///
/// Of an entry's members only `prev` and `seq` depend on where it lands, and in the
/// canonical key order they fall between `outcome` and `principal`, and between
/// `purpose` and `subject`. So a record is encoded once, by whoever creates it and
/// outside any lock, and the appender only splices in the two numbers it learns under
/// the lock: `{"action":…,"outcome":…,"prev":"` ‖ prev ‖ `","principal":…,"seq":` ‖
/// seq ‖ `,"subject":…}`. [`Entry::canonical`] is built the same way, so there is one
/// encoding.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedRecord {
    record: Record,
    parts: Parts,
}

impl EncodedRecord {
    pub fn new(record: Record) -> EncodedRecord {
        EncodedRecord {
            parts: Parts::of(&record),
            record,
        }
    }

    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The canonical encoding of this record appended as entry `seq` after `prev`.
    pub fn entry(&self, seq: u64, prev: &Hash) -> String {
        self.parts.entry(seq, prev)
    }
}

/// The canonical encoding of a record around its `prev` and `seq` members.
#[derive(Clone, Debug, PartialEq)]
struct Parts {
    /// `{"action":…,"at":…,"details":…,"outcome":…,"prev":"`
    head: String,
    /// `","principal":…,"purpose":…,"seq":`
    middle: String,
    /// `,"subject":…,"v":1,"versions":…}`
    tail: String,
}

impl Parts {
    fn of(r: &Record) -> Parts {
        let mut head = String::with_capacity(256);
        head.push_str("{\"action\":");
        write_string(&r.action, &mut head);
        head.push_str(",\"at\":");
        write_string(&r.at, &mut head);
        head.push_str(",\"details\":");
        match &r.details {
            Value::Object(_) => write_value(&r.details, &mut head),
            Value::Null => head.push_str("{}"),
            other => write_value(&serde_json::json!({ "value": other }), &mut head),
        }
        head.push_str(",\"outcome\":");
        match &r.outcome {
            Outcome::Allowed => head.push_str("{\"kind\":\"allowed\"}"),
            Outcome::Denied { rules, reason } => {
                head.push_str("{\"kind\":\"denied\",\"reason\":");
                write_string(reason, &mut head);
                head.push_str(",\"rules\":[");
                for (i, rule) in rules.iter().enumerate() {
                    if i > 0 {
                        head.push(',');
                    }
                    write_string(rule, &mut head);
                }
                head.push_str("]}");
            }
            Outcome::Failed { error, reason } => {
                head.push_str("{\"error\":");
                write_string(error, &mut head);
                head.push_str(",\"kind\":\"failed\",\"reason\":");
                write_string(reason, &mut head);
                head.push('}');
            }
        }
        head.push_str(",\"prev\":\"");
        let mut middle = String::with_capacity(128);
        middle.push_str("\",\"principal\":{\"auth\":");
        let p = &r.principal;
        write_string(&p.auth, &mut middle);
        middle.push_str(",\"id\":");
        write_string(&p.id, &mut middle);
        middle.push_str(",\"role\":");
        write_string(&p.role, &mut middle);
        middle.push_str(",\"unit\":");
        write_opt(p.unit.as_deref(), &mut middle);
        middle.push_str("},\"purpose\":");
        write_string(&r.purpose, &mut middle);
        middle.push_str(",\"seq\":");
        let mut tail = String::with_capacity(128);
        tail.push_str(",\"subject\":");
        write_opt(r.subject.as_deref(), &mut tail);
        let _ = write!(
            tail,
            ",\"v\":{ENCODING_VERSION},\"versions\":{{\"feature_set\":"
        );
        write_opt(r.versions.feature_set.as_deref(), &mut tail);
        tail.push_str(",\"model\":");
        write_opt(r.versions.model.as_deref(), &mut tail);
        tail.push_str(",\"rules\":");
        write_opt(r.versions.rules.as_deref(), &mut tail);
        tail.push_str("}}");
        Parts { head, middle, tail }
    }

    fn entry(&self, seq: u64, prev: &Hash) -> String {
        let mut out =
            String::with_capacity(self.head.len() + self.middle.len() + self.tail.len() + 84);
        out.push_str(&self.head);
        out.push_str(&hex::encode(prev));
        out.push_str(&self.middle);
        let _ = write!(out, "{seq}");
        out.push_str(&self.tail);
        out
    }
}

fn write_opt(s: Option<&str>, out: &mut String) {
    match s {
        Some(s) => write_string(s, out),
        None => out.push_str("null"),
    }
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
        Parts::of(&self.record).entry(self.seq, &self.prev)
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

/// The members that place a stored entry in the chain (`v`, `seq`, `prev`), read from
/// the end of its text without parsing the rest: what verification reads of every entry.
///
/// Why reading from the end is exact for a canonical entry: in the canonical key order
/// only `details` (an arbitrary object) comes before `prev`; everything after it is a
/// fixed set of keys (`principal` with `auth`, `id`, `role`, `unit`; `purpose`, `seq`,
/// `subject`, `v`, `versions` with three members) whose values are strings, integers or
/// null. Inside a JSON string every `"` is escaped, so the byte pattern `,"prev":"`
/// (a comma, then an unescaped quote) occurs only as a member key; its last occurrence
/// is therefore the top-level `prev` (a `prev` key inside `details` comes earlier), and
/// the first `,"seq":` and `,"v":` after it are the top-level ones. Text that is not
/// shaped like that is refused (`None`); the caller then parses it in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryLink<'a> {
    pub v: u64,
    pub seq: u64,
    /// As written: 64 hex digits.
    pub prev: &'a str,
    /// Whether the entry concerns a person (`subject` is not null).
    pub has_subject: bool,
}

impl<'a> EntryLink<'a> {
    pub fn read(text: &'a str) -> Option<EntryLink<'a>> {
        const PREV: &str = ",\"prev\":\"";
        let at = text.rfind(PREV)? + PREV.len();
        let prev = text.get(at..at + 64)?;
        let rest = text[at + 64..].strip_prefix("\",\"principal\":{")?;
        let (_, rest) = rest.split_once(",\"seq\":")?;
        let (seq, rest) = leading_integer(rest)?;
        let rest = rest.strip_prefix(",\"subject\":")?;
        let has_subject = !rest.starts_with("null,");
        let (_, rest) = rest.split_once(",\"v\":")?;
        let (v, rest) = leading_integer(rest)?;
        rest.strip_prefix(",\"versions\":{")?;
        text.ends_with("}}").then_some(EntryLink {
            v,
            seq,
            prev,
            has_subject,
        })
    }
}

/// A canonical non-negative integer at the start of `s` (no sign, no leading zero).
fn leading_integer(s: &str) -> Option<(u64, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let digits = &s[..end];
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    Some((digits.parse().ok()?, &s[end..]))
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

    /// The encoding as the module documentation states it, the slow way: the whole
    /// entry as a JSON value, written with sorted keys.
    fn documented_encoding(e: &Entry) -> String {
        let r = &e.record;
        let details = match &r.details {
            Value::Object(_) => r.details.clone(),
            Value::Null => json!({}),
            other => json!({ "value": other }),
        };
        let wire = Wire {
            v: ENCODING_VERSION,
            seq: e.seq,
            prev: hex::encode(e.prev),
            at: r.at.clone(),
            principal: r.principal.clone(),
            purpose: r.purpose.clone(),
            action: r.action.clone(),
            outcome: r.outcome.clone(),
            subject: r.subject.clone(),
            versions: r.versions.clone(),
            details,
        };
        canonical_json(&serde_json::to_value(&wire).unwrap())
    }

    #[test]
    fn a_record_encoded_ahead_gives_the_documented_encoding_at_any_place() {
        let base = entry();
        let mut cases = vec![base.clone()];
        let mut e = base.clone();
        e.record.outcome = Outcome::Allowed;
        e.record.principal.unit = Some("north \\ \u{7f} \u{1F600}".into());
        e.record.subject = Some("p0123".into());
        e.record.details = Value::Null;
        cases.push(e);
        let mut e = base.clone();
        e.record.outcome = Outcome::Failed {
            error: "unavailable".into(),
            reason: "disk\tfull \"x\"".into(),
        };
        e.record.details = json!([1, -2, 3.25e10, {"b": 1, "a": "\u{1f}"}]);
        e.record.versions = Versions {
            model: None,
            rules: Some("r1".into()),
            feature_set: Some("f".into()),
        };
        cases.push(e);
        let mut e = base;
        e.record.outcome = Outcome::Denied {
            rules: vec![],
            reason: String::new(),
        };
        e.record.details = json!("just a string");
        cases.push(e);
        for (i, case) in cases.into_iter().enumerate() {
            let encoded = EncodedRecord::new(case.record.clone());
            for (seq, prev) in [
                (0, [0u8; 32]),
                (case.seq, case.prev),
                (u64::MAX, [0xff; 32]),
            ] {
                let place = Entry {
                    seq,
                    prev,
                    ..case.clone()
                };
                let want = documented_encoding(&place);
                assert_eq!(encoded.entry(seq, &prev), want, "case {i} at {seq}");
                assert_eq!(place.canonical(), want, "case {i} at {seq}");
                // Floats come back as strings, so compare the re-encoding.
                let back = Entry::parse(&want).unwrap();
                assert_eq!((back.seq, back.prev), (seq, prev), "case {i} at {seq}");
                assert_eq!(back.canonical(), want, "case {i} at {seq}");
            }
        }
    }

    #[test]
    fn the_link_read_from_the_end_is_the_top_level_one_whatever_details_hold() {
        let base = entry();
        let tricky = [
            json!({}),
            json!({"prev": "f".repeat(64), "seq": 99, "v": 2}),
            json!({"x": {"prev": "0".repeat(64), "principal": {"auth": "x"}}, "seq": 7}),
            json!({"s": ",\"prev\":\"", "t": "\",\"seq\":1,\"subject\":null,\"v\":1,\"versions\":{}}"}),
            json!({"a": ["},\"prev\":\"ab", {"v": 1}]}),
        ];
        for (i, details) in tricky.into_iter().enumerate() {
            let mut e = base.clone();
            e.record.details = details;
            e.record.principal.id = ",\"seq\":5,\"subject\":null,\"v\":3,\"versions\":{".into();
            e.record.purpose = "\",\"prev\":\"".into();
            e.record.subject = (i % 2 == 0).then(|| "null,\"v\":1".to_string());
            e.seq = 1234 + i as u64;
            let text = e.canonical();
            let full: Value = serde_json::from_str(&text).unwrap();
            let link = EntryLink::read(&text).expect("a canonical entry is read");
            assert_eq!(link.seq, full["seq"].as_u64().unwrap(), "case {i}");
            assert_eq!(link.v, full["v"].as_u64().unwrap(), "case {i}");
            assert_eq!(link.prev, full["prev"].as_str().unwrap(), "case {i}");
            assert_eq!(link.has_subject, !full["subject"].is_null(), "case {i}");
        }
        // What is not shaped like an entry is refused, not guessed at.
        let text = base.canonical();
        for broken in [
            &text[..text.len() - 1],
            &text[..text.len() / 2],
            "{}",
            "",
            &text.replace("\"seq\":3", "\"seq\":03"),
            &text.replace("\"seq\":3", "\"seq\":-3"),
        ] {
            assert_eq!(EntryLink::read(broken), None, "{broken}");
        }
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
