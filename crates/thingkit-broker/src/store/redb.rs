//! [`RedbStore`]: the router's store in one [redb](https://docs.rs/redb) file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction,
};

use crate::error::StoreError;
use crate::store::encoding;
use crate::store::{RouterStore, StoreOp, StoredSession, StoredState};

/// Persistent sessions: client id → [`SessionRecord`](crate::SessionRecord).
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("thingkit-broker-sessions-v1");
/// Subscriptions: (client id, filter) → granted options.
const SUBSCRIPTIONS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("thingkit-broker-subscriptions-v1");
/// Offline queues: (client id, sequence number) → delivery options and message id; a session's
/// queue is its range, in sequence order.
const QUEUE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("thingkit-broker-queue-v1");
/// Queued messages by id: a message queued for many sessions in one batch is stored once.
const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("thingkit-broker-messages-v1");
/// How many queue entries refer to each message; a message goes when its count reaches 0.
const MESSAGE_REFS: TableDefinition<u64, u64> =
    TableDefinition::new("thingkit-broker-message-refs-v1");
/// Retained messages: topic → message.
const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("thingkit-broker-retained-v1");

fn backend(operation: &'static str) -> impl Fn(redb::Error) -> StoreError {
    move |e| StoreError::Backend {
        operation,
        detail: e.to_string(),
    }
}

fn b<E: Into<redb::Error>>(operation: &'static str) -> impl Fn(E) -> StoreError {
    move |e| backend(operation)(e.into())
}

/// A [`RouterStore`] in one redb database file.
///
/// Each [`apply`](RouterStore::apply) is one redb write transaction committed with
/// [`Durability::Immediate`]: when it returns `Ok` the batch is on stable storage (redb's
/// commit fsyncs), and a process killed at any point reopens to the last acknowledged batch.
/// Values are encoded by the crate (a message as the MQTT 5 PUBLISH packet that carries it,
/// behind a versioned header). A message queued for many offline sessions by one batch (one
/// publish) is stored once, with a reference count, and removed with its last queue entry.
/// A record that does not decode makes [`RouterStore::load`] fail
/// with [`StoreError::Corrupt`] naming its table and key.
pub struct RedbStore {
    db: Database,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens the database at `path`, creating it (and its tables) if it does not exist.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when redb cannot open or create it (for example another process
    /// holds it open).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(b("open"))?;
        let txn = db.begin_write().map_err(b("open"))?;
        txn.open_table(SESSIONS).map_err(b("open"))?;
        txn.open_table(SUBSCRIPTIONS).map_err(b("open"))?;
        txn.open_table(QUEUE).map_err(b("open"))?;
        txn.open_table(MESSAGES).map_err(b("open"))?;
        txn.open_table(MESSAGE_REFS).map_err(b("open"))?;
        txn.open_table(RETAINED).map_err(b("open"))?;
        txn.commit().map_err(b("open"))?;
        Ok(RedbStore { db })
    }

    #[cfg(test)]
    pub(crate) fn corrupt_retained_for_test(&self, topic: &str, bytes: &[u8]) {
        let txn = self.db.begin_write().expect("test write");
        txn.open_table(RETAINED)
            .expect("test table")
            .insert(topic, bytes)
            .expect("test insert");
        txn.commit().expect("test commit");
    }
}

