//! Telling the input formats apart from a file's name and first bytes.

use crate::fhir::sniff_resource_type;
use crate::population::CsvKind;

/// Every input format tidig reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// FHIR R4 NDJSON, one resource per line (Bulk Data `$export` output).
    FhirNdjson,
    /// A FHIR R4 Bundle as one JSON document.
    FhirBundle,
    /// The `log.ndjson` of a Bulk Data export: recognised and not loaded.
    FhirBulkLog,
    /// tidig's population CSV layout (persons, addresses or relations).
    PopulationCsv,
    /// The Danish CPR fixed-width extract (ISO-8859-1).
    Cpr,
    /// Social-services case events, CSV.
    SocialCsv,
    /// Social-services case events, JSON Lines.
    SocialJsonl,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::FhirNdjson => "fhir-ndjson",
            Format::FhirBundle => "fhir-bundle",
            Format::FhirBulkLog => "fhir-bulk-log",
            Format::PopulationCsv => "population-csv",
            Format::Cpr => "cpr",
            Format::SocialCsv => "social-csv",
            Format::SocialJsonl => "social-jsonl",
        }
    }

    pub fn from_name(name: &str) -> Option<Format> {
        [
            Format::FhirNdjson,
            Format::FhirBundle,
            Format::FhirBulkLog,
            Format::PopulationCsv,
            Format::Cpr,
            Format::SocialCsv,
            Format::SocialJsonl,
        ]
        .into_iter()
        .find(|f| f.name() == name)
    }

    /// The order in which a directory's files are loaded: persons before what refers
    /// to them.
    pub fn load_order(self) -> u8 {
        match self {
            Format::PopulationCsv | Format::Cpr => 0,
            Format::FhirNdjson | Format::FhirBundle => 1,
            Format::SocialCsv | Format::SocialJsonl => 2,
            Format::FhirBulkLog => 3,
        }
    }
}

/// Detects the format of a file from the first bytes of its (decompressed) content. The
/// name (without a `.gz` suffix) only tells the Bulk Data log apart. Blank lines before
/// the first record are passed over, and a JSON Lines file whose first lines are broken
/// is still recognised by the first of its first lines that can be read.
pub fn detect(file_name: &str, head: &[u8]) -> Option<Format> {
    if file_name == "log.ndjson" {
        return Some(Format::FhirBulkLog);
    }
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let mut lines = text
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty());
    let first = lines.next()?;
    if first.first() == Some(&b'{') {
        return std::iter::once(first)
            .chain(lines.take(JSON_LINES_LOOKED_AT - 1))
            .find_map(json_line);
    }
    if let Ok(line) = std::str::from_utf8(first) {
        let names: Vec<&str> = line.split(',').map(str::trim).collect();
        if CsvKind::from_header(&names).is_some() {
            return Some(Format::PopulationCsv);
        }
        if names == crate::social::HEADER {
            return Some(Format::SocialCsv);
        }
    }
    let starts_digits = first.len() >= 13 && first[..3].iter().all(u8::is_ascii_digit);
    if starts_digits && (first.starts_with(b"000") || first.starts_with(b"001")) {
        return Some(Format::Cpr);
    }
    None
}

/// The resource type of the first readable line of a FHIR NDJSON head: an ingest loads
/// files that start with Patients first (which saves resolving their events later).
pub fn leading_resource_type(head: &[u8]) -> Option<&str> {
    head.split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty())
        .take(JSON_LINES_LOOKED_AT)
        .find_map(sniff_resource_type)
}

/// How many leading non-blank lines of a JSON file detection reads.
const JSON_LINES_LOOKED_AT: usize = 16;

fn json_line(line: &[u8]) -> Option<Format> {
    if line.first() != Some(&b'{') {
        return None;
    }
    match sniff_resource_type(line) {
        Some("Bundle") => Some(Format::FhirBundle),
        Some(_) => Some(Format::FhirNdjson),
        None if contains(line, b"\"national_id\"") => Some(Format::SocialJsonl),
        None => None,
    }
}

/// Whether a file that could not be recognised was meant to be data (by its extension,
/// without `.gz`): such a file fails the run instead of being passed over, so that a
/// broken extract is never silently skipped. Plain `.txt` and `.json` files (a README,
/// an export's `PROFILE.txt` or group manifest) are listed as not recognised instead.
pub fn looks_like_data(file_name: &str) -> bool {
    let lower = file_name.to_ascii_lowercase();
    [".ndjson", ".jsonl", ".csv"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let check = |name: &str, head: &str, expect: Option<Format>| {
            assert_eq!(detect(name, head.as_bytes()), expect, "{name}");
        };
        check(
            "Patient.000.ndjson",
            "{\"resourceType\":\"Patient\",\"id\":\"1\"}\n",
            Some(Format::FhirNdjson),
        );
        check(
            "b.json",
            "{ \"resourceType\" : \"Bundle\", \"entry\": []}",
            Some(Format::FhirBundle),
        );
        check("log.ndjson", "{\"exportId\":1}", Some(Format::FhirBulkLog));
        check(
            "p.csv",
            "national_id,birth_date,sex,death_date,mother_tongue,citizenship,country_of_birth\n",
            Some(Format::PopulationCsv),
        );
        check(
            "c.csv",
            "record_id,national_id,code,start_date,end_date,amount,unit\n",
            Some(Format::SocialCsv),
        );
        check(
            "c.jsonl",
            "{\"record_id\":\"1\",\"national_id\":\"x\"}\n",
            Some(Format::SocialJsonl),
        );
        check(
            "PNR.txt",
            "00000000000001109012001111920011116\n001010100503",
            Some(Format::Cpr),
        );
        check("x.txt", "hello", None);
        // Blank lines first, a broken first line, a contained resource first.
        check(
            "e.ndjson",
            "\n  \n{\"resourceType\":\"Encounter\"}\n",
            Some(Format::FhirNdjson),
        );
        check(
            "e.ndjson",
            "{\"resourceTy\n{not json\n{\"resourceType\":\"Encounter\"}\n",
            Some(Format::FhirNdjson),
        );
        check(
            "patients.ndjson",
            "{\"contained\":[{\"resourceType\":\"Bundle\"}],\"resourceType\":\"Patient\"}",
            Some(Format::FhirNdjson),
        );
        check("manifest.json", "{\"generator_version\": 2}", None);
        assert!(looks_like_data("x.NDJSON") && looks_like_data("persons.csv"));
        assert!(!looks_like_data("manifest.json") && !looks_like_data("code_table.toml"));
    }
}
