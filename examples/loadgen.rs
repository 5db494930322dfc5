//! Load generator: messages/s and p50/p99 latency through the thingkit broker (policy and metering
//! on) and through the Debian `mosquitto` broker with equivalent TLS and ACLs, same machine, same
//! run, QoS 0 and QoS 1, interleaved rounds. Prints a Markdown table with the ratio.
//!
//! ```sh
//! cargo run --release --example loadgen -- --messages 20000 --rounds 3
//! ```
//!
//! Each round: `--publishers` devices publish `--messages` messages each (64-byte payloads that
//! carry their send time) to `telemetry/{thing}/load`; one subscriber receives them all on
//! `telemetry/+/load`. QoS 1 publishers keep at most `--window` messages unacknowledged. The
//! throughput is messages received per second from the first send to the last receipt; latency is
//! receipt minus send time of each message. The thingkit broker runs on its own runtime with
//! `--broker-threads` workers (1 compares with mosquitto's single event loop thread for thread;
//! 2 uses both cores, the issue's target). Needs `mosquitto`.

#[path = "support/client.rs"]
mod client;
#[path = "support/fleet.rs"]
mod fleet;
#[path = "support/mosquitto.rs"]
mod mosquitto;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use client::{Client, Options, tls_config};
use fleet::{Device, Fleet};
use mosquitto::{FLEET_ACL, Mosquitto};
use thingkit::broker::{Broker, BrokerConfig, ServerIdentity};
use thingkit::meter::{LimitAction, Rate, RateLimits};
use thingkit::mqtt::bytes::Bytes;
use thingkit::mqtt::{
    Packet, PacketId, PacketProperties, ProtocolVersion, PubResponse, Publish, QoS, TopicName,
};
use tokio::sync::Semaphore;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Flags.
#[derive(Debug, Parser, Clone)]
#[command(about = "thingkit broker vs mosquitto: messages/s and latency")]
struct Flags {
    /// Messages per publisher per round.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// Publishing devices.
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Rounds per (broker, QoS); rounds alternate between the brokers.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// QoS 1 messages a publisher keeps unacknowledged.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Worker threads of the thingkit broker's runtime (2 uses both cores of the reference machine).
    #[arg(long, default_value_t = 1)]
    broker_threads: usize,
    /// Offered load in messages per second over all publishers; 0 publishes as fast as the
    /// broker takes them (the throughput measurement). Latency is comparable between brokers
    /// only at the same offered load below both capacities.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Only the thingkit broker (no mosquitto).
    #[arg(long)]
    no_mosquitto: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Round {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    lost: u64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

async fn connect(addr: SocketAddr, ca: &str, d: &Device) -> Result<Client, Error> {
    let tls = tls_config(ca, &d.cert_pem, &d.key_pem)?;
    let options = Options {
        version: ProtocolVersion::V5,
        timeout: Duration::from_secs(30),
        ..Options::new(&d.thing)
    };
    let c = Client::connect(addr, "localhost", tls, &options).await?;
    if !client::accepted(&c.connack) {
        return Err(format!("{} refused: {:?}", d.thing, c.connack.reason_code).into());
    }
    Ok(c)
}

/// One round against the broker at `addr`.
async fn round(
    addr: SocketAddr,
    ca: &str,
    publishers: &[Device],
    subscriber: &Device,
    qos: QoS,
    flags: &Flags,
) -> Result<Round, Error> {
    let epoch = Instant::now();
    let total = flags.messages * publishers.len() as u64;
    let mut sub = connect(addr, ca, subscriber).await?;
    sub.subscribe(&[("telemetry/+/load", qos)]).await?;
    let (mut reader, mut writer) = sub.split();
    let receiver = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(total as usize);
        let mut last = Instant::now();
        while (latencies.len() as u64) < total {
            let packet = match reader.try_next()? {
                Some(p) => p,
                None => {
                    // Nothing buffered: send the acknowledgements gathered so far, then wait.
                    if writer.buffered() > 0 {
                        writer.flush().await?;
                    }
                    match tokio::time::timeout(Duration::from_secs(5), reader.next()).await {
                        Ok(Ok(Some(p))) => p,
                        _ => break, // idle 5 s: the rest was lost
                    }
                }
            };
            if let Packet::Publish(p) = packet {
                let now = epoch.elapsed().as_nanos() as u64;
                let sent = p
                    .payload
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(now);
                latencies.push(now.saturating_sub(sent));
                last = Instant::now();
                if let Some(id) = p.packet_id {
                    writer.push(&Packet::PubAck(PubResponse::new(id)))?;
                    if writer.buffered() > 4096 {
                        writer.flush().await?;
                    }
                }
            }
        }
        if writer.buffered() > 0 {
            writer.flush().await?;
        }
        Ok::<_, Error>((latencies, last))
    });

