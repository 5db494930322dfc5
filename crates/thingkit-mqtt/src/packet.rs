//! The MQTT control packets of MQTT 3.1.1 and 5.0 as plain Rust values.
//!
//! One [`Packet`] type serves both protocol versions: MQTT 5.0 is a superset, and the fields
//! 3.1.1 cannot carry (properties, most reason codes) are empty/default after decoding a 3.1.1
//! stream and must be empty/default to encode one. Strings, topics and payloads are `Bytes`-backed
//! and share memory with the buffer they were decoded from.

use std::fmt;
use std::num::NonZeroU16;

use bytes::Bytes;

use crate::property::PacketProperties;
use crate::reason::ReasonCode;
use crate::topic::{MqttStr, TopicFilter, TopicName};

/// The protocol version of a connection: chosen up front or detected from CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of CONNECT (4 or 5).
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V311 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    /// The version for a protocol level byte, if supported.
    pub fn from_level(level: u8) -> Option<Self> {
        match level {
            4 => Some(ProtocolVersion::V311),
            5 => Some(ProtocolVersion::V5),
            _ => None,
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtocolVersion::V311 => "3.1.1",
            ProtocolVersion::V5 => "5.0",
        })
    }
}

/// Quality of service: 0, 1 or 2 (3 is not representable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum QoS {
    /// QoS 0: at most once.
    #[default]
    AtMostOnce = 0,
    /// QoS 1: at least once.
    AtLeastOnce = 1,
    /// QoS 2: exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a two-bit value, or `None` for 3 [MQTT-3.3.1-4].
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    /// The numeric value (0, 1 or 2).
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// A non-zero packet identifier [MQTT-2.2.1-3].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketId(NonZeroU16);

impl PacketId {
    /// The identifier for `id`, or `None` for 0.
    pub fn new(id: u16) -> Option<Self> {
        NonZeroU16::new(id).map(PacketId)
    }

    /// The numeric value (never 0).
    pub fn get(self) -> u16 {
        self.0.get()
    }
}

impl fmt::Display for PacketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The fifteen control packet types (the upper nibble of the first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the variant names are the packet names of the specification
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    Auth = 15,
}

impl PacketType {
    /// The type for the upper nibble of a fixed header; `None` for the reserved value 0.
    pub fn from_nibble(n: u8) -> Option<Self> {
        use PacketType::*;
        Some(match n {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 => Auth,
            _ => return None,
        })
    }

    /// The upper-case name the specification uses (`"PUBLISH"`, `"CONNACK"`, ...).
    pub fn name(self) -> &'static str {
        use PacketType::*;
        match self {
            Connect => "CONNECT",
            ConnAck => "CONNACK",
            Publish => "PUBLISH",
            PubAck => "PUBACK",
            PubRec => "PUBREC",
            PubRel => "PUBREL",
            PubComp => "PUBCOMP",
            Subscribe => "SUBSCRIBE",
            SubAck => "SUBACK",
            Unsubscribe => "UNSUBSCRIBE",
            UnsubAck => "UNSUBACK",
            PingReq => "PINGREQ",
            PingResp => "PINGRESP",
            Disconnect => "DISCONNECT",
            Auth => "AUTH",
        }
    }

    /// The type whose [`name`](Self::name) is `name` (upper case).
    pub fn from_name(name: &str) -> Option<Self> {
        (1..=15)
            .filter_map(Self::from_nibble)
            .find(|t| t.name() == name)
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An MQTT control packet.
///
/// With the `serde` feature it (de)serializes internally tagged by the packet's upper-case name:
/// `{"type": "PUBLISH", "topic": "a/b", "qos": 1, "packet_id": 7, "payload_hex": "6869"}` (see
/// the crate documentation for the whole shape).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "type", rename_all = "UPPERCASE"))]
#[allow(missing_docs)] // each variant is documented by its payload type
pub enum Packet {
    Connect(Connect),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PubResponse),
    PubRec(PubResponse),
    PubRel(PubResponse),
    PubComp(PubResponse),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    /// MQTT 5.0 only.
    Auth(Auth),
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }
}

