//! Mitigation actions (Device Defender guide, *Mitigation actions*) turned into a plan of
//! registry operations for the caller to apply. AWS allows each action only for some checks;
//! asking for another is an error. Suppressed findings are never mitigated ("Mitigation actions
//! won't be performed on suppressed audit findings"). `PUBLISH_FINDING_TO_SNS` has no
//! self-hosted counterpart and is left out.

use serde::{Deserialize, Serialize};

use crate::check::CheckName;
use crate::error::Error;
use crate::finding::AuditFinding;
use crate::snapshot::AuditSnapshot;

/// A configured mitigation action (`MitigationActionParams`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MitigationAction {
    /// `UPDATE_DEVICE_CERTIFICATE` (action `DEACTIVATE`, the only one AWS offers).
    UpdateDeviceCertificate,
    /// `UPDATE_CA_CERTIFICATE` (action `DEACTIVATE`).
    UpdateCaCertificate,
    /// `ADD_THINGS_TO_THING_GROUP`: the things attached to the finding's certificate.
    AddThingsToThingGroup {
        /// The (quarantine) thing group.
        group: String,
        /// `overrideDynamicGroups`.
        override_dynamic_groups: bool,
    },
    /// `REPLACE_DEFAULT_POLICY_VERSION` (template `BLANK_POLICY`, the only one AWS offers).
    ReplaceDefaultPolicyVersion,
    /// `ENABLE_IOT_LOGGING`.
    EnableIotLogging,
}

impl MitigationAction {
    /// AWS's action type name, e.g. `UPDATE_CA_CERTIFICATE`.
    pub fn type_name(&self) -> &'static str {
        match self {
            MitigationAction::UpdateDeviceCertificate => "UPDATE_DEVICE_CERTIFICATE",
            MitigationAction::UpdateCaCertificate => "UPDATE_CA_CERTIFICATE",
            MitigationAction::AddThingsToThingGroup { .. } => "ADD_THINGS_TO_THING_GROUP",
            MitigationAction::ReplaceDefaultPolicyVersion => "REPLACE_DEFAULT_POLICY_VERSION",
            MitigationAction::EnableIotLogging => "ENABLE_IOT_LOGGING",
        }
    }

    /// Whether AWS allows this action for `check` (the guide's *Audit check to mitigation
    /// action mapping*; `DEVICE_CERTIFICATE_AGE_CHECK` is not in that table and is given the
    /// device-certificate actions of the expiry check).
    pub fn is_allowed_for(&self, check: CheckName) -> bool {
        use CheckName as C;
        match self {
            MitigationAction::UpdateDeviceCertificate
            | MitigationAction::AddThingsToThingGroup { .. } => matches!(
                check,
                C::DeviceCertificateExpiring
                    | C::DeviceCertificateAge
                    | C::DeviceCertificateKeyQuality
                    | C::DeviceCertificateShared
                    | C::RevokedDeviceCertificateStillActive
                    | C::IntermediateCaRevokedForActiveDeviceCertificates
            ),
            MitigationAction::UpdateCaCertificate => matches!(
                check,
                C::CaCertificateExpiring
                    | C::CaCertificateKeyQuality
                    | C::RevokedCaCertificateStillActive
            ),
            MitigationAction::ReplaceDefaultPolicyVersion => matches!(
                check,
                C::IotPolicyOverlyPermissive | C::IotPolicyPotentialMisconfiguration
            ),
            MitigationAction::EnableIotLogging => check == C::LoggingDisabled,
        }
    }
}

/// The policy template `REPLACE_DEFAULT_POLICY_VERSION` installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyTemplate {
    /// `BLANK_POLICY`: a version that allows nothing.
    BlankPolicy,
}

impl PolicyTemplate {
    /// The policy document the template stands for. AWS does not print the template's text;
    /// thingkit's reading is one statement denying `iot:*` on `*`, so the certificates the
    /// policy is attached to lose every permission even where another attached policy allows
    /// it (a Deny wins), which is the safe side for a quarantine.
    pub fn document(self) -> &'static str {
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"iot:*","Resource":"*"}]}"#
    }
}

