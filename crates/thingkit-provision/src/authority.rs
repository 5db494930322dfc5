//! Certificate authorities and the device issuance profile.
//!
//! A [`CertificateAuthority`] is a CA certificate plus its private key. It creates root and
//! intermediate CAs, loads existing ones from PEM, turns [`VerifiedCsr`]s into device certificates
//! under a strict [`IssuanceProfile`], creates a key and certificate in one step (like AWS
//! `CreateKeysAndCertificate`), and signs CRLs.
//!
//! The profile never trusts the CSR: a device certificate carries the CSR's public key, the vetted
//! common name (or the caller's), a fresh random serial with 158 random bits, an explicit validity,
//! KeyUsage digitalSignature, ExtendedKeyUsage clientAuth, `CA:FALSE` (critical), and
//! subject/authority key identifiers (RFC 5280 §4.2.1.1, §4.2.1.2, §4.2.1.3, §4.2.1.9, §4.2.1.12).

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PublicKeyData, RevokedCertParams, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use std::sync::Mutex;
use std::time::SystemTime;

use time::{Duration, OffsetDateTime};
use x509_parser::prelude::FromDer;

use crate::certificate::CertificateId;
use crate::error::{Error, Result};
use crate::request::{CsrLimits, VerifiedCsr, vet_common_name};

/// The key type of a CA key (or of a key made by
/// [`CertificateAuthority::create_keys_and_certificate`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CaKeyType {
    /// ECDSA on NIST P-256 with SHA-256 (the default).
    #[default]
    P256,
    /// ECDSA on NIST P-384 with SHA-384.
    P384,
    /// Ed25519 (RFC 8410).
    Ed25519,
}

impl CaKeyType {
    fn algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            CaKeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            CaKeyType::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            CaKeyType::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    /// Generates a fresh key pair of this type.
    pub(crate) fn generate(self) -> Result<KeyPair> {
        Ok(KeyPair::generate_for(self.algorithm())?)
    }
}

impl std::str::FromStr for CaKeyType {
    type Err = Error;

    /// Parses `p256`, `p384` or `ed25519`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "p256" => Ok(CaKeyType::P256),
            "p384" => Ok(CaKeyType::P384),
            "ed25519" => Ok(CaKeyType::Ed25519),
            other => Err(Error::UnsupportedKey(format!(
                "key type {other:?} (expected p256, p384 or ed25519)"
            ))),
        }
    }
}

/// How to create a CA certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CaOptions {
    /// The CA key type. Default P-256.
    pub key_type: CaKeyType,
    /// The CA's subject common name. Default `thingkit CA`.
    pub common_name: String,
    /// An optional organization name for the subject.
    pub organization: Option<String>,
    /// Validity in days from now. Default 3650.
    pub validity_days: u32,
    /// `pathLenConstraint`: `None` for no constraint (roots), `Some(0)` for an intermediate that
    /// signs only device certificates. Default `None`.
    pub path_len: Option<u8>,
}

impl CaOptions {
    /// This value with [`key_type`](Self::key_type) replaced.
    pub fn with_key_type(mut self, key_type: CaKeyType) -> Self {
        self.key_type = key_type;
        self
    }

    /// This value with [`common_name`](Self::common_name) replaced.
    pub fn with_common_name(mut self, common_name: String) -> Self {
        self.common_name = common_name;
        self
    }

    /// This value with [`organization`](Self::organization) replaced.
    pub fn with_organization(mut self, organization: Option<String>) -> Self {
        self.organization = organization;
        self
    }

    /// This value with [`validity_days`](Self::validity_days) replaced.
    pub fn with_validity_days(mut self, validity_days: u32) -> Self {
        self.validity_days = validity_days;
        self
    }

    /// This value with [`path_len`](Self::path_len) replaced.
    pub fn with_path_len(mut self, path_len: Option<u8>) -> Self {
        self.path_len = path_len;
        self
    }
}

impl Default for CaOptions {
    fn default() -> Self {
        CaOptions {
            key_type: CaKeyType::P256,
            common_name: "thingkit CA".into(),
            organization: None,
            validity_days: 3650,
            path_len: None,
        }
    }
}

