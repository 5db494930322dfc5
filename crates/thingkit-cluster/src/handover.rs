//! Client IDs and persistent sessions across the servers of a cluster (the `nats` feature):
//! [`NatsHandover`] is the broker's [`Handover`].
//!
//! A CONNECT of client ID X on server B sends one control message on NATS subject
//! `thingkit-ctl.<cluster>.takeover` (outside the topic space `thingkit.<cluster>.…`, so no
//! MQTT client can publish or subscribe to it), with JSON `{"client_id", "server", "release",
//! "owner"}`. Every other server ends its connection with client ID X (MQTT 5: DISCONNECT 0x8E
//! Session taken over; 3.1.1: the network connection closes) [MQTT-3.1.4-3]:
//!
//! - **Takeover only** (no [`PgRouterStore`]: sessions stay per server): the other servers
//!   kick X's connection ([`BrokerPublisher::kick`]) and keep its session; B does not wait.
//! - **Sessions move** (with a [`PgRouterStore`] shared by the cluster): when PostgreSQL says
//!   another server A owns X's session and B does not hold it, the message asks A to
//!   *release* it: A ends X's connection (whose QoS 1 messages in flight are stored as for any
//!   persistent session), drops the session from memory without deleting it from the store
//!   ([`BrokerPublisher::release`]) and answers `released`. B waits for the
//!   answer at most [`NatsHandover::with_release_timeout`] (default 2 s: A may be dead), then
//!   claims the session in PostgreSQL ([`PgRouterStore::claim`]) and adopts it: its
//!   subscriptions and queued QoS 1 messages, CONNACK with Session Present = 1.
//!
//! **Replay** ([`NatsHandover::with_replay`], with durable routes: [`crate::nats::NatsConfig::durable`]).
//! A message routed to X while its session moves (after A released it, before B's NATS
//! subscriptions for it are live), or while A is dead, reaches neither server live. So when a
//! session comes over, B reads the cluster's JetStream stream back from a point before the
//! move ([`crate::nats::NatsReplay::missed`]) and queues the QoS 1 messages on topics the session
//! subscribes to into it before the CONNACK ([`Handover::adopted`],
//! [`BrokerPublisher::replay_to`]). The point is:
//!
//! - when A released the session: the moment B asked, less the margin
//!   ([`NatsHandover::with_replay_margin`], default [`DEFAULT_REPLAY_MARGIN`]) but never more
//!   than [`RELEASE_MARGIN`] (A stored everything that reached the session before it let go);
//! - when A did not answer (dead): A's last heartbeat, less the margin. Every server with a
//!   [`PgRouterStore`] writes one each second ([`PgRouterStore::heartbeat`]).
//!
//! The margin covers messages in flight towards A when it went, and the clocks of the servers
//! and the NATS server disagreeing (the stream's times are NATS's). A replayed message equal
//! (topic, payload, publisher) to one the stored queue already holds from the same window is
//! left out; one the session's client already received from A comes again (QoS 1 allows
//! duplicates). What it cannot bring back
//! is a message A held unacknowledged in memory for longer than the margin before it died,
//! or one older than the stream keeps ([`crate::nats::NatsConfig::stream_max_age`]).
//!
//! What this does not guarantee: a server that lost its NATS connection does not hear a
//! takeover (B claims the session after the timeout while that server still holds it in
//! memory).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use thingkit_broker::{
    Acquire, AdoptedFuture, BrokerPublisher, Handover, HandoverFuture, StoreError,
};
use thingkit_mqtt::TopicFilter;
use tokio::task::JoinHandle;

use crate::Error;
use crate::nats::{NatsConfig, NatsReplay};
use crate::postgres::PgRouterStore;

/// The default [`NatsHandover::with_replay_margin`].
pub const DEFAULT_REPLAY_MARGIN: Duration = Duration::from_secs(5);

/// The most a replay after a release starts before the request (see the module docs).
pub const RELEASE_MARGIN: Duration = Duration::from_secs(1);

/// How often a server writes its heartbeat ([`PgRouterStore::heartbeat`]).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// The root of the cluster's control subjects: `thingkit-ctl.<cluster>.…`.
pub const CONTROL_ROOT: &str = "thingkit-ctl";

