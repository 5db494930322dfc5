//! The strict CBOR codec; documented on [`Value`] (exported as `CborValue`).

use crate::error::{CborError, Error, Result};

/// Limits applied while decoding untrusted CBOR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CborLimits {
    /// Maximum nesting depth of arrays, maps and tags. Default 16 (a SUIT manifest needs about 6
    /// per bstr-wrapped level).
    pub max_depth: usize,
    /// Maximum number of data items decoded in one call. Default 4096.
    pub max_items: usize,
    /// Require map keys in the bytewise lexicographic order of their encodings (RFC 8949 section
    /// 4.2.1). Default `true`; with `false`, keys may come in any order but duplicates are still
    /// refused.
    pub sorted_map_keys: bool,
}

impl CborLimits {
    /// This value with [`max_depth`](Self::max_depth) replaced.
    pub fn with_max_depth(mut self, max_depth: usize) -> Self {
        self.max_depth = max_depth;
        self
    }

    /// This value with [`max_items`](Self::max_items) replaced.
    pub fn with_max_items(mut self, max_items: usize) -> Self {
        self.max_items = max_items;
        self
    }

    /// This value with [`sorted_map_keys`](Self::sorted_map_keys) replaced.
    pub fn with_sorted_map_keys(mut self, sorted_map_keys: bool) -> Self {
        self.sorted_map_keys = sorted_map_keys;
        self
    }
}

impl Default for CborLimits {
    fn default() -> Self {
        CborLimits {
            max_depth: 16,
            max_items: 4096,
            sorted_map_keys: true,
        }
    }
}

/// An owned CBOR data item (the subset SUIT and COSE use: no floats).
///
/// A small, strict, deterministic CBOR codec (RFC 8949).
///
/// Decoding accepts only the *core deterministic* form of RFC 8949 section 4.2.1 and refuses
/// everything else with an [`Error::Cbor`] naming the byte offset and the rule:
///
/// - integers, lengths and tags in their shortest form;
/// - no indefinite-length strings, arrays or maps;
/// - no duplicate map keys, and (by default) keys in bytewise lexicographic order of their
///   encodings;
/// - no floating-point values, no reserved additional-information values;
/// - exactly one top-level item, with no trailing bytes;
/// - declared lengths checked against the bytes actually present *before* anything is allocated,
///   nesting depth and total item count bounded by [`CborLimits`].
///
/// Encoding always produces the deterministic form, so `encode(decode(x)) == x` for every `x` the
/// decoder accepts (with sorted keys required). The codec is used for the SUIT envelope and
/// manifest, COSE structures and the trust-anchor set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Major type 0: an unsigned integer.
    Unsigned(u64),
    /// Major type 1: the negative integer `-1 - n`.
    Negative(u64),
    /// Major type 2: a byte string.
    Bytes(Vec<u8>),
    /// Major type 3: a UTF-8 text string.
    Text(String),
    /// Major type 4: an array.
    Array(Vec<Value>),
    /// Major type 5: a map, in the order its entries appear on the wire.
    Map(Vec<(Value, Value)>),
    /// Major type 6: a tagged item.
    Tag(u64, Box<Value>),
    /// Simple values `false` and `true`.
    Bool(bool),
    /// Simple value `null`.
    Null,
    /// Simple value `undefined`.
    Undefined,
}

impl Value {
    /// An integer as a [`Value`].
    pub fn int(v: i64) -> Value {
        if v >= 0 {
            Value::Unsigned(v as u64)
        } else {
            Value::Negative((-1 - v) as u64)
        }
    }

    /// A map with its entries sorted into deterministic order (bytewise order of encoded keys).
    pub fn canonical_map(mut entries: Vec<(Value, Value)>) -> Value {
        entries.sort_by_cached_key(|(k, _)| k.to_vec());
        Value::Map(entries)
    }

