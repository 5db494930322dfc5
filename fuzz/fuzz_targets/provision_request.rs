//! Arbitrary payloads on each fleet provisioning topic (JSON and CBOR): `handle` must never
//! panic, must answer exactly once on `/accepted` or `/rejected`, and a rejection must carry the
//! AWS error body in the request's format.
//!
//! Input: one selector byte (topic and format; bit 7: first create a certificate and replace
//! every `TOKEN` in the payload with its ownership token, so RegisterThing is reachable), then
//! the payload.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use thingkit_provision::Registry;
use thingkit_provision::{CaKeyType, CaOptions, CertificateAuthority};
use thingkit_provision::{CaStatus, CertificateStatus};
use thingkit_provision::{FleetConfig, FleetProvisioning, Rejection};
use thingkit_provision::{ProvisioningTemplate, TemplateLimits};

const TEMPLATE: &str = r#"{"Parameters": {"Serial": {"Type": "String"},
  "Site": {"Type": "String", "Default": "x"}},
  "Resources": {
    "thing": {"Type": "AWS::IoT::Thing", "Properties": {
      "ThingName": {"Fn::Join": ["-", ["s", {"Ref": "Serial"}]]},
      "AttributePayload": {"site": {"Ref": "Site"}}}},
    "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
      "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}}},
  "DeviceConfiguration": {"a": {"Fn::Sub": "${Site}/${Serial}"}}}"#;

const TOPICS: [&str; 6] = [
    "$aws/certificates/create/json",
    "$aws/certificates/create/cbor",
    "$aws/certificates/create-from-csr/json",
    "$aws/certificates/create-from-csr/cbor",
    "$aws/provisioning-templates/T/provision/json",
    "$aws/provisioning-templates/T/provision/cbor",
];

struct Fixture {
    ca: Arc<CertificateAuthority>,
    claim_der: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ca = Arc::new(
            CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
                .expect("CA"),
        );
        let claim = ca
            .create_keys_and_certificate("claim", CaKeyType::P256, std::time::SystemTime::now())
            .expect("claim");
        Fixture {
            claim_der: claim.certificate.der,
            ca,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let f = fixture();
    // Fresh state per input, so memory stays flat.
    let mut registry = Registry::in_memory();
    registry
        .register_ca_certificate(f.ca.certificate_der(), CaStatus::Active, false)
        .expect("CA registers");
    let claim = registry
        .register_certificate(
            &f.claim_der,
            CertificateStatus::Active,
            std::time::SystemTime::now(),
        )
        .expect("claim registers");
    let mut fleet = FleetProvisioning::new(Arc::clone(&f.ca), FleetConfig::default());
    let template = ProvisioningTemplate::parse(TEMPLATE, &TemplateLimits::default()).expect("t");
    fleet.add_template("T", template).expect("template");
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);

    let mut payload = payload.to_vec();
    if selector & 0x80 != 0 {
        let replies = fleet
            .handle(&mut registry, &claim, TOPICS[0], b"{}", now)
            .expect("provisioning topic");
        let created: serde_json::Value = serde_json::from_slice(&replies[0].payload).expect("JSON");
        let token = created["certificateOwnershipToken"]
            .as_str()
            .expect("token");
        let text = String::from_utf8_lossy(&payload).replace("TOKEN", token);
        payload = text.into_bytes();
    }
    let topic = TOPICS[usize::from(selector & 0x7f) % TOPICS.len()];
    let replies = fleet
        .handle(&mut registry, &claim, topic, &payload, now)
        .expect("a provisioning topic is always answered");
    assert_eq!(replies.len(), 1);
    let reply = &replies[0];
    if reply.topic == format!("{topic}/rejected") {
        let rejection: Rejection = if topic.ends_with("cbor") {
            ciborium::de::from_reader(&reply.payload[..]).expect("CBOR error body")
        } else {
            serde_json::from_slice(&reply.payload).expect("JSON error body")
        };
        assert!((400..600).contains(&rejection.status_code));
    } else {
        assert_eq!(reply.topic, format!("{topic}/accepted"));
    }
});