/// The default [`NatsHandover::with_release_timeout`].
pub const DEFAULT_RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a released session's connection may take to end and store its QoS 1 messages in
/// flight before the release is answered anyway (within [`DEFAULT_RELEASE_TIMEOUT`]).
const RELEASE_WAIT: Duration = Duration::from_secs(1);

/// The answer of a server that released a session.
const RELEASED: &[u8] = b"released";

/// The control message (JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Takeover {
    /// The client ID that connected.
    client_id: String,
    /// The server it connected to.
    server: String,
    /// Whether the session moves (drop it from memory) or only the connection ends.
    release: bool,
    /// The server that owns the session in the store, which answers.
    owner: Option<String>,
}

/// The broker's [`Handover`] over NATS, with the sessions in a [`PgRouterStore`] (or without:
/// takeover only). See the module docs.
///
/// Clones share the connection.
#[derive(Debug, Clone)]
pub struct NatsHandover {
    inner: Arc<Inner>,
    release_timeout: Duration,
    replay_margin: Duration,
}

/// A replay owed to a session that came over.
#[derive(Debug, Clone)]
struct Pending {
    /// Where it starts.
    since: SystemTime,
    /// The session's QoS 1 filters.
    filters: Vec<TopicFilter>,
    /// The messages its stored queue already holds that were received at `since` or later,
    /// counted by (topic, payload, publisher): a replayed message equal to one of them is
    /// that message, and is left out (once per count).
    queued: HashMap<Key, usize>,
}

/// What tells a replayed message from another: topic, payload, publishing client.
type Key = (String, bytes::Bytes, Option<Arc<str>>);

