//! `thingkit mqtt`: decode MQTT bytes (hex) to JSON lines and encode JSON back to bytes.
//!
//! The JSON shape: `"type"` is the upper-case packet name; fields are snake_case (`topic`, `qos`,
//! `retain`, `dup`, `packet_id`, `payload_hex`, `reason_code`, `properties`, ...). Binary fields end
//! in `_hex`. `properties` is present only when non-empty; its keys are the snake_case property
//! names of MQTT 5.0 §2.2.2.2 (`topic_alias`, `user_properties` as `[[name, value], ...]`,
//! `correlation_data_hex`, ...).

use std::io::Read;
use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value, json};
use thingkit_mqtt::{
    Auth, ConnAck, Connect, Decoder, DecoderConfig, Disconnect, Encoder, MqttStr, Packet, PacketId,
    PacketProperties, PacketType, Properties, ProtocolVersion, PubResponse, Publish, QoS,
    ReasonCode, RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions, TopicFilter,
    TopicName, UnsubAck, Unsubscribe, Will,
};

use crate::Failure;

/// The protocol version argument.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Protocol {
    /// MQTT 3.1.1.
    #[value(name = "3.1.1")]
    V311,
    /// MQTT 5.0.
    #[value(name = "5.0")]
    V5,
}

impl From<Protocol> for ProtocolVersion {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::V311 => ProtocolVersion::V311,
            Protocol::V5 => ProtocolVersion::V5,
        }
    }
}

/// MQTT subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Decode hex-encoded MQTT packets (argument or standard input; whitespace is ignored) and
    /// print one JSON object per packet. Exits 1 on a malformed or incomplete packet.
    Decode {
        /// Protocol version of the stream.
        #[arg(long, value_enum)]
        protocol: Protocol,
        /// Largest accepted packet in bytes (whole packet, fixed header included).
        #[arg(long, default_value_t = thingkit_mqtt::DEFAULT_MAX_PACKET_SIZE)]
        max_packet_size: u32,
        /// The bytes as hex; read from standard input when absent.
        hex: Option<String>,
    },
    /// Encode packets given as JSON (one object, or several as JSON lines; argument or standard
    /// input) and print each as one line of hex.
    Encode {
        /// Protocol version to encode for.
        #[arg(long, value_enum)]
        protocol: Protocol,
        /// The packet(s) as JSON; read from standard input when absent.
        json: Option<String>,
    },
}

/// Runs an MQTT subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    match args {
        Args::Decode {
            protocol,
            max_packet_size,
            hex,
        } => decode(protocol.into(), max_packet_size, input(hex)?),
        Args::Encode { protocol, json } => encode(protocol.into(), &input(json)?),
    }
}

fn input(arg: Option<String>) -> Result<String, Failure> {
    match arg {
        Some(s) => Ok(s),
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| Failure(format!("reading standard input: {e}")))?;
            Ok(s)
        }
    }
}

/// Hex digits in either case; whitespace between them (line breaks, spaced bytes) is ignored.
fn parse_hex(text: &str) -> Result<Vec<u8>, Failure> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(&digits).map_err(|e| match e {
        hex::FromHexError::InvalidHexCharacter { c, index } => {
            Failure(format!("invalid hex digit {c:?} at digit {index}"))
        }
        hex::FromHexError::OddLength => Failure("hex input has an odd number of digits".into()),
        other => Failure(format!("invalid hex: {other}")),
    })
}

fn decode(version: ProtocolVersion, max_packet_size: u32, text: String) -> Result<(), Failure> {
    let bytes = parse_hex(&text)?;
    let mut buf = BytesMut::from(&bytes[..]);
    let mut decoder = Decoder::new(version)
        .with_config(DecoderConfig::default().with_max_packet_size(max_packet_size));
    let mut out = std::io::stdout().lock();
    loop {
        match decoder.decode(&mut buf)? {
            Some(packet) => {
                use std::io::Write;
                writeln!(out, "{}", packet_to_json(&packet))
                    .map_err(|e| Failure(format!("writing output: {e}")))?;
            }
            None if buf.is_empty() => return Ok(()),
            None => {
                return Err(Failure(format!(
                    "incomplete packet at byte {}: the input ends after {} bytes of it",
                    decoder.position(),
                    buf.len()
                )));
            }
        }
    }
}

