//! HL7 FHIR R4: Bulk Data NDJSON and Bundle JSON, streamed into canonical records.
//!
//! Each line is parsed once, into one borrowed struct holding only the elements tidig
//! reads; everything else (narrative, extensions, contained resources we do not need)
//! is skipped by serde without allocation. Files may come in any order: a resource
//! whose Patient is not loaded yet becomes a [`PendingRow`] that the store resolves when
//! the Patient arrives. References resolve by `Patient/id`, absolute URLs ending in
//! `Patient/id`, `urn:uuid:` full URLs in Bundles, and logical references by identifier.

use std::borrow::Cow;
use std::io::{BufRead, Read};

use serde::Deserialize;

use crate::edge::Subject;
use crate::edge::{days, Edge, PersonFacts};
use crate::national_id::Sex;
use crate::pseudonym::Identity;
use crate::record::{
    for_each_line, EventKind, EventRow, EventStatus, LineBuffer, LineOutcome, ParseCounts,
    PendingRow, Record, Rejection, Sink,
};
use crate::time::{parse_fhir_datetime, DateError};
use crate::ReadError;

/// Resource types tidig loads. Everything else in an export is skipped.
pub const SUPPORTED: &[&str] = &[
    "Patient",
    "Encounter",
    "Condition",
    "Observation",
    "MedicationRequest",
    "Procedure",
    "Immunization",
];

/// Code systems preferred when a concept carries several codings.
const PREFERRED_SYSTEMS: &[&str] = &[
    "http://hl7.org/fhir/sid/icd-10",
    "urn:oid:1.2.246.537.6.1",
    "http://hl7.org/fhir/sid/icd-10-cm",
    "http://www.whocc.no/atc",
];

#[derive(Deserialize)]
struct Coding<'a> {
    #[serde(borrow)]
    system: Option<Cow<'a, str>>,
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct CodeableConcept<'a> {
    #[serde(default, borrow)]
    coding: Vec<Coding<'a>>,
}

#[derive(Deserialize)]
struct Identifier<'a> {
    #[serde(borrow)]
    system: Option<Cow<'a, str>>,
    #[serde(borrow)]
    value: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Reference<'a> {
    #[serde(borrow)]
    reference: Option<Cow<'a, str>>,
    #[serde(borrow)]
    identifier: Option<Identifier<'a>>,
}

#[derive(Deserialize)]
struct Period<'a> {
    #[serde(borrow)]
    start: Option<Cow<'a, str>>,
    #[serde(borrow)]
    end: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Quantity {
    value: Option<f64>,
}

#[derive(Deserialize)]
struct Contained<'a> {
    #[serde(rename = "resourceType", borrow)]
    resource_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    code: Option<CodeableConcept<'a>>,
}

/// The union of the elements tidig reads from the supported resource types.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Resource<'a> {
    #[serde(borrow)]
    resource_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    identifier: Vec<Identifier<'a>>,
    #[serde(borrow)]
    subject: Option<Reference<'a>>,
    #[serde(borrow)]
    patient: Option<Reference<'a>>,
    #[serde(borrow)]
    class: Option<Coding<'a>>,
    #[serde(rename = "type", default, borrow)]
    type_: Vec<CodeableConcept<'a>>,
    #[serde(borrow)]
    code: Option<CodeableConcept<'a>>,
    #[serde(borrow)]
    vaccine_code: Option<CodeableConcept<'a>>,
    #[serde(borrow)]
    medication_codeable_concept: Option<CodeableConcept<'a>>,
    #[serde(borrow)]
    medication_reference: Option<Reference<'a>>,
    #[serde(default, borrow)]
    contained: Vec<Contained<'a>>,
    #[serde(borrow)]
    period: Option<Period<'a>>,
    #[serde(borrow)]
    onset_date_time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    onset_period: Option<Period<'a>>,
    #[serde(borrow)]
    abatement_date_time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    recorded_date: Option<Cow<'a, str>>,
    #[serde(borrow)]
    verification_status: Option<CodeableConcept<'a>>,
    #[serde(borrow)]
    effective_date_time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    effective_period: Option<Period<'a>>,
    #[serde(borrow)]
    effective_instant: Option<Cow<'a, str>>,
    #[serde(borrow)]
    issued: Option<Cow<'a, str>>,
    value_quantity: Option<Quantity>,
    #[serde(borrow)]
    value_codeable_concept: Option<CodeableConcept<'a>>,
    #[serde(borrow)]
    authored_on: Option<Cow<'a, str>>,
    #[serde(borrow)]
    performed_date_time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    performed_period: Option<Period<'a>>,
    #[serde(borrow)]
    occurrence_date_time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    birth_date: Option<Cow<'a, str>>,
    #[serde(borrow)]
    gender: Option<Cow<'a, str>>,
    #[serde(borrow)]
    deceased_date_time: Option<Cow<'a, str>>,
}

