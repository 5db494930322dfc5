//! Fleet provisioning by claim, end to end in process, the way the AWS IoT device SDK fleet
//! provisioning samples drive it; plus the attacks: token reuse, expiry, theft, hook failures,
//! rollback, and the claim certificate's least privilege. JITR and JITP at the end.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde_json::{Value, json};
use thingkit_policy::{ArnPrefix, Context, Decision, PolicySet};
use thingkit_provision::JitOutcome;
use thingkit_provision::{CaKeyType, CaOptions, CertificateAuthority};
use thingkit_provision::{CaStatus, CertificateId, CertificateStatus};
use thingkit_provision::{
    FleetConfig, FleetProvisioning, PendingRegistration, Prepared, Reply, claim_policy,
};
use thingkit_provision::{HookConfig, HookRequest, HookResponse};
use thingkit_provision::{PolicyTarget, Registry};
use thingkit_provision::{ProvisioningTemplate, TemplateLimits};

const TEMPLATE: &str = r#"{
  "Parameters": {
    "SerialNumber": {"Type": "String"},
    "DeviceLocation": {"Type": "String", "Default": "lab"},
    "AWS::IoT::Certificate::Id": {"Type": "String"}
  },
  "Resources": {
    "thing": {
      "Type": "AWS::IoT::Thing",
      "Properties": {
        "ThingName": {"Fn::Join": ["", ["sensor_", {"Ref": "SerialNumber"}]]},
        "AttributePayload": {"version": "v1", "location": {"Ref": "DeviceLocation"}},
        "ThingGroups": ["fleet"]
      },
      "OverrideSettings": {"AttributePayload": "MERGE", "ThingGroups": "DO_NOTHING"}
    },
    "certificate": {
      "Type": "AWS::IoT::Certificate",
      "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}
    },
    "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "device"}}
  },
  "DeviceConfiguration": {"FallbackUrl": "https://example.invalid/fallback",
                          "Location": {"Ref": "DeviceLocation"}}
}"#;

const DEVICE_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[
  {"Effect":"Allow","Action":["iot:Connect","iot:Publish"],"Resource":"*"}]}"#;

fn arn() -> ArnPrefix {
    ArnPrefix::new("aws", "us-east-1", "123456789012").expect("valid ARN prefix")
}

struct Setup {
    registry: Registry,
    fleet: FleetProvisioning,
    claim: CertificateId,
    ca: Arc<CertificateAuthority>,
    now: SystemTime,
}

fn setup_with(config: FleetConfig) -> Setup {
    let ca = Arc::new(
        CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
            .expect("CA"),
    );
    let mut registry = Registry::in_memory();
    registry
        .register_ca_certificate(ca.certificate_der(), CaStatus::Active, false)
        .expect("register CA");
    registry.create_thing_group("fleet", None).expect("group");
    registry
        .create_policy("device", DEVICE_POLICY, std::time::SystemTime::now())
        .expect("device policy");
    // The claim certificate baked into every device at the factory.
    let claim = ca
        .create_keys_and_certificate("claim", CaKeyType::P256, std::time::SystemTime::now())
        .expect("claim certificate");
    let claim = registry
        .register_certificate(
            &claim.certificate.der,
            CertificateStatus::Active,
            std::time::SystemTime::now(),
        )
        .expect("register claim");
    let policy = claim_policy(&arn(), &["FleetTemplate"]).expect("claim policy");
    registry
        .create_policy("claim", &policy, std::time::SystemTime::now())
        .expect("claim policy valid");
    registry
        .attach_policy("claim", &PolicyTarget::Certificate(claim))
        .expect("attach claim policy");
    let mut fleet = FleetProvisioning::new(Arc::clone(&ca), config);
    let template =
        ProvisioningTemplate::parse(TEMPLATE, &TemplateLimits::default()).expect("template");
    fleet
        .add_template("FleetTemplate", template)
        .expect("add template");
    Setup {
        registry,
        fleet,
        claim,
        ca,
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    }
}

fn setup() -> Setup {
    setup_with(FleetConfig::default())
}

impl Setup {
    fn publish(&mut self, topic: &str, payload: &[u8]) -> Reply {
        let claim = self.claim;
        self.publish_as(&claim, topic, payload)
    }

    fn publish_as(&mut self, client: &CertificateId, topic: &str, payload: &[u8]) -> Reply {
        let mut replies = self
            .fleet
            .handle(&mut self.registry, client, topic, payload, self.now)
            .expect("a provisioning topic");
        assert_eq!(replies.len(), 1);
        replies.remove(0)
    }

    /// CreateKeysAndCertificate as the SDK sample does it: `{}` on `$aws/certificates/create/json`.
    fn create_keys(&mut self) -> Value {
        let reply = self.publish("$aws/certificates/create/json", b"{}");
        assert_eq!(reply.topic, "$aws/certificates/create/json/accepted");
        serde_json::from_slice(&reply.payload).expect("JSON reply")
    }

    fn register_thing(&mut self, token: &str, serial: &str) -> Reply {
        let request = json!({
            "certificateOwnershipToken": token,
            "parameters": {"SerialNumber": serial},
        });
        self.publish(
            "$aws/provisioning-templates/FleetTemplate/provision/json",
            request.to_string().as_bytes(),
        )
    }
}

fn body(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.payload).expect("JSON reply")
}

fn der_of(pem: &str) -> Vec<u8> {
    thingkit_provision::decode_pem_blocks(pem)
        .expect("PEM")
        .into_iter()
        .next()
        .expect("one block")
        .1
}

