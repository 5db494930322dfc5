//! What the control-plane API reads from the registry: listings, policy targets, dates,
//! validity, forced deletion, and records written before the dates were kept.

use std::time::{Duration, SystemTime};

use thingkit_provision::{
    CaKeyType, CaOptions, CaStatus, Certificate, CertificateAuthority, CertificateStatus,
    PolicyTarget, Registry,
};

const ALLOW_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}"#;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

#[test]
fn certificate_records_without_dates_still_load() {
    let old = r#"{"status":"ACTIVE","serial":"01","not_after":2000000000}"#;
    let cert: Certificate = serde_json::from_str(old).unwrap();
    assert_eq!((cert.created_at, cert.modified_at), (0, 0));
}

#[test]
fn registration_and_status_changes_are_dated() {
    let ca = CertificateAuthority::create_root(&CaOptions::default(), now()).unwrap();
    let mut registry = Registry::in_memory();
    let ca_id = registry
        .register_ca_certificate_at(ca.certificate_der(), CaStatus::Active, false, now())
        .unwrap();
    assert_eq!(
        registry.ca_certificate(&ca_id).unwrap().created_at,
        1_800_000_000
    );
    let issued = ca
        .create_keys_and_certificate("d", CaKeyType::P256, now())
        .unwrap();
    assert!(issued.public_key_pem.contains("BEGIN PUBLIC KEY"));
    assert_eq!(
        registry.issuing_ca(&issued.certificate.der).unwrap(),
        Some(ca_id)
    );
    let id = registry
        .register_certificate(&issued.certificate.der, CertificateStatus::Active, now())
        .unwrap();
    let later = now() + Duration::from_secs(60);
    registry
        .update_certificate(&id, CertificateStatus::Inactive, later)
        .unwrap();
    let cert = registry.certificate(&id).unwrap();
    assert_eq!(
        (cert.created_at, cert.modified_at),
        (1_800_000_000, 1_800_000_060)
    );
    let (not_before, not_after) = registry.certificate_validity(&id).unwrap();
    assert!(not_before <= 1_800_000_000 && not_after == cert.not_after);
    assert_eq!(registry.certificates().count(), 1);
}

#[test]
fn policy_targets_and_forced_deletion() {
    let ca = CertificateAuthority::create_root(&CaOptions::default(), now()).unwrap();
    let mut registry = Registry::in_memory();
    let issued = ca
        .create_keys_and_certificate("d", CaKeyType::P256, now())
        .unwrap();
    let id = registry
        .register_certificate_without_ca(
            &issued.certificate.der,
            CertificateStatus::Inactive,
            now(),
        )
        .unwrap();
    registry.create_thing_group("g", None).unwrap();
    registry.create_policy("p", ALLOW_ALL, now()).unwrap();
    registry
        .attach_policy("p", &PolicyTarget::Certificate(id))
        .unwrap();
    registry
        .attach_policy("p", &PolicyTarget::ThingGroup("g".into()))
        .unwrap();
    assert_eq!(
        registry.policy_targets("p"),
        vec![
            PolicyTarget::Certificate(id),
            PolicyTarget::ThingGroup("g".into())
        ]
    );
    assert_eq!(registry.policies().count(), 1);
    assert!(registry.delete_certificate(&id).is_err());
    registry.force_delete_certificate(&id).unwrap();
    assert_eq!(
        registry.policy_targets("p"),
        vec![PolicyTarget::ThingGroup("g".into())]
    );
}
