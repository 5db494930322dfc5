//! thingkit-audit at fleet scale (issue #19).
//!
//! - **Audit**: `run_audit` over a snapshot of 1,000,000 device certificates (each attached to
//!   its thing), 4 CAs with their CRLs, 10,000 policies and 200,000 connection records, with every
//!   check enabled; time (best of `RUNS`) and the peak heap the audit allocates beyond the
//!   snapshot. Next to it, in the same run, the **floor**: parsing the same 1,000,000 certificates
//!   with x509-parser and reading their validity and key, which any audit of the certificates
//!   must do.
//! - **From the registry**: a `thingkit_provision::Registry` (in memory) holding 1,000,000
//!   distinct device certificates (each its own rcgen certificate) each attached to its thing,
//!   and 10,000 policies: the server's `registry_snapshot` (what an audit holds the registry's
//!   read lock for) and then `run_audit` on it — the whole audit as `StartOnDemandAuditTask` runs
//!   it (`REGISTRY_RECORDS=n`; 0 skips the row).
//! - **Detect**: `Detector::evaluate` over 100,000 devices' windows with one profile of 6
//!   behaviors (3 static, 2 statistical, 1 CIDR), per device-window.
//!
//! The fleet: 20,000 distinct P-256 device certificates made with rcgen (signed by the 4 CAs,
//! validity ending between 10 days ago and 3 years ahead); the 1,000,000 records cycle through
//! them, each with its own certificate ID, thing, status (2 % INACTIVE, 0.5 % REVOKED) and
//! registration date, so every record is parsed and checked on its own (nothing is cached by
//! DER). Policies: 10,000 in the shapes the Device Defender guide shows, 90 % compliant
//! (thing-scoped with `iot:Connection.Thing.IsAttached`), 5 % overly permissive (`client/*`),
//! 5 % with a wildcard in a Deny. Connections: 200,000 over the last 30 days, with 100
//! certificates shared by two client IDs at once and 100 client IDs used by two certificates.
//!
//! `cargo bench --manifest-path benches/Cargo.toml -p thingkit-bench-audit --bench fleet_audit`
//! (`RECORDS=n`, `POLICIES=n`, `RUNS=n` override the sizes).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use thingkit_audit::detect::{Counters, Detector, DetectorConfig, DeviceWindow, ProfileLimits};
use thingkit_audit::detect::{SecurityProfile, ViolationEvent};
use thingkit_audit::{
    AuditConfig, AuditSnapshot, CaCertificate, CertificateStatus, ConnectionRecord,
    DeviceCertificate, Policy, run_audit,
};
use thingkit_bench_support::{
    CountingAlloc, SplitMix64 as Rng, count_allocations, env_or, live_bytes,
};
use time::OffsetDateTime;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// The audit's clock: 2026-12-01T00:00:00Z.
const NOW: i64 = 1_764_547_200;
const DAY: i64 = 86_400;
const DISTINCT: usize = 20_000;
const CAS: usize = 4;

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).expect("bench times are in range")
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    der: Vec<u8>,
}

