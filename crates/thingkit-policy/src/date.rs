//! ISO 8601 date-times and epoch seconds, as IAM `Date*` condition values accept them.

/// Parses `2024-03-26`, `2024-03-26T03:25:40Z`, `2024-03-26T03:25:40.123+02:00`, or whole epoch
/// seconds (`1711423540`) into seconds since the Unix epoch (fractions are truncated).
pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    if !text.is_empty() && text.len() <= 12 && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    let b = text.as_bytes();
    let num = |s: usize, n: usize| -> Option<i64> {
        let part = b.get(s..s + n)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let year = num(0, 4)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let month = num(5, 2)?;
    let day = num(8, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut secs = days_from_civil(year, month, day) * 86_400;
    if b.len() == 10 {
        return Some(secs);
    }
    if !matches!(b.get(10), Some(b'T' | b't')) {
        return None;
    }
    let hour = num(11, 2)?;
    if b.get(13) != Some(&b':') {
        return None;
    }
    let minute = num(14, 2)?;
    let mut pos = 16;
    let mut second = 0;
    if b.get(pos) == Some(&b':') {
        second = num(17, 2)?;
        pos = 19;
        if b.get(pos) == Some(&b'.') {
            pos += 1;
            let start = pos;
            while b.get(pos).is_some_and(u8::is_ascii_digit) {
                pos += 1;
            }
            if pos == start {
                return None;
            }
        }
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    secs += hour * 3600 + minute * 60 + second;
    match b.get(pos) {
        Some(b'Z' | b'z') if b.len() == pos + 1 => Some(secs),
        Some(sign @ (b'+' | b'-')) if b.len() == pos + 6 && b.get(pos + 3) == Some(&b':') => {
            let oh = num(pos + 1, 2)?;
            let om = num(pos + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let offset = oh * 3600 + om * 60;
            Some(if *sign == b'+' {
                secs - offset
            } else {
                secs + offset
            })
        }
        _ => None,
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }
}
