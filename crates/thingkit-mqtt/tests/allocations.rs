//! The allocation counts the README claims for PUBLISH decoding, checked: `decode_view` allocates
//! nothing per packet; `decode` (owned `Bytes`) allocates nothing per packet and once per input
//! buffer (the `bytes` crate promoting the `BytesMut` to shared storage on the first split);
//! `decode_bytes` on input that is already `Bytes` allocates nothing.
//!
//! This file is a test binary of its own without libtest's harness (`harness = false`): one
//! thread, so nothing else allocates while it counts. `stats_alloc` wraps the system allocator and
//! counts every allocation in an atomic.
//! (The workspace forbids `unsafe`, which a hand-written `GlobalAlloc` would need.)

use std::alloc::System;

use bytes::{Bytes, BytesMut};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::num::NonZeroU16;

use thingkit_mqtt::{
    Decoder, Encoder, MqttStr, Packet, PacketId, PacketView, Properties, ProtocolVersion, Publish,
    QoS, TopicName,
};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Frames per buffer, as in the README's benchmark.
const FRAMES: usize = 1_000;

/// Allocations (and reallocations) made while `f` runs.
fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let region = Region::new(GLOBAL);
    let r = f();
    let change = region.change();
    (r, change.allocations + change.reallocations)
}

/// `FRAMES` PUBLISH frames: QoS 0 with a 15-byte topic and 16-byte payload, or QoS 1 with a
/// 32-byte topic and 256-byte payload (the README's benchmark shapes).
fn frames(version: ProtocolVersion, qos: QoS) -> Vec<u8> {
    let (topic, payload) = match qos {
        QoS::AtMostOnce => ("sensors/a/temps".to_string(), vec![7u8; 16]),
        _ => (
            "devices/0123456789/telemetry/abc".to_string(),
            vec![9u8; 256],
        ),
    };
    let mut publish = Publish::new(TopicName::new(&topic).expect("valid topic"), payload);
    publish.qos = qos;
    let encoder = Encoder::new(version);
    let mut out = BytesMut::new();
    for i in 0..FRAMES {
        if qos != QoS::AtMostOnce {
            publish.packet_id = PacketId::new(u16::try_from(i % 60_000 + 1).expect("fits"));
        }
        encoder
            .encode_publish(&publish, &mut out)
            .expect("encodable");
    }
    out.to_vec()
}

fn check(version: ProtocolVersion, qos: QoS) {
    let input = frames(version, qos);
    let what = format!("{version:?} {qos:?}");

    // decode_view: borrowed topic and payload, 0 allocations per packet.
    let mut decoder = Decoder::new(version);
    let (decoded, n) = allocations(|| {
        let mut rest = &input[..];
        let mut decoded = 0;
        while let Some((view, len)) = decoder.decode_view(rest).expect("valid") {
            if let PacketView::Publish(p) = view {
                decoded += usize::from(p.qos == qos && !p.payload.is_empty());
            }
            rest = &rest[len..];
        }
        decoded
    });
    assert_eq!(decoded, FRAMES, "{what}: decode_view decoded every frame");
    assert_eq!(n, 0, "{what}: decode_view allocations for {FRAMES} frames");

    // decode: owned packets sliced out of the `BytesMut`; 0 per packet, 1 per buffer (the
    // promotion of the vector-backed `BytesMut` to shared storage on the first split).
    let mut buf = BytesMut::from(&input[..]);
    let mut decoder = Decoder::new(version);
    let (decoded, n) = allocations(|| {
        let mut decoded = 0;
        while let Some(packet) = decoder.decode(&mut buf).expect("valid") {
            decoded += usize::from(matches!(packet, Packet::Publish(p) if p.qos == qos));
        }
        decoded
    });
    assert_eq!(decoded, FRAMES, "{what}: decode decoded every frame");
    assert_eq!(
        n, 1,
        "{what}: decode allocations for one buffer of {FRAMES} frames"
    );

    // decode_bytes: input already in `Bytes` is sliced, never copied: 0 allocations.
    let mut bytes = Bytes::from(input.clone());
    let _ = bytes.slice(0..1); // promote the Vec-backed `Bytes` to shared before counting
    let mut decoder = Decoder::new(version);
    let (decoded, n) = allocations(|| {
        let mut decoded = 0;
        while let Some(packet) = decoder.decode_bytes(&mut bytes).expect("valid") {
            decoded += usize::from(matches!(packet, Packet::Publish(p) if p.qos == qos));
        }
        decoded
    });
    assert_eq!(decoded, FRAMES, "{what}: decode_bytes decoded every frame");
    assert_eq!(n, 0, "{what}: decode_bytes allocations for {FRAMES} frames");
}

