//! The sans-IO streaming decoder: bytes in, [`Packet`]s out.
//!
//! [`Decoder::decode`] looks at the front of a `BytesMut`. It returns `Ok(None)` only when the
//! buffer holds an incomplete packet that more bytes could complete; a malformed packet is always
//! an `Err`, as early as the bytes allow (a bad first byte, a bad or oversized length is reported
//! before the body arrives). The decoder never reserves memory: a 5-byte header announcing 256 MiB
//! costs nothing until 256 MiB actually arrive, and is rejected at once when it exceeds
//! [`DecoderConfig::max_packet_size`].

use std::num::NonZeroU16;

use bytes::{Buf, Bytes, BytesMut};

use crate::Error;
use crate::packet::*;
use crate::property::{
    Context, PacketProperties, Properties, PublishScan, UserPropertiesIter, scan_publish_block,
    split_property,
};
use crate::reason::ReasonCode;
use crate::topic::{MqttStr, TopicFilter, TopicName, check_mqtt_str, has_no_nul_or_wildcard};

/// The default [`DecoderConfig::max_packet_size`]: 1 MiB.
pub const DEFAULT_MAX_PACKET_SIZE: u32 = 1024 * 1024;

/// The largest packet MQTT can express: a 1-byte type, a 4-byte length and 268,435,455 bytes.
pub const PROTOCOL_MAX_PACKET_SIZE: u32 = 268_435_460;

/// Decoder limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecoderConfig {
    /// The largest whole packet (fixed header included, as MQTT 5.0 §3.1.2.11.4 counts it) the
    /// decoder accepts. Default [`DEFAULT_MAX_PACKET_SIZE`] (1 MiB). A server that announces a
    /// Maximum Packet Size in CONNACK should set the same value here.
    pub max_packet_size: u32,
}

impl DecoderConfig {
    /// This value with [`max_packet_size`](Self::max_packet_size) replaced.
    pub fn with_max_packet_size(mut self, max_packet_size: u32) -> Self {
        self.max_packet_size = max_packet_size;
        self
    }
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
        }
    }
}

/// A streaming MQTT decoder for one direction of one connection.
///
/// ```
/// use bytes::BytesMut;
/// use thingkit_mqtt::{Decoder, Packet, ProtocolVersion};
///
/// let mut decoder = Decoder::new(ProtocolVersion::V311);
/// let mut buf = BytesMut::from(&b"\x30\x07\x00\x03a/b"[..]);
/// assert!(decoder.decode(&mut buf)?.is_none()); // two payload bytes still missing
/// buf.extend_from_slice(b"hi");
/// let Some(Packet::Publish(p)) = decoder.decode(&mut buf)? else { panic!() };
/// assert_eq!(&p.payload[..], b"hi");
/// # Ok::<(), thingkit_mqtt::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Decoder {
    version: Option<ProtocolVersion>,
    config: DecoderConfig,
    position: u64,
}

impl Decoder {
    /// A decoder for a connection whose protocol version is known.
    pub fn new(version: ProtocolVersion) -> Self {
        Decoder {
            version: Some(version),
            config: DecoderConfig::default(),
            position: 0,
        }
    }

    /// A server-side decoder that learns the version from the first packet, which must be CONNECT
    /// [MQTT-3.1.0-1].
    pub fn detect() -> Self {
        Decoder {
            version: None,
            config: DecoderConfig::default(),
            position: 0,
        }
    }

    /// Replaces the limits.
    pub fn with_config(mut self, config: DecoderConfig) -> Self {
        self.config = config;
        self
    }

    /// The limits in force.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Changes the maximum packet size (for example after CONNECT/CONNACK negotiation).
    pub fn set_max_packet_size(&mut self, max: u32) {
        self.config.max_packet_size = max;
    }