/// The issuance profile for device certificates. Every field is a documented, safe default.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssuanceProfile {
    /// Validity of device certificates in days. Default 365. Must be 1 ..= `max_validity_days`.
    pub validity_days: u32,
    /// Upper bound for any per-request validity override. Default 825 days.
    pub max_validity_days: u32,
    /// `notBefore` is set this many seconds before the issuance time to tolerate device clock
    /// skew. Default 300.
    pub backdate_seconds: u32,
    /// Limits for CSR input.
    pub csr_limits: CsrLimits,
    /// Validity of generated CRLs (`nextUpdate - thisUpdate`) in hours. Default 168 (7 days).
    pub crl_validity_hours: u32,
}

impl IssuanceProfile {
    /// This value with [`validity_days`](Self::validity_days) replaced.
    pub fn with_validity_days(mut self, validity_days: u32) -> Self {
        self.validity_days = validity_days;
        self
    }

    /// This value with [`max_validity_days`](Self::max_validity_days) replaced.
    pub fn with_max_validity_days(mut self, max_validity_days: u32) -> Self {
        self.max_validity_days = max_validity_days;
        self
    }

    /// This value with [`backdate_seconds`](Self::backdate_seconds) replaced.
    pub fn with_backdate_seconds(mut self, backdate_seconds: u32) -> Self {
        self.backdate_seconds = backdate_seconds;
        self
    }

    /// This value with [`csr_limits`](Self::csr_limits) replaced.
    pub fn with_csr_limits(mut self, csr_limits: CsrLimits) -> Self {
        self.csr_limits = csr_limits;
        self
    }

    /// This value with [`crl_validity_hours`](Self::crl_validity_hours) replaced.
    pub fn with_crl_validity_hours(mut self, crl_validity_hours: u32) -> Self {
        self.crl_validity_hours = crl_validity_hours;
        self
    }
}

impl Default for IssuanceProfile {
    fn default() -> Self {
        IssuanceProfile {
            validity_days: 365,
            max_validity_days: 825,
            backdate_seconds: 300,
            csr_limits: CsrLimits::default(),
            crl_validity_hours: 168,
        }
    }
}

/// Per-request choices the caller (never the CSR) may make.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssueOptions {
    /// Subject common name to use instead of the CSR's (e.g. the thing name).
    pub common_name: Option<String>,
    /// Validity in days instead of the profile's (at most `max_validity_days`).
    pub validity_days: Option<u32>,
}

impl IssueOptions {
    /// This value with [`common_name`](Self::common_name) replaced.
    pub fn with_common_name(mut self, common_name: Option<String>) -> Self {
        self.common_name = common_name;
        self
    }

    /// This value with [`validity_days`](Self::validity_days) replaced.
    pub fn with_validity_days(mut self, validity_days: Option<u32>) -> Self {
        self.validity_days = validity_days;
        self
    }
}

/// A certificate produced by a [`CertificateAuthority`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// The DER encoding.
    pub der: Vec<u8>,
    /// The AWS certificate ID (SHA-256 of `der`).
    pub id: CertificateId,
    /// The serial number's big-endian magnitude.
    pub serial: Vec<u8>,
    /// The end of the validity period.
    pub not_after: OffsetDateTime,
}

impl IssuedCertificate {
    /// The certificate as PEM text.
    pub fn pem(&self) -> String {
        crate::pem::encode("CERTIFICATE", &self.der)
    }
}

/// A certificate and the PEM of its freshly generated private key (PKCS #8).
///
/// The key PEM is a secret: write it with restrictive permissions and drop it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeysAndCertificate {
    /// The certificate.
    pub certificate: IssuedCertificate,
    /// The private key, PKCS #8 PEM (`PRIVATE KEY`).
    pub private_key_pem: String,
    /// The public key, SubjectPublicKeyInfo PEM (`PUBLIC KEY`), as AWS
    /// `CreateKeysAndCertificate` returns it beside the private key.
    pub public_key_pem: String,
}

impl std::fmt::Debug for KeysAndCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeysAndCertificate")
            .field("certificate", &self.certificate)
            .field("private_key_pem", &"[secret]")
            .finish()
    }
}

/// A revoked certificate to list in a CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedSerial {
    /// The serial number's big-endian magnitude.
    pub serial: Vec<u8>,
    /// When the revocation was recorded.
    pub revoked_at: OffsetDateTime,
}

