//! Errors: why a request was rejected ([`Error`], published on `.../rejected`), why stored bytes
//! do not decode ([`DecodeError`]) and why a store failed ([`StoreError`]).

/// Why a shadow request was rejected. [`Error::code`] and [`Error::message`] give the AWS error
/// document's `code` and `message` (digest A.6); `Display` adds the detail (line:column, JSON
/// path, the limit) for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The payload is not JSON, has a duplicate key, or is not a JSON object (400 `Invalid JSON`).
    #[error("Invalid JSON: {detail}")]
    InvalidJson {
        /// What was wrong and where (line:column).
        detail: String,
    },
    /// An update without `state` (400).
    #[error("Missing required node: state")]
    MissingState,
    /// `state` is neither an object nor null (400).
    #[error("State node must be an object (it is {found})")]
    StateNotObject {
        /// The JSON type found.
        found: &'static str,
    },
    /// `state.desired` is neither an object nor null (400).
    #[error("Desired node must be an object (it is {found})")]
    DesiredNotObject {
        /// The JSON type found.
        found: &'static str,
    },
    /// `state.reported` is neither an object nor null (400).
    #[error("Reported node must be an object (it is {found})")]
    ReportedNotObject {
        /// The JSON type found.
        found: &'static str,
    },
    /// `state` has a member other than `desired` and `reported`, `delta` included (400, R-06).
    #[error("State contains an invalid node: '{node}'")]
    InvalidStateNode {
        /// The member's name.
        node: String,
    },
    /// `version` is not a non-negative integer (400).
    #[error("Invalid version: {detail}")]
    InvalidVersion {
        /// What was found.
        detail: String,
    },
    /// `clientToken` is not a string or is longer than the limit (400, R-17).
    #[error("Invalid clientToken: {detail} (limit max_client_token_bytes = {max})")]
    InvalidClientToken {
        /// What was wrong.
        detail: String,
        /// The limit in bytes.
        max: usize,
    },
    /// desired or reported nests deeper than the limit (400, F-S1).
    #[error("JSON contains too many levels of nesting; maximum is {max} (at {path})")]
    TooDeep {
        /// The limit (levels counted from the section name, which is level 1).
        max: usize,
        /// The JSON path of the first member too deep, or the byte offset for a parser stop.
        path: String,
    },
    /// An array contains null, at any depth (400, R-09).
    #[error("Invalid JSON: arrays cannot contain null values (at {path})")]
    NullInArray {
        /// The JSON path of the null.
        path: String,
    },
    /// `/get` or `/delete` of a shadow that does not exist (404, R-19).
    #[error("No shadow exists with name: '{name}'")]
    NotFound {
        /// The shadow's name (the thing name for a classic shadow).
        name: String,
    },
    /// The request's `version` is not the current version (409, R-03).
    #[error("Version conflict: request version {requested}, current version {current}")]
    VersionConflict {
        /// The version in the request.
        requested: u64,
        /// The shadow's current version (0 if it never existed).
        current: u64,
    },
    /// The payload, or the desired + reported state after the merge, is over its limit (413).
    #[error("The payload exceeds the maximum size allowed: {size} bytes, limit {limit} = {max}")]
    TooLarge {
        /// The size measured, in bytes.
        size: usize,
        /// Which limit: `max_payload_bytes` or `max_state_bytes`.
        limit: &'static str,
        /// The limit's value.
        max: usize,
    },
    /// The payload is not UTF-8 (415, F-S9).
    #[error(
        "Unsupported documented encoding; supported encoding is UTF-8 (invalid at byte {offset})"
    )]
    NotUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// The store failed; nothing was written (500).
    #[error("Internal service failure: {detail}")]
    Internal {
        /// The store's error.
        detail: String,
    },
}

impl Error {
    /// The HTTP status AWS puts in the error document's `code`.
    pub fn code(&self) -> u16 {
        match self {
            Error::NotFound { .. } => 404,
            Error::VersionConflict { .. } => 409,
            Error::TooLarge { .. } => 413,
            Error::NotUtf8 { .. } => 415,
            Error::Internal { .. } => 500,
            _ => 400,
        }
    }

    /// The error document's `message`: AWS's text (DSE21, with the details AWS's service adds
    /// for invalid nodes and missing shadows). Where AWS documents no text (null in an array),
    /// `Invalid JSON: ` and what was wrong.
    pub fn message(&self) -> String {
        match self {
            Error::InvalidJson { .. } => "Invalid JSON".into(),
            Error::MissingState => "Missing required node: state".into(),
            Error::StateNotObject { .. } => "State node must be an object".into(),
            Error::DesiredNotObject { .. } => "Desired node must be an object".into(),
            Error::ReportedNotObject { .. } => "Reported node must be an object".into(),
            Error::InvalidStateNode { node } => format!("State contains an invalid node: '{node}'"),
            Error::InvalidVersion { .. } => "Invalid version".into(),
            Error::InvalidClientToken { .. } => "Invalid clientToken".into(),
            Error::TooDeep { max, .. } => {
                format!("JSON contains too many levels of nesting; maximum is {max}")
            }
            Error::NullInArray { .. } => "Invalid JSON: arrays cannot contain null values".into(),
            Error::NotFound { name } => format!("No shadow exists with name: '{name}'"),
            Error::VersionConflict { .. } => "Version conflict".into(),
            Error::TooLarge { .. } => "The payload exceeds the maximum size allowed".into(),
            Error::NotUtf8 { .. } => {
                "Unsupported documented encoding; supported encoding is UTF-8".into()
            }
            Error::Internal { .. } => "Internal service failure".into(),
        }
    }
}

/// Why bytes given to [`StoredShadow::from_bytes`](crate::StoredShadow::from_bytes) are not a
/// stored shadow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored shadow does not decode at byte {offset}: {detail}")]
pub struct DecodeError {
    /// Byte offset where decoding stopped.
    pub offset: usize,
    /// What was wrong.
    pub detail: &'static str,
}

/// A [`ShadowStore`](crate::ShadowStore) failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage backend failed (I/O, a lock held by another process, ...).
    #[error("shadow store {operation} failed: {detail}")]
    Backend {
        /// What the store was doing: `open`, `get`, `put` or `list`.
        operation: &'static str,
        /// The backend's message.
        detail: String,
    },
    /// A stored record does not decode.
    #[error("stored shadow {key} is corrupt: {source}")]
    Corrupt {
        /// The shadow (`thing` or `thing/name`).
        key: String,
        /// Why it does not decode.
        source: DecodeError,
    },
}
