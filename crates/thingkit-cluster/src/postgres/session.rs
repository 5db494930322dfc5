//! [`PgRouterStore`]: the broker's persistent sessions and retained messages on PostgreSQL,
//! shared by the servers of a cluster, each session owned by one server at a time.

use std::num::NonZeroU32;
use std::sync::Arc;

use thingkit_broker::{
    GrantedSubscription, RouterStore, SessionRecord, StoreError, StoreOp, StoredDelivery,
    StoredMessage, StoredSession, StoredState,
};
use thingkit_mqtt::{QoS, TopicFilter};

use super::config::PostgresConfig;
use super::connection::Connection;
use super::migration::{self, Migrations, quote};
use crate::error::Error;

const MIGRATIONS: Migrations = Migrations {
    component: "sessions",
    steps: &[
        "CREATE TABLE {s}.mqtt_session (
        client_id text COLLATE \"C\" PRIMARY KEY,
        owner text COLLATE \"C\" NOT NULL,
        record bytea NOT NULL
    );
    CREATE INDEX mqtt_session_by_owner ON {s}.mqtt_session (owner);
    CREATE TABLE {s}.mqtt_subscription (
        client_id text COLLATE \"C\" NOT NULL,
        filter text COLLATE \"C\" NOT NULL,
        qos smallint NOT NULL,
        no_local boolean NOT NULL,
        retain_as_published boolean NOT NULL,
        subscription_id bigint,
        PRIMARY KEY (client_id, filter)
    );
    CREATE TABLE {s}.mqtt_queue (
        client_id text COLLATE \"C\" NOT NULL,
        seq bigserial NOT NULL,
        qos smallint NOT NULL,
        retain boolean NOT NULL,
        subscription_id bigint,
        message bytea NOT NULL,
        PRIMARY KEY (client_id, seq)
    );
    CREATE TABLE {s}.mqtt_retained (
        topic text COLLATE \"C\" PRIMARY KEY,
        message bytea NOT NULL
    )",
        // 2: each server's heartbeat, from which a session taken from a dead owner is replayed.
        "CREATE TABLE {s}.mqtt_server (
        server_id text COLLATE \"C\" PRIMARY KEY,
        seen_ms bigint NOT NULL
    )",
    ],
};

struct Sql {
    put_session: String,
    remove_session: [String; 3],
    put_subscription: String,
    remove_subscription: String,
    push_queued: String,
    clear_queue: String,
    put_retained: String,
    remove_retained: String,
    load_sessions: String,
    load_subscriptions: String,
    load_queue: String,
    load_retained: String,
    claim: String,
    session_subscriptions: String,
    session_queue: String,
    owner: String,
    heartbeat: String,
    seen: String,
    schema: String,
}

/// A [`RouterStore`] on PostgreSQL: tables `mqtt_session (client_id, owner, record)`,
/// `mqtt_subscription`, `mqtt_queue` (one row per queued delivery, in insertion order) and
/// `mqtt_retained`, messages as [`StoredMessage::to_bytes`].
///
/// Every session has an **owner**, the server id that holds it in memory: a batch that puts a
/// session makes this store's server its owner, [`RouterStore::load`] returns only the sessions
/// this server owns (and every retained message: they are the cluster's), and another server
/// takes a session over with [`PgRouterStore::claim`]. Each batch is one transaction, durable
/// when it returns `Ok` (`synchronous_commit = on`). A batch retried after the connection broke
/// mid-commit may append its queued deliveries twice (QoS 1 allows duplicates); every other
/// operation is idempotent.
///
/// Clones share one connection (and its thread).
#[derive(Clone)]
pub struct PgRouterStore {
    connection: Arc<Connection>,
    sql: Arc<Sql>,
    owner: Arc<str>,
}

impl std::fmt::Debug for PgRouterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRouterStore")
            .field("schema", &self.sql.schema)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// A queued delivery as read: (subscription id, qos, retain, message bytes).
type QueueRow = (Option<i64>, i16, bool, Vec<u8>);
/// A subscription as read: (filter, qos, no local, retain as published, subscription id).
type SubscriptionRow = (String, i16, bool, bool, Option<i64>);

