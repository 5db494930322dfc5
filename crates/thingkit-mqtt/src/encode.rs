//! The encoder: [`Packet`]s to bytes, refusing whatever the specification forbids.
//!
//! Encoding never truncates and never emits a packet the strict [`Decoder`](crate::Decoder) would
//! reject: a string over 65,535 bytes cannot exist ([`MqttStr`](crate::MqttStr) and the topic
//! types refuse it), binary data over 65,535 bytes, a property the packet does not allow, a packet
//! identifier on QoS 0, a 5.0-only field on a 3.1.1 connection or a packet above the maximum packet
//! size are all typed errors. The shortest form the specification allows is always chosen
//! (for example a PUBACK with success and no properties is 2 bytes of body), so
//! `decode(encode(p)) == p` holds for every packet the encoder accepts.

use bytes::{BufMut, BytesMut};

use crate::Error;
use crate::decode::PROTOCOL_MAX_PACKET_SIZE;
use crate::packet::*;
use crate::property::{
    Context, MAX_VARINT, binary_len_checked, put_binary, put_varint, varint_len,
};
use crate::reason::ReasonCode;

/// Encodes packets for one protocol version.
///
/// ```
/// use bytes::BytesMut;
/// use thingkit_mqtt::{Encoder, Packet, ProtocolVersion, Publish, TopicName};
///
/// let publish = Publish::new(TopicName::new("a/b")?, "hi");
/// let mut buf = BytesMut::new();
/// Encoder::new(ProtocolVersion::V311).encode(&Packet::Publish(publish), &mut buf)?;
/// assert_eq!(&buf[..], b"\x30\x07\x00\x03a/bhi");
/// # Ok::<(), thingkit_mqtt::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoder {
    version: ProtocolVersion,
    max_packet_size: u32,
}

/// Lengths computed (and validated) before writing.
struct Plan {
    remaining: usize,
    props: usize,
    will_props: usize,
}

/// Sizes of the fixed windows small PUBLISH packets are written into (see
/// [`SmallPublish::put`]): 64 bytes for the smallest, 128 (the most a one-byte remaining
/// length allows, plus the header) for the rest.
const SMALL_FRAME: usize = 64;
const SMALL_FRAME_2: usize = 128;

/// A validated plain PUBLISH small enough for a fixed-size window: at most `W` bytes, with a
/// remaining length below 128 (a one-byte length).
struct SmallPublish<'a> {
    p: &'a Publish,
    topic: &'a [u8],
    id: Option<u16>,
    v5: bool,
    remaining: usize,
    total: usize,
}

impl SmallPublish<'_> {
    /// Appends the packet through a `W`-byte window; returns its size.
    ///
    /// Why: a PUBLISH is a few bytes of header plus two copies of caller data (topic and
    /// payload). Copying a slice whose length is only known at run time is a call to `memcpy`,
    /// and for the small messages typical of telemetry those two calls cost as much as
    /// everything else the encoder does. Here a zeroed window of `W` bytes is appended (a
    /// fixed-size fill, a few vector stores), each piece is copied into it with at most two
    /// fixed-size moves (overlapping when the length is not a power of two), which compile to
    /// plain register loads and stores, and the buffer is then truncated to the packet's
    /// length. All of it is safe code; the bytes past the packet are never visible. (Assembling
    /// the packet in a stack array and appending that was slower: the wide loads of the array
    /// stall on the narrow stores just made to it.)
    #[inline(always)]
    fn put<const W: usize>(&self, buf: &mut BytesMut) -> Option<usize> {
        let start = buf.len();
        buf.put_slice(&[0u8; W]);
        let Ok(frame) = <&mut [u8; W]>::try_from(&mut buf[start..]) else {
            buf.truncate(start);
            return None;
        };
        frame[0] = publish_first_byte(self.p);
        frame[1] = self.remaining as u8;
        frame[2..4].copy_from_slice(&(self.topic.len() as u16).to_be_bytes());
        let mut at = 4;
        copy_small(frame, at, self.topic);
        at += self.topic.len();
        if let Some(id) = self.id {
            frame[at..at + 2].copy_from_slice(&id.to_be_bytes());
            at += 2;
        }
        if self.v5 {
            // Property length 0: the window is already zeroed.
            at += 1;
        }
        copy_small(frame, at, &self.p.payload);
        buf.truncate(start + self.total);
        Some(self.total)
    }
}