/// CONNECT: the first packet a client sends (MQTT 5.0 §3.1, 3.1.1 §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Connect {
    /// Protocol level 4 (3.1.1) or 5 (5.0).
    pub protocol: ProtocolVersion,
    /// Clean Start (5.0) / Clean Session (3.1.1).
    #[cfg_attr(
        feature = "serde",
        serde(default = "crate::serde::default_clean_start")
    )]
    pub clean_start: bool,
    /// Keep alive in seconds (0 disables).
    #[cfg_attr(feature = "serde", serde(default = "crate::serde::default_keep_alive"))]
    pub keep_alive: u16,
    /// CONNECT properties (5.0).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "PacketProperties::is_empty")
    )]
    pub properties: PacketProperties,
    /// Client identifier (may be empty).
    #[cfg_attr(feature = "serde", serde(default))]
    pub client_id: MqttStr,
    /// The will message, if the will flag is set (boxed: rare, and it keeps [`Packet`] small).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub will: Option<Box<Will>>,
    /// User name, if the user name flag is set.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub username: Option<MqttStr>,
    /// Password (binary data), if the password flag is set. In 3.1.1 a password requires a user
    /// name [MQTT-3.1.2-22].
    #[cfg_attr(
        feature = "serde",
        serde(
            default,
            rename = "password_hex",
            with = "crate::serde::option_hex_bytes",
            skip_serializing_if = "Option::is_none"
        )
    )]
    pub password: Option<Bytes>,
}

/// The will message of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Will {
    /// Will topic.
    pub topic: TopicName,
    /// Will payload (binary, at most 65,535 bytes).
    #[cfg_attr(
        feature = "serde",
        serde(default, rename = "payload_hex", with = "crate::serde::hex_bytes")
    )]
    pub payload: Bytes,
    /// Will QoS.
    #[cfg_attr(feature = "serde", serde(default))]
    pub qos: QoS,
    /// Will retain.
    #[cfg_attr(feature = "serde", serde(default))]
    pub retain: bool,
    /// Will properties (5.0): payload format, message expiry, content type, response topic,
    /// correlation data, will delay interval, user properties.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "PacketProperties::is_empty")
    )]
    pub properties: PacketProperties,
}

/// CONNACK: the server's answer to CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct ConnAck {
    /// Session Present.
    #[cfg_attr(feature = "serde", serde(default))]
    pub session_present: bool,
    /// Reason code (5.0) or connect return code 0..=5 (3.1.1).
    #[cfg_attr(feature = "serde", serde(default))]
    pub reason_code: ReasonCode,
    /// CONNACK properties (5.0).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "PacketProperties::is_empty")
    )]
    pub properties: PacketProperties,
}

/// PUBLISH: an application message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Publish {
    /// DUP flag: a re-delivery (only with QoS 1 or 2 [MQTT-3.3.1-2]).
    #[cfg_attr(feature = "serde", serde(default))]
    pub dup: bool,
    /// QoS.
    #[cfg_attr(feature = "serde", serde(default))]
    pub qos: QoS,
    /// RETAIN flag.
    #[cfg_attr(feature = "serde", serde(default))]
    pub retain: bool,
    /// The topic. `None` only in MQTT 5.0 when a Topic Alias property stands in for it (see
    /// [`InboundAliases`](crate::InboundAliases)).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub topic: Option<TopicName>,
    /// Packet identifier: present exactly when QoS > 0 [MQTT-2.2.1-2], [MQTT-2.2.1-3].
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub packet_id: Option<PacketId>,
    /// PUBLISH properties (5.0).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "PacketProperties::is_empty")
    )]
    pub properties: PacketProperties,
    /// The application payload (zero-copy slice of the received bytes after decoding).
    #[cfg_attr(
        feature = "serde",
        serde(default, rename = "payload_hex", with = "crate::serde::hex_bytes")
    )]
    pub payload: Bytes,
}

