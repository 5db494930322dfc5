//! Persistence for the router: the [`RouterStore`] trait, the values it stores, and
//! [`MemoryStore`].
//!
//! The router keeps its working state in memory and writes every durable change through its
//! store as one batch of [`StoreOp`]s per router call. What is durable: persistent sessions
//! (their [`SessionExpiry`], the deadline of a detached one, their subscriptions), the offline
//! QoS 1 queue of each persistent session, and retained messages. What is not: connections,
//! sessions that end with their connection, QoS 0 messages, counters.
//!
//! Time: a stored message carries the wall-clock time it was received (Unix milliseconds), and a
//! detached session the wall-clock time it expires; the router converts from its `Instant`s with
//! the (`Instant`, `SystemTime`) pair it was given at [`Router::with_store`](crate::Router::with_store),
//! so the store never reads a clock either.

use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use thingkit_mqtt::{PacketProperties, QoS, TopicFilter, TopicName};

use crate::error::StoreError;
use crate::message::GrantedSubscription;
use crate::router::SessionExpiry;

#[cfg(feature = "test-suite")]
pub mod conformance;
#[cfg(all(test, not(feature = "test-suite")))]
pub(crate) mod conformance;
#[cfg(feature = "redb")]
mod encoding;
#[cfg(feature = "redb")]
mod redb;

#[cfg(feature = "redb")]
pub use self::redb::RedbStore;

/// Where a [`Router`](crate::Router) keeps what must survive a restart.
///
/// Object safe: the router holds a `Box<dyn RouterStore>`. An implementation must pass
/// `thingkit_broker::conformance::run` (cargo feature `test-suite`).
pub trait RouterStore: Send {
    /// Everything stored, read once when a router starts ([`Router::with_store`](crate::Router::with_store)).
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] when a record does not decode (nothing is returned then: a
    /// router must not start on half its state), [`StoreError::Backend`] when reading fails.
    fn load(&self) -> Result<StoredState, StoreError>;

    /// Applies `ops` in order, atomically: all or nothing. When it returns `Ok`, the batch is
    /// durable (a durable store has it on stable storage and keeps it through `kill -9` and a
    /// power cut); when it returns an error, none of it was applied.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the engine fails, [`StoreError::Encode`] when a value cannot
    /// be encoded.
    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), StoreError>;
}

impl<S: RouterStore + ?Sized> RouterStore for Box<S> {
    fn load(&self) -> Result<StoredState, StoreError> {
        (**self).load()
    }

    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        (**self).apply(ops)
    }
}

/// One change in a batch.
///
/// Deliberately not `#[non_exhaustive]`: a new operation must break every store
/// implementation at compile time rather than fall into a wildcard arm that ignores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Creates or replaces a persistent session's record; its subscriptions and queue stay.
    PutSession {
        /// The session's client identifier.
        client_id: Arc<str>,
        /// Its expiry and deadline.
        record: SessionRecord,
    },
    /// Removes a session with its subscriptions and its queue (no error if absent).
    RemoveSession {
        /// The session's client identifier.
        client_id: Arc<str>,
    },
    /// Adds or replaces a subscription of a session.
    PutSubscription {
        /// The session's client identifier.
        client_id: Arc<str>,
        /// The filter as subscribed (a shared subscription keeps its `$share/{group}/` prefix).
        filter: TopicFilter,
        /// The options the broker granted.
        granted: GrantedSubscription,
    },
    /// Removes a subscription of a session (no error if absent).
    RemoveSubscription {
        /// The session's client identifier.
        client_id: Arc<str>,
        /// The filter as subscribed.
        filter: TopicFilter,
    },
    /// Appends one delivery to the end of a session's offline queue.
    PushQueued {
        /// The session's client identifier.
        client_id: Arc<str>,
        /// The delivery.
        delivery: StoredDelivery,
    },
    /// Empties a session's offline queue (its backlog was handed to a connection, or the router
    /// rewrites it after dropping expired messages).
    ClearQueue {
        /// The session's client identifier.
        client_id: Arc<str>,
    },
    /// Stores the retained message of its topic, replacing any previous one.
    PutRetained {
        /// The message.
        message: Arc<StoredMessage>,
    },
    /// Removes the retained message of `topic` (no error if absent).
    RemoveRetained {
        /// The topic.
        topic: TopicName,
    },
}

/// A persistent session's record: how long it outlives its connection, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session's expiry (never [`SessionExpiry::OnDisconnect`]: such sessions are not stored).
    pub expiry: SessionExpiry,
    /// When a detached session expires, in Unix milliseconds; `None` while it is attached (it
    /// then counts from the next start) or when it never expires.
    pub deadline_unix_ms: Option<u64>,
}

