//! The thingkit quick start: the main job of the workspace, end to end, with no external services.
//!
//! A CA is created in a temp dir; a thing type, things and policies are registered; one device is
//! provisioned from its own CSR, one by fleet provisioning with a claim certificate over MQTT, and
//! the others with CreateKeysAndCertificate; the thingkit broker
//! starts on an ephemeral loopback port; the devices connect over mutual TLS with a client written
//! on `thingkit-mqtt` + rustls and publish temperature readings; a forbidden publish is denied with
//! its explanation; a chatty device is throttled; a revoked device is refused; a signed firmware
//! manifest is rolled out and each device stream-verifies its image while a replayed older
//! manifest is refused. Two AWS IoT topic rules run inside the broker: one writes every reading
//! through the CSV and Parquet sinks (`iot_data.csv`, `telemetry/date=.../*.parquet`), the other
//! answers "readings above 25 °C per device" as a windowed rule (`hot_per_device.jsonl`). It ends
//! with a fleet report; `examples/spark/hot_readings.py` runs the reference Spark job on the files.
//!
//! Run it with `cargo run --example quickstart [-- --out DIR]` (default `target/quickstart`).

#[path = "support/client.rs"]
mod client;
#[path = "support/fleet.rs"]
mod fleet;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use client::{Client, Options, accepted, tls_config};
use fleet::{Device, Fleet};
use thingkit::broker::rules::{RulesConfig, RulesEngine};
use thingkit::broker::{
    Broker, BrokerConfig, FIRMWARE_TOPIC_PREFIX, FIRMWARE_TOPIC_SUFFIX, ServerIdentity,
};
use thingkit::firmware::{
    EnvelopeBuilder, KeyType, ManifestBuilder, SigningKey, TargetDevice, TrustAnchors,
    UpdateMachine, UpdateState, Uuid, Verifier,
};
use thingkit::meter::Granularity;
use thingkit::meter::MeteringPolicy;
use thingkit::meter::{BillingRun, PriceTable};
use thingkit::meter::{LimitAction, LimitReason, Rate, RateLimits};
use thingkit::mqtt::{ProtocolVersion, QoS, ReasonCode};
use thingkit::provision::CertificateStatus;
use thingkit::rules::topic_rule::TopicRulePayload;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Firmware sequence numbers with a known vulnerability.
const VULNERABLE: &[u64] = &[1];
const READINGS: usize = 12;

/// One device of the demo: credentials and installed firmware.
struct Sensor {
    device: Device,
    firmware: u64,
}

/// The outcomes the quick start claims, each checked where it is printed: CI runs the quick start,
/// so a regression in any step fails it instead of printing a wrong line.
#[derive(Default)]
struct Claims(Vec<String>);

impl Claims {
    /// Records `claim` as broken unless `holds`.
    fn check(&mut self, holds: bool, claim: impl Into<String>) {
        if !holds {
            let claim = claim.into();
            eprintln!("CLAIM FAILED: {claim}");
            self.0.push(claim);
        }
    }
}

/// A device key and CSR made on the "device" (rcgen), so the CA only ever sees the CSR.
fn device_csr(thing: &str) -> Result<(Vec<u8>, String), Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, thing);
    let csr = params.serialize_request(&key)?;
    Ok((csr.der().to_vec(), key.serialize_pem()))
}

/// The telemetry rule: every reading, through the CSV sink (the file the Spark job reads) and
/// the Parquet sink (partitioned by date).
const TELEMETRY_RULE: &str = r#"{
  "sql": "SELECT topic(2) AS device_id, temperature, timestamp FROM 'telemetry/+/temperature'",
  "awsIotSqlVersion": "2016-03-23",
  "actions": [
    {"file": {"path": "iot_data.csv", "format": "csv", "columns": [
      {"name": "device_id", "type": "string"}, {"name": "temperature", "type": "double"},
      {"name": "timestamp", "type": "int64"}]}},
    {"file": {"path": "telemetry", "format": "parquet", "partitionByDate": true, "columns": [
      {"name": "device_id", "type": "string"}, {"name": "temperature", "type": "double"},
      {"name": "timestamp", "type": "int64"}]}}
  ]
}"#;