    /// The protocol version: fixed at construction or detected from CONNECT.
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// Bytes consumed so far (the stream offset of the next packet).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Decodes one packet from the front of `buf`, removing its bytes.
    ///
    /// Returns `Ok(None)` when `buf` holds only the beginning of a packet (including nothing);
    /// `buf` is then untouched. Any error is final: MQTT cannot resynchronise, close the
    /// connection.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, Error> {
        let header = match self.publish_header(buf) {
            Some(h) => h,
            None => match self.header(buf)? {
                Some(h) => h,
                None => return Ok(None),
            },
        };
        if buf.len() < header.total {
            return Ok(None);
        }
        // Start loading the next frame's first cache line now (see `cpu::prefetch`): its miss
        // overlaps with this frame's work instead of stalling the next call.
        crate::cpu::prefetch(buf, header.total);
        if header.ptype == PacketType::Publish {
            // The 3.1.1 fast path is inlined here; 5.0's (property blocks) is compiled apart, so
            // that its code does not crowd the 3.1.1 path out of inlining its small calls.
            match self.version {
                Some(ProtocolVersion::V311) => return self.decode_publish::<false>(buf, header),
                Some(ProtocolVersion::V5) => return self.decode_publish::<true>(buf, header),
                None => {}
            }
        }
        self.decode_other(buf, header).map(Some)
    }

    /// Everything but the PUBLISH fast paths: the short fixed-size packets, else the general
    /// path (out of line, so the PUBLISH path stays small).
    #[inline(never)]
    fn decode_other(&mut self, buf: &mut BytesMut, header: Header) -> Result<Packet, Error> {
        if header.ptype != PacketType::Publish
            && let Some(packet) = buf
                .get(..header.total)
                .and_then(|f| small_packet(f, header))
        {
            self.position += header.total as u64;
            buf.advance(header.total);
            return Ok(packet);
        }
        self.decode_general(buf, header)
    }

    /// A complete PUBLISH (`V5`: the decoder's version is 5.0, else 3.1.1): the fast path, else
    /// the general one. Out of line and small, so that the `bytes` calls inside it are inlined,
    /// and returning `decode`'s own result type, so that `decode` hands its return slot on
    /// without copying the packet; each version is its own instance, so 5.0's property code
    /// does not crowd the 3.1.1 path.
    #[inline(never)]
    fn decode_publish<const V5: bool>(
        &mut self,
        buf: &mut BytesMut,
        header: Header,
    ) -> Result<Option<Packet>, Error> {
        match self.publish_owned::<V5>(buf, header) {
            Some(packet) => Ok(Some(packet)),
            None => self.decode_general(buf, header).map(Some),
        }
    }

    /// The fast path for a valid PUBLISH in a complete frame at the front of `buf` (`V5`: the
    /// decoder's version is 5.0, else 3.1.1); `None` leaves `buf` alone for the general path.
    /// One split of the frame out of `buf`; the topic is copied into the `TopicName` (up to 62
    /// bytes; a longer one is a slice) and the payload is the frame itself advanced past the
    /// header: one reference count per packet for a fleet-sized topic. Properties, if any, cost
    /// one allocation, their box (see [`publish_properties`]).
    #[inline(always)]
    fn publish_owned<const V5: bool>(
        &mut self,
        buf: &mut BytesMut,
        header: Header,
    ) -> Option<Packet> {
        let l = self.publish_layout::<V5>(buf, header)?;
        if l.scan.subscription_identifiers != 0 {
            return None;
        }
        let topic_range = l.topic_start..l.topic_start + l.topic_len;
        if l.topic_len > 0 {
            TopicName::validate_wire(buf.get(topic_range.clone())?).ok()?;
        }
        self.position += header.total as u64;
        let mut frame = buf.split_to(header.total).freeze();
        let topic = if l.topic_len > 0 {
            Some(TopicName::from_validated_in(&frame, topic_range))
        } else {
            None
        };
        let properties = if !V5 || l.props_len == 0 {
            PacketProperties::new()
        } else {
            publish_properties(&frame, l.props_start, &l.scan)
        };
        frame.advance(l.payload_start);
        let flags = header.flags;
        Some(Packet::Publish(Publish {
            dup: flags & 0b1000 != 0,
            qos: l.qos,
            retain: flags & 0b0001 != 0,
            topic,
            packet_id: l.packet_id,
            properties,
            payload: frame,
        }))
    }

    #[inline(never)]
    fn decode_general(&mut self, buf: &mut BytesMut, header: Header) -> Result<Packet, Error> {
        let frame = buf.split_to(header.total).freeze();
        self.finish(frame, header)
    }

    /// Where the fields of a complete PUBLISH are, if it is valid; `None` sends the packet
    /// through the general path (which also produces the precise error). The property block, if
    /// any, has been checked by [`scan_publish_block`] (every rule the general path applies).
    /// The topic's characters are the caller's to check (a non-empty topic; an empty one is only
    /// accepted here in MQTT 5.0 with a Topic Alias).
    #[inline(always)]
    fn publish_layout<const V5: bool>(&self, buf: &[u8], header: Header) -> Option<PublishLayout> {
        let body = buf.get(header.header_len..header.total)?;
        let (len, rest) = body.split_first_chunk::<2>()?;
        let topic_len = usize::from(u16::from_be_bytes(*len));
        rest.get(..topic_len)?; // the topic fits in the body
        let mut at = 2 + topic_len;
        let qos = QoS::from_u8((header.flags >> 1) & 0b11)?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            let (id, _) = body.get(at..)?.split_first_chunk::<2>()?;
            at += 2;
            Some(PacketId::new(u16::from_be_bytes(*id))?)
        };
        let mut scan = PublishScan::default();
        let mut props_start = 0;
        let mut props_len = 0;
        if V5 {
            let first = *body.get(at)?;
            at += 1;
            if first != 0 {
                let mut len = usize::from(first & 0x7F);
                if first & 0x80 != 0 {
                    // A multi-byte property length: at most four bytes, minimally encoded.
                    let mut shift = 7;
                    loop {
                        let b = *body.get(at)?;
                        at += 1;
                        len |= usize::from(b & 0x7F) << shift;
                        if b & 0x80 == 0 {
                            if b == 0 {
                                return None;
                            }
                            break;
                        }
                        shift += 7;
                        if shift > 21 {
                            return None;
                        }
                    }
                }
                let block = body.get(at..at.checked_add(len)?)?;
                scan = scan_publish_block(block)?;
                props_start = header.header_len + at;
                props_len = len;
                at += len;
            }
            if topic_len == 0 && scan.topic_alias.is_none() {
                return None;
            }
        } else if topic_len == 0 {
            return None;
        }
        Some(PublishLayout {
            qos,
            packet_id,
            topic_start: header.header_len + 2,
            topic_len,
            props_start,
            props_len,
            payload_start: header.header_len + at,
            scan,
        })
    }

    /// Decodes the first packet of `input` without taking ownership: a PUBLISH comes back as a
    /// [`PublishView`] borrowing topic and payload from `input` (no reference counting, and no
    /// allocation unless the PUBLISH carries properties), any other packet as an owned
    /// [`Packet`]. Validation is exactly that of [`decode`](Self::decode). Returns the view and
    /// the packet's length (advance `input` by it), or `Ok(None)` if `input` holds only the start
    /// of a packet.
    ///
    /// ```
    /// use thingkit_mqtt::{Decoder, PacketView, ProtocolVersion};
    /// let input = b"\x30\x07\x00\x03a/bhi\xc0\x00";
    /// let mut d = Decoder::new(ProtocolVersion::V311);
    /// let Some((PacketView::Publish(p), n)) = d.decode_view(input)? else { panic!() };
    /// assert_eq!((p.topic, p.payload, n), ("a/b", &b"hi"[..], 9));
    /// assert!(matches!(d.decode_view(&input[n..])?, Some((PacketView::Other(_), 2))));
    /// # Ok::<(), thingkit_mqtt::Error>(())
    /// ```
    pub fn decode_view<'a>(
        &mut self,
        input: &'a [u8],
    ) -> Result<Option<(PacketView<'a>, usize)>, Error> {
        let header = match self.publish_header(input) {
            Some(h) => h,
            None => match self.header(input)? {
                Some(h) => h,
                None => return Ok(None),
            },
        };
        let Some(frame) = input.get(..header.total) else {
            return Ok(None);
        };
        // Start loading the next frame's first cache line now: if it is not in cache, the miss
        // overlaps with this frame's validation instead of stalling the next call.
        crate::cpu::prefetch(input, header.total);
        if header.ptype == PacketType::Publish {
            let layout = if self.version == Some(ProtocolVersion::V5) {
                self.publish_layout::<true>(frame, header)
            } else if self.version == Some(ProtocolVersion::V311) {
                self.publish_layout::<false>(frame, header)
            } else {
                None
            };
            if let Some(view) = layout.and_then(|l| view_from_layout(frame, header, &l)) {
                self.position += header.total as u64;
                return Ok(Some((PacketView::Publish(view), header.total)));
            }
        } else if let Some(packet) = small_packet(frame, header) {
            self.position += header.total as u64;
            return Ok(Some((PacketView::Other(packet), header.total)));
        }
        self.decode_view_general(frame, header).map(Some)
    }

    /// Everything `decode_view`'s fast path does not take: full decoding of a copy of the frame
    /// (which also yields the precise error).
    #[inline(never)]
    fn decode_view_general<'a>(
        &mut self,
        frame: &'a [u8],
        header: Header,
    ) -> Result<(PacketView<'a>, usize), Error> {
        let packet = self.finish(owned_copy(frame), header)?;
        if let Packet::Publish(p) = &packet {
            let v5 = self.version == Some(ProtocolVersion::V5);
            if let Some(view) = view_with_properties(frame, header, p, v5) {
                return Ok((PacketView::Publish(view), header.total));
            }
        }
        Ok((PacketView::Other(packet), header.total))
    }

    /// Decodes one packet from the front of `bytes`, advancing it past the packet. Like
    /// [`decode`](Self::decode) but for input that is already a `Bytes` (a datagram, a file).
    pub fn decode_bytes(&mut self, bytes: &mut Bytes) -> Result<Option<Packet>, Error> {
        let Some(header) = self.header(bytes)? else {
            return Ok(None);
        };
        if bytes.len() < header.total {
            return Ok(None);
        }
        let frame = bytes.split_to(header.total);
        self.finish(frame, header).map(Some)
    }

    #[inline(always)]
    fn finish(&mut self, frame: Bytes, header: Header) -> Result<Packet, Error> {
        let start = self.position;
        self.position += header.total as u64;
        let version = self.version.unwrap_or(ProtocolVersion::V5);
        let mut r = Reader {
            buf: &frame,
            pos: header.header_len,
            end: header.total,
            base: start,
            version,
            detect: self.version.is_none(),
        };
        let packet = decode_body(&mut r, header.ptype, header.flags)?;
        if r.pos != r.end {
            return Err(r.err(
                r.pos,
                format!(
                    "{} trailing bytes after the {} packet's last field",
                    r.end - r.pos,
                    header.ptype
                ),
                r.rule("[MQTT-3.1.1 §2.2.3]", "[MQTT-5.0 §2.1.4]"),
            ));
        }
        if let Packet::Connect(c) = &packet
            && self.version.is_none()
        {
            self.version = Some(c.protocol);
        }
        Ok(packet)
    }

    /// The fixed header of a PUBLISH that passes every fixed-header check of
    /// [`header`](Self::header) with a one- or two-byte remaining length; `None` for anything
    /// else (other packets, longer or non-minimal lengths, errors, incomplete input), which
    /// `header` then handles and reports precisely.
    #[inline(always)]
    fn publish_header(&self, buf: &[u8]) -> Option<Header> {
        let [first, b1, rest @ ..] = buf else {
            return None;
        };
        let flags = first & 0x0F;
        let qos = (flags >> 1) & 0b11;
        // Type 3; QoS 3 [MQTT-3.3.1-4] and DUP with QoS 0 [MQTT-3.3.1-2] are left to `header`,
        // as is a decoder that has not yet seen CONNECT [MQTT-3.1.0-1].
        if first >> 4 != 3 || qos == 3 || (qos == 0 && flags & 0b1000 != 0) {
            return None;
        }
        self.version?;
        let (header_len, value) = if b1 & 0x80 == 0 {
            (2, u32::from(*b1))
        } else {
            // A zero second byte is a non-minimal encoding: `header` decides by version.
            match rest.first() {
                Some(&b2) if b2 != 0 && b2 & 0x80 == 0 => {
                    (3, u32::from(b1 & 0x7F) | (u32::from(b2) << 7))
                }
                _ => return None,
            }
        };
        let total = header_len + value as usize;
        if total as u64 > u64::from(self.config.max_packet_size) {
            return None;
        }
        Some(Header {
            ptype: PacketType::Publish,
            flags,
            header_len,
            total,
        })
    }

    /// Parses and checks the fixed header; `Ok(None)` if it is not complete yet.
    fn header(&self, buf: &[u8]) -> Result<Option<Header>, Error> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let version = self.version.unwrap_or(ProtocolVersion::V5);
        let at = self.position;
        let err = |offset: u64, detail: String, rule: &'static str| Error::Malformed {
            offset,
            detail,
            rule: translate(version, rule),
        };
        let nibble = first >> 4;
        let flags = first & 0x0F;
        let ptype = match PacketType::from_nibble(nibble) {
            Some(PacketType::Auth) if version == ProtocolVersion::V311 => None,
            t => t,
        };
        let Some(ptype) = ptype else {
            return Err(err(
                at,
                format!("reserved packet type {nibble}"),
                rule(version, "[MQTT-3.1.1 §2.2.1]", "[MQTT-5.0 §2.1.2]"),
            ));
        };
        if self.version.is_none() && ptype != PacketType::Connect {
            return Err(err(
                at,
                format!("first packet is {ptype}, not CONNECT"),
                "[MQTT-3.1.0-1]",
            ));
        }
        match ptype {
            PacketType::Publish => {
                let qos = (flags >> 1) & 0b11;
                if qos == 3 {
                    return Err(err(at, "PUBLISH with QoS 3".into(), "[MQTT-3.3.1-4]"));
                }
                if qos == 0 && flags & 0b1000 != 0 {
                    return Err(err(
                        at,
                        "PUBLISH with DUP set and QoS 0".into(),
                        "[MQTT-3.3.1-2]",
                    ));
                }
            }
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => {
                if flags != 0b0010 {
                    return Err(err(
                        at,
                        format!("{ptype} fixed-header flags are {flags:04b}, must be 0010"),
                        rule(version, "[MQTT-2.2.2-1]", "[MQTT-2.1.3-1]"),
                    ));
                }
            }
            _ => {
                if flags != 0 {
                    return Err(err(
                        at,
                        format!("{ptype} fixed-header flags are {flags:04b}, must be 0000"),
                        rule(version, "[MQTT-2.2.2-1]", "[MQTT-2.1.3-1]"),
                    ));
                }
            }
        }
        // Remaining length: Variable Byte Integer of at most four bytes. A fourth byte with the
        // continuation bit set is malformed as soon as it arrives: no fifth byte can make the
        // length valid, so waiting for one would report "incomplete" for a broken stream.
        let mut value: u32 = 0;
        let mut i = 1;
        loop {
            let Some(&b) = buf.get(i) else {
                return Ok(None);
            };
            if i == 4 && b & 0x80 != 0 {
                return Err(err(
                    at + 1,
                    "remaining length is longer than four bytes (the fourth byte has the \
                     continuation bit set)"
                        .into(),
                    rule(version, "[MQTT-3.1.1 §2.2.3]", "[MQTT-5.0 §1.5.5]"),
                ));
            }
            value |= u32::from(b & 0x7F) << (7 * (i - 1));
            i += 1;
            if b & 0x80 == 0 {
                if b == 0 && i > 2 && version == ProtocolVersion::V5 {
                    return Err(err(
                        at + 1,
                        "remaining length is not encoded in the minimum number of bytes".into(),
                        "[MQTT-1.5.5-1]",
                    ));
                }
                break;
            }
        }
        let header_len = i;
        let total = header_len as u64 + u64::from(value);
        if total > u64::from(self.config.max_packet_size) {
            return Err(Error::PacketTooLarge {
                offset: at,
                size: total,
                limit: self.config.max_packet_size,
            });
        }
        Ok(Some(Header {
            ptype,
            flags,
            header_len,
            total: total as usize,
        }))
    }
}

