//! Issuance profile: what a device certificate contains, and which CSRs are refused.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData, SanType};
use thingkit_provision::CertificateId;
use thingkit_provision::Error;
use thingkit_provision::{
    CaKeyType, CaOptions, CertificateAuthority, IssuanceProfile, IssueOptions, RevokedSerial,
};
use thingkit_provision::{CsrLimits, DeviceKeyType, VerifiedCsr};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::{FromDer, X509Certificate};

fn csr_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params
}

fn csr_for(key: &KeyPair, params: &CertificateParams) -> Vec<u8> {
    params.serialize_request(key).unwrap().der().to_vec()
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 128 {
        out.push(n as u8);
    } else if n < 256 {
        out.extend_from_slice(&[0x81, n as u8]);
    } else {
        out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(content);
    out
}

/// Re-assembles a CSR from its CertificationRequestInfo with another signature algorithm and
/// signature value.
fn reassemble(csr_der: &[u8], alg_oid_der: &[u8], signature: &[u8]) -> Vec<u8> {
    let (_, csr) = X509CertificationRequest::from_der(csr_der).unwrap();
    let info = csr.certification_request_info.raw;
    let alg = tlv(0x30, alg_oid_der);
    let mut bits = vec![0u8];
    bits.extend_from_slice(signature);
    let mut body = info.to_vec();
    body.extend_from_slice(&alg);
    body.extend_from_slice(&tlv(0x03, &bits));
    tlv(0x30, &body)
}

const ECDSA_SHA384_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const ECDSA_SHA1_OID: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];

fn ca() -> CertificateAuthority {
    CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now()).unwrap()
}

#[test]
fn issued_certificate_follows_the_profile_and_ignores_csr_requests() {
    let ca = ca();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = csr_params("sensor-7");
    params.subject_alt_names = vec![SanType::DnsName("evil.example".try_into().unwrap())];
    // basicConstraints CA:TRUE, as a requested extension.
    let mut bc = rcgen::CustomExtension::from_oid_content(
        &[2, 5, 29, 19],
        vec![0x30, 0x03, 0x01, 0x01, 0xff],
    );
    bc.set_criticality(true);
    params.custom_extensions = vec![bc];
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let csr = csr_for(&key, &params);
    let verified = VerifiedCsr::parse(&csr, &CsrLimits::default()).unwrap();
    assert!(verified.requested_ca());
    assert_eq!(verified.public_key().key_type(), DeviceKeyType::P256);

    let issued = ca.issue(&csr, std::time::SystemTime::now()).unwrap();
    assert_eq!(issued.id, CertificateId::of_der(&issued.der));
    let (_, cert) = X509Certificate::from_der(&issued.der).unwrap();
    let (_, ca_cert) = X509Certificate::from_der(ca.certificate_der()).unwrap();

    assert_eq!(cert.version().0, 2, "X.509 v3");
    let serial = cert.raw_serial();
    assert_eq!(serial.len(), 20);
    assert_eq!(serial[0] & 0x80, 0, "serial is positive");
    assert_eq!(serial, issued.serial.as_slice());
    let validity = cert.validity();
    assert_eq!(
        validity.not_after.timestamp() - validity.not_before.timestamp(),
        365 * 86400 + 300
    );
    assert_eq!(cert.subject().to_string(), "CN=sensor-7");
    assert_eq!(cert.issuer().as_raw(), ca_cert.subject().as_raw());

    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(bc.critical);
    assert!(!bc.value.ca, "a CA:TRUE request yields CA:FALSE");
    let ku = cert.key_usage().unwrap().unwrap();
    assert!(ku.value.digital_signature());
    assert!(!ku.value.key_cert_sign());
    assert_eq!(ku.value.flags, 1, "digitalSignature only");
    let eku = cert.extended_key_usage().unwrap().unwrap();
    assert!(eku.value.client_auth);
    assert!(!eku.value.server_auth && !eku.value.any && eku.value.other.is_empty());
    assert!(
        cert.subject_alternative_name().unwrap().is_none(),
        "SANs are not copied"
    );

    let ski = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .expect("SKI");
    assert!(!ski.is_empty());
    let ca_ski = ca_cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .expect("CA SKI");
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .expect("AKI");
    assert_eq!(aki, ca_ski);

    assert_eq!(cert.public_key().raw, verified.public_key().spki_der());
    cert.verify_signature(Some(ca_cert.public_key())).unwrap();
}

