//! A strict, zero-copy, sans-IO codec for MQTT 3.1.1 and MQTT 5.0, with validated topic types, a
//! subscription index and topic-alias helpers. It turns bytes into [`Packet`]s and back, rejecting
//! everything the specifications forbid with an error that names the rule, and never panics,
//! over-allocates or hangs on untrusted input.
//!
//! # Example: decoding from a socket-like buffer
//!
//! Bytes arrive in arbitrary pieces; feed them into a `BytesMut` and call
//! [`Decoder::decode`] until it returns `Ok(None)` ("need more bytes"):
//!
//! ```
//! use bytes::BytesMut;
//! use thingkit_mqtt::{Decoder, Packet, ProtocolVersion};
//!
//! // What a socket might deliver: a QoS 1 PUBLISH split across two reads, then a PINGREQ.
//! let reads: [&[u8]; 3] = [b"\x32\x0f\x00\x07sensors", b"\x00\x01temp", b"\xc0\x00"];
//!
//! let mut decoder = Decoder::new(ProtocolVersion::V311);
//! let mut buf = BytesMut::new();
//! let mut packets = Vec::new();
//! for chunk in reads {
//!     buf.extend_from_slice(chunk); // socket.read_buf(&mut buf) in real code
//!     while let Some(packet) = decoder.decode(&mut buf)? {
//!         packets.push(packet);
//!     }
//! }
//! let Packet::Publish(publish) = &packets[0] else { panic!("expected PUBLISH") };
//! assert_eq!(publish.topic.as_ref().unwrap().as_str(), "sensors");
//! assert_eq!(publish.packet_id.unwrap().get(), 1);
//! assert_eq!(&publish.payload[..], b"temp"); // a zero-copy slice of `buf`'s memory
//! assert_eq!(packets[1], Packet::PingReq);
//!
//! // Malformed input is an error naming the rule, never `Ok(None)`:
//! let mut bad = BytesMut::from(&b"\x36\x00"[..]); // PUBLISH with QoS 3
//! let err = decoder.decode(&mut bad).unwrap_err();
//! assert_eq!(err.rule(), Some("[MQTT-3.3.1-4]"));
//! # Ok::<(), thingkit_mqtt::Error>(())
//! ```
//!
//! # What is in the crate
//!
//! - [`Decoder`] / [`Encoder`]: the codec, with limits in [`DecoderConfig`] (maximum packet size,
//!   default 1 MiB). Payloads, strings and topics longer than 62 bytes of decoded packets are
//!   `Bytes` slices of the input (a shorter topic is copied into its [`TopicName`], which costs
//!   less than a reference count); decoding a PUBLISH allocates nothing. [`Decoder::decode_view`] decodes a PUBLISH as a
//!   [`PublishView`] borrowing from the caller's buffer instead (no reference counting), for hot
//!   routing paths. [`Encoder::encode_publish`] encodes a [`Publish`] without wrapping it in a
//!   [`Packet`], for forwarding.
//! - [`TopicName`], [`TopicFilter`], [`MqttStr`]: validated once, at construction or decoding.
//! - [`Properties`]: every MQTT 5.0 property as a typed field; packets hold them as
//!   [`PacketProperties`], one pointer that allocates only when a property is present. Decoded
//!   [`UserProperties`] are not copied out pair by pair: they stay one piece of the validated
//!   property block (copied into place up to 108 bytes, else a zero-copy slice of the frame),
//!   walked on demand, so a decoded PUBLISH with properties costs one
//!   allocation (the box) and a [`PublishView`] none (its `topic_alias()`,
//!   `message_expiry_interval()`, `user_properties()`, ... read the borrowed block).
//! - [`SubscriptionIndex`]: a trie from filters (exact, `+`, `#`, `$share/{group}/...`) to
//!   subscribers, with the `$` rule; match cost follows the topic's depth.
//! - [`InboundAliases`] / [`OutboundAliases`]: topic-alias maps with Topic Alias Maximum enforcement.
//! - `MqttCodec` (feature `tokio-codec`): `tokio_util::codec::{Decoder, Encoder}`.
//! - `Serialize`/`Deserialize` for [`Packet`] and its parts (feature `serde`), in the JSON shape
//!   that `thingkit mqtt decode` prints and `thingkit mqtt encode` reads.
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tokio-codec` | no | `MqttCodec`, implementing `tokio_util::codec::{Decoder, Encoder}` (pulls in `tokio-util`) |
//! | `serde` | no | `serde::{Serialize, Deserialize}` for [`Packet`], every packet struct, [`Properties`] / [`PacketProperties`], [`SubscriptionOptions`], [`Subscription`], [`QoS`], [`RetainHandling`], [`PacketId`], [`PacketType`], [`ProtocolVersion`], [`ReasonCode`], [`TopicName`], [`TopicFilter`] and [`MqttStr`] (pulls in `serde` and `hex`); the shape is below |
//!
//! # Serde (feature `serde`)
//!
//! A [`Packet`] is an object tagged by its packet type's upper-case name in `"type"`, with the
//! fields of its struct in snake_case beside it (declaration order when serializing):
//!
//! ```json
//! {"type":"PUBLISH","dup":false,"qos":1,"retain":false,"topic":"a/b","packet_id":7,
//!  "properties":{"topic_alias":5,"user_properties":[["k","v"]]},"payload_hex":"6869"}
//! ```
//!
//! - Binary data is a hex string (lower case out, either case in) in a field whose name ends in
//!   `_hex`: `payload_hex` (PUBLISH, will), `password_hex`, and the properties
//!   `correlation_data_hex` and `authentication_data_hex`. Hex is lossless for any bytes and reads
//!   the same in every serde format; it is what the CLI has always printed.
//! - QoS, packet identifiers, reason codes (`135`, not `"0x87"`) and Retain Handling are numbers;
//!   flags and boolean properties are `true`/`false`; `protocol` is `"3.1.1"` or `"5.0"`.
//! - `properties` is left out when empty; inside it only present properties appear, user
//!   properties as `[[name, value], ...]` in order. A PUBLISH whose topic is `None` (a Topic Alias
//!   stands in for it) has no `topic`. Other `None` fields (`packet_id`, `will`, `username`,
//!   `password_hex`) are left out too.
//! - A SUBSCRIBE's `subscriptions` are flat objects: `{"filter": "a/+", "qos": 1, "no_local":
//!   false, "retain_as_published": false, "retain_handling": 0}`.
//! - Reading, absent fields default to `false`, 0, empty or `None`, except a CONNECT's
//!   `clean_start` (`true`) and `keep_alive` (60); `type`, CONNECT's `protocol`, the will's
//!   `topic`, `packet_id` where it is not optional, SUBSCRIBE's `subscriptions` and UNSUBSCRIBE's
//!   `filters` are required. Unknown fields and unknown properties are errors, not ignored.
//!
//! Deserializing validates every field as decoding does: topic names, filters and strings go
//! through [`TopicName::new`], [`TopicFilter::new`] and [`MqttStr::new`] (so `"a/+"` is refused as
//! a topic name, naming `[MQTT-3.3.2-2]`), QoS 3, packet identifier 0 and Retain Handling 3 are
//! refused. Rules that need the whole packet and the protocol version (which reason codes and
//! properties a packet type may carry, a packet identifier exactly when QoS > 0, ...) are checked
//! by the [`Encoder`], as for packets built in code. Nothing is allocated beyond what the input
//! itself holds.
//!
//! ```
//! # #[cfg(feature = "serde")] {
//! use thingkit_mqtt::{Packet, QoS};
//!
//! let json = r#"{"type":"PUBLISH","topic":"a/b","qos":1,"packet_id":7,"payload_hex":"6869"}"#;
//! let packet: Packet = serde_json::from_str(json)?;
//! let Packet::Publish(publish) = &packet else { panic!("expected PUBLISH") };
//! assert_eq!((publish.qos, &publish.payload[..]), (QoS::AtLeastOnce, &b"hi"[..]));
//! assert_eq!(
//!     serde_json::to_string(&packet)?,
//!     r#"{"type":"PUBLISH","dup":false,"qos":1,"retain":false,"topic":"a/b","packet_id":7,"payload_hex":"6869"}"#
//! );
//! let refused = serde_json::from_str::<Packet>(r#"{"type":"PUBLISH","topic":"a/+"}"#);
//! assert!(refused.unwrap_err().to_string().contains("[MQTT-3.3.2-2]"));
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Specifications
//!
//! - MQTT Version 5.0, OASIS Standard (7 March 2019): §1.5 data representation, §2 packet format
//!   (fixed header §2.1, packet identifier §2.2.1, properties §2.2.2, reason codes §2.4), §3.1–§3.15
//!   all fifteen control packets, §4.7 topic names and filters, §4.8.2 shared subscriptions,
//!   §3.3.2.3.4 topic aliases.
//! - MQTT Version 3.1.1, OASIS Standard (29 October 2014): §1.5.3 strings, §2.2 fixed header,
//!   §3.1–§3.14 the fourteen control packets, §4.7 topics.
//!
//! Errors cite normative statements as `[MQTT-x.y.z-n]` (5.0 numbering on a 5.0 connection, 3.1.1
//! numbering on a 3.1.1 one) or a section as `[MQTT-5.0 §x.y]` where the rule has no number.
//!
//! # Strictness, and what is deliberately not done
//!
//! The decoder is a receiver that closes the connection on any protocol violation. It checks
//! every fixed-header flag, remaining-length form, string, topic, property (allowed in this packet,
//! not duplicated, value in range) and reason code, and rejects trailing bytes. It does not check
//! what needs session state (whether a packet identifier is in use, whether QoS exceeds the
//! granted maximum, whether a topic alias is known: see [`InboundAliases`]), and it does not
//! validate a payload marked as UTF-8 by the Payload Format Indicator (the specification makes that
//! optional). MQTT 3.1 (`MQIsdp`, level 3) is not supported.
//!
//! One private module uses `unsafe`, for three measured reasons: a `&str` of topic bytes already
//! checked to be ASCII, a cache prefetch of the next frame, and huge pages for the subscription
//! index's node table on Linux (`src/cpu.rs`; the rest of the crate denies `unsafe`).
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod alias;
#[cfg(feature = "tokio-codec")]
mod codec;
mod cpu;
mod decode;
mod encode;
mod error;
mod packet;
mod property;
mod reason;
#[cfg(feature = "serde")]
mod serde;
mod subscription;
mod topic;

/// The `bytes` crate this crate's API uses (`Bytes`, `BytesMut`), re-exported so callers match
/// its version.
pub use bytes;

pub use alias::{InboundAliases, OutboundAliases};
#[cfg(feature = "tokio-codec")]
pub use codec::MqttCodec;
pub use decode::{
    DEFAULT_MAX_PACKET_SIZE, Decoder, DecoderConfig, PROTOCOL_MAX_PACKET_SIZE, PacketView,
    PublishView,
};
pub use encode::Encoder;
pub use error::Error;
pub use packet::{
    Auth, ConnAck, Connect, Disconnect, Packet, PacketId, PacketType, ProtocolVersion, PubResponse,
    Publish, QoS, RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions, UnsubAck,
    Unsubscribe, Will,
};
pub use property::{MAX_VARINT, PacketProperties, Properties, UserProperties, UserPropertiesIter};
pub use reason::ReasonCode;
pub use subscription::{Match, SubscriptionIndex};
pub use topic::{MAX_STRING_LEN, MqttStr, TopicFilter, TopicName};

// The README's examples are compiled as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
