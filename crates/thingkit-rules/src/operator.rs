//! AWS IoT SQL's operators, table by table (IOT-A `iot-sql-operators.md`; IN from IOT-NOW
//! `iot-sql-operators`).
//!
//! - `AND`, `OR`: Boolean × Boolean, where a String operand that is `"true"`/`"false"` (any
//!   case) counts as that Boolean; anything else is Undefined. No short-circuit is visible
//!   (both sides are plain values), so both are evaluated.
//! - `NOT`: the same conversion, negated; anything else Undefined. (The English page prints
//!   "Otherwise, true" in the Boolean row — a typo; negation is meant.)
//! - `>`, `>=`, `<`, `<=`: numeric only. Int/Decimal compare as Decimal; a String operand is
//!   converted when it is numeric (`'10' > '9'` is true); any other operand (Boolean, Array,
//!   Object, Null, Undefined, non-numeric String) makes the result Undefined — there is no
//!   string order.
//! - `=`, `<>`: no conversion. Int × Decimal compares numerically; String, Boolean, Array (same
//!   order), Object (any order) and Null compare with their own type (`Null = Null` is true:
//!   the `<>` table's "Null | Null | False" row); an Undefined operand gives Undefined;
//!   mismatched types give false (`=`) / true (`<>`), so `'3' = 3` is false.
//! - `+`: a String on either side concatenates, the other side converted to String (`'5' + 3`
//!   is `"53"`; if that side has no String form — Null, Undefined — the result is Undefined);
//!   Int + Int is Int; Int/Decimal is Decimal; anything else Undefined. Numeric strings are
//!   *not* added: a String always means concatenation.
//! - `-`, `*`, `/`, `%`: Int × Int is Int; any Decimal (or a converted numeric String) makes a
//!   Decimal; anything else Undefined. Int division truncates toward zero (Java's
//!   `BigInteger.divide`; the page says only "Int value"), `%` keeps the sign of the dividend.
//!   Division or remainder by zero is Undefined (not stated by AWS). An Int result beyond 34
//!   digits becomes the Decimal of the same value rounded to 34 digits (not stated by AWS;
//!   thingkit prefers a close number to a silent Undefined).
//! - Unary `-`: Int and Decimal negated, numeric Strings converted first; else Undefined.
//! - `IN`: `value IN array` is true when an element `=` the value, false otherwise; a right
//!   side that is not an Array, or an Undefined left side, is Undefined.

use std::cmp::Ordering;

use crate::ast::{BinaryOp, UnaryOp};
use crate::convert::{self, as_decimal, int_or_decimal};
use crate::value::Value;

/// Applies a binary operator to two evaluated operands.
pub(crate) fn binary(op: BinaryOp, left: &Value, right: &Value) -> Value {
    match op {
        BinaryOp::And => logic(left, right, |a, b| a && b),
        BinaryOp::Or => logic(left, right, |a, b| a || b),
        BinaryOp::Eq => equals(left, right).map_or(Value::Undefined, Value::Bool),
        BinaryOp::NotEq => equals(left, right).map_or(Value::Undefined, |e| Value::Bool(!e)),
        BinaryOp::Lt => compare(left, right, Ordering::is_lt),
        BinaryOp::LtEq => compare(left, right, Ordering::is_le),
        BinaryOp::Gt => compare(left, right, Ordering::is_gt),
        BinaryOp::GtEq => compare(left, right, Ordering::is_ge),
        BinaryOp::Add => add(left, right),
        BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => {
            arithmetic(op, left, right)
        }
        BinaryOp::In => contains(left, right),
    }
}

/// Applies a unary operator.
pub(crate) fn unary(op: UnaryOp, operand: &Value) -> Value {
    match op {
        UnaryOp::Not => match convert::to_bool(operand) {
            Value::Bool(b) => Value::Bool(!b),
            _ => Value::Undefined,
        },
        UnaryOp::Neg => match numeric_operand(operand) {
            Some(Value::Int(n)) => int_or_decimal(-n),
            Some(Value::Decimal(d)) => Value::Decimal(d.neg()),
            _ => Value::Undefined,
        },
    }
}

fn logic(left: &Value, right: &Value, f: impl Fn(bool, bool) -> bool) -> Value {
    match (convert::to_bool(left), convert::to_bool(right)) {
        (Value::Bool(a), Value::Bool(b)) => Value::Bool(f(a, b)),
        _ => Value::Undefined,
    }
}

