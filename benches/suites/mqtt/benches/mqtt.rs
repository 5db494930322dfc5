//! thingkit-mqtt against mqttbytes 0.6 and mqttrs 0.4, in one process so ratios are fair.
//!
//! - decode: streams of 1,000 PUBLISH frames (QoS 0 / 16-byte payload; QoS 1 / 32-byte topic /
//!   256-byte payload); mqttbytes `v4::read`, mqttrs `decode_slice`; plus heap allocations per
//!   decoded PUBLISH (counting allocator).
//! - encode: 1,000 PUBLISH into a reused buffer with `Encoder::encode_publish`, vs mqttbytes
//!   `v4::Publish::write` (both encode a publish struct); `Encoder::encode(&Packet)` is reported
//!   alongside.
//!
//! The subscription index has its own bench, `index.rs`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use thingkit_bench_support::{CountingAlloc, count_allocations};
use thingkit_mqtt::{Decoder, Encoder, Packet, PacketId, ProtocolVersion, Publish, QoS, TopicName};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const FRAMES: usize = 1_000;

struct Stream {
    name: &'static str,
    bytes: Vec<u8>,
    frame_len: usize,
}

fn publish_stream(qos: QoS, topic: &str, payload_len: usize) -> (Stream, Vec<Publish>) {
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    for i in 0..FRAMES {
        let mut p = Publish::new(
            TopicName::new(topic).unwrap(),
            vec![(i % 251) as u8; payload_len],
        );
        p.qos = qos;
        if qos != QoS::AtMostOnce {
            p.packet_id = PacketId::new((i % 65_535 + 1) as u16);
        }
        Encoder::new(ProtocolVersion::V311)
            .encode(&Packet::Publish(p.clone()), &mut buf)
            .unwrap();
        packets.push(p);
    }
    let frame_len = buf.len() / FRAMES;
    let name = if qos == QoS::AtMostOnce {
        "qos0_16B"
    } else {
        "qos1_topic32_256B"
    };
    (
        Stream {
            name,
            bytes: buf.to_vec(),
            frame_len,
        },
        packets,
    )
}

fn streams() -> Vec<(Stream, Vec<Publish>)> {
    vec![
        publish_stream(QoS::AtMostOnce, "sensors/42/temp", 16),
        publish_stream(QoS::AtLeastOnce, "fleet/eu-west/device-0042/telem", 256), // 32 bytes
    ]
}

#[inline(never)]
fn decode_ours(bytes: &mut BytesMut) -> usize {
    let mut d = Decoder::new(ProtocolVersion::V311);
    let mut n = 0;
    while let Some(p) = d.decode(bytes).unwrap() {
        black_box(&p);
        n += 1;
    }
    n
}

#[inline(never)]
fn decode_ours_view(bytes: &[u8]) -> usize {
    let mut d = Decoder::new(ProtocolVersion::V311);
    let mut n = 0;
    let mut off = 0;
    while let Some((p, len)) = d.decode_view(&bytes[off..]).unwrap() {
        black_box(&p);
        off += len;
        n += 1;
    }
    n
}

#[inline(never)]
fn decode_mqttbytes(bytes: &mut BytesMut) -> usize {
    let mut n = 0;
    while !bytes.is_empty() {
        let p = mqttbytes::v4::read(bytes, 1 << 20).unwrap();
        black_box(&p);
        n += 1;
    }
    n
}

#[inline(never)]
fn decode_mqttrs(bytes: &[u8], frame_len: usize) -> usize {
    let mut n = 0;
    let mut off = 0;
    while off < bytes.len() {
        let p = mqttrs::decode_slice(&bytes[off..]).unwrap().unwrap();
        black_box(&p);
        off += frame_len;
        n += 1;
    }
    n
}

