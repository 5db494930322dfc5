//! `encode(value, 'base64')` and `decode(value, 'base64')`: the bridge between raw payloads,
//! text and JSON (spec §A.11).

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use thingkit_json::{Kind, Limits, Node};

use super::conversion::to_string;
use crate::decimal::Decimal;
use crate::functions::MAX_STRING_BYTES;
use crate::value::{MAX_INT, Object, Value};

/// Java's basic Base64 decoder: the standard alphabet, padding optional.
const DECODER: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The deepest JSON `decode` reads.
const MAX_JSON_DEPTH: usize = 64;

fn is_base64(scheme: &Value) -> bool {
    matches!(scheme, Value::String(s) if s.eq_ignore_ascii_case("base64"))
}

/// `encode(value, 'base64')`: raw bytes (`*`: the message as published) as they are,
/// anything else through its String form.
pub(super) fn encode(value: &Value, scheme: &Value) -> Option<Value> {
    if !is_base64(scheme) {
        return None;
    }
    let encoded = match value {
        Value::Binary(bytes) => STANDARD.encode(bytes),
        other => STANDARD.encode(to_string(other)?),
    };
    (encoded.len() <= MAX_STRING_BYTES * 2).then_some(Value::String(encoded))
}

/// `decode(value, 'base64')`: the decoded text as a JSON value if it is JSON, else as a String
/// (invalid UTF-8 replaced, as Java's `new String(bytes, UTF_8)` does); **Null** if the text is
/// not base64. `'proto'` needs a descriptor store thingkit does not have: Undefined.
pub(super) fn decode(value: &Value, scheme: &Value) -> Option<Value> {
    if !is_base64(scheme) {
        return None;
    }
    let text = to_string(value)?;
    let Ok(bytes) = DECODER.decode(&text) else {
        return Some(Value::Null);
    };
    let decoded = String::from_utf8_lossy(&bytes);
    let limits = Limits::default().with_max_depth(MAX_JSON_DEPTH);
    match thingkit_json::parse(&decoded, limits) {
        Ok(parsed) => Some(from_json(&parsed.root, parsed.duplicates.is_empty())),
        Err(_) => Some(Value::String(decoded.into_owned())),
    }
}

/// A JSON node as a value: integers within 34 digits are Ints, other numbers Decimals;
/// a duplicate key keeps its last value (`unique`: the document has none, so members are
/// appended without a search).
fn from_json(node: &Node<'_>, unique: bool) -> Value {
    match &node.kind {
        Kind::Null => Value::Null,
        Kind::Bool(b) => Value::Bool(*b),
        Kind::Number(text) => number(text),
        Kind::String(s) => Value::String(s.to_string()),
        Kind::Array(items) => {
            Value::Array(items.iter().map(|item| from_json(item, unique)).collect())
        }
        Kind::Object(members) => {
            let mut object = Object::new();
            for member in members {
                let value = from_json(&member.value, unique);
                if unique {
                    object.push_unchecked(member.key.to_string(), value);
                } else {
                    object.insert(member.key.to_string(), value);
                }
            }
            Value::Object(object)
        }
    }
}

fn number(text: &str) -> Value {
    let is_integer = !text.contains(['.', 'e', 'E']);
    if is_integer
        && let Ok(i) = text.parse::<i128>()
        && i.abs() <= MAX_INT
    {
        return Value::Int(i);
    }
    match Decimal::parse(text) {
        Some(d) => Value::Decimal(d),
        // An exponent beyond the Decimal range: not a value AWS can hold.
        None => Value::Undefined,
    }
}