/// `=` without conversion; `None` means Undefined.
pub(crate) fn equals(left: &Value, right: &Value) -> Option<bool> {
    Some(match (left, right) {
        (Value::Undefined, _) | (_, Value::Undefined) => return None,
        (Value::Int(a), Value::Int(b)) => a == b,
        (Value::Int(_) | Value::Decimal(_), Value::Int(_) | Value::Decimal(_)) => {
            match (as_decimal(left), as_decimal(right)) {
                (Some(a), Some(b)) => a.compare(&b).is_eq(),
                _ => false,
            }
        }
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Null, Value::Null) => true,
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| equals(x, y).unwrap_or(false))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| equals(v, w).unwrap_or(false)))
        }
        (Value::Binary(a), Value::Binary(b)) => a == b,
        _ => false,
    })
}

/// A number for the numeric operators: Int and Decimal as they are, numeric Strings converted;
/// `None` for anything else (Null included: the operator tables have no Null row).
fn numeric_operand(value: &Value) -> Option<Value> {
    match value {
        Value::Int(_) | Value::Decimal(_) => Some(value.clone()),
        Value::String(s) => convert::parse_numeric_string(s),
        _ => None,
    }
}

fn compare(left: &Value, right: &Value, test: impl Fn(Ordering) -> bool) -> Value {
    // The common cases compared in place, without copying or converting the operands.
    let ordering = match (left, right) {
        (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
        (Value::Decimal(a), Value::Int(b)) => Some(a.compare_int(*b)),
        (Value::Int(a), Value::Decimal(b)) => Some(b.compare_int(*a).reverse()),
        (Value::Decimal(a), Value::Decimal(b)) => Some(a.compare(b)),
        _ => None,
    };
    if let Some(ordering) = ordering {
        return Value::Bool(test(ordering));
    }
    let ordering = match (numeric_operand(left), numeric_operand(right)) {
        (Some(Value::Int(a)), Some(Value::Int(b))) => a.cmp(&b),
        (Some(a), Some(b)) => match (as_decimal(&a), as_decimal(&b)) {
            (Some(a), Some(b)) => a.compare(&b),
            _ => return Value::Undefined,
        },
        _ => return Value::Undefined,
    };
    Value::Bool(test(ordering))
}

fn add(left: &Value, right: &Value) -> Value {
    match (left, right) {
        (Value::String(a), other) => match convert::to_text(other) {
            Some(b) => Value::String(format!("{a}{b}")),
            None => Value::Undefined,
        },
        (other, Value::String(b)) => match convert::to_text(other) {
            Some(a) => Value::String(format!("{a}{b}")),
            None => Value::Undefined,
        },
        (Value::Int(a), Value::Int(b)) => int_or_decimal(a.saturating_add(*b)),
        (Value::Int(_) | Value::Decimal(_), Value::Int(_) | Value::Decimal(_)) => {
            match (as_decimal(left), as_decimal(right)) {
                (Some(a), Some(b)) => Value::Decimal(a.add(&b)),
                _ => Value::Undefined,
            }
        }
        _ => Value::Undefined,
    }
}

fn arithmetic(op: BinaryOp, left: &Value, right: &Value) -> Value {
    // A converted String makes the result a Decimal (the tables' String/Int/Decimal row).
    let as_arithmetic = |v: &Value| match v {
        Value::String(_) => numeric_operand(v).and_then(|n| as_decimal(&n).map(Value::Decimal)),
        _ => numeric_operand(v),
    };
    let (Some(a), Some(b)) = (as_arithmetic(left), as_arithmetic(right)) else {
        return Value::Undefined;
    };
    if let (Value::Int(a), Value::Int(b)) = (&a, &b) {
        // Both within 34 digits, so + - * fit an i128 except for *, checked.
        return match op {
            BinaryOp::Sub => int_or_decimal(a - b),
            BinaryOp::Mul => match a.checked_mul(*b) {
                Some(n) => int_or_decimal(n),
                None => match (as_decimal(&Value::Int(*a)), as_decimal(&Value::Int(*b))) {
                    (Some(x), Some(y)) => Value::Decimal(x.mul(&y)),
                    _ => Value::Undefined,
                },
            },
            BinaryOp::Div => a.checked_div(*b).map_or(Value::Undefined, Value::Int),
            BinaryOp::Rem => a.checked_rem(*b).map_or(Value::Undefined, Value::Int),
            _ => Value::Undefined,
        };
    }
    let (Some(x), Some(y)) = (as_decimal(&a), as_decimal(&b)) else {
        return Value::Undefined;
    };
    let result = match op {
        BinaryOp::Sub => Some(x.sub(&y)),
        BinaryOp::Mul => Some(x.mul(&y)),
        BinaryOp::Div => x.div(&y),
        BinaryOp::Rem => x.rem(&y),
        _ => None,
    };
    result.map_or(Value::Undefined, Value::Decimal)
}

fn contains(left: &Value, right: &Value) -> Value {
    match (left, right) {
        (Value::Undefined, _) => Value::Undefined,
        (_, Value::Array(items)) => {
            Value::Bool(items.iter().any(|item| equals(left, item) == Some(true)))
        }
        _ => Value::Undefined,
    }
}