#[test]
fn device_provisions_itself_with_create_keys_and_register_thing_like_the_sdk_sample() {
    let mut s = setup();
    let created = s.create_keys();
    for field in [
        "certificateId",
        "certificatePem",
        "privateKey",
        "certificateOwnershipToken",
    ] {
        assert!(created[field].is_string(), "missing {field} in {created}");
    }
    let token = created["certificateOwnershipToken"]
        .as_str()
        .expect("token");
    assert!(token.len() >= 32, "at least 128 bits");
    let der = der_of(created["certificatePem"].as_str().expect("pem"));
    let id = CertificateId::of_der(&der);
    assert_eq!(created["certificateId"], id.to_string());
    // Not usable before RegisterThing.
    assert_eq!(
        s.registry.certificate(&id).map(|c| c.status),
        Some(CertificateStatus::PendingActivation)
    );
    assert!(
        s.registry
            .authenticate(&[&der], std::time::SystemTime::now())
            .is_err()
    );

    let reply = s.register_thing(token, "0042");
    assert_eq!(
        reply.topic,
        "$aws/provisioning-templates/FleetTemplate/provision/json/accepted"
    );
    let accepted = body(&reply);
    assert_eq!(accepted["thingName"], "sensor_0042");
    assert_eq!(
        accepted["deviceConfiguration"],
        json!({"FallbackUrl": "https://example.invalid/fallback", "Location": "lab"})
    );

    // The new certificate authenticates as the thing, with the template's policy.
    let identity = s
        .registry
        .authenticate(&[&der], std::time::SystemTime::now())
        .expect("new certificate works");
    assert_eq!(identity.thing.as_deref(), Some("sensor_0042"));
    assert_eq!(&*identity.policies[0].name, "device");
    let thing = s.registry.thing("sensor_0042").expect("thing");
    assert_eq!(thing.groups, vec!["fleet".into()]);
    assert_eq!(thing.attributes.get("location").map(|v| &**v), Some("lab"));
    assert_eq!(s.fleet.pending_tokens(), 0);
}

#[test]
fn device_provisions_itself_from_a_csr_over_cbor() {
    let mut s = setup();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "sensor");
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .expect("CSR")
        .pem()
        .expect("PEM");

    let mut payload = Vec::new();
    ciborium::ser::into_writer(&json!({"certificateSigningRequest": csr}), &mut payload)
        .expect("CBOR");
    let reply = s.publish("$aws/certificates/create-from-csr/cbor", &payload);
    assert_eq!(
        reply.topic,
        "$aws/certificates/create-from-csr/cbor/accepted"
    );
    let created: Value = ciborium::de::from_reader(&reply.payload[..]).expect("CBOR reply");
    assert!(
        created.get("privateKey").is_none(),
        "the key never left the device"
    );
    let token = created["certificateOwnershipToken"]
        .as_str()
        .expect("token");
    let der = der_of(created["certificatePem"].as_str().expect("pem"));

    let mut request = Vec::new();
    ciborium::ser::into_writer(
        &json!({"certificateOwnershipToken": token, "parameters": {"SerialNumber": "7", "DeviceLocation": "roof"}}),
        &mut request,
    )
    .expect("CBOR");
    let reply = s.publish(
        "$aws/provisioning-templates/FleetTemplate/provision/cbor",
        &request,
    );
    assert!(reply.is_accepted(), "{reply:?}");
    let accepted: Value = ciborium::de::from_reader(&reply.payload[..]).expect("CBOR reply");
    assert_eq!(accepted["thingName"], "sensor_7");
    assert_eq!(accepted["deviceConfiguration"]["Location"], "roof");
    let identity = s
        .registry
        .authenticate(&[&der], std::time::SystemTime::now())
        .expect("authenticates");
    assert_eq!(identity.thing.as_deref(), Some("sensor_7"));
}

#[test]
fn claim_certificate_can_do_nothing_but_provision() {
    let s = setup();
    let mut set = PolicySet::new();
    for p in s.registry.effective_policies(&s.claim).expect("policies") {
        set.add(&*p.name, p.version.document.parsed())
            .expect("compile");
    }
    let ctx = Context::with_client_id("factory-device");
    let a = arn();
    let allowed = [
        a.connect("factory-device"),
        a.publish("$aws/certificates/create/json", false),
        a.subscribe("$aws/certificates/create/json/accepted"),
        a.receive("$aws/certificates/create/json/rejected"),
        a.publish("$aws/certificates/create-from-csr/cbor", false),
        a.publish(
            "$aws/provisioning-templates/FleetTemplate/provision/json",
            false,
        ),
        a.subscribe("$aws/provisioning-templates/FleetTemplate/provision/json/accepted"),
    ];
    for r in &allowed {
        assert_eq!(set.decide(r, &ctx), Decision::Allow, "{}", r.resource());
    }
    let denied = [
        a.publish("devices/factory-device/telemetry", false),
        a.subscribe("#"),
        a.subscribe("$aws/certificates/#"),
        a.publish(
            "$aws/provisioning-templates/OtherTemplate/provision/json",
            false,
        ),
        a.publish("$aws/things/sensor_1/shadow/update", false),
        a.receive("devices/sensor_1/commands"),
        a.publish("$aws/certificates/create/json", true),
    ];
    for r in &denied {
        assert_ne!(set.decide(r, &ctx), Decision::Allow, "{}", r.resource());
    }
}

#[test]
fn ownership_token_is_single_use() {
    let mut s = setup();
    let created = s.create_keys();
    let token = created["certificateOwnershipToken"]
        .as_str()
        .expect("token");
    assert!(s.register_thing(token, "1").is_accepted());
    let again = s.register_thing(token, "2");
    assert!(again.topic.ends_with("/rejected"));
    assert_eq!(
        body(&again)["errorCode"],
        "InvalidCertificateOwnershipToken"
    );
    assert_eq!(body(&again)["statusCode"], 400);
    assert!(s.registry.thing("sensor_2").is_none());
}

