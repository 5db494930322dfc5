//! Issue #20: messages routed between `thingkit serve` processes over NATS, through a client we
//! did not write (rumqttc 0.25, MQTT 3.1.1 over mutual TLS, rustls on ring).
//!
//! Setups, each a fresh set of processes per round, rounds rotating which setup goes first:
//!
//! - **1 server**: three publishers and three subscribers on one `thingkit serve`, no
//!   `[cluster]` section;
//! - **1 server + bridge**: the same with `[cluster] nats` set and `durable = false` (every
//!   accepted message is also published to NATS; no other server receives it);
//! - **1 server + bridge, JetStream**: the same with `durable = true` (a QoS 1 PUBACK waits for
//!   the JetStream stream's acknowledgement);
//! - **3 servers**: publisher *i* and subscriber *i* on server *i*, the servers joined by
//!   nats-server (`[cluster] nats/name/server_id`, `durable = false`: NATS core);
//! - **3 servers + JetStream**: the same with `durable = true`;
//! - **3 servers + JetStream + PostgreSQL** (when `THINGKIT_TEST_POSTGRES` is set): the same,
//!   with the registry, shadows, jobs and sessions on PostgreSQL (`[cluster] postgres/schema`).
//!
//! nats-server must run JetStream (`.ci/nats` starts it with `-js`).
//!
//! Every subscriber subscribes (QoS 1) to `dt/+/telemetry/#`, `dt/fleet/+/+/status` and
//! `dt/+/events`, so each message reaches all three subscribers: in the 3-server setups one
//! delivery is on the publisher's server and two cross NATS, in the same run, interleaved
//! message by message. Messages are QoS 1 with a fixed-seed (SplitMix64) mix of topic shapes
//! (`dt/<thing>/telemetry` 40%, `dt/<thing>/telemetry/zone-<z>/sensor-<s>` 25%,
//! `dt/fleet/site-<n>/<thing>/status` 20%, `dt/<thing>/events` 15%) and payloads uniform in
//! 8–1024 bytes (the first 8 bytes: publisher, kind, sequence number).
//!
//! Each round is two phases on the same processes:
//!
//! - **paced** (latency): each publisher sends `--rate` messages/s for `--seconds`; the
//!   latency of a delivery is from just before `AsyncClient::publish` to the subscriber's event
//!   loop returning the PUBLISH (one process, one clock), split by same / cross server;
//! - **unpaced** (throughput): each publisher sends `--messages` as fast as its window of 64
//!   in-flight messages allows; deliveries/s from the first publish to the last delivery, and
//!   the CPU time (user + system, `/proc/PID/stat`) of the servers and of nats-server per
//!   published message.
//!
//! Before a round's phases, every publisher publishes probes until every subscriber has one
//! from every publisher, so routes and subscriptions are in place; probes are not counted.
//! The client and the servers share the machine's cores: a report, not a gate.
//!
//! ```sh
//! .ci/nats start; .ci/postgres start
//! cargo build --release -p thingkit-cli
//! THINGKIT_TEST_NATS=$(.ci/nats url) THINGKIT_TEST_POSTGRES=$(.ci/postgres url) \
//!   cargo bench --manifest-path benches/Cargo.toml -p thingkit-bench-cluster --bench routing
//! # CI: one short round
//! ... --bench routing -- --short
//! ```
//!
//! Options after `--`: `--short`, `--rounds N`, `--messages N` (per publisher, unpaced),
//! `--rate N` (per publisher, paced), `--seconds N` (paced). `THINGKIT_BIN` names the binary
//! (default `../target/release/thingkit`, relative to the benches directory). Fails (exit
//! status 1) when nats-server is not reachable or `THINGKIT_TEST_NATS` is unset. The
//! PostgreSQL setup's schemas (`bench_<pid>_r<n>`) are dropped at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS, SubscribeReasonCode,
    TlsConfiguration, Transport,
};
use thingkit_bench_support::serve::{Error, ServeFleet, thingkit_bin};
use thingkit_bench_support::{SplitMix64, report};