/// A packet decoded by [`Decoder::decode_view`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketView<'a> {
    /// A PUBLISH, borrowed from the input.
    Publish(PublishView<'a>),
    /// Any other packet, owned.
    Other(Packet),
}

/// A validated PUBLISH whose topic and payload borrow from the decoder's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishView<'a> {
    /// DUP flag.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// The topic name; empty only in MQTT 5.0 when a Topic Alias stands in for it.
    pub topic: &'a str,
    /// Packet identifier (present exactly when QoS > 0).
    pub packet_id: Option<PacketId>,
    /// The application payload.
    pub payload: &'a [u8],
    /// The encoded property block without its length prefix (validated; empty if none).
    pub properties: &'a [u8],
}

impl<'a> PublishView<'a> {
    /// The value of the first property `id` in the validated block, if present.
    fn property(&self, id: u8) -> Option<&'a [u8]> {
        let mut rest = self.properties;
        while let Some((at, value, tail)) = split_property(rest) {
            if at == id {
                return Some(value);
            }
            rest = tail;
        }
        None
    }

    fn string_property(&self, id: u8) -> Option<&'a str> {
        std::str::from_utf8(self.property(id)?.get(2..)?).ok()
    }

    /// 0x23 Topic Alias (MQTT 5.0).
    pub fn topic_alias(&self) -> Option<NonZeroU16> {
        let v = self.property(0x23)?;
        NonZeroU16::new(u16::from_be_bytes(*v.first_chunk::<2>()?))
    }

    /// 0x02 Message Expiry Interval in seconds (MQTT 5.0).
    pub fn message_expiry_interval(&self) -> Option<u32> {
        Some(u32::from_be_bytes(
            *self.property(0x02)?.first_chunk::<4>()?,
        ))
    }

    /// 0x01 Payload Format Indicator: `true` = UTF-8 (MQTT 5.0).
    pub fn payload_format_indicator(&self) -> Option<bool> {
        Some(self.property(0x01)?.first()? == &1)
    }

    /// 0x03 Content Type (MQTT 5.0).
    pub fn content_type(&self) -> Option<&'a str> {
        self.string_property(0x03)
    }

    /// 0x08 Response Topic (MQTT 5.0).
    pub fn response_topic(&self) -> Option<&'a str> {
        self.string_property(0x08)
    }

    /// 0x09 Correlation Data (MQTT 5.0).
    pub fn correlation_data(&self) -> Option<&'a [u8]> {
        self.property(0x09)?.get(2..)
    }

    /// 0x26 User Properties in order, borrowed from the input (MQTT 5.0).
    pub fn user_properties(&self) -> UserPropertiesIter<'a> {
        UserPropertiesIter::wire(self.properties)
    }

    /// The properties decoded into an owned [`Properties`] (allocates; for the rarely read
    /// ones, such as subscription identifiers).
    pub fn to_properties(&self) -> Properties {
        let v5 = ProtocolVersion::V5;
        let block = Bytes::copy_from_slice(self.properties);
        let mut framed = Vec::with_capacity(block.len() + 4);
        crate::property::put_varint(&mut framed, block.len() as u32);
        framed.extend_from_slice(&block);
        let framed = Bytes::from(framed);
        let mut r = Reader {
            buf: &framed,
            pos: 0,
            end: framed.len(),
            base: 0,
            version: v5,
            detect: false,
        };
        Properties::decode(&mut r, Context::Publish).unwrap_or_default()
    }
}

