//! Population registry extracts: tidig's documented CSV layout (for DVV / Navet style
//! exports and the synthetic municipality) and the Danish CPR fixed-width extract.
//!
//! The CSV layout is three files, told apart by their header line:
//!
//! * persons: `national_id,birth_date,sex,death_date,mother_tongue,citizenship,country_of_birth`
//! * addresses: `national_id,valid_from,valid_to,municipality,postcode,household_id`
//! * relations: `child_id,parent_id,relation,valid_from,valid_to`
//!
//! See `docs/formats.md` for every field.

use std::io::{BufRead, Read};

use crate::edge::{Edge, PersonFacts};
use crate::national_id::{NationalId, Sex};
use crate::pseudonym::Identity;
use crate::record::{
    for_each_line, LimitLines, LineBuffer, LineOutcome, Overlong, ParseCounts, ProtectedAttribute,
    ProtectedRow, Record, Rejection, Relation, RelationRow, ResidenceRow, Sink,
};
use crate::time::parse_date_days;
use crate::ReadError;

pub const PERSONS_HEADER: &[&str] = &[
    "national_id",
    "birth_date",
    "sex",
    "death_date",
    "mother_tongue",
    "citizenship",
    "country_of_birth",
];
pub const ADDRESSES_HEADER: &[&str] = &[
    "national_id",
    "valid_from",
    "valid_to",
    "municipality",
    "postcode",
    "household_id",
];
pub const RELATIONS_HEADER: &[&str] = &[
    "child_id",
    "parent_id",
    "relation",
    "valid_from",
    "valid_to",
];

/// Which of the CSV files a header announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsvKind {
    Persons,
    Addresses,
    Relations,
}

impl CsvKind {
    pub fn from_header(header: &[&str]) -> Option<CsvKind> {
        let eq = |h: &[&str]| header.len() == h.len() && header.iter().zip(h).all(|(a, b)| a == b);
        if eq(PERSONS_HEADER) {
            Some(CsvKind::Persons)
        } else if eq(ADDRESSES_HEADER) {
            Some(CsvKind::Addresses)
        } else if eq(RELATIONS_HEADER) {
            Some(CsvKind::Relations)
        } else {
            None
        }
    }
}

/// A CSV line's fields by position, with its line number.
pub(crate) struct Row<'r> {
    rec: &'r csv::StringRecord,
    pub(crate) line: u64,
    header: &'static [&'static str],
}

impl Row<'_> {
    pub(crate) fn get(&self, i: usize) -> &str {
        self.rec.get(i).map(str::trim).unwrap_or("")
    }
    fn name(&self, i: usize) -> &'static str {
        self.header[i]
    }
    fn required(&self, i: usize) -> Result<&str, Rejection> {
        let v = self.get(i);
        if v.is_empty() {
            Err(Rejection::new(self.line, self.name(i), "missing"))
        } else {
            Ok(v)
        }
    }
    fn date(&self, i: usize) -> Result<Option<i32>, Rejection> {
        let v = self.get(i);
        if v.is_empty() {
            return Ok(None);
        }
        parse_date_days(v).map(Some).map_err(|e| {
            Rejection::new(
                self.line,
                self.name(i),
                format!("{e} (expected YYYY-MM-DD)"),
            )
        })
    }
    fn national_id(&self, i: usize, edge: &Edge<'_>) -> Result<NationalId, Rejection> {
        let v = self.required(i)?;
        edge.national_id(v)
            .map_err(|e| Rejection::new(self.line, self.name(i), e.to_string()))
    }
}

/// Streams one CSV file of the population layout.
pub fn parse_csv<R: Read>(
    reader: R,
    edge: &mut Edge<'_>,
    sink: &mut dyn Sink,
) -> Result<ParseCounts, ReadError> {
    let (reader, overlong) = LimitLines::new(reader, edge.config().limits.max_line_bytes);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(reader);
    let header = rdr
        .headers()
        .map_err(|e| ReadError::Format(format!("unreadable header: {}", csv_problem(&e))))?
        .clone();
    let names: Vec<&str> = header.iter().map(str::trim).collect();
    let kind = CsvKind::from_header(&names).ok_or_else(|| {
        ReadError::Format(
            "header is not one of the population layouts (see docs/formats.md)".into(),
        )
    })?;
    match kind {
        CsvKind::Persons => csv_rows(&mut rdr, &overlong, PERSONS_HEADER, edge, sink, person_row),
        CsvKind::Addresses => csv_rows(
            &mut rdr,
            &overlong,
            ADDRESSES_HEADER,
            edge,
            sink,
            address_row,
        ),
        CsvKind::Relations => csv_rows(
            &mut rdr,
            &overlong,
            RELATIONS_HEADER,
            edge,
            sink,
            relation_row,
        ),
    }
}