/// Finds the top-level `resourceType` without parsing the whole line. Nested objects
/// (a `contained` resource that comes first) are stepped over, not mistaken for it.
pub fn sniff_resource_type(line: &[u8]) -> Option<&str> {
    let skip_ws = |mut i: usize| {
        while i < line.len() && matches!(line[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        i
    };
    // The end of the string whose opening quote is at `open`: the index of its closing
    // quote.
    let string_end = |open: usize| {
        let mut i = open + 1;
        while i < line.len() {
            match line[i] {
                b'\\' => i += 2,
                b'"' => return Some(i),
                _ => i += 1,
            }
        }
        None
    };
    let mut depth = 0u32;
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b'"' => {
                let close = string_end(i)?;
                let text = &line[i + 1..close];
                i = close + 1;
                if depth == 1 && text == b"resourceType" {
                    let colon = skip_ws(i);
                    if line.get(colon) == Some(&b':') {
                        let open = skip_ws(colon + 1);
                        if line.get(open) != Some(&b'"') {
                            return None;
                        }
                        let close = string_end(open)?;
                        return std::str::from_utf8(&line[open + 1..close]).ok();
                    }
                }
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

type Result1<T> = std::result::Result<T, Rejection>;

/// Streams a FHIR NDJSON file (one resource per line).
pub fn parse_ndjson<R: BufRead>(
    reader: R,
    edge: &mut Edge<'_>,
    sink: &mut dyn Sink,
) -> Result<ParseCounts, ReadError> {
    for_each_line(reader, edge, sink, |line_no, line, edge, sink| {
        parse_line(line.trim_ascii_end(), line_no, edge, sink, None)
    })
}

#[derive(Deserialize)]
struct Bundle<'a> {
    #[serde(rename = "resourceType", borrow)]
    resource_type: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    entry: Vec<BundleEntry<'a>>,
}

#[derive(Deserialize)]
struct BundleEntry<'a> {
    #[serde(rename = "fullUrl", borrow)]
    full_url: Option<Cow<'a, str>>,
    #[serde(borrow)]
    resource: Option<&'a serde_json::value::RawValue>,
}

/// Parses a FHIR Bundle (JSON). Bundles are read whole; use Bulk Data NDJSON for large
/// exports. Rejections are numbered by entry (1-based) and name `entry[i]`.
pub fn parse_bundle<R: Read>(
    mut reader: R,
    edge: &mut Edge<'_>,
    sink: &mut dyn Sink,
) -> Result<ParseCounts, ReadError> {
    let max = edge.config().limits.max_bundle_bytes;
    let mut text = Vec::new();
    (&mut reader)
        .take(max.saturating_add(1))
        .read_to_end(&mut text)
        .map_err(ReadError::io)?;
    if text.len() as u64 > max {
        return Err(ReadError::Format(format!(
            "the Bundle is larger than {max} bytes (ingest.max_bundle_bytes); \
             export large data as Bulk Data NDJSON"
        )));
    }
    let bundle: Bundle<'_> = serde_json::from_slice(&text)
        .map_err(|e| ReadError::Format(format!("not a FHIR Bundle: {}", json_problem(&e))))?;
    if bundle.resource_type.as_deref() != Some("Bundle") {
        return Err(ReadError::Format("resourceType is not `Bundle`".into()));
    }
    let mut counts = ParseCounts::default();
    // Patients first, so that entries may refer to patients later in the bundle.
    let is_patient = |e: &BundleEntry<'_>| {
        e.resource
            .and_then(|r| sniff_resource_type(r.get().as_bytes()))
            .is_some_and(|t| t == "Patient")
    };
    let mut out = LineBuffer::new(sink);
    for pass in [true, false] {
        for (i, entry) in bundle.entry.iter().enumerate() {
            if is_patient(entry) != pass {
                continue;
            }
            counts.read += 1;
            let line = i as u64 + 1;
            let Some(resource) = entry.resource else {
                counts.skipped += 1;
                continue;
            };
            let result = parse_line(
                resource.get().as_bytes(),
                line,
                edge,
                &mut out,
                entry.full_url.as_deref(),
            );
            match result {
                Ok(LineOutcome::Loaded) => {
                    counts.accepted += 1;
                    out.accept(edge);
                }
                Ok(_) => {
                    counts.skipped += 1;
                    out.accept(edge);
                }
                Err(mut rej) => {
                    rej.field = format!("entry[{i}].resource.{}", rej.field);
                    counts.rejected += 1;
                    out.reject_line(edge, rej);
                }
            }
        }
    }
    Ok(counts)
}

/// Describes a JSON error without quoting the input.
fn json_problem(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax => "malformed JSON",
        Category::Eof => "JSON ends early (truncated line?)",
        Category::Data => "a field tidig reads has the wrong type or shape",
        Category::Io => "read error",
    };
    format!("{what} at column {}", e.column())
}

