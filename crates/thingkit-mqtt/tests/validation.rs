//! One test per validation rule: the exact bytes, the decision, and the rule the error names.

use bytes::BytesMut;
use std::num::NonZeroU16;
use thingkit_mqtt::{
    Decoder, DecoderConfig, Encoder, Error, MqttStr, Packet, PacketView, ProtocolVersion, QoS,
    ReasonCode, UserProperties,
};

const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn bytes(hex: &str) -> BytesMut {
    let digits: Vec<u8> = hex
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_digit(16).expect("test hex") as u8)
        .collect();
    BytesMut::from(
        &digits
            .chunks(2)
            .map(|p| (p[0] << 4) | p[1])
            .collect::<Vec<u8>>()[..],
    )
}

fn decode(v: ProtocolVersion, hex: &str) -> Result<Option<Packet>, Error> {
    let mut buf = bytes(hex);
    let out = Decoder::new(v).decode(&mut buf);
    if let Ok(Some(_)) = out {
        assert!(buf.is_empty(), "decoder left bytes behind");
    }
    out
}

fn accept(v: ProtocolVersion, hex: &str) -> Packet {
    match decode(v, hex) {
        Ok(Some(p)) => p,
        other => panic!("{hex}: expected a packet, got {other:?}"),
    }
}

/// Asserts the bytes are rejected, and returns the rule the error names.
fn reject(v: ProtocolVersion, hex: &str) -> &'static str {
    match decode(v, hex) {
        Err(e) => e.rule().expect("decoding errors name a rule"),
        other => panic!("{hex}: expected an error, got {other:?}"),
    }
}

// --- fixed header ---------------------------------------------------------------------------

#[test]
fn rejects_reserved_fixed_header_flags() {
    assert_eq!(reject(V3, "41 02 0001"), "[MQTT-2.2.2-1]");
    assert_eq!(reject(V5, "41 02 0001"), "[MQTT-2.1.3-1]");
    assert_eq!(reject(V3, "60 02 0001"), "[MQTT-2.2.2-1]"); // PUBREL must be 0010
    assert_eq!(reject(V3, "80 06 0001 0001 61 00"), "[MQTT-2.2.2-1]"); // SUBSCRIBE
    assert_eq!(reject(V5, "a0 05 0001 00 0001 61"), "[MQTT-2.1.3-1]"); // UNSUBSCRIBE
    assert_eq!(reject(V5, "c1 00"), "[MQTT-2.1.3-1]");
    assert_eq!(reject(V5, "e8 00"), "[MQTT-2.1.3-1]");
    assert!(matches!(accept(V3, "62 02 0001"), Packet::PubRel(_)));
}

#[test]
fn rejects_reserved_packet_types() {
    assert_eq!(reject(V3, "00 00"), "[MQTT-3.1.1 §2.2.1]");
    assert_eq!(reject(V5, "00 00"), "[MQTT-5.0 §2.1.2]");
    // AUTH (15) exists only in 5.0.
    assert_eq!(reject(V3, "f0 00"), "[MQTT-3.1.1 §2.2.1]");
    assert!(matches!(accept(V5, "f0 00"), Packet::Auth(_)));
}

#[test]
fn rejects_publish_with_qos_3_from_the_first_byte() {
    assert_eq!(reject(V3, "36"), "[MQTT-3.3.1-4]");
    assert_eq!(reject(V5, "36 00"), "[MQTT-3.3.1-4]");
}

#[test]
fn rejects_dup_with_qos_0() {
    assert_eq!(reject(V3, "38 04 0001 61 00"), "[MQTT-3.3.1-2]");
    assert!(
        matches!(accept(V3, "3a 05 0001 61 0007"), Packet::Publish(p) if p.dup && p.qos == QoS::AtLeastOnce)
    );
}

