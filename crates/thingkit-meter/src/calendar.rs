//! UTC calendar arithmetic on Unix seconds: days, months and their boundaries.
//!
//! Quotas reset at UTC midnight and on the first of each UTC month, and bills cover one UTC month.
//! The civil-date conversions are the `time` crate's (proleptic Gregorian calendar). Leap seconds
//! do not exist in Unix time, so every day is 86,400 seconds. Times past the end of year 9999
//! (`time`'s range) saturate to 9999-12-31, so no input can make a conversion fail or panic.

use serde::{Deserialize, Serialize};

/// Seconds in a UTC day.
pub(crate) const SECS_PER_DAY: u64 = 86_400;

/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

/// The last year a [`Month`] can hold (`time`'s range without its `large-dates` feature).
const MAX_YEAR: u32 = 9999;

/// A UTC day: whole days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Day(pub u64);

impl Day {
    /// The day containing `unix_secs`.
    pub(crate) fn of(unix_secs: u64) -> Day {
        Day(unix_secs / SECS_PER_DAY)
    }

    /// The first second of the day.
    pub(crate) fn start(self) -> u64 {
        self.0.saturating_mul(SECS_PER_DAY)
    }

    /// The civil date of the day (9999-12-31 for every day after it).
    pub(crate) fn date(self) -> CivilDate {
        let date = i32::try_from(self.0)
            .ok()
            .and_then(|days| days.checked_add(UNIX_EPOCH_JULIAN_DAY))
            .and_then(|julian| time::Date::from_julian_day(julian).ok())
            .unwrap_or(time::Date::MAX);
        CivilDate {
            year: u32::try_from(date.year()).expect("a day after 1970 has a positive year"),
            month: u8::from(date.month()),
            day: date.day(),
        }
    }
}

/// A UTC calendar month, e.g. 2026-11, from 1970-01 to 9999-12.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Month {
    year: u32,
    month: u8,
}

impl Month {
    /// The month with this year (1970..=9999) and month number (1..=12), or `None` if out of range.
    pub fn new(year: u32, month: u8) -> Option<Month> {
        ((1..=12).contains(&month) && (1970..=MAX_YEAR).contains(&year))
            .then_some(Month { year, month })
    }

    /// The month containing `unix_secs` (9999-12 for every time after it).
    pub fn of(unix_secs: u64) -> Month {
        let d = Day::of(unix_secs).date();
        Month {
            year: d.year,
            month: d.month,
        }
    }

    /// The year.
    pub fn year(self) -> u32 {
        self.year
    }

    /// The month number, 1..=12.
    pub fn month(self) -> u8 {
        self.month
    }

    /// The first second of the month.
    pub fn start(self) -> u64 {
        let first = i32::try_from(self.year)
            .ok()
            .zip(time::Month::try_from(self.month).ok())
            .and_then(|(year, month)| time::Date::from_calendar_date(year, month, 1).ok())
            .expect("a Month holds a valid year and month");
        let days = first.to_julian_day() - UNIX_EPOCH_JULIAN_DAY;
        u64::try_from(days).expect("a Month starts in 1970 or later") * SECS_PER_DAY
    }

    /// The following month; 9999-12 is the last and is its own successor.
    pub fn next(self) -> Month {
        match (self.year, self.month) {
            (MAX_YEAR, 12) => self,
            (year, 12) => Month {
                year: year + 1,
                month: 1,
            },
            (year, month) => Month {
                year,
                month: month + 1,
            },
        }
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl From<Month> for String {
    fn from(m: Month) -> String {
        m.to_string()
    }
}

impl TryFrom<String> for Month {
    type Error = String;
    fn try_from(s: String) -> Result<Month, String> {
        let (y, m) = s.split_once('-').ok_or("expected YYYY-MM")?;
        let year: u32 = y.parse().map_err(|_| "bad year")?;
        let month: u8 = m.parse().map_err(|_| "bad month")?;
        Month::new(year, month).ok_or_else(|| "month out of range".to_owned())
    }
}

/// A proleptic Gregorian calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CivilDate {
    /// Year, 1970..=9999.
    pub year: u32,
    /// Month, 1..=12.
    pub month: u8,
    /// Day of month, 1..=31.
    pub day: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_convert_both_ways() {
        // (unix seconds at midnight UTC, y, m, d), checked against `date -u -d @N`.
        let cases = [
            (0u64, 1970, 1, 1),
            (951_782_400, 2000, 2, 29),
            (951_868_800, 2000, 3, 1),
            (1_709_164_800, 2024, 2, 29),
            (1_735_689_600, 2025, 1, 1),
            (1_764_115_200, 2025, 11, 26),
            (4_107_542_400, 2100, 3, 1),
        ];
        for (secs, y, m, d) in cases {
            let date = Day::of(secs).date();
            assert_eq!((date.year, date.month, date.day), (y, m, d), "{secs}");
            if d == 1 {
                assert_eq!(Month::new(y, m).unwrap().start(), secs);
            }
        }
    }

    #[test]
    fn month_boundaries_are_first_second_of_month() {
        let nov = Month::of(1_764_115_200);
        assert_eq!(nov.to_string(), "2025-11");
        assert_eq!(nov.start(), 1_761_955_200); // 2025-11-01T00:00:00Z
        assert_eq!(Month::of(nov.start() - 1).to_string(), "2025-10");
        assert_eq!(nov.next().next().to_string(), "2026-01");
    }

    #[test]
    fn every_month_starts_where_the_previous_one_ends() {
        let mut m = Month::new(1970, 1).unwrap();
        for _ in 0..12 * 500 {
            let next = m.next();
            assert_eq!(Month::of(m.start()), m);
            assert_eq!(Month::of(next.start() - 1), m);
            m = next;
        }
    }

    #[test]
    fn times_past_year_9999_saturate_instead_of_failing() {
        let far = Day::of(u64::MAX).date();
        assert_eq!((far.year, far.month, far.day), (9999, 12, 31));
        let last = Month::of(u64::MAX);
        assert_eq!(last, Month::new(9999, 12).unwrap());
        assert_eq!(last.next(), last);
        assert_eq!(last.start(), 253_399_622_400); // 9999-12-01T00:00:00Z
        assert!(Month::new(10_000, 1).is_none());
        assert!(Month::new(1969, 12).is_none());
    }

    #[test]
    fn month_parses_from_text_and_rejects_month_13() {
        assert_eq!(
            Month::try_from("2026-02".to_owned()).unwrap(),
            Month::new(2026, 2).unwrap()
        );
        assert!(Month::try_from("2026-13".to_owned()).is_err());
        assert!(Month::try_from("10000-01".to_owned()).is_err());
    }
}
