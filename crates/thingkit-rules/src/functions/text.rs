//! String functions. Arguments go through the standard String conversion (numbers, Booleans,
//! JSON text of arrays and objects); Null and Undefined have no String form, so they give
//! Undefined. Positions and lengths count Unicode scalar values (AWS's JVM counts UTF-16 units:
//! the two differ only for characters outside the Basic Multilingual Plane).

use super::conversion::{floor_int_saturating, to_string};
use crate::functions::MAX_STRING_BYTES;
use crate::value::Value;

/// Which end(s) a pad or trim works on.
#[derive(Debug, Clone, Copy)]
pub(super) enum Side {
    Left,
    Right,
    Both,
}

/// The most spaces `lpad`/`rpad` add (AWS clamps the count to 0..=1000).
const MAX_PAD: i128 = 1000;

fn string(value: String) -> Option<Value> {
    (value.len() <= MAX_STRING_BYTES).then_some(Value::String(value))
}

/// `chr(n)`: the ASCII character `n` (floored); Undefined outside 0..=127.
pub(super) fn chr(value: &Value) -> Option<Value> {
    let code = crate::convert::to_int_floor(value)?;
    let byte = u8::try_from(code).ok().filter(u8::is_ascii)?;
    Some(Value::String(char::from(byte).to_string()))
}

/// `startswith(s, prefix)`.
pub(super) fn startswith(s: &Value, prefix: &Value) -> Option<Value> {
    Some(Value::Bool(to_string(s)?.starts_with(&to_string(prefix)?)))
}

/// `endswith(s, suffix)`.
pub(super) fn endswith(s: &Value, suffix: &Value) -> Option<Value> {
    Some(Value::Bool(to_string(s)?.ends_with(&to_string(suffix)?)))
}

/// `indexof(s, needle)`: the first 0-based character index, -1 if absent.
pub(super) fn indexof(s: &Value, needle: &Value) -> Option<Value> {
    let s = to_string(s)?;
    let needle = to_string(needle)?;
    let index = match s.find(&needle) {
        Some(byte) => i128::try_from(s.get(..byte)?.chars().count()).ok()?,
        None => -1,
    };
    Some(Value::Int(index))
}

/// `length(s)`: the number of characters.
pub(super) fn length(s: &Value) -> Option<Value> {
    Some(Value::Int(
        i128::try_from(to_string(s)?.chars().count()).ok()?,
    ))
}

/// `numbytes(s)`: the UTF-8 length.
pub(super) fn numbytes(s: &Value) -> Option<Value> {
    Some(Value::Int(i128::try_from(to_string(s)?.len()).ok()?))
}

/// `lower(s)`.
pub(super) fn lower(s: &Value) -> Option<Value> {
    string(to_string(s)?.to_lowercase())
}

/// `upper(s)`.
pub(super) fn upper(s: &Value) -> Option<Value> {
    string(to_string(s)?.to_uppercase())
}

/// `lpad(s, n)` / `rpad(s, n)`: `n` spaces (floored, clamped to 0..=1000) on one side. The count
/// must be an Int, a Decimal or a numeric String.
pub(super) fn pad(s: &Value, count: &Value, side: Side) -> Option<Value> {
    if !matches!(count, Value::Int(_) | Value::Decimal(_) | Value::String(_)) {
        return None;
    }
    let count = floor_int_saturating(count)?.clamp(0, MAX_PAD);
    let spaces = " ".repeat(usize::try_from(count).ok()?);
    let s = to_string(s)?;
    string(match side {
        Side::Left => spaces + &s,
        Side::Right | Side::Both => s + &spaces,
    })
}

/// `ltrim` / `rtrim` / `trim`: strips spaces and tabs.
pub(super) fn trim(s: &Value, side: Side) -> Option<Value> {
    let s = to_string(s)?;
    let blank: &[char] = &[' ', '\t'];
    Some(Value::String(
        match side {
            Side::Left => s.trim_start_matches(blank),
            Side::Right => s.trim_end_matches(blank),
            Side::Both => s.trim_matches(blank),
        }
        .to_owned(),
    ))
}

/// `replace(s, from, to)`: every literal occurrence (an empty `from` matches between every
/// character, as Java's `String.replace`).
pub(super) fn replace(s: &Value, from: &Value, to: &Value) -> Option<Value> {
    let s = to_string(s)?;
    let from = to_string(from)?;
    let to = to_string(to)?;
    let occurrences = if from.is_empty() {
        s.chars().count().checked_add(1)?
    } else {
        s.matches(from.as_str()).count()
    };
    let size = s
        .len()
        .checked_add(occurrences.checked_mul(to.len())?)?
        .saturating_sub(occurrences.saturating_mul(from.len()));
    if size > MAX_STRING_BYTES {
        return None;
    }
    Some(Value::String(s.replace(from.as_str(), &to)))
}

/// `substring(s, start[, end])`: 0-based, `end` exclusive, indices floored and clamped to
/// `[0, length]`; `start >= end` is `""`.
pub(super) fn substring(s: &Value, start: &Value, end: Option<&Value>) -> Option<Value> {
    let s = to_string(s)?;
    let length = i128::try_from(s.chars().count()).ok()?;
    let start = floor_int_saturating(start)?.clamp(0, length);
    let end = match end {
        Some(end) => floor_int_saturating(end)?.clamp(0, length),
        None => length,
    };
    if start >= end {
        return Some(Value::String(String::new()));
    }
    let skip = usize::try_from(start).ok()?;
    let take = usize::try_from(end - start).ok()?;
    Some(Value::String(s.chars().skip(skip).take(take).collect()))
}
