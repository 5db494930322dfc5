//! The crate's error type.

use crate::finding::{Finding, Severity};

/// "N error(s)" and then every finding on its own line.
fn list(findings: &[Finding]) -> String {
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let mut out = format!("{errors} error(s)");
    for f in findings {
        out.push_str("\n  ");
        out.push_str(&f.to_string());
    }
    out
}

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The policy document is invalid. `findings` holds every finding (at least one error, and
    /// any warnings), ordered by position, exactly as [`validate`](crate::validate) returns them;
    /// the message lists them one per line.
    #[error("invalid policy document: {}", list(findings))]
    InvalidDocument {
        /// Every finding, errors and warnings, ordered by position.
        findings: Vec<Finding>,
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
