//! The certificate checks, each against a fleet built to be flagged and one built not to be.

mod support;

use support::*;
use thingkit_audit::{
    AuditConfig, AuditReport, CertificateStatus, CheckName, CheckRunStatus, Crl, Error, ReasonCode,
    WeakKeyList, certificate_id, run_audit,
};

fn codes(report: &AuditReport, check: CheckName) -> Vec<(String, ReasonCode)> {
    report
        .findings_for(check)
        .map(|f| {
            let id = &f.non_compliant_resource.resource_identifier;
            (
                id.device_certificate_id
                    .clone()
                    .or(id.ca_certificate_id.clone())
                    .unwrap_or_default(),
                f.reason_for_non_compliance_code,
            )
        })
        .collect()
}

#[test]
fn device_certificate_expiring_flags_expiring_and_expired_active_certificates() {
    let ca = Ca::root("Root");
    let mut s = snapshot();
    s.ca_certificates.push(ca.registered());
    let soon = device(ca.device("soon", 10, NOW + 10 * DAY), Some(&ca));
    let past = device(ca.device("past", 11, NOW - DAY), Some(&ca));
    let fine = device(ca.device("fine", 12, NOW + 100 * DAY), Some(&ca));
    let past_inactive = with_status(
        device(ca.device("old", 13, NOW - DAY), Some(&ca)),
        CertificateStatus::Inactive,
    );
    let pending = with_status(
        device(ca.device("moving", 14, NOW + 5 * DAY), Some(&ca)),
        CertificateStatus::PendingTransfer,
    );
    s.device_certificates = vec![
        soon.clone(),
        past.clone(),
        fine,
        past_inactive,
        pending.clone(),
    ];
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    let mut found = codes(&report, CheckName::DeviceCertificateExpiring);
    found.sort();
    let mut expected = vec![
        (soon.id, ReasonCode::CertificateApproachingExpiration),
        (past.id, ReasonCode::CertificatePastExpiration),
        (pending.id, ReasonCode::CertificateApproachingExpiration),
    ];
    expected.sort();
    assert_eq!(found, expected);
    let details = &report.checks[&CheckName::DeviceCertificateExpiring];
    assert_eq!(details.total_resources_count, 4, "INACTIVE is out of scope");
    assert_eq!(details.non_compliant_resources_count, 3);
    assert_eq!(
        details.check_run_status,
        CheckRunStatus::CompletedNonCompliant
    );
}

#[test]
fn device_certificate_expiring_threshold_is_configurable() {
    let ca = Ca::root("Root");
    let mut s = snapshot();
    s.device_certificates
        .push(device(ca.device("d", 10, NOW + 45 * DAY), Some(&ca)));
    assert_eq!(
        run_audit(&s, &AuditConfig::default(), NOW)
            .findings_for(CheckName::DeviceCertificateExpiring)
            .count(),
        0
    );
    let config = AuditConfig {
        cert_expiration_threshold_days: 60,
        ..AuditConfig::default()
    };
    assert_eq!(
        run_audit(&s, &config, NOW)
            .findings_for(CheckName::DeviceCertificateExpiring)
            .count(),
        1
    );
}

#[test]
fn ca_certificate_expiring_flags_a_ca_close_to_not_after() {
    let expiring = Ca::root_until("Expiring Root", NOW + 20 * DAY);
    let fine = Ca::root("Fine Root");
    let mut s = snapshot();
    s.ca_certificates = vec![expiring.registered(), fine.registered()];
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    assert_eq!(
        codes(&report, CheckName::CaCertificateExpiring),
        vec![(
            certificate_id(&expiring.der),
            ReasonCode::CertificateApproachingExpiration
        )]
    );
    s.ca_certificates = vec![fine.registered()];
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    assert_eq!(
        report.checks[&CheckName::CaCertificateExpiring].check_run_status,
        CheckRunStatus::CompletedCompliant
    );
}