fn encode(version: ProtocolVersion, text: &str) -> Result<(), Failure> {
    let encoder = Encoder::new(version);
    let mut any = false;
    for (i, value) in serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .enumerate()
    {
        let value = value.map_err(|e| Failure(format!("invalid JSON: {e}")))?;
        let packet =
            packet_from_json(&value, version).map_err(|e| Failure(format!("packet {i}: {e}")))?;
        let mut buf = BytesMut::new();
        encoder
            .encode(&packet, &mut buf)
            .map_err(|e| Failure(format!("packet {i}: {e}")))?;
        println!("{}", hex::encode(&buf));
        any = true;
    }
    if !any {
        return Err(Failure("no JSON packet in the input".into()));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Packet -> JSON

fn packet_to_json(p: &Packet) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), json!(p.packet_type().name()));
    match p {
        Packet::Connect(c) => {
            m.insert("protocol".into(), json!(c.protocol.to_string()));
            m.insert("clean_start".into(), json!(c.clean_start));
            m.insert("keep_alive".into(), json!(c.keep_alive));
            m.insert("client_id".into(), json!(c.client_id.as_str()));
            if let Some(w) = &c.will {
                let mut wm = Map::new();
                wm.insert("topic".into(), json!(w.topic.as_str()));
                wm.insert("qos".into(), json!(w.qos.as_u8()));
                wm.insert("retain".into(), json!(w.retain));
                wm.insert("payload_hex".into(), json!(hex::encode(&w.payload)));
                put_props(&mut wm, &w.properties);
                m.insert("will".into(), Value::Object(wm));
            }
            if let Some(u) = &c.username {
                m.insert("username".into(), json!(u.as_str()));
            }
            if let Some(pw) = &c.password {
                m.insert("password_hex".into(), json!(hex::encode(pw)));
            }
            put_props(&mut m, &c.properties);
        }
        Packet::ConnAck(c) => {
            m.insert("session_present".into(), json!(c.session_present));
            m.insert("reason_code".into(), json!(c.reason_code.0));
            put_props(&mut m, &c.properties);
        }
        Packet::Publish(p) => {
            m.insert("dup".into(), json!(p.dup));
            m.insert("qos".into(), json!(p.qos.as_u8()));
            m.insert("retain".into(), json!(p.retain));
            m.insert(
                "topic".into(),
                json!(p.topic.as_ref().map_or("", |t| t.as_str())),
            );
            if let Some(id) = p.packet_id {
                m.insert("packet_id".into(), json!(id.get()));
            }
            put_props(&mut m, &p.properties);
            m.insert("payload_hex".into(), json!(hex::encode(&p.payload)));
        }
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            m.insert("packet_id".into(), json!(a.packet_id.get()));
            m.insert("reason_code".into(), json!(a.reason_code.0));
            put_props(&mut m, &a.properties);
        }
        Packet::Subscribe(s) => {
            m.insert("packet_id".into(), json!(s.packet_id.get()));
            let subs: Vec<Value> = s
                .subscriptions
                .iter()
                .map(|s| {
                    json!({
                        "filter": s.filter.as_str(),
                        "qos": s.options.qos.as_u8(),
                        "no_local": s.options.no_local,
                        "retain_as_published": s.options.retain_as_published,
                        "retain_handling": s.options.retain_handling as u8,
                    })
                })
                .collect();
            m.insert("subscriptions".into(), Value::Array(subs));
            put_props(&mut m, &s.properties);
        }
        Packet::SubAck(s) => {
            m.insert("packet_id".into(), json!(s.packet_id.get()));
            m.insert(
                "reason_codes".into(),
                json!(s.reason_codes.iter().map(|c| c.0).collect::<Vec<_>>()),
            );
            put_props(&mut m, &s.properties);
        }
        Packet::Unsubscribe(u) => {
            m.insert("packet_id".into(), json!(u.packet_id.get()));
            m.insert(
                "filters".into(),
                json!(u.filters.iter().map(|f| f.as_str()).collect::<Vec<_>>()),
            );
            put_props(&mut m, &u.properties);
        }
        Packet::UnsubAck(u) => {
            m.insert("packet_id".into(), json!(u.packet_id.get()));
            m.insert(
                "reason_codes".into(),
                json!(u.reason_codes.iter().map(|c| c.0).collect::<Vec<_>>()),
            );
            put_props(&mut m, &u.properties);
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
            m.insert("reason_code".into(), json!(reason_code.0));
            put_props(&mut m, properties);
        }
    }
    Value::Object(m)
}

