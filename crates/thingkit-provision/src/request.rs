//! Certificate signing requests (PKCS #10, RFC 2986): parsing, limits and proof of possession.
//!
//! A [`VerifiedCsr`] exists only after the CSR parsed completely, its key type was accepted and its
//! signature verified with its own public key. It keeps only what the issuance profile may use:
//! the public key and the subject common name. Requested extensions (SANs, key usages, basic
//! constraints) are recorded for information and never copied into a certificate.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::error::{Error, Result};

/// Limits applied to untrusted CSR input. The defaults are safe for a network-facing service.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CsrLimits {
    /// Largest accepted input (PEM text or DER) in bytes. Default 16 KiB.
    pub max_input_len: usize,
    /// Smallest accepted RSA modulus in bits. Default 2048 (never lower this below 2048).
    pub min_rsa_bits: usize,
    /// Largest accepted RSA modulus in bits (bounds verification cost). Default 8192.
    pub max_rsa_bits: usize,
    /// Longest accepted common name in characters (RFC 5280 `ub-common-name`). Default 64.
    pub max_common_name_len: usize,
}

impl CsrLimits {
    /// This value with [`max_input_len`](Self::max_input_len) replaced.
    pub fn with_max_input_len(mut self, max_input_len: usize) -> Self {
        self.max_input_len = max_input_len;
        self
    }

    /// This value with [`min_rsa_bits`](Self::min_rsa_bits) replaced.
    pub fn with_min_rsa_bits(mut self, min_rsa_bits: usize) -> Self {
        self.min_rsa_bits = min_rsa_bits;
        self
    }

    /// This value with [`max_rsa_bits`](Self::max_rsa_bits) replaced.
    pub fn with_max_rsa_bits(mut self, max_rsa_bits: usize) -> Self {
        self.max_rsa_bits = max_rsa_bits;
        self
    }

    /// This value with [`max_common_name_len`](Self::max_common_name_len) replaced.
    pub fn with_max_common_name_len(mut self, max_common_name_len: usize) -> Self {
        self.max_common_name_len = max_common_name_len;
        self
    }
}

impl Default for CsrLimits {
    fn default() -> Self {
        CsrLimits {
            max_input_len: 16 * 1024,
            min_rsa_bits: 2048,
            max_rsa_bits: 8192,
            max_common_name_len: 64,
        }
    }
}

/// The type of a device public key accepted from a CSR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKeyType {
    /// ECDSA on NIST P-256, signed with SHA-256.
    P256,
    /// ECDSA on NIST P-384, signed with SHA-384.
    P384,
    /// RSA with the given modulus size in bits (at least [`CsrLimits::min_rsa_bits`]).
    Rsa {
        /// Modulus size in bits.
        bits: usize,
    },
}

impl DeviceKeyType {
    fn name(self) -> &'static str {
        match self {
            DeviceKeyType::P256 => "P-256",
            DeviceKeyType::P384 => "P-384",
            DeviceKeyType::Rsa { .. } => "RSA",
        }
    }
}

/// A device public key taken from a verified CSR, usable as the subject key of a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevicePublicKey {
    key_type: DeviceKeyType,
    /// The `subjectPublicKey` BIT STRING contents (EC point or RSAPublicKey DER).
    key_bits: Vec<u8>,
    /// The complete SubjectPublicKeyInfo DER as the CSR carried it.
    spki_der: Vec<u8>,
}

impl DevicePublicKey {
    /// The key type.
    pub fn key_type(&self) -> DeviceKeyType {
        self.key_type
    }

    /// The SubjectPublicKeyInfo DER, exactly as in the CSR.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }
}

