//! Several `thingkit serve` processes as one platform: PostgreSQL holds the shared state (the
//! registry, shadows, jobs, persistent sessions, retained messages, the topic rules, templates,
//! access keys and usage of the control plane) and NATS routes messages between the servers. One server on one
//! machine keeps its embedded redb stores; the cluster is a configuration choice.
//!
//! `thingkit serve` composes this crate when its configuration has a `[cluster]` section; the
//! repository's `docs/cluster.md` says how to run three servers, what each engine stores and
//! what happens when each one fails.
//!
//! | module | what | cargo feature |
//! |---|---|---|
//! | (root) | [`PgRegistryStore`], [`PgShadowStore`], [`PgJobStore`], [`PgJobLease`] (which server paces which job), [`RegistryFeed`]; the control plane's [`PgControlStore`] and [`ControlFeed`] | always |
//! | [`subject`] | MQTT topics and filters as NATS subjects and patterns, one canonical subject per topic | always |
//! | [`nats`] | [`nats::NatsRoutes`] and [`nats::NatsBridge`]: messages between servers over NATS (async-nats, ring) | `nats` (default) |
//!
//! Specifications: PostgreSQL 15 (`LISTEN`/`NOTIFY`, advisory locks, `synchronous_commit`); the
//! NATS client protocol (subjects, tokens, wildcards `*` and `>`, headers, `no_echo`); MQTT 5.0
//! §4.7 (topic names and filters, `$` topics) for the subject mapping.
//!
//! ## PostgreSQL stores
//!
//! [`PgRegistryStore`], [`PgShadowStore`] and [`PgJobStore`] implement
//! [`thingkit_provision::RegistryStore`], [`thingkit_shadow::ShadowStore`] and
//! [`thingkit_jobs::JobStore`] on PostgreSQL (tested on 15) and pass the same conformance
//! suites as the memory and redb stores (each crate's `conformance` module, feature
//! `test-suite`). All three can share one [`PostgresConfig`]:
//!
//! ```
//! use thingkit_cluster::{Error, PgRegistryStore, PostgresConfig};
//!
//! let config = PostgresConfig::new("postgres://thingkit@db.internal:5432/thingkit")
//!     .with_schema("fleet_eu");
//! assert_eq!(config.schema, "fleet_eu");
//! // Schema names are spliced into SQL, so anything but a plain identifier is refused,
//! // before any connection is made.
//! let bad = PostgresConfig::new("postgres://db/thingkit").with_schema("eu; DROP TABLE x");
//! assert!(matches!(PgRegistryStore::open(&bad), Err(Error::Config(_))));
//! ```
//!
//! - **One connection per store, on its own thread.** The blocking `postgres` client runs a
//!   runtime of its own and must not be called inside the server's tokio runtime, so each
//!   store sends closures to a dedicated thread. A call waits at most
//!   [`PostgresConfig::call_timeout`]; the server cancels a statement after
//!   `statement_timeout`; `TCP_USER_TIMEOUT` and keepalives notice a vanished server.
//! - **Reconnects by itself.** A call that finds the connection broken (PostgreSQL restarted,
//!   network cut) reconnects and is retried once; every write is an idempotent upsert or
//!   delete, so a retry after an unknown outcome is safe. A call that fails is not
//!   acknowledged; its write may or may not have been applied.
//! - **Acknowledged means durable.** Each write (a registry batch is one) is one transaction
//!   committed with `synchronous_commit = on`, forced per session.
//! - **Migrations at open**, in one transaction under `pg_advisory_xact_lock` keyed by the
//!   schema, recorded per component in `<schema>.schema_version`; a schema migrated by a newer
//!   build is refused ([`Error::SchemaTooNew`]).
//! - **One schema per cluster** ([`PostgresConfig::schema`]), so clusters and test runs can
//!   share a database. Keys use `COLLATE "C"`: listings keep redb's byte order.
//! - **Change feed.** Each registry commit `pg_notify`s the keys it changed inside its
//!   transaction (channel `<schema>.registry`, [`PostgresConfig::registry_notify`]); a
//!   [`RegistryFeed`] `LISTEN`s on its own connection and calls back with each key list, or
//!   with [`RegistryChange::Resync`] after its connection was re-established.
//! - **The control plane's state.** [`PgControlStore`] keeps what the API makes — topic rules
//!   ([`PgTopicRuleStore`], a [`thingkit_api::topic_rule::TopicRuleStore`] passing its
//!   `check_store`), provisioning templates ([`PgTemplateStore`]), access keys
//!   ([`PgAccessKeyStore`]) and job templates ([`PgJobTemplateStore`]), backends of the API's
//!   stores — and the usage ledger of every server ([`PgUsageLedger`]). Each rule, template or
//!   key write notifies the name it changed on `<schema>.control`; a [`ControlFeed`] on each
//!   server calls back with it ([`ControlChange`]).
//! - **No TLS.** Connections are plain TCP (`NoTls`): keep PostgreSQL on loopback or a
//!   private network, or tunnel it.
//!
//! ## Sessions across servers
//!
//! [`PgRouterStore`] keeps the broker's persistent sessions (each owned by one server: the
//! `owner` column), their subscriptions and offline queues, and the retained messages, on
//! PostgreSQL; [`handover::NatsHandover`] (feature `nats`) ends a client ID's connection on
//! every other server when it connects to one, and moves its persistent session along: the
//! owner releases it, the new server claims and adopts it (see [`handover`]). With durable
//! routes ([`nats::NatsConfig::durable`]), a QoS 1 message is in a JetStream stream before its
//! PUBACK, and a session that moves is replayed what it missed meanwhile
//! ([`nats::NatsReplay`], [`handover::NatsHandover::with_replay`]).
//!
//! Tests against a real server are `#[ignore]`d; `.ci/postgres` runs a throwaway one:
//!
//! ```text
//! .ci/postgres start; .ci/nats start
//! THINGKIT_TEST_POSTGRES=$(.ci/postgres url) THINGKIT_TEST_NATS=$(.ci/nats url) \
//!     cargo test -p thingkit-cluster -- --ignored
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
#[cfg(feature = "nats")]
pub mod handover;
#[cfg(feature = "nats")]
pub mod nats;
mod postgres;
pub mod subject;

pub use error::Error;
#[cfg(feature = "sessions")]
pub use postgres::PgRouterStore;
pub use postgres::{
    ControlChange, ControlFeed, DEFAULT_JOB_LEASE, MAX_PAYLOAD, PgAccessKeyStore, PgControlStore,
    PgJobLease, PgJobStore, PgJobTemplateStore, PgRegistryStore, PgShadowStore, PgTemplateStore,
    PgTopicRuleStore, PgUsageLedger, PostgresConfig, RegistryChange, RegistryFeed,
};
