//! Fleet provisioning benchmarks (issue 6 names no performance target; these size a broker's
//! provisioning capacity). One process, so machine noise affects every row alike:
//!
//! - `fleet/render`: parse-free rendering of a five-function template with two parameters;
//! - `fleet/parse`: parsing and validating that template;
//! - `fleet/keys_and_register_json`: CreateKeysAndCertificate (P-256 key generation, signing,
//!   registration, token) + RegisterThing (token checks, render, atomic apply) through `handle`;
//! - `fleet/csr_and_register_cbor`: the same with CreateCertificateFromCsr and CBOR payloads
//!   (the device's CSR is made once, outside the timing; each round issues a new certificate).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use thingkit_provision::Registry;
use thingkit_provision::{CaKeyType, CaOptions, CertificateAuthority};
use thingkit_provision::{CaStatus, CertificateId, CertificateStatus};
use thingkit_provision::{FleetConfig, FleetProvisioning};
use thingkit_provision::{ProvisioningTemplate, TEMPLATE_CERTIFICATE_ID, TemplateLimits};

const TEMPLATE: &str = r#"{
  "Parameters": {"SerialNumber": {"Type": "String"}, "Site": {"Type": "String", "Default": "berlin"},
                 "AWS::IoT::Certificate::Id": {"Type": "String"}},
  "Mappings": {"Sites": {"berlin": {"Group": "eu-sensors"}}},
  "Resources": {
    "thing": {"Type": "AWS::IoT::Thing", "Properties": {
      "ThingName": {"Fn::Join": ["_", ["sensor", {"Ref": "SerialNumber"}]]},
      "AttributePayload": {"site": {"Ref": "Site"},
                           "rack": {"Fn::Select": ["1", {"Fn::Split": ["-", {"Ref": "SerialNumber"}]}]}},
      "ThingGroups": [{"Fn::FindInMap": ["Sites", {"Ref": "Site"}, "Group"]}]}},
    "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
      "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}}
  },
  "DeviceConfiguration": {"Topic": {"Fn::Sub": "devices/${SerialNumber}/telemetry"}}
}"#;

fn cbor(v: &impl serde::Serialize) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out).unwrap();
    out
}

fn setup() -> (Registry, FleetProvisioning, CertificateId) {
    let ca = Arc::new(
        CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
            .unwrap(),
    );
    let mut registry = Registry::in_memory();
    registry
        .register_ca_certificate(ca.certificate_der(), CaStatus::Active, false)
        .unwrap();
    registry.create_thing_group("eu-sensors", None).unwrap();
    let claim = ca
        .create_keys_and_certificate("claim", CaKeyType::P256, std::time::SystemTime::now())
        .unwrap();
    let claim = registry
        .register_certificate(
            &claim.certificate.der,
            CertificateStatus::Active,
            std::time::SystemTime::now(),
        )
        .unwrap();
    let mut fleet = FleetProvisioning::new(
        ca,
        FleetConfig::default().with_max_pending_tokens_per_claim(usize::MAX),
    );
    let template = ProvisioningTemplate::parse(TEMPLATE, &TemplateLimits::default()).unwrap();
    fleet.add_template("Sensors", template).unwrap();
    (registry, fleet, claim)
}

fn fleet(c: &mut Criterion) {
    let mut g = c.benchmark_group("fleet");
    g.sample_size(20).measurement_time(Duration::from_secs(4));

    g.bench_function("parse", |b| {
        b.iter(|| ProvisioningTemplate::parse(black_box(TEMPLATE), &TemplateLimits::default()))
    });
    let template = ProvisioningTemplate::parse(TEMPLATE, &TemplateLimits::default()).unwrap();
    let params = BTreeMap::from([("SerialNumber".to_string(), "a-17-b".to_string())]);
    let pseudo = BTreeMap::from([(TEMPLATE_CERTIFICATE_ID.to_string(), "ab".repeat(32))]);
    g.bench_function("render", |b| {
        b.iter(|| template.render(black_box(&params), &pseudo).unwrap())
    });

    let (mut registry, mut service, claim) = setup();
    let now = SystemTime::now();
    let mut n = 0u64;
    g.bench_function("keys_and_register_json", |b| {
        b.iter(|| {
            n += 1;
            let replies = service
                .handle(
                    &mut registry,
                    &claim,
                    "$aws/certificates/create/json",
                    b"{}",
                    now,
                )
                .unwrap();
            let created: serde_json::Value = serde_json::from_slice(&replies[0].payload).unwrap();
            let request = serde_json::json!({
                "certificateOwnershipToken": created["certificateOwnershipToken"],
                "parameters": {"SerialNumber": format!("j-{n}")},
            });
            let replies = service
                .handle(
                    &mut registry,
                    &claim,
                    "$aws/provisioning-templates/Sensors/provision/json",
                    request.to_string().as_bytes(),
                    now,
                )
                .unwrap();
            assert!(replies[0].is_accepted());
        })
    });

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sensor");
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let csr_request = cbor(&serde_json::json!({ "certificateSigningRequest": csr }));
    g.bench_function("csr_and_register_cbor", |b| {
        b.iter(|| {
            n += 1;
            let replies = service
                .handle(
                    &mut registry,
                    &claim,
                    "$aws/certificates/create-from-csr/cbor",
                    &csr_request,
                    now,
                )
                .unwrap();
            let created: serde_json::Value =
                ciborium::de::from_reader(&replies[0].payload[..]).unwrap();
            let request = cbor(&serde_json::json!({
                "certificateOwnershipToken": created["certificateOwnershipToken"],
                "parameters": {"SerialNumber": format!("c-{n}")},
            }));
            let replies = service
                .handle(
                    &mut registry,
                    &claim,
                    "$aws/provisioning-templates/Sensors/provision/cbor",
                    &request,
                    now,
                )
                .unwrap();
            assert!(replies[0].is_accepted());
        })
    });
    g.finish();
}

criterion_group!(benches, fleet);
criterion_main!(benches);