fn put_props(m: &mut Map<String, Value>, p: &Properties) {
    if p.is_empty() {
        return;
    }
    let mut o = Map::new();
    let mut s = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            o.insert(k.into(), v);
        }
    };
    s(
        "payload_format_indicator",
        p.payload_format_indicator.map(|v| json!(u8::from(v))),
    );
    s(
        "message_expiry_interval",
        p.message_expiry_interval.map(|v| json!(v)),
    );
    s(
        "content_type",
        p.content_type.as_ref().map(|v| json!(v.as_str())),
    );
    s(
        "response_topic",
        p.response_topic.as_ref().map(|v| json!(v.as_str())),
    );
    s(
        "correlation_data_hex",
        p.correlation_data.as_ref().map(|v| json!(hex::encode(v))),
    );
    if !p.subscription_identifiers.is_empty() {
        s(
            "subscription_identifiers",
            Some(json!(
                p.subscription_identifiers
                    .iter()
                    .map(|v| v.get())
                    .collect::<Vec<_>>()
            )),
        );
    }
    s(
        "session_expiry_interval",
        p.session_expiry_interval.map(|v| json!(v)),
    );
    s(
        "assigned_client_identifier",
        p.assigned_client_identifier
            .as_ref()
            .map(|v| json!(v.as_str())),
    );
    s("server_keep_alive", p.server_keep_alive.map(|v| json!(v)));
    s(
        "authentication_method",
        p.authentication_method.as_ref().map(|v| json!(v.as_str())),
    );
    s(
        "authentication_data_hex",
        p.authentication_data
            .as_ref()
            .map(|v| json!(hex::encode(v))),
    );
    s(
        "request_problem_information",
        p.request_problem_information.map(|v| json!(u8::from(v))),
    );
    s(
        "will_delay_interval",
        p.will_delay_interval.map(|v| json!(v)),
    );
    s(
        "request_response_information",
        p.request_response_information.map(|v| json!(u8::from(v))),
    );
    s(
        "response_information",
        p.response_information.as_ref().map(|v| json!(v.as_str())),
    );
    s(
        "server_reference",
        p.server_reference.as_ref().map(|v| json!(v.as_str())),
    );
    s(
        "reason_string",
        p.reason_string.as_ref().map(|v| json!(v.as_str())),
    );
    s("receive_maximum", p.receive_maximum.map(|v| json!(v.get())));
    s(
        "topic_alias_maximum",
        p.topic_alias_maximum.map(|v| json!(v)),
    );
    s("topic_alias", p.topic_alias.map(|v| json!(v.get())));
    s("maximum_qos", p.maximum_qos.map(|v| json!(v.as_u8())));
    s(
        "retain_available",
        p.retain_available.map(|v| json!(u8::from(v))),
    );
    if !p.user_properties.is_empty() {
        s(
            "user_properties",
            Some(json!(
                p.user_properties
                    .iter()
                    .map(|(k, v)| json!([k.as_str(), v.as_str()]))
                    .collect::<Vec<_>>()
            )),
        );
    }
    s(
        "maximum_packet_size",
        p.maximum_packet_size.map(|v| json!(v.get())),
    );
    s(
        "wildcard_subscription_available",
        p.wildcard_subscription_available
            .map(|v| json!(u8::from(v))),
    );
    s(
        "subscription_identifiers_available",
        p.subscription_identifiers_available
            .map(|v| json!(u8::from(v))),
    );
    s(
        "shared_subscription_available",
        p.shared_subscription_available.map(|v| json!(u8::from(v))),
    );
    m.insert("properties".into(), Value::Object(o));
}