#[test]
fn expired_token_is_refused_and_the_unclaimed_certificate_deleted() {
    let mut s = setup();
    let created = s.create_keys();
    let token = created["certificateOwnershipToken"]
        .as_str()
        .expect("token");
    let id: CertificateId = created["certificateId"]
        .as_str()
        .expect("id")
        .parse()
        .expect("hex id");
    s.now += Duration::from_secs(3599);
    assert!(s.fleet.expire(&mut s.registry, s.now).is_empty());
    s.now += Duration::from_secs(1);
    let reply = s.register_thing(token, "1");
    assert_eq!(
        body(&reply)["errorCode"],
        "InvalidCertificateOwnershipToken"
    );
    assert!(
        s.registry.certificate(&id).is_none(),
        "unclaimed certificate removed"
    );
    assert!(s.registry.thing("sensor_1").is_none());
}

#[test]
fn token_of_another_claim_certificate_is_refused() {
    let mut s = setup();
    let created = s.create_keys();
    let token = created["certificateOwnershipToken"]
        .as_str()
        .expect("token");
    let other =
        s.ca.create_keys_and_certificate("claim-2", CaKeyType::P256, std::time::SystemTime::now())
            .expect("other claim");
    let other = s
        .registry
        .register_certificate(
            &other.certificate.der,
            CertificateStatus::Active,
            std::time::SystemTime::now(),
        )
        .expect("register");
    let request = json!({"certificateOwnershipToken": token, "parameters": {"SerialNumber": "9"}});
    let reply = s.publish_as(
        &other,
        "$aws/provisioning-templates/FleetTemplate/provision/json",
        request.to_string().as_bytes(),
    );
    assert_eq!(
        body(&reply)["errorCode"],
        "InvalidCertificateOwnershipToken"
    );
    assert!(s.registry.thing("sensor_9").is_none());
    // The rightful owner still can.
    assert!(s.register_thing(token, "9").is_accepted());
}

#[test]
fn template_naming_another_certificate_than_the_token_is_refused() {
    let mut s = setup();
    let victim = s.create_keys();
    let victim_id = victim["certificateId"].as_str().expect("id").to_owned();
    let attacker = s.create_keys();
    let token = attacker["certificateOwnershipToken"]
        .as_str()
        .expect("token");
    let text = TEMPLATE.replace(
        r#"{"Ref": "AWS::IoT::Certificate::Id"}"#,
        &format!("\"{victim_id}\""),
    );
    let template = ProvisioningTemplate::parse(&text, &TemplateLimits::default()).expect("parse");
    s.fleet.add_template("Hardcoded", template).expect("add");
    let request = json!({"certificateOwnershipToken": token, "parameters": {"SerialNumber": "5"}});
    let reply = s.publish(
        "$aws/provisioning-templates/Hardcoded/provision/json",
        request.to_string().as_bytes(),
    );
    assert_eq!(
        body(&reply)["errorCode"],
        "InvalidCertificateOwnershipToken"
    );
    let victim_id: CertificateId = victim_id.parse().expect("id");
    assert_eq!(
        s.registry.certificate(&victim_id).map(|c| c.status),
        Some(CertificateStatus::PendingActivation)
    );
}

#[test]
fn hook_denial_and_timeout_fail_closed_and_overrides_apply() {
    let mut s = setup_with(
        FleetConfig::default()
            .with_hook(HookConfig::default().with_timeout(Duration::from_millis(50))),
    );
    let template = ProvisioningTemplate::parse(TEMPLATE, &TemplateLimits::default()).expect("t");
    s.fleet
        .add_template_with_hook("FleetTemplate", template, |r: &HookRequest| {
            match r.parameters.get("SerialNumber").map(String::as_str) {
                Some("slow") => {
                    std::thread::sleep(Duration::from_millis(2000));
                    HookResponse::allow()
                }
                Some("banned") => HookResponse::deny(),
                _ => HookResponse {
                    allow_provisioning: true,
                    parameter_overrides: [("DeviceLocation".to_string(), "hook".to_string())]
                        .into(),
                },
            }
        })
        .expect("add");
    let created = s.create_keys();
    let token = created["certificateOwnershipToken"]
        .as_str()
        .expect("token");
    for serial in ["slow", "banned"] {
        let reply = s.register_thing(token, serial);
        assert_eq!(body(&reply)["statusCode"], 403, "{serial}");
        assert_eq!(body(&reply)["errorCode"], "AccessDenied");
        assert!(s.registry.thing(&format!("sensor_{serial}")).is_none());
    }
    let reply = s.register_thing(token, "ok");
    assert!(reply.is_accepted());
    assert_eq!(body(&reply)["deviceConfiguration"]["Location"], "hook");
}

