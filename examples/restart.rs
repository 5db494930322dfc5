//! Restart benchmark: the broker's store holds `--sessions` persistent sessions (each with a
//! subscription) and `--retained` retained messages; how long until a restarted server accepts
//! connections again, and until a device is back in its session with the QoS 1 message that
//! was queued for it while it was away.
//!
//! ```sh
//! cargo run --release --example restart -- --sessions 100000 --retained 100000 --rounds 3
//! ```
//!
//! The store is filled once through `RouterStore::apply` in large batches (what 100,000 devices
//! would have left behind), then each round opens it and starts the server exactly as
//! `thingkit serve` does (`Broker::builder(..).store(RedbStore::open(..)?).bind(..)`), mutual TLS
//! and policies on. "accepting" is from opening the store to the listener being bound (the
//! router has restored every session, subscription, queue and retained message by then); "back
//! in session" adds one device's TLS 1.3 handshake, CONNECT with Clean Session 0 (CONNACK
//! Session Present) and the delivery of its queued message.

#[path = "support/client.rs"]
mod client;
#[path = "support/fleet.rs"]
mod fleet;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use client::{Client, Options, tls_config};
use fleet::Fleet;
use thingkit::broker::{
    Broker, BrokerConfig, GrantedSubscription, RedbStore, RouterStore, ServerIdentity,
    SessionExpiry, SessionRecord, StoreOp, StoredDelivery, StoredMessage,
};
use thingkit::mqtt::{PacketProperties, ProtocolVersion, QoS, TopicFilter, TopicName};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Flags.
#[derive(Debug, Parser)]
#[command(about = "thingkit broker: time to accept connections after a restart")]
struct Flags {
    /// Persistent sessions in the store (each with one subscription).
    #[arg(long, default_value_t = 100_000)]
    sessions: usize,
    /// Retained messages in the store (64-byte payloads).
    #[arg(long, default_value_t = 100_000)]
    retained: usize,
    /// Restarts measured.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

fn main() -> Result<(), Error> {
    let flags = Flags::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(flags))
}

async fn run(flags: Flags) -> Result<(), Error> {
    let fleet = Fleet::new()?;
    // The one device that comes back in each round; the others are store records only.
    let device = fleet.add_device("device-0", &[])?;
    let temp = tempfile::tempdir()?;
    let path = temp.path().join("broker.redb");

    let filled = Instant::now();
    fill(&path, &flags)?;
    let fill_time = filled.elapsed();
    let size = std::fs::metadata(&path)?.len();
    println!(
        "store: {} sessions, {} retained messages, {:.1} MiB, filled in {:.1} s\n",
        flags.sessions,
        flags.retained,
        size as f64 / (1024.0 * 1024.0),
        fill_time.as_secs_f64()
    );

    let tls = tls_config(&fleet.ca_pem(), &device.cert_pem, &device.key_pem)?;
    let mut accepting = Vec::new();
    let mut back = Vec::new();
    for round in 0..flags.rounds {
        let started = Instant::now();
        let store = RedbStore::open(&path)?;
        let broker = Broker::builder(
            fleet.registry.clone(),
            ServerIdentity::from_pem(fleet.server_chain_pem.clone(), fleet.server_key_pem.clone()),
        )
        .config(BrokerConfig::default().with_lifecycle_events(false))
        .store(store)
        .bind("127.0.0.1:0".parse()?)
        .await?;
        let accept = started.elapsed();
        let options = Options {
            version: ProtocolVersion::V311,
            clean_start: false,
            ..Options::new("device-0")
        };
        let mut c =
            Client::connect(broker.local_addr(), "localhost", tls.clone(), &options).await?;
        if !c.connack.session_present {
            return Err("the device's session was not restored".into());
        }
        let p = tokio::time::timeout(Duration::from_secs(10), c.next_publish())
            .await??
            .ok_or("closed before the queued message")?;
        let session = started.elapsed();
        if &p.payload[..] != b"queued while away" {
            return Err("wrong message".into());
        }
        // Acknowledged: the next round queues it again (the store is refilled below).
        c.drop_connection().await;
        broker.shutdown(Duration::from_secs(5)).await;
        println!(
            "round {}: accepting after {:.0} ms, device back in session after {:.0} ms",
            round + 1,
            accept.as_secs_f64() * 1e3,
            session.as_secs_f64() * 1e3
        );
        accepting.push(accept);
        back.push(session);
        // Put the device's queued message back for the next round.
        let mut store = RedbStore::open(&path)?;
        store.apply(&[queued_for("device-0")])?;
    }
    accepting.sort();
    back.sort();
    let median = |v: &[Duration]| v[v.len() / 2].as_secs_f64() * 1e3;
    println!(
        "\n| sessions | retained | accepting connections (median, min–max) | device back in session with its message |\n|---|---|---|---|"
    );
    println!(
        "| {} | {} | {:.0} ms ({:.0}–{:.0}) | {:.0} ms ({:.0}–{:.0}) |",
        flags.sessions,
        flags.retained,
        median(&accepting),
        accepting[0].as_secs_f64() * 1e3,
        accepting[accepting.len() - 1].as_secs_f64() * 1e3,
        median(&back),
        back[0].as_secs_f64() * 1e3,
        back[back.len() - 1].as_secs_f64() * 1e3,
    );
    Ok(())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The QoS 1 message queued for `client` while it was away.
fn queued_for(client: &str) -> StoreOp {
    StoreOp::PushQueued {
        client_id: client.into(),
        delivery: StoredDelivery {
            message: Arc::new(StoredMessage {
                topic: TopicName::new(&format!("status/{client}/queued")).expect("valid topic"),
                payload: "queued while away".into(),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: PacketProperties::default(),
                from: None,
                received_unix_ms: unix_ms(),
            }),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_id: None,
        },
    }
}

/// What `sessions` devices and `retained` retained topics leave in the store.
fn fill(path: &std::path::Path, flags: &Flags) -> Result<(), Error> {
    let mut store = RedbStore::open(path)?;
    let granted = GrantedSubscription {
        qos: QoS::AtLeastOnce,
        no_local: false,
        retain_as_published: false,
        id: None,
    };
    let now = unix_ms();
    const BATCH: usize = 10_000;
    let mut ops = Vec::with_capacity(2 * BATCH);
    for i in 0..flags.sessions {
        let client: Arc<str> = format!("device-{i}").into();
        ops.push(StoreOp::PutSession {
            client_id: client.clone(),
            record: SessionRecord {
                expiry: SessionExpiry::Never,
                deadline_unix_ms: None,
            },
        });
        ops.push(StoreOp::PutSubscription {
            client_id: client,
            filter: TopicFilter::new(&format!("status/device-{i}/#"))?,
            granted,
        });
        if ops.len() >= 2 * BATCH {
            store.apply(&ops)?;
            ops.clear();
        }
    }
    if flags.sessions > 0 {
        ops.push(queued_for("device-0"));
    }
    for i in 0..flags.retained {
        ops.push(StoreOp::PutRetained {
            message: Arc::new(StoredMessage {
                topic: TopicName::new(&format!("state/device-{i}"))?,
                payload: vec![b'x'; 64].into(),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: PacketProperties::default(),
                from: None,
                received_unix_ms: now,
            }),
        });
        if ops.len() >= BATCH {
            store.apply(&ops)?;
            ops.clear();
        }
    }
    store.apply(&ops)?;
    Ok(())
}
