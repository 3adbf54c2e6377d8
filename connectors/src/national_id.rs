//! Exact validation of Nordic national identity numbers.
//!
//! Every function here works on the raw string and returns either a [`NationalId`] in a
//! canonical form (what the pseudonym is computed over) or a [`NationalIdError`] that
//! says what is wrong *without repeating the number*. `NationalId` deliberately has no
//! `Display`, and its `Debug` is redacted, so a raw ID cannot leak through a log line or
//! an error message by accident.

use chrono::{Datelike, NaiveDate};

/// Which national numbering scheme an identifier belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Country {
    /// Finnish henkilötunnus (`DDMMYYCZZZQ`).
    Fi,
    /// Swedish personnummer or samordningsnummer.
    Se,
    /// Danish CPR number (`DDMMYY-SSSS`).
    Dk,
    /// Norwegian fødselsnummer or D-number.
    No,
}

impl Country {
    /// Parses a two-letter country code (`fi`, `se`, `dk`, `no`).
    pub fn from_code(code: &str) -> Option<Country> {
        match code.to_ascii_lowercase().as_str() {
            "fi" => Some(Country::Fi),
            "se" => Some(Country::Se),
            "dk" => Some(Country::Dk),
            "no" => Some(Country::No),
            _ => None,
        }
    }

    /// The lower-case two-letter code.
    pub fn code(self) -> &'static str {
        match self {
            Country::Fi => "fi",
            Country::Se => "se",
            Country::Dk => "dk",
            Country::No => "no",
        }
    }

    /// The FHIR identifier system conventionally used for this country's national ID.
    pub fn fhir_system(self) -> &'static str {
        match self {
            Country::Fi => "urn:oid:1.2.246.21",
            Country::Se => "urn:oid:1.2.752.129.2.1.3.1",
            Country::Dk => "urn:oid:1.2.208.176.1.2",
            Country::No => "urn:oid:2.16.578.1.12.4.1.4.1",
        }
    }
}

/// Sex as encoded in the identifier itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sex {
    Female,
    Male,
}

/// A validated national ID in canonical form.
///
/// The canonical form is what the keyed pseudonym is computed over, so two spellings of
/// the same number (`19121212-1212` and `121212-1212`) give the same pseudonym.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NationalId {
    country: Country,
    canonical: String,
    birth_date: NaiveDate,
    sex: Option<Sex>,
    kind: IdKind,
}

/// Variants of an identifier within one country's scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdKind {
    /// An ordinary, permanent number.
    Ordinary,
    /// Finnish temporary number (individual number 900–999).
    Temporary,
    /// Swedish samordningsnummer (day + 60).
    Coordination,
    /// Norwegian D-number (day + 40).
    DNumber,
}

impl std::fmt::Debug for NationalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NationalId")
            .field("country", &self.country)
            .field("canonical", &"<redacted>")
            .finish()
    }
}

impl NationalId {
    pub fn country(&self) -> Country {
        self.country
    }
    /// The canonical spelling. Only the pseudonymizer and the vault may read this.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }
    pub fn birth_date(&self) -> NaiveDate {
        self.birth_date
    }
    /// Sex encoded in the number, where the scheme encodes one.
    pub fn sex(&self) -> Option<Sex> {
        self.sex
    }
    pub fn kind(&self) -> IdKind {
        self.kind
    }
}