#[test]
fn failed_registration_leaves_no_partial_thing_certificate_or_attachment() {
    let mut s = setup();
    // The thing group does not exist: the last step fails after the certificate was activated
    // and the thing created inside the batch.
    let text = TEMPLATE.replace(r#"["fleet"]"#, r#"["missing-group"]"#);
    let template = ProvisioningTemplate::parse(&text, &TemplateLimits::default()).expect("t");
    s.fleet
        .add_template("FleetTemplate", template)
        .expect("add");
    let created = s.create_keys();
    let token = created["certificateOwnershipToken"]
        .as_str()
        .expect("token");
    let id: CertificateId = created["certificateId"]
        .as_str()
        .expect("id")
        .parse()
        .expect("id");
    let things_before = s.registry.thing_count();
    let reply = s.register_thing(token, "3");
    assert!(reply.topic.ends_with("/rejected"), "{reply:?}");
    assert_eq!(s.registry.thing_count(), things_before);
    assert!(s.registry.thing("sensor_3").is_none());
    let cert = s.registry.certificate(&id).expect("still pending");
    assert_eq!(cert.status, CertificateStatus::PendingActivation);
    assert!(cert.things.is_empty() && cert.policies.is_empty());
    // Same with a policy that does not exist (the last resource applied).
    let text = TEMPLATE.replace(r#""PolicyName": "device""#, r#""PolicyName": "nope""#);
    let template = ProvisioningTemplate::parse(&text, &TemplateLimits::default()).expect("t");
    s.fleet
        .add_template("FleetTemplate", template)
        .expect("add");
    let reply = s.register_thing(token, "3");
    assert!(reply.topic.ends_with("/rejected"), "{reply:?}");
    assert!(s.registry.thing("sensor_3").is_none());
    let cert = s.registry.certificate(&id).expect("still pending");
    assert_eq!(cert.status, CertificateStatus::PendingActivation);
    assert!(cert.things.is_empty() && cert.policies.is_empty());
}

#[test]
fn bad_requests_get_the_aws_error_body() {
    let mut s = setup();
    let cases: [(&str, &[u8], u16, &str); 6] = [
        (
            "$aws/certificates/create/json",
            b"{\"x\":1}",
            400,
            "InvalidPayload",
        ),
        (
            "$aws/certificates/create/json",
            b"not json",
            400,
            "InvalidPayload",
        ),
        (
            "$aws/certificates/create-from-csr/json",
            b"{\"certificateSigningRequest\":\"junk\"}",
            400,
            "InvalidCsr",
        ),
        (
            "$aws/provisioning-templates/Nope/provision/json",
            b"{\"certificateOwnershipToken\":\"t\"}",
            404,
            "ResourceNotFound",
        ),
        (
            "$aws/provisioning-templates/FleetTemplate/provision/json",
            b"{\"certificateOwnershipToken\":\"t\"}",
            400,
            "InvalidCertificateOwnershipToken",
        ),
        (
            "$aws/certificates/create/cbor",
            &[0xa1, 0x61],
            400,
            "InvalidPayload",
        ),
    ];
    for (topic, payload, code, error) in cases {
        let reply = s.publish(topic, payload);
        assert_eq!(reply.topic, format!("{topic}/rejected"));
        let b: Value = if topic.ends_with("cbor") {
            ciborium::de::from_reader(&reply.payload[..]).expect("CBOR")
        } else {
            body(&reply)
        };
        assert_eq!(b["statusCode"], code, "{topic}");
        assert_eq!(b["errorCode"], error, "{topic}");
        assert!(b["errorMessage"].is_string());
    }
    // Missing parameter (no default) is InvalidParameters, and the token survives it.
    let created = s.create_keys();
    let token = created["certificateOwnershipToken"]
        .as_str()
        .expect("token");
    let request = json!({"certificateOwnershipToken": token});
    let reply = s.publish(
        "$aws/provisioning-templates/FleetTemplate/provision/json",
        request.to_string().as_bytes(),
    );
    assert_eq!(body(&reply)["errorCode"], "InvalidParameters");
    assert!(s.register_thing(token, "1").is_accepted());
    // Other topics are not ours.
    let claim = s.claim;
    for topic in [
        "devices/x",
        "$aws/certificates/create/json/accepted",
        "$aws/certificates/create/xml",
        "$aws/provisioning-templates/FleetTemplate/provision/json/accepted",
    ] {
        assert!(
            s.fleet
                .handle(&mut s.registry, &claim, topic, b"{}", s.now)
                .is_none(),
            "{topic}"
        );
    }
}

fn jit_setup() -> (
    Registry,
    FleetProvisioning,
    Arc<CertificateAuthority>,
    CertificateId,
) {
    let manufacturer = Arc::new(
        CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
            .expect("CA"),
    );
    let mut registry = Registry::in_memory();
    let ca_id = registry
        .register_ca_certificate(manufacturer.certificate_der(), CaStatus::Active, true)
        .expect("register CA");
    let fleet = FleetProvisioning::new(Arc::clone(&manufacturer), FleetConfig::default());
    (registry, fleet, manufacturer, ca_id)
}

#[test]
fn jitr_registers_an_unknown_certificate_pending_activation_with_an_event() {
    let (mut registry, mut fleet, ca, ca_id) = jit_setup();
    let device = ca
        .create_keys_and_certificate("dev-1", CaKeyType::P256, std::time::SystemTime::now())
        .expect("device");
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let outcome = fleet
        .on_unknown_certificate(&mut registry, &[&device.certificate.der], now)
        .expect("JITR");
    let JitOutcome::Registered {
        certificate_id,
        event,
    } = outcome
    else {
        panic!("expected JITR, got {outcome:?}");
    };
    assert_eq!(
        event.topic,
        format!("$aws/events/certificates/registered/{ca_id}")
    );
    let e: Value = serde_json::from_slice(&event.payload).expect("event JSON");
    assert_eq!(e["certificateStatus"], "PENDING_ACTIVATION");
    assert_eq!(e["certificateId"], certificate_id.to_string());
    assert!(
        registry
            .authenticate(&[&device.certificate.der], std::time::SystemTime::now())
            .is_err()
    );
    registry
        .update_certificate(
            &certificate_id,
            CertificateStatus::Active,
            std::time::SystemTime::now(),
        )
        .expect("operator activates");
    assert!(
        registry
            .authenticate(&[&device.certificate.der], std::time::SystemTime::now())
            .is_ok()
    );
    // A second first connection is refused.
    assert!(
        fleet
            .on_unknown_certificate(&mut registry, &[&device.certificate.der], now)
            .is_err()
    );
}

#[test]
fn jitp_provisions_an_unknown_certificate_with_the_ca_template() {
    let (mut registry, mut fleet, ca, ca_id) = jit_setup();
    registry
        .create_policy("device", DEVICE_POLICY, std::time::SystemTime::now())
        .expect("policy");
    let template = ProvisioningTemplate::parse(
        r#"{"Parameters": {"AWS::IoT::Certificate::CommonName": {"Type": "String"},
                           "AWS::IoT::Certificate::Id": {"Type": "String"}},
            "Resources": {
              "thing": {"Type": "AWS::IoT::Thing", "Properties": {
                 "ThingName": {"Ref": "AWS::IoT::Certificate::CommonName"}}},
              "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
                 "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}},
              "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "device"}}}}"#,
        &TemplateLimits::default(),
    )
    .expect("template");
    fleet
        .set_registration_template(ca_id, template)
        .expect("set");
    let device = ca
        .create_keys_and_certificate("meter-77", CaKeyType::P256, std::time::SystemTime::now())
        .expect("device");
    let now = SystemTime::UNIX_EPOCH;
    let outcome = fleet
        .on_unknown_certificate(&mut registry, &[&device.certificate.der], now)
        .expect("JITP");
    assert!(
        matches!(
            &outcome,
            JitOutcome::Provisioned { status: CertificateStatus::Active, thing_name: Some(t), .. } if t == "meter-77"
        ),
        "{outcome:?}"
    );
    let identity = registry
        .authenticate(&[&device.certificate.der], std::time::SystemTime::now())
        .expect("active");
    assert_eq!(identity.thing.as_deref(), Some("meter-77"));

    // A JITP template failure registers nothing at all.
    registry
        .create_thing("clash", None, &[("a", "1")])
        .expect("thing");
    let failing = ProvisioningTemplate::parse(
        r#"{"Resources": {
              "thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": "clash",
                 "AttributePayload": {"a": "2"}}, "OverrideSettings": {"AttributePayload": "FAIL"}},
              "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
                 "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}}}}}"#,
        &TemplateLimits::default(),
    )
    .expect("template");
    fleet
        .set_registration_template(ca_id, failing)
        .expect("set");
    let other = ca
        .create_keys_and_certificate("meter-78", CaKeyType::P256, std::time::SystemTime::now())
        .expect("device");
    let count = registry.certificate_count();
    assert!(
        fleet
            .on_unknown_certificate(&mut registry, &[&other.certificate.der], now)
            .is_err()
    );
    assert_eq!(registry.certificate_count(), count);
    assert_eq!(
        registry
            .thing("clash")
            .and_then(|t| t.attributes.get("a"))
            .map(|v| &**v),
        Some("1")
    );
}

