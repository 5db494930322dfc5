//! Fleet provisioning by claim, in process: a factory-fresh device holding only a shared claim
//! certificate obtains its own certificate and thing over the AWS IoT provisioning topics, the
//! way the AWS IoT device SDK fleet provisioning sample does, and then authenticates as itself.
//!
//! Run: `cargo run --example fleet`

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Value, json};
use thingkit::provision::{CaKeyType, CaOptions, CertificateAuthority};
use thingkit::provision::{CaStatus, CertificateId, CertificateStatus};
use thingkit::provision::{FleetConfig, FleetProvisioning, claim_policy};
use thingkit::provision::{HookRequest, HookResponse};
use thingkit::provision::{PolicyTarget, Registry};
use thingkit::provision::{ProvisioningTemplate, TemplateLimits};

const TEMPLATE: &str = r#"{
  "Parameters": {
    "SerialNumber": {"Type": "String"},
    "AWS::IoT::Certificate::Id": {"Type": "String"}
  },
  "Resources": {
    "thing": {"Type": "AWS::IoT::Thing", "Properties": {
      "ThingName": {"Fn::Join": ["", ["sensor_", {"Ref": "SerialNumber"}]]},
      "AttributePayload": {"serialNumber": {"Ref": "SerialNumber"}},
      "ThingGroups": ["sensors"]}},
    "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
      "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}},
    "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "sensor"}}
  },
  "DeviceConfiguration": {"TelemetryTopic": {"Fn::Sub": "devices/sensor_${SerialNumber}/telemetry"}}
}"#;

fn main() -> Result<(), Box<dyn Error>> {
    // Operator side: CA, registry, a device policy, the claim certificate and its policy.
    let ca = Arc::new(CertificateAuthority::create_root(
        &CaOptions::default(),
        std::time::SystemTime::now(),
    )?);
    let mut registry = Registry::in_memory();
    registry.register_ca_certificate(ca.certificate_der(), CaStatus::Active, false)?;
    registry.create_thing_group("sensors", None)?;
    registry.create_policy(
        "sensor",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
            "Action":["iot:Connect","iot:Publish"],"Resource":"*"}]}"#,
        std::time::SystemTime::now(),
    )?;
    let claim = ca.create_keys_and_certificate(
        "factory-claim",
        CaKeyType::P256,
        std::time::SystemTime::now(),
    )?;
    let claim_id = registry.register_certificate(
        &claim.certificate.der,
        CertificateStatus::Active,
        std::time::SystemTime::now(),
    )?;
    let arn = thingkit::policy::ArnPrefix::new("aws", "eu-central-1", "123456789012")
        .ok_or("bad ARN prefix")?;
    registry.create_policy(
        "claim",
        &claim_policy(&arn, &["SensorTemplate"])?,
        std::time::SystemTime::now(),
    )?;
    registry.attach_policy("claim", &PolicyTarget::Certificate(claim_id))?;

    let mut fleet = FleetProvisioning::new(Arc::clone(&ca), FleetConfig::default());
    let template = ProvisioningTemplate::parse(TEMPLATE, &TemplateLimits::default())?;
    // The pre-provisioning hook: only serial numbers from our production run may register.
    fleet.add_template_with_hook("SensorTemplate", template, |r: &HookRequest| {
        match r.parameters.get("SerialNumber") {
            Some(s) if s.starts_with("A-") => HookResponse::allow(),
            _ => HookResponse::deny(),
        }
    })?;

    // Device side, as the SDK sample: CreateKeysAndCertificate, then RegisterThing.
    let now = SystemTime::now();
    let mut publish = |topic: &str, payload: Value| -> Result<(String, Value), Box<dyn Error>> {
        let replies = fleet
            .handle(
                &mut registry,
                &claim_id,
                topic,
                payload.to_string().as_bytes(),
                now,
            )
            .ok_or("not a provisioning topic")?;
        let reply = replies.into_iter().next().ok_or("no reply")?;
        Ok((reply.topic, serde_json::from_slice(&reply.payload)?))
    };
    let (topic, created) = publish("$aws/certificates/create/json", json!({}))?;
    println!("{topic}: certificateId {}", created["certificateId"]);
    let token = created["certificateOwnershipToken"].clone();

    let register = "$aws/provisioning-templates/SensorTemplate/provision/json";
    let (topic, refused) = publish(
        register,
        json!({"certificateOwnershipToken": token, "parameters": {"SerialNumber": "X-1"}}),
    )?;
    println!("{topic}: {refused}");
    let (topic, accepted) = publish(
        register,
        json!({"certificateOwnershipToken": token, "parameters": {"SerialNumber": "A-1001"}}),
    )?;
    println!("{topic}: {accepted}");

    // The device reconnects with its new certificate.
    let pem = created["certificatePem"]
        .as_str()
        .ok_or("no certificatePem")?;
    let der = thingkit::provision::decode_pem_blocks(pem)?
        .into_iter()
        .next()
        .ok_or("empty PEM")?
        .1;
    let identity = registry.authenticate(&[&der], std::time::SystemTime::now())?;
    let policies: BTreeMap<_, _> = identity
        .policies
        .iter()
        .map(|p| (p.name.to_string(), p.version.version_id))
        .collect();
    println!(
        "authenticated {} as thing {:?} with policies {policies:?}",
        CertificateId::of_der(&der),
        identity.thing
    );
    Ok(())
}