/// A frame of at most this many bytes is copied for `decode_view`'s owned packets into one
/// allocation holding both the bytes and their reference count.
const SMALL_FRAME: usize = 256;

/// The bytes of a small frame, owned by a `Bytes` (see [`owned_copy`]).
struct SmallFrame {
    len: usize,
    bytes: [u8; SMALL_FRAME],
}

impl AsRef<[u8]> for SmallFrame {
    fn as_ref(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// An owned copy of `frame` whose slices share it: for a small frame one allocation (bytes and
/// reference count together, `Bytes::from_owner`), where `Bytes::copy_from_slice` makes a second
/// one when the copy is first sliced (promoting it to shared storage).
fn owned_copy(frame: &[u8]) -> Bytes {
    let mut bytes = [0u8; SMALL_FRAME];
    match bytes.get_mut(..frame.len()) {
        Some(dst) => {
            dst.copy_from_slice(frame);
            Bytes::from_owner(SmallFrame {
                len: frame.len(),
                bytes,
            })
        }
        None => Bytes::copy_from_slice(frame),
    }
}

fn view_from_layout<'a>(
    frame: &'a [u8],
    header: Header,
    l: &PublishLayout,
) -> Option<PublishView<'a>> {
    // UTF-8 (which `&str` needs anyway) and no U+0000 or wildcard is exactly
    // `TopicName::validate_wire` for a non-empty topic of at most 65,535 bytes. A fleet topic is
    // ASCII: `ascii_str` makes it a `&str` without `from_utf8`'s byte-by-byte walk.
    let bytes = frame.get(l.topic_start..l.topic_start + l.topic_len)?;
    let topic = crate::cpu::ascii_str(bytes).or_else(|| std::str::from_utf8(bytes).ok())?;
    if !has_no_nul_or_wildcard(topic.as_bytes()) {
        return None;
    }
    Some(PublishView {
        dup: header.flags & 0b1000 != 0,
        qos: l.qos,
        retain: header.flags & 0b0001 != 0,
        topic,
        packet_id: l.packet_id,
        payload: frame.get(l.payload_start..)?,
        properties: frame.get(l.props_start..l.props_start + l.props_len)?,
    })
}

