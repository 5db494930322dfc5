//! A strict, limit-bounded JSON reader that keeps the byte offset of every value and key.
//!
//! `serde_json::Value` forgets positions and silently keeps the last of duplicate keys; a checker
//! that must point at the offending element (a policy, a provisioning template) and refuse
//! ambiguous documents needs both. This reader accepts exactly RFC 8259 JSON (no comments, no
//! trailing commas, no leading zeros, no lone surrogates), stops at the configured [`Limits`]
//! before doing work proportional to the excess, and records duplicate keys instead of dropping
//! them so a caller can report every one of them. [`LineIndex`] turns offsets into line:column.
//!
//! ```
//! use thingkit_json::{Kind, LineIndex, Limits, parse};
//!
//! let text = "{\"a\": [1, \"x\"],\n \"a\": null}";
//! let parsed = parse(text, Limits::default())?;
//! let Kind::Object(members) = &parsed.root.kind else { unreachable!() };
//! assert_eq!(members[0].key, "a");
//! // The duplicate is kept and reported with both positions.
//! let dup = &parsed.duplicates[0];
//! assert_eq!(LineIndex::new(text).line_col(text, dup.offset), (2, 2));
//! assert_eq!(dup.first_offset, 1);
//! # Ok::<(), thingkit_json::SyntaxError>(())
//! ```
//!
//! # Cargo features
//!
//! None: no optional parts, no I/O, no dependencies.
//!
//! # Specifications implemented
//!
//! RFC 8259 (JSON) §2–§8, read strictly: §4's "names SHOULD be unique" is reported (duplicate keys
//! are kept in [`Parsed::duplicates`] for the caller to refuse), §6 numbers are checked against the
//! grammar and kept as source text, §7 escapes and §8.2 surrogate pairs are checked.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::borrow::Cow;

/// A parsed JSON value with the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node<'a> {
    /// Byte offset of the first character of the value.
    pub offset: usize,
    /// The value.
    pub kind: Kind<'a>,
}

/// The kinds of JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// The number's source text (already checked against the JSON grammar).
    Number(&'a str),
    /// A string, unescaped (borrowed from the input when it had no escapes).
    String(Cow<'a, str>),
    /// An array's items in order.
    Array(Vec<Node<'a>>),
    /// An object's members in source order, duplicates included.
    Object(Vec<Member<'a>>),
}

/// One `"key": value` pair of an object, in source order (duplicates kept).
#[derive(Debug, Clone, PartialEq)]
pub struct Member<'a> {
    /// Byte offset of the key's opening quote.
    pub key_offset: usize,
    /// The decoded key.
    pub key: Cow<'a, str>,
    /// The value.
    pub value: Node<'a>,
}

impl Kind<'_> {
    /// A short name of the JSON type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Number(_) => "a number",
            Kind::String(_) => "a string",
            Kind::Array(_) => "an array",
            Kind::Object(_) => "an object",
        }
    }
}

/// A syntax error or exceeded limit found while reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at byte {offset}")]
pub struct SyntaxError {
    /// Byte offset of the problem.
    pub offset: usize,
    /// What was wrong.
    pub message: String,
    /// Set when a limit (rather than the grammar) was violated: the limit's name and value.
    pub limit: Option<(&'static str, usize)>,
}

/// A duplicate key: its offset, the key, and the offset of its first occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// Byte offset of the repeated key's opening quote.
    pub offset: usize,
    /// The decoded key.
    pub key: String,
    /// Byte offset of the key's first occurrence in the same object.
    pub first_offset: usize,
}

/// The result of reading a document: the root value and every duplicate key seen.
#[derive(Debug)]
pub struct Parsed<'a> {
    /// The document's value.
    pub root: Node<'a>,
    /// Every repeated key, in source order; empty for a document RFC 8259 calls interoperable.
    pub duplicates: Vec<DuplicateKey>,
}

/// How much a document may contain. Both limits are checked as the reader goes, so an input over
/// a limit costs no more than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Deepest nesting of arrays and objects. Default 64.
    pub max_depth: usize,
    /// Most values (scalars, arrays and objects, counted as they start) in one document.
    /// Default 100,000.
    pub max_values: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_values: 100_000,
        }
    }
}

impl Limits {
    /// These limits with `max_depth` replaced.
    pub fn with_max_depth(mut self, max_depth: usize) -> Self {
        self.max_depth = max_depth;
        self
    }

