//! # thingkit-broker
//!
//! An MQTT 3.1.1 and 5.0 broker for device fleets, in two layers as quinn is over quinn-proto:
//!
//! - a **sans-IO core**: sessions, subscriptions, retained messages and routing decided by a
//!   [`Router`] that holds no socket, runs on no async runtime and never reads a clock (every
//!   operation that depends on time takes `now`), so it runs the same in a test with injected
//!   time as under the server;
//! - a **server** (the default `server` feature): tokio + rustls, mutual TLS against a
//!   thingkit-provision registry, AWS IoT policies (thingkit-policy) on every CONNECT, PUBLISH,
//!   SUBSCRIBE and delivery, metering and rate limits (thingkit-meter), fleet provisioning by
//!   claim and firmware jobs, certificate revocation that disconnects at once, and graceful
//!   shutdown on SIGINT and SIGTERM.
//!
//! ## Embedding the server
//!
//! ```
//! # #[cfg(feature = "server")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::{Arc, RwLock};
//! use std::time::{Duration, SystemTime};
//! use thingkit_broker::{Broker, BrokerConfig, ServerIdentity};
//! use thingkit_provision::{CaOptions, CaStatus, CertificateAuthority, Registry};
//!
//! // A CA whose devices may connect, and the server's own certificate from it.
//! let now = SystemTime::now();
//! let ca = CertificateAuthority::create_root(&CaOptions::default(), now)?;
//! let mut registry = Registry::in_memory();
//! registry.register_ca_certificate(ca.certificate_der(), CaStatus::Active, false)?;
//! let server = ca.create_server_certificate(&["localhost"], now)?;
//! let identity = ServerIdentity::from_pem(
//!     format!("{}{}", server.certificate.pem(), ca.certificate_pem()),
//!     server.private_key_pem.clone(),
//! );
//!
//! tokio::runtime::Runtime::new()?.block_on(async {
//!     let broker = Broker::builder(Arc::new(RwLock::new(registry)), identity)
//!         .config(BrokerConfig::default().with_max_queued(1_000))
//!         .bind("127.0.0.1:0".parse()?)
//!         .await?;
//!     println!("listening on {}", broker.local_addr());
//!     // A real server waits for `thingkit_broker::shutdown_signal()?.await` here.
//!     broker.shutdown(Duration::from_secs(5)).await;
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })
//! # }
//! # #[cfg(not(feature = "server"))]
//! # fn main() {}
//! ```
//!
//! ## The core alone
//!
//! Without the server (`default-features = false`), the router is a plain value; a driver
//! implements [`Outlet`] for each connection:
//!
//! ```
//! use std::cell::RefCell;
//! use std::sync::Arc;
//! use std::time::Instant;
//! use thingkit_broker::{Delivery, GrantedSubscription, Message, Outlet, Router, SessionExpiry};
//! use thingkit_mqtt::{PacketProperties, QoS, ReasonCode, TopicFilter, TopicName};
//!
//! // A connection's outlet: here a plain queue (a tokio driver uses a bounded channel).
//! #[derive(Default)]
//! struct Queue(RefCell<Vec<Delivery>>);
//! impl Outlet for &Queue {
//!     fn try_deliver(&self, d: Delivery) -> Result<(), Delivery> {
//!         self.0.borrow_mut().push(d);
//!         Ok(())
//!     }
//!     fn kick(&self, _reason: ReasonCode) {}
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let now = Instant::now();
//! let queue = Queue::default();
//! let mut router = Router::default();
//! let sensor: Arc<str> = "sensor-1".into();
//! router.attach(&sensor, true, SessionExpiry::OnDisconnect, 1, &queue, now);
//! let granted = GrantedSubscription {
//!     qos: QoS::AtLeastOnce, no_local: false, retain_as_published: false, id: None,
//! };
//! router.subscribe(&sensor, &TopicFilter::new("cmd/+/reboot")?, granted);
//!
//! let message = Arc::new(Message {
//!     topic: TopicName::new("cmd/sensor-1/reboot")?,
//!     payload: "now".into(),
//!     qos: QoS::AtLeastOnce,
//!     retain: true,
//!     properties: PacketProperties::default(),
//!     from: None,
//!     received: now,
//! });
//! assert_eq!(router.publish(&message)?.queued, 1);
//! assert_eq!(queue.0.borrow()[0].message.payload, "now");
//! // Retained: a later subscription to a matching filter finds it.
//! assert_eq!(router.retained_matching(&TopicFilter::new("cmd/#")?, now).len(), 1);
//! # Ok(()) }
//! ```
//!
//! ## What is in the crate
//!
//! Every item is at the crate root; the modules behind them are private.
//!
//! - [`Router`]: sessions ([`Router::attach`] with takeover and Clean Start, [`Router::detach`],
//!   [`Router::sweep`] for [`SessionExpiry`]), subscriptions ([`GrantedSubscription`], through
//!   thingkit-mqtt's `SubscriptionIndex`: shared subscriptions, No Local, Retain As Published,
//!   subscription identifiers), retained messages (a trie keyed by topic level) and routing
//!   ([`Router::publish`], [`Router::route`] → [`Routed`]).
//! - [`Outlet`]: what a driver implements for each connection (hand over a [`Delivery`], kick).
//! - [`Message`] and [`Delivery`]: what is routed, shared by every subscriber behind an `Arc`.
//! - With `server`: [`Broker::builder`] → [`BrokerBuilder`] → [`BrokerHandle`] (address,
//!   [`StatsSnapshot`], router counters, the node meter, disconnecting a certificate's devices,
//!   graceful shutdown); [`BrokerConfig`]; [`Directory`] (what the server asks the registry:
//!   authentication, revocation, fleet provisioning) with [`RegistryDirectory`] as the default;
//!   [`ServerIdentity`]; [`shutdown_signal`].
//! - With `server`, operations: [`BrokerHandle::metrics`] → [`MetricsSource`] (Prometheus
//!   metrics as OpenMetrics text, read from the broker's counters at scrape time, and health)
//!   and [`serve_metrics`], the HTTP endpoint (`GET /metrics`, `GET /health`).
//! - [`RouterLimits`]: offline queue and retained store caps; [`RouterCounters`]: what they
//!   dropped. [`Error`]: what the router refuses (a retained message over the cap, a store
//!   write that failed).
//! - AWS IoT lifecycle events: [`LifecycleEvent`] (connected, disconnected, subscribed,
//!   unsubscribed) with AWS's topic ([`LifecycleEvent::topic`]) and JSON payload
//!   ([`LifecycleEvent::to_json`]); [`DisconnectReason`], every `disconnectReason` AWS lists,
//!   with [`DisconnectReason::for_server_disconnect`] from an MQTT 5 reason code;
//!   [`PresenceVersions`], the per-client `versionNumber` in bounded memory; and
//!   [`publishes_lifecycle_events`] (not for client IDs containing `#` or `+`). Timestamps are
//!   Unix milliseconds passed in.
//! - Persistence: [`RouterStore`], the trait a router writes its durable state through
//!   ([`Router::with_store`]): one batch of [`StoreOp`]s per call, applied atomically and
//!   durably, and [`RouterStore::load`] → [`StoredState`] on start. [`RedbStore`] (one redb
//!   file, the default) and [`MemoryStore`]; `conformance::run` (feature `test-suite`) is the
//!   suite every implementation must pass. [`StoreError`] says what a store failed at.
//!
//! ## Persistence
//!
//! With a store, these survive a restart, `kill -9` included: persistent sessions (not those
//! that end with their connection) with their expiry, subscriptions and offline QoS 1 queues,
//! and retained messages. Every router call that changes them writes one batch through the
//! store before it returns, and only then changes memory: when [`Router::publish`] returns
//! `Ok`, the message is durable in every offline persistent session's queue it went to, and the
//! broker may send PUBACK; when it returns [`Error::Store`], nothing happened and the broker
//! must not. Routing to connected sessions alone writes nothing.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Instant, SystemTime};
//! use thingkit_broker::{Delivery, MemoryStore, Outlet, Router, RouterLimits, SessionExpiry};
//! use thingkit_mqtt::ReasonCode;
//!
//! struct Closed;
//! impl Outlet for Closed {
//!     fn try_deliver(&self, d: Delivery) -> Result<(), Delivery> { Err(d) }
//!     fn kick(&self, _reason: ReasonCode) {}
//! }
//!
//! # fn main() -> Result<(), thingkit_broker::Error> {
//! let store = MemoryStore::new(); // or RedbStore::open("router.redb")?
//! let (now, wall) = (Instant::now(), SystemTime::now());
//! let mut router = Router::with_store(RouterLimits::default(), store.clone(), now, wall)?;
//! let device: Arc<str> = "device-7".into();
//! router.try_attach(&device, true, SessionExpiry::Never, 1, Closed, now)?;
//! router.try_detach(&device, 1, Vec::new(), now)?;
//! drop(router);
//!
//! // A restart: the session is back, detached.
//! let mut router: Router<Closed> = Router::with_store(RouterLimits::default(), store, now, wall)?;
//! assert!(router.try_attach(&device, false, SessionExpiry::Never, 2, Closed, now)?.session_present);
//! # Ok(()) }
//! ```
//!
//! A stored message keeps the wall-clock time it was received, and a detached session the
//! wall-clock time it expires (Unix milliseconds, converted with the `Instant`/`SystemTime` pair
//! given to [`Router::with_store`], so the router still reads no clock): what expired while the
//! broker was down is not restored.
//!
//! ## Time
//!
//! The router takes `now: Instant` (as quinn-proto does): [`Router::attach`], [`Router::detach`]
//! and [`Router::sweep`] for session expiry, [`Router::retained_matching`] and the backlog
//! returned by `attach` for the MQTT 5 Message Expiry Interval; a [`Message`] carries the
//! `Instant` it was received. Tests move time forward by adding to an `Instant`.
//!
//! ## Cargo features
//!
//! | feature | default | enables |
//! |---|---|---|
//! | `server` | yes | the tokio + rustls server: [`Broker`], [`BrokerConfig`], [`BrokerHandle`], [`Directory`], [`shutdown_signal`], [`serve_metrics`] and the rules engine [`rules`] (adds thingkit-policy, thingkit-provision, thingkit-meter, thingkit-firmware, thingkit-rules, tokio, tokio-rustls, tracing, axum, prometheus-client, ureq) |
//! | `redb` | yes | [`RedbStore`]: the router's durable state in one redb file (pulls in `redb`) |
//! | `parquet` | no | the rules engine's Parquet file sink ([`rules`]; pulls in `parquet` without Arrow, Snappy only) |
//! | `test-suite` | no | `conformance::run`: the test suite every [`RouterStore`] must pass |
//!
//! ## Specifications
//!
//! - MQTT 5.0 (OASIS Standard, 2019): §3.1.2.4 Clean Start and §3.1.2.11.2 Session Expiry
//!   Interval; §3.1.4 takeover (0x8E Session taken over, [MQTT-3.1.4-3]); §3.3.1.3 RETAIN
//!   ([MQTT-3.3.1-6] an empty payload deletes); §3.3.2.3.3 Message Expiry Interval
//!   ([MQTT-3.3.2-5]); §3.8.3.1 subscription options (No Local, Retain As Published, Retain
//!   Handling); §3.8.2.1.2 Subscription Identifier; §4.7 topic filters and wildcards
//!   ([MQTT-4.7.2-1] wildcards do not match `$` topics); §4.8.2 shared subscriptions;
//!   §3.4.2.1 PUBACK 0x97 Quota exceeded.
//! - AWS IoT Core Developer Guide, "Lifecycle events": the `$aws/events/presence/...` and
//!   `$aws/events/subscriptions/...` topics, their JSON elements and examples (the tests compare
//!   with them), the `disconnectReason` table and the `versionNumber` rules.
//! - MQTT 3.1.1 (OASIS Standard, 2014): §3.1.2.4 Clean Session, §3.3.1.3 RETAIN, §4.7 topic
//!   names and filters.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod lifecycle;
mod message;
mod retained;
mod router;
#[cfg(feature = "server")]
mod server;
mod session;
mod store;

