//! Numeric functions: `abs`, `sign`, `ceil`, `floor`, `round`, `trunc`, `mod`/`remainder`, the
//! "double precision" functions (trigonometry, `exp`, `ln`, `log`, `sqrt`, `power`, `atan2`),
//! the bitwise functions and `nanvl`.

use bigdecimal::RoundingMode;
use bigdecimal::num_bigint::Sign;

use super::conversion::{self, Number, int, number};
use crate::convert::{round_to_i128, to_int_floor};
use crate::decimal::Decimal;
use crate::value::Value;

/// A double result: its Decimal, or Undefined for NaN and infinities ("imaginary results are
/// returned as Undefined"; overflow likewise).
pub(super) fn double(value: f64) -> Option<Value> {
    Decimal::from_f64(value).map(Value::Decimal)
}

/// A one-argument double function.
pub(super) fn unary_double(value: &Value, f: fn(f64) -> f64) -> Option<Value> {
    double(f(number(value)?.to_f64()))
}

/// A two-argument double function (`power`, `atan2`).
pub(super) fn binary_double(a: &Value, b: &Value, f: fn(f64, f64) -> f64) -> Option<Value> {
    double(f(number(a)?.to_f64(), number(b)?.to_f64()))
}

/// `abs`: Int → Int, Decimal and numeric String → Decimal.
pub(super) fn abs(value: &Value) -> Option<Value> {
    match number(value)? {
        Number::Int(i) => int(i.checked_abs()?),
        Number::Decimal(d) => Some(Value::Decimal(Decimal::from_big(d.as_big().abs()))),
    }
}

/// `sign`: -1, 0 or 1 as an Int.
pub(super) fn sign(value: &Value) -> Option<Value> {
    let sign = match number(value)? {
        Number::Int(i) => i.signum(),
        Number::Decimal(d) => match d.as_big().sign() {
            Sign::Minus => -1,
            Sign::NoSign => 0,
            Sign::Plus => 1,
        },
    };
    Some(Value::Int(sign))
}

fn to_int_with(value: &Value, mode: RoundingMode) -> Option<Value> {
    match number(value)? {
        Number::Int(i) => Some(Value::Int(i)),
        Number::Decimal(d) => int(round_to_i128(&d, mode)?),
    }
}

/// `ceil`: up to the nearest Int.
pub(super) fn ceil(value: &Value) -> Option<Value> {
    to_int_with(value, RoundingMode::Ceiling)
}

/// `floor`: down to the nearest Int.
pub(super) fn floor(value: &Value) -> Option<Value> {
    to_int_with(value, RoundingMode::Floor)
}

/// `round`: to the nearest Int, ties away from zero — the page's examples (`Round(-1.5)` = -2)
/// rather than its table ("rounded down").
pub(super) fn round(value: &Value) -> Option<Value> {
    to_int_with(value, RoundingMode::HalfUp)
}

/// `trunc(x, n)`: `x` truncated (toward zero) to `n` decimal places, `n` floored and clamped to
/// 0..=34, trailing zeros stripped. Int × Int is the Int itself.
pub(super) fn trunc(value: &Value, places: &Value) -> Option<Value> {
    if !matches!(places, Value::Int(_) | Value::Decimal(_)) {
        return None;
    }
    let places = conversion::floor_int_saturating(places)?.clamp(0, 34);
    match number(value)? {
        Number::Int(i) => Some(Value::Int(i)),
        Number::Decimal(d) => {
            let places = i64::try_from(places).ok()?;
            let truncated = d.with_scale_round(places, RoundingMode::Down);
            Some(Value::Decimal(Decimal::from_big(
                truncated.as_big().normalized(),
            )))
        }
    }
}

/// `mod`/`remainder` (and `%`): Int × Int → Int, otherwise Decimal; the remainder of truncated
/// division (sign of the dividend, as Java's); a zero divisor is Undefined.
pub(super) fn modulo(a: &Value, b: &Value) -> Option<Value> {
    match (number(a)?, number(b)?) {
        (Number::Int(x), Number::Int(y)) => int(x.checked_rem(y)?),
        (x, y) => x.to_decimal().rem(&y.to_decimal()).map(Value::Decimal),
    }
}

/// A bitwise function of two Ints (Decimals and numeric Strings floored).
pub(super) fn bitwise(a: &Value, b: &Value, f: fn(i128, i128) -> i128) -> Option<Value> {
    int(f(to_int_floor(a)?, to_int_floor(b)?))
}

/// `bitnot`: the two's-complement NOT (`bitnot(13)` = -14; the page's "2" is not a NOT of 13 in
/// any width wider than 4 bits).
pub(super) fn bitnot(value: &Value) -> Option<Value> {
    int(!to_int_floor(value)?)
}

/// `nanvl`: the first argument unless it is Undefined, Null or NaN (no value of this model is
/// NaN, so only the first two apply).
pub(super) fn nanvl(value: &Value, other: &Value) -> Value {
    match value {
        Value::Undefined | Value::Null => other.clone(),
        _ => value.clone(),
    }
}
