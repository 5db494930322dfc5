//! One client connection's MQTT state after CONNECT, sans IO: the codec, topic aliases, the
//! QoS 1 in-flight window, keep-alive as a deadline, authorization of every request, the will
//! and the close.

use std::collections::{HashMap, VecDeque};
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use thingkit_mqtt::{
    ConnAck, Connect, Decoder, DecoderConfig, Disconnect, Encoder, InboundAliases, MqttStr,
    OutboundAliases, Packet, PacketId, PacketProperties, Properties, ProtocolVersion, PubResponse,
    Publish, QoS, ReasonCode, RetainHandling, SubAck, TopicFilter, UnsubAck,
};

use crate::message::{Delivery, GrantedSubscription, Message, min_qos};
use crate::router::SessionExpiry;

/// What a client asks to do, for an [`Authorizer`] to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action<'a> {
    /// PUBLISH to `topic` (AWS IoT: `iot:Publish`, and `iot:RetainPublish` when `retain`).
    Publish {
        /// The topic name.
        topic: &'a str,
        /// The RETAIN flag.
        retain: bool,
    },
    /// SUBSCRIBE to `filter` (AWS IoT: `iot:Subscribe`).
    Subscribe {
        /// The topic filter as sent (a shared subscription keeps its `$share/{group}/` prefix).
        filter: &'a str,
    },
    /// Receive a message published to `topic` (AWS IoT: `iot:Receive`), decided for every
    /// delivery.
    Receive {
        /// The topic name.
        topic: &'a str,
    },
}

/// Decides a connection's requests: the driver implements it for whatever authorizes a
/// client (the server: AWS IoT policies compiled for the device's certificate and thing).
/// Decisions depend on the action, the connection's identity and (for date conditions) the
/// time of the request, which is why it takes `&mut self`: the server's authorizer updates
/// its context's current time before each decision. An error in deciding must deny (fail
/// closed).
pub trait Authorizer: Send {
    /// `Ok(())` allows `action`; `Err(why)` denies it, with a reason for logs and MQTT 5
    /// reason strings.
    fn authorize(&mut self, action: Action<'_>) -> Result<(), String>;
}

/// Allows everything: for tests and brokers without authorization.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&mut self, _action: Action<'_>) -> Result<(), String> {
        Ok(())
    }
}

/// What the broker grants every connection: the packet size it accepts, its topic alias and
/// receive windows, the in-flight window toward clients and the longest keep-alive.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// The largest packet accepted from a client, announced as Maximum Packet Size (MQTT 5)
    /// (default 256 KiB). A larger one closes the connection with 0x95 Packet too large.
    pub max_packet_size: u32,
    /// Topic Alias Maximum announced to MQTT 5 clients (default 32).
    pub topic_alias_maximum: u16,
    /// Receive Maximum announced to MQTT 5 clients (default 256).
    pub receive_maximum: u16,
    /// QoS 1 deliveries in flight to one client, and the cap on the Receive Maximum a client
    /// announces (default 64).
    pub max_inflight: u16,
    /// Deliveries waiting for room in the in-flight window (default 10,000); more are dropped
    /// and counted in [`SessionCounters::dropped`], unless the driver stops handing them over
    /// while [`Session::has_room`] is false (the tokio broker does).
    pub max_pending: usize,
    /// The longest keep-alive a client may ask for (default 1,200 s, AWS IoT's maximum);
    /// longer ones are answered with Server Keep Alive (MQTT 5) and enforced at this value.
    pub max_keep_alive: u16,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_packet_size: 256 * 1024,
            topic_alias_maximum: 32,
            receive_maximum: 256,
            max_inflight: 64,
            max_pending: 10_000,
            max_keep_alive: 1200,
        }
    }
}

impl SessionConfig {
    /// Sets [`SessionConfig::max_packet_size`].
    pub fn with_max_packet_size(mut self, value: u32) -> Self {
        self.max_packet_size = value;
        self
    }
    /// Sets [`SessionConfig::topic_alias_maximum`].
    pub fn with_topic_alias_maximum(mut self, value: u16) -> Self {
        self.topic_alias_maximum = value;
        self
    }
    /// Sets [`SessionConfig::receive_maximum`].
    pub fn with_receive_maximum(mut self, value: u16) -> Self {
        self.receive_maximum = value;
        self
    }
    /// Sets [`SessionConfig::max_inflight`].
    pub fn with_max_inflight(mut self, value: u16) -> Self {
        self.max_inflight = value;
        self
    }
    /// Sets [`SessionConfig::max_pending`].
    pub fn with_max_pending(mut self, value: usize) -> Self {
        self.max_pending = value;
        self
    }
    /// Sets [`SessionConfig::max_keep_alive`].
    pub fn with_max_keep_alive(mut self, value: u16) -> Self {
        self.max_keep_alive = value;
        self
    }

