//! The audit checks: their AWS names, severities and reason codes, and the configuration an
//! audit runs with.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::revocation::DEFAULT_MAX_CRL_BYTES;
use crate::suppression::AuditSuppression;

/// Seconds in a day.
pub(crate) const DAY: i64 = 86_400;

macro_rules! checks {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $sev:ident; )*) => {
        /// One of the 13 Device Defender audit checks that apply to a self-hosted platform, named
        /// as in the AWS API (`checkName`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum CheckName {
            $( $(#[$doc])* #[serde(rename = $name)] $variant, )*
        }

        impl CheckName {
            /// Every check, in AWS's documentation order.
            pub const ALL: [CheckName; 13] = [ $( CheckName::$variant, )* ];

            /// The AWS API name, e.g. `DEVICE_CERTIFICATE_SHARED_CHECK`.
            pub fn as_str(self) -> &'static str {
                match self { $( CheckName::$variant => $name, )* }
            }

            /// The check's severity (Device Defender guide, each check's page).
            pub fn severity(self) -> Severity {
                match self { $( CheckName::$variant => Severity::$sev, )* }
            }

            /// The check with this AWS name.
            pub fn from_name(name: &str) -> Option<CheckName> {
                CheckName::ALL.into_iter().find(|c| c.as_str() == name)
            }
        }
    };
}

checks! {
    /// A device certificate expires within the threshold (default 30 days) or has expired.
    DeviceCertificateExpiring = "DEVICE_CERTIFICATE_EXPIRING_CHECK", Medium;
    /// A CA certificate expires within the threshold or has expired.
    CaCertificateExpiring = "CA_CERTIFICATE_EXPIRING_CHECK", Medium;
    /// A device certificate has been active for at least the threshold (default 365 days);
    /// disabled by default.
    DeviceCertificateAge = "DEVICE_CERTIFICATE_AGE_CHECK", Low;
    /// A CA certificate revoked by its issuer's CRL is still ACTIVE or PENDING_TRANSFER.
    RevokedCaCertificateStillActive = "REVOKED_CA_CERTIFICATE_STILL_ACTIVE_CHECK", Critical;
    /// An active device certificate chains to an intermediate CA its issuer revoked.
    IntermediateCaRevokedForActiveDeviceCertificates = "INTERMEDIATE_CA_REVOKED_FOR_ACTIVE_DEVICE_CERTIFICATES_CHECK", Critical;
    /// A device certificate in its CA's CRL is still ACTIVE or PENDING_TRANSFER.
    RevokedDeviceCertificateStillActive = "REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE_CHECK", Medium;
    /// A device certificate's key is a ROCA or Debian weak key (or a short RSA key).
    DeviceCertificateKeyQuality = "DEVICE_CERTIFICATE_KEY_QUALITY_CHECK", Critical;
    /// A CA certificate's key is a ROCA or Debian weak key (or a short RSA key).
    CaCertificateKeyQuality = "CA_CERTIFICATE_KEY_QUALITY_CHECK", Critical;
    /// Concurrent connections from different client IDs use the same certificate.
    DeviceCertificateShared = "DEVICE_CERTIFICATE_SHARED_CHECK", Critical;
    /// Connections with the same client ID overlapped (one disconnected the other).
    ConflictingClientIds = "CONFLICTING_CLIENT_IDS_CHECK", High;
    /// A policy grants broad access to other devices' data-plane resources.
    IotPolicyOverlyPermissive = "IOT_POLICY_OVERLY_PERMISSIVE_CHECK", Critical;
    /// A policy's Deny statements do not deny what they appear to.
    IotPolicyPotentialMisconfiguration = "IOT_POLICY_POTENTIAL_MISCONFIGURATION_CHECK", Medium;
    /// Platform logging is disabled.
    LoggingDisabled = "LOGGING_DISABLED_CHECK", Low;
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A finding's severity (Device Defender guide, *Audit*: Critical — exploitable with little
/// sophistication; High — urgent; Medium — posture issues that may cause outages; Low —
/// best-practice lapses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    /// `CRITICAL`.
    Critical,
    /// `HIGH`.
    High,
    /// `MEDIUM`.
    Medium,
    /// `LOW`.
    Low,
}

macro_rules! reasons {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal; )*) => {
        /// Why a resource is non-compliant (`reasonForNonComplianceCode`), with AWS's codes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum ReasonCode {
            $( $(#[$doc])* #[serde(rename = $name)] $variant, )*
        }

        impl ReasonCode {
            /// The code as AWS spells it.
            pub fn as_str(self) -> &'static str {
                match self { $( ReasonCode::$variant => $name, )* }
            }
        }
    };
}

