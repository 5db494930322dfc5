//! MQTT topic names and filters as NATS subjects and subject patterns, without ambiguity.
//!
//! NATS splits a subject into tokens on `.`, gives `*` (one token) and `>` (one or more tokens)
//! a meaning when they are a whole token, forbids whitespace and forbids empty tokens. An MQTT
//! topic level may be empty and may hold any UTF-8 except U+0000, `+` and `#`, including `.`,
//! `*`, `>` and spaces. So each MQTT level becomes one NATS token, spelled as follows:
//!
//! | MQTT level                     | NATS token                                       |
//! |--------------------------------|--------------------------------------------------|
//! | empty                          | `~`                                              |
//! | a byte in `!`..=`}` (0x21..=0x7D) other than `.`, `*`, `>` | the byte itself       |
//! | any other byte (`.`, `*`, `>`, `~`, space, controls, DEL, every byte of a non-ASCII character) | `~` and two upper-case hex digits: `.` is `~2E`, `é` is `~C3~A9` |
//!
//! and the subject is `thingkit.<cluster>.` followed by the tokens joined with `.`:
//! `sensors/1.5/temp` in cluster `eu` is `thingkit.eu.sensors.1~2E5.temp`.
//!
//! **Exactly one subject per topic.** [`SubjectSpace::topic`] (the inverse) accepts only the
//! spelling [`SubjectSpace::subject`] produces: lower-case hex, an escaped byte that needs no
//! escape (`~61` for `a`), a `~` not followed by two hex digits, an empty token and escaped
//! bytes that are not UTF-8 are all refused. So `topic(subject(t)) == t` for every topic and
//! `subject(topic(s)) == s` for every subject `topic` accepts (both are property-tested).
//!
//! **Filters.** [`SubjectSpace::patterns`] maps an MQTT filter to the NATS patterns that cover
//! it: `+` becomes `*` (which also matches `~`, the empty level, as `+` matches an empty level),
//! and a trailing `#` becomes `>` *plus* the pattern of its parent, since MQTT's `a/#` also
//! matches `a` itself [MQTT-4.7.1-1]: `a/#` is {`P.a`, `P.a.>`}; `#` alone is {`P.>`}. A
//! shared subscription (`$share/g/f`) is covered by the patterns of `f`.
//!
//! **`$` topics.** MQTT never matches a topic that starts with `$` with a filter that starts
//! with a wildcard [MQTT-4.7.2-1]; NATS has no such rule, so `+/x` (`P.*.x`) also matches the
//! subject of `$aws/x`. [`SubjectPatterns::excludes_dollar_topics`] says so, and
//! [`SubjectPatterns::matches`] applies the rule. The patterns are an over-approximation used to
//! *ask NATS for* messages; the receiving server never trusts them: it hands every message it
//! receives to its own router, which matches the topic against each local subscription with
//! thingkit-mqtt's matcher ([`thingkit_mqtt::TopicFilter::matches`]) and checks each
//! subscriber's `iot:Receive`, exactly as for a message published locally. A message a pattern
//! let through that no local filter matches is simply delivered to no one.
//!
//! ```
//! use thingkit_cluster::subject::SubjectSpace;
//! use thingkit_mqtt::{TopicFilter, TopicName};
//!
//! let space = SubjectSpace::new("eu")?;
//! let topic = TopicName::new("sensors/1.5/ /temp")?;
//! let subject = space.subject(&topic);
//! assert_eq!(subject, "thingkit.eu.sensors.1~2E5.~20.temp");
//! assert_eq!(space.topic(&subject)?, topic);
//! assert!(space.topic("thingkit.eu.sensors.1~2e5.~20.temp").is_err()); // lower-case hex
//!
//! let patterns = space.patterns(&TopicFilter::new("sensors/#")?);
//! assert_eq!(patterns.patterns(), ["thingkit.eu.sensors", "thingkit.eu.sensors.>"]);
//! assert!(patterns.matches(&subject));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use thingkit_mqtt::{TopicFilter, TopicName};

use crate::Error;

/// The first token of every subject thingkit publishes on.
pub const SUBJECT_ROOT: &str = "thingkit";