/// The properties of a PUBLISH whose validated block starts at `block_start` in `frame` (`scan`
/// holds block-relative ranges): one allocation, the box. User properties of up to 108 bytes
/// are copied into it; a longer run of them, and each other string or binary value, is a slice
/// of `frame` (a reference count each). Fields that are absent are left as `Box::default()`
/// wrote them: assigning a `None` still copies the whole field (64 bytes for the response
/// topic) and checks the old value for a drop.
fn publish_properties(frame: &Bytes, block_start: usize, scan: &PublishScan) -> PacketProperties {
    let range = |(start, len): (usize, usize)| block_start + start..block_start + start + len;
    // `Box::default()` builds the defaults in the allocation itself; a `Box::new` of a struct
    // literal builds the 500-odd bytes on the stack first and copies them.
    let mut p: Box<Properties> = Box::default();
    p.payload_format_indicator = scan.payload_format_indicator;
    p.message_expiry_interval = scan.message_expiry_interval;
    p.topic_alias = scan.topic_alias;
    if let Some(r) = scan.content_type {
        p.content_type = Some(MqttStr::from_validated(frame.slice(range(r))));
    }
    if let Some(r) = scan.response_topic {
        p.response_topic = Some(TopicName::from_validated_in(frame, range(r)));
    }
    if let Some(r) = scan.correlation_data {
        p.correlation_data = Some(frame.slice(range(r)));
    }
    if let Some(from) = scan.user_properties_from {
        p.user_properties.set_from_frame(
            frame,
            block_start + from..block_start + scan.block_len,
            scan.user_properties,
        );
    }
    PacketProperties::from_box(p)
}