reasons! {
    /// The certificate expires within the threshold.
    CertificateApproachingExpiration = "CERTIFICATE_APPROACHING_EXPIRATION";
    /// The certificate has expired.
    CertificatePastExpiration = "CERTIFICATE_PAST_EXPIRATION";
    /// The certificate has been active for at least the age threshold.
    CertificatePastAgeThreshold = "CERTIFICATE_PAST_AGE_THRESHOLD";
    /// The certificate is listed in its issuer's CRL.
    CertificateRevokedByIssuer = "CERTIFICATE_REVOKED_BY_ISSUER";
    /// An intermediate CA in the certificate's chain is revoked by its issuer.
    IntermediateCaRevokedByIssuer = "INTERMEDIATE_CA_REVOKED_BY_ISSUER";
    /// The key has the ROCA fingerprint (Infineon, CVE-2017-15361).
    KeyVulnerabilityRoca = "CERTIFICATE_KEY_VULNERABILITY_CVE-2017-15361";
    /// The key is a Debian weak key (CVE-2008-0166).
    KeyVulnerabilityDebian = "CERTIFICATE_KEY_VULNERABILITY_CVE-2008-0166";
    /// thingkit's own code, not AWS's: an RSA key under the configured minimum (AWS refuses
    /// them at registration, so never audits them).
    KeyTooShort = "CERTIFICATE_KEY_SIZE_BELOW_MINIMUM";
    /// Concurrent connections from different client IDs used one certificate.
    CertificateSharedByMultipleDevices = "CERTIFICATE_SHARED_BY_MULTIPLE_DEVICES";
    /// Connections with the same client ID overlapped.
    DuplicateClientIdAcrossConnections = "DUPLICATE_CLIENT_ID_ACROSS_CONNECTIONS";
    /// The policy grants access to other devices' MQTT topics, shadows or jobs, or lets a
    /// certificate connect as any client ID.
    AllowsBroadAccessToIotDataPlaneActions = "ALLOWS_BROAD_ACCESS_TO_IOT_DATA_PLANE_ACTIONS";
    /// A Deny statement names `+` or `#`, which are literal characters in a policy.
    PolicyContainsMqttWildcardsInDenyStatement = "POLICY_CONTAINS_MQTT_WILDCARDS_IN_DENY_STATEMENT";
    /// A topic filter the policy means to deny is still reached through an allowed wildcard
    /// subscription.
    TopicFiltersIntendedToDenyAllowedUsingWildcards = "TOPIC_FILTERS_INTENDED_TO_DENY_ALLOWED_USING_WILDCARDS";
    /// Logging is disabled.
    LoggingDisabled = "LOGGING_DISABLED";
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The span of the connection log the two connection checks read (Device Defender guide,
/// *Device certificate shared* and *Conflicting MQTT client IDs*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectionWindow {
    /// An on-demand audit: from 31 days before the run up to 2 hours before it.
    #[default]
    OnDemand,
    /// A scheduled audit: from 2 hours before the previous run up to 2 hours before this one.
    Scheduled {
        /// When the previous scheduled audit ran, Unix seconds.
        previous_run: i64,
    },
}

impl ConnectionWindow {
    /// The window `[start, end)` in Unix seconds for an audit at `now`.
    pub fn bounds(self, now: i64) -> (i64, i64) {
        const TWO_HOURS: i64 = 2 * 3600;
        let end = now.saturating_sub(TWO_HOURS);
        match self {
            ConnectionWindow::OnDemand => (now.saturating_sub(31 * DAY), end),
            ConnectionWindow::Scheduled { previous_run } => {
                (previous_run.saturating_sub(TWO_HOURS), end)
            }
        }
    }
}

/// What an audit runs and with which thresholds; `Default` gives AWS's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// The checks that run. Default: all but `DEVICE_CERTIFICATE_AGE_CHECK`, which AWS leaves
    /// disabled by default.
    pub enabled_checks: BTreeSet<CheckName>,
    /// Days before `notAfter` from which a certificate counts as expiring (AWS default 30;
    /// CloudFormation's `CertExpirationThresholdInDays`). Must be at least 1.
    pub cert_expiration_threshold_days: u32,
    /// Days of activity after which a device certificate is flagged by the age check (AWS's
    /// `CERT_AGE_THRESHOLD_IN_DAYS`: 30..=3652, default 365).
    pub cert_age_threshold_days: u32,
    /// Which part of the connection log the connection checks read.
    pub connection_window: ConnectionWindow,
    /// The largest CRL read, in bytes (default 1 MiB); larger ones are an error, not read.
    pub max_crl_bytes: usize,
    /// The longest CA chain followed from a device certificate upwards (default 8).
    pub max_chain_depth: usize,
    /// RSA keys shorter than this are flagged by the key-quality checks with thingkit's
    /// `CERTIFICATE_KEY_SIZE_BELOW_MINIMUM` (default `Some(2048)`, AWS's registration floor);
    /// `None` turns this off and leaves only AWS's two CVE tests.
    pub min_rsa_bits: Option<usize>,
    /// Suppressions applied to the findings (`isSuppressed`).
    pub suppressions: Vec<AuditSuppression>,
}

