//! The crate's error types.

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
    /// The router's [`RouterStore`](crate::RouterStore) could not make a change durable. The
    /// call that returned it changed nothing (a PUBLISH must not be acknowledged: MQTT 5
    /// PUBACK 0x80 Unspecified error), except where its documentation says otherwise.
    #[error("router store: {0}")]
    Store(#[from] StoreError),
    /// The cluster's [`Bridge`](crate::Bridge) could not make the message durable on its way
    /// to the other servers ([`Confirmation`](crate::Confirmation)): the message reached this
    /// server's subscribers, but it must not be acknowledged (MQTT 5 PUBACK 0x80).
    #[error("cluster bridge: {0}")]
    Bridge(String),
}

impl Error {
    /// The MQTT 5 reason code a broker answers a refused PUBLISH (PUBACK) or SUBSCRIBE entry
    /// (SUBACK) with: 0x97 Quota exceeded for a retained-store limit (MQTT 5.0 §3.4.2.1), 0x80
    /// Unspecified error for a store failure — the broker failed, not the client, so 0x97 would
    /// wrongly tell it to slow down. MQTT 3.1.1 has no negative PUBACK: do not acknowledge (the
    /// tokio server closes the connection of a refused QoS 1 publish).
    pub fn reason_code(&self) -> thingkit_mqtt::ReasonCode {
        match self {
            Error::RetainedQuotaExceeded { .. } => thingkit_mqtt::ReasonCode::QUOTA_EXCEEDED,
            Error::Store(_) | Error::Bridge(_) => thingkit_mqtt::ReasonCode::UNSPECIFIED_ERROR,
            // Not answers to a PUBLISH (the server could not start), but a code all the same.
            Error::Tls(_) | Error::Config { .. } | Error::Io { .. } => {
                thingkit_mqtt::ReasonCode::UNSPECIFIED_ERROR
            }
        }
    }
}

/// What a [`RouterStore`](crate::RouterStore) reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage engine failed (I/O, a full disk, a lock, a closed database).
    #[error("{operation} failed: {detail}")]
    Backend {
        /// What the store was doing (`"open"`, `"commit"`, `"load"`, ...).
        operation: &'static str,
        /// The engine's own message.
        detail: String,
    },
    /// A stored record does not decode: the file was damaged or written by something else.
    /// Nothing was loaded.
    #[error("corrupt record in table {table} at key {key:?}: {detail} (at byte {offset})")]
    Corrupt {
        /// The table (or record kind) holding it.
        table: &'static str,
        /// Its key, as text.
        key: String,
        /// The byte offset in the record's value where decoding stopped.
        offset: usize,
        /// What was wrong.
        detail: String,
    },
    /// A value cannot be encoded for storage (for example a message property that a PUBLISH
    /// cannot carry); nothing was written.
    #[error("cannot encode {what}: {detail}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why it failed.
        detail: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