/// Copies `src` into `dst[at..at + src.len()]` using only fixed-size moves: two of the largest
/// power of two not above the length, the second ending exactly where `src` ends. The caller
/// guarantees the destination range is inside `dst` (it is always, as the packet fits).
#[inline(always)]
fn copy_small<const W: usize>(dst: &mut [u8; W], at: usize, src: &[u8]) {
    #[inline(always)]
    fn pair<const N: usize, const W: usize>(dst: &mut [u8; W], at: usize, src: &[u8]) {
        let n = src.len();
        dst[at..at + N].copy_from_slice(&src[..N]);
        dst[at + n - N..at + n].copy_from_slice(&src[n - N..]);
    }
    match src.len() {
        0 => {}
        1 => dst[at] = src[0],
        2..=3 => pair::<2, W>(dst, at, src),
        4..=7 => pair::<4, W>(dst, at, src),
        8..=15 => pair::<8, W>(dst, at, src),
        16..=31 => pair::<16, W>(dst, at, src),
        32..=63 => pair::<32, W>(dst, at, src),
        _ => pair::<64, W>(dst, at, src),
    }
}

/// The fixed header's first byte of a PUBLISH: type, DUP, QoS and RETAIN.
#[inline(always)]
fn publish_first_byte(p: &Publish) -> u8 {
    0x30 | (u8::from(p.dup) << 3) | (p.qos.as_u8() << 1) | u8::from(p.retain)
}

fn v5_only(detail: &str) -> Error {
    Error::unencodable(
        format!("{detail}: MQTT 3.1.1 cannot carry it"),
        "[MQTT-5.0 §2.2.2]",
    )
}

impl Encoder {
    /// An encoder for `version` with no limit beyond the protocol's own.
    pub fn new(version: ProtocolVersion) -> Self {
        Encoder {
            version,
            max_packet_size: PROTOCOL_MAX_PACKET_SIZE,
        }
    }

    /// Refuse packets larger than `max` bytes (the peer's Maximum Packet Size).
    pub fn with_max_packet_size(mut self, max: u32) -> Self {
        self.max_packet_size = max;
        self
    }

    /// The protocol version.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The whole encoded size of `packet`, after validating it.
    pub fn encoded_len(&self, packet: &Packet) -> Result<usize, Error> {
        let plan = self.plan(packet)?;
        Ok(1 + varint_len(plan.remaining as u32) + plan.remaining)
    }

    /// Appends `packet` to `buf` (reserving exactly the space it needs); returns its size.
    // A thin dispatch, always inlined, so that the caller's compiler makes the same inlining
    // decision for the PUBLISH path as it would for a direct `encode_publish` call.
    #[inline(always)]
    pub fn encode(&self, packet: &Packet, buf: &mut BytesMut) -> Result<usize, Error> {
        match packet {
            Packet::Publish(p) => self.encode_publish(p, buf),
            _ => self.encode_general(packet, buf),
        }
    }

    /// Appends one PUBLISH to `buf`; returns its size. The same bytes and errors as
    /// [`encode`](Self::encode) with [`Packet::Publish`], without wrapping the message in a
    /// [`Packet`] first — the call a broker makes for every message it forwards.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use thingkit_mqtt::{Encoder, ProtocolVersion, Publish, TopicName};
    ///
    /// let publish = Publish::new(TopicName::new("a/b")?, "hi");
    /// let mut buf = BytesMut::new();
    /// Encoder::new(ProtocolVersion::V311).encode_publish(&publish, &mut buf)?;
    /// assert_eq!(&buf[..], b"\x30\x07\x00\x03a/bhi");
    /// # Ok::<(), thingkit_mqtt::Error>(())
    /// ```
    #[inline]
    pub fn encode_publish(&self, publish: &Publish, buf: &mut BytesMut) -> Result<usize, Error> {
        match self.encode_plain_publish(publish, buf) {
            Some(n) => Ok(n),
            None => self.encode_general_publish(publish, buf),
        }
    }