#[test]
fn rejects_remaining_length_longer_than_four_bytes() {
    assert_eq!(reject(V3, "30 ff ff ff ff 01"), "[MQTT-3.1.1 §2.2.3]");
    assert_eq!(reject(V5, "30 80 80 80 80 01"), "[MQTT-5.0 §1.5.5]");
}

/// Regression: a fourth remaining-length byte with the continuation bit set is malformed the
/// moment it arrives ([MQTT-1.5.5], 3.1.1 §2.2.3); the decoder used to wait for a fifth byte and
/// report the stream as incomplete, so a peer could stall a connection on a frame that can never
/// become valid.
#[test]
fn rejects_a_fourth_remaining_length_byte_with_continuation_without_waiting() {
    for v in [V3, V5] {
        for first in ["30", "c0", "82"] {
            let hex = format!("{first} ff ff ff ff");
            assert!(
                matches!(decode(v, &hex), Err(Error::Malformed { .. })),
                "{v:?} {hex}"
            );
            let view = bytes(&hex);
            assert!(Decoder::new(v).decode_view(&view).is_err(), "{v:?} {hex}");
        }
        // Three continuation bytes can still be followed by a valid fourth: incomplete.
        assert!(matches!(decode(v, "30 ff ff ff"), Ok(None)), "{v:?}");
    }
}

#[test]
fn rejects_non_minimal_remaining_length_in_v5_only() {
    assert_eq!(reject(V5, "c0 80 00"), "[MQTT-1.5.5-1]");
    assert_eq!(reject(V5, "30 85 80 00"), "[MQTT-1.5.5-1]");
    // 3.1.1 has no minimality rule: 0x80 0x00 is a valid (if odd) encoding of 0.
    assert_eq!(accept(V3, "c0 80 00"), Packet::PingReq);
}

#[test]
fn rejects_non_minimal_varint_inside_v5_properties() {
    // property length 0 encoded as 0x80 0x00
    assert_eq!(reject(V5, "30 05 0001 61 80 00"), "[MQTT-1.5.5-1]");
    // subscription identifier 1 encoded as 0x81 0x00
    assert_eq!(reject(V5, "30 07 0001 61 03 0b 81 00"), "[MQTT-1.5.5-1]");
}

#[test]
fn rejects_packets_above_max_packet_size_before_the_body_arrives() {
    let mut buf = bytes("30 ff ff ff 7f");
    let cap = buf.capacity();
    let mut d = Decoder::new(V3);
    let e = d.decode(&mut buf).unwrap_err();
    assert!(
        matches!(
            e,
            Error::PacketTooLarge {
                size: 268_435_460,
                limit: 1_048_576,
                offset: 0
            }
        ),
        "{e}"
    );
    assert_eq!(
        buf.capacity(),
        cap,
        "the decoder must not reserve from a length field"
    );
    let mut d = Decoder::new(V3).with_config(DecoderConfig::default().with_max_packet_size(9));
    assert!(d.decode(&mut bytes("30 07 0003 612f62 6869")).is_ok());
    let mut d = Decoder::new(V3).with_config(DecoderConfig::default().with_max_packet_size(8));
    assert!(matches!(
        d.decode(&mut bytes("30 07 0003 612f62 6869")),
        Err(Error::PacketTooLarge { size: 9, .. })
    ));
}

#[test]
fn incomplete_input_is_none_and_leaves_the_buffer_untouched() {
    let full = "32 09 0003 612f62 0007 6f6b";
    let digits: String = full.chars().filter(|c| !c.is_whitespace()).collect();
    for cut in (0..digits.len()).step_by(2) {
        let mut buf = bytes(&digits[..cut]);
        let before = buf.clone();
        assert!(
            Decoder::new(V3).decode(&mut buf).unwrap().is_none(),
            "cut at {cut}"
        );
        assert_eq!(buf, before);
    }
}

// --- strings and topics -----------------------------------------------------------------------

