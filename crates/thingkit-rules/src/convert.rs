//! AWS IoT SQL's conversions: the implicit table used when a function or operator gets a value
//! of the wrong type (IOT-A `iot-sql-data-types.md`, "Conversions"), and `cast(v AS type)`,
//! which differs from it (IOT-A `iot-sql-functions.md`, cast).
//!
//! Implicit table (rows: from; columns: to):
//!
//! | from      | Decimal            | Int                        | Boolean              | String              |
//! |-----------|--------------------|----------------------------|----------------------|---------------------|
//! | Int       | same value         | same                       | Undefined            | decimal digits      |
//! | Decimal   | same               | rounded to nearest (half up)| Undefined           | `Display` (may be scientific) |
//! | Boolean   | Undefined          | Undefined                  | same                 | `true` / `false`    |
//! | String    | parsed if numeric  | parsed, then truncated     | `true`/`false` any case | same             |
//! | Array     | Undefined          | Undefined                  | Undefined            | JSON text, no spaces|
//! | Object    | Undefined          | Undefined                  | Undefined            | JSON text, no spaces|
//! | Null      | **Null**           | **Null**                   | Undefined            | Undefined           |
//! | Undefined | Undefined          | Undefined                  | Undefined            | Undefined           |
//!
//! "Numeric" strings match `^-?\d+(\.\d+)?((?i)E-?\d+)?$` ([`is_numeric_string`]). The page
//! does not say how "rounded to the nearest Int" breaks ties: thingkit rounds half away from
//! zero (as `round()`'s examples do). Raw bytes (a non-JSON `*`) convert to String when they
//! are UTF-8 and to nothing else.
//!
//! `cast` differs: Null → Undefined; Boolean ↔ number (`true` = 1, `false` = 0, any non-zero
//! number is `true`); Decimal → Int "rounded down" — thingkit truncates toward zero (Java's
//! `BigDecimal.toBigInteger`, the same as the implicit String → Int rule's "truncates"); the
//! keywords `Decimal`, `Bool` and `Boolean` exist only under 2016-03-23; an unknown keyword is
//! Undefined. The page's "cast to String" row for String is a copy of the Boolean row (an
//! erratum): a String casts to itself.

use bigdecimal::RoundingMode;

use crate::ast::SqlVersion;
use crate::decimal::Decimal;
use crate::json;
use crate::value::{MAX_INT, Value, is_numeric_string};

/// An Int if `n` fits 34 digits, else the Decimal of the same value (rounded to 34 digits).
pub(crate) fn int_or_decimal(n: i128) -> Value {
    if (-MAX_INT..=MAX_INT).contains(&n) {
        Value::Int(n)
    } else {
        Value::Decimal(Decimal::from_i128(n))
    }
}

/// The numeric value of a numeric string (Int when it is an integer of at most 34 digits).
pub(crate) fn parse_numeric_string(text: &str) -> Option<Value> {
    if !is_numeric_string(text) {
        return None;
    }
    let integer = !text.contains(['.', 'e', 'E']);
    json::number_value(text, integer, false)
}

/// Implicit conversion to a number: Int and Decimal as they are, numeric strings parsed (Int
/// or Decimal), Null stays Null, everything else Undefined.
pub(crate) fn to_number(value: &Value) -> Value {
    match value {
        Value::Int(_) | Value::Decimal(_) | Value::Null => value.clone(),
        Value::String(s) => parse_numeric_string(s).unwrap_or(Value::Undefined),
        _ => Value::Undefined,
    }
}

/// Implicit conversion to Decimal (the table's "To decimal" column).
pub(crate) fn to_decimal(value: &Value) -> Value {
    match to_number(value) {
        Value::Int(n) => Value::Decimal(Decimal::from_i128(n)),
        other => other,
    }
}

