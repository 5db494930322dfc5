//! Routing messages between the servers of a cluster over NATS (the `nats` feature).
//!
//! Each server connects to NATS once ([`NatsRoutes::connect`]) and installs the returned
//! [`NatsBridge`] in its broker ([`thingkit_broker::BrokerBuilder::bridge`]). The broker offers
//! the bridge every message it accepts; the bridge queues it (bounded by
//! [`NatsConfig::queue_capacity`]: when full, the message is dropped and counted, never waited
//! for) and a task publishes it on the topic's subject ([`crate::subject`]). Once the broker
//! runs, [`NatsRoutes::start`] subscribes to the cluster's subjects and hands each message
//! another server published to [`thingkit_broker::BrokerPublisher::publish_remote`], which
//! delivers it to this server's subscribers with their own `iot:Receive` checks, stores it if
//! retained, and neither runs the rules again nor offers it back to the bridge.
//!
//! On the wire, the NATS payload is the message as an MQTT 5.0 PUBLISH packet (thingkit-mqtt's
//! encoder and decoder, so QoS, RETAIN and every forwarded property travel as MQTT defines
//! them; the Message Expiry Interval is what is left of it when the message leaves). NATS
//! headers go with it: [`SERVER_HEADER`] (the sending server's [`NatsConfig::server_id`]),
//! [`SEQ_HEADER`] (this run of the server and the message's number in it) and, for a message a
//! client published, [`FROM_HEADER`] (its client ID in hex, for MQTT 5 No Local). The
//! connection sets NATS `no_echo`, so a server never receives its own messages; a message that
//! carries this server's id anyway is ignored and counted.
//!
//! **Subjects.** A message without RETAIN goes on its topic's subject
//! ([`SubjectSpace::subject`]); a retained message goes on the cluster's one retained subject
//! ([`SubjectSpace::retained`]), which every server subscribes to, since every server keeps
//! every retained message (for its later subscribers) and delivers it to its matching sessions.
//!
//! **Interest** ([`NatsConfig::interest`], on by default). The broker tells the bridge which
//! filters its sessions subscribe to ([`Bridge::interest`], reference-counted by the broker's
//! router); the bridge subscribes to each filter's NATS patterns
//! ([`SubjectSpace::patterns`]; one NATS subscription per distinct pattern, itself counted)
//! and drops them when the last session interested in them goes. So a server receives only the
//! messages its sessions may want (a `$` topic under a leading wildcard, or a topic a subscriber
//! may not receive, still arrives, and the broker's own matcher and `iot:Receive` decide). With
//! `interest = false` every server subscribes to the whole cluster (`thingkit.<cluster>.>`).
//! A subscription made on one server applies to messages published on the others once NATS
//! has it (a round trip): a message published in between is not delivered there.
//!
//! **Duplicates.** Two filters' patterns can overlap (`a/+` and `+/b` both match `a/b`), and
//! NATS then delivers a message once per matching subscription. The receiving side keeps, per
//! sending server run, a window of the last 65,536 message numbers it has routed and routes each
//! number once; the copies come through different subscriptions in the order NATS sent them, so
//! messages on one topic are routed in the order they were published.
//!
//! **Shared subscriptions** ([`NatsConfig::shared`], on by default). The broker leaves shared
//! subscriptions to the bridge ([`Bridge::routes_shared`]) and tells it which have members here
//! ([`Bridge::shared`]). For each, the server joins a NATS queue group named after
//! `$share/{group}/{filter}` on the filter's patterns and on the retained subject, through a
//! second connection with echo on (this server may be the one chosen for its own message).
//! NATS hands each message to one member of the queue group, and that server delivers it to one
//! of its members ([`BrokerPublisher::publish_shared`]): once per group cluster-wide.
//!
//! **Durability** ([`NatsConfig::durable`]). NATS core is at most once between servers. With
//! `durable`, the cluster's subjects are also captured by a JetStream stream
//! ([`NatsConfig::stream_name`], file storage, kept [`NatsConfig::stream_max_age`]), and a
//! QoS 1 message is published to it as a JetStream publish: the bridge's
//! [`thingkit_broker::Confirmation`] (which the publisher's PUBACK waits for) is answered by
//! the stream's acknowledgement, so a PUBACKed message is on NATS's disk before the client
//! hears of it. Live delivery stays on the core subscriptions above; the stream is read only to
//! replay ([`NatsReplay::missed`]) what a persistent session missed while it moved between
//! servers ([`crate::handover::NatsHandover`]). QoS 0 messages go out as core publishes (the stream
//! keeps them too, since it captures the subjects, but nothing waits for them).
//!
//! The stream is also read back when this server's NATS connection comes back after a break
//! ([`NatsConfig::recovery_margin`], [`NatsReplay::recover`]) and after a restart in place
//! ([`crate::handover::NatsHandover::recover`]): what the other servers published meanwhile
//! reaches this server's subscribers.
//!
//! Without `durable`, a message published while a server is disconnected from NATS does not
//! reach it, and a session moving between servers misses what is published while it moves.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_nats::HeaderMap;
use bytes::{Bytes, BytesMut};
use thingkit_broker::{Bridge, BrokerPublisher, Confirmation, Confirmer, Message};
use thingkit_mqtt::{
    Decoder, DecoderConfig, Encoder, PROTOCOL_MAX_PACKET_SIZE, Packet, PacketId, ProtocolVersion,
    Publish, QoS, TopicFilter,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::Error;
use crate::subject::SubjectSpace;

/// The NATS header that names the server a message comes from.
pub const SERVER_HEADER: &str = "Thingkit-Server";

/// The NATS header that carries the publishing client's ID (lower-case hex of its UTF-8), for
/// MQTT 5 No Local on the receiving servers. Absent for messages the broker itself published.
pub const FROM_HEADER: &str = "Thingkit-From";

/// The NATS header that numbers the messages of one run of a server: `<run>-<sequence>`, both
/// in hex; `run` is chosen when [`NatsRoutes::connect`] runs.
pub const SEQ_HEADER: &str = "Thingkit-Seq";

/// How many message numbers per sending server the duplicate filter remembers.
pub const DEDUP_WINDOW: u64 = 65_536;

/// Messages received from NATS waiting to be routed (past that, NATS's own per-subscription
/// buffers fill, and then NATS counts the connection a slow consumer).
const RECEIVE_CAPACITY: usize = 4_096;

/// A subject outside every cluster's subjects that nobody subscribes to: a request on it is
/// answered by the NATS server itself (no responders), which makes it a round trip.
const SYNC_SUBJECT: &str = "thingkit-sync";

/// The default [`NatsConfig::queue_capacity`].
pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;

/// The default [`NatsConfig::stream_max_age`]: one hour.
pub const DEFAULT_STREAM_MAX_AGE: Duration = Duration::from_secs(3_600);

/// The default [`NatsConfig::stream_max_bytes`]: no limit but the age (a limit in bytes is
/// reserved on the NATS server's JetStream storage when the stream is made).
pub const DEFAULT_STREAM_MAX_BYTES: i64 = -1;

/// The default [`NatsConfig::recovery_margin`].
pub const DEFAULT_RECOVERY_MARGIN: Duration = Duration::from_secs(5);

/// The most messages one replay ([`NatsReplay::missed`]) returns; past that the oldest are
/// kept and the rest counted ([`NatsCounters::replay_truncated`]). A session's own queue limit
/// (the router's `max_offline_messages`) applies after it.
pub const MAX_REPLAY: usize = 100_000;

/// The most payload bytes one replay holds (256 MiB): with [`MAX_REPLAY`], what bounds its
/// memory whatever the messages' sizes. Past it, the newest messages are left out and counted
/// ([`NatsCounters::replay_truncated`]).
pub const MAX_REPLAY_BYTES: usize = 256 << 20;

/// How long an interest change may take to reach NATS before [`NatsBridge::sync`] gives up.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// How a server joins the cluster's NATS routing.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NatsConfig {
    /// The NATS server(s) to connect to, as `async-nats` takes them: `nats://host:port`, several
    /// separated by commas.
    pub url: String,
    /// The cluster's subjects (`thingkit.<cluster>.…`); every server of a cluster uses the same.
    pub subjects: SubjectSpace,
    /// This server's name, unique in the cluster: sent with every message ([`SERVER_HEADER`]);
    /// also the NATS connection name.
    pub server_id: String,
    /// How many messages may wait to be published to NATS; past that, offered messages are
    /// dropped and counted ([`NatsCounters::dropped`]). Default [`DEFAULT_QUEUE_CAPACITY`].
    pub queue_capacity: usize,
    /// Subscribe per local filter (`true`, the default) or to the whole cluster (`false`);
    /// see the module docs.
    pub interest: bool,
    /// Keep the cluster's messages in a JetStream stream and acknowledge a QoS 1 publish only
    /// once the stream has it (see the module docs). Default `false`; the NATS server must
    /// run JetStream (`nats-server -js`).
    pub durable: bool,
    /// How long the stream keeps a message ([`NatsConfig::durable`]): the longest a moving
    /// session can be replayed from. Default [`DEFAULT_STREAM_MAX_AGE`].
    pub stream_max_age: Duration,
    /// The most bytes the stream keeps (-1: no limit); the oldest messages go first. Default
    /// [`DEFAULT_STREAM_MAX_BYTES`].
    pub stream_max_bytes: i64,
    /// When the connection to NATS comes back after a break, the stream is replayed to this
    /// server's subscribers from this long before the break ([`NatsReplay::recover`]).
    /// Default [`DEFAULT_RECOVERY_MARGIN`].
    pub recovery_margin: Duration,
    /// Deliver shared subscriptions cluster-wide (the default `true`): each message reaches
    /// one member of a `$share/{group}/{filter}` subscription among all servers, as on one
    /// server, through a NATS queue group per shared subscription (see the module docs).
    /// Every server of a cluster must agree. `false`: each server delivers one copy to its own
    /// members.
    pub shared: bool,
}

