//! MQTT 5.0 properties (§2.2.2): every property of Table 2-4, checked for duplicates, for the packet
//! it appears in, and for forbidden values.

use std::fmt;
use std::num::{NonZeroU16, NonZeroU32};
use std::ops::{Deref, DerefMut};

use bytes::{BufMut, Bytes};

use crate::Error;
use crate::decode::Reader;
use crate::packet::QoS;
use crate::topic::{MqttStr, TopicName, check_mqtt_str};

/// The largest value a Variable Byte Integer can hold (MQTT 5.0 §1.5.5).
pub const MAX_VARINT: u32 = 268_435_455;

/// The properties of one packet (or of a will). Absent properties are `None`/empty; a property
/// the packet type does not allow must stay absent (the decoder rejects it, the encoder refuses
/// it). User properties keep their order and may repeat; a PUBLISH may carry several
/// subscription identifiers.
///
/// With the `serde` feature it is an object of the properties that are present, keyed by the
/// field names; binary properties are hex strings under `correlation_data_hex` and
/// `authentication_data_hex`, user properties are `[[name, value], ...]`. Unknown keys are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct Properties {
    /// 0x01 Payload Format Indicator: `false` = unspecified bytes, `true` = UTF-8 (PUBLISH, will).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub payload_format_indicator: Option<bool>,
    /// 0x02 Message Expiry Interval in seconds (PUBLISH, will).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub message_expiry_interval: Option<u32>,
    /// 0x03 Content Type (PUBLISH, will).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub content_type: Option<MqttStr>,
    /// 0x08 Response Topic: a topic name, never a filter [MQTT-3.3.2-14] (PUBLISH, will).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub response_topic: Option<TopicName>,
    /// 0x09 Correlation Data (PUBLISH, will).
    #[cfg_attr(
        feature = "serde",
        serde(
            rename = "correlation_data_hex",
            with = "crate::serde::option_hex_bytes",
            skip_serializing_if = "Option::is_none"
        )
    )]
    pub correlation_data: Option<Bytes>,
    /// 0x0B Subscription Identifiers, each 1..=268,435,455 (several in PUBLISH, one in SUBSCRIBE).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub subscription_identifiers: Vec<NonZeroU32>,
    /// 0x11 Session Expiry Interval in seconds (CONNECT, CONNACK, DISCONNECT).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub session_expiry_interval: Option<u32>,
    /// 0x12 Assigned Client Identifier (CONNACK).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub assigned_client_identifier: Option<MqttStr>,
    /// 0x13 Server Keep Alive in seconds (CONNACK).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub server_keep_alive: Option<u16>,
    /// 0x15 Authentication Method (CONNECT, CONNACK, AUTH).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub authentication_method: Option<MqttStr>,
    /// 0x16 Authentication Data (CONNECT, CONNACK, AUTH); needs a method.
    #[cfg_attr(
        feature = "serde",
        serde(
            rename = "authentication_data_hex",
            with = "crate::serde::option_hex_bytes",
            skip_serializing_if = "Option::is_none"
        )
    )]
    pub authentication_data: Option<Bytes>,
    /// 0x17 Request Problem Information (CONNECT).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub request_problem_information: Option<bool>,
    /// 0x18 Will Delay Interval in seconds (will).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub will_delay_interval: Option<u32>,
    /// 0x19 Request Response Information (CONNECT).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub request_response_information: Option<bool>,
    /// 0x1A Response Information (CONNACK).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub response_information: Option<MqttStr>,
    /// 0x1C Server Reference (CONNACK, DISCONNECT).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub server_reference: Option<MqttStr>,
    /// 0x1F Reason String (acknowledgements, DISCONNECT, AUTH).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub reason_string: Option<MqttStr>,
    /// 0x21 Receive Maximum; 0 is a protocol error (CONNECT, CONNACK).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub receive_maximum: Option<NonZeroU16>,
    /// 0x22 Topic Alias Maximum (CONNECT, CONNACK).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub topic_alias_maximum: Option<u16>,
    /// 0x23 Topic Alias; 0 is not permitted [MQTT-3.3.2-8] (PUBLISH).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub topic_alias: Option<NonZeroU16>,
    /// 0x24 Maximum QoS: 0 or 1 (CONNACK).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub maximum_qos: Option<QoS>,
    /// 0x25 Retain Available (CONNACK).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub retain_available: Option<bool>,
    /// 0x26 User Properties, in order, repeatable (every packet with properties). Decoded ones
    /// stay one piece of the packet's property block, copied when short, else a zero-copy
    /// slice (see [`UserProperties`]).
    #[cfg_attr(
        feature = "serde",
        serde(skip_serializing_if = "UserProperties::is_empty")
    )]
    pub user_properties: UserProperties,
    /// 0x27 Maximum Packet Size; 0 is a protocol error (CONNECT, CONNACK).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub maximum_packet_size: Option<NonZeroU32>,
    /// 0x28 Wildcard Subscription Available (CONNACK).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub wildcard_subscription_available: Option<bool>,
    /// 0x29 Subscription Identifiers Available (CONNACK).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub subscription_identifiers_available: Option<bool>,
    /// 0x2A Shared Subscription Available (CONNACK).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub shared_subscription_available: Option<bool>,
}

/// The properties of a packet: a [`Properties`] behind one pointer, allocated only when a property
/// is present, so property-less packets (all of MQTT 3.1.1, most of 5.0) stay small and decode
/// without allocating.
///
/// It dereferences to [`Properties`]: read fields directly (`publish.properties.topic_alias`);
/// writing a field allocates the block on first use. Build one from a [`Properties`] with `into()`.
///
/// ```
/// use thingkit_mqtt::{PacketProperties, Properties};
/// let mut p = PacketProperties::default();
/// assert!(p.is_empty() && p.topic_alias.is_none());
/// p.message_expiry_interval = Some(60);
/// let q: PacketProperties = Properties { message_expiry_interval: Some(60), ..Default::default() }.into();
/// assert_eq!(p, q);
/// ```
#[derive(Clone, Default)]
pub struct PacketProperties(Option<Box<Properties>>);