    /// A decoder for what clients send before CONNECT (either protocol version), with
    /// [`SessionConfig::max_packet_size`].
    pub fn connect_decoder(&self) -> Decoder {
        Decoder::detect()
            .with_config(DecoderConfig::default().with_max_packet_size(self.max_packet_size))
    }
}

/// Why a connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client sent DISCONNECT; `will` says whether it asked for its will to be published
    /// (MQTT 5 0x04 Disconnect with Will Message).
    ClientDisconnect {
        /// Whether the will is published anyway.
        will: bool,
    },
    /// The broker ends it with this reason code (sent in a DISCONNECT to MQTT 5 clients):
    /// a protocol error, a keep-alive timeout, a takeover, a revocation, shutdown.
    Server(ReasonCode),
    /// The network connection closed or failed.
    Lost(String),
}

impl CloseReason {
    /// Whether the will is published for this end: on every end except a DISCONNECT without
    /// 0x04 [MQTT-3.1.2-8, MQTT-3.14.4-3].
    pub fn publishes_will(&self) -> bool {
        !matches!(self, CloseReason::ClientDisconnect { will: false })
    }
}

/// An inbound PUBLISH the session authorized, for the driver to meter, serve or route and
/// then answer with [`Session::acknowledge`] (a QoS 1 PUBLISH has a `packet_id`).
#[derive(Debug)]
#[non_exhaustive]
pub struct InboundPublish {
    /// The message, received at the `now` of the call that decoded it (topic alias resolved,
    /// Topic Alias and Subscription Identifier properties removed).
    pub message: Message,
    /// The packet ID to acknowledge (QoS 1).
    pub packet_id: Option<PacketId>,
}

/// One topic filter of a SUBSCRIBE, authorized or not.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FilterRequest {
    /// The filter.
    pub filter: TopicFilter,
    /// What to store in the router, or the reason code of the refusal.
    pub granted: Result<GrantedSubscription, ReasonCode>,
    /// MQTT 5 Retain Handling.
    pub retain_handling: RetainHandling,
}

impl FilterRequest {
    /// Whether the retained messages matching the filter are sent, given whether the
    /// subscription existed before (Retain Handling 0, 1, 2; MQTT 5.0 §3.3.1.3).
    pub fn sends_retained(&self, existed: bool) -> bool {
        self.granted.is_ok()
            && match self.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => !existed,
                RetainHandling::DoNotSend => false,
            }
    }

    /// The delivery of a retained `message` on this subscription: RETAIN set, QoS the smaller
    /// of the message's and the granted one, the subscription identifier.
    pub fn retained_delivery(&self, message: Arc<Message>) -> Option<Delivery> {
        let granted = self.granted.as_ref().ok()?;
        Some(Delivery {
            qos: min_qos(granted.qos, message.qos),
            message,
            retain: true,
            subscription_id: granted.id,
        })
    }
}

/// A SUBSCRIBE the session checked filter by filter, for the driver to apply to the router and
/// answer with [`Session::complete_subscribe`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SubscribeRequest {
    /// The packet ID of the SUBACK.
    pub packet_id: PacketId,
    /// The filters in order.
    pub filters: Vec<FilterRequest>,
}

/// An UNSUBSCRIBE, for the driver to apply and answer with [`Session::complete_unsubscribe`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UnsubscribeRequest {
    /// The packet ID of the UNSUBACK.
    pub packet_id: PacketId,
    /// The filters in order.
    pub filters: Vec<TopicFilter>,
}

/// A refused request, for the driver's logs and counters (the session has already answered
/// the client).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Denial {
    /// What was refused: `publish`, `subscribe` or `receive`.
    pub action: &'static str,
    /// The topic or filter.
    pub resource: String,
    /// The authorizer's reason.
    pub reason: String,
}