fn make_ca(i: usize) -> Ca {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(&format!("Fleet CA {i}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(SerialNumber::from(1000 + i as u64));
    params.not_before = at(NOW - 800 * DAY);
    params.not_after = at(NOW + 3650 * DAY);
    let key = KeyPair::generate().expect("P-256 key");
    let der = params.self_signed(&key).expect("CA").der().to_vec();
    Ca { params, key, der }
}

/// The distinct device certificates: (DER, issuing CA index).
fn device_certificates(cas: &[Ca], rng: &mut Rng) -> Vec<(Vec<u8>, usize)> {
    let issuers: Vec<Issuer<'_, &KeyPair>> = cas
        .iter()
        .map(|ca| Issuer::from_params(&ca.params, &ca.key))
        .collect();
    (0..DISTINCT)
        .map(|i| {
            let ca = i % CAS;
            let mut p = CertificateParams::default();
            p.distinguished_name = name(&format!("device-{i:06}"));
            p.serial_number = Some(SerialNumber::from(100_000 + i as u64));
            p.not_before = at(NOW - 400 * DAY);
            // Validity ends between 10 days ago and about three years ahead: a few expired,
            // some within the 30-day expiry threshold.
            p.not_after = at(NOW - 10 * DAY + rng.below(1100) as i64 * DAY);
            let key = KeyPair::generate().expect("P-256 key");
            let der = p
                .signed_by(&key, &issuers[ca])
                .expect("device")
                .der()
                .to_vec();
            (der, ca)
        })
        .collect()
}

fn hex_id(n: u64) -> String {
    let mut s = String::with_capacity(64);
    for i in 0..4u64 {
        let mut r = Rng(n.wrapping_mul(4).wrapping_add(i));
        s.push_str(&format!("{:016x}", r.next_u64()));
    }
    s
}

fn policy(i: usize, rng: &mut Rng) -> Policy {
    let site = i % 500;
    let document = match rng.below(20) {
        // Overly permissive: any client ID may connect.
        0 => format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:us-east-1:123456789012:client/*"}},{{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:us-east-1:123456789012:topic/site-{site}/${{iot:Connection.Thing.ThingName}}/*"}}]}}"#
        ),
        // A wildcard in a Deny statement (the `#` is literal there).
        1 => format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:us-east-1:123456789012:topicfilter/site-{site}/*"}},{{"Effect":"Deny","Action":"iot:Subscribe","Resource":"arn:aws:iot:us-east-1:123456789012:topicfilter/site-{site}/control/#"}}]}}"#
        ),
        // Compliant: everything scoped to the attached thing.
        _ => format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:us-east-1:123456789012:client/${{iot:Connection.Thing.ThingName}}","Condition":{{"Bool":{{"iot:Connection.Thing.IsAttached":"true"}}}}}},{{"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":"arn:aws:iot:us-east-1:123456789012:topic/site-{site}/${{iot:Connection.Thing.ThingName}}/*"}},{{"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:us-east-1:123456789012:topicfilter/site-{site}/${{iot:Connection.Thing.ThingName}}/*"}}]}}"#
        ),
    };
    Policy {
        name: format!("fleet-policy-{i:05}"),
        default_version_id: "1".into(),
        document,
    }
}

fn snapshot(records: usize, policies: usize) -> AuditSnapshot {
    let mut rng = Rng(0x7719);
    let t = Instant::now();
    let cas: Vec<Ca> = (0..CAS).map(make_ca).collect();
    let distinct = device_certificates(&cas, &mut rng);
    eprintln!(
        "made {} CAs and {DISTINCT} distinct device certificates in {:.1} s",
        CAS,
        t.elapsed().as_secs_f64()
    );
    let ca_records: Vec<CaCertificate> = cas
        .iter()
        .map(|ca| CaCertificate::new(ca.der.clone(), NOW - 800 * DAY))
        .collect();
    let mut device_certificates = Vec::with_capacity(records);
    for i in 0..records {
        let (der, ca) = &distinct[i % DISTINCT];
        let status = match rng.below(1000) {
            0..=19 => CertificateStatus::Inactive,
            20..=24 => CertificateStatus::Revoked,
            _ => CertificateStatus::Active,
        };
        device_certificates.push(DeviceCertificate {
            id: hex_id(i as u64),
            der: der.clone(),
            status,
            ca_certificate_id: Some(ca_records[*ca].id.clone()),
            registered_at: NOW - rng.below(700) as i64 * DAY,
            things: vec![format!("thing-{i:07}")],
        });
    }
    // A device's connections follow one another (the broker takes a client ID's connection
    // over when it reconnects), so only the planted pairs below overlap.
    let mut connections = Vec::with_capacity(200_000);
    let mut free_from = vec![NOW - 30 * DAY; records];
    for i in 0..200_000usize {
        let device = (rng.below(records as u64)) as usize;
        let start = free_from[device] + rng.below(DAY as u64) as i64;
        if start > NOW - 3 * 3600 {
            continue;
        }
        free_from[device] = start + 3700;
        connections.push(ConnectionRecord {
            client_id: format!("thing-{device:07}"),
            certificate_id: device_certificates[device].id.clone(),
            source: format!("10.{}.{}.{}", i % 200, (i / 200) % 250, i % 250),
            connected_at: start,
            disconnected_at: Some(start + 60 + rng.below(3600) as i64),
            disconnect_reason: Some("CLIENT_INITIATED_DISCONNECT".into()),
        });
    }
    // 100 certificates shared by two client IDs at once, 100 client IDs on two certificates.
    for k in 0..100usize {
        let a = &connections[k];
        let mut shared = a.clone();
        shared.client_id = format!("{}-clone", a.client_id);
        connections.push(shared);
        let b = &connections[1000 + k];
        let mut conflicting = b.clone();
        conflicting.certificate_id = device_certificates[(k * 7919) % records].id.clone();
        conflicting.connected_at += 5;
        connections.push(conflicting);
    }
    let policies = (0..policies).map(|i| policy(i, &mut rng)).collect();
    AuditSnapshot {
        account: "123456789012".into(),
        region: "us-east-1".into(),
        device_certificates,
        ca_certificates: ca_records,
        policies,
        connections,
        logging_enabled: true,
        crls: Vec::new(),
        weak_keys: Default::default(),
    }
}

/// The floor: parse every record's certificate and read what the certificate checks read.
fn parse_floor(s: &AuditSnapshot) -> usize {
    let mut n = 0;
    for c in &s.device_certificates {
        let (_, cert) = x509_parser::parse_x509_certificate(&c.der).expect("valid");
        let v = cert.validity();
        n += usize::from(v.not_after.timestamp() < NOW);
        n += black_box(cert.public_key().raw.len()) & 1;
    }
    n
}

fn audit_row(records: usize, policies: usize, runs: usize) {
    let before = live_bytes();
    let snap = snapshot(records, policies);
    let snap_bytes = live_bytes().saturating_sub(before);
    let config = AuditConfig::all_checks();
    let mut best_audit = f64::MAX;
    let mut best_floor = f64::MAX;
    let mut peak = 0u64;
    let mut findings = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let (report, stats) = count_allocations(|| run_audit(&snap, &config, NOW));
        best_audit = best_audit.min(t.elapsed().as_secs_f64());
        peak = peak.max(stats.peak_live_bytes);
        findings = report.findings.len();
        drop(black_box(report));
        let t = Instant::now();
        black_box(parse_floor(&snap));
        best_floor = best_floor.min(t.elapsed().as_secs_f64());
    }
    println!(
        "AUDIT {records} certificates + things, {policies} policies, {} connection records, all checks: run_audit {best_audit:.2} s (best of {runs}), {findings} findings, peak heap beyond the snapshot {:.0} MB (snapshot {:.0} MB); floor (x509-parse every certificate) {best_floor:.2} s; audit / floor {:.2}",
        snap.connections.len(),
        peak as f64 / 1e6,
        snap_bytes as f64 / 1e6,
        best_audit / best_floor
    );
}

fn registry_row(records: usize, policies: usize) {
    use std::time::SystemTime;
    use thingkit_provision::{CaStatus, CertificateStatus as Status, Registry};
    let mut rng = Rng(0x5eed);
    let t = Instant::now();
    let mut registry = Registry::in_memory();
    let ca = make_ca(0);
    registry
        .register_ca_certificate(&ca.der, CaStatus::Active, false)
        .expect("CA registers");
    let issuer = Issuer::from_params(&ca.params, &ca.key);
    let device_key = KeyPair::generate().expect("P-256 key");
    let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(NOW as u64);
    for i in 0..records {
        let mut p = CertificateParams::default();
        p.distinguished_name = name(&format!("device-{i:07}"));
        p.serial_number = Some(SerialNumber::from(10_000_000 + i as u64));
        p.not_before = at(NOW - 400 * DAY);
        p.not_after = at(NOW - 10 * DAY + rng.below(1100) as i64 * DAY);
        let der = p
            .signed_by(&device_key, &issuer)
            .expect("device")
            .der()
            .to_vec();
        let id = registry
            .register_certificate_without_ca(&der, Status::Active, now)
            .expect("certificate registers");
        let thing = format!("thing-{i:07}");
        registry.create_thing(&thing, None, &[]).expect("thing");
        registry
            .attach_thing_principal(&thing, &id, false)
            .expect("attached");
    }
    for i in 0..policies {
        let p = policy(i, &mut rng);
        registry
            .create_policy(&p.name, &p.document, now)
            .expect("policy");
    }
    eprintln!(
        "registry of {records} certificates and things, {policies} policies built in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    let arn = thingkit_policy::ArnPrefix::new("aws", "us-east-1", "123456789012").expect("arn");
    let t = Instant::now();
    let (snap, stats) = count_allocations(|| {
        thingkit_api::audit::registry_snapshot(&registry, &arn).expect("snapshot")
    });
    let snapshot_s = t.elapsed().as_secs_f64();
    let config = AuditConfig::all_checks();
    let t = Instant::now();
    let (report, audit_stats) = count_allocations(|| run_audit(&snap, &config, NOW));
    let audit_s = t.elapsed().as_secs_f64();
    println!(
        "REGISTRY {records} certificates + things, {policies} policies, in-memory registry: registry_snapshot {snapshot_s:.2} s (the read lock; {:.0} MB), run_audit {audit_s:.2} s ({} findings, peak {:.0} MB beyond the snapshot), whole audit {:.2} s",
        stats.peak_live_bytes as f64 / 1e6,
        report.findings.len(),
        audit_stats.peak_live_bytes as f64 / 1e6,
        snapshot_s + audit_s
    );
}

fn detect_row() {
    const DEVICES: usize = 100_000;
    const PERIODS: u64 = 6;
    let profile = SecurityProfile::parse(
        br#"{"securityProfileName":"fleet","behaviors":[
        {"name":"auth","metric":"aws:num-authorization-failures","criteria":{"comparisonOperator":"less-than","value":{"count":5},"durationSeconds":300}},
        {"name":"sent","metric":"aws:num-messages-sent","criteria":{"comparisonOperator":"less-than-equals","value":{"count":1800},"durationSeconds":900,"consecutiveDatapointsToAlarm":2,"consecutiveDatapointsToClear":2}},
        {"name":"size","metric":"aws:message-byte-size","criteria":{"comparisonOperator":"less-than","value":{"count":4096}}},
        {"name":"sent-p99","metric":"aws:num-messages-sent","criteria":{"comparisonOperator":"less-than-equals","statisticalThreshold":{"statistic":"p99"},"durationSeconds":300}},
        {"name":"conn-p90","metric":"aws:num-connection-attempts","criteria":{"comparisonOperator":"less-than-equals","statisticalThreshold":{"statistic":"p90"},"durationSeconds":300}},
        {"name":"ips","metric":"aws:source-ip-address","criteria":{"comparisonOperator":"in-cidr-set","value":{"cidrs":["10.0.0.0/8"]}}}
        ]}"#,
        &ProfileLimits::default(),
    )
    .expect("profile");
    let mut detector = Detector::new(DetectorConfig::default()).expect("config");
    detector.add_profile(profile).expect("profile");
    let names: Vec<String> = (0..DEVICES).map(|i| format!("thing-{i:07}")).collect();
    let ips: Vec<[IpAddr; 1]> = (0..DEVICES)
        .map(|i| {
            [IpAddr::V4(Ipv4Addr::new(
                10,
                (i >> 16) as u8,
                (i >> 8) as u8,
                i as u8,
            ))]
        })
        .collect();
    let mut rng = Rng(42);
    let mut out: Vec<ViolationEvent> = Vec::new();
    let mut best = f64::MAX;
    for period in 0..PERIODS {
        let window_end = NOW as u64 + (period + 1) * 300;
        let windows: Vec<DeviceWindow<'_>> = (0..DEVICES)
            .map(|i| DeviceWindow {
                thing: &names[i],
                window_end,
                counters: Counters {
                    messages_sent: 100 + rng.below(400),
                    // One device in 2,000 sends a message over the 4 KiB limit.
                    max_message_bytes: 200
                        + rng.below(3000)
                        + u64::from(rng.below(2000) == 0) * 8000,
                    min_message_bytes: 100,
                    authorization_failures: u64::from(rng.below(1000) == 0) * 9,
                    connection_attempts: u64::from(rng.below(50) == 0),
                    ..Counters::default()
                },
                source_ips: &ips[i],
            })
            .collect();
        out.clear();
        let t = Instant::now();
        detector.evaluate(&windows, &mut out).expect("windows");
        let ns = t.elapsed().as_nanos() as f64 / DEVICES as f64;
        if period > 0 {
            best = best.min(ns);
        }
    }
    println!(
        "DETECT {DEVICES} devices, 6 behaviors (3 static, 2 statistical, 1 CIDR), 300 s windows: {best:.1} ns per device-window (best period after the first), {} active violations",
        detector.active_violations().count()
    );
}

fn main() {
    let records = env_or("RECORDS", 1_000_000);
    let policies = env_or("POLICIES", 10_000);
    let runs = env_or("RUNS", 3);
    audit_row(records, policies, runs);
    let registry_records = env_or("REGISTRY_RECORDS", 1_000_000);
    if registry_records > 0 {
        registry_row(registry_records, policies);
    }
    detect_row();
}