/// The first token of the subject retained messages travel on ([`SubjectSpace::retained`]):
/// outside the topics' subjects, so that no filter's patterns match it.
pub const RETAINED_ROOT: &str = "thingkit-retained";

/// The longest cluster name [`SubjectSpace::new`] accepts, in bytes.
pub const MAX_CLUSTER_NAME_LEN: usize = 64;

/// The escape character: `~XX` is the byte with upper-case hex digits `XX`, `~` alone is an
/// empty level.
const ESCAPE: u8 = b'~';

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Whether byte `b` of a level stands for itself in a token (printable ASCII other than space,
/// `.`, `*`, `>`, `~` and DEL).
fn is_plain(b: u8) -> bool {
    (0x21..=0x7D).contains(&b) && !matches!(b, b'.' | b'*' | b'>')
}

/// Appends the token of one MQTT level (not a wildcard) to `out`.
fn push_level(level: &str, out: &mut String) {
    if level.is_empty() {
        out.push(char::from(ESCAPE));
        return;
    }
    for &b in level.as_bytes() {
        if is_plain(b) {
            out.push(char::from(b));
        } else {
            out.push(char::from(ESCAPE));
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0F)]));
        }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one token (canonical spelling only) and appends the level's bytes to `out`.
/// Returns the offset within the token and the reason on failure.
fn decode_token(token: &[u8], out: &mut Vec<u8>) -> Result<(), (usize, &'static str)> {
    match token {
        [] => return Err((0, "empty token")),
        [ESCAPE] => return Ok(()),
        _ => {}
    }
    let mut i = 0;
    while let Some(&b) = token.get(i) {
        if b == b'/' {
            // A level never holds '/' (it separates MQTT levels, which are tokens here): it
            // would decode to the topic of another subject (`a/b` is the token pair `a.b`).
            return Err((i, "'/' inside a token (MQTT levels are separate tokens)"));
        }
        if is_plain(b) {
            out.push(b);
            i += 1;
            continue;
        }
        if b != ESCAPE {
            return Err((i, "a byte that must be escaped appears unescaped"));
        }
        let hi = token.get(i + 1).copied().and_then(hex_value);
        let lo = token.get(i + 2).copied().and_then(hex_value);
        let (Some(hi), Some(lo)) = (hi, lo) else {
            return Err((i, "'~' is not followed by two upper-case hex digits"));
        };
        let byte = (hi << 4) | lo;
        if is_plain(byte) {
            return Err((i, "an escaped byte that stands for itself (not canonical)"));
        }
        out.push(byte);
        i += 3;
    }
    Ok(())
}

/// The subjects of one cluster: `thingkit.<cluster>.…`. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectSpace {
    /// `thingkit.<cluster>.`, with the trailing dot.
    prefix: String,
}