/// Drives a CSV reader row by row: field-count check, rejection bookkeeping, progress.
/// Each row's records are held until the row is accepted; rows longer than the edge's
/// line limit (cut short by [`LimitLines`]) are rejected as such.
pub(crate) fn csv_rows<R: Read>(
    rdr: &mut csv::Reader<R>,
    overlong: &Overlong,
    header: &'static [&'static str],
    edge: &mut Edge<'_>,
    sink: &mut dyn Sink,
    mut parse_row: impl FnMut(&Row<'_>, &mut Edge<'_>, &mut dyn Sink) -> Result<(), Rejection>,
) -> Result<ParseCounts, ReadError> {
    let max = edge.config().limits.max_line_bytes;
    let mut counts = ParseCounts::default();
    let mut rec = csv::StringRecord::new();
    let mut out = LineBuffer::new(sink);
    loop {
        let next_line = rdr.position().line();
        let more = match rdr.read_record(&mut rec) {
            Ok(more) => more,
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => {
                return Err(ReadError::Format(csv_problem(&e)))
            }
            Err(e) => {
                // The error knows the record it is about; the reader has moved past it.
                let line = e.position().map_or(next_line, csv::Position::line);
                counts.read += 1;
                counts.rejected += 1;
                let rejection = if overlong.contains(line) {
                    crate::record::overlong(line, max)
                } else {
                    Rejection::new(line, "-", csv_problem(&e))
                };
                out.reject_line(edge, rejection);
                out.line_done(rdr.position().byte());
                continue;
            }
        };
        if !more {
            break;
        }
        let line = rec.position().map_or(next_line, csv::Position::line);
        counts.read += 1;
        let result = if overlong.contains(line) {
            Err(crate::record::overlong(line, max))
        } else if rec.len() != header.len() {
            Err(Rejection::new(
                line,
                "-",
                format!("expected {} fields, found {}", header.len(), rec.len()),
            ))
        } else {
            parse_row(
                &Row {
                    rec: &rec,
                    line,
                    header,
                },
                edge,
                &mut out,
            )
        };
        match result {
            Ok(()) => {
                counts.accepted += 1;
                out.accept(edge);
            }
            Err(r) => {
                counts.rejected += 1;
                out.reject_line(edge, r);
            }
        }
        out.line_done(rdr.position().byte());
    }
    Ok(counts)
}

/// Describes a CSV error without quoting the input.
pub(crate) fn csv_problem(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("expected {expected_len} fields, found {len}")
        }
        csv::ErrorKind::Io(err) => format!("read error: {err}"),
        _ => "malformed CSV".into(),
    }
}

fn sex_of(line: u64, v: &str) -> Result<Option<Sex>, Rejection> {
    match v {
        "" => Ok(None),
        "F" | "f" | "2" => Ok(Some(Sex::Female)),
        "M" | "m" | "1" => Ok(Some(Sex::Male)),
        _ => Err(Rejection::new(line, "sex", "expected `F`, `M` or empty")),
    }
}

fn person_row(row: &Row<'_>, edge: &mut Edge<'_>, sink: &mut dyn Sink) -> Result<(), Rejection> {
    let nid = row.national_id(0, edge)?;
    let birth = row.date(1)?;
    let sex = sex_of(row.line, row.get(2))?;
    let death = row.date(3)?;
    if let (Some(b), Some(d)) = (birth, death) {
        if d < b {
            return Err(Rejection::new(
                row.line,
                "death_date",
                "is before birth_date",
            ));
        }
    }
    let facts = PersonFacts {
        birth_date: birth,
        sex,
        death_date: death,
    };
    let key = edge.person(Identity::National(&nid), facts, sink);
    for (i, attribute) in [
        (4, ProtectedAttribute::MotherTongue),
        (5, ProtectedAttribute::Citizenship),
        (6, ProtectedAttribute::CountryOfBirth),
    ] {
        let v = row.get(i);
        if v.is_empty() {
            continue;
        }
        if v.len() > 3 || !v.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(Rejection::new(
                row.line,
                row.name(i),
                "expected an ISO 639-1 language or ISO 3166 country code",
            ));
        }
        sink.record(Record::Protected(ProtectedRow {
            person_id: key.id,
            attribute,
            value: v.to_ascii_lowercase(),
        }));
    }
    Ok(())
}

