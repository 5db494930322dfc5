//! Payload bytes to [`Value`] and back: a small strict RFC 8259 reader that keeps numbers
//! exact, and the serializer for rule output.
//!
//! # Reading
//!
//! - **Strict RFC 8259**: one value, optional whitespace around it, nothing else. Invalid
//!   UTF-8, a trailing comma, a leading `+`, `NaN`, a lone surrogate escape or any trailing
//!   garbage means the payload is *not JSON*, and AWS then treats it as raw bytes
//!   (IOT-A `iot-sql-json.md`: "If the message payload is not in JSON format, `*` returns the
//!   entire message payload as raw bytes").
//! - **Numbers stay exact**: an integer of at most 34 digits is an `Int`; every other number is
//!   a [`Decimal`] parsed from its text (34 significant digits, IOT-A `iot-sql-data-types.md`).
//!   A number whose scale (fraction digits minus exponent) is beyond ±10,000 makes the payload
//!   not JSON (AWS's Decimal ends at 1E±999; thingkit is more lenient and does not round
//!   magnitudes to AWS's range). Under SQL 2016-03-23 a whole-number decimal (`10.0`) is read as `Int 10`
//!   (the same page: "numeric values that are whole numbers, such as 10.0, are processed as an
//!   Int value").
//! - **Duplicate keys: the last one wins**, at the position of the first (what Jackson, the JVM
//!   parser AWS's engine most likely uses, does by default; AWS's pages say nothing).
//! - **Depth**: objects and arrays nested deeper than `max_depth` are refused with
//!   [`JsonError::TooDeep`] (the evaluator reports [`crate::Error::Limit`]).
//! - **Speed**: the input is validated as UTF-8 once; strings without escapes are copied in one
//!   go; objects are vectors of pairs; and a reader given `only_keys` builds only those
//!   members of a top-level object, validating the rest without allocating (the evaluator
//!   passes the payload fields a statement reads when it never needs the whole payload).
//!
//! # Writing
//!
//! Undefined is "not representable in JSON except by omitting the value" (IOT-A
//! `iot-sql-data-types.md`): object members whose value is Undefined are omitted, and so are
//! Undefined array elements (thingkit's reading of the same sentence; AWS shows no array case).
//! A top-level Undefined writes nothing (the page: "converted to an empty string when
//! serialized by itself"). Raw bytes nested in a JSON value are written as a base64 string.
//! Strings are escaped per RFC 8259 (`"`, `\`, control characters).

use std::fmt::Write as _;

use base64::Engine as _;

use crate::decimal::Decimal;
use crate::value::{MAX_INT, Object, Value};

/// Why bytes were not read as a JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// Not JSON (invalid UTF-8, a syntax error, trailing bytes): the payload is raw bytes.
    NotJson,
    /// Nested deeper than the limit.
    TooDeep,
}

/// How to read a payload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadOptions<'k> {
    /// The deepest nesting of objects and arrays accepted.
    pub max_depth: usize,
    /// SQL 2016-03-23: whole-number decimals become Int.
    pub whole_decimals_as_int: bool,
    /// Build only these members of a top-level object (the others are validated, not built);
    /// `None` builds everything.
    pub only_keys: Option<&'k [&'k str]>,
}

/// Reads `bytes` as one JSON value.
pub(crate) fn read(bytes: &[u8], options: &ReadOptions<'_>) -> Result<Value, JsonError> {
    let text = std::str::from_utf8(bytes).map_err(|_| JsonError::NotJson)?;
    let mut reader = Reader {
        text,
        bytes,
        at: 0,
        options,
    };
    reader.skip_whitespace();
    let value = match (reader.peek(), options.only_keys) {
        (Some(b'{'), Some(keys)) => reader.object_projected(keys)?,
        _ => reader.value(0)?,
    };
    reader.skip_whitespace();
    if reader.at != bytes.len() {
        return Err(JsonError::NotJson);
    }
    Ok(value)
}

struct Reader<'t, 'o> {
    text: &'t str,
    bytes: &'t [u8],
    at: usize,
    options: &'o ReadOptions<'o>,
}