/// What [`Session::poll`] hands the driver.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// An authorized PUBLISH: meter, serve or route it, then [`Session::acknowledge`].
    Publish(InboundPublish),
    /// A SUBSCRIBE: apply the granted filters, then [`Session::complete_subscribe`].
    Subscribe(SubscribeRequest),
    /// An UNSUBSCRIBE: apply it, then [`Session::complete_unsubscribe`].
    Unsubscribe(UnsubscribeRequest),
    /// A request the authorizer denied (already answered).
    Denied(Denial),
    /// The connection must end; call [`Session::close`] with this reason.
    Close(CloseReason),
}

/// Counters of one session, all monotonic.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionCounters {
    /// PUBLISH packets written to the client.
    pub delivered: u64,
    /// Deliveries dropped: the pending queue was full, the message had expired, it was larger
    /// than the client's Maximum Packet Size, or it could not be encoded.
    pub dropped: u64,
    /// Deliveries `iot:Receive` denied.
    pub receive_denied: u64,
}

/// What a closed session leaves behind.
#[derive(Debug)]
#[non_exhaustive]
pub struct Closed {
    /// The will to publish, and how long to wait first (MQTT 5 Will Delay Interval, at most
    /// the session's expiry; `None` publishes at once).
    pub will: Option<(Arc<Message>, Option<Duration>)>,
    /// QoS 1 deliveries written but not acknowledged, and those waiting for the in-flight
    /// window, oldest first: a persistent session keeps them ([`crate::Router::detach`]).
    pub unacked: Vec<Delivery>,
}

/// One client connection's MQTT state from CONNECT to close, sans IO (as quinn-proto's
/// `Connection`): bytes and deliveries go in with the current time, bytes to send
/// ([`Session::transmit`]), events ([`Session::poll`]) and a deadline
/// ([`Session::poll_timeout`]) come out. It holds the codec, both topic alias maps, the QoS 1
/// in-flight window and its overflow queue, the keep-alive deadline, the will, and the
/// connection's [`Authorizer`]; it holds no socket, reads no clock and shares nothing, so a
/// driver runs one per connection task and a test drives it with injected time.
///
/// The broker supports QoS 0 and 1 (it announces Maximum QoS 1 and refuses QoS 2).
pub struct Session {
    version: ProtocolVersion,
    client_id: Arc<str>,
    decoder: Decoder,
    encoder: Encoder,
    authorizer: Box<dyn Authorizer>,
    inbound_aliases: InboundAliases,
    outbound_aliases: OutboundAliases,
    client_max_packet: u32,
    inflight: HashMap<u16, Delivery>,
    inflight_max: usize,
    pending: VecDeque<Delivery>,
    max_pending: usize,
    next_id: u16,
    will: Option<Box<thingkit_mqtt::Will>>,
    expiry: SessionExpiry,
    keep_alive: Option<Duration>,
    requested_keep_alive: u16,
    granted_keep_alive: u16,
    last_inbound: Instant,
    out: BytesMut,
    events: VecDeque<Event>,
    delivered_bytes: Vec<u64>,
    counters: SessionCounters,
    closing: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("client_id", &self.client_id)
            .field("version", &self.version)
            .field("inflight", &self.inflight.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// How long a session outlives its connection, from CONNECT: MQTT 3.1.1 Clean Session, MQTT 5
/// Session Expiry Interval (0xFFFFFFFF never expires, §3.1.2.11.2).
pub fn session_expiry(connect: &Connect) -> SessionExpiry {
    match connect.protocol {
        ProtocolVersion::V311 if connect.clean_start => SessionExpiry::OnDisconnect,
        ProtocolVersion::V311 => SessionExpiry::Never,
        ProtocolVersion::V5 => match connect.properties.session_expiry_interval.unwrap_or(0) {
            0 => SessionExpiry::OnDisconnect,
            u32::MAX => SessionExpiry::Never,
            secs => SessionExpiry::After(Duration::from_secs(u64::from(secs))),
        },
    }
}

/// The CONNACK refusing a CONNECT of `version` with `code` (MQTT 5 reason code; MQTT 3.1.1
/// gets the nearest return code) and, for MQTT 5, `reason` as its reason string.
pub fn encode_refusal(
    version: ProtocolVersion,
    code: ReasonCode,
    reason: &str,
) -> Result<BytesMut, thingkit_mqtt::Error> {
    let code = match version {
        ProtocolVersion::V5 => code,
        // MQTT 3.1.1 §3.2.2.3: 2 identifier rejected, 3 server unavailable, 4 bad user name or
        // password, 5 not authorized.
        ProtocolVersion::V311 => ReasonCode(match code {
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID => 2,
            ReasonCode::SERVER_BUSY
            | ReasonCode::SERVER_UNAVAILABLE
            | ReasonCode::CONNECTION_RATE_EXCEEDED
            | ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR => 3,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD => 4,
            _ => 5,
        }),
    };
    let mut properties = PacketProperties::default();
    if version == ProtocolVersion::V5 {
        properties = Properties {
            reason_string: MqttStr::new(reason).ok(),
            ..Properties::default()
        }
        .into();
    }
    let mut out = BytesMut::new();
    Encoder::new(version).encode(
        &Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: code,
            properties,
        }),
        &mut out,
    )?;
    Ok(out)
}