struct Tables<'t> {
    sessions: Table<'t, &'static str, &'static [u8]>,
    subscriptions: Table<'t, (&'static str, &'static str), &'static [u8]>,
    queue: Table<'t, (&'static str, u64), &'static [u8]>,
    messages: Table<'t, u64, &'static [u8]>,
    refs: Table<'t, u64, u64>,
    retained: Table<'t, &'static str, &'static [u8]>,
    /// The id each message of this batch was stored under, by `Arc` address: the router queues
    /// one `Arc<StoredMessage>` for every offline session a publish goes to.
    batch_messages: HashMap<usize, u64>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(Tables {
            sessions: txn.open_table(SESSIONS).map_err(b("commit"))?,
            subscriptions: txn.open_table(SUBSCRIPTIONS).map_err(b("commit"))?,
            queue: txn.open_table(QUEUE).map_err(b("commit"))?,
            messages: txn.open_table(MESSAGES).map_err(b("commit"))?,
            refs: txn.open_table(MESSAGE_REFS).map_err(b("commit"))?,
            retained: txn.open_table(RETAINED).map_err(b("commit"))?,
            batch_messages: HashMap::new(),
        })
    }

    fn clear_queue(&mut self, client_id: &str) -> Result<(), StoreError> {
        let mut message_ids = Vec::new();
        for entry in self
            .queue
            .range((client_id, 0u64)..=(client_id, u64::MAX))
            .map_err(b("commit"))?
        {
            let (k, v) = entry.map_err(b("commit"))?;
            let (_, _, _, message_id) = encoding::queued(v.value())
                .map_err(|e| e.at("queue", format!("{client_id} #{}", k.value().1)))?;
            message_ids.push(message_id);
        }
        self.queue
            .retain_in((client_id, 0u64)..=(client_id, u64::MAX), |_, _| false)
            .map_err(b("commit"))?;
        for id in message_ids {
            self.release(id)?;
        }
        Ok(())
    }

    /// Drops one reference to message `id`, and the message with the last one.
    fn release(&mut self, id: u64) -> Result<(), StoreError> {
        let refs = self.refs.get(id).map_err(b("commit"))?.map(|g| g.value());
        match refs {
            Some(n) if n > 1 => {
                self.refs.insert(id, n - 1).map_err(b("commit"))?;
            }
            _ => {
                self.refs.remove(id).map_err(b("commit"))?;
                self.messages.remove(id).map_err(b("commit"))?;
                // Its id may be given to another message of this batch now.
                self.batch_messages.retain(|_, v| *v != id);
            }
        }
        Ok(())
    }

    /// The id `message` is stored under in this batch, storing it (or counting one more
    /// reference) first.
    fn hold(&mut self, message: &Arc<crate::StoredMessage>) -> Result<u64, StoreError> {
        let address = Arc::as_ptr(message) as usize;
        if let Some(&id) = self.batch_messages.get(&address) {
            let n = self
                .refs
                .get(id)
                .map_err(b("commit"))?
                .map_or(0, |g| g.value());
            self.refs.insert(id, n + 1).map_err(b("commit"))?;
            return Ok(id);
        }
        let last = self
            .messages
            .last()
            .map_err(b("commit"))?
            .map(|(k, _)| k.value());
        let id = match last {
            None => 0,
            Some(n) => n.checked_add(1).ok_or(StoreError::Backend {
                operation: "commit",
                detail: "message ids exhausted".into(),
            })?,
        };
        let mut encoded = Vec::new();
        encoding::put_message(message, &mut encoded)?;
        self.messages
            .insert(id, encoded.as_slice())
            .map_err(b("commit"))?;
        self.refs.insert(id, 1).map_err(b("commit"))?;
        self.batch_messages.insert(address, id);
        Ok(id)
    }

    fn apply(&mut self, op: &StoreOp, buf: &mut Vec<u8>) -> Result<(), StoreError> {
        buf.clear();
        match op {
            StoreOp::PutSession { client_id, record } => {
                encoding::put_session(record, buf)?;
                self.sessions
                    .insert(&**client_id, buf.as_slice())
                    .map_err(b("commit"))?;
            }
            StoreOp::RemoveSession { client_id } => {
                let id: &str = client_id;
                self.sessions.remove(id).map_err(b("commit"))?;
                let mut filters: Vec<String> = Vec::new();
                for entry in self.subscriptions.range((id, "")..).map_err(b("commit"))? {
                    let (k, _) = entry.map_err(b("commit"))?;
                    let (c, f) = k.value();
                    if c != id {
                        break;
                    }
                    filters.push(f.to_owned());
                }
                for f in &filters {
                    self.subscriptions
                        .remove((id, f.as_str()))
                        .map_err(b("commit"))?;
                }
                self.clear_queue(id)?;
            }
            StoreOp::PutSubscription {
                client_id,
                filter,
                granted,
            } => {
                encoding::put_granted(granted, buf);
                self.subscriptions
                    .insert((&**client_id, filter.as_str()), buf.as_slice())
                    .map_err(b("commit"))?;
            }
            StoreOp::RemoveSubscription { client_id, filter } => {
                self.subscriptions
                    .remove((&**client_id, filter.as_str()))
                    .map_err(b("commit"))?;
            }
            StoreOp::PushQueued {
                client_id,
                delivery,
            } => {
                let id: &str = client_id;
                let last = self
                    .queue
                    .range((id, 0u64)..=(id, u64::MAX))
                    .map_err(b("commit"))?
                    .next_back()
                    .transpose()
                    .map_err(b("commit"))?
                    .map(|(k, _)| k.value().1);
                let seq = match last {
                    None => 0,
                    Some(n) => n.checked_add(1).ok_or(StoreError::Backend {
                        operation: "commit",
                        detail: format!("queue sequence of {id:?} exhausted"),
                    })?,
                };
                let message_id = self.hold(&delivery.message)?;
                encoding::put_queued(delivery, message_id, buf);
                self.queue
                    .insert((id, seq), buf.as_slice())
                    .map_err(b("commit"))?;
            }
            StoreOp::ClearQueue { client_id } => self.clear_queue(client_id)?,
            StoreOp::PutRetained { message } => {
                encoding::put_message(message, buf)?;
                self.retained
                    .insert(message.topic.as_str(), buf.as_slice())
                    .map_err(b("commit"))?;
            }
            StoreOp::RemoveRetained { topic } => {
                self.retained.remove(topic.as_str()).map_err(b("commit"))?;
            }
        }
        Ok(())
    }
}

