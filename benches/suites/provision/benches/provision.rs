//! thingkit-provision benchmarks, all in one process so machine noise affects every row alike:
//!
//! - `issue/*`: a P-256 certificate from a P-256 CSR — ours (parse, proof of possession, key-type
//!   checks, strict profile, random serial) vs bare rcgen (`CertificateSigningRequestParams::
//!   from_der` + `signed_by`) with the same CA key and the same CSR;
//! - `registry_1m/*`: `authenticate` (SHA-256 of the certificate, lookups, status and CA checks,
//!   effective policies through a two-level group hierarchy) in a registry of 1,000,000 things
//!   and 1,000,000 certificates; memory per thing is printed;
//! - `durable/*`: registrations (thing + certificate + attachment) per second on the redb store,
//!   1,000 per fsync'd batch.
//!
//! The 1,000,000 certificates are copies of one issued certificate with distinct serial numbers
//! (so distinct IDs); they are registered without a CA, which does not check signatures, so
//! building the registry does not take a million ECDSA signatures.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use thingkit_bench_support::{CountingAlloc, live_bytes};
use thingkit_provision::{CaKeyType, CaOptions, CertificateAuthority, IssueOptions};
use thingkit_provision::{CaStatus, CertificateStatus};
use thingkit_provision::{CsrLimits, VerifiedCsr};
use thingkit_provision::{MemoryStore, RedbStore};
use thingkit_provision::{PolicyTarget, Registry, RegistryLimits};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iot:Connect","iot:Publish"],"Resource":["arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}","arn:aws:iot:us-east-1:123456789012:topic/t/${iot:Connection.Thing.ThingName}/*"]}]}"#;

fn p256_csr(cn: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.serialize_request(&key).unwrap().der().to_vec()
}

/// Interleaved rounds of the issuance rows.
const ISSUE_ROUNDS: usize = 40;
/// Certificates per contender per round.
const ISSUE_PER_ROUND: u32 = 40;

/// Mean seconds per call of `f` over `n` calls.
fn per_call(n: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() / f64::from(n)
}

/// Issuance: ours vs bare rcgen in interleaved rounds (both contenders once per round, same CA
/// key, same CSR), each contender's minimum over the rounds, and the range of the per-round
/// ratios, so one run shows whether the ratio holds in every round. Then the halves: CSR
/// parsing and proof of possession alone, and signing alone.
fn issuance() {
    let ca = CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
        .unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &ca.certificate_pem(),
        rcgen::KeyPair::from_pem(&ca.private_key_pem()).unwrap(),
    )
    .unwrap();
    let csr = p256_csr("bench-device");
    let limits = CsrLimits::default();
    let verified = VerifiedCsr::parse(&csr, &limits).unwrap();
    let params = rcgen::CertificateSigningRequestParams::from_der(
        &rustls_pki_types::CertificateSigningRequestDer::from(csr.as_slice()),
    )
    .unwrap();
    type Contender<'a> = (&'a str, Box<dyn FnMut() + 'a>);
    let rows: Vec<(&str, Contender, Contender)> = vec![
        (
            "issue (P-256 CSR -> certificate)",
            (
                "thingkit CertificateAuthority::issue",
                Box::new(|| {
                    black_box(
                        ca.issue(black_box(&csr), std::time::SystemTime::now())
                            .unwrap(),
                    );
                }),
            ),
            (
                "rcgen from_der + signed_by",
                Box::new(|| {
                    let der = rustls_pki_types::CertificateSigningRequestDer::from(black_box(
                        csr.as_slice(),
                    ));
                    let params = rcgen::CertificateSigningRequestParams::from_der(&der).unwrap();
                    black_box(params.signed_by(&issuer).unwrap());
                }),
            ),
        ),
        (
            "  half: parse + verify the CSR",
            (
                "thingkit VerifiedCsr::parse",
                Box::new(|| {
                    black_box(VerifiedCsr::parse(black_box(&csr), &limits).unwrap());
                }),
            ),
            (
                "rcgen CertificateSigningRequestParams::from_der",
                Box::new(|| {
                    let der = rustls_pki_types::CertificateSigningRequestDer::from(black_box(
                        csr.as_slice(),
                    ));
                    black_box(rcgen::CertificateSigningRequestParams::from_der(&der).unwrap());
                }),
            ),
        ),
        (
            "  half: sign the certificate",
            (
                "thingkit issue_verified",
                Box::new(|| {
                    black_box(
                        ca.issue_verified(
                            black_box(&verified),
                            &IssueOptions::default(),
                            std::time::SystemTime::now(),
                        )
                        .unwrap(),
                    );
                }),
            ),
            (
                "rcgen signed_by",
                Box::new(|| {
                    black_box(black_box(&params).clone().signed_by(&issuer).unwrap());
                }),
            ),
        ),
    ];
    for (name, (ours_label, mut ours), (theirs_label, mut theirs)) in rows {
        let (mut best_ours, mut best_theirs) = (f64::MAX, f64::MAX);
        let (mut lo, mut hi) = (f64::MAX, 0f64);
        for _ in 0..ISSUE_ROUNDS {
            let a = per_call(ISSUE_PER_ROUND, &mut ours);
            let b = per_call(ISSUE_PER_ROUND, &mut theirs);
            best_ours = best_ours.min(a);
            best_theirs = best_theirs.min(b);
            lo = lo.min(b / a);
            hi = hi.max(b / a);
        }
        println!(
            "{name}: {ours_label} {:.1} µs, {theirs_label} {:.1} µs, speed ratio (rcgen time / ours) {:.2}x (minimums over {ISSUE_ROUNDS} interleaved rounds of {ISSUE_PER_ROUND}; per-round ratios {lo:.2}x-{hi:.2}x)",
            best_ours * 1e6,
            best_theirs * 1e6,
            best_theirs / best_ours
        );
    }
}

/// Copies `template` with the 20-byte serial at `at` replaced by one derived from `i`.
fn with_serial(template: &[u8], at: usize, i: u64) -> Vec<u8> {
    let mut der = template.to_vec();
    let serial = &mut der[at..at + 20];
    serial.fill(0x5a);
    serial[0] = 0x40;
    serial[12..20].copy_from_slice(&i.to_be_bytes());
    der
}

const THINGS: u64 = 1_000_000;
const REGIONS: u64 = 10;

struct Million {
    registry: Registry,
    store: MemoryStore,
    before: u64,
    peers: Vec<Vec<u8>>,
    ids: Vec<thingkit_provision::CertificateId>,
    signed: Vec<Vec<u8>>,
}

fn build_million() -> Million {
    let ca = CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
        .unwrap();
    let template = ca
        .create_keys_and_certificate("device", CaKeyType::P256, std::time::SystemTime::now())
        .unwrap()
        .certificate;
    let at = template
        .der
        .windows(20)
        .position(|w| w == template.serial.as_slice())
        .expect("serial in DER");

    let before = live_bytes();
    let store = MemoryStore::new();
    let mut registry = Registry::open(store.clone(), RegistryLimits::default()).unwrap();
    registry
        .register_ca_certificate(ca.certificate_der(), CaStatus::Active, false)
        .unwrap();
    registry
        .create_policy("fleet", POLICY, std::time::SystemTime::now())
        .unwrap();
    registry
        .create_policy("device", POLICY, std::time::SystemTime::now())
        .unwrap();
    registry.create_thing_group("fleet", None).unwrap();
    registry
        .attach_policy("fleet", &PolicyTarget::ThingGroup("fleet".into()))
        .unwrap();
    for r in 0..REGIONS {
        let name = format!("region-{r}");
        registry
            .create_policy(&name, POLICY, std::time::SystemTime::now())
            .unwrap();
        registry.create_thing_group(&name, Some("fleet")).unwrap();
        registry
            .attach_policy(&name, &PolicyTarget::ThingGroup(name.clone()))
            .unwrap();
    }
    let started = std::time::Instant::now();
    for chunk in 0..THINGS / 10_000 {
        registry
            .batch(|r| {
                for i in chunk * 10_000..(chunk + 1) * 10_000 {
                    let thing = format!("thing-{i}");
                    r.create_thing(&thing, None, &[])?;
                    r.add_thing_to_group(&thing, &format!("region-{}", i % REGIONS))?;
                    let id = r.register_certificate_without_ca(
                        &with_serial(&template.der, at, i),
                        CertificateStatus::Active,
                        std::time::SystemTime::now(),
                    )?;
                    r.attach_thing_principal(&thing, &id, true)?;
                    r.attach_policy("device", &PolicyTarget::Certificate(id))?;
                }
                Ok(())
            })
            .unwrap();
    }
    eprintln!(
        "registry_1m: built {} things + certificates in {:.1?}",
        registry.thing_count(),
        started.elapsed()
    );
    // Real CA-signed certificates for the path with the CA status check.
    let mut signed = Vec::new();
    for i in 0..1000 {
        let d = ca
            .create_keys_and_certificate(
                &format!("signed-{i}"),
                CaKeyType::P256,
                std::time::SystemTime::now(),
            )
            .unwrap()
            .certificate;
        let id = registry
            .register_certificate(
                &d.der,
                CertificateStatus::Active,
                std::time::SystemTime::now(),
            )
            .unwrap();
        registry
            .attach_policy("device", &PolicyTarget::Certificate(id))
            .unwrap();
        registry
            .attach_thing_principal(&format!("thing-{i}"), &id, false)
            .unwrap();
        signed.push(d.der);
    }
    // Random peers across the whole million (xorshift), so lookups miss the caches as in
    // production.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let peers: Vec<Vec<u8>> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            with_serial(&template.der, at, x % THINGS)
        })
        .collect();
    let ids = peers
        .iter()
        .map(|p| thingkit_provision::CertificateId::of_der(p))
        .collect();
    let identity = registry
        .authenticate(&[peers[0].as_slice()], std::time::SystemTime::now())
        .unwrap();
    assert_eq!(identity.policies.len(), 3, "device + region + fleet");
    Million {
        registry,
        store,
        before,
        peers,
        ids,
        signed,
    }
}

fn registry_1m(c: &mut Criterion) {
    // Built on first use, so `cargo bench -- issue` does not pay for it.
    let mut million: Option<Million> = None;
    let mut group = c.benchmark_group("registry_1m");
    group.sample_size(100);
    group.measurement_time(Duration::from_secs(5));
    let mut n = 0usize;
    group.bench_function("effective_policies", |b| {
        let m = million.get_or_insert_with(build_million);
        b.iter(|| {
            n = (n + 1) & 4095;
            black_box(m.registry.effective_policies(&m.ids[n]).unwrap())
        })
    });
    let mut n = 0usize;
    group.bench_function("authenticate+effective_policies", |b| {
        let m = million.get_or_insert_with(build_million);
        b.iter(|| {
            n = (n + 1) & 4095;
            black_box(
                m.registry
                    .authenticate(&[m.peers[n].as_slice()], std::time::SystemTime::now())
                    .unwrap(),
            )
        })
    });
    let mut n = 0usize;
    group.bench_function("authenticate+effective_policies/ca_signed", |b| {
        let m = million.get_or_insert_with(build_million);
        b.iter(|| {
            n = (n + 1) % m.signed.len();
            black_box(
                m.registry
                    .authenticate(&[m.signed[n].as_slice()], std::time::SystemTime::now())
                    .unwrap(),
            )
        })
    });
    group.finish();

    if let Some(m) = million {
        let with_store = live_bytes() - m.before;
        let Million {
            registry,
            store,
            before,
            ..
        } = m;
        drop(registry);
        let store_only = live_bytes() - before;
        eprintln!(
            "registry_1m: memory per thing (thing + certificate + attachments): registry {} B, \
             memory store {} B, total {} B",
            (with_store - store_only) / THINGS,
            store_only / THINGS,
            with_store / THINGS,
        );
        drop(store);
    }
}

fn durable(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
        .unwrap();
    let template = ca
        .create_keys_and_certificate("device", CaKeyType::P256, std::time::SystemTime::now())
        .unwrap()
        .certificate;
    let at = template
        .der
        .windows(20)
        .position(|w| w == template.serial.as_slice())
        .unwrap();
    let store = RedbStore::open(dir.path().join("bench.redb")).unwrap();
    let mut durable = Registry::open(store, RegistryLimits::default()).unwrap();
    let mut memory = Registry::open(MemoryStore::new(), RegistryLimits::default()).unwrap();
    let mut next: u64 = 0;
    let mut group = c.benchmark_group("durable");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    for batch in [1_000u64, 10_000] {
        group.throughput(Throughput::Elements(batch));
        group.bench_function(BenchmarkId::new("redb_registrations", batch), |b| {
            b.iter(|| register_generic(&mut durable, batch, &mut next, &template.der, at))
        });
    }
    group.throughput(Throughput::Elements(10_000));
    group.bench_function(BenchmarkId::new("memory_registrations", 10_000), |b| {
        b.iter(|| register_generic(&mut memory, 10_000, &mut next, &template.der, at))
    });
    group.finish();
}

/// One batch of `count` registrations: a thing, its certificate, the exclusive attachment.
fn register_generic<S: thingkit_provision::RegistryStore>(
    r: &mut Registry<S>,
    count: u64,
    next: &mut u64,
    template: &[u8],
    at: usize,
) {
    r.batch(|r| {
        for _ in 0..count {
            let i = *next;
            *next += 1;
            let thing = format!("thing-{i}");
            r.create_thing(&thing, None, &[])?;
            let id = r.register_certificate_without_ca(
                &with_serial(template, at, i),
                CertificateStatus::Active,
                std::time::SystemTime::now(),
            )?;
            r.attach_thing_principal(&thing, &id, true)?;
        }
        Ok(())
    })
    .unwrap()
}

criterion_group!(benches, registry_1m, durable);

fn main() {
    issuance();
    if std::env::var_os("PROVISION_ISSUANCE_ONLY").is_none() {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
}
