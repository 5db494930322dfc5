//! Reason codes (MQTT 5.0 §2.4) and the 3.1.1 CONNACK return codes and SUBACK results.

use std::fmt;

use crate::packet::{PacketType, ProtocolVersion};

/// A one-byte reason code. Which values a packet may carry depends on the packet type and the
/// protocol version; [`ReasonCode::allowed_in`] answers that and both decoder and encoder enforce it.
///
/// With the `serde` feature it is the number (`135`, not `"0x87"`), as on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(transparent)
)]
pub struct ReasonCode(pub u8);

#[allow(missing_docs)] // the names are the specification's (MQTT 5.0 §2.4, Table 2-6)
impl ReasonCode {
    pub const SUCCESS: Self = Self(0x00);
    pub const NORMAL_DISCONNECTION: Self = Self(0x00);
    pub const GRANTED_QOS_0: Self = Self(0x00);
    pub const GRANTED_QOS_1: Self = Self(0x01);
    pub const GRANTED_QOS_2: Self = Self(0x02);
    pub const DISCONNECT_WITH_WILL_MESSAGE: Self = Self(0x04);
    pub const NO_MATCHING_SUBSCRIBERS: Self = Self(0x10);
    pub const NO_SUBSCRIPTION_EXISTED: Self = Self(0x11);
    pub const CONTINUE_AUTHENTICATION: Self = Self(0x18);
    pub const RE_AUTHENTICATE: Self = Self(0x19);
    pub const UNSPECIFIED_ERROR: Self = Self(0x80);
    pub const MALFORMED_PACKET: Self = Self(0x81);
    pub const PROTOCOL_ERROR: Self = Self(0x82);
    pub const IMPLEMENTATION_SPECIFIC_ERROR: Self = Self(0x83);
    pub const UNSUPPORTED_PROTOCOL_VERSION: Self = Self(0x84);
    pub const CLIENT_IDENTIFIER_NOT_VALID: Self = Self(0x85);
    pub const BAD_USER_NAME_OR_PASSWORD: Self = Self(0x86);
    pub const NOT_AUTHORIZED: Self = Self(0x87);
    pub const SERVER_UNAVAILABLE: Self = Self(0x88);
    pub const SERVER_BUSY: Self = Self(0x89);
    pub const BANNED: Self = Self(0x8A);
    pub const SERVER_SHUTTING_DOWN: Self = Self(0x8B);
    pub const BAD_AUTHENTICATION_METHOD: Self = Self(0x8C);
    pub const KEEP_ALIVE_TIMEOUT: Self = Self(0x8D);
    pub const SESSION_TAKEN_OVER: Self = Self(0x8E);
    pub const TOPIC_FILTER_INVALID: Self = Self(0x8F);
    pub const TOPIC_NAME_INVALID: Self = Self(0x90);
    pub const PACKET_IDENTIFIER_IN_USE: Self = Self(0x91);
    pub const PACKET_IDENTIFIER_NOT_FOUND: Self = Self(0x92);
    pub const RECEIVE_MAXIMUM_EXCEEDED: Self = Self(0x93);
    pub const TOPIC_ALIAS_INVALID: Self = Self(0x94);
    pub const PACKET_TOO_LARGE: Self = Self(0x95);
    pub const MESSAGE_RATE_TOO_HIGH: Self = Self(0x96);
    pub const QUOTA_EXCEEDED: Self = Self(0x97);
    pub const ADMINISTRATIVE_ACTION: Self = Self(0x98);
    pub const PAYLOAD_FORMAT_INVALID: Self = Self(0x99);
    pub const RETAIN_NOT_SUPPORTED: Self = Self(0x9A);
    pub const QOS_NOT_SUPPORTED: Self = Self(0x9B);
    pub const USE_ANOTHER_SERVER: Self = Self(0x9C);
    pub const SERVER_MOVED: Self = Self(0x9D);
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: Self = Self(0x9E);
    pub const CONNECTION_RATE_EXCEEDED: Self = Self(0x9F);
    pub const MAXIMUM_CONNECT_TIME: Self = Self(0xA0);
    pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: Self = Self(0xA1);
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: Self = Self(0xA2);
}