    /// This item as an `i64`, if it is an integer in range.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Unsigned(u) => i64::try_from(u).ok(),
            Value::Negative(n) => i64::try_from(n).ok().map(|n| -1 - n),
            _ => None,
        }
    }

    /// This item as a `u64`, if it is an unsigned integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Unsigned(u) => Some(u),
            _ => None,
        }
    }

    /// The content of a byte string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The content of a text string.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }

    /// The elements of an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The entries of a map.
    pub fn as_map(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Appends the deterministic encoding of this item to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Unsigned(u) => write_head(out, 0, *u),
            Value::Negative(n) => write_head(out, 1, *n),
            Value::Bytes(b) => {
                write_head(out, 2, b.len() as u64);
                out.extend_from_slice(b);
            }
            Value::Text(t) => {
                write_head(out, 3, t.len() as u64);
                out.extend_from_slice(t.as_bytes());
            }
            Value::Array(a) => {
                write_head(out, 4, a.len() as u64);
                for v in a {
                    v.encode(out);
                }
            }
            Value::Map(m) => {
                write_head(out, 5, m.len() as u64);
                for (k, v) in m {
                    k.encode(out);
                    v.encode(out);
                }
            }
            Value::Tag(t, v) => {
                write_head(out, 6, *t);
                v.encode(out);
            }
            Value::Bool(false) => out.push(0xf4),
            Value::Bool(true) => out.push(0xf5),
            Value::Null => out.push(0xf6),
            Value::Undefined => out.push(0xf7),
        }
    }

    /// Decodes exactly one item from `input` with the crate's strict rules (shortest-form
    /// integers and lengths, definite lengths, no duplicate map keys, no trailing bytes, declared
    /// lengths checked against the input, `limits` on depth and item count). An accepted input
    /// is deterministic: [`Value::to_vec`] gives back the same bytes.
    pub fn decode(input: &[u8], limits: &CborLimits) -> Result<Value> {
        decode(input, limits)
    }

    /// The deterministic encoding of this item.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Writes a CBOR head (major type and argument) in its shortest form.