    /// The general path for a PUBLISH the fast path declined (properties, a topic alias, or an
    /// invalid one), which reports the precise error.
    #[inline(never)]
    #[cold]
    fn encode_general_publish(
        &self,
        publish: &Publish,
        buf: &mut BytesMut,
    ) -> Result<usize, Error> {
        let (remaining, props) = self.plan_publish(publish)?;
        let total = self.check_size(remaining)?;
        buf.reserve(total);
        buf.put_u8(publish_first_byte(publish));
        put_varint(buf, remaining as u32);
        self.write_publish_body(publish, props, buf);
        Ok(total)
    }

    #[inline(never)]
    fn encode_general(&self, packet: &Packet, buf: &mut BytesMut) -> Result<usize, Error> {
        let plan = self.plan(packet)?;
        let total = 1 + varint_len(plan.remaining as u32) + plan.remaining;
        buf.reserve(total);
        self.write(packet, &plan, buf);
        Ok(total)
    }

    /// Fast path for the common PUBLISH: valid, with a topic and without properties. Returns
    /// `None` (writing nothing) for anything else, which the general path then handles (and
    /// rejects with the precise error if it is invalid).
    #[inline(always)]
    fn encode_plain_publish(&self, p: &Publish, buf: &mut BytesMut) -> Option<usize> {
        let topic = p.topic.as_ref()?.as_bytes();
        if !p.properties.is_empty() || (p.dup && p.qos == QoS::AtMostOnce) {
            return None;
        }
        let id = match (p.qos, p.packet_id) {
            (QoS::AtMostOnce, None) => None,
            (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(id)) => Some(id.get()),
            _ => return None,
        };
        let v5 = self.version == ProtocolVersion::V5;
        let remaining =
            2 + topic.len() + if id.is_some() { 2 } else { 0 } + usize::from(v5) + p.payload.len();
        if remaining > MAX_VARINT as usize {
            return None;
        }
        let total = 1 + varint_len(remaining as u32) + remaining;
        if total as u64 > u64::from(self.max_packet_size) {
            return None;
        }
        let spare = buf.capacity() - buf.len();
        let small = SmallPublish {
            p,
            topic,
            id,
            v5,
            remaining,
            total,
        };
        if total <= SMALL_FRAME && spare >= SMALL_FRAME {
            return small.put::<SMALL_FRAME>(buf);
        }
        if total <= SMALL_FRAME_2 && remaining < 128 && spare >= SMALL_FRAME_2 {
            return small.put::<SMALL_FRAME_2>(buf);
        }
        if spare < total {
            buf.reserve(total);
        }
        let first = publish_first_byte(p);
        let [hi, lo] = (topic.len() as u16).to_be_bytes();
        if remaining < 128 {
            // One fixed-size write for the whole header and the topic length.
            buf.put_slice(&[first, remaining as u8, hi, lo]);
        } else if remaining < 16_384 {
            // Two-byte remaining length (MQTT 5.0 §1.5.5): low seven bits with the continuation
            // bit, then the high seven bits.
            let len0 = (remaining & 0x7F) as u8 | 0x80;
            let len1 = (remaining >> 7) as u8;
            buf.put_slice(&[first, len0, len1, hi, lo]);
        } else {
            buf.put_u8(first);
            put_varint(buf, remaining as u32);
            buf.put_slice(&[hi, lo]);
        }
        buf.put_slice(topic);
        if let Some(id) = id {
            buf.put_u16(id);
        }
        if v5 {
            buf.put_u8(0);
        }
        buf.put_slice(&p.payload);
        Some(total)
    }

