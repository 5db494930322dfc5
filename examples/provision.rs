//! Provisioning end to end: create a CA, issue a device certificate from a CSR, register
//! everything in a durable registry, authenticate the device, revoke it, and reopen the registry
//! from disk.
//!
//! Run it with `cargo run --example provision`.

use thingkit::provision::RedbStore;
use thingkit::provision::{CaKeyType, CaOptions, CertificateAuthority};
use thingkit::provision::{CaStatus, CertificateStatus};
use thingkit::provision::{PolicyTarget, Registry, RegistryEvent, RegistryLimits};

const POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [{
    "Effect": "Allow",
    "Action": ["iot:Connect", "iot:Publish"],
    "Resource": ["arn:aws:iot:eu-central-1:123456789012:client/${iot:Connection.Thing.ThingName}",
                 "arn:aws:iot:eu-central-1:123456789012:topic/telemetry/${iot:Connection.Thing.ThingName}"]
  }]
}"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir =
        std::env::temp_dir().join(format!("thingkit-provision-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("registry.redb");

    // 1. A root CA with a P-256 key.
    let ca = CertificateAuthority::create_root(
        &CaOptions::default().with_common_name("Example Fleet Root".into()),
        std::time::SystemTime::now(),
    )?;
    println!("CA created: certificate ID {}", ca.id());

    // 2. A device made its own key; we only see its CSR. (Here the "device" is simulated with
    //    CreateKeysAndCertificate; a real one sends a CSR to `ca.issue(csr, std::time::SystemTime::now())`.)
    let device = ca.create_keys_and_certificate(
        "sensor-0001",
        CaKeyType::P256,
        std::time::SystemTime::now(),
    )?;
    println!("device certificate issued: ID {}", device.certificate.id);

    // 3. Register the CA, the certificate, the thing, a group and a policy.
    let mut registry = Registry::open(RedbStore::open(&db)?, RegistryLimits::default())?;
    registry.subscribe(|event| {
        if let RegistryEvent::CertificateDeactivated {
            certificate_id,
            status,
        } = event
        {
            println!("event: certificate {certificate_id} is now {status}: disconnect it");
        }
    });
    registry.register_ca_certificate(ca.certificate_der(), CaStatus::Active, false)?;
    let id = registry.register_certificate(
        &device.certificate.der,
        CertificateStatus::Active,
        std::time::SystemTime::now(),
    )?;
    registry.create_thing_type("sensor", Some("temperature sensors"))?;
    registry.create_thing("sensor-0001", Some("sensor"), &[("site", "berlin")])?;
    registry.create_thing_group("fleet", None)?;
    registry.create_thing_group("berlin", Some("fleet"))?;
    registry.add_thing_to_group("sensor-0001", "berlin")?;
    registry.create_policy("telemetry", POLICY, std::time::SystemTime::now())?;
    registry.attach_policy("telemetry", &PolicyTarget::ThingGroup("fleet".into()))?;
    registry.attach_thing_principal("sensor-0001", &id, true)?;
    println!("registered thing sensor-0001 in group berlin (under fleet)");

    // 4. What a broker does after the TLS handshake.
    let identity =
        registry.authenticate(&[&device.certificate.der], std::time::SystemTime::now())?;
    println!(
        "authenticated: thing {:?}, policies {:?}",
        identity.thing.as_deref().unwrap_or("-"),
        identity
            .policies
            .iter()
            .map(|p| format!("{} v{}", p.name, p.version.version_id))
            .collect::<Vec<_>>()
    );

    // 5. Revoke: the event fires and authentication fails from now on.
    registry.update_certificate(
        &id,
        CertificateStatus::Revoked,
        std::time::SystemTime::now(),
    )?;
    match registry.authenticate(&[&device.certificate.der], std::time::SystemTime::now()) {
        Ok(_) => return Err("a revoked certificate authenticated".into()),
        Err(e) => println!("after revocation: {e}"),
    }
    let crl = ca.crl(
        &registry.revoked_serials(&ca.id()),
        1,
        std::time::SystemTime::now(),
    )?;
    println!("CRL signed: {} bytes, 1 revoked serial", crl.len());

    // 6. Everything acknowledged is on disk: reopen and check.
    drop(registry);
    let reopened = Registry::open(RedbStore::open(&db)?, RegistryLimits::default())?;
    let status = reopened
        .certificate(&id)
        .map(|c| c.status)
        .ok_or("certificate missing after reopen")?;
    println!(
        "reopened {}: {} thing(s), certificate status {status}",
        db.display(),
        reopened.thing_count()
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