impl SessionRecord {
    /// The bytes [`RedbStore`](crate::RedbStore) keeps for the record.
    ///
    /// # Errors
    ///
    /// [`StoreError::Encode`] for a [`SessionExpiry::OnDisconnect`] record (never stored).
    pub fn to_bytes(&self) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        encoding::put_session(self, &mut out)?;
        Ok(out)
    }

    /// Decodes what [`SessionRecord::to_bytes`] wrote; strict and panic-free on any input.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] (table `"session"`) naming the byte offset and what was wrong.
    pub fn from_bytes(bytes: &[u8]) -> Result<SessionRecord, StoreError> {
        encoding::session(bytes).map_err(|e| e.at("session", "-"))
    }
}

/// An application message as stored: a [`Message`](crate::Message) whose reception time is
/// wall-clock time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The topic.
    pub topic: TopicName,
    /// The payload.
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    /// Its properties (those a PUBLISH may carry).
    pub properties: PacketProperties,
    /// The publishing client.
    pub from: Option<Arc<str>>,
    /// When the broker received it, in Unix milliseconds (the start of its Message Expiry
    /// Interval).
    pub received_unix_ms: u64,
}

impl StoredMessage {
    /// The bytes [`RedbStore`](crate::RedbStore) keeps for the message: a version byte, the
    /// publisher and reception time, then the MQTT 5 PUBLISH that carries it. Another store
    /// may keep the same bytes.
    ///
    /// # Errors
    ///
    /// [`StoreError::Encode`] when the message cannot be carried by a PUBLISH.
    pub fn to_bytes(&self) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        encoding::put_message(self, &mut out)?;
        Ok(out)
    }

    /// Decodes what [`StoredMessage::to_bytes`] wrote. Strict (unknown versions and flag bits,
    /// bad UTF-8 and trailing bytes are errors) and panic-free on any input.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] (table `"message"`) naming the byte offset and what was wrong.
    pub fn from_bytes(bytes: &[u8]) -> Result<StoredMessage, StoreError> {
        encoding::message(bytes).map_err(|e| e.at("message", "-"))
    }

    /// When it expires in Unix milliseconds, if it has a Message Expiry Interval.
    pub fn expires_unix_ms(&self) -> Option<u64> {
        let interval = self.properties.message_expiry_interval?;
        Some(
            self.received_unix_ms
                .saturating_add(u64::from(interval) * 1000),
        )
    }
}

/// A [`Delivery`](crate::Delivery) as stored in an offline queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    /// The message (shared by every queue it was stored in by one batch).
    pub message: Arc<StoredMessage>,
    /// The QoS to deliver with.
    pub qos: QoS,
    /// The RETAIN flag to send.
    pub retain: bool,
    /// The subscription identifier to send.
    pub subscription_id: Option<NonZeroU32>,
}

/// One stored persistent session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// Its client identifier.
    pub client_id: Arc<str>,
    /// Its record.
    pub record: SessionRecord,
    /// Its subscriptions, in any order.
    pub subscriptions: Vec<(TopicFilter, GrantedSubscription)>,
    /// Its offline queue, oldest first.
    pub queue: Vec<StoredDelivery>,
}

/// Everything a store holds, as [`RouterStore::load`] returns it.
///
/// This and the other `Stored*` types are plain data, not `#[non_exhaustive]`, so that a store
/// in another crate can build them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredState {
    /// The persistent sessions, in any order. Subscriptions and queued deliveries whose session
    /// has no record are not returned.
    pub sessions: Vec<StoredSession>,
    /// The retained messages, in any order.
    pub retained: Vec<Arc<StoredMessage>>,
}

#[derive(Debug, Default)]
struct MemorySession {
    record: Option<SessionRecord>,
    subscriptions: BTreeMap<TopicFilter, GrantedSubscription>,
    queue: VecDeque<StoredDelivery>,
}

#[derive(Debug, Default)]
struct MemoryState {
    sessions: BTreeMap<Arc<str>, MemorySession>,
    retained: BTreeMap<TopicName, Arc<StoredMessage>>,
}

