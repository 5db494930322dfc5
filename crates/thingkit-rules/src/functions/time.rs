//! `parse_time` (epoch milliseconds → text, Joda-Time patterns) and `time_to_epoch` (text →
//! epoch milliseconds, JDK 11 `DateTimeFormatter` patterns), both in English.
//!
//! Zones: `UTC`, fixed offsets (`+01:00`, `-0800`, `UTC+01:00`) and every IANA zone id, with its
//! historical rules, from the tz database compiled into `chrono-tz` (no file is read).
//! `time_to_epoch`'s `z` also reads the common abbreviations (`PST`, `CET`, ...) as fixed
//! offsets. Short zone names printed by `z` are the tz database's abbreviations (`CST`; Java
//! prints its own names, which differ for a few zones the database names by offset, e.g.
//! `-03`); long names (`zzzz`) are printed only for UTC, other zones print their id.
//!
//! Supported pattern letters — `parse_time` (Joda): `G y Y M d D E e a h H k K m s S z Z` and
//! quoted text; `time_to_epoch` (JDK): `G u y M L d D E a h H k K m s S n V z X x Z` and quoted
//! text. Any other letter makes the call Undefined.

use chrono::{
    DateTime, Datelike, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeZone, Timelike, Utc,
};
use chrono_tz::{OffsetName, Tz};

use super::conversion::{Number, number, to_string};
use crate::convert::round_to_i128;
use crate::value::Value;

/// The longest pattern accepted, in bytes (a longer one is Undefined).
const MAX_PATTERN_BYTES: usize = 256;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// A time zone.
#[derive(Debug, Clone, Copy)]
enum Zone {
    Utc,
    Fixed(FixedOffset),
    Named(Tz),
}

/// One element of a pattern.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Field(char, usize),
    Literal(String),
}

/// Splits a pattern into letter runs and literal text (`'quoted'`, `''` for a quote, any other
/// non-letter as itself). `None` for an unterminated quote or an oversized pattern.
fn tokenize(pattern: &str) -> Option<Vec<Token>> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return None;
    }
    let mut tokens = Vec::new();
    let mut chars = pattern.chars().peekable();
    let literal = |tokens: &mut Vec<Token>, c: char| match tokens.last_mut() {
        Some(Token::Literal(text)) => text.push(c),
        _ => tokens.push(Token::Literal(c.to_string())),
    };
    while let Some(c) = chars.next() {
        if c.is_ascii_alphabetic() {
            let mut count = 1;
            while chars.peek() == Some(&c) {
                chars.next();
                count += 1;
            }
            tokens.push(Token::Field(c, count));
        } else if c == '\'' {
            if chars.peek() == Some(&'\'') {
                chars.next();
                literal(&mut tokens, '\'');
                continue;
            }
            loop {
                match chars.next()? {
                    '\'' if chars.peek() == Some(&'\'') => {
                        chars.next();
                        literal(&mut tokens, '\'');
                    }
                    '\'' => break,
                    c => literal(&mut tokens, c),
                }
            }
        } else {
            literal(&mut tokens, c);
        }
    }
    Some(tokens)
}

/// A zone id as Joda's `DateTimeZone.forID` and java.time's `ZoneId.of` read it.
fn zone(id: &str) -> Option<Zone> {
    match id {
        "UTC" | "Z" | "GMT" | "UT" | "Etc/UTC" => return Some(Zone::Utc),
        _ => {}
    }
    if let Some(offset) = offset(id) {
        return Some(Zone::Fixed(offset));
    }
    for prefix in ["UTC", "GMT", "UT"] {
        if let Some(rest) = id.strip_prefix(prefix)
            && rest.starts_with(['+', '-'])
        {
            return offset(rest).map(Zone::Fixed);
        }
    }
    id.parse::<Tz>().ok().map(Zone::Named)
}

/// `+h`, `+hh`, `+hhmm`, `+hh:mm` (or `-`).
fn offset(text: &str) -> Option<FixedOffset> {
    let (sign, rest) = match text.strip_prefix('+') {
        Some(rest) => (1, rest),
        None => (-1, text.strip_prefix('-')?),
    };
    if !rest.bytes().all(|b| b.is_ascii_digit() || b == b':') {
        return None;
    }
    let (hours, minutes) = match (rest.len(), rest.split_once(':')) {
        (_, Some((h, m))) if (1..=2).contains(&h.len()) && m.len() == 2 => (h, m),
        (1 | 2, None) => (rest, "0"),
        (4, None) => (rest.get(..2)?, rest.get(2..)?),
        _ => return None,
    };
    let hours: i32 = hours.parse().ok()?;
    let minutes: i32 = minutes.parse().ok()?;
    if hours > 18 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

fn pad(out: &mut String, value: i64, width: usize) {
    if value < 0 {
        out.push('-');
    }
    out.push_str(&format!("{:0width$}", value.unsigned_abs()));
}

fn offset_text(seconds: i32, colon: bool) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.unsigned_abs() / 60;
    let separator = if colon { ":" } else { "" };
    format!("{sign}{:02}{separator}{:02}", minutes / 60, minutes % 60)
}

