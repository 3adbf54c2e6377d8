//! National-ID validation against the published test vectors in `shared/data`.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure here is a test failure"
)]

use std::path::PathBuf;

use chrono::NaiveDate;
use serde_json::Value;
use tidig_connectors::national_id::{parse, Country, IdKind, IdRules, Sex};

fn data(rel: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/national_ids")
        .join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("test data {} is missing: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn rules() -> IdRules {
    IdRules::new(NaiveDate::from_ymd_opt(2026, 11, 22).unwrap())
}

#[test]
fn finnish_vectors_match_stdnum() {
    let v = data("checksum_crosscheck.json");
    let cases = v["fi"].as_array().unwrap();
    assert!(cases.len() >= 9);
    for case in cases {
        let hetu = case["hetu"].as_str().unwrap();
        let strict = parse(Country::Fi, hetu, &rules()).is_ok();
        assert_eq!(strict, case["stdnum_valid"].as_bool().unwrap(), "{hetu}");
        let lenient = IdRules {
            allow_temporary: true,
            ..rules()
        };
        let with_temp = parse(Country::Fi, hetu, &lenient);
        assert_eq!(
            with_temp.is_ok(),
            case["stdnum_valid_allow_temporary"].as_bool().unwrap(),
            "{hetu} (temporary allowed)"
        );
        if let Ok(id) = with_temp {
            let temporary = hetu[7..10].parse::<u32>().unwrap() >= 900;
            assert_eq!(id.kind() == IdKind::Temporary, temporary, "{hetu}");
        }
    }
}

#[test]
fn swedish_personnummer_and_samordningsnummer_vectors() {
    let v = data("se_personnummer/list.json");
    let cases = v.as_array().unwrap();
    let mut checked = 0;
    for case in cases {
        let valid = case["valid"].as_bool().unwrap();
        let coordination = case["type"].as_str() == Some("con");
        for form in [
            "long_format",
            "separated_format",
            "separated_long",
            "short_format",
        ] {
            let raw = case[form].as_str().unwrap();
            let got = parse(Country::Se, raw, &rules());
            assert_eq!(got.is_ok(), valid, "{raw} ({form})");
            if let Ok(id) = got {
                // The short form without separator cannot say "over 100 years old".
                let centenarian = case["separated_format"].as_str().unwrap().contains('+');
                if form != "short_format" || !centenarian {
                    assert_eq!(
                        id.canonical(),
                        case["long_format"].as_str().unwrap(),
                        "{raw}"
                    );
                }
                let male = case["isMale"].as_bool().unwrap();
                assert_eq!(id.sex(), Some(if male { Sex::Male } else { Sex::Female }));
                assert_eq!(id.kind() == IdKind::Coordination, coordination, "{raw}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} vectors checked");
}

#[test]
fn swedish_interim_numbers_are_not_national_ids() {
    // Interim numbers (a letter in the serial) identify no person across registries.
    let v = data("se_personnummer/interim.json");
    for case in v.as_array().unwrap() {
        let raw = case["separated_format"].as_str().unwrap();
        assert!(parse(Country::Se, raw, &rules()).is_err(), "{raw}");
    }
}

#[test]
fn danish_test_extract_numbers_are_valid() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/national_ids/dk_cpr/cprdirect_test_responses");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let pnr = name.trim_start_matches("PNR_").trim_end_matches(".txt");
        let id = parse(Country::Dk, pnr, &rules()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(id.canonical(), pnr);
        n += 1;
    }
    assert_eq!(n, 10);
}
