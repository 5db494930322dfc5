//! ISO 8601 date-times and epoch seconds, as IAM `Date*` condition values accept them.
//!
//! The calendar and the ISO 8601 grammar are the `time` crate's; this module only adds the
//! epoch-seconds form and the date-only form (midnight UTC).

use time::format_description::well_known::Iso8601;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

/// Parses `2024-03-26`, `2024-03-26T03:25:40Z`, `2024-03-26T03:25:40.123+02:00` (any ISO 8601
/// date, or date-time with an offset), or whole epoch seconds (`1711423540`) into seconds since
/// the Unix epoch (fractions are truncated). A date-time without an offset is refused: it names
/// no instant.
pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    if !text.is_empty() && text.len() <= 12 && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    // `Iso8601` parsing of a `Date` stops after the date and ignores what follows, so the
    // date-only form is an exact format of its own.
    if let Ok(date) = Date::parse(text, format_description!("[year]-[month]-[day]")) {
        return Some(date.midnight().assume_utc().unix_timestamp());
    }
    OffsetDateTime::parse(text, &Iso8601::DEFAULT)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iso_dates_and_epochs() {
        assert_eq!(parse_timestamp("1970-01-01"), Some(0));
        assert_eq!(parse_timestamp("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(parse_timestamp("2024-03-26T03:25:40Z"), Some(1_711_423_540));
        assert_eq!(
            parse_timestamp("2024-03-26T05:25:40.5+02:00"),
            Some(1_711_423_540)
        );
        assert_eq!(parse_timestamp("1711423540"), Some(1_711_423_540));
        assert_eq!(parse_timestamp("2024-03-26T03:25Z"), Some(1_711_423_500));
        assert_eq!(parse_timestamp("2024-02-29T23:59:59Z"), Some(1_709_251_199));
    }

    #[test]
    fn rejects_malformed_dates() {
        for bad in [
            "",
            "2024-02-30",
            "2024-13-01",
            "2024-01-01T25:00Z",
            "2024-01-01T",
            "x",
            "2024-1-1",
            "2024-03-26T03:25:40",
            "2024-03-26T03:25:40+25:00",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }
}