    /// These limits with `max_values` replaced.
    pub fn with_max_values(mut self, max_values: usize) -> Self {
        self.max_values = max_values;
        self
    }
}

/// Byte offset → 1-based line and column (in characters), from a table of line starts built once
/// per document.
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    /// Indexes the line starts of `text`.
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex { starts }
    }

    /// The line and column of byte `offset` in `text` (the text this index was built from).
    /// An offset past the end gives the position just after the last character.
    pub fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let line = self.starts.partition_point(|s| *s <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let column = text
            .get(start..offset.min(text.len()))
            .map_or(1, |s| s.chars().count() + 1);
        (line, column)
    }
}

/// Reads one JSON document from `text`.
pub fn parse(text: &str, limits: Limits) -> Result<Parsed<'_>, SyntaxError> {
    let mut reader = Reader {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        depth: 0,
        members: 0,
        limits,
        duplicates: Vec::new(),
    };
    reader.skip_ws();
    let root = reader.value()?;
    reader.skip_ws();
    if reader.pos != reader.bytes.len() {
        return Err(reader.error("unexpected characters after the JSON value"));
    }
    Ok(Parsed {
        root,
        duplicates: reader.duplicates,
    })
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
    members: usize,
    limits: Limits,
    duplicates: Vec<DuplicateKey>,
}