const CONNACK_V5: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
const PUBACK_V5: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_V5: &[u8] = &[0x00, 0x92];
const SUBACK_V5: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
const UNSUBACK_V5: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
const DISCONNECT_V5: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH_V5: &[u8] = &[0x00, 0x18, 0x19];
const CONNACK_V311: &[u8] = &[0, 1, 2, 3, 4, 5];
const SUBACK_V311: &[u8] = &[0x00, 0x01, 0x02, 0x80];

impl ReasonCode {
    /// Whether this code may appear in a packet of type `packet` under `version`
    /// (MQTT 5.0 §2.4 Table 2-6; 3.1.1 §3.2.2.3 and §3.9.3). Packets without reason codes
    /// only allow success.
    pub fn allowed_in(self, packet: PacketType, version: ProtocolVersion) -> bool {
        use PacketType::*;
        let table: &[u8] = match (version, packet) {
            (ProtocolVersion::V5, ConnAck) => CONNACK_V5,
            (ProtocolVersion::V5, PubAck | PubRec) => PUBACK_V5,
            (ProtocolVersion::V5, PubRel | PubComp) => PUBREL_V5,
            (ProtocolVersion::V5, SubAck) => SUBACK_V5,
            (ProtocolVersion::V5, UnsubAck) => UNSUBACK_V5,
            (ProtocolVersion::V5, Disconnect) => DISCONNECT_V5,
            (ProtocolVersion::V5, Auth) => AUTH_V5,
            (ProtocolVersion::V311, ConnAck) => CONNACK_V311,
            (ProtocolVersion::V311, SubAck) => SUBACK_V311,
            _ => &[0x00],
        };
        table.contains(&self.0)
    }

    /// Whether the code reports success (below 0x80).
    pub fn is_success(self) -> bool {
        self.0 < 0x80
    }

    /// The specification's name of this code in the context of `packet` (MQTT 5.0).
    pub fn name(self, packet: PacketType) -> &'static str {
        match (self.0, packet) {
            (0x00, PacketType::Disconnect) => "Normal disconnection",
            (0x00, PacketType::SubAck) => "Granted QoS 0",
            (0x00, _) => "Success",
            (0x01, _) => "Granted QoS 1",
            (0x02, _) => "Granted QoS 2",
            (0x04, _) => "Disconnect with Will Message",
            (0x10, _) => "No matching subscribers",
            (0x11, _) => "No subscription existed",
            (0x18, _) => "Continue authentication",
            (0x19, _) => "Re-authenticate",
            (0x80, _) => "Unspecified error",
            (0x81, _) => "Malformed Packet",
            (0x82, _) => "Protocol Error",
            (0x83, _) => "Implementation specific error",
            (0x84, _) => "Unsupported Protocol Version",
            (0x85, _) => "Client Identifier not valid",
            (0x86, _) => "Bad User Name or Password",
            (0x87, _) => "Not authorized",
            (0x88, _) => "Server unavailable",
            (0x89, _) => "Server busy",
            (0x8A, _) => "Banned",
            (0x8B, _) => "Server shutting down",
            (0x8C, _) => "Bad authentication method",
            (0x8D, _) => "Keep Alive timeout",
            (0x8E, _) => "Session taken over",
            (0x8F, _) => "Topic Filter invalid",
            (0x90, _) => "Topic Name invalid",
            (0x91, _) => "Packet Identifier in use",
            (0x92, _) => "Packet Identifier not found",
            (0x93, _) => "Receive Maximum exceeded",
            (0x94, _) => "Topic Alias invalid",
            (0x95, _) => "Packet too large",
            (0x96, _) => "Message rate too high",
            (0x97, _) => "Quota exceeded",
            (0x98, _) => "Administrative action",
            (0x99, _) => "Payload format invalid",
            (0x9A, _) => "Retain not supported",
            (0x9B, _) => "QoS not supported",
            (0x9C, _) => "Use another server",
            (0x9D, _) => "Server moved",
            (0x9E, _) => "Shared Subscriptions not supported",
            (0x9F, _) => "Connection rate exceeded",
            (0xA0, _) => "Maximum connect time",
            (0xA1, _) => "Subscription Identifiers not supported",
            (0xA2, _) => "Wildcard Subscriptions not supported",
            _ => "unknown",
        }
    }
}

impl fmt::Debug for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReasonCode(0x{:02X})", self.0)
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02X}", self.0)
    }
}
