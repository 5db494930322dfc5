//! Several `thingkit serve` processes as one platform: PostgreSQL holds the shared state (the
//! registry, shadows, jobs) and NATS routes messages between the servers. One server on one
//! machine keeps its embedded redb stores; the cluster is a configuration choice.
//!
//! (Crate docs, example and feature table: written as the modules land.)

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
#[cfg(feature = "nats")]
pub mod nats;
pub mod subject;

pub use error::Error;