impl Session {
    /// The session of an accepted CONNECT (authenticated and authorized by the driver), for the
    /// client ID `client_id` (the CONNECT's, or one the broker assigned), at `now`. Nothing is
    /// written yet: attach the session to the router, then call [`Session::connack`].
    pub fn new(
        connect: Connect,
        client_id: Arc<str>,
        config: &SessionConfig,
        authorizer: Box<dyn Authorizer>,
        now: Instant,
    ) -> Session {
        let version = connect.protocol;
        let granted_keep_alive = connect.keep_alive.min(config.max_keep_alive);
        Session {
            version,
            client_id,
            decoder: Decoder::new(version)
                .with_config(DecoderConfig::default().with_max_packet_size(config.max_packet_size)),
            encoder: Encoder::new(version),
            authorizer,
            inbound_aliases: InboundAliases::new(match version {
                ProtocolVersion::V5 => config.topic_alias_maximum,
                ProtocolVersion::V311 => 0,
            }),
            outbound_aliases: OutboundAliases::new(
                connect.properties.topic_alias_maximum.unwrap_or(0),
            ),
            client_max_packet: connect
                .properties
                .maximum_packet_size
                .map_or(u32::MAX, NonZeroU32::get),
            inflight: HashMap::new(),
            inflight_max: usize::from(
                connect
                    .properties
                    .receive_maximum
                    .map_or(config.max_inflight, NonZeroU16::get)
                    .min(config.max_inflight.max(1)),
            ),
            pending: VecDeque::new(),
            max_pending: config.max_pending,
            next_id: 0,
            expiry: session_expiry(&connect),
            will: connect.will,
            // Keep-alive counts what the client sends, with half again as grace
            // [MQTT-3.1.2-24]; 0 turns it off.
            keep_alive: (granted_keep_alive > 0)
                .then(|| Duration::from_millis(u64::from(granted_keep_alive) * 1500)),
            requested_keep_alive: connect.keep_alive,
            granted_keep_alive,
            last_inbound: now,
            // Allocated when there is something to send (idle connections keep none).
            out: BytesMut::new(),
            events: VecDeque::new(),
            delivered_bytes: Vec::new(),
            counters: SessionCounters::default(),
            closing: false,
        }
    }

    /// The client ID.
    pub fn client_id(&self) -> &Arc<str> {
        &self.client_id
    }

    /// The protocol version.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// How long the session outlives its connection.
    pub fn expiry(&self) -> SessionExpiry {
        self.expiry
    }

    /// The keep-alive in force, in seconds (the client's, capped by
    /// [`SessionConfig::max_keep_alive`]).
    pub fn keep_alive(&self) -> u16 {
        self.granted_keep_alive
    }

    /// The counters so far.
    pub fn counters(&self) -> SessionCounters {
        self.counters
    }

