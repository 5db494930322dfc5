//! # thingkit-broker
//!
//! The core of an MQTT 3.1.1 and 5.0 broker as sans-IO state: sessions, subscriptions, retained
//! messages and routing decided by a [`Router`] that holds no socket, runs on no async runtime and
//! never reads a clock (every operation that depends on time takes `now`). A driver (today the
//! tokio broker in the repository's `examples/broker`) owns the connections and hands the
//! router each connection's [`Outlet`]; the same router runs in a test with injected time.
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
//! - [`RouterLimits`]: offline queue and retained store caps; [`RouterCounters`]: what they
//!   dropped. [`Error`]: what the router refuses (a retained message over the cap).
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
//! | (none) | | the crate has no optional parts yet; a tokio driver will come behind a feature |
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
//! - MQTT 3.1.1 (OASIS Standard, 2014): §3.1.2.4 Clean Session, §3.3.1.3 RETAIN, §4.7 topic
//!   names and filters.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod message;
mod retained;
mod router;
mod store;

pub use error::{Error, Result, StoreError};
pub use message::{Delivery, GrantedSubscription, Message};
pub use router::{Attached, Outlet, Routed, Router, RouterCounters, RouterLimits, SessionExpiry};
#[cfg(feature = "redb")]
pub use store::RedbStore;
#[cfg(feature = "test-suite")]
pub use store::conformance;
pub use store::{
    MemoryStore, RouterStore, SessionRecord, StoreOp, StoredDelivery, StoredMessage, StoredSession,
    StoredState,
};
