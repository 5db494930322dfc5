//! The stored state tree: values with their per-leaf metadata timestamps, the merge of an update
//! into it, the delta, and the JSON writers for state and metadata.
//!
//! One tree holds both the value and its metadata, so the metadata always mirrors the state
//! (digest R-07): a scalar leaf carries its timestamp, an array is its elements, an object its
//! members. Objects therefore carry no timestamp of their own, as AWS's metadata shows.

use std::collections::BTreeMap;

use thingkit_json::{Kind, Member, Node as Json};

/// `desired` or `reported`: the members of the section object. Empty means the section is absent.
pub(crate) type Section = BTreeMap<String, Node>;

/// A stored value with its metadata.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// A boolean, number or string, and when it was last written (Unix seconds).
    Leaf { value: Scalar, timestamp: u64 },
    /// An array (arrays are whole values: no element is ever null).
    Array(Vec<Node>),
    /// An object. Outside arrays it is never empty: an object that ends up empty is removed.
    Object(Section),
}

/// A JSON scalar other than null (nulls are never stored, digest R-05).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Bool(bool),
    /// The number's JSON text as the client wrote it (`1` stays `1`, `1.0` stays `1.0`).
    Number(Box<str>),
    String(Box<str>),
}

impl Node {
    /// The stored form of a request value written at `timestamp`; `None` for `null`. Object
    /// members that are null are dropped (they delete nothing in a new object); nulls inside
    /// arrays were refused before this is called.
    pub(crate) fn from_json(json: &Json<'_>, timestamp: u64) -> Option<Node> {
        let leaf = |value| Some(Node::Leaf { value, timestamp });
        match &json.kind {
            Kind::Null => None,
            Kind::Bool(b) => leaf(Scalar::Bool(*b)),
            Kind::Number(n) => leaf(Scalar::Number((*n).into())),
            Kind::String(s) => leaf(Scalar::String(s.as_ref().into())),
            Kind::Array(items) => Some(Node::Array(
                items
                    .iter()
                    .filter_map(|i| Node::from_json(i, timestamp))
                    .collect(),
            )),
            Kind::Object(members) => Some(Node::Object(
                members
                    .iter()
                    .filter_map(|m| {
                        Node::from_json(&m.value, timestamp).map(|v| (m.key.to_string(), v))
                    })
                    .collect(),
            )),
        }
    }
}

/// Merges request members into a section (digest R-05): null removes the member (a leaf or a
/// whole subtree), objects merge recursively, arrays and scalars replace. An object left empty
/// is removed, up to the section itself (F-S5 reading, extended to nested objects).
pub(crate) fn merge(section: &mut Section, members: &[Member<'_>], timestamp: u64) {
    for member in members {
        let key = member.key.as_ref();
        match &member.value.kind {
            Kind::Null => {
                section.remove(key);
            }
            Kind::Object(inner) => {
                if let Some(Node::Object(existing)) = section.get_mut(key) {
                    merge(existing, inner, timestamp);
                    if existing.is_empty() {
                        section.remove(key);
                    }
                } else {
                    let mut fresh = Section::new();
                    merge(&mut fresh, inner, timestamp);
                    if fresh.is_empty() {
                        section.remove(key);
                    } else {
                        section.insert(key.to_owned(), Node::Object(fresh));
                    }
                }
            }
            _ => {
                if let Some(node) = Node::from_json(&member.value, timestamp) {
                    section.insert(key.to_owned(), node);
                }
            }
        }
    }
}

/// One member of a delta: the desired value whole, or the members of a nested object that differ.
#[derive(Debug)]
pub(crate) enum Delta<'a> {
    Whole(&'a Node),
    Partial(Vec<(&'a str, Delta<'a>)>),
}

/// The delta (digest R-10): every desired member that reported lacks or that differs from it,
/// objects compared member by member (giving the path to the root), arrays and scalars whole.
pub(crate) fn delta<'a>(desired: &'a Section, reported: &'a Section) -> Vec<(&'a str, Delta<'a>)> {
    let mut out = Vec::new();
    for (key, want) in desired {
        match (want, reported.get(key)) {
            (_, None) => out.push((key.as_str(), Delta::Whole(want))),
            (Node::Object(w), Some(Node::Object(have))) => {
                let inner = delta(w, have);
                if !inner.is_empty() {
                    out.push((key.as_str(), Delta::Partial(inner)));
                }
            }
            (_, Some(have)) => {
                if !same_value(want, have) {
                    out.push((key.as_str(), Delta::Whole(want)));
                }
            }
        }
    }
    out
}

/// Value equality, timestamps ignored.
pub(crate) fn same_value(a: &Node, b: &Node) -> bool {
    match (a, b) {
        (Node::Leaf { value: x, .. }, Node::Leaf { value: y, .. }) => match (x, y) {
            (Scalar::Number(x), Scalar::Number(y)) => same_number(x, y),
            _ => x == y,
        },
        (Node::Array(x), Node::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y))
        }
        (Node::Object(x), Node::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, x), (ky, y))| kx == ky && same_value(x, y))
        }
        _ => false,
    }
}

