//! A broker session (after CONNECT) fed arbitrary bytes from a client, in arbitrary chunks, with
//! time moving: it never panics, never loops, decodes nothing after it asked to close, and every
//! request it raises is completed the way the server completes it.
#![no_main]

use std::time::{Duration, Instant};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use thingkit_broker::{AllowAll, Event, Session, SessionConfig};
use thingkit_mqtt::{Connect, MqttStr, PacketProperties, ProtocolVersion, ReasonCode};

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let version = if head & 1 == 0 {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V311
    };
    let connect = Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 30,
        properties: PacketProperties::default(),
        client_id: MqttStr::new("fuzz").expect("a valid client ID"),
        will: None,
        username: None,
        password: None,
    };
    let config = SessionConfig::default()
        .with_max_packet_size(4096)
        .with_max_pending(16);
    let t0 = Instant::now();
    let mut session = Session::new(connect, "fuzz".into(), &config, Box::new(AllowAll), t0);
    let _ = session.connack(false, None, &config);
    let mut input = BytesMut::new();
    let mut closed = false;
    // Chunk sizes from the data itself, so splits land everywhere.
    for (i, chunk) in rest.chunks(usize::from(head >> 1).max(1)).enumerate() {
        let now = t0 + Duration::from_millis(i as u64 * 100);
        input.extend_from_slice(chunk);
        session.note_input(now);
        while let Some(event) = session.poll(&mut input, now) {
            match event {
                Event::Close(_) => closed = true,
                Event::Publish(p) => {
                    session.acknowledge(p.packet_id, ReasonCode::SUCCESS, None);
                }
                Event::Subscribe(s) => session.complete_subscribe(&s, Vec::new(), now),
                Event::Unsubscribe(u) => {
                    session.complete_unsubscribe(u.packet_id, &vec![Ok(false); u.filters.len()]);
                }
                _ => {}
            }
        }
        if closed {
            assert!(
                session.poll(&mut input, now).is_none(),
                "nothing after close"
            );
            break;
        }
        session.transmit().clear();
        session.handle_timeout(now);
    }
});
