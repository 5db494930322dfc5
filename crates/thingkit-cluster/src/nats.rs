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
//! them; the Message Expiry Interval is what is left of it when the message leaves). Two NATS
//! headers go with it: [`SERVER_HEADER`] (the sending server's [`NatsConfig::server_id`]) and,
//! for a message a client published, [`FROM_HEADER`] (its client ID in hex, for MQTT 5 No
//! Local). The connection sets NATS `no_echo`, so a server never receives its own messages;
//! a message that carries this server's id anyway is ignored and counted.
//!
//! Every server subscribes to the whole cluster (`thingkit.<cluster>.>`): what a server's
//! sessions do not subscribe to reaches it and is delivered to no one. (Interest-based
//! subscriptions, per local filter with [`crate::subject::SubjectSpace::patterns`], are not
//! built yet.)
//!
//! What NATS core gives is at-most-once between servers: a message published while a server
//! is disconnected from NATS does not reach it, and a server that starts later does not get
//! the retained messages published before (JetStream would; not built yet).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_nats::HeaderMap;
use bytes::{Bytes, BytesMut};
use thingkit_broker::{Bridge, BrokerPublisher, Message};
use thingkit_mqtt::{
    Decoder, DecoderConfig, Encoder, PROTOCOL_MAX_PACKET_SIZE, Packet, PacketId, ProtocolVersion,
    Publish,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Error;
use crate::subject::SubjectSpace;

/// The NATS header that names the server a message comes from.
pub const SERVER_HEADER: &str = "Thingkit-Server";

/// The NATS header that carries the publishing client's ID (lower-case hex of its UTF-8), for
/// MQTT 5 No Local on the receiving servers. Absent for messages the broker itself published.
pub const FROM_HEADER: &str = "Thingkit-From";

/// The default [`NatsConfig::queue_capacity`].
pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;

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
        })
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
}

/// The [`Bridge`] a broker offers its messages to: queues them for the NATS publisher task,
/// never waits.
#[derive(Debug)]
pub struct NatsBridge {
    tx: mpsc::Sender<Arc<Message>>,
    counters: Arc<NatsCounters>,
}

impl Bridge for NatsBridge {
    fn offer(&self, message: &Arc<Message>) {
        match self.tx.try_send(message.clone()) {
            Ok(()) => self.counters.queued.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.counters.dropped.fetch_add(1, Ordering::Relaxed),
        };
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
    tasks: Vec<JoinHandle<()>>,
}

impl NatsRoutes {
    /// Connects to NATS (with `no_echo`) and starts the task that publishes what the bridge
    /// queues. Install [`NatsRoutes::bridge`] in the broker, then call [`NatsRoutes::start`].
    ///
    /// # Errors
    ///
    /// [`Error::Nats`]: the NATS server could not be reached or refused the connection.
    pub async fn connect(config: NatsConfig) -> Result<Self, Error> {
        let client = async_nats::ConnectOptions::new()
            .no_echo()
            .name(format!("thingkit {}", config.server_id))
            .connect(config.url.as_str())
            .await
            .map_err(|e| Error::Nats(format!("connecting to {}: {e}", config.url)))?;
        let counters = Arc::new(NatsCounters::default());
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let bridge = Arc::new(NatsBridge {
            tx,
            counters: counters.clone(),
        });
        let publisher = tokio::spawn(publish_loop(
            client.clone(),
            config.clone(),
            counters.clone(),
            rx,
        ));
        Ok(NatsRoutes {
            client,
            config,
            bridge,
            counters,
            tasks: vec![publisher],
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

    /// Subscribes to the cluster's subjects and routes every message another server publishes
    /// to this server's subscribers through `publisher`. Returns once NATS has the
    /// subscription (a message published after that reaches this server).
    ///
    /// # Errors
    ///
    /// [`Error::Nats`]: the subscription failed.
    pub async fn start(&mut self, publisher: BrokerPublisher) -> Result<(), Error> {
        let subject = self.config.subjects.everything();
        let subscriber = self
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|e| Error::Nats(format!("subscribing to {subject}: {e}")))?;
        // The SUB is on the wire and processed once a round trip has been made.
        self.client
            .flush()
            .await
            .map_err(|e| Error::Nats(format!("subscribing to {subject}: {e}")))?;
        self.tasks.push(tokio::spawn(receive_loop(
            subscriber,
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

async fn publish_loop(
    client: async_nats::Client,
    config: NatsConfig,
    counters: Arc<NatsCounters>,
    mut rx: mpsc::Receiver<Arc<Message>>,
) {
    while let Some(message) = rx.recv().await {
        let payload = match encode_message(&message, Instant::now()) {
            Ok(Some(payload)) => payload,
            Ok(None) => continue,
            Err(e) => {
                counters.publish_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "a message was not sent to the cluster");
                continue;
            }
        };
        let mut headers = HeaderMap::new();
        headers.insert(SERVER_HEADER, config.server_id.as_str());
        if let Some(from) = &message.from {
            headers.insert(FROM_HEADER, hex::encode(from.as_bytes()).as_str());
        }
        let subject = config.subjects.subject(&message.topic);
        match client.publish_with_headers(subject, headers, payload).await {
            Ok(()) => counters.published.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(error = %e, topic = %message.topic, "a message was not sent to the cluster");
                counters.publish_errors.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// Checks one message from NATS and builds the broker's message from it.
fn accept(config: &NatsConfig, message: async_nats::Message) -> Result<Message, Error> {
    let headers = message.headers.unwrap_or_default();
    let server = headers.get(SERVER_HEADER).map(|v| v.as_str());
    if server == Some(config.server_id.as_str()) {
        return Err(Error::Message("a message from this server itself".into()));
    }
    let from = match headers.get(FROM_HEADER) {
        None => None,
        Some(hex_id) => {
            let bytes = hex::decode(hex_id.as_str())
                .map_err(|e| Error::Message(format!("{FROM_HEADER}: {e}")))?;
            let id = String::from_utf8(bytes)
                .map_err(|e| Error::Message(format!("{FROM_HEADER}: {e}")))?;
            Some(Arc::<str>::from(id))
        }
    };
    let routed = decode_message(message.payload, from, Instant::now())?;
    if config.subjects.subject(&routed.topic) != message.subject.as_str() {
        return Err(Error::Message(format!(
            "subject {} is not the subject of topic {}",
            message.subject, routed.topic
        )));
    }
    Ok(routed)
}

async fn receive_loop(
    mut subscriber: async_nats::Subscriber,
    config: NatsConfig,
    counters: Arc<NatsCounters>,
    publisher: BrokerPublisher,
) {
    use futures_util::StreamExt;
    while let Some(message) = subscriber.next().await {
        let routed = match accept(&config, message) {
            Ok(routed) => routed,
            Err(e) => {
                counters.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "a message from NATS was not routed");
                continue;
            }
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
    tracing::warn!("the NATS subscription ended: messages from other servers no longer arrive");
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
    fn rejects_bad_server_ids() {
        assert!(NatsConfig::new("nats://127.0.0.1:4222", "c", "").is_err());
        assert!(NatsConfig::new("nats://127.0.0.1:4222", "c", "a b").is_err());
        assert!(NatsConfig::new("nats://127.0.0.1:4222", "c.d", "a").is_err());
        assert!(NatsConfig::new("nats://127.0.0.1:4222", "c", "a").is_ok());
    }
}