impl rcgen::PublicKeyData for DevicePublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.key_bits
    }

    /// The algorithm is derived from the key itself (curve or RSA), never from the CSR's
    /// signature algorithm, so the certificate's SubjectPublicKeyInfo names the right curve.
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        match self.key_type {
            DeviceKeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            DeviceKeyType::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            DeviceKeyType::Rsa { .. } => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

/// A CSR whose structure, key type and signature were checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCsr {
    public_key: DevicePublicKey,
    common_name: Option<String>,
    requested_ca: bool,
    requested_extensions: usize,
}

impl VerifiedCsr {
    /// Parses a PEM (`CERTIFICATE REQUEST` / `NEW CERTIFICATE REQUEST`) or DER CSR, checks the
    /// key type and verifies the signature.
    ///
    /// Refused: input over [`CsrLimits::max_input_len`], trailing bytes after the DER, keys other
    /// than P-256, P-384 or RSA within the size limits, SHA-1 signatures, a hash that does not
    /// match the curve (P-256 with SHA-384, P-384 with SHA-256), and a signature that does not
    /// verify with the CSR's own key (RFC 2986 §3).
    pub fn parse(input: &[u8], limits: &CsrLimits) -> Result<Self> {
        if input.len() > limits.max_input_len {
            return Err(Error::TooLarge {
                what: "CSR",
                actual: input.len(),
                limit: limits.max_input_len,
            });
        }
        let der =
            crate::pem::decode_if_pem(input, &["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"])?;
        Self::parse_der(&der, limits)
    }