/// A CA certificate and its private key.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    der: Vec<u8>,
    id: CertificateId,
    profile: IssuanceProfile,
    /// Random bytes for serial numbers, fetched from the OS for several serials at once.
    serials: SerialPool,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("id", &self.id)
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Creates a self-signed root CA, valid from `now` (less five minutes of clock skew).
    pub fn create_root(options: &CaOptions, now: SystemTime) -> Result<Self> {
        let key = options.key_type.generate()?;
        let params = ca_params(options, now)?;
        let cert = params.self_signed(&key)?;
        Ok(CertificateAuthority {
            der: cert.der().to_vec(),
            id: CertificateId::of_der(cert.der()),
            issuer: issuer(params, key),
            profile: IssuanceProfile::default(),
            serials: SerialPool::default(),
        })
    }

    /// Creates an intermediate CA signed by this CA, valid from `now` (less five minutes).
    pub fn create_intermediate(&self, options: &CaOptions, now: SystemTime) -> Result<Self> {
        let key = options.key_type.generate()?;
        let mut params = ca_params(options, now)?;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertificateAuthority {
            der: cert.der().to_vec(),
            id: CertificateId::of_der(cert.der()),
            issuer: issuer(params, key),
            profile: self.profile.clone(),
            serials: SerialPool::default(),
        })
    }

    /// Loads a CA from its PEM certificate and PEM private key (PKCS #8).
    ///
    /// Refused: a certificate without `CA:TRUE`, one whose KeyUsage lacks keyCertSign, and a key
    /// that does not match the certificate's public key.
    pub fn from_pem(certificate_pem: &str, private_key_pem: &str) -> Result<Self> {
        let der = crate::pem::decode_if_pem(certificate_pem.as_bytes(), &["CERTIFICATE"])?;
        let key = KeyPair::from_pem(private_key_pem)
            .map_err(|e| Error::BadCa(format!("private key: {e}")))?;
        let (rest, cert) =
            x509_parser::certificate::X509Certificate::from_der(&der).map_err(|e| {
                Error::Malformed {
                    what: "CA certificate",
                    detail: e.to_string(),
                }
            })?;
        if !rest.is_empty() {
            return Err(Error::Malformed {
                what: "CA certificate",
                detail: "trailing bytes".into(),
            });
        }
        let is_ca = cert
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(Error::BadCa(
                "the certificate is not a CA (CA:TRUE missing)".into(),
            ));
        }
        if let Ok(Some(ku)) = cert.key_usage()
            && !ku.value.key_cert_sign()
        {
            return Err(Error::BadCa("KeyUsage lacks keyCertSign".into()));
        }
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(Error::BadCa(
                "the private key does not match the certificate".into(),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(der.as_slice()), key)
            .map_err(|e| Error::BadCa(e.to_string()))?;
        Ok(CertificateAuthority {
            id: CertificateId::of_der(&der),
            der,
            issuer,
            profile: IssuanceProfile::default(),
            serials: SerialPool::default(),
        })
    }

    /// Replaces the issuance profile.
    pub fn with_profile(mut self, profile: IssuanceProfile) -> Result<Self> {
        if profile.validity_days == 0 || profile.validity_days > profile.max_validity_days {
            return Err(Error::BadProfile(format!(
                "validity_days {} must be between 1 and max_validity_days {}",
                profile.validity_days, profile.max_validity_days
            )));
        }
        if profile.crl_validity_hours == 0 {
            return Err(Error::BadProfile(
                "crl_validity_hours must be at least 1".into(),
            ));
        }
        self.profile = profile;
        Ok(self)
    }

    /// The issuance profile.
    pub fn profile(&self) -> &IssuanceProfile {
        &self.profile
    }

    /// The CA certificate's DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.der
    }

    /// The CA certificate as PEM.
    pub fn certificate_pem(&self) -> String {
        crate::pem::encode("CERTIFICATE", &self.der)
    }

    /// The CA's private key as PKCS #8 PEM. This is the CA's secret.
    pub fn private_key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// The CA certificate's ID.
    pub fn id(&self) -> CertificateId {
        self.id
    }

    /// Parses and verifies a CSR with the profile's limits, then issues a device certificate
    /// with the CSR's (vetted) common name, valid from `now` (less the profile's backdating).
    pub fn issue(&self, csr: &[u8], now: SystemTime) -> Result<IssuedCertificate> {
        let csr = VerifiedCsr::parse(csr, &self.profile.csr_limits)?;
        self.issue_verified(&csr, &IssueOptions::default(), now)
    }

    /// Issues a device certificate for a verified CSR.
    pub fn issue_verified(
        &self,
        csr: &VerifiedCsr,
        options: &IssueOptions,
        now: SystemTime,
    ) -> Result<IssuedCertificate> {
        let common_name = match (&options.common_name, csr.common_name()) {
            (Some(cn), _) => vet_common_name(cn, self.profile.csr_limits.max_common_name_len)?,
            (None, Some(cn)) => cn.to_owned(),
            (None, None) => {
                return Err(Error::BadSubject(
                    "the CSR has no common name and none was given".into(),
                ));
            }
        };
        self.issue_for_key(csr.public_key(), &common_name, options.validity_days, now)
    }

    /// Creates a P-256 (or `key_type`) key pair and a device certificate for it in one step, like
    /// AWS `CreateKeysAndCertificate`.
    pub fn create_keys_and_certificate(
        &self,
        common_name: &str,
        key_type: CaKeyType,
        now: SystemTime,
    ) -> Result<KeysAndCertificate> {
        let common_name =
            vet_common_name(common_name, self.profile.csr_limits.max_common_name_len)?;
        let key = key_type.generate()?;
        let certificate = self.issue_for_key(&key, &common_name, None, now)?;
        Ok(KeysAndCertificate {
            certificate,
            private_key_pem: key.serialize_pem(),
            public_key_pem: key.public_key_pem(),
        })
    }

    /// Creates a key pair and a TLS *server* certificate (ExtendedKeyUsage serverAuth) for the
    /// given DNS names, e.g. for the broker's own endpoint, valid from `now`.
    pub fn create_server_certificate(
        &self,
        dns_names: &[&str],
        now: SystemTime,
    ) -> Result<KeysAndCertificate> {
        let first = dns_names
            .first()
            .ok_or_else(|| Error::BadSubject("a server certificate needs a DNS name".into()))?;
        let key = CaKeyType::P256.generate()?;
        let mut params = self.leaf_params(first, None, now)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        for name in dns_names {
            let san = match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    (*name)
                        .try_into()
                        .map_err(|_| Error::BadSubject(format!("bad DNS name {name:?}")))?,
                ),
            };
            params.subject_alt_names.push(san);
        }
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(KeysAndCertificate {
            certificate: issued(cert.der(), &params)?,
            private_key_pem: key.serialize_pem(),
            public_key_pem: key.public_key_pem(),
        })
    }

    /// Signs a CRL listing `revoked` (RFC 5280 §5), with the given CRL number, valid from `now`
    /// for the profile's `crl_validity_hours`. Returns the CRL's DER.
    pub fn crl(
        &self,
        revoked: &[RevokedSerial],
        crl_number: u64,
        now: SystemTime,
    ) -> Result<Vec<u8>> {
        let now = OffsetDateTime::from(now);
        let params = CertificateRevocationListParams {
            this_update: now - Duration::seconds(i64::from(self.profile.backdate_seconds)),
            next_update: now + Duration::hours(i64::from(self.profile.crl_validity_hours)),
            crl_number: SerialNumber::from_slice(&crl_number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|r| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&r.serial),
                    revocation_time: r.revoked_at,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.der().to_vec())
    }

    fn issue_for_key(
        &self,
        key: &impl PublicKeyData,
        common_name: &str,
        validity_days: Option<u32>,
        now: SystemTime,
    ) -> Result<IssuedCertificate> {
        let params = self.leaf_params(common_name, validity_days, now)?;
        let cert = params.signed_by(key, &self.issuer)?;
        issued(cert.der(), &params)
    }

    fn leaf_params(
        &self,
        common_name: &str,
        validity_days: Option<u32>,
        now: SystemTime,
    ) -> Result<CertificateParams> {
        let days = validity_days.unwrap_or(self.profile.validity_days);
        if days == 0 || days > self.profile.max_validity_days {
            return Err(Error::BadProfile(format!(
                "validity of {days} days is outside 1..={}",
                self.profile.max_validity_days
            )));
        }
        let now = OffsetDateTime::from(now);
        let mut params = CertificateParams::default();
        params.not_before = now - Duration::seconds(i64::from(self.profile.backdate_seconds));
        params.not_after = now + Duration::days(i64::from(days));
        params.serial_number = Some(SerialNumber::from_slice(&self.serials.next()?));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        Ok(params)
    }
}