pub(crate) fn write_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let mt = major << 5;
    if arg < 24 {
        out.push(mt | arg as u8);
    } else if arg <= u64::from(u8::MAX) {
        out.push(mt | 24);
        out.push(arg as u8);
    } else if arg <= u64::from(u16::MAX) {
        out.push(mt | 25);
        out.extend_from_slice(&(arg as u16).to_be_bytes());
    } else if arg <= u64::from(u32::MAX) {
        out.push(mt | 26);
        out.extend_from_slice(&(arg as u32).to_be_bytes());
    } else {
        out.push(mt | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

/// Appends `bytes` as a CBOR byte string (the "bstr wrapping" SUIT uses everywhere).
pub(crate) fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_head(out, 2, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Decodes exactly one item from `input`, refusing trailing bytes.
pub(crate) fn decode(input: &[u8], limits: &CborLimits) -> Result<Value> {
    let mut d = Decoder::new(input, limits);
    let v = d.value()?;
    d.finish()?;
    Ok(v)
}

/// A cursor over strict CBOR: read heads and items one at a time, with the exact byte spans of
/// what was read (signatures are checked over those received bytes, never over re-encodings).
#[derive(Debug, Clone)]
pub(crate) struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    limits: CborLimits,
    items: usize,
    depth: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder at the start of `input`.
    pub(crate) fn new(input: &'a [u8], limits: &CborLimits) -> Self {
        Decoder {
            input,
            pos: 0,
            limits: *limits,
            items: 0,
            depth: 0,
        }
    }

    /// The current byte offset.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub(crate) fn remaining(&self) -> usize {
        self.input.len() - self.pos
    }

    /// Fails with [`CborError::TrailingBytes`] unless all input was consumed.
    pub(crate) fn finish(&self) -> Result<()> {
        if self.pos != self.input.len() {
            return Err(self.err_at(self.pos, CborError::TrailingBytes));
        }
        Ok(())
    }

    fn err_at(&self, offset: usize, reason: CborError) -> Error {
        Error::Cbor { offset, reason }
    }

    fn byte(&mut self) -> Result<u8> {
        let b = *self.input.get(self.pos).ok_or(Error::Cbor {
            offset: self.pos,
            reason: CborError::Truncated,
        })?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.input.len())
            .ok_or(Error::Cbor {
                offset: self.pos,
                reason: CborError::LengthExceedsInput,
            })?;
        let s = &self.input[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The major type of the next item without consuming it.
    pub(crate) fn peek_major(&self) -> Result<u8> {
        self.input
            .get(self.pos)
            .map(|b| b >> 5)
            .ok_or(self.err_at(self.pos, CborError::Truncated))
    }

    /// Reads one head: (major type, argument). Refuses indefinite lengths, reserved values,
    /// floats and non-shortest arguments. Simple values are returned with major type 7.
    fn head(&mut self) -> Result<(u8, u64)> {
        let start = self.pos;
        self.items += 1;
        if self.items > self.limits.max_items {
            return Err(self.err_at(start, CborError::TooManyItems));
        }
        let ib = self.byte()?;
        let major = ib >> 5;
        let ai = ib & 0x1f;
        let arg = match ai {
            0..=23 => u64::from(ai),
            24 => {
                let v = u64::from(self.byte()?);
                if major == 7 {
                    // Two-byte simple values below 32 are not well-formed; the others are unused.
                    return Err(self.err_at(start, CborError::Reserved));
                }
                if v < 24 {
                    return Err(self.err_at(start, CborError::NonShortest));
                }
                v
            }
            25..=27 => {
                if major == 7 {
                    return Err(self.err_at(start, CborError::Float));
                }
                let n = 1usize << (ai - 24);
                let bytes = self
                    .take(n)
                    .map_err(|_| self.err_at(start, CborError::Truncated))?;
                let mut v = 0u64;
                for b in bytes {
                    v = (v << 8) | u64::from(*b);
                }
                let min = match ai {
                    25 => 0x100,
                    26 => 0x1_0000,
                    _ => 0x1_0000_0000,
                };
                if v < min {
                    return Err(self.err_at(start, CborError::NonShortest));
                }
                v
            }
            31 => return Err(self.err_at(start, CborError::Indefinite)),
            _ => return Err(self.err_at(start, CborError::Reserved)),
        };
        if major == 7 && !(20..=23).contains(&arg) {
            return Err(self.err_at(start, CborError::Reserved));
        }
        Ok((major, arg))
    }

    fn expect(&mut self, want: u8) -> Result<u64> {
        let start = self.pos;
        let (major, arg) = self.head()?;
        if major != want {
            return Err(self.err_at(start, CborError::UnexpectedType));
        }
        Ok(arg)
    }

    /// Reads an integer that fits `i64`.
    pub(crate) fn int(&mut self) -> Result<i64> {
        let start = self.pos;
        let (major, arg) = self.head()?;
        let range = || Error::Cbor {
            offset: start,
            reason: CborError::IntegerRange,
        };
        match major {
            0 => i64::try_from(arg).map_err(|_| range()),
            1 => i64::try_from(arg).map(|n| -1 - n).map_err(|_| range()),
            _ => Err(self.err_at(start, CborError::UnexpectedType)),
        }
    }

    /// Reads a byte string, borrowing its content from the input.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.expect(2)?;
        self.take_len(len)
    }

    /// Reads a byte string and returns `(content, whole item including its head)`.
    pub(crate) fn bytes_with_raw(&mut self) -> Result<(&'a [u8], &'a [u8])> {
        let start = self.pos;
        let content = self.bytes()?;
        Ok((content, &self.input[start..self.pos]))
    }

    fn take_len(&mut self, len: u64) -> Result<&'a [u8]> {
        let start = self.pos;
        let len =
            usize::try_from(len).map_err(|_| self.err_at(start, CborError::LengthExceedsInput))?;
        self.take(len)
    }

    /// Reads a text string, borrowing it from the input.
    pub(crate) fn text(&mut self) -> Result<&'a str> {
        let start = self.pos;
        let len = self.expect(3)?;
        let raw = self.take_len(len)?;
        std::str::from_utf8(raw).map_err(|_| self.err_at(start, CborError::InvalidUtf8))
    }

    fn checked_count(&self, start: usize, n: u64, min_bytes_each: u64) -> Result<usize> {
        // Each element needs at least one byte: refuse counts the input cannot hold before any
        // allocation sized by them happens.
        let need = n.saturating_mul(min_bytes_each);
        if need > self.remaining() as u64 {
            return Err(self.err_at(start, CborError::LengthExceedsInput));
        }
        if n > self.limits.max_items as u64 {
            return Err(self.err_at(start, CborError::TooManyItems));
        }
        Ok(n as usize)
    }

    /// Reads an array head and returns its element count (checked against the input).
    pub(crate) fn array_len(&mut self) -> Result<usize> {
        let start = self.pos;
        let n = self.expect(4)?;
        self.checked_count(start, n, 1)
    }

    /// Reads a map head and returns its entry count (checked against the input).
    pub(crate) fn map_len(&mut self) -> Result<usize> {
        let start = self.pos;
        let n = self.expect(5)?;
        self.checked_count(start, n, 2)
    }

    /// Reads a tag number.
    pub(crate) fn tag(&mut self) -> Result<u64> {
        self.expect(6)
    }

    /// Reads `null`.
    pub(crate) fn null(&mut self) -> Result<()> {
        let start = self.pos;
        match self.head()? {
            (7, 22) => Ok(()),
            _ => Err(self.err_at(start, CborError::UnexpectedType)),
        }
    }

    /// Reads one complete item and returns its exact bytes.
    pub(crate) fn raw_value(&mut self) -> Result<&'a [u8]> {
        let start = self.pos;
        self.value()?;
        Ok(&self.input[start..self.pos])
    }

    /// Tracks map-key order for a map whose keys the caller reads one at a time.
    pub(crate) fn check_key(&self, keys: &mut Vec<&'a [u8]>, key_start: usize) -> Result<()> {
        let key = &self.input[key_start..self.pos];
        if let Some(prev) = keys.last() {
            if self.limits.sorted_map_keys {
                match (*prev).cmp(key) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => {
                        return Err(self.err_at(key_start, CborError::DuplicateKey));
                    }
                    std::cmp::Ordering::Greater => {
                        return Err(self.err_at(key_start, CborError::UnsortedKeys));
                    }
                }
            } else if keys.contains(&key) {
                return Err(self.err_at(key_start, CborError::DuplicateKey));
            }
        }
        keys.push(key);
        Ok(())
    }

    /// Reads one complete item into an owned [`Value`].
    pub(crate) fn value(&mut self) -> Result<Value> {
        let start = self.pos;
        let (major, arg) = self.head()?;
        Ok(match major {
            0 => Value::Unsigned(arg),
            1 => Value::Negative(arg),
            2 => Value::Bytes(self.take_len(arg)?.to_vec()),
            3 => {
                let raw = self.take_len(arg)?;
                let s = std::str::from_utf8(raw)
                    .map_err(|_| self.err_at(start, CborError::InvalidUtf8))?;
                Value::Text(s.to_owned())
            }
            4 => {
                let n = self.checked_count(start, arg, 1)?;
                self.enter(start)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value()?);
                }
                self.depth -= 1;
                Value::Array(items)
            }
            5 => {
                let n = self.checked_count(start, arg, 2)?;
                self.enter(start)?;
                let mut entries = Vec::with_capacity(n);
                let mut keys: Vec<&'a [u8]> = Vec::with_capacity(n);
                for _ in 0..n {
                    let key_start = self.pos;
                    let k = self.value()?;
                    self.check_key(&mut keys, key_start)?;
                    let v = self.value()?;
                    entries.push((k, v));
                }
                self.depth -= 1;
                Value::Map(entries)
            }
            6 => {
                self.enter(start)?;
                let inner = self.value()?;
                self.depth -= 1;
                Value::Tag(arg, Box::new(inner))
            }
            _ => match arg {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                22 => Value::Null,
                _ => Value::Undefined,
            },
        })
    }

    fn enter(&mut self, start: usize) -> Result<()> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(self.err_at(start, CborError::TooDeep));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(hex: &str) -> Result<Value> {
        decode(&unhex(hex), &CborLimits::default())
    }

    use crate::unhex;

    fn reason(r: Result<Value>) -> CborError {
        match r {
            Err(Error::Cbor { reason, .. }) => reason,
            other => panic!("expected a CBOR error, got {other:?}"),
        }
    }

    #[test]
    fn decodes_rfc8949_appendix_a_integers() {
        assert_eq!(dec("00").unwrap(), Value::Unsigned(0));
        assert_eq!(dec("17").unwrap(), Value::Unsigned(23));
        assert_eq!(dec("1818").unwrap(), Value::Unsigned(24));
        assert_eq!(dec("1903e8").unwrap(), Value::Unsigned(1000));
        assert_eq!(
            dec("1bffffffffffffffff").unwrap(),
            Value::Unsigned(u64::MAX)
        );
        assert_eq!(dec("20").unwrap().as_i64(), Some(-1));
        assert_eq!(dec("3863").unwrap().as_i64(), Some(-100));
    }

    #[test]
    fn rejects_non_shortest_integers_and_lengths() {
        assert_eq!(reason(dec("1817")), CborError::NonShortest);
        assert_eq!(reason(dec("190017")), CborError::NonShortest);
        assert_eq!(reason(dec("1a0000ffff")), CborError::NonShortest);
        assert_eq!(reason(dec("1b00000000ffffffff")), CborError::NonShortest);
        assert_eq!(reason(dec("5801aa")), CborError::NonShortest);
    }

    #[test]
    fn rejects_indefinite_lengths() {
        assert_eq!(reason(dec("5f42010243030405ff")), CborError::Indefinite);
        assert_eq!(reason(dec("9fff")), CborError::Indefinite);
        assert_eq!(reason(dec("bfff")), CborError::Indefinite);
    }

    #[test]
    fn rejects_duplicate_and_unsorted_map_keys() {
        assert_eq!(reason(dec("a201000100")), CborError::DuplicateKey);
        assert_eq!(reason(dec("a202000100")), CborError::UnsortedKeys);
        let relaxed = CborLimits {
            sorted_map_keys: false,
            ..CborLimits::default()
        };
        assert!(decode(&unhex("a202000100"), &relaxed).is_ok());
        assert!(matches!(
            decode(&unhex("a3010002000100"), &relaxed),
            Err(Error::Cbor {
                reason: CborError::DuplicateKey,
                offset: 5
            })
        ));
    }

    #[test]
    fn rejects_trailing_bytes_with_offset() {
        assert_eq!(
            dec("0000"),
            Err(Error::Cbor {
                offset: 1,
                reason: CborError::TrailingBytes
            })
        );
    }

    #[test]
    fn rejects_lengths_beyond_input_before_allocating() {
        assert_eq!(
            reason(dec("5bffffffffffffffff")),
            CborError::LengthExceedsInput
        );
        assert_eq!(
            reason(dec("9bffffffffffffffff")),
            CborError::LengthExceedsInput
        );
        assert_eq!(reason(dec("ba7fffffff")), CborError::LengthExceedsInput);
        assert_eq!(reason(dec("4301")), CborError::LengthExceedsInput);
    }

    #[test]
    fn rejects_nesting_beyond_the_depth_limit() {
        let deep = "81".repeat(17) + "00";
        assert_eq!(reason(dec(&deep)), CborError::TooDeep);
        let ok = "81".repeat(16) + "00";
        assert!(dec(&ok).is_ok());
    }

    #[test]
    fn rejects_floats_reserved_values_and_bad_utf8() {
        assert_eq!(reason(dec("f93c00")), CborError::Float);
        assert_eq!(reason(dec("fb3ff199999999999a")), CborError::Float);
        assert_eq!(reason(dec("1c")), CborError::Reserved);
        assert_eq!(reason(dec("f0")), CborError::Reserved);
        assert_eq!(reason(dec("f820")), CborError::Reserved);
        assert_eq!(reason(dec("62c328")), CborError::InvalidUtf8);
    }

    #[test]
    fn round_trips_nested_structures_byte_for_byte() {
        let hex = "d86ba2025827815824822f58206658ea560262696dd1f13b782239a064da7c6c5cbaf52fded428a6fc83c7e5af0341a0";
        let bytes = unhex(hex);
        let v = decode(&bytes, &CborLimits::default()).unwrap();
        assert_eq!(v.to_vec(), bytes);
    }

    #[test]
    fn canonical_map_sorts_by_encoded_key() {
        let m = Value::canonical_map(vec![
            (Value::Text("a".into()), Value::Null),
            (Value::int(-1), Value::Null),
            (Value::int(10), Value::Null),
            (Value::int(100), Value::Null),
        ]);
        assert_eq!(m.to_vec(), unhex("a40af61864f620f66161f6"));
    }

    #[test]
    fn counts_items_against_the_limit() {
        let limits = CborLimits {
            max_items: 3,
            ..CborLimits::default()
        };
        assert!(decode(&unhex("820102"), &limits).is_ok());
        assert!(matches!(
            decode(&unhex("83010203"), &limits),
            Err(Error::Cbor {
                reason: CborError::TooManyItems,
                ..
            })
        ));
    }
}
