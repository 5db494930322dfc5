//! Topic names and topic filters, validated once at construction (MQTT 5.0 §4.7, 3.1.1 §4.7).
//!
//! A [`TopicName`] is what a PUBLISH is sent to: at least one character, no wildcard (`+`, `#`),
//! no U+0000, at most 65,535 bytes of UTF-8. A [`TopicFilter`] is what a SUBSCRIBE asks for: it may
//! hold `+` (one whole level) and `#` (last level only), and may be a shared subscription
//! `$share/{group}/{filter}` (MQTT 5.0 §4.8.2). Both are cheap to clone (`Bytes`-backed) and, when
//! they come out of the decoder, share memory with the received packet.

use std::fmt;

use bytes::Bytes;

use crate::Error;

/// The longest string MQTT can carry: its length is a two-byte integer (MQTT 5.0 §1.5.4).
pub const MAX_STRING_LEN: usize = 65_535;

/// Validates the rules every MQTT UTF-8 string obeys: well-formed UTF-8 (which excludes the
/// surrogates U+D800..U+DFFF) [MQTT-1.5.4-1], no U+0000 [MQTT-1.5.4-2], at most 65,535 bytes.
///
/// Returns the byte offset and the rule of the first violation.
#[inline]
pub(crate) fn check_mqtt_str(bytes: &[u8]) -> Result<(), (usize, &'static str, &'static str)> {
    // Fast path: ASCII without U+0000 is well-formed UTF-8 without U+0000.
    if bytes.len() <= MAX_STRING_LEN && !any_byte(bytes, |b| (b == 0) | (b >= 0x80)) {
        return Ok(());
    }
    check_mqtt_str_full(bytes)
}

#[inline(never)]
fn check_mqtt_str_full(bytes: &[u8]) -> Result<(), (usize, &'static str, &'static str)> {
    if bytes.len() > MAX_STRING_LEN {
        return Err((
            MAX_STRING_LEN,
            "string is longer than 65,535 bytes",
            "[MQTT-1.5.4]",
        ));
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err((
            e.valid_up_to(),
            "ill-formed UTF-8 (or an encoded surrogate)",
            "[MQTT-1.5.4-1]",
        ));
    }
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err((at, "string contains U+0000", "[MQTT-1.5.4-2]"));
    }
    Ok(())
}

/// Checks topic-name rules on bytes already known to be a valid MQTT string.
fn check_name_chars(bytes: &[u8]) -> Result<(), (usize, &'static str, &'static str)> {
    if bytes.is_empty() {
        return Err((0, "topic name is empty", "[MQTT-4.7.3-1]"));
    }
    if let Some(at) = bytes.iter().position(|&b| b == b'+' || b == b'#') {
        return Err((
            at,
            "topic name contains a wildcard character",
            "[MQTT-3.3.2-2]",
        ));
    }
    Ok(())
}

/// Checks topic-filter rules on bytes already known to be a valid MQTT string.
fn check_filter_chars(bytes: &[u8]) -> Result<(), (usize, &'static str, &'static str)> {
    if bytes.is_empty() {
        return Err((0, "topic filter is empty", "[MQTT-4.7.3-1]"));
    }
    let body = if let Some(rest) = bytes.strip_prefix(SHARE_PREFIX) {
        // $share/{ShareName}/{filter} [MQTT-4.8.2-1], [MQTT-4.8.2-2]
        let Some(slash) = rest.iter().position(|&b| b == b'/') else {
            return Err((
                bytes.len(),
                "shared subscription has no '/' and topic filter after the share name",
                "[MQTT-4.8.2-2]",
            ));
        };
        let group = rest.get(..slash).unwrap_or_default();
        if group.is_empty() {
            return Err((
                SHARE_PREFIX.len(),
                "shared subscription has an empty share name",
                "[MQTT-4.8.2-1]",
            ));
        }
        if let Some(at) = group.iter().position(|&b| b == b'+' || b == b'#') {
            return Err((
                SHARE_PREFIX.len() + at,
                "share name contains a wildcard character",
                "[MQTT-4.8.2-2]",
            ));
        }
        let inner = rest.get(slash + 1..).unwrap_or_default();
        if inner.is_empty() {
            return Err((
                bytes.len(),
                "shared subscription has an empty topic filter",
                "[MQTT-4.8.2-2]",
            ));
        }
        let base = SHARE_PREFIX.len() + slash + 1;
        return check_filter_levels(inner).map_err(|(at, d, r)| (base + at, d, r));
    } else {
        bytes
    };
    check_filter_levels(body)
}