/// Number equality as AWS's JSON model has it (F-S10 reading): an integer and a number written
/// with a fraction or exponent are different values (`1` ≠ `1.0`, as in Jackson's `IntNode` vs
/// `DoubleNode`); two integers are equal when their digits are (`-0` = `0`); two non-integers
/// when their IEEE doubles are (`1.0` = `1.00`).
pub(crate) fn same_number(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let is_int = |s: &str| !s.contains(['.', 'e', 'E']);
    match (is_int(a), is_int(b)) {
        (true, true) => {
            fn norm(s: &str) -> &str {
                if s == "-0" { "0" } else { s }
            }
            norm(a) == norm(b)
        }
        (false, false) => match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        },
        _ => false,
    }
}

// ---- JSON writers -------------------------------------------------------------------------

pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

pub(crate) fn write_u64(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn write_timestamp(out: &mut Vec<u8>, timestamp: u64) {
    out.extend_from_slice(b"{\"timestamp\":");
    write_u64(out, timestamp);
    out.push(b'}');
}

/// Writes `{"k":v,...}` for the pairs, with `each` writing a value.
fn write_object<'a, T: 'a>(
    out: &mut Vec<u8>,
    pairs: impl IntoIterator<Item = (&'a str, &'a T)>,
    mut each: impl FnMut(&mut Vec<u8>, &'a T),
) {
    out.push(b'{');
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        each(out, v);
    }
    out.push(b'}');
}

fn write_array<'a, T: 'a>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = &'a T>,
    mut each: impl FnMut(&mut Vec<u8>, &'a T),
) {
    out.push(b'[');
    for (i, v) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(out, v);
    }
    out.push(b']');
}

pub(crate) fn write_value(out: &mut Vec<u8>, node: &Node) {
    match node {
        Node::Leaf { value, .. } => match value {
            Scalar::Bool(true) => out.extend_from_slice(b"true"),
            Scalar::Bool(false) => out.extend_from_slice(b"false"),
            Scalar::Number(n) => out.extend_from_slice(n.as_bytes()),
            Scalar::String(s) => write_str(out, s),
        },
        Node::Array(items) => write_array(out, items, write_value),
        Node::Object(section) => write_section(out, section),
    }
}

pub(crate) fn write_meta(out: &mut Vec<u8>, node: &Node) {
    match node {
        Node::Leaf { timestamp, .. } => write_timestamp(out, *timestamp),
        Node::Array(items) => write_array(out, items, write_meta),
        Node::Object(section) => write_section_meta(out, section),
    }
}

pub(crate) fn write_section(out: &mut Vec<u8>, section: &Section) {
    write_object(
        out,
        section.iter().map(|(k, v)| (k.as_str(), v)),
        write_value,
    );
}

pub(crate) fn write_section_meta(out: &mut Vec<u8>, section: &Section) {
    write_object(
        out,
        section.iter().map(|(k, v)| (k.as_str(), v)),
        write_meta,
    );
}

pub(crate) fn write_delta(out: &mut Vec<u8>, delta: &[(&str, Delta<'_>)]) {
    write_object(out, delta.iter().map(|(k, v)| (*k, v)), |out, d| match d {
        Delta::Whole(node) => write_value(out, node),
        Delta::Partial(inner) => write_delta(out, inner),
    });
}

pub(crate) fn write_delta_meta(out: &mut Vec<u8>, delta: &[(&str, Delta<'_>)]) {
    write_object(out, delta.iter().map(|(k, v)| (*k, v)), |out, d| match d {
        Delta::Whole(node) => write_meta(out, node),
        Delta::Partial(inner) => write_delta_meta(out, inner),
    });
}

/// Writes a request value as received (nulls included): the echo in `/update/accepted` (R-04).
pub(crate) fn write_json(out: &mut Vec<u8>, json: &Json<'_>) {
    match &json.kind {
        Kind::Null => out.extend_from_slice(b"null"),
        Kind::Bool(true) => out.extend_from_slice(b"true"),
        Kind::Bool(false) => out.extend_from_slice(b"false"),
        Kind::Number(n) => out.extend_from_slice(n.as_bytes()),
        Kind::String(s) => write_str(out, s),
        Kind::Array(items) => write_array(out, items, write_json),
        Kind::Object(members) => write_object(
            out,
            members.iter().map(|m| (m.key.as_ref(), &m.value)),
            write_json,
        ),
    }
}

/// Writes the metadata of a request value: `{"timestamp": t}` per leaf, null leaves included
/// (R-07: `"desired": null` gets `"desired": {"timestamp": t}`).
pub(crate) fn write_json_meta(out: &mut Vec<u8>, json: &Json<'_>, timestamp: u64) {
    match &json.kind {
        Kind::Array(items) => write_array(out, items, |out, i| write_json_meta(out, i, timestamp)),
        Kind::Object(members) => write_object(
            out,
            members.iter().map(|m| (m.key.as_ref(), &m.value)),
            |out, v| write_json_meta(out, v, timestamp),
        ),
        _ => write_timestamp(out, timestamp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_fractions_are_different_numbers() {
        assert!(same_number("1", "1"));
        assert!(same_number("-0", "0"));
        assert!(!same_number("1", "1.0"));
        assert!(same_number("1.0", "1.00"));
        assert!(same_number("1e2", "100.0"));
        assert!(!same_number("1e2", "100"));
    }

    #[test]
    fn escapes_strings_as_json() {
        let mut out = Vec::new();
        write_str(&mut out, "a\"b\\c\n\u{1}é");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\\"b\\\\c\\n\\u0001é\""
        );
    }
}