    /// Writes the CONNACK accepting the connection: Session Present, and for MQTT 5 the limits
    /// of `config` (as given to [`Session::new`]), the assigned client identifier and a Server
    /// Keep Alive when the client's was capped.
    ///
    /// # Errors
    ///
    /// When the CONNACK cannot be encoded (an assigned client ID over 65,535 bytes).
    pub fn connack(
        &mut self,
        session_present: bool,
        assigned_client_id: Option<&str>,
        config: &SessionConfig,
    ) -> Result<(), thingkit_mqtt::Error> {
        let mut ack = ConnAck {
            session_present,
            reason_code: ReasonCode::SUCCESS,
            properties: PacketProperties::default(),
        };
        if self.version == ProtocolVersion::V5 {
            ack.properties = Properties {
                maximum_packet_size: NonZeroU32::new(config.max_packet_size),
                topic_alias_maximum: Some(config.topic_alias_maximum),
                receive_maximum: NonZeroU16::new(config.receive_maximum),
                maximum_qos: Some(QoS::AtLeastOnce),
                retain_available: Some(true),
                wildcard_subscription_available: Some(true),
                shared_subscription_available: Some(true),
                subscription_identifiers_available: Some(true),
                assigned_client_identifier: assigned_client_id.and_then(|a| MqttStr::new(a).ok()),
                server_keep_alive: (self.granted_keep_alive != self.requested_keep_alive)
                    .then_some(self.granted_keep_alive),
                ..Properties::default()
            }
            .into();
        }
        self.encoder.encode(&Packet::ConnAck(ack), &mut self.out)?;
        Ok(())
    }

    /// The bytes to send: write them to the connection and clear the buffer (or
    /// `split()` it).
    pub fn transmit(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    /// The sizes (topic + payload bytes) of the messages written since the last call, for
    /// metering outbound messages.
    pub fn drain_delivered(&mut self) -> std::vec::Drain<'_, u64> {
        self.delivered_bytes.drain(..)
    }

