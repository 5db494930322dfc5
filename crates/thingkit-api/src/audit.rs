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