static EMPTY: Properties = Properties {
    payload_format_indicator: None,
    message_expiry_interval: None,
    content_type: None,
    response_topic: None,
    correlation_data: None,
    subscription_identifiers: Vec::new(),
    session_expiry_interval: None,
    assigned_client_identifier: None,
    server_keep_alive: None,
    authentication_method: None,
    authentication_data: None,
    request_problem_information: None,
    will_delay_interval: None,
    request_response_information: None,
    response_information: None,
    server_reference: None,
    reason_string: None,
    receive_maximum: None,
    topic_alias_maximum: None,
    topic_alias: None,
    maximum_qos: None,
    retain_available: None,
    user_properties: UserProperties::new(),
    maximum_packet_size: None,
    wildcard_subscription_available: None,
    subscription_identifiers_available: None,
    shared_subscription_available: None,
};

impl PacketProperties {
    /// No properties (no allocation).
    pub const fn new() -> Self {
        PacketProperties(None)
    }

    /// Whether no property is set (a pointer check when nothing was ever set).
    pub fn is_empty(&self) -> bool {
        self.0.as_deref().is_none_or(Properties::is_empty)
    }

    /// Boxed properties as they are (the decoder's fast path, which knows one is present).
    pub(crate) fn from_box(p: Box<Properties>) -> Self {
        PacketProperties(Some(p))
    }

    /// The properties by value.
    pub fn into_inner(self) -> Properties {
        self.0.map(|b| *b).unwrap_or_default()
    }
}

impl Deref for PacketProperties {
    type Target = Properties;
    fn deref(&self) -> &Properties {
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl DerefMut for PacketProperties {
    fn deref_mut(&mut self) -> &mut Properties {
        self.0.get_or_insert_with(Box::default)
    }
}

impl PartialEq for PacketProperties {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            _ => **self == **other,
        }
    }
}

impl Eq for PacketProperties {}

impl fmt::Debug for PacketProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl From<Properties> for PacketProperties {
    fn from(p: Properties) -> Self {
        if p.is_empty() {
            PacketProperties(None)
        } else {
            PacketProperties(Some(Box::new(p)))
        }
    }
}

/// Where a property block appears: decides which properties are allowed (MQTT 5.0 Table 2-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    Connect,
    ConnAck,
    Publish,
    Will,
    PubResponse,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl Context {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Context::Connect => "CONNECT",
            Context::ConnAck => "CONNACK",
            Context::Publish => "PUBLISH",
            Context::Will => "will",
            Context::PubResponse => "PUBACK/PUBREC/PUBREL/PUBCOMP",
            Context::Subscribe => "SUBSCRIBE",
            Context::SubAck => "SUBACK",
            Context::Unsubscribe => "UNSUBSCRIBE",
            Context::UnsubAck => "UNSUBACK",
            Context::Disconnect => "DISCONNECT",
            Context::Auth => "AUTH",
        }
    }
}

/// Whether property `id` may appear in `ctx`.
fn allowed(id: u32, ctx: Context) -> bool {
    use Context::*;
    match id {
        0x01 | 0x02 | 0x03 | 0x08 | 0x09 => matches!(ctx, Publish | Will),
        0x0B => matches!(ctx, Publish | Subscribe),
        0x11 => matches!(ctx, Connect | ConnAck | Disconnect),
        0x12 | 0x13 | 0x1A | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => ctx == ConnAck,
        0x15 | 0x16 => matches!(ctx, Connect | ConnAck | Auth),
        0x17 | 0x19 => ctx == Connect,
        0x18 => ctx == Will,
        0x1C => matches!(ctx, ConnAck | Disconnect),
        0x1F => matches!(
            ctx,
            ConnAck | PubResponse | SubAck | UnsubAck | Disconnect | Auth
        ),
        0x21 | 0x22 | 0x27 => matches!(ctx, Connect | ConnAck),
        0x23 => ctx == Publish,
        0x26 => true,
        _ => false,
    }
}

/// Number of bytes of `v` as a Variable Byte Integer.
pub(crate) fn varint_len(v: u32) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

#[inline]
pub(crate) fn put_varint(buf: &mut impl BufMut, mut v: u32) {
    loop {
        let mut byte = (v % 128) as u8;
        v /= 128;
        if v > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if v == 0 {
            break;
        }
    }
}

pub(crate) fn binary_len_checked(what: &str, b: &[u8]) -> Result<usize, Error> {
    if b.len() > 65_535 {
        return Err(Error::unencodable(
            format!("{what} is {} bytes; binary data is at most 65,535", b.len()),
            "[MQTT-1.5.6]",
        ));
    }
    Ok(2 + b.len())
}

fn put_str<B: BufMut>(buf: &mut B, id: u8, s: &[u8]) {
    buf.put_u8(id);
    buf.put_u16(s.len() as u16);
    buf.put_slice(s);
}

pub(crate) fn put_binary(buf: &mut impl BufMut, b: &[u8]) {
    // Callers check the length with `binary_len_checked` first.
    buf.put_u16(b.len() as u16);
    buf.put_slice(b);
}

impl Properties {
    /// Whether no property is set.
    pub fn is_empty(&self) -> bool {
        let p = self;
        p.payload_format_indicator.is_none()
            && p.message_expiry_interval.is_none()
            && p.content_type.is_none()
            && p.response_topic.is_none()
            && p.correlation_data.is_none()
            && p.subscription_identifiers.is_empty()
            && p.session_expiry_interval.is_none()
            && p.assigned_client_identifier.is_none()
            && p.server_keep_alive.is_none()
            && p.authentication_method.is_none()
            && p.authentication_data.is_none()
            && p.request_problem_information.is_none()
            && p.will_delay_interval.is_none()
            && p.request_response_information.is_none()
            && p.response_information.is_none()
            && p.server_reference.is_none()
            && p.reason_string.is_none()
            && p.receive_maximum.is_none()
            && p.topic_alias_maximum.is_none()
            && p.topic_alias.is_none()
            && p.maximum_qos.is_none()
            && p.retain_available.is_none()
            && p.user_properties.is_empty()
            && p.maximum_packet_size.is_none()
            && p.wildcard_subscription_available.is_none()
            && p.subscription_identifiers_available.is_none()
            && p.shared_subscription_available.is_none()
    }

