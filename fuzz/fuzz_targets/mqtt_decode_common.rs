//! Shared body of the MQTT decode fuzz targets (not a target itself).

use bytes::BytesMut;
use thingkit_mqtt::{
    Decoder, DecoderConfig, Encoder, PROTOCOL_MAX_PACKET_SIZE, Packet, PacketView, ProtocolVersion,
};

/// Decodes `data` as a stream (also fed in two pieces), then checks decode→encode→decode.
pub fn decode_stream(version: ProtocolVersion, data: &[u8]) {
    // Accept any size the protocol allows: over-allocation would show up as a libFuzzer
    // malloc-limit failure, since nothing may be reserved from a length field.
    let config = DecoderConfig::default().with_max_packet_size(PROTOCOL_MAX_PACKET_SIZE);
    let mut whole = Vec::new();
    let mut decoder = Decoder::new(version).with_config(config);
    let mut buf = BytesMut::from(data);
    let end = loop {
        match decoder.decode(&mut buf) {
            Ok(Some(packet)) => whole.push(packet),
            other => break other.map_err(|e| e.to_string()),
        }
    };

    // The fast paths of `decode` (PUBLISH with or without properties, short acknowledgements)
    // decide exactly as the general path, which `decode_bytes` always takes.
    let mut general = Decoder::new(version).with_config(config);
    let mut bytes = bytes::Bytes::copy_from_slice(data);
    for packet in &whole {
        let g = general.decode_bytes(&mut bytes);
        assert_eq!(
            g.as_ref().ok(),
            Some(&Some(packet.clone())),
            "general path: {g:?}"
        );
    }
    assert_eq!(
        general.decode_bytes(&mut bytes).map_err(|e| e.to_string()),
        end,
        "fast and general paths end the stream differently"
    );

    // Streaming in two chunks yields the same packets (as far as the whole-buffer run got).
    let split = data.first().map_or(0, |&b| usize::from(b)) % (data.len() + 1);
    let mut decoder = Decoder::new(version).with_config(config);
    let mut buf = BytesMut::from(&data[..split]);
    let mut pieces = Vec::new();
    let mut fed_rest = false;
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(p)) => pieces.push(p),
            Ok(None) if !fed_rest => {
                buf.extend_from_slice(&data[split..]);
                fed_rest = true;
            }
            _ => break,
        }
    }
    assert_eq!(
        pieces, whole,
        "chunked decoding differs from whole-buffer decoding"
    );

    // The borrowed-view decoder agrees with the owned one packet by packet.
    let mut viewer = Decoder::new(version).with_config(config);
    let mut off = 0;
    for packet in &whole {
        let (view, n) = viewer
            .decode_view(&data[off..])
            .expect("decode_view accepts what decode accepts")
            .expect("and sees a complete packet");
        match (view, packet) {
            (PacketView::Publish(v), Packet::Publish(p)) => {
                assert_eq!(v.payload, &p.payload[..]);
                assert_eq!(v.topic, p.topic.as_ref().map_or("", |t| t.as_str()));
                assert_eq!(v.to_properties(), *p.properties);
                assert!(v.user_properties().eq(p.properties.user_properties.iter()));
                assert_eq!(v.topic_alias(), p.properties.topic_alias);
            }
            (PacketView::Other(q), p) => assert_eq!(&q, p),
            (v, p) => panic!("decode_view gave {v:?} for {p:?}"),
        }
        off += n;
    }

    let encoder = Encoder::new(version);
    for packet in whole {
        let mut wire = BytesMut::new();
        encoder
            .encode(&packet, &mut wire)
            .expect("every decoded packet is encodable");
        let again = Decoder::new(version)
            .with_config(config)
            .decode(&mut wire.clone())
            .expect("re-encoded packet decodes")
            .expect("re-encoded packet is complete");
        assert_eq!(again, packet, "decode→encode→decode is not stable");
        let mut wire2 = BytesMut::new();
        encoder.encode(&again, &mut wire2).expect("encodable");
        assert_eq!(wire, wire2, "encoding is not canonical");
        // Appending to a buffer with spare room takes the small-packet path for short
        // PUBLISH packets; it must write the same bytes after what the buffer held.
        let mut roomy = BytesMut::with_capacity(wire.len() + 256);
        roomy.extend_from_slice(b"held");
        encoder.encode(&again, &mut roomy).expect("encodable");
        assert_eq!(&roomy[..4], b"held");
        assert_eq!(&roomy[4..], &wire[..], "appending with spare room differs");
    }
}
