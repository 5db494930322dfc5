//! Differential test against the npm `mqtt-packet` parser (the codec of MQTT.js).
//!
//! What is compared, on the same bytes, for MQTT 3.1.1 and 5.0:
//! - the decision (accept / reject) — for every packet type's valid encodings, for the invalid
//!   inputs of `tests/validation.rs`, and for a few thousand deterministic mutations of valid
//!   packets;
//! - when both accept, the whole decoded packet: every field and every MQTT 5.0 property (user
//!   properties as a multiset: mqtt-packet folds repeated names into arrays and loses order). The
//!   peer driver (`tests/differential/peer.js`) writes what mqtt-packet decoded in this crate's
//!   `serde` JSON shape; the test reads it back into a `Packet` through the same deserializer
//!   users get (so the peer's packet is validated like ours) and compares it as JSON with ours.
//!
//! Known disagreements are listed below with the reason; any other disagreement fails the test,
//! and so does a listed disagreement that no input exhibits any more (the list must stay true).
//!
//! The peer is installed by `.ci/run` with `npm install --prefix target/mqtt-peer mqtt-packet@9`;
//! set `THINGKIT_MQTT_PEER` to use another `node_modules/mqtt-packet` directory. The test is
//! `#[ignore]`d so that `cargo test --workspace` needs nothing but a Rust toolchain; `.ci/run` runs
//! it explicitly (`cargo test -p thingkit-mqtt --test differential -- --ignored`), and there it
//! fails (never skips) when Node or the package is missing.

use std::collections::BTreeMap;
use std::io::Write;
use std::num::{NonZeroU16, NonZeroU32};

use std::path::PathBuf;
use std::process::{Command, Stdio};

use bytes::{Bytes, BytesMut};
use thingkit_mqtt::*;