/// The packets whose whole content is the fixed header and at most a packet identifier, when
/// they are valid in their shortest form (fixed-header flags were checked by `header`): PINGREQ,
/// PINGRESP, DISCONNECT without a body, and PUBACK/PUBREC/PUBREL/PUBCOMP with only a non-zero
/// packet identifier. `None` for anything else, which the general path decodes or rejects.
#[inline]
fn small_packet(frame: &[u8], header: Header) -> Option<Packet> {
    let body = frame.get(header.header_len..header.total)?;
    match (header.ptype, body) {
        (PacketType::PingReq, []) => Some(Packet::PingReq),
        (PacketType::PingResp, []) => Some(Packet::PingResp),
        (PacketType::Disconnect, []) => Some(Packet::Disconnect(Disconnect::default())),
        (t, &[hi, lo]) => {
            let ack = PubResponse::new(PacketId::new(u16::from_be_bytes([hi, lo]))?);
            match t {
                PacketType::PubAck => Some(Packet::PubAck(ack)),
                PacketType::PubRec => Some(Packet::PubRec(ack)),
                PacketType::PubRel => Some(Packet::PubRel(ack)),
                PacketType::PubComp => Some(Packet::PubComp(ack)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Borrowed fields of a PUBLISH that the general path has already validated as `p`.
fn view_with_properties<'a>(
    frame: &'a [u8],
    header: Header,
    p: &Publish,
    v5: bool,
) -> Option<PublishView<'a>> {
    let body = frame.get(header.header_len..)?;
    let (len, _) = body.split_first_chunk::<2>()?;
    let topic_len = usize::from(u16::from_be_bytes(*len));
    let topic = std::str::from_utf8(body.get(2..2 + topic_len)?).ok()?;
    let mut at = 2 + topic_len + if p.packet_id.is_some() { 2 } else { 0 };
    let mut props_len = 0usize;
    if v5 {
        for i in 0..4 {
            let b = *body.get(at)?;
            at += 1;
            props_len |= usize::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    Some(PublishView {
        dup: p.dup,
        qos: p.qos,
        retain: p.retain,
        topic,
        packet_id: p.packet_id,
        properties: body.get(at..at + props_len)?,
        payload: body.get(at + props_len..)?,
    })
}

#[derive(Debug, Clone, Copy)]
struct PublishLayout {
    qos: QoS,
    packet_id: Option<PacketId>,
    topic_start: usize,
    /// 0: no topic (MQTT 5.0, a Topic Alias stands in for it).
    topic_len: usize,
    props_start: usize,
    props_len: usize,
    payload_start: usize,
    scan: PublishScan,
}

#[derive(Debug, Clone, Copy)]
struct Header {
    ptype: PacketType,
    flags: u8,
    header_len: usize,
    total: usize,
}

fn rule(version: ProtocolVersion, v311: &'static str, v5: &'static str) -> &'static str {
    match version {
        ProtocolVersion::V311 => v311,
        ProtocolVersion::V5 => v5,
    }
}

/// Maps rule numbers that 3.1.1 numbers differently from 5.0 (the crate cites 5.0 by default).
fn translate(version: ProtocolVersion, rule: &'static str) -> &'static str {
    if version == ProtocolVersion::V5 {
        return rule;
    }
    match rule {
        "[MQTT-1.5.4-1]" => "[MQTT-1.5.3-1]",
        "[MQTT-1.5.4-2]" => "[MQTT-1.5.3-2]",
        "[MQTT-1.5.4]" => "[MQTT-1.5.3]",
        "[MQTT-4.7.1-1]" => "[MQTT-4.7.1-2]",
        "[MQTT-4.7.1-2]" => "[MQTT-4.7.1-3]",
        "[MQTT-2.2.1-3]" => "[MQTT-2.3.1-1]",
        other => other,
    }
}

/// A cursor over one complete frame. Offsets are frame-relative; errors add the stream base.
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
    base: u64,
    version: ProtocolVersion,
    /// Whether CONNECT decides the version (a detecting decoder's first packet).
    detect: bool,
}

impl Reader<'_> {
    pub(crate) fn err(&self, at: usize, detail: impl Into<String>, rule: &'static str) -> Error {
        Error::Malformed {
            offset: self.base + at as u64,
            detail: detail.into(),
            rule: translate(self.version, rule),
        }
    }

    pub(crate) fn rule(&self, v311: &'static str, v5: &'static str) -> &'static str {
        rule(self.version, v311, v5)
    }

    pub(crate) fn truncation_rule(&self) -> &'static str {
        self.rule("[MQTT-3.1.1 §2.2.3]", "[MQTT-5.0 §2.1.4]")
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// Narrows the readable end (for a property block); returns the previous end.
    pub(crate) fn set_end(&mut self, end: usize) -> usize {
        std::mem::replace(&mut self.end, end)
    }

    fn truncated(&self, what: &str, need: usize) -> Error {
        self.err(
            self.pos,
            format!(
                "truncated {what}: needs {need} bytes, {} left in the packet",
                self.remaining()
            ),
            self.truncation_rule(),
        )
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], Error> {
        if self.remaining() < n {
            return Err(self.truncated(what, n));
        }
        let s = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or_else(|| self.truncated(what, n))?;
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, Error> {
        let s = self.take(1, what)?;
        Ok(s.first().copied().unwrap_or_default())
    }

    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, Error> {
        let mut s = self.take(2, what)?;
        Ok(s.get_u16())
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, Error> {
        let mut s = self.take(4, what)?;
        Ok(s.get_u32())
    }

    pub(crate) fn varint(&mut self, what: &str) -> Result<u32, Error> {
        let start = self.pos;
        let mut value: u32 = 0;
        for i in 0..4 {
            let b = self.u8(what)?;
            value |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 && self.version == ProtocolVersion::V5 {
                    return Err(self.err(
                        start,
                        format!("{what} is not encoded in the minimum number of bytes"),
                        "[MQTT-1.5.5-1]",
                    ));
                }
                return Ok(value);
            }
        }
        Err(self.err(
            start,
            format!("{what} is a Variable Byte Integer longer than four bytes"),
            "[MQTT-5.0 §1.5.5]",
        ))
    }

    /// A length-prefixed field as a zero-copy slice of the frame.
    fn prefixed(&mut self, what: &str) -> Result<(usize, Bytes), Error> {
        let len = self.u16(what)? as usize;
        let start = self.pos;
        if self.remaining() < len {
            return Err(self.truncated(what, len));
        }
        self.pos += len;
        Ok((start, self.buf.slice(start..start + len)))
    }

    pub(crate) fn binary(&mut self, what: &str) -> Result<Bytes, Error> {
        Ok(self.prefixed(what)?.1)
    }

    /// The `count` user properties of the validated property block at the frame-relative
    /// `range` (from the first pair on): copied when short, else a zero-copy slice.
    pub(crate) fn user_properties(
        &self,
        range: std::ops::Range<usize>,
        count: usize,
    ) -> crate::UserProperties {
        crate::UserProperties::from_frame(self.buf, range, count)
    }

    /// Checks an MQTT string and skips it, without making a `Bytes` of it.
    pub(crate) fn string_check(&mut self, what: &str) -> Result<(), Error> {
        let len = self.u16(what)? as usize;
        let start = self.pos;
        if self.remaining() < len {
            return Err(self.truncated(what, len));
        }
        self.pos += len;
        let b = self.buf.get(start..start + len).unwrap_or_default();
        check_mqtt_str(b)
            .map_err(|(at, detail, rule)| self.err(start + at, format!("{what}: {detail}"), rule))
    }

    pub(crate) fn string(&mut self, what: &str) -> Result<MqttStr, Error> {
        let (start, b) = self.prefixed(what)?;
        check_mqtt_str(&b).map_err(|(at, detail, rule)| {
            self.err(start + at, format!("{what}: {detail}"), rule)
        })?;
        Ok(MqttStr::from_validated(b))
    }

    pub(crate) fn topic_name(&mut self, what: &str) -> Result<TopicName, Error> {
        let len = self.u16(what)? as usize;
        let start = self.pos;
        let b = self.take(len, what)?;
        TopicName::validate_wire(b).map_err(|(at, detail, rule)| {
            self.err(start + at, format!("{what}: {detail}"), rule)
        })?;
        Ok(TopicName::from_validated_in(self.buf, start..start + len))
    }

    fn topic_filter(&mut self) -> Result<TopicFilter, Error> {
        let len = self.u16("topic filter")? as usize;
        let start = self.pos;
        let b = self.take(len, "topic filter")?;
        TopicFilter::validate_wire(b).map_err(|(at, detail, rule)| {
            self.err(start + at, format!("topic filter: {detail}"), rule)
        })?;
        Ok(TopicFilter::from_validated_in(self.buf, start..start + len))
    }

    fn packet_id(&mut self) -> Result<PacketId, Error> {
        let at = self.pos;
        let v = self.u16("packet identifier")?;
        PacketId::new(v).ok_or_else(|| self.err(at, "packet identifier is 0", "[MQTT-2.2.1-3]"))
    }

    fn properties(&mut self, ctx: Context) -> Result<PacketProperties, Error> {
        if self.version == ProtocolVersion::V311 {
            return Ok(PacketProperties::new());
        }
        Properties::decode(self, ctx).map(PacketProperties::from)
    }

    fn is_v5(&self) -> bool {
        self.version == ProtocolVersion::V5
    }

    fn reason_code(&mut self, ptype: PacketType) -> Result<ReasonCode, Error> {
        let at = self.pos;
        let code = ReasonCode(self.u8("reason code")?);
        if !code.allowed_in(ptype, self.version) {
            return Err(self.err(
                at,
                format!("reason code {code} is not allowed in {ptype}"),
                self.rule("[MQTT-3.1.1 §3.2.2.3]", "[MQTT-5.0 §2.4]"),
            ));
        }
        Ok(code)
    }
}

#[inline(always)]
fn decode_body(r: &mut Reader<'_>, ptype: PacketType, flags: u8) -> Result<Packet, Error> {
    Ok(match ptype {
        PacketType::Publish => Packet::Publish(decode_publish(r, flags)?),
        PacketType::Connect => Packet::Connect(decode_connect(r)?),
        PacketType::ConnAck => Packet::ConnAck(decode_connack(r)?),
        PacketType::PubAck => Packet::PubAck(decode_pub_response(r, ptype)?),
        PacketType::PubRec => Packet::PubRec(decode_pub_response(r, ptype)?),
        PacketType::PubRel => Packet::PubRel(decode_pub_response(r, ptype)?),
        PacketType::PubComp => Packet::PubComp(decode_pub_response(r, ptype)?),
        PacketType::Subscribe => Packet::Subscribe(decode_subscribe(r)?),
        PacketType::SubAck => {
            let packet_id = r.packet_id()?;
            let properties = r.properties(Context::SubAck)?;
            let reason_codes = reason_code_list(r, ptype)?;
            Packet::SubAck(SubAck {
                packet_id,
                properties,
                reason_codes,
            })
        }
        PacketType::Unsubscribe => {
            let packet_id = r.packet_id()?;
            let properties = r.properties(Context::Unsubscribe)?;
            let mut filters = Vec::new();
            while r.remaining() > 0 {
                filters.push(r.topic_filter()?);
            }
            if filters.is_empty() {
                return Err(r.err(
                    r.pos,
                    "UNSUBSCRIBE without topic filters",
                    "[MQTT-3.10.3-2]",
                ));
            }
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties,
                filters,
            })
        }
        PacketType::UnsubAck => {
            let packet_id = r.packet_id()?;
            let properties = r.properties(Context::UnsubAck)?;
            let reason_codes = if r.is_v5() {
                reason_code_list(r, ptype)?
            } else {
                Vec::new()
            };
            Packet::UnsubAck(UnsubAck {
                packet_id,
                properties,
                reason_codes,
            })
        }
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => {
            let (reason_code, properties) = reason_and_properties(r, ptype, Context::Disconnect)?;
            Packet::Disconnect(Disconnect {
                reason_code,
                properties,
            })
        }
        PacketType::Auth => {
            let (reason_code, properties) = reason_and_properties(r, ptype, Context::Auth)?;
            Packet::Auth(Auth {
                reason_code,
                properties,
            })
        }
    })
}

/// DISCONNECT and AUTH: remaining length 0 means success without properties (5.0 §3.14.2.1,
/// §3.15.2.1); DISCONNECT may also carry only a reason code (§3.14.2.2.1).
fn reason_and_properties(
    r: &mut Reader<'_>,
    ptype: PacketType,
    ctx: Context,
) -> Result<(ReasonCode, PacketProperties), Error> {
    if !r.is_v5() || r.remaining() == 0 {
        return Ok((ReasonCode::SUCCESS, PacketProperties::new()));
    }
    let code = r.reason_code(ptype)?;
    if r.remaining() == 0 && ptype == PacketType::Disconnect {
        return Ok((code, PacketProperties::new()));
    }
    Ok((code, r.properties(ctx)?))
}

fn reason_code_list(r: &mut Reader<'_>, ptype: PacketType) -> Result<Vec<ReasonCode>, Error> {
    if r.remaining() == 0 {
        return Err(r.err(
            r.pos,
            format!("{ptype} without reason codes"),
            r.rule("[MQTT-3.1.1 §3.9.3]", "[MQTT-5.0 §3.9.3]"),
        ));
    }
    let mut codes = Vec::new();
    while r.remaining() > 0 {
        codes.push(r.reason_code(ptype)?);
    }
    Ok(codes)
}

#[inline(always)]
fn decode_publish(r: &mut Reader<'_>, flags: u8) -> Result<Publish, Error> {
    let dup = flags & 0b1000 != 0;
    let retain = flags & 0b0001 != 0;
    let qos = QoS::from_u8((flags >> 1) & 0b11).unwrap_or_default();
    let topic_len = usize::from(r.u16("topic name")?);
    let topic_at = r.pos;
    r.take(topic_len, "topic name")?;
    let topic_range = topic_at..topic_at + topic_len;
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(r.packet_id()?)
    };
    let properties = r.properties(Context::Publish)?;
    let topic = if topic_len == 0 && r.is_v5() {
        if properties.topic_alias.is_none() {
            return Err(r.err(
                topic_at,
                "PUBLISH with an empty topic name and no topic alias",
                "[MQTT-5.0 §3.3.2.1]",
            ));
        }
        None
    } else {
        TopicName::validate_wire(r.buf.get(topic_range.clone()).unwrap_or_default())
            .map_err(|(at, detail, rule)| r.err(topic_at + at, detail, rule))?;
        Some(TopicName::from_validated_in(r.buf, topic_range))
    };
    let payload = r.buf.slice(r.pos..r.end);
    r.pos = r.end;
    Ok(Publish {
        dup,
        qos,
        retain,
        topic,
        packet_id,
        properties,
        payload,
    })
}

