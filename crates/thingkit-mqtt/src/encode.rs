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
    #[inline]
    pub fn encode(&self, packet: &Packet, buf: &mut BytesMut) -> Result<usize, Error> {
        if let Packet::Publish(p) = packet
            && let Some(n) = self.encode_plain_publish(p, buf)
        {
            return Ok(n);
        }
        self.encode_general(packet, buf)
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
        if buf.capacity() - buf.len() < total {
            buf.reserve(total);
        }
        let first = 0x30 | (u8::from(p.dup) << 3) | (p.qos.as_u8() << 1) | u8::from(p.retain);
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

    fn plan(&self, packet: &Packet) -> Result<Plan, Error> {
        let v5 = self.version == ProtocolVersion::V5;
        let mut props = 0;
        let mut will_props = 0;
        let remaining = match packet {
            Packet::Publish(p) => {
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
                props = self.props_len(&p.properties, Context::Publish)?;
                2 + topic_len
                    + if p.packet_id.is_some() { 2 } else { 0 }
                    + self.block(props)
                    + p.payload.len()
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

    fn write<B: BufMut>(&self, packet: &Packet, plan: &Plan, buf: &mut B) {
        let v5 = self.version == ProtocolVersion::V5;
        let first: u8 = match packet {
            Packet::Publish(p) => {
                0x30 | (u8::from(p.dup) << 3) | (p.qos.as_u8() << 1) | u8::from(p.retain)
            }
            Packet::PubRel(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) => {
                ((packet.packet_type() as u8) << 4) | 0b0010
            }
            other => (other.packet_type() as u8) << 4,
        };
        buf.put_u8(first);
        put_varint(buf, plan.remaining as u32);
        match packet {
            Packet::Publish(p) => {
                let topic = p.topic.as_ref().map(|t| t.as_bytes()).unwrap_or_default();
                buf.put_u16(topic.len() as u16);
                buf.put_slice(topic);
                if let Some(id) = p.packet_id {
                    buf.put_u16(id.get());
                }
                self.put_props(&p.properties, plan.props, buf);
                buf.put_slice(&p.payload);
            }
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
    use crate::TopicName;

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
                    let packet = Packet::Publish(p);
                    let mut fast = BytesMut::new();
                    let n = enc.encode(&packet, &mut fast).unwrap();
                    let mut general = BytesMut::with_capacity(n);
                    assert_eq!(enc.encode_to(&packet, &mut general).unwrap(), n);
                    assert_eq!(fast, general, "{version:?} {qos:?} payload {payload_len}");
                }
            }
        }
    }
}