impl Publish {
    /// A QoS 0 message without flags or properties.
    pub fn new(topic: TopicName, payload: impl Into<Bytes>) -> Self {
        Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: Some(topic),
            packet_id: None,
            properties: PacketProperties::new(),
            payload: payload.into(),
        }
    }
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP: the acknowledgements of the QoS 1 and 2 flows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct PubResponse {
    /// The acknowledged packet identifier.
    pub packet_id: PacketId,
    /// Reason code (5.0; always success in 3.1.1).
    #[cfg_attr(feature = "serde", serde(default))]
    pub reason_code: ReasonCode,
    /// Properties (5.0): reason string and user properties.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "PacketProperties::is_empty")
    )]
    pub properties: PacketProperties,
}

impl PubResponse {
    /// A successful acknowledgement of `packet_id`.
    pub fn new(packet_id: PacketId) -> Self {
        PubResponse {
            packet_id,
            reason_code: ReasonCode::SUCCESS,
            properties: PacketProperties::new(),
        }
    }
}

/// What to do with retained messages when a subscription is made (5.0 §3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send them only if the subscription did not exist.
    SendIfNew = 1,
    /// 2: do not send retained messages.
    DoNotSend = 2,
}

/// Subscription options (5.0 §3.8.3.1; in 3.1.1 only the QoS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// No Local (5.0): do not forward messages published by this client. Not allowed on shared
    /// subscriptions [MQTT-3.8.3-4].
    pub no_local: bool,
    /// Retain As Published (5.0).
    pub retain_as_published: bool,
    /// Retain Handling (5.0).
    pub retain_handling: RetainHandling,
}

/// One topic filter of a SUBSCRIBE with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The filter.
    pub filter: TopicFilter,
    /// Its options.
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Subscribe {
    /// Packet identifier.
    pub packet_id: PacketId,
    /// Properties (5.0): at most one subscription identifier, user properties.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "PacketProperties::is_empty")
    )]
    pub properties: PacketProperties,
    /// At least one subscription [MQTT-3.8.3-2].
    pub subscriptions: Vec<Subscription>,
}

/// SUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct SubAck {
    /// Packet identifier.
    pub packet_id: PacketId,
    /// Properties (5.0).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "PacketProperties::is_empty")
    )]
    pub properties: PacketProperties,
    /// One reason code per subscription (3.1.1: 0, 1, 2 or 0x80).
    #[cfg_attr(feature = "serde", serde(default))]
    pub reason_codes: Vec<ReasonCode>,
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Unsubscribe {
    /// Packet identifier.
    pub packet_id: PacketId,
    /// Properties (5.0): user properties.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "PacketProperties::is_empty")
    )]
    pub properties: PacketProperties,
    /// At least one filter [MQTT-3.10.3-2].
    pub filters: Vec<TopicFilter>,
}

/// UNSUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct UnsubAck {
    /// Packet identifier.
    pub packet_id: PacketId,
    /// Properties (5.0).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "PacketProperties::is_empty")
    )]
    pub properties: PacketProperties,
    /// One reason code per filter (5.0); always empty in 3.1.1.
    #[cfg_attr(feature = "serde", serde(default))]
    pub reason_codes: Vec<ReasonCode>,
}

/// DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct Disconnect {
    /// Reason code (5.0; 3.1.1 has none and decodes as normal disconnection).
    pub reason_code: ReasonCode,
    /// Properties (5.0).
    #[cfg_attr(
        feature = "serde",
        serde(skip_serializing_if = "PacketProperties::is_empty")
    )]
    pub properties: PacketProperties,
}

/// AUTH (5.0 only): extended authentication exchange.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct Auth {
    /// Reason code: success, continue authentication or re-authenticate.
    pub reason_code: ReasonCode,
    /// Properties: authentication method and data, reason string, user properties.
    #[cfg_attr(
        feature = "serde",
        serde(skip_serializing_if = "PacketProperties::is_empty")
    )]
    pub properties: PacketProperties,
}