fn address_row(row: &Row<'_>, edge: &mut Edge<'_>, sink: &mut dyn Sink) -> Result<(), Rejection> {
    let nid = row.national_id(0, edge)?;
    let from = row
        .date(1)?
        .ok_or_else(|| Rejection::new(row.line, "valid_from", "missing"))?;
    let to = row.date(2)?;
    if to.is_some_and(|t| t < from) {
        return Err(Rejection::new(row.line, "valid_to", "is before valid_from"));
    }
    let municipality = row.required(3)?;
    if !municipality.chars().all(|c| c.is_ascii_digit()) || municipality.len() > 4 {
        return Err(Rejection::new(
            row.line,
            "municipality",
            "expected a numeric municipality code",
        ));
    }
    let postcode = Some(row.get(4)).filter(|p| !p.is_empty());
    let household = row.get(5);
    let key = edge.person(Identity::National(&nid), PersonFacts::default(), sink);
    let household_key =
        (!household.is_empty()).then(|| edge.record_key("household", &[household.as_bytes()]));
    sink.record(Record::Residence(ResidenceRow {
        record_key: edge.record_key("residence", &[&key.id.to_be_bytes(), &from.to_be_bytes()]),
        person_id: key.id,
        valid_from: from,
        valid_to: to,
        municipality: municipality.to_string(),
        postcode: postcode.map(str::to_string),
        household_key,
    }));
    Ok(())
}

fn relation_row(row: &Row<'_>, edge: &mut Edge<'_>, sink: &mut dyn Sink) -> Result<(), Rejection> {
    let child = row.national_id(0, edge)?;
    let parent = row.national_id(1, edge)?;
    let relation = Relation::parse(row.get(2)).ok_or_else(|| {
        Rejection::new(
            row.line,
            "relation",
            "expected `mother`, `father` or `guardian`",
        )
    })?;
    let from = row.date(3)?;
    let to = row.date(4)?;
    if child == parent {
        return Err(Rejection::new(
            row.line,
            "parent_id",
            "is the same person as child_id",
        ));
    }
    let child = edge.person(Identity::National(&child), PersonFacts::default(), sink);
    let parent = edge.person(Identity::National(&parent), PersonFacts::default(), sink);
    emit_relation(edge, sink, child.id, parent.id, relation, from, to);
    Ok(())
}

fn emit_relation(
    edge: &Edge<'_>,
    sink: &mut dyn Sink,
    child_id: i64,
    parent_id: i64,
    relation: Relation,
    valid_from: Option<i32>,
    valid_to: Option<i32>,
) {
    sink.record(Record::Relation(RelationRow {
        record_key: edge.record_key(
            "relation",
            &[
                &child_id.to_be_bytes(),
                &parent_id.to_be_bytes(),
                relation.as_str().as_bytes(),
                &valid_from.unwrap_or(i32::MIN).to_be_bytes(),
            ],
        ),
        child_id,
        parent_id,
        relation,
        valid_from,
        valid_to,
    }));
}

// ---------------------------------------------------------------------------------------
// Danish CPR extract (CPR Direct / "P12170" fixed-width layout, ISO-8859-1).
// ---------------------------------------------------------------------------------------

/// A fixed-width field: 1-based position and length, as in the CPR documentation.
struct Field {
    name: &'static str,
    pos: usize,
    len: usize,
}

const fn f(name: &'static str, pos: usize, len: usize) -> Field {
    Field { name, pos, len }
}

const PNR: Field = f("PNR", 4, 10);
// 001 person information
const STATUS: Field = f("STATUS", 24, 2);
const STATUS_DATE: Field = f("STATUSHAENSTART", 26, 12);
const GENDER: Field = f("KOEN", 39, 1);
const BIRTH: Field = f("FOED_DT", 40, 10);
// 002 current address
const KOMKOD: Field = f("KOMKOD", 14, 4);
const VEJKOD: Field = f("VEJKOD", 18, 4);
const HUSNR: Field = f("HUSNR", 22, 4);
const ETAGE: Field = f("ETAGE", 26, 2);
const SIDEDOER: Field = f("SIDEDOER", 28, 4);
const TILFLYDTO: Field = f("TILFLYDTO", 70, 12);
// 003 clear-written address
const POSTNR: Field = f("POSTNR", 184, 4);
// 014 child
const CHILD_PNR: Field = f("PNRBARN", 14, 10);
// 015 parents
const MOR_DT: Field = f("MOR_DT", 14, 10);
const PNRMOR: Field = f("PNRMOR", 25, 10);
const FAR_DT: Field = f("FAR_DT", 81, 10);
const PNRFAR: Field = f("PNRFAR", 92, 10);
// 016 parental authority
const MYN_START: Field = f("START_DT-FORAELDREMYN", 18, 10);
const MYN_END: Field = f("SLET_DT-FORAELDREMYN", 29, 10);
const RELPNR: Field = f("RELPNR", 39, 10);