    let start = Instant::now();
    let mut tasks = Vec::new();
    for d in publishers {
        let c = connect(addr, ca, d).await?;
        let topic = TopicName::new(&format!("telemetry/{}/load", d.thing))?;
        let n = flags.messages;
        let window = flags.window;
        let interval = (flags.rate > 0)
            .then(|| Duration::from_secs_f64(publishers.len() as f64 / flags.rate as f64));
        tasks.push(tokio::spawn(async move {
            let (mut r, mut w) = c.split();
            let permits = Arc::new(Semaphore::new(window));
            let acked = Arc::new(AtomicU64::new(0));
            let acks = {
                let permits = permits.clone();
                let acked = acked.clone();
                tokio::spawn(async move {
                    while acked.load(Ordering::Relaxed) < n {
                        match r.next().await {
                            Ok(Some(Packet::PubAck(_))) => {
                                acked.fetch_add(1, Ordering::Relaxed);
                                permits.add_permits(1);
                            }
                            Ok(Some(_)) => {}
                            _ => break,
                        }
                    }
                })
            };
            let mut id: u16 = 0;
            let paced_from = tokio::time::Instant::now();
            for i in 0..n {
                if let Some(interval) = interval {
                    let due = paced_from + interval.mul_f64(i as f64);
                    if tokio::time::Instant::now() < due {
                        if w.buffered() > 0 {
                            w.flush().await?;
                        }
                        tokio::time::sleep_until(due).await;
                    }
                }
                let mut payload = [0u8; 64];
                let now = epoch.elapsed().as_nanos() as u64;
                payload[..8].copy_from_slice(&now.to_be_bytes());
                let mut p = Publish::new(topic.clone(), Bytes::copy_from_slice(&payload));
                p.properties = PacketProperties::default();
                if qos == QoS::AtLeastOnce {
                    permits.acquire().await?.forget();
                    id = id.wrapping_add(1).max(1);
                    p.qos = QoS::AtLeastOnce;
                    p.packet_id = PacketId::new(id);
                }
                w.push(&Packet::Publish(p))?;
                // Flush in small batches (QoS 0) or whenever the window is exhausted (QoS 1).
                if w.buffered() >= 8 * 1024 || permits.available_permits() == 0 || i + 1 == n {
                    w.flush().await?;
                }
            }
            if qos == QoS::AtLeastOnce {
                let _ = tokio::time::timeout(Duration::from_secs(30), acks).await;
            } else {
                acks.abort();
            }
            // Keep the connection open until the subscriber is done (a close could drop the tail).
            Ok::<_, Error>(w)
        }));
    }
    let mut writers = Vec::new();
    for t in tasks {
        writers.push(t.await??);
    }
    let (mut latencies, last) = receiver.await??;
    drop(writers);
    let elapsed = last.duration_since(start).as_secs_f64();
    latencies.sort_unstable();
    Ok(Round {
        rate: latencies.len() as f64 / elapsed.max(1e-9),
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        lost: total - latencies.len() as u64,
    })
}