impl PgRouterStore {
    /// Connects, creates the schema and applies the session tables' migrations if needed.
    /// `owner` is this server's id in the cluster (the `[cluster] server_id`).
    ///
    /// # Errors
    ///
    /// As [`PgRegistryStore::open`](crate::PgRegistryStore::open); [`Error::Config`] for an
    /// empty `owner`.
    pub fn open(config: &PostgresConfig, owner: &str) -> Result<Self, Error> {
        if owner.is_empty() {
            return Err(Error::Config(
                "a session owner (server id) is needed".into(),
            ));
        }
        let schema = config.checked_schema()?.to_owned();
        let q = quote(&schema);
        let sql = Arc::new(Sql {
            put_session: format!(
                "INSERT INTO {q}.mqtt_session (client_id, owner, record) VALUES ($1, $2, $3)
                 ON CONFLICT (client_id) DO UPDATE
                 SET owner = EXCLUDED.owner, record = EXCLUDED.record"
            ),
            remove_session: [
                format!("DELETE FROM {q}.mqtt_session WHERE client_id = $1"),
                format!("DELETE FROM {q}.mqtt_subscription WHERE client_id = $1"),
                format!("DELETE FROM {q}.mqtt_queue WHERE client_id = $1"),
            ],
            put_subscription: format!(
                "INSERT INTO {q}.mqtt_subscription
                 (client_id, filter, qos, no_local, retain_as_published, subscription_id)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (client_id, filter) DO UPDATE
                 SET qos = EXCLUDED.qos, no_local = EXCLUDED.no_local,
                     retain_as_published = EXCLUDED.retain_as_published,
                     subscription_id = EXCLUDED.subscription_id"
            ),
            remove_subscription: format!(
                "DELETE FROM {q}.mqtt_subscription WHERE client_id = $1 AND filter = $2"
            ),
            push_queued: format!(
                "INSERT INTO {q}.mqtt_queue (client_id, qos, retain, subscription_id, message)
                 VALUES ($1, $2, $3, $4, $5)"
            ),
            clear_queue: format!("DELETE FROM {q}.mqtt_queue WHERE client_id = $1"),
            put_retained: format!(
                "INSERT INTO {q}.mqtt_retained (topic, message) VALUES ($1, $2)
                 ON CONFLICT (topic) DO UPDATE SET message = EXCLUDED.message"
            ),
            remove_retained: format!("DELETE FROM {q}.mqtt_retained WHERE topic = $1"),
            load_sessions: format!(
                "SELECT client_id, record FROM {q}.mqtt_session WHERE owner = $1"
            ),
            load_subscriptions: format!(
                "SELECT s.client_id, s.filter, s.qos, s.no_local, s.retain_as_published,
                        s.subscription_id
                 FROM {q}.mqtt_subscription s JOIN {q}.mqtt_session o USING (client_id)
                 WHERE o.owner = $1"
            ),
            load_queue: format!(
                "SELECT s.client_id, s.subscription_id, s.qos, s.retain, s.message
                 FROM {q}.mqtt_queue s JOIN {q}.mqtt_session o USING (client_id)
                 WHERE o.owner = $1 ORDER BY s.client_id, s.seq"
            ),
            load_retained: format!("SELECT message FROM {q}.mqtt_retained"),
            claim: format!(
                "UPDATE {q}.mqtt_session SET owner = $2 WHERE client_id = $1 RETURNING record"
            ),
            session_subscriptions: format!(
                "SELECT filter, qos, no_local, retain_as_published, subscription_id
                 FROM {q}.mqtt_subscription WHERE client_id = $1"
            ),
            session_queue: format!(
                "SELECT subscription_id, qos, retain, message FROM {q}.mqtt_queue
                 WHERE client_id = $1 ORDER BY seq"
            ),
            owner: format!("SELECT owner FROM {q}.mqtt_session WHERE client_id = $1"),
            heartbeat: format!(
                "INSERT INTO {q}.mqtt_server (server_id, seen_ms) VALUES ($1, $2)
                 ON CONFLICT (server_id) DO UPDATE SET seen_ms = EXCLUDED.seen_ms"
            ),
            seen: format!("SELECT seen_ms FROM {q}.mqtt_server WHERE server_id = $1"),
            schema: schema.clone(),
        });
        let connection = Connection::open(
            config,
            "thingkit-pg-sessions",
            Box::new(move |client| migration::apply(client, &schema, &MIGRATIONS)),
        )?;
        Ok(PgRouterStore {
            connection: Arc::new(connection),
            sql,
            owner: owner.into(),
        })
    }

