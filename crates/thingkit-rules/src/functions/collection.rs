//! Functions over arrays, objects and strings as collections: `get`, `concat`, `transform`.

use super::conversion::{json_size_within, standard_int, to_string};
use crate::functions::MAX_STRING_BYTES;
use crate::value::{Object, Value};

/// The largest array `transform` returns, serialized (the page's 128 KiB).
const MAX_TRANSFORM_BYTES: usize = 128 * 1024;

/// `get(collection, key)`: an Array element or a String's character at a 0-based index
/// (converted to Int), or an Object member by String key (no conversion).
pub(super) fn get(collection: &Value, key: &Value) -> Option<Value> {
    match collection {
        Value::Array(items) => {
            let index = usize::try_from(standard_int(key)?).ok()?;
            items.get(index).cloned()
        }
        Value::String(s) => {
            let index = usize::try_from(standard_int(key)?).ok()?;
            s.chars().nth(index).map(|c| Value::String(c.to_string()))
        }
        Value::Object(object) => match key {
            Value::String(key) => object.get(key).cloned(),
            _ => None,
        },
        _ => None,
    }
}

/// `concat(...)`: no arguments is Undefined; if any argument is an Array, one array of every
/// argument (arrays spliced in); otherwise the concatenation of every argument's String form
/// (so `concat(1)` is `"1"`, the page's example).
pub(super) fn concat(args: &[Value]) -> Option<Value> {
    if args.is_empty() {
        return None;
    }
    if args.iter().any(|arg| matches!(arg, Value::Array(_))) {
        let mut items = Vec::new();
        let mut size = 0usize;
        for arg in args {
            if arg.is_undefined() {
                return None;
            }
            size = size.checked_add(json_size_within(arg, MAX_STRING_BYTES)?)?;
            if size > MAX_STRING_BYTES {
                return None;
            }
            match arg {
                Value::Array(inner) => items.extend(inner.iter().cloned()),
                other => items.push(other.clone()),
            }
        }
        return Some(Value::Array(items));
    }
    let mut out = String::new();
    for arg in args {
        out.push_str(&to_string(arg)?);
        if out.len() > MAX_STRING_BYTES {
            return None;
        }
    }
    Some(Value::String(out))
}

/// `transform('enrichArray', object, array)`: each element of `array` (an object) with the
/// members of `object` added (they win over an element's member of the same name).
pub(super) fn transform(mode: &Value, object: &Value, array: &Value) -> Option<Value> {
    let (Value::String(mode), Value::Object(extra), Value::Array(items)) = (mode, object, array)
    else {
        return None;
    };
    if mode != "enrichArray" {
        return None;
    }
    let mut out = Vec::new();
    let mut size = 2usize;
    for item in items {
        let Value::Object(element) = item else {
            return None;
        };
        let mut merged: Object = element.clone();
        for (key, value) in extra.iter() {
            merged.insert(key.to_owned(), value.clone());
        }
        let merged = Value::Object(merged);
        // Checked element by element, so an oversized result stops as soon as it is too big.
        size = size.checked_add(json_size_within(&merged, MAX_TRANSFORM_BYTES)? + 1)?;
        if size > MAX_TRANSFORM_BYTES + 1 {
            return None;
        }
        out.push(merged);
    }
    Some(Value::Array(out))
}