/// A [`RouterStore`] in memory: durable only as long as the process (for tests, and for a
/// router that should behave like a stored one without a disk).
///
/// Clones share the same state, so a test can drop a router and start a new one on a clone to see
/// exactly what was written.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<MemoryState>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        // Nothing panics while holding the lock (apply only inserts and removes), so a poisoned
        // lock still guards whole batches.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RouterStore for MemoryStore {
    fn load(&self) -> Result<StoredState, StoreError> {
        let state = self.lock();
        let sessions = state
            .sessions
            .iter()
            .filter_map(|(id, s)| {
                Some(StoredSession {
                    client_id: id.clone(),
                    record: s.record?,
                    subscriptions: s
                        .subscriptions
                        .iter()
                        .map(|(f, g)| (f.clone(), *g))
                        .collect(),
                    queue: s.queue.iter().cloned().collect(),
                })
            })
            .collect();
        Ok(StoredState {
            sessions,
            retained: state.retained.values().cloned().collect(),
        })
    }

    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let mut state = self.lock();
        // Nothing below can fail, so applying in place is all or nothing.
        for op in ops {
            match op {
                StoreOp::PutSession { client_id, record } => {
                    state.sessions.entry(client_id.clone()).or_default().record = Some(*record);
                }
                StoreOp::RemoveSession { client_id } => {
                    state.sessions.remove(client_id);
                }
                StoreOp::PutSubscription {
                    client_id,
                    filter,
                    granted,
                } => {
                    state
                        .sessions
                        .entry(client_id.clone())
                        .or_default()
                        .subscriptions
                        .insert(filter.clone(), *granted);
                }
                StoreOp::RemoveSubscription { client_id, filter } => {
                    if let Some(s) = state.sessions.get_mut(client_id) {
                        s.subscriptions.remove(filter);
                    }
                }
                StoreOp::PushQueued {
                    client_id,
                    delivery,
                } => {
                    state
                        .sessions
                        .entry(client_id.clone())
                        .or_default()
                        .queue
                        .push_back(delivery.clone());
                }
                StoreOp::ClearQueue { client_id } => {
                    if let Some(s) = state.sessions.get_mut(client_id) {
                        s.queue.clear();
                    }
                }
                StoreOp::PutRetained { message } => {
                    state
                        .retained
                        .insert(message.topic.clone(), message.clone());
                }
                StoreOp::RemoveRetained { topic } => {
                    state.retained.remove(topic);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_passes_the_conformance_suite() {
        conformance::run(|| Box::new(MemoryStore::new()));
    }

    #[test]
    fn memory_store_clones_share_their_state() {
        let mut a = MemoryStore::new();
        let b = a.clone();
        a.apply(&[StoreOp::PutSession {
            client_id: "c".into(),
            record: SessionRecord {
                expiry: SessionExpiry::Never,
                deadline_unix_ms: None,
            },
        }])
        .unwrap();
        assert_eq!(b.load().unwrap().sessions.len(), 1);
    }

    #[cfg(feature = "redb")]
    #[test]
    fn redb_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let n = std::cell::Cell::new(0);
        conformance::run(|| {
            n.set(n.get() + 1);
            Box::new(RedbStore::open(dir.path().join(format!("{}.redb", n.get()))).unwrap())
        });
    }

    #[cfg(feature = "redb")]
    #[test]
    fn redb_store_reopens_to_what_was_applied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("router.redb");
        let op = StoreOp::PutRetained {
            message: Arc::new(StoredMessage {
                topic: TopicName::new("t").unwrap(),
                payload: Bytes::from_static(b"p"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: PacketProperties::default(),
                from: None,
                received_unix_ms: 5,
            }),
        };
        RedbStore::open(&path)
            .unwrap()
            .apply(std::slice::from_ref(&op))
            .unwrap();
        let state = RedbStore::open(&path).unwrap().load().unwrap();
        let StoreOp::PutRetained { message } = op else {
            unreachable!()
        };
        assert_eq!(state.retained, vec![message]);
    }

    #[cfg(feature = "redb")]
    #[test]
    fn a_batch_that_fails_to_encode_leaves_the_redb_store_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RedbStore::open(dir.path().join("r.redb")).unwrap();
        let err = store
            .apply(&[
                StoreOp::RemoveRetained {
                    topic: TopicName::new("x").unwrap(),
                },
                StoreOp::PutSession {
                    client_id: "first".into(),
                    record: SessionRecord {
                        expiry: SessionExpiry::Never,
                        deadline_unix_ms: None,
                    },
                },
                // Not storable: the whole batch must be refused.
                StoreOp::PutSession {
                    client_id: "second".into(),
                    record: SessionRecord {
                        expiry: SessionExpiry::OnDisconnect,
                        deadline_unix_ms: None,
                    },
                },
            ])
            .unwrap_err();
        assert!(matches!(err, StoreError::Encode { .. }), "{err}");
        assert_eq!(store.load().unwrap(), StoredState::default());
    }
}
