//! Device Defender in the control plane: what the server gives the audit operations
//! ([`AuditSources`]: the broker's connection log, logging, CRLs, weak keys) and how the
//! security-profile operations reach the running detector ([`DetectHook`]). Both have
//! in-memory no-op defaults ([`NoSources`], [`NoDetect`]) for tests and embedders without a
//! broker. [`crate::ControlPlane::with_audit`] sets them with the [`crate::audit_store`].
//!
//! An audit reads a snapshot of the registry taken under its read lock (certificates with
//! their DER, status, CA and creation date and attached things; CA certificates; each policy's
//! default version), then runs `thingkit_audit::run_audit` after the lock is released.

use thingkit_audit::detect::{ActiveViolation, SecurityProfile, ViolationEvent};
/// The audit inputs an [`AuditSources`] gives, re-exported so an implementer needs no
/// `thingkit-audit` dependency of its own.
pub use thingkit_audit::{ConnectionRecord, Crl, WeakKeyList};

/// What an audit reads besides the registry; the server implements it over the broker.
pub trait AuditSources: Send + Sync {
    /// The connections accepted since `since_unix` (Unix seconds), converted from the
    /// broker's connection log.
    fn connections(&self, since_unix: i64) -> Vec<ConnectionRecord>;
    /// Whether the platform's logging is enabled (`LOGGING_DISABLED_CHECK`).
    fn logging_enabled(&self) -> bool;
    /// The CAs' certificate revocation lists.
    fn crls(&self) -> Vec<Crl>;
    /// Known-weak RSA keys (Debian CVE-2008-0166).
    fn weak_keys(&self) -> WeakKeyList;
}

/// No connection log, logging enabled, no CRLs, no weak-key list.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSources;

impl AuditSources for NoSources {
    fn connections(&self, _since_unix: i64) -> Vec<ConnectionRecord> {
        Vec::new()
    }
    fn logging_enabled(&self) -> bool {
        true
    }
    fn crls(&self) -> Vec<Crl> {
        Vec::new()
    }
    fn weak_keys(&self) -> WeakKeyList {
        WeakKeyList::new()
    }
}

/// The running detector as the security-profile operations see it; the server implements
/// it on its `thingkit_audit::detect::Detector`.
pub trait DetectHook: Send + Sync {
    /// The security profiles changed: `profiles` is every profile now in force with the ARNs
    /// of its targets (thing groups, `all/registered-things`, `all/unregistered-things`).
    fn profiles_changed(&self, profiles: &[(SecurityProfile, Vec<String>)]);
    /// The violations in alarm now.
    fn active_violations(&self) -> Vec<ActiveViolation>;
    /// The violation events between `start` and `end` (Unix seconds, inclusive).
    fn violation_events(&self, start: u64, end: u64) -> Vec<ViolationEvent>;
}

/// No detector: profile changes are dropped and there are no violations.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDetect;

impl DetectHook for NoDetect {
    fn profiles_changed(&self, _profiles: &[(SecurityProfile, Vec<String>)]) {}
    fn active_violations(&self) -> Vec<ActiveViolation> {
        Vec::new()
    }
    fn violation_events(&self, _start: u64, _end: u64) -> Vec<ViolationEvent> {
        Vec::new()
    }
}

/// The registry's part of an audit's snapshot (device certificates with their DER, status, CA
/// and things; CA certificates; every policy's default version), for the account and region of
/// `arn`. The server calls it under the registry's read lock and runs the checks after
/// releasing it; `thingkit audit run` calls it on the data directory's registry.
///
/// # Errors
///
/// The registry store failed to read a certificate.
pub fn registry_snapshot<S: thingkit_provision::RegistryStore>(
    registry: &thingkit_provision::Registry<S>,
    arn: &thingkit_policy::ArnPrefix,
) -> Result<thingkit_audit::AuditSnapshot, thingkit_provision::Error> {
    let mut parts = arn.as_str().split(':');
    let region = parts.nth(3).unwrap_or_default().to_string();
    let account = parts.next().unwrap_or_default().to_string();
    let mut device_certificates = Vec::new();
    for (id, c) in registry.certificates() {
        let der = registry.certificate_der(id)?;
        device_certificates.push(thingkit_audit::DeviceCertificate {
            id: id.to_string(),
            der,
            status: status_of(c.status.as_str()),
            ca_certificate_id: c.ca.map(|ca| ca.to_string()),
            registered_at: c.created_at,
            things: c.things.iter().map(|t| t.thing.to_string()).collect(),
        });
    }
    let ca_certificates = registry
        .ca_certificates()
        .map(|(id, c)| thingkit_audit::CaCertificate {
            id: id.to_string(),
            der: c.der.to_vec(),
            status: status_of(&c.status.to_string()),
            registered_at: c.created_at,
        })
        .collect();
    let policies = registry
        .policies()
        .filter_map(|p| {
            p.default_version().map(|v| thingkit_audit::Policy {
                name: p.name.to_string(),
                default_version_id: v.version_id.to_string(),
                document: v.document.text().to_string(),
            })
        })
        .collect();
    Ok(thingkit_audit::AuditSnapshot {
        account,
        region,
        device_certificates,
        ca_certificates,
        policies,
        ..thingkit_audit::AuditSnapshot::default()
    })
}

fn status_of(name: &str) -> thingkit_audit::CertificateStatus {
    use thingkit_audit::CertificateStatus as S;
    match name {
        "ACTIVE" => S::Active,
        "REVOKED" => S::Revoked,
        "PENDING_TRANSFER" => S::PendingTransfer,
        "REGISTER_INACTIVE" => S::RegisterInactive,
        "PENDING_ACTIVATION" => S::PendingActivation,
        _ => S::Inactive,
    }
}
