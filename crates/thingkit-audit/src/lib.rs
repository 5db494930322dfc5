//! A fleet security audit modelled on AWS IoT Device Defender: the 13 audit checks that apply
//! to a self-hosted platform, run as pure functions over a snapshot of the registry, the
//! broker's connection log and the CAs' revocation lists, with the time as a parameter.
//! Findings carry AWS's check names, severities, reason codes and resource shapes and serialise
//! like botocore's `AuditFinding`, so an operator who knows Device Defender can read them.
//!
//! ```
//! use thingkit_audit::{
//!     run_audit, AuditConfig, AuditSnapshot, CheckName, CheckRunStatus, MitigationAction, Policy,
//!     ReasonCode, RegistryOperation, mitigation,
//! };
//!
//! let snapshot = AuditSnapshot {
//!     account: "123456789012".into(),
//!     region: "us-east-1".into(),
//!     policies: vec![Policy {
//!         name: "any-client".into(),
//!         default_version_id: "1".into(),
//!         // `client/*`: any certificate may connect as any client ID.
//!         document: r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
//!             "Action": "iot:Connect",
//!             "Resource": "arn:aws:iot:us-east-1:123456789012:client/*"}]}"#.into(),
//!     }],
//!     logging_enabled: false,
//!     ..AuditSnapshot::default()
//! };
//! let now = 1_767_225_600; // 2026-01-01T00:00:00Z
//! let report = run_audit(&snapshot, &AuditConfig::default(), now);
//!
//! let permissive: Vec<_> = report.findings_for(CheckName::IotPolicyOverlyPermissive).collect();
//! assert_eq!(permissive.len(), 1);
//! assert_eq!(
//!     permissive[0].reason_for_non_compliance_code,
//!     ReasonCode::AllowsBroadAccessToIotDataPlaneActions
//! );
//! assert_eq!(
//!     report.checks[&CheckName::LoggingDisabled].check_run_status,
//!     CheckRunStatus::CompletedNonCompliant
//! );
//!
//! // Findings serialise with AWS's member names.
//! let json = serde_json::to_value(permissive[0]).unwrap();
//! assert_eq!(json["checkName"], "IOT_POLICY_OVERLY_PERMISSIVE_CHECK");
//! assert_eq!(json["nonCompliantResource"]["resourceType"], "IOT_POLICY");
//! assert_eq!(
//!     json["nonCompliantResource"]["resourceIdentifier"]["policyVersionIdentifier"]["policyName"],
//!     "any-client"
//! );
//!
//! // Mitigation: a plan of registry operations, only with the actions AWS allows per check.
//! let plan = mitigation::plan(permissive[0], &MitigationAction::ReplaceDefaultPolicyVersion, &snapshot)?;
//! assert!(matches!(&plan[..], [RegistryOperation::ReplaceDefaultPolicyVersion { policy, .. }] if policy == "any-client"));
//! assert!(mitigation::plan(permissive[0], &MitigationAction::UpdateCaCertificate, &snapshot).is_err());
//! # Ok::<(), thingkit_audit::Error>(())
//! ```
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | — | — | none: the crate has no optional parts and does no I/O |
//!
//! # Detect and the fleet's key metrics
//!
//! [`detect`] is Device Defender Detect: security profiles (the JSON `CreateSecurityProfile`
//! takes), per-device windows of the broker's counters, and a [`detect::Detector`] that raises
//! and clears violations (static and statistical thresholds, `durationSeconds`,
//! `consecutiveDatapointsToAlarm/Clear`). [`metrics`] computes the fleet's key metrics
//! (connection rate, the two vulnerability rates, rules processing time, maintenance cost), each
//! with its formula in its docs.
//!
//! ```
//! use thingkit_audit::detect::{Counters, DetectorConfig, Detector, DeviceWindow, ProfileLimits};
//! use thingkit_audit::detect::{SecurityProfile, ViolationEventType};
//!
//! # fn main() -> Result<(), thingkit_audit::Error> {
//! let profile = SecurityProfile::parse(br#"{
//!     "securityProfileName": "sensors",
//!     "behaviors": [{
//!         "name": "few-auth-failures",
//!         "metric": "aws:num-authorization-failures",
//!         "criteria": {"comparisonOperator": "less-than", "value": {"count": 5}, "durationSeconds": 300}
//!     }]
//! }"#, &ProfileLimits::default())?;
//!
//! let mut detector = Detector::new(DetectorConfig::default())?;
//! detector.add_profile(profile)?;
//!
//! let counters = Counters { authorization_failures: 9, ..Counters::default() };
//! let window = DeviceWindow { thing: "sensor-7", window_end: 1_764_115_500, counters, source_ips: &[] };
//! let mut events = Vec::new();
//! detector.evaluate(&[window], &mut events)?;
//! assert_eq!(events[0].violation_event_type, ViolationEventType::InAlarm);
//! assert_eq!(detector.active_violations().count(), 1);
//!
//! // The fleet's key metrics are plain functions.
//! use thingkit_audit::metrics::{maintenance_cost, MaintenanceRates, MaintenanceUsage};
//! let cost = maintenance_cost(
//!     MaintenanceUsage { firmware_bytes: 2_000_000_000, job_messages: 3_000_000 },
//!     MaintenanceRates { per_million_messages: 1_000_000_000, per_gigabyte: 90_000_000 },
//! );
//! assert_eq!(cost.total, 3_180_000_000); // $3.00 of messages + $0.18 of transfer
//! # Ok(()) }
//! ```
//!
//! # Specifications implemented
//!
//! - AWS IoT Device Defender Developer Guide, *Audit checks*: the 13 checks listed in
//!   [`CheckName`] with their severities, scopes (ACTIVE and PENDING_TRANSFER certificates) and
//!   reason codes; *Device certificate age check* (30..=3652 days, default 365, disabled by
//!   default); the connection checks' windows (on demand: 31 days up to 2 hours before the run;
//!   scheduled: from 2 hours before the previous run); *IoT policies overly permissive* and
//!   *IoT policies potentially misconfigured*, with the pages' examples as tests
//!   ([`permission`]); *Audit finding suppressions*; *Mitigation actions* and its check-to-action
//!   table ([`mitigation`]). thingkit's repository digest: `specs/rules-audit.md` §C.1.
//! - botocore `iot` service model 2015-05-28: `AuditFinding`, `NonCompliantResource`,
//!   `RelatedResource`, `ResourceIdentifier`, `PolicyVersionIdentifier`,
//!   `IssuerCertificateIdentifier`, `AuditCheckDetails`, `AuditSuppression` ([`finding`],
//!   [`AuditCheckDetails`]).
//! - RFC 5280 §5 (CRLs) and §6.3.3 (b) and (f): a CRL's issuer must be the CA's subject and its
//!   signature must verify with the CA's key before any entry is used ([`revocation`]).
//! - Nemec et al., *The Return of Coppersmith's Attack* (ACM CCS 2017), the ROCA fingerprint;
//!   Debian's `openssl-blacklist` format for CVE-2008-0166 ([`key`]).
//! - Device Defender Detect (`specs/rules-audit.md` §C.2: cloud-side metrics, behaviors,
//!   statistical thresholds, violation lifecycle) and §C.3 (connectivity and fleet metrics);
//!   botocore's `Behavior`, `BehaviorCriteria`, `MetricValue`, `ActiveViolation`,
//!   `ViolationEvent` shapes.
//!
//! # Decisions
//!
//! - **Inputs that fail are reported, never trusted.** An unverifiable CRL, an unparseable
//!   certificate or policy lands in [`AuditReport::errors`] (and, for CRLs, in the revocation
//!   checks' `errorCode` `CRL_NOT_TRUSTED`); the rest of the audit runs.
//! - **Age is measured from registration** ([`DeviceCertificate::registered_at`], AWS's
//!   `creationDate`), since AWS says "active for" and publishes no other rule.
//! - **Short RSA keys** are flagged by the key-quality checks with thingkit's own reason code
//!   `CERTIFICATE_KEY_SIZE_BELOW_MINIMUM` (AWS refuses them at registration instead);
//!   [`AuditConfig::min_rsa_bits`] = `None` turns this off.
//! - Only a policy's **default version** is audited: it is the one in force.
//!
//! # Not supported
//!
//! The four cloud-only checks (the two Cognito role checks and the two role-alias checks),
//! `PUBLISH_FINDING_TO_SNS`, scheduling (the caller runs audits and passes the previous run's
//! time); in Detect, ML Detect, device-side and custom metrics, metric dimensions, port and
//! string sets (refused with [`Error::Unsupported`]).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod certificate;
pub mod check;
pub mod connection;
pub mod detect;
mod error;
pub mod finding;
pub mod key;
pub mod metrics;
pub mod mitigation;
pub mod permission;
mod report;
pub mod revocation;
pub mod snapshot;
pub mod suppression;

pub use check::{AuditConfig, CheckName, ConnectionWindow, ReasonCode, Severity};
pub use error::Error;
pub use finding::{
    AuditFinding, IssuerCertificateIdentifier, NonCompliantResource, PolicyVersionIdentifier,
    RelatedResource, ResourceIdentifier, ResourceType,
};
pub use key::{KeyWeakness, WeakKeyList};
pub use mitigation::{MitigationAction, PolicyTemplate, RegistryOperation};
pub use report::{AuditCheckDetails, AuditReport, CheckRunStatus, run_audit};
pub use snapshot::{
    AuditSnapshot, CaCertificate, CertificateStatus, ConnectionRecord, Crl, DeviceCertificate,
    Policy, certificate_id,
};
pub use suppression::{AuditSuppression, SuppressionExpiry};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