#[test]
fn jit_refuses_a_ca_without_auto_registration() {
    let (mut registry, mut fleet, ca, ca_id) = jit_setup();
    registry
        .update_ca_certificate(&ca_id, CaStatus::Active, false)
        .expect("disable auto-registration");
    let device = ca
        .create_keys_and_certificate("d", CaKeyType::P256, std::time::SystemTime::now())
        .expect("device");
    assert!(
        fleet
            .on_unknown_certificate(
                &mut registry,
                &[&device.certificate.der],
                SystemTime::UNIX_EPOCH
            )
            .is_err()
    );
    assert_eq!(registry.certificate_count(), 0);
}

#[test]
fn existing_thing_follows_the_override_settings() {
    let mut s = setup();
    s.registry
        .create_thing("sensor_1", None, &[("version", "v0"), ("old", "x")])
        .expect("thing");
    // MERGE attributes (the template's setting): new values win, other attributes stay.
    let created = s.create_keys();
    let token = created["certificateOwnershipToken"]
        .as_str()
        .expect("token");
    assert!(s.register_thing(token, "1").is_accepted());
    let thing = s.registry.thing("sensor_1").expect("thing");
    assert_eq!(thing.attributes.get("version").map(|v| &**v), Some("v1"));
    assert_eq!(thing.attributes.get("old").map(|v| &**v), Some("x"));
    assert!(
        thing.groups.is_empty(),
        "ThingGroups DO_NOTHING keeps the groups"
    );

    // REPLACE attributes and groups.
    let text = TEMPLATE
        .replace(
            r#""AttributePayload": "MERGE""#,
            r#""AttributePayload": "REPLACE""#,
        )
        .replace(
            r#""ThingGroups": "DO_NOTHING""#,
            r#""ThingGroups": "REPLACE""#,
        );
    let template = ProvisioningTemplate::parse(&text, &TemplateLimits::default()).expect("t");
    s.fleet
        .add_template("FleetTemplate", template)
        .expect("add");
    let created = s.create_keys();
    let token = created["certificateOwnershipToken"]
        .as_str()
        .expect("token");
    assert!(s.register_thing(token, "1").is_accepted());
    let thing = s.registry.thing("sensor_1").expect("thing");
    assert!(!thing.attributes.contains_key("old"));
    assert_eq!(thing.groups, vec!["fleet".into()]);

    // FAIL: a differing attribute payload rejects the whole registration.
    s.registry
        .update_thing("sensor_1", None, &[("version", Some("v9"))])
        .expect("update");
    let text = TEMPLATE.replace(
        r#""AttributePayload": "MERGE""#,
        r#""AttributePayload": "FAIL""#,
    );
    let template = ProvisioningTemplate::parse(&text, &TemplateLimits::default()).expect("t");
    s.fleet
        .add_template("FleetTemplate", template)
        .expect("add");
    let created = s.create_keys();
    let token = created["certificateOwnershipToken"]
        .as_str()
        .expect("token");
    let id: CertificateId = created["certificateId"]
        .as_str()
        .expect("id")
        .parse()
        .expect("id");
    let reply = s.register_thing(token, "1");
    assert_eq!(body(&reply)["statusCode"], 409);
    assert_eq!(
        s.registry.certificate(&id).map(|c| c.status),
        Some(CertificateStatus::PendingActivation)
    );
}

