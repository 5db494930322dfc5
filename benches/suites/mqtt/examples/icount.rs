//! Instruction-count driver for `valgrind --tool=callgrind` (timings on a shared machine are
//! noisy; instruction counts are not). Each contender runs in its own `#[inline(never)]` function
//! over the same 1,000-frame stream as the criterion suite, so callgrind's inclusive cost of
//! `icount::run_*` divided by 1,000 × ROUNDS is instructions per PUBLISH:
//!
//! ```text
//! cargo build --manifest-path benches/Cargo.toml -p thingkit-bench-mqtt --profile bench --example icount
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out benches/target/release/examples/icount decode qos0
//! callgrind_annotate --inclusive=yes /tmp/cg.out | grep run_
//! ```

use std::hint::black_box;

use bytes::BytesMut;
use thingkit_mqtt::{Decoder, Encoder, Packet, PacketId, ProtocolVersion, Publish, QoS, TopicName};

const FRAMES: usize = 1_000;
const ROUNDS: usize = 10;

fn packets(qos: QoS, topic: &str, payload_len: usize) -> Vec<Publish> {
    (0..FRAMES)
        .map(|i| {
            let mut p = Publish::new(
                TopicName::new(topic).unwrap(),
                vec![(i % 251) as u8; payload_len],
            );
            p.qos = qos;
            if qos != QoS::AtMostOnce {
                p.packet_id = PacketId::new((i % 65_535 + 1) as u16);
            }
            p
        })
        .collect()
}

#[inline(never)]
fn run_decode_ours(bytes: &[u8]) -> usize {
    let mut n = 0;
    for _ in 0..ROUNDS {
        let mut b = BytesMut::from(bytes);
        let mut d = Decoder::new(ProtocolVersion::V311);
        while let Some(p) = d.decode(&mut b).unwrap() {
            black_box(&p);
            n += 1;
        }
    }
    n
}

#[inline(never)]
fn run_decode_view(bytes: &[u8]) -> usize {
    let mut n = 0;
    for _ in 0..ROUNDS {
        let mut d = Decoder::new(ProtocolVersion::V311);
        let mut off = 0;
        while let Some((p, len)) = d.decode_view(&bytes[off..]).unwrap() {
            black_box(&p);
            off += len;
            n += 1;
        }
    }
    n
}

#[inline(never)]
fn run_decode_mqttbytes(bytes: &[u8]) -> usize {
    let mut n = 0;
    for _ in 0..ROUNDS {
        let mut b = BytesMut::from(bytes);
        while !b.is_empty() {
            let p = mqttbytes::v4::read(&mut b, 1 << 20).unwrap();
            black_box(&p);
            n += 1;
        }
    }
    n
}

#[inline(never)]
fn run_decode_mqttrs(bytes: &[u8], frame_len: usize) -> usize {
    let mut n = 0;
    for _ in 0..ROUNDS {
        let mut off = 0;
        while off < bytes.len() {
            let p = mqttrs::decode_slice(&bytes[off..]).unwrap().unwrap();
            black_box(&p);
            off += frame_len;
            n += 1;
        }
    }
    n
}

#[inline(never)]
fn run_encode_ours(ours: &[Packet], out: &mut BytesMut) -> usize {
    let enc = Encoder::new(ProtocolVersion::V311);
    for _ in 0..ROUNDS {
        out.clear();
        for p in ours {
            enc.encode(p, out).unwrap();
        }
        black_box(&out);
    }
    out.len()
}

#[inline(never)]
fn run_encode_mqttbytes(theirs: &[mqttbytes::v4::Publish], out: &mut BytesMut) -> usize {
    for _ in 0..ROUNDS {
        out.clear();
        for q in theirs {
            q.write(out).unwrap();
        }
        black_box(&out);
    }
    out.len()
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let stream_sel = std::env::args().nth(2).unwrap_or_default();
    for (qos, topic, payload) in [
        (QoS::AtMostOnce, "sensors/42/temp", 16),
        (QoS::AtLeastOnce, "fleet/eu-west/device-0042/telem", 256),
    ] {
        if !stream_sel.is_empty() && stream_sel != format!("qos{}", qos.as_u8()) {
            continue;
        }
        let ps = packets(qos, topic, payload);
        let ours: Vec<Packet> = ps
            .iter()
            .map(|p| {
                let mut q = Publish::new(
                    TopicName::new(p.topic.as_ref().unwrap().as_str()).unwrap(),
                    p.payload.to_vec(),
                );
                q.qos = p.qos;
                q.packet_id = p.packet_id;
                Packet::Publish(q)
            })
            .collect();
        let theirs: Vec<mqttbytes::v4::Publish> = ps
            .iter()
            .map(|p| {
                let mut q = mqttbytes::v4::Publish::new(
                    p.topic.as_ref().unwrap().as_str(),
                    match p.qos {
                        QoS::AtMostOnce => mqttbytes::QoS::AtMostOnce,
                        _ => mqttbytes::QoS::AtLeastOnce,
                    },
                    p.payload.to_vec(),
                );
                q.pkid = p.packet_id.map_or(0, |id| id.get());
                q
            })
            .collect();
        let mut stream = BytesMut::new();
        for p in &ours {
            Encoder::new(ProtocolVersion::V311)
                .encode(p, &mut stream)
                .unwrap();
        }
        let frame_len = stream.len() / FRAMES;
        let mut out = BytesMut::with_capacity(stream.len() * 2);
        let all = which.is_empty();
        if all || which == "decode" {
            assert_eq!(run_decode_ours(&stream), FRAMES * ROUNDS);
            assert_eq!(run_decode_view(&stream), FRAMES * ROUNDS);
            assert_eq!(run_decode_mqttbytes(&stream), FRAMES * ROUNDS);
            assert_eq!(run_decode_mqttrs(&stream, frame_len), FRAMES * ROUNDS);
        }
        if which == "time-encode" {
            let mut best = [u128::MAX; 2];
            for _ in 0..300 {
                let t = std::time::Instant::now();
                run_encode_ours(&ours, &mut out);
                best[0] = best[0].min(t.elapsed().as_nanos());
                let t = std::time::Instant::now();
                run_encode_mqttbytes(&theirs, &mut out);
                best[1] = best[1].min(t.elapsed().as_nanos());
            }
            let per = (FRAMES * ROUNDS) as f64;
            println!(
                "encode qos{}: thingkit-mqtt {:.1} ns, mqttbytes {:.1} ns per PUBLISH (min of 300)",
                qos.as_u8(),
                best[0] as f64 / per,
                best[1] as f64 / per
            );
        }
        if all || which == "encode" {
            run_encode_ours(&ours, &mut out);
            run_encode_mqttbytes(&theirs, &mut out);
        }
    }
}
