//! Connection scale: memory per idle connected device, connect latency and handshakes per second
//! of the thingkit broker (policy and metering on, the default `BrokerConfig`) and of the Debian
//! `mosquitto` with equivalent TLS and ACLs, same machine, same run, alternating rounds. Prints a
//! Markdown table with the ratio.
//!
//! ```sh
//! cargo run --release --example connscale -- --devices 10000 --rounds 3
//! ```
//!
//! Each broker runs as a separate process, started afresh for every round, so that its memory
//! can be read from `/proc/PID/status` (`VmRSS`): the thingkit broker is this binary re-executed
//! with the hidden `--serve-ours DIR` flag, which rebuilds the fleet's registry from the files in
//! `DIR` and serves on a loopback port on a 2-worker runtime. Each round: read the broker's RSS
//! once it listens (and, for ours, has loaded the registry); open `--devices` connections (TCP,
//! TLS 1.3 with a client certificate, MQTT 5 CONNECT with a 600 s keep-alive, CONNACK) with at
//! most `--concurrency` in flight; wait `--settle-ms`; read the RSS again. Memory per device is
//! (after − before) / devices. Connect latency is from the TCP connect to the CONNACK of each
//! connection; handshakes/s is devices divided by the time from the first connect to the last
//! CONNACK.
//!
//! Every device has its own certificate and thing (`dev-00000`, ...), and connects with its thing
//! name as client ID: the fleet policy allows `iot:Connect` only as the certificate's thing, so
//! one shared certificate could not open N connections on our broker (mosquitto would accept it,
//! which would make the two runs unlike). Needs `mosquitto`.

#[path = "support/client.rs"]
mod client;
#[path = "support/fleet.rs"]
mod fleet;
#[path = "support/mosquitto.rs"]
mod mosquitto;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use clap::Parser;
use client::{Client, Options, tls_config};
use fleet::{Fleet, fleet_registry, register_device};
use mosquitto::{FLEET_ACL, Mosquitto};
use thingkit::broker::{Broker, BrokerConfig, ServerIdentity};
use thingkit::mqtt::ProtocolVersion;
use tokio::sync::Semaphore;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Flags.
#[derive(Debug, Parser, Clone)]
#[command(about = "thingkit broker vs mosquitto: memory per idle mTLS device, connect latency")]
struct Flags {
    /// Devices connected per round (each with its own certificate).
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Rounds per broker; rounds alternate between the brokers.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// MQTT keep-alive of the devices, in seconds.
    #[arg(long, default_value_t = 600)]
    keep_alive: u16,
    /// How long the connected devices stay idle before the broker's memory is read.
    #[arg(long, default_value_t = 2000)]
    settle_ms: u64,
    /// Worker threads of the thingkit broker's runtime.
    #[arg(long, default_value_t = 2)]
    broker_threads: usize,
    /// Worker threads of the client (load) runtime.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Only the thingkit broker (no mosquitto).
    #[arg(long)]
    no_mosquitto: bool,
    /// Internal: serve the thingkit broker with the fleet in DIR (the benchmark re-executes
    /// itself with this flag).
    #[arg(long, hide = true)]
    serve_ours: Option<PathBuf>,
}

fn thing(i: usize) -> String {
    format!("dev-{i:05}")
}

