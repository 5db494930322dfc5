//! The crate's one error type.

/// Everything that can go wrong in thingkit-meter.
///
/// Each variant carries what a caller needs to act: the line and column of malformed JSON, the
/// limit that was exceeded, the account and period of an exhausted quota.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input line or document was longer than the configured limit.
    #[error("{what} is {len} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// What was too large (`usage line`, `price table`).
        what: &'static str,
        /// Its length in bytes (at least `limit + 1` when the reader stopped early).
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The input was not valid JSON for the expected shape.
    #[error("malformed {what} at line {line} column {column}: {message}")]
    Json {
        /// What was being parsed (`usage event`, `price table`).
        what: &'static str,
        /// 1-based line inside the parsed text.
        line: usize,
        /// 1-based column inside that line.
        column: usize,
        /// serde_json's description of the problem.
        message: String,
    },
    /// A field parsed but its value is not acceptable.
    #[error("invalid `{field}`: {reason}")]
    InvalidField {
        /// JSON path of the field, e.g. `id` or `dimensions[1].tiers[0].up_to`.
        field: String,
        /// Why the value was rejected.
        reason: String,
    },
    /// A name did not match any built-in preset.
    #[error("unknown preset `{name}` (known: {known})")]
    UnknownPreset {
        /// The name given.
        name: String,
        /// The preset names that exist, comma separated.
        known: &'static str,
    },
    /// A computation would exceed the range of its integer type.
    #[error("arithmetic overflow computing {0}")]
    Overflow(&'static str),
    /// A daily or monthly quota has no room for the requested units.
    #[error(
        "{period} quota exhausted for account `{account}`: limit {limit} units, used {used}, requested {requested}"
    )]
    QuotaExhausted {
        /// The account whose quota is exhausted.
        account: String,
        /// `daily` or `monthly`.
        period: &'static str,
        /// The quota in units.
        limit: u64,
        /// Units already used in the period.
        used: u64,
        /// Units the refused request asked for.
        requested: u64,
    },
    /// The hard cap on tracked keys (rate limiter, connection table, quota accounts) was reached.
    #[error("{what} already tracks {limit} keys, its configured cap")]
    TooManyKeys {
        /// Which structure is full.
        what: &'static str,
        /// The cap.
        limit: usize,
    },
    /// A usage event arrived after the ledger's acceptance window closed.
    #[error(
        "event `{id}` at time {time} is older than the acceptance window ({window_secs} s before the newest event at {newest})"
    )]
    LateEvent {
        /// The event's idempotency key.
        id: String,
        /// The event's time (Unix seconds).
        time: u64,
        /// The newest event time the ledger has accepted.
        newest: u64,
        /// The acceptance window in seconds.
        window_secs: u64,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration `{field}`: {reason}")]
    Config {
        /// The field at fault.
        field: &'static str,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// The ledger's storage failed (I/O, corruption detected by redb, lock held by another process).
    #[cfg(feature = "ledger-redb")]
    #[error("ledger storage: {0}")]
    Storage(#[source] Box<redb::Error>),
    /// A stored ledger record could not be decoded.
    #[error("ledger record {seq} is corrupt: {reason}")]
    CorruptRecord {
        /// The record's sequence number.
        seq: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing an export failed.
    #[error("export: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(feature = "ledger-redb")]
macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Storage(Box::new(redb::Error::from(e)))
            }
        }
    )*};
}

#[cfg(feature = "ledger-redb")]
storage_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl Error {
    pub(crate) fn json(what: &'static str, e: &serde_json::Error) -> Self {
        Error::Json {
            what,
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        }
    }

    pub(crate) fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