impl<'a> Reader<'a> {
    fn error(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            offset: self.pos,
            message: message.into(),
            limit: None,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect_literal(&mut self, word: &str) -> Result<(), SyntaxError> {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error(format!("invalid literal, expected `{word}`")))
        }
    }

    fn count_member(&mut self) -> Result<(), SyntaxError> {
        self.members += 1;
        if self.members > self.limits.max_values {
            return Err(SyntaxError {
                offset: self.pos,
                message: format!(
                    "more than {} JSON values (limit max_values)",
                    self.limits.max_values
                ),
                limit: Some(("max_values", self.limits.max_values)),
            });
        }
        Ok(())
    }

    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(SyntaxError {
                offset: self.pos,
                message: format!(
                    "nesting deeper than {} (limit max_depth)",
                    self.limits.max_depth
                ),
                limit: Some(("max_depth", self.limits.max_depth)),
            });
        }
        Ok(())
    }

    fn value(&mut self) -> Result<Node<'a>, SyntaxError> {
        self.count_member()?;
        let offset = self.pos;
        let kind = match self.peek() {
            None => return Err(self.error("unexpected end of input, expected a value")),
            Some(b'n') => {
                self.expect_literal("null")?;
                Kind::Null
            }
            Some(b't') => {
                self.expect_literal("true")?;
                Kind::Bool(true)
            }
            Some(b'f') => {
                self.expect_literal("false")?;
                Kind::Bool(false)
            }
            Some(b'"') => Kind::String(self.string()?),
            Some(b'-' | b'0'..=b'9') => Kind::Number(self.number()?),
            Some(b'[') => self.array()?,
            Some(b'{') => self.object()?,
            Some(_) => return Err(self.error("unexpected character, expected a value")),
        };
        Ok(Node { offset, kind })
    }

    fn array(&mut self) -> Result<Kind<'a>, SyntaxError> {
        self.enter()?;
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Kind::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value()?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.error("expected `,` or `]` in array")),
            }
        }
        self.depth -= 1;
        Ok(Kind::Array(items))
    }

    fn object(&mut self) -> Result<Kind<'a>, SyntaxError> {
        self.enter()?;
        self.pos += 1; // '{'
        let mut members: Vec<Member<'a>> = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Kind::Object(members));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key in object"));
            }
            let key_offset = self.pos;
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.error("expected `:` after object key"));
            }
            self.pos += 1;
            self.skip_ws();
            let value = self.value()?;
            if let Some(first) = members.iter().find(|m| m.key == key) {
                self.duplicates.push(DuplicateKey {
                    offset: key_offset,
                    key: key.to_string(),
                    first_offset: first.key_offset,
                });
            }
            members.push(Member {
                key_offset,
                key,
                value,
            });
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.error("expected `,` or `}` in object")),
            }
        }
        self.depth -= 1;
        Ok(Kind::Object(members))
    }

    fn number(&mut self) -> Result<&'a str, SyntaxError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.error("leading zeros are not allowed in numbers"));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("expected a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("expected a digit after `.`"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("expected a digit in exponent"));
            }
            self.digits();
        }
        Ok(self.text.get(start..self.pos).unwrap_or_default())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn string(&mut self) -> Result<Cow<'a, str>, SyntaxError> {
        self.pos += 1; // opening quote
        let start = self.pos;
        // Fast path: no escapes.
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    let s = self.text.get(start..self.pos).unwrap_or_default();
                    self.pos += 1;
                    return Ok(Cow::Borrowed(s));
                }
                Some(b'\\') => break,
                Some(0x00..=0x1f) => {
                    return Err(self.error("control character in string (must be escaped)"));
                }
                Some(_) => self.pos += 1,
            }
        }
        let mut out = String::from(self.text.get(start..self.pos).unwrap_or_default());
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let c = self.unicode_escape()?;
                            out.push(c);
                            continue;
                        }
                        _ => return Err(self.error("invalid escape in string")),
                    };
                    self.pos += 1;
                    out.push(c);
                }
                Some(0x00..=0x1f) => {
                    return Err(self.error("control character in string (must be escaped)"));
                }
                Some(_) => {
                    // Copy one UTF-8 character (the input is a &str, so boundaries are valid).
                    let rest = self.text.get(self.pos..).unwrap_or_default();
                    match rest.chars().next() {
                        Some(c) => {
                            out.push(c);
                            self.pos += c.len_utf8();
                        }
                        None => return Err(self.error("unterminated string")),
                    }
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                _ => return Err(self.error("expected four hex digits after `\\u`")),
            };
            v = v * 16 + u32::from(d);
            self.pos += 1;
        }
        Ok(v)
    }

    fn unicode_escape(&mut self) -> Result<char, SyntaxError> {
        let hi = self.hex4()?;
        if (0xD800..0xDC00).contains(&hi) {
            if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                return Err(self.error("unpaired UTF-16 surrogate in `\\u` escape"));
            }
            self.pos += 2;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.error("unpaired UTF-16 surrogate in `\\u` escape"));
            }
            let code = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
            char::from_u32(code).ok_or_else(|| self.error("invalid `\\u` escape"))
        } else if (0xDC00..0xE000).contains(&hi) {
            Err(self.error("unpaired UTF-16 surrogate in `\\u` escape"))
        } else {
            char::from_u32(hi).ok_or_else(|| self.error("invalid `\\u` escape"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_depth: 8,
        max_values: 1000,
    };

    #[test]
    fn reads_nested_values_with_offsets() {
        let p = parse(
            r#" {"a": [1, "x", true, null], "b": {"c": -0.5e3}} "#,
            LIMITS,
        )
        .unwrap();
        assert_eq!(p.root.offset, 1);
        let Kind::Object(m) = &p.root.kind else {
            panic!()
        };
        assert_eq!(m[0].key, "a");
        assert_eq!(m[0].key_offset, 2);
        assert!(p.duplicates.is_empty());
    }

    #[test]
    fn records_duplicate_keys_with_both_offsets() {
        let p = parse(r#"{"a":1,"a":2}"#, LIMITS).unwrap();
        assert_eq!(
            p.duplicates,
            vec![DuplicateKey {
                offset: 7,
                key: "a".into(),
                first_offset: 1
            }]
        );
    }

    #[test]
    fn decodes_escapes_and_surrogate_pairs() {
        let p = parse(r#""a\n\u00e9\ud83d\ude00/""#, LIMITS).unwrap();
        assert_eq!(p.root.kind, Kind::String("a\né😀/".into()));
    }

    #[test]
    fn rejects_non_json() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "01",
            "1.",
            "\"\\ud800\"",
            "\"a\u{1}\"",
            "tru",
            "{} x",
            "'a'",
            "{a:1}",
            "[1 2]",
            "-",
            "1e",
        ] {
            assert!(parse(bad, LIMITS).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn rejects_nesting_beyond_max_depth() {
        let deep = "[".repeat(9) + &"]".repeat(9);
        let e = parse(&deep, LIMITS).unwrap_err();
        assert_eq!(e.limit, Some(("max_depth", 8)));
        let ok = "[".repeat(8) + &"]".repeat(8);
        assert!(parse(&ok, LIMITS).is_ok());
    }
}