impl NatsConfig {
    /// The configuration for server `server_id` of cluster `cluster` on the NATS at `url`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`]: the cluster name is not a valid subject token
    /// ([`SubjectSpace::new`]), or `server_id` is empty or holds a character that is not
    /// printable ASCII (it travels in a NATS header).
    pub fn new(url: &str, cluster: &str, server_id: &str) -> Result<Self, Error> {
        if server_id.is_empty() || !server_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Config(format!(
                "server id {server_id:?} must be non-empty printable ASCII without spaces"
            )));
        }
        Ok(NatsConfig {
            url: url.to_string(),
            subjects: SubjectSpace::new(cluster)?,
            server_id: server_id.to_string(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            interest: true,
            durable: false,
            stream_max_age: DEFAULT_STREAM_MAX_AGE,
            stream_max_bytes: DEFAULT_STREAM_MAX_BYTES,
            recovery_margin: DEFAULT_RECOVERY_MARGIN,
            shared: true,
        })
    }

    /// Sets [`NatsConfig::shared`].
    pub fn with_shared(mut self, value: bool) -> Self {
        self.shared = value;
        self
    }

    /// Sets [`NatsConfig::recovery_margin`].
    pub fn with_recovery_margin(mut self, value: Duration) -> Self {
        self.recovery_margin = value;
        self
    }

    /// Sets [`NatsConfig::durable`].
    pub fn with_durable(mut self, value: bool) -> Self {
        self.durable = value;
        self
    }

    /// Sets [`NatsConfig::stream_max_age`] and [`NatsConfig::stream_max_bytes`].
    pub fn with_stream_limits(mut self, max_age: Duration, max_bytes: i64) -> Self {
        self.stream_max_age = max_age;
        self.stream_max_bytes = max_bytes;
        self
    }

    /// The JetStream stream of the cluster's messages: `thingkit-<cluster>` (characters a
    /// stream name may not hold replaced by `_`).
    pub fn stream_name(&self) -> String {
        let cluster: String = self
            .subjects
            .cluster()
            .chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => c,
                _ => '_',
            })
            .collect();
        format!("thingkit-{cluster}")
    }

    /// Sets [`NatsConfig::interest`].
    pub fn with_interest(mut self, value: bool) -> Self {
        self.interest = value;
        self
    }

    /// Sets [`NatsConfig::queue_capacity`] (at least 1).
    pub fn with_queue_capacity(mut self, value: usize) -> Self {
        self.queue_capacity = value.max(1);
        self
    }
}

/// What the NATS routing of one server has done since it started; read with
/// [`NatsRoutes::counters`].
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct NatsCounters {
    /// Messages offered by the broker and queued for NATS.
    pub queued: AtomicU64,
    /// Messages offered while the queue was full (or the routes were closed): not sent.
    pub dropped: AtomicU64,
    /// Messages handed to the NATS client.
    pub published: AtomicU64,
    /// Messages the NATS client refused (too large for the NATS server's `max_payload`, the
    /// connection closed) or that could not be encoded: not sent.
    pub publish_errors: AtomicU64,
    /// Messages received from other servers and routed to this server's subscribers.
    pub received: AtomicU64,
    /// Messages received that were not routed: malformed, with a subject that is not their
    /// topic's, from this server itself, or refused by the broker (a full retained store).
    pub rejected: AtomicU64,
    /// Copies of a message already routed (overlapping subscriptions), not routed again.
    pub duplicates: AtomicU64,
    /// NATS subscriptions held now (the retained subject, and one per distinct pattern of the
    /// local filters, or the whole cluster).
    pub subscriptions: AtomicU64,
    /// Changes of local interest applied to the NATS subscriptions (each batch flushed to NATS
    /// and followed by a round trip, so the server has them before it counts).
    pub interest_changes: AtomicU64,
    /// NATS subscriptions that could not be made (logged; the filter's messages from other
    /// servers do not arrive).
    pub subscribe_errors: AtomicU64,
    /// QoS 1 messages the JetStream stream acknowledged ([`NatsConfig::durable`]).
    pub durable_acks: AtomicU64,
    /// QoS 1 messages the stream did not acknowledge (their publishes were refused).
    pub durable_failures: AtomicU64,
    /// Messages replayed to sessions that moved to this server ([`NatsReplay::missed`]).
    pub replayed: AtomicU64,
    /// Messages a replay left out because it reached [`MAX_REPLAY`] or [`MAX_REPLAY_BYTES`].
    pub replay_truncated: AtomicU64,
    /// Breaks of the NATS connection after which the stream was replayed to this server.
    pub recoveries: AtomicU64,
    /// Messages a shared subscription's queue group handed to this server, delivered to one
    /// of its members here.
    pub shared_received: AtomicU64,
}

