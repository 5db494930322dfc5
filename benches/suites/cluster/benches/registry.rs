//! Issue #20: the registry on PostgreSQL (`thingkit_cluster::PgRegistryStore`) against the
//! embedded redb store (`thingkit_provision::RedbStore`) at 1,000,000 things, in one run.
//!
//! The fleet is the provision suite's `registry_1m`: 1,000,000 things in ten region groups
//! under one fleet group (a policy on each group), each with its own certificate (copies of one
//! issued certificate with distinct serial numbers, registered without a CA, so building takes
//! no million signatures) attached as its exclusive principal, and a `device` policy on each
//! certificate. It is built once in memory (`MemoryStore`, `Registry::batch` of 10,000); the
//! resulting records are then loaded unchanged into both stores: into PostgreSQL with one binary
//! `COPY` into the store's table (created by `PgRegistryStore::open`, so the schema is the
//! store's own), into redb through `RegistryStore::commit` in chunks of 10,000 records. Then,
//! alternating the stores, twice:
//!
//! - **store scan**: one `RegistryStore::for_each` over every record, nothing decoded (the
//!   store's share of opening; on PostgreSQL pages of 1,000 records in key order);
//! - **open**: `Registry::open` over the store (the same scan, then every record decoded and
//!   indexed into the in-memory registry);
//! - **authenticate + effective policies**: `Registry::authenticate` of 4,096 certificates
//!   spread over the million (SHA-256 of the DER, lookups, status checks, the three effective
//!   policies); both read the in-memory registry, so the store should not matter;
//! - **one registration per commit**: `Registry::batch` of one thing + certificate + exclusive
//!   attachment (three records); per-commit p50 and p99 of 200;
//! - **1,000 registrations per commit**: ten commits of 1,000.
//!
//! PostgreSQL runs on this machine (`.ci/postgres`), so its commits pay a loopback round trip
//! per statement and the server's fsync; redb fsyncs its file. Nothing asserts timings.
//!
//! ```sh
//! .ci/postgres start
//! THINGKIT_TEST_POSTGRES=$(.ci/postgres url) \
//!   cargo bench --manifest-path benches/Cargo.toml -p thingkit-bench-cluster --bench registry
//! # CI: 10,000 things
//! ... --bench registry -- --short
//! ```
//!
//! Options after `--`: `--short` (10,000 things), `--things N`. Fails (exit status 1) when
//! `THINGKIT_TEST_POSTGRES` is unset or PostgreSQL is unreachable. The schema it creates
//! (`bench_registry_<pid>`) is dropped at the end.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use thingkit_bench_support::{SplitMix64, report};
use thingkit_cluster::{PgRegistryStore, PostgresConfig};
use thingkit_provision::{
    CaKeyType, CaOptions, CaStatus, CertificateAuthority, CertificateId, CertificateStatus,
    MemoryStore, PolicyTarget, RedbStore, Registry, RegistryLimits, RegistryStore, StoreOp,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iot:Connect","iot:Publish"],"Resource":["arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}","arn:aws:iot:us-east-1:123456789012:topic/t/${iot:Connection.Thing.ThingName}/*"]}]}"#;
const REGIONS: u64 = 10;
const BATCH: u64 = 10_000;
const PEERS: usize = 4096;
const ROUNDS: usize = 2;
const SINGLE_COMMITS: usize = 200;
const BULK_COMMITS: usize = 10;
const BULK: u64 = 1_000;

fn with_serial(template: &[u8], at: usize, i: u64) -> Vec<u8> {
    let mut der = template.to_vec();
    let serial = &mut der[at..at + 20];
    serial.fill(0x5a);
    serial[0] = 0x40;
    serial[12..20].copy_from_slice(&i.to_be_bytes());
    der
}

struct Fleet {
    /// Every record of the built registry.
    records: Vec<(String, Vec<u8>)>,
    template: Vec<u8>,
    at: usize,
    peers: Vec<Vec<u8>>,
}

fn build(things: u64) -> Result<Fleet, Error> {
    let now = SystemTime::now();
    let ca = CertificateAuthority::create_root(&CaOptions::default(), now)?;
    let template = ca
        .create_keys_and_certificate("device", CaKeyType::P256, now)?
        .certificate;
    let at = template
        .der
        .windows(20)
        .position(|w| w == template.serial.as_slice())
        .ok_or("serial not found in the certificate's DER")?;
    let store = MemoryStore::new();
    let mut registry = Registry::open(store.clone(), RegistryLimits::default())?;
    registry.register_ca_certificate(ca.certificate_der(), CaStatus::Active, false)?;
    registry.create_policy("fleet", POLICY, now)?;
    registry.create_policy("device", POLICY, now)?;
    registry.create_thing_group("fleet", None)?;
    registry.attach_policy("fleet", &PolicyTarget::ThingGroup("fleet".into()))?;
    for r in 0..REGIONS {
        let name = format!("region-{r}");
        registry.create_policy(&name, POLICY, now)?;
        registry.create_thing_group(&name, Some("fleet"))?;
        registry.attach_policy(&name, &PolicyTarget::ThingGroup(name.clone()))?;
    }
    let started = Instant::now();
    let mut next = 0;
    while next < things {
        let end = (next + BATCH).min(things);
        registry.batch(|r| {
            for i in next..end {
                let thing = format!("thing-{i}");
                r.create_thing(&thing, None, &[])?;
                r.add_thing_to_group(&thing, &format!("region-{}", i % REGIONS))?;
                let id = r.register_certificate_without_ca(
                    &with_serial(&template.der, at, i),
                    CertificateStatus::Active,
                    now,
                )?;
                r.attach_thing_principal(&thing, &id, true)?;
                r.attach_policy("device", &PolicyTarget::Certificate(id))?;
            }
            Ok(())
        })?;
        next = end;
    }
    eprintln!(
        "built {} things in memory in {:.1?}",
        registry.thing_count(),
        started.elapsed()
    );
    drop(registry);
    let mut records = Vec::with_capacity(store.len());
    store.for_each(&mut |k, v| {
        records.push((k.to_owned(), v.to_vec()));
        Ok(())
    })?;
    let mut rng = SplitMix64(0x2020_0001);
    let peers = (0..PEERS)
        .map(|_| with_serial(&template.der, at, rng.below(things)))
        .collect();
    Ok(Fleet {
        records,
        template: template.der,
        at,
        peers,
    })
}

/// Loads the records into the PostgreSQL store's table with one binary COPY.
fn load_postgres(config: &PostgresConfig, records: &[(String, Vec<u8>)]) -> Result<(), Error> {
    use postgres::binary_copy::BinaryCopyInWriter;
    use postgres::types::Type;
    // Creates the schema and the table (the store's migrations).
    drop(PgRegistryStore::open(config)?);
    let mut client = postgres::Client::connect(&config.url, postgres::NoTls)?;
    let mut tx = client.transaction()?;
    let sink = tx.copy_in(&format!(
        "COPY \"{}\".registry (key, value) FROM STDIN (FORMAT binary)",
        config.schema
    ))?;
    let mut writer = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::BYTEA]);
    for (k, v) in records {
        writer.write(&[k, v])?;
    }
    writer.finish()?;
    tx.commit()?;
    client.execute(&format!("ANALYZE \"{}\".registry", config.schema), &[])?;
    Ok(())
}

fn load_redb(path: &std::path::Path, records: &[(String, Vec<u8>)]) -> Result<(), Error> {
    let mut store = RedbStore::open(path)?;
    for chunk in records.chunks(BATCH as usize) {
        let ops: Vec<StoreOp> = chunk
            .iter()
            .map(|(k, v)| StoreOp::Put {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        store.commit(&ops)?;
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Postgres,
    Redb,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Postgres => "PgRegistryStore (PostgreSQL 15, loopback)",
            Kind::Redb => "RedbStore (embedded)",
        }
    }
}

/// One round of one store's measurements.
struct Row {
    kind: Kind,
    scan: Duration,
    open: Duration,
    auth_ns: f64,
    single_p50: Duration,
    single_p99: Duration,
    bulk_median: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn measure<S: RegistryStore>(
    kind: Kind,
    open: impl FnOnce() -> Result<S, Error>,
    fleet: &Fleet,
    things: u64,
    next: &mut u64,
) -> Result<Row, Error> {
    let store = open()?;
    // The store's own part of opening: one pass over every record, nothing decoded.
    let started = Instant::now();
    let mut bytes = 0usize;
    store.for_each(&mut |k, v| {
        bytes += k.len() + v.len();
        Ok(())
    })?;
    let scan = started.elapsed();
    black_box(bytes);
    let started = Instant::now();
    let mut registry = Registry::open(store, RegistryLimits::default())?;
    let open_time = started.elapsed();
    if (registry.thing_count() as u64) < things {
        return Err(format!("{} things after open, not {things}", registry.thing_count()).into());
    }
    // authenticate + effective policies, in memory on both.
    let now = SystemTime::now();
    let identity = registry.authenticate(&[fleet.peers[0].as_slice()], now)?;
    if identity.policies.len() != 3 {
        return Err(format!("{} effective policies, not 3", identity.policies.len()).into());
    }
    let passes = 50;
    let t = Instant::now();
    for _ in 0..passes {
        for peer in &fleet.peers {
            black_box(registry.authenticate(&[peer.as_slice()], now)?);
        }
    }
    let auth_ns = t.elapsed().as_nanos() as f64 / (passes * fleet.peers.len()) as f64;
    // Registrations: numbered after the fleet, fresh in every round.
    let register = |r: &mut Registry<S>, i: u64| -> thingkit_provision::Result<()> {
        let thing = format!("new-{i}");
        r.create_thing(&thing, None, &[])?;
        let id: CertificateId = r.register_certificate_without_ca(
            &with_serial(&fleet.template, fleet.at, (1 << 40) + i),
            CertificateStatus::Active,
            now,
        )?;
        r.attach_thing_principal(&thing, &id, true)
    };
    let mut single = Vec::with_capacity(SINGLE_COMMITS);
    for _ in 0..SINGLE_COMMITS {
        let i = *next;
        *next += 1;
        let t = Instant::now();
        registry.batch(|r| register(r, i))?;
        single.push(t.elapsed());
    }
    single.sort();
    let mut bulk = Vec::with_capacity(BULK_COMMITS);
    for _ in 0..BULK_COMMITS {
        let from = *next;
        *next += BULK;
        let t = Instant::now();
        registry.batch(|r| (from..from + BULK).try_for_each(|i| register(r, i)))?;
        bulk.push(t.elapsed());
    }
    bulk.sort();
    Ok(Row {
        kind,
        scan,
        open: open_time,
        auth_ns,
        single_p50: percentile(&single, 0.5),
        single_p99: percentile(&single, 0.99),
        bulk_median: percentile(&bulk, 0.5),
    })
}

fn main() -> ExitCode {
    match main_inner() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster registry bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main_inner() -> Result<(), Error> {
    let mut things: u64 = 1_000_000;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--bench" => {}
            "--short" => things = 10_000,
            "--things" => things = it.next().ok_or("--things needs a number")?.parse()?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let url = std::env::var("THINGKIT_TEST_POSTGRES").map_err(|_| {
        "THINGKIT_TEST_POSTGRES is not set: run `.ci/postgres start` and export THINGKIT_TEST_POSTGRES=$(.ci/postgres url)"
    })?;
    let mut config =
        PostgresConfig::new(url).with_schema(format!("bench_registry_{}", std::process::id()));
    // Opening a million records reads 1,000 pages; each call has its own timeout.
    config.call_timeout = Duration::from_secs(120);
    config.statement_timeout = Duration::from_secs(120);
    let machine = report::machine();
    let date = report::date(&["-u", "+%Y-%m-%d %H:%M UTC"]);
    let load = report::load_average();

    // Fail before the build when PostgreSQL is not there.
    postgres::Client::connect(&config.url, postgres::NoTls)
        .map_err(|e| format!("PostgreSQL at {}: {e}", config.url))?;
    let fleet = build(things)?;
    let dir = tempfile::tempdir()?;
    let redb_path = dir.path().join("registry.redb");
    let t = Instant::now();
    load_postgres(&config, &fleet.records)?;
    eprintln!(
        "{} records into PostgreSQL (binary COPY) in {:.1?}",
        fleet.records.len(),
        t.elapsed()
    );
    let t = Instant::now();
    load_redb(&redb_path, &fleet.records)?;
    eprintln!(
        "{} records into redb (commits of {BATCH}) in {:.1?}",
        fleet.records.len(),
        t.elapsed()
    );
    let records = fleet.records.len();

    let mut rows = Vec::new();
    let (mut next_pg, mut next_redb) = (0u64, 1u64 << 30);
    for round in 0..ROUNDS {
        let order = if round % 2 == 0 {
            [Kind::Postgres, Kind::Redb]
        } else {
            [Kind::Redb, Kind::Postgres]
        };
        for kind in order {
            eprintln!("round {round}: {} ...", kind.name());
            let row = match kind {
                Kind::Postgres => measure(
                    kind,
                    || Ok(PgRegistryStore::open(&config)?),
                    &fleet,
                    things,
                    &mut next_pg,
                )?,
                Kind::Redb => measure(
                    kind,
                    || Ok(RedbStore::open(&redb_path)?),
                    &fleet,
                    things,
                    &mut next_redb,
                )?,
            };
            rows.push(row);
        }
    }
    // The schema goes; the redb file goes with the temporary directory.
    let mut client = postgres::Client::connect(&config.url, postgres::NoTls)?;
    client.batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", config.schema))?;

    println!();
    println!(
        "## cluster registry: {machine}, {date}, load average {load}; {things} things ({records} records), 2 rounds, stores alternating"
    );
    println!();
    println!(
        "| machine | date | store | things | store scan (for_each) | Registry::open | authenticate + effective policies | 1 registration per commit p50 / p99 | 1,000 registrations per commit (median) | registrations/s at 1,000 per commit |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {machine} | {date} | {} | {things} | {:.2} s | {:.2} s | {:.0} ns | {:.2} / {:.2} ms | {:.1} ms | {:.0} |",
            r.kind.name(),
            r.scan.as_secs_f64(),
            r.open.as_secs_f64(),
            r.auth_ns,
            r.single_p50.as_secs_f64() * 1e3,
            r.single_p99.as_secs_f64() * 1e3,
            r.bulk_median.as_secs_f64() * 1e3,
            BULK as f64 / r.bulk_median.as_secs_f64(),
        );
    }
    Ok(())
}
