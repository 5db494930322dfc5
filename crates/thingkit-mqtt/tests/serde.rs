//! The JSON shape of the `serde` feature (enabled for this crate's tests): what packets look like,
//! what absent fields default to, and that deserializing validates like decoding does and refuses
//! hostile input with an error instead of a panic. The round-trip property is in `roundtrip.rs`.

use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use serde_json::json;
use thingkit_mqtt::*;

fn from_json(v: serde_json::Value) -> Result<Packet, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

fn from_str(s: &str) -> Result<Packet, String> {
    serde_json::from_str(s).map_err(|e| e.to_string())
}

#[test]
fn publish_is_tagged_by_type_with_hex_payload_in_field_order() {
    let mut p = Publish::new(TopicName::new("a/b").unwrap(), &b"hi"[..]);
    p.qos = QoS::AtLeastOnce;
    p.packet_id = PacketId::new(7);
    p.properties.topic_alias = NonZeroU16::new(5);
    p.properties.payload_format_indicator = Some(true);
    p.properties.user_properties =
        vec![(MqttStr::new("k").unwrap(), MqttStr::new("v").unwrap())].into();
    let text = serde_json::to_string(&Packet::Publish(p)).unwrap();
    assert_eq!(
        text,
        r#"{"type":"PUBLISH","dup":false,"qos":1,"retain":false,"topic":"a/b","packet_id":7,"properties":{"payload_format_indicator":true,"topic_alias":5,"user_properties":[["k","v"]]},"payload_hex":"6869"}"#
    );
}

#[test]
fn every_packet_type_has_its_specification_name_as_tag() {
    let pid = PacketId::new(1).unwrap();
    let cases = [
        (Packet::PingReq, json!({"type": "PINGREQ"})),
        (Packet::PingResp, json!({"type": "PINGRESP"})),
        (
            Packet::PubAck(PubResponse::new(pid)),
            json!({"type": "PUBACK", "packet_id": 1, "reason_code": 0}),
        ),
        (
            Packet::PubComp(PubResponse::new(pid)),
            json!({"type": "PUBCOMP", "packet_id": 1, "reason_code": 0}),
        ),
        (
            Packet::UnsubAck(UnsubAck {
                packet_id: pid,
                properties: PacketProperties::new(),
                reason_codes: vec![ReasonCode::NO_SUBSCRIPTION_EXISTED],
            }),
            json!({"type": "UNSUBACK", "packet_id": 1, "reason_codes": [17]}),
        ),
        (
            Packet::Disconnect(Disconnect {
                reason_code: ReasonCode::NOT_AUTHORIZED,
                properties: PacketProperties::new(),
            }),
            json!({"type": "DISCONNECT", "reason_code": 135}),
        ),
        (
            Packet::Auth(Auth::default()),
            json!({"type": "AUTH", "reason_code": 0}),
        ),
    ];
    for (packet, expected) in cases {
        assert_eq!(serde_json::to_value(&packet).unwrap(), expected);
        assert_eq!(from_json(expected).unwrap(), packet);
    }
}

#[test]
fn connect_shape_with_will_credentials_and_properties() {
    let connect = Packet::Connect(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: false,
        keep_alive: 30,
        properties: Properties {
            session_expiry_interval: Some(3600),
            authentication_method: Some(MqttStr::new("SCRAM").unwrap()),
            authentication_data: Some(Bytes::from_static(b"\x00\xff")),
            ..Default::default()
        }
        .into(),
        client_id: MqttStr::new("dev-1").unwrap(),
        will: Some(Box::new(Will {
            topic: TopicName::new("last/will").unwrap(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties {
                correlation_data: Some(Bytes::from_static(b"\x01")),
                ..Default::default()
            }
            .into(),
        })),
        username: Some(MqttStr::new("u").unwrap()),
        password: Some(Bytes::from_static(b"\xffpw")),
    });
    let expected = json!({
        "type": "CONNECT",
        "protocol": "5.0",
        "clean_start": false,
        "keep_alive": 30,
        "properties": {
            "session_expiry_interval": 3600,
            "authentication_method": "SCRAM",
            "authentication_data_hex": "00ff"
        },
        "client_id": "dev-1",
        "will": {
            "topic": "last/will",
            "payload_hex": "627965",
            "qos": 1,
            "retain": true,
            "properties": {"correlation_data_hex": "01"}
        },
        "username": "u",
        "password_hex": "ff7077"
    });
    assert_eq!(serde_json::to_value(&connect).unwrap(), expected);
    assert_eq!(from_json(expected).unwrap(), connect);
}

