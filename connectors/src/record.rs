//! Canonical, pseudonymized records: what every parser produces and the store persists.
//!
//! Nothing in this module can hold a raw national ID: persons are [`PersonKey`]s and the
//! raw identifier travels only as a [`Sealed`] vault entry.

use crate::national_id::Sex;
use crate::pseudonym::{PersonKey, Sealed};

/// The registry a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    Health,
    Population,
    Social,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Health => "health",
            Source::Population => "population",
            Source::Social => "social",
        }
    }
}

/// What an event is. The numeric codes are stored and must never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventKind {
    Encounter = 1,
    Condition = 2,
    Observation = 3,
    Medication = 4,
    Procedure = 5,
    Immunization = 6,
    /// A social-services case event; its code is the canonical category.
    SocialCase = 40,
}

impl EventKind {
    pub fn code(self) -> i64 {
        self as u8 as i64
    }
    pub fn source(self) -> Source {
        match self {
            EventKind::SocialCase => Source::Social,
            _ => Source::Health,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Encounter => "encounter",
            EventKind::Condition => "condition",
            EventKind::Observation => "observation",
            EventKind::Medication => "medication",
            EventKind::Procedure => "procedure",
            EventKind::Immunization => "immunization",
            EventKind::SocialCase => "social_case",
        }
    }
}

/// Event status, reduced to what features need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EventStatus {
    /// Happened (finished, active, completed, recorded).
    Occurred = 0,
    /// Planned but did not happen: a cancelled encounter, an immunization not done.
    NotDone = 1,
}

/// A person as first seen in a file.
#[derive(Clone, Debug, PartialEq)]
pub struct PersonRow {
    pub key: PersonKey,
    /// `fi`, `se`, `dk`, `no`, or `opaque`.
    pub scheme: &'static str,
    /// Days since 1970-01-01.
    pub birth_date: Option<i32>,
    pub sex: Option<Sex>,
    /// Days since 1970-01-01.
    pub death_date: Option<i32>,
    /// The raw identifier, sealed for the vault; present the first time a parse sees
    /// the person.
    pub sealed: Option<Sealed>,
}

/// One dated event of a person.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EventRow {
    /// Keyed hash of the record's natural key: duplicates collide here and are dropped.
    pub record_key: i64,
    pub person_id: i64,
    pub kind: EventKind,
    pub code_id: i64,
    /// A secondary code: encounter type, coded observation value, local social code.
    pub detail_id: Option<i64>,
    pub status: EventStatus,
    /// Seconds since 1970-01-01T00:00:00Z.
    pub start: i64,
    pub end: Option<i64>,
    pub value: Option<f64>,
}

/// A code first seen in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeRow {
    pub id: i64,
    pub system: String,
    pub code: String,
}

/// Where a person lived, and in which household, over a period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResidenceRow {
    pub record_key: i64,
    pub person_id: i64,
    pub valid_from: i32,
    pub valid_to: Option<i32>,
    pub municipality: String,
    pub postcode: Option<String>,
    /// Keyed hash of the registry's household or dwelling identifier.
    pub household_key: Option<i64>,
}

/// A parent–child relation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Relation {
    Mother,
    Father,
    /// Holder of parental authority / custody who is not (known as) a parent.
    Guardian,
}

impl Relation {
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Mother => "mother",
            Relation::Father => "father",
            Relation::Guardian => "guardian",
        }
    }
    pub fn parse(s: &str) -> Option<Relation> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mother" => Some(Relation::Mother),
            "father" => Some(Relation::Father),
            "guardian" => Some(Relation::Guardian),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelationRow {
    pub record_key: i64,
    pub child_id: i64,
    pub parent_id: i64,
    pub relation: Relation,
    pub valid_from: Option<i32>,
    pub valid_to: Option<i32>,
}

/// Links a source-system reference (`Patient/123`, `urn:uuid:…`) to a person, by a
/// keyed hash of the reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AliasRow {
    pub ref_key: i64,
    pub person_id: i64,
}

