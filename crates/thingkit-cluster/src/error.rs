//! The crate's one error type.

/// What went wrong in a cluster store or in routing between servers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration names something that cannot work (a bad URL, schema or subject).
    #[error("cluster configuration: {0}")]
    Config(String),
    /// A NATS subject that is not the canonical subject of an MQTT topic
    /// ([`crate::subject::SubjectSpace::topic`]).
    #[error("subject {subject:?} at byte {offset}: {reason}")]
    Subject {
        /// The subject (its first 256 characters).
        subject: String,
        /// The byte offset of the problem in the subject.
        offset: usize,
        /// The rule the subject breaks.
        reason: &'static str,
    },
    /// NATS refused or lost the connection or a subscription.
    #[error("NATS: {0}")]
    Nats(String),
    /// A message between servers that cannot be encoded or decoded.
    #[error("cluster message: {0}")]
    Message(String),
}