/// The issuer for a CA created here: its key identifier (the SHA-256-derived value its own
/// certificate carries as SubjectKeyIdentifier) is computed once, not again for the
/// AuthorityKeyIdentifier of every certificate it issues.
fn issuer(mut params: CertificateParams, key: KeyPair) -> Issuer<'static, KeyPair> {
    params.key_identifier_method = KeyIdMethod::PreSpecified(params.key_identifier(&key));
    Issuer::new(params, key)
}

fn issued(der: &[u8], params: &CertificateParams) -> Result<IssuedCertificate> {
    Ok(IssuedCertificate {
        der: der.to_vec(),
        id: CertificateId::of_der(der),
        serial: params
            .serial_number
            .as_ref()
            .map(|s| s.to_bytes())
            .ok_or_else(|| Error::Generation("serial number missing".into()))?,
        not_after: params.not_after,
    })
}

fn ca_params(options: &CaOptions, now: SystemTime) -> Result<CertificateParams> {
    if options.validity_days == 0 {
        return Err(Error::BadProfile(
            "a CA needs a validity of at least 1 day".into(),
        ));
    }
    let common_name = vet_common_name(&options.common_name, 64)?;
    let now = OffsetDateTime::from(now);
    let mut params = CertificateParams::default();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(i64::from(options.validity_days));
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(org) = &options.organization {
        dn.push(DnType::OrganizationName, vet_common_name(org, 64)?);
    }
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(match options.path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.key_identifier_method = KeyIdMethod::Sha256;
    Ok(params)
}

/// A positive serial of 20 octets with 158 random bits (RFC 5280 §4.1.2.2 allows 20 octets; the
/// CA/Browser Forum asks for at least 64 random bits, the issue for at least 128).
fn random_serial() -> Result<[u8; 20]> {
    let mut serial = [0u8; 20];
    fill_random(&mut serial)?;
    Ok(serial_from(serial))
}

/// `bytes` made a positive serial that always takes the full 20 octets (158 random bits).
fn serial_from(mut bytes: [u8; 20]) -> [u8; 20] {
    bytes[0] &= 0x7f;
    bytes[0] |= 0x40; // keep the full 20 octets so the encoding length is fixed
    bytes
}

fn fill_random(buf: &mut [u8]) -> Result<()> {
    use ring::rand::SecureRandom;
    ring::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| Error::Generation("system random number generator failed".into()))
}

