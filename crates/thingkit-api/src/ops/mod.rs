//! The operations, one module per AWS resource (as axum apps are laid out): each module's
//! `handlers()` lists its operations by their model name. A handler receives the bound,
//! validated [`Input`] and returns the output members as JSON (REST-JSON timestamps are epoch
//! seconds).

use serde_json::Value;
use thingkit_policy::ArnPrefix;
use thingkit_provision::RegistryStore;

use crate::error::ApiResult;
use crate::model::{Input, Service};
use crate::service::Ctx;

mod attachments;
pub(crate) mod audits;
mod ca_certificates;
mod certificates;
mod data;
mod endpoint;
mod job_templates;
pub(crate) mod jobs;
mod paging;
mod policies;
pub(crate) mod security_profiles;
mod shadows;
mod templates;
pub(crate) mod thing_groups;
mod thing_types;
mod things;
mod topic_rules;

/// An operation: the input in, the output members out.
pub(crate) type Handler<S> = fn(&Ctx<'_, S>, &Input) -> ApiResult<Value>;

/// Every operation's handler by its model name.
pub(crate) fn handlers<S: RegistryStore>() -> Vec<(&'static str, Handler<S>)> {
    let mut all = Vec::new();
    all.extend(things::handlers::<S>());
    all.extend(thing_types::handlers::<S>());
    all.extend(thing_groups::handlers::<S>());
    all.extend(certificates::handlers::<S>());
    all.extend(ca_certificates::handlers::<S>());
    all.extend(policies::handlers::<S>());
    all.extend(attachments::handlers::<S>());
    all.extend(templates::handlers::<S>());
    all.extend(endpoint::handlers::<S>());
    all.extend(data::handlers::<S>());
    all.extend(shadows::handlers::<S>());
    all.extend(jobs::handlers::<S>());
    all.extend(job_templates::handlers::<S>());
    all.extend(topic_rules::handlers::<S>());
    all.extend(audits::handlers::<S>());
    all.extend(security_profiles::handlers::<S>());
    all
}

/// The IAM action and resource ARN an operation is authorized on (the AWS IoT service
/// authorization reference: `iot:<Operation>` on the resource it names, `*` for list and
/// account-wide operations).
pub(crate) fn authorization(
    op: &str,
    service: Service,
    input: &Input,
    arn: &ArnPrefix,
) -> (String, String) {
    let named = |kind: &str, member: &str| match input.str(member) {
        Some(name) => arn.arn(&format!("{kind}/{name}")),
        None => "*".to_string(),
    };
    let resource = match (service, op) {
        (Service::IotData, "Publish") => named("topic", "topic"),
        (Service::IotData, _) => named("thing", "thingName"),
        (
            _,
            "CreateThing"
            | "DescribeThing"
            | "UpdateThing"
            | "DeleteThing"
            | "ListThingPrincipals"
            | "AttachThingPrincipal"
            | "DetachThingPrincipal"
            | "ListThingGroupsForThing",
        ) => named("thing", "thingName"),
        (_, "CreateThingType" | "DescribeThingType" | "DeprecateThingType" | "DeleteThingType") => {
            named("thingtype", "thingTypeName")
        }
        (
            _,
            "CreateThingGroup"
            | "DescribeThingGroup"
            | "UpdateThingGroup"
            | "DeleteThingGroup"
            | "AddThingToThingGroup"
            | "RemoveThingFromThingGroup"
            | "ListThingsInThingGroup",
        ) => named("thinggroup", "thingGroupName"),
        (_, "DescribeCertificate" | "UpdateCertificate" | "DeleteCertificate") => {
            named("cert", "certificateId")
        }
        // The model names the CA's ID `certificateId` in these three and `caCertificateId` in
        // ListCertificatesByCA.
        (_, "DescribeCACertificate" | "UpdateCACertificate" | "DeleteCACertificate") => {
            named("cacert", "certificateId")
        }
        (_, "ListCertificatesByCA") => named("cacert", "caCertificateId"),
        (
            _,
            "CreatePolicy"
            | "GetPolicy"
            | "DeletePolicy"
            | "CreatePolicyVersion"
            | "GetPolicyVersion"
            | "ListPolicyVersions"
            | "SetDefaultPolicyVersion"
            | "DeletePolicyVersion"
            | "AttachPolicy"
            | "DetachPolicy"
            | "AttachPrincipalPolicy"
            | "DetachPrincipalPolicy"
            | "ListTargetsForPolicy",
        ) => named("policy", "policyName"),
        (
            _,
            "CreateProvisioningTemplate"
            | "DescribeProvisioningTemplate"
            | "UpdateProvisioningTemplate"
            | "DeleteProvisioningTemplate",
        ) => named("provisioningtemplate", "templateName"),
        (
            _,
            "CreateJob"
            | "DescribeJob"
            | "CancelJob"
            | "DeleteJob"
            | "UpdateJob"
            | "GetJobDocument"
            | "AssociateTargetsWithJob"
            | "ListJobExecutionsForJob",
        ) => named("job", "jobId"),
        // The execution operations are authorized on the thing, as AWS's reference lists them.
        (
            _,
            "DescribeJobExecution"
            | "CancelJobExecution"
            | "DeleteJobExecution"
            | "ListJobExecutionsForThing",
        ) => named("thing", "thingName"),
        (_, "CreateJobTemplate" | "DescribeJobTemplate" | "DeleteJobTemplate") => {
            named("jobtemplate", "jobTemplateId")
        }
        (
            _,
            "CreateTopicRule" | "GetTopicRule" | "ReplaceTopicRule" | "EnableTopicRule"
            | "DisableTopicRule" | "DeleteTopicRule",
        ) => named("rule", "ruleName"),
        (
            _,
            "CreateSecurityProfile"
            | "DescribeSecurityProfile"
            | "UpdateSecurityProfile"
            | "DeleteSecurityProfile"
            | "AttachSecurityProfile"
            | "DetachSecurityProfile"
            | "ListTargetsForSecurityProfile",
        ) => named("securityprofile", "securityProfileName"),
        (
            _,
            "CreateScheduledAudit"
            | "DescribeScheduledAudit"
            | "UpdateScheduledAudit"
            | "DeleteScheduledAudit",
        ) => named("scheduledaudit", "scheduledAuditName"),
        _ => "*".to_string(),
    };
    // `iot:Publish`, `iot:GetThingShadow`, ...: the data-plane actions are named after their
    // operations too.
    let action = format!("iot:{op}");
    (action, resource)
}

// ----------------------------------------------------------------------------------------------
// Shared by the registry operations: pagination, IDs, attribute payloads, registry refusals.

/// One page of `sorted` (ascending by key, keys unique) after the key `token` names, at most
/// `size` long, and the token of the next page: [`paging::page`] in ascending order (one
/// token format for `nextToken` and `marker`, base64 as the model's `Marker` pattern wants).
pub(crate) fn page<T>(
    sorted: impl Iterator<Item = (String, T)>,
    token: Option<&str>,
    size: usize,
) -> ApiResult<(Vec<T>, Option<String>)> {
    paging::page(sorted.collect(), token, size, false)
}

/// A resource ID in AWS's UUID shape, derived from what identifies the resource: `kind`,
/// its name and when it was created. The registry stores no IDs; deriving them keeps them
/// stable across restarts and equal on every replica, and a resource deleted and created again
/// (at another second) gets a new one, as in AWS. A thing has no creation time in the
/// registry, so a thing created again under the same name has the same ID (AWS would issue a
/// new one).
pub(crate) fn resource_id(kind: &str, name: &str, created: i64) -> String {
    crate::service::uuid_of(&format!("{kind}\0{name}\0{created}"))
}

/// The `attributes` of an `AttributePayload` JSON object, in order (the model validated the
/// names and values are strings).
pub(crate) fn payload_attributes(payload: Option<&Value>) -> Vec<(String, String)> {
    payload
        .and_then(|p| p.get("attributes"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The attribute changes an `AttributePayload` asks of a resource whose attributes are
/// `current`, in the registry's merge form (`None` removes one). AWS: with `merge` true the
/// payload is merged and an attribute whose value is `""` is removed; without it the payload
/// replaces every attribute. An empty value is never stored by an update either way. No
/// payload, or one without `attributes`, changes nothing.
pub(crate) fn attribute_changes<'a>(
    payload: Option<&Value>,
    current: impl Iterator<Item = &'a str>,
) -> Vec<(String, Option<String>)> {
    let Some(attributes) = payload
        .and_then(|p| p.get("attributes"))
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    let merge = payload
        .and_then(|p| p.get("merge"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut changes: Vec<(String, Option<String>)> = Vec::new();
    if !merge {
        changes.extend(
            current
                .filter(|k| !attributes.contains_key(*k))
                .map(|k| (k.to_string(), None)),
        );
    }
    for (k, v) in attributes {
        let v = v.as_str().unwrap_or_default();
        changes.push((k.clone(), (!v.is_empty()).then(|| v.to_string())));
    }
    changes
}

/// A registry refusal as the thing, thing type and thing group operations answer it: AWS
/// models no `DeleteConflictException` or `LimitExceededException` for them, and refuses a
/// state conflict (a deprecated type, principals still attached) or a registry limit with
/// `InvalidRequestException`.
pub(crate) fn registry_refusal(e: thingkit_provision::Error) -> crate::error::ApiError {
    match e {
        thingkit_provision::Error::Conflict { .. }
        | thingkit_provision::Error::LimitExceeded { .. } => {
            crate::error::ApiError::invalid_request(e.to_string())
        }
        other => other.into(),
    }
}

/// `expectedVersion` against the resource's version: `VersionConflictException` when given and
/// different.
pub(crate) fn check_version(input: &Input, kind: &str, name: &str, version: u64) -> ApiResult<()> {
    match input.int("expectedVersion") {
        Some(expected) if u64::try_from(expected).ok() != Some(version) => {
            Err(crate::error::ApiError::version_conflict(format!(
                "The version for {kind} {name} does not match the expected version."
            )))
        }
        _ => Ok(()),
    }
}

/// The name a request gives by name or by ARN (`thingName` / `thingArn`): either names the
/// resource; both must agree; an ARN must be one of this account's `kind/` ARNs.
pub(crate) fn name_or_arn<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
    name_member: &str,
    arn_member: &str,
    kind: &str,
) -> ApiResult<String> {
    let by_arn = match input.str(arn_member) {
        Some(arn) => {
            let prefix = ctx.arn(&format!("{kind}/"));
            let name = arn
                .strip_prefix(prefix.as_str())
                .filter(|n| !n.is_empty() && !n.contains('/'))
                .ok_or_else(|| {
                    crate::error::ApiError::invalid_request(format!(
                        "{arn_member} {arn} is not a {kind} ARN of this account"
                    ))
                })?;
            Some(name.to_string())
        }
        None => None,
    };
    match (input.str(name_member), by_arn) {
        (Some(n), Some(a)) if n != a => Err(crate::error::ApiError::invalid_request(format!(
            "{name_member} and {arn_member} name different resources"
        ))),
        (Some(n), _) => Ok(n.to_string()),
        (None, Some(a)) => Ok(a),
        (None, None) => Err(crate::error::ApiError::invalid_request(format!(
            "Either {name_member} or {arn_member} must be given"
        ))),
    }
}

/// Adds `nextToken` to a list answer when there is a next page.
pub(crate) fn with_token(mut out: Value, next: Option<String>) -> Value {
    if let (Some(token), Some(obj)) = (next, out.as_object_mut()) {
        obj.insert("nextToken".into(), Value::String(token));
    }
    out
}
