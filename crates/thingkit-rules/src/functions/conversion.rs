//! How functions take their arguments, on top of [`crate::convert`] (the implicit conversion
//! table, spec §A.5) and [`crate::json`] (the String form of arrays and objects): only what is
//! specific to the function library lives here.
//!
//! Where the function library and the implicit table read AWS differently, the function pages
//! win for function arguments and the difference is kept here, named:
//! - [`number`]: a numeric String argument is a Decimal, even `"5"` (the table's "To decimal"
//!   column), where [`convert::to_number`] keeps an integer String an Int (operators).
//! - [`int`]: an Int result beyond 34 digits is Undefined, where
//!   [`convert::int_or_decimal`] makes it a Decimal.
//! - [`to_string`]: the String form of an array or object is limited to
//!   [`MAX_STRING_BYTES`].

use bigdecimal::RoundingMode;

use crate::convert;
use crate::decimal::Decimal;
use crate::functions::MAX_STRING_BYTES;
use crate::json;
use crate::value::{MAX_INT, Value};

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
/// Decimal, whatever its digits (the function pages' "converted to Decimal"; the implicit
/// table's [`convert::to_number`] would keep `"5"` an Int). Everything else (Boolean, Array,
/// Object, Null, Undefined) is `None`.
pub(super) fn number(value: &Value) -> Option<Number> {
    match value {
        Value::Int(i) => Some(Number::Int(*i)),
        other => match convert::to_decimal(other) {
            Value::Decimal(d) => Some(Number::Decimal(d)),
            _ => None,
        },
    }
}

/// An Int result, or Undefined (`None`) beyond 34 digits (a function's overflow is Undefined,
/// unlike [`convert::int_or_decimal`], which widens to a Decimal).
pub(super) fn int(value: i128) -> Option<Value> {
    (value.abs() <= MAX_INT).then_some(Value::Int(value))
}

/// [`convert::to_int_floor`] for a count or an index that is clamped anyway: magnitudes beyond
/// `i128` saturate instead of failing (`substring(false, -2.411E247)` is `"false"`).
pub(super) fn floor_int_saturating(value: &Value) -> Option<i128> {
    match convert::to_number(value) {
        Value::Int(i) => Some(i),
        Value::Decimal(d) => Some(convert::round_to_i128(&d, RoundingMode::Floor).unwrap_or(
            if d.as_big().sign() == bigdecimal::num_bigint::Sign::Minus {
                i128::MIN
            } else {
                i128::MAX
            },
        )),
        _ => None,
    }
}

/// The standard conversion to Int ([`convert::to_int`]) as an `i128`; `None` where it is not an
/// Int (Null included).
pub(super) fn standard_int(value: &Value) -> Option<i128> {
    match convert::to_int(value) {
        Value::Int(i) => Some(i),
        _ => None,
    }
}

/// The standard conversion to String ([`convert::to_text`]), with arrays and objects at most
/// [`MAX_STRING_BYTES`] of JSON text.
pub(super) fn to_string(value: &Value) -> Option<String> {
    let text = convert::to_text(value)?;
    match value {
        Value::Array(_) | Value::Object(_) if text.len() > MAX_STRING_BYTES => None,
        _ => Some(text),
    }
}

/// The size of `value`'s compact JSON text ([`json::write`]), if at most `limit` bytes.
pub(super) fn json_size_within(value: &Value, limit: usize) -> Option<usize> {
    let size = json::to_string(value).len();
    (size <= limit).then_some(size)
}