/// The `--serve-ours` process: the fleet's registry with every device of `dir/devices.pem`
/// (certificate `i` belongs to thing `dev-{i}`), the default `BrokerConfig` (policy and
/// metering on), a multi-threaded runtime. Prints `listening ADDR`, serves until stdin closes.
fn serve_ours(dir: &Path, threads: usize) -> Result<(), Error> {
    let ca_pem = std::fs::read_to_string(dir.join("ca.pem"))?;
    let ca_der = thingkit::provision::decode_pem_blocks(&ca_pem)?
        .into_iter()
        .next()
        .ok_or("no CA certificate")?
        .1;
    let mut registry = fleet_registry(&ca_der)?;
    let devices = std::fs::read_to_string(dir.join("devices.pem"))?;
    for (i, (_, der)) in thingkit::provision::decode_pem_blocks(&devices)?
        .into_iter()
        .enumerate()
    {
        register_device(&mut registry, &thing(i), &der, &[])?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("broker")
        .enable_all()
        .build()?;
    let broker = runtime.block_on(
        Broker::builder(
            Arc::new(RwLock::new(registry)),
            ServerIdentity::from_pem(
                std::fs::read_to_string(dir.join("server.pem"))?,
                std::fs::read_to_string(dir.join("server.key"))?,
            ),
        )
        .config(BrokerConfig::default())
        .bind("127.0.0.1:0".parse()?),
    )?;
    let mut out = std::io::stdout();
    writeln!(out, "listening {}", broker.local_addr())?;
    out.flush()?;
    // Serve until the benchmark closes our stdin (or dies).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    let stats = broker.stats();
    eprintln!(
        "thingkit broker: {} connects accepted, {} refused, {} TLS failures",
        stats.connects_accepted, stats.connects_refused, stats.tls_failures
    );
    runtime.block_on(broker.shutdown(Duration::from_secs(5)));
    Ok(())
}

/// A broker process under test.
enum Server {
    Ours(Child, SocketAddr),
    Mosquitto(Mosquitto),
}

impl Server {
    fn start(which: Which, dir: &Path, round: usize, flags: &Flags) -> Result<Server, Error> {
        match which {
            Which::Ours => {
                // CONNSCALE_WRAP=heaptrack runs our broker under a profiler (its RSS is then
                // the wrapper's, so only the profile is meaningful).
                let mut command = match std::env::var_os("CONNSCALE_WRAP") {
                    Some(wrap) => {
                        let mut c = Command::new(wrap);
                        c.arg(std::env::current_exe()?);
                        c
                    }
                    None => Command::new(std::env::current_exe()?),
                };
                let mut child = command
                    .arg("--serve-ours")
                    .arg(dir)
                    .arg("--broker-threads")
                    .arg(flags.broker_threads.to_string())
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()?;
                let stdout = child.stdout.take().ok_or("no stdout")?;
                let mut lines = BufReader::new(stdout).lines();
                let addr = loop {
                    // (a wrapper may print lines of its own first)
                    let line = lines
                        .next()
                        .ok_or("--serve-ours exited before listening")??;
                    if let Some(addr) = line.trim().strip_prefix("listening ") {
                        break addr.parse()?;
                    }
                };
                Ok(Server::Ours(child, addr))
            }
            Which::Mosquitto => {
                let read = |name: &str| std::fs::read_to_string(dir.join(name));
                Ok(Server::Mosquitto(Mosquitto::start(
                    &dir.join(format!("mosquitto-{round}")),
                    &read("ca.pem")?,
                    &read("server.pem")?,
                    &read("server.key")?,
                    FLEET_ACL,
                )?))
            }
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Server::Ours(_, addr) => *addr,
            Server::Mosquitto(m) => m.addr,
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Server::Ours(child, _) => child.id(),
            Server::Mosquitto(m) => m.pid(),
        }
    }

    /// Resident memory in KiB (`VmRSS` of `/proc/PID/status`).
    fn rss_kib(&self) -> Result<u64, Error> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| "no VmRSS in /proc/PID/status".into())
    }

    fn stop(self) {
        match self {
            Server::Ours(mut child, _) => {
                drop(child.stdin.take()); // ends the serve loop; it prints its counters
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            Server::Mosquitto(m) => drop(m),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Which {
    Ours,
    Mosquitto,
}

#[derive(Debug, Clone, Copy)]
struct Round {
    kib_per_device: f64,
    p50_ms: f64,
    p99_ms: f64,
    handshakes_per_s: f64,
    failed: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Opens every device's connection to `addr`, at most `concurrency` at once; returns the open
/// clients, the connect latencies, the failures and the wall time.
async fn connect_all(
    addr: SocketAddr,
    configs: &[Arc<rustls::ClientConfig>],
    flags: &Flags,
) -> (Vec<Client>, Vec<Duration>, usize, Duration) {
    let permits = Arc::new(Semaphore::new(flags.concurrency.max(1)));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(configs.len());
    for (i, tls) in configs.iter().enumerate() {
        let permits = permits.clone();
        let tls = tls.clone();
        let options = Options {
            version: ProtocolVersion::V5,
            keep_alive: flags.keep_alive,
            timeout: Duration::from_secs(30),
            ..Options::new(&thing(i))
        };
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let t = Instant::now();
            let c = Client::connect(addr, "localhost", tls, &options).await?;
            let elapsed = t.elapsed();
            if !client::accepted(&c.connack) {
                return Err::<_, Error>(
                    format!("{} refused: {:?}", options.client_id, c.connack.reason_code).into(),
                );
            }
            Ok((c, elapsed))
        }));
    }
    let mut clients = Vec::with_capacity(configs.len());
    let mut latencies = Vec::with_capacity(configs.len());
    let mut failed = 0;
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok((c, l))) => {
                clients.push(c);
                latencies.push(l);
            }
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let wall = start.elapsed();
    if let Some(e) = first_error {
        eprintln!("  {failed} connections failed; the first: {e}");
    }
    (clients, latencies, failed, wall)
}