fn decode_connect(r: &mut Reader<'_>) -> Result<Connect, Error> {
    let name_at = r.pos;
    let name = r.binary("protocol name")?;
    if &name[..] != b"MQTT" {
        return Err(r.err(
            name_at,
            format!(
                "protocol name is {:?}, not \"MQTT\"",
                String::from_utf8_lossy(&name)
            ),
            "[MQTT-3.1.2-1]",
        ));
    }
    let level_at = r.pos;
    let level = r.u8("protocol level")?;
    let Some(protocol) = ProtocolVersion::from_level(level) else {
        return Err(r.err(
            level_at,
            format!("protocol level {level} is not 4 (3.1.1) or 5 (5.0)"),
            "[MQTT-3.1.2-2]",
        ));
    };
    if r.detect {
        r.version = protocol;
    } else if protocol != r.version {
        return Err(r.err(
            level_at,
            format!(
                "protocol level {level} does not match the connection's MQTT {}",
                r.version
            ),
            "[MQTT-3.1.2-2]",
        ));
    }
    let flags_at = r.pos;
    let flags = r.u8("connect flags")?;
    if flags & 0x01 != 0 {
        return Err(r.err(flags_at, "CONNECT reserved flag is set", "[MQTT-3.1.2-3]"));
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    if !will_flag && will_qos != 0 {
        return Err(r.err(
            flags_at,
            "will QoS is set without the will flag",
            r.rule("[MQTT-3.1.2-13]", "[MQTT-3.1.2-11]"),
        ));
    }
    if will_qos == 3 {
        return Err(r.err(
            flags_at,
            "will QoS is 3",
            r.rule("[MQTT-3.1.2-14]", "[MQTT-3.1.2-12]"),
        ));
    }
    if !will_flag && will_retain {
        return Err(r.err(
            flags_at,
            "will retain is set without the will flag",
            r.rule("[MQTT-3.1.2-15]", "[MQTT-3.1.2-13]"),
        ));
    }
    if !r.is_v5() && password_flag && !username_flag {
        return Err(r.err(
            flags_at,
            "password flag without user name flag",
            "[MQTT-3.1.2-22]",
        ));
    }
    let keep_alive = r.u16("keep alive")?;
    let properties = r.properties(Context::Connect)?;
    let client_id = r.string("client identifier")?;
    let will = if will_flag {
        let properties = r.properties(Context::Will)?;
        let topic = r.topic_name("will topic")?;
        let payload = r.binary("will payload")?;
        Some(Box::new(Will {
            topic,
            payload,
            qos: QoS::from_u8(will_qos).unwrap_or_default(),
            retain: will_retain,
            properties,
        }))
    } else {
        None
    };
    let username = if username_flag {
        Some(r.string("user name")?)
    } else {
        None
    };
    let password = if password_flag {
        Some(r.binary("password")?)
    } else {
        None
    };
    Ok(Connect {
        protocol,
        clean_start,
        keep_alive,
        properties,
        client_id,
        will,
        username,
        password,
    })
}

fn decode_connack(r: &mut Reader<'_>) -> Result<ConnAck, Error> {
    let flags_at = r.pos;
    let flags = r.u8("connect acknowledge flags")?;
    if flags & 0xFE != 0 {
        return Err(r.err(
            flags_at,
            "CONNACK reserved flag bits are set",
            "[MQTT-3.2.2-1]",
        ));
    }
    let session_present = flags & 1 != 0;
    let reason_code = r.reason_code(PacketType::ConnAck)?;
    if session_present && reason_code.0 != 0 {
        return Err(r.err(
            flags_at,
            "session present with a non-zero reason code",
            r.rule("[MQTT-3.2.2-4]", "[MQTT-3.2.2-6]"),
        ));
    }
    let properties = r.properties(Context::ConnAck)?;
    Ok(ConnAck {
        session_present,
        reason_code,
        properties,
    })
}

fn decode_pub_response(r: &mut Reader<'_>, ptype: PacketType) -> Result<PubResponse, Error> {
    let packet_id = r.packet_id()?;
    if !r.is_v5() || r.remaining() == 0 {
        return Ok(PubResponse::new(packet_id));
    }
    let reason_code = r.reason_code(ptype)?;
    let properties = if r.remaining() == 0 {
        PacketProperties::new()
    } else {
        r.properties(Context::PubResponse)?
    };
    Ok(PubResponse {
        packet_id,
        reason_code,
        properties,
    })
}

fn decode_subscribe(r: &mut Reader<'_>) -> Result<Subscribe, Error> {
    let packet_id = r.packet_id()?;
    let properties = r.properties(Context::Subscribe)?;
    let mut subscriptions = Vec::new();
    while r.remaining() > 0 {
        let filter = r.topic_filter()?;
        let at = r.pos;
        let o = r.u8("subscription options")?;
        let reserved = if r.is_v5() { o & 0xC0 } else { o & 0xFC };
        if reserved != 0 {
            return Err(r.err(
                at,
                format!("subscription options 0x{o:02X} set reserved bits"),
                r.rule("[MQTT-3-8.3-4]", "[MQTT-3.8.3-5]"),
            ));
        }
        let Some(qos) = QoS::from_u8(o & 0b11) else {
            return Err(r.err(
                at,
                "subscription QoS is 3",
                r.rule("[MQTT-3-8.3-4]", "[MQTT-5.0 §3.8.3.1]"),
            ));
        };
        let retain_handling = match (o >> 4) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => {
                return Err(r.err(at, "retain handling is 3", "[MQTT-5.0 §3.8.3.1]"));
            }
        };
        let no_local = o & 0b100 != 0;
        if no_local && filter.is_shared() {
            return Err(r.err(
                at,
                "No Local set on a shared subscription",
                "[MQTT-3.8.3-4]",
            ));
        }
        subscriptions.push(Subscription {
            filter,
            options: SubscriptionOptions {
                qos,
                no_local,
                retain_as_published: o & 0b1000 != 0,
                retain_handling,
            },
        });
    }
    if subscriptions.is_empty() {
        return Err(r.err(
            r.pos,
            "SUBSCRIBE without topic filters",
            r.rule("[MQTT-3.8.3-3]", "[MQTT-3.8.3-2]"),
        ));
    }
    Ok(Subscribe {
        packet_id,
        properties,
        subscriptions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inlined PUBLISH fixed-header parse never accepts what the full parser rejects and,
    /// when it answers, answers exactly as the full parser does: every first byte, remaining
    /// lengths of one to four bytes (minimal, non-minimal, truncated, too long), every version
    /// state and packet-size limits on either side of the frame.
    #[test]
    fn publish_header_fast_path_agrees_with_full_parser() {
        let lengths: [&[u8]; 10] = [
            &[0x00],
            &[0x05],
            &[0x7F],
            &[0x80],
            &[0x80, 0x00],
            &[0x80, 0x01],
            &[0xFF, 0x7F],
            &[0x81, 0x80, 0x01],
            &[0xFF, 0xFF, 0xFF, 0x7F],
            &[0x80, 0x80, 0x80, 0x80, 0x01],
        ];
        let decoders = [
            Decoder::new(ProtocolVersion::V311),
            Decoder::new(ProtocolVersion::V5),
            Decoder::detect(),
        ];
        let mut fast = 0;
        for first in 0..=255u8 {
            for len in lengths {
                for d in &decoders {
                    for max in [2, 7, 130, 16_384, DEFAULT_MAX_PACKET_SIZE] {
                        let mut d = d.clone();
                        d.set_max_packet_size(max);
                        let mut buf = vec![first];
                        buf.extend_from_slice(len);
                        let Some(h) = d.publish_header(&buf) else {
                            continue;
                        };
                        fast += 1;
                        let full = d
                            .header(&buf)
                            .expect("the full parser accepts what the fast path accepts")
                            .expect("and sees a complete header");
                        assert_eq!(
                            (h.ptype, h.flags, h.header_len, h.total),
                            (full.ptype, full.flags, full.header_len, full.total),
                            "{buf:02x?}"
                        );
                    }
                }
            }
        }
        assert!(fast > 0, "the fast path answered for some headers");
    }
}
