//! Every parser on hostile bytes (a proptest over arbitrary and mutated input, run in
//! CI): no panic, no line held beyond the configured limit, every line accounted for,
//! and no raw national ID in any rejection, even when IDs are planted in every position.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failure here is a test failure"
)]

use std::io::Cursor;

use chrono::NaiveDate;
use proptest::prelude::*;
use tidig_connectors::edge::{Edge, EdgeConfig, Limits, PersonSystem};
use tidig_connectors::national_id::{Country, IdRules};
use tidig_connectors::pseudonym::{Pseudonymizer, SecretKey, Vault};
use tidig_connectors::record::{Collect, ParseCounts, Record};
use tidig_connectors::social::CodeTable;
use tidig_connectors::{fhir, population, social, ReadError};

/// Valid IDs of every country, in the spellings files use; planted into the input.
const PLANTED: &[&str] = &[
    "131052-308T",
    "010682-362A",
    "0101005038",
    "010100-5038",
    "19811218-9876",
    "811218-9876",
    "01017012345",
];

/// Limits small enough that generated lines cross them.
const MAX_LINE: usize = 2_048;

fn config(country: Country) -> EdgeConfig {
    EdgeConfig {
        pseudonymizer: Pseudonymizer::new(&SecretKey::from_bytes([3; 32])),
        vault: Vault::new(&SecretKey::from_bytes([4; 32])),
        id_rules: IdRules::new(NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()),
        country,
        person_systems: PersonSystem::nordic(),
        limits: Limits {
            max_line_bytes: MAX_LINE,
            max_bundle_bytes: 64 * 1024,
        },
    }
}

/// One seed line per format, valid, that mutations start from.
const SEEDS: &[(Parser, &[u8])] = &[
    (
        Parser::FhirNdjson,
        br#"{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:oid:1.2.246.21","value":"131052-308T"}],"gender":"female","birthDate":"1952-10-13"}
{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-01-05T10:00:00+02:00","valueQuantity":{"value":71.5,"unit":"kg"}}
{"resourceType":"Encounter","id":"e1","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/p1"},"period":{"start":"2024-01-05T10:00:00+02:00"}}
"#,
    ),
    (
        Parser::FhirBundle,
        br#"{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:oid:1.2.246.21","value":"131052-308T"}],"birthDate":"1952-10-13"}},{"resource":{"resourceType":"Condition","id":"c1","subject":{"reference":"urn:uuid:1"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]},"onsetDateTime":"2020-02-03"}}]}"#,
    ),
    (
        Parser::PopulationCsv,
        b"national_id,birth_date,sex,death_date,mother_tongue,citizenship,country_of_birth\n\
         131052-308T,1952-10-13,F,,fi,fi,fi\n\
         010682-362A,1982-06-01,M,,sv,fi,se\n",
    ),
    (
        Parser::Cpr,
        include_bytes!(
            "../../../shared/data/national_ids/dk_cpr/cprdirect_test_responses/PNR_0101005038.txt"
        ),
    ),
    (
        Parser::SocialCsv,
        b"record_id,national_id,code,start_date,end_date,amount,unit\n\
         r1,131052-308T,KPO,2024-01-01,,500,family\n\
         r2,010682-362A,AT,2024-02-01,2024-03-01,250,family\n",
    ),
    (
        Parser::SocialJsonl,
        br#"{"record_id":"r1","national_id":"131052-308T","code":"KPO","start_date":"2024-01-01","amount":500,"unit":"family"}
{"record_id":"r2","national_id":"010682-362A","code":"AT","start_date":"2024-02-01","end_date":"2024-03-01"}
"#,
    ),
];

#[derive(Clone, Copy, Debug)]
enum Parser {
    FhirNdjson,
    FhirBundle,
    PopulationCsv,
    Cpr,
    SocialCsv,
    SocialJsonl,
}

fn run(parser: Parser, bytes: &[u8]) -> (Result<ParseCounts, ReadError>, Collect) {
    let country = match parser {
        Parser::Cpr => Country::Dk,
        _ => Country::Fi,
    };
    let cfg = config(country);
    let table = CodeTable::default_table();
    let mut edge = Edge::new(&cfg);
    let mut sink = Collect::default();
    let r = Cursor::new(bytes);
    let result = match parser {
        Parser::FhirNdjson => fhir::parse_ndjson(r, &mut edge, &mut sink),
        Parser::FhirBundle => fhir::parse_bundle(r, &mut edge, &mut sink),
        Parser::PopulationCsv => population::parse_csv(r, &mut edge, &mut sink),
        Parser::Cpr => population::parse_cpr(r, &mut edge, &mut sink),
        Parser::SocialCsv => social::parse_csv(r, &table, &mut edge, &mut sink),
        Parser::SocialJsonl => social::parse_jsonl(r, &table, &mut edge, &mut sink),
    };
    (result, sink)
}

