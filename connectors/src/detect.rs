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

/// Detects the format of a file from its name (without a `.gz` suffix) and the first
/// bytes of its (decompressed) content.
pub fn detect(file_name: &str, head: &[u8]) -> Option<Format> {
    if file_name == "log.ndjson" {
        return Some(Format::FhirBulkLog);
    }
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let first_line = text.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let trimmed = first_line.trim_ascii();
    if trimmed.first() == Some(&b'{') {
        return match sniff_resource_type(first_line) {
            Some("Bundle") => Some(Format::FhirBundle),
            Some(_) => Some(Format::FhirNdjson),
            None if contains(trimmed, b"\"national_id\"") => Some(Format::SocialJsonl),
            None => None,
        };
    }
    if let Ok(line) = std::str::from_utf8(trimmed) {
        let names: Vec<&str> = line.split(',').map(str::trim).collect();
        if CsvKind::from_header(&names).is_some() {
            return Some(Format::PopulationCsv);
        }
        if names == crate::social::HEADER {
            return Some(Format::SocialCsv);
        }
    }
    let starts_digits = trimmed.len() >= 13 && trimmed[..3].iter().all(u8::is_ascii_digit);
    if starts_digits && (trimmed.starts_with(b"000") || trimmed.starts_with(b"001")) {
        return Some(Format::Cpr);
    }
    None
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
    }
}
