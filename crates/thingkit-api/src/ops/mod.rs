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
mod ca_certificates;
mod certificates;
mod data;
mod endpoint;
mod policies;
mod templates;
mod thing_groups;
mod thing_types;
mod things;

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
        (Service::IotData, _) => named("topic", "topic"),
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
        (
            _,
            "DescribeCACertificate"
            | "UpdateCACertificate"
            | "DeleteCACertificate"
            | "ListCertificatesByCA",
        ) => named("cacert", "caCertificateId"),
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
        _ => "*".to_string(),
    };
    let action = match service {
        Service::IotData => "iot:Publish".to_string(),
        Service::Iot => format!("iot:{op}"),
    };
    (action, resource)
}
