//! thingkit-api: one whole request through `ControlPlane::handle` (SigV4 verification, routing,
//! binding and validation against the model, the identity policy, the operation, the response
//! and its audit record), in process — the server's share of the end-to-end latency that
//! `benches/api/latency.py` measures with boto3.
//!
//! - `handle/describe_thing`: a read; the registry holds 10,000 things.
//! - `handle/attach_detach_policy_redb`: AttachPolicy then DetachPolicy on a redb-backed registry
//!   (each a durable commit: the fsync is the floor of a mutation).
//! - `handle/describe_thing_policy_key`: DescribeThing by a key with an identity policy (allow
//!   iot:Describe*, deny iot:Delete*), to show what authorization adds.
//!
//! Run: cargo bench --manifest-path benches/Cargo.toml -p thingkit-bench-api --bench handle

use std::hint::black_box;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use criterion::Criterion;
use thingkit_api::keys::KeyStore;
use thingkit_api::sigv4::{SignedRequest, sign};
use thingkit_api::{ApiRequest, ControlPlane};
use thingkit_policy::ArnPrefix;
use thingkit_provision::{
    CertificateAuthority, CertificateStatus, PolicyTarget, RedbStore, Registry, RegistryLimits,
    RegistryStore,
};

const NOW: u64 = 1_796_385_600;

fn request(method: &str, path: &str, body: &str, key: &(String, String)) -> ApiRequest {
    let mut r = ApiRequest {
        method: method.into(),
        path: path.into(),
        query: String::new(),
        headers: vec![
            ("host".into(), "localhost:8443".into()),
            ("x-amz-date".into(), "20261204T120000Z".into()),
        ],
        body: body.as_bytes().to_vec(),
    };
    let auth = sign(
        &SignedRequest {
            method: &r.method,
            path: &r.path,
            query: &r.query,
            headers: &r.headers,
            body: &r.body,
        },
        &key.0,
        &key.1,
        "eu-central-1",
        "iot",
    )
    .expect("signs");
    r.headers.push(("authorization".into(), auth));
    r
}

fn plane<S: RegistryStore>(
    registry: Registry<S>,
) -> (ControlPlane<S>, (String, String), (String, String)) {
    let keys = Arc::new(KeyStore::in_memory());
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW);
    let admin = keys.create(None, now).expect("a key");
    let limited = keys
        .create(
            Some(
                r#"{"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": ["iot:Describe*", "iot:List*"], "Resource": "*"},
                    {"Effect": "Deny", "Action": "iot:Delete*", "Resource": "*"}]}"#
                    .into(),
            ),
            now,
        )
        .expect("a key");
    let plane = ControlPlane::new(
        Arc::new(RwLock::new(registry)),
        ArnPrefix::new("aws", "eu-central-1", "123456789012").expect("prefix"),
        keys,
    );
    (
        plane,
        (admin.access_key_id, admin.secret_access_key),
        (limited.access_key_id, limited.secret_access_key),
    )
}

fn bench(c: &mut Criterion) {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW);
    let mut registry = Registry::in_memory();
    registry
        .batch(|r| {
            for i in 0..10_000 {
                r.create_thing(&format!("sensor-{i:05}"), None, &[("site", "lab")])?;
            }
            Ok(())
        })
        .expect("things");
    let (memory, admin, limited) = plane(registry);
    let describe = request("GET", "/things/sensor-04242", "", &admin);
    assert_eq!(memory.handle(&describe, now).0.status, 200);
    let describe_limited = request("GET", "/things/sensor-04242", "", &limited);
    assert_eq!(memory.handle(&describe_limited, now).0.status, 200);

    let dir = std::env::temp_dir().join(format!("thingkit-bench-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let store = RedbStore::open(dir.join("registry.redb")).expect("redb");
    let mut registry = Registry::open(store, RegistryLimits::default()).expect("registry");
    let ca = CertificateAuthority::create_root(&Default::default(), now).expect("ca");
    let device = ca
        .create_keys_and_certificate("sensor-1", Default::default(), now)
        .expect("device");
    let id = registry
        .register_certificate_without_ca(
            device.certificate.pem().as_bytes(),
            CertificateStatus::Active,
            now,
        )
        .expect("registered");
    registry
        .create_policy(
            "p",
            r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Publish", "Resource": "*"}]}"#,
            now,
        )
        .expect("policy");
    let _ = PolicyTarget::Certificate(id);
    let (durable, admin_d, _) = plane(registry);
    let target = format!("arn:aws:iot:eu-central-1:123456789012:cert/{id}");
    let body = format!(r#"{{"target": "{target}"}}"#);
    let attach = request("PUT", "/target-policies/p", &body, &admin_d);
    let detach = request("POST", "/target-policies/p", &body, &admin_d);
    assert_eq!(durable.handle(&attach, now).0.status, 200);
    assert_eq!(durable.handle(&detach, now).0.status, 200);

    let mut g = c.benchmark_group("handle");
    g.bench_function("describe_thing", |b| {
        b.iter(|| black_box(memory.handle(black_box(&describe), now)))
    });
    g.bench_function("describe_thing_policy_key", |b| {
        b.iter(|| black_box(memory.handle(black_box(&describe_limited), now)))
    });
    g.sample_size(20);
    g.bench_function("attach_detach_policy_redb", |b| {
        b.iter(|| {
            black_box(durable.handle(&attach, now));
            black_box(durable.handle(&detach, now))
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    bench(&mut c);
    c.final_summary();
}
