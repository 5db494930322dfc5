//! A small fleet for the quickstart, the load generator and the tests: a CA, the broker's server
//! certificate, an in-memory registry with a thing type, a thing group, the fleet and operator
//! policies, and devices made with `thingkit-provision`.
#![allow(dead_code)] // shared by several example and test crates; each uses a subset

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use thingkit::policy::ArnPrefix;
use thingkit::provision::{CaKeyType, CaOptions, CertificateAuthority};
use thingkit::provision::{CaStatus, CertificateId, CertificateStatus};
use thingkit::provision::{FleetConfig, FleetProvisioning, claim_policy};
use thingkit::provision::{PolicyTarget, Registry};
use thingkit::provision::{ProvisioningTemplate, TemplateLimits};

/// Errors while building the fleet.
pub type FleetError = Box<dyn std::error::Error + Send + Sync>;

/// Region and account the policies are written for (the broker's default `BrokerConfig`).
pub const REGION: &str = "eu-central-1";
/// The account.
pub const ACCOUNT: &str = "123456789012";

/// What every device may do: connect as its thing, publish its telemetry and status (retained
/// too), read the fleet's telemetry and its own firmware jobs; never publish commands.
pub const FLEET_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "ConnectAsThing", "Effect": "Allow", "Action": "iot:Connect",
     "Resource": "arn:aws:iot:eu-central-1:123456789012:client/${iot:Connection.Thing.ThingName}"},
    {"Sid": "OwnTopics", "Effect": "Allow", "Action": ["iot:Publish", "iot:RetainPublish"],
     "Resource": ["arn:aws:iot:eu-central-1:123456789012:topic/telemetry/${iot:Connection.Thing.ThingName}/*",
                  "arn:aws:iot:eu-central-1:123456789012:topic/status/${iot:Connection.Thing.ThingName}"]},
    {"Sid": "ReadFleet", "Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": ["arn:aws:iot:eu-central-1:123456789012:topicfilter/telemetry/*",
                  "arn:aws:iot:eu-central-1:123456789012:topicfilter/status/*",
                  "arn:aws:iot:eu-central-1:123456789012:topicfilter/$thingkit/things/${iot:Connection.Thing.ThingName}/firmware"]},
    {"Sid": "ReceiveFleet", "Effect": "Allow", "Action": "iot:Receive",
     "Resource": ["arn:aws:iot:eu-central-1:123456789012:topic/telemetry/*",
                  "arn:aws:iot:eu-central-1:123456789012:topic/status/*",
                  "arn:aws:iot:eu-central-1:123456789012:topic/$thingkit/things/${iot:Connection.Thing.ThingName}/firmware"]},
    {"Sid": "NoCommands", "Effect": "Deny", "Action": "iot:Publish",
     "Resource": "arn:aws:iot:eu-central-1:123456789012:topic/commands/*"}
  ]
}"#;

/// The operator: connects as `operator`, publishes firmware jobs and revocations, reads all.
pub const OPERATOR_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect",
     "Resource": "arn:aws:iot:eu-central-1:123456789012:client/operator"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:RetainPublish"],
     "Resource": ["arn:aws:iot:eu-central-1:123456789012:topic/$thingkit/*",
                  "arn:aws:iot:eu-central-1:123456789012:topic/commands/*"]},
    {"Effect": "Allow", "Action": ["iot:Subscribe", "iot:Receive"], "Resource": "*"}
  ]
}"#;

/// The fleet provisioning template `sensor`: a claim-certificate device becomes thing
/// `sensor-<SerialNumber>` of type `sensor` in group `fleet` (so the fleet policy applies), its
/// new certificate ACTIVE.
pub const SENSOR_TEMPLATE: &str = r#"{
  "Parameters": {
    "SerialNumber": {"Type": "String"},
    "Account": {"Type": "String", "Default": "acme"}
  },
  "Resources": {
    "thing": {"Type": "AWS::IoT::Thing", "Properties": {
      "ThingName": {"Fn::Join": ["-", ["sensor", {"Ref": "SerialNumber"}]]},
      "ThingTypeName": "sensor",
      "ThingGroups": ["fleet"],
      "AttributePayload": {"account": {"Ref": "Account"}}}},
    "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
      "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"},
      "Status": "ACTIVE"}}
  },
  "DeviceConfiguration": {
    "telemetryTopic": {"Fn::Sub": "telemetry/sensor-${SerialNumber}/temperature"}
  }
}"#;