#[test]
fn rejects_ill_formed_utf8_and_surrogates() {
    assert_eq!(reject(V3, "30 04 0002 c0af"), "[MQTT-1.5.3-1]");
    assert_eq!(reject(V5, "30 05 0002 c0af 00"), "[MQTT-1.5.4-1]");
    assert_eq!(reject(V3, "30 05 0003 eda080"), "[MQTT-1.5.3-1]"); // U+D800
    assert_eq!(reject(V5, "30 06 0003 edbfbf 00"), "[MQTT-1.5.4-1]"); // U+DFFF
    // A client identifier with a surrogate.
    assert_eq!(
        reject(V3, "10 0f 0004 4d515454 04 02 003c 0003 eda080"),
        "[MQTT-1.5.3-1]"
    );
}

#[test]
fn rejects_u0000_in_strings() {
    assert_eq!(reject(V3, "30 04 0002 6100"), "[MQTT-1.5.3-2]");
    assert_eq!(reject(V5, "30 05 0002 6100 00"), "[MQTT-1.5.4-2]");
    // in a user property value
    assert_eq!(
        reject(V5, "30 0c 0001 61 08 26 0001 6b 0001 00 78"[..].trim(),),
        "[MQTT-1.5.4-2]"
    );
}

#[test]
fn rejects_publish_topic_with_wildcard() {
    assert_eq!(reject(V3, "30 05 0003 612f2b"), "[MQTT-3.3.2-2]");
    assert_eq!(reject(V5, "30 06 0003 612f23 00"), "[MQTT-3.3.2-2]");
    // Will topic and response topic are topic names too.
    assert_eq!(
        reject(V5, "30 0a 0001 61 06 08 0003 612f2b"),
        "[MQTT-3.3.2-2]"
    );
}

#[test]
fn rejects_empty_topic_without_alias() {
    assert_eq!(reject(V3, "30 02 0000"), "[MQTT-4.7.3-1]");
    assert_eq!(reject(V5, "30 03 0000 00"), "[MQTT-5.0 §3.3.2.1]");
    let Packet::Publish(p) = accept(V5, "30 06 0000 03 230001") else {
        panic!()
    };
    assert!(p.topic.is_none());
    assert_eq!(p.properties.topic_alias.unwrap().get(), 1);
}

#[test]
fn rejects_invalid_topic_filters() {
    // SUBSCRIBE "a/#/b"
    assert_eq!(
        reject(V3, "82 0a 0001 0005 612f232f62 00"),
        "[MQTT-4.7.1-2]"
    );
    assert_eq!(
        reject(V5, "82 0b 0001 00 0005 612f232f62 00"),
        "[MQTT-4.7.1-1]"
    );
    // "a+"
    assert_eq!(reject(V3, "82 07 0001 0002 612b 00"), "[MQTT-4.7.1-3]");
    assert_eq!(reject(V5, "82 08 0001 00 0002 612b 00"), "[MQTT-4.7.1-2]");
    // UNSUBSCRIBE "#a"
    assert_eq!(reject(V5, "a2 07 0001 00 0002 2361"), "[MQTT-4.7.1-1]");
    // empty filter
    assert_eq!(reject(V3, "82 05 0001 0000 00"), "[MQTT-4.7.3-1]");
    // "$share/g" without a filter
    assert_eq!(
        reject(V5, "82 0e 0001 00 0008 2473686172652f67 00"),
        "[MQTT-4.8.2-2]"
    );
}

// --- CONNECT --------------------------------------------------------------------------------

const CONNECT_V3_HEAD: &str = "10 0c 0004 4d515454 04";

#[test]
fn rejects_connect_reserved_flag() {
    assert_eq!(
        reject(V3, &format!("{CONNECT_V3_HEAD} 03 003c 0000")),
        "[MQTT-3.1.2-3]"
    );
    assert_eq!(
        reject(V5, "10 0d 0004 4d515454 05 01 003c 00 0000"),
        "[MQTT-3.1.2-3]"
    );
}