    /// This server's id: the owner of the sessions it puts.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The server that owns `client_id`'s stored session, if one is stored.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`] or [`Error::Timeout`]: the query failed.
    pub fn owner_of(&self, client_id: &str) -> Result<Option<String>, Error> {
        let sql = Arc::clone(&self.sql);
        let id = client_id.to_owned();
        self.connection.call("owner", move |client| {
            Ok(match client.query_opt(&sql.owner, &[&id])? {
                Some(row) => Some(row.try_get(0)?),
                None => None,
            })
        })
    }

    /// Records that this server is alive at `now_unix_ms` (its wall clock). A server writes it
    /// every second; a session taken from a server that died is replayed from that server's
    /// last heartbeat ([`PgRouterStore::last_seen`]).
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`] or [`Error::Timeout`]: the write failed.
    pub fn heartbeat(&self, now_unix_ms: u64) -> Result<(), Error> {
        let sql = Arc::clone(&self.sql);
        let owner = self.owner.to_string();
        let ms = i64::try_from(now_unix_ms).unwrap_or(i64::MAX);
        self.connection.call("heartbeat", move |client| {
            client.execute(&sql.heartbeat, &[&owner, &ms])?;
            Ok(())
        })
    }

    /// The last heartbeat of server `server_id` (Unix milliseconds), if it ever wrote one.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`] or [`Error::Timeout`]: the query failed.
    pub fn last_seen(&self, server_id: &str) -> Result<Option<u64>, Error> {
        let sql = Arc::clone(&self.sql);
        let id = server_id.to_owned();
        self.connection.call("last seen", move |client| {
            Ok(match client.query_opt(&sql.seen, &[&id])? {
                Some(row) => Some(u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0)),
                None => None,
            })
        })
    }

    /// Makes this server the owner of `client_id`'s stored session and returns it (with its
    /// subscriptions and queue, read in the same transaction), or `None` when none is stored.
    /// Call it once the previous owner released the session (or is known to be gone): what
    /// that owner writes afterwards for the session is not seen here.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`] or [`Error::Timeout`]: nothing was claimed (or, after a timeout,
    /// maybe it was: claiming again is safe); [`Error::Corrupt`]: a record does not decode.
    pub fn claim(&self, client_id: &str) -> Result<Option<StoredSession>, Error> {
        let sql = Arc::clone(&self.sql);
        let id = client_id.to_owned();
        let owner = self.owner.to_string();
        let rows = self.connection.call("claim", move |client| {
            let mut tx = client.transaction()?;
            let Some(row) = tx.query_opt(&sql.claim, &[&id, &owner])? else {
                return Ok(None);
            };
            let record: Vec<u8> = row.try_get(0)?;
            let mut subscriptions: Vec<SubscriptionRow> = Vec::new();
            for row in tx.query(&sql.session_subscriptions, &[&id])? {
                subscriptions.push((
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(2)?,
                    row.try_get(3)?,
                    row.try_get(4)?,
                ));
            }
            let mut queue: Vec<QueueRow> = Vec::new();
            for row in tx.query(&sql.session_queue, &[&id])? {
                queue.push((
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(2)?,
                    row.try_get(3)?,
                ));
            }
            tx.commit()?;
            Ok(Some((record, subscriptions, queue)))
        })?;
        let Some((record, subscriptions, queue)) = rows else {
            return Ok(None);
        };
        let corrupt = |e: StoreError| Error::Corrupt {
            what: format!("session {client_id}"),
            detail: e.to_string(),
        };
        let client_id: Arc<str> = client_id.into();
        let record = SessionRecord::from_bytes(&record).map_err(corrupt)?;
        let subscriptions = subscriptions
            .into_iter()
            .map(|row| subscription(&client_id, row))
            .collect::<Result<_, _>>()
            .map_err(corrupt)?;
        let queue = queue
            .into_iter()
            .map(|row| delivery(&client_id, row))
            .collect::<Result<_, _>>()
            .map_err(corrupt)?;
        Ok(Some(StoredSession {
            client_id,
            record,
            subscriptions,
            queue,
        }))
    }
}