/// Attributes kept only to measure fairness; never model inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtectedAttribute {
    MotherTongue,
    Citizenship,
    CountryOfBirth,
}

impl ProtectedAttribute {
    pub fn as_str(self) -> &'static str {
        match self {
            ProtectedAttribute::MotherTongue => "mother_tongue",
            ProtectedAttribute::Citizenship => "citizenship",
            ProtectedAttribute::CountryOfBirth => "country_of_birth",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectedRow {
    pub person_id: i64,
    pub attribute: ProtectedAttribute,
    pub value: String,
}

/// Everything a parser can produce for the store.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Person(PersonRow),
    Event(EventRow),
    Code(CodeRow),
    Residence(ResidenceRow),
    Relation(RelationRow),
    Alias(AliasRow),
    Protected(ProtectedRow),
}

/// A line that could not be used, and why. Never contains the line's personal data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// 1-based line number (record number for fixed-width files).
    pub line: u64,
    /// The field at fault, as a path (`subject.reference`, `national_id`), or `-` for the
    /// line as a whole.
    pub field: String,
    pub reason: String,
}

impl Rejection {
    pub fn new(line: u64, field: impl Into<String>, reason: impl Into<String>) -> Rejection {
        Rejection {
            line,
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Counts of what one parse saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParseCounts {
    /// Data lines (or fixed-width records) read.
    pub read: u64,
    /// Lines that produced at least one record.
    pub accepted: u64,
    pub rejected: u64,
    /// Lines that were valid but deliberately not used (entered-in-error, unsupported).
    pub skipped: u64,
}

/// Receives the output of a parse, line by line.
pub trait Sink {
    fn record(&mut self, record: Record);
    fn reject(&mut self, rejection: Rejection);
    /// Called after each input line, with the byte offset reached, so the caller can
    /// report progress and cut batches.
    fn line_done(&mut self, _bytes: u64) {}
}

impl Sink for Vec<Record> {
    fn record(&mut self, record: Record) {
        self.push(record);
    }
    fn reject(&mut self, _rejection: Rejection) {}
}

/// A sink that keeps everything, for tests and small inputs.
#[derive(Debug, Default)]
pub struct Collect {
    pub records: Vec<Record>,
    pub rejections: Vec<Rejection>,
}

impl Sink for Collect {
    fn record(&mut self, record: Record) {
        self.records.push(record);
    }
    fn reject(&mut self, rejection: Rejection) {
        self.rejections.push(rejection);
    }
}

/// What became of one input line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineOutcome {
    /// Produced records.
    Loaded,
    /// Valid but deliberately not used.
    Skipped,
    /// Not a data line at all (blank line, frame record): not counted.
    Ignored,
}

/// Drives a line-oriented parse: reads lines with a reused buffer, numbers them, keeps
/// the counts, hands rejections to the sink and reports progress after each line.
pub(crate) fn for_each_line<R: std::io::BufRead>(
    mut reader: R,
    sink: &mut dyn Sink,
    mut parse: impl FnMut(u64, &[u8], &mut dyn Sink) -> Result<LineOutcome, Rejection>,
) -> Result<ParseCounts, crate::ReadError> {
    let mut counts = ParseCounts::default();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut line_no = 0u64;
    let mut bytes = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(crate::ReadError::io)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        line_no += 1;
        let mut end = buf.len();
        while end > 0 && matches!(buf[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        let line = &buf[..end];
        if line.iter().all(u8::is_ascii_whitespace) {
            sink.line_done(bytes);
            continue;
        }
        match parse(line_no, line, sink) {
            Ok(LineOutcome::Ignored) => {}
            Ok(LineOutcome::Loaded) => {
                counts.read += 1;
                counts.accepted += 1;
            }
            Ok(LineOutcome::Skipped) => {
                counts.read += 1;
                counts.skipped += 1;
            }
            Err(rejection) => {
                counts.read += 1;
                counts.rejected += 1;
                sink.reject(rejection);
            }
        }
        sink.line_done(bytes);
    }
    Ok(counts)
}
