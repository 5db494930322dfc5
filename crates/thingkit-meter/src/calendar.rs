//! UTC calendar arithmetic on Unix seconds: days, months and their boundaries.
//!
//! Quotas reset at UTC midnight and on the first of each UTC month, and bills cover one UTC month.
//! The conversion from a day count to a civil date is Howard Hinnant's `civil_from_days`
//! algorithm (proleptic Gregorian calendar), written here so the crate needs no date/time
//! dependency. Leap seconds do not exist in Unix time, so every day is 86,400 seconds.

use serde::{Deserialize, Serialize};

/// Seconds in a UTC day.
pub(crate) const SECS_PER_DAY: u64 = 86_400;

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

    /// The civil date of the day.
    pub(crate) fn date(self) -> CivilDate {
        civil_from_days(self.0)
    }
}

/// A UTC calendar month, e.g. 2026-11.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Month {
    year: u32,
    month: u8,
}

impl Month {
    /// The month with this year and month number (1..=12), or `None` if out of range.
    pub fn new(year: u32, month: u8) -> Option<Month> {
        ((1..=12).contains(&month) && year >= 1970).then_some(Month { year, month })
    }

    /// The month containing `unix_secs`.
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
        days_from_civil(self.year, self.month, 1).saturating_mul(SECS_PER_DAY)
    }

    /// The following month.
    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year.saturating_add(1),
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
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
    /// Year (1970 or later for Unix times).
    pub year: u32,
    /// Month, 1..=12.
    pub month: u8,
    /// Day of month, 1..=31.
    pub day: u8,
}

/// The civil date `days` days after 1970-01-01 (Hinnant's `civil_from_days`, unsigned form).
pub(crate) fn civil_from_days(days: u64) -> CivilDate {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of the (March-based) year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + u64::from(month <= 2);
    CivilDate {
        year: u32::try_from(year).unwrap_or(u32::MAX),
        month,
        day,
    }
}

/// Days from 1970-01-01 to the given civil date (Hinnant's `days_from_civil`); dates before the
/// epoch give 0.
pub(crate) fn days_from_civil(year: u32, month: u8, day: u8) -> u64 {
    let y = u64::from(year).saturating_sub(u64::from(month <= 2));
    let era = y / 400;
    let yoe = y - era * 400;
    let m = u64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = ((153 * mp + 2) / 5 + u64::from(day)).saturating_sub(1);
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
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
            assert_eq!(days_from_civil(y, m, d) * SECS_PER_DAY, secs);
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
    fn every_day_roundtrips_over_four_centuries() {
        for days in (0..146_097 * 2).step_by(7) {
            let d = civil_from_days(days);
            assert_eq!(days_from_civil(d.year, d.month, d.day), days);
        }
    }

    #[test]
    fn out_of_range_inputs_do_not_panic() {
        assert_eq!(days_from_civil(0, 1, 0), 0);
        assert_eq!(days_from_civil(1969, 12, 31), 0);
        let far = Day::of(u64::MAX).date();
        assert_eq!(far.year, u32::MAX);
        let _ = Month::of(u64::MAX).start();
    }

    #[test]
    fn month_parses_from_text_and_rejects_month_13() {
        assert_eq!(
            Month::try_from("2026-02".to_owned()).unwrap(),
            Month::new(2026, 2).unwrap()
        );
        assert!(Month::try_from("2026-13".to_owned()).is_err());
    }
}
