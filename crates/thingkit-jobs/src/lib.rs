//! AWS IoT Jobs, sans-IO (to be documented).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod device;
pub mod error;
pub mod execution;
pub mod job;
pub mod rollout;
pub mod schedule;
pub mod store;