#[derive(Debug)]
struct Inner {
    client: async_nats::Client,
    subject: String,
    server_id: String,
    store: Option<PgRouterStore>,
    publisher: OnceLock<BrokerPublisher>,
    replay: OnceLock<NatsReplay>,
    /// Sessions that came over and still need their replay, by client ID: from when, and
    /// their filters. Removed once the replay is queued; kept (for the next CONNECT) when it
    /// failed.
    pending: Mutex<HashMap<String, Pending>>,
    /// This server's last heartbeat before [`NatsHandover::start`] (it ran before and was
    /// restarted in place), if any.
    previous: OnceLock<Option<SystemTime>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl NatsHandover {
    /// Connects to the cluster's NATS (a connection of its own, with `no_echo`) as server
    /// `config.server_id`. With `store`, sessions move between servers; without, only
    /// connections are taken over. Install it with
    /// [`thingkit_broker::BrokerBuilder::handover`], then call [`NatsHandover::start`].
    ///
    /// # Errors
    ///
    /// [`Error::Nats`]: NATS could not be reached. [`Error::Config`]: the store's owner is
    /// not `config.server_id`.
    pub async fn connect(config: &NatsConfig, store: Option<PgRouterStore>) -> Result<Self, Error> {
        if let Some(store) = &store
            && store.owner() != config.server_id
        {
            return Err(Error::Config(format!(
                "the session store's owner {:?} is not the server id {:?}",
                store.owner(),
                config.server_id
            )));
        }
        let client = async_nats::ConnectOptions::new()
            .no_echo()
            .name(format!("thingkit {} control", config.server_id))
            .connect(config.url.as_str())
            .await
            .map_err(|e| Error::Nats(format!("connecting to {}: {e}", config.url)))?;
        let cluster = config
            .subjects
            .prefix()
            .strip_prefix("thingkit.")
            .unwrap_or(config.subjects.prefix());
        Ok(NatsHandover {
            inner: Arc::new(Inner {
                client,
                subject: format!("{CONTROL_ROOT}.{cluster}.takeover"),
                server_id: config.server_id.clone(),
                store,
                publisher: OnceLock::new(),
                replay: OnceLock::new(),
                pending: Mutex::new(HashMap::new()),
                previous: OnceLock::new(),
                tasks: Mutex::new(Vec::new()),
            }),
            release_timeout: DEFAULT_RELEASE_TIMEOUT,
            replay_margin: DEFAULT_REPLAY_MARGIN,
        })
    }

    /// Replays, from the cluster's stream, what a session missed while it moved here (see the
    /// module docs). Without it (routes that are not durable), nothing is replayed.
    pub fn with_replay(self, replay: NatsReplay) -> Self {
        let _ = self.inner.replay.set(replay);
        self
    }

    /// How far before the move a replay starts. Default [`DEFAULT_REPLAY_MARGIN`].
    pub fn with_replay_margin(mut self, value: Duration) -> Self {
        self.replay_margin = value;
        self
    }

    /// How long a CONNECT waits for the owner of its session to release it before claiming it
    /// anyway (the owner is taken for dead). Default [`DEFAULT_RELEASE_TIMEOUT`].
    pub fn with_release_timeout(mut self, value: Duration) -> Self {
        self.release_timeout = value;
        self
    }

    /// The control subject: `thingkit-ctl.<cluster>.takeover`.
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// Answers the other servers' takeovers through `publisher` (the running broker). Returns
    /// once NATS has the subscription.
    ///
    /// # Errors
    ///
    /// [`Error::Nats`]: the subscription failed. [`Error::Config`]: started twice.
    pub async fn start(&self, publisher: BrokerPublisher) -> Result<(), Error> {
        if self.inner.publisher.set(publisher.clone()).is_err() {
            return Err(Error::Config("the handover is already started".into()));
        }
        let subscriber = self
            .inner
            .client
            .subscribe(self.inner.subject.clone())
            .await
            .map_err(|e| Error::Nats(format!("subscribing to {}: {e}", self.inner.subject)))?;
        self.inner
            .client
            .flush()
            .await
            .map_err(|e| Error::Nats(format!("subscribing to {}: {e}", self.inner.subject)))?;
        let mut tasks = vec![tokio::spawn(answer_loop(
            subscriber,
            self.inner.client.clone(),
            self.inner.server_id.clone(),
            publisher,
        ))];
        if let Some(store) = self.inner.store.clone() {
            // This server's heartbeat from before this start (a restart in place): what it
            // missed since then is recovered by `recover`.
            let previous = {
                let store = store.clone();
                let id = self.inner.server_id.clone();
                blocking("last seen", move || store.last_seen(&id))
                    .await
                    .map_err(|e| Error::Config(format!("reading this server's heartbeat: {e}")))?
            };
            let _ = self
                .inner
                .previous
                .set(previous.map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)));
            tasks.push(tokio::spawn(heartbeat_loop(store)));
        }
        *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        Ok(())
    }

    /// After a restart in place (this server id wrote heartbeats before this start): routes
    /// to this server's sessions what the cluster published while it was down, from its last
    /// heartbeat less the replay margin ([`NatsReplay::recover`]). Call it once the routes
    /// are started ([`crate::nats::NatsRoutes::start`]); it does nothing on a first start,
    /// without sessions in PostgreSQL or without a replay. Returns how many messages it
    /// routed.
    ///
    /// # Errors
    ///
    /// [`Error::Nats`]: the stream could not be read. [`Error::Config`]: not started.
    pub async fn recover(&self) -> Result<usize, Error> {
        let (Some(Some(previous)), Some(replay)) =
            (self.inner.previous.get(), self.inner.replay.get())
        else {
            return Ok(0);
        };
        let Some(publisher) = self.inner.publisher.get() else {
            return Err(Error::Config("the handover is not started".into()));
        };
        let since = previous
            .checked_sub(self.replay_margin)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        replay.recover(since, publisher, false).await
    }

    /// Stops answering takeovers (and writing heartbeats).
    pub fn stop(&self) {
        for task in self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }

    fn message(&self, client_id: &str, release: bool, owner: Option<String>) -> bytes::Bytes {
        let takeover = Takeover {
            client_id: client_id.to_owned(),
            server: self.inner.server_id.clone(),
            release,
            owner,
        };
        serde_json::to_vec(&takeover)
            .map(bytes::Bytes::from)
            .unwrap_or_default()
    }
}

fn backend(operation: &'static str) -> impl Fn(String) -> StoreError {
    move |detail| StoreError::Backend { operation, detail }
}

