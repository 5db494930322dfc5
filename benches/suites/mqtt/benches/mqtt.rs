//! thingkit-mqtt against mqttbytes 0.6 and mqttrs 0.4, in one process so ratios are fair.
//!
//! - decode: streams of 1,000 PUBLISH frames (QoS 0 / 16-byte payload; QoS 1 / 32-byte topic /
//!   256-byte payload); mqttbytes `v4::read`, mqttrs `decode_slice`; plus heap allocations per
//!   decoded PUBLISH (counting allocator).
//! - encode: 1,000 PUBLISH into a reused buffer with `Encoder::encode_publish`, vs mqttbytes
//!   `v4::Publish::write` (both encode a publish struct); `Encoder::encode(&Packet)` is reported
//!   alongside.
//! - subscription index: 1,000,000 filters (exact, `+`, `#`, 3-7 levels): build time, bytes per
//!   subscription, median match; linear scan of 10,000 filters with `mqttbytes::matches`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use thingkit_bench_support::{CountingAlloc, count_allocations, live_bytes};
use thingkit_mqtt::{
    Decoder, Encoder, Packet, PacketId, ProtocolVersion, Publish, QoS, SubscriptionIndex,
    TopicFilter, TopicName,
};

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

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Vocabulary size per level: wide enough that 1M filters are mostly distinct and a topic matches
/// a handful of them (not hundreds), like a fleet's topic tree.
const VOCAB: [u64; 7] = [64, 512, 1024, 1024, 1024, 1024, 1024];

fn word(level: usize, i: u64) -> String {
    format!("l{level}w{i}")
}

fn gen_filters(n: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let depth = 3 + rng.below(5) as usize; // 3..=7
            let kind = rng.below(10); // 0-5 exact, 6-7 '+', 8-9 '#'
            let mut levels: Vec<String> =
                (0..depth).map(|l| word(l, rng.below(VOCAB[l]))).collect();
            match kind {
                6 | 7 => {
                    let at = rng.below(depth as u64) as usize;
                    levels[at] = "+".into();
                }
                8 | 9 => {
                    let last = depth - 1;
                    levels[last] = "#".into();
                }
                _ => {}
            }
            levels.join("/")
        })
        .collect()
}

fn gen_topics(n: usize, seed: u64) -> Vec<TopicName> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let depth = 3 + rng.below(5) as usize;
            // Draw from the low end of each vocabulary so some exact filters match too.
            let levels: Vec<String> = (0..depth)
                .map(|l| word(l, rng.below(VOCAB[l].min(64))))
                .collect();
            TopicName::new(&levels.join("/")).unwrap()
        })
        .collect()
}

fn bench_index(c: &mut Criterion) {
    let topics = gen_topics(1_000, 7);

    // 1,000,000 filters: build time and bytes per subscription.
    let filters: Vec<TopicFilter> = gen_filters(1_000_000, 42)
        .iter()
        .map(|f| TopicFilter::new(f).unwrap())
        .collect();
    let before = live_bytes();
    let start = Instant::now();
    let mut index: SubscriptionIndex<u32, ()> = SubscriptionIndex::new();
    for (i, f) in filters.iter().enumerate() {
        index.insert(f, i as u32, ());
    }
    let build = start.elapsed();
    let bytes = live_bytes() - before;
    let total_matches: usize = topics.iter().map(|t| index.matches(t).len()).sum();
    println!(
        "INDEX 1M: build {:.2} s, {} subscriptions, {} nodes, {:.1} bytes per subscription (live heap), {:.2} matches per topic",
        build.as_secs_f64(),
        index.len(),
        index.node_count(),
        bytes as f64 / index.len() as f64,
        total_matches as f64 / topics.len() as f64,
    );
    drop(filters);
    // Median and 90th percentile of single matches, each timed on its own while rotating
    // through the topics (so caches are not warm for one topic); includes ~20 ns of timer cost.
    let mut lat: Vec<u128> = topics
        .iter()
        .cycle()
        .take(50_000)
        .map(|t| {
            let start = Instant::now();
            let mut n = 0usize;
            index.for_each_match(t, |_| n += 1);
            black_box(n);
            start.elapsed().as_nanos()
        })
        .collect();
    lat.sort_unstable();
    println!(
        "INDEX 1M single match: median {} ns, p90 {} ns, p99 {} ns",
        lat[lat.len() / 2],
        lat[lat.len() * 9 / 10],
        lat[lat.len() * 99 / 100]
    );

    let mut g = c.benchmark_group("subscription_match");
    g.measurement_time(Duration::from_secs(4));
    let mut i = 0usize;
    g.bench_function("thingkit-index-1M-filters", |bch| {
        bch.iter(|| {
            i = (i + 1) % topics.len();
            let mut n = 0usize;
            index.for_each_match(&topics[i], |_| n += 1);
            black_box(n)
        })
    });
    drop(index);

    // 10,000 filters: our index vs a linear scan with mqttbytes::matches.
    let small = gen_filters(10_000, 43);
    let mut small_index: SubscriptionIndex<u32, ()> = SubscriptionIndex::new();
    for (k, f) in small.iter().enumerate() {
        small_index.insert(&TopicFilter::new(f).unwrap(), k as u32, ());
    }
    for t in topics.iter().take(100) {
        let linear = small
            .iter()
            .filter(|f| mqttbytes::matches(t.as_str(), f))
            .count();
        assert_eq!(
            small_index.matches(t).len(),
            linear,
            "index and linear scan agree on {t}"
        );
    }
    let mut i = 0usize;
    g.bench_function("thingkit-index-10k-filters", |bch| {
        bch.iter(|| {
            i = (i + 1) % topics.len();
            let mut n = 0usize;
            small_index.for_each_match(&topics[i], |_| n += 1);
            black_box(n)
        })
    });
    let mut i = 0usize;
    let topic_strs: Vec<String> = topics.iter().map(|t| t.as_str().to_string()).collect();
    g.bench_function("mqttbytes-matches-linear-10k-filters", |bch| {
        bch.iter(|| {
            i = (i + 1) % topic_strs.len();
            black_box(
                small
                    .iter()
                    .filter(|f| mqttbytes::matches(&topic_strs[i], f))
                    .count(),
            )
        })
    });
    g.finish();
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
    targets = bench_decode, bench_encode, bench_index
}
criterion_main!(benches);