    fn parse_der(der: &[u8], limits: &CsrLimits) -> Result<Self> {
        let malformed = |detail: String| Error::Malformed {
            what: "CSR",
            detail,
        };
        let (rest, csr) =
            X509CertificationRequest::from_der(der).map_err(|e| malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(malformed(format!(
                "{} trailing bytes after the CertificationRequest",
                rest.len()
            )));
        }
        let info = &csr.certification_request_info;
        let spki = &info.subject_pki;
        // Known OIDs are recognised without formatting them (`to_id_string` allocates and
        // formats every arc); only an unknown one is spelled out, for the error message.
        let key_alg = dotted(&spki.algorithm.algorithm);
        let sig_alg = dotted(&csr.signature_algorithm.algorithm);
        if matches!(&*sig_alg, SHA1_RSA | SHA1_ECDSA) {
            return Err(Error::Sha1Refused);
        }
        let key_bits = spki.subject_public_key.data.as_ref();
        let (key_type, verify_alg): (
            DeviceKeyType,
            &'static dyn ring::signature::VerificationAlgorithm,
        ) = match &*key_alg {
            EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| dotted(&o))
                    .ok_or_else(|| Error::UnsupportedKey("EC key without a named curve".into()))?;
                let key_type = match &*curve {
                    CURVE_P256 => DeviceKeyType::P256,
                    CURVE_P384 => DeviceKeyType::P384,
                    other => {
                        return Err(Error::UnsupportedKey(format!("EC curve {other}")));
                    }
                };
                let alg: &'static dyn ring::signature::VerificationAlgorithm =
                    match (key_type, &*sig_alg) {
                        (DeviceKeyType::P256, ECDSA_SHA256) => {
                            &ring::signature::ECDSA_P256_SHA256_ASN1
                        }
                        (DeviceKeyType::P384, ECDSA_SHA384) => {
                            &ring::signature::ECDSA_P384_SHA384_ASN1
                        }
                        _ => {
                            return Err(Error::CurveHashMismatch {
                                key: key_type.name(),
                                signature: signature_name(&sig_alg),
                            });
                        }
                    };
                (key_type, alg)
            }
            RSA_ENCRYPTION => {
                let bits = match spki.parsed() {
                    Ok(PublicKey::RSA(rsa)) => modulus_bits(rsa.modulus),
                    _ => {
                        return Err(Error::Malformed {
                            what: "CSR",
                            detail: "RSA public key is not a valid RSAPublicKey".into(),
                        });
                    }
                };
                if bits < limits.min_rsa_bits {
                    return Err(Error::RsaKeyTooSmall {
                        bits,
                        minimum: limits.min_rsa_bits,
                    });
                }
                if bits > limits.max_rsa_bits {
                    return Err(Error::UnsupportedKey(format!(
                        "RSA key of {bits} bits, more than the limit of {}",
                        limits.max_rsa_bits
                    )));
                }
                let alg: &'static dyn ring::signature::VerificationAlgorithm = match &*sig_alg {
                    SHA256_RSA => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                    SHA384_RSA => &ring::signature::RSA_PKCS1_2048_8192_SHA384,
                    SHA512_RSA => &ring::signature::RSA_PKCS1_2048_8192_SHA512,
                    _ => {
                        return Err(Error::UnsupportedKey(format!(
                            "signature algorithm {} with an RSA key",
                            signature_name(&sig_alg)
                        )));
                    }
                };
                (DeviceKeyType::Rsa { bits }, alg)
            }
            other => {
                return Err(Error::UnsupportedKey(format!(
                    "public key algorithm {}",
                    key_algorithm_name(other)
                )));
            }
        };
        ring::signature::UnparsedPublicKey::new(verify_alg, key_bits)
            .verify(info.raw, csr.signature_value.data.as_ref())
            .map_err(|_| Error::BadCsrSignature)?;

        let mut common_name = None;
        for (n, cn) in info.subject.iter_common_name().enumerate() {
            if n > 0 {
                return Err(Error::BadSubject(
                    "the subject has more than one common name".into(),
                ));
            }
            let s = cn.as_str().map_err(|_| {
                Error::BadSubject("the common name is not a UTF-8 or printable string".into())
            })?;
            common_name = Some(vet_common_name(s, limits.max_common_name_len)?);
        }
        let mut requested_ca = false;
        let mut requested_extensions = 0;
        if let Some(exts) = csr.requested_extensions() {
            for ext in exts {
                requested_extensions += 1;
                if let ParsedExtension::BasicConstraints(bc) = ext {
                    requested_ca |= bc.ca;
                }
            }
        }
        Ok(VerifiedCsr {
            public_key: DevicePublicKey {
                key_type,
                key_bits: key_bits.to_vec(),
                spki_der: spki.raw.to_vec(),
            },
            common_name,
            requested_ca,
            requested_extensions,
        })
    }

    /// The device's public key.
    pub fn public_key(&self) -> &DevicePublicKey {
        &self.public_key
    }

    /// The subject common name, if the CSR had one (already vetted).
    pub fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }

    /// Whether the CSR asked for `CA:TRUE` (ignored by issuance; recorded for audit).
    pub fn requested_ca(&self) -> bool {
        self.requested_ca
    }

    /// How many extensions the CSR requested (none are honoured).
    pub fn requested_extension_count(&self) -> usize {
        self.requested_extensions
    }
}