#[test]
fn p384_csr_is_issued_with_a_p384_subject_key() {
    let ca = ca();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let csr = csr_for(&key, &csr_params("p384-device"));
    let issued = ca.issue(&csr, std::time::SystemTime::now()).unwrap();
    let (_, cert) = X509Certificate::from_der(&issued.der).unwrap();
    assert_eq!(
        cert.public_key().raw,
        key.subject_public_key_info().as_slice()
    );
}

#[test]
fn rejects_p256_key_with_sha384_signature_instead_of_mislabelling() {
    // The curve/hash check comes before signature verification, so the signature value does not
    // matter here; the OpenSSL interop test uses a validly signed P-256/SHA-384 CSR.
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let good = csr_for(&key, &csr_params("mismatch"));
    let (_, parsed) = X509CertificationRequest::from_der(&good).unwrap();
    let sig = parsed.signature_value.data.to_vec();
    let bad = reassemble(&good, ECDSA_SHA384_OID, &sig);
    let err = ca().issue(&bad, std::time::SystemTime::now()).unwrap_err();
    assert!(
        matches!(err, Error::CurveHashMismatch { key: "P-256", .. }),
        "{err}"
    );
}

#[test]
fn rejects_sha1_signed_csr() {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let good = csr_for(&key, &csr_params("old"));
    let bad = reassemble(&good, ECDSA_SHA1_OID, &[0x30, 0x00]);
    assert!(matches!(
        ca().issue(&bad, std::time::SystemTime::now()),
        Err(Error::Sha1Refused)
    ));
}

#[test]
fn rejects_csr_whose_signature_does_not_verify() {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut csr = csr_for(&key, &csr_params("tampered"));
    // Change one byte of the subject's common name: the signature no longer covers it.
    let pos = csr
        .windows(8)
        .position(|w| w == b"tampered")
        .expect("CN in CSR");
    csr[pos] = b'T';
    assert!(matches!(
        ca().issue(&csr, std::time::SystemTime::now()),
        Err(Error::BadCsrSignature)
    ));
}

#[test]
fn rejects_ed25519_device_key_and_trailing_bytes() {
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let csr = csr_for(&key, &csr_params("ed"));
    assert!(matches!(
        ca().issue(&csr, std::time::SystemTime::now()),
        Err(Error::UnsupportedKey(_))
    ));

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut csr = csr_for(&key, &csr_params("trailing"));
    csr.push(0);
    assert!(matches!(
        ca().issue(&csr, std::time::SystemTime::now()),
        Err(Error::Malformed { .. })
    ));
}

#[test]
fn accepts_pem_csr_and_caller_common_name_overrides_csr() {
    let ca = ca();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let pem = csr_params("from-csr")
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let csr = VerifiedCsr::parse(pem.as_bytes(), &CsrLimits::default()).unwrap();
    let issued = ca
        .issue_verified(
            &csr,
            &IssueOptions::default()
                .with_common_name(Some("thing-42".into()))
                .with_validity_days(Some(30)),
            std::time::SystemTime::now(),
        )
        .unwrap();
    let (_, cert) = X509Certificate::from_der(&issued.der).unwrap();
    assert_eq!(cert.subject().to_string(), "CN=thing-42");
    let v = cert.validity();
    assert_eq!(
        v.not_after.timestamp() - v.not_before.timestamp(),
        30 * 86400 + 300
    );
}

#[test]
fn validity_beyond_the_profile_maximum_is_refused() {
    let ca = ca();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = VerifiedCsr::parse(&csr_for(&key, &csr_params("x")), &CsrLimits::default()).unwrap();
    let opts = IssueOptions::default()
        .with_common_name(None)
        .with_validity_days(Some(10_000));
    assert!(matches!(
        ca.issue_verified(&csr, &opts, std::time::SystemTime::now()),
        Err(Error::BadProfile(_))
    ));
    let profile = IssuanceProfile::default().with_validity_days(0);
    assert!(ca.with_profile(profile).is_err());
}