fn bench_decode(c: &mut Criterion) {
    for (s, _) in streams() {
        // Sanity: every contender decodes all frames.
        assert_eq!(decode_ours(&mut BytesMut::from(&s.bytes[..])), FRAMES);
        assert_eq!(decode_ours_view(&s.bytes), FRAMES);
        assert_eq!(decode_mqttbytes(&mut BytesMut::from(&s.bytes[..])), FRAMES);
        assert_eq!(decode_mqttrs(&s.bytes, s.frame_len), FRAMES);

        // Allocations while decoding one fresh 1,000-frame buffer.
        let mut b = BytesMut::from(&s.bytes[..]);
        let (_, ours) = count_allocations(|| decode_ours(&mut b));
        let mut b = BytesMut::from(&s.bytes[..]);
        let (_, peer) = count_allocations(|| decode_mqttbytes(&mut b));
        let (_, rs) = count_allocations(|| decode_mqttrs(&s.bytes, s.frame_len));
        let (_, view) = count_allocations(|| decode_ours_view(&s.bytes));
        println!(
            "ALLOCS decode {}: thingkit-mqtt {} allocations / {FRAMES} PUBLISH ({:.3} per packet); thingkit-mqtt decode_view {}; mqttbytes {} ({:.3} per packet); mqttrs {} ({:.3} per packet)",
            s.name,
            ours.allocations,
            ours.allocations as f64 / FRAMES as f64,
            view.allocations,
            peer.allocations,
            peer.allocations as f64 / FRAMES as f64,
            rs.allocations,
            rs.allocations as f64 / FRAMES as f64,
        );

        // Paired, interleaved measurement: each round times every contender once on the same
        // stream; the minimum over rounds is robust to other processes on a shared machine.
        let mut best = [u128::MAX; 4];
        // The counting allocator's counters off: they would slow the contender that allocates.
        thingkit_bench_support::uncounted(|| {
            for _ in 0..300 {
                let mut b = BytesMut::from(&s.bytes[..]);
                let t = Instant::now();
                black_box(decode_ours(&mut b));
                best[0] = best[0].min(t.elapsed().as_nanos());
                let t = Instant::now();
                black_box(decode_ours_view(&s.bytes));
                best[1] = best[1].min(t.elapsed().as_nanos());
                let mut b = BytesMut::from(&s.bytes[..]);
                let t = Instant::now();
                black_box(decode_mqttbytes(&mut b));
                best[2] = best[2].min(t.elapsed().as_nanos());
                let t = Instant::now();
                black_box(decode_mqttrs(&s.bytes, s.frame_len));
                best[3] = best[3].min(t.elapsed().as_nanos());
            }
        });
        println!(
            "PAIRED decode {} (min ns per PUBLISH over 300 interleaved rounds): thingkit-mqtt {:.1}, thingkit-mqtt decode_view {:.1}, mqttbytes {:.1}, mqttrs {:.1}",
            s.name,
            best[0] as f64 / FRAMES as f64,
            best[1] as f64 / FRAMES as f64,
            best[2] as f64 / FRAMES as f64,
            best[3] as f64 / FRAMES as f64,
        );

        let mut g = c.benchmark_group(format!("decode_1000_publish/{}", s.name));
        g.throughput(Throughput::Elements(FRAMES as u64));
        g.measurement_time(Duration::from_secs(4));
        g.bench_function("thingkit-mqtt", |bch| {
            bch.iter_batched_ref(
                || BytesMut::from(&s.bytes[..]),
                decode_ours,
                BatchSize::SmallInput,
            )
        });
        g.bench_function("thingkit-mqtt-decode_view", |bch| {
            bch.iter(|| decode_ours_view(black_box(&s.bytes)))
        });
        g.bench_function("mqttbytes-v4-read", |bch| {
            bch.iter_batched_ref(
                || BytesMut::from(&s.bytes[..]),
                decode_mqttbytes,
                BatchSize::SmallInput,
            )
        });
        g.bench_function("mqttrs-decode_slice", |bch| {
            bch.iter(|| decode_mqttrs(black_box(&s.bytes), s.frame_len))
        });
        g.finish();
    }
}

/// One contender's encode loop per function, never inlined into the (large) bench function, so
/// each loop is compiled on its own and neither side gets the other's inlining and register
/// allocation decisions. Both append to the same pre-reserved, reused buffer.
#[inline(never)]
fn encode_ours(enc: &Encoder, publishes: &[Publish], out: &mut BytesMut) -> usize {
    out.clear();
    for p in publishes {
        enc.encode_publish(p, out).unwrap();
    }
    out.len()
}

/// The same through the general entry point, `Encoder::encode(&Packet)`.
#[inline(never)]
fn encode_ours_packet(enc: &Encoder, packets: &[Packet], out: &mut BytesMut) -> usize {
    out.clear();
    for p in packets {
        enc.encode(p, out).unwrap();
    }
    out.len()
}

