//! [`StoredShadow`]: what is kept per shadow, and its byte encoding.
//!
//! Encoding (all integers LEB128 varints unless noted):
//! `"TKS" 1` (magic and format version), then kind `0` (document) or `1` (deleted),
//! `version`, `timestamp`; a document then has its desired and reported sections. A section is
//! a count and that many `(key, node)` pairs in strictly increasing key order (so one shadow has
//! one encoding); a key or string is a length and UTF-8 bytes. A node is a tag — `0` false,
//! `1` true, `2` number (its JSON text), `3` string, each followed by its timestamp; `4` array
//! (count, nodes); `5` object (a section).

use crate::document::{Node, Scalar, Section};
use crate::error::DecodeError;

const MAGIC: &[u8; 4] = b"TKS\x01";
/// Deepest nesting [`StoredShadow::from_bytes`] accepts (far above any shadow limit; it bounds
/// the decoder's recursion on corrupt input).
pub const MAX_STORED_DEPTH: usize = 128;

/// What is stored per shadow: the document, or a tombstone that keeps the version of a deleted
/// shadow so that a re-created one continues from it (digest R-20).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredShadow {
    pub(crate) body: Body,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Body {
    Document(Document),
    Deleted { version: u64, deleted_at: u64 },
}

/// A live shadow document.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Document {
    pub(crate) desired: Section,
    pub(crate) reported: Section,
    pub(crate) version: u64,
    /// When the last accepted update was made (Unix seconds).
    pub(crate) timestamp: u64,
}

impl StoredShadow {
    /// The document's version, or the version a deleted shadow had.
    pub fn version(&self) -> u64 {
        match &self.body {
            Body::Document(d) => d.version,
            Body::Deleted { version, .. } => *version,
        }
    }

    /// Whether this is a deleted shadow (a tombstone).
    pub fn is_deleted(&self) -> bool {
        matches!(self.body, Body::Deleted { .. })
    }

    /// When the last accepted update (or the deletion) happened, in Unix seconds.
    pub fn timestamp(&self) -> u64 {
        match &self.body {
            Body::Document(d) => d.timestamp,
            Body::Deleted { deleted_at, .. } => *deleted_at,
        }
    }

    /// The stored form: see the module documentation for the format.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(MAGIC);
        match &self.body {
            Body::Document(d) => {
                out.push(0);
                put_varint(&mut out, d.version);
                put_varint(&mut out, d.timestamp);
                put_section(&mut out, &d.desired);
                put_section(&mut out, &d.reported);
            }
            Body::Deleted {
                version,
                deleted_at,
            } => {
                out.push(1);
                put_varint(&mut out, *version);
                put_varint(&mut out, *deleted_at);
            }
        }
        out
    }

    /// Reads the stored form strictly: any byte out of place is an error, never a panic.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] with the offset and the rule broken (bad magic, truncation, an invalid
    /// number, keys out of order, nesting beyond [`MAX_STORED_DEPTH`], trailing bytes, ...).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader { bytes, pos: 0 };
        if bytes.get(..4) != Some(MAGIC.as_slice()) {
            return Err(r.err("not a thingkit stored shadow (magic TKS, format 1)"));
        }
        r.pos = 4;
        let kind = r.byte()?;
        let version = r.varint()?;
        let timestamp = r.varint()?;
        let body = match kind {
            0 => {
                let desired = r.section(0)?;
                let reported = r.section(0)?;
                Body::Document(Document {
                    desired,
                    reported,
                    version,
                    timestamp,
                })
            }
            1 => Body::Deleted {
                version,
                deleted_at: timestamp,
            },
            _ => {
                r.pos = 4;
                return Err(r.err("unknown record kind"));
            }
        };
        if r.pos != bytes.len() {
            return Err(r.err("trailing bytes"));
        }
        Ok(StoredShadow { body })
    }
}

