//! Audit findings, shaped and serialised like botocore's `AuditFinding` (the `iot` service
//! model, 2015-05-28): camelCase member names, timestamps as Unix seconds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::check::{CheckName, ReasonCode, Severity};

/// The kind of a non-compliant or related resource (`ResourceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResourceType {
    /// `DEVICE_CERTIFICATE`.
    DeviceCertificate,
    /// `CA_CERTIFICATE`.
    CaCertificate,
    /// `IOT_POLICY`.
    IotPolicy,
    /// `CLIENT_ID`.
    ClientId,
    /// `ACCOUNT_SETTINGS`.
    AccountSettings,
    /// `ISSUER_CERTIFICATE`.
    IssuerCertificate,
}

/// A policy version (`PolicyVersionIdentifier`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyVersionIdentifier {
    /// `policyName`.
    pub policy_name: String,
    /// `policyVersionId`.
    pub policy_version_id: String,
}

/// An issuing CA certificate (`IssuerCertificateIdentifier`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuerCertificateIdentifier {
    /// `issuerCertificateSubject`: the issuing CA's subject, RFC 4514 text.
    pub issuer_certificate_subject: String,
    /// `issuerId`: the issuing CA's certificate ID.
    pub issuer_id: String,
    /// `issuerCertificateSerialNumber`: the issuing CA's serial, colon-separated hex.
    pub issuer_certificate_serial_number: String,
}

/// Which resource a finding is about (`ResourceIdentifier`): exactly the members that apply are
/// set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceIdentifier {
    /// `deviceCertificateId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_certificate_id: Option<String>,
    /// `caCertificateId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate_id: Option<String>,
    /// `clientId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `policyVersionIdentifier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version_identifier: Option<PolicyVersionIdentifier>,
    /// `account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `issuerCertificateIdentifier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_certificate_identifier: Option<IssuerCertificateIdentifier>,
}

impl ResourceIdentifier {
    /// A device certificate.
    pub fn device_certificate(id: impl Into<String>) -> Self {
        ResourceIdentifier {
            device_certificate_id: Some(id.into()),
            ..Self::default()
        }
    }
    /// A CA certificate.
    pub fn ca_certificate(id: impl Into<String>) -> Self {
        ResourceIdentifier {
            ca_certificate_id: Some(id.into()),
            ..Self::default()
        }
    }
    /// A client ID.
    pub fn client_id(id: impl Into<String>) -> Self {
        ResourceIdentifier {
            client_id: Some(id.into()),
            ..Self::default()
        }
    }
    /// A policy version.
    pub fn policy_version(name: impl Into<String>, version: impl Into<String>) -> Self {
        ResourceIdentifier {
            policy_version_identifier: Some(PolicyVersionIdentifier {
                policy_name: name.into(),
                policy_version_id: version.into(),
            }),
            ..Self::default()
        }
    }
    /// The account's settings.
    pub fn account(account: impl Into<String>) -> Self {
        ResourceIdentifier {
            account: Some(account.into()),
            ..Self::default()
        }
    }
}

/// The resource a finding is about (`NonCompliantResource`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NonCompliantResource {
    /// `resourceType`.
    pub resource_type: ResourceType,
    /// `resourceIdentifier`.
    pub resource_identifier: ResourceIdentifier,
    /// `additionalInfo`: string facts about the resource.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub additional_info: BTreeMap<String, String>,
}

/// A resource related to a finding (`RelatedResource`), e.g. the client IDs that shared a
/// certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelatedResource {
    /// `resourceType`.
    pub resource_type: ResourceType,
    /// `resourceIdentifier`.
    pub resource_identifier: ResourceIdentifier,
    /// `additionalInfo`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub additional_info: BTreeMap<String, String>,
}

/// One non-compliant resource found by one check (`AuditFinding`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditFinding {
    /// `findingId`: stable for the same task, check, resource and reason.
    pub finding_id: String,
    /// `taskId`.
    pub task_id: String,
    /// `checkName`.
    pub check_name: CheckName,
    /// `taskStartTime`, Unix seconds.
    pub task_start_time: i64,
    /// `findingTime`, Unix seconds.
    pub finding_time: i64,
    /// `severity`.
    pub severity: Severity,
    /// `nonCompliantResource`.
    pub non_compliant_resource: NonCompliantResource,
    /// `relatedResources`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related_resources: Vec<RelatedResource>,
    /// `reasonForNonCompliance`: a sentence for people.
    pub reason_for_non_compliance: String,
    /// `reasonForNonComplianceCode`.
    pub reason_for_non_compliance_code: ReasonCode,
    /// `isSuppressed`: a suppression in force covers this check and resource.
    pub is_suppressed: bool,
}

/// A finding before the run gives it a task, time and ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Draft {
    pub(crate) check: CheckName,
    pub(crate) resource_type: ResourceType,
    pub(crate) resource: ResourceIdentifier,
    pub(crate) additional_info: BTreeMap<String, String>,
    pub(crate) related: Vec<RelatedResource>,
    pub(crate) reason: String,
    pub(crate) code: ReasonCode,
}

impl Draft {
    pub(crate) fn new(
        check: CheckName,
        resource_type: ResourceType,
        resource: ResourceIdentifier,
        code: ReasonCode,
        reason: String,
    ) -> Draft {
        Draft {
            check,
            resource_type,
            resource,
            additional_info: BTreeMap::new(),
            related: Vec::new(),
            reason,
            code,
        }
    }

    pub(crate) fn info(mut self, key: &str, value: impl Into<String>) -> Draft {
        self.additional_info.insert(key.to_string(), value.into());
        self
    }

    pub(crate) fn finish(self, task_id: &str, now: i64) -> AuditFinding {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [task_id, self.check.as_str(), self.code.as_str()] {
            ctx.update(part.as_bytes());
            ctx.update(&[0]);
        }
        ctx.update(format!("{:?}", self.resource).as_bytes());
        let digest = ctx.finish();
        let finding_id = crate::snapshot::hex(&digest.as_ref()[..16]);
        AuditFinding {
            finding_id,
            task_id: task_id.to_string(),
            check_name: self.check,
            task_start_time: now,
            finding_time: now,
            severity: self.check.severity(),
            non_compliant_resource: NonCompliantResource {
                resource_type: self.resource_type,
                resource_identifier: self.resource,
                additional_info: self.additional_info,
            },
            related_resources: self.related,
            reason_for_non_compliance: self.reason,
            reason_for_non_compliance_code: self.code,
            is_suppressed: false,
        }
    }
}