/// Rules whose violations mqtt-packet does not detect (it accepts the bytes; we reject them).
/// Each is a case where the peer is laxer than the specification.
const PEER_LAXER: &[(&str, &str)] = &[
    (
        "[MQTT-1.5.4-2]",
        "mqtt-packet accepts U+0000 in UTF-8 strings (5.0)",
    ),
    (
        "[MQTT-1.5.3-2]",
        "mqtt-packet accepts U+0000 in UTF-8 strings (3.1.1)",
    ),
    (
        "[MQTT-1.5.4-1]",
        "Node's Buffer#toString replaces ill-formed UTF-8 with U+FFFD instead of rejecting (5.0)",
    ),
    (
        "[MQTT-1.5.3-1]",
        "Node's Buffer#toString replaces ill-formed UTF-8 with U+FFFD instead of rejecting (3.1.1)",
    ),
    (
        "[MQTT-1.5.5-1]",
        "mqtt-packet accepts non-minimal Variable Byte Integers",
    ),
    (
        "[MQTT-3.3.2-2]",
        "mqtt-packet accepts wildcards in PUBLISH topic names",
    ),
    (
        "[MQTT-4.7.1-1]",
        "mqtt-packet does not validate topic filters ('#' placement)",
    ),
    (
        "[MQTT-4.7.1-2]",
        "mqtt-packet does not validate topic filters ('+' placement, 5.0 numbering; '#' in 3.1.1)",
    ),
    (
        "[MQTT-4.7.1-3]",
        "mqtt-packet does not validate topic filters ('+' placement, 3.1.1)",
    ),
    (
        "[MQTT-4.7.3-1]",
        "mqtt-packet accepts empty topic names and filters",
    ),
    (
        "[MQTT-4.8.2-2]",
        "mqtt-packet does not validate shared-subscription syntax",
    ),
    (
        "[MQTT-5.0 §2.2.2.2]",
        "mqtt-packet accepts duplicate, unknown-to-the-packet or out-of-range properties",
    ),
    ("[MQTT-3.3.2-8]", "mqtt-packet accepts Topic Alias 0"),
    (
        "[MQTT-5.0 §3.3.2.3.8]",
        "mqtt-packet accepts Subscription Identifier 0",
    ),
    (
        "[MQTT-5.0 §3.1.2.11.3]",
        "mqtt-packet accepts Receive Maximum 0",
    ),
    (
        "[MQTT-5.0 §3.1.2.11.4]",
        "mqtt-packet accepts Maximum Packet Size 0",
    ),
    (
        "[MQTT-5.0 §3.1.2.11.10]",
        "mqtt-packet accepts Authentication Data without a method",
    ),
    ("[MQTT-5.0 §3.2.2.3.4]", "mqtt-packet accepts Maximum QoS 2"),
    (
        "[MQTT-5.0 §3.3.2.1]",
        "mqtt-packet accepts an empty topic without a Topic Alias",
    ),
    (
        "[MQTT-5.0 §2.4]",
        "mqtt-packet does not check reason codes against the packet type",
    ),
    (
        "[MQTT-3.1.1 §3.2.2.3]",
        "mqtt-packet does not check 3.1.1 CONNACK/SUBACK return codes",
    ),
    (
        "[MQTT-5.0 §2.1.4]",
        "mqtt-packet ignores bytes left after the last field it reads (5.0)",
    ),
    (
        "[MQTT-3.1.1 §2.2.3]",
        "mqtt-packet ignores bytes left after the last field it reads (3.1.1)",
    ),
    (
        "[MQTT-2.2.1-3]",
        "mqtt-packet accepts packet identifier 0 (5.0)",
    ),
    (
        "[MQTT-2.3.1-1]",
        "mqtt-packet accepts packet identifier 0 (3.1.1)",
    ),
    (
        "[MQTT-3.2.2-4]",
        "mqtt-packet accepts session present with a non-zero return code (3.1.1)",
    ),
    (
        "[MQTT-3.2.2-6]",
        "mqtt-packet accepts session present with a non-zero reason code (5.0)",
    ),
    (
        "[MQTT-3.8.3-2]",
        "mqtt-packet accepts SUBSCRIBE without filters (5.0)",
    ),
    (
        "[MQTT-3.8.3-3]",
        "mqtt-packet accepts SUBSCRIBE without filters (3.1.1)",
    ),
    (
        "[MQTT-3.10.3-2]",
        "mqtt-packet accepts UNSUBSCRIBE without filters",
    ),
    (
        "[MQTT-3.8.3-4]",
        "mqtt-packet accepts No Local on shared subscriptions",
    ),
    (
        "[MQTT-3.3.1-2]",
        "mqtt-packet accepts DUP set on a QoS 0 PUBLISH",
    ),
    (
        "[MQTT-3.1.2-2]",
        "mqtt-packet accepts protocol level 3 with the name \"MQTT\" (3.1 used \"MQIsdp\") and a 5.0 CONNECT on a 3.1.1 parser, switching versions mid-stream",
    ),
    (
        "[MQTT-3.1.2-22]",
        "mqtt-packet accepts a 3.1.1 password without a user name",
    ),
    (
        "[MQTT-3.1.2-12]",
        "mqtt-packet accepts will QoS 3 in a 5.0 CONNECT",
    ),
    (
        "[MQTT-3.1.1 §3.9.3]",
        "mqtt-packet accepts a 3.1.1 SUBACK without return codes",
    ),
];

/// Inputs mqtt-packet rejects and we accept, with the reason we are right. Keyed by a substring
/// of the peer's error message.
const PEER_STRICTER: &[(&str, &str)] = &[(
    "Invalid auth reason code",
    "an AUTH with remaining length 0 means Success without properties (MQTT 5.0 §3.15.2.1); \
     mqtt-packet reads the missing reason code as invalid",
)];

/// Inputs both accept but decode differently because of a peer bug: (description, predicate).
/// Whether a peer bug applies to the input bytes.
type Applies = fn(&[u8]) -> bool;

const PEER_FIELD_BUGS: &[(&str, Applies)] = &[(
    "mqtt-packet reads a DISCONNECT/AUTH reason code past a remaining length of 0 when more \
     bytes follow (the next packet's first byte)",
    |b| matches!(b, [0xE0 | 0xF0, 0x00, _, ..]),
)];

fn peer_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("THINGKIT_MQTT_PEER") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/mqtt-peer/node_modules/mqtt-packet")
}