fn parse_line(
    line: &[u8],
    line_no: u64,
    edge: &mut Edge<'_>,
    sink: &mut dyn Sink,
    full_url: Option<&str>,
) -> Result1<LineOutcome> {
    let Some(kind) = sniff_resource_type(line) else {
        // Either not JSON at all or JSON without a resourceType: let serde say which.
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(line) {
                Err(e) => Rejection::new(line_no, "-", json_problem(&e)),
                Ok(_) => Rejection::new(line_no, "resourceType", "missing resourceType"),
            },
        );
    };
    if !SUPPORTED.contains(&kind) {
        return Ok(LineOutcome::Skipped);
    }
    let res: Resource<'_> =
        serde_json::from_slice(line).map_err(|e| Rejection::new(line_no, "-", json_problem(&e)))?;
    let rt = res.resource_type.as_deref().unwrap_or("");
    let ctx = Ctx { line: line_no };
    match rt {
        "Patient" => patient(&ctx, &res, edge, sink, full_url),
        "Encounter" => encounter(&ctx, &res, edge, sink),
        "Condition" => condition(&ctx, &res, edge, sink),
        "Observation" => observation(&ctx, &res, edge, sink),
        "MedicationRequest" => medication_request(&ctx, &res, edge, sink),
        "Procedure" => procedure(&ctx, &res, edge, sink),
        "Immunization" => immunization(&ctx, &res, edge, sink),
        _ => Ok(LineOutcome::Skipped),
    }
}

struct Ctx {
    line: u64,
}

impl Ctx {
    fn reject(&self, field: &str, reason: impl Into<String>) -> Rejection {
        Rejection::new(self.line, field, reason)
    }

    fn time(&self, field: &str, value: &str) -> Result1<i64> {
        parse_fhir_datetime(value).map_err(|e| self.date_err(field, e))
    }

    fn date_err(&self, field: &str, e: DateError) -> Rejection {
        self.reject(field, e.to_string())
    }
}

fn patient(
    ctx: &Ctx,
    res: &Resource<'_>,
    edge: &mut Edge<'_>,
    sink: &mut dyn Sink,
    full_url: Option<&str>,
) -> Result1<LineOutcome> {
    let id = res
        .id
        .as_deref()
        .ok_or_else(|| ctx.reject("id", "missing"))?;
    let systems = edge.config().person_systems.clone();
    // The first configured system (in configuration order) the patient carries.
    let found = systems.iter().find_map(|ps| {
        res.identifier
            .iter()
            .enumerate()
            .find(|(_, ident)| ident.system.as_deref() == Some(ps.system.as_str()))
            .map(|(i, ident)| (ps, i, ident))
    });
    let Some((ps, i, ident)) = found else {
        return Err(ctx.reject(
            "identifier",
            "no identifier with a configured person system (see health.person_systems)",
        ));
    };
    let field = format!("identifier[{i}].value");
    let value = ident
        .value
        .as_deref()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| ctx.reject(&field, "missing"))?;
    let mut facts = PersonFacts {
        sex: match res.gender.as_deref() {
            Some("female") => Some(Sex::Female),
            Some("male") => Some(Sex::Male),
            _ => None,
        },
        ..PersonFacts::default()
    };
    if let Some(b) = res.birth_date.as_deref() {
        let secs = ctx.time("birthDate", b)?;
        facts.birth_date = Some(secs.div_euclid(86_400) as i32);
    }
    if let Some(d) = res.deceased_date_time.as_deref() {
        let secs = ctx.time("deceasedDateTime", d)?;
        facts.death_date = Some(secs.div_euclid(86_400) as i32);
    }
    let key = match ps.country {
        Some(country) => {
            let nid = edge
                .national_id_of(country, value)
                .map_err(|e| ctx.reject(&field, e.to_string()))?;
            if facts.birth_date.is_none() {
                facts.birth_date = Some(days(nid.birth_date()));
            }
            edge.person(Identity::National(&nid), facts, sink)
        }
        None => edge.person(
            Identity::Opaque {
                system: &ps.system,
                value,
            },
            facts,
            sink,
        ),
    };
    edge.alias(&format!("Patient/{id}"), key.id, sink);
    if let Some(url) = full_url {
        edge.alias(url, key.id, sink);
    }
    Ok(LineOutcome::Loaded)
}

