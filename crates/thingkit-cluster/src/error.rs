//! The crate's one error type.

use std::time::Duration;

/// What went wrong in a cluster store or in routing between servers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration names something that cannot work (a bad URL, schema or subject).
    #[error("cluster configuration: {0}")]
    Config(String),
    /// PostgreSQL refused or failed a statement, or the connection to it broke. `message` is
    /// PostgreSQL's (with its SQLSTATE `code` when the server sent one). A broken connection is
    /// re-established by the next call; a refused statement changed nothing.
    #[error("PostgreSQL {operation}: {message}")]
    Postgres {
        /// What the store was doing: `connect`, `migrate`, `get`, `commit`, `list`, ...
        operation: &'static str,
        /// The SQLSTATE (for example `57P01` when the server was shut down), if the server
        /// answered at all.
        code: Option<String>,
        /// PostgreSQL's message, or the client's when the connection failed.
        message: String,
    },
    /// A call did not complete within the store's `call_timeout`. Whether a write was applied
    /// is unknown: it was not acknowledged, and retrying it is safe (every write is
    /// idempotent).
    #[error("PostgreSQL {operation}: no answer within {after:?}")]
    Timeout {
        /// What the store was doing.
        operation: &'static str,
        /// The configured call timeout.
        after: Duration,
    },
    /// The database holds a newer schema for `component` than this build knows: upgrade
    /// thingkit on every server (or point this one at another schema) before starting it.
    #[error(
        "PostgreSQL schema for {component} is at version {found}, newer than this build's {known}; upgrade thingkit"
    )]
    SchemaTooNew {
        /// `registry`, `shadow` or `jobs`.
        component: &'static str,
        /// The version recorded in the database's `schema_version` table.
        found: i32,
        /// The newest version this build knows.
        known: i32,
    },
    /// A stored record does not decode (written by something else, or damaged).
    #[error("PostgreSQL {what} is corrupt: {detail}")]
    Corrupt {
        /// Which record (`job a`, `execution of a on t1`, ...).
        what: String,
        /// Why it does not decode.
        detail: String,
    },
    /// The store's connection thread has stopped (it panicked); open the store again.
    #[error("the PostgreSQL connection thread of this store has stopped")]
    Closed,
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