/// The peer's answer per case: `{"ok": packet}` (the `serde` shape) or `{"err": message}`.
fn run_peer(cases: &[(ProtocolVersion, Vec<u8>)]) -> Vec<serde_json::Value> {
    let dir = peer_dir();
    assert!(
        dir.join("package.json").exists(),
        "the differential peer is missing: run `npm install --prefix target/mqtt-peer mqtt-packet@9` \
         at the repository root (.ci/run does), or set THINGKIT_MQTT_PEER; looked in {}",
        dir.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/differential/peer.js");
    let mut child = Command::new("node")
        .arg(&script)
        .arg(dir.canonicalize().expect("peer directory"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("`node` (Node.js 18 or newer) must be installed for the differential test");
    {
        let mut stdin = child.stdin.take().unwrap();
        for (v, bytes) in cases {
            writeln!(stdin, "{} {}", v.level(), hex(bytes)).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the peer driver failed");
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("the peer driver writes JSON lines"))
        .collect();
    assert_eq!(lines.len(), cases.len(), "one peer answer per case");
    lines
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A packet as JSON (the `serde` shape), for comparing with the peer's: user properties sorted,
/// since mqtt-packet folds repeated names into arrays and loses their order (a multiset compare).
fn comparable(p: &Packet) -> serde_json::Value {
    fn sort_user_properties(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    match x {
                        serde_json::Value::Array(pairs) if k == "user_properties" => {
                            pairs.sort_by_key(|pair| pair.to_string())
                        }
                        _ => sort_user_properties(x),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(sort_user_properties),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(p).expect("packets serialize");
    sort_user_properties(&mut v);
    v
}

/// The peer's packet, read through thingkit-mqtt's deserializer (so it is validated like ours).
fn peer_packet(answer: &serde_json::Value) -> Result<serde_json::Value, String> {
    let packet: Packet = serde_json::from_value(answer.clone())
        .map_err(|e| format!("not a valid packet ({e}): {answer}"))?;
    Ok(comparable(&packet))
}

fn s(x: &str) -> MqttStr {
    MqttStr::new(x).unwrap()
}
fn t(x: &str) -> TopicName {
    TopicName::new(x).unwrap()
}
fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

/// Valid packets of every type (with and without properties in 5.0).
fn valid_packets(v: ProtocolVersion) -> Vec<Packet> {
    let v5 = v == ProtocolVersion::V5;
    let rich = |mut p: Properties| -> PacketProperties {
        if v5 {
            p.user_properties = vec![(s("k"), s("v1")), (s("k"), s("v2")), (s("a"), s("z"))].into();
            p.into()
        } else {
            PacketProperties::new()
        }
    };
    let mut publish_props = Properties::default();
    if v5 {
        publish_props.message_expiry_interval = Some(60);
        publish_props.content_type = Some(s("text/plain"));
        publish_props.response_topic = Some(t("reply/to"));
        publish_props.correlation_data = Some(Bytes::from_static(b"\x01\x02"));
        publish_props.topic_alias = NonZeroU16::new(3);
        publish_props.subscription_identifiers =
            vec![NonZeroU32::new(7).unwrap(), NonZeroU32::new(300).unwrap()];
    }
    let mut out = Vec::new();
    for (qos, id) in [
        (QoS::AtMostOnce, None),
        (QoS::AtLeastOnce, Some(pid(1))),
        (QoS::ExactlyOnce, Some(pid(65535))),
    ] {
        for retain in [false, true] {
            out.push(Packet::Publish(Publish {
                dup: qos != QoS::AtMostOnce && retain,
                qos,
                retain,
                topic: Some(t("sensors/é/temp")),
                packet_id: id,
                properties: PacketProperties::new(),
                payload: Bytes::from_static(b"\x00\x01payload"),
            }));
        }
        out.push(Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: Some(t("$SYS/x")),
            packet_id: id,
            properties: rich(publish_props.clone()),
            payload: Bytes::new(),
        }));
    }
    let mut connect_props = Properties::default();
    if v5 {
        connect_props.session_expiry_interval = Some(3600);
        connect_props.receive_maximum = NonZeroU16::new(10);
        connect_props.maximum_packet_size = NonZeroU32::new(65536);
        connect_props.topic_alias_maximum = Some(5);
    }
    out.push(Packet::Connect(Connect {
        protocol: v,
        clean_start: true,
        keep_alive: 60,
        properties: PacketProperties::new(),
        client_id: s("device-1"),
        will: None,
        username: None,
        password: None,
    }));
    out.push(Packet::Connect(Connect {
        protocol: v,
        clean_start: false,
        keep_alive: 0,
        properties: rich(connect_props.clone()),
        client_id: s(""),
        will: Some(Box::new(Will {
            topic: t("last/will"),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: PacketProperties::new(),
        })),
        username: Some(s("user")),
        password: Some(Bytes::from_static(b"\xffpw")),
    }));
    if v5 {
        // Every remaining property, so that each one's decoding is compared at least once.
        out.push(Packet::Connect(Connect {
            protocol: v,
            clean_start: true,
            keep_alive: 10,
            properties: rich(Properties {
                request_problem_information: Some(false),
                request_response_information: Some(true),
                authentication_method: Some(s("SCRAM-SHA-1")),
                authentication_data: Some(Bytes::from_static(b"\x00\x01")),
                ..Default::default()
            }),
            client_id: s("d"),
            will: Some(Box::new(Will {
                topic: t("w"),
                payload: Bytes::new(),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: rich(Properties {
                    payload_format_indicator: Some(true),
                    will_delay_interval: Some(30),
                    message_expiry_interval: Some(5),
                    content_type: Some(s("text/plain")),
                    ..Default::default()
                }),
            })),
            username: None,
            password: None,
        }));
        out.push(Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: ReasonCode::SUCCESS,
            properties: rich(Properties {
                session_expiry_interval: Some(0),
                receive_maximum: NonZeroU16::new(100),
                maximum_qos: Some(QoS::AtLeastOnce),
                retain_available: Some(false),
                maximum_packet_size: NonZeroU32::new(1 << 20),
                assigned_client_identifier: Some(s("auto-1")),
                topic_alias_maximum: Some(0),
                reason_string: Some(s("welcome")),
                wildcard_subscription_available: Some(true),
                subscription_identifiers_available: Some(false),
                shared_subscription_available: Some(true),
                server_keep_alive: Some(120),
                response_information: Some(s("resp/")),
                server_reference: Some(s("other:1883")),
                authentication_method: Some(s("SCRAM-SHA-1")),
                authentication_data: Some(Bytes::from_static(b"\xff")),
                ..Default::default()
            }),
        }));
        out.push(Packet::Publish(Publish {
            properties: Properties {
                payload_format_indicator: Some(false),
                ..Default::default()
            }
            .into(),
            ..Publish::new(t("p"), &b"x"[..])
        }));
    }
    let codes: &[u8] = if v5 { &[0x00, 0x80, 0x87] } else { &[0, 1, 5] };
    for &c in codes {
        out.push(Packet::ConnAck(ConnAck {
            session_present: c == 0,
            reason_code: ReasonCode(c),
            properties: if c == 0 {
                rich(Properties {
                    session_expiry_interval: v5.then_some(10),
                    ..Default::default()
                })
            } else {
                PacketProperties::new()
            },
        }));
    }
    let ack_codes: &[u8] = if v5 { &[0x00, 0x10, 0x80] } else { &[0x00] };
    for &c in ack_codes {
        for mk in [Packet::PubAck as fn(PubResponse) -> Packet, Packet::PubRec] {
            out.push(mk(PubResponse {
                packet_id: pid(7),
                reason_code: ReasonCode(c),
                properties: PacketProperties::new(),
            }));
        }
    }
    for mk in [Packet::PubRel as fn(PubResponse) -> Packet, Packet::PubComp] {
        out.push(mk(PubResponse::new(pid(9))));
        if v5 {
            out.push(mk(PubResponse {
                packet_id: pid(9),
                reason_code: ReasonCode(0x92),
                properties: rich(Properties {
                    reason_string: Some(s("gone")),
                    ..Default::default()
                }),
            }));
        }
    }
    let opts = |qos, nl, rap, rh| SubscriptionOptions {
        qos,
        no_local: v5 && nl,
        retain_as_published: v5 && rap,
        retain_handling: if v5 {
            rh
        } else {
            RetainHandling::SendAtSubscribe
        },
    };
    out.push(Packet::Subscribe(Subscribe {
        packet_id: pid(2),
        properties: if v5 {
            let mut p = rich(Properties::default());
            p.subscription_identifiers = vec![NonZeroU32::new(99).unwrap()];
            p
        } else {
            PacketProperties::new()
        },
        subscriptions: vec![
            Subscription {
                filter: TopicFilter::new("a/+/c").unwrap(),
                options: opts(QoS::AtLeastOnce, true, false, RetainHandling::SendIfNew),
            },
            Subscription {
                filter: TopicFilter::new("#").unwrap(),
                options: opts(QoS::ExactlyOnce, false, true, RetainHandling::DoNotSend),
            },
            Subscription {
                filter: TopicFilter::new("$share/g/x/#").unwrap(),
                options: opts(
                    QoS::AtMostOnce,
                    false,
                    false,
                    RetainHandling::SendAtSubscribe,
                ),
            },
        ],
    }));
    out.push(Packet::SubAck(SubAck {
        packet_id: pid(2),
        properties: rich(Properties::default()),
        reason_codes: vec![
            ReasonCode(0),
            ReasonCode(1),
            ReasonCode(2),
            ReasonCode(0x80),
        ],
    }));
    out.push(Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(3),
        properties: rich(Properties::default()),
        filters: vec![
            TopicFilter::new("a/+/c").unwrap(),
            TopicFilter::new("b").unwrap(),
        ],
    }));
    out.push(Packet::UnsubAck(UnsubAck {
        packet_id: pid(3),
        properties: PacketProperties::new(),
        reason_codes: if v5 {
            vec![ReasonCode(0), ReasonCode(0x11)]
        } else {
            vec![]
        },
    }));
    out.push(Packet::PingReq);
    out.push(Packet::PingResp);
    out.push(Packet::Disconnect(Disconnect::default()));
    if v5 {
        out.push(Packet::Disconnect(Disconnect {
            reason_code: ReasonCode(0x04),
            properties: PacketProperties::new(),
        }));
        out.push(Packet::Disconnect(Disconnect {
            reason_code: ReasonCode(0x8E),
            properties: rich(Properties {
                reason_string: Some(s("bye")),
                ..Default::default()
            }),
        }));
        out.push(Packet::Auth(Auth::default()));
        out.push(Packet::Auth(Auth {
            reason_code: ReasonCode(0x18),
            properties: Properties {
                authentication_method: Some(s("SCRAM")),
                authentication_data: Some(Bytes::from_static(b"\x00\x01")),
                ..Default::default()
            }
            .into(),
        }));
    }
    out
}

/// Invalid inputs: the reject cases of tests/validation.rs (same bytes).
fn invalid_inputs() -> Vec<(ProtocolVersion, &'static str)> {
    use ProtocolVersion::{V5, V311 as V3};
    vec![
        (V3, "41 02 0001"),
        (V5, "41 02 0001"),
        (V3, "60 02 0001"),
        (V3, "80 06 0001 0001 61 00"),
        (V5, "a0 05 0001 00 0001 61"),
        (V5, "c1 00"),
        (V5, "e8 00"),
        (V3, "00 00"),
        (V5, "00 00"),
        (V3, "f0 00"),
        (V5, "36 00"),
        (V3, "38 04 0001 61 00"),
        (V3, "30 ff ff ff ff 01"),
        (V5, "c0 80 00"),
        (V5, "30 05 0001 61 80 00"),
        (V5, "30 07 0001 61 03 0b 81 00"),
        (V3, "30 04 0002 c0af"),
        (V5, "30 05 0002 c0af 00"),
        (V3, "30 05 0003 eda080"),
        (V3, "30 04 0002 6100"),
        (V5, "30 05 0002 6100 00"),
        (V3, "30 05 0003 612f2b"),
        (V5, "30 06 0003 612f23 00"),
        (V5, "30 0a 0001 61 06 08 0003 612f2b"),
        (V3, "30 02 0000"),
        (V5, "30 03 0000 00"),
        (V3, "82 0a 0001 0005 612f232f62 00"),
        (V5, "82 0b 0001 00 0005 612f232f62 00"),
        (V3, "82 07 0001 0002 612b 00"),
        (V5, "82 08 0001 00 0002 612b 00"),
        (V5, "a2 07 0001 00 0002 2361"),
        (V3, "82 05 0001 0000 00"),
        (V5, "82 0e 0001 00 0008 2473686172652f67 00"),
        (V3, "10 0c 0004 4d515454 04 03 003c 0000"),
        (V3, "10 0c 0004 4d515454 04 0a 003c 0000"),
        (V3, "10 0c 0004 4d515454 04 1e 003c 0000"),
        (V3, "10 0c 0004 4d515454 04 22 003c 0000"),
        (V3, "10 0c 0004 4d515458 04 02 003c 0000"),
        (V3, "10 0c 0004 4d515454 03 02 003c 0000"),
        (V3, "10 10 0004 4d515454 04 42 003c 0000 0002 0102"),
        (V5, "30 0e 0001 61 0a 02 00000001 02 00000002"),
        (V5, "82 0b 0001 04 0b 01 0b 02 0001 61 00"),
        (V5, "30 09 0001 61 05 11 00000001"),
        (V5, "20 06 00 00 03 23 0001"),
        (V5, "30 06 0001 61 02 04 00"),
        (V5, "30 07 0001 61 03 23 0000"),
        (V5, "30 06 0001 61 02 0b 00"),
        (V5, "10 10 0004 4d515454 05 02 003c 03 21 0000 0000"),
        (V5, "10 12 0004 4d515454 05 02 003c 05 27 00000000 0000"),
        (V5, "30 06 0001 61 02 01 02"),
        (V5, "20 05 00 00 02 24 02"),
        (V5, "f0 06 18 04 16 0001 00"),
        (V5, "30 04 0001 61 09"),
        (V3, "82 06 0001 0001 61 04"),
        (V5, "82 07 0001 00 0001 61 c0"),
        (V5, "82 07 0001 00 0001 61 30"),
        (V5, "82 07 0001 00 0001 61 03"),
        (V3, "82 06 0001 0001 61 03"),
        (V5, "82 10 0001 00 000a 2473686172652f672f61 04"),
        (V3, "82 02 0001"),
        (V5, "82 03 0001 00"),
        (V3, "a2 02 0001"),
        (V5, "f0 01 18"),
        (V5, "40 03 0001 05"),
        (V5, "62 03 0001 10"),
        (V5, "e0 01 01"),
        (V5, "f0 02 04 00"),
        (V3, "20 02 00 06"),
        (V3, "90 03 0001 03"),
        (V3, "20 02 02 00"),
        (V3, "20 02 01 05"),
        (V5, "20 03 01 87 00"),
        (V3, "32 05 0001 61 0000"),
        (V5, "40 02 0000"),
        (V3, "82 06 0000 0001 61 00"),
        (V3, "c0 01 00"),
        (V3, "40 03 0001 00"),
        (V3, "e0 01 00"),
        (V5, "20 04 00 00 00 00"),
        (V3, "30 03 0005 61"),
        (V3, "32 04 0001 61 00"),
        (V5, "30 08 0001 61 04 26 0001 6b"),
        (V3, "40 01 00"),
    ]
}

fn unhex(h: &str) -> Vec<u8> {
    let d: Vec<u8> = h
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_digit(16).unwrap() as u8)
        .collect();
    d.chunks(2).map(|p| (p[0] << 4) | p[1]).collect()
}

