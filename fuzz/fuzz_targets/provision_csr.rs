//! Arbitrary bytes as a PEM or DER CSR: parsing, verification and issuance must never panic, and
//! whatever is accepted must issue a certificate that carries exactly the CSR's public key and
//! `CA:FALSE`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use thingkit_provision::{CaOptions, CertificateAuthority, IssueOptions};
use thingkit_provision::{CsrLimits, VerifiedCsr};

fn ca() -> &'static CertificateAuthority {
    static CA: OnceLock<CertificateAuthority> = OnceLock::new();
    CA.get_or_init(|| {
        CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
            .expect("CA creation works")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(csr) = VerifiedCsr::parse(data, &CsrLimits::default()) else {
        return;
    };
    let options = IssueOptions::default()
        .with_common_name(Some("fuzz".into()))
        .with_validity_days(None);
    let issued = ca()
        .issue_verified(&csr, &options, std::time::SystemTime::now())
        .expect("a verified CSR always issues");
    let (_, cert) = x509_parser::parse_x509_certificate(&issued.der).expect("we emit valid DER");
    assert_eq!(cert.public_key().raw, csr.public_key().spki_der());
    let bc = cert
        .basic_constraints()
        .ok()
        .flatten()
        .expect("basicConstraints present");
    assert!(!bc.value.ca);
});