/// `parse_time(pattern, epochMillis[, zone])`.
pub(super) fn parse_time(
    pattern: &Value,
    millis: &Value,
    zone_id: Option<&Value>,
) -> Option<Value> {
    let tokens = tokenize(&to_string(pattern)?)?;
    let millis = match number(millis)? {
        Number::Int(i) => i64::try_from(i).ok()?,
        Number::Decimal(d) => {
            i64::try_from(round_to_i128(&d, bigdecimal::RoundingMode::Down)?).ok()?
        }
    };
    let (zone, zone_id) = match zone_id {
        Some(id) => {
            let id = to_string(id)?;
            (zone(&id)?, id)
        }
        None => (Zone::Utc, "UTC".to_owned()),
    };
    let instant = DateTime::<Utc>::from_timestamp_millis(millis)?;
    let (local, offset_seconds, abbreviation) = match zone {
        Zone::Utc => (instant.naive_utc(), 0, "UTC".to_owned()),
        Zone::Fixed(offset) => (
            instant.with_timezone(&offset).naive_local(),
            offset.local_minus_utc(),
            offset_text(offset.local_minus_utc(), true),
        ),
        Zone::Named(tz) => {
            let there = instant.with_timezone(&tz);
            let offset = there.offset();
            let seconds = offset.fix().local_minus_utc();
            let name = offset
                .abbreviation()
                .map_or_else(|| offset_text(seconds, true), str::to_owned);
            (there.naive_local(), seconds, name)
        }
    };
    let mut out = String::new();
    for token in &tokens {
        let (letter, count) = match token {
            Token::Literal(text) => {
                out.push_str(text);
                continue;
            }
            Token::Field(letter, count) => (*letter, *count),
        };
        let date = local.date();
        let time = local.time();
        match letter {
            'G' => out.push_str(if date.year() > 0 { "AD" } else { "BC" }),
            'y' | 'Y' => {
                let year = i64::from(if letter == 'Y' && date.year() <= 0 {
                    1 - date.year()
                } else {
                    date.year()
                });
                if count == 2 {
                    pad(&mut out, year.rem_euclid(100), 2);
                } else {
                    pad(&mut out, year, count);
                }
            }
            'M' if count >= 4 => out.push_str(MONTHS.get(date.month0() as usize)?),
            'M' if count == 3 => out.push_str(MONTHS.get(date.month0() as usize)?.get(..3)?),
            'M' => pad(&mut out, i64::from(date.month()), count),
            'd' => pad(&mut out, i64::from(date.day()), count),
            'D' => pad(&mut out, i64::from(date.ordinal()), count),
            'E' => {
                let name = DAYS.get(date.weekday().num_days_from_monday() as usize)?;
                out.push_str(if count >= 4 { name } else { name.get(..3)? });
            }
            'e' => pad(
                &mut out,
                i64::from(date.weekday().number_from_monday()),
                count,
            ),
            'a' => out.push_str(if time.hour() < 12 { "AM" } else { "PM" }),
            'H' => pad(&mut out, i64::from(time.hour()), count),
            'k' => pad(
                &mut out,
                i64::from(if time.hour() == 0 { 24 } else { time.hour() }),
                count,
            ),
            'K' => pad(&mut out, i64::from(time.hour() % 12), count),
            'h' => pad(
                &mut out,
                i64::from(if time.hour() % 12 == 0 {
                    12
                } else {
                    time.hour() % 12
                }),
                count,
            ),
            'm' => pad(&mut out, i64::from(time.minute()), count),
            's' => pad(&mut out, i64::from(time.second()), count),
            'S' => {
                let mut fraction = format!("{:03}", time.nanosecond() / 1_000_000);
                while fraction.len() < count {
                    fraction.push('0');
                }
                out.push_str(fraction.get(..count)?);
            }
            'z' if count >= 4 => out.push_str(match zone {
                Zone::Utc => "Coordinated Universal Time",
                _ => &zone_id,
            }),
            'z' => out.push_str(&abbreviation),
            'Z' if count >= 3 => out.push_str(&zone_id),
            'Z' => out.push_str(&offset_text(offset_seconds, count == 2)),
            _ => return None,
        }
    }
    Some(Value::String(out))
}