#[test]
fn failed_registration_leaves_nothing_in_the_durable_store() {
    use thingkit_provision::RedbStore;
    use thingkit_provision::RegistryLimits;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("registry.redb");
    let ca = Arc::new(
        CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
            .expect("CA"),
    );
    let claim = ca
        .create_keys_and_certificate("claim", CaKeyType::P256, std::time::SystemTime::now())
        .expect("claim");
    let (id, things, certs) = {
        let store = RedbStore::open(&path).expect("open");
        let mut registry = Registry::open(store, RegistryLimits::default()).expect("registry");
        registry
            .register_ca_certificate(ca.certificate_der(), CaStatus::Active, false)
            .expect("CA");
        let claim_id = registry
            .register_certificate(
                &claim.certificate.der,
                CertificateStatus::Active,
                std::time::SystemTime::now(),
            )
            .expect("claim");
        let mut fleet = FleetProvisioning::new(Arc::clone(&ca), FleetConfig::default());
        // The policy "device" does not exist: the last step fails.
        let template =
            ProvisioningTemplate::parse(TEMPLATE, &TemplateLimits::default()).expect("t");
        fleet.add_template("FleetTemplate", template).expect("add");
        registry.create_thing_group("fleet", None).expect("group");
        let now = SystemTime::now();
        let replies = fleet
            .handle(
                &mut registry,
                &claim_id,
                "$aws/certificates/create/json",
                b"{}",
                now,
            )
            .expect("topic");
        let created = body(&replies[0]);
        let request = json!({"certificateOwnershipToken": created["certificateOwnershipToken"],
                             "parameters": {"SerialNumber": "1"}});
        let replies = fleet
            .handle(
                &mut registry,
                &claim_id,
                "$aws/provisioning-templates/FleetTemplate/provision/json",
                request.to_string().as_bytes(),
                now,
            )
            .expect("topic");
        assert!(replies[0].topic.ends_with("/rejected"));
        let id: CertificateId = created["certificateId"]
            .as_str()
            .expect("id")
            .parse()
            .expect("id");
        (id, registry.thing_count(), registry.certificate_count())
    };
    let reopened = Registry::open(
        RedbStore::open(&path).expect("reopen"),
        RegistryLimits::default(),
    )
    .expect("registry");
    assert_eq!(reopened.thing_count(), things);
    assert!(reopened.thing("sensor_1").is_none());
    assert_eq!(reopened.certificate_count(), certs);
    let cert = reopened.certificate(&id).expect("pending certificate");
    assert_eq!(cert.status, CertificateStatus::PendingActivation);
    assert!(cert.things.is_empty() && cert.policies.is_empty());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn join_of_split_is_the_identity(text in "[a-z,;:]{0,60}", delim in "[,;:]{1,2}") {
            let template = ProvisioningTemplate::parse(
                r#"{"Parameters": {"T": {"Type": "String"}, "D": {"Type": "String"}},
                    "Resources": {"t": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName":
                      {"Fn::Join": [{"Ref": "D"}, {"Fn::Split": [{"Ref": "D"}, {"Ref": "T"}]}]}}}}}"#,
                &TemplateLimits::default(),
            ).expect("template");
            let params = [("T".to_string(), text.clone()), ("D".to_string(), delim)].into();
            match template.render(&params, &Default::default()) {
                Ok(r) => prop_assert_eq!(r.thing.map(|t| t.name), Some(text)),
                // Only the list limit may refuse it.
                Err(e) => prop_assert!(e.to_string().contains("more than 100"), "{}", e),
            }
        }

        #[test]
        fn any_payload_on_any_topic_gets_exactly_one_wellformed_answer(
            topic in 0usize..6,
            payload in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let topics = [
                "$aws/certificates/create/json",
                "$aws/certificates/create/cbor",
                "$aws/certificates/create-from-csr/json",
                "$aws/certificates/create-from-csr/cbor",
                "$aws/provisioning-templates/FleetTemplate/provision/json",
                "$aws/provisioning-templates/FleetTemplate/provision/cbor",
            ];
            let topic = topics[topic];
            let mut s = setup();
            let reply = s.publish(topic, &payload);
            if reply.topic.ends_with("/rejected") {
                let b: Value = if topic.ends_with("cbor") {
                    ciborium::de::from_reader(&reply.payload[..]).expect("CBOR")
                } else {
                    body(&reply)
                };
                prop_assert!(b["statusCode"].is_u64() && b["errorCode"].is_string());
            } else {
                prop_assert_eq!(reply.topic, format!("{topic}/accepted"));
            }
        }

        #[test]
        fn json_and_cbor_requests_provision_the_same_thing(serial in "[A-Za-z0-9]{1,20}") {
            let mut results = Vec::new();
            for format in ["json", "cbor"] {
                let mut s = setup();
                let created = s.create_keys();
                let request = json!({
                    "certificateOwnershipToken": created["certificateOwnershipToken"],
                    "parameters": {"SerialNumber": serial},
                });
                let payload = if format == "json" {
                    request.to_string().into_bytes()
                } else {
                    let mut out = Vec::new();
                    ciborium::ser::into_writer(&request, &mut out).expect("CBOR");
                    out
                };
                let reply = s.publish(
                    &format!("$aws/provisioning-templates/FleetTemplate/provision/{format}"),
                    &payload,
                );
                prop_assert!(reply.is_accepted());
                let b: Value = if format == "cbor" {
                    ciborium::de::from_reader(&reply.payload[..]).expect("CBOR")
                } else {
                    body(&reply)
                };
                results.push(b);
            }
            prop_assert_eq!(&results[0], &results[1]);
            let expected = format!("sensor_{serial}");
            prop_assert_eq!(results[0]["thingName"].as_str(), Some(expected.as_str()));
        }
    }
}