    /// Checks the properties against the packet context and the value rules, and returns the
    /// length of the encoded property block without its length prefix.
    pub(crate) fn encoded_len(&self, ctx: Context) -> Result<usize, Error> {
        let mut len = 0usize;
        let mut need = |id: u32, present: bool, size: usize| -> Result<(), Error> {
            if present {
                if !allowed(id, ctx) {
                    return Err(Error::unencodable(
                        format!("property 0x{id:02X} is not allowed in {}", ctx.name()),
                        "[MQTT-5.0 §2.2.2.2]",
                    ));
                }
                len += size;
            }
            Ok(())
        };
        let p = self;
        need(0x01, p.payload_format_indicator.is_some(), 2)?;
        need(0x02, p.message_expiry_interval.is_some(), 5)?;
        need(
            0x03,
            p.content_type.is_some(),
            p.content_type.as_ref().map_or(0, |s| 3 + s.len()),
        )?;
        need(
            0x08,
            p.response_topic.is_some(),
            p.response_topic.as_ref().map_or(0, |s| 3 + s.len()),
        )?;
        if let Some(c) = &p.correlation_data {
            need(0x09, true, 1 + binary_len_checked("correlation data", c)?)?;
        }
        if ctx == Context::Subscribe && p.subscription_identifiers.len() > 1 {
            return Err(Error::unencodable(
                "SUBSCRIBE carries at most one subscription identifier",
                "[MQTT-5.0 §3.8.2.1.2]",
            ));
        }
        for id in &p.subscription_identifiers {
            if id.get() > MAX_VARINT {
                return Err(Error::unencodable(
                    format!("subscription identifier {id} is above 268,435,455"),
                    "[MQTT-5.0 §3.3.2.3.8]",
                ));
            }
            need(0x0B, true, 1 + varint_len(id.get()))?;
        }
        need(0x11, p.session_expiry_interval.is_some(), 5)?;
        need(
            0x12,
            p.assigned_client_identifier.is_some(),
            p.assigned_client_identifier
                .as_ref()
                .map_or(0, |s| 3 + s.len()),
        )?;
        need(0x13, p.server_keep_alive.is_some(), 3)?;
        need(
            0x15,
            p.authentication_method.is_some(),
            p.authentication_method.as_ref().map_or(0, |s| 3 + s.len()),
        )?;
        if let Some(d) = &p.authentication_data {
            if p.authentication_method.is_none() {
                return Err(Error::unencodable(
                    "authentication data without an authentication method",
                    "[MQTT-5.0 §3.1.2.11.10]",
                ));
            }
            need(
                0x16,
                true,
                1 + binary_len_checked("authentication data", d)?,
            )?;
        }
        need(0x17, p.request_problem_information.is_some(), 2)?;
        need(0x18, p.will_delay_interval.is_some(), 5)?;
        need(0x19, p.request_response_information.is_some(), 2)?;
        need(
            0x1A,
            p.response_information.is_some(),
            p.response_information.as_ref().map_or(0, |s| 3 + s.len()),
        )?;
        need(
            0x1C,
            p.server_reference.is_some(),
            p.server_reference.as_ref().map_or(0, |s| 3 + s.len()),
        )?;
        need(
            0x1F,
            p.reason_string.is_some(),
            p.reason_string.as_ref().map_or(0, |s| 3 + s.len()),
        )?;
        need(0x21, p.receive_maximum.is_some(), 3)?;
        need(0x22, p.topic_alias_maximum.is_some(), 3)?;
        need(0x23, p.topic_alias.is_some(), 3)?;
        if p.maximum_qos == Some(QoS::ExactlyOnce) {
            return Err(Error::unencodable(
                "Maximum QoS is 0 or 1 (absent means 2)",
                "[MQTT-5.0 §3.2.2.3.4]",
            ));
        }
        need(0x24, p.maximum_qos.is_some(), 2)?;
        need(0x25, p.retain_available.is_some(), 2)?;
        for (k, v) in &p.user_properties {
            need(0x26, true, 5 + k.len() + v.len())?;
        }
        need(0x27, p.maximum_packet_size.is_some(), 5)?;
        need(0x28, p.wildcard_subscription_available.is_some(), 2)?;
        need(0x29, p.subscription_identifiers_available.is_some(), 2)?;
        need(0x2A, p.shared_subscription_available.is_some(), 2)?;
        if len > MAX_VARINT as usize {
            return Err(Error::unencodable(
                "properties exceed the largest Variable Byte Integer",
                "[MQTT-5.0 §1.5.5]",
            ));
        }
        Ok(len)
    }