/// The fields read from a timestamp.
#[derive(Debug, Default)]
struct Parsed {
    year: Option<i32>,
    bc: bool,
    month: Option<u32>,
    day: Option<u32>,
    day_of_year: Option<u32>,
    hour: Option<u32>,
    half_day_hour: Option<u32>,
    pm: Option<bool>,
    minute: u32,
    second: u32,
    nanos: u32,
    zone: Option<Zone>,
}

/// A cursor over the timestamp text.
struct Input<'a> {
    rest: &'a str,
}

impl<'a> Input<'a> {
    /// Exactly `min..=max` ASCII digits (as many as there are, up to `max`).
    fn digits(&mut self, min: usize, max: usize) -> Option<u32> {
        let len = self
            .rest
            .bytes()
            .take(max)
            .take_while(u8::is_ascii_digit)
            .count();
        if len < min {
            return None;
        }
        let (digits, rest) = self.rest.split_at(len);
        self.rest = rest;
        digits.parse().ok()
    }

    /// One of `names` (case-insensitively), full or its first three letters; its index.
    fn name(&mut self, names: &[&str], full: bool) -> Option<usize> {
        names.iter().position(|name| {
            let candidate = if full {
                *name
            } else {
                name.get(..3).unwrap_or(name)
            };
            match self.rest.get(..candidate.len()) {
                Some(head) if head.eq_ignore_ascii_case(candidate) => {
                    self.rest = self.rest.get(candidate.len()..).unwrap_or("");
                    true
                }
                _ => false,
            }
        })
    }

    /// A run of zone-id characters.
    fn zone_text(&mut self) -> &'a str {
        let len = self
            .rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "/_+-:".contains(c)))
            .unwrap_or(self.rest.len());
        let (text, rest) = self.rest.split_at(len);
        self.rest = rest;
        text
    }
}

/// The common zone abbreviations `z` reads, as fixed offsets in minutes.
fn abbreviation(text: &str) -> Option<i32> {
    Some(match text {
        "EST" => -300,
        "EDT" => -240,
        "CST" => -360,
        "CDT" => -300,
        "MST" => -420,
        "MDT" => -360,
        "PST" => -480,
        "PDT" => -420,
        "AKST" => -540,
        "AKDT" => -480,
        "HST" => -600,
        "WET" => 0,
        "WEST" | "BST" | "CET" => 60,
        "CEST" | "EET" => 120,
        "EEST" => 180,
        "IST" => 330,
        "JST" | "KST" => 540,
        "AEST" => 600,
        "AEDT" => 660,
        _ => return None,
    })
}

fn is_numeric_field(token: Option<&Token>) -> bool {
    matches!(token, Some(Token::Field(c, n)) if "uydDHhKkmsSn".contains(*c) || (*c == 'M' && *n <= 2))
}

/// `time_to_epoch(text, pattern)`: epoch milliseconds; fields the pattern lacks default to
/// 1970-01-01T00:00:00 UTC.
pub(super) fn time_to_epoch(text: &Value, pattern: &Value) -> Option<Value> {
    let text = to_string(text)?;
    let tokens = tokenize(&to_string(pattern)?)?;
    let mut input = Input { rest: &text };
    let mut fields = Parsed::default();
    for (at, token) in tokens.iter().enumerate() {
        let (letter, count) = match token {
            Token::Literal(literal) => {
                input.rest = input.rest.strip_prefix(literal.as_str())?;
                continue;
            }
            Token::Field(letter, count) => (*letter, *count),
        };
        // A field followed by another number has exactly its width (`yyyyMMdd`).
        let adjacent = is_numeric_field(tokens.get(at + 1));
        let width = |default_max: usize| match count {
            1 if !adjacent => (1, default_max),
            n => (n, n),
        };
        match letter {
            'G' => fields.bc = input.name(&["AD", "BC"], true)? == 1,
            'u' | 'y' if count == 2 => {
                fields.year = Some(2000 + i32::try_from(input.digits(2, 2)?).ok()?)
            }
            'u' | 'y' => {
                let negative = input.rest.starts_with('-');
                if negative {
                    input.rest = input.rest.get(1..)?;
                }
                let (min, max) = if adjacent { (count, count) } else { (count, 9) };
                let year = i32::try_from(input.digits(min, max)?).ok()?;
                fields.year = Some(if negative { -year } else { year });
            }
            'M' | 'L' if count >= 4 => {
                fields.month = Some(u32::try_from(input.name(&MONTHS, true)? + 1).ok()?)
            }
            'M' | 'L' if count == 3 => {
                fields.month = Some(u32::try_from(input.name(&MONTHS, false)? + 1).ok()?)
            }
            'M' | 'L' => {
                let (min, max) = width(2);
                fields.month = Some(input.digits(min, max)?);
            }
            'd' => {
                let (min, max) = width(2);
                fields.day = Some(input.digits(min, max)?);
            }
            'D' => {
                let (min, max) = width(3);
                fields.day_of_year = Some(input.digits(min, max)?);
            }
            'E' => {
                input.name(&DAYS, count >= 4)?;
            }
            'a' => fields.pm = Some(input.name(&["AM", "PM"], true)? == 1),
            'H' | 'k' => {
                let (min, max) = width(2);
                let hour = input.digits(min, max)?;
                let valid = if letter == 'H' { 0..=23 } else { 1..=24 };
                fields.hour = Some(valid.contains(&hour).then_some(hour % 24)?);
            }
            'h' | 'K' => {
                let (min, max) = width(2);
                let hour = input.digits(min, max)?;
                let valid = if letter == 'h' { 1..=12 } else { 0..=11 };
                fields.half_day_hour = Some(valid.contains(&hour).then_some(hour % 12)?);
            }
            'm' => {
                let (min, max) = width(2);
                fields.minute = input.digits(min, max)?;
            }
            's' => {
                let (min, max) = width(2);
                fields.second = input.digits(min, max)?;
            }
            'S' if count <= 9 => {
                let digits = input.digits(count, count)?;
                fields.nanos = digits.checked_mul(10u32.pow(u32::try_from(9 - count).ok()?))?;
            }
            'n' => fields.nanos = input.digits(1, 9)?,
            'V' | 'z' => {
                let id = input.zone_text();
                fields.zone = Some(match zone(id) {
                    Some(zone) => zone,
                    None if letter == 'z' => {
                        Zone::Fixed(FixedOffset::east_opt(abbreviation(id)? * 60)?)
                    }
                    None => return None,
                });
            }
            'X' | 'x' | 'Z' => {
                let id = input.zone_text();
                fields.zone = Some(if id == "Z" {
                    Zone::Utc
                } else {
                    Zone::Fixed(offset(id)?)
                });
            }
            _ => return None,
        }
    }
    if !input.rest.is_empty() {
        return None;
    }
    epoch_millis(&fields).map(Value::Int)
}