/// What must hold for any input: no raw ID (planted or not) in a rejection, and the
/// line counts add up.
fn check(parser: Parser, bytes: &[u8]) {
    let (result, sink) = run(parser, bytes);
    for r in &sink.rejections {
        for id in PLANTED {
            assert!(
                !r.reason.contains(id) && !r.field.contains(id),
                "{parser:?}: a raw ID in rejection {r:?}"
            );
        }
        assert!(
            !tidig_connectors::redact::has_id_like(&r.reason)
                && !tidig_connectors::redact::has_id_like(&r.field),
            "{parser:?}: an ID-like token in rejection {r:?}"
        );
    }
    if let Ok(c) = result {
        assert!(
            c.accepted + c.rejected + c.skipped <= c.read,
            "{parser:?}: {c:?}"
        );
        assert_eq!(
            c.rejected as usize,
            sink.rejections.len(),
            "{parser:?}: every rejected line is quarantined once"
        );
        for rec in &sink.records {
            if let Record::Code(code) = rec {
                assert!(code.code.len() <= MAX_LINE, "{parser:?}: a code held whole");
            }
        }
    }
}

/// A seed with random byte edits and planted IDs.
fn mutated() -> impl Strategy<Value = (usize, Vec<u8>)> {
    (
        0..SEEDS.len(),
        proptest::collection::vec(
            (
                any::<prop::sample::Index>(),
                prop_oneof![
                    any::<u8>().prop_map(|b| vec![b]),
                    prop::sample::select(PLANTED).prop_map(|s| s.as_bytes().to_vec()),
                    Just(b"\n".to_vec()),
                    Just(b",".to_vec()),
                    Just(b"\"".to_vec()),
                    Just(b"{".to_vec()),
                    Just(b"}".to_vec()),
                    Just(vec![0xff, 0xfe]),
                    Just(vec![b'9'; 40]),
                    Just(vec![b'x'; MAX_LINE + 10]),
                ],
                any::<bool>(),
            ),
            1..12,
        ),
    )
        .prop_map(|(seed, edits)| {
            let mut bytes = SEEDS[seed].1.to_vec();
            for (at, insert, replace) in edits {
                let i = at.index(bytes.len() + 1);
                if replace && i < bytes.len() {
                    let end = (i + insert.len()).min(bytes.len());
                    bytes.splice(i..end, insert);
                } else {
                    bytes.splice(i..i, insert);
                }
            }
            (seed, bytes)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_or_leak_an_id(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        which in 0..SEEDS.len(),
    ) {
        check(SEEDS[which].0, &bytes);
    }

    #[test]
    fn mutated_extracts_never_panic_or_leak_an_id((seed, bytes) in mutated()) {
        check(SEEDS[seed].0, &bytes);
    }
}

#[test]
fn every_seed_is_valid_so_mutations_start_from_real_input() {
    for (parser, text) in SEEDS {
        let (result, sink) = run(*parser, text);
        let c = result.unwrap();
        assert!(c.accepted >= 1, "{parser:?}: {c:?} {:?}", sink.rejections);
        assert_eq!(c.rejected, 0, "{parser:?}: {:?}", sink.rejections);
    }
}

#[test]
fn an_overlong_line_is_rejected_without_being_held() {
    for (parser, text) in SEEDS {
        if matches!(parser, Parser::FhirBundle) {
            continue;
        }
        let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
        // A valid first line (a header for the CSV layouts), then one line far over the
        // limit, then the rest.
        let mut bytes = lines[0].to_vec();
        bytes.push(b'\n');
        bytes.extend(std::iter::repeat_n(b'a', MAX_LINE * 50));
        bytes.push(b'\n');
        for l in &lines[1..] {
            bytes.extend_from_slice(l);
            bytes.push(b'\n');
        }
        let (result, sink) = run(*parser, &bytes);
        let c = result.unwrap();
        assert!(c.rejected >= 1, "{parser:?}: {c:?}");
        assert!(
            sink.rejections
                .iter()
                .any(|r| r.reason.contains("longer than") || r.reason.contains("limit")),
            "{parser:?}: {:?}",
            sink.rejections
        );
    }
}