#[test]
fn subscriptions_are_flat_objects_with_their_options() {
    let v = json!({
        "type": "SUBSCRIBE",
        "packet_id": 3,
        "subscriptions": [
            {"filter": "$share/g/x/#", "qos": 2, "retain_handling": 2},
            {"filter": "a/+", "no_local": true, "retain_as_published": true}
        ]
    });
    let Packet::Subscribe(s) = from_json(v).unwrap() else {
        panic!("SUBSCRIBE")
    };
    assert_eq!(s.subscriptions[0].filter.as_str(), "$share/g/x/#");
    assert_eq!(s.subscriptions[0].options.qos, QoS::ExactlyOnce);
    assert_eq!(
        s.subscriptions[0].options.retain_handling,
        RetainHandling::DoNotSend
    );
    assert!(s.subscriptions[1].options.no_local && s.subscriptions[1].options.retain_as_published);
    assert_eq!(s.subscriptions[1].options.qos, QoS::AtMostOnce);
    let back = serde_json::to_value(Packet::Subscribe(s)).unwrap();
    assert_eq!(
        back["subscriptions"][1],
        json!({"filter": "a/+", "qos": 0, "no_local": true, "retain_as_published": true, "retain_handling": 0})
    );
}

#[test]
fn absent_fields_take_documented_defaults() {
    assert_eq!(
        from_json(json!({"type": "CONNECT", "protocol": "3.1.1"})).unwrap(),
        Packet::Connect(Connect {
            protocol: ProtocolVersion::V311,
            clean_start: true,
            keep_alive: 60,
            properties: PacketProperties::new(),
            client_id: MqttStr::default(),
            will: None,
            username: None,
            password: None,
        })
    );
    let Packet::Publish(p) = from_json(json!({"type": "PUBLISH", "topic": "t"})).unwrap() else {
        panic!("PUBLISH")
    };
    assert_eq!(p, Publish::new(TopicName::new("t").unwrap(), Bytes::new()));
    // A PUBLISH without a topic is the MQTT 5.0 form whose Topic Alias stands in for it.
    let alias_only = json!({"type": "PUBLISH", "properties": {"topic_alias": 2}});
    let Packet::Publish(p) = from_json(alias_only.clone()).unwrap() else {
        panic!("PUBLISH")
    };
    assert_eq!(p.topic, None);
    let text = serde_json::to_value(Packet::Publish(p)).unwrap();
    assert!(text.get("topic").is_none(), "{text}");
    // An empty property object is no properties (and compares equal to none).
    assert_eq!(
        from_json(json!({"type": "DISCONNECT", "properties": {}})).unwrap(),
        Packet::Disconnect(Disconnect::default())
    );
}

#[test]
fn rejects_publish_topic_with_wildcard() {
    let err = from_json(json!({"type": "PUBLISH", "topic": "a/+"})).unwrap_err();
    assert!(err.contains("[MQTT-3.3.2-2]"), "{err}");
    let err = from_json(json!({"type": "PUBLISH", "topic": "a/#"})).unwrap_err();
    assert!(err.contains("[MQTT-3.3.2-2]"), "{err}");
    // The will topic and the Response Topic property are topic names too.
    let err = from_json(json!({"type": "CONNECT", "protocol": "5.0", "will": {"topic": "+"}}))
        .unwrap_err();
    assert!(err.contains("[MQTT-3.3.2-2]"), "{err}");
    let err = from_json(
        json!({"type": "PUBLISH", "topic": "a", "properties": {"response_topic": "r/#"}}),
    )
    .unwrap_err();
    assert!(err.contains("[MQTT-3.3.2-2]"), "{err}");
}