/// Publishers, subscribers and (in the 3-server setups) servers.
const N: usize = 3;
/// rumqttc's in-flight window and the servers' `max_inflight`.
const INFLIGHT: u16 = 64;
/// The servers' queue per session.
const QUEUE: usize = 100_000;
/// A phase ends when every subscriber has everything, or nothing arrived for this long after
/// the publishers finished.
const IDLE: Duration = Duration::from_secs(3);
/// The seed of the topic and payload mix.
const SEED: u64 = 0x2020_c105_7e42;
/// The subscribers' filters; together they match every topic shape once.
const FILTERS: [&str; 3] = ["dt/+/telemetry/#", "dt/fleet/+/+/status", "dt/+/events"];

const POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect",
     "Resource": "arn:aws:iot:eu-central-1:123456789012:client/${iot:Connection.Thing.ThingName}"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": "arn:aws:iot:eu-central-1:123456789012:topic/dt/*"},
    {"Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": "arn:aws:iot:eu-central-1:123456789012:topicfilter/dt/*"}
  ]
}"#;

fn publisher_name(i: usize) -> String {
    format!("pub-{i}")
}

fn subscriber_name(i: usize) -> String {
    format!("sub-{i}")
}

// ------------------------------------------------------------------------------------------
// Command line and environment

struct Args {
    short: bool,
    rounds: usize,
    messages: u32,
    rate: u32,
    seconds: u32,
}

fn parse_args() -> Result<Args, Error> {
    let mut short = false;
    let (mut rounds, mut messages, mut rate, mut seconds) = (None, None, None, None);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |name: &str| -> Result<u64, Error> {
            Ok(it
                .next()
                .ok_or_else(|| format!("{name} needs a number"))?
                .parse()?)
        };
        match arg.as_str() {
            // cargo bench passes `--bench` to harness = false targets.
            "--bench" => {}
            "--short" => short = true,
            "--rounds" => rounds = Some(num("--rounds")? as usize),
            "--messages" => messages = Some(num("--messages")? as u32),
            "--rate" => rate = Some(num("--rate")? as u32),
            "--seconds" => seconds = Some(num("--seconds")? as u32),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    Ok(Args {
        short,
        rounds: rounds.unwrap_or(if short { 1 } else { 3 }),
        messages: messages.unwrap_or(if short { 2_000 } else { 20_000 }),
        rate: rate.unwrap_or(200),
        seconds: seconds.unwrap_or(if short { 3 } else { 10 }),
    })
}

// ------------------------------------------------------------------------------------------
// The fleet: `thingkit init`, six device certificates, the policy.

type Fleet = ServeFleet;

fn things() -> Vec<String> {
    (0..N)
        .map(publisher_name)
        .chain((0..N).map(subscriber_name))
        .collect()
}

/// The fleet every round uses.
fn create_fleet(bin: &Path) -> Result<Fleet, Error> {
    let things: Vec<String> = things();
    let fleet = ServeFleet::create(bin, &things, &[("devices", POLICY)])?;
    Ok(fleet)
}

// ------------------------------------------------------------------------------------------
// Setups and servers

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    One,
    OneBridge,
    OneDurable,
    Three,
    ThreeDurable,
    ThreePostgres,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::One => "1 server",
            Setup::OneBridge => "1 server + NATS bridge",
            Setup::OneDurable => "1 server + NATS bridge, JetStream",
            Setup::Three => "3 servers, NATS",
            Setup::ThreeDurable => "3 servers, NATS + JetStream",
            Setup::ThreePostgres => "3 servers, NATS + JetStream + PostgreSQL",
        }
    }

    fn servers(self) -> usize {
        match self {
            Setup::One | Setup::OneBridge | Setup::OneDurable => 1,
            Setup::Three | Setup::ThreeDurable | Setup::ThreePostgres => N,
        }
    }

    /// `[cluster] durable`: QoS 1 acknowledged once the JetStream stream has it.
    fn durable(self) -> bool {
        matches!(
            self,
            Setup::OneDurable | Setup::ThreeDurable | Setup::ThreePostgres
        )
    }
}

/// What the servers of one setup share.
struct Peers {
    nats: String,
    postgres: Option<String>,
    /// Makes NATS cluster names and PostgreSQL schemas unique to this run.
    run_id: String,
}

struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(
        fleet: &Fleet,
        setup: Setup,
        peers: &Peers,
        round: usize,
        index: usize,
    ) -> Result<Server, Error> {
        let data = tempfile::tempdir()?;
        let mut config = format!(
            "data_dir = {data:?}\n\
             [mqtt]\n\
             listen = \"127.0.0.1:0\"\n\
             max_queued = {QUEUE}\n\
             max_inflight = {INFLIGHT}\n\
             [policies]\n\
             dir = \"policies\"\n\
             [limits]\n\
             enabled = false\n\
             [metrics]\n\
             listen = \"127.0.0.1:0\"\n\
             [api]\n\
             enabled = false\n\
             [log]\n\
             level = \"warn\"\n",
            data = data.path().display().to_string(),
        );
        if setup != Setup::One {
            // One NATS cluster name per round, so rounds (and runs) never hear each other.
            config.push_str(&format!(
                "[cluster]\nnats = {:?}\nname = \"bench{}r{round}\"\nserver_id = \"server-{index}\"\ndurable = {}\n",
                peers.nats,
                peers.run_id,
                setup.durable()
            ));
        }
        if setup == Setup::ThreePostgres {
            let url = peers.postgres.as_deref().ok_or("no PostgreSQL URL")?;
            config.push_str(&format!(
                "postgres = {url:?}\nschema = \"bench_{}_r{round}\"\n",
                peers.run_id
            ));
        }
        for thing in things() {
            config.push_str(&format!(
                "[[device]]\nthing = \"{thing}\"\ncertificate = \"devices/{thing}.pem\"\n"
            ));
        }
        let path = fleet.dir.join(format!("round-{round}-server-{index}.toml"));
        std::fs::write(&path, config)?;
        let log = fleet.dir.join(format!("round-{round}-server-{index}.log"));
        let (child, rx) = fleet.serve(&path, &log)?;
        let mut server = Server {
            child,
            port: 0,
            log,
            _data: data,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.port == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("mqtt listening on ") {
                        let addr = addr.split_whitespace().next().unwrap_or_default();
                        server.port = addr.rsplit(':').next().unwrap_or_default().parse()?;
                    }
                }
                Err(_) => {
                    return Err(format!(
                        "thingkit serve printed no \"mqtt listening on\" line: {}",
                        server.log_tail()
                    )
                    .into());
                }
            }
        }
        Ok(server)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    fn cpu_seconds(&self, clk_tck: f64) -> f64 {
        cpu_seconds(self.child.id(), clk_tck).unwrap_or(f64::NAN)
    }
}

/// A process's CPU time so far (user + system), from `/proc/PID/stat`.
fn cpu_seconds(pid: u32, clk_tck: f64) -> Result<f64, Error> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the command name in parentheses: utime and stime are the 12th and 13th fields.
    let rest = stat.rsplit_once(')').ok_or("unreadable /proc/PID/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64, Error> {
        Ok(fields
            .get(i)
            .ok_or("short /proc/PID/stat")?
            .parse::<u64>()? as f64)
    };
    Ok((ticks(11)? + ticks(12)?) / clk_tck)
}

/// The nats-server process on this machine (for its CPU time), if exactly one runs.
fn nats_server_pid() -> Option<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim() == "nats-server")
        {
            found.push(pid);
        }
    }
    (found.len() == 1).then(|| found[0])
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(100.0)
}

// ------------------------------------------------------------------------------------------
// Messages

/// One publisher's messages: topic and payload size, from the fixed seed.
fn plan(publisher: usize, count: usize) -> Vec<(String, usize)> {
    let mut rng = SplitMix64(SEED ^ (publisher as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let thing = publisher_name(publisher);
    (0..count)
        .map(|_| {
            let shape = rng.below(100);
            let topic = if shape < 40 {
                format!("dt/{thing}/telemetry")
            } else if shape < 65 {
                format!(
                    "dt/{thing}/telemetry/zone-{}/sensor-{}",
                    rng.below(8),
                    rng.below(64)
                )
            } else if shape < 85 {
                format!("dt/fleet/site-{}/{thing}/status", rng.below(32))
            } else {
                format!("dt/{thing}/events")
            };
            (topic, rng.range(8, 1024))
        })
        .collect()
}

const KIND_MEASURED: u8 = 0;
const KIND_PROBE: u8 = 1;

fn payload(publisher: usize, kind: u8, seq: u32, size: usize) -> Vec<u8> {
    let mut p = vec![0x5au8; size.max(8)];
    p[0] = publisher as u8;
    p[1] = kind;
    p[2] = 0;
    p[3] = 0;
    p[4..8].copy_from_slice(&seq.to_le_bytes());
    p
}

/// State shared by the clients of one round.
struct Shared {
    base: Instant,
    /// Per publisher, per sequence number: nanoseconds after `base` just before publishing.
    sent_at: Vec<Vec<AtomicU64>>,
    /// Per subscriber, per publisher: a probe arrived.
    probed: Vec<Vec<AtomicBool>>,
    /// Per subscriber: what arrived.
    received: Vec<Mutex<Received>>,
    /// Per publisher: PUBACKs received, and PUBLISH requests made.
    acked: Vec<AtomicU64>,
    requested: Vec<AtomicU64>,
    /// Per subscriber: SUBACKs with every filter granted.
    subscribed: Vec<AtomicBool>,
    errors: Mutex<Vec<String>>,
}

#[derive(Default)]
struct Received {
    /// Per publisher, per sequence number: seen in the current phase.
    seen: Vec<Vec<bool>>,
    /// Per publisher: latencies (ns) of the current phase.
    latency: Vec<Vec<u64>>,
    distinct: u64,
    duplicates: u64,
    last: Option<Instant>,
}

impl Received {
    fn reset(&mut self, per_publisher: usize) {
        self.seen = vec![vec![false; per_publisher]; N];
        self.latency = (0..N).map(|_| Vec::with_capacity(per_publisher)).collect();
        self.distinct = 0;
        self.duplicates = 0;
        self.last = None;
    }
}

fn options(fleet: &Fleet, thing: &str, port: u16) -> Result<MqttOptions, Error> {
    let mut opts = MqttOptions::new(thing, "127.0.0.1", port);
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        fleet.tls(thing)?,
    )))
    .set_clean_session(true)
    .set_inflight(INFLIGHT)
    .set_max_packet_size(64 * 1024, 64 * 1024)
    .set_keep_alive(Duration::from_secs(30));
    Ok(opts)
}

async fn connect(eventloop: &mut rumqttc::EventLoop, who: &str) -> Result<(), Error> {
    let wait = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    if ack.code == ConnectReturnCode::Success {
                        return Ok(());
                    }
                    return Err(format!("{who}: CONNACK {:?}", ack.code).into());
                }
                Ok(_) => {}
                Err(e) => return Err(format!("{who}: connect: {e}").into()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .map_err(|_| format!("{who}: no CONNACK within 20 s"))?
}

fn note(shared: &Shared, e: String) {
    let mut errors = shared
        .errors
        .lock()
        .expect("no panics while the lock is held");
    if errors.len() < 10 {
        errors.push(e);
    }
}

/// A publisher's event loop: counts PUBACKs.
async fn publisher_loop(mut eventloop: rumqttc::EventLoop, index: usize, shared: Arc<Shared>) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                shared.acked[index].fetch_add(1, Ordering::AcqRel);
            }
            Ok(_) => {}
            Err(e) => {
                note(&shared, format!("{}: {e}", publisher_name(index)));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A subscriber's event loop: SUBACKs, probes, and each measured message's latency.
async fn subscriber_loop(mut eventloop: rumqttc::EventLoop, index: usize, shared: Arc<Shared>) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let now = shared.base.elapsed().as_nanos() as u64;
                if p.payload.len() < 8 {
                    continue;
                }
                let publisher = usize::from(p.payload[0]);
                let kind = p.payload[1];
                let seq = u32::from_le_bytes(p.payload[4..8].try_into().expect("4 bytes")) as usize;
                if publisher >= N {
                    continue;
                }
                if kind == KIND_PROBE {
                    shared.probed[index][publisher].store(true, Ordering::Release);
                    continue;
                }
                let mut r = shared.received[index]
                    .lock()
                    .expect("no panics while the lock is held");
                r.last = Some(Instant::now());
                let Some(seen) = r.seen.get_mut(publisher).and_then(|s| s.get_mut(seq)) else {
                    continue;
                };
                if *seen {
                    r.duplicates += 1;
                    continue;
                }
                *seen = true;
                r.distinct += 1;
                let sent = shared.sent_at[publisher][seq].load(Ordering::Acquire);
                r.latency[publisher].push(now.saturating_sub(sent));
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .all(|c| matches!(c, SubscribeReasonCode::Success(_)))
                {
                    shared.subscribed[index].store(true, Ordering::Release);
                } else {
                    note(
                        &shared,
                        format!("{}: SUBACK {:?}", subscriber_name(index), ack.return_codes),
                    );
                }
            }
            Ok(_) => {}
            Err(e) => {
                note(&shared, format!("{}: {e}", subscriber_name(index)));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// A round

/// What one phase measured.
struct Phase {
    published: u64,
    /// Distinct deliveries, summed over the subscribers.
    delivered: u64,
    duplicates: u64,
    seconds: f64,
    server_cpu: f64,
    nats_cpu: f64,
    /// Latencies (ns): publisher and subscriber on the same server, and on different ones.
    same: Vec<u64>,
    cross: Vec<u64>,
}

struct Outcome {
    setup: Setup,
    /// The round's running number (file and schema names).
    index: usize,
    round: usize,
    paced: Phase,
    unpaced: Phase,
}

/// Server index of publisher or subscriber `i`.
fn server_of(setup: Setup, i: usize) -> usize {
    if setup.servers() == 1 { 0 } else { i }
}

#[allow(clippy::too_many_arguments)]
async fn phase(
    shared: &Arc<Shared>,
    clients: &[AsyncClient],
    plans: &[Vec<(String, usize)>],
    setup: Setup,
    count: u32,
    rate: Option<u32>,
    servers: &[Server],
    nats_pid: Option<u32>,
    clk: f64,
) -> Result<Phase, Error> {
    for r in &shared.received {
        r.lock()
            .expect("no panics while the lock is held")
            .reset(count as usize);
    }
    let cpu_before: f64 = servers.iter().map(|s| s.cpu_seconds(clk)).sum();
    let nats_before = nats_pid.map_or(f64::NAN, |p| cpu_seconds(p, clk).unwrap_or(f64::NAN));
    let acked_before: Vec<u64> = shared
        .acked
        .iter()
        .map(|a| a.load(Ordering::Acquire))
        .collect();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let client = client.clone();
        let shared = Arc::clone(shared);
        let plan = plans[i].clone();
        tasks.push(tokio::spawn(async move {
            for seq in 0..count {
                if let Some(rate) = rate {
                    let at = start + Duration::from_secs_f64(f64::from(seq) / f64::from(rate));
                    tokio::time::sleep_until(at.into()).await;
                }
                let (topic, size) = &plan[seq as usize];
                let body = payload(i, KIND_MEASURED, seq, *size);
                shared.sent_at[i][seq as usize]
                    .store(shared.base.elapsed().as_nanos() as u64, Ordering::Release);
                shared.requested[i].fetch_add(1, Ordering::AcqRel);
                if client
                    .publish(topic.as_str(), QoS::AtLeastOnce, false, body)
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let expected = u64::from(count) * N as u64 * N as u64;
    // Wait for every PUBACK and every delivery, or for the subscribers to go quiet.
    let mut quiet_since = Instant::now();
    let mut last_total = 0u64;
    let end = loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let acked = shared
            .acked
            .iter()
            .zip(&acked_before)
            .all(|(a, b)| a.load(Ordering::Acquire) - b >= u64::from(count));
        let total: u64 = shared
            .received
            .iter()
            .map(|r| r.lock().expect("no panics while the lock is held").distinct)
            .sum();
        if total != last_total {
            last_total = total;
            quiet_since = Instant::now();
        }
        if acked && total >= expected {
            break Instant::now();
        }
        if quiet_since.elapsed() > IDLE {
            break Instant::now() - IDLE;
        }
    };
    let server_cpu = servers.iter().map(|s| s.cpu_seconds(clk)).sum::<f64>() - cpu_before;
    let nats_cpu =
        nats_pid.map_or(f64::NAN, |p| cpu_seconds(p, clk).unwrap_or(f64::NAN)) - nats_before;
    let last = shared
        .received
        .iter()
        .filter_map(|r| r.lock().expect("no panics while the lock is held").last)
        .max()
        .unwrap_or(end);
    let mut out = Phase {
        published: u64::from(count) * N as u64,
        delivered: 0,
        duplicates: 0,
        seconds: last.saturating_duration_since(start).as_secs_f64(),
        server_cpu,
        nats_cpu,
        same: Vec::new(),
        cross: Vec::new(),
    };
    for (s, r) in shared.received.iter().enumerate() {
        let r = r.lock().expect("no panics while the lock is held");
        out.delivered += r.distinct;
        out.duplicates += r.duplicates;
        for (p, lat) in r.latency.iter().enumerate() {
            if server_of(setup, p) == server_of(setup, s) {
                out.same.extend_from_slice(lat);
            } else {
                out.cross.extend_from_slice(lat);
            }
        }
    }
    Ok(out)
}

async fn round(
    fleet: &Fleet,
    setup: Setup,
    peers: &Peers,
    index: usize,
    args: &Args,
    clk: f64,
) -> Result<Outcome, Error> {
    let servers = (0..setup.servers())
        .map(|i| Server::start(fleet, setup, peers, index, i))
        .collect::<Result<Vec<_>, _>>()?;
    let nats_pid = nats_server_pid();
    let paced_count = args.rate * args.seconds;
    let max = paced_count.max(args.messages) as usize;
    let shared = Arc::new(Shared {
        base: Instant::now(),
        sent_at: (0..N)
            .map(|_| (0..max).map(|_| AtomicU64::new(0)).collect())
            .collect(),
        probed: (0..N)
            .map(|_| (0..N).map(|_| AtomicBool::new(false)).collect())
            .collect(),
        received: (0..N).map(|_| Mutex::new(Received::default())).collect(),
        acked: (0..N).map(|_| AtomicU64::new(0)).collect(),
        requested: (0..N).map(|_| AtomicU64::new(0)).collect(),
        subscribed: (0..N).map(|_| AtomicBool::new(false)).collect(),
        errors: Mutex::new(Vec::new()),
    });
    let plans: Vec<_> = (0..N).map(|i| plan(i, max)).collect();
    let mut tasks = Vec::new();
    let mut subscribers = Vec::new();
    // Subscribers first.
    for i in 0..N {
        let name = subscriber_name(i);
        let port = servers[server_of(setup, i)].port;
        let (client, mut eventloop) = AsyncClient::new(options(fleet, &name, port)?, 1024);
        connect(&mut eventloop, &name).await?;
        for f in FILTERS {
            client.subscribe(f, QoS::AtLeastOnce).await?;
        }
        tasks.push(tokio::spawn(subscriber_loop(
            eventloop,
            i,
            Arc::clone(&shared),
        )));
        // Kept until the round ends: dropping every handle ends the event loop.
        subscribers.push(client);
    }
    let mut clients = Vec::new();
    for i in 0..N {
        let name = publisher_name(i);
        let port = servers[server_of(setup, i)].port;
        let (client, mut eventloop) = AsyncClient::new(options(fleet, &name, port)?, 256);
        connect(&mut eventloop, &name).await?;
        tasks.push(tokio::spawn(publisher_loop(
            eventloop,
            i,
            Arc::clone(&shared),
        )));
        clients.push(client);
    }
    // Probes until every subscriber has heard every publisher.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = shared.subscribed.iter().all(|s| s.load(Ordering::Acquire))
            && shared
                .probed
                .iter()
                .all(|row| row.iter().all(|p| p.load(Ordering::Acquire)));
        if ready {
            break;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = servers.iter().map(Server::log_tail).collect();
            let errors = shared
                .errors
                .lock()
                .expect("no panics while the lock is held")
                .clone();
            return Err(format!(
                "{}: probes did not reach every subscriber within 30 s; client errors {errors:?}; server logs {logs:?}",
                setup.name()
            )
            .into());
        }
        for (i, client) in clients.iter().enumerate() {
            client
                .publish(
                    format!("dt/{}/events", publisher_name(i)),
                    QoS::AtLeastOnce,
                    false,
                    payload(i, KIND_PROBE, 0, 8),
                )
                .await?;
            shared.requested[i].fetch_add(1, Ordering::AcqRel);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the last probes' acknowledgements arrive, then count from a settled state.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paced = phase(
        &shared,
        &clients,
        &plans,
        setup,
        paced_count,
        Some(args.rate),
        &servers,
        nats_pid,
        clk,
    )
    .await?;
    let unpaced = phase(
        &shared,
        &clients,
        &plans,
        setup,
        args.messages,
        None,
        &servers,
        nats_pid,
        clk,
    )
    .await?;
    for t in tasks {
        t.abort();
    }
    drop(subscribers);
    let errors = shared
        .errors
        .lock()
        .expect("no panics while the lock is held")
        .clone();
    if !errors.is_empty() {
        eprintln!("{} round {index}: client errors: {errors:?}", setup.name());
    }
    drop(servers);
    Ok(Outcome {
        setup,
        index,
        round: index,
        paced,
        unpaced,
    })
}

// ------------------------------------------------------------------------------------------
// Report

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        f64::NAN
    } else if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    }
}

fn same_of(p: &Phase) -> &Vec<u64> {
    &p.same
}

fn cross_of(p: &Phase) -> &Vec<u64> {
    &p.cross
}

fn report(outcomes: &[Outcome], args: &Args, machine: &str, date: &str) {
    println!();
    println!(
        "## cluster routing{}: {machine}, {date}, load average {}; {} round(s); paced {} msg/s x {} s per publisher, unpaced {} messages per publisher; {N} publishers, {N} subscribers, QoS 1, payloads 8-1024 B",
        if args.short { " (--short)" } else { "" },
        report::load_average(),
        args.rounds,
        args.rate,
        args.seconds,
        args.messages
    );
    println!();
    println!("Latency, paced (publish -> delivery, ms), per round:");
    println!();
    println!(
        "| machine | date | setup | round | same-server p50 | same-server p99 | cross-server p50 | cross-server p99 | deliveries (same / cross) | lost |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for o in outcomes {
        let mut same = o.paced.same.clone();
        let mut cross = o.paced.cross.clone();
        same.sort_unstable();
        cross.sort_unstable();
        let lost = o.paced.published * N as u64 - o.paced.delivered;
        let cell = |v: &[u64], p| {
            if v.is_empty() {
                "—".to_owned()
            } else {
                format!("{:.2}", percentile(v, p))
            }
        };
        println!(
            "| {machine} | {date} | {} | {} | {} | {} | {} | {} | {} / {} | {lost} |",
            o.setup.name(),
            o.round,
            cell(&same, 0.5),
            cell(&same, 0.99),
            cell(&cross, 0.5),
            cell(&cross, 0.99),
            same.len(),
            cross.len(),
        );
    }
    println!();
    println!("Throughput, unpaced, per round (each message is delivered to all {N} subscribers):");
    println!();
    println!(
        "| machine | date | setup | round | published msg/s | deliveries/s | server CPU µs per published msg | nats-server CPU µs per published msg | lost | duplicates |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for o in outcomes {
        let u = &o.unpaced;
        let lost = u.published * N as u64 - u.delivered;
        let nats = if o.setup == Setup::One {
            "—".to_owned()
        } else {
            format!("{:.1}", u.nats_cpu * 1e6 / u.published as f64)
        };
        println!(
            "| {machine} | {date} | {} | {} | {:.0} | {:.0} | {:.1} | {nats} | {lost} | {} |",
            o.setup.name(),
            o.round,
            u.published as f64 / u.seconds,
            u.delivered as f64 / u.seconds,
            u.server_cpu * 1e6 / u.published as f64,
            u.duplicates,
        );
    }
    println!();
    println!("Medians over rounds:");
    println!();
    println!(
        "| machine | date | setup | same p50 / p99 ms | cross p50 / p99 ms | deliveries/s | server CPU µs/msg | nats-server CPU µs/msg |"
    );
    println!("|---|---|---|---|---|---:|---:|---:|");
    let mut setups: Vec<Setup> = Vec::new();
    for o in outcomes {
        if !setups.contains(&o.setup) {
            setups.push(o.setup);
        }
    }
    for setup in setups {
        let of: Vec<&Outcome> = outcomes.iter().filter(|o| o.setup == setup).collect();
        let pct = |f: fn(&Phase) -> &Vec<u64>, p: f64| {
            median(
                of.iter()
                    .map(|o| {
                        let mut v = f(&o.paced).clone();
                        v.sort_unstable();
                        percentile(&v, p)
                    })
                    .collect(),
            )
        };
        let fmt2 = |a: f64, b: f64| {
            if a.is_nan() {
                "—".to_owned()
            } else {
                format!("{a:.2} / {b:.2}")
            }
        };
        let rate = median(
            of.iter()
                .map(|o| o.unpaced.delivered as f64 / o.unpaced.seconds)
                .collect(),
        );
        let cpu = median(
            of.iter()
                .map(|o| o.unpaced.server_cpu * 1e6 / o.unpaced.published as f64)
                .collect(),
        );
        let nats = median(
            of.iter()
                .map(|o| o.unpaced.nats_cpu * 1e6 / o.unpaced.published as f64)
                .collect(),
        );
        println!(
            "| {machine} | {date} | {} | {} | {} | {rate:.0} | {cpu:.1} | {} |",
            setup.name(),
            fmt2(pct(same_of, 0.5), pct(same_of, 0.99)),
            fmt2(pct(cross_of, 0.5), pct(cross_of, 0.99)),
            if setup == Setup::One {
                "—".to_owned()
            } else {
                format!("{nats:.1}")
            },
        );
    }
}

fn main() -> ExitCode {
    match main_inner() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster routing bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main_inner() -> Result<(), Error> {
    let args = parse_args()?;
    let bin = thingkit_bin();
    if !bin.exists() {
        return Err(format!(
            "{} does not exist: build it (cargo build --release -p thingkit-cli) or set THINGKIT_BIN",
            bin.display()
        )
        .into());
    }
    let nats = std::env::var("THINGKIT_TEST_NATS").map_err(|_| {
        "THINGKIT_TEST_NATS is not set: run `.ci/nats start` and export THINGKIT_TEST_NATS=$(.ci/nats url)"
    })?;
    let addr = nats
        .strip_prefix("nats://")
        .unwrap_or(&nats)
        .trim_end_matches('/');
    std::net::TcpStream::connect(addr).map_err(|e| format!("nats-server at {nats}: {e}"))?;
    let postgres = std::env::var("THINGKIT_TEST_POSTGRES").ok();
    let machine = report::machine();
    let date = report::date(&["-u", "+%Y-%m-%d %H:%M UTC"]);
    let clk = clk_tck();
    let fleet = create_fleet(&bin)?;
    let peers = Peers {
        nats,
        postgres: postgres.clone(),
        run_id: format!("{}", std::process::id()),
    };
    let mut setups = vec![
        Setup::One,
        Setup::OneBridge,
        Setup::OneDurable,
        Setup::Three,
        Setup::ThreeDurable,
    ];
    if postgres.is_some() {
        setups.push(Setup::ThreePostgres);
    } else {
        eprintln!("THINGKIT_TEST_POSTGRES is not set: the PostgreSQL setup is left out");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut outcomes = Vec::new();
    let mut index = 0;
    for r in 0..args.rounds {
        for k in 0..setups.len() {
            let setup = setups[(k + r) % setups.len()];
            eprintln!("round {r}: {} ...", setup.name());
            let mut outcome = runtime.block_on(round(&fleet, setup, &peers, index, &args, clk))?;
            outcome.round = r;
            index += 1;
            outcomes.push(outcome);
        }
    }
    // The PostgreSQL setup's schemas (one per round) go.
    if let Some(url) = &postgres {
        let mut client = postgres::Client::connect(url, postgres::NoTls)?;
        for o in outcomes.iter().filter(|o| o.setup == Setup::ThreePostgres) {
            client.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"bench_{}_r{}\" CASCADE",
                peers.run_id, o.index
            ))?;
        }
    }
    report(&outcomes, &args, &machine, &date);
    Ok(())
}