/// Normalises a reference to the key it was registered under.
fn normalise_reference(r: &str) -> &str {
    let r = r.split("/_history/").next().unwrap_or(r);
    if r.starts_with("urn:uuid:") {
        return r;
    }
    match r.rfind("Patient/") {
        Some(pos) => &r[pos..],
        None => r,
    }
}

fn subject(
    ctx: &Ctx,
    field: &str,
    reference: Option<&Reference<'_>>,
    edge: &mut Edge<'_>,
    sink: &mut dyn Sink,
) -> Result1<Subject> {
    let Some(reference) = reference else {
        return Err(ctx.reject(field, "missing: the resource names no patient"));
    };
    if let Some(r) = reference.reference.as_deref() {
        let norm = normalise_reference(r);
        if norm.trim().is_empty() {
            return Err(ctx.reject(&format!("{field}.reference"), "empty reference"));
        }
        // A Patient not loaded yet is not an error: the event waits for it.
        return Ok(edge.subject(norm));
    }
    if let Some(ident) = &reference.identifier {
        let systems = edge.config().person_systems.clone();
        let system = ident.system.as_deref().unwrap_or("");
        let value = ident.value.as_deref().unwrap_or("");
        let f = format!("{field}.identifier");
        let Some(ps) = systems.iter().find(|ps| ps.system == system) else {
            return Err(ctx.reject(&f, "identifier system is not a configured person system"));
        };
        let key = match ps.country {
            Some(c) => {
                let nid = edge
                    .national_id_of(c, value)
                    .map_err(|e| ctx.reject(&f, e.to_string()))?;
                edge.person(Identity::National(&nid), PersonFacts::default(), sink)
            }
            None => edge.person(
                Identity::Opaque { system, value },
                PersonFacts::default(),
                sink,
            ),
        };
        return Ok(Subject::Person(key.id));
    }
    Err(ctx.reject(field, "has neither reference nor identifier"))
}

/// Picks the coding to store: a preferred system if present, else the first complete one.
fn pick_coding<'c, 'a>(cc: &'c CodeableConcept<'a>) -> Option<(&'c str, &'c str)> {
    let complete = || {
        cc.coding.iter().filter_map(|c| match (&c.system, &c.code) {
            (Some(s), Some(k)) if !k.trim().is_empty() => Some((s.as_ref(), k.as_ref())),
            _ => None,
        })
    };
    PREFERRED_SYSTEMS
        .iter()
        .find_map(|p| complete().find(|(s, _)| s == p))
        .or_else(|| complete().next())
}

fn code_of(
    ctx: &Ctx,
    field: &str,
    cc: Option<&CodeableConcept<'_>>,
    edge: &mut Edge<'_>,
    sink: &mut dyn Sink,
) -> Result1<i64> {
    let cc = cc.ok_or_else(|| ctx.reject(field, "missing"))?;
    let (system, code) =
        pick_coding(cc).ok_or_else(|| ctx.reject(field, "no coding with both system and code"))?;
    Ok(edge.code(system, code, sink))
}

fn optional_code(
    cc: Option<&CodeableConcept<'_>>,
    edge: &mut Edge<'_>,
    sink: &mut dyn Sink,
) -> Option<i64> {
    let (system, code) = pick_coding(cc?)?;
    Some(edge.code(system, code, sink))
}

struct Common {
    record_key: i64,
    subject: Subject,
}

fn common(
    ctx: &Ctx,
    res: &Resource<'_>,
    kind: &str,
    subject_ref: Option<&Reference<'_>>,
    subject_field: &str,
    edge: &mut Edge<'_>,
    sink: &mut dyn Sink,
) -> Result1<Common> {
    let id = res
        .id
        .as_deref()
        .ok_or_else(|| ctx.reject("id", "missing"))?;
    let subject = subject(ctx, subject_field, subject_ref, edge, sink)?;
    Ok(Common {
        record_key: edge.record_key("fhir", &[kind.as_bytes(), id.as_bytes()]),
        subject,
    })
}

fn emit(sink: &mut dyn Sink, c: &Common, kind: EventKind, code_id: i64, rest: EventRest) {
    let event = |person_id| EventRow {
        record_key: c.record_key,
        person_id,
        kind,
        code_id,
        detail_id: rest.detail_id,
        status: rest.status,
        start: rest.start,
        end: rest.end,
        value: rest.value,
    };
    sink.record(match c.subject {
        Subject::Person(id) => Record::Event(event(id)),
        Subject::Pending(subject_ref) => Record::Pending(PendingRow {
            subject_ref,
            event: event(0),
        }),
    });
}