#[test]
fn rejects_inconsistent_will_flags() {
    // will QoS 1 without will flag
    assert_eq!(
        reject(V3, &format!("{CONNECT_V3_HEAD} 0a 003c 0000")),
        "[MQTT-3.1.2-13]"
    );
    assert_eq!(
        reject(V5, "10 0d 0004 4d515454 05 0a 003c 00 0000"),
        "[MQTT-3.1.2-11]"
    );
    // will QoS 3
    assert_eq!(
        reject(V3, &format!("{CONNECT_V3_HEAD} 1e 003c 0000")),
        "[MQTT-3.1.2-14]"
    );
    assert_eq!(
        reject(V5, "10 0d 0004 4d515454 05 1e 003c 00 0000"),
        "[MQTT-3.1.2-12]"
    );
    // will retain without will flag
    assert_eq!(
        reject(V3, &format!("{CONNECT_V3_HEAD} 22 003c 0000")),
        "[MQTT-3.1.2-15]"
    );
    assert_eq!(
        reject(V5, "10 0d 0004 4d515454 05 22 003c 00 0000"),
        "[MQTT-3.1.2-13]"
    );
}

#[test]
fn rejects_wrong_protocol_name_and_level() {
    assert_eq!(
        reject(V3, "10 0c 0004 4d515458 04 02 003c 0000"),
        "[MQTT-3.1.2-1]"
    );
    assert_eq!(
        reject(V3, "10 0c 0004 4d515454 03 02 003c 0000"),
        "[MQTT-3.1.2-2]"
    );
    // a 5.0 CONNECT on a connection configured for 3.1.1
    assert_eq!(
        reject(V3, "10 0d 0004 4d515454 05 02 003c 00 0000"),
        "[MQTT-3.1.2-2]"
    );
}

#[test]
fn password_without_user_name_is_3_1_1_only_error() {
    assert_eq!(
        reject(
            V3,
            &format!("{CONNECT_V3_HEAD} 42 003c 0000 0002 0102").replace("10 0c", "10 10")
        ),
        "[MQTT-3.1.2-22]"
    );
    let Packet::Connect(c) = accept(V5, "10 11 0004 4d515454 05 42 003c 00 0000 0002 00ff") else {
        panic!()
    };
    assert_eq!(c.password.as_deref(), Some(&[0x00, 0xff][..])); // binary password
    assert!(c.username.is_none());
}

#[test]
fn decodes_connect_with_will_user_and_properties() {
    // v5 CONNECT: clean start, will QoS 1 retain, user name + password, keep alive 30,
    // properties: session expiry 10; will properties: will delay 5; client id "c".
    let hex = "10 2a 0004 4d515454 05 ee 001e 05 11 0000000a 0001 63 05 18 00000005 0003 612f62 0002 6869 0002 7531 0002 7077";
    let Packet::Connect(c) = accept(V5, hex) else {
        panic!()
    };
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 30);
    assert_eq!(c.properties.session_expiry_interval, Some(10));
    let w = c.will.unwrap();
    assert_eq!(
        (w.topic.as_str(), &w.payload[..], w.qos, w.retain),
        ("a/b", &b"hi"[..], QoS::AtLeastOnce, true)
    );
    assert_eq!(w.properties.will_delay_interval, Some(5));
    assert_eq!(c.username.unwrap().as_str(), "u1");
    assert_eq!(&c.password.unwrap()[..], b"pw");
}

#[test]
fn detecting_decoder_learns_version_from_connect_and_requires_connect_first() {
    let mut d = Decoder::detect();
    assert_eq!(
        d.decode(&mut bytes("c0 00")).unwrap_err().rule(),
        Some("[MQTT-3.1.0-1]")
    );
    let mut d = Decoder::detect();
    let mut buf = bytes(&format!("{CONNECT_V3_HEAD} 02 003c 0000 f0 00"));
    assert!(matches!(d.decode(&mut buf), Ok(Some(Packet::Connect(_)))));
    assert_eq!(d.version(), Some(V3));
    // AUTH does not exist in 3.1.1
    assert!(d.decode(&mut buf).is_err());
    let mut d = Decoder::detect();
    let mut buf = bytes("10 0d 0004 4d515454 05 02 003c 00 0000 f0 00");
    assert!(matches!(d.decode(&mut buf), Ok(Some(Packet::Connect(_)))));
    assert_eq!(d.version(), Some(V5));
    assert!(matches!(d.decode(&mut buf), Ok(Some(Packet::Auth(_)))));
}

