//! MQTT packets from JSON (thingkit-mqtt's `serde` feature, what `thingkit mqtt encode` reads):
//! arbitrary bytes never panic, and every packet that deserializes and that the encoder accepts
//! decodes back to the same packet, so JSON cannot produce a packet the wire form cannot carry.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use thingkit_mqtt::{Decoder, Encoder, Packet, ProtocolVersion};

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = serde_json::from_slice::<Packet>(data) else {
        return;
    };
    // Serializing never fails, and what it writes reads back as the same packet.
    let text = serde_json::to_string(&packet).expect("a packet serializes");
    let again: Packet = serde_json::from_str(&text).expect("what we write, we read");
    assert_eq!(again, packet, "JSON round trip");
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let mut buf = BytesMut::new();
        if Encoder::new(version).encode(&packet, &mut buf).is_err() {
            continue;
        }
        let mut decoder = match packet {
            Packet::Connect(_) => Decoder::detect(),
            _ => Decoder::new(version),
        };
        let decoded = decoder
            .decode(&mut buf)
            .expect("an encoded packet decodes")
            .expect("an encoded packet is complete");
        assert_eq!(decoded, packet, "{version:?} wire round trip");
        assert!(buf.is_empty(), "one packet, no trailing bytes");
    }
});
