//! Social-services case events: tidig's documented CSV and JSON Lines layout, with a
//! configurable code table that maps each municipality's local codes to canonical
//! categories.
//!
//! Fields (CSV header or JSON keys): `record_id,national_id,code,start_date,end_date,amount,unit`.

use std::collections::HashMap;
use std::io::{BufRead, Read};

use serde::Deserialize;

use crate::edge::{Edge, PersonFacts};
use crate::population::csv_rows;
use crate::pseudonym::Identity;
use crate::record::{
    for_each_line, EventKind, EventRow, EventStatus, LineOutcome, ParseCounts, Record, Rejection,
    Sink,
};
use crate::time::parse_date_days;
use crate::ReadError;

pub const HEADER: &[&str] = &[
    "record_id",
    "national_id",
    "code",
    "start_date",
    "end_date",
    "amount",
    "unit",
];

/// The code system under which canonical categories are stored.
pub const CATEGORY_SYSTEM: &str = "urn:tidig:social-category";

/// The canonical categories tidig's features know about.
pub const CATEGORIES: &[&str] = &[
    "income_support",
    "housing_support",
    "unemployment_benefit",
    "child_welfare_notification",
    "family_counselling",
    "substance_abuse_service",
    "school_absence",
    "child_welfare_intervention",
];

/// Maps local case-event codes to canonical categories.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeTable {
    /// The code system the local codes belong to (stored with each event).
    pub system: String,
    /// Local code → canonical category.
    pub codes: HashMap<String, String>,
}

/// A code table file is invalid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodeTableError {
    #[error("{0}")]
    Toml(String),
    #[error("code `{code}` maps to unknown category `{category}` (known: {known})")]
    UnknownCategory {
        code: String,
        category: String,
        known: String,
    },
}

impl CodeTable {
    /// Parses a TOML code table and checks every category.
    pub fn from_toml(text: &str) -> Result<CodeTable, CodeTableError> {
        let table: CodeTable =
            toml::from_str(text).map_err(|e| CodeTableError::Toml(e.to_string()))?;
        for (code, category) in &table.codes {
            if !CATEGORIES.contains(&category.as_str()) {
                return Err(CodeTableError::UnknownCategory {
                    code: code.clone(),
                    category: category.clone(),
                    known: CATEGORIES.join(", "),
                });
            }
        }
        Ok(table)
    }

    /// The table shipped with tidig, used by the synthetic municipality.
    pub fn default_table() -> CodeTable {
        // The embedded table is validated by a unit test.
        CodeTable::from_toml(DEFAULT_TABLE).unwrap_or_else(|_| CodeTable {
            system: "urn:tidig:local:default".into(),
            codes: HashMap::new(),
        })
    }
}

/// The largest plausible case-event amount. Anything larger is a wrong column (an ID
/// typed as an amount would otherwise be stored as a number).
pub const MAX_AMOUNT: f64 = 10_000_000.0;

/// The default code table (also in `docs/formats.md`).
pub const DEFAULT_TABLE: &str = include_str!("../code_tables/default.toml");

/// Streams a case-event CSV file.
pub fn parse_csv<R: Read>(
    reader: R,
    table: &CodeTable,
    edge: &mut Edge<'_>,
    sink: &mut dyn Sink,
) -> Result<ParseCounts, ReadError> {
    let (reader, overlong) =
        crate::record::LimitLines::new(reader, edge.config().limits.max_line_bytes);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(reader);
    let header = rdr
        .headers()
        .map_err(|e| ReadError::Format(crate::population::csv_problem(&e)))?
        .clone();
    let names: Vec<&str> = header.iter().map(str::trim).collect();
    if names != HEADER {
        return Err(ReadError::Format(format!(
            "header is not the case-event layout: expected `{}`",
            HEADER.join(",")
        )));
    }
    csv_rows(
        &mut rdr,
        &overlong,
        HEADER,
        edge,
        sink,
        |row, edge, sink| {
            let fields = Fields {
                record_id: row.get(0),
                national_id: row.get(1),
                code: row.get(2),
                start_date: row.get(3),
                end_date: row.get(4),
                amount: row.get(5),
            };
            case_event(row.line, &fields, table, edge, sink)
        },
    )
}