    /// Writes the property block (length prefix included). `len` comes from `encoded_len`.
    pub(crate) fn encode(&self, len: usize, buf: &mut impl BufMut) {
        put_varint(buf, len as u32);
        if len == 0 {
            return;
        }
        let p = self;
        if let Some(v) = p.payload_format_indicator {
            buf.put_u8(0x01);
            buf.put_u8(v as u8);
        }
        if let Some(v) = p.message_expiry_interval {
            buf.put_u8(0x02);
            buf.put_u32(v);
        }
        if let Some(s) = &p.content_type {
            put_str(buf, 0x03, s.as_bytes());
        }
        if let Some(s) = &p.response_topic {
            put_str(buf, 0x08, s.as_bytes());
        }
        if let Some(s) = &p.correlation_data {
            put_str(buf, 0x09, s);
        }
        for id in &p.subscription_identifiers {
            buf.put_u8(0x0B);
            put_varint(buf, id.get());
        }
        if let Some(v) = p.session_expiry_interval {
            buf.put_u8(0x11);
            buf.put_u32(v);
        }
        if let Some(s) = &p.assigned_client_identifier {
            put_str(buf, 0x12, s.as_bytes());
        }
        if let Some(v) = p.server_keep_alive {
            buf.put_u8(0x13);
            buf.put_u16(v);
        }
        if let Some(s) = &p.authentication_method {
            put_str(buf, 0x15, s.as_bytes());
        }
        if let Some(s) = &p.authentication_data {
            put_str(buf, 0x16, s);
        }
        if let Some(v) = p.request_problem_information {
            buf.put_u8(0x17);
            buf.put_u8(v as u8);
        }
        if let Some(v) = p.will_delay_interval {
            buf.put_u8(0x18);
            buf.put_u32(v);
        }
        if let Some(v) = p.request_response_information {
            buf.put_u8(0x19);
            buf.put_u8(v as u8);
        }
        if let Some(s) = &p.response_information {
            put_str(buf, 0x1A, s.as_bytes());
        }
        if let Some(s) = &p.server_reference {
            put_str(buf, 0x1C, s.as_bytes());
        }
        if let Some(s) = &p.reason_string {
            put_str(buf, 0x1F, s.as_bytes());
        }
        if let Some(v) = p.receive_maximum {
            buf.put_u8(0x21);
            buf.put_u16(v.get());
        }
        if let Some(v) = p.topic_alias_maximum {
            buf.put_u8(0x22);
            buf.put_u16(v);
        }
        if let Some(v) = p.topic_alias {
            buf.put_u8(0x23);
            buf.put_u16(v.get());
        }
        if let Some(v) = p.maximum_qos {
            buf.put_u8(0x24);
            buf.put_u8(v.as_u8());
        }
        if let Some(v) = p.retain_available {
            buf.put_u8(0x25);
            buf.put_u8(v as u8);
        }
        for (k, v) in &p.user_properties {
            buf.put_u8(0x26);
            buf.put_u16(k.len() as u16);
            buf.put_slice(k.as_bytes());
            buf.put_u16(v.len() as u16);
            buf.put_slice(v.as_bytes());
        }
        if let Some(v) = p.maximum_packet_size {
            buf.put_u8(0x27);
            buf.put_u32(v.get());
        }
        if let Some(v) = p.wildcard_subscription_available {
            buf.put_u8(0x28);
            buf.put_u8(v as u8);
        }
        if let Some(v) = p.subscription_identifiers_available {
            buf.put_u8(0x29);
            buf.put_u8(v as u8);
        }
        if let Some(v) = p.shared_subscription_available {
            buf.put_u8(0x2A);
            buf.put_u8(v as u8);
        }
    }

