//! The crate's error type.

/// What the router refuses, and why the server cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Storing a retained message would exceed a [`RouterLimits`](crate::RouterLimits) limit.
    /// An MQTT 5 broker answers the PUBLISH with 0x97 Quota exceeded (MQTT 5.0 §3.4.2.1).
    #[error("retained store full: {limit} = {max} (MQTT 5 reason code 0x97 Quota exceeded)")]
    RetainedQuotaExceeded {
        /// The `RouterLimits` field that refused it.
        limit: &'static str,
        /// Its value.
        max: usize,
    },
    /// The server's TLS identity or the registry's CAs make no TLS configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// A [`BrokerConfig`](crate::BrokerConfig) field is out of range.
    #[error("broker configuration: {field}: {reason}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A socket operation failed.
    #[error("{context}: {reason}")]
    Io {
        /// What the server was doing.
        context: &'static str,
        /// The operating system's error.
        reason: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