    /// When [`Session::handle_timeout`] must be called: the keep-alive deadline (one and a half
    /// keep-alive periods after the last bytes from the client), `None` without keep-alive.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.keep_alive.map(|k| self.last_inbound + k)
    }

    /// Checks the deadline at `now`: past it, the session asks to close with 0x8D Keep alive
    /// timeout ([`Event::Close`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.closing && self.poll_timeout().is_some_and(|deadline| now >= deadline) {
            self.end(CloseReason::Server(ReasonCode::KEEP_ALIVE_TIMEOUT));
        }
    }

    /// Records that bytes arrived from the client at `now` (keep-alive counts what the client
    /// sends, not what it is sent).
    pub fn note_input(&mut self, now: Instant) {
        self.last_inbound = now;
    }

    /// The next thing for the driver: an event queued earlier, else the next packet decoded
    /// from `input` (consumed from it) and handled at `now`. `None` when `input` holds no whole
    /// packet. Complete a [`Event::Publish`], [`Event::Subscribe`] or [`Event::Unsubscribe`]
    /// before polling again, so requests take effect in the order the client sent them.
    pub fn poll(&mut self, input: &mut BytesMut, now: Instant) -> Option<Event> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Some(event);
            }
            if self.closing {
                return None;
            }
            match self.decoder.decode(input) {
                Ok(Some(packet)) => self.handle(packet, now),
                Ok(None) => return None,
                Err(e) => {
                    let code = if matches!(e, thingkit_mqtt::Error::PacketTooLarge { .. }) {
                        ReasonCode::PACKET_TOO_LARGE
                    } else {
                        ReasonCode::MALFORMED_PACKET
                    };
                    self.end(CloseReason::Server(code));
                }
            }
        }
    }

    fn end(&mut self, reason: CloseReason) {
        if !self.closing {
            self.closing = true;
            self.events.push_back(Event::Close(reason));
        }
    }

    fn is_v5(&self) -> bool {
        self.version == ProtocolVersion::V5
    }

    fn send(&mut self, packet: &Packet) {
        if self.encoder.encode(packet, &mut self.out).is_err() {
            // Only a reason string or an over-long property can fail to encode; what the
            // broker itself writes never does, so this is a broken invariant, not input.
            self.end(CloseReason::Server(
                ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR,
            ));
        }
    }

    fn handle(&mut self, packet: Packet, now: Instant) {
        match packet {
            Packet::Publish(p) => self.on_publish(p, now),
            Packet::PubAck(r) => {
                self.inflight.remove(&r.packet_id.get());
                while self.inflight.len() < self.inflight_max {
                    let Some(d) = self.pending.pop_front() else {
                        break;
                    };
                    self.write_delivery(d, now);
                }
            }
            Packet::Subscribe(s) => {
                let sub_id = s.properties.subscription_identifiers.first().copied();
                let mut filters = Vec::with_capacity(s.subscriptions.len());
                for sub in s.subscriptions {
                    let granted = match self.authorizer.authorize(Action::Subscribe {
                        filter: sub.filter.as_str(),
                    }) {
                        Ok(()) => Ok(GrantedSubscription {
                            qos: min_qos(sub.options.qos, QoS::AtLeastOnce),
                            no_local: sub.options.no_local,
                            retain_as_published: sub.options.retain_as_published,
                            id: sub_id,
                        }),
                        Err(reason) => {
                            self.events.push_back(Event::Denied(Denial {
                                action: "subscribe",
                                resource: sub.filter.as_str().to_string(),
                                reason,
                            }));
                            Err(match self.version {
                                ProtocolVersion::V5 => ReasonCode::NOT_AUTHORIZED,
                                ProtocolVersion::V311 => ReasonCode(0x80),
                            })
                        }
                    };
                    filters.push(FilterRequest {
                        filter: sub.filter,
                        granted,
                        retain_handling: sub.options.retain_handling,
                    });
                }
                self.events.push_back(Event::Subscribe(SubscribeRequest {
                    packet_id: s.packet_id,
                    filters,
                }));
            }
            Packet::Unsubscribe(u) => {
                self.events
                    .push_back(Event::Unsubscribe(UnsubscribeRequest {
                        packet_id: u.packet_id,
                        filters: u.filters,
                    }))
            }
            Packet::PingReq => self.send(&Packet::PingResp),
            Packet::Disconnect(d) => self.end(CloseReason::ClientDisconnect {
                will: d.reason_code == ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
            }),
            // A second CONNECT is a protocol error [MQTT-3.1.0-2]; QoS 2 is never granted, so
            // its flow packets are errors too.
            Packet::Auth(_) => self.end(CloseReason::Server(ReasonCode::BAD_AUTHENTICATION_METHOD)),
            _ => self.end(CloseReason::Server(ReasonCode::PROTOCOL_ERROR)),
        }
    }

    fn on_publish(&mut self, mut p: Publish, now: Instant) {
        if p.qos == QoS::ExactlyOnce {
            // Announced Maximum QoS 1 [MQTT-3.2.2-11]; 3.1.1 has no way to refuse but closing.
            return self.end(CloseReason::Server(ReasonCode::QOS_NOT_SUPPORTED));
        }
        if self.inbound_aliases.resolve(&mut p).is_err() {
            return self.end(CloseReason::Server(ReasonCode::TOPIC_ALIAS_INVALID));
        }
        let Some(topic) = p.topic.take() else {
            return self.end(CloseReason::Server(ReasonCode::PROTOCOL_ERROR));
        };
        if let Err(reason) = self.authorizer.authorize(Action::Publish {
            topic: topic.as_str(),
            retain: p.retain,
        }) {
            // AWS IoT: MQTT 5 answers PUBACK 0x87 (QoS 1) or drops (QoS 0); MQTT 3.1.1
            // disconnects.
            if self.is_v5() {
                self.acknowledge(p.packet_id, ReasonCode::NOT_AUTHORIZED, Some(&reason));
            } else {
                self.end(CloseReason::Server(ReasonCode::NOT_AUTHORIZED));
            }
            self.events.push_front(Event::Denied(Denial {
                action: "publish",
                resource: topic.as_str().to_string(),
                reason,
            }));
            return;
        }
        let mut properties = std::mem::take(&mut p.properties);
        if !properties.is_empty() {
            properties.topic_alias = None;
            properties.subscription_identifiers.clear();
        }
        self.events.push_back(Event::Publish(InboundPublish {
            message: Message {
                topic,
                payload: p.payload,
                qos: p.qos,
                retain: p.retain,
                properties,
                from: Some(self.client_id.clone()),
                received: now,
            },
            packet_id: p.packet_id,
        }));
    }

    /// Answers a QoS 1 PUBLISH (nothing for QoS 0, `packet_id` `None`): PUBACK with `code` and
    /// `reason` as its reason string for MQTT 5; a plain PUBACK for MQTT 3.1.1, which has no
    /// reason codes (a driver that refuses a 3.1.1 message without acknowledging it simply
    /// does not call this).
    pub fn acknowledge(
        &mut self,
        packet_id: Option<PacketId>,
        code: ReasonCode,
        reason: Option<&str>,
    ) {
        let Some(id) = packet_id else { return };
        let mut r = PubResponse::new(id);
        if self.is_v5() {
            r.reason_code = code;
            if let Some(reason) = reason {
                r.properties.reason_string = MqttStr::new(reason).ok();
            }
        }
        self.send(&Packet::PubAck(r));
    }

    /// Answers a SUBSCRIBE after the driver applied its granted filters: SUBACK with a code per
    /// filter (the granted QoS or the refusal), then the `retained` deliveries.
    pub fn complete_subscribe(
        &mut self,
        request: &SubscribeRequest,
        retained: Vec<Delivery>,
        now: Instant,
    ) {
        let codes = request
            .filters
            .iter()
            .map(|f| match &f.granted {
                Ok(g) => ReasonCode(g.qos.as_u8()),
                Err(code) => *code,
            })
            .collect();
        self.send(&Packet::SubAck(SubAck {
            packet_id: request.packet_id,
            properties: PacketProperties::default(),
            reason_codes: codes,
        }));
        for d in retained {
            self.deliver(d, now);
        }
    }

    /// Answers an UNSUBSCRIBE: `existed[i]` says whether the i-th filter was subscribed
    /// (MQTT 5: 0x00, or 0x11 No subscription existed), or the code of its failure (MQTT 5: for
    /// example 0x80 when the broker could not store it); MQTT 3.1.1 UNSUBACK has no codes.
    pub fn complete_unsubscribe(
        &mut self,
        packet_id: PacketId,
        existed: &[Result<bool, ReasonCode>],
    ) {
        let reason_codes = if self.is_v5() {
            existed
                .iter()
                .map(|e| match e {
                    Ok(true) => ReasonCode::SUCCESS,
                    Ok(false) => ReasonCode::NO_SUBSCRIPTION_EXISTED,
                    Err(code) => *code,
                })
                .collect()
        } else {
            Vec::new()
        };
        self.send(&Packet::UnsubAck(UnsubAck {
            packet_id,
            properties: PacketProperties::default(),
            reason_codes,
        }));
    }

    /// Writes a delivery for the client at `now`, after `iot:Receive`: within the in-flight
    /// window (or queued for it), unless the message expired (MQTT 5 §3.3.2.3.3; a forwarded one
    /// carries the interval left) or exceeds the client's Maximum Packet Size [MQTT-3.1.2-25],
    /// with the client's topic aliases.
    pub fn deliver(&mut self, d: Delivery, now: Instant) {
        self.deliver_within(d, now, true);
    }

    /// Whether the session takes another QoS 1 delivery without dropping it: its queue for
    /// the in-flight window has room. A driver that reads deliveries from a queue of its own
    /// stops reading while this is false, so that its queue fills up and the publishers
    /// feeding it wait (back-pressure) instead of the session dropping what was acknowledged.
    pub fn has_room(&self) -> bool {
        self.pending.len() < self.max_pending
    }

    /// [`Session::deliver`] that queues a QoS 1 delivery beyond
    /// [`SessionConfig::max_pending`] rather than drop it: for a delivery the driver cannot
    /// wait to place (a message the client published to itself). Check [`Session::has_room`]
    /// afterwards and end a connection that keeps its queue over the limit.
    pub fn deliver_beyond_limit(&mut self, d: Delivery, now: Instant) {
        self.deliver_within(d, now, false);
    }

    fn deliver_within(&mut self, d: Delivery, now: Instant, bounded: bool) {
        if let Err(reason) = self.authorizer.authorize(Action::Receive {
            topic: d.message.topic.as_str(),
        }) {
            self.counters.receive_denied += 1;
            self.events.push_back(Event::Denied(Denial {
                action: "receive",
                resource: d.message.topic.as_str().to_string(),
                reason,
            }));
            return;
        }
        if d.qos == QoS::AtLeastOnce && self.inflight.len() >= self.inflight_max {
            if !bounded || self.pending.len() < self.max_pending {
                self.pending.push_back(d);
            } else {
                self.counters.dropped += 1;
            }
            return;
        }
        self.write_delivery(d, now);
    }

    fn write_delivery(&mut self, d: Delivery, now: Instant) {
        let m = &d.message;
        let expiry_left = match m.properties.message_expiry_interval {
            Some(_) => m.expiry_left(now),
            None => None,
        };
        if expiry_left == Some(0) {
            self.counters.dropped += 1;
            return;
        }
        let packet_id = if d.qos == QoS::AtLeastOnce {
            let mut id = None;
            for _ in 0..=u16::MAX {
                self.next_id = self.next_id.wrapping_add(1);
                if self.next_id != 0 && !self.inflight.contains_key(&self.next_id) {
                    id = PacketId::new(self.next_id);
                    break;
                }
            }
            id
        } else {
            None
        };
        let mut publish = Publish {
            dup: false,
            qos: d.qos,
            retain: d.retain,
            topic: Some(m.topic.clone()),
            packet_id,
            properties: if self.is_v5() {
                m.properties.clone()
            } else {
                PacketProperties::default()
            },
            payload: m.payload.clone(),
        };
        if self.is_v5() {
            if let Some(id) = d.subscription_id {
                publish.properties.subscription_identifiers.push(id);
            }
            if expiry_left.is_some() {
                publish.properties.message_expiry_interval = expiry_left;
            }
        }
        let mut packet = Packet::Publish(publish);
        if self.client_max_packet != u32::MAX {
            match self.encoder.encoded_len(&packet) {
                Ok(len) if len <= self.client_max_packet as usize => {}
                _ => {
                    self.counters.dropped += 1;
                    return;
                }
            }
        }
        if let Packet::Publish(publish) = &mut packet {
            self.outbound_aliases.apply(publish);
        }
        if self.encoder.encode(&packet, &mut self.out).is_err() {
            // One unencodable message must not cost the subscriber its connection.
            self.counters.dropped += 1;
            return;
        }
        self.counters.delivered += 1;
        self.delivered_bytes.push(m.size() as u64);
        if let Some(id) = packet_id {
            self.inflight.insert(id.get(), d);
        }
    }

    /// Ends the session for `reason` at `now`: for a server-side end, a DISCONNECT with its code
    /// to an MQTT 5 client (send [`Session::transmit`] once more); returns the will to publish
    /// (unless the client disconnected normally) and the QoS 1 deliveries not acknowledged.
    pub fn close(&mut self, reason: &CloseReason, now: Instant) -> Closed {
        self.closing = true;
        if let CloseReason::Server(code) = reason
            && self.is_v5()
        {
            let disconnect = Packet::Disconnect(Disconnect {
                reason_code: *code,
                properties: PacketProperties::default(),
            });
            let _ = self.encoder.encode(&disconnect, &mut self.out);
        }
        let will = match self.will.take() {
            Some(will) if reason.publishes_will() => {
                // The Will Delay Interval belongs to the will, not to the PUBLISH.
                let mut properties = will.properties.clone();
                if !properties.is_empty() {
                    properties.will_delay_interval = None;
                }
                let message = Arc::new(Message {
                    topic: will.topic.clone(),
                    payload: will.payload.clone(),
                    qos: min_qos(will.qos, QoS::AtLeastOnce),
                    retain: will.retain,
                    properties,
                    from: Some(self.client_id.clone()),
                    received: now,
                });
                // MQTT 5 Will Delay Interval: only a persistent session's will waits (at most
                // until the session would expire) [MQTT-3.1.3-9].
                let persistent = self.expiry != SessionExpiry::OnDisconnect;
                let delay = will
                    .properties
                    .will_delay_interval
                    .filter(|_| persistent && self.is_v5())
                    .map(|secs| Duration::from_secs(u64::from(secs)))
                    .map(|d| match self.expiry {
                        SessionExpiry::After(e) => d.min(e),
                        _ => d,
                    })
                    .filter(|d| !d.is_zero());
                Some((message, delay))
            }
            _ => None,
        };
        let mut inflight: Vec<(u16, Delivery)> = self.inflight.drain().collect();
        // Oldest first: packet IDs wrap, so order by distance behind the next one.
        let next = self.next_id;
        inflight.sort_by_key(|(id, _)| std::cmp::Reverse(next.wrapping_sub(*id)));
        let mut unacked: Vec<Delivery> = inflight.into_iter().map(|(_, d)| d).collect();
        unacked.extend(self.pending.drain(..));
        for d in &mut unacked {
            d.retain = d.retain && d.message.retain;
        }
        Closed { will, unacked }
    }
}

#[cfg(test)]
mod tests;