    /// Decodes a property block (length prefix included) for `ctx`.
    pub(crate) fn decode(r: &mut Reader<'_>, ctx: Context) -> Result<Properties, Error> {
        let len_at = r.pos();
        let len = r.varint("property length")? as usize;
        if len > r.remaining() {
            return Err(r.err(
                len_at,
                format!(
                    "property length {len} runs past the end of the packet ({} bytes left)",
                    r.remaining()
                ),
                r.truncation_rule(),
            ));
        }
        let mut p = Properties::default();
        if len == 0 {
            return Ok(p);
        }
        let end = r.pos() + len;
        let outer_end = r.set_end(end);
        let mut seen: u64 = 0;
        let mut user_properties = 0usize;
        // Where the first user property starts: the pairs are kept from there on.
        let mut user_from = None;
        while r.remaining() > 0 {
            let at = r.pos();
            let id = r.varint("property identifier")?;
            if !(1..=0x2A).contains(&id) || !allowed_known(id) {
                return Err(r.err(
                    at,
                    format!("unknown property identifier 0x{id:02X}"),
                    "[MQTT-5.0 §2.2.2.2]",
                ));
            }
            if !allowed(id, ctx) {
                return Err(r.err(
                    at,
                    format!("property 0x{id:02X} is not allowed in {}", ctx.name()),
                    "[MQTT-5.0 §2.2.2.2]",
                ));
            }
            let repeatable = id == 0x26 || (id == 0x0B && ctx == Context::Publish);
            let bit = 1u64 << id;
            if !repeatable && seen & bit != 0 {
                return Err(r.err(
                    at,
                    format!("property 0x{id:02X} appears more than once"),
                    "[MQTT-5.0 §2.2.2.2]",
                ));
            }
            seen |= bit;
            let bool_byte = |r: &mut Reader<'_>, name: &str| -> Result<bool, Error> {
                let vat = r.pos();
                match r.u8(name)? {
                    0 => Ok(false),
                    1 => Ok(true),
                    v => Err(r.err(
                        vat,
                        format!("{name} is {v}; only 0 or 1 are allowed"),
                        "[MQTT-5.0 §2.2.2.2]",
                    )),
                }
            };
            match id {
                0x01 => {
                    p.payload_format_indicator = Some(bool_byte(r, "payload format indicator")?)
                }
                0x02 => p.message_expiry_interval = Some(r.u32("message expiry interval")?),
                0x03 => p.content_type = Some(r.string("content type")?),
                0x08 => {
                    let t = r.topic_name("response topic")?;
                    p.response_topic = Some(t)
                }
                0x09 => p.correlation_data = Some(r.binary("correlation data")?),
                0x0B => {
                    let vat = r.pos();
                    let v = r.varint("subscription identifier")?;
                    let Some(v) = NonZeroU32::new(v) else {
                        return Err(r.err(
                            vat,
                            "subscription identifier is 0",
                            "[MQTT-5.0 §3.3.2.3.8]",
                        ));
                    };
                    p.subscription_identifiers.push(v);
                }
                0x11 => p.session_expiry_interval = Some(r.u32("session expiry interval")?),
                0x12 => {
                    p.assigned_client_identifier = Some(r.string("assigned client identifier")?)
                }
                0x13 => p.server_keep_alive = Some(r.u16("server keep alive")?),
                0x15 => p.authentication_method = Some(r.string("authentication method")?),
                0x16 => p.authentication_data = Some(r.binary("authentication data")?),
                0x17 => {
                    p.request_problem_information =
                        Some(bool_byte(r, "request problem information")?)
                }
                0x18 => p.will_delay_interval = Some(r.u32("will delay interval")?),
                0x19 => {
                    p.request_response_information =
                        Some(bool_byte(r, "request response information")?)
                }
                0x1A => p.response_information = Some(r.string("response information")?),
                0x1C => p.server_reference = Some(r.string("server reference")?),
                0x1F => p.reason_string = Some(r.string("reason string")?),
                0x21 => {
                    let vat = r.pos();
                    let v = r.u16("receive maximum")?;
                    p.receive_maximum = Some(NonZeroU16::new(v).ok_or_else(|| {
                        r.err(vat, "receive maximum is 0", "[MQTT-5.0 §3.1.2.11.3]")
                    })?);
                }
                0x22 => p.topic_alias_maximum = Some(r.u16("topic alias maximum")?),
                0x23 => {
                    let vat = r.pos();
                    let v = r.u16("topic alias")?;
                    p.topic_alias = Some(
                        NonZeroU16::new(v)
                            .ok_or_else(|| r.err(vat, "topic alias is 0", "[MQTT-3.3.2-8]"))?,
                    );
                }
                0x24 => {
                    let vat = r.pos();
                    p.maximum_qos = Some(match r.u8("maximum QoS")? {
                        0 => QoS::AtMostOnce,
                        1 => QoS::AtLeastOnce,
                        v => {
                            return Err(r.err(
                                vat,
                                format!("maximum QoS is {v}; only 0 or 1 are allowed"),
                                "[MQTT-5.0 §3.2.2.3.4]",
                            ));
                        }
                    });
                }
                0x25 => p.retain_available = Some(bool_byte(r, "retain available")?),
                0x26 => {
                    r.string_check("user property name")?;
                    r.string_check("user property value")?;
                    user_properties += 1;
                    user_from.get_or_insert(at);
                }
                0x27 => {
                    let vat = r.pos();
                    let v = r.u32("maximum packet size")?;
                    p.maximum_packet_size = Some(NonZeroU32::new(v).ok_or_else(|| {
                        r.err(vat, "maximum packet size is 0", "[MQTT-5.0 §3.1.2.11.4]")
                    })?);
                }
                0x28 => {
                    p.wildcard_subscription_available =
                        Some(bool_byte(r, "wildcard subscription available")?)
                }
                0x29 => {
                    p.subscription_identifiers_available =
                        Some(bool_byte(r, "subscription identifiers available")?)
                }
                0x2A => {
                    p.shared_subscription_available =
                        Some(bool_byte(r, "shared subscription available")?)
                }
                _ => unreachable!("identifiers were checked against the known set above"),
            }
        }
        p.user_properties = r.user_properties(user_from.unwrap_or(end)..end, user_properties);
        r.set_end(outer_end);
        if p.authentication_data.is_some() && p.authentication_method.is_none() {
            return Err(r.err(
                len_at,
                "authentication data without an authentication method",
                "[MQTT-5.0 §3.1.2.11.10]",
            ));
        }
        Ok(p)
    }
}

fn allowed_known(id: u32) -> bool {
    matches!(
        id,
        0x01 | 0x02
            | 0x03
            | 0x08
            | 0x09
            | 0x0B
            | 0x11
            | 0x12
            | 0x13
            | 0x15
            | 0x16
            | 0x17
            | 0x18
            | 0x19
            | 0x1A
            | 0x1C
            | 0x1F
            | 0x21
            | 0x22
            | 0x23
            | 0x24
            | 0x25
            | 0x26
            | 0x27
            | 0x28
            | 0x29
            | 0x2A
    )
}

/// The User Properties (0x26) of a packet, in order, names and values as MQTT strings.
///
/// A decoded packet's user properties are not copied out one by one: they stay as they arrived,
/// one piece of the (already validated) property block, and [`iter`](Self::iter) walks it. A
/// short piece (up to 108 bytes: a few pairs of the usual size) is copied into the value itself;
/// a longer one is a zero-copy `Bytes` slice of the packet. Properties built in code live in a
/// `Vec`. All compare equal when they hold the same pairs in the same order;
/// [`push`](Self::push) on a decoded value first moves its pairs into a `Vec`.
///
/// ```
/// use thingkit_mqtt::{MqttStr, UserProperties};
/// let mut u = UserProperties::new();
/// u.push((MqttStr::new("trace-id")?, MqttStr::new("7f3a")?));
/// assert_eq!(u.iter().collect::<Vec<_>>(), [("trace-id", "7f3a")]);
/// assert_eq!(u.get("trace-id"), Some("7f3a"));
/// # Ok::<(), thingkit_mqtt::Error>(())
/// ```
#[derive(Clone)]
pub struct UserProperties(UserRepr);

#[derive(Clone)]
enum UserRepr {
    /// None (what `new` and `Default` give): nothing to drop, so filling a defaulted value in
    /// place costs no call to a `Vec`'s drop.
    Empty,
    Owned(Vec<(MqttStr, MqttStr)>),
    /// A validated property block holding `count` user properties among other properties.
    Wire {
        block: Bytes,
        count: usize,
    },
    /// A short validated block, copied: `buf[..len]` holds `count` user properties (and maybe
    /// other properties). No reference count to take and release, which for a decoded PUBLISH
    /// is a locked instruction pair per packet (about 15 ns per PUBLISH on the 5.0 bench stream).
    Inline {
        len: u8,
        count: u8,
        buf: [u8; INLINE_USER],
    },
}

