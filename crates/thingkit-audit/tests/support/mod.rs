//! A small PKI for the tests: CAs, device certificates and CRLs made with rcgen and ring keys.

#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use thingkit_audit::{
    AuditSnapshot, CaCertificate, CertificateStatus, ConnectionRecord, DeviceCertificate,
};
use time::OffsetDateTime;

/// The audits' clock: 2026-01-01T00:00:00Z.
pub const NOW: i64 = 1_767_225_600;
pub const DAY: i64 = 86_400;

pub fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).expect("test times are in range")
}

pub fn snapshot() -> AuditSnapshot {
    AuditSnapshot {
        account: "123456789012".into(),
        region: "us-east-1".into(),
        logging_enabled: true,
        ..AuditSnapshot::default()
    }
}

pub struct Ca {
    pub params: CertificateParams,
    pub key: KeyPair,
    pub der: Vec<u8>,
}

fn ca_params(name: &str, serial: u64, not_after: i64) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(SerialNumber::from(serial));
    params.not_before = at(NOW - 400 * DAY);
    params.not_after = at(not_after);
    params
}

impl Ca {
    /// A self-signed root valid for ten years from `NOW`.
    pub fn root(name: &str) -> Ca {
        Ca::root_until(name, NOW + 3650 * DAY)
    }

    pub fn root_until(name: &str, not_after: i64) -> Ca {
        let params = ca_params(name, 1, not_after);
        let key = KeyPair::generate().expect("P-256 key");
        let der = params
            .self_signed(&key)
            .expect("self-signed")
            .der()
            .to_vec();
        Ca { params, key, der }
    }

    /// The same name as `self` with a different key: an impostor whose CRLs must not verify.
    pub fn impostor(&self) -> Ca {
        let key = KeyPair::generate().expect("P-256 key");
        let der = self
            .params
            .self_signed(&key)
            .expect("self-signed")
            .der()
            .to_vec();
        Ca {
            params: self.params.clone(),
            key,
            der,
        }
    }

    pub fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// An intermediate CA with serial `serial`, signed by `self`.
    pub fn intermediate(&self, name: &str, serial: u64) -> Ca {
        let params = ca_params(name, serial, NOW + 3000 * DAY);
        let key = KeyPair::generate().expect("P-256 key");
        let der = params
            .signed_by(&key, &self.issuer())
            .expect("signed")
            .der()
            .to_vec();
        Ca { params, key, der }
    }

    /// A CA certificate for someone else's public key (for key-quality tests).
    pub fn intermediate_for_key(
        &self,
        name: &str,
        serial: u64,
        key: &impl PublicKeyData,
    ) -> Vec<u8> {
        let params = ca_params(name, serial, NOW + 3000 * DAY);
        params
            .signed_by(key, &self.issuer())
            .expect("signed")
            .der()
            .to_vec()
    }

    /// A device certificate with a fresh P-256 key.
    pub fn device(&self, cn: &str, serial: u64, not_after: i64) -> Vec<u8> {
        let key = KeyPair::generate().expect("P-256 key");
        self.device_for_key(cn, serial, not_after, &key)
    }

    pub fn device_for_key(
        &self,
        cn: &str,
        serial: u64,
        not_after: i64,
        key: &impl PublicKeyData,
    ) -> Vec<u8> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.serial_number = Some(SerialNumber::from(serial));
        params.not_before = at(NOW - 200 * DAY);
        params.not_after = at(not_after);
        params
            .signed_by(key, &self.issuer())
            .expect("signed")
            .der()
            .to_vec()
    }

    /// A CRL revoking `serials`, signed by this CA's key.
    pub fn crl(&self, serials: &[u64]) -> Vec<u8> {
        CertificateRevocationListParams {
            this_update: at(NOW - DAY),
            next_update: at(NOW + 6 * DAY),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|&s| RevokedCertParams {
                    serial_number: SerialNumber::from(s),
                    revocation_time: at(NOW - 2 * DAY),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer())
        .expect("CRL signs")
        .der()
        .to_vec()
    }

    pub fn registered(&self) -> CaCertificate {
        CaCertificate::new(self.der.clone(), NOW - 300 * DAY)
    }
}

pub fn device(der: Vec<u8>, ca: Option<&Ca>) -> DeviceCertificate {
    let mut d = DeviceCertificate::new(der, NOW - 100 * DAY);
    d.ca_certificate_id = ca.map(|c| thingkit_audit::certificate_id(&c.der));
    d
}

pub fn with_status(mut d: DeviceCertificate, status: CertificateStatus) -> DeviceCertificate {
    d.status = status;
    d
}

/// An RSA public key given by its modulus (exponent 65537), for keys rcgen cannot generate.
pub struct RsaPublicKey {
    der: Vec<u8>,
}

fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 128 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

fn der_integer(be: &[u8], out: &mut Vec<u8>) {
    let mut v: Vec<u8> = be.iter().copied().skip_while(|&b| b == 0).collect();
    if v.first().is_none_or(|&b| b & 0x80 != 0) {
        v.insert(0, 0);
    }
    out.push(0x02);
    der_len(v.len(), out);
    out.extend(v);
}

impl RsaPublicKey {
    pub fn from_modulus(modulus_be: &[u8]) -> RsaPublicKey {
        let mut body = Vec::new();
        der_integer(modulus_be, &mut body);
        der_integer(&[0x01, 0x00, 0x01], &mut body);
        let mut der = vec![0x30];
        der_len(body.len(), &mut der);
        der.extend(body);
        RsaPublicKey { der }
    }
}

impl PublicKeyData for RsaPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.der
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

/// 65537^k as a big-endian integer: it has the ROCA structure (congruent to a power of 65537
/// modulo every small prime), so it must carry the fingerprint.
pub fn power_of_65537(k: u32) -> Vec<u8> {
    let mut limbs = vec![1u32];
    for _ in 0..k {
        let mut carry = 0u64;
        for l in limbs.iter_mut() {
            let v = u64::from(*l) * 65537 + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            limbs.push(carry as u32);
        }
    }
    limbs
        .iter()
        .rev()
        .flat_map(|l| l.to_be_bytes())
        .skip_while(|&b| b == 0)
        .collect()
}

pub fn conn(client: &str, cert: &str, start: i64, end: Option<i64>) -> ConnectionRecord {
    ConnectionRecord {
        client_id: client.into(),
        certificate_id: cert.into(),
        source: "203.0.113.7:50000".into(),
        connected_at: start,
        disconnected_at: end,
        disconnect_reason: None,
    }
}