/// Why a string is not a valid national ID. Messages never contain the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NationalIdError {
    #[error("{country} national id has the wrong length or layout: expected {expected}")]
    Layout {
        country: &'static str,
        expected: &'static str,
    },
    #[error("{country} national id has an impossible birth date")]
    Date { country: &'static str },
    #[error("{country} national id has an invalid century sign")]
    Century { country: &'static str },
    #[error("{country} national id has an invalid individual number")]
    Serial { country: &'static str },
    #[error("{country} national id fails its check digit")]
    Checksum { country: &'static str },
    #[error("{country} temporary national ids are not accepted by this deployment")]
    Temporary { country: &'static str },
}

/// Validation settings that depend on the deployment, not on the number.
#[derive(Clone, Copy, Debug)]
pub struct IdRules {
    /// The date used to resolve the century of short Swedish numbers.
    pub today: NaiveDate,
    /// Accept Finnish temporary numbers (individual number 900–999).
    pub allow_temporary: bool,
}

impl IdRules {
    pub fn new(today: NaiveDate) -> IdRules {
        IdRules {
            today,
            allow_temporary: false,
        }
    }
}

/// Validates `raw` as a national ID of `country`.
pub fn parse(country: Country, raw: &str, rules: &IdRules) -> Result<NationalId, NationalIdError> {
    let raw = raw.trim();
    match country {
        Country::Fi => parse_fi(raw, rules),
        Country::Se => parse_se(raw, rules),
        Country::Dk => parse_dk(raw),
        Country::No => parse_no(raw),
    }
}

fn digits(s: &str) -> Option<Vec<u32>> {
    s.chars().map(|c| c.to_digit(10)).collect()
}

fn num(d: &[u32]) -> u32 {
    d.iter().fold(0, |acc, x| acc * 10 + x)
}

const FI_CHECK: &[u8; 31] = b"0123456789ABCDEFHJKLMNPRSTUVWXY";

/// The Finnish check character for a `DDMMYY` date part and a three-digit individual
/// number. Exposed for the synthetic generator.
pub fn fi_check_char(ddmmyy: u32, serial: u32) -> char {
    let n = ddmmyy as u64 * 1000 + serial as u64;
    FI_CHECK[(n % 31) as usize] as char
}

fn parse_fi(raw: &str, rules: &IdRules) -> Result<NationalId, NationalIdError> {
    const C: &str = "fi";
    let layout = NationalIdError::Layout {
        country: C,
        expected: "DDMMYYCZZZQ (11 characters)",
    };
    let upper = raw.to_ascii_uppercase();
    let chars: Vec<char> = upper.chars().collect();
    if chars.len() != 11 {
        return Err(layout);
    }
    let date_part: String = chars[0..6].iter().collect();
    let serial_part: String = chars[7..10].iter().collect();
    let (Some(dd), Some(sd)) = (digits(&date_part), digits(&serial_part)) else {
        return Err(layout);
    };
    let century = match chars[6] {
        '+' => 1800,
        '-' | 'Y' | 'X' | 'W' | 'V' | 'U' => 1900,
        'A' | 'B' | 'C' | 'D' | 'E' | 'F' => 2000,
        _ => return Err(NationalIdError::Century { country: C }),
    };
    let day = num(&dd[0..2]);
    let month = num(&dd[2..4]);
    let year = century + num(&dd[4..6]) as i32;
    let birth_date =
        NaiveDate::from_ymd_opt(year, month, day).ok_or(NationalIdError::Date { country: C })?;
    let serial = num(&sd);
    let kind = match serial {
        2..=899 => IdKind::Ordinary,
        900..=999 => IdKind::Temporary,
        _ => return Err(NationalIdError::Serial { country: C }),
    };
    if fi_check_char(num(&dd), serial) != chars[10] {
        return Err(NationalIdError::Checksum { country: C });
    }
    if kind == IdKind::Temporary && !rules.allow_temporary {
        return Err(NationalIdError::Temporary { country: C });
    }
    let sex = if serial % 2 == 1 {
        Sex::Male
    } else {
        Sex::Female
    };
    Ok(NationalId {
        country: Country::Fi,
        canonical: upper,
        birth_date,
        sex: Some(sex),
        kind,
    })
}

/// The Luhn check digit over `digits` (as used by Swedish personnummer).
pub fn luhn_digit(digits: &[u32]) -> u32 {
    let sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let v = if i % 2 == 0 { d * 2 } else { d };
            if v > 9 {
                v - 9
            } else {
                v
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

fn parse_se(raw: &str, rules: &IdRules) -> Result<NationalId, NationalIdError> {
    const C: &str = "se";
    let layout = NationalIdError::Layout {
        country: C,
        expected: "YYMMDD-NNNC, YYMMDD+NNNC, YYYYMMDD-NNNC or YYYYMMDDNNNC",
    };
    // Split off an optional separator before the last four characters.
    let (body, sep) = match raw.len() {
        10 | 12 => (raw.to_string(), None),
        11 | 13 => {
            let sep = raw.as_bytes()[raw.len() - 5] as char;
            if sep != '-' && sep != '+' {
                return Err(layout);
            }
            let mut s = raw[..raw.len() - 5].to_string();
            s.push_str(&raw[raw.len() - 4..]);
            (s, Some(sep))
        }
        _ => return Err(layout),
    };
    let Some(d) = digits(&body) else {
        return Err(layout);
    };
    let (year, rest) = if d.len() == 12 {
        (num(&d[0..4]) as i32, &d[2..])
    } else {
        let yy = num(&d[0..2]) as i32;
        let this_year = rules.today.year();
        let mut year = this_year - (this_year - yy).rem_euclid(100);
        if sep == Some('+') {
            year -= 100;
        }
        (year, &d[..])
    };
    // `rest` is YYMMDDNNNC.
    let month = num(&rest[2..4]);
    let mut day = num(&rest[4..6]);
    let mut kind = IdKind::Ordinary;
    if day > 60 {
        day -= 60;
        kind = IdKind::Coordination;
    }
    let birth_date =
        NaiveDate::from_ymd_opt(year, month, day).ok_or(NationalIdError::Date { country: C })?;
    if num(&rest[6..9]) == 0 {
        return Err(NationalIdError::Serial { country: C });
    }
    if luhn_digit(&rest[0..9]) != rest[9] {
        return Err(NationalIdError::Checksum { country: C });
    }
    let sex = if rest[8] % 2 == 1 {
        Sex::Male
    } else {
        Sex::Female
    };
    let canonical = format!("{year:04}{}", body[body.len() - 8..].to_owned());
    Ok(NationalId {
        country: Country::Se,
        canonical,
        birth_date,
        sex: Some(sex),
        kind,
    })
}

/// The century of a Danish CPR number from its seventh digit and two-digit year.
fn dk_year(yy: i32, seventh: u32) -> i32 {
    match seventh {
        0..=3 => 1900 + yy,
        4 | 9 => {
            if yy >= 37 {
                1900 + yy
            } else {
                2000 + yy
            }
        }
        _ => {
            if yy >= 58 {
                1800 + yy
            } else {
                2000 + yy
            }
        }
    }
}

fn parse_dk(raw: &str) -> Result<NationalId, NationalIdError> {
    const C: &str = "dk";
    let layout = NationalIdError::Layout {
        country: C,
        expected: "DDMMYY-SSSS or DDMMYYSSSS",
    };
    let body: String = match raw.len() {
        10 => raw.to_string(),
        11 if raw.as_bytes()[6] == b'-' => format!("{}{}", &raw[..6], &raw[7..]),
        _ => return Err(layout),
    };
    let Some(d) = digits(&body) else {
        return Err(layout);
    };
    let day = num(&d[0..2]);
    let month = num(&d[2..4]);
    let year = dk_year(num(&d[4..6]) as i32, d[6]);
    let birth_date =
        NaiveDate::from_ymd_opt(year, month, day).ok_or(NationalIdError::Date { country: C })?;
    // The modulus-11 check was abandoned in 2007; a valid CPR may fail it.
    let sex = if d[9] % 2 == 1 {
        Sex::Male
    } else {
        Sex::Female
    };
    Ok(NationalId {
        country: Country::Dk,
        canonical: body,
        birth_date,
        sex: Some(sex),
        kind: IdKind::Ordinary,
    })
}

/// The two Norwegian mod-11 check digits for the first nine digits, or `None` where a
/// check digit would be 10 (such numbers are never issued).
pub fn no_check_digits(d: &[u32]) -> Option<(u32, u32)> {
    const W1: [u32; 9] = [3, 7, 6, 1, 8, 9, 4, 5, 2];
    const W2: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];
    let k = |sum: u32| match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        v => Some(v),
    };
    let k1 = k(d.iter().zip(W1).map(|(a, b)| a * b).sum())?;
    let mut ten = d[..9].to_vec();
    ten.push(k1);
    let k2 = k(ten.iter().zip(W2).map(|(a, b)| a * b).sum())?;
    Some((k1, k2))
}

fn parse_no(raw: &str) -> Result<NationalId, NationalIdError> {
    const C: &str = "no";
    let layout = NationalIdError::Layout {
        country: C,
        expected: "DDMMYYIIIKK (11 digits)",
    };
    if raw.len() != 11 {
        return Err(layout);
    }
    let Some(d) = digits(raw) else {
        return Err(layout);
    };
    let mut day = num(&d[0..2]);
    let mut kind = IdKind::Ordinary;
    if day > 40 {
        day -= 40;
        kind = IdKind::DNumber;
    }
    let month = num(&d[2..4]);
    let yy = num(&d[4..6]) as i32;
    let ind = num(&d[6..9]);
    let year = match ind {
        0..=499 => 1900 + yy,
        500..=749 if yy >= 54 => 1800 + yy,
        900..=999 if yy >= 40 => 1900 + yy,
        500..=999 if yy <= 39 => 2000 + yy,
        _ => return Err(NationalIdError::Serial { country: C }),
    };
    let birth_date =
        NaiveDate::from_ymd_opt(year, month, day).ok_or(NationalIdError::Date { country: C })?;
    match no_check_digits(&d) {
        Some((k1, k2)) if k1 == d[9] && k2 == d[10] => {}
        _ => return Err(NationalIdError::Checksum { country: C }),
    }
    let sex = if d[8] % 2 == 1 {
        Sex::Male
    } else {
        Sex::Female
    };
    Ok(NationalId {
        country: Country::No,
        canonical: raw.to_string(),
        birth_date,
        sex: Some(sex),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> IdRules {
        IdRules::new(NaiveDate::from_ymd_opt(2026, 11, 22).unwrap())
    }

    fn check(country: Country, raw: &str, expect: Result<&str, &str>) {
        let got = parse(country, raw, &rules());
        match (got, expect) {
            (Ok(id), Ok(canon)) => assert_eq!(id.canonical(), canon, "{raw}"),
            (Err(e), Err(msg)) => assert!(e.to_string().contains(msg), "{raw}: {e}"),
            (got, expect) => panic!("{raw}: got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn finnish_examples() {
        check(Country::Fi, "131052-308T", Ok("131052-308T"));
        check(Country::Fi, "131052a308t", Ok("131052A308T"));
        check(Country::Fi, "131052-308U", Err("check digit"));
        check(Country::Fi, "310252-308Y", Err("birth date"));
        check(Country::Fi, "131052-000V", Err("individual number"));
        check(Country::Fi, "131052Z308T", Err("century"));
        check(Country::Fi, "131052-9993", Err("temporary"));
    }

    #[test]
    fn swedish_forms_share_a_canonical_form() {
        // Short forms resolve the century against `today` (2026): `-` is under 100 years.
        check(Country::Se, "121212-1212", Ok("201212121212"));
        check(Country::Se, "20121212-1212", Ok("201212121212"));
        check(Country::Se, "201212121212", Ok("201212121212"));
        check(Country::Se, "121212+1212", Ok("191212121212"));
        check(Country::Se, "121272-1219", Ok("201212721219"));
        check(Country::Se, "121212-1213", Err("check digit"));
    }

    #[test]
    fn danish_century_rule() {
        let id = parse(Country::Dk, "010100-5038", &rules()).unwrap();
        assert_eq!(
            id.birth_date(),
            NaiveDate::from_ymd_opt(2000, 1, 1).unwrap()
        );
        let id = parse(Country::Dk, "0101429059", &rules()).unwrap();
        assert_eq!(
            id.birth_date(),
            NaiveDate::from_ymd_opt(1942, 1, 1).unwrap()
        );
        check(Country::Dk, "3102420000", Err("birth date"));
    }

    #[test]
    fn norwegian_check_digits() {
        // A well-known published test number.
        check(Country::No, "01010750160", Ok("01010750160"));
        check(Country::No, "01010750161", Err("check digit"));
        // The first serial after 010190 whose check digits exist, as an ordinary number
        // and as a D-number (day + 40).
        let make = |d0: u32| {
            (0..500).find_map(|serial: u32| {
                let base = [
                    d0,
                    1,
                    0,
                    1,
                    9,
                    0,
                    serial / 100,
                    serial / 10 % 10,
                    serial % 10,
                ];
                let (k1, k2) = no_check_digits(&base)?;
                let text: String = base.iter().map(|d| d.to_string()).collect();
                Some(format!("{text}{k1}{k2}"))
            })
        };
        let id = make(0).unwrap();
        check(Country::No, &id, Ok(&id));
        let d_number = make(4).unwrap();
        let id = parse(Country::No, &d_number, &rules()).unwrap();
        assert_eq!(id.kind(), IdKind::DNumber);
        assert_eq!(
            id.birth_date(),
            NaiveDate::from_ymd_opt(1990, 1, 1).unwrap()
        );
    }

    #[test]
    fn debug_never_shows_the_number() {
        let id = parse(Country::Fi, "131052-308T", &rules()).unwrap();
        assert!(!format!("{id:?}").contains("308T"));
    }
}
