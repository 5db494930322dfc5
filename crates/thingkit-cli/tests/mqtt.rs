//! `thingkit mqtt decode/encode` end to end through the real binary.

mod common;
use common::*;

#[test]
fn decode_prints_one_json_line_per_packet() {
    let o = thingkit(
        &["mqtt", "decode", "--protocol", "3.1.1"],
        Some("30 07 00 03 61 2f 62 68 69\n32 09 00 03 61 2f 62 00 07 6f 6b\nc0 00\n"),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["type"], "PUBLISH");
    assert_eq!(lines[0]["topic"], "a/b");
    assert_eq!(lines[0]["qos"], 0);
    assert_eq!(lines[0]["payload_hex"], "6869");
    assert_eq!(lines[1]["qos"], 1);
    assert_eq!(lines[1]["packet_id"], 7);
    assert_eq!(lines[2]["type"], "PINGREQ");
}

#[test]
fn decode_reads_hex_argument_and_v5_properties() {
    // PUBLISH QoS 0, topic "t", properties: topic alias 5, user property ("k","v"), payload "x".
    let hex = "30 0f 0001 74 0a 2300 05 26 0001 6b 0001 76 78";
    let o = thingkit(&["mqtt", "decode", "--protocol", "5.0", hex], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["properties"]["topic_alias"], 5);
    assert_eq!(v["properties"]["user_properties"][0][0], "k");
    assert_eq!(v["payload_hex"], "78");
}

#[test]
fn decode_rejects_malformed_packet_naming_the_rule() {
    let o = thingkit(&["mqtt", "decode", "--protocol", "3.1.1", "36 00"], None);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("[MQTT-3.3.1-4]"), "{err}");
    assert_eq!(err.trim().lines().count(), 1);
}

#[test]
fn decode_rejects_wildcard_in_topic_name() {
    let o = thingkit(
        &[
            "mqtt",
            "decode",
            "--protocol",
            "5.0",
            "30 05 00 01 2b 00 78",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("[MQTT-3.3.2-2]"), "{}", stderr(&o));
}

#[test]
fn decode_reports_incomplete_input() {
    let o = thingkit(
        &["mqtt", "decode", "--protocol", "3.1.1", "30 07 00 03 61"],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("incomplete"), "{}", stderr(&o));
}

#[test]
fn decode_enforces_max_packet_size() {
    let o = thingkit(
        &[
            "mqtt",
            "decode",
            "--protocol",
            "3.1.1",
            "--max-packet-size",
            "8",
            "30 07 00 03 61 2f 62 68 69",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("maximum packet size"), "{}", stderr(&o));
}

#[test]
fn decode_rejects_bad_hex_and_usage_errors() {
    let o = thingkit(&["mqtt", "decode", "--protocol", "3.1.1", "zz"], None);
    assert_eq!(o.status.code(), Some(1));
    let o = thingkit(&["mqtt", "decode", "--protocol", "4.0", "c000"], None);
    assert_eq!(o.status.code(), Some(2));
    let o = thingkit(&["mqtt", "decode", "c000"], None);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn encode_is_the_inverse_of_decode() {
    let input = r#"{"type":"PUBLISH","qos":1,"packet_id":9,"retain":true,"topic":"a/b","payload_hex":"6869","properties":{"message_expiry_interval":30,"user_properties":[["k","v"]]}}
{"type":"SUBSCRIBE","packet_id":3,"subscriptions":[{"filter":"$share/g/x/#","qos":2,"retain_handling":2}]}
{"type":"DISCONNECT","reason_code":4}"#;
    let o = thingkit(&["mqtt", "encode", "--protocol", "5.0"], Some(input));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let hex = stdout(&o);
    assert_eq!(hex.lines().count(), 3);
    let d = thingkit(&["mqtt", "decode", "--protocol", "5.0"], Some(&hex));
    assert_eq!(d.status.code(), Some(0), "{}", stderr(&d));
    let out: Vec<serde_json::Value> = stdout(&d)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected: Vec<serde_json::Value> = input
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out[0]["packet_id"], expected[0]["packet_id"]);
    assert_eq!(out[0]["properties"], expected[0]["properties"]);
    assert_eq!(out[1]["subscriptions"][0]["filter"], "$share/g/x/#");
    assert_eq!(out[1]["subscriptions"][0]["retain_handling"], 2);
    assert_eq!(out[2]["reason_code"], 4);
}

#[test]
fn encode_refuses_what_the_spec_forbids() {
    let o = thingkit(
        &[
            "mqtt",
            "encode",
            "--protocol",
            "3.1.1",
            r#"{"type":"PUBLISH","topic":"a/+","payload_hex":""}"#,
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("[MQTT-3.3.2-2]"), "{}", stderr(&o));
    let o = thingkit(
        &[
            "mqtt",
            "encode",
            "--protocol",
            "3.1.1",
            r#"{"type":"AUTH"}"#,
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let o = thingkit(
        &[
            "mqtt",
            "encode",
            "--protocol",
            "5.0",
            r#"{"type":"PUBLISH","topic":"a","packet_id":1}"#,
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("[MQTT-2.2.1-2]"), "{}", stderr(&o));
    let o = thingkit(
        &[
            "mqtt",
            "encode",
            "--protocol",
            "5.0",
            r#"{"type":"PUBLISH","qos":1}"#,
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("[MQTT-2.2.1-3]"), "{}", stderr(&o));
}
