//! The CRL reader on a CRL made by OpenSSL (interop), and on every truncation and many bit flips
//! of it (never a panic, never a mutated CRL trusted): a deterministic stand-in for the
//! `audit_crl` fuzz target that runs on stable.

use thingkit_audit::revocation::{DEFAULT_MAX_CRL_BYTES, read_crl};
use thingkit_audit::{Error, certificate_id};

/// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj "/CN=thingkit fuzz CA"`.
const CA: &[u8] = include_bytes!("data/openssl-ca.der");
/// `openssl ca -gencrl` by that CA after `openssl ca -revoke` of a certificate with serial 77.
const CRL: &[u8] = include_bytes!("data/openssl-crl.der");

#[test]
fn reads_an_openssl_crl() {
    let id = certificate_id(CA);
    let revoked = read_crl(CRL, CA, &id, DEFAULT_MAX_CRL_BYTES).unwrap();
    assert_eq!(revoked.len(), 1);
    assert!(revoked.contains(&[77]));
    assert!(revoked.contains(&[0, 77]), "leading zero bytes are ignored");
    assert!(!revoked.contains(&[78]));
    assert_eq!(revoked.ca_certificate_id(), id);
}

#[test]
fn no_truncation_or_bit_flip_of_a_crl_is_trusted_or_panics() {
    let id = certificate_id(CA);
    for len in 0..CRL.len() {
        assert!(read_crl(&CRL[..len], CA, &id, DEFAULT_MAX_CRL_BYTES).is_err());
    }
    let mut trailing = CRL.to_vec();
    trailing.push(0);
    assert!(matches!(
        read_crl(&trailing, CA, &id, DEFAULT_MAX_CRL_BYTES),
        Err(Error::CrlParse { .. })
    ));
    for byte in 0..CRL.len() {
        for bit in [0x01u8, 0x80] {
            let mut flipped = CRL.to_vec();
            flipped[byte] ^= bit;
            // A flip inside the signature's DER padding could in theory still verify; the
            // contents must then be unchanged. Any accepted CRL must revoke exactly serial 77.
            if let Ok(r) = read_crl(&flipped, CA, &id, DEFAULT_MAX_CRL_BYTES) {
                assert!(
                    r.contains(&[77]) && r.len() == 1,
                    "byte {byte} bit {bit:#x}"
                );
            }
        }
    }
}

#[test]
fn the_size_limit_is_checked_before_parsing() {
    let id = certificate_id(CA);
    assert!(matches!(
        read_crl(CRL, CA, &id, CRL.len() - 1),
        Err(Error::CrlTooLarge { .. })
    ));
}