fn backend(operation: &'static str) -> impl Fn(Error) -> StoreError {
    move |e| StoreError::Backend {
        operation,
        detail: e.to_string(),
    }
}

fn corrupt(table: &'static str, key: &str, detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        table,
        key: key.to_owned(),
        offset: 0,
        detail: detail.to_string(),
    }
}

fn qos(table: &'static str, key: &str, value: i16) -> Result<QoS, StoreError> {
    u8::try_from(value)
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| corrupt(table, key, format!("QoS {value}")))
}

fn subscription_id(
    table: &'static str,
    key: &str,
    value: Option<i64>,
) -> Result<Option<NonZeroU32>, StoreError> {
    match value {
        None => Ok(None),
        Some(v) => u32::try_from(v)
            .ok()
            .and_then(NonZeroU32::new)
            .map(Some)
            .ok_or_else(|| corrupt(table, key, format!("subscription identifier {v}"))),
    }
}

fn subscription(
    client_id: &str,
    (filter, q, no_local, retain_as_published, id): SubscriptionRow,
) -> Result<(TopicFilter, GrantedSubscription), StoreError> {
    let key = format!("{client_id} {filter}");
    let topic_filter =
        TopicFilter::new(&filter).map_err(|e| corrupt("mqtt_subscription", &key, e))?;
    Ok((
        topic_filter,
        GrantedSubscription {
            qos: qos("mqtt_subscription", &key, q)?,
            no_local,
            retain_as_published,
            id: subscription_id("mqtt_subscription", &key, id)?,
        },
    ))
}

fn delivery(
    client_id: &str,
    (id, q, retain, message): QueueRow,
) -> Result<StoredDelivery, StoreError> {
    Ok(StoredDelivery {
        message: Arc::new(
            StoredMessage::from_bytes(&message).map_err(|e| corrupt("mqtt_queue", client_id, e))?,
        ),
        qos: qos("mqtt_queue", client_id, q)?,
        retain,
        subscription_id: subscription_id("mqtt_queue", client_id, id)?,
    })
}

/// One operation with its values encoded, ready for the connection thread.
enum Row {
    PutSession(String, Vec<u8>),
    RemoveSession(String),
    PutSubscription(String, String, i16, bool, bool, Option<i64>),
    RemoveSubscription(String, String),
    PushQueued(String, i16, bool, Option<i64>, Vec<u8>),
    ClearQueue(String),
    PutRetained(String, Vec<u8>),
    RemoveRetained(String),
}

fn encode(op: &StoreOp) -> Result<Row, StoreError> {
    Ok(match op {
        StoreOp::PutSession { client_id, record } => {
            Row::PutSession(client_id.to_string(), record.to_bytes()?)
        }
        StoreOp::RemoveSession { client_id } => Row::RemoveSession(client_id.to_string()),
        StoreOp::PutSubscription {
            client_id,
            filter,
            granted,
        } => Row::PutSubscription(
            client_id.to_string(),
            filter.as_str().to_owned(),
            i16::from(granted.qos.as_u8()),
            granted.no_local,
            granted.retain_as_published,
            granted.id.map(|id| i64::from(id.get())),
        ),
        StoreOp::RemoveSubscription { client_id, filter } => {
            Row::RemoveSubscription(client_id.to_string(), filter.as_str().to_owned())
        }
        StoreOp::PushQueued {
            client_id,
            delivery,
        } => Row::PushQueued(
            client_id.to_string(),
            i16::from(delivery.qos.as_u8()),
            delivery.retain,
            delivery.subscription_id.map(|id| i64::from(id.get())),
            delivery.message.to_bytes()?,
        ),
        StoreOp::ClearQueue { client_id } => Row::ClearQueue(client_id.to_string()),
        StoreOp::PutRetained { message } => {
            Row::PutRetained(message.topic.as_str().to_owned(), message.to_bytes()?)
        }
        StoreOp::RemoveRetained { topic } => Row::RemoveRetained(topic.as_str().to_owned()),
    })
}

/// What [`RouterStore::load`] reads, before decoding.
struct Loaded {
    sessions: Vec<(String, Vec<u8>)>,
    subscriptions: Vec<(String, SubscriptionRow)>,
    queue: Vec<(String, QueueRow)>,
    retained: Vec<Vec<u8>>,
}