/// One CPR record line, decoded from ISO-8859-1.
struct CprLine<'l> {
    chars: &'l [char],
    line: u64,
    record: &'l str,
}

impl CprLine<'_> {
    fn get(&self, field: &Field) -> String {
        let start = (field.pos - 1).min(self.chars.len());
        let end = (start + field.len).min(self.chars.len());
        self.chars[start..end]
            .iter()
            .collect::<String>()
            .trim()
            .to_string()
    }

    fn reject(&self, field: &Field, reason: impl Into<String>) -> Rejection {
        Rejection::new(self.line, format!("{}.{}", self.record, field.name), reason)
    }

    /// A `yyyy-MM-dd` date; blank or all-zero means unknown.
    fn date(&self, field: &Field) -> Result<Option<i32>, Rejection> {
        let v = self.get(field);
        if v.is_empty() || v.starts_with("0000") {
            return Ok(None);
        }
        parse_date_days(&v)
            .map(Some)
            .map_err(|e| self.reject(field, format!("{e} (expected yyyy-MM-dd)")))
    }

    /// A `yyyyMMddHHmm` timestamp reduced to its date; zeros mean unknown.
    fn stamp(&self, field: &Field) -> Result<Option<i32>, Rejection> {
        let v = self.get(field);
        if v.is_empty() || v.chars().all(|c| c == '0') {
            return Ok(None);
        }
        if v.len() != 12 || !v.chars().all(|c| c.is_ascii_digit()) {
            return Err(self.reject(field, "expected yyyyMMddHHmm"));
        }
        let iso = format!("{}-{}-{}", &v[0..4], &v[4..6], &v[6..8]);
        parse_date_days(&iso)
            .map(Some)
            .map_err(|e| self.reject(field, e.to_string()))
    }

    fn pnr(&self, field: &Field, edge: &Edge<'_>) -> Result<Option<NationalId>, Rejection> {
        let v = self.get(field);
        if v.is_empty() || v.chars().all(|c| c == '0') {
            return Ok(None);
        }
        edge.national_id_of(crate::national_id::Country::Dk, &v)
            .map(Some)
            .map_err(|e| self.reject(field, e.to_string()))
    }
}

/// What the records of one person say, gathered until the next person starts.
#[derive(Default)]
struct CprPerson {
    pnr: Option<NationalId>,
    person_id: Option<i64>,
    sex: Option<Sex>,
    address: Option<(i32, String, i64)>,
    postcode: Option<String>,
}

impl CprPerson {
    fn flush(&mut self, edge: &Edge<'_>, sink: &mut dyn Sink) {
        if let (Some(person_id), Some((from, municipality, household))) =
            (self.person_id, self.address.take())
        {
            sink.record(Record::Residence(ResidenceRow {
                record_key: edge.record_key(
                    "residence",
                    &[&person_id.to_be_bytes(), &from.to_be_bytes()],
                ),
                person_id,
                valid_from: from,
                valid_to: None,
                municipality,
                postcode: self.postcode.take(),
                household_key: Some(household),
            }));
        }
        *self = CprPerson::default();
    }
}

/// Streams a Danish CPR extract. Records 001 (person), 002 (current address), 003
/// (postcode), 014 (child), 015 (parents) and 016 (parental authority) are loaded; other
/// record types are counted as skipped.
pub fn parse_cpr<R: BufRead>(
    reader: R,
    edge: &mut Edge<'_>,
    sink: &mut dyn Sink,
) -> Result<ParseCounts, ReadError> {
    let mut person = CprPerson::default();
    let counts = for_each_line(reader, edge, sink, |line_no, bytes, edge, sink| {
        // ISO-8859-1 maps each byte to the code point of the same value.
        let chars: Vec<char> = bytes.iter().copied().map(char::from).collect();
        let record: String = chars.iter().take(3).collect();
        if record == "000" || record == "999" {
            return Ok(LineOutcome::Ignored);
        }
        let line = CprLine {
            chars: &chars,
            line: line_no,
            record: &record,
        };
        cpr_record(&line, &mut person, edge, sink)
    })?;
    person.flush(edge, sink);
    Ok(counts)
}

