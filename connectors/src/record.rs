//! Canonical, pseudonymized records: what every parser produces and the store persists.
//!
//! Nothing in this module can hold a raw national ID: persons are [`PersonKey`]s and the
//! raw identifier travels only as a [`Sealed`] vault entry.

use crate::edge::Edge;
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

/// An event whose patient reference names nobody loaded yet (the Patient may be in a
/// later file, a later run or a concurrent one). The store keeps it and moves it into
/// the events the moment the reference resolves; it is never quarantined for it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PendingRow {
    /// Keyed hash of the normalised reference (the same key an [`AliasRow`] carries).
    pub subject_ref: i64,
    /// The event; its `person_id` is 0 until the reference resolves.
    pub event: EventRow,
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
    Pending(PendingRow),
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
    /// A rejection. Anything in `field` or `reason` that could be a national ID is
    /// replaced ([`crate::redact::scrub`]): a reason may echo a value, and a value in the
    /// wrong column may be an ID.
    pub fn new(line: u64, field: impl Into<String>, reason: impl Into<String>) -> Rejection {
        let (field, reason) = (field.into(), reason.into());
        Rejection {
            line,
            field: crate::redact::scrub(&field).into_owned(),
            reason: crate::redact::scrub(&reason).into_owned(),
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
    /// The records emitted so far belong to earlier, accepted lines (a CPR person's
    /// address is emitted when the next person starts): keep them whatever becomes of
    /// the current line.
    fn keep(&mut self) {}
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

/// Holds one line's records until the line is accepted, so that a rejected line leaves
/// nothing behind: no person, no vault entry, no half of a relation pair.
pub(crate) struct LineBuffer<'s> {
    held: Vec<Record>,
    inner: &'s mut dyn Sink,
}

impl<'s> LineBuffer<'s> {
    pub(crate) fn new(inner: &'s mut dyn Sink) -> LineBuffer<'s> {
        LineBuffer {
            held: Vec::new(),
            inner,
        }
    }

    /// The line is done: its records and the edge state it created become final.
    pub(crate) fn accept(&mut self, edge: &mut Edge<'_>) {
        edge.commit_line();
        self.release();
    }

    /// The line is rejected: its records are dropped, the edge forgets what the line
    /// taught it, and the rejection goes to the sink.
    pub(crate) fn reject_line(&mut self, edge: &mut Edge<'_>, rejection: Rejection) {
        edge.rollback_line();
        self.held.clear();
        self.inner.reject(rejection);
    }

    fn release(&mut self) {
        for r in self.held.drain(..) {
            self.inner.record(r);
        }
    }
}

impl Sink for LineBuffer<'_> {
    fn record(&mut self, record: Record) {
        self.held.push(record);
    }
    fn reject(&mut self, rejection: Rejection) {
        self.inner.reject(rejection);
    }
    fn keep(&mut self) {
        self.release();
    }
    fn line_done(&mut self, bytes: u64) {
        self.inner.line_done(bytes);
    }
}

/// Reads one line into `buf` (cleared first), holding at most `max` bytes of it. Returns
/// the bytes consumed (0 at the end) and whether the line was longer than `max`; the
/// rest of an overlong line is read and dropped, never held.
pub(crate) fn read_line_bounded<R: std::io::BufRead>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<(u64, bool)> {
    buf.clear();
    let mut consumed = 0u64;
    let mut overlong = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok((consumed, overlong));
        }
        let (n, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if !overlong {
            // The line terminator does not count against the limit.
            let content = available[..n]
                .iter()
                .rev()
                .skip_while(|&&b| matches!(b, b'\n' | b'\r'))
                .count();
            if buf.len() + content > max {
                overlong = true;
                buf.clear();
                buf.shrink_to(64 * 1024);
            } else {
                buf.extend_from_slice(&available[..n]);
            }
        }
        reader.consume(n);
        consumed += n as u64;
        if done {
            return Ok((consumed, overlong));
        }
    }
}

/// The rejection of a line longer than the configured limit.
pub(crate) fn overlong(line: u64, max: usize) -> Rejection {
    Rejection::new(
        line,
        "-",
        format!("the line is longer than {max} bytes (ingest.max_line_bytes); it was not read"),
    )
}

