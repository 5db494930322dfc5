//! Audit finding suppressions (Device Defender guide, *Audit finding suppressions*): a check
//! and a resource whose findings are marked suppressed until the suppression expires.

use serde::{Deserialize, Serialize};

use crate::check::CheckName;
use crate::finding::{AuditFinding, ResourceIdentifier};

/// How long a suppression lasts. AWS's `CreateAuditSuppression` takes `expirationDate` or
/// `suppressIndefinitely`; one of the two, so this is an enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SuppressionExpiry {
    /// `suppressIndefinitely: true`.
    Indefinitely,
    /// `expirationDate`: in force while the audit's time is before this, Unix seconds.
    Until(i64),
}

/// A suppression of one check's findings for one resource (`AuditSuppression`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditSuppression {
    /// `checkName`.
    pub check_name: CheckName,
    /// `resourceIdentifier`: must equal the finding's exactly.
    pub resource_identifier: ResourceIdentifier,
    /// `expirationDate` / `suppressIndefinitely`.
    pub expiry: SuppressionExpiry,
    /// `description`.
    pub description: Option<String>,
}

impl AuditSuppression {
    /// `suppressIndefinitely`.
    pub fn suppress_indefinitely(&self) -> bool {
        self.expiry == SuppressionExpiry::Indefinitely
    }

    /// `expirationDate`, if any.
    pub fn expiration_date(&self) -> Option<i64> {
        match self.expiry {
            SuppressionExpiry::Indefinitely => None,
            SuppressionExpiry::Until(t) => Some(t),
        }
    }

    /// Whether the suppression is in force at `now`.
    pub fn is_active(&self, now: i64) -> bool {
        match self.expiry {
            SuppressionExpiry::Indefinitely => true,
            SuppressionExpiry::Until(t) => now < t,
        }
    }

    /// Whether the suppression is in force at `now` and covers `finding`.
    pub fn covers(&self, finding: &AuditFinding, now: i64) -> bool {
        self.is_active(now)
            && self.check_name == finding.check_name
            && self.resource_identifier == finding.non_compliant_resource.resource_identifier
    }
}

/// Sets `is_suppressed` on every finding an in-force suppression covers (and clears it on the
/// others).
pub fn apply_suppressions(
    findings: &mut [AuditFinding],
    suppressions: &[AuditSuppression],
    now: i64,
) {
    for f in findings {
        f.is_suppressed = suppressions.iter().any(|s| s.covers(f, now));
    }
}