    /// Writes `packet` into any `BufMut` with enough room; returns its size. Fails without writing
    /// anything if the packet is invalid or `buf` has less than the needed capacity left.
    pub fn encode_to<B: BufMut>(&self, packet: &Packet, buf: &mut B) -> Result<usize, Error> {
        let plan = self.plan(packet)?;
        let total = 1 + varint_len(plan.remaining as u32) + plan.remaining;
        if buf.remaining_mut() < total {
            return Err(Error::unencodable(
                format!(
                    "buffer has {} bytes of room, packet needs {total}",
                    buf.remaining_mut()
                ),
                "[buffer capacity]",
            ));
        }
        self.write(packet, &plan, buf);
        Ok(total)
    }

    fn props_len(&self, p: &crate::PacketProperties, ctx: Context) -> Result<usize, Error> {
        if p.is_empty() {
            return Ok(0);
        }
        match self.version {
            ProtocolVersion::V5 => {
                let len = p.encoded_len(ctx)?;
                Ok(len)
            }
            ProtocolVersion::V311 => {
                if !p.is_empty() {
                    return Err(v5_only(&format!("{} properties", ctx.name())));
                }
                Ok(0)
            }
        }
    }

    /// Length of a property block including its length prefix (0 in 3.1.1).
    fn block(&self, props_len: usize) -> usize {
        match self.version {
            ProtocolVersion::V5 => varint_len(props_len as u32) + props_len,
            ProtocolVersion::V311 => 0,
        }
    }

    fn check_reason(&self, code: ReasonCode, ptype: PacketType) -> Result<(), Error> {
        if !code.allowed_in(ptype, self.version) {
            return Err(Error::unencodable(
                format!(
                    "reason code {code} is not allowed in {ptype} (MQTT {})",
                    self.version
                ),
                "[MQTT-5.0 §2.4]",
            ));
        }
        Ok(())
    }

    /// Checks a remaining length against the protocol and the maximum packet size; returns the
    /// whole packet size.
    fn check_size(&self, remaining: usize) -> Result<usize, Error> {
        if remaining > MAX_VARINT as usize {
            return Err(Error::unencodable(
                format!("remaining length {remaining} is above 268,435,455"),
                "[MQTT-5.0 §1.5.5]",
            ));
        }
        let total = 1 + varint_len(remaining as u32) + remaining;
        if total as u64 > u64::from(self.max_packet_size) {
            return Err(Error::unencodable(
                format!(
                    "packet is {total} bytes, above the maximum packet size of {}",
                    self.max_packet_size
                ),
                "[MQTT-3.1.2-24]",
            ));
        }
        Ok(total)
    }

    /// Validates a PUBLISH; returns its remaining length and its property length.
    fn plan_publish(&self, p: &Publish) -> Result<(usize, usize), Error> {
        let v5 = self.version == ProtocolVersion::V5;
        match (p.qos, p.packet_id) {
            (QoS::AtMostOnce, Some(_)) => {
                return Err(Error::unencodable(
                    "QoS 0 PUBLISH with a packet identifier",
                    "[MQTT-2.2.1-2]",
                ));
            }
            (QoS::AtLeastOnce | QoS::ExactlyOnce, None) => {
                return Err(Error::unencodable(
                    "QoS 1/2 PUBLISH without a packet identifier",
                    "[MQTT-2.2.1-3]",
                ));
            }
            _ => {}
        }
        if p.dup && p.qos == QoS::AtMostOnce {
            return Err(Error::unencodable(
                "DUP set on a QoS 0 PUBLISH",
                "[MQTT-3.3.1-2]",
            ));
        }
        let topic_len = match &p.topic {
            Some(t) => t.len(),
            None if v5 && p.properties.topic_alias.is_some() => 0,
            None => {
                return Err(Error::unencodable(
                    "PUBLISH without a topic name (and without a topic alias)",
                    "[MQTT-5.0 §3.3.2.1]",
                ));
            }
        };
        let props = self.props_len(&p.properties, Context::Publish)?;
        let remaining = 2
            + topic_len
            + if p.packet_id.is_some() { 2 } else { 0 }
            + self.block(props)
            + p.payload.len();
        Ok((remaining, props))
    }