struct EventRest {
    detail_id: Option<i64>,
    status: EventStatus,
    start: i64,
    end: Option<i64>,
    value: Option<f64>,
}

impl EventRest {
    fn at(start: i64, status: EventStatus) -> EventRest {
        EventRest {
            detail_id: None,
            status,
            start,
            end: None,
            value: None,
        }
    }
}

fn first_time(ctx: &Ctx, candidates: &[(&str, Option<&str>)]) -> Result1<Option<i64>> {
    for (field, value) in candidates {
        if let Some(v) = value {
            return ctx.time(field, v).map(Some);
        }
    }
    Ok(None)
}

fn period_start<'p>(p: Option<&'p Period<'_>>) -> Option<&'p str> {
    p.and_then(|p| p.start.as_deref())
}

fn period_end<'p>(p: Option<&'p Period<'_>>) -> Option<&'p str> {
    p.and_then(|p| p.end.as_deref())
}

fn encounter(
    ctx: &Ctx,
    res: &Resource<'_>,
    edge: &mut Edge<'_>,
    sink: &mut dyn Sink,
) -> Result1<LineOutcome> {
    let status = match res.status.as_deref() {
        Some("entered-in-error") | Some("planned") | Some("unknown") => {
            return Ok(LineOutcome::Skipped)
        }
        Some("cancelled") => EventStatus::NotDone,
        Some(_) => EventStatus::Occurred,
        None => return Err(ctx.reject("status", "missing")),
    };
    let c = common(
        ctx,
        res,
        "Encounter",
        res.subject.as_ref(),
        "subject",
        edge,
        sink,
    )?;
    let class = res
        .class
        .as_ref()
        .ok_or_else(|| ctx.reject("class", "missing"))?;
    let (Some(system), Some(code)) = (class.system.as_deref(), class.code.as_deref()) else {
        return Err(ctx.reject("class", "needs both system and code"));
    };
    let code_id = edge.code(system, code, sink);
    let start = period_start(res.period.as_ref())
        .ok_or_else(|| ctx.reject("period.start", "missing: the encounter has no time"))?;
    let mut rest = EventRest::at(ctx.time("period.start", start)?, status);
    if let Some(end) = period_end(res.period.as_ref()) {
        rest.end = Some(ctx.time("period.end", end)?);
    }
    rest.detail_id = optional_code(res.type_.first(), edge, sink);
    emit(sink, &c, EventKind::Encounter, code_id, rest);
    Ok(LineOutcome::Loaded)
}

fn condition(
    ctx: &Ctx,
    res: &Resource<'_>,
    edge: &mut Edge<'_>,
    sink: &mut dyn Sink,
) -> Result1<LineOutcome> {
    let verification = res
        .verification_status
        .as_ref()
        .and_then(|v| v.coding.first())
        .and_then(|c| c.code.as_deref());
    if matches!(verification, Some("entered-in-error") | Some("refuted")) {
        return Ok(LineOutcome::Skipped);
    }
    let c = common(
        ctx,
        res,
        "Condition",
        res.subject.as_ref(),
        "subject",
        edge,
        sink,
    )?;
    let code_id = code_of(ctx, "code", res.code.as_ref(), edge, sink)?;
    let start = first_time(
        ctx,
        &[
            ("onsetDateTime", res.onset_date_time.as_deref()),
            ("onsetPeriod.start", period_start(res.onset_period.as_ref())),
            ("recordedDate", res.recorded_date.as_deref()),
        ],
    )?
    .ok_or_else(|| ctx.reject("onsetDateTime", "missing: no onset or recorded date"))?;
    let mut rest = EventRest::at(start, EventStatus::Occurred);
    if let Some(end) = res.abatement_date_time.as_deref() {
        rest.end = Some(ctx.time("abatementDateTime", end)?);
    }
    emit(sink, &c, EventKind::Condition, code_id, rest);
    Ok(LineOutcome::Loaded)
}