/// A shared subscription (share name, inner filter) gaining its first member here (`true`) or
/// losing its last.
type SharedChange = (String, TopicFilter, bool);

/// A message queued for the publisher task, with the confirmation its publisher waits for.
type Queued = (Arc<Message>, Option<Confirmer>);

/// What the subscription task is asked, in order.
#[derive(Debug)]
enum Change {
    /// A filter's first subscription came (`true`) or its last went (`false`).
    Interest(TopicFilter, bool),
    /// Answer once every change before this one is applied and NATS has it.
    Sync(oneshot::Sender<()>),
}

/// The [`Bridge`] a broker offers its messages to: queues them for the NATS publisher task,
/// never waits.
#[derive(Debug)]
pub struct NatsBridge {
    tx: mpsc::Sender<Queued>,
    /// Interest changes, in order, for the subscription task (`None`: whole-cluster mode).
    /// Unbounded: one entry per SUBSCRIBE or UNSUBSCRIBE that changed a filter's count, and
    /// none may be lost.
    interest: Option<mpsc::UnboundedSender<Change>>,
    /// Shared subscriptions gaining their first or losing their last member here, in order,
    /// for the queue-group task (`None` without [`NatsConfig::shared`]).
    shared: Option<mpsc::UnboundedSender<SharedChange>>,
    durable: bool,
    counters: Arc<NatsCounters>,
}

impl NatsBridge {
    /// Returns once every interest change offered so far is applied to the NATS
    /// subscriptions and NATS has them (a round trip): a message published anywhere after this
    /// returns reaches this server's sessions that subscribed before it was called. Returns at
    /// once in whole-cluster mode, and gives up after 5 s.
    pub async fn sync(&self) {
        let Some(tx) = &self.interest else {
            return;
        };
        let (done, wait) = oneshot::channel();
        if tx.send(Change::Sync(done)).is_ok() {
            let _ = tokio::time::timeout(SYNC_TIMEOUT, wait).await;
        }
    }
}

impl Bridge for NatsBridge {
    fn offer(&self, message: &Arc<Message>) -> Option<Confirmation> {
        let (confirmer, confirmation) = match self.durable && message.qos == QoS::AtLeastOnce {
            true => {
                let (confirmer, confirmation) = Confirmation::new();
                (Some(confirmer), Some(confirmation))
            }
            false => (None, None),
        };
        // A message that does not fit drops its confirmer with it: its publish is refused.
        match self.tx.try_send((message.clone(), confirmer)) {
            Ok(()) => self.counters.queued.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.counters.dropped.fetch_add(1, Ordering::Relaxed),
        };
        confirmation
    }

    fn interest(&self, filter: &TopicFilter, subscribed: bool) {
        if let Some(tx) = &self.interest {
            let _ = tx.send(Change::Interest(filter.clone(), subscribed));
        }
    }

    fn routes_shared(&self) -> bool {
        self.shared.is_some()
    }

    fn shared(&self, group: &str, filter: &TopicFilter, subscribed: bool) {
        if let Some(tx) = &self.shared {
            let _ = tx.send((group.to_owned(), filter.clone(), subscribed));
        }
    }
}

/// One server's connection to the cluster's NATS: publishes what its [`NatsBridge`] queues,
/// and (after [`NatsRoutes::start`]) routes what the other servers publish.
#[derive(Debug)]
pub struct NatsRoutes {
    client: async_nats::Client,
    config: NatsConfig,
    bridge: Arc<NatsBridge>,
    counters: Arc<NatsCounters>,
    interest: Option<mpsc::UnboundedReceiver<Change>>,
    /// The connection of the shared subscriptions' queue groups (echo on: this server may be
    /// chosen for its own messages), and their changes.
    shared: Option<(async_nats::Client, mpsc::UnboundedReceiver<SharedChange>)>,
    jetstream: Option<async_nats::jetstream::Context>,
    /// The connection's breaks (`false`, when) and returns (`true`), for [`NatsRoutes::start`].
    events: Option<mpsc::UnboundedReceiver<(bool, SystemTime)>>,
    tasks: Vec<JoinHandle<()>>,
}