/// Our decision: `Ok(packet as comparable JSON)` or `Err(rule or "incomplete")`.
fn ours(v: ProtocolVersion, bytes: &[u8]) -> Result<serde_json::Value, String> {
    let mut buf = BytesMut::from(bytes);
    match Decoder::new(v).decode(&mut buf) {
        // Only the first packet is compared; bytes after it belong to the next packet.
        Ok(Some(p)) => Ok(comparable(&p)),
        Ok(None) => Err("incomplete".into()),
        Err(e) => Err(e.rule().unwrap_or("none").to_string()),
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
#[ignore = "differential: needs Node.js and npm mqtt-packet@9; .ci/run installs them and runs it with --ignored"]
fn decisions_and_fields_agree_with_mqtt_packet() {
    let mut cases: Vec<(ProtocolVersion, Vec<u8>, &'static str)> = Vec::new();
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        for p in valid_packets(v) {
            let mut buf = BytesMut::new();
            Encoder::new(v).encode(&p, &mut buf).unwrap();
            cases.push((v, buf.to_vec(), "valid"));
        }
    }
    let valid_count = cases.len();
    for (v, h) in invalid_inputs() {
        cases.push((v, unhex(h), "invalid"));
    }
    // Mutations: 1-3 random byte changes of valid encodings, same protocol version.
    let mut rng = Rng(0x7468_696e_676b_6974);
    for i in 0..4000 {
        let (v, base, _) = cases[i % valid_count].clone();
        let mut m = base.clone();
        for _ in 0..=(rng.next() % 3) {
            let at = (rng.next() as usize) % m.len();
            m[at] = if rng.next().is_multiple_of(2) {
                m[at] ^ (1 << (rng.next() % 8))
            } else {
                rng.next() as u8
            };
        }
        cases.push((v, m, "mutant"));
    }

    let peer = run_peer(
        &cases
            .iter()
            .map(|(v, b, _)| (*v, b.clone()))
            .collect::<Vec<_>>(),
    );
    let mut laxer_seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut stricter_seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut agree = 0usize;
    for ((v, bytes, kind), answer) in cases.iter().zip(&peer) {
        let mine = ours(*v, bytes);
        let theirs = match (&answer["ok"], &answer["err"]) {
            (serde_json::Value::Null, e) => Err(e.as_str().unwrap_or_default().to_string()),
            (packet, _) => Ok(packet),
        };
        let label = format!("{kind} MQTT {v} {}", hex(bytes));
        match (&mine, &theirs) {
            (Ok(a), Ok(b)) if peer_packet(b).as_ref() == Ok(a) => agree += 1,
            (Ok(a), Ok(b)) => match PEER_FIELD_BUGS.iter().find(|(_, applies)| applies(bytes)) {
                Some((d, _)) => *stricter_seen.entry(d).or_default() += 1,
                None => failures.push(format!("{label}: fields differ\n  ours: {a}\n  peer: {b}")),
            },
            (Err(_), Err(_)) => agree += 1,
            (Err(rule), Ok(_)) => match PEER_LAXER.iter().find(|(r, _)| r == rule) {
                Some((r, _)) => *laxer_seen.entry(r).or_default() += 1,
                None => failures.push(format!("{label}: we reject ({rule}), the peer accepts")),
            },
            (Ok(_), Err(e)) => match PEER_STRICTER.iter().find(|(m, _)| e.contains(m)) {
                Some((m, _)) => *stricter_seen.entry(m).or_default() += 1,
                None => failures.push(format!("{label}: we accept, the peer rejects: {e}")),
            },
        }
        if *kind == "valid" && mine.is_err() {
            failures.push(format!("{label}: our own encoding does not decode"));
        }
    }
    println!(
        "differential: {} cases, {agree} agreements; peer laxer than the spec:",
        cases.len()
    );
    for (rule, n) in &laxer_seen {
        let why = PEER_LAXER
            .iter()
            .find(|(r, _)| r == rule)
            .map_or("", |(_, w)| *w);
        println!("  {rule}: {n} inputs — {why}");
    }
    for (m, n) in &stricter_seen {
        println!("  peer rejects valid input ({m}): {n} inputs");
    }
    // The lists of known disagreements must stay true: every entry is exhibited by some input.
    for (rule, _) in PEER_LAXER {
        if !laxer_seen.contains_key(rule) {
            failures.push(format!(
                "known disagreement {rule} was not observed: remove it from PEER_LAXER"
            ));
        }
    }
    for m in PEER_STRICTER
        .iter()
        .map(|(m, _)| m)
        .chain(PEER_FIELD_BUGS.iter().map(|(d, _)| d))
    {
        if !stricter_seen.contains_key(m) {
            failures.push(format!(
                "known disagreement {m:?} was not observed: remove it from PEER_STRICTER"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