/// Runs a blocking store call off the runtime's threads.
async fn blocking<R: Send + 'static>(
    operation: &'static str,
    f: impl FnOnce() -> Result<R, Error> + Send + 'static,
) -> Result<R, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|e| backend(operation)(e.to_string())),
        Err(e) => Err(backend(operation)(e.to_string())),
    }
}

impl Handover for NatsHandover {
    fn acquire(&self, request: Acquire) -> HandoverFuture {
        let this = self.clone();
        Box::pin(async move { this.acquire_session(request).await })
    }

    fn adopted(&self, client_id: Arc<str>) -> AdoptedFuture {
        let this = self.clone();
        Box::pin(async move { this.replay_session(&client_id).await })
    }
}

/// Unix milliseconds of `t`.
fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Writes this server's heartbeat every [`HEARTBEAT_INTERVAL`].
async fn heartbeat_loop(store: PgRouterStore) {
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let store = store.clone();
        let now = unix_ms(SystemTime::now());
        if let Err(e) = blocking("heartbeat", move || store.heartbeat(now)).await {
            tracing::warn!(error = %e, "the server's heartbeat was not written");
        }
    }
}

impl NatsHandover {
    async fn acquire_session(
        &self,
        request: Acquire,
    ) -> Result<Option<thingkit_broker::StoredSession>, StoreError> {
        let id = request.client_id.to_string();
        let Some(store) = self.inner.store.clone() else {
            self.announce(&id, false, None).await;
            return Ok(None);
        };
        if request.held {
            // This server owns the session: the others only end their connections.
            self.announce(&id, true, None).await;
            return Ok(None);
        }
        let owner = {
            let store = store.clone();
            let id = id.clone();
            blocking("session owner", move || store.owner_of(&id)).await?
        };
        // Where a replay of what the session missed starts (once it is claimed).
        let mut since = None;
        match owner {
            Some(owner) if owner != self.inner.server_id => {
                let asked_at = SystemTime::now();
                let payload = self.message(&id, true, Some(owner.clone()));
                let asked = tokio::time::timeout(
                    self.release_timeout,
                    self.inner
                        .client
                        .request(self.inner.subject.clone(), payload),
                )
                .await;
                let released =
                    matches!(&asked, Ok(Ok(answer)) if answer.payload.as_ref() == RELEASED);
                since = Some(match released {
                    // The margin for a release covers only messages on their way to the owner
                    // when it let the session go (and clocks): a second at most.
                    true => asked_at
                        .checked_add(self.replay_margin.saturating_sub(RELEASE_MARGIN))
                        .unwrap_or(asked_at),
                    // Taken for dead: from its last heartbeat (or, with none, from when this
                    // server gave up waiting for it).
                    false => {
                        let store = store.clone();
                        let owner = owner.clone();
                        match blocking("last seen", move || store.last_seen(&owner)).await? {
                            Some(ms) => SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
                            None => asked_at,
                        }
                    }
                });
                match asked {
                    Ok(Ok(answer)) if answer.payload.as_ref() == RELEASED => {
                        tracing::debug!(client = %id, from = %owner, "session released");
                    }
                    Ok(Ok(_)) => {
                        tracing::warn!(client = %id, from = %owner, "unexpected answer to a release");
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(client = %id, from = %owner, error = %e, "no release: taking the session over");
                    }
                    Err(_) => {
                        tracing::warn!(client = %id, from = %owner, timeout = ?self.release_timeout,
                            "the session's server did not answer: taking the session over");
                    }
                }
            }
            Some(_) => self.announce(&id, true, None).await,
            None => {
                self.announce(&id, true, None).await;
                return Ok(None);
            }
        }
        let claimed = {
            let id = id.clone();
            blocking("session claim", move || store.claim(&id)).await?
        };
        if let (Some(session), Some(since), Some(_)) = (&claimed, since, self.inner.replay.get()) {
            let filters: Vec<TopicFilter> = session
                .subscriptions
                .iter()
                .filter(|(_, granted)| granted.qos == thingkit_mqtt::QoS::AtLeastOnce)
                .map(|(filter, _)| filter.clone())
                .collect();
            if !filters.is_empty() {
                let since = since
                    .checked_sub(self.replay_margin)
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                let mut queued: HashMap<Key, usize> = HashMap::new();
                for delivery in &session.queue {
                    let m = &delivery.message;
                    if m.received_unix_ms >= unix_ms(since) {
                        let key = (
                            m.topic.as_str().to_owned(),
                            m.payload.clone(),
                            m.from.clone(),
                        );
                        *queued.entry(key).or_default() += 1;
                    }
                }
                self.inner
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(
                        id,
                        Pending {
                            since,
                            filters,
                            queued,
                        },
                    );
            }
        }
        Ok(claimed)
    }

