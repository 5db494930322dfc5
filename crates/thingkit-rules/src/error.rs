//! The crate's one error type.

/// Why a statement, template or evaluation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The statement or template does not parse (or uses a construct its SQL version lacks).
    #[error("{line}:{column}: {message}")]
    Parse {
        /// 1-based line.
        line: u32,
        /// 1-based column, in characters.
        column: u32,
        /// What was wrong.
        message: String,
    },
    /// An input exceeded a limit.
    #[error("{what} exceeds the limit of {limit}")]
    Limit {
        /// What (`statement`, `payload`, `JSON nesting`, `output`, ...).
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A windowed statement (thingkit's `GROUP BY` extension) cannot be run as windows: an
    /// aggregate outside SELECT, a SELECT item that is neither a key nor computed from keys
    /// and aggregates, ... (see [`crate::window`]).
    #[error("{line}:{column}: {message}")]
    Window {
        /// 1-based line.
        line: u32,
        /// 1-based column, in characters.
        column: u32,
        /// What was wrong.
        message: String,
    },
    /// An external function failed: the rule is terminated (its error action runs).
    #[error("{function} failed: {message}")]
    External {
        /// The function.
        function: String,
        /// Its error.
        message: String,
    },
}