impl SubjectSpace {
    /// The subjects of cluster `cluster`: 1 to [`MAX_CLUSTER_NAME_LEN`] ASCII letters, digits,
    /// `-` or `_` (one NATS token that needs no escaping).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the rule `cluster` breaks.
    pub fn new(cluster: &str) -> Result<Self, Error> {
        if cluster.is_empty() || cluster.len() > MAX_CLUSTER_NAME_LEN {
            return Err(Error::Config(format!(
                "cluster name {cluster:?} must be 1 to {MAX_CLUSTER_NAME_LEN} bytes long"
            )));
        }
        if let Some(c) = cluster
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(Error::Config(format!(
                "cluster name {cluster:?} contains {c:?}: only ASCII letters, digits, '-' and '_' are allowed"
            )));
        }
        Ok(SubjectSpace {
            prefix: format!("{SUBJECT_ROOT}.{cluster}."),
        })
    }

    /// `thingkit.<cluster>` (without a trailing dot).
    pub fn prefix(&self) -> &str {
        self.prefix.strip_suffix('.').unwrap_or(&self.prefix)
    }

    /// The one subject of the cluster's retained messages, whatever their topic:
    /// `thingkit-retained.<cluster>` (every server keeps every retained message, so every server
    /// subscribes to it; the topic travels in the message). No pattern of
    /// [`SubjectSpace::patterns`] matches it.
    pub fn retained(&self) -> String {
        format!("{RETAINED_ROOT}.{}", self.cluster())
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        self.prefix()
            .strip_prefix(SUBJECT_ROOT)
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or_default()
    }

    /// The pattern that covers every topic of the cluster: `thingkit.<cluster>.>`.
    pub fn everything(&self) -> String {
        format!("{}>", self.prefix)
    }

    /// The subject of `topic` (see the module docs for the spelling).
    pub fn subject(&self, topic: &TopicName) -> String {
        let mut out = String::with_capacity(self.prefix.len() + topic.len() + 8);
        out.push_str(&self.prefix);
        for (i, level) in topic.levels().enumerate() {
            if i > 0 {
                out.push('.');
            }
            push_level(level, &mut out);
        }
        out
    }

    /// The topic whose subject is `subject`: the inverse of [`SubjectSpace::subject`], which
    /// refuses every other spelling.
    ///
    /// # Errors
    ///
    /// [`Error::Subject`]: not under this cluster's prefix, an empty token, a non-canonical or
    /// malformed escape, a byte that must be escaped, escaped bytes that are not UTF-8, or a
    /// result that is not a valid MQTT topic name (a wildcard, U+0000, too long).
    pub fn topic(&self, subject: &str) -> Result<TopicName, Error> {
        let bad = |offset: usize, reason: &'static str| Error::Subject {
            subject: subject.chars().take(256).collect(),
            offset,
            reason,
        };
        let Some(rest) = subject.strip_prefix(&self.prefix) else {
            return Err(bad(0, "not under this cluster's subject prefix"));
        };
        let mut bytes = Vec::with_capacity(rest.len());
        let mut offset = self.prefix.len();
        for (i, token) in rest.split('.').enumerate() {
            if i > 0 {
                bytes.push(b'/');
            }
            decode_token(token.as_bytes(), &mut bytes)
                .map_err(|(at, why)| bad(offset + at, why))?;
            offset += token.len() + 1;
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            bad(
                self.prefix.len(),
                "the escaped bytes are not well-formed UTF-8",
            )
        })?;
        TopicName::try_from(text).map_err(|_| {
            bad(
                self.prefix.len(),
                "not a valid MQTT topic name (a wildcard, U+0000, or longer than 65,535 bytes)",
            )
        })
    }

    /// The NATS patterns that, together, match the subject of every topic `filter` matches
    /// (and, for a filter that starts with a wildcard, also the subjects of `$` topics: see
    /// [`SubjectPatterns::excludes_dollar_topics`]). A shared subscription is covered by the
    /// patterns of its inner filter.
    pub fn patterns(&self, filter: &TopicFilter) -> SubjectPatterns {
        let inner = filter.inner();
        let excludes_dollar = matches!(inner.as_bytes().first(), Some(b'+' | b'#'));
        let mut base = self.prefix.clone();
        let mut levels = inner.split('/').peekable();
        let mut first = true;
        let mut patterns = Vec::with_capacity(2);
        while let Some(level) = levels.next() {
            let last = levels.peek().is_none();
            if last && level == "#" {
                if first {
                    base.push('>');
                    patterns.push(base);
                } else {
                    let parent = base.clone();
                    base.push_str(".>");
                    patterns.push(parent);
                    patterns.push(base);
                }
                return SubjectPatterns {
                    patterns,
                    excludes_dollar,
                    prefix_len: self.prefix.len(),
                };
            }
            if !first {
                base.push('.');
            }
            first = false;
            if level == "+" {
                base.push('*');
            } else {
                push_level(level, &mut base);
            }
        }
        patterns.push(base);
        SubjectPatterns {
            patterns,
            excludes_dollar,
            prefix_len: self.prefix.len(),
        }
    }
}

/// The NATS subject patterns that cover one MQTT topic filter ([`SubjectSpace::patterns`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectPatterns {
    patterns: Vec<String>,
    excludes_dollar: bool,
    prefix_len: usize,
}