#[inline(never)]
fn encode_mqttbytes(packets: &[mqttbytes::v4::Publish], out: &mut BytesMut) -> usize {
    out.clear();
    for q in packets {
        q.write(out).unwrap();
    }
    out.len()
}

fn bench_encode(c: &mut Criterion) {
    for (s, packets) in streams() {
        // Both sides get freshly allocated messages built the same way (topic and payload copied
        // here), allocated alternately packet by packet, so neither set is scattered across
        // memory differently from the other (by how the streams were built, or by being
        // allocated first into the holes the decode benchmarks left).
        let mut ours: Vec<Publish> = Vec::with_capacity(packets.len());
        let mut ours_packets: Vec<Packet> = Vec::with_capacity(packets.len());
        let mut theirs: Vec<mqttbytes::v4::Publish> = Vec::with_capacity(packets.len());
        for p in &packets {
            let mut q = Publish::new(
                TopicName::new(p.topic.as_ref().unwrap().as_str()).unwrap(),
                p.payload.to_vec(),
            );
            q.qos = p.qos;
            q.packet_id = p.packet_id;
            ours_packets.push(Packet::Publish(q.clone()));
            ours.push(q);
            let mut q = mqttbytes::v4::Publish::new(
                p.topic.as_ref().unwrap().as_str(),
                match p.qos {
                    QoS::AtMostOnce => mqttbytes::QoS::AtMostOnce,
                    _ => mqttbytes::QoS::AtLeastOnce,
                },
                p.payload.to_vec(),
            );
            q.pkid = p.packet_id.map_or(0, |id| id.get());
            theirs.push(q);
        }
        let mut check = BytesMut::new();
        for q in &theirs {
            q.write(&mut check).unwrap();
        }
        assert_eq!(
            &check[..],
            &s.bytes[..],
            "both encoders produce the same bytes"
        );

        let enc = Encoder::new(ProtocolVersion::V311);
        let mut out = BytesMut::with_capacity(s.bytes.len() * 2);
        assert_eq!(encode_ours(&enc, &ours, &mut out), s.bytes.len());
        assert_eq!(
            &out[..],
            &s.bytes[..],
            "our encoder produces the same bytes"
        );
        let mut best = [u128::MAX; 3];
        thingkit_bench_support::uncounted(|| {
            for _ in 0..300 {
                let t = Instant::now();
                black_box(encode_ours(&enc, black_box(&ours), &mut out));
                best[0] = best[0].min(t.elapsed().as_nanos());
                let t = Instant::now();
                black_box(encode_mqttbytes(black_box(&theirs), &mut out));
                best[1] = best[1].min(t.elapsed().as_nanos());
                let t = Instant::now();
                black_box(encode_ours_packet(&enc, black_box(&ours_packets), &mut out));
                best[2] = best[2].min(t.elapsed().as_nanos());
            }
        });
        println!(
            "PAIRED encode {} (min ns per PUBLISH over 300 interleaved rounds): thingkit-mqtt {:.1}, mqttbytes {:.1}, thingkit-mqtt via Packet {:.1}",
            s.name,
            best[0] as f64 / FRAMES as f64,
            best[1] as f64 / FRAMES as f64,
            best[2] as f64 / FRAMES as f64,
        );
        let mut g = c.benchmark_group(format!("encode_1000_publish/{}", s.name));
        g.throughput(Throughput::Elements(FRAMES as u64));
        g.measurement_time(Duration::from_secs(4));
        let mut buf = BytesMut::with_capacity(s.bytes.len() * 2);
        g.bench_function("thingkit-mqtt", |bch| {
            bch.iter(|| encode_ours(&enc, black_box(&ours), &mut buf))
        });
        g.bench_function("mqttbytes-v4-write", |bch| {
            bch.iter(|| encode_mqttbytes(black_box(&theirs), &mut buf))
        });
        g.bench_function("thingkit-mqtt-via-Packet", |bch| {
            bch.iter(|| encode_ours_packet(&enc, black_box(&ours_packets), &mut buf))
        });
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .without_plots()
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_decode, bench_encode
}
criterion_main!(benches);