    fn plan(&self, packet: &Packet) -> Result<Plan, Error> {
        let v5 = self.version == ProtocolVersion::V5;
        let mut props = 0;
        let mut will_props = 0;
        let remaining = match packet {
            Packet::Publish(p) => {
                let (remaining, p_props) = self.plan_publish(p)?;
                props = p_props;
                remaining
            }
            Packet::Connect(c) => {
                if c.protocol != self.version {
                    return Err(Error::unencodable(
                        format!(
                            "CONNECT for MQTT {} on an MQTT {} encoder",
                            c.protocol, self.version
                        ),
                        "[MQTT-3.1.2-2]",
                    ));
                }
                if !v5 && c.password.is_some() && c.username.is_none() {
                    return Err(Error::unencodable(
                        "password without user name",
                        "[MQTT-3.1.2-22]",
                    ));
                }
                props = self.props_len(&c.properties, Context::Connect)?;
                let mut n = 6 + 1 + 1 + 2 + self.block(props) + 2 + c.client_id.len();
                if let Some(w) = &c.will {
                    will_props = self.props_len(&w.properties, Context::Will)?;
                    n += self.block(will_props)
                        + 2
                        + w.topic.len()
                        + binary_len_checked("will payload", &w.payload)?;
                }
                if let Some(u) = &c.username {
                    n += 2 + u.len();
                }
                if let Some(pw) = &c.password {
                    n += binary_len_checked("password", pw)?;
                }
                n
            }
            Packet::ConnAck(c) => {
                self.check_reason(c.reason_code, PacketType::ConnAck)?;
                if c.session_present && c.reason_code.0 != 0 {
                    return Err(Error::unencodable(
                        "session present with a non-zero reason code",
                        if v5 {
                            "[MQTT-3.2.2-6]"
                        } else {
                            "[MQTT-3.2.2-4]"
                        },
                    ));
                }
                props = self.props_len(&c.properties, Context::ConnAck)?;
                2 + self.block(props)
            }
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
                self.check_reason(a.reason_code, packet.packet_type())?;
                props = self.props_len(&a.properties, Context::PubResponse)?;
                if !v5 || (props == 0 && a.reason_code == ReasonCode::SUCCESS) {
                    2
                } else if props == 0 {
                    3
                } else {
                    3 + self.block(props)
                }
            }
            Packet::Subscribe(s) => {
                if s.subscriptions.is_empty() {
                    return Err(Error::unencodable(
                        "SUBSCRIBE without topic filters",
                        if v5 {
                            "[MQTT-3.8.3-2]"
                        } else {
                            "[MQTT-3.8.3-3]"
                        },
                    ));
                }
                props = self.props_len(&s.properties, Context::Subscribe)?;
                let mut n = 2 + self.block(props);
                for sub in &s.subscriptions {
                    let o = sub.options;
                    if !v5
                        && (o.no_local
                            || o.retain_as_published
                            || o.retain_handling != RetainHandling::SendAtSubscribe)
                    {
                        return Err(v5_only("subscription options other than QoS"));
                    }
                    if o.no_local && sub.filter.is_shared() {
                        return Err(Error::unencodable(
                            "No Local on a shared subscription",
                            "[MQTT-3.8.3-4]",
                        ));
                    }
                    n += 2 + sub.filter.as_bytes().len() + 1;
                }
                n
            }
            Packet::SubAck(s) => {
                if s.reason_codes.is_empty() {
                    return Err(Error::unencodable(
                        "SUBACK without reason codes",
                        "[MQTT-5.0 §3.9.3]",
                    ));
                }
                for c in &s.reason_codes {
                    self.check_reason(*c, PacketType::SubAck)?;
                }
                props = self.props_len(&s.properties, Context::SubAck)?;
                2 + self.block(props) + s.reason_codes.len()
            }
            Packet::Unsubscribe(u) => {
                if u.filters.is_empty() {
                    return Err(Error::unencodable(
                        "UNSUBSCRIBE without topic filters",
                        "[MQTT-3.10.3-2]",
                    ));
                }
                props = self.props_len(&u.properties, Context::Unsubscribe)?;
                2 + self.block(props)
                    + u.filters
                        .iter()
                        .map(|f| 2 + f.as_bytes().len())
                        .sum::<usize>()
            }
            Packet::UnsubAck(u) => {
                props = self.props_len(&u.properties, Context::UnsubAck)?;
                if v5 {
                    if u.reason_codes.is_empty() {
                        return Err(Error::unencodable(
                            "UNSUBACK without reason codes",
                            "[MQTT-5.0 §3.11.3]",
                        ));
                    }
                    for c in &u.reason_codes {
                        self.check_reason(*c, PacketType::UnsubAck)?;
                    }
                } else if !u.reason_codes.is_empty() {
                    return Err(v5_only("UNSUBACK reason codes"));
                }
                2 + self.block(props) + if v5 { u.reason_codes.len() } else { 0 }
            }
            Packet::PingReq | Packet::PingResp => 0,
            Packet::Disconnect(d) => {
                self.check_reason(d.reason_code, PacketType::Disconnect)?;
                props = self.props_len(&d.properties, Context::Disconnect)?;
                if !v5 || (props == 0 && d.reason_code == ReasonCode::SUCCESS) {
                    0
                } else if props == 0 {
                    1
                } else {
                    1 + self.block(props)
                }
            }
            Packet::Auth(a) => {
                if !v5 {
                    return Err(v5_only("AUTH"));
                }
                self.check_reason(a.reason_code, PacketType::Auth)?;
                props = self.props_len(&a.properties, Context::Auth)?;
                if props == 0 && a.reason_code == ReasonCode::SUCCESS {
                    0
                } else {
                    1 + self.block(props)
                }
            }
        };
        self.check_size(remaining)?;
        Ok(Plan {
            remaining,
            props,
            will_props,
        })
    }

    #[inline]
    fn put_props<B: BufMut>(&self, p: &crate::Properties, len: usize, buf: &mut B) {
        if self.version == ProtocolVersion::V5 {
            p.encode(len, buf);
        }
    }

    /// Everything of a PUBLISH after the fixed header.
    fn write_publish_body<B: BufMut>(&self, p: &Publish, props: usize, buf: &mut B) {
        let topic = p.topic.as_ref().map(|t| t.as_bytes()).unwrap_or_default();
        buf.put_u16(topic.len() as u16);
        buf.put_slice(topic);
        if let Some(id) = p.packet_id {
            buf.put_u16(id.get());
        }
        self.put_props(&p.properties, props, buf);
        buf.put_slice(&p.payload);
    }

    fn write<B: BufMut>(&self, packet: &Packet, plan: &Plan, buf: &mut B) {
        let v5 = self.version == ProtocolVersion::V5;
        let first: u8 = match packet {
            Packet::Publish(p) => publish_first_byte(p),
            Packet::PubRel(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) => {
                ((packet.packet_type() as u8) << 4) | 0b0010
            }
            other => (other.packet_type() as u8) << 4,
        };
        buf.put_u8(first);
        put_varint(buf, plan.remaining as u32);
        match packet {
            Packet::Publish(p) => self.write_publish_body(p, plan.props, buf),
            Packet::Connect(c) => {
                buf.put_slice(b"\x00\x04MQTT");
                buf.put_u8(self.version.level());
                let mut flags = 0u8;
                if c.clean_start {
                    flags |= 0x02;
                }
                if let Some(w) = &c.will {
                    flags |= 0x04 | (w.qos.as_u8() << 3);
                    if w.retain {
                        flags |= 0x20;
                    }
                }
                if c.password.is_some() {
                    flags |= 0x40;
                }
                if c.username.is_some() {
                    flags |= 0x80;
                }
                buf.put_u8(flags);
                buf.put_u16(c.keep_alive);
                self.put_props(&c.properties, plan.props, buf);
                put_binary(buf, c.client_id.as_bytes());
                if let Some(w) = &c.will {
                    self.put_props(&w.properties, plan.will_props, buf);
                    put_binary(buf, w.topic.as_bytes());
                    put_binary(buf, &w.payload);
                }
                if let Some(u) = &c.username {
                    put_binary(buf, u.as_bytes());
                }
                if let Some(pw) = &c.password {
                    put_binary(buf, pw);
                }
            }
            Packet::ConnAck(c) => {
                buf.put_u8(u8::from(c.session_present));
                buf.put_u8(c.reason_code.0);
                self.put_props(&c.properties, plan.props, buf);
            }
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
                buf.put_u16(a.packet_id.get());
                if plan.remaining >= 3 {
                    buf.put_u8(a.reason_code.0);
                }
                if plan.remaining >= 4 {
                    self.put_props(&a.properties, plan.props, buf);
                }
            }
            Packet::Subscribe(s) => {
                buf.put_u16(s.packet_id.get());
                self.put_props(&s.properties, plan.props, buf);
                for sub in &s.subscriptions {
                    put_binary(buf, sub.filter.as_bytes());
                    let o = sub.options;
                    let mut b = o.qos.as_u8();
                    if v5 {
                        b |= (u8::from(o.no_local) << 2)
                            | (u8::from(o.retain_as_published) << 3)
                            | ((o.retain_handling as u8) << 4);
                    }
                    buf.put_u8(b);
                }
            }
            Packet::SubAck(s) => {
                buf.put_u16(s.packet_id.get());
                self.put_props(&s.properties, plan.props, buf);
                for c in &s.reason_codes {
                    buf.put_u8(c.0);
                }
            }
            Packet::Unsubscribe(u) => {
                buf.put_u16(u.packet_id.get());
                self.put_props(&u.properties, plan.props, buf);
                for f in &u.filters {
                    put_binary(buf, f.as_bytes());
                }
            }
            Packet::UnsubAck(u) => {
                buf.put_u16(u.packet_id.get());
                self.put_props(&u.properties, plan.props, buf);
                if v5 {
                    for c in &u.reason_codes {
                        buf.put_u8(c.0);
                    }
                }
            }
            Packet::PingReq | Packet::PingResp => {}
            Packet::Disconnect(Disconnect {
                reason_code,
                properties,
            })
            | Packet::Auth(Auth {
                reason_code,
                properties,
            }) => {
                if plan.remaining >= 1 {
                    buf.put_u8(reason_code.0);
                }
                if plan.remaining >= 2 {
                    self.put_props(properties, plan.props, buf);
                }
            }
        }
    }
}