fn observation(
    ctx: &Ctx,
    res: &Resource<'_>,
    edge: &mut Edge<'_>,
    sink: &mut dyn Sink,
) -> Result1<LineOutcome> {
    let status = match res.status.as_deref() {
        Some("entered-in-error") => return Ok(LineOutcome::Skipped),
        Some("cancelled") => EventStatus::NotDone,
        _ => EventStatus::Occurred,
    };
    let c = common(
        ctx,
        res,
        "Observation",
        res.subject.as_ref(),
        "subject",
        edge,
        sink,
    )?;
    let code_id = code_of(ctx, "code", res.code.as_ref(), edge, sink)?;
    let start = first_time(
        ctx,
        &[
            ("effectiveDateTime", res.effective_date_time.as_deref()),
            (
                "effectivePeriod.start",
                period_start(res.effective_period.as_ref()),
            ),
            ("effectiveInstant", res.effective_instant.as_deref()),
            ("issued", res.issued.as_deref()),
        ],
    )?
    .ok_or_else(|| ctx.reject("effectiveDateTime", "missing: the observation has no time"))?;
    let mut rest = EventRest::at(start, status);
    rest.value = res.value_quantity.as_ref().and_then(|q| q.value);
    if let Some(v) = rest.value {
        check_value(ctx, res.code.as_ref(), v)?;
    }
    rest.detail_id = optional_code(res.value_codeable_concept.as_ref(), edge, sink);
    emit(sink, &c, EventKind::Observation, code_id, rest);
    Ok(LineOutcome::Loaded)
}

/// Physical limits of the measurements features read, by LOINC code: a value outside
/// them is a unit or entry error, not a measurement. (code, what, unit, min, max)
const PHYSICAL_LIMITS: &[(&str, &str, &str, f64, f64)] = &[
    ("29463-7", "body weight", "kg", 0.2, 700.0),
    ("8302-2", "body height", "cm", 20.0, 300.0),
    ("39156-5", "body mass index", "kg/m2", 5.0, 250.0),
    ("8867-4", "heart rate", "/min", 0.0, 400.0),
    ("8480-6", "systolic blood pressure", "mm[Hg]", 0.0, 400.0),
    ("8462-4", "diastolic blood pressure", "mm[Hg]", 0.0, 300.0),
    ("9279-1", "respiratory rate", "/min", 0.0, 200.0),
    ("8310-5", "body temperature", "Cel", 10.0, 50.0),
    ("2708-6", "oxygen saturation", "%", 0.0, 100.0),
    ("59408-5", "oxygen saturation", "%", 0.0, 100.0),
];

/// Any larger magnitude is not a measurement of anything a person has.
const MAX_MAGNITUDE: f64 = 1e9;

/// A quantity must be finite, of a plausible magnitude, and within the physical limits
/// of its code when tidig knows them.
fn check_value(ctx: &Ctx, code: Option<&CodeableConcept<'_>>, v: f64) -> Result1<()> {
    const FIELD: &str = "valueQuantity.value";
    if !v.is_finite() || v.abs() > MAX_MAGNITUDE {
        return Err(ctx.reject(
            FIELD,
            format!("{v:e} is not a plausible measurement (expected a finite value below 1e9)"),
        ));
    }
    let loinc = code
        .into_iter()
        .flat_map(|cc| cc.coding.iter())
        .find_map(|c| {
            (c.system.as_deref() == Some("http://loinc.org"))
                .then_some(c.code.as_deref())
                .flatten()
        });
    if let Some((_, what, unit, min, max)) =
        loinc.and_then(|code| PHYSICAL_LIMITS.iter().find(|(c, ..)| *c == code))
    {
        if !(*min..=*max).contains(&v) {
            return Err(ctx.reject(
                FIELD,
                format!("{v} is outside the physical limits of {what} ({min} to {max} {unit})"),
            ));
        }
    }
    Ok(())
}

fn medication_request(
    ctx: &Ctx,
    res: &Resource<'_>,
    edge: &mut Edge<'_>,
    sink: &mut dyn Sink,
) -> Result1<LineOutcome> {
    let status = match res.status.as_deref() {
        Some("entered-in-error") | Some("draft") => return Ok(LineOutcome::Skipped),
        Some("cancelled") => EventStatus::NotDone,
        _ => EventStatus::Occurred,
    };
    let c = common(
        ctx,
        res,
        "MedicationRequest",
        res.subject.as_ref(),
        "subject",
        edge,
        sink,
    )?;
    let code_id = match (&res.medication_codeable_concept, &res.medication_reference) {
        (Some(cc), _) => code_of(ctx, "medicationCodeableConcept", Some(cc), edge, sink)?,
        (None, Some(r)) => {
            let target = r.reference.as_deref().unwrap_or("");
            let contained = target.strip_prefix('#').and_then(|id| {
                res.contained.iter().find(|m| {
                    m.id.as_deref() == Some(id) && m.resource_type.as_deref() == Some("Medication")
                })
            });
            let Some(med) = contained else {
                return Err(ctx.reject(
                    "medicationReference",
                    "only references to a contained Medication can be resolved",
                ));
            };
            code_of(
                ctx,
                "contained.Medication.code",
                med.code.as_ref(),
                edge,
                sink,
            )?
        }
        (None, None) => return Err(ctx.reject("medication[x]", "missing")),
    };
    let authored = res
        .authored_on
        .as_deref()
        .ok_or_else(|| ctx.reject("authoredOn", "missing: the request has no time"))?;
    let rest = EventRest::at(ctx.time("authoredOn", authored)?, status);
    emit(sink, &c, EventKind::Medication, code_id, rest);
    Ok(LineOutcome::Loaded)
}