#[test]
fn csr_without_common_name_needs_one_from_the_caller() {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let csr = csr_for(&key, &params);
    assert!(matches!(
        ca().issue(&csr, std::time::SystemTime::now()),
        Err(Error::BadSubject(_))
    ));
}

#[test]
fn ca_round_trips_through_pem_and_refuses_mismatched_key() {
    for key_type in [CaKeyType::P256, CaKeyType::P384, CaKeyType::Ed25519] {
        let ca = CertificateAuthority::create_root(
            &CaOptions::default()
                .with_key_type(key_type)
                .with_common_name("Fleet Root".into()),
            std::time::SystemTime::now(),
        )
        .unwrap();
        let loaded =
            CertificateAuthority::from_pem(&ca.certificate_pem(), &ca.private_key_pem()).unwrap();
        assert_eq!(loaded.id(), ca.id());
        // The loaded CA issues certificates that chain to the original.
        let device = loaded
            .create_keys_and_certificate("d", CaKeyType::P256, std::time::SystemTime::now())
            .unwrap();
        let (_, cert) = X509Certificate::from_der(&device.certificate.der).unwrap();
        let (_, ca_cert) = X509Certificate::from_der(ca.certificate_der()).unwrap();
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
    }
    let a = ca();
    let b = ca();
    assert!(matches!(
        CertificateAuthority::from_pem(&a.certificate_pem(), &b.private_key_pem()),
        Err(Error::BadCa(_))
    ));
    // A device certificate is not a CA.
    let leaf = a
        .create_keys_and_certificate("leaf", CaKeyType::P256, std::time::SystemTime::now())
        .unwrap();
    assert!(matches!(
        CertificateAuthority::from_pem(&leaf.certificate.pem(), &leaf.private_key_pem),
        Err(Error::BadCa(_))
    ));
}

#[test]
fn intermediate_ca_is_signed_by_its_root_with_path_length_zero() {
    let root = ca();
    let inter = root
        .create_intermediate(
            &CaOptions::default()
                .with_common_name("Fleet Issuing CA".into())
                .with_path_len(Some(0)),
            std::time::SystemTime::now(),
        )
        .unwrap();
    let (_, cert) = X509Certificate::from_der(inter.certificate_der()).unwrap();
    let (_, root_cert) = X509Certificate::from_der(root.certificate_der()).unwrap();
    cert.verify_signature(Some(root_cert.public_key())).unwrap();
    let bc = cert.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
}

#[test]
fn serials_are_unique_and_random() {
    let ca = ca();
    let mut serials = std::collections::HashSet::new();
    for i in 0..50 {
        let c = ca
            .create_keys_and_certificate(
                &format!("d{i}"),
                CaKeyType::P256,
                std::time::SystemTime::now(),
            )
            .unwrap();
        assert!(serials.insert(c.certificate.serial));
    }
}

#[test]
fn crl_lists_revoked_serials_and_is_signed_by_the_ca() {
    let ca = ca();
    let c = ca
        .create_keys_and_certificate("gone", CaKeyType::P256, std::time::SystemTime::now())
        .unwrap();
    let crl = ca
        .crl(
            &[RevokedSerial {
                serial: c.certificate.serial.clone(),
                revoked_at: time::OffsetDateTime::now_utc(),
            }],
            7,
            std::time::SystemTime::now(),
        )
        .unwrap();
    let (_, parsed) =
        x509_parser::revocation_list::CertificateRevocationList::from_der(&crl).unwrap();
    let revoked: Vec<_> = parsed
        .iter_revoked_certificates()
        .map(|r| r.raw_serial().to_vec())
        .collect();
    assert_eq!(revoked, vec![c.certificate.serial.clone()]);
    let (_, ca_cert) = X509Certificate::from_der(ca.certificate_der()).unwrap();
    parsed.verify_signature(ca_cert.public_key()).unwrap();
}