/// A device's credentials.
#[derive(Clone, Debug)]
pub struct Device {
    /// The thing name (also its client ID).
    pub thing: String,
    /// The certificate ID.
    pub certificate_id: CertificateId,
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS #8 PEM).
    pub key_pem: String,
}

impl Device {
    /// Writes `<thing>.pem` and `<thing>.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
        let cert = dir.join(format!("{}.pem", self.thing));
        let key = dir.join(format!("{}.key", self.thing));
        std::fs::write(&cert, &self.cert_pem)?;
        std::fs::write(&key, &self.key_pem)?;
        Ok((cert, key))
    }
}

/// The fleet's registry for the CA `ca_der`: the CA, the thing type `sensor`, the group `fleet`
/// (with `FLEET_POLICY` attached) and the `operator` policy. A broker in another process (the
/// connection-scale benchmark) rebuilds it from the CA certificate alone.
pub fn fleet_registry(ca_der: &[u8]) -> Result<Registry, FleetError> {
    let mut registry = Registry::in_memory();
    registry.register_ca_certificate(ca_der, CaStatus::Active, false)?;
    registry.create_thing_type("sensor", Some("temperature sensors"))?;
    registry.create_thing_group("fleet", None)?;
    registry.create_policy("fleet", FLEET_POLICY, std::time::SystemTime::now())?;
    registry.attach_policy("fleet", &PolicyTarget::ThingGroup("fleet".into()))?;
    registry.create_policy("operator", OPERATOR_POLICY, std::time::SystemTime::now())?;
    Ok(registry)
}

/// Registers an issued certificate (PEM or DER) for `thing`, a `sensor` in group `fleet` with
/// `attributes`, exclusively attached.
pub fn register_device(
    registry: &mut Registry,
    thing: &str,
    cert: &[u8],
    attributes: &[(&str, &str)],
) -> Result<CertificateId, FleetError> {
    let id = registry.register_certificate(
        cert,
        CertificateStatus::Active,
        std::time::SystemTime::now(),
    )?;
    registry.create_thing(thing, Some("sensor"), attributes)?;
    registry.add_thing_to_group(thing, "fleet")?;
    registry.attach_thing_principal(thing, &id, true)?;
    Ok(id)
}

/// The fleet.
pub struct Fleet {
    /// The CA (shared with the fleet provisioning service, which signs with it too).
    pub ca: Arc<CertificateAuthority>,
    /// The broker's certificate chain (server certificate, then the CA) for localhost and
    /// 127.0.0.1.
    pub server_chain_pem: String,
    /// The broker's private key.
    pub server_key_pem: String,
    /// The registry the broker authenticates against.
    pub registry: Arc<RwLock<Registry>>,
}

impl Fleet {
    /// A CA, a server certificate, a registry with the thing type `sensor`, the group `fleet`
    /// (with `FLEET_POLICY` attached) and the `operator` policy.
    pub fn new() -> Result<Fleet, FleetError> {
        let ca = CertificateAuthority::create_root(
            &CaOptions::default().with_common_name("thingkit fleet root".into()),
            std::time::SystemTime::now(),
        )?;
        let server = ca
            .create_server_certificate(&["localhost", "127.0.0.1"], std::time::SystemTime::now())?;
        let registry = fleet_registry(ca.certificate_der())?;
        Ok(Fleet {
            server_chain_pem: format!("{}{}", server.certificate.pem(), ca.certificate_pem()),
            server_key_pem: server.private_key_pem,
            ca: Arc::new(ca),
            registry: Arc::new(RwLock::new(registry)),
        })
    }

    /// The CA certificate (PEM), what clients trust.
    pub fn ca_pem(&self) -> String {
        self.ca.certificate_pem()
    }

