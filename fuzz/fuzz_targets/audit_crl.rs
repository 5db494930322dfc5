//! Arbitrary bytes as a CRL said to come from a fixed CA (`audit_crl_ca.der`, an OpenSSL P-256
//! root; the seed is a CRL it signed): the CRL reader and an audit over it must never panic, and
//! a CRL is only ever read after its signature verified with the CA's key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingkit_audit::revocation::{DEFAULT_MAX_CRL_BYTES, read_crl};
use thingkit_audit::{AuditConfig, AuditSnapshot, CaCertificate, Crl, Error, run_audit};

const CA_DER: &[u8] = include_bytes!("audit_crl_ca.der");

fuzz_target!(|data: &[u8]| {
    let ca = CaCertificate::new(CA_DER.to_vec(), 0);
    match read_crl(data, CA_DER, &ca.id, DEFAULT_MAX_CRL_BYTES) {
        Ok(serials) => assert_eq!(serials.ca_certificate_id(), ca.id),
        Err(
            Error::CrlParse { .. }
            | Error::CrlSignature { .. }
            | Error::CrlIssuerMismatch { .. }
            | Error::CrlTooLarge { .. },
        ) => {}
        Err(e) => panic!("unexpected error for a CRL: {e}"),
    }
    let snapshot = AuditSnapshot {
        account: "123456789012".into(),
        region: "us-east-1".into(),
        ca_certificates: vec![ca.clone()],
        crls: vec![Crl {
            ca_certificate_id: ca.id.clone(),
            der: data.to_vec(),
        }],
        ..AuditSnapshot::default()
    };
    let _ = run_audit(&snapshot, &AuditConfig::default(), 1_767_225_600);
});