/// One change to make in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistryOperation {
    /// Set a device certificate INACTIVE.
    DeactivateCertificate {
        /// The certificate ID.
        id: String,
    },
    /// Set a CA certificate INACTIVE.
    DeactivateCaCertificate {
        /// The CA certificate ID.
        id: String,
    },
    /// Add things to a thing group.
    AddThingsToThingGroup {
        /// The group.
        group: String,
        /// The things.
        things: Vec<String>,
        /// `overrideDynamicGroups`.
        override_dynamic_groups: bool,
    },
    /// Create a new version of the policy from the template and make it the default.
    ReplaceDefaultPolicyVersion {
        /// The policy name.
        policy: String,
        /// The template.
        template: PolicyTemplate,
    },
    /// Turn platform logging on.
    EnableIotLogging,
}

/// The operations that apply `action` to `finding`. A suppressed finding gives none; an action
/// AWS does not allow for the finding's check is [`Error::MitigationNotAllowed`].
pub fn plan(
    finding: &AuditFinding,
    action: &MitigationAction,
    snapshot: &AuditSnapshot,
) -> Result<Vec<RegistryOperation>, Error> {
    if !action.is_allowed_for(finding.check_name) {
        return Err(Error::MitigationNotAllowed {
            check_name: finding.check_name,
            action: action.type_name(),
        });
    }
    if finding.is_suppressed {
        return Ok(Vec::new());
    }
    let id = &finding.non_compliant_resource.resource_identifier;
    let missing = |field| Error::MitigationMissingResource {
        finding_id: finding.finding_id.clone(),
        action: action.type_name(),
        field,
    };
    Ok(match action {
        MitigationAction::UpdateDeviceCertificate => {
            let cert = id
                .device_certificate_id
                .clone()
                .ok_or_else(|| missing("deviceCertificateId"))?;
            vec![RegistryOperation::DeactivateCertificate { id: cert }]
        }
        MitigationAction::UpdateCaCertificate => {
            let ca = id
                .ca_certificate_id
                .clone()
                .ok_or_else(|| missing("caCertificateId"))?;
            vec![RegistryOperation::DeactivateCaCertificate { id: ca }]
        }
        MitigationAction::AddThingsToThingGroup {
            group,
            override_dynamic_groups,
        } => {
            let cert = id
                .device_certificate_id
                .as_deref()
                .ok_or_else(|| missing("deviceCertificateId"))?;
            let things: Vec<String> = snapshot
                .device_certificates
                .iter()
                .filter(|c| c.id == cert)
                .flat_map(|c| c.things.iter().cloned())
                .collect();
            if things.is_empty() {
                Vec::new()
            } else {
                vec![RegistryOperation::AddThingsToThingGroup {
                    group: group.clone(),
                    things,
                    override_dynamic_groups: *override_dynamic_groups,
                }]
            }
        }
        MitigationAction::ReplaceDefaultPolicyVersion => {
            let policy = id
                .policy_version_identifier
                .as_ref()
                .ok_or_else(|| missing("policyVersionIdentifier"))?;
            vec![RegistryOperation::ReplaceDefaultPolicyVersion {
                policy: policy.policy_name.clone(),
                template: PolicyTemplate::BlankPolicy,
            }]
        }
        MitigationAction::EnableIotLogging => vec![RegistryOperation::EnableIotLogging],
    })
}

/// Plans `action` for every finding, in order, without repeating an operation (two findings on
/// one certificate deactivate it once).
pub fn plan_all(
    findings: &[AuditFinding],
    action: &MitigationAction,
    snapshot: &AuditSnapshot,
) -> Result<Vec<RegistryOperation>, Error> {
    let mut out: Vec<RegistryOperation> = Vec::new();
    for f in findings {
        for op in plan(f, action, snapshot)? {
            if !out.contains(&op) {
                out.push(op);
            }
        }
    }
    Ok(out)
}