/// The longest block [`UserRepr::Inline`] holds: the enum stays at 112 bytes, inside the
/// boxed [`Properties`] it belongs to.
const INLINE_USER: usize = 108;

impl UserProperties {
    /// No user properties (no allocation).
    pub const fn new() -> Self {
        UserProperties(UserRepr::Empty)
    }

    /// The user properties of the validated block `frame[range]`: copied when short, else a
    /// slice sharing `frame`.
    #[inline]
    pub(crate) fn from_frame(frame: &Bytes, range: std::ops::Range<usize>, count: usize) -> Self {
        let mut u = Self::new();
        u.set_from_frame(frame, range, count);
        u
    }

    /// [`from_frame`](Self::from_frame) in place (a boxed [`Properties`] is filled where it
    /// is, instead of building the 112-byte value on the stack and moving it in).
    #[inline]
    pub(crate) fn set_from_frame(
        &mut self,
        frame: &Bytes,
        range: std::ops::Range<usize>,
        count: usize,
    ) {
        // The callers' ranges lie inside the validated block, so `get` always succeeds; were
        // it not to, no pairs (rather than `Bytes::slice`'s panic).
        let Some(block) = frame.get(range.clone()) else {
            *self = Self::new();
            return;
        };
        match (u8::try_from(block.len()), u8::try_from(count)) {
            _ if count == 0 => *self = Self::new(),
            (Ok(len), Ok(n)) if block.len() <= INLINE_USER => {
                self.0 = UserRepr::Inline {
                    len,
                    count: n,
                    buf: [0; INLINE_USER],
                };
                if let UserRepr::Inline { buf, .. } = &mut self.0
                    && let Some(dst) = buf.get_mut(..block.len())
                {
                    dst.copy_from_slice(block);
                }
            }
            _ => {
                self.0 = UserRepr::Wire {
                    block: frame.slice(range),
                    count,
                }
            }
        }
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        match &self.0 {
            UserRepr::Empty => 0,
            UserRepr::Owned(v) => v.len(),
            UserRepr::Wire { count, .. } => *count,
            UserRepr::Inline { count, .. } => usize::from(*count),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pairs in order, as `(name, value)`.
    pub fn iter(&self) -> UserPropertiesIter<'_> {
        UserPropertiesIter(match &self.0 {
            UserRepr::Empty => IterRepr::Wire(&[]),
            UserRepr::Owned(v) => IterRepr::Owned(v.iter()),
            UserRepr::Wire { block, .. } => IterRepr::Wire(block),
            UserRepr::Inline { len, buf, .. } => {
                IterRepr::Wire(buf.get(..usize::from(*len)).unwrap_or_default())
            }
        })
    }

    /// The value of the first pair named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// The pairs as owned strings (zero-copy when they are a slice of the packet; the pairs of
    /// a short block held in place are copied).
    pub fn to_vec(&self) -> Vec<(MqttStr, MqttStr)> {
        let block = match &self.0 {
            UserRepr::Empty => return Vec::new(),
            UserRepr::Owned(v) => return v.clone(),
            UserRepr::Wire { block, .. } => block.clone(),
            UserRepr::Inline { len, buf, .. } => {
                Bytes::copy_from_slice(buf.get(..usize::from(*len)).unwrap_or_default())
            }
        };
        let mut out = Vec::with_capacity(self.len());
        let mut rest: &[u8] = &block;
        while let Some((id, value, tail)) = split_property(rest) {
            rest = tail;
            if id == 0x26
                && let Some((k, v)) = split_pair(value)
            {
                out.push((
                    MqttStr::from_validated(block.slice_ref(k)),
                    MqttStr::from_validated(block.slice_ref(v)),
                ));
            }
        }
        out
    }

    /// Appends a `(name, value)` pair.
    pub fn push(&mut self, pair: (MqttStr, MqttStr)) {
        if !matches!(self.0, UserRepr::Owned(_)) {
            self.0 = UserRepr::Owned(self.to_vec());
        }
        if let UserRepr::Owned(v) = &mut self.0 {
            v.push(pair);
        }
    }
}

impl Default for UserProperties {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for UserProperties {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for UserProperties {}

impl fmt::Debug for UserProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl From<Vec<(MqttStr, MqttStr)>> for UserProperties {
    fn from(v: Vec<(MqttStr, MqttStr)>) -> Self {
        UserProperties(UserRepr::Owned(v))
    }
}

impl FromIterator<(MqttStr, MqttStr)> for UserProperties {
    fn from_iter<I: IntoIterator<Item = (MqttStr, MqttStr)>>(iter: I) -> Self {
        UserProperties(UserRepr::Owned(iter.into_iter().collect()))
    }
}

impl<'a> IntoIterator for &'a UserProperties {
    type Item = (&'a str, &'a str);
    type IntoIter = UserPropertiesIter<'a>;
    fn into_iter(self) -> UserPropertiesIter<'a> {
        self.iter()
    }
}

/// Iterator over [`UserProperties`] (or a [`PublishView`](crate::PublishView)'s), yielding
/// `(name, value)`.
#[derive(Debug, Clone)]
pub struct UserPropertiesIter<'a>(IterRepr<'a>);

#[derive(Debug, Clone)]
enum IterRepr<'a> {
    Owned(std::slice::Iter<'a, (MqttStr, MqttStr)>),
    Wire(&'a [u8]),
}

impl<'a> UserPropertiesIter<'a> {
    /// The user properties of a validated property block (without its length prefix).
    pub(crate) fn wire(block: &'a [u8]) -> Self {
        UserPropertiesIter(IterRepr::Wire(block))
    }
}

impl<'a> Iterator for UserPropertiesIter<'a> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        match &mut self.0 {
            IterRepr::Owned(it) => it.next().map(|(k, v)| (k.as_str(), v.as_str())),
            IterRepr::Wire(rest) => loop {
                let (id, value, tail) = split_property(rest)?;
                *rest = tail;
                if id == 0x26
                    && let Some((k, v)) = split_pair(value)
                {
                    // Validated as MQTT strings when the block was decoded, so these succeed;
                    // ASCII (the usual case) without `from_utf8`'s byte walk.
                    let text = |b| {
                        crate::cpu::ascii_str(b).map_or_else(|| std::str::from_utf8(b).ok(), Some)
                    };
                    if let (Some(k), Some(v)) = (text(k), text(v)) {
                        return Some((k, v));
                    }
                }
            },
        }
    }
}