pub use error::{Error, Result, StoreError};
pub use lifecycle::{
    DisconnectReason, LifecycleEvent, PresenceVersions, PresenceVersionsConfig,
    UnknownDisconnectReason, publishes_lifecycle_events,
};
pub use message::{Delivery, GrantedSubscription, Message};
pub use router::{
    Attached, Blocked, InterestObserver, Outlet, Requeued, Routed, Router, RouterCounters,
    RouterLimits, SessionExpiry, SharedObserver,
};
#[cfg(feature = "server")]
pub use server::StreamService;
#[cfg(feature = "server")]
pub use server::rules;
#[cfg(feature = "server")]
pub use server::{
    ALPN_PROTOCOLS, Acquire, AdoptedFuture, Authenticated, Bridge, Broker, BrokerBuilder,
    BrokerConfig, BrokerHandle, BrokerPublisher, Confirmation, Confirmer, Directory,
    FIRMWARE_TOPIC_PREFIX, FIRMWARE_TOPIC_SUFFIX, Handover, HandoverFuture, LimitClass,
    METRICS_CONTENT_TYPE, MetricsSource, REVOKE_TOPIC, RegistryDirectory, ServerIdentity, Stats,
    StatsSnapshot, ThingSelector, UsageSink, serve_metrics, shutdown_signal,
};
#[cfg(feature = "server")]
pub use server::{
    ActivityCounters, ActivitySource, ActivityWindow, ConnectionRecord, DeviceActivity,
    FOLD_INTERVAL, MAX_SOURCE_IPS, MaintenanceCounters, RULES_LATENCY_SAMPLES,
};
#[cfg(feature = "server")]
pub use server::{
    Disposition, FirmwareJobService, FleetProvisioningService, JobsService, RevocationService,
    ServiceReply, ServiceRequest, ServiceResponse, ShadowService, SharedJobs, TopicService,
};
pub use session::{
    Action, AllowAll, Authorizer, CloseReason, Closed, Denial, Event, FilterRequest,
    InboundPublish, Session, SessionConfig, SessionCounters, SubscribeRequest, UnsubscribeRequest,
    encode_refusal, session_expiry,
};
#[cfg(feature = "redb")]
pub use store::RedbStore;
#[cfg(feature = "test-suite")]
pub use store::conformance;
pub use store::{
    MemoryStore, RouterStore, SessionRecord, StoreOp, StoredDelivery, StoredMessage, StoredSession,
    StoredState,
};