#[test]
fn rejects_invalid_topic_filters_and_strings() {
    let sub =
        |f: &str| json!({"type": "SUBSCRIBE", "packet_id": 1, "subscriptions": [{"filter": f}]});
    for (filter, rule) in [
        ("a/#/b", "[MQTT-4.7.1-1]"),
        ("a+", "[MQTT-4.7.1-2]"),
        ("", "[MQTT-4.7.3-1]"),
        ("$share/g", "[MQTT-4.8.2-2]"),
    ] {
        let err = from_json(sub(filter)).unwrap_err();
        assert!(err.contains(rule), "{filter:?}: {err}");
    }
    let err = from_json(json!({"type": "UNSUBSCRIBE", "packet_id": 1, "filters": ["x/#/y"]}))
        .unwrap_err();
    assert!(err.contains("[MQTT-4.7.1-1]"), "{err}");
    let err = from_json(json!({"type": "PUBLISH", "topic": ""})).unwrap_err();
    assert!(err.contains("[MQTT-4.7.3-1]"), "{err}");
    let err = from_json(json!({"type": "PUBLISH", "topic": "a\u{0}b"})).unwrap_err();
    assert!(err.contains("[MQTT-1.5.4-2]"), "{err}");
    let err = from_json(json!({"type": "CONNECT", "protocol": "5.0", "client_id": "a\u{0}"}))
        .unwrap_err();
    assert!(err.contains("[MQTT-1.5.4-2]"), "{err}");
    let long = "x".repeat(65_536);
    let err = from_json(json!({"type": "PUBLISH", "topic": long})).unwrap_err();
    assert!(err.contains("65,535"), "{err}");
}

#[test]
fn rejects_out_of_range_values_unknown_fields_and_types() {
    for (v, needle) in [
        (
            json!({"type": "PUBLISH", "topic": "a", "qos": 3}),
            "QoS 0, 1 or 2",
        ),
        (
            json!({"type": "PUBLISH", "topic": "a", "qos": -1}),
            "QoS 0, 1 or 2",
        ),
        (json!({"type": "PUBACK", "packet_id": 0}), "[MQTT-2.2.1-3]"),
        (
            json!({"type": "PUBACK", "packet_id": 65536}),
            "[MQTT-2.2.1-3]",
        ),
        (json!({"type": "PUBACK"}), "missing field `packet_id`"),
        (json!({"type": "DISCONNECT", "reason_code": 256}), "u8"),
        (
            json!({"type": "SUBSCRIBE", "packet_id": 1, "subscriptions": [{"filter": "a", "retain_handling": 3}]}),
            "3 is reserved",
        ),
        (
            json!({"type": "PUBLISH", "topic": "a", "paylaod_hex": "00"}),
            "unknown field `paylaod_hex`",
        ),
        (
            json!({"type": "PUBLISH", "topic": "a", "properties": {"topic_alais": 1}}),
            "unknown field `topic_alais`",
        ),
        (
            json!({"type": "PUBLISH", "topic": "a", "properties": {"topic_alias": 0}}),
            "nonzero",
        ),
        (
            json!({"type": "PUBLISH", "topic": "a", "payload_hex": "abc"}),
            "invalid hex",
        ),
        (
            json!({"type": "PUBLISH", "topic": "a", "payload_hex": "zz"}),
            "invalid hex",
        ),
        (
            json!({"type": "CONNECT", "protocol": "3.1"}),
            "\"3.1.1\" or \"5.0\"",
        ),
        (json!({"type": "CONNECT"}), "missing field `protocol`"),
        (
            json!({"type": "PUBLISH", "topic": "a", "properties": {"payload_format_indicator": 1}}),
            "boolean",
        ),
        (json!({"type": "publish"}), "unknown variant `publish`"),
        (
            json!({"type": "CONNACK", "session_present": "yes"}),
            "boolean",
        ),
        (json!({"topic": "a"}), "missing field `type`"),
        (json!([7]), ""),
        (json!("PINGREQ"), ""),
    ] {
        let err = from_json(v.clone()).unwrap_err();
        assert!(err.contains(needle), "{v}: {err}");
    }
}

#[test]
fn hostile_json_is_an_error_not_a_panic() {
    // Nesting beyond serde_json's recursion limit.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(
        from_str(&format!(
            r#"{{"type":"PUBLISH","topic":"a","payload_hex":{deep}}}"#
        ))
        .is_err()
    );
    // Numbers that do not fit, floats, and huge declared-nothing arrays.
    for text in [
        r#"{"type":"PUBLISH","topic":"a","qos":1e300}"#,
        r#"{"type":"PUBACK","packet_id":18446744073709551616}"#,
        r#"{"type":"PUBLISH","topic":"a","properties":{"message_expiry_interval":4294967296}}"#,
        r#"{"type":"PUBLISH","topic":"a","properties":{"subscription_identifiers":[0]}}"#,
        r#"{"type":"SUBACK","packet_id":1,"reason_codes":[1,2,"x"]}"#,
        r#"{"type":"PUBLISH","topic":"a""#,
        r#"{"type":"PUBLISH","type":"PUBLISH","topic":"a"}"#,
        "",
        "null",
    ] {
        assert!(from_str(text).is_err(), "{text}");
    }
}