    /// Registers an already issued certificate for `thing` (a `sensor` in group `fleet`, with
    /// `attributes`), exclusively attached.
    pub fn register(
        &self,
        thing: &str,
        cert_pem: &str,
        attributes: &[(&str, &str)],
    ) -> Result<CertificateId, FleetError> {
        let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
        register_device(&mut registry, thing, cert_pem.as_bytes(), attributes)
    }

    /// Creates keys and a certificate (AWS CreateKeysAndCertificate) for a new device.
    pub fn add_device(
        &self,
        thing: &str,
        attributes: &[(&str, &str)],
    ) -> Result<Device, FleetError> {
        let made = self.ca.create_keys_and_certificate(
            thing,
            CaKeyType::P256,
            std::time::SystemTime::now(),
        )?;
        let cert_pem = made.certificate.pem();
        let certificate_id = self.register(thing, &cert_pem, attributes)?;
        Ok(Device {
            thing: thing.into(),
            certificate_id,
            cert_pem,
            key_pem: made.private_key_pem,
        })
    }

    /// The operator's credentials (thing `operator`, policy `operator` on its certificate).
    pub fn add_operator(&self) -> Result<Device, FleetError> {
        let made = self.ca.create_keys_and_certificate(
            "operator",
            CaKeyType::P256,
            std::time::SystemTime::now(),
        )?;
        let cert_pem = made.certificate.pem();
        let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
        let id = registry.register_certificate(
            cert_pem.as_bytes(),
            CertificateStatus::Active,
            std::time::SystemTime::now(),
        )?;
        registry.create_thing("operator", None, &[("account", "platform")])?;
        registry.attach_thing_principal("operator", &id, true)?;
        registry.attach_policy("operator", &PolicyTarget::Certificate(id))?;
        Ok(Device {
            thing: "operator".into(),
            certificate_id: id,
            cert_pem,
            key_pem: made.private_key_pem,
        })
    }

    /// Fleet provisioning by claim with the `sensor` template, and a claim certificate (thing-less,
    /// with the least-privilege claim policy). Put the service into `BrokerConfig::fleet`.
    pub fn enable_provisioning(
        &self,
    ) -> Result<(Arc<Mutex<FleetProvisioning>>, Device), FleetError> {
        let mut service = FleetProvisioning::new(Arc::clone(&self.ca), FleetConfig::default());
        service.add_template(
            "sensor",
            ProvisioningTemplate::parse(SENSOR_TEMPLATE, &TemplateLimits::default())?,
        )?;
        let arn = ArnPrefix::new("aws", REGION, ACCOUNT).ok_or("bad ARN prefix")?;
        let policy = claim_policy(&arn, &["sensor"])?;
        let made = self.ca.create_keys_and_certificate(
            "claim",
            CaKeyType::P256,
            std::time::SystemTime::now(),
        )?;
        let cert_pem = made.certificate.pem();
        let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
        registry.create_policy("claim", &policy, std::time::SystemTime::now())?;
        let id = registry.register_certificate(
            cert_pem.as_bytes(),
            CertificateStatus::Active,
            std::time::SystemTime::now(),
        )?;
        registry.attach_policy("claim", &PolicyTarget::Certificate(id))?;
        Ok((
            Arc::new(Mutex::new(service)),
            Device {
                thing: "claim".into(),
                certificate_id: id,
                cert_pem,
                key_pem: made.private_key_pem,
            },
        ))
    }

    /// A certificate signed by the CA but never registered.
    pub fn unregistered_device(&self, thing: &str) -> Result<Device, FleetError> {
        let made = self.ca.create_keys_and_certificate(
            thing,
            CaKeyType::P256,
            std::time::SystemTime::now(),
        )?;
        Ok(Device {
            thing: thing.into(),
            certificate_id: made.certificate.id,
            cert_pem: made.certificate.pem(),
            key_pem: made.private_key_pem,
        })
    }

    /// Sets a certificate's status (e.g. REVOKED), firing the registry's events.
    pub fn set_status(
        &self,
        id: &CertificateId,
        status: CertificateStatus,
    ) -> Result<(), FleetError> {
        self.registry
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .update_certificate(id, status, std::time::SystemTime::now())?;
        Ok(())
    }
}