#[test]
fn one_claim_certificate_cannot_hoard_ownership_tokens() {
    let mut s = setup_with(FleetConfig::default().with_max_pending_tokens_per_claim(2));
    s.create_keys();
    let created = s.create_keys();
    let reply = s.publish("$aws/certificates/create/json", b"{}");
    assert_eq!(body(&reply)["statusCode"], 429);
    assert_eq!(body(&reply)["errorCode"], "Throttled");
    // Consuming a token frees a slot.
    let token = created["certificateOwnershipToken"]
        .as_str()
        .expect("token");
    assert!(s.register_thing(token, "1").is_accepted());
    assert!(
        s.publish("$aws/certificates/create/json", b"{}")
            .is_accepted()
    );
    // Another claim certificate is not affected by this one's quota.
    let other =
        s.ca.create_keys_and_certificate("claim-2", CaKeyType::P256, std::time::SystemTime::now())
            .expect("claim");
    let other = s
        .registry
        .register_certificate(
            &other.certificate.der,
            CertificateStatus::Active,
            std::time::SystemTime::now(),
        )
        .expect("register");
    assert!(
        s.publish_as(&other, "$aws/certificates/create/json", b"{}")
            .is_accepted()
    );
}

// ----------------------------------------------------------------------------------------------
// RegisterThing in two steps: prepare (under the registry), the hook (without it), commit.

const REGISTER_TOPIC: &str = "$aws/provisioning-templates/FleetTemplate/provision/json";

/// Prepares a RegisterThing that must pass the pre-hook checks.
fn prepare_register(s: &mut Setup, token: &str, serial: &str) -> PendingRegistration {
    let request = json!({
        "certificateOwnershipToken": token,
        "parameters": {"SerialNumber": serial},
    });
    let claim = s.claim;
    match s
        .fleet
        .prepare(
            &mut s.registry,
            &claim,
            REGISTER_TOPIC,
            request.to_string().as_bytes(),
            s.now,
        )
        .expect("a provisioning topic")
    {
        Prepared::Register(pending) => pending,
        Prepared::Replies(replies) => panic!("refused before the hook: {replies:?}"),
    }
}