fn round(
    which: Which,
    dir: &Path,
    r: usize,
    configs: &[Arc<rustls::ClientConfig>],
    client_rt: &tokio::runtime::Runtime,
    flags: &Flags,
) -> Result<Round, Error> {
    let server = Server::start(which, dir, r, flags)?;
    std::thread::sleep(Duration::from_secs(1));
    let before = server.rss_kib()?;
    let (clients, mut latencies, failed, wall) =
        client_rt.block_on(connect_all(server.addr(), configs, flags));
    std::thread::sleep(Duration::from_millis(flags.settle_ms));
    let after = server.rss_kib()?;
    // Close the connections before the broker, so neither broker spends the next round's
    // start on them.
    client_rt.block_on(async move { drop(clients) });
    server.stop();
    latencies.sort_unstable();
    let connected = latencies.len();
    Ok(Round {
        kib_per_device: (after as f64 - before as f64) / connected.max(1) as f64,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        handshakes_per_s: connected as f64 / wall.as_secs_f64().max(1e-9),
        failed,
    })
}

fn median(rounds: &[Round], f: impl Fn(&Round) -> f64) -> f64 {
    let mut v: Vec<f64> = rounds.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `median (min–max)` of one column.
fn spread(rounds: &[Round], f: impl Fn(&Round) -> f64, digits: usize) -> String {
    let v: Vec<f64> = rounds.iter().map(&f).collect();
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if rounds.len() > 1 {
        format!(
            "{:.digits$} ({min:.digits$}–{max:.digits$})",
            median(rounds, f)
        )
    } else {
        format!("{:.digits$}", median(rounds, f))
    }
}

fn mosquitto_version() -> String {
    Command::new("mosquitto")
        .arg("-h")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "mosquitto (version unknown)".into())
}

fn main() -> Result<(), Error> {
    let flags = Flags::parse();
    if let Some(dir) = &flags.serve_ours {
        return serve_ours(dir, flags.broker_threads);
    }

    // The fleet, once: CA, server certificate, one certificate per device, written to files that
    // both brokers read.
    let fleet = Fleet::new()?;
    let temp = tempfile::tempdir()?;
    let dir = temp.path();
    let ca = fleet.ca_pem();
    std::fs::write(dir.join("ca.pem"), &ca)?;
    std::fs::write(dir.join("server.pem"), &fleet.server_chain_pem)?;
    std::fs::write(dir.join("server.key"), &fleet.server_key_pem)?;
    let issued = Instant::now();
    let mut certs = String::new();
    let mut configs = Vec::with_capacity(flags.devices);
    for i in 0..flags.devices {
        let d = fleet.unregistered_device(&thing(i))?;
        certs.push_str(&d.cert_pem);
        configs.push(tls_config(&ca, &d.cert_pem, &d.key_pem)?);
    }
    std::fs::write(dir.join("devices.pem"), certs)?;
    eprintln!(
        "issued {} device certificates in {:.1} s",
        flags.devices,
        issued.elapsed().as_secs_f64()
    );

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(flags.client_threads)
        .enable_all()
        .build()?;
    let mut mine = Vec::new();
    let mut peer = Vec::new();
    for r in 0..flags.rounds {
        // Alternate which broker goes first, so drift in machine load hits both.
        let order = if r % 2 == 0 {
            [Which::Ours, Which::Mosquitto]
        } else {
            [Which::Mosquitto, Which::Ours]
        };
        for which in order {
            if which == Which::Mosquitto && flags.no_mosquitto {
                continue;
            }
            let res = round(which, dir, r, &configs, &client_rt, &flags)?;
            eprintln!("{which:?} round {r}: {res:?}");
            match which {
                Which::Ours => mine.push(res),
                Which::Mosquitto => peer.push(res),
            }
        }
    }

    println!(
        "\n{} idle devices, each its own client certificate (ECDSA P-256), MQTT 5 over TLS 1.3, \
         keep-alive {} s, {} connects in flight; thingkit broker on {} worker threads, policy and \
         metering on; {}; median (min–max) of {} rounds",
        flags.devices,
        flags.keep_alive,
        flags.concurrency,
        flags.broker_threads,
        mosquitto_version(),
        flags.rounds
    );
    println!(
        "\n| broker | KiB per idle device | connect p50 | connect p99 | handshakes/s | failed |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut rows = vec![("thingkit broker", &mine)];
    if !flags.no_mosquitto {
        rows.push(("mosquitto", &peer));
    }
    for (name, rounds) in &rows {
        println!(
            "| {name} | {} | {} ms | {} ms | {} | {} |",
            spread(rounds, |x| x.kib_per_device, 1),
            spread(rounds, |x| x.p50_ms, 1),
            spread(rounds, |x| x.p99_ms, 1),
            spread(rounds, |x| x.handshakes_per_s, 0),
            rounds.iter().map(|x| x.failed).sum::<usize>(),
        );
    }
    if !flags.no_mosquitto {
        let ratio = |f: &dyn Fn(&Round) -> f64| median(&mine, f) / median(&peer, f);
        println!(
            "| thingkit / mosquitto | {:.2}x | {:.2}x | {:.2}x | {:.2}x | |",
            ratio(&|x| x.kib_per_device),
            ratio(&|x| x.p50_ms),
            ratio(&|x| x.p99_ms),
            ratio(&|x| x.handshakes_per_s),
        );
    }
    Ok(())
}