#[test]
fn packet_rules_that_need_the_whole_packet_are_the_encoders() {
    // Deserializing checks each field; what needs the packet type or the protocol version is
    // refused by the encoder, as for a packet built in code.
    let enc = |v: ProtocolVersion, json: serde_json::Value| {
        let p = from_json(json).expect("every field is valid on its own");
        Encoder::new(v)
            .encode(&p, &mut BytesMut::new())
            .map(|_| ())
            .map_err(|e| e.rule().unwrap_or_default().to_string())
    };
    use ProtocolVersion::*;
    let publish_qos1 = json!({"type": "PUBLISH", "topic": "a", "qos": 1});
    assert_eq!(enc(V5, publish_qos1), Err("[MQTT-2.2.1-3]".into()));
    let publish_id = json!({"type": "PUBLISH", "topic": "a", "packet_id": 1});
    assert_eq!(enc(V5, publish_id), Err("[MQTT-2.2.1-2]".into()));
    let puback_code = json!({"type": "PUBACK", "packet_id": 1, "reason_code": 4});
    assert_eq!(enc(V5, puback_code), Err("[MQTT-5.0 §2.4]".into()));
    let wrong_property =
        json!({"type": "PUBACK", "packet_id": 1, "properties": {"topic_alias": 1}});
    assert_eq!(enc(V5, wrong_property), Err("[MQTT-5.0 §2.2.2.2]".into()));
    let max_qos_2 = json!({"type": "CONNACK", "properties": {"maximum_qos": 2}});
    assert_eq!(enc(V5, max_qos_2), Err("[MQTT-5.0 §3.2.2.3.4]".into()));
    let empty_subscribe = json!({"type": "SUBSCRIBE", "packet_id": 1, "subscriptions": []});
    assert_eq!(enc(V5, empty_subscribe), Err("[MQTT-3.8.3-2]".into()));
    let auth_on_v311 = json!({"type": "AUTH"});
    assert!(enc(V311, auth_on_v311).is_err());
    assert_eq!(enc(V5, json!({"type": "AUTH"})), Ok(()));
}

#[test]
fn decoded_packets_serialize_and_come_back_equal() {
    // A 5.0 PUBLISH with properties, straight from the wire.
    let wire = b"\x30\x0f\x00\x01t\x0a\x23\x00\x05\x26\x00\x01k\x00\x01vx";
    let mut buf = BytesMut::from(&wire[..]);
    let p = Decoder::new(ProtocolVersion::V5)
        .decode(&mut buf)
        .unwrap()
        .unwrap();
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(
        json,
        r#"{"type":"PUBLISH","dup":false,"qos":0,"retain":false,"topic":"t","properties":{"topic_alias":5,"user_properties":[["k","v"]]},"payload_hex":"78"}"#
    );
    assert_eq!(from_str(&json).unwrap(), p);
}

/// User properties of a decoded packet (kept as a slice of the frame) serialize exactly as the
/// same pairs built in code.
#[test]
fn decoded_user_properties_serialize_like_built_ones() {
    let mut p = Publish::new(TopicName::new("t").unwrap(), &b"x"[..]);
    p.properties.user_properties = vec![
        (MqttStr::new("k").unwrap(), MqttStr::new("v").unwrap()),
        (MqttStr::new("k").unwrap(), MqttStr::new("w").unwrap()),
    ]
    .into();
    p.properties.topic_alias = NonZeroU16::new(5);
    let built = Packet::Publish(p);
    let mut wire = BytesMut::new();
    Encoder::new(ProtocolVersion::V5)
        .encode(&built, &mut wire)
        .unwrap();
    let decoded = Decoder::new(ProtocolVersion::V5)
        .decode(&mut wire)
        .unwrap()
        .unwrap();
    let json = serde_json::to_string(&decoded).unwrap();
    assert_eq!(json, serde_json::to_string(&built).unwrap());
    assert!(
        json.contains(r#""user_properties":[["k","v"],["k","w"]]"#),
        "{json}"
    );
    assert_eq!(from_str(&json).unwrap(), decoded);
}