impl RouterStore for RedbStore {
    fn load(&self) -> Result<StoredState, StoreError> {
        let txn = self.db.begin_read().map_err(b("load"))?;
        let sessions_t = txn.open_table(SESSIONS).map_err(b("load"))?;
        let subs_t = txn.open_table(SUBSCRIPTIONS).map_err(b("load"))?;
        let queue_t = txn.open_table(QUEUE).map_err(b("load"))?;
        let messages_t = txn.open_table(MESSAGES).map_err(b("load"))?;
        let mut messages: HashMap<u64, Arc<crate::StoredMessage>> = HashMap::new();
        let retained_t = txn.open_table(RETAINED).map_err(b("load"))?;
        let mut state = StoredState::default();
        for entry in sessions_t.iter().map_err(b("load"))? {
            let (k, v) = entry.map_err(b("load"))?;
            let id = k.value();
            let record = encoding::session(v.value()).map_err(|e| e.at("sessions", id))?;
            let mut session = StoredSession {
                client_id: Arc::from(id),
                record,
                subscriptions: Vec::new(),
                queue: Vec::new(),
            };
            for entry in subs_t.range((id, "")..).map_err(b("load"))? {
                let (k, v) = entry.map_err(b("load"))?;
                let (c, f) = k.value();
                if c != id {
                    break;
                }
                let key = || format!("{id} {f}");
                let filter =
                    thingkit_mqtt::TopicFilter::new(f).map_err(|e| StoreError::Corrupt {
                        table: "subscriptions",
                        key: key(),
                        offset: 0,
                        detail: format!("invalid filter in key: {e}"),
                    })?;
                let granted =
                    encoding::granted(v.value()).map_err(|e| e.at("subscriptions", key()))?;
                session.subscriptions.push((filter, granted));
            }
            for entry in queue_t
                .range((id, 0u64)..=(id, u64::MAX))
                .map_err(b("load"))?
            {
                let (k, v) = entry.map_err(b("load"))?;
                let seq = k.value().1;
                let key = || format!("{id} #{seq}");
                let (qos, retain, subscription_id, message_id) =
                    encoding::queued(v.value()).map_err(|e| e.at("queue", key()))?;
                let message =
                    match messages.get(&message_id) {
                        Some(m) => m.clone(),
                        None => {
                            let raw = messages_t.get(message_id).map_err(b("load"))?.ok_or_else(
                                || StoreError::Corrupt {
                                    table: "queue",
                                    key: key(),
                                    offset: 0,
                                    detail: format!(
                                        "refers to message {message_id}, which is missing"
                                    ),
                                },
                            )?;
                            let m = Arc::new(
                                encoding::message(raw.value())
                                    .map_err(|e| e.at("messages", message_id.to_string()))?,
                            );
                            messages.insert(message_id, m.clone());
                            m
                        }
                    };
                session.queue.push(crate::StoredDelivery {
                    message,
                    qos,
                    retain,
                    subscription_id,
                });
            }
            state.sessions.push(session);
        }
        for entry in retained_t.iter().map_err(b("load"))? {
            let (k, v) = entry.map_err(b("load"))?;
            let topic = k.value();
            let m = encoding::message(v.value()).map_err(|e| e.at("retained", topic))?;
            if m.topic.as_str() != topic {
                return Err(StoreError::Corrupt {
                    table: "retained",
                    key: topic.to_owned(),
                    offset: 0,
                    detail: format!("holds a message for topic {:?}", m.topic.as_str()),
                });
            }
            state.retained.push(Arc::new(m));
        }
        Ok(state)
    }

    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut txn = self.db.begin_write().map_err(b("commit"))?;
        txn.set_durability(Durability::Immediate)
            .map_err(b("commit"))?;
        {
            let mut tables = Tables::open(&txn)?;
            let mut buf = Vec::new();
            for op in ops {
                // An error returns before `commit`: dropping the transaction aborts it, so a
                // failed batch leaves nothing behind.
                tables.apply(op, &mut buf)?;
            }
        }
        txn.commit().map_err(b("commit"))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Instant, SystemTime};

    use thingkit_mqtt::ReasonCode;

    use super::*;
    use crate::{Delivery, Error, Outlet, Router, RouterLimits};

    #[derive(Debug)]
    struct NoOutlet;
    impl Outlet for NoOutlet {
        fn try_deliver(&self, d: Delivery) -> Result<(), Delivery> {
            Err(d)
        }
        fn kick(&self, _reason: ReasonCode) {}
    }

    #[test]
    fn corrupt_bytes_in_the_store_are_a_typed_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("router.redb");
        let store = RedbStore::open(&path).unwrap();
        for garbage in [
            &b""[..],
            b"\x01",
            b"\x09\x00",
            b"\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ] {
            store.corrupt_retained_for_test("a/b", garbage);
            match store.load() {
                Err(StoreError::Corrupt { table, key, .. }) => {
                    assert_eq!((table, key.as_str()), ("retained", "a/b"));
                }
                other => panic!("expected a corrupt-record error, got {other:?}"),
            }
        }
        drop(store);
        let store = RedbStore::open(&path).unwrap();
        let err = Router::<NoOutlet>::with_store(
            RouterLimits::default(),
            store,
            Instant::now(),
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::Store(StoreError::Corrupt { .. })),
            "a router does not start on a corrupt store: {err}"
        );
    }

    #[test]
    fn a_record_under_the_wrong_key_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RedbStore::open(dir.path().join("r.redb")).unwrap();
        let mut good = Vec::new();
        encoding::put_message(
            &crate::StoredMessage {
                topic: thingkit_mqtt::TopicName::new("x").unwrap(),
                payload: bytes::Bytes::from_static(b"1"),
                qos: thingkit_mqtt::QoS::AtMostOnce,
                retain: true,
                properties: Default::default(),
                from: None,
                received_unix_ms: 0,
            },
            &mut good,
        )
        .unwrap();
        store.apply(&[]).unwrap();
        store.corrupt_retained_for_test("y", &good);
        assert!(matches!(
            store.load(),
            Err(StoreError::Corrupt {
                table: "retained",
                ..
            })
        ));
    }

    fn counts(store: &RedbStore) -> (u64, Vec<u64>) {
        use redb::ReadableTableMetadata;
        let txn = store.db.begin_read().unwrap();
        let messages = txn.open_table(MESSAGES).unwrap().len().unwrap();
        let refs = txn
            .open_table(MESSAGE_REFS)
            .unwrap()
            .iter()
            .unwrap()
            .map(|e| e.unwrap().1.value())
            .collect();
        (messages, refs)
    }

    #[test]
    fn a_message_queued_for_many_sessions_in_one_batch_is_stored_once() {
        use crate::{SessionExpiry, SessionRecord, StoredDelivery, StoredMessage};
        let dir = tempfile::tempdir().unwrap();
        let mut store = RedbStore::open(dir.path().join("r.redb")).unwrap();
        let message = Arc::new(StoredMessage {
            topic: thingkit_mqtt::TopicName::new("fleet/all").unwrap(),
            payload: bytes::Bytes::from(vec![7u8; 4096]),
            qos: thingkit_mqtt::QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
            from: None,
            received_unix_ms: 1,
        });
        let delivery = StoredDelivery {
            message: message.clone(),
            qos: thingkit_mqtt::QoS::AtLeastOnce,
            retain: false,
            subscription_id: None,
        };
        let clients: Vec<Arc<str>> = (0..3).map(|i| Arc::from(format!("c{i}"))).collect();
        let mut ops = Vec::new();
        for c in &clients {
            ops.push(StoreOp::PutSession {
                client_id: c.clone(),
                record: SessionRecord {
                    expiry: SessionExpiry::Never,
                    deadline_unix_ms: None,
                },
            });
            ops.push(StoreOp::PushQueued {
                client_id: c.clone(),
                delivery: delivery.clone(),
            });
        }
        store.apply(&ops).unwrap();
        assert_eq!(counts(&store), (1, vec![3]));
        let state = store.load().unwrap();
        assert!(
            state
                .sessions
                .iter()
                .all(|s| s.queue == vec![delivery.clone()])
        );
        // Released with the queues that hold it; a release to zero and a new push of the same
        // message in one batch store it again.
        store
            .apply(&[
                StoreOp::ClearQueue {
                    client_id: clients[0].clone(),
                },
                StoreOp::RemoveSession {
                    client_id: clients[1].clone(),
                },
            ])
            .unwrap();
        assert_eq!(counts(&store), (1, vec![1]));
        store
            .apply(&[
                StoreOp::ClearQueue {
                    client_id: clients[2].clone(),
                },
                StoreOp::PushQueued {
                    client_id: clients[0].clone(),
                    delivery: delivery.clone(),
                },
            ])
            .unwrap();
        assert_eq!(counts(&store), (1, vec![1]));
        assert_eq!(
            store
                .load()
                .unwrap()
                .sessions
                .iter()
                .map(|s| s.queue.len())
                .sum::<usize>(),
            1
        );
        store
            .apply(&[StoreOp::ClearQueue {
                client_id: clients[0].clone(),
            }])
            .unwrap();
        assert_eq!(counts(&store), (0, vec![]));
    }

    #[test]
    fn a_queue_entry_whose_message_is_missing_is_corrupt() {
        use crate::{SessionExpiry, SessionRecord, StoredDelivery, StoredMessage};
        let dir = tempfile::tempdir().unwrap();
        let mut store = RedbStore::open(dir.path().join("r.redb")).unwrap();
        let c: Arc<str> = Arc::from("c");
        store
            .apply(&[
                StoreOp::PutSession {
                    client_id: c.clone(),
                    record: SessionRecord {
                        expiry: SessionExpiry::Never,
                        deadline_unix_ms: None,
                    },
                },
                StoreOp::PushQueued {
                    client_id: c.clone(),
                    delivery: StoredDelivery {
                        message: Arc::new(StoredMessage {
                            topic: thingkit_mqtt::TopicName::new("t").unwrap(),
                            payload: bytes::Bytes::from_static(b"p"),
                            qos: thingkit_mqtt::QoS::AtLeastOnce,
                            retain: false,
                            properties: Default::default(),
                            from: None,
                            received_unix_ms: 1,
                        }),
                        qos: thingkit_mqtt::QoS::AtLeastOnce,
                        retain: false,
                        subscription_id: None,
                    },
                },
            ])
            .unwrap();
        let txn = store.db.begin_write().unwrap();
        txn.open_table(MESSAGES).unwrap().remove(0).unwrap();
        txn.commit().unwrap();
        match store.load() {
            Err(StoreError::Corrupt {
                table, key, detail, ..
            }) => {
                assert_eq!((table, key.as_str()), ("queue", "c #0"));
                assert!(detail.contains("missing"), "{detail}");
            }
            other => panic!("expected a corrupt-record error, got {other:?}"),
        }
    }
}