// ------------------------------------------------------------------------------------------
// JSON -> Packet. Errors name the JSON path.

/// A JSON object being read, with its path for error messages.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    fn new(v: &'a Value, path: String) -> Result<Self, String> {
        match v.as_object() {
            Some(map) => Ok(Obj { map, path }),
            None => Err(format!("{path}: expected a JSON object")),
        }
    }

    fn at(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    fn u64_opt(&self, key: &str, max: u64) -> Result<Option<u64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n <= max => Ok(Some(n)),
                _ => Err(format!("{}: expected an integer 0..={max}", self.at(key))),
            },
        }
    }

    fn u64_or(&self, key: &str, max: u64, default: u64) -> Result<u64, String> {
        Ok(self.u64_opt(key, max)?.unwrap_or(default))
    }

    fn u64_req(&self, key: &str, max: u64) -> Result<u64, String> {
        self.u64_opt(key, max)?
            .ok_or_else(|| format!("{}: missing", self.at(key)))
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(format!("{}: expected true or false", self.at(key))),
        }
    }

    fn str_opt(&self, key: &str) -> Result<Option<&'a str>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("{}: expected a string", self.at(key))),
        }
    }

    fn str_req(&self, key: &str) -> Result<&'a str, String> {
        self.str_opt(key)?
            .ok_or_else(|| format!("{}: missing", self.at(key)))
    }

    fn mqtt_str_opt(&self, key: &str) -> Result<Option<MqttStr>, String> {
        self.str_opt(key)?
            .map(|s| MqttStr::new(s).map_err(|e| format!("{}: {e}", self.at(key))))
            .transpose()
    }

    fn hex_opt(&self, key: &str) -> Result<Option<Bytes>, String> {
        self.str_opt(key)?
            .map(|s| {
                parse_hex(s)
                    .map(Bytes::from)
                    .map_err(|Failure(e)| format!("{}: {e}", self.at(key)))
            })
            .transpose()
    }

    fn packet_id(&self) -> Result<PacketId, String> {
        let v = self.u64_req("packet_id", 65_535)?;
        PacketId::new(v as u16).ok_or_else(|| {
            format!(
                "{}: packet identifier 0 [MQTT-2.2.1-3]",
                self.at("packet_id")
            )
        })
    }

    fn qos(&self, key: &str) -> Result<QoS, String> {
        let v = self.u64_or(key, 3, 0)?;
        QoS::from_u8(v as u8).ok_or_else(|| format!("{}: QoS 3 [MQTT-3.3.1-4]", self.at(key)))
    }

    fn reason(&self, default: u8) -> Result<ReasonCode, String> {
        Ok(ReasonCode(
            self.u64_or("reason_code", 255, u64::from(default))? as u8,
        ))
    }

    fn reason_list(&self) -> Result<Vec<ReasonCode>, String> {
        match self.get("reason_codes") {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_u64()
                        .filter(|&n| n <= 255)
                        .map(|n| ReasonCode(n as u8))
                        .ok_or_else(|| {
                            format!(
                                "{}[{i}]: expected an integer 0..=255",
                                self.at("reason_codes")
                            )
                        })
                })
                .collect(),
            Some(_) => Err(format!("{}: expected an array", self.at("reason_codes"))),
        }
    }

    fn properties(&self) -> Result<PacketProperties, String> {
        match self.get("properties") {
            None => Ok(PacketProperties::new()),
            Some(v) => props_from_json(&Obj::new(v, self.at("properties"))?).map(Into::into),
        }
    }
}

