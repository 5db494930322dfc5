//! The shared state on PostgreSQL: [`PgRegistryStore`], [`PgShadowStore`], [`PgJobStore`] (with
//! [`PgJobLease`]), [`PgRouterStore`] and the control plane's [`PgControlStore`],
//! each implementing its crate's store trait and passing that crate's conformance suite.
//!
//! Each store owns one connection, on a thread of its own (the blocking client must not run
//! inside the server's tokio runtime); calls wait at most [`PostgresConfig::call_timeout`], the
//! server cancels statements after [`PostgresConfig::statement_timeout`], and a connection that
//! broke is re-established by the next call, which is retried once (every write is an
//! idempotent upsert or delete). Migrations run at open under an advisory lock and are recorded
//! in `<schema>.schema_version`.

mod config;
mod connection;
mod control;
mod feed;
mod jobs;
mod lease;
mod migration;
mod registry;
#[cfg(feature = "sessions")]
mod session;
mod shadow;

pub use config::PostgresConfig;
pub use control::{
    ControlChange, ControlFeed, PgAccessKeyStore, PgControlStore, PgJobTemplateStore,
    PgTemplateStore, PgTopicRuleStore, PgUsageLedger,
};
pub use feed::{MAX_PAYLOAD, RegistryChange, RegistryFeed};
pub use jobs::PgJobStore;
pub use lease::{DEFAULT_JOB_LEASE, PgJobLease};
pub use registry::PgRegistryStore;
#[cfg(feature = "sessions")]
pub use session::PgRouterStore;
pub use shadow::PgShadowStore;