impl Packet {
    /// Encodes this packet for `version` into `buf` (see [`Encoder`]).
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<usize, Error> {
        Encoder::new(version).encode(self, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MqttStr, TopicName};

    /// The PUBLISH fast path writes exactly the bytes of the general path, for remaining
    /// lengths on both sides of the one-, two- and three-byte encodings, both QoS shapes and
    /// both versions.
    #[test]
    fn publish_fast_path_matches_general_path_at_length_boundaries() {
        for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
            let enc = Encoder::new(version);
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
                for payload_len in [
                    0, 100, 118, 119, 120, 121, 16_370, 16_373, 16_374, 16_380, 20_000,
                ] {
                    let mut p =
                        Publish::new(TopicName::new("a/b/c").unwrap(), vec![7u8; payload_len]);
                    p.qos = qos;
                    p.retain = payload_len % 2 == 0;
                    if qos != QoS::AtMostOnce {
                        p.packet_id = PacketId::new(0x1234);
                        p.dup = true;
                    }
                    let mut direct = BytesMut::new();
                    let n = enc.encode_publish(&p, &mut direct).unwrap();
                    let packet = Packet::Publish(p);
                    let mut fast = BytesMut::new();
                    assert_eq!(enc.encode(&packet, &mut fast).unwrap(), n);
                    assert_eq!(fast, direct);
                    let mut general = BytesMut::with_capacity(n);
                    assert_eq!(enc.encode_to(&packet, &mut general).unwrap(), n);
                    assert_eq!(fast, general, "{version:?} {qos:?} payload {payload_len}");
                }
            }
        }
    }

    /// `encode_publish` on what the fast path declines (properties, a topic alias instead of a
    /// topic, invalid flag combinations) gives exactly what `encode` on the packet gives: the
    /// same bytes or the same rule.
    #[test]
    fn encode_publish_general_path_matches_encode() {
        let enc = Encoder::new(ProtocolVersion::V5);
        let mut with_props = Publish::new(TopicName::new("a/b").unwrap(), "x");
        with_props
            .properties
            .user_properties
            .push((MqttStr::new("k").unwrap(), MqttStr::new("v").unwrap()));
        let mut alias_only = Publish::new(TopicName::new("a/b").unwrap(), "y");
        alias_only.topic = None;
        alias_only.properties.topic_alias = std::num::NonZeroU16::new(3);
        let mut no_id = Publish::new(TopicName::new("a").unwrap(), "z");
        no_id.qos = QoS::AtLeastOnce;
        let mut dup0 = Publish::new(TopicName::new("a").unwrap(), "z");
        dup0.dup = true;
        let mut no_topic = Publish::new(TopicName::new("a").unwrap(), "z");
        no_topic.topic = None;
        for p in [with_props, alias_only, no_id, dup0, no_topic] {
            let mut direct = BytesMut::new();
            let mut wrapped = BytesMut::new();
            let a = enc.encode_publish(&p, &mut direct);
            let b = enc.encode(&Packet::Publish(p.clone()), &mut wrapped);
            match (a, b) {
                (Ok(n), Ok(m)) => {
                    assert_eq!(n, m);
                    assert_eq!(direct, wrapped);
                }
                (Err(e), Err(f)) => {
                    assert_eq!(e.rule(), f.rule());
                    assert!(direct.is_empty(), "nothing written on error");
                }
                (a, b) => panic!("{p:?}: {a:?} vs {b:?}"),
            }
        }
        let mut small = BytesMut::new();
        let p = Publish::new(TopicName::new("a/b").unwrap(), vec![0u8; 100]);
        let err = enc
            .with_max_packet_size(50)
            .encode_publish(&p, &mut small)
            .unwrap_err();
        assert_eq!(err.rule(), Some("[MQTT-3.1.2-24]"));
        assert!(small.is_empty());
    }

    /// The small-frame paths (packets of at most 64 or 128 bytes appended to a buffer with room) write
    /// exactly the general path's bytes, after whatever the buffer already held, for every
    /// topic and payload length it covers and the lengths just past it.
    #[test]
    fn small_frame_path_matches_general_path_for_every_length() {
        let topic_chars: Vec<u8> = (0..140).map(|i| b'a' + (i % 26) as u8).collect();
        for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
            let enc = Encoder::new(version);
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
                for topic_len in 1..=130 {
                    let topic = std::str::from_utf8(&topic_chars[..topic_len]).unwrap();
                    for payload_len in 0..=(130 - topic_len.min(130)) {
                        let payload: Vec<u8> = (0..payload_len).map(|i| i as u8 ^ 0xA5).collect();
                        let mut p = Publish::new(TopicName::new(topic).unwrap(), payload);
                        p.retain = payload_len % 3 == 0;
                        if qos != QoS::AtMostOnce {
                            p.qos = qos;
                            p.packet_id = PacketId::new(0xBEEF);
                        }
                        let mut fast = BytesMut::with_capacity(256);
                        fast.put_slice(b"prefix");
                        let n = enc.encode_publish(&p, &mut fast).unwrap();
                        let mut general = BytesMut::with_capacity(256);
                        general.put_slice(b"prefix");
                        let m = enc.encode_to(&Packet::Publish(p), &mut general).unwrap();
                        assert_eq!(n, m);
                        assert_eq!(fast.len(), 6 + n);
                        assert_eq!(
                            fast, general,
                            "{version:?} {qos:?} topic {topic_len} payload {payload_len}"
                        );
                    }
                }
            }
        }
    }
}