/// Splits the first property off a property block the decoder has validated (one-byte
/// identifiers, every value complete): `(identifier, value, rest)`; `None` at the end.
#[inline]
pub(crate) fn split_property(block: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&id, rest) = block.split_first()?;
    let prefixed = |at: usize| -> Option<usize> {
        let (len, _) = rest.get(at..)?.split_first_chunk::<2>()?;
        Some(at + 2 + usize::from(u16::from_be_bytes(*len)))
    };
    let n = match id {
        0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
        0x13 | 0x21 | 0x22 | 0x23 => 2,
        0x02 | 0x11 | 0x18 | 0x27 => 4,
        0x0B => 1 + rest.iter().take(4).position(|b| b & 0x80 == 0)?,
        0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1A | 0x1C | 0x1F => prefixed(0)?,
        0x26 => prefixed(prefixed(0)?)?,
        _ => return None,
    };
    let (value, tail) = rest.split_at_checked(n)?;
    Some((id, value, tail))
}

/// A user property's value bytes split into name and value (without length prefixes).
#[inline]
fn split_pair(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = value.split_first_chunk::<2>()?;
    let (k, rest) = rest.split_at_checked(usize::from(u16::from_be_bytes(*len)))?;
    let (len, rest) = rest.split_first_chunk::<2>()?;
    let v = rest.get(..usize::from(u16::from_be_bytes(*len)))?;
    Some((k, v))
}

/// What one validating pass over a PUBLISH property block found (ranges are block-relative).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PublishScan {
    pub(crate) payload_format_indicator: Option<bool>,
    pub(crate) message_expiry_interval: Option<u32>,
    pub(crate) topic_alias: Option<NonZeroU16>,
    pub(crate) content_type: Option<(usize, usize)>,
    pub(crate) response_topic: Option<(usize, usize)>,
    pub(crate) correlation_data: Option<(usize, usize)>,
    pub(crate) user_properties: usize,
    /// Where the first user property's identifier is in the block.
    pub(crate) user_properties_from: Option<usize>,
    /// The block's length.
    pub(crate) block_len: usize,
    pub(crate) subscription_identifiers: usize,
}