#[test]
fn two_register_things_with_one_token_in_flight_commit_exactly_once() {
    let mut s = setup();
    let created = s.create_keys();
    let token = created["certificateOwnershipToken"]
        .as_str()
        .expect("token")
        .to_owned();
    // Both requests pass the checks while the token is unused (their hooks would run now,
    // concurrently, with no registry borrowed).
    let first = prepare_register(&mut s, &token, "first");
    let second = prepare_register(&mut s, &token, "second");
    let (first_outcome, second_outcome) = (first.run_hook(), second.run_hook());
    assert!(first_outcome.is_allowed() && second_outcome.is_allowed());

    let now = s.now;
    let second_replies = s.fleet.commit(&mut s.registry, second, second_outcome, now);
    let first_replies = s.fleet.commit(&mut s.registry, first, first_outcome, now);
    assert!(second_replies[0].is_accepted(), "{second_replies:?}");
    assert!(!first_replies[0].is_accepted());
    assert_eq!(first_replies[0].topic, format!("{REGISTER_TOPIC}/rejected"));
    assert!(
        body(&first_replies[0])["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("already used")),
        "{:?}",
        body(&first_replies[0])
    );
    assert!(s.registry.thing("sensor_second").is_some());
    assert!(s.registry.thing("sensor_first").is_none());
    assert_eq!(s.fleet.pending_tokens(), 0);
}

#[test]
fn a_token_that_expires_while_the_hook_runs_is_refused_at_commit() {
    let mut s = setup();
    let created = s.create_keys();
    let token = created["certificateOwnershipToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let pending = prepare_register(&mut s, &token, "late");
    let outcome = pending.run_hook();
    let later = s.now + FleetConfig::default().token_ttl;
    let replies = s.fleet.commit(&mut s.registry, pending, outcome, later);
    assert!(!replies[0].is_accepted());
    assert!(s.registry.thing("sensor_late").is_none());
}

#[test]
fn a_hook_outcome_cannot_be_reused_for_another_registration() {
    let mut s = setup();
    let first = s.create_keys();
    let second = s.create_keys();
    let a = prepare_register(
        &mut s,
        first["certificateOwnershipToken"].as_str().expect("t"),
        "a",
    );
    let b = prepare_register(
        &mut s,
        second["certificateOwnershipToken"].as_str().expect("t"),
        "b",
    );
    let outcome_of_a = a.run_hook();
    let now = s.now;
    let replies = s.fleet.commit(&mut s.registry, b, outcome_of_a, now);
    assert!(!replies[0].is_accepted());
    assert_eq!(body(&replies[0])["statusCode"], 403);
    assert!(s.registry.thing("sensor_b").is_none());
}

#[test]
fn the_registry_stays_usable_while_a_hook_runs() {
    use std::sync::mpsc;
    use std::sync::{Mutex, RwLock};

    // Generous: the hook waits for the test, not for a clock.
    let mut s = setup_with(
        FleetConfig::default()
            .with_hook(HookConfig::default().with_timeout(Duration::from_secs(60))),
    );
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let release_rx = Mutex::new(release_rx);
    let template = ProvisioningTemplate::parse(TEMPLATE, &TemplateLimits::default()).expect("t");
    s.fleet
        .add_template_with_hook("FleetTemplate", template, move |_: &HookRequest| {
            let _ = started_tx.lock().expect("sender").send(());
            // Blocks until the test has used the registry.
            let _ = release_rx.lock().expect("receiver").recv();
            HookResponse::allow()
        })
        .expect("add");
    let device =
        s.ca.create_keys_and_certificate("bystander", CaKeyType::P256, s.now)
            .expect("device");
    s.registry
        .register_certificate(&device.certificate.der, CertificateStatus::Active, s.now)
        .expect("register");
    let created = s.create_keys();
    let token = created["certificateOwnershipToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let pending = prepare_register(&mut s, &token, "hooked");

    // The broker's shape: the registry and the service behind locks, the hook on another thread.
    let now = s.now;
    let registry = Arc::new(RwLock::new(s.registry));
    let fleet = Arc::new(Mutex::new(s.fleet));
    let worker = {
        let registry = Arc::clone(&registry);
        let fleet = Arc::clone(&fleet);
        std::thread::spawn(move || {
            let outcome = pending.run_hook();
            let mut fleet = fleet.lock().expect("fleet");
            let mut registry = registry.write().expect("registry");
            fleet.commit(&mut registry, pending, outcome, now)
        })
    };
    started_rx.recv().expect("the hook started");
    // The hook is running: nobody holds the registry, so authentication (and writes) proceed.
    drop(
        registry
            .try_write()
            .expect("no lock is held across the hook"),
    );
    let identity = registry
        .read()
        .expect("registry")
        .authenticate(&[&device.certificate.der], now)
        .expect("authenticates while the hook runs");
    assert_eq!(identity.certificate_id, device.certificate.id);
    release_tx.send(()).expect("release the hook");
    let replies = worker.join().expect("worker");
    assert!(replies[0].is_accepted(), "{replies:?}");
    assert!(
        registry
            .read()
            .expect("registry")
            .thing("sensor_hooked")
            .is_some()
    );
}

#[test]
fn a_token_issued_by_one_service_is_redeemed_by_another_with_the_same_ca_once() {
    // Two servers of a cluster: one CA, one (shared) registry, a service each.
    let mut s = setup();
    let created = s.create_keys();
    let token = created["certificateOwnershipToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let mut other = FleetProvisioning::new(Arc::clone(&s.ca), FleetConfig::default());
    other
        .add_template(
            "FleetTemplate",
            ProvisioningTemplate::parse(TEMPLATE, &TemplateLimits::default()).expect("template"),
        )
        .expect("add template");
    let request = json!({
        "certificateOwnershipToken": token,
        "parameters": {"SerialNumber": "7"},
    })
    .to_string();
    let topic = "$aws/provisioning-templates/FleetTemplate/provision/json";
    let replies = other
        .handle(&mut s.registry, &s.claim, topic, request.as_bytes(), s.now)
        .expect("a provisioning topic");
    assert!(replies[0].is_accepted(), "{:?}", body(&replies[0]));
    assert!(s.registry.thing("sensor_7").is_some());
    // Used: neither service takes it again.
    let again = s.register_thing(&token, "8");
    assert_eq!(
        body(&again)["errorCode"],
        "InvalidCertificateOwnershipToken"
    );
    let replies = other
        .handle(&mut s.registry, &s.claim, topic, request.as_bytes(), s.now)
        .expect("a provisioning topic");
    assert_eq!(
        body(&replies[0])["errorCode"],
        "InvalidCertificateOwnershipToken"
    );
}

#[test]
fn a_forged_or_altered_token_or_one_from_another_ca_is_refused() {
    let mut s = setup();
    let created = s.create_keys();
    let token = created["certificateOwnershipToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let (claims, tag) = token.split_once('.').expect("claims.signature");
    // A later expiry, the same signature.
    let mut later = claims.to_owned();
    later.replace_range(claims.len() - 1.., "f");
    let altered = format!("{later}.{tag}");
    // Signed by a service with another CA.
    let other_ca = Arc::new(
        CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
            .expect("CA"),
    );
    let mut registry = Registry::in_memory();
    registry
        .register_ca_certificate(other_ca.certificate_der(), CaStatus::Active, false)
        .expect("register the other CA");
    let mut foreign = FleetProvisioning::new(other_ca, FleetConfig::default());
    let replies = foreign
        .handle(
            &mut registry,
            &s.claim,
            "$aws/certificates/create/json",
            b"{}",
            s.now,
        )
        .expect("a provisioning topic");
    let foreign_token = body(&replies[0])["certificateOwnershipToken"]
        .as_str()
        .expect("token")
        .to_owned();
    for bad in [
        altered.as_str(),
        foreign_token.as_str(),
        claims,
        "",
        ".",
        "00.00",
        &"a".repeat(10_000),
    ] {
        let reply = s.register_thing(bad, "9");
        assert_eq!(
            body(&reply)["errorCode"],
            "InvalidCertificateOwnershipToken",
            "{bad:.40}"
        );
    }
    assert!(s.registry.thing("sensor_9").is_none());
    // The genuine one still works.
    assert!(s.register_thing(&token, "9").is_accepted());
}
