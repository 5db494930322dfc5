//! [`Error`]: every way a jobs request can fail, each mapped to the error code AWS IoT Jobs
//! answers with (digest B.3 for the device API, B.4 for the control plane).

/// A jobs error. [`Error::code`] is the AWS error code sent in a `.../rejected` document or an
/// HTTP error body; the `Display` text is the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request topic is not a jobs request topic (or names an invalid thing or job).
    #[error("Invalid topic: {detail}")]
    InvalidTopic {
        /// What is wrong with the topic.
        detail: String,
    },
    /// The payload is not JSON, has duplicate keys, or exceeds the payload limit.
    #[error("Invalid JSON: {detail}")]
    InvalidJson {
        /// Where and why the payload could not be read.
        detail: String,
    },
    /// The request is JSON but a field is missing, of the wrong type, or out of range.
    #[error("{detail}")]
    InvalidRequest {
        /// The field and the rule it breaks.
        detail: String,
    },
    /// The requested status change is not allowed from the current status (J-02 … J-06).
    #[error("Job execution status cannot be changed from state {from} to state {to}")]
    InvalidStateTransition {
        /// The current status.
        from: &'static str,
        /// The requested status.
        to: &'static str,
    },
    /// The job, the execution or the thing does not exist.
    #[error("{detail}")]
    ResourceNotFound {
        /// What was not found.
        detail: String,
    },
    /// `expectedVersion` differs from the execution's current `versionNumber`.
    #[error("Expected version {expected} does not match current version {current}")]
    VersionMismatch {
        /// The version the request expected.
        expected: u64,
        /// The execution's version.
        current: u64,
    },
    /// The store failed; nothing was changed.
    #[error("Internal error: {detail}")]
    InternalError {
        /// The backend's description of the failure.
        detail: String,
    },
    /// Too many requests (the broker's metering decides; this crate only renders the answer).
    #[error("Request throttled")]
    RequestThrottled,
    /// The operation needs a non-terminal job or execution.
    #[error("{detail}")]
    TerminalStateReached {
        /// What is in a terminal state.
        detail: String,
    },
    /// Control plane: a job with this id already exists (CreateJob).
    #[error("Job {job_id} already exists")]
    ResourceAlreadyExists {
        /// The id asked for.
        job_id: String,
    },
    /// Control plane: a quota was exceeded (for example more than 10 jobs being deleted).
    #[error("Limit exceeded: {limit} is {value}")]
    LimitExceeded {
        /// The limit's name.
        limit: &'static str,
        /// Its value.
        value: u64,
    },
    /// Control plane: `expectedVersion` of CancelJobExecution differs from the current version.
    #[error("Expected version {expected} does not match current version {current}")]
    VersionConflict {
        /// The version the request expected.
        expected: u64,
        /// The execution's version.
        current: u64,
    },
}

impl Error {
    /// The AWS error code: `InvalidTopic`, `InvalidJson`, `InvalidRequest`,
    /// `InvalidStateTransition`, `ResourceNotFound`, `VersionMismatch`, `InternalError`,
    /// `RequestThrottled`, `TerminalStateReached`, `ResourceAlreadyExists`, `LimitExceeded`,
    /// `VersionConflict`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidTopic { .. } => "InvalidTopic",
            Error::InvalidJson { .. } => "InvalidJson",
            Error::InvalidRequest { .. } => "InvalidRequest",
            Error::InvalidStateTransition { .. } => "InvalidStateTransition",
            Error::ResourceNotFound { .. } => "ResourceNotFound",
            Error::VersionMismatch { .. } => "VersionMismatch",
            Error::InternalError { .. } => "InternalError",
            Error::RequestThrottled => "RequestThrottled",
            Error::TerminalStateReached { .. } => "TerminalStateReached",
            Error::ResourceAlreadyExists { .. } => "ResourceAlreadyExists",
            Error::LimitExceeded { .. } => "LimitExceeded",
            Error::VersionConflict { .. } => "VersionConflict",
        }
    }

    /// Whether AWS attaches the execution's state to this error's document (B.3: only for
    /// InvalidStateTransition and VersionMismatch).
    pub fn carries_execution_state(&self) -> bool {
        matches!(
            self,
            Error::InvalidStateTransition { .. } | Error::VersionMismatch { .. }
        )
    }

    pub(crate) fn request(detail: impl Into<String>) -> Self {
        Error::InvalidRequest {
            detail: detail.into(),
        }
    }

    #[cfg_attr(not(feature = "redb"), allow(dead_code))]
    pub(crate) fn store(detail: impl std::fmt::Display) -> Self {
        Error::InternalError {
            detail: detail.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_aws_names() {
        assert_eq!(
            Error::VersionMismatch {
                expected: 1,
                current: 2
            }
            .code(),
            "VersionMismatch"
        );
        assert_eq!(Error::RequestThrottled.code(), "RequestThrottled");
        let e = Error::InvalidStateTransition {
            from: "SUCCEEDED",
            to: "IN_PROGRESS",
        };
        assert_eq!(
            e.to_string(),
            "Job execution status cannot be changed from state SUCCEEDED to state IN_PROGRESS"
        );
        assert!(e.carries_execution_state());
    }
}
