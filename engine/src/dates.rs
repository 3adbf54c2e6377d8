//! Date arithmetic in one place: parsing dates given by people, ages, days since the
//! epoch (the stored form of dates) and ISO weeks.

use chrono::{Datelike, Days, NaiveDate};

use crate::error::EngineError;

/// Parses `YYYY-MM-DD`, naming the flag or field on failure.
pub fn parse(field: &str, text: &str) -> Result<NaiveDate, EngineError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        EngineError::invalid(
            field,
            format!("`{text}` is not a date: expected YYYY-MM-DD"),
        )
    })
}

/// Whole years between two dates.
pub fn age_years(birth: NaiveDate, on: NaiveDate) -> i64 {
    let mut y = i64::from(on.year() - birth.year());
    if (on.month(), on.day()) < (birth.month(), birth.day()) {
        y -= 1;
    }
    y
}

/// Days since 1970-01-01 (the stored form of a date).
pub fn days(date: NaiveDate) -> i64 {
    i64::from(tidig_connectors::edge::days(date))
}

/// The date `days` days after 1970-01-01.
pub fn from_days(days: i64) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(chrono::Duration::days(days))
}

/// The Monday that starts the ISO week of `date`.
pub fn week_start(date: NaiveDate) -> NaiveDate {
    date.checked_sub_days(Days::new(u64::from(date.weekday().num_days_from_monday())))
        .unwrap_or(date)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default()
    }

    #[test]
    fn ages_are_whole_years() {
        assert_eq!(age_years(d("2008-01-02"), d("2026-01-01")), 17);
        assert_eq!(age_years(d("2008-01-01"), d("2026-01-01")), 18);
        assert_eq!(age_years(d("2026-01-01"), d("2026-01-01")), 0);
        assert_eq!(age_years(d("2000-02-29"), d("2001-02-28")), 0);
        assert_eq!(age_years(d("2000-02-29"), d("2001-03-01")), 1);
    }

    #[test]
    fn days_round_trip_and_weeks_start_on_monday() {
        assert_eq!(days(d("1970-01-02")), 1);
        assert_eq!(from_days(days(d("2026-01-01"))), Some(d("2026-01-01")));
        assert_eq!(week_start(d("2026-01-01")), d("2025-12-29"));
        assert_eq!(week_start(d("2025-12-29")), d("2025-12-29"));
    }

    #[test]
    fn bad_dates_name_the_field() {
        let e = parse("--as-of", "2026-13-01").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("--as-of: `2026-13-01` is not a date: expected YYYY-MM-DD")
        );
    }
}