fn cpr_record(
    line: &CprLine<'_>,
    person: &mut CprPerson,
    edge: &mut Edge<'_>,
    sink: &mut dyn Sink,
) -> Result<LineOutcome, Rejection> {
    if !line.record.chars().all(|c| c.is_ascii_digit()) {
        return Err(Rejection::new(
            line.line,
            "RECORDTYPE",
            "expected a three-digit record type",
        ));
    }
    if !matches!(line.record, "001" | "002" | "003" | "014" | "015" | "016") {
        return Ok(LineOutcome::Skipped);
    }
    let pnr = line
        .pnr(&PNR, edge)?
        .ok_or_else(|| line.reject(&PNR, "missing"))?;
    if person.pnr.as_ref() != Some(&pnr) {
        person.flush(edge, sink);
        // The address belongs to the previous person's accepted lines.
        sink.keep();
        person.pnr = Some(pnr.clone());
    }
    match line.record {
        "001" => {
            let sex = match line.get(&GENDER).as_str() {
                "K" => Some(Sex::Female),
                "M" => Some(Sex::Male),
                "" => None,
                _ => return Err(line.reject(&GENDER, "expected `K` or `M`")),
            };
            let birth = line.date(&BIRTH)?;
            // Status 90 is "dead"; the status date is then the date of death.
            let death = if line.get(&STATUS) == "90" {
                line.stamp(&STATUS_DATE)?
            } else {
                None
            };
            let facts = PersonFacts {
                birth_date: birth,
                sex,
                death_date: death,
            };
            let key = edge.person(Identity::National(&pnr), facts, sink);
            person.person_id = Some(key.id);
            person.sex = sex.or(pnr.sex());
        }
        "002" => {
            let municipality = line.get(&KOMKOD);
            if municipality.is_empty() || !municipality.chars().all(|c| c.is_ascii_digit()) {
                return Err(line.reject(&KOMKOD, "expected a four-digit municipality code"));
            }
            let from = line
                .stamp(&TILFLYDTO)?
                .ok_or_else(|| line.reject(&TILFLYDTO, "missing relocation date"))?;
            let dwelling = [&KOMKOD, &VEJKOD, &HUSNR, &ETAGE, &SIDEDOER].map(|fl| line.get(fl));
            let dwelling: Vec<&[u8]> = dwelling.iter().map(|s| s.as_bytes()).collect();
            let household = edge.record_key("household", &dwelling);
            let key = edge.person(Identity::National(&pnr), PersonFacts::default(), sink);
            person.person_id = Some(key.id);
            person.address = Some((from, municipality, household));
        }
        "003" => {
            let postcode = line.get(&POSTNR);
            if !postcode.is_empty() {
                person.postcode = Some(postcode);
            }
        }
        "014" => {
            let child = line
                .pnr(&CHILD_PNR, edge)?
                .ok_or_else(|| line.reject(&CHILD_PNR, "missing"))?;
            let sex = person.sex.or(pnr.sex());
            let relation = match sex {
                Some(Sex::Female) => Relation::Mother,
                _ => Relation::Father,
            };
            let parent = edge.person(Identity::National(&pnr), PersonFacts::default(), sink);
            let child = edge.person(Identity::National(&child), PersonFacts::default(), sink);
            emit_relation(edge, sink, child.id, parent.id, relation, None, None);
        }
        "015" => {
            let child = edge.person(Identity::National(&pnr), PersonFacts::default(), sink);
            for (pnr_field, date_field, relation) in [
                (&PNRMOR, &MOR_DT, Relation::Mother),
                (&PNRFAR, &FAR_DT, Relation::Father),
            ] {
                let Some(parent) = line.pnr(pnr_field, edge)? else {
                    continue;
                };
                let _since = line.date(date_field)?;
                let parent = edge.person(Identity::National(&parent), PersonFacts::default(), sink);
                emit_relation(edge, sink, child.id, parent.id, relation, None, None);
            }
        }
        "016" => {
            let from = line.date(&MYN_START)?;
            let to = line.date(&MYN_END)?;
            if let Some(holder) = line.pnr(&RELPNR, edge)? {
                let child = edge.person(Identity::National(&pnr), PersonFacts::default(), sink);
                let holder = edge.person(Identity::National(&holder), PersonFacts::default(), sink);
                emit_relation(
                    edge,
                    sink,
                    child.id,
                    holder.id,
                    Relation::Guardian,
                    from,
                    to,
                );
            }
        }
        _ => return Ok(LineOutcome::Skipped),
    }
    Ok(LineOutcome::Loaded)
}