// --- properties -----------------------------------------------------------------------------

#[test]
fn rejects_duplicate_singleton_properties() {
    assert_eq!(
        reject(V5, "30 0e 0001 61 0a 02 00000001 02 00000002"),
        "[MQTT-5.0 §2.2.2.2]"
    );
    // a second subscription identifier in SUBSCRIBE
    assert_eq!(
        reject(V5, "82 0b 0001 04 0b 01 0b 02 0001 61 00"),
        "[MQTT-5.0 §2.2.2.2]"
    );
}

#[test]
fn accepts_repeated_user_properties_in_order_and_several_subscription_ids_in_publish() {
    let Packet::Publish(p) = accept(
        V5,
        "30 1d 0001 61 19 0b 01 0b 02 26 0001 6b 0001 31 26 0001 6b 0001 32 26 0001 6a 0001 33",
    ) else {
        panic!()
    };
    let ids: Vec<u32> = p
        .properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect();
    assert_eq!(ids, [1, 2]);
    let ups: Vec<(&str, &str)> = p.properties.user_properties.iter().collect();
    assert_eq!(ups, [("k", "1"), ("k", "2"), ("j", "3")]);
}

#[test]
fn rejects_property_not_allowed_on_this_packet() {
    assert_eq!(
        reject(V5, "30 09 0001 61 05 11 00000001"),
        "[MQTT-5.0 §2.2.2.2]"
    );
    // topic alias on CONNACK
    assert_eq!(reject(V5, "20 06 00 00 03 23 0001"), "[MQTT-5.0 §2.2.2.2]");
    // unknown identifier 0x04
    assert_eq!(reject(V5, "30 06 0001 61 02 04 00"), "[MQTT-5.0 §2.2.2.2]");
}

#[test]
fn rejects_zero_values_the_spec_forbids() {
    assert_eq!(reject(V5, "30 07 0001 61 03 23 0000"), "[MQTT-3.3.2-8]");
    assert_eq!(
        reject(V5, "30 06 0001 61 02 0b 00"),
        "[MQTT-5.0 §3.3.2.3.8]"
    );
    assert_eq!(
        reject(V5, "10 10 0004 4d515454 05 02 003c 03 21 0000 0000"),
        "[MQTT-5.0 §3.1.2.11.3]"
    );
    assert_eq!(
        reject(V5, "10 12 0004 4d515454 05 02 003c 05 27 00000000 0000"),
        "[MQTT-5.0 §3.1.2.11.4]"
    );
}

#[test]
fn rejects_out_of_range_property_values() {
    // payload format indicator 2
    assert_eq!(reject(V5, "30 06 0001 61 02 01 02"), "[MQTT-5.0 §2.2.2.2]");
    // maximum QoS 2 in CONNACK
    assert_eq!(reject(V5, "20 05 00 00 02 24 02"), "[MQTT-5.0 §3.2.2.3.4]");
    // authentication data without a method
    assert_eq!(
        reject(V5, "f0 06 18 04 16 0001 00"),
        "[MQTT-5.0 §3.1.2.11.10]"
    );
}

#[test]
fn rejects_property_length_past_the_packet_end() {
    assert_eq!(reject(V5, "30 04 0001 61 09"), "[MQTT-5.0 §2.1.4]");
}

// --- SUBSCRIBE ------------------------------------------------------------------------------