fn check_filter_levels(bytes: &[u8]) -> Result<(), (usize, &'static str, &'static str)> {
    let mut level_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'/' => level_start = i + 1,
            b'#' if i != level_start || i + 1 != bytes.len() => {
                return Err((
                    i,
                    "'#' must be a whole level and the last character of the filter",
                    "[MQTT-4.7.1-1]",
                ));
            }
            b'+' => {
                let ends_level = matches!(bytes.get(i + 1), None | Some(b'/'));
                if i != level_start || !ends_level {
                    return Err((i, "'+' must occupy a whole level", "[MQTT-4.7.1-2]"));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `true` if every byte is ASCII and none is U+0000, `+` or `#`: such bytes are well-formed
/// UTF-8 and a valid topic name (given a length of 1..=65,535). A `false` proves nothing; the
/// caller then runs the full checks, which find the precise error.
#[inline]
pub(crate) fn is_plain_topic_name(bytes: &[u8]) -> bool {
    !any_byte(bytes, |b| {
        (b == 0) | (b == b'+') | (b == b'#') | (b >= 0x80)
    })
}

/// `true` if no byte is U+0000, `+` or `#`: for bytes already known to be UTF-8 (a `&str`), a
/// valid topic name (given a length of 1..=65,535).
#[inline]
pub(crate) fn has_no_nul_or_wildcard(bytes: &[u8]) -> bool {
    !any_byte(bytes, |b| (b == 0) | (b == b'+') | (b == b'#'))
}

/// Whether `bad(b) != 0` for some byte. Sixteen bytes per step, a loop without early exit over
/// a fixed-size array that the compiler turns into vector compares; the last step re-reads the
/// final sixteen bytes, overlapping the previous step (re-checking bytes is harmless), so there
/// is no byte-by-byte tail. Shorter inputs are padded with a byte `bad` accepts (`a`).
#[inline(always)]
fn any_byte(bytes: &[u8], bad: impl Fn(u8) -> bool + Copy) -> bool {
    /// One flag per lane, then one reduction: the shape that becomes a compare and a mask move.
    #[inline(always)]
    fn lanes<const N: usize>(c: &[u8; N], bad: impl Fn(u8) -> bool) -> bool {
        let mut m = [false; N];
        for (m, &b) in m.iter_mut().zip(c) {
            *m = bad(b);
        }
        m.iter().fold(false, |acc, &x| acc | x)
    }
    let Some(last) = bytes.last_chunk::<16>() else {
        // Fewer than sixteen bytes: the first and the last eight, overlapping, read straight
        // from the input; the same with four below eight (short names such as `region`);
        // below four, byte by byte.
        if let (Some(a), Some(b)) = (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
            return lanes(a, bad) | lanes(b, bad);
        }
        return match (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
            (Some(a), Some(b)) => lanes(a, bad) | lanes(b, bad),
            _ => bytes.iter().fold(false, |acc, &b| acc | bad(b)),
        };
    };
    let mut acc = lanes(last, bad);
    let mut rest = bytes;
    while let Some((c, tail)) = rest.split_first_chunk::<16>() {
        acc |= lanes(c, bad);
        rest = tail;
    }
    acc
}

/// `true` if `bytes` (1..=65,535 of them) are ASCII without U+0000, do not start with
/// `$share/`, and every `+` and `#` is a whole level (`#` the last): a valid topic filter. A
/// `false` proves nothing; the caller then runs the full checks, which find the precise error.
///
/// The bytes never allowed here are found by [`any_byte`] (sixteen at a time, straight from the
/// input); the wildcards' positions come from a sixteen-lane mask per step, the last step
/// overlapping the one before it (checking a wildcard twice is harmless), and are then checked
/// against their neighbours. Nothing is copied: an earlier version padded the tail into a stack
/// array, and reading it back stalled on store forwarding at every filter.
#[inline]
pub(crate) fn is_plain_filter(bytes: &[u8]) -> bool {
    #[inline(always)]
    fn wild_mask(c: &[u8; 16]) -> u16 {
        let mut wild = [false; 16];
        for (w, &b) in wild.iter_mut().zip(c) {
            *w = (b == b'+') | (b == b'#');
        }
        wild.iter()
            .enumerate()
            .fold(0u16, |acc, (i, &x)| acc | (u16::from(x) << i))
    }
    let len = bytes.len();
    if len == 0
        || len > MAX_STRING_LEN
        || bytes.starts_with(SHARE_PREFIX)
        || any_byte(bytes, |b| (b == 0) | (b >= 0x80))
    {
        return false;
    }
    // Whether the wildcard at `i` is a whole level (and a `#` the last character).
    let whole_level = |i: usize| {
        let starts_level = i == 0 || bytes.get(i - 1) == Some(&b'/');
        match bytes.get(i) {
            Some(b'#') => starts_level && i + 1 == len,
            _ => starts_level && matches!(bytes.get(i + 1), None | Some(b'/')),
        }
    };
    if len < 16 {
        return bytes
            .iter()
            .enumerate()
            .all(|(i, &b)| !matches!(b, b'+' | b'#') || whole_level(i));
    }
    let mut base = 0;
    loop {
        // Whole steps, then one overlapping the last sixteen bytes.
        let at = base.min(len - 16);
        let Some(chunk) = bytes.get(at..at + 16).and_then(|s| s.first_chunk()) else {
            return false;
        };
        let mut wild = wild_mask(chunk);
        while wild != 0 {
            let i = at + wild.trailing_zeros() as usize;
            wild &= wild - 1;
            if !whole_level(i) {
                return false;
            }
        }
        if at + 16 >= len {
            return true;
        }
        base += 16;
    }
}

const SHARE_PREFIX: &[u8] = b"$share/";

fn topic_error(
    kind: &'static str,
    (offset, detail, rule): (usize, &'static str, &'static str),
) -> Error {
    Error::InvalidTopic {
        kind,
        offset,
        detail,
        rule,
    }
}

/// A validated topic name: non-empty UTF-8 without `+`, `#` or U+0000, at most 65,535 bytes.
///
/// ```
/// use thingkit_mqtt::TopicName;
/// let t = TopicName::new("sensors/42/temperature")?;
/// assert_eq!(t.as_str(), "sensors/42/temperature");
/// assert!(TopicName::new("sensors/+/temperature").is_err());
/// # Ok::<(), thingkit_mqtt::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Repr);

/// How many bytes a [`TopicName`] or [`TopicFilter`] holds in place. Fleet topics (`dt/site-12/dev-00042/
/// telemetry/temp`, `$aws/things/sensor-7/shadow/update`) are mostly shorter: they are copied
/// (a few bytes) instead of sharing the buffer they were decoded from, so making or dropping one
/// touches no reference count; an atomic increment and decrement per decoded PUBLISH cost more
/// than the copy, and each is a fence that stops the next frame's cache miss from overlapping.
/// Longer topics share their buffer (`Bytes`). Filters, decoded from SUBSCRIBE, are held the
/// same way.
const INLINE_TOPIC: usize = 62;

/// The text of a topic name or filter: equality, order and hash are those of its bytes (as they
/// were when it was a `Bytes`), whichever way it is held.
#[derive(Clone)]
enum Repr {
    /// `len` bytes of `bytes` (`len <= INLINE_TOPIC`).
    Inline { len: u8, bytes: [u8; INLINE_TOPIC] },
    /// A topic longer than `INLINE_TOPIC` bytes, sharing its buffer.
    Shared(Bytes),
}

impl Repr {
    #[inline(always)]
    fn from_slice(s: &[u8]) -> Option<Repr> {
        let len = u8::try_from(s.len())
            .ok()
            .filter(|&l| usize::from(l) <= INLINE_TOPIC)?;
        let mut bytes = [0u8; INLINE_TOPIC];
        bytes[..s.len()].copy_from_slice(s);
        Some(Repr::Inline { len, bytes })
    }

    /// Holds `bytes` in place if short, else shares them.
    fn from_bytes(bytes: Bytes) -> Repr {
        Repr::from_slice(&bytes).unwrap_or(Repr::Shared(bytes))
    }

    /// Copies `s` in place if short, else into a new buffer.
    fn copy_from(s: &[u8]) -> Repr {
        Repr::from_slice(s).unwrap_or_else(|| Repr::Shared(Bytes::copy_from_slice(s)))
    }

    /// `s` held in place if short (its allocation is dropped), else its allocation shared.
    fn from_string(s: String) -> Repr {
        Repr::from_slice(s.as_bytes()).unwrap_or_else(|| Repr::Shared(Bytes::from(s)))
    }

    /// `frame[range]`, held in place if short (no reference count), else a slice of `frame`.
    #[inline(always)]
    fn from_frame(frame: &Bytes, range: std::ops::Range<usize>) -> Repr {
        // Most frames extend past the text (by the payload, or the next filter): copy a fixed-size
        // block (two vector moves, no length-dependent copy); the bytes past `len` are never read.
        if range.len() <= INLINE_TOPIC
            && let Some(block) = frame.get(range.start..range.start + INLINE_TOPIC)
            && let Ok(bytes) = <[u8; INLINE_TOPIC]>::try_from(block)
        {
            return Repr::Inline {
                len: range.len() as u8,
                bytes,
            };
        }
        match frame.get(range.clone()).and_then(Repr::from_slice) {
            Some(r) => r,
            None => Repr::Shared(frame.slice(range)),
        }
    }

    #[inline(always)]
    fn as_bytes(&self) -> &[u8] {
        match self {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Shared(b) => b,
        }
    }

    /// The text as `Bytes`: shared if it is, else copied.
    fn to_bytes(&self) -> Bytes {
        match self {
            Repr::Inline { .. } => Bytes::copy_from_slice(self.as_bytes()),
            Repr::Shared(b) => b.clone(),
        }
    }
}

impl PartialEq for Repr {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Repr {}

impl std::hash::Hash for Repr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `Bytes` hashes: the byte slice.
        self.as_bytes().hash(state);
    }
}

impl PartialOrd for Repr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Repr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl TopicName {
    /// Validates and copies `topic` (no allocation for a topic of up to 62 bytes).
    pub fn new(topic: &str) -> Result<Self, Error> {
        Self::check(topic.as_bytes())?;
        Ok(TopicName(Repr::copy_from(topic.as_bytes())))
    }

    /// Validates bytes (for example a slice of a received buffer) as a topic name, without copying
    /// a topic longer than 62 bytes (a shorter one is held in place).
    pub fn from_bytes(bytes: Bytes) -> Result<Self, Error> {
        Self::check(&bytes)?;
        Ok(Self::from_validated(bytes))
    }

    fn check(bytes: &[u8]) -> Result<(), Error> {
        check_mqtt_str(bytes).map_err(|e| topic_error("name", e))?;
        check_name_chars(bytes).map_err(|e| topic_error("name", e))
    }

    /// Wraps bytes whose validity the caller has checked with [`check_name_chars`] and
    /// [`check_mqtt_str`].
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        TopicName(Repr::from_bytes(bytes))
    }

    /// Wraps a validated topic from a decoded frame: copied in place if short, else a slice of
    /// `frame` (one reference count).
    #[inline(always)]
    pub(crate) fn from_validated_in(frame: &Bytes, range: std::ops::Range<usize>) -> Self {
        TopicName(Repr::from_frame(frame, range))
    }

    /// Validation used by the decoder: returns the in-topic offset, detail and rule on failure.
    #[inline(always)]
    pub(crate) fn validate_wire(bytes: &[u8]) -> Result<(), (usize, &'static str, &'static str)> {
        // Fast path (inlined into the decoder): non-empty ASCII without U+0000, '+' or '#' is a
        // valid topic name. Anything else takes the full check, which also finds the precise
        // error.
        if !bytes.is_empty() && bytes.len() <= MAX_STRING_LEN && is_plain_topic_name(bytes) {
            return Ok(());
        }
        Self::validate_wire_full(bytes)
    }

    #[inline(never)]
    fn validate_wire_full(bytes: &[u8]) -> Result<(), (usize, &'static str, &'static str)> {
        check_mqtt_str(bytes)?;
        check_name_chars(bytes)
    }

    /// The topic as a string slice.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.0.as_bytes())
            .expect("TopicName holds UTF-8 validated at construction")
    }

    /// The topic's bytes (UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The topic as `Bytes`: shares the buffer of a topic longer than 62 bytes; a shorter one,
    /// held in place, is copied.
    pub fn to_bytes(&self) -> Bytes {
        self.0.to_bytes()
    }

    /// Length in bytes.
    #[allow(clippy::len_without_is_empty)] // a TopicName is never empty
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the topic starts with `$` (for example `$SYS/...`): such topics are not matched by
    /// filters that start with `#` or `+` [MQTT-4.7.2-1].
    pub fn is_dollar(&self) -> bool {
        self.as_bytes().first() == Some(&b'$')
    }

    /// The topic levels (split on `/`; empty levels are kept).
    pub fn levels(&self) -> impl Iterator<Item = &str> + '_ {
        self.as_str().split('/')
    }

    /// Whether `filter` matches this topic (MQTT 5.0 §4.7), including the `$` rule. For a shared
    /// subscription the inner filter is matched.
    pub fn matches(&self, filter: &TopicFilter) -> bool {
        filter.matches(self)
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for TopicName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl TryFrom<&str> for TopicName {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        TopicName::new(s)
    }
}