impl NatsRoutes {
    /// Connects to NATS (with `no_echo`) and starts the task that publishes what the bridge
    /// queues; with [`NatsConfig::durable`], creates the cluster's stream if it does not exist.
    /// Install [`NatsRoutes::bridge`] in the broker, then call [`NatsRoutes::start`].
    ///
    /// # Errors
    ///
    /// [`Error::Nats`]: the NATS server could not be reached or refused the connection, or (with
    /// `durable`) it runs no JetStream or refused the stream.
    pub async fn connect(config: NatsConfig) -> Result<Self, Error> {
        // Breaks of the connection, for the recovery after one (durable routes).
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::new()
            .event_callback(move |event| {
                let tx = events_tx.clone();
                async move {
                    let up = match event {
                        async_nats::Event::Connected => true,
                        async_nats::Event::Disconnected => false,
                        _ => return,
                    };
                    let _ = tx.send((up, SystemTime::now()));
                }
            })
            .no_echo()
            .name(format!("thingkit {}", config.server_id))
            .connect(config.url.as_str())
            .await
            .map_err(|e| Error::Nats(format!("connecting to {}: {e}", config.url)))?;
        let jetstream = match config.durable {
            true => Some(open_stream(&client, &config).await?),
            false => None,
        };
        let counters = Arc::new(NatsCounters::default());
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let (interest_tx, interest_rx) = match config.interest {
            true => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        let (shared_tx, shared) = match config.shared {
            true => {
                let client = async_nats::ConnectOptions::new()
                    .name(format!("thingkit {} shared", config.server_id))
                    .connect(config.url.as_str())
                    .await
                    .map_err(|e| Error::Nats(format!("connecting to {}: {e}", config.url)))?;
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some((client, rx)))
            }
            false => (None, None),
        };
        let bridge = Arc::new(NatsBridge {
            tx,
            interest: interest_tx,
            shared: shared_tx,
            durable: config.durable,
            counters: counters.clone(),
        });
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 40);
        let mut tasks = Vec::new();
        let acks = jetstream.as_ref().map(|_| {
            let (tx, rx) = mpsc::unbounded_channel();
            tasks.push(tokio::spawn(ack_loop(rx, counters.clone())));
            tx
        });
        tasks.push(tokio::spawn(publish_loop(
            client.clone(),
            jetstream.clone().zip(acks),
            config.clone(),
            run,
            counters.clone(),
            rx,
        )));
        Ok(NatsRoutes {
            client,
            config,
            bridge,
            counters,
            interest: interest_rx,
            shared,
            jetstream,
            events: Some(events_rx),
            tasks,
        })
    }

    /// The handle that replays the stream for sessions that moved here (with
    /// [`NatsConfig::durable`]; `None` without): give it to
    /// [`crate::handover::NatsHandover::with_replay`].
    pub fn replay(&self) -> Option<NatsReplay> {
        Some(NatsReplay {
            client: self.client.clone(),
            jetstream: self.jetstream.clone()?,
            config: self.config.clone(),
            bridge: self.bridge.clone(),
            counters: self.counters.clone(),
        })
    }

    /// The bridge to install with [`thingkit_broker::BrokerBuilder::bridge`].
    pub fn bridge(&self) -> Arc<NatsBridge> {
        self.bridge.clone()
    }

    /// The counters.
    pub fn counters(&self) -> &NatsCounters {
        &self.counters
    }

    /// Whether it subscribes per local filter ([`NatsConfig::interest`]).
    pub fn interest(&self) -> bool {
        self.config.interest
    }

    /// Subscribes to the cluster's subjects and routes every message another server publishes
    /// to this server's subscribers through `publisher`. Returns once NATS has the
    /// subscription (a message published after that reaches this server).
    ///
    /// # Errors
    ///
    /// [`Error::Nats`]: the subscription failed.
    pub async fn start(&mut self, publisher: BrokerPublisher) -> Result<(), Error> {
        let (tx, rx) = mpsc::channel(RECEIVE_CAPACITY);
        let mut subjects = vec![self.config.subjects.retained()];
        if !self.config.interest {
            subjects.push(self.config.subjects.everything());
        }
        for subject in subjects {
            let subscriber = self
                .client
                .subscribe(subject.clone())
                .await
                .map_err(|e| Error::Nats(format!("subscribing to {subject}: {e}")))?;
            self.counters.subscriptions.fetch_add(1, Ordering::Relaxed);
            self.tasks
                .push(tokio::spawn(forward(subscriber, tx.clone())));
        }
        let mut interest = Interest {
            client: self.client.clone(),
            config: self.config.clone(),
            counters: self.counters.clone(),
            patterns: HashMap::new(),
            tx,
        };
        if let Some(mut changes) = self.interest.take() {
            // What the broker's sessions subscribe to now (restored sessions), before returning.
            let mut synced = Vec::new();
            while let Ok(change) = changes.try_recv() {
                match change {
                    Change::Interest(filter, subscribed) => {
                        interest.apply(&filter, subscribed).await
                    }
                    Change::Sync(done) => synced.push(done),
                }
            }
            interest.round_trip().await;
            for done in synced {
                let _ = done.send(());
            }
            self.tasks.push(tokio::spawn(async move {
                interest.run(changes).await;
            }));
        }
        // The SUBs are on the wire and processed once a round trip has been made.
        self.client
            .flush()
            .await
            .map_err(|e| Error::Nats(format!("subscribing: {e}")))?;
        if let Some((client, mut changes)) = self.shared.take() {
            let mut groups = SharedGroups {
                client,
                config: self.config.clone(),
                counters: self.counters.clone(),
                publisher: publisher.clone(),
                groups: HashMap::new(),
            };
            // The shared subscriptions of the restored sessions, before returning.
            while let Ok((group, filter, subscribed)) = changes.try_recv() {
                groups.apply(group, filter, subscribed).await;
            }
            round_trip(&groups.client).await;
            self.tasks.push(tokio::spawn(groups.run(changes)));
        }
        if let (Some(replay), Some(events)) = (self.replay(), self.events.take()) {
            self.tasks.push(tokio::spawn(recover_after_breaks(
                replay,
                events,
                publisher.clone(),
                self.counters.clone(),
            )));
        }
        self.tasks.push(tokio::spawn(receive_loop(
            rx,
            self.config.clone(),
            self.counters.clone(),
            publisher,
        )));
        Ok(())
    }

    /// Waits until everything queued so far has been handed to NATS and NATS has it (or
    /// `timeout` passes), then stops routing: messages offered afterwards are dropped and
    /// counted.
    pub async fn close(self, timeout: std::time::Duration) {
        let NatsRoutes {
            client,
            bridge,
            counters,
            mut tasks,
            ..
        } = self;
        let deadline = tokio::time::Instant::now() + timeout;
        // The publisher task ends when the queue is empty and every sender is gone; the broker
        // may still hold the bridge, so wait for the queue to drain instead.
        while bridge.tx.capacity() < bridge.tx.max_capacity()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let _ = tokio::time::timeout_at(deadline, client.flush()).await;
        for task in tasks.drain(..) {
            task.abort();
        }
        tracing::info!(
            published = counters.published.load(Ordering::Relaxed),
            received = counters.received.load(Ordering::Relaxed),
            dropped = counters.dropped.load(Ordering::Relaxed),
            "NATS routing stopped"
        );
    }
}

/// Encodes `message` as the NATS payload: an MQTT 5.0 PUBLISH with the expiry left at `now`.
/// `None` if it has expired.
pub fn encode_message(message: &Message, now: Instant) -> Result<Option<Bytes>, Error> {
    if message.is_expired(now) {
        return Ok(None);
    }
    let mut publish = Publish::new(message.topic.clone(), message.payload.clone());
    publish.qos = message.qos;
    publish.retain = message.retain;
    publish.properties = message.properties.clone();
    if let Some(left) = message.expiry_left(now) {
        publish.properties.message_expiry_interval = Some(left);
    }
    if publish.properties.topic_alias.is_some() {
        publish.properties.topic_alias = None;
    }
    if message.qos.as_u8() > 0 {
        publish.packet_id = PacketId::new(1);
    }
    let encoder = Encoder::new(ProtocolVersion::V5).with_max_packet_size(PROTOCOL_MAX_PACKET_SIZE);
    let mut buf = BytesMut::new();
    encoder
        .encode(&Packet::Publish(publish), &mut buf)
        .map_err(|e| Error::Message(format!("encoding {}: {e}", message.topic)))?;
    Ok(Some(buf.freeze()))
}

/// Decodes a NATS payload made by [`encode_message`]: the message as received at `now`, from
/// client `from`.
///
/// # Errors
///
/// [`Error::Message`]: not exactly one MQTT 5.0 PUBLISH with a topic.
pub fn decode_message(
    payload: Bytes,
    from: Option<Arc<str>>,
    now: Instant,
) -> Result<Message, Error> {
    let mut decoder = Decoder::new(ProtocolVersion::V5)
        .with_config(DecoderConfig::default().with_max_packet_size(PROTOCOL_MAX_PACKET_SIZE));
    let mut bytes = payload;
    let packet = decoder
        .decode_bytes(&mut bytes)
        .map_err(|e| Error::Message(format!("not an MQTT 5.0 PUBLISH: {e}")))?;
    let Some(Packet::Publish(publish)) = packet else {
        return Err(Error::Message("not a whole MQTT 5.0 PUBLISH".into()));
    };
    if !bytes.is_empty() {
        return Err(Error::Message(format!(
            "{} bytes after the PUBLISH",
            bytes.len()
        )));
    }
    let Some(topic) = publish.topic else {
        return Err(Error::Message("a PUBLISH without a topic".into()));
    };
    let mut properties = publish.properties;
    if properties.topic_alias.is_some() {
        properties.topic_alias = None;
    }
    Ok(Message {
        topic,
        payload: publish.payload,
        qos: publish.qos,
        retain: publish.retain,
        properties,
        from,
        received: now,
    })
}