/// Serials handed out from one read of the OS random number generator.
const SERIALS_PER_FILL: usize = 32;

/// Random serial numbers for a CA's leaf certificates: the OS generator is read once per
/// [`SERIALS_PER_FILL`] serials instead of once per certificate (a system call per issuance
/// was a measurable part of issuing). Every serial still carries 158 bits straight from the OS
/// generator, each byte used once; a used byte is zeroed.
struct SerialPool(Mutex<([u8; 20 * SERIALS_PER_FILL], usize)>);

impl Default for SerialPool {
    fn default() -> Self {
        // Empty: the first serial fills it.
        SerialPool(Mutex::new(([0; 20 * SERIALS_PER_FILL], SERIALS_PER_FILL)))
    }
}

impl SerialPool {
    fn next(&self) -> Result<[u8; 20]> {
        let mut pool = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (bytes, used) = &mut *pool;
        if *used == SERIALS_PER_FILL {
            fill_random(bytes)?;
            *used = 0;
        }
        let at = *used * 20;
        let mut serial = [0u8; 20];
        let taken = bytes
            .get_mut(at..at + 20)
            .expect("used < SERIALS_PER_FILL, so the slice is inside the pool");
        serial.copy_from_slice(taken);
        taken.fill(0);
        *used += 1;
        Ok(serial_from(serial))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_serials_are_distinct_positive_and_always_20_octets() {
        let pool = SerialPool::default();
        let mut seen = std::collections::HashSet::new();
        // Several refills of the pool.
        for _ in 0..5 * SERIALS_PER_FILL {
            let serial = pool.next().unwrap();
            assert_eq!(serial[0] & 0xc0, 0x40, "positive, leading octet non-zero");
            assert!(seen.insert(serial), "a serial was handed out twice");
        }
    }
}