/// The analytics question as a rule: readings above 25 °C per device, counted in one-day
/// windows of arrival time (thingkit's GROUP BY extension), written when the window closes or
/// the broker shuts down. (The readings' own `timestamp`s are a year in the past, so an
/// event-time window — `TIMESTAMP BY timestamp * 1000` — would be closed on arrival.)
const HOT_RULE: &str = r#"{
  "sql": "SELECT topic(2) AS device_id, count(*) AS hot FROM 'telemetry/+/temperature' WHERE temperature > 25 GROUP BY topic(2), TUMBLINGWINDOW(dd, 1)",
  "awsIotSqlVersion": "2016-03-23",
  "actions": [{"file": {"path": "hot_per_device.jsonl", "format": "jsonl"}}]
}"#;

/// The Parquet files below `dir` (one level of `date=...` partitions).
fn parquet_files(dir: &std::path::Path) -> Result<Vec<PathBuf>, Error> {
    let mut files = Vec::new();
    for partition in std::fs::read_dir(dir)? {
        for file in std::fs::read_dir(partition?.path())? {
            let path = file?.path();
            if path.extension().is_some_and(|e| e == "parquet") {
                files.push(path);
            }
        }
    }
    Ok(files)
}

/// Deterministic "temperature" for reading `i` of device `d`: a few devices run hot.
fn temperature(d: usize, i: usize) -> f64 {
    let base = 20.0 + d as f64 * 1.5;
    let wave = ((i * 7 + d * 3) % 11) as f64 * 0.5;
    ((base + wave) * 10.0).round() / 10.0
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let started = Instant::now();
    let mut args = std::env::args().skip(1);
    let mut out_dir = PathBuf::from("target/quickstart");
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--out", Some(dir)) => out_dir = PathBuf::from(dir),
            _ => return Err("usage: quickstart [--out DIR]".into()),
        }
    }
    let mut claims = Claims::default();
    // The rules' sinks append: start from empty outputs so the Spark job reads this run only.
    std::fs::create_dir_all(&out_dir)?;
    for name in ["iot_data.csv", "hot_per_device.jsonl"] {
        match std::fs::remove_file(out_dir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    match std::fs::remove_dir_all(out_dir.join("telemetry")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    println!("thingkit quick start");
    println!("====================");

    // 1. A CA in a temp dir, a registry with a thing type, a group and policies.
    let temp = tempfile::tempdir()?;
    let fleet = Fleet::new()?;
    std::fs::write(temp.path().join("ca.pem"), fleet.ca.certificate_pem())?;
    std::fs::write(temp.path().join("ca.key"), fleet.ca.private_key_pem())?;
    println!(
        "1. CA created in {} (certificate ID {}); thing type `sensor`, group `fleet`, policies `fleet` and `operator` registered",
        temp.path().display(),
        &fleet.ca.id().to_string()[..16]
    );

    // 2. Devices: one from its own CSR, four with CreateKeysAndCertificate, one to be revoked.
    let (csr, key_pem) = device_csr("sensor-00")?;
    let issued = fleet.ca.issue(&csr, std::time::SystemTime::now())?;
    let cert_pem = issued.pem();
    let id = fleet.register("sensor-00", &cert_pem, &[("account", "acme")])?;
    let mut sensors = vec![Sensor {
        device: Device {
            thing: "sensor-00".into(),
            certificate_id: id,
            cert_pem,
            key_pem,
        },
        firmware: 1,
    }];
    for (i, account) in [(1, "acme"), (2, "acme"), (3, "globex"), (4, "globex")] {
        let thing = format!("sensor-{i:02}");
        sensors.push(Sensor {
            device: fleet.add_device(&thing, &[("account", account)])?,
            firmware: if i == 1 { 1 } else { 2 },
        });
    }
    let revoked = fleet.add_device("sensor-99", &[("account", "globex")])?;
    fleet.set_status(&revoked.certificate_id, CertificateStatus::Revoked)?;
    let operator = fleet.add_operator()?;
    let (provisioning, claim) = fleet.enable_provisioning()?;
    println!(
        "2. provisioned sensor-00 from its CSR (the CA never saw its key) and sensor-01..04 with CreateKeysAndCertificate; sensor-99 is REVOKED"
    );

    // 3. The broker on an ephemeral loopback port, with firmware trust and tight rate limits.
    let release_key = SigningKey::generate(KeyType::P256)?;
    let anchors = TrustAnchors::single(release_key.public_key().clone());
    let config = BrokerConfig::default()
        .with_connection_limits(
            RateLimits::default()
                .with_messages(Some(Rate {
                    amount: 20,
                    period_ms: 1000,
                    burst: 20,
                }))
                .with_bytes(None)
                .with_message_action(LimitAction::Reject(LimitReason::QuotaExceeded))
                .with_byte_action(LimitAction::Drop),
        )
        .with_firmware_trust(Some(anchors.clone()))
        .with_fleet(Some(provisioning));
    let mut rules_config = RulesConfig::default();
    rules_config.base_dir = out_dir.clone();
    let rules = RulesEngine::new(rules_config);
    for (name, payload) in [("telemetry", TELEMETRY_RULE), ("hot_per_device", HOT_RULE)] {
        let payload: TopicRulePayload = serde_json::from_str(payload)?;
        rules.upsert(name, &payload)?;
    }
    let broker = Broker::builder(
        fleet.registry.clone(),
        ServerIdentity::from_pem(fleet.server_chain_pem.clone(), fleet.server_key_pem.clone()),
    )
    .config(config)
    .rules(rules.clone())
    .bind("127.0.0.1:0".parse()?)
    .await?;
    let addr = broker.local_addr();
    println!(
        "3. broker listening on {addr} (MQTT 3.1.1 + 5.0, mutual TLS), with the topic rules `telemetry` (CSV and Parquet sinks) and `hot_per_device` (a windowed count)"
    );

    let ca_pem = fleet.ca_pem();
    let connect = |device: &Device, version: ProtocolVersion| {
        let tls = tls_config(&ca_pem, &device.cert_pem, &device.key_pem);
        let options = Options {
            version,
            ..Options::new(&device.thing)
        };
        async move { Client::connect(addr, "localhost", tls?, &options).await }
    };

    // The operator collects telemetry (and reads device status).
    let mut sink = connect(&operator, ProtocolVersion::V5).await?;
    sink.subscribe(&[("telemetry/+/temperature", QoS::AtLeastOnce)])
        .await?;

    // Fleet provisioning by claim: a device holding only the shared claim certificate sends
    // its CSR (CreateCertificateFromCsr), then registers itself with the `sensor` template
    // (RegisterThing) using the certificate ownership token.
    let (csr, key_pem) = device_csr("sensor-05")?;
    let csr_pem = thingkit::provision::encode_pem("CERTIFICATE REQUEST", &csr);
    let mut claimant = connect(&claim, ProtocolVersion::V5).await?;
    claimant
        .subscribe(&[
            ("$aws/certificates/create-from-csr/json/+", QoS::AtLeastOnce),
            (
                "$aws/provisioning-templates/sensor/provision/json/+",
                QoS::AtLeastOnce,
            ),
        ])
        .await?;
    let mut ask =
        async |topic: &str, body: serde_json::Value| -> Result<serde_json::Value, Error> {
            claimant.publish_qos1(topic, body.to_string()).await?;
            let reply = claimant.next_publish().await?.ok_or("connection closed")?;
            let answer: serde_json::Value = serde_json::from_slice(&reply.payload)?;
            match reply.topic.as_ref().map(|t| t.as_str()) {
                Some(t) if t.ends_with("/accepted") => Ok(answer),
                _ => Err(format!("{topic} rejected: {answer}").into()),
            }
        };
    let created = ask(
        "$aws/certificates/create-from-csr/json",
        serde_json::json!({ "certificateSigningRequest": csr_pem }),
    )
    .await?;
    let registered = ask(
        "$aws/provisioning-templates/sensor/provision/json",
        serde_json::json!({
            "certificateOwnershipToken": created["certificateOwnershipToken"],
            "parameters": {"SerialNumber": "05", "Account": "globex"}
        }),
    )
    .await?;
    claimant.disconnect().await?;
    let thing = registered["thingName"].as_str().ok_or("no thingName")?;
    let certificate_id = created["certificateId"]
        .as_str()
        .ok_or("no certificateId")?;
    println!(
        "   sensor-05 provisioned by claim over MQTT: CreateCertificateFromCsr -> certificate {}..., RegisterThing(template `sensor`) -> thing {thing}, device configuration {}",
        &certificate_id[..16],
        registered["deviceConfiguration"]
    );
    sensors.push(Sensor {
        device: Device {
            thing: thing.to_string(),
            certificate_id: certificate_id.parse()?,
            cert_pem: created["certificatePem"]
                .as_str()
                .ok_or("no certificatePem")?
                .to_string(),
            key_pem,
        },
        firmware: 2,
    });

    // 4. Devices connect and publish readings, alternating protocol versions.
    let connect_started = Instant::now();
    let mut attempts = 0;
    let mut connected = Vec::new();
    for (d, s) in sensors.iter().enumerate() {
        let version = if d % 2 == 0 {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V311
        };
        attempts += 1;
        let c = connect(&s.device, version).await?;
        if !accepted(&c.connack) {
            return Err(format!("{} refused: {:?}", s.device.thing, c.connack.reason_code).into());
        }
        connected.push(c);
    }
    attempts += 1;
    let refused = connect(&revoked, ProtocolVersion::V5).await?;
    let connect_secs = connect_started.elapsed().as_secs_f64();
    println!(
        "4. {} devices connected over mTLS; revoked sensor-99 refused with CONNACK 0x{:02x} ({})",
        connected.len(),
        refused.connack.reason_code.0,
        refused
            .connack
            .reason_code
            .name(thingkit::mqtt::PacketType::ConnAck)
    );
    claims.check(
        !accepted(&refused.connack) && refused.connack.reason_code == ReasonCode::NOT_AUTHORIZED,
        format!(
            "revoked sensor-99 is refused with CONNACK 0x87 (got 0x{:02x})",
            refused.connack.reason_code.0
        ),
    );
    let t0 = 1_764_115_200u64; // 2025-11-26T00:00:00Z
    let mut published = 0;
    for (d, (s, c)) in sensors.iter().zip(connected.iter_mut()).enumerate() {
        for i in 0..READINGS {
            let payload = format!(
                r#"{{"device_id":"{}","temperature":{},"timestamp":{}}}"#,
                s.device.thing,
                temperature(d, i),
                t0 + (i as u64) * 60
            );
            let topic = format!("telemetry/{}/temperature", s.device.thing);
            let code = c.publish(&topic, payload, QoS::AtLeastOnce, false).await?;
            if code.is_some_and(|c| c.is_success()) {
                published += 1;
            }
        }
    }
    println!("   {published} temperature readings published at QoS 1 ({READINGS} per device)");
    claims.check(
        published == sensors.len() * READINGS,
        format!(
            "every reading is accepted: {published} of {}",
            sensors.len() * READINGS
        ),
    );

    // 5. A forbidden publish: denied, with the policy's explanation.
    let ack = connected[0]
        .publish_qos1("commands/sensor-00/reboot", "now")
        .await?;
    println!(
        "5. sensor-00 publishing to commands/sensor-00/reboot: PUBACK 0x{:02x} {}\n   explanation: {}",
        ack.reason_code.0,
        ack.reason_code.name(thingkit::mqtt::PacketType::PubAck),
        ack.properties
            .reason_string
            .as_ref()
            .map_or("-", |r| r.as_str())
    );
    claims.check(
        ack.reason_code == ReasonCode::NOT_AUTHORIZED && ack.properties.reason_string.is_some(),
        format!(
            "the forbidden publish is denied with PUBACK 0x87 and an explanation (got 0x{:02x})",
            ack.reason_code.0
        ),
    );

    // 6. A device over its rate (20 publishes/s, burst 20) is throttled.
    let (mut ok, mut throttled, mut other) = (0, 0, Vec::new());
    for i in 0..40 {
        let ack = connected[4]
            .publish_qos1("telemetry/sensor-04/debug", format!("spam {i}"))
            .await?;
        if ack.reason_code.is_success() {
            ok += 1;
        } else if ack.reason_code == ReasonCode::QUOTA_EXCEEDED {
            throttled += 1;
        } else {
            other.push(ack.reason_code.0);
        }
    }
    println!(
        "6. sensor-04 sent 40 publishes at once: {ok} accepted, {throttled} refused with PUBACK 0x{:02x} (Quota exceeded: the per-connection rate limit)",
        ReasonCode::QUOTA_EXCEEDED.0
    );
    claims.check(
        ok > 0 && throttled > 0 && other.is_empty(),
        format!(
            "the burst is partly accepted and the rest refused with 0x97 ({ok} accepted, {throttled} throttled, other codes {other:02x?})"
        ),
    );

    // 7. Firmware: the operator signs release 3 and publishes it on each thing's job topic; each
    //    device verifies it and stream-verifies the image; a replayed release 2 is refused.
    let vendor: Uuid = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe".parse()?;
    let class: Uuid = "1492af14-2569-5e48-bf42-9b2d51f2ab45".parse()?;
    let image_v2: Vec<u8> = (0..150_000u32).map(|i| (i % 249) as u8).collect();
    let image_v3: Vec<u8> = (0..180_000u32).map(|i| (i % 251) as u8).collect();
    let release = |seq: u64, image: &[u8]| -> Result<Vec<u8>, Error> {
        let manifest = ManifestBuilder::new(seq)
            .vendor_id(vendor)
            .class_id(class)
            .image(image)
            .uri(format!("https://updates.example/fw-{seq}.bin"))
            .build()?;
        Ok(EnvelopeBuilder::new(manifest).sign(&[&release_key])?)
    };
    let envelope_v2 = release(2, &image_v2)?;
    let envelope_v3 = release(3, &image_v3)?;
    let vulnerable_before = sensors
        .iter()
        .filter(|s| VULNERABLE.contains(&s.firmware))
        .count();
    // The operator's one connection (its policy allows client ID `operator` only; a second
    // connection would take the session over) also publishes the jobs.
    let op = &mut sink;
    let job_topic = |thing: &str| format!("{FIRMWARE_TOPIC_PREFIX}{thing}{FIRMWARE_TOPIC_SUFFIX}");
    let bogus = op
        .publish_qos1(&job_topic("sensor-00"), &b"not a SUIT envelope"[..])
        .await?;
    println!(
        "7. a malformed firmware job is refused by the broker: PUBACK 0x{:02x}",
        bogus.reason_code.0
    );
    claims.check(
        bogus.reason_code == ReasonCode::PAYLOAD_FORMAT_INVALID,
        format!(
            "the malformed firmware job is refused with PUBACK 0x99 (got 0x{:02x})",
            bogus.reason_code.0
        ),
    );
    for s in &sensors {
        op.publish_qos1(&job_topic(&s.device.thing), envelope_v3.clone())
            .await?;
    }
    let verifier = Verifier::new(anchors);
    let identity = TargetDevice {
        vendor_id: vendor,
        class_id: class,
        max_image_size: 1 << 20,
    };
    for (s, c) in sensors.iter_mut().zip(connected.iter_mut()) {
        let codes = c
            .subscribe(&[(&job_topic(&s.device.thing), QoS::AtLeastOnce)])
            .await?;
        if codes != [ReasonCode(1)] {
            return Err(format!(
                "{}: firmware subscription refused {codes:?}",
                s.device.thing
            )
            .into());
        }
        let job = loop {
            let p = c.next_publish().await?.ok_or("connection closed")?;
            if p.topic
                .as_ref()
                .is_some_and(|t| t.as_str().ends_with(FIRMWARE_TOPIC_SUFFIX))
            {
                break p;
            }
        };
        let verified = verifier.verify(&job.payload)?;
        let mut machine = UpdateMachine::new(UpdateState::new(s.firmware), identity);
        let mut stream = machine.begin(&verified)?;
        for chunk in image_v3.chunks(16 * 1024) {
            stream.update(chunk)?; // as it "downloads", in constant memory
        }
        machine.downloaded(&stream.finish()?)?;
        machine.installed()?;
        machine.boot();
        machine.confirm()?;
        s.firmware = machine.state().min_sequence;
        // The replay: release 2 again (validly signed, but older).
        let replay = verifier.verify(&envelope_v2)?;
        if machine.begin(&replay).is_ok() {
            return Err("a replayed older manifest was accepted".into());
        }
    }
    let replay_err = {
        let mut m = UpdateMachine::new(UpdateState::new(3), identity);
        m.begin(&verifier.verify(&envelope_v2)?)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    println!(
        "   every device verified release 3 (signature, vendor/class, sequence) and stream-verified its {} KiB image; release 2 replayed: refused ({replay_err})",
        image_v3.len() / 1024
    );
    claims.check(
        sensors.iter().all(|s| s.firmware == 3) && !replay_err.is_empty(),
        "every device runs release 3 and the replayed release 2 is refused",
    );
    let vulnerable_after = sensors
        .iter()
        .filter(|s| VULNERABLE.contains(&s.firmware))
        .count();

    // 8. Disconnect everyone; collect the telemetry the operator received.
    for c in connected {
        c.disconnect().await?;
    }
    let mut readings: Vec<(String, f64, u64)> = Vec::new();
    while readings.len() < published {
        let p = sink.next_publish().await?.ok_or("sink closed")?;
        let v: serde_json::Value = serde_json::from_slice(&p.payload)?;
        readings.push((
            v["device_id"].as_str().unwrap_or_default().to_string(),
            v["temperature"].as_f64().unwrap_or(f64::NAN),
            v["timestamp"].as_u64().unwrap_or(0),
        ));
    }
    sink.disconnect().await?;
    let stats = broker.stats();
    let totals = broker.shutdown(Duration::from_secs(5)).await;

    // 9. The fleet report.
    println!("\nfleet report");
    println!("------------");
    println!(
        "device connection rate: {} of {attempts} attempts accepted ({:.0} %), {:.0} connects/s",
        sensors.len(),
        100.0 * sensors.len() as f64 / attempts as f64,
        attempts as f64 / connect_secs.max(1e-9)
    );
    println!(
        "devices on vulnerable firmware: {:.0} % before the rollout, {:.0} % after",
        100.0 * vulnerable_before as f64 / sensors.len() as f64,
        100.0 * vulnerable_after as f64 / sensors.len() as f64
    );
    claims.check(
        vulnerable_before > 0 && vulnerable_after == 0,
        format!(
            "the rollout leaves no device on vulnerable firmware ({vulnerable_before} before, {vulnerable_after} after)"
        ),
    );
    println!(
        "broker: {} publishes in, {} deliveries, {} denied by policy, {} throttled",
        stats.publishes_in, stats.deliveries, stats.denied, stats.throttled
    );
    claims.check(
        stats.denied >= 1 && stats.throttled == throttled as u64,
        format!(
            "the broker counts the denial and the {throttled} throttled publishes (denied {}, throttled {})",
            stats.denied, stats.throttled
        ),
    );
    // Usage per account from the broker's meter (AWS metering, daily windows), priced with the
    // AWS us-east-1 table straight from the aggregated totals.
    let mut per_account: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (key, counts) in &totals {
        let entry = per_account.entry(key.account.clone()).or_default();
        entry.0 += counts.messages;
        entry.1 += counts.units;
    }
    let mut run = BillingRun::new(PriceTable::preset("aws-us-east-1")?);
    run.add_totals(&totals, &MeteringPolicy::aws(), Granularity::Day)?;
    println!("usage and bill per account (AWS us-east-1 prices):");
    let bills = run.bills()?;
    claims.check(
        ["acme", "globex"]
            .iter()
            .all(|a| per_account.contains_key(*a))
            && per_account
                .keys()
                .all(|a| bills.iter().any(|b| &b.account == a)),
        format!(
            "usage for the device accounts acme and globex, and a bill for every account with usage (usage for {:?})",
            per_account.keys().collect::<Vec<_>>()
        ),
    );
    for (account, (messages, units)) in &per_account {
        let total = bills
            .iter()
            .find(|b| &b.account == account)
            .map_or("0".to_string(), |b| format!("{} {}", b.total, b.currency));
        println!("  {account:8} {messages:5} messages  {units:5} billable units  bill {total}");
    }
    let mut per_device: BTreeMap<&str, usize> = BTreeMap::new();
    for (device, _, _) in &readings {
        *per_device.entry(device.as_str()).or_default() += 1;
    }
    let mut expected_hot: BTreeMap<String, u64> = BTreeMap::new();
    for (d, s) in sensors.iter().enumerate() {
        let n = (0..READINGS).filter(|&i| temperature(d, i) > 25.0).count();
        if n > 0 {
            expected_hot.insert(s.device.thing.clone(), n as u64);
        }
    }
    claims.check(
        readings.len() == published
            && per_device.len() == sensors.len()
            && per_device.values().all(|&n| n == READINGS),
        format!("the operator received every reading, {READINGS} per device (got {per_device:?})"),
    );

    // 10. The rules' answers: the broker's shutdown closed the window and the sinks.
    let hot_file = out_dir.join("hot_per_device.jsonl");
    let mut hot: BTreeMap<String, u64> = BTreeMap::new();
    for line in std::fs::read_to_string(&hot_file)?.lines() {
        let row: serde_json::Value = serde_json::from_str(line)?;
        let device = row["device_id"].as_str().ok_or("a row without device_id")?;
        *hot.entry(device.to_string()).or_default() += row["hot"].as_u64().unwrap_or(0);
    }
    claims.check(
        hot == expected_hot,
        format!(
            "readings above 25 °C per device are {expected_hot:?} (the windowed rule wrote {hot:?})"
        ),
    );
    println!(
        "readings above 25 °C per device, answered by the windowed rule `hot_per_device`: {hot:?}"
    );
    let csv = out_dir.join("iot_data.csv");
    let csv_rows = std::fs::read_to_string(&csv)?
        .lines()
        .count()
        .saturating_sub(1);
    let parquet_files = parquet_files(&out_dir.join("telemetry"))?;
    claims.check(
        csv_rows == published && !parquet_files.is_empty(),
        format!(
            "the telemetry rule wrote every reading to the CSV ({csv_rows} of {published} rows) and Parquet files ({})",
            parquet_files.len()
        ),
    );
    println!(
        "telemetry written by the rule `telemetry` to {} ({csv_rows} rows) and {} ({} Parquet file(s), partitioned by date): the shapes a Spark job reads (examples/spark/hot_readings.py)",
        csv.display(),
        out_dir.join("telemetry").display(),
        parquet_files.len()
    );
    if !claims.0.is_empty() {
        eprintln!(
            "quick start FAILED: {} printed outcome(s) did not hold:",
            claims.0.len()
        );
        for claim in &claims.0 {
            eprintln!("  - {claim}");
        }
        std::process::exit(1);
    }
    println!(
        "every outcome above was checked; done in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
