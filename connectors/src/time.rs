//! Dates and times as the registries write them, reduced to integers.
//!
//! Events are stored as seconds since the Unix epoch (UTC); date-only facts (birth,
//! residence periods) as days since 1970-01-01. FHIR partial dates (`2010`, `2010-05`)
//! resolve to the first instant of the period they name.

use chrono::NaiveDate;

use crate::edge::days;

/// Why a date or time did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    #[error("expected a date `YYYY`, `YYYY-MM`, `YYYY-MM-DD` or a dateTime with time zone")]
    Layout,
    #[error("the date does not exist in the calendar")]
    Impossible,
    #[error("the year is outside the plausible range 1800 to 2200")]
    OutOfRange,
    #[error("the time-zone offset is not one that exists (-12:00 to +14:00)")]
    Offset,
}

/// The years a registry date may fall in. Anything outside is a placeholder (`0000`,
/// `9999`) or an entry error, never a fact about a living family.
pub const YEARS: std::ops::RangeInclusive<i32> = 1800..=2200;

fn date(y: i32, m: u32, d: u32) -> Result<NaiveDate, DateError> {
    if !YEARS.contains(&y) {
        return Err(DateError::OutOfRange);
    }
    NaiveDate::from_ymd_opt(y, m, d).ok_or(DateError::Impossible)
}

fn two(b: &[u8]) -> Option<u32> {
    match b {
        [a @ b'0'..=b'9', c @ b'0'..=b'9'] => Some(((a - b'0') * 10 + (c - b'0')) as u32),
        _ => None,
    }
}

fn four(b: &[u8]) -> Option<i32> {
    let mut v = 0i32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as i32;
    }
    Some(v)
}

/// Parses an ISO date `YYYY-MM-DD` to days since the epoch.
pub fn parse_date_days(s: &str) -> Result<i32, DateError> {
    let b = s.trim().as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(DateError::Layout);
    }
    let (Some(y), Some(m), Some(d)) = (four(&b[0..4]), two(&b[5..7]), two(&b[8..10])) else {
        return Err(DateError::Layout);
    };
    date(y, m, d).map(days)
}

/// Parses a FHIR `date`, `dateTime` or `instant` to seconds since the epoch (UTC).
pub fn parse_fhir_datetime(s: &str) -> Result<i64, DateError> {
    let b = s.as_bytes();
    if b.len() < 4 {
        return Err(DateError::Layout);
    }
    let year = four(&b[0..4]).ok_or(DateError::Layout)?;
    let (month, day, rest) = match b.len() {
        4 => (1, 1, &b[4..]),
        7 if b[4] == b'-' => (two(&b[5..7]).ok_or(DateError::Layout)?, 1, &b[7..]),
        n if n >= 10 && b[4] == b'-' && b[7] == b'-' => (
            two(&b[5..7]).ok_or(DateError::Layout)?,
            two(&b[8..10]).ok_or(DateError::Layout)?,
            &b[10..],
        ),
        _ => return Err(DateError::Layout),
    };
    let mut secs = days(date(year, month, day)?) as i64 * 86_400;
    if rest.is_empty() {
        return Ok(secs);
    }
    // `Thh:mm:ss(.fff)?(Z|±hh:mm)`; FHIR requires a zone when a time is present.
    if rest.len() < 9 || rest[0] != b'T' || rest[3] != b':' || rest[6] != b':' {
        return Err(DateError::Layout);
    }
    let h = two(&rest[1..3]).ok_or(DateError::Layout)?;
    let mi = two(&rest[4..6]).ok_or(DateError::Layout)?;
    let se = two(&rest[7..9]).ok_or(DateError::Layout)?;
    if h > 24 || mi > 59 || se > 60 || (h == 24 && (mi, se) != (0, 0)) {
        return Err(DateError::Impossible);
    }
    secs += (h * 3600 + mi * 60 + se) as i64;
    let mut zone = &rest[9..];
    if let Some(b'.') = zone.first() {
        let digits = zone[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(DateError::Layout);
        }
        zone = &zone[1 + digits..];
    }
    match zone {
        [b'Z'] => Ok(secs),
        [sign @ (b'+' | b'-'), hh @ ..] if hh.len() == 5 && hh[2] == b':' => {
            let oh = two(&hh[0..2]).ok_or(DateError::Layout)?;
            let om = two(&hh[3..5]).ok_or(DateError::Layout)?;
            let off = (oh * 3600 + om * 60) as i64;
            let limit = if *sign == b'+' { 14 * 3600 } else { 12 * 3600 };
            if om > 59 || off > limit {
                return Err(DateError::Offset);
            }
            Ok(if *sign == b'+' {
                secs - off
            } else {
                secs + off
            })
        }
        _ => Err(DateError::Layout),
    }
}

/// Formats days since the epoch as `YYYY-MM-DD`.
pub fn format_days(d: i32) -> String {
    let date = NaiveDate::from_num_days_from_ce_opt(d + 719_163);
    match date {
        Some(date) => date.format("%Y-%m-%d").to_string(),
        None => format!("day {d}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(s: &str, expect: Result<i64, DateError>) {
        assert_eq!(parse_fhir_datetime(s), expect, "{s}");
    }

    #[test]
    fn fhir_dates_and_times() {
        check("1970-01-01", Ok(0));
        check("1970", Ok(0));
        check("1970-02", Ok(31 * 86400));
        check("1970-01-01T01:00:00Z", Ok(3600));
        check("1970-01-01T01:00:00+01:00", Ok(0));
        check("1970-01-01T00:00:00.123-04:00", Ok(4 * 3600));
        check("2010-05-15T02:28:40-04:00", Ok(1_273_904_920));
        check("2023-02-29", Err(DateError::Impossible));
        check("2023-13-01", Err(DateError::Impossible));
        check("2023-1-01", Err(DateError::Layout));
        check("2023-01-01T10:00:00", Err(DateError::Layout));
        check("", Err(DateError::Layout));
        check("0000-01-01", Err(DateError::OutOfRange));
        check("9999-12-31", Err(DateError::OutOfRange));
        check("1799", Err(DateError::OutOfRange));
        check("1800-01-01", Ok(-5_364_662_400));
        check("2024-01-01T10:00:00+99:99", Err(DateError::Offset));
        check("2024-01-01T10:00:00+14:30", Err(DateError::Offset));
        check("2024-01-01T10:00:00-12:30", Err(DateError::Offset));
        check("2024-01-01T10:00:00+05:75", Err(DateError::Offset));
        check("2024-01-01T00:00:00+14:00", Ok(1_704_067_200 - 14 * 3600));
        check("2024-01-01T24:00:01Z", Err(DateError::Impossible));
    }

    #[test]
    fn plain_dates() {
        assert_eq!(parse_date_days("1970-01-02"), Ok(1));
        assert_eq!(
            parse_date_days("2000-02-29").map(format_days),
            Ok("2000-02-29".into())
        );
        assert_eq!(parse_date_days("1900-02-29"), Err(DateError::Impossible));
        assert_eq!(parse_date_days("19000229"), Err(DateError::Layout));
        assert_eq!(parse_date_days("0000-01-01"), Err(DateError::OutOfRange));
        assert_eq!(parse_date_days("9999-12-31"), Err(DateError::OutOfRange));
    }
}