/// Checks a subject common name: 1 to `max_len` characters, no control characters.
pub(crate) fn vet_common_name(s: &str, max_len: usize) -> Result<String> {
    let chars = s.chars().count();
    if chars == 0 {
        return Err(Error::BadSubject("the common name is empty".into()));
    }
    if chars > max_len {
        return Err(Error::BadSubject(format!(
            "the common name has {chars} characters, more than {max_len} (RFC 5280 ub-common-name)"
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::BadSubject(
            "the common name contains a control character".into(),
        ));
    }
    Ok(s.to_owned())
}

fn modulus_bits(modulus: &[u8]) -> usize {
    let trimmed: &[u8] = {
        let start = modulus
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(modulus.len());
        modulus.get(start..).unwrap_or_default()
    };
    match trimmed.first() {
        None => 0,
        Some(&first) => (trimmed.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const CURVE_P256: &str = "1.2.840.10045.3.1.7";
const CURVE_P384: &str = "1.3.132.0.34";
const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
const ECDSA_SHA512: &str = "1.2.840.10045.4.3.4";
const SHA1_ECDSA: &str = "1.2.840.10045.4.1";
const SHA1_RSA: &str = "1.2.840.113549.1.1.5";
const SHA256_RSA: &str = "1.2.840.113549.1.1.11";
const SHA384_RSA: &str = "1.2.840.113549.1.1.12";
const SHA512_RSA: &str = "1.2.840.113549.1.1.13";
const ED25519: &str = "1.3.101.112";

/// Every OID above, recognised by [`dotted`] without formatting.
const KNOWN_OIDS: [&str; 13] = [
    EC_PUBLIC_KEY,
    CURVE_P256,
    CURVE_P384,
    RSA_ENCRYPTION,
    ECDSA_SHA256,
    ECDSA_SHA384,
    ECDSA_SHA512,
    SHA1_ECDSA,
    SHA1_RSA,
    SHA256_RSA,
    SHA384_RSA,
    SHA512_RSA,
    ED25519,
];

/// `oid` in dotted form: one of the constants above when it is one of them (compared arc by
/// arc, no allocation), else formatted.
fn dotted(oid: &x509_parser::der_parser::oid::Oid<'_>) -> std::borrow::Cow<'static, str> {
    let same = |known: &str| {
        let Some(mut arcs) = oid.iter() else {
            return false;
        };
        let mut parts = known.split('.');
        loop {
            match (arcs.next(), parts.next()) {
                (None, None) => return true,
                (Some(arc), Some(part)) if part.parse::<u64>() == Ok(arc) => {}
                _ => return false,
            }
        }
    };
    match KNOWN_OIDS.iter().find(|k| same(k)) {
        Some(known) => std::borrow::Cow::Borrowed(known),
        None => std::borrow::Cow::Owned(oid.to_id_string()),
    }
}

fn signature_name(oid: &str) -> String {
    match oid {
        ECDSA_SHA256 => "ecdsa-with-SHA256".into(),
        ECDSA_SHA384 => "ecdsa-with-SHA384".into(),
        ECDSA_SHA512 => "ecdsa-with-SHA512".into(),
        SHA1_ECDSA => "ecdsa-with-SHA1".into(),
        SHA1_RSA => "sha1WithRSAEncryption".into(),
        SHA256_RSA => "sha256WithRSAEncryption".into(),
        SHA384_RSA => "sha384WithRSAEncryption".into(),
        SHA512_RSA => "sha512WithRSAEncryption".into(),
        ED25519 => "Ed25519".into(),
        other => format!("OID {other}"),
    }
}

fn key_algorithm_name(oid: &str) -> String {
    match oid {
        ED25519 => "Ed25519 (device keys must be P-256, P-384 or RSA)".into(),
        other => format!("OID {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulus_bits_ignores_leading_zero_octets() {
        assert_eq!(modulus_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(modulus_bits(&[0x01]), 1);
        assert_eq!(modulus_bits(&[]), 0);
        assert_eq!(modulus_bits(&[0, 0]), 0);
    }

    #[test]
    fn rejects_oversized_input_before_parsing() {
        let limits = CsrLimits {
            max_input_len: 10,
            ..CsrLimits::default()
        };
        assert!(matches!(
            VerifiedCsr::parse(&[0u8; 11], &limits),
            Err(Error::TooLarge { limit: 10, .. })
        ));
    }

    #[test]
    fn rejects_garbage_as_malformed() {
        assert!(matches!(
            VerifiedCsr::parse(b"\x30\x03\x02\x01\x00", &CsrLimits::default()),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn common_name_vetting_refuses_control_characters_and_overlong_names() {
        assert!(vet_common_name("dev\n1", 64).is_err());
        assert!(vet_common_name(&"a".repeat(65), 64).is_err());
        assert!(vet_common_name("", 64).is_err());
        assert_eq!(vet_common_name("dev-1", 64).unwrap(), "dev-1");
    }
}