/// Whether stored bytes are a tombstone, without decoding the document.
#[cfg_attr(not(feature = "redb"), allow(dead_code))]
pub(crate) fn is_tombstone(bytes: &[u8]) -> bool {
    bytes.get(..4) == Some(MAGIC.as_slice()) && bytes.get(4) == Some(&1)
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_section(out: &mut Vec<u8>, section: &Section) {
    put_varint(out, section.len() as u64);
    for (k, v) in section {
        put_str(out, k);
        put_node(out, v);
    }
}

fn put_node(out: &mut Vec<u8>, node: &Node) {
    match node {
        Node::Leaf { value, timestamp } => {
            match value {
                Scalar::Bool(b) => out.push(u8::from(*b)),
                Scalar::Number(n) => {
                    out.push(2);
                    put_str(out, n);
                }
                Scalar::String(s) => {
                    out.push(3);
                    put_str(out, s);
                }
            }
            put_varint(out, *timestamp);
        }
        Node::Array(items) => {
            out.push(4);
            put_varint(out, items.len() as u64);
            for i in items {
                put_node(out, i);
            }
        }
        Node::Object(section) => {
            out.push(5);
            put_section(out, section);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, detail: &'static str) -> DecodeError {
        DecodeError {
            offset: self.pos,
            detail,
        }
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.bytes.get(self.pos).ok_or(self.err("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return Err(self.err("varint overflows u64"));
            }
            n |= part << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(self.err("varint overflows u64"))
    }

    /// A count of items that each take at least one byte: never more than the bytes left, so a
    /// corrupt count cannot make the decoder allocate more than the input.
    fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        let left = (self.bytes.len() - self.pos) as u64;
        if n > left {
            return Err(self.err("count larger than the bytes left"));
        }
        usize::try_from(n).map_err(|_| self.err("count too large"))
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let len = self.count()?;
        let raw = self
            .bytes
            .get(self.pos..self.pos + len)
            .ok_or(self.err("truncated"))?;
        let s = std::str::from_utf8(raw).map_err(|_| self.err("string is not UTF-8"))?;
        self.pos += len;
        Ok(s)
    }

    fn section(&mut self, depth: usize) -> Result<Section, DecodeError> {
        if depth > MAX_STORED_DEPTH {
            return Err(self.err("nesting deeper than MAX_STORED_DEPTH"));
        }
        let n = self.count()?;
        let mut section = Section::new();
        let mut last: Option<&str> = None;
        for _ in 0..n {
            let key = self.str()?;
            if last.is_some_and(|l| l >= key) {
                return Err(self.err("object keys not in strictly increasing order"));
            }
            last = Some(key);
            let node = self.node(depth + 1)?;
            section.insert(key.to_owned(), node);
        }
        Ok(section)
    }

    fn node(&mut self, depth: usize) -> Result<Node, DecodeError> {
        if depth > MAX_STORED_DEPTH {
            return Err(self.err("nesting deeper than MAX_STORED_DEPTH"));
        }
        let value = match self.byte()? {
            0 => Scalar::Bool(false),
            1 => Scalar::Bool(true),
            2 => {
                let start = self.pos;
                let text = self.str()?;
                let ok = matches!(
                    thingkit_json::parse(text, thingkit_json::Limits::default()),
                    Ok(p) if matches!(p.root.kind, thingkit_json::Kind::Number(n) if n.len() == text.len())
                );
                if !ok {
                    self.pos = start;
                    return Err(self.err("invalid JSON number"));
                }
                Scalar::Number(text.into())
            }
            3 => Scalar::String(self.str()?.into()),
            4 => {
                let n = self.count()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.node(depth + 1)?);
                }
                return Ok(Node::Array(items));
            }
            5 => return Ok(Node::Object(self.section(depth)?)),
            _ => {
                self.pos -= 1;
                return Err(self.err("unknown node tag"));
            }
        };
        let timestamp = self.varint()?;
        Ok(Node::Leaf { value, timestamp })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            &b""[..],
            b"TKS",
            b"TKS\x01",
            b"TKS\x01\x02\x00\x00",
            b"TKS\x01\x00\x01\x01\x05",
            b"TKS\x01\x01\x01\x01\x00",
            b"TKS\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f",
        ] {
            assert!(StoredShadow::from_bytes(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tombstone_round_trips() {
        let s = StoredShadow {
            body: Body::Deleted {
                version: 7,
                deleted_at: 1_700_000_000,
            },
        };
        let bytes = s.to_bytes();
        assert!(is_tombstone(&bytes));
        assert_eq!(StoredShadow::from_bytes(&bytes).unwrap(), s);
    }
}
