//! Where every "now" comes from: the system clock in production, a fixed instant in tests.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

/// The source of the current time, injected through `App`.
#[derive(Clone, Copy, Debug, Default)]
pub enum Clock {
    /// The operating system's clock.
    #[default]
    System,
    /// Always the same instant.
    Fixed(DateTime<Utc>),
}

impl Clock {
    /// A clock stopped at midnight UTC of `date`.
    pub fn fixed_on(date: NaiveDate) -> Clock {
        Clock::Fixed(date.and_time(chrono::NaiveTime::MIN).and_utc())
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Fixed(t) => *t,
        }
    }

    /// Today's date in UTC.
    pub fn today(&self) -> NaiveDate {
        self.now().date_naive()
    }

    /// The current time as RFC 3339 text with milliseconds (`2026-01-01T08:00:00.000Z`),
    /// the form timestamps are stored in.
    pub fn stamp(&self) -> String {
        self.now().to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_clock_stamps_midnight_utc() {
        let c = Clock::fixed_on(NaiveDate::from_ymd_opt(2026, 3, 4).unwrap_or_default());
        assert_eq!(c.stamp(), "2026-03-04T00:00:00.000Z");
        assert_eq!(c.today().to_string(), "2026-03-04");
    }

    #[test]
    fn the_system_clock_stamps_the_stored_form() {
        let s = Clock::System.stamp();
        assert_eq!(s.len(), 24, "{s}");
        assert!(s.ends_with('Z') && s.as_bytes()[10] == b'T', "{s}");
    }
}