impl TryFrom<String> for TopicName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::check(s.as_bytes())?;
        Ok(TopicName(Repr::from_string(s)))
    }
}

/// A validated topic filter: like a topic name but `+` may fill a whole level and `#` may be the
/// whole last level; `$share/{group}/{filter}` is a shared subscription.
///
/// ```
/// use thingkit_mqtt::{TopicFilter, TopicName};
/// let f = TopicFilter::new("sensors/+/temperature")?;
/// assert!(f.matches(&TopicName::new("sensors/42/temperature")?));
/// assert!(TopicFilter::new("sensors/#/temperature").is_err()); // [MQTT-4.7.1-1]
/// assert!(TopicFilter::new("sensors+").is_err());               // [MQTT-4.7.1-2]
/// let shared = TopicFilter::new("$share/workers/jobs/#")?;
/// assert_eq!(shared.share_group(), Some("workers"));
/// assert_eq!(shared.inner(), "jobs/#");
/// # Ok::<(), thingkit_mqtt::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(Repr);

impl TopicFilter {
    /// Validates and copies `filter` (no allocation for a filter of up to 62 bytes).
    pub fn new(filter: &str) -> Result<Self, Error> {
        Self::check(filter.as_bytes())?;
        Ok(TopicFilter(Repr::copy_from(filter.as_bytes())))
    }