#[test]
fn device_certificate_age_is_off_by_default_and_flags_old_registrations_when_on() {
    let ca = Ca::root("Root");
    let mut s = snapshot();
    let mut old = device(ca.device("old", 10, NOW + 900 * DAY), Some(&ca));
    old.registered_at = NOW - 400 * DAY;
    let young = device(ca.device("young", 11, NOW + 900 * DAY), Some(&ca));
    s.device_certificates = vec![old.clone(), young];
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    assert!(!report.checks.contains_key(&CheckName::DeviceCertificateAge));
    let report = run_audit(&s, &AuditConfig::all_checks(), NOW);
    assert_eq!(
        codes(&report, CheckName::DeviceCertificateAge),
        vec![(old.id, ReasonCode::CertificatePastAgeThreshold)]
    );
    let strict = AuditConfig {
        cert_age_threshold_days: 30,
        ..AuditConfig::all_checks()
    };
    assert_eq!(
        run_audit(&s, &strict, NOW)
            .findings_for(CheckName::DeviceCertificateAge)
            .count(),
        2
    );
}

#[test]
fn an_age_threshold_outside_aws_range_fails_only_the_age_check() {
    let s = snapshot();
    let config = AuditConfig {
        cert_age_threshold_days: 10,
        ..AuditConfig::all_checks()
    };
    let report = run_audit(&s, &config, NOW);
    let age = &report.checks[&CheckName::DeviceCertificateAge];
    assert_eq!(age.check_run_status, CheckRunStatus::Failed);
    assert_eq!(age.error_code.as_deref(), Some("INVALID_CONFIGURATION"));
    assert!(matches!(report.errors[0], Error::InvalidConfig { .. }));
    assert_eq!(
        report.checks[&CheckName::DeviceCertificateExpiring].check_run_status,
        CheckRunStatus::CompletedCompliant
    );
}