fn bool01(o: &Obj<'_>, key: &str) -> Result<Option<bool>, String> {
    Ok(o.u64_opt(key, 1)?.map(|v| v == 1))
}

fn props_from_json(o: &Obj<'_>) -> Result<Properties, String> {
    const KNOWN: &[&str] = &[
        "payload_format_indicator",
        "message_expiry_interval",
        "content_type",
        "response_topic",
        "correlation_data_hex",
        "subscription_identifiers",
        "session_expiry_interval",
        "assigned_client_identifier",
        "server_keep_alive",
        "authentication_method",
        "authentication_data_hex",
        "request_problem_information",
        "will_delay_interval",
        "request_response_information",
        "response_information",
        "server_reference",
        "reason_string",
        "receive_maximum",
        "topic_alias_maximum",
        "topic_alias",
        "maximum_qos",
        "retain_available",
        "user_properties",
        "maximum_packet_size",
        "wildcard_subscription_available",
        "subscription_identifiers_available",
        "shared_subscription_available",
    ];
    if let Some(k) = o.map.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!("{}: unknown property", o.at(k)));
    }
    let u32max = u64::from(u32::MAX);
    let nz16 = |key: &str, rule: &str| -> Result<Option<NonZeroU16>, String> {
        o.u64_opt(key, 65_535)?
            .map(|v| {
                NonZeroU16::new(v as u16)
                    .ok_or_else(|| format!("{}: 0 is not allowed {rule}", o.at(key)))
            })
            .transpose()
    };
    let mut p = Properties {
        payload_format_indicator: bool01(o, "payload_format_indicator")?,
        message_expiry_interval: o
            .u64_opt("message_expiry_interval", u32max)?
            .map(|v| v as u32),
        content_type: o.mqtt_str_opt("content_type")?,
        response_topic: o
            .str_opt("response_topic")?
            .map(|s| TopicName::new(s).map_err(|e| format!("{}: {e}", o.at("response_topic"))))
            .transpose()?,
        correlation_data: o.hex_opt("correlation_data_hex")?,
        session_expiry_interval: o
            .u64_opt("session_expiry_interval", u32max)?
            .map(|v| v as u32),
        assigned_client_identifier: o.mqtt_str_opt("assigned_client_identifier")?,
        server_keep_alive: o.u64_opt("server_keep_alive", 65_535)?.map(|v| v as u16),
        authentication_method: o.mqtt_str_opt("authentication_method")?,
        authentication_data: o.hex_opt("authentication_data_hex")?,
        request_problem_information: bool01(o, "request_problem_information")?,
        will_delay_interval: o.u64_opt("will_delay_interval", u32max)?.map(|v| v as u32),
        request_response_information: bool01(o, "request_response_information")?,
        response_information: o.mqtt_str_opt("response_information")?,
        server_reference: o.mqtt_str_opt("server_reference")?,
        reason_string: o.mqtt_str_opt("reason_string")?,
        receive_maximum: nz16("receive_maximum", "[MQTT-5.0 §3.1.2.11.3]")?,
        topic_alias_maximum: o.u64_opt("topic_alias_maximum", 65_535)?.map(|v| v as u16),
        topic_alias: nz16("topic_alias", "[MQTT-3.3.2-8]")?,
        maximum_qos: o
            .u64_opt("maximum_qos", 1)?
            .and_then(|v| QoS::from_u8(v as u8)),
        retain_available: bool01(o, "retain_available")?,
        maximum_packet_size: o
            .u64_opt("maximum_packet_size", u32max)?
            .map(|v| {
                NonZeroU32::new(v as u32)
                    .ok_or_else(|| format!("{}: 0 is not allowed", o.at("maximum_packet_size")))
            })
            .transpose()?,
        wildcard_subscription_available: bool01(o, "wildcard_subscription_available")?,
        subscription_identifiers_available: bool01(o, "subscription_identifiers_available")?,
        shared_subscription_available: bool01(o, "shared_subscription_available")?,
        ..Properties::default()
    };
    if let Some(v) = o.get("subscription_identifiers") {
        let arr = v
            .as_array()
            .ok_or_else(|| format!("{}: expected an array", o.at("subscription_identifiers")))?;
        for (i, x) in arr.iter().enumerate() {
            let id = x
                .as_u64()
                .filter(|&n| (1..=u64::from(thingkit_mqtt::MAX_VARINT)).contains(&n))
                .and_then(|n| NonZeroU32::new(n as u32))
                .ok_or_else(|| {
                    format!(
                        "{}[{i}]: expected 1..=268435455",
                        o.at("subscription_identifiers")
                    )
                })?;
            p.subscription_identifiers.push(id);
        }
    }
    if let Some(v) = o.get("user_properties") {
        let path = o.at("user_properties");
        let arr = v
            .as_array()
            .ok_or_else(|| format!("{path}: expected an array of [name, value]"))?;
        for (i, pair) in arr.iter().enumerate() {
            let (Some(k), Some(v)) = (
                pair.get(0).and_then(Value::as_str),
                pair.get(1).and_then(Value::as_str),
            ) else {
                return Err(format!("{path}[{i}]: expected [name, value]"));
            };
            let k = MqttStr::new(k).map_err(|e| format!("{path}[{i}][0]: {e}"))?;
            let v = MqttStr::new(v).map_err(|e| format!("{path}[{i}][1]: {e}"))?;
            p.user_properties.push((k, v));
        }
    }
    Ok(p)
}