/// The range AWS allows for `CERT_AGE_THRESHOLD_IN_DAYS`.
pub const CERT_AGE_THRESHOLD_DAYS: std::ops::RangeInclusive<u32> = 30..=3652;

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled_checks: CheckName::ALL
                .into_iter()
                .filter(|c| *c != CheckName::DeviceCertificateAge)
                .collect(),
            cert_expiration_threshold_days: 30,
            cert_age_threshold_days: 365,
            connection_window: ConnectionWindow::OnDemand,
            max_crl_bytes: DEFAULT_MAX_CRL_BYTES,
            max_chain_depth: 8,
            min_rsa_bits: Some(2048),
            suppressions: Vec::new(),
        }
    }
}

impl AuditConfig {
    /// The default configuration with every check enabled, the age check included.
    pub fn all_checks() -> AuditConfig {
        AuditConfig {
            enabled_checks: CheckName::ALL.into_iter().collect(),
            ..AuditConfig::default()
        }
    }

    /// Whether `check` runs.
    pub fn is_enabled(&self, check: CheckName) -> bool {
        self.enabled_checks.contains(&check)
    }

    /// Checks the thresholds against AWS's ranges.
    pub fn validate(&self) -> Result<(), Error> {
        if !CERT_AGE_THRESHOLD_DAYS.contains(&self.cert_age_threshold_days) {
            return Err(Error::InvalidConfig {
                field: "cert_age_threshold_days",
                value: i64::from(self.cert_age_threshold_days),
                rule: "must be 30..=3652 days (CERT_AGE_THRESHOLD_IN_DAYS)",
            });
        }
        if self.cert_expiration_threshold_days == 0 {
            return Err(Error::InvalidConfig {
                field: "cert_expiration_threshold_days",
                value: 0,
                rule: "must be at least 1 day",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_has_aws_defaults_and_the_age_check_off() {
        let c = AuditConfig::default();
        assert_eq!(c.cert_expiration_threshold_days, 30);
        assert_eq!(c.cert_age_threshold_days, 365);
        assert_eq!(c.enabled_checks.len(), 12);
        assert!(!c.is_enabled(CheckName::DeviceCertificateAge));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn rejects_age_thresholds_outside_aws_range() {
        for days in [0, 29, 3653] {
            let c = AuditConfig {
                cert_age_threshold_days: days,
                ..AuditConfig::all_checks()
            };
            assert!(matches!(c.validate(), Err(Error::InvalidConfig { .. })));
        }
        for days in [30, 3652] {
            let c = AuditConfig {
                cert_age_threshold_days: days,
                ..AuditConfig::all_checks()
            };
            assert!(c.validate().is_ok());
        }
    }

    #[test]
    fn check_names_round_trip_and_severities_match_aws() {
        for c in CheckName::ALL {
            assert_eq!(CheckName::from_name(c.as_str()), Some(c));
        }
        assert_eq!(CheckName::ConflictingClientIds.severity(), Severity::High);
        assert_eq!(CheckName::LoggingDisabled.severity(), Severity::Low);
        assert_eq!(
            ReasonCode::KeyVulnerabilityRoca.as_str(),
            "CERTIFICATE_KEY_VULNERABILITY_CVE-2017-15361"
        );
    }

    #[test]
    fn on_demand_window_is_31_days_back_to_2_hours_back() {
        let now = 100 * DAY;
        assert_eq!(
            ConnectionWindow::OnDemand.bounds(now),
            (now - 31 * DAY, now - 7200)
        );
        let w = ConnectionWindow::Scheduled {
            previous_run: now - DAY,
        };
        assert_eq!(w.bounds(now), (now - DAY - 7200, now - 7200));
    }
}
