//! The connectors on real files written by other people (`shared/data`).

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure here is a test failure"
)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use flate2::read::MultiGzDecoder;
use tidig_connectors::edge::{Edge, EdgeConfig, PersonSystem};
use tidig_connectors::national_id::{Country, IdRules};
use tidig_connectors::pseudonym::{Pseudonymizer, SecretKey, Vault};
use tidig_connectors::record::{Collect, EventKind, Record, Relation};
use tidig_connectors::{detect, fhir, population, Format};

fn shared(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel)
}

fn config(country: Country, systems: Vec<PersonSystem>) -> EdgeConfig {
    EdgeConfig {
        pseudonymizer: Pseudonymizer::new(&SecretKey::from_bytes([11; 32])),
        vault: Vault::new(&SecretKey::from_bytes([12; 32])),
        id_rules: IdRules::new(NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()),
        country,
        person_systems: systems,
        limits: Default::default(),
    }
}

fn us_ssn() -> Vec<PersonSystem> {
    vec![PersonSystem {
        system: "http://hl7.org/fhir/sid/us-ssn".into(),
        country: None,
    }]
}

fn open(path: &Path) -> Box<dyn Read> {
    let f = File::open(path).unwrap();
    if path.extension().is_some_and(|e| e == "gz") {
        Box::new(MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    }
}

/// Loads every FHIR file of a directory, patients first; returns (records, per-file counts).
/// Per file: (read, accepted, rejected, skipped).
type FileCounts = HashMap<String, (u64, u64, u64, u64)>;

fn load_dir(dir: &Path) -> (Collect, FileCounts) {
    let cfg = config(Country::Fi, us_ssn());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("ndjson"))
        .collect();
    files.sort_by_key(|p| (!p.to_string_lossy().contains("Patient"), p.clone()));
    let mut out = Collect::default();
    let mut counts = HashMap::new();
    let mut aliases = HashMap::new();
    for path in files {
        let name = path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".gz")
            .to_string();
        let mut reader = BufReader::new(open(&path));
        let head = {
            use std::io::BufRead;
            reader.fill_buf().unwrap().to_vec()
        };
        let format = detect(&name, &head).unwrap_or_else(|| panic!("{name} not detected"));
        if format == Format::FhirBulkLog {
            continue;
        }
        assert_eq!(format, Format::FhirNdjson, "{name}");
        let mut edge = Edge::new(&cfg).with_aliases(std::mem::take(&mut aliases));
        let c = fhir::parse_ndjson(reader, &mut edge, &mut out).unwrap();
        aliases = edge.into_aliases();
        counts.insert(name, (c.read, c.accepted, c.rejected, c.skipped));
    }
    (out, counts)
}

fn events_of(out: &Collect, kind: EventKind) -> usize {
    out.records
        .iter()
        .filter(|r| matches!(r, Record::Event(e) if e.kind == kind))
        .count()
}

#[test]
fn bulk_export_13_loads_without_rejections() {
    let (out, counts) = load_dir(&shared("fhir/bulk-export-13"));
    for (name, (read, accepted, rejected, skipped)) in &counts {
        assert_eq!(*rejected, 0, "{name}: {:?}", out.rejections);
        assert_eq!(read, &(accepted + skipped), "{name}");
    }
    assert_eq!(counts["Patient.000.ndjson"].1, 13);
    // Unsupported resource types are skipped whole, not rejected.
    assert_eq!(counts["Device.000.ndjson"], (16, 0, 0, 16));
    assert_eq!(
        events_of(&out, EventKind::Condition) as u64,
        counts["Condition.000.ndjson"].1
    );
    assert_eq!(
        events_of(&out, EventKind::Encounter) as u64,
        counts["Encounter.000.ndjson"].1
    );
    assert!(events_of(&out, EventKind::Medication) > 1000);
    assert!(events_of(&out, EventKind::Immunization) > 100);
}

#[test]
fn synthea_100_gzip_loads_without_rejections() {
    let (out, counts) = load_dir(&shared("fhir/synthea-100"));
    assert!(
        out.rejections.is_empty(),
        "{:?}",
        &out.rejections[..out.rejections.len().min(5)]
    );
    assert_eq!(counts["Patient.ndjson"].1, 100);
    assert_eq!(counts["Observation.ndjson"].0, 16_315);
    assert_eq!(counts["Observation.ndjson"].1, 16_315);
    assert_eq!(events_of(&out, EventKind::Encounter), 3_697);
    assert_eq!(events_of(&out, EventKind::Procedure), 2_351);
    let persons = out
        .records
        .iter()
        .filter(|r| matches!(r, Record::Person(p) if p.sealed.is_some()))
        .count();
    assert_eq!(persons, 100);
    // Quantities survive: body heights are positive numbers.
    let with_values = out
        .records
        .iter()
        .filter(|r| matches!(r, Record::Event(e) if e.value.is_some_and(|v| v > 0.0)))
        .count();
    assert!(with_values > 10_000);
}

#[test]
fn patients_without_a_configured_system_are_quarantined_with_the_field() {
    let cfg = config(Country::Fi, PersonSystem::nordic());
    let mut edge = Edge::new(&cfg);
    let mut out = Collect::default();
    let path = shared("fhir/bulk-export-13/Patient.000.ndjson");
    let c = fhir::parse_ndjson(
        BufReader::new(File::open(path).unwrap()),
        &mut edge,
        &mut out,
    )
    .unwrap();
    assert_eq!(c.rejected, 13);
    assert_eq!(out.rejections[0].field, "identifier");
    assert_eq!(out.rejections[0].line, 1);
}

#[test]
fn cpr_test_extracts_load() {
    let dir = shared("national_ids/dk_cpr/cprdirect_test_responses");
    let cfg = config(Country::Dk, vec![]);
    let mut total = Collect::default();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in &paths {
        let bytes = std::fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert_eq!(detect(&name, &bytes), Some(Format::Cpr), "{name}");
        let mut edge = Edge::new(&cfg);
        let c = population::parse_cpr(&bytes[..], &mut edge, &mut total).unwrap();
        assert_eq!(c.rejected, 0, "{name}: {:?}", total.rejections);
        assert!(c.accepted >= 3, "{name}");
    }
    // PNR_0307610078 is a mother of two (014 records) living in Aalborg (0851, 9000).
    let cfg2 = config(Country::Dk, vec![]);
    let mut edge = Edge::new(&cfg2);
    let mut one = Collect::default();
    let bytes = std::fs::read(dir.join("PNR_0307610078.txt")).unwrap();
    population::parse_cpr(&bytes[..], &mut edge, &mut one).unwrap();
    let mothers = one
        .records
        .iter()
        .filter(|r| matches!(r, Record::Relation(rel) if rel.relation == Relation::Mother))
        .count();
    assert_eq!(mothers, 2);
    let residence = one
        .records
        .iter()
        .find_map(|r| match r {
            Record::Residence(res) => Some(res.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(residence.municipality, "0851");
    assert_eq!(residence.postcode.as_deref(), Some("9000"));
    let residences = total
        .records
        .iter()
        .filter(|r| matches!(r, Record::Residence(_)))
        .count();
    assert_eq!(
        residences, 7,
        "seven extracts carry a current address (002)"
    );
    // PNR_0101980014 has status 90 (dead) since 2000-06-30.
    let dead = total
        .records
        .iter()
        .filter(|r| matches!(r, Record::Person(p) if p.death_date.is_some()))
        .count();
    assert_eq!(dead, 1);
}