fn procedure(
    ctx: &Ctx,
    res: &Resource<'_>,
    edge: &mut Edge<'_>,
    sink: &mut dyn Sink,
) -> Result1<LineOutcome> {
    let status = match res.status.as_deref() {
        Some("entered-in-error") | Some("preparation") => return Ok(LineOutcome::Skipped),
        Some("not-done") => EventStatus::NotDone,
        _ => EventStatus::Occurred,
    };
    let c = common(
        ctx,
        res,
        "Procedure",
        res.subject.as_ref(),
        "subject",
        edge,
        sink,
    )?;
    let code_id = code_of(ctx, "code", res.code.as_ref(), edge, sink)?;
    let start = first_time(
        ctx,
        &[
            ("performedDateTime", res.performed_date_time.as_deref()),
            (
                "performedPeriod.start",
                period_start(res.performed_period.as_ref()),
            ),
        ],
    )?
    .ok_or_else(|| ctx.reject("performed[x]", "missing: the procedure has no time"))?;
    let mut rest = EventRest::at(start, status);
    if let Some(end) = period_end(res.performed_period.as_ref()) {
        rest.end = Some(ctx.time("performedPeriod.end", end)?);
    }
    emit(sink, &c, EventKind::Procedure, code_id, rest);
    Ok(LineOutcome::Loaded)
}

