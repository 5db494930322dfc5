//! The certificate checks: expiry, age, revocation (through verified CRLs) and key quality, for
//! device and CA certificates.

use std::collections::BTreeMap;

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::check::{AuditConfig, CheckName, DAY, ReasonCode};
use crate::error::Error;
use crate::finding::{Draft, IssuerCertificateIdentifier, ResourceIdentifier, ResourceType};
use crate::key::{KeyWeakness, assess_public_key};
use crate::report::Tally;
use crate::revocation::{RevokedSerials, read_crl};
use crate::snapshot::{AuditSnapshot, CaCertificate, DeviceCertificate};

struct Ca<'a> {
    reg: &'a CaCertificate,
    x509: X509Certificate<'a>,
}

struct Device<'a> {
    reg: &'a DeviceCertificate,
    x509: X509Certificate<'a>,
}

fn parse<'a>(id: &str, der: &'a [u8]) -> Result<X509Certificate<'a>, Error> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(Error::Certificate {
            certificate_id: id.to_string(),
            reason: "trailing bytes after the certificate".into(),
        }),
        Err(e) => Err(Error::Certificate {
            certificate_id: id.to_string(),
            reason: e.to_string(),
        }),
    }
}

fn is_self_issued(x: &X509Certificate<'_>) -> bool {
    x.subject().as_raw() == x.issuer().as_raw()
}

/// Runs every enabled certificate check.
pub(crate) fn run(snapshot: &AuditSnapshot, config: &AuditConfig, now: i64, tally: &mut Tally) {
    let mut cas = Vec::new();
    for reg in &snapshot.ca_certificates {
        match parse(&reg.id, &reg.der) {
            Ok(x509) => cas.push(Ca { reg, x509 }),
            Err(e) => tally.errors.push(e),
        }
    }
    let mut devices = Vec::new();
    for reg in &snapshot.device_certificates {
        match parse(&reg.id, &reg.der) {
            Ok(x509) => devices.push(Device { reg, x509 }),
            Err(e) => tally.errors.push(e),
        }
    }
    let in_scope_devices = devices
        .iter()
        .filter(|d| d.reg.status.is_in_scope())
        .count();
    let in_scope_cas = cas.iter().filter(|c| c.reg.status.is_in_scope()).count();
    for check in [
        CheckName::DeviceCertificateExpiring,
        CheckName::DeviceCertificateAge,
        CheckName::DeviceCertificateKeyQuality,
        CheckName::RevokedDeviceCertificateStillActive,
        CheckName::IntermediateCaRevokedForActiveDeviceCertificates,
    ] {
        tally.total(check, in_scope_devices);
    }
    for check in [
        CheckName::CaCertificateExpiring,
        CheckName::CaCertificateKeyQuality,
        CheckName::RevokedCaCertificateStillActive,
    ] {
        tally.total(check, in_scope_cas);
    }

    expiry(&devices, &cas, config, now, tally);
    if config.is_enabled(CheckName::DeviceCertificateAge) {
        age(&devices, config, now, tally);
    }
    key_quality(snapshot, &devices, &cas, config, tally);
    let revocation_checks = [
        CheckName::RevokedCaCertificateStillActive,
        CheckName::IntermediateCaRevokedForActiveDeviceCertificates,
        CheckName::RevokedDeviceCertificateStillActive,
    ];
    if revocation_checks.iter().any(|c| config.is_enabled(*c)) {
        let crls = verified_crls(snapshot, &cas, config, tally);
        revocation(&devices, &cas, &crls, config, tally);
    }
}