/// Drives a line-oriented parse: reads lines (each at most the edge's line limit) with a
/// reused buffer, numbers them, keeps the counts, holds each line's records until the
/// line is accepted, hands rejections to the sink and reports progress after each line.
pub(crate) fn for_each_line<'c, R: std::io::BufRead>(
    mut reader: R,
    edge: &mut Edge<'c>,
    sink: &mut dyn Sink,
    mut parse: impl FnMut(u64, &[u8], &mut Edge<'c>, &mut dyn Sink) -> Result<LineOutcome, Rejection>,
) -> Result<ParseCounts, crate::ReadError> {
    let max = edge.config().limits.max_line_bytes;
    let mut counts = ParseCounts::default();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut line_no = 0u64;
    let mut bytes = 0u64;
    let mut out = LineBuffer::new(sink);
    loop {
        let (n, too_long) =
            read_line_bounded(&mut reader, &mut buf, max).map_err(crate::ReadError::io)?;
        if n == 0 {
            break;
        }
        bytes += n;
        line_no += 1;
        if too_long {
            counts.read += 1;
            counts.rejected += 1;
            out.reject_line(edge, overlong(line_no, max));
            out.line_done(bytes);
            continue;
        }
        let mut end = buf.len();
        while end > 0 && matches!(buf[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        let line = &buf[..end];
        if line.iter().all(u8::is_ascii_whitespace) {
            out.line_done(bytes);
            continue;
        }
        match parse(line_no, line, edge, &mut out) {
            Ok(LineOutcome::Ignored) => out.accept(edge),
            Ok(LineOutcome::Loaded) => {
                counts.read += 1;
                counts.accepted += 1;
                out.accept(edge);
            }
            Ok(LineOutcome::Skipped) => {
                counts.read += 1;
                counts.skipped += 1;
                out.accept(edge);
            }
            Err(rejection) => {
                counts.read += 1;
                counts.rejected += 1;
                out.reject_line(edge, rejection);
            }
        }
        out.line_done(bytes);
    }
    Ok(counts)
}

/// Line numbers that [`LimitLines`] cut short, shared with the parser that reads its
/// output.
#[derive(Clone, Debug, Default)]
pub(crate) struct Overlong(std::rc::Rc<std::cell::RefCell<std::collections::BTreeSet<u64>>>);

impl Overlong {
    pub(crate) fn contains(&self, line: u64) -> bool {
        self.0.borrow().contains(&line)
    }
}

/// A reader that passes at most `max` bytes of each line through and drops the rest
/// (recording the line number), so that a parser with its own buffering (the CSV reader)
/// never holds an overlong line whole.
pub(crate) struct LimitLines<R> {
    inner: R,
    max: usize,
    /// Bytes of the current line passed so far.
    current: usize,
    /// 1-based number of the current line.
    line: u64,
    overlong: Overlong,
}

impl<R: std::io::Read> LimitLines<R> {
    pub(crate) fn new(inner: R, max: usize) -> (LimitLines<R>, Overlong) {
        let overlong = Overlong::default();
        let reader = LimitLines {
            inner,
            max,
            current: 0,
            line: 1,
            overlong: overlong.clone(),
        };
        (reader, overlong)
    }
}

impl<R: std::io::Read> std::io::Read for LimitLines<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.inner.read(out)?;
            if n == 0 {
                return Ok(0);
            }
            // Compact the kept bytes to the front of `out`, segment by segment.
            let mut kept = 0;
            let mut at = 0;
            while at < n {
                let newline = out[at..n].iter().position(|&b| b == b'\n');
                let end = newline.map_or(n, |i| at + i);
                let room = self.max.saturating_sub(self.current);
                let take = (end - at).min(room);
                if take < end - at {
                    self.overlong.0.borrow_mut().insert(self.line);
                }
                out.copy_within(at..at + take, kept);
                kept += take;
                self.current += take;
                at = end;
                if newline.is_some() {
                    out[kept] = b'\n';
                    kept += 1;
                    at += 1;
                    self.current = 0;
                    self.line += 1;
                }
            }
            if kept > 0 {
                return Ok(kept);
            }
        }
    }
}