/// Checks a PUBLISH property block (without its length prefix) against every rule
/// [`Properties::decode`] applies to it in a PUBLISH (known identifier, allowed in PUBLISH, not
/// repeated unless repeatable, values in range, strings and the response topic valid, varints
/// minimal), without allocating. `None` on any violation — or anything unusual, such as a
/// multi-byte identifier: the general decoder then decides and names the rule.
///
/// One pass that reads each value once, straight from the identifier (it does not go through
/// [`split_property`] and then re-split a user property's pair): on the 5.0 bench stream this
/// pass was about 500 instructions per PUBLISH when it did (callgrind).
#[inline]
pub(crate) fn scan_publish_block(block: &[u8]) -> Option<PublishScan> {
    /// A two-byte length and that many bytes: `(bytes, rest)`.
    #[inline(always)]
    fn prefixed(input: &[u8]) -> Option<(&[u8], &[u8])> {
        let (len, rest) = input.split_first_chunk::<2>()?;
        rest.split_at_checked(usize::from(u16::from_be_bytes(*len)))
    }
    let mut scan = PublishScan {
        block_len: block.len(),
        ..PublishScan::default()
    };
    let mut seen = 0u64;
    let mut rest = block;
    while let Some((&id, tail)) = rest.split_first() {
        // Block-relative offset of the identifier's value.
        let value_at = block.len() - tail.len();
        let bit = 1u64 << (id & 63);
        if seen & bit != 0 && id != 0x26 && id != 0x0B {
            return None; // repeated, and not repeatable
        }
        seen |= bit;
        rest = match id {
            0x26 => {
                scan.user_properties_from.get_or_insert(value_at - 1);
                // User properties usually come in a run: take the whole run here, without
                // going back through the dispatch for each pair.
                let mut tail = tail;
                loop {
                    let (k, rest) = prefixed(tail)?;
                    let (v, rest) = prefixed(rest)?;
                    check_mqtt_str(k).ok()?;
                    check_mqtt_str(v).ok()?;
                    scan.user_properties += 1;
                    match rest.split_first() {
                        Some((0x26, next)) => tail = next,
                        _ => break rest,
                    }
                }
            }
            0x02 => {
                let (v, tail) = tail.split_first_chunk::<4>()?;
                scan.message_expiry_interval = Some(u32::from_be_bytes(*v));
                tail
            }
            0x23 => {
                let (v, tail) = tail.split_first_chunk::<2>()?;
                scan.topic_alias = Some(NonZeroU16::new(u16::from_be_bytes(*v))?);
                tail
            }
            0x01 => {
                let (&v, tail) = tail.split_first()?;
                scan.payload_format_indicator = Some(match v {
                    0 => false,
                    1 => true,
                    _ => return None,
                });
                tail
            }
            0x03 => {
                let (s, tail) = prefixed(tail)?;
                check_mqtt_str(s).ok()?;
                scan.content_type = Some((value_at + 2, s.len()));
                tail
            }
            0x08 => {
                let (s, tail) = prefixed(tail)?;
                TopicName::validate_wire(s).ok()?;
                scan.response_topic = Some((value_at + 2, s.len()));
                tail
            }
            0x09 => {
                let (s, tail) = prefixed(tail)?;
                scan.correlation_data = Some((value_at + 2, s.len()));
                tail
            }
            0x0B => {
                // A Variable Byte Integer of at most four bytes, non-zero and minimal (a
                // multi-byte one does not end in a zero byte).
                let n = 1 + tail.iter().take(4).position(|b| b & 0x80 == 0)?;
                let (value, tail) = tail.split_at_checked(n)?;
                let last = *value.last()?;
                if value.iter().all(|&b| b & 0x7F == 0) || (n > 1 && last == 0) {
                    return None;
                }
                scan.subscription_identifiers += 1;
                tail
            }
            _ => return None,
        };
    }
    Some(scan)
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::{INLINE_USER, UserProperties, UserRepr};
    use crate::{
        Decoder, Encoder, MqttStr, Packet, Properties, ProtocolVersion, Publish, TopicName,
    };

    /// A 5.0 PUBLISH with `pairs` user properties (and a message expiry before them), encoded
    /// and decoded through `decode` (the fast path) and `decode_bytes` (the general one).
    fn decoded(pairs: &[(String, String)]) -> [UserProperties; 2] {
        let mut p = Publish::new(TopicName::new("a/b").unwrap(), &b"x"[..]);
        let mut props = Properties {
            message_expiry_interval: Some(60),
            ..Default::default()
        };
        for (k, v) in pairs {
            props
                .user_properties
                .push((MqttStr::new(k).unwrap(), MqttStr::new(v).unwrap()));
        }
        p.properties = props.into();
        let mut buf = BytesMut::new();
        Encoder::new(ProtocolVersion::V5)
            .encode_publish(&p, &mut buf)
            .unwrap();
        let mut bytes = buf.clone().freeze();
        let fast = Decoder::new(ProtocolVersion::V5).decode(&mut buf).unwrap();
        let general = Decoder::new(ProtocolVersion::V5)
            .decode_bytes(&mut bytes)
            .unwrap();
        [fast, general].map(|packet| match packet {
            Some(Packet::Publish(p)) => p.properties.into_inner().user_properties,
            other => panic!("not a PUBLISH: {other:?}"),
        })
    }

    fn pairs(n: usize, value_len: usize) -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("k{i}"), "v".repeat(value_len)))
            .collect()
    }

    /// The user-property block from the first pair on is `n * (1 + 2 + 2 + 2 + value_len)`
    /// bytes for one-digit names: at most `INLINE_USER` is copied into place, more is a slice,
    /// and both read the same as the pairs built in code.
    #[test]
    fn short_blocks_are_inline_long_ones_shared_and_both_read_alike() {
        assert!(std::mem::size_of::<UserProperties>() <= 112);
        // The boundary cases below: four pairs of 7 + 20 bytes fill the inline buffer exactly.
        assert_eq!(4 * (7 + 20), INLINE_USER);
        for (n, value_len, inline) in [
            (1, 16, true),
            (3, 16, true),
            (4, 20, true),  // 4 * 27 = 108: the largest inline block
            (4, 21, false), // 4 * 28 = 112
            (40, 200, false),
        ] {
            let built: UserProperties = pairs(n, value_len)
                .into_iter()
                .map(|(k, v)| (MqttStr::new(&k).unwrap(), MqttStr::new(&v).unwrap()))
                .collect();
            for mut got in decoded(&pairs(n, value_len)) {
                assert_eq!(
                    matches!(got.0, UserRepr::Inline { .. }),
                    inline,
                    "{n} pairs of {value_len}"
                );
                assert_eq!(got, built);
                assert_eq!(got.len(), n);
                assert_eq!(got.get("k0"), Some("v".repeat(value_len).as_str()));
                assert_eq!(got.to_vec(), built.to_vec());
                assert_eq!(format!("{got:?}"), format!("{built:?}"));
                let copy = got.clone();
                assert_eq!(copy, built);
                got.push((MqttStr::new("last").unwrap(), MqttStr::new("1").unwrap()));
                assert!(matches!(got.0, UserRepr::Owned(_)));
                assert_eq!(got.len(), n + 1);
                assert!(got.iter().take(n).eq(built.iter()));
            }
        }
    }

    /// A run of consecutive user properties between other properties, through both decode paths
    /// (tests/validation.rs checks single pairs between other properties through `decode`): the
    /// fast path's scan takes the run at once, leaves it at the next identifier and comes back.
    #[test]
    fn a_run_of_user_properties_between_others_through_both_paths() {
        let props: &[u8] = &[
            0x26, 0, 1, b'a', 0, 1, b'1', // a=1
            0x23, 0, 7, // topic alias 7
            0x26, 0, 1, b'b', 0, 2, b'2', b'2', // b=22
            0x26, 0, 1, b'a', 0, 0, // a=""
            0x02, 0, 0, 0, 60, // message expiry 60
        ];
        let mut frame = vec![0x30, 0, 0, 3, b'a', b'/', b'b', props.len() as u8];
        frame.extend_from_slice(props);
        frame.extend_from_slice(b"hi");
        frame[1] = (frame.len() - 2) as u8;
        let mut buf = BytesMut::from(&frame[..]);
        let mut bytes = buf.clone().freeze();
        let fast = Decoder::new(ProtocolVersion::V5).decode(&mut buf).unwrap();
        let general = Decoder::new(ProtocolVersion::V5)
            .decode_bytes(&mut bytes)
            .unwrap();
        for packet in [fast, general] {
            let Some(Packet::Publish(p)) = packet else {
                panic!("not a PUBLISH: {packet:?}")
            };
            assert_eq!(p.properties.topic_alias.map(|a| a.get()), Some(7));
            assert_eq!(p.properties.message_expiry_interval, Some(60));
            let pairs: Vec<_> = p.properties.user_properties.iter().collect();
            assert_eq!(pairs, [("a", "1"), ("b", "22"), ("a", "")]);
            assert_eq!(p.properties.user_properties.len(), 3);
            assert_eq!(&p.payload[..], b"hi");
        }
    }
}