#[test]
fn rejects_subscription_option_reserved_bits() {
    assert_eq!(reject(V3, "82 06 0001 0001 61 04"), "[MQTT-3-8.3-4]");
    assert_eq!(reject(V5, "82 07 0001 00 0001 61 c0"), "[MQTT-3.8.3-5]");
    assert_eq!(
        reject(V5, "82 07 0001 00 0001 61 30"),
        "[MQTT-5.0 §3.8.3.1]"
    ); // retain handling 3
    assert_eq!(
        reject(V5, "82 07 0001 00 0001 61 03"),
        "[MQTT-5.0 §3.8.3.1]"
    ); // QoS 3
    assert_eq!(reject(V3, "82 06 0001 0001 61 03"), "[MQTT-3-8.3-4]");
}

#[test]
fn rejects_no_local_on_shared_subscription() {
    assert_eq!(
        reject(V5, "82 10 0001 00 000a 2473686172652f672f61 04"),
        "[MQTT-3.8.3-4]"
    );
    let Packet::Subscribe(s) = accept(V5, "82 10 0001 00 000a 2473686172652f672f61 2a") else {
        panic!()
    };
    let o = s.subscriptions[0].options;
    assert!(o.retain_as_published && !o.no_local && o.qos == QoS::ExactlyOnce);
}

#[test]
fn rejects_subscribe_and_unsubscribe_without_filters() {
    assert_eq!(reject(V3, "82 02 0001"), "[MQTT-3.8.3-3]");
    assert_eq!(reject(V5, "82 03 0001 00"), "[MQTT-3.8.3-2]");
    assert_eq!(reject(V3, "a2 02 0001"), "[MQTT-3.10.3-2]");
}

// --- acknowledgements, short forms, reason codes ----------------------------------------------

#[test]
fn accepts_every_v5_short_form() {
    let ack = |hex| match accept(V5, hex) {
        Packet::PubAck(a) => (a.reason_code, a.properties.is_empty()),
        p => panic!("{p:?}"),
    };
    assert_eq!(ack("40 02 0001"), (ReasonCode::SUCCESS, true));
    assert_eq!(
        ack("40 03 0001 10"),
        (ReasonCode::NO_MATCHING_SUBSCRIBERS, true)
    );
    assert_eq!(
        ack("40 04 0001 10 00"),
        (ReasonCode::NO_MATCHING_SUBSCRIBERS, true)
    );
    assert_eq!(accept(V5, "e0 00"), Packet::Disconnect(Default::default()));
    assert!(
        matches!(accept(V5, "e0 01 04"), Packet::Disconnect(d) if d.reason_code == ReasonCode::DISCONNECT_WITH_WILL_MESSAGE)
    );
    assert!(
        matches!(accept(V5, "e0 02 8e 00"), Packet::Disconnect(d) if d.reason_code == ReasonCode::SESSION_TAKEN_OVER)
    );
    assert_eq!(accept(V5, "f0 00"), Packet::Auth(Default::default()));
    assert!(
        matches!(accept(V5, "f0 02 18 00"), Packet::Auth(a) if a.reason_code == ReasonCode::CONTINUE_AUTHENTICATION)
    );
    // AUTH with a reason code must also carry the property length.
    assert_eq!(reject(V5, "f0 01 18"), "[MQTT-5.0 §2.1.4]");
}

#[test]
fn rejects_reason_codes_not_allowed_in_the_packet() {
    assert_eq!(reject(V5, "40 03 0001 05"), "[MQTT-5.0 §2.4]");
    assert_eq!(reject(V5, "62 03 0001 10"), "[MQTT-5.0 §2.4]"); // PUBREL allows 0x00, 0x92
    assert_eq!(reject(V5, "e0 01 01"), "[MQTT-5.0 §2.4]");
    assert_eq!(reject(V5, "f0 02 04 00"), "[MQTT-5.0 §2.4]");
    assert_eq!(reject(V3, "20 02 00 06"), "[MQTT-3.1.1 §3.2.2.3]");
    assert_eq!(reject(V3, "90 03 0001 03"), "[MQTT-3.1.1 §3.2.2.3]");
    assert!(
        matches!(accept(V3, "90 04 0001 02 80"), Packet::SubAck(s) if s.reason_codes.len() == 2)
    );
}