fn epoch_millis(fields: &Parsed) -> Option<i128> {
    let mut year = fields.year.unwrap_or(1970);
    if fields.bc {
        year = 1 - year;
    }
    let date = match fields.day_of_year {
        Some(ordinal) => NaiveDate::from_yo_opt(year, ordinal)?,
        None => NaiveDate::from_ymd_opt(year, fields.month.unwrap_or(1), fields.day.unwrap_or(1))?,
    };
    let hour = match (fields.hour, fields.half_day_hour) {
        (Some(hour), _) => hour,
        (None, Some(hour)) => hour + if fields.pm == Some(true) { 12 } else { 0 },
        (None, None) => 0,
    };
    let time = NaiveTime::from_hms_nano_opt(hour, fields.minute, fields.second, fields.nanos)?;
    let local = NaiveDateTime::new(date, time);
    let utc = match fields.zone.unwrap_or(Zone::Utc) {
        Zone::Utc => local.and_utc(),
        Zone::Fixed(offset) => single(offset.from_local_datetime(&local))?.to_utc(),
        Zone::Named(tz) => single(tz.from_local_datetime(&local))
            .map(|t| t.to_utc())
            .or_else(|| {
                // In a gap java.time moves the local time forward by the gap: the instant is
                // the local time read with the offset in force before the gap.
                let before = tz.offset_from_utc_datetime(&(local - chrono::Duration::days(1)));
                let seconds = before.fix().local_minus_utc();
                Some((local - chrono::Duration::seconds(i64::from(seconds))).and_utc())
            })?,
    };
    Some(i128::from(utc.timestamp_millis()))
}

/// The one instant of a local time, the earlier of two in an overlap (java.time's choice);
/// `None` in a gap.
fn single<T: TimeZone>(result: LocalResult<DateTime<T>>) -> Option<DateTime<T>> {
    match result {
        LocalResult::Single(t) => Some(t),
        LocalResult::Ambiguous(earlier, _) => Some(earlier),
        LocalResult::None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_text_and_doubled_quotes_are_literals() {
        assert_eq!(
            tokenize("HH 'o''clock' ''").expect("valid pattern"),
            vec![Token::Field('H', 2), Token::Literal(" o'clock '".into()),]
        );
        assert_eq!(tokenize("'open"), None);
    }

    #[test]
    fn offsets_in_every_spelling() {
        for text in ["+01:00", "+0100", "+01", "+1"] {
            assert_eq!(
                offset(text).map(|o| o.local_minus_utc()),
                Some(3600),
                "{text}"
            );
        }
        assert_eq!(offset("-08:30").map(|o| o.local_minus_utc()), Some(-30600));
        assert!(offset("+19:00").is_none());
        assert!(offset("01:00").is_none());
    }
}