impl SubjectPatterns {
    /// The patterns to subscribe to (one, or two for a filter ending in `/#`).
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether the filter starts with a wildcard, so that it must not match a topic starting
    /// with `$` [MQTT-4.7.2-1] although its patterns match that topic's subject (NATS knows no
    /// such rule).
    pub fn excludes_dollar_topics(&self) -> bool {
        self.excludes_dollar
    }

    /// Whether the filter matches the topic whose subject is `subject`: one of the patterns
    /// matches it in NATS's terms ([`pattern_matches`]) and the `$` rule does not exclude it.
    /// Agrees with [`thingkit_mqtt::TopicFilter::matches`] on every topic (property-tested).
    pub fn matches(&self, subject: &str) -> bool {
        if self.excludes_dollar
            && subject
                .as_bytes()
                .get(self.prefix_len)
                .is_some_and(|&b| b == b'$')
        {
            return false;
        }
        self.patterns.iter().any(|p| pattern_matches(p, subject))
    }
}

/// NATS's own matching rule: split both on `.`; `*` matches any one token, `>` as the last
/// token matches one or more tokens, every other token matches only itself.
pub fn pattern_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return p.next().is_none(),
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn space() -> SubjectSpace {
        SubjectSpace::new("test").expect("a valid cluster name")
    }

    fn topic(t: &str) -> TopicName {
        TopicName::new(t).expect("a valid topic in the test")
    }

    fn filter(f: &str) -> TopicFilter {
        TopicFilter::new(f).expect("a valid filter in the test")
    }

    /// A subject NATS accepts for publishing: non-empty tokens, no whitespace, no wildcard.
    fn is_valid_nats_subject(s: &str) -> bool {
        !s.is_empty()
            && s.split('.')
                .all(|t| !t.is_empty() && t != "*" && t != ">" && !t.contains(char::is_whitespace))
            && s.is_ascii()
    }

    #[test]
    fn spells_reserved_characters_and_empty_levels_as_escapes() {
        let s = space();
        assert_eq!(s.subject(&topic("a/b")), "thingkit.test.a.b");
        assert_eq!(s.subject(&topic("/")), "thingkit.test.~.~");
        assert_eq!(s.subject(&topic("a.b/*/>")), "thingkit.test.a~2Eb.~2A.~3E");
        assert_eq!(s.subject(&topic("~ x")), "thingkit.test.~7E~20x");
        assert_eq!(s.subject(&topic("é")), "thingkit.test.~C3~A9");
        assert_eq!(
            s.subject(&topic("$aws/things")),
            "thingkit.test.$aws.things"
        );
        assert_eq!(s.subject(&topic("~")), "thingkit.test.~7E");
    }

    #[test]
    fn rejects_non_canonical_and_malformed_subjects() {
        let s = space();
        for bad in [
            "thingkit.test",
            "thingkit.test.",
            "thingkit.test.a..b",
            "thingkit.other.a",
            "thingkit.test.~2e",
            "thingkit.test.~61",
            "thingkit.test.~2",
            "thingkit.test.~~",
            "thingkit.test.a~",
            "thingkit.test.~C3",
            "thingkit.test.~00",
            "thingkit.test.+",
            "thingkit.test.#",
            "thingkit.test.*",
            "thingkit.test.a b",
            "thingkit.test.\u{e9}",
        ] {
            assert!(s.topic(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn hash_covers_its_parent_level() {
        let s = space();
        let p = s.patterns(&filter("a/#"));
        assert_eq!(p.patterns(), ["thingkit.test.a", "thingkit.test.a.>"]);
        assert!(p.matches(&s.subject(&topic("a"))));
        assert!(p.matches(&s.subject(&topic("a/"))));
        assert!(p.matches(&s.subject(&topic("a/b/c"))));
        assert!(!p.matches(&s.subject(&topic("ab"))));
        assert_eq!(s.patterns(&filter("#")).patterns(), ["thingkit.test.>"]);
        assert_eq!(
            s.patterns(&filter("+/x/+")).patterns(),
            ["thingkit.test.*.x.*"]
        );
        assert_eq!(
            s.patterns(&filter("$share/g/a/+")).patterns(),
            ["thingkit.test.a.*"]
        );
    }

    #[test]
    fn leading_wildcards_do_not_match_dollar_topics() {
        let s = space();
        let p = s.patterns(&filter("+/x"));
        assert!(p.excludes_dollar_topics());
        let dollar = s.subject(&topic("$aws/x"));
        assert!(p.patterns().iter().any(|q| pattern_matches(q, &dollar)));
        assert!(!p.matches(&dollar));
        assert!(!s.patterns(&filter("#")).matches(&dollar));
        assert!(s.patterns(&filter("$aws/#")).matches(&dollar));
    }

    #[test]
    fn rejects_bad_cluster_names() {
        assert!(SubjectSpace::new("").is_err());
        assert!(SubjectSpace::new("a.b").is_err());
        assert!(SubjectSpace::new("a*").is_err());
        assert!(SubjectSpace::new(&"x".repeat(65)).is_err());
        let space = SubjectSpace::new("eu-1_a").unwrap();
        assert_eq!(space.prefix(), "thingkit.eu-1_a");
        assert_eq!(space.cluster(), "eu-1_a");
        assert_eq!(space.retained(), "thingkit-retained.eu-1_a");
        assert!(!pattern_matches(&space.everything(), &space.retained()));
    }

    /// One MQTT level: empty, or characters NATS reserves, escapes, `$`, spaces, non-ASCII.
    fn level() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec![
                'a', 'b', '.', '*', '>', '~', ' ', '\t', '$', 'é', '€', '😀', '7', 'E', '\u{7f}',
                '\u{1}', '%',
            ]),
            0..5,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    fn any_topic() -> impl Strategy<Value = TopicName> {
        prop::collection::vec(level(), 1..5)
            .prop_map(|levels| levels.join("/"))
            .prop_filter_map("a valid topic", |t| TopicName::new(&t).ok())
    }

    /// Topics and filters over a small alphabet, so that they often match.
    fn small_topic() -> impl Strategy<Value = TopicName> {
        prop::collection::vec(
            prop::sample::select(vec!["", "a", "b", "$a", ".", "~"]),
            1..5,
        )
        .prop_filter_map("a valid topic", |levels| {
            TopicName::new(&levels.join("/")).ok()
        })
    }

    fn small_filter() -> impl Strategy<Value = TopicFilter> {
        (
            prop::collection::vec(
                prop::sample::select(vec!["", "a", "b", "$a", ".", "~", "+"]),
                0..4,
            ),
            any::<bool>(),
        )
            .prop_filter_map("a valid filter", |(mut levels, hash)| {
                if hash {
                    levels.push("#");
                }
                TopicFilter::new(&levels.join("/")).ok()
            })
    }

    proptest! {
        #[test]
        fn topic_of_subject_of_topic_is_the_topic(t in any_topic()) {
            let s = space();
            let subject = s.subject(&t);
            prop_assert!(is_valid_nats_subject(&subject), "{subject:?}");
            prop_assert_eq!(s.topic(&subject).unwrap(), t);
        }

        #[test]
        fn every_accepted_subject_is_the_subject_of_its_topic(
            tokens in prop::collection::vec(
                prop::collection::vec(
                    prop::sample::select(vec!["a", "~", "~2E", "~2e", "~41", "~7E", "~C3", "~A9",
                        "~00", "~20", "$", "*", ">", "+", " ", "F", "2"]),
                    0..4,
                ).prop_map(|parts| parts.concat()),
                1..4,
            )
        ) {
            let s = space();
            let subject = format!("thingkit.test.{}", tokens.join("."));
            if let Ok(t) = s.topic(&subject) {
                prop_assert_eq!(s.subject(&t), subject);
            }
        }

        #[test]
        fn patterns_agree_with_the_mqtt_matcher(t in small_topic(), f in small_filter()) {
            let s = space();
            let subject = s.subject(&t);
            prop_assert_eq!(s.patterns(&f).matches(&subject), f.matches(&t), "{:?} {:?}", t, f);
        }

        #[test]
        fn patterns_are_valid_nats_patterns(f in small_filter()) {
            for p in space().patterns(&f).patterns() {
                prop_assert!(p.split('.').all(|t| !t.is_empty() && !t.contains(char::is_whitespace)));
                prop_assert!(p.is_ascii());
            }
        }
    }
}
