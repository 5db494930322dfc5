//! The crate's one error type.

/// Everything that can go wrong while decoding, encoding or validating MQTT.
///
/// Every variant says what a user needs to act on: where in the input the problem is (byte offset
/// from the start of the stream the [`Decoder`](crate::Decoder) has consumed, or from the start of
/// the value being validated), which limit was exceeded, and which rule of the specification was
/// violated (`[MQTT-x.y.z-n]` where the specification numbers the rule, otherwise the section).
///
/// A decoding error is fatal for the connection: MQTT has no resynchronisation, so close the
/// network connection (after a DISCONNECT/CONNACK with the matching reason code in MQTT 5).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a valid MQTT packet of the negotiated protocol version.
    #[error("malformed packet at byte {offset}: {detail} {rule}")]
    Malformed {
        /// Byte offset of the offending field from the start of the decoded stream.
        offset: u64,
        /// What is wrong, in words.
        detail: String,
        /// The rule of the specification that the bytes violate.
        rule: &'static str,
    },
    /// A packet announces a size above the configured (or negotiated) maximum packet size.
    #[error(
        "packet at byte {offset} is {size} bytes, above the maximum packet size of {limit} bytes [MQTT-3.1.2-24]"
    )]
    PacketTooLarge {
        /// Byte offset of the packet's first byte in the decoded stream.
        offset: u64,
        /// The whole packet's size (fixed header included) as announced by its header.
        size: u64,
        /// The limit in force.
        limit: u32,
    },
    /// A value cannot be encoded: the specification forbids it or it exceeds a limit.
    #[error("cannot encode: {detail} {rule}")]
    Unencodable {
        /// What is wrong, in words.
        detail: String,
        /// The rule of the specification the packet would violate.
        rule: &'static str,
    },
    /// A topic name or topic filter is invalid.
    #[error("invalid topic {kind} at byte {offset}: {detail} {rule}")]
    InvalidTopic {
        /// `"name"` or `"filter"`.
        kind: &'static str,
        /// Byte offset of the offending character within the topic.
        offset: usize,
        /// What is wrong, in words.
        detail: &'static str,
        /// The rule of the specification the topic violates.
        rule: &'static str,
    },
    /// A topic alias is zero, above the Topic Alias Maximum, or not yet mapped to a topic.
    #[error("topic alias {alias}: {detail} {rule}")]
    TopicAlias {
        /// The alias in question.
        alias: u16,
        /// What is wrong, in words.
        detail: &'static str,
        /// The rule of the specification violated.
        rule: &'static str,
    },
    /// The transport failed (only produced by the `tokio-codec` integration).
    #[cfg(feature = "tokio-codec")]
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The specification rule this error names, if it names one.
    pub fn rule(&self) -> Option<&'static str> {
        match self {
            Error::Malformed { rule, .. }
            | Error::Unencodable { rule, .. }
            | Error::InvalidTopic { rule, .. }
            | Error::TopicAlias { rule, .. } => Some(rule),
            Error::PacketTooLarge { .. } => Some("[MQTT-3.1.2-24]"),
            #[cfg(feature = "tokio-codec")]
            Error::Io(_) => None,
        }
    }

    pub(crate) fn unencodable(detail: impl Into<String>, rule: &'static str) -> Self {
        Error::Unencodable {
            detail: detail.into(),
            rule,
        }
    }
}
