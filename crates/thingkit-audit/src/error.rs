//! The crate's one error type.

/// Everything that can go wrong in thingkit-audit.
///
/// Each variant carries what a caller needs to act: the JSON path of the member that was refused
/// (`behaviors[2].criteria.durationSeconds`), the limit that was exceeded, the thing whose window
/// was out of order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A document was larger than the configured limit.
    #[error("{what} is {len} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// What was too large (`security profile`).
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The input was not valid JSON for the expected shape (wrong type, unknown member,
    /// duplicate member, syntax error).
    #[error("malformed {what} at line {line} column {column}: {message}")]
    Json {
        /// What was being parsed (`security profile`).
        what: &'static str,
        /// 1-based line inside the parsed text.
        line: usize,
        /// 1-based column inside that line.
        column: usize,
        /// serde_json's description of the problem.
        message: String,
    },
    /// A required member is absent.
    #[error("`{path}` is required")]
    Missing {
        /// JSON path of the missing member, e.g. `behaviors[0].criteria`.
        path: String,
    },
    /// A member is present but its value is not acceptable.
    #[error("invalid `{path}`: {reason}")]
    Invalid {
        /// JSON path of the member, e.g. `behaviors[1].name`.
        path: String,
        /// Why the value was rejected (the constraint from botocore's model or the AWS guide).
        reason: String,
    },
    /// A member is valid AWS input that thingkit does not implement (device-side and custom
    /// metrics, ML Detect, metric dimensions, port and string sets).
    #[error("`{path}` is not supported: {what}")]
    Unsupported {
        /// JSON path of the member, e.g. `behaviors[0].metricDimension`.
        path: String,
        /// What is not supported, and what is.
        what: String,
    },
    /// A list held more entries than the configured limit.
    #[error("`{path}` has {len} entries, over the limit of {limit}")]
    TooMany {
        /// JSON path of the list, e.g. `behaviors`.
        path: String,
        /// Its length.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A detector already holds a security profile of this name.
    #[error("security profile `{name}` is already attached to this detector")]
    DuplicateProfile {
        /// The profile's name.
        name: String,
    },
    /// A batch of windows was refused: windows of one batch must share `window_end`, each
    /// thing may appear once, and a thing's windows must arrive in increasing `window_end`.
    #[error("window of thing `{thing}` ending at {window_end} refused: {reason}")]
    Window {
        /// The thing whose window was refused.
        thing: String,
        /// The window's end (unix seconds).
        window_end: u64,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The detector already tracks its configured maximum number of devices.
    #[error("the detector tracks {limit} devices, its configured maximum")]
    TooManyDevices {
        /// `DetectorConfig::max_devices`.
        limit: usize,
    },
    /// A detector configuration value is unusable.
    #[error("invalid detector configuration `{field}`: {reason}")]
    Config {
        /// The `DetectorConfig` field.
        field: &'static str,
        /// Why it is unusable.
        reason: &'static str,
    },
}
