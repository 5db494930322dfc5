//! The crate's error type.

use crate::finding::Finding;

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The policy document is invalid: the first error finding, and how many errors there were
    /// (run [`validate`](crate::validate) for all of them).
    #[error("invalid policy document: {finding} ({errors} error(s) in total)")]
    InvalidDocument {
        /// The first error.
        finding: Box<Finding>,
        /// The number of error findings.
        errors: usize,
    },
    /// A request (or its context) given as JSON is malformed.
    #[error("invalid request at {path}: {message}")]
    InvalidRequest {
        /// JSON path of the offending field.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// Two policies with the same name were added to a [`PolicySet`](crate::PolicySet).
    #[error("a policy named `{0}` is already in the set")]
    DuplicatePolicy(String),
    /// The [`PolicySet`](crate::PolicySet) already holds `max_policies` policies.
    #[error("the policy set already holds {limit} policies (limit max_policies)")]
    TooManyPolicies {
        /// The limit.
        limit: usize,
    },
}