fn publish_decoding_allocates_as_the_readme_claims() {
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            check(version, qos);
        }
    }
}

/// MQTT 5.0 PUBLISH with Message Expiry Interval, Topic Alias and one to three User Properties,
/// every other one with an empty topic (the alias stands in): `decode` allocates at most once per
/// PUBLISH (the properties' box; short user properties are copied into it, longer ones share the
/// frame), `decode_view` never.
fn v5_publish_with_properties_allocates_at_most_once_owned_and_never_borrowed() {
    let encoder = Encoder::new(ProtocolVersion::V5);
    let mut out = BytesMut::new();
    for i in 0..FRAMES {
        let mut p = Publish::new(
            TopicName::new("fleet/site-12/dev-00042/telemetry/temp").expect("valid topic"),
            vec![5u8; 8 + i % 200],
        );
        if i % 2 == 1 {
            p.topic = None;
        }
        p.qos = if i % 3 == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        if p.qos != QoS::AtMostOnce {
            p.packet_id = PacketId::new(u16::try_from(i % 60_000 + 1).expect("fits"));
        }
        let mut props = Properties {
            message_expiry_interval: Some(60 + i as u32),
            topic_alias: NonZeroU16::new(1 + (i % 50) as u16),
            ..Default::default()
        };
        for k in 0..=(i % 3) {
            props.user_properties.push((
                MqttStr::new(&format!("key-{k}")).expect("valid"),
                MqttStr::new(&format!("value-{i}")).expect("valid"),
            ));
        }
        p.properties = props.into();
        encoder.encode_publish(&p, &mut out).expect("encodable");
    }
    let input = out.to_vec();

    let mut decoder = Decoder::new(ProtocolVersion::V5);
    let (decoded, n) = allocations(|| {
        let mut rest = &input[..];
        let mut decoded = 0;
        while let Some((view, len)) = decoder.decode_view(rest).expect("valid") {
            if let PacketView::Publish(p) = view {
                decoded +=
                    usize::from(p.topic_alias().is_some() && p.user_properties().count() > 0);
            }
            rest = &rest[len..];
        }
        decoded
    });
    assert_eq!(
        decoded, FRAMES,
        "v5 properties: decode_view decoded every frame"
    );
    assert_eq!(
        n, 0,
        "v5 properties: decode_view allocations for {FRAMES} frames"
    );

    let mut buf = BytesMut::from(&input[..]);
    let mut decoder = Decoder::new(ProtocolVersion::V5);
    let (decoded, n) = allocations(|| {
        let mut decoded = 0;
        while let Some(packet) = decoder.decode(&mut buf).expect("valid") {
            decoded += usize::from(matches!(packet, Packet::Publish(p)
                if p.properties.topic_alias.is_some() && !p.properties.user_properties.is_empty()));
        }
        decoded
    });
    assert_eq!(decoded, FRAMES, "v5 properties: decode decoded every frame");
    // One per PUBLISH, plus the one-time promotion of the `BytesMut` to shared storage.
    assert!(
        n <= FRAMES + 1,
        "v5 properties: decode made {n} allocations for {FRAMES} frames"
    );
}

fn main() {
    publish_decoding_allocates_as_the_readme_claims();
    println!("test publish_decoding_allocates_as_the_readme_claims ... ok");
    v5_publish_with_properties_allocates_at_most_once_owned_and_never_borrowed();
    println!(
        "test v5_publish_with_properties_allocates_at_most_once_owned_and_never_borrowed ... ok"
    );
}