#[test]
fn rejects_connack_reserved_flags_and_session_present_with_error() {
    assert_eq!(reject(V3, "20 02 02 00"), "[MQTT-3.2.2-1]");
    assert_eq!(reject(V3, "20 02 01 05"), "[MQTT-3.2.2-4]");
    assert_eq!(reject(V5, "20 03 01 87 00"), "[MQTT-3.2.2-6]");
}

#[test]
fn rejects_zero_packet_identifier() {
    assert_eq!(reject(V3, "32 05 0001 61 0000"), "[MQTT-2.3.1-1]");
    assert_eq!(reject(V5, "40 02 0000"), "[MQTT-2.2.1-3]");
    assert_eq!(reject(V3, "82 06 0000 0001 61 00"), "[MQTT-2.3.1-1]");
}

// --- framing --------------------------------------------------------------------------------

#[test]
fn rejects_trailing_bytes_after_the_body() {
    assert_eq!(reject(V3, "c0 01 00"), "[MQTT-3.1.1 §2.2.3]");
    assert_eq!(reject(V3, "40 03 0001 00"), "[MQTT-3.1.1 §2.2.3]");
    assert_eq!(reject(V3, "e0 01 00"), "[MQTT-3.1.1 §2.2.3]");
    assert_eq!(
        reject(
            V3,
            &format!("{CONNECT_V3_HEAD} 02 003c 0000 ff").replace("10 0c", "10 0d")
        ),
        "[MQTT-3.1.1 §2.2.3]"
    );
    assert_eq!(reject(V5, "20 04 00 00 00 00"), "[MQTT-5.0 §2.1.4]");
}

#[test]
fn rejects_truncated_inner_fields() {
    assert_eq!(reject(V3, "30 03 0005 61"), "[MQTT-3.1.1 §2.2.3]");
    assert_eq!(reject(V3, "32 04 0001 61 00"), "[MQTT-3.1.1 §2.2.3]"); // half a packet id
    assert_eq!(
        reject(V5, "30 08 0001 61 04 26 0001 6b"),
        "[MQTT-5.0 §2.1.4]"
    ); // user property value missing
    assert_eq!(reject(V3, "40 01 00"), "[MQTT-3.1.1 §2.2.3]");
}

#[test]
fn error_offsets_are_stream_positions() {
    let mut d = Decoder::new(V3);
    let mut buf = bytes("c0 00 30 05 0003 612f2b");
    assert_eq!(d.decode(&mut buf).unwrap(), Some(Packet::PingReq));
    match d.decode(&mut buf) {
        Err(Error::Malformed { offset, .. }) => assert_eq!(offset, 2 + 2 + 2 + 2), // the '+'
        other => panic!("{other:?}"),
    }
}

#[test]
fn decoded_publish_shares_memory_with_the_input() {
    let mut buf = bytes("30 07 0003 612f62 6869");
    let range = buf.as_ptr_range();
    let Some(Packet::Publish(p)) = Decoder::new(V3).decode(&mut buf).unwrap() else {
        panic!()
    };
    assert!(range.contains(&p.payload.as_ptr()));
    // A topic of up to 62 bytes is copied into the TopicName (cheaper than a reference count).
    let topic = p.topic.unwrap();
    assert_eq!(topic.as_str(), "a/b");
    assert!(!range.contains(&topic.as_bytes().as_ptr()));

    // A longer topic is a slice of the input.
    let long = "t/".repeat(40);
    let mut frame = vec![0x30, 2 + 80 + 2, 0, 80];
    frame.extend_from_slice(long.as_bytes());
    frame.extend_from_slice(b"hi");
    let mut buf = BytesMut::from(&frame[..]);
    let range = buf.as_ptr_range();
    let Some(Packet::Publish(p)) = Decoder::new(V3).decode(&mut buf).unwrap() else {
        panic!()
    };
    let topic = p.topic.unwrap();
    assert_eq!(topic.as_str(), long);
    assert!(range.contains(&topic.as_bytes().as_ptr()));
    assert!(range.contains(&p.payload.as_ptr()));
}

