//! The crate's one error type.

/// What went wrong in a cluster store or in routing between servers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration names something that cannot work (a bad URL, schema or subject).
    #[error("cluster configuration: {0}")]
    Config(String),
}