fn median(rounds: &[Round], f: impl Fn(&Round) -> f64) -> f64 {
    let mut v: Vec<f64> = rounds.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> Result<(), Error> {
    let flags = Flags::parse();
    let fleet = Fleet::new()?;
    let publishers: Vec<Device> = (0..flags.publishers)
        .map(|i| fleet.add_device(&format!("load-{i:02}"), &[]))
        .collect::<Result<_, _>>()?;
    let subscriber = fleet.add_device("load-sink", &[])?;
    let ca = fleet.ca_pem();

    // The thingkit broker on its own runtime, policy and metering on; the rate limits are raised
    // so that they meter without refusing (a load test measures the broker, not the limiter).
    let broker_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(flags.broker_threads)
        .thread_name("broker")
        .enable_all()
        .build()?;
    let unlimited = RateLimits::default()
        .with_messages(Some(Rate::per_second(10_000_000)))
        .with_bytes(None)
        .with_message_action(LimitAction::Drop)
        .with_byte_action(LimitAction::Drop);
    let config = BrokerConfig::default()
        .with_connection_limits(unlimited)
        .with_account_limits(unlimited)
        .with_max_queued(100_000);
    let broker = broker_rt.block_on(
        Broker::builder(
            fleet.registry.clone(),
            ServerIdentity::from_pem(fleet.server_chain_pem.clone(), fleet.server_key_pem.clone()),
        )
        .config(config)
        .bind("127.0.0.1:0".parse()?),
    )?;
    let ours = broker.local_addr();
    let temp = tempfile::tempdir()?;
    let theirs = if flags.no_mosquitto {
        None
    } else {
        Some(Mosquitto::start(
            temp.path(),
            &ca,
            &fleet.server_chain_pem,
            &fleet.server_key_pem,
            FLEET_ACL,
        )?)
    };

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut results: Vec<(QoS, &str, Vec<Round>)> = Vec::new();
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        let mut mine = Vec::new();
        let mut peer = Vec::new();
        for r in 0..flags.rounds {
            // Alternate which broker goes first, so drift in machine load hits both.
            let order: Vec<bool> = if r % 2 == 0 {
                vec![true, false]
            } else {
                vec![false, true]
            };
            for thingkit_first in order {
                if thingkit_first {
                    let res = client_rt.block_on(round(
                        ours,
                        &ca,
                        &publishers,
                        &subscriber,
                        qos,
                        &flags,
                    ))?;
                    eprintln!("QoS {} thingkit  round {r}: {res:?}", qos.as_u8());
                    mine.push(res);
                } else if let Some(m) = &theirs {
                    let res = client_rt.block_on(round(
                        m.addr,
                        &ca,
                        &publishers,
                        &subscriber,
                        qos,
                        &flags,
                    ))?;
                    eprintln!("QoS {} mosquitto round {r}: {res:?}", qos.as_u8());
                    peer.push(res);
                }
            }
        }
        results.push((qos, "thingkit broker", mine));
        if theirs.is_some() {
            results.push((qos, "mosquitto", peer));
        }
    }
    let stats = broker.stats();
    broker_rt.block_on(broker.shutdown(Duration::from_secs(5)));

    println!(
        "\n{} publishers x {} messages of 64 B, 1 subscriber, MQTT 5 over TLS 1.3 with client certificates, offered load {}; median of {} rounds",
        flags.publishers,
        flags.messages,
        if flags.rate == 0 {
            "unpaced".to_string()
        } else {
            format!("{} msgs/s", flags.rate)
        },
        flags.rounds
    );
    println!(
        "\n| QoS | broker | msgs/s | p50 latency | p99 latency | lost | throughput vs mosquitto |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        let peer_rate = results
            .iter()
            .find(|(q, b, _)| *q == qos && *b == "mosquitto")
            .map(|(_, _, r)| median(r, |x| x.rate));
        for (q, name, rounds) in &results {
            if *q != qos {
                continue;
            }
            let rate = median(rounds, |x| x.rate);
            let ratio = match peer_rate {
                Some(p) if *name != "mosquitto" => format!("{:.2}x", rate / p),
                Some(_) => "1.00x".to_string(),
                None => "-".to_string(),
            };
            println!(
                "| {} | {name} | {:.0} | {:.0} µs | {:.0} µs | {} | {ratio} |",
                qos.as_u8(),
                rate,
                median(rounds, |x| x.p50_us),
                median(rounds, |x| x.p99_us),
                rounds.iter().map(|x| x.lost).sum::<u64>(),
            );
        }
    }
    println!(
        "\nthingkit broker counters: {} publishes in, {} deliveries, {} denied, {} throttled, {} queue drops",
        stats.publishes_in, stats.deliveries, stats.denied, stats.throttled, stats.queue_drops
    );
    Ok(())
}