/// The Decimal of a number value, if it is one (no conversion).
pub(crate) fn as_decimal(value: &Value) -> Option<Decimal> {
    match value {
        Value::Int(n) => Some(Decimal::from_i128(*n)),
        Value::Decimal(d) => Some(d.clone()),
        _ => None,
    }
}

/// A Decimal's integer value after rounding with `mode`, if it fits an `i128`.
pub(crate) fn round_to_i128(decimal: &Decimal, mode: RoundingMode) -> Option<i128> {
    // Beyond 10^38 nothing fits; checking first avoids building a huge integer (a Decimal's
    // exponent can be large: `1E+9999`).
    if decimal.as_big().order_of_magnitude() > 38 {
        return None;
    }
    decimal.with_scale_round(0, mode).trunc_to_i128()
}

fn decimal_to_int(decimal: &Decimal, mode: RoundingMode) -> Value {
    round_to_i128(decimal, mode).map_or(Value::Undefined, int_or_decimal)
}

/// Implicit conversion to Int (the table's "To int" column): Decimal rounded to the nearest
/// (half away from zero), numeric strings parsed then truncated, Null stays Null.
pub(crate) fn to_int(value: &Value) -> Value {
    match value {
        Value::Int(_) | Value::Null => value.clone(),
        Value::Decimal(d) => decimal_to_int(d, RoundingMode::HalfUp),
        Value::String(s) => match parse_numeric_string(s) {
            Some(Value::Decimal(d)) => decimal_to_int(&d, RoundingMode::Down),
            Some(other) => other,
            None => Value::Undefined,
        },
        _ => Value::Undefined,
    }
}

/// "Rounded down to the nearest Int", the conversion the bit functions (`bitand`, `bitor`,
/// `bitxor`, `bitnot`) and `chr` apply instead of the table's "To int" column: Int as is, a
/// Decimal or a numeric String floored (toward negative infinity, so `-1.5` is `-2`, where
/// [`to_int`] gives `-2` by rounding and `"-1.5"` gives `-1` by truncating); everything else,
/// Null included, is `None`, as is a value beyond `i128`.
pub(crate) fn to_int_floor(value: &Value) -> Option<i128> {
    match to_number(value) {
        Value::Int(n) => Some(n),
        Value::Decimal(d) => round_to_i128(&d, RoundingMode::Floor),
        _ => None,
    }
}

/// Implicit conversion to Boolean: Booleans, and the strings `true`/`false` in any case.
pub(crate) fn to_bool(value: &Value) -> Value {
    match value {
        Value::Bool(_) => value.clone(),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
        _ => Value::Undefined,
    }
}

/// Implicit conversion to String as Rust text; `None` where the table says Undefined.
pub(crate) fn to_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        Value::Decimal(d) => Some(d.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(_) | Value::Object(_) => Some(json::to_string(value)),
        Value::Binary(bytes) => std::str::from_utf8(bytes).ok().map(str::to_owned),
        Value::Null | Value::Undefined => None,
    }
}

/// Implicit conversion to String (the table's "To string" column).
pub(crate) fn to_string(value: &Value) -> Value {
    to_text(value).map_or(Value::Undefined, Value::String)
}

/// SQL 2016-03-23's whole-number rule applied to one value: a whole Decimal becomes an Int
/// (under 2015-10-08 the value is returned as is).
pub(crate) fn normalize(value: Value, version: SqlVersion) -> Value {
    match value {
        Value::Decimal(d) if version.is_v2() => json::whole_decimal_as_int(d),
        other => other,
    }
}