fn expiry(
    devices: &[Device<'_>],
    cas: &[Ca<'_>],
    config: &AuditConfig,
    now: i64,
    tally: &mut Tally,
) {
    let threshold = i64::from(config.cert_expiration_threshold_days) * DAY;
    let judge = |not_after: i64| -> Option<(ReasonCode, String)> {
        if not_after < now {
            Some((
                ReasonCode::CertificatePastExpiration,
                format!(
                    "Certificate expired {} days ago",
                    now.saturating_sub(not_after) / DAY
                ),
            ))
        } else if not_after.saturating_sub(now) <= threshold {
            Some((
                ReasonCode::CertificateApproachingExpiration,
                format!(
                    "Certificate expires in {} days",
                    not_after.saturating_sub(now) / DAY
                ),
            ))
        } else {
            None
        }
    };
    if config.is_enabled(CheckName::DeviceCertificateExpiring) {
        for d in devices.iter().filter(|d| d.reg.status.is_in_scope()) {
            let not_after = d.x509.validity().not_after.timestamp();
            if let Some((code, reason)) = judge(not_after) {
                tally.push(
                    Draft::new(
                        CheckName::DeviceCertificateExpiring,
                        ResourceType::DeviceCertificate,
                        ResourceIdentifier::device_certificate(&d.reg.id),
                        code,
                        reason,
                    )
                    .info("NOT_AFTER", not_after.to_string()),
                );
            }
        }
    }
    if config.is_enabled(CheckName::CaCertificateExpiring) {
        for c in cas.iter().filter(|c| c.reg.status.is_in_scope()) {
            let not_after = c.x509.validity().not_after.timestamp();
            if let Some((code, reason)) = judge(not_after) {
                tally.push(
                    Draft::new(
                        CheckName::CaCertificateExpiring,
                        ResourceType::CaCertificate,
                        ResourceIdentifier::ca_certificate(&c.reg.id),
                        code,
                        reason,
                    )
                    .info("NOT_AFTER", not_after.to_string()),
                );
            }
        }
    }
}

fn age(devices: &[Device<'_>], config: &AuditConfig, now: i64, tally: &mut Tally) {
    let threshold = i64::from(config.cert_age_threshold_days) * DAY;
    for d in devices.iter().filter(|d| d.reg.status.is_in_scope()) {
        let active_for = now.saturating_sub(d.reg.registered_at);
        if active_for >= threshold {
            tally.push(Draft::new(
                CheckName::DeviceCertificateAge,
                ResourceType::DeviceCertificate,
                ResourceIdentifier::device_certificate(&d.reg.id),
                ReasonCode::CertificatePastAgeThreshold,
                format!(
                    "Certificate has been active for {} days, at or over the {}-day threshold",
                    active_for / DAY,
                    config.cert_age_threshold_days
                ),
            ));
        }
    }
}

fn weakness_reason(w: KeyWeakness) -> (ReasonCode, String) {
    match w {
        KeyWeakness::Roca => (
            ReasonCode::KeyVulnerabilityRoca,
            "Certificate key has the ROCA fingerprint of Infineon's RSA library (CVE-2017-15361)"
                .into(),
        ),
        KeyWeakness::DebianWeakKey => (
            ReasonCode::KeyVulnerabilityDebian,
            "Certificate key is a Debian OpenSSL weak key (CVE-2008-0166)".into(),
        ),
        KeyWeakness::RsaTooShort { bits } => (
            ReasonCode::KeyTooShort,
            format!("Certificate has a {bits}-bit RSA key, under the 2048-bit minimum"),
        ),
    }
}

fn key_quality(
    snapshot: &AuditSnapshot,
    devices: &[Device<'_>],
    cas: &[Ca<'_>],
    config: &AuditConfig,
    tally: &mut Tally,
) {
    if config.is_enabled(CheckName::DeviceCertificateKeyQuality) {
        for d in devices.iter().filter(|d| d.reg.status.is_in_scope()) {
            for w in assess_public_key(
                d.x509.public_key(),
                &snapshot.weak_keys,
                config.min_rsa_bits,
            ) {
                let (code, reason) = weakness_reason(w);
                tally.push(Draft::new(
                    CheckName::DeviceCertificateKeyQuality,
                    ResourceType::DeviceCertificate,
                    ResourceIdentifier::device_certificate(&d.reg.id),
                    code,
                    reason,
                ));
            }
        }
    }
    if config.is_enabled(CheckName::CaCertificateKeyQuality) {
        for c in cas.iter().filter(|c| c.reg.status.is_in_scope()) {
            for w in assess_public_key(
                c.x509.public_key(),
                &snapshot.weak_keys,
                config.min_rsa_bits,
            ) {
                let (code, reason) = weakness_reason(w);
                tally.push(Draft::new(
                    CheckName::CaCertificateKeyQuality,
                    ResourceType::CaCertificate,
                    ResourceIdentifier::ca_certificate(&c.reg.id),
                    code,
                    reason,
                ));
            }
        }
    }
}

/// Every CRL whose signature verifies, by CA ID. Failures are recorded as errors on the
/// revocation checks and the CRL is not used.
fn verified_crls(
    snapshot: &AuditSnapshot,
    cas: &[Ca<'_>],
    config: &AuditConfig,
    tally: &mut Tally,
) -> BTreeMap<String, Vec<RevokedSerials>> {
    let mut out: BTreeMap<String, Vec<RevokedSerials>> = BTreeMap::new();
    for crl in &snapshot.crls {
        let result = match cas.iter().find(|c| c.reg.id == crl.ca_certificate_id) {
            None => Err(Error::CrlUnknownIssuer {
                ca_certificate_id: crl.ca_certificate_id.clone(),
            }),
            Some(ca) => read_crl(&crl.der, &ca.reg.der, &ca.reg.id, config.max_crl_bytes),
        };
        match result {
            Ok(serials) => out
                .entry(crl.ca_certificate_id.clone())
                .or_default()
                .push(serials),
            Err(e) => {
                for check in [
                    CheckName::RevokedCaCertificateStillActive,
                    CheckName::IntermediateCaRevokedForActiveDeviceCertificates,
                    CheckName::RevokedDeviceCertificateStillActive,
                ] {
                    tally.error(check, "CRL_NOT_TRUSTED", e.to_string());
                }
                tally.errors.push(e);
            }
        }
    }
    out
}

fn revoked_by(crls: &BTreeMap<String, Vec<RevokedSerials>>, ca_id: &str, serial: &[u8]) -> bool {
    crls.get(ca_id)
        .is_some_and(|lists| lists.iter().any(|l| l.contains(serial)))
}

/// The registered CAs that issued `x` (same subject as `x`'s issuer), excluding `x` itself.
fn issuers_of<'c, 'a>(
    x: &X509Certificate<'_>,
    self_id: Option<&str>,
    cas: &'c [Ca<'a>],
) -> impl Iterator<Item = &'c Ca<'a>> {
    let issuer = x.issuer().as_raw().to_vec();
    let self_id = self_id.map(str::to_string);
    cas.iter().filter(move |c| {
        c.x509.subject().as_raw() == issuer.as_slice()
            && Some(c.reg.id.as_str()) != self_id.as_deref()
    })
}

fn revocation(
    devices: &[Device<'_>],
    cas: &[Ca<'_>],
    crls: &BTreeMap<String, Vec<RevokedSerials>>,
    config: &AuditConfig,
    tally: &mut Tally,
) {
    // A CA is revoked when a verified CRL of one of its issuers lists its serial. A self-issued
    // root has no issuer to revoke it.
    let revoked_cas: Vec<bool> = cas
        .iter()
        .map(|c| {
            !is_self_issued(&c.x509)
                && issuers_of(&c.x509, Some(&c.reg.id), cas)
                    .any(|i| revoked_by(crls, &i.reg.id, c.x509.raw_serial()))
        })
        .collect();

    // The first revoked CA up each CA's chain, computed once per CA rather than per device.
    let chain_hit: Vec<Option<usize>> = (0..cas.len())
        .map(|i| revoked_in_chain(&[i], cas, &revoked_cas, config.max_chain_depth))
        .collect();

    if config.is_enabled(CheckName::RevokedCaCertificateStillActive) {
        for (c, _) in cas
            .iter()
            .zip(&revoked_cas)
            .filter(|(c, revoked)| **revoked && c.reg.status.is_in_scope())
        {
            tally.push(Draft::new(
                CheckName::RevokedCaCertificateStillActive,
                ResourceType::CaCertificate,
                ResourceIdentifier::ca_certificate(&c.reg.id),
                ReasonCode::CertificateRevokedByIssuer,
                format!(
                    "CA certificate is revoked by its issuer ({}) but is {}",
                    c.x509.issuer(),
                    c.reg.status
                ),
            ));
        }
    }

    for d in devices.iter().filter(|d| d.reg.status.is_in_scope()) {
        let issuing: Vec<usize> = match &d.reg.ca_certificate_id {
            Some(id) => cas
                .iter()
                .position(|c| &c.reg.id == id)
                .into_iter()
                .collect(),
            None => (0..cas.len())
                .filter(|&i| cas[i].x509.subject().as_raw() == d.x509.issuer().as_raw())
                .collect(),
        };
        if config.is_enabled(CheckName::RevokedDeviceCertificateStillActive)
            && issuing
                .iter()
                .any(|&i| revoked_by(crls, &cas[i].reg.id, d.x509.raw_serial()))
        {
            tally.push(Draft::new(
                CheckName::RevokedDeviceCertificateStillActive,
                ResourceType::DeviceCertificate,
                ResourceIdentifier::device_certificate(&d.reg.id),
                ReasonCode::CertificateRevokedByIssuer,
                format!(
                    "Certificate is in its CA's revocation list but is {}",
                    d.reg.status
                ),
            ));
        }
        if config.is_enabled(CheckName::IntermediateCaRevokedForActiveDeviceCertificates)
            && let Some(revoked) = issuing.iter().find_map(|&i| chain_hit[i])
        {
            let ca = &cas[revoked];
            let mut resource = ResourceIdentifier::device_certificate(&d.reg.id);
            resource.issuer_certificate_identifier = Some(IssuerCertificateIdentifier {
                issuer_certificate_subject: ca.x509.subject().to_string(),
                issuer_id: ca.reg.id.clone(),
                issuer_certificate_serial_number: ca.x509.raw_serial_as_string(),
            });
            tally.push(Draft::new(
                    CheckName::IntermediateCaRevokedForActiveDeviceCertificates,
                    ResourceType::DeviceCertificate,
                    resource,
                    ReasonCode::IntermediateCaRevokedByIssuer,
                    format!(
                        "Certificate is {} but intermediate CA {} in its chain is revoked by its issuer",
                        d.reg.status,
                        ca.x509.subject()
                    ),
                ));
        }
    }
}

/// The first revoked CA met walking up from the issuing CAs, at most `max_depth` steps.
fn revoked_in_chain(
    issuing: &[usize],
    cas: &[Ca<'_>],
    revoked: &[bool],
    max_depth: usize,
) -> Option<usize> {
    let mut level: Vec<usize> = issuing.to_vec();
    let mut seen = vec![false; cas.len()];
    for _ in 0..max_depth {
        if let Some(&hit) = level.iter().find(|&&i| revoked[i]) {
            return Some(hit);
        }
        let mut next = Vec::new();
        for &i in &level {
            seen[i] = true;
            if is_self_issued(&cas[i].x509) {
                continue;
            }
            for (j, c) in cas.iter().enumerate() {
                if !seen[j] && c.x509.subject().as_raw() == cas[i].x509.issuer().as_raw() {
                    next.push(j);
                }
            }
        }
        if next.is_empty() {
            return None;
        }
        level = next;
    }
    None
}