impl<'t> Reader<'t, '_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), JsonError> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(JsonError::NotJson)
        }
    }

    fn enter(&self, depth: usize) -> Result<usize, JsonError> {
        if depth >= self.options.max_depth {
            Err(JsonError::TooDeep)
        } else {
            Ok(depth + 1)
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        let end = self.at + word.len();
        if self.bytes.get(self.at..end) == Some(word) {
            self.at = end;
            Ok(())
        } else {
            Err(JsonError::NotJson)
        }
    }

    /// One value, built.
    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        match self.peek() {
            Some(b'{') => {
                let depth = self.enter(depth)?;
                let mut pairs: Vec<(String, Value)> = Vec::new();
                if self.open(b'}') {
                    return Ok(Value::Object(Object::new()));
                }
                loop {
                    let key = self.key()?;
                    let value = self.value(depth)?;
                    pairs.push((key, value));
                    if !self.next_or_close(b'}')? {
                        return Ok(Value::Object(object_last_wins(pairs)));
                    }
                }
            }
            Some(b'[') => {
                let depth = self.enter(depth)?;
                let mut items = Vec::new();
                if self.open(b']') {
                    return Ok(Value::Array(items));
                }
                loop {
                    self.skip_whitespace();
                    items.push(self.value(depth)?);
                    if !self.next_or_close(b']')? {
                        return Ok(Value::Array(items));
                    }
                }
            }
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.literal(b"true").map(|()| Value::Bool(true)),
            Some(b'f') => self.literal(b"false").map(|()| Value::Bool(false)),
            Some(b'n') => self.literal(b"null").map(|()| Value::Null),
            Some(b'-' | b'0'..=b'9') => {
                let (start, integer) = self.number_span()?;
                let text = self.text.get(start..self.at).ok_or(JsonError::NotJson)?;
                number_value(text, integer, self.options.whole_decimals_as_int)
                    .ok_or(JsonError::NotJson)
            }
            _ => Err(JsonError::NotJson),
        }
    }

    /// One value, validated but not built.
    fn skip(&mut self, depth: usize) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'{') => {
                let depth = self.enter(depth)?;
                if self.open(b'}') {
                    return Ok(());
                }
                loop {
                    self.skip_whitespace();
                    self.skip_string()?;
                    self.colon()?;
                    self.skip(depth)?;
                    if !self.next_or_close(b'}')? {
                        return Ok(());
                    }
                }
            }
            Some(b'[') => {
                let depth = self.enter(depth)?;
                if self.open(b']') {
                    return Ok(());
                }
                loop {
                    self.skip_whitespace();
                    self.skip(depth)?;
                    if !self.next_or_close(b']')? {
                        return Ok(());
                    }
                }
            }
            Some(b'"') => self.skip_string(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => {
                let (start, integer) = self.number_span()?;
                if !integer {
                    // The exponent must be one AWS's Decimal can hold, as when built.
                    let text = self.text.get(start..self.at).ok_or(JsonError::NotJson)?;
                    if exponent_out_of_range(text) {
                        return Err(JsonError::NotJson);
                    }
                }
                Ok(())
            }
            _ => Err(JsonError::NotJson),
        }
    }

    /// A top-level object of which only `keys` are built.
    fn object_projected(&mut self, keys: &[&str]) -> Result<Value, JsonError> {
        let depth = self.enter(0)?;
        let mut pairs: Vec<(String, Value)> = Vec::new();
        if self.open(b'}') {
            return Ok(Value::Object(Object::new()));
        }
        loop {
            let key = self.key_text()?;
            if keys.contains(&key.as_ref()) {
                let value = self.value(depth)?;
                pairs.push((key.into_owned(), value));
            } else {
                self.skip(depth)?;
            }
            if !self.next_or_close(b'}')? {
                return Ok(Value::Object(object_last_wins(pairs)));
            }
        }
    }

    /// Consumes an opening `{` or `[` and the whitespace after it; `true` (with `close`
    /// consumed) if the container is empty. Shared by building, projecting and validating.
    #[inline]
    fn open(&mut self, close: u8) -> bool {
        self.at += 1;
        self.skip_whitespace();
        if self.peek() == Some(close) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// After a member or an element: `,` means another follows (`true`), `close` ends the
    /// container (`false`), both consumed; anything else is not JSON.
    #[inline]
    fn next_or_close(&mut self, close: u8) -> Result<bool, JsonError> {
        self.skip_whitespace();
        match self.peek() {
            Some(b',') => {
                self.at += 1;
                Ok(true)
            }
            Some(byte) if byte == close => {
                self.at += 1;
                Ok(false)
            }
            _ => Err(JsonError::NotJson),
        }
    }

    /// The `:` between a member's key and its value, with the whitespace around it.
    #[inline]
    fn colon(&mut self) -> Result<(), JsonError> {
        self.skip_whitespace();
        self.expect(b':')?;
        self.skip_whitespace();
        Ok(())
    }

    /// A member's key, built, and the `:` after it; leaves `at` on the value.
    #[inline]
    fn key(&mut self) -> Result<String, JsonError> {
        self.skip_whitespace();
        let key = self.string()?;
        self.colon()?;
        Ok(key)
    }

    /// [`Reader::key`] borrowed from the text when it has no escapes, so a projecting reader
    /// copies only the keys it keeps.
    fn key_text(&mut self) -> Result<std::borrow::Cow<'t, str>, JsonError> {
        self.skip_whitespace();
        let (start, end, escaped) = self.string_span()?;
        let raw = self.text.get(start..end).ok_or(JsonError::NotJson)?;
        let key = if escaped {
            std::borrow::Cow::Owned(unescape(raw)?)
        } else {
            std::borrow::Cow::Borrowed(raw)
        };
        self.colon()?;
        Ok(key)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`; returns the start and whether
    /// it is a plain integer.
    fn number_span(&mut self) -> Result<(usize, bool), JsonError> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(JsonError::NotJson),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.at += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(JsonError::NotJson);
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            integer = false;
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(JsonError::NotJson);
            }
            self.digits();
        }
        Ok((start, integer))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    /// The end of the string starting at the opening quote, and whether it has escapes;
    /// leaves `at` after the closing quote.
    fn string_span(&mut self) -> Result<(usize, usize, bool), JsonError> {
        self.expect(b'"')?;
        let start = self.at;
        let mut escaped = false;
        loop {
            match self.peek() {
                Some(b'"') => {
                    let end = self.at;
                    self.at += 1;
                    return Ok((start, end, escaped));
                }
                Some(b'\\') => {
                    escaped = true;
                    self.at += 2;
                }
                Some(0..=0x1f) | None => return Err(JsonError::NotJson),
                Some(_) => self.at += 1,
            }
        }
    }

    fn skip_string(&mut self) -> Result<(), JsonError> {
        let (start, end, escaped) = self.string_span()?;
        if escaped {
            let raw = self.text.get(start..end).ok_or(JsonError::NotJson)?;
            unescape(raw)?;
        }
        Ok(())
    }

    fn string(&mut self) -> Result<String, JsonError> {
        let (start, end, escaped) = self.string_span()?;
        let raw = self.text.get(start..end).ok_or(JsonError::NotJson)?;
        if escaped {
            unescape(raw)
        } else {
            Ok(raw.to_owned())
        }
    }
}

/// Whether a non-integer number's scale (fraction digits minus exponent) is beyond what
/// [`Decimal::parse`] accepts (±10,000), so that validating and building agree.
fn exponent_out_of_range(text: &str) -> bool {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (
            text.get(..at).unwrap_or_default(),
            text.get(at + 1..).and_then(|e| e.parse::<i64>().ok()),
        ),
        None => (text, Some(0)),
    };
    let Some(exponent) = exponent else {
        return true;
    };
    let fraction = mantissa
        .find('.')
        .map_or(0, |dot| mantissa.len().saturating_sub(dot + 1));
    let scale = i64::try_from(fraction)
        .unwrap_or(i64::MAX)
        .saturating_sub(exponent);
    !(-10_000..=10_000).contains(&scale)
}

/// The value of JSON or SQL number text: an Int when it is an integer of at most 34 digits,
/// else a Decimal (an Int again when `whole_as_int` and it is whole and fits); `None` when the
/// text is not a number AWS's Decimal can hold.
pub(crate) fn number_value(text: &str, integer: bool, whole_as_int: bool) -> Option<Value> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if integer && digits.len() <= 34 {
        let mut n: i128 = 0;
        for b in digits.bytes() {
            n = n * 10 + i128::from(b.wrapping_sub(b'0'));
        }
        return Some(Value::Int(if text.starts_with('-') { -n } else { n }));
    }
    if !integer && let Some(value) = short_decimal(text, whole_as_int) {
        return Some(value);
    }
    if !integer && exponent_out_of_range(text) {
        return None;
    }
    let decimal = Decimal::parse(text)?;
    Some(if whole_as_int {
        whole_decimal_as_int(decimal)
    } else {
        Value::Decimal(decimal)
    })
}

/// The common payload number `-?digits.digits` with at most 18 digits, built without going
/// through text parsing (the hot path of reading telemetry): no exponent, so its scale is in
/// range; with `whole_as_int` an all-zero fraction (`25.0`) is the Int of the whole part, found
/// from the digits rather than by asking the built Decimal.
fn short_decimal(text: &str, whole_as_int: bool) -> Option<Value> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = body.split_once('.')?;
    if whole.len() + fraction.len() > 18 || whole.is_empty() || fraction.is_empty() {
        return None;
    }
    let mut mantissa: i64 = 0;
    for b in whole.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        mantissa = mantissa * 10 + i64::from(b - b'0');
    }
    let whole_part = if negative { -mantissa } else { mantissa };
    let mut zero_fraction = true;
    for b in fraction.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        zero_fraction &= b == b'0';
        mantissa = mantissa * 10 + i64::from(b - b'0');
    }
    if whole_as_int && zero_fraction {
        return Some(Value::Int(i128::from(whole_part)));
    }
    if negative {
        mantissa = -mantissa;
    }
    let scale = i64::try_from(fraction.len()).ok()?;
    Some(Value::Decimal(Decimal::from_big(
        bigdecimal::BigDecimal::new(bigdecimal::num_bigint::BigInt::from(mantissa), scale),
    )))
}

/// SQL 2016-03-23's rule: a whole-number Decimal within 34 digits is an Int.
pub(crate) fn whole_decimal_as_int(decimal: Decimal) -> Value {
    if decimal.is_integer()
        && let Some(n) = decimal.trunc_to_i128()
        && (-MAX_INT..=MAX_INT).contains(&n)
    {
        return Value::Int(n);
    }
    Value::Decimal(decimal)
}

/// Builds an object from pairs in order, the last value of a repeated key winning at the
/// position of its first occurrence.
fn object_last_wins(pairs: Vec<(String, Value)>) -> Object {
    let mut object = Object::new();
    let has_duplicates = if pairs.len() <= 16 {
        pairs
            .iter()
            .enumerate()
            .any(|(i, (k, _))| pairs.iter().skip(i + 1).any(|(l, _)| l == k))
    } else {
        let mut seen = std::collections::HashSet::with_capacity(pairs.len());
        !pairs.iter().all(|(k, _)| seen.insert(k.as_str()))
    };
    if !has_duplicates {
        return Object::from_distinct_pairs(pairs);
    }
    for (k, v) in pairs {
        object.insert(k, v);
    }
    object
}

fn hex4(raw: &[u8]) -> Option<u32> {
    let mut n = 0u32;
    for &b in raw.get(..4)? {
        n = n * 16 + char::from(b).to_digit(16)?;
    }
    Some(n)
}

/// The text of a JSON string body with escapes.
fn unescape(raw: &str) -> Result<String, JsonError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('\\') {
        out.push_str(rest.get(..at).ok_or(JsonError::NotJson)?);
        let bytes = rest.as_bytes();
        let kind = bytes.get(at + 1).copied().ok_or(JsonError::NotJson)?;
        let mut consumed = 2;
        match kind {
            b'"' => out.push('"'),
            b'\\' => out.push('\\'),
            b'/' => out.push('/'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'n' => out.push('\n'),
            b'r' => out.push('\r'),
            b't' => out.push('\t'),
            b'u' => {
                let high = bytes
                    .get(at + 2..)
                    .and_then(hex4)
                    .ok_or(JsonError::NotJson)?;
                consumed = 6;
                let code = if (0xD800..0xDC00).contains(&high) {
                    let low = match bytes.get(at + 6..at + 8) {
                        Some(b"\\u") => bytes
                            .get(at + 8..)
                            .and_then(hex4)
                            .ok_or(JsonError::NotJson)?,
                        _ => return Err(JsonError::NotJson),
                    };
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(JsonError::NotJson);
                    }
                    consumed = 12;
                    0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    high
                };
                out.push(char::from_u32(code).ok_or(JsonError::NotJson)?);
            }
            _ => return Err(JsonError::NotJson),
        }
        rest = rest.get(at + consumed..).ok_or(JsonError::NotJson)?;
    }
    out.push_str(rest);
    Ok(out)
}

/// Serializes `value` as compact JSON (no spaces), omitting Undefined (see the module docs).
pub(crate) fn write(value: &Value, out: &mut String) {
    match value {
        Value::Undefined => {}
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Decimal(d) => {
            let _ = write!(out, "{d}");
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            let mut first = true;
            for item in items.iter().filter(|v| !v.is_undefined()) {
                if !first {
                    out.push(',');
                }
                first = false;
                write(item, out);
            }
            out.push(']');
        }
        Value::Object(object) => {
            out.push('{');
            let mut first = true;
            for (k, v) in object.iter().filter(|(_, v)| !v.is_undefined()) {
                if !first {
                    out.push(',');
                }
                first = false;
                write_string(k, out);
                out.push(':');
                write(v, out);
            }
            out.push('}');
        }
        Value::Binary(bytes) => {
            out.push('"');
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(bytes));
            out.push('"');
        }
    }
}

/// `value` as compact JSON text.
pub(crate) fn to_string(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

impl Value {
    /// The value as compact JSON text, as a rule outputs it: Undefined members and elements
    /// omitted (a top-level Undefined is the empty string), Decimals exact, raw bytes as a
    /// base64 string.
    pub fn to_json_string(&self) -> String {
        to_string(self)
    }

    /// Reads `bytes` as one JSON value the way a payload is read (numbers exact), for what an
    /// [`crate::Environment`] returns from an external function (a shadow document, a
    /// service's answer). `None` when the bytes are not JSON or nest deeper than `max_depth`.
    pub fn from_json(bytes: &[u8], max_depth: usize) -> Option<Value> {
        let options = ReadOptions {
            max_depth,
            whole_decimals_as_int: false,
            only_keys: None,
        };
        read(bytes, &options).ok()
    }
}

/// A JSON string literal, escaped per RFC 8259.
pub(crate) fn write_string(text: &str, out: &mut String) {
    out.push('"');
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(text.get(start..i).unwrap_or_default());
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(text.get(start..).unwrap_or_default());
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(text: &str) -> Result<Value, JsonError> {
        read(
            text.as_bytes(),
            &ReadOptions {
                max_depth: 8,
                whole_decimals_as_int: false,
                only_keys: None,
            },
        )
    }

    #[test]
    fn reads_integers_exactly_up_to_34_digits() {
        let max = "9999999999999999999999999999999999";
        assert_eq!(full(max), Ok(Value::Int(MAX_INT)));
        assert!(matches!(
            full("99999999999999999999999999999999999"),
            Ok(Value::Decimal(_))
        ));
        assert_eq!(full("-0"), Ok(Value::Int(0)));
    }

    #[test]
    fn short_decimals_equal_parsed_ones() {
        for text in [
            "22.5",
            "-0.001",
            "123456789.123456789",
            "-0.0",
            "10.000",
            "26.30",
        ] {
            let text_of = |v: Option<Value>| match v {
                Some(Value::Decimal(d)) => Some(d.to_string()),
                other => other.map(|v| format!("{v:?}")),
            };
            let short = text_of(short_decimal(text, false));
            let parsed = text_of(Decimal::parse(text).map(Value::Decimal));
            assert_eq!(short, parsed, "{text}");
            let short_v2 = text_of(short_decimal(text, true));
            let parsed_v2 = text_of(Decimal::parse(text).map(whole_decimal_as_int));
            assert_eq!(short_v2, parsed_v2, "{text} (whole as Int)");
        }
        assert_eq!(short_decimal("-0.0", true), Some(Value::Int(0)));
        assert!(short_decimal("1234567890.1234567890", false).is_none());
        assert!(short_decimal("1e5", false).is_none());
    }

    #[test]
    fn keeps_decimal_text_exact() {
        let v = full("0.1000000000000000000000000000000001").ok();
        assert_eq!(
            v.map(|v| to_string(&v)).as_deref(),
            Some("0.1000000000000000000000000000000001")
        );
    }

    #[test]
    fn refuses_what_rfc_8259_refuses() {
        for bad in [
            "",
            "01",
            "1.",
            ".5",
            "+1",
            "[1,]",
            "{\"a\":1,}",
            "nul",
            "\"\\x\"",
            "1 2",
            "NaN",
            "\"\\ud800\"",
            "{'a':1}",
            "[1e99999]",
        ] {
            assert_eq!(full(bad), Err(JsonError::NotJson), "{bad}");
        }
        assert_eq!(
            read(
                b"\"\xff\"",
                &ReadOptions {
                    max_depth: 8,
                    whole_decimals_as_int: false,
                    only_keys: None
                }
            ),
            Err(JsonError::NotJson)
        );
    }

    #[test]
    fn refuses_nesting_beyond_the_limit() {
        assert_eq!(full("[[[[[[[[[]]]]]]]]]"), Err(JsonError::TooDeep));
        assert!(full("[[[[[[[[]]]]]]]]").is_ok());
    }

    #[test]
    fn last_duplicate_key_wins() {
        assert_eq!(
            full(r#"{"a":1,"b":2,"a":3}"#).map(|v| to_string(&v)),
            Ok(r#"{"a":3,"b":2}"#.to_owned())
        );
    }

    #[test]
    fn unescapes_and_reescapes_strings() {
        let v = full(r#""a\"b\\c\/\n\u00e9\ud83d\ude00\u0001""#);
        assert_eq!(v, Ok(Value::String("a\"b\\c/\né😀\u{1}".to_owned())));
        assert_eq!(
            v.map(|v| to_string(&v)),
            Ok(r#""a\"b\\c/\né😀\u0001""#.to_owned())
        );
    }

    #[test]
    fn projection_builds_only_wanted_keys_but_validates_all() {
        let options = ReadOptions {
            max_depth: 8,
            whole_decimals_as_int: true,
            only_keys: Some(&["t"]),
        };
        assert_eq!(
            read(br#"{"x":[1,{"y":"z"}],"t":10.0}"#, &options).map(|v| to_string(&v)),
            Ok(r#"{"t":10}"#.to_owned())
        );
        assert_eq!(
            read(br#"{"x":[1,],"t":1}"#, &options),
            Err(JsonError::NotJson)
        );
    }

    #[test]
    fn building_projecting_and_validating_accept_the_same_documents() {
        let projected = ReadOptions {
            max_depth: 8,
            whole_decimals_as_int: false,
            only_keys: Some(&["t"]),
        };
        for doc in [
            r#"{"x":{},"t":[]}"#,
            r#"{ "x" : [ 1 , { "y" : [ ] } ] , "t" : 1 }"#,
            r#"{"x":[1,],"t":1}"#,
            r#"{"x":{"y":1,},"t":1}"#,
            r#"{"x":{"y" 1},"t":1}"#,
            r#"{"x":{"y":1 "z":2},"t":1}"#,
            r#"{"x":[1 2],"t":1}"#,
            r#"{"x":[1,2,"t":1}"#,
            r#"{"x":{"y":1],"t":1}"#,
            r#"{"x":1,}"#,
            r#"{"x" 1}"#,
            r#"{,}"#,
        ] {
            let wrapped = format!(r#"{{"w":{doc}}}"#);
            let built = full(doc).is_ok();
            assert_eq!(read(doc.as_bytes(), &projected).is_ok(), built, "{doc}");
            // Nested under a skipped key, the same document goes through the validator.
            assert_eq!(
                read(wrapped.as_bytes(), &projected).is_ok(),
                built,
                "{wrapped}"
            );
        }
    }

    #[test]
    fn omits_undefined_members_and_elements() {
        let mut object = Object::new();
        object.insert("foo".into(), Value::Null);
        object.insert("bar".into(), Value::Undefined);
        object.insert(
            "list".into(),
            Value::Array(vec![Value::Int(1), Value::Undefined]),
        );
        assert_eq!(
            to_string(&Value::Object(object)),
            r#"{"foo":null,"list":[1]}"#
        );
        assert_eq!(to_string(&Value::Undefined), "");
    }
}

#[cfg(test)]
mod from_json_tests {
    use crate::value::Value;

    #[test]
    fn from_json_reads_documents_and_refuses_what_is_not_json() {
        let value = Value::from_json(br#"{"state":{"reported":{"t":26.30}}}"#, 8).expect("JSON");
        assert_eq!(
            value.to_json_string(),
            r#"{"state":{"reported":{"t":26.30}}}"#
        );
        assert_eq!(Value::from_json(b"not json", 8), None);
        assert_eq!(Value::from_json(b"[[[1]]]", 2), None);
    }
}