    /// Validates bytes as a topic filter, without copying a filter longer than 62 bytes (a
    /// shorter one is held in place).
    pub fn from_bytes(bytes: Bytes) -> Result<Self, Error> {
        Self::check(&bytes)?;
        Ok(TopicFilter(Repr::from_bytes(bytes)))
    }

    fn check(bytes: &[u8]) -> Result<(), Error> {
        check_mqtt_str(bytes).map_err(|e| topic_error("filter", e))?;
        check_filter_chars(bytes).map_err(|e| topic_error("filter", e))
    }

    /// Wraps a validated filter from a decoded frame: copied in place if short, else a slice of
    /// `frame` (one reference count).
    #[inline(always)]
    pub(crate) fn from_validated_in(frame: &Bytes, range: std::ops::Range<usize>) -> Self {
        TopicFilter(Repr::from_frame(frame, range))
    }

    pub(crate) fn validate_wire(bytes: &[u8]) -> Result<(), (usize, &'static str, &'static str)> {
        if is_plain_filter(bytes) {
            return Ok(());
        }
        check_mqtt_str(bytes)?;
        check_filter_chars(bytes)
    }

    /// The whole filter as written (including any `$share/{group}/` prefix).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.0.as_bytes())
            .expect("TopicFilter holds UTF-8 validated at construction")
    }

    /// The filter's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The filter as `Bytes`: shares the buffer of a filter longer than 62 bytes; a shorter one,
    /// held in place, is copied.
    pub fn to_bytes(&self) -> Bytes {
        self.0.to_bytes()
    }

    /// The share name if this is a shared subscription `$share/{group}/{filter}`.
    pub fn share_group(&self) -> Option<&str> {
        let rest = self.as_str().strip_prefix("$share/")?;
        rest.split('/').next()
    }

    /// Whether this is a shared subscription.
    pub fn is_shared(&self) -> bool {
        self.as_bytes().starts_with(SHARE_PREFIX)
    }

    /// The filter that topics are matched against: without the `$share/{group}/` prefix.
    pub fn inner(&self) -> &str {
        let s = self.as_str();
        match s.strip_prefix("$share/") {
            Some(rest) => rest.split_once('/').map(|(_, f)| f).unwrap_or_default(),
            None => s,
        }
    }

    /// Whether the filter contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.inner().bytes().any(|b| b == b'+' || b == b'#')
    }

    /// Whether this filter matches `topic` (MQTT 5.0 §4.7): `+` matches exactly one level (which
    /// may be empty), `#` matches the parent level and any number of further levels, and a filter
    /// starting with a wildcard does not match a topic starting with `$` [MQTT-4.7.2-1].
    pub fn matches(&self, topic: &TopicName) -> bool {
        let filter = self.inner().as_bytes();
        let topic_bytes = topic.as_bytes();
        if topic.is_dollar() && matches!(filter.first(), Some(b'+' | b'#')) {
            return false;
        }
        let mut f_levels = filter.split(|&b| b == b'/');
        let mut t_levels = topic_bytes.split(|&b| b == b'/');
        loop {
            match (f_levels.next(), t_levels.next()) {
                (Some(b"#"), _) => return true,
                (Some(b"+"), Some(_)) => {}
                (Some(f), Some(t)) if f == t => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for TopicFilter {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl TryFrom<&str> for TopicFilter {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        TopicFilter::new(s)
    }
}

impl TryFrom<String> for TopicFilter {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::check(s.as_bytes())?;
        Ok(TopicFilter(Repr::from_string(s)))
    }
}

/// A validated MQTT UTF-8 string (client identifier, user property, content type, ...): well-formed
/// UTF-8, no U+0000, at most 65,535 bytes. `Bytes`-backed, so decoded strings share the packet's
/// memory.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MqttStr(Bytes);

impl MqttStr {
    /// Validates and wraps `s` (copying it once).
    pub fn new(s: &str) -> Result<Self, Error> {
        Self::from_bytes(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// Validates bytes as an MQTT string, without copying.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, Error> {
        check_mqtt_str(&bytes).map_err(|(offset, detail, rule)| Error::Unencodable {
            detail: format!("{detail} (at byte {offset})"),
            rule,
        })?;
        Ok(MqttStr(bytes))
    }

    /// A string known at compile time. Panics if it breaks the MQTT string rules (contains
    /// U+0000), which is a programming error.
    pub fn from_static(s: &'static str) -> Self {
        assert!(!s.contains('\0'), "MQTT strings must not contain U+0000");
        assert!(
            s.len() <= MAX_STRING_LEN,
            "MQTT strings are at most 65,535 bytes"
        );
        MqttStr(Bytes::from_static(s.as_bytes()))
    }

    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        MqttStr(bytes)
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("MqttStr holds UTF-8 validated at construction")
    }

    /// The string's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for MqttStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MqttStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for MqttStr {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        MqttStr::new(s)
    }
}

impl TryFrom<String> for MqttStr {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        MqttStr::from_bytes(Bytes::from(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }

    /// A topic is one value whichever way it is held (in place up to 62 bytes, else a shared
    /// buffer): equality, order, hash, `as_str` and `to_bytes` depend only on its bytes.
    #[test]
    fn topic_name_is_its_bytes_whether_held_in_place_or_shared() {
        use std::hash::{BuildHasher, RandomState};
        let hasher = RandomState::new();
        for len in [1, 2, 30, 61, 62, 63, 64, 200] {
            let text: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            let inline = name(&text);
            let shared = TopicName(Repr::Shared(Bytes::copy_from_slice(text.as_bytes())));
            let from_frame = {
                let mut frame = b"xx".to_vec();
                frame.extend_from_slice(text.as_bytes());
                frame.extend_from_slice(&[b'p'; 100]);
                TopicName::from_validated_in(&Bytes::from(frame), 2..2 + len)
            };
            let short_frame = {
                let mut frame = b"xx".to_vec();
                frame.extend_from_slice(text.as_bytes());
                TopicName::from_validated_in(&Bytes::from(frame), 2..2 + len)
            };
            for t in [&inline, &from_frame, &short_frame] {
                assert_eq!(t, &shared, "len {len}");
                assert_eq!(t.cmp(&shared), std::cmp::Ordering::Equal);
                assert_eq!(hasher.hash_one(t), hasher.hash_one(&shared));
                assert_eq!(t.as_str(), text);
                assert_eq!(t.len(), len);
                assert_eq!(t.to_bytes(), text.as_bytes());
            }
            assert_eq!(
                matches!(inline.0, Repr::Inline { .. }),
                len <= INLINE_TOPIC,
                "len {len}"
            );
            assert_eq!(
                matches!(from_frame.0, Repr::Inline { .. }),
                len <= INLINE_TOPIC
            );
            let other = name(&format!("{text}x"));
            assert!(inline < other && other > shared && inline != other);
        }
        let via_string = TopicName::try_from(String::from("a/b")).unwrap();
        assert_eq!(via_string, name("a/b"));
        assert!(TopicName::try_from("a/#".to_string()).is_err());
        assert!(TopicName::try_from("a/".repeat(40) + "#").is_err());
    }

    /// The word-at-a-time fast path accepts exactly the non-empty ASCII strings without
    /// U+0000, `+` and `#`: every byte value at every position of every length up to 17
    /// (two words and a tail), against the byte-by-byte definition and the full validation.
    #[test]
    fn plain_topic_fast_path_agrees_with_bytewise_rule() {
        for len in (1..=18).chain([31, 32, 33, 47, 48, 49]) {
            for pos in 0..len {
                for b in 0..=255u8 {
                    let mut t = vec![b'x'; len];
                    t[pos] = b;
                    let bytewise = t
                        .iter()
                        .all(|&c| c.is_ascii() && c != 0 && c != b'+' && c != b'#');
                    assert_eq!(
                        is_plain_topic_name(&t),
                        bytewise,
                        "len {len} pos {pos} byte {b:#04x}"
                    );
                    if bytewise {
                        assert!(TopicName::validate_wire(&t).is_ok());
                    }
                    assert_eq!(
                        TopicName::validate_wire(&t).is_ok(),
                        TopicName::from_bytes(Bytes::from(t.clone())).is_ok()
                    );
                }
            }
        }
    }
    /// The filter fast path never accepts what the byte-by-byte rules reject, and
    /// `validate_wire` decides exactly as they do: every string of up to six bytes over an
    /// alphabet of the interesting bytes, and one or two wildcards at every position of longer
    /// filters (across the sixteen-byte steps).
    #[test]
    fn plain_filter_fast_path_agrees_with_full_rules() {
        let full = |b: &[u8]| check_mqtt_str_full(b).is_ok() && check_filter_chars(b).is_ok();
        let check = |b: &[u8]| {
            let ok = full(b);
            if is_plain_filter(b) {
                assert!(ok, "fast path accepted {b:?}");
            }
            assert_eq!(TopicFilter::validate_wire(b).is_ok(), ok, "{b:?}");
        };
        let alphabet = [b'a', b'/', b'+', b'#', b'$', 0, 0xC3, 0xA9];
        let mut stack = vec![Vec::new()];
        while let Some(t) = stack.pop() {
            check(&t);
            if t.len() < 6 {
                for &c in &alphabet {
                    let mut u = t.clone();
                    u.push(c);
                    stack.push(u);
                }
            }
        }
        for len in [15, 16, 17, 31, 32, 33, 40] {
            for i in 0..len {
                for j in i..len {
                    for (wi, wj) in [(b'+', b'+'), (b'+', b'#'), (b'#', b'/'), (b'/', b'+')] {
                        let mut t: Vec<u8> = (0..len)
                            .map(|k| if k % 4 == 3 { b'/' } else { b'x' })
                            .collect();
                        t[i] = wi;
                        t[j] = wj;
                        check(&t);
                    }
                }
            }
        }
        check(b"$share/g/a/+");
        check(b"$share/g/#");
        check(b"$shar/+");
    }

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(s).unwrap()
    }
    fn rule_of(e: Error) -> &'static str {
        e.rule().unwrap()
    }

    #[test]
    fn rejects_topic_name_with_wildcards() {
        assert_eq!(
            rule_of(TopicName::new("a/+/b").unwrap_err()),
            "[MQTT-3.3.2-2]"
        );
        assert_eq!(
            rule_of(TopicName::new("a/#").unwrap_err()),
            "[MQTT-3.3.2-2]"
        );
        assert_eq!(rule_of(TopicName::new("a+").unwrap_err()), "[MQTT-3.3.2-2]");
    }

    #[test]
    fn rejects_empty_topic_name_and_filter() {
        assert_eq!(rule_of(TopicName::new("").unwrap_err()), "[MQTT-4.7.3-1]");
        assert_eq!(rule_of(TopicFilter::new("").unwrap_err()), "[MQTT-4.7.3-1]");
    }

    #[test]
    fn rejects_nul_and_ill_formed_utf8() {
        assert_eq!(
            rule_of(TopicName::new("a\0b").unwrap_err()),
            "[MQTT-1.5.4-2]"
        );
        // An encoded surrogate (U+D800 as CESU-style bytes) is ill-formed UTF-8.
        let e = TopicName::from_bytes(Bytes::from_static(b"a\xED\xA0\x80")).unwrap_err();
        assert_eq!(rule_of(e), "[MQTT-1.5.4-1]");
        let e = TopicFilter::from_bytes(Bytes::from_static(b"\xC0\xAF")).unwrap_err();
        assert_eq!(rule_of(e), "[MQTT-1.5.4-1]");
    }

    #[test]
    fn rejects_topic_longer_than_65535_bytes() {
        let long = "a".repeat(65_536);
        assert_eq!(rule_of(TopicName::new(&long).unwrap_err()), "[MQTT-1.5.4]");
        assert!(TopicName::new(&long[..65_535]).is_ok());
    }

    #[test]
    fn rejects_misplaced_wildcards_in_filters() {
        assert_eq!(
            rule_of(TopicFilter::new("a/#/b").unwrap_err()),
            "[MQTT-4.7.1-1]"
        );
        assert_eq!(
            rule_of(TopicFilter::new("a#").unwrap_err()),
            "[MQTT-4.7.1-1]"
        );
        assert_eq!(
            rule_of(TopicFilter::new("a+").unwrap_err()),
            "[MQTT-4.7.1-2]"
        );
        assert_eq!(
            rule_of(TopicFilter::new("+a/b").unwrap_err()),
            "[MQTT-4.7.1-2]"
        );
        for ok in ["#", "+", "a/#", "+/+", "/+/", "a//b", "/", "+/#", "$SYS/#"] {
            assert!(TopicFilter::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn validates_shared_subscription_syntax() {
        let f = filter("$share/g1/a/+/c");
        assert!(f.is_shared());
        assert_eq!(f.share_group(), Some("g1"));
        assert_eq!(f.inner(), "a/+/c");
        assert_eq!(
            rule_of(TopicFilter::new("$share/g1").unwrap_err()),
            "[MQTT-4.8.2-2]"
        );
        assert_eq!(
            rule_of(TopicFilter::new("$share//a").unwrap_err()),
            "[MQTT-4.8.2-1]"
        );
        assert_eq!(
            rule_of(TopicFilter::new("$share/g+/a").unwrap_err()),
            "[MQTT-4.8.2-2]"
        );
        assert_eq!(
            rule_of(TopicFilter::new("$share/g/").unwrap_err()),
            "[MQTT-4.8.2-2]"
        );
        assert_eq!(
            rule_of(TopicFilter::new("$share/g/a#").unwrap_err()),
            "[MQTT-4.7.1-1]"
        );
        assert!(!filter("$shared/x").is_shared());
    }

    #[test]
    fn share_prefix_is_a_valid_topic_name_but_not_a_complete_shared_filter() {
        // Regression (fuzz/mqtt_topic_filter): "$share/" is a legal topic name; as a filter it is
        // a shared subscription missing its share name and filter.
        assert!(TopicName::new("$share/").is_ok());
        assert_eq!(
            rule_of(TopicFilter::new("$share/").unwrap_err()),
            "[MQTT-4.8.2-2]"
        );
        assert!(TopicFilter::new("$share/g/$share/").is_ok());
    }

    #[test]
    fn matches_wildcards_per_spec_examples() {
        assert!(filter("sport/tennis/player1/#").matches(&name("sport/tennis/player1")));
        assert!(filter("sport/tennis/player1/#").matches(&name("sport/tennis/player1/ranking")));
        assert!(filter("sport/#").matches(&name("sport")));
        assert!(filter("#").matches(&name("a/b/c")));
        assert!(filter("sport/tennis/+").matches(&name("sport/tennis/player1")));
        assert!(!filter("sport/tennis/+").matches(&name("sport/tennis/player1/ranking")));
        assert!(!filter("sport/+").matches(&name("sport")));
        assert!(filter("sport/+").matches(&name("sport/")));
        assert!(filter("+/+").matches(&name("/finance")));
        assert!(filter("/+").matches(&name("/finance")));
        assert!(!filter("+").matches(&name("/finance")));
        assert!(!filter("a/b").matches(&name("a/b/c")));
        assert!(!filter("a/b/c").matches(&name("a/b")));
    }

    #[test]
    fn leading_wildcards_do_not_match_dollar_topics() {
        assert!(!filter("#").matches(&name("$SYS/uptime")));
        assert!(!filter("+/uptime").matches(&name("$SYS/uptime")));
        assert!(filter("$SYS/#").matches(&name("$SYS/uptime")));
        assert!(filter("$SYS/+").matches(&name("$SYS/uptime")));
        assert!(!filter("$share/g/#").matches(&name("$SYS/uptime")));
        assert!(filter("$share/g/#").matches(&name("a/b")));
    }
}