#[test]
fn revoked_device_certificate_still_active_uses_the_cas_verified_crl() {
    let ca = Ca::root("Root");
    let mut s = snapshot();
    s.ca_certificates.push(ca.registered());
    let revoked_active = device(ca.device("r1", 100, NOW + 900 * DAY), Some(&ca));
    let revoked_inactive = with_status(
        device(ca.device("r2", 101, NOW + 900 * DAY), Some(&ca)),
        CertificateStatus::Inactive,
    );
    // Issuer found by name when the registry recorded no CA.
    let revoked_no_ca = device(ca.device("r3", 102, NOW + 900 * DAY), None);
    let fine = device(ca.device("ok", 103, NOW + 900 * DAY), Some(&ca));
    s.device_certificates = vec![
        revoked_active.clone(),
        revoked_inactive,
        revoked_no_ca.clone(),
        fine,
    ];
    s.crls.push(Crl {
        ca_certificate_id: certificate_id(&ca.der),
        der: ca.crl(&[100, 101, 102]),
    });
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    let mut found = codes(&report, CheckName::RevokedDeviceCertificateStillActive);
    found.sort();
    let mut expected = vec![
        (revoked_active.id, ReasonCode::CertificateRevokedByIssuer),
        (revoked_no_ca.id, ReasonCode::CertificateRevokedByIssuer),
    ];
    expected.sort();
    assert_eq!(found, expected);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

#[test]
fn a_crl_signed_by_another_key_is_reported_and_not_trusted() {
    let ca = Ca::root("Root");
    let impostor = ca.impostor();
    let mut s = snapshot();
    s.ca_certificates.push(ca.registered());
    s.device_certificates
        .push(device(ca.device("d", 100, NOW + 900 * DAY), Some(&ca)));
    s.crls.push(Crl {
        ca_certificate_id: certificate_id(&ca.der),
        der: impostor.crl(&[100]),
    });
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    assert_eq!(
        report
            .findings_for(CheckName::RevokedDeviceCertificateStillActive)
            .count(),
        0
    );
    assert!(
        matches!(&report.errors[..], [Error::CrlSignature { .. }]),
        "{:?}",
        report.errors
    );
    let details = &report.checks[&CheckName::RevokedDeviceCertificateStillActive];
    assert_eq!(details.error_code.as_deref(), Some("CRL_NOT_TRUSTED"));
}

#[test]
fn crls_that_are_too_large_garbled_or_for_unknown_cas_are_refused() {
    let ca = Ca::root("Root");
    let other = Ca::root("Other Root");
    let mut s = snapshot();
    s.ca_certificates = vec![ca.registered(), other.registered()];
    s.crls = vec![
        Crl {
            ca_certificate_id: certificate_id(&ca.der),
            der: vec![0x30, 0x03, 0x02, 0x01, 0x00],
        },
        Crl {
            ca_certificate_id: "f".repeat(64),
            der: ca.crl(&[1]),
        },
        // Signed by `ca` but presented as `other`'s: the issuer name does not match.
        Crl {
            ca_certificate_id: certificate_id(&other.der),
            der: ca.crl(&[1]),
        },
    ];
    let config = AuditConfig {
        max_crl_bytes: 4096,
        ..AuditConfig::default()
    };
    let mut big = snapshot();
    big.ca_certificates = vec![ca.registered()];
    big.crls = vec![Crl {
        ca_certificate_id: certificate_id(&ca.der),
        der: vec![0; 5000],
    }];
    let report = run_audit(&s, &config, NOW);
    assert!(matches!(
        &report.errors[..],
        [
            Error::CrlParse { .. },
            Error::CrlUnknownIssuer { .. },
            Error::CrlIssuerMismatch { .. }
        ]
    ));
    let report = run_audit(&big, &config, NOW);
    assert!(matches!(
        &report.errors[..],
        [Error::CrlTooLarge {
            len: 5000,
            limit: 4096,
            ..
        }]
    ));
}

#[test]
fn revoked_intermediate_ca_is_flagged_and_so_are_its_active_devices() {
    let root = Ca::root("Root");
    let revoked = root.intermediate("Revoked Intermediate", 77);
    let good = root.intermediate("Good Intermediate", 78);
    let mut s = snapshot();
    s.ca_certificates = vec![root.registered(), revoked.registered(), good.registered()];
    let under_revoked = device(revoked.device("d1", 5, NOW + 900 * DAY), Some(&revoked));
    let under_revoked_inactive = with_status(
        device(revoked.device("d2", 6, NOW + 900 * DAY), Some(&revoked)),
        CertificateStatus::Inactive,
    );
    let under_good = device(good.device("d3", 7, NOW + 900 * DAY), Some(&good));
    s.device_certificates = vec![under_revoked.clone(), under_revoked_inactive, under_good];
    s.crls.push(Crl {
        ca_certificate_id: certificate_id(&root.der),
        der: root.crl(&[77]),
    });
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    assert_eq!(
        codes(&report, CheckName::RevokedCaCertificateStillActive),
        vec![(
            certificate_id(&revoked.der),
            ReasonCode::CertificateRevokedByIssuer
        )]
    );
    let found: Vec<_> = report
        .findings_for(CheckName::IntermediateCaRevokedForActiveDeviceCertificates)
        .collect();
    assert_eq!(found.len(), 1);
    let id = &found[0].non_compliant_resource.resource_identifier;
    assert_eq!(id.device_certificate_id.as_ref(), Some(&under_revoked.id));
    let issuer = id.issuer_certificate_identifier.as_ref().unwrap();
    assert_eq!(issuer.issuer_id, certificate_id(&revoked.der));
    assert_eq!(issuer.issuer_certificate_serial_number, "4d");
    assert_eq!(issuer.issuer_certificate_subject, "CN=Revoked Intermediate");
    assert_eq!(
        found[0].reason_for_non_compliance_code,
        ReasonCode::IntermediateCaRevokedByIssuer
    );

    // Once the intermediate is deactivated the CA check is compliant; its ACTIVE devices are
    // still flagged, as AWS's chain check does.
    s.ca_certificates[1].status = CertificateStatus::Inactive;
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    assert_eq!(
        report
            .findings_for(CheckName::RevokedCaCertificateStillActive)
            .count(),
        0
    );
    assert_eq!(
        report
            .findings_for(CheckName::IntermediateCaRevokedForActiveDeviceCertificates)
            .count(),
        1
    );
}

#[test]
fn no_revocation_findings_without_a_crl_entry() {
    let root = Ca::root("Root");
    let inter = root.intermediate("Intermediate", 77);
    let mut s = snapshot();
    s.ca_certificates = vec![root.registered(), inter.registered()];
    s.device_certificates
        .push(device(inter.device("d1", 5, NOW + 900 * DAY), Some(&inter)));
    s.crls.push(Crl {
        ca_certificate_id: certificate_id(&root.der),
        der: root.crl(&[]),
    });
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    for check in [
        CheckName::RevokedCaCertificateStillActive,
        CheckName::IntermediateCaRevokedForActiveDeviceCertificates,
        CheckName::RevokedDeviceCertificateStillActive,
    ] {
        assert_eq!(
            report.checks[&check].check_run_status,
            CheckRunStatus::CompletedCompliant
        );
    }
}

const RSA1024_SPKI: &[u8] = include_bytes!("data/rsa1024.spki.der");
const RSA2048_SPKI: &[u8] = include_bytes!("data/rsa2048.spki.der");
/// `openssl rsa -noout -modulus -in rsa1024.pem | sha1sum | cut -c 21-40`, computed by openssl
/// when the key was made: the Debian blacklist line for this key.
const RSA1024_DEBIAN_FINGERPRINT: &str = "b690a57dc01a7eb7a8fa";

#[test]
fn device_key_quality_flags_short_debian_and_roca_keys() {
    let ca = Ca::root("Root");
    let short = rcgen::SubjectPublicKeyInfo::from_der(RSA1024_SPKI).unwrap();
    let ordinary_rsa = rcgen::SubjectPublicKeyInfo::from_der(RSA2048_SPKI).unwrap();
    let roca = RsaPublicKey::from_modulus(&power_of_65537(128));
    let mut s = snapshot();
    s.weak_keys =
        WeakKeyList::parse(&format!("# RSA-1024\n{RSA1024_DEBIAN_FINGERPRINT}\n")).unwrap();
    let weak = device(
        ca.device_for_key("weak", 1, NOW + 900 * DAY, &short),
        Some(&ca),
    );
    let infineon = device(
        ca.device_for_key("roca", 2, NOW + 900 * DAY, &roca),
        Some(&ca),
    );
    let rsa_ok = device(
        ca.device_for_key("rsa", 3, NOW + 900 * DAY, &ordinary_rsa),
        Some(&ca),
    );
    let ec_ok = device(ca.device("ec", 4, NOW + 900 * DAY), Some(&ca));
    s.device_certificates = vec![weak.clone(), infineon.clone(), rsa_ok, ec_ok];
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    let mut found = codes(&report, CheckName::DeviceCertificateKeyQuality);
    found.sort();
    let mut expected = vec![
        (weak.id.clone(), ReasonCode::KeyVulnerabilityDebian),
        (weak.id.clone(), ReasonCode::KeyTooShort),
        (infineon.id, ReasonCode::KeyVulnerabilityRoca),
    ];
    expected.sort();
    assert_eq!(found, expected);
    let details = &report.checks[&CheckName::DeviceCertificateKeyQuality];
    assert_eq!(details.non_compliant_resources_count, 2);
    assert_eq!(details.total_resources_count, 4);

    // AWS's two CVE tests only.
    let config = AuditConfig {
        min_rsa_bits: None,
        ..AuditConfig::default()
    };
    let only_cves = run_audit(&s, &config, NOW);
    assert!(
        only_cves
            .findings_for(CheckName::DeviceCertificateKeyQuality)
            .all(|f| f.reason_for_non_compliance_code != ReasonCode::KeyTooShort)
    );
}

#[test]
fn ring_generated_keys_do_not_flag() {
    let ca = Ca::root("Root");
    let mut s = snapshot();
    s.ca_certificates.push(ca.registered());
    s.device_certificates = (0..20)
        .map(|i| {
            device(
                ca.device(&format!("d{i}"), 1000 + i, NOW + 900 * DAY),
                Some(&ca),
            )
        })
        .collect();
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    assert_eq!(
        report.checks[&CheckName::DeviceCertificateKeyQuality].check_run_status,
        CheckRunStatus::CompletedCompliant
    );
    assert_eq!(
        report.checks[&CheckName::CaCertificateKeyQuality].check_run_status,
        CheckRunStatus::CompletedCompliant
    );
}

#[test]
fn ca_key_quality_flags_a_ca_with_a_roca_key() {
    let root = Ca::root("Root");
    let roca = RsaPublicKey::from_modulus(&power_of_65537(128));
    let weak_ca = root.intermediate_for_key("Infineon CA", 9, &roca);
    let mut s = snapshot();
    let mut registered = thingkit_audit::CaCertificate::new(weak_ca.clone(), NOW);
    s.ca_certificates = vec![root.registered(), registered.clone()];
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    assert_eq!(
        codes(&report, CheckName::CaCertificateKeyQuality),
        vec![(certificate_id(&weak_ca), ReasonCode::KeyVulnerabilityRoca)]
    );
    registered.status = CertificateStatus::Inactive;
    s.ca_certificates = vec![root.registered(), registered];
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    assert_eq!(
        report
            .findings_for(CheckName::CaCertificateKeyQuality)
            .count(),
        0
    );
}

#[test]
fn an_unparseable_certificate_is_reported_not_audited() {
    let mut s = snapshot();
    s.device_certificates
        .push(thingkit_audit::DeviceCertificate::new(vec![1, 2, 3], NOW));
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    assert!(matches!(&report.errors[..], [Error::Certificate { .. }]));
    assert_eq!(
        report.checks[&CheckName::DeviceCertificateExpiring].total_resources_count,
        0
    );
}

#[test]
fn a_revoked_ca_two_levels_up_flags_the_device() {
    let root = Ca::root("Root");
    let upper = root.intermediate("Upper", 40);
    let lower = upper.intermediate("Lower", 41);
    let mut s = snapshot();
    s.ca_certificates = vec![root.registered(), upper.registered(), lower.registered()];
    let d = device(lower.device("deep", 9, NOW + 900 * DAY), Some(&lower));
    s.device_certificates.push(d.clone());
    s.crls.push(Crl {
        ca_certificate_id: certificate_id(&root.der),
        der: root.crl(&[40]),
    });
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    let found: Vec<_> = report
        .findings_for(CheckName::IntermediateCaRevokedForActiveDeviceCertificates)
        .collect();
    assert_eq!(found.len(), 1);
    let id = &found[0].non_compliant_resource.resource_identifier;
    assert_eq!(id.device_certificate_id.as_ref(), Some(&d.id));
    assert_eq!(
        id.issuer_certificate_identifier.as_ref().unwrap().issuer_id,
        certificate_id(&upper.der)
    );
    // With the chain limited to one CA the revoked one is out of reach.
    let short = AuditConfig {
        max_chain_depth: 1,
        ..AuditConfig::default()
    };
    assert_eq!(
        run_audit(&s, &short, NOW)
            .findings_for(CheckName::IntermediateCaRevokedForActiveDeviceCertificates)
            .count(),
        0
    );
}