fn immunization(
    ctx: &Ctx,
    res: &Resource<'_>,
    edge: &mut Edge<'_>,
    sink: &mut dyn Sink,
) -> Result1<LineOutcome> {
    let status = match res.status.as_deref() {
        Some("entered-in-error") => return Ok(LineOutcome::Skipped),
        Some("not-done") => EventStatus::NotDone,
        _ => EventStatus::Occurred,
    };
    let c = common(
        ctx,
        res,
        "Immunization",
        res.patient.as_ref(),
        "patient",
        edge,
        sink,
    )?;
    let code_id = code_of(ctx, "vaccineCode", res.vaccine_code.as_ref(), edge, sink)?;
    let when = res
        .occurrence_date_time
        .as_deref()
        .ok_or_else(|| ctx.reject("occurrenceDateTime", "missing"))?;
    let rest = EventRest::at(ctx.time("occurrenceDateTime", when)?, status);
    emit(sink, &c, EventKind::Immunization, code_id, rest);
    Ok(LineOutcome::Loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::{EdgeConfig, PersonSystem};
    use crate::national_id::{Country, IdRules};
    use crate::pseudonym::{Pseudonymizer, SecretKey, Vault};
    use crate::record::Collect;

    fn config() -> EdgeConfig {
        EdgeConfig {
            pseudonymizer: Pseudonymizer::new(&SecretKey::from_bytes([3; 32])),
            vault: Vault::new(&SecretKey::from_bytes([4; 32])),
            id_rules: IdRules::new(chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()),
            country: Country::Fi,
            person_systems: PersonSystem::nordic(),
            limits: Default::default(),
        }
    }

    const PATIENT: &str = r#"{"resourceType":"Patient","id":"p1","extension":[{"url":"http://example.org/x","valueString":"ignored"}],"identifier":[{"system":"urn:oid:1.2.246.21","value":"131052-308T"}],"birthDate":"1952","gender":"male"}"#;

    fn events(c: &Collect) -> Vec<EventRow> {
        c.records
            .iter()
            .filter_map(|r| match r {
                Record::Event(e) => Some(*e),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn partial_dates_time_zones_contained_resources_and_extensions() {
        let cfg = config();
        let mut edge = Edge::new(&cfg);
        let mut out = Collect::default();
        let text = [
            PATIENT,
            // Time zone: 10:00+02:00 is 08:00Z.
            r#"{"resourceType":"Encounter","id":"e1","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EMER"},"subject":{"reference":"Patient/p1"},"period":{"start":"2024-03-01T10:00:00+02:00"}}"#,
            // Partial date, absolute reference, extension on a primitive.
            r#"{"resourceType":"Condition","id":"c1","code":{"coding":[{"system":"http://snomed.info/sct","code":"35489007"},{"system":"http://hl7.org/fhir/sid/icd-10","code":"F32.1"}]},"subject":{"reference":"https://fhir.example.org/r4/Patient/p1/_history/3"},"onsetDateTime":"2023-05","_onsetDateTime":{"extension":[{"url":"x","valueCode":"approx"}]}}"#,
            // A contained Medication.
            r##"{"resourceType":"MedicationRequest","id":"m1","status":"active","intent":"order","contained":[{"resourceType":"Medication","id":"med","code":{"coding":[{"system":"http://www.whocc.no/atc","code":"N06AB10"}]}}],"medicationReference":{"reference":"#med"},"subject":{"reference":"Patient/p1"},"authoredOn":"2024-01-02"}"##,
            // Logical reference by identifier; not-done status.
            r#"{"resourceType":"Immunization","id":"i1","status":"not-done","vaccineCode":{"coding":[{"system":"http://www.whocc.no/atc","code":"J07BD52"}]},"patient":{"identifier":{"system":"urn:oid:1.2.246.21","value":"131052-308T"}},"occurrenceDateTime":"2024-02-03T09:00:00Z"}"#,
            r#"{"resourceType":"Observation","id":"o1","status":"entered-in-error","code":{"coding":[{"system":"http://loinc.org","code":"8302-2"}]},"subject":{"reference":"Patient/p1"}}"#,
        ]
        .join("\n");
        let c = parse_ndjson(text.as_bytes(), &mut edge, &mut out).unwrap();
        assert!(out.rejections.is_empty(), "{:?}", out.rejections);
        assert_eq!((c.read, c.accepted, c.skipped), (6, 5, 1));
        let ev = events(&out);
        assert_eq!(ev.len(), 4);
        let person = ev[0].person_id;
        assert!(
            ev.iter().all(|e| e.person_id == person),
            "all resolve to one person"
        );
        assert_eq!(
            ev[0].start,
            parse_fhir_datetime("2024-03-01T08:00:00Z").unwrap()
        );
        assert_eq!(ev[1].start, parse_fhir_datetime("2023-05-01").unwrap());
        let icd =
            crate::pseudonym::public_key63("code", &[b"http://hl7.org/fhir/sid/icd-10", b"F32.1"]);
        assert_eq!(ev[1].code_id, icd, "ICD-10 is preferred over SNOMED");
        assert_eq!(ev[3].status, EventStatus::NotDone);
        // The patient's own birthDate (a partial date) wins over the one in the ID.
        let birth = out.records.iter().find_map(|r| match r {
            Record::Person(p) => p.birth_date,
            _ => None,
        });
        assert_eq!(
            birth,
            Some(crate::time::parse_date_days("1952-01-01").unwrap())
        );
    }

    #[test]
    fn bundles_resolve_full_urls_and_name_the_entry_of_a_bad_resource() {
        let cfg = config();
        let mut edge = Edge::new(&cfg);
        let mut out = Collect::default();
        let bundle = r#"{"resourceType":"Bundle","type":"collection","entry":[
          {"fullUrl":"urn:uuid:aaaa","resource":{"resourceType":"Encounter","id":"e1","status":"finished","class":{"system":"s","code":"AMB"},"subject":{"reference":"urn:uuid:bbbb"},"period":{"start":"2024-01-01"}}},
          {"fullUrl":"urn:uuid:bbbb","resource":{"resourceType":"Patient","id":"x","identifier":[{"system":"urn:oid:1.2.246.21","value":"131052-308T"}]}},
          {"fullUrl":"urn:uuid:cccc","resource":{"resourceType":"Condition","id":"c1","code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10","code":"J06.9"}]},"subject":{"reference":"urn:uuid:bbbb"},"onsetDateTime":"2024-02-30"}}
        ]}"#;
        let c = parse_bundle(bundle.as_bytes(), &mut edge, &mut out).unwrap();
        assert_eq!((c.read, c.accepted, c.rejected), (3, 2, 1));
        assert_eq!(events(&out).len(), 1);
        let rej = &out.rejections[0];
        assert_eq!(rej.line, 3);
        assert_eq!(rej.field, "entry[2].resource.onsetDateTime");
        assert!(rej.reason.contains("does not exist"), "{}", rej.reason);
    }

    #[test]
    fn rejections_never_quote_the_identifier() {
        let cfg = config();
        let mut edge = Edge::new(&cfg);
        let mut out = Collect::default();
        let bad = PATIENT.replace("308T", "308U");
        let truncated = &PATIENT[..60];
        let text = format!("{bad}\n{truncated}\n");
        let c = parse_ndjson(text.as_bytes(), &mut edge, &mut out).unwrap();
        assert_eq!(c.rejected, 2);
        assert_eq!(out.rejections[0].field, "identifier[0].value");
        assert_eq!(out.rejections[1].line, 2);
        for r in &out.rejections {
            assert!(
                !r.reason.contains("131052") && !r.field.contains("131052"),
                "{r:?}"
            );
        }
    }
}
