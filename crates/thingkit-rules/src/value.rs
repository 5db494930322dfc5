//! AWS IoT SQL's values: Int, Decimal, Boolean, String, Array, Object, Null and Undefined
//! (plus the raw bytes `*` is for a non-JSON payload), and the implicit conversions of AWS's
//! table (IOT-A `iot-sql-data-types.md`).

use bytes::Bytes;

use crate::decimal::Decimal;

/// The largest magnitude an Int holds: 34 digits.
pub const MAX_INT: i128 = 9_999_999_999_999_999_999_999_999_999_999_999;

/// One value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Not a value: a missing key, a failed conversion, a function given bad arguments.
    /// Dropped from output objects.
    Undefined,
    /// JSON null.
    Null,
    /// A Boolean.
    Bool(bool),
    /// An Int, at most 34 digits ([`MAX_INT`]).
    Int(i128),
    /// A Decimal (34 significant digits).
    Decimal(Decimal),
    /// A UTF-8 string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object.
    Object(Object),
    /// Raw bytes: `*` for a payload that is not JSON.
    Binary(Bytes),
}

/// A JSON object: keys in insertion order, each key once.
#[derive(Debug, Clone, Default)]
pub struct Object(Vec<(String, Value)>);

impl PartialEq for Object {
    /// Same keys with equal values, in any order (AWS's `=` on objects).
    fn eq(&self, other: &Object) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .all(|(k, v)| other.get(k).is_some_and(|w| w == v))
    }
}

impl Object {
    /// An empty object.
    pub fn new() -> Object {
        Object(Vec::new())
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key` (replacing its value in place if present, else appending).
    pub fn insert(&mut self, key: String, value: Value) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(at).1)
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it has no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// An object of `pairs` whose keys are already known to be distinct, taking the vector
    /// as it is (no copy).
    pub(crate) fn from_distinct_pairs(pairs: Vec<(String, Value)>) -> Object {
        Object(pairs)
    }

    /// Appends without checking for the key (the caller knows it is new, as a JSON reader
    /// that refuses duplicates does).
    pub fn push_unchecked(&mut self, key: String, value: Value) {
        self.0.push((key, value));
    }
}

impl Value {
    /// AWS's type name (`Int`, `Decimal`, `Boolean`, `String`, `Array`, `Object`, `Null`,
    /// `Undefined`; `Binary` for raw bytes).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Undefined => "Undefined",
            Value::Null => "Null",
            Value::Bool(_) => "Boolean",
            Value::Int(_) => "Int",
            Value::Decimal(_) => "Decimal",
            Value::String(_) => "String",
            Value::Array(_) => "Array",
            Value::Object(_) => "Object",
            Value::Binary(_) => "Binary",
        }
    }

    /// Whether it is Undefined.
    pub fn is_undefined(&self) -> bool {
        matches!(self, Value::Undefined)
    }
}

/// Whether `text` is a number by AWS's conversion rule `^-?\d+(\.\d+)?((?i)E-?\d+)?$`.
pub fn is_numeric_string(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}