impl RouterStore for PgRouterStore {
    fn load(&self) -> Result<StoredState, StoreError> {
        let sql = Arc::clone(&self.sql);
        let owner = self.owner.to_string();
        let loaded = self
            .connection
            .call("load", move |client| {
                let mut tx = client
                    .build_transaction()
                    .isolation_level(::postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()?;
                let mut loaded = Loaded {
                    sessions: Vec::new(),
                    subscriptions: Vec::new(),
                    queue: Vec::new(),
                    retained: Vec::new(),
                };
                for row in tx.query(&sql.load_sessions, &[&owner])? {
                    loaded.sessions.push((row.try_get(0)?, row.try_get(1)?));
                }
                for row in tx.query(&sql.load_subscriptions, &[&owner])? {
                    loaded.subscriptions.push((
                        row.try_get(0)?,
                        (
                            row.try_get(1)?,
                            row.try_get(2)?,
                            row.try_get(3)?,
                            row.try_get(4)?,
                            row.try_get(5)?,
                        ),
                    ));
                }
                for row in tx.query(&sql.load_queue, &[&owner])? {
                    loaded.queue.push((
                        row.try_get(0)?,
                        (
                            row.try_get(1)?,
                            row.try_get(2)?,
                            row.try_get(3)?,
                            row.try_get(4)?,
                        ),
                    ));
                }
                for row in tx.query(&sql.load_retained, &[])? {
                    loaded.retained.push(row.try_get(0)?);
                }
                tx.commit()?;
                Ok(loaded)
            })
            .map_err(backend("load"))?;
        let mut sessions = std::collections::BTreeMap::new();
        for (id, record) in loaded.sessions {
            let record =
                SessionRecord::from_bytes(&record).map_err(|e| corrupt("mqtt_session", &id, e))?;
            let client_id: Arc<str> = id.as_str().into();
            sessions.insert(
                id,
                StoredSession {
                    client_id,
                    record,
                    subscriptions: Vec::new(),
                    queue: Vec::new(),
                },
            );
        }
        for (id, row) in loaded.subscriptions {
            let sub = subscription(&id, row)?;
            if let Some(session) = sessions.get_mut(&id) {
                session.subscriptions.push(sub);
            }
        }
        for (id, row) in loaded.queue {
            let d = delivery(&id, row)?;
            if let Some(session) = sessions.get_mut(&id) {
                session.queue.push(d);
            }
        }
        let retained = loaded
            .retained
            .iter()
            .map(|bytes| {
                StoredMessage::from_bytes(bytes)
                    .map(Arc::new)
                    .map_err(|e| corrupt("mqtt_retained", "-", e))
            })
            .collect::<Result<_, _>>()?;
        Ok(StoredState {
            sessions: sessions.into_values().collect(),
            retained,
        })
    }

    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let rows = ops.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
        let sql = Arc::clone(&self.sql);
        let owner = self.owner.to_string();
        self.connection
            .call("commit", move |client| {
                let mut tx = client.transaction()?;
                for row in &rows {
                    match row {
                        Row::PutSession(id, record) => {
                            tx.execute(&sql.put_session, &[id, &owner, record])?;
                        }
                        Row::RemoveSession(id) => {
                            for statement in &sql.remove_session {
                                tx.execute(statement, &[id])?;
                            }
                        }
                        Row::PutSubscription(id, filter, q, no_local, rap, sub) => {
                            tx.execute(
                                &sql.put_subscription,
                                &[id, filter, q, no_local, rap, sub],
                            )?;
                        }
                        Row::RemoveSubscription(id, filter) => {
                            tx.execute(&sql.remove_subscription, &[id, filter])?;
                        }
                        Row::PushQueued(id, q, retain, sub, message) => {
                            tx.execute(&sql.push_queued, &[id, q, retain, sub, message])?;
                        }
                        Row::ClearQueue(id) => {
                            tx.execute(&sql.clear_queue, &[id])?;
                        }
                        Row::PutRetained(topic, message) => {
                            tx.execute(&sql.put_retained, &[topic, message])?;
                        }
                        Row::RemoveRetained(topic) => {
                            tx.execute(&sql.remove_retained, &[topic])?;
                        }
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .map_err(backend("commit"))
    }
}