/// Creates the cluster's stream ([`NatsConfig::stream_name`]) if it does not exist.
async fn open_stream(
    client: &async_nats::Client,
    config: &NatsConfig,
) -> Result<async_nats::jetstream::Context, Error> {
    use async_nats::jetstream::stream;
    let jetstream = async_nats::jetstream::new(client.clone());
    let name = config.stream_name();
    jetstream
        .get_or_create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![config.subjects.everything(), config.subjects.retained()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            max_age: config.stream_max_age,
            max_bytes: config.stream_max_bytes,
            ..Default::default()
        })
        .await
        .map_err(|e| {
            Error::Nats(format!(
                "the JetStream stream {name} (is JetStream on, nats-server -js?): {e}"
            ))
        })?;
    Ok(jetstream)
}

/// A JetStream publish waiting for the stream's acknowledgement, with its confirmer.
type PendingAck = (async_nats::jetstream::context::PublishAckFuture, Confirmer);

/// Answers each confirmation, in order, with the stream's acknowledgement of its message.
async fn ack_loop(mut rx: mpsc::UnboundedReceiver<PendingAck>, counters: Arc<NatsCounters>) {
    while let Some((ack, confirmer)) = rx.recv().await {
        match ack.await {
            Ok(_) => {
                counters.durable_acks.fetch_add(1, Ordering::Relaxed);
                confirmer.confirm();
            }
            Err(e) => {
                counters.durable_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "the cluster's stream did not acknowledge a QoS 1 message");
                confirmer.fail(format!("the cluster's stream did not acknowledge it: {e}"));
            }
        }
    }
}