fn packet_from_json(v: &Value, version: ProtocolVersion) -> Result<Packet, String> {
    let o = Obj::new(v, "$".into())?;
    let name = o.str_req("type")?;
    let ptype = PacketType::from_name(name)
        .ok_or_else(|| format!("$.type: unknown packet type {name:?}"))?;
    let pub_response = |o: &Obj<'_>| -> Result<PubResponse, String> {
        Ok(PubResponse {
            packet_id: o.packet_id()?,
            reason_code: o.reason(0)?,
            properties: o.properties()?,
        })
    };
    Ok(match ptype {
        PacketType::Connect => {
            let protocol = match o.str_opt("protocol")? {
                None => version,
                Some("3.1.1") => ProtocolVersion::V311,
                Some("5.0") => ProtocolVersion::V5,
                Some(other) => {
                    return Err(format!("$.protocol: {other:?} is not \"3.1.1\" or \"5.0\""));
                }
            };
            let will = match o.get("will") {
                None | Some(Value::Null) => None,
                Some(w) => {
                    let w = Obj::new(w, o.at("will"))?;
                    Some(Box::new(Will {
                        topic: TopicName::new(w.str_req("topic")?)
                            .map_err(|e| format!("{}: {e}", w.at("topic")))?,
                        payload: w.hex_opt("payload_hex")?.unwrap_or_default(),
                        qos: w.qos("qos")?,
                        retain: w.bool_or("retain", false)?,
                        properties: w.properties()?,
                    }))
                }
            };
            Packet::Connect(Connect {
                protocol,
                clean_start: o.bool_or("clean_start", true)?,
                keep_alive: o.u64_or("keep_alive", 65_535, 60)? as u16,
                properties: o.properties()?,
                client_id: o.mqtt_str_opt("client_id")?.unwrap_or_default(),
                will,
                username: o.mqtt_str_opt("username")?,
                password: o.hex_opt("password_hex")?,
            })
        }
        PacketType::ConnAck => Packet::ConnAck(ConnAck {
            session_present: o.bool_or("session_present", false)?,
            reason_code: o.reason(0)?,
            properties: o.properties()?,
        }),
        PacketType::Publish => {
            let qos = o.qos("qos")?;
            let topic = match o.str_opt("topic")? {
                None | Some("") => None,
                Some(t) => Some(TopicName::new(t).map_err(|e| format!("$.topic: {e}"))?),
            };
            Packet::Publish(Publish {
                dup: o.bool_or("dup", false)?,
                qos,
                retain: o.bool_or("retain", false)?,
                topic,
                packet_id: if o.get("packet_id").is_some() {
                    Some(o.packet_id()?)
                } else {
                    None
                },
                properties: o.properties()?,
                payload: o.hex_opt("payload_hex")?.unwrap_or_default(),
            })
        }
        PacketType::PubAck => Packet::PubAck(pub_response(&o)?),
        PacketType::PubRec => Packet::PubRec(pub_response(&o)?),
        PacketType::PubRel => Packet::PubRel(pub_response(&o)?),
        PacketType::PubComp => Packet::PubComp(pub_response(&o)?),
        PacketType::Subscribe => {
            let arr = o
                .get("subscriptions")
                .and_then(Value::as_array)
                .ok_or_else(|| "$.subscriptions: expected an array".to_string())?;
            let mut subscriptions = Vec::new();
            for (i, s) in arr.iter().enumerate() {
                let s = Obj::new(s, format!("$.subscriptions[{i}]"))?;
                let filter = TopicFilter::new(s.str_req("filter")?)
                    .map_err(|e| format!("{}: {e}", s.at("filter")))?;
                let retain_handling = match s.u64_or("retain_handling", 3, 0)? {
                    0 => RetainHandling::SendAtSubscribe,
                    1 => RetainHandling::SendIfNew,
                    2 => RetainHandling::DoNotSend,
                    _ => {
                        return Err(format!(
                            "{}: 3 is reserved [MQTT-5.0 §3.8.3.1]",
                            s.at("retain_handling")
                        ));
                    }
                };
                subscriptions.push(Subscription {
                    filter,
                    options: SubscriptionOptions {
                        qos: s.qos("qos")?,
                        no_local: s.bool_or("no_local", false)?,
                        retain_as_published: s.bool_or("retain_as_published", false)?,
                        retain_handling,
                    },
                });
            }
            Packet::Subscribe(Subscribe {
                packet_id: o.packet_id()?,
                properties: o.properties()?,
                subscriptions,
            })
        }
        PacketType::SubAck => Packet::SubAck(SubAck {
            packet_id: o.packet_id()?,
            properties: o.properties()?,
            reason_codes: o.reason_list()?,
        }),
        PacketType::Unsubscribe => {
            let arr = o
                .get("filters")
                .and_then(Value::as_array)
                .ok_or_else(|| "$.filters: expected an array".to_string())?;
            let filters = arr
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    f.as_str()
                        .ok_or_else(|| format!("$.filters[{i}]: expected a string"))
                        .and_then(|s| {
                            TopicFilter::new(s).map_err(|e| format!("$.filters[{i}]: {e}"))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Packet::Unsubscribe(Unsubscribe {
                packet_id: o.packet_id()?,
                properties: o.properties()?,
                filters,
            })
        }
        PacketType::UnsubAck => Packet::UnsubAck(UnsubAck {
            packet_id: o.packet_id()?,
            properties: o.properties()?,
            reason_codes: o.reason_list()?,
        }),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect(Disconnect {
            reason_code: o.reason(0)?,
            properties: o.properties()?,
        }),
        PacketType::Auth => Packet::Auth(Auth {
            reason_code: o.reason(0)?,
            properties: o.properties()?,
        }),
    })
}