#[derive(Deserialize)]
struct JsonEvent<'a> {
    #[serde(borrow)]
    record_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    national_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    code: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    start_date: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    end_date: Option<std::borrow::Cow<'a, str>>,
    amount: Option<f64>,
}

/// Streams a case-event JSON Lines file.
pub fn parse_jsonl<R: BufRead>(
    reader: R,
    table: &CodeTable,
    edge: &mut Edge<'_>,
    sink: &mut dyn Sink,
) -> Result<ParseCounts, ReadError> {
    for_each_line(reader, edge, sink, |line_no, line, edge, sink| {
        let ev = serde_json::from_slice::<JsonEvent<'_>>(line).map_err(|e| {
            Rejection::new(
                line_no,
                "-",
                format!(
                    "malformed JSON or a field of the wrong type at column {}",
                    e.column()
                ),
            )
        })?;
        let amount = ev.amount.map(|a| a.to_string()).unwrap_or_default();
        let fields = Fields {
            record_id: ev.record_id.as_deref().unwrap_or(""),
            national_id: ev.national_id.as_deref().unwrap_or(""),
            code: ev.code.as_deref().unwrap_or(""),
            start_date: ev.start_date.as_deref().unwrap_or(""),
            end_date: ev.end_date.as_deref().unwrap_or(""),
            amount: &amount,
        };
        case_event(line_no, &fields, table, edge, sink).map(|()| LineOutcome::Loaded)
    })
}

struct Fields<'a> {
    record_id: &'a str,
    national_id: &'a str,
    code: &'a str,
    start_date: &'a str,
    end_date: &'a str,
    amount: &'a str,
}

fn case_event(
    line: u64,
    f: &Fields<'_>,
    table: &CodeTable,
    edge: &mut Edge<'_>,
    sink: &mut dyn Sink,
) -> Result<(), Rejection> {
    let rej = |field: &str, reason: String| Rejection::new(line, field, reason);
    let record_id = f.record_id.trim();
    if record_id.is_empty() {
        return Err(rej("record_id", "missing".into()));
    }
    if f.national_id.trim().is_empty() {
        return Err(rej("national_id", "missing".into()));
    }
    let nid = edge
        .national_id(f.national_id)
        .map_err(|e| rej("national_id", e.to_string()))?;
    let code = f.code.trim();
    let category = table.codes.get(code).ok_or_else(|| {
        if code.is_empty() {
            rej("code", "missing".into())
        } else {
            rej(
                "code",
                format!("`{code}` is not in the code table `{}`", table.system),
            )
        }
    })?;
    let start = parse_date_days(f.start_date)
        .map_err(|e| rej("start_date", format!("{e} (expected YYYY-MM-DD)")))?;
    let end = match f.end_date.trim() {
        "" => None,
        v => Some(
            parse_date_days(v)
                .map_err(|e| rej("end_date", format!("{e} (expected YYYY-MM-DD)")))?,
        ),
    };
    if end.is_some_and(|e| e < start) {
        return Err(rej("end_date", "is before start_date".into()));
    }
    let value = match f.amount.trim() {
        "" => None,
        v => Some(
            v.parse::<f64>()
                .ok()
                .filter(|a| a.is_finite() && (0.0..=MAX_AMOUNT).contains(a))
                .ok_or_else(|| {
                    rej(
                        "amount",
                        format!("expected a number from 0 to {MAX_AMOUNT} (hours, days, visits or euros)"),
                    )
                })?,
        ),
    };
    if crate::edge::days(nid.birth_date()) > start {
        return Err(rej("start_date", "is before the person's birth".into()));
    }
    let key = edge.person(Identity::National(&nid), PersonFacts::default(), sink);
    let code_id = edge.code(CATEGORY_SYSTEM, category, sink);
    let detail_id = edge.code(&table.system, code, sink);
    sink.record(Record::Event(EventRow {
        record_key: edge.record_key("social", &[table.system.as_bytes(), record_id.as_bytes()]),
        person_id: key.id,
        kind: EventKind::SocialCase,
        code_id,
        detail_id: Some(detail_id),
        status: EventStatus::Occurred,
        start: start as i64 * 86_400,
        end: end.map(|e| e as i64 * 86_400),
        value,
    }));
    Ok(())
}