/// Decoded user properties stay one piece of the property block, among the other properties:
/// they iterate in wire order, skipping the properties between them, compare equal to the same
/// pairs built in code, come out as owned pairs, and turn into a `Vec` on `push`.
#[test]
fn decoded_user_properties_iterate_in_order_and_behave_like_built_ones() {
    let s = |x: &str| MqttStr::new(x).unwrap();
    // PUBLISH "a", QoS 0; properties: user (k, v), expiry 60, user (k, w), alias 3.
    let mut frame = vec![0x30, 0, 0x00, 0x01, b'a'];
    let props: &[u8] = &[
        0x26, 0, 1, b'k', 0, 1, b'v', 0x02, 0, 0, 0, 60, 0x26, 0, 1, b'k', 0, 1, b'w', 0x23, 0, 3,
    ];
    frame.push(props.len() as u8);
    frame.extend_from_slice(props);
    frame.extend_from_slice(b"payload");
    frame[1] = (frame.len() - 2) as u8;

    let mut buf = BytesMut::from(&frame[..]);
    let Some(Packet::Publish(p)) = Decoder::new(ProtocolVersion::V5).decode(&mut buf).unwrap()
    else {
        panic!("expected PUBLISH")
    };
    let up = &p.properties.user_properties;
    assert_eq!(up.len(), 2);
    assert_eq!(up.iter().collect::<Vec<_>>(), [("k", "v"), ("k", "w")]);
    assert_eq!(up.get("k"), Some("v"));
    assert_eq!(up.get("x"), None);
    assert_eq!(format!("{up:?}"), r#"[("k", "v"), ("k", "w")]"#);
    let built: UserProperties = vec![(s("k"), s("v")), (s("k"), s("w"))].into();
    assert_eq!(*up, built);
    assert_ne!(
        *up,
        UserProperties::from(vec![(s("k"), s("w")), (s("k"), s("v"))])
    );
    assert_eq!(p.properties.message_expiry_interval, Some(60));
    assert_eq!(p.properties.topic_alias, NonZeroU16::new(3));

    let pairs = up.to_vec();
    assert_eq!(pairs, [(s("k"), s("v")), (s("k"), s("w"))]);

    let mut grown = up.clone();
    grown.push((s("n"), s("1")));
    assert_eq!(
        grown.iter().collect::<Vec<_>>(),
        [("k", "v"), ("k", "w"), ("n", "1")]
    );

    // The borrowed view reads the same block.
    let (PacketView::Publish(v), n) = Decoder::new(ProtocolVersion::V5)
        .decode_view(&frame)
        .unwrap()
        .unwrap()
    else {
        panic!("expected PUBLISH")
    };
    assert_eq!(n, frame.len());
    assert_eq!(
        v.user_properties().collect::<Vec<_>>(),
        [("k", "v"), ("k", "w")]
    );
    assert_eq!(v.topic_alias(), NonZeroU16::new(3));
    assert_eq!(v.message_expiry_interval(), Some(60));
    assert_eq!(v.to_properties(), *p.properties);

    // Re-encoding writes the same pairs (grouped after the other properties, as built ones are).
    let mut wire = BytesMut::new();
    Encoder::new(ProtocolVersion::V5)
        .encode(&Packet::Publish(p.clone()), &mut wire)
        .unwrap();
    let again = Decoder::new(ProtocolVersion::V5).decode(&mut wire).unwrap();
    assert_eq!(again, Some(Packet::Publish(p)));
}