async fn publish_loop(
    client: async_nats::Client,
    durable: Option<(
        async_nats::jetstream::Context,
        mpsc::UnboundedSender<PendingAck>,
    )>,
    config: NatsConfig,
    run: u64,
    counters: Arc<NatsCounters>,
    mut rx: mpsc::Receiver<Queued>,
) {
    let mut sequence: u64 = 0;
    let retained = config.subjects.retained();
    while let Some((message, confirmer)) = rx.recv().await {
        let payload = match encode_message(&message, Instant::now()) {
            Ok(Some(payload)) => payload,
            Ok(None) => {
                // Expired on its way: nobody is owed it.
                if let Some(confirmer) = confirmer {
                    confirmer.confirm();
                }
                continue;
            }
            Err(e) => {
                counters.publish_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "a message was not sent to the cluster");
                if let Some(confirmer) = confirmer {
                    confirmer.fail(e.to_string());
                }
                continue;
            }
        };
        sequence += 1;
        let mut headers = HeaderMap::new();
        headers.insert(SERVER_HEADER, config.server_id.as_str());
        headers.insert(SEQ_HEADER, format!("{run:x}-{sequence:x}").as_str());
        if let Some(from) = &message.from {
            headers.insert(FROM_HEADER, hex::encode(from.as_bytes()).as_str());
        }
        let subject = match message.retain {
            true => retained.clone(),
            false => config.subjects.subject(&message.topic),
        };
        if let (Some((jetstream, acks)), Some(confirmer)) = (&durable, confirmer) {
            match jetstream
                .publish_with_headers(subject, headers, payload)
                .await
            {
                Ok(ack) => {
                    counters.published.fetch_add(1, Ordering::Relaxed);
                    let _ = acks.send((ack, confirmer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, topic = %message.topic, "a message was not sent to the cluster");
                    counters.publish_errors.fetch_add(1, Ordering::Relaxed);
                    confirmer.fail(format!("not sent to the cluster: {e}"));
                }
            }
            continue;
        }
        match client.publish_with_headers(subject, headers, payload).await {
            Ok(()) => counters.published.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(error = %e, topic = %message.topic, "a message was not sent to the cluster");
                counters.publish_errors.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// Checks one message from NATS and builds the broker's message from it; `None` for a copy of
/// a message already routed.
fn accept(
    config: &NatsConfig,
    dedup: &mut Dedup,
    message: async_nats::Message,
) -> Result<Option<Message>, Error> {
    accept_from(config, dedup, message, false)
}

/// [`accept`], taking this server's own messages too when `own` (a shared subscription's
/// queue group may choose this server for a message it published itself).
fn accept_from(
    config: &NatsConfig,
    dedup: &mut Dedup,
    message: async_nats::Message,
    own: bool,
) -> Result<Option<Message>, Error> {
    let headers = message.headers.unwrap_or_default();
    let server = headers.get(SERVER_HEADER).map(|v| v.as_str());
    if !own && server == Some(config.server_id.as_str()) {
        return Err(Error::Message("a message from this server itself".into()));
    }
    let seq = headers
        .get(SEQ_HEADER)
        .and_then(|v| v.as_str().split_once('-'))
        .and_then(|(run, n)| {
            Some((
                u64::from_str_radix(run, 16).ok()?,
                u64::from_str_radix(n, 16).ok()?,
            ))
        })
        .ok_or_else(|| Error::Message(format!("no valid {SEQ_HEADER} header")))?;
    if !dedup.first(seq.0, seq.1) {
        return Ok(None);
    }
    let from = from_header(&headers)?;
    let routed = decode_message(message.payload, from, Instant::now())?;
    let expected = match routed.retain {
        true => config.subjects.retained(),
        false => config.subjects.subject(&routed.topic),
    };
    if expected != message.subject.as_str() {
        return Err(Error::Message(format!(
            "subject {} is not where a message on {} travels",
            message.subject, routed.topic
        )));
    }
    Ok(Some(routed))
}

/// The publishing client's ID from [`FROM_HEADER`], if the message has one.
fn from_header(headers: &HeaderMap) -> Result<Option<Arc<str>>, Error> {
    let Some(hex_id) = headers.get(FROM_HEADER) else {
        return Ok(None);
    };
    let bytes =
        hex::decode(hex_id.as_str()).map_err(|e| Error::Message(format!("{FROM_HEADER}: {e}")))?;
    let id = String::from_utf8(bytes).map_err(|e| Error::Message(format!("{FROM_HEADER}: {e}")))?;
    Ok(Some(Arc::from(id)))
}

/// Moves what one NATS subscription receives to the routing task, until either ends.
async fn forward(mut subscriber: async_nats::Subscriber, tx: mpsc::Sender<async_nats::Message>) {
    use futures_util::StreamExt;
    while let Some(message) = subscriber.next().await {
        if tx.send(message).await.is_err() {
            return;
        }
    }
}

/// The NATS subscriptions that follow the broker's interest: one per distinct pattern,
/// counted by the filters that need it.
struct Interest {
    client: async_nats::Client,
    config: NatsConfig,
    counters: Arc<NatsCounters>,
    patterns: HashMap<String, (usize, Option<JoinHandle<()>>)>,
    tx: mpsc::Sender<async_nats::Message>,
}

impl Interest {
    async fn run(mut self, mut changes: mpsc::UnboundedReceiver<Change>) {
        while let Some(first) = changes.recv().await {
            let mut applied = 0;
            let mut synced = Vec::new();
            let mut next = Some(first);
            while let Some(change) = next {
                match change {
                    Change::Interest(filter, subscribed) => {
                        self.apply(&filter, subscribed).await;
                        applied += 1;
                    }
                    Change::Sync(done) => synced.push(done),
                }
                next = changes.try_recv().ok();
            }
            self.round_trip().await;
            self.counters
                .interest_changes
                .fetch_add(applied, Ordering::Relaxed);
            for done in synced {
                let _ = done.send(());
            }
        }
    }

    /// Flushes the subscription changes and waits until NATS has processed them. (A flush
    /// only writes the socket. A request nobody answers comes back, NATS's "no responders",
    /// only after the server has processed everything this connection sent before it, the
    /// subscriptions included: a round trip, after which messages published anywhere reach
    /// them.)
    async fn round_trip(&self) {
        round_trip(&self.client).await;
    }

    async fn apply(&mut self, filter: &TopicFilter, subscribed: bool) {
        for pattern in self.config.subjects.patterns(filter).patterns() {
            if subscribed {
                let entry = self.patterns.entry(pattern.clone()).or_insert((0, None));
                entry.0 += 1;
                if entry.0 > 1 {
                    continue;
                }
                match self.client.subscribe(pattern.clone()).await {
                    Ok(subscriber) => {
                        self.counters.subscriptions.fetch_add(1, Ordering::Relaxed);
                        entry.1 = Some(tokio::spawn(forward(subscriber, self.tx.clone())));
                    }
                    Err(e) => {
                        self.counters
                            .subscribe_errors
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e, %pattern, %filter, "NATS subscription failed: messages from other servers on this filter will not arrive");
                    }
                }
            } else if let Some(entry) = self.patterns.get_mut(pattern) {
                entry.0 = entry.0.saturating_sub(1);
                if entry.0 == 0
                    && let Some((_, task)) = self.patterns.remove(pattern)
                    && let Some(task) = task
                {
                    // Dropping the subscriber (with the task) unsubscribes.
                    task.abort();
                    self.counters.subscriptions.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Reads back, from the cluster's JetStream stream, the QoS 1 messages a persistent session
/// may have missed while it moved to this server (made by [`NatsRoutes::replay`]; used by
/// [`crate::handover::NatsHandover`]).
#[derive(Debug, Clone)]
pub struct NatsReplay {
    client: async_nats::Client,
    jetstream: async_nats::jetstream::Context,
    config: NatsConfig,
    bridge: Arc<NatsBridge>,
    counters: Arc<NatsCounters>,
}

impl NatsReplay {
    /// The QoS 1 messages published in the cluster since `since` (by the stream's clock) on a
    /// topic one of `filters` matches (a shared subscription by its inner filter), in the order the
    /// stream took them, each once, with what is left of its Message Expiry Interval. First
    /// waits until this server's interest changes are live on NATS ([`NatsBridge::sync`]), so
    /// that every message published after the replay's end reaches the session live: the two
    /// may overlap (a duplicate, which QoS 1 allows), but leave no gap. At most
    /// [`MAX_REPLAY`] messages and [`MAX_REPLAY_BYTES`] of payload (the oldest).
    ///
    /// # Errors
    ///
    /// [`Error::Nats`]: the stream could not be read.
    pub async fn missed(
        &self,
        since: SystemTime,
        filters: &[TopicFilter],
    ) -> Result<Vec<Arc<Message>>, Error> {
        if filters.is_empty() {
            return Ok(Vec::new());
        }
        self.bridge.sync().await;
        let mut patterns = BTreeSet::new();
        patterns.insert(self.config.subjects.retained());
        for filter in filters {
            for pattern in self.config.subjects.patterns(filter).patterns() {
                patterns.insert(pattern.clone());
            }
        }
        self.read_from(
            since,
            patterns,
            |m| filters.iter().any(|f| f.matches(&m.topic)),
            None,
        )
        .await
    }

    /// Routes to this server's subscribers, as if they had just arrived from NATS
    /// ([`BrokerPublisher::publish_remote`]: `iot:Receive` per subscriber, retained messages
    /// stored), every QoS 1 message the cluster's stream took since `since`: what this server
    /// missed while it was down (a restart in place: [`crate::handover::NatsHandover::recover`])
    /// or cut off from NATS (done by [`NatsRoutes`] itself when its connection comes back;
    /// then without this server's own messages, which it routed itself). Waits first until
    /// this server's NATS subscriptions are live, so nothing published after the replay's end
    /// is missed. Returns how many messages were routed (at most [`MAX_REPLAY`]).
    ///
    /// # Errors
    ///
    /// [`Error::Nats`]: the stream could not be read.
    pub async fn recover(
        &self,
        since: SystemTime,
        publisher: &BrokerPublisher,
        skip_own: bool,
    ) -> Result<usize, Error> {
        self.bridge.sync().await;
        round_trip(&self.client).await;
        let patterns = BTreeSet::from([
            self.config.subjects.everything(),
            self.config.subjects.retained(),
        ]);
        let own = skip_own.then(|| self.config.server_id.clone());
        let messages = self
            .read_from(since, patterns, |_| true, own.as_deref())
            .await?;
        let mut routed = 0;
        for message in messages {
            let topic = message.topic.clone();
            match publisher.publish_remote(message).await {
                Ok(()) => routed += 1,
                Err(e) => {
                    tracing::warn!(error = %e, %topic, "a recovered message was not routed");
                }
            }
        }
        Ok(routed)
    }

    /// The QoS 1 messages of the stream on `patterns` since `since` that `keep` keeps, in
    /// stream order, each once (patterns may overlap), leaving out those `skip_server` sent.
    async fn read_from(
        &self,
        since: SystemTime,
        patterns: BTreeSet<String>,
        keep: impl Fn(&Message) -> bool,
        skip_server: Option<&str>,
    ) -> Result<Vec<Arc<Message>>, Error> {
        use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy};
        use futures_util::StreamExt;
        let name = self.config.stream_name();
        let nats = |what: &str, e: &dyn std::fmt::Display| {
            Error::Nats(format!("replaying {name}: {what}: {e}"))
        };
        let stream = self
            .jetstream
            .get_stream(&name)
            .await
            .map_err(|e| nats("the stream", &e))?;
        let last = stream
            .get_info()
            .await
            .map_err(|e| nats("the stream's state", &e))?
            .state
            .last_sequence;
        let start = time::OffsetDateTime::from(since);
        let mut found: BTreeMap<u64, Message> = BTreeMap::new();
        let mut truncated = 0u64;
        let mut bytes = 0usize;
        let now = Instant::now();
        let wall = time::OffsetDateTime::now_utc();
        for pattern in patterns {
            let consumer: consumer::PullConsumer = stream
                .create_consumer(consumer::pull::Config {
                    deliver_policy: DeliverPolicy::ByStartTime { start_time: start },
                    ack_policy: AckPolicy::None,
                    filter_subject: pattern.clone(),
                    inactive_threshold: Duration::from_secs(30),
                    ..Default::default()
                })
                .await
                .map_err(|e| nats("a consumer", &e))?;
            'fetch: loop {
                let mut batch = consumer
                    .fetch()
                    .max_messages(1_000)
                    .expires(Duration::from_millis(500))
                    .messages()
                    .await
                    .map_err(|e| nats("a batch", &e))?;
                let mut got = 0;
                while let Some(message) = batch.next().await {
                    let message = message.map_err(|e| nats("a message", &e))?;
                    let Ok(info) = message.info() else { continue };
                    let (seq, pending, published) =
                        (info.stream_sequence, info.pending, info.published);
                    got += 1;
                    if seq > last {
                        break 'fetch;
                    }
                    let sent_by = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(SERVER_HEADER))
                        .map(|v| v.as_str().to_owned());
                    if !found.contains_key(&seq)
                        && (skip_server.is_none() || sent_by.as_deref() != skip_server)
                        && let Some(m) = replayable(&message, now, wall - published)
                        && keep(&m)
                    {
                        if found.len() >= MAX_REPLAY
                            || bytes.saturating_add(m.payload.len()) > MAX_REPLAY_BYTES
                        {
                            truncated += 1;
                        } else {
                            bytes += m.payload.len();
                            found.insert(seq, m);
                        }
                    }
                    if pending == 0 || seq == last {
                        break 'fetch;
                    }
                }
                if got == 0 {
                    break;
                }
            }
            let consumer_name = consumer.cached_info().name.clone();
            let _ = stream.delete_consumer(&consumer_name).await;
        }
        if truncated > 0 {
            self.counters
                .replay_truncated
                .fetch_add(truncated, Ordering::Relaxed);
            tracing::warn!(
                truncated,
                "a replay reached its limit: the newest messages were left out"
            );
        }
        self.counters
            .replayed
            .fetch_add(found.len() as u64, Ordering::Relaxed);
        Ok(found.into_values().map(Arc::new).collect())
    }
}

/// The NATS queue groups of the shared subscriptions with members on this server: one group per
/// `$share/{group}/{filter}`, named after it, subscribed on each NATS pattern of the filter and
/// on the retained subject, so that NATS hands each message to one server among those with
/// members, which delivers it to one of its members ([`BrokerPublisher::publish_shared`]).
struct SharedGroups {
    client: async_nats::Client,
    config: NatsConfig,
    counters: Arc<NatsCounters>,
    publisher: BrokerPublisher,
    groups: HashMap<(String, TopicFilter), JoinHandle<()>>,
}

impl SharedGroups {
    async fn run(mut self, mut changes: mpsc::UnboundedReceiver<SharedChange>) {
        while let Some((group, filter, subscribed)) = changes.recv().await {
            self.apply(group, filter, subscribed).await;
            while let Ok((group, filter, subscribed)) = changes.try_recv() {
                self.apply(group, filter, subscribed).await;
            }
            round_trip(&self.client).await;
        }
    }

    async fn apply(&mut self, group: String, filter: TopicFilter, subscribed: bool) {
        let key = (group, filter);
        if !subscribed {
            if let Some(task) = self.groups.remove(&key) {
                // Dropping the subscribers (with the task) unsubscribes.
                task.abort();
            }
            return;
        }
        if self.groups.contains_key(&key) {
            return;
        }
        let (group, filter) = &key;
        // One queue name per shared subscription, whatever its characters.
        let digest = queue_digest(&format!("{group}\0{}", filter.as_str()));
        let queue = format!("thingkit-share-{digest}");
        let mut subjects = vec![self.config.subjects.retained()];
        subjects.extend(
            self.config
                .subjects
                .patterns(filter)
                .patterns()
                .iter()
                .cloned(),
        );
        let (tx, rx) = mpsc::channel(RECEIVE_CAPACITY);
        let mut forwards = Vec::new();
        for subject in subjects {
            match self
                .client
                .queue_subscribe(subject.clone(), queue.clone())
                .await
            {
                Ok(subscriber) => forwards.push(tokio::spawn(forward(subscriber, tx.clone()))),
                Err(e) => {
                    self.counters
                        .subscribe_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, %subject, %group, %filter, "NATS queue subscription failed: the shared subscription's messages from other servers will not arrive");
                }
            }
        }
        let task = tokio::spawn(deliver_shared(
            rx,
            forwards,
            group.clone(),
            filter.clone(),
            self.config.clone(),
            self.counters.clone(),
            self.publisher.clone(),
        ));
        self.groups.insert(key, task);
    }
}

impl Drop for SharedGroups {
    fn drop(&mut self) {
        for task in self.groups.values() {
            task.abort();
        }
    }
}

/// A stable name for `text` (hex of 128 bits of its SHA-256): a NATS queue name for a shared
/// subscription, whatever the characters of its share name and filter.
fn queue_digest(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    hex::encode(&digest.as_ref()[..16])
}

/// Delivers what one shared subscription's queue group receives to one of its members here,
/// each message once (its patterns may overlap), until the subscriptions end.
async fn deliver_shared(
    mut rx: mpsc::Receiver<async_nats::Message>,
    forwards: Vec<JoinHandle<()>>,
    group: String,
    filter: TopicFilter,
    config: NatsConfig,
    counters: Arc<NatsCounters>,
    publisher: BrokerPublisher,
) {
    struct AbortOnDrop(Vec<JoinHandle<()>>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            for task in &self.0 {
                task.abort();
            }
        }
    }
    let _forwards = AbortOnDrop(forwards);
    let mut dedup = Dedup::default();
    while let Some(message) = rx.recv().await {
        let Some(routed) = counted(accept_from(&config, &mut dedup, message, true), &counters)
        else {
            continue;
        };
        if !filter.matches(&routed.topic) {
            continue; // a retained message on another topic
        }
        let topic = routed.topic.clone();
        match publisher
            .publish_shared(&group, &filter, Arc::new(routed))
            .await
        {
            Ok(()) => counters.shared_received.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(error = %e, %topic, %group, "a message for a shared subscription was not routed");
                counters.rejected.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// After each break of the NATS connection, once it is back: routes to this server's
/// subscribers what the other servers published meanwhile ([`NatsReplay::recover`], from the
/// break less [`NatsConfig::recovery_margin`]).
async fn recover_after_breaks(
    replay: NatsReplay,
    mut events: mpsc::UnboundedReceiver<(bool, SystemTime)>,
    publisher: BrokerPublisher,
    counters: Arc<NatsCounters>,
) {
    let mut broken: Option<SystemTime> = None;
    while let Some((up, at)) = events.recv().await {
        if !up {
            broken.get_or_insert(at);
            continue;
        }
        let Some(at) = broken.take() else { continue };
        let since = at
            .checked_sub(replay.config.recovery_margin)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        match replay.recover(since, &publisher, true).await {
            Ok(routed) => {
                counters.recoveries.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    routed,
                    "NATS is back: routed what other servers published meanwhile"
                );
            }
            Err(e) => {
                // Left for the next break: logged, not retried.
                tracing::error!(error = %e, "NATS is back, but what other servers published meanwhile could not be read");
            }
        }
    }
}

/// Flushes and waits for a round trip to the NATS server (a request nobody answers), after
/// which everything sent before it (subscriptions included) is processed.
async fn round_trip(client: &async_nats::Client) {
    let _ = client.flush().await;
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        client.request(SYNC_SUBJECT, Bytes::new()),
    )
    .await;
}

/// A message from the stream as the broker routes it, if it is QoS 1 and not expired `age`
/// after it was published.
fn replayable(
    message: &async_nats::jetstream::Message,
    now: Instant,
    age: time::Duration,
) -> Option<Message> {
    let headers = message.headers.clone().unwrap_or_default();
    let from = from_header(&headers).ok()?;
    let mut routed = decode_message(message.payload.clone(), from, now).ok()?;
    if routed.qos != QoS::AtLeastOnce {
        return None;
    }
    if let Some(left) = routed.properties.message_expiry_interval {
        let age = u32::try_from(age.whole_seconds().max(0)).unwrap_or(u32::MAX);
        if age >= left {
            return None;
        }
        routed.properties.message_expiry_interval = Some(left - age);
    }
    Some(routed)
}

/// Which message numbers of each sending server run were routed: a window of the last
/// [`DEDUP_WINDOW`] numbers below the highest seen, per run.
#[derive(Default)]
struct Dedup {
    runs: HashMap<u64, Window>,
}

/// The most sending server runs remembered; past that the least recently heard is forgotten.
const MAX_RUNS: usize = 1_024;

struct Window {
    high: u64,
    bits: Vec<u64>,
    heard: u64,
}

impl Window {
    fn slot(seq: u64) -> (usize, u64) {
        let i = seq % DEDUP_WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    fn set(&mut self, seq: u64) {
        let (word, bit) = Self::slot(seq);
        if let Some(w) = self.bits.get_mut(word) {
            *w |= bit;
        }
    }

    fn is_set(&self, seq: u64) -> bool {
        let (word, bit) = Self::slot(seq);
        self.bits.get(word).is_some_and(|w| w & bit != 0)
    }

    fn clear(&mut self, seq: u64) {
        let (word, bit) = Self::slot(seq);
        if let Some(w) = self.bits.get_mut(word) {
            *w &= !bit;
        }
    }
}

impl Dedup {
    /// Whether message `seq` of run `run` is seen for the first time (and remembers it). A
    /// number further below the highest than the window reaches counts as new: better a rare
    /// duplicate than a loss.
    fn first(&mut self, run: u64, seq: u64) -> bool {
        let clock = self.runs.values().map(|w| w.heard).max().unwrap_or(0) + 1;
        if !self.runs.contains_key(&run) && self.runs.len() >= MAX_RUNS {
            let oldest = self
                .runs
                .iter()
                .min_by_key(|(_, w)| w.heard)
                .map(|(r, _)| *r);
            if let Some(oldest) = oldest {
                self.runs.remove(&oldest);
            }
        }
        let window = self.runs.entry(run).or_insert_with(|| Window {
            high: seq,
            bits: vec![0; (DEDUP_WINDOW / 64) as usize],
            heard: clock,
        });
        window.heard = clock;
        if seq > window.high {
            if seq - window.high >= DEDUP_WINDOW {
                window.bits.iter_mut().for_each(|w| *w = 0);
            } else {
                for s in window.high + 1..seq {
                    window.clear(s);
                }
            }
            window.high = seq;
            window.set(seq);
            return true;
        }
        if window.high - seq >= DEDUP_WINDOW {
            return true;
        }
        if window.is_set(seq) {
            return false;
        }
        window.set(seq);
        true
    }
}

/// The message [`accept`] let through, counting a duplicate or a rejection otherwise.
fn counted(accepted: Result<Option<Message>, Error>, counters: &NatsCounters) -> Option<Message> {
    match accepted {
        Ok(Some(message)) => Some(message),
        Ok(None) => {
            counters.duplicates.fetch_add(1, Ordering::Relaxed);
            None
        }
        Err(e) => {
            counters.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "a message from NATS was not routed");
            None
        }
    }
}

async fn receive_loop(
    mut rx: mpsc::Receiver<async_nats::Message>,
    config: NatsConfig,
    counters: Arc<NatsCounters>,
    publisher: BrokerPublisher,
) {
    let mut dedup = Dedup::default();
    while let Some(message) = rx.recv().await {
        let Some(routed) = counted(accept(&config, &mut dedup, message), &counters) else {
            continue;
        };
        let topic = routed.topic.clone();
        match publisher.publish_remote(Arc::new(routed)).await {
            Ok(()) => counters.received.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(error = %e, %topic, "a message from another server was not routed");
                counters.rejected.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
    tracing::warn!("the NATS subscriptions ended: messages from other servers no longer arrive");
}

#[cfg(test)]
mod tests {
    use super::*;
    use thingkit_mqtt::{PacketProperties, QoS, TopicName};

    #[test]
    fn a_message_survives_the_wire_format() {
        let mut properties = PacketProperties::default();
        properties.content_type = Some(thingkit_mqtt::MqttStr::new("text/plain").unwrap());
        properties.message_expiry_interval = Some(60);
        let now = Instant::now();
        let message = Message {
            topic: TopicName::new("a/b.c/ /é").unwrap(),
            payload: Bytes::from_static(b"hello"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties,
            from: Some("sensor-1".into()),
            received: now,
        };
        let wire = encode_message(&message, now).unwrap().unwrap();
        let back = decode_message(wire, message.from.clone(), now).unwrap();
        assert_eq!(back.topic, message.topic);
        assert_eq!(back.payload, message.payload);
        assert_eq!(back.qos, QoS::AtLeastOnce);
        assert!(back.retain);
        assert_eq!(back.properties, message.properties);
        assert_eq!(back.from.as_deref(), Some("sensor-1"));
    }

    #[test]
    fn an_expired_message_is_not_sent() {
        let mut properties = PacketProperties::default();
        properties.message_expiry_interval = Some(1);
        let then = Instant::now();
        let message = Message {
            topic: TopicName::new("a").unwrap(),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties,
            from: None,
            received: then,
        };
        let later = then + std::time::Duration::from_secs(2);
        assert!(encode_message(&message, later).unwrap().is_none());
    }

    #[test]
    fn rejects_payloads_that_are_not_one_publish() {
        let now = Instant::now();
        assert!(decode_message(Bytes::from_static(b"\x30"), None, now).is_err());
        assert!(decode_message(Bytes::from_static(b"\xc0\x00"), None, now).is_err());
        assert!(decode_message(Bytes::from_static(b"junk"), None, now).is_err());
    }

    #[test]
    fn routes_each_message_number_once_per_run() {
        let mut dedup = Dedup::default();
        assert!(dedup.first(1, 10));
        assert!(!dedup.first(1, 10));
        assert!(dedup.first(1, 12));
        assert!(dedup.first(1, 11), "a gap is filled later");
        assert!(!dedup.first(1, 11));
        assert!(dedup.first(2, 10), "another run numbers from its own start");
        assert!(dedup.first(1, 12 + DEDUP_WINDOW + 5));
        assert!(
            dedup.first(1, 12),
            "beyond the window: routed rather than lost"
        );
        assert!(!dedup.first(1, 12 + DEDUP_WINDOW + 5));
        assert!(dedup.first(1, 12 + DEDUP_WINDOW + 4));
    }

    #[test]
    fn rejects_bad_server_ids() {
        assert!(NatsConfig::new("nats://127.0.0.1:4222", "c", "").is_err());
        assert!(NatsConfig::new("nats://127.0.0.1:4222", "c", "a b").is_err());
        assert!(NatsConfig::new("nats://127.0.0.1:4222", "c.d", "a").is_err());
        assert!(NatsConfig::new("nats://127.0.0.1:4222", "c", "a").is_ok());
    }
}