/// `cast(value AS ty)` (the keyword as written, any case).
pub(crate) fn cast(value: &Value, ty: &str, version: SqlVersion) -> Value {
    let ty = ty.to_ascii_lowercase();
    match ty.as_str() {
        "string" | "nvarchar" | "text" | "ntext" | "varchar" => to_string(value),
        "int" | "integer" => match value {
            Value::Bool(b) => Value::Int(i128::from(*b)),
            Value::Null => Value::Undefined,
            Value::Decimal(d) => decimal_to_int(d, RoundingMode::Down),
            other => to_int(other),
        },
        "double" => match cast_to_decimal(value) {
            Value::Decimal(d) => Decimal::from_f64(d.to_f64())
                .map_or(Value::Undefined, |d| normalize(Value::Decimal(d), version)),
            other => other,
        },
        "decimal" if version.is_v2() => normalize(cast_to_decimal(value), version),
        "bool" | "boolean" if version.is_v2() => match value {
            Value::Int(n) => Value::Bool(*n != 0),
            Value::Decimal(d) => Value::Bool(d.compare(&Decimal::from_i128(0)).is_ne()),
            Value::Null => Value::Undefined,
            other => to_bool(other),
        },
        _ => Value::Undefined,
    }
}

fn cast_to_decimal(value: &Value) -> Value {
    match value {
        Value::Bool(b) => Value::Decimal(Decimal::from_i128(i128::from(*b))),
        Value::Null => Value::Undefined,
        other => to_decimal(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Value {
        Value::Decimal(Decimal::parse(text).unwrap_or_else(|| Decimal::from_i128(0)))
    }

    #[test]
    fn implicit_string_to_int_truncates_but_decimal_rounds() {
        assert_eq!(to_int(&Value::String("-1.7".into())), Value::Int(-1));
        assert_eq!(to_int(&dec("-1.7")), Value::Int(-2));
        assert_eq!(to_int(&dec("2.5")), Value::Int(3));
        assert_eq!(to_int(&Value::Null), Value::Null);
        assert_eq!(to_int(&Value::Bool(true)), Value::Undefined);
    }

    #[test]
    fn rounded_down_int_floors_decimals_and_numeric_strings() {
        assert_eq!(to_int_floor(&dec("-1.5")), Some(-2));
        assert_eq!(to_int_floor(&Value::String("-1.5".into())), Some(-2));
        assert_eq!(to_int_floor(&Value::Int(7)), Some(7));
        assert_eq!(to_int_floor(&Value::Null), None);
        assert_eq!(to_int_floor(&dec("1E+9999")), None);
    }

    #[test]
    fn implicit_conversions_follow_the_table() {
        assert_eq!(to_decimal(&Value::String("5E-12".into())), dec("5E-12"));
        assert_eq!(to_decimal(&Value::String(" 5".into())), Value::Undefined);
        assert_eq!(to_decimal(&Value::Null), Value::Null);
        assert_eq!(to_bool(&Value::String("TrUe".into())), Value::Bool(true));
        assert_eq!(to_bool(&Value::Int(1)), Value::Undefined);
        assert_eq!(
            to_string(&Value::Array(vec![
                Value::String("hello".into()),
                Value::Int(1)
            ])),
            Value::String(r#"["hello",1]"#.into())
        );
        assert_eq!(to_string(&Value::Null), Value::Undefined);
    }

    #[test]
    fn cast_differs_from_implicit_conversion() {
        let v2 = SqlVersion::V2016_03_23;
        let v1 = SqlVersion::V2015_10_08;
        assert_eq!(cast(&Value::Bool(true), "Int", v1), Value::Int(1));
        assert_eq!(cast(&dec("-1.7"), "int", v1), Value::Int(-1));
        assert_eq!(cast(&Value::Null, "Int", v1), Value::Undefined);
        assert_eq!(cast(&Value::Int(0), "Boolean", v2), Value::Bool(false));
        assert_eq!(cast(&Value::Int(0), "Boolean", v1), Value::Undefined);
        assert_eq!(cast(&Value::Int(10), "Decimal", v2), Value::Int(10));
        assert_eq!(cast(&Value::Int(1), "Blob", v2), Value::Undefined);
        assert_eq!(cast(&Value::Int(1), "Double", v1), dec("1.0"));
        assert_eq!(
            cast(&Value::Bool(false), "String", v1),
            Value::String("false".into())
        );
    }
}
