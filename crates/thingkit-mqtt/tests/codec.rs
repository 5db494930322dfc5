//! The `tokio-codec` integration: `Ok(None)` only for incomplete input, errors for malformed
//! frames (never a silently dropped frame), and encoding in the detected version.

use bytes::BytesMut;
use thingkit_mqtt::{MqttCodec, Packet, ProtocolVersion, Publish, TopicName};
use tokio_util::codec::{Decoder, Encoder};

#[test]
fn server_codec_detects_version_and_streams_packets() {
    let mut codec = MqttCodec::server();
    let mut buf = BytesMut::from(&b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00"[..]);
    assert!(
        codec.decode(&mut buf).unwrap().is_none(),
        "incomplete CONNECT"
    );
    buf.extend_from_slice(b"\x00\x30\x04\x00\x01a");
    assert!(
        matches!(codec.decode(&mut buf).unwrap(), Some(Packet::Connect(c)) if c.protocol == ProtocolVersion::V311)
    );
    assert!(
        codec.decode(&mut buf).unwrap().is_none(),
        "PUBLISH missing a byte"
    );
    buf.extend_from_slice(b"x");
    assert!(matches!(
        codec.decode(&mut buf).unwrap(),
        Some(Packet::Publish(_))
    ));
    // Encoding follows the detected version: a 3.1.1 codec refuses AUTH.
    let mut out = BytesMut::new();
    codec
        .encode(
            Packet::Publish(Publish::new(TopicName::new("a").unwrap(), "x")),
            &mut out,
        )
        .unwrap();
    assert_eq!(&out[..], b"\x30\x04\x00\x01ax");
    assert!(
        codec
            .encode(Packet::Auth(Default::default()), &mut out)
            .is_err()
    );
}

#[test]
fn malformed_frame_is_an_error_not_none() {
    let mut codec = MqttCodec::new(ProtocolVersion::V5);
    let mut buf = BytesMut::from(&b"\x36"[..]); // QoS 3, detectable from the first byte
    let err = codec.decode(&mut buf).unwrap_err();
    assert_eq!(err.rule(), Some("[MQTT-3.3.1-4]"));
    // decode_eof on a truncated frame is an error too (tokio-util's default reports it).
    let mut codec = MqttCodec::new(ProtocolVersion::V5);
    let mut buf = BytesMut::from(&b"\x30\x05\x00"[..]);
    assert!(codec.decode_eof(&mut buf).is_err());
}