    /// Queues into `client_id`'s adopted session what it missed while it moved, if it has a
    /// replay pending.
    async fn replay_session(&self, client_id: &str) -> Result<(), StoreError> {
        let (Some(replay), Some(publisher)) = (self.inner.replay.get(), self.inner.publisher.get())
        else {
            return Ok(());
        };
        let pending = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(client_id)
            .cloned();
        let Some(Pending {
            since,
            filters,
            mut queued,
        }) = pending
        else {
            return Ok(());
        };
        let read = replay
            .missed(since, &filters)
            .await
            .map_err(|e| backend("replay")(e.to_string()))?;
        let missed: Vec<_> = read
            .into_iter()
            .filter(|m| {
                let key = (
                    m.topic.as_str().to_owned(),
                    m.payload.clone(),
                    m.from.clone(),
                );
                match queued.get_mut(&key) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        false
                    }
                    _ => true,
                }
            })
            .collect();
        let queued = publisher
            .replay_to(client_id, &missed)
            .await
            .map_err(|e| backend("replay")(e.to_string()))?;
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(client_id);
        tracing::info!(client = %client_id, missed = missed.len(), queued, since_ms = unix_ms(since), "replayed what the session missed while it moved");
        Ok(())
    }

    /// Tells every other server that `id` connected here; waits for nothing but NATS.
    async fn announce(&self, id: &str, release: bool, owner: Option<String>) {
        let payload = self.message(id, release, owner);
        if let Err(e) = self
            .inner
            .client
            .publish(self.inner.subject.clone(), payload)
            .await
        {
            tracing::warn!(client = %id, error = %e, "the takeover was not sent to the cluster");
            return;
        }
        if let Err(e) = self.inner.client.flush().await {
            tracing::warn!(client = %id, error = %e, "the takeover was not sent to the cluster");
        }
    }
}

async fn answer_loop(
    mut subscriber: async_nats::Subscriber,
    client: async_nats::Client,
    server_id: String,
    publisher: BrokerPublisher,
) {
    use futures_util::StreamExt;
    while let Some(message) = subscriber.next().await {
        let takeover: Takeover = match serde_json::from_slice(&message.payload) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(error = %e, "a malformed takeover was ignored");
                continue;
            }
        };
        if takeover.server == server_id {
            continue;
        }
        // One task per takeover: a release waits for its connection to end.
        let (client, server_id, publisher) = (client.clone(), server_id.clone(), publisher.clone());
        tokio::spawn(async move {
            let ended = if takeover.release {
                publisher.release(&takeover.client_id, RELEASE_WAIT).await
            } else {
                publisher.kick(&takeover.client_id)
            };
            if ended {
                tracing::info!(client = %takeover.client_id, to = %takeover.server,
                    release = takeover.release, "client taken over by another server");
            }
            if takeover.owner.as_deref() == Some(server_id.as_str())
                && let Some(reply) = message.reply
                && let Err(e) = client.publish(reply, RELEASED.into()).await
            {
                tracing::warn!(error = %e, "the release was not answered");
            }
        });
    }
    tracing::warn!(
        "the takeover subscription ended: other servers' CONNECTs no longer end connections here"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_message_round_trips() {
        let t = Takeover {
            client_id: "sensor-1".into(),
            server: "b".into(),
            release: true,
            owner: Some("a".into()),
        };
        let back: Takeover = serde_json::from_slice(&serde_json::to_vec(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }
}
