//! The implicit conversions functions apply to their arguments (spec §A.5 table), and the JSON
//! text of arrays and objects (their String form).

use bigdecimal::RoundingMode;

use crate::decimal::Decimal;
use crate::functions::MAX_STRING_BYTES;
use crate::value::{MAX_INT, Value, is_numeric_string};

/// A numeric argument: Int stays Int, everything else is a Decimal.
#[derive(Debug, Clone)]
pub(super) enum Number {
    /// An Int argument.
    Int(i128),
    /// A Decimal argument, or a numeric String.
    Decimal(Decimal),
}

impl Number {
    /// As a Decimal.
    pub(super) fn to_decimal(&self) -> Decimal {
        match self {
            Number::Int(i) => Decimal::from_i128(*i),
            Number::Decimal(d) => d.clone(),
        }
    }

    /// As a double (Decimals "rounded to double precision").
    pub(super) fn to_f64(&self) -> f64 {
        match self {
            // An Int has at most 34 digits: the cast rounds to the nearest double.
            Number::Int(i) => *i as f64,
            Number::Decimal(d) => d.to_f64(),
        }
    }
}

/// Int, Decimal, or a String that converts (`^-?\d+(\.\d+)?((?i)E-?\d+)?$`) — which becomes a
/// Decimal. Everything else (Boolean, Array, Object, Null, Undefined) is `None`.
pub(super) fn number(value: &Value) -> Option<Number> {
    match value {
        Value::Int(i) => Some(Number::Int(*i)),
        Value::Decimal(d) => Some(Number::Decimal(d.clone())),
        Value::String(s) if is_numeric_string(s) => Decimal::parse(s).map(Number::Decimal),
        _ => None,
    }
}

/// An Int result, or Undefined (`None`) beyond 34 digits.
pub(super) fn int(value: i128) -> Option<Value> {
    (value.abs() <= MAX_INT).then_some(Value::Int(value))
}

/// A Decimal's integer value after rounding with `mode`, if it fits an `i128`.
pub(super) fn decimal_to_int(value: &Decimal, mode: RoundingMode) -> Option<i128> {
    // Beyond 10^38 nothing fits; checking first avoids building a huge integer.
    if value.as_big().order_of_magnitude() > 38 {
        return None;
    }
    value.with_scale_round(0, mode).trunc_to_i128()
}

/// "Rounded down to the nearest Int": Int as is, Decimal and numeric String floored.
pub(super) fn floor_int(value: &Value) -> Option<i128> {
    match number(value)? {
        Number::Int(i) => Some(i),
        Number::Decimal(d) => decimal_to_int(&d, RoundingMode::Floor),
    }
}

/// [`floor_int`] for a count or an index that is clamped anyway: magnitudes beyond `i128`
/// saturate instead of failing (`substring(false, -2.411E247)` is `"false"`).
pub(super) fn floor_int_saturating(value: &Value) -> Option<i128> {
    match number(value)? {
        Number::Int(i) => Some(i),
        Number::Decimal(d) => Some(decimal_to_int(&d, RoundingMode::Floor).unwrap_or(
            if d.as_big().sign() == bigdecimal::num_bigint::Sign::Minus {
                i128::MIN
            } else {
                i128::MAX
            },
        )),
    }
}

/// The standard conversion to Int (spec §A.5): a Decimal is rounded to the nearest Int, a String
/// is parsed as a Decimal and truncated.
pub(super) fn standard_int(value: &Value) -> Option<i128> {
    match value {
        Value::Int(i) => Some(*i),
        Value::Decimal(d) => decimal_to_int(d, RoundingMode::HalfUp),
        Value::String(s) if is_numeric_string(s) => {
            decimal_to_int(&Decimal::parse(s)?, RoundingMode::Down)
        }
        _ => None,
    }
}

/// The standard conversion to String (spec §A.5): numbers in their text, Booleans as
/// `true`/`false`, arrays and objects as compact JSON text, raw bytes if they are UTF-8; Null
/// and Undefined have none. At most [`MAX_STRING_BYTES`].
pub(super) fn to_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Decimal(d) => Some(d.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(_) | Value::Object(_) => {
            let mut out = String::new();
            write_json(value, &mut out, MAX_STRING_BYTES)?;
            Some(out)
        }
        Value::Binary(bytes) => std::str::from_utf8(bytes).ok().map(str::to_owned),
        Value::Null | Value::Undefined => None,
    }
}

/// Appends `value`'s compact JSON text to `out`; `None` once `out` would exceed `limit` bytes.
/// Undefined members and elements are left out (AWS drops them from output).
pub(super) fn write_json(value: &Value, out: &mut String, limit: usize) -> Option<()> {
    match value {
        Value::Undefined => {}
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Decimal(d) => out.push_str(&d.to_string()),
        Value::String(s) => write_json_string(s, out),
        Value::Binary(bytes) => write_json_string(&String::from_utf8_lossy(bytes), out),
        Value::Array(items) => {
            out.push('[');
            let mut first = true;
            for item in items.iter().filter(|item| !item.is_undefined()) {
                if !first {
                    out.push(',');
                }
                first = false;
                write_json(item, out, limit)?;
            }
            out.push(']');
        }
        Value::Object(object) => {
            out.push('{');
            let mut first = true;
            for (key, item) in object.iter().filter(|(_, item)| !item.is_undefined()) {
                if !first {
                    out.push(',');
                }
                first = false;
                write_json_string(key, out);
                out.push(':');
                write_json(item, out, limit)?;
            }
            out.push('}');
        }
    }
    (out.len() <= limit).then_some(())
}

fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The serialized size of `value`, if at most `limit` bytes.
pub(super) fn json_size_within(value: &Value, limit: usize) -> Option<usize> {
    let mut out = String::new();
    write_json(value, &mut out, limit)?;
    Some(out.len())
}
