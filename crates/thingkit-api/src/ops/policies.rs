//! Policies and their versions: `CreatePolicy`, `GetPolicy`, `ListPolicies`, `DeletePolicy`,
//! `CreatePolicyVersion`, `GetPolicyVersion`, `ListPolicyVersions`,
//! `SetDefaultPolicyVersion`, `DeletePolicyVersion`.
//!
//! Documents are validated by `thingkit-policy`; an invalid one is a
//! `MalformedPolicyException` whose message lists every finding (code, JSON path, line and
//! column). A policy's `creationDate` is that of its oldest remaining version and its
//! `lastModifiedDate` that of its default version; `generationId` is left out. `ListPolicies`
//! is in name order (`ascendingOrder: false` reverses it).

use std::sync::Arc;

use serde_json::{Value, json};
use thingkit_provision::{PolicyVersion, RegistryStore, StoredPolicy};

use crate::error::{ApiError, ApiResult};
use crate::model::Input;
use crate::ops::Handler;
use crate::ops::paging::marker_list;
use crate::service::Ctx;

pub(crate) fn handlers<S: RegistryStore>() -> Vec<(&'static str, Handler<S>)> {
    vec![
        ("CreatePolicy", create_policy::<S> as Handler<S>),
        ("GetPolicy", get_policy::<S>),
        ("ListPolicies", list_policies::<S>),
        ("DeletePolicy", delete_policy::<S>),
        ("CreatePolicyVersion", create_policy_version::<S>),
        ("GetPolicyVersion", get_policy_version::<S>),
        ("ListPolicyVersions", list_policy_versions::<S>),
        ("SetDefaultPolicyVersion", set_default_policy_version::<S>),
        ("DeletePolicyVersion", delete_policy_version::<S>),
    ]
}

/// The policy's `ResourceNotFoundException`.
pub(crate) fn policy_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("The policy {name} does not exist"))
}

fn version_id(input: &Input) -> ApiResult<u32> {
    let text = input.required("policyVersionId")?;
    text.parse::<u32>()
        .map_err(|_| ApiError::invalid_request(format!("{text:?} is not a policy version ID")))
}

fn version_not_found(name: &str, version: u32) -> ApiError {
    ApiError::not_found(format!("The policy {name} has no version {version}"))
}

fn create_policy<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("policyName")?;
    let document = input.required("policyDocument")?;
    ctx.write().create_policy(name, document, ctx.now)?;
    Ok(json!({
        "policyName": name,
        "policyArn": ctx.arn(&format!("policy/{name}")),
        "policyDocument": document,
        "policyVersionId": "1",
    }))
}

fn default_of(policy: &StoredPolicy) -> ApiResult<&Arc<PolicyVersion>> {
    policy.default_version().ok_or_else(|| {
        ApiError::internal(format!("the policy {} has no default version", policy.name))
    })
}

fn get_policy<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("policyName")?;
    let registry = ctx.read();
    let policy = registry
        .policy(name)
        .ok_or_else(|| policy_not_found(name))?;
    let default = default_of(policy)?;
    let created = policy
        .versions
        .iter()
        .map(|v| v.created_at)
        .min()
        .unwrap_or(default.created_at);
    Ok(json!({
        "policyName": name,
        "policyArn": ctx.arn(&format!("policy/{name}")),
        "policyDocument": default.document.text(),
        "defaultVersionId": default.version_id.to_string(),
        "creationDate": created,
        "lastModifiedDate": default.created_at,
    }))
}

fn list_policies<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let registry = ctx.read();
    let items: Vec<(String, Value)> = registry
        .policies()
        .map(|p| {
            (
                p.name.to_string(),
                json!({
                    "policyName": &*p.name,
                    "policyArn": ctx.arn(&format!("policy/{}", p.name)),
                }),
            )
        })
        .collect();
    let descending = input.bool("ascendingOrder") == Some(false);
    marker_list(ctx, input, "policies", items, descending)
}

fn delete_policy<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("policyName")?;
    let mut registry = ctx.write();
    if registry.policy(name).is_none() {
        return Err(policy_not_found(name));
    }
    // Registry conflicts (still attached; non-default versions left) are
    // DeleteConflictException, as AWS.
    registry.delete_policy(name)?;
    Ok(json!({}))
}

fn create_policy_version<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("policyName")?;
    let document = input.required("policyDocument")?;
    let set_as_default = input.bool("setAsDefault").unwrap_or(false);
    let mut registry = ctx.write();
    let policy = registry
        .policy(name)
        .ok_or_else(|| policy_not_found(name))?;
    let limit = registry.limits().max_policy_versions;
    if policy.versions.len() >= limit {
        return Err(ApiError::versions_limit_exceeded(format!(
            "The policy {name} already has the maximum number of versions ({limit}); delete \
             one with DeletePolicyVersion first"
        )));
    }
    let version = registry.create_policy_version(name, document, set_as_default, ctx.now)?;
    Ok(json!({
        "policyArn": ctx.arn(&format!("policy/{name}")),
        "policyDocument": document,
        "policyVersionId": version.to_string(),
        "isDefaultVersion": set_as_default,
    }))
}

fn get_policy_version<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("policyName")?;
    let version = version_id(input)?;
    let registry = ctx.read();
    let policy = registry
        .policy(name)
        .ok_or_else(|| policy_not_found(name))?;
    let v = policy
        .version(version)
        .ok_or_else(|| version_not_found(name, version))?;
    Ok(json!({
        "policyArn": ctx.arn(&format!("policy/{name}")),
        "policyName": name,
        "policyDocument": v.document.text(),
        "policyVersionId": v.version_id.to_string(),
        "isDefaultVersion": v.version_id == policy.default_version_id,
        "creationDate": v.created_at,
        "lastModifiedDate": v.created_at,
    }))
}

/// The versions, newest first.
fn list_policy_versions<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("policyName")?;
    let registry = ctx.read();
    let policy = registry
        .policy(name)
        .ok_or_else(|| policy_not_found(name))?;
    let versions: Vec<Value> = policy
        .versions
        .iter()
        .rev()
        .map(|v| {
            json!({
                "versionId": v.version_id.to_string(),
                "isDefaultVersion": v.version_id == policy.default_version_id,
                "createDate": v.created_at,
            })
        })
        .collect();
    Ok(json!({ "policyVersions": versions }))
}

/// Policy `name`, refused unless it exists and has version `version`.
fn existing_version<'r, S: RegistryStore>(
    registry: &'r thingkit_provision::Registry<S>,
    name: &str,
    version: u32,
) -> ApiResult<&'r StoredPolicy> {
    let policy = registry
        .policy(name)
        .ok_or_else(|| policy_not_found(name))?;
    if policy.version(version).is_none() {
        return Err(version_not_found(name, version));
    }
    Ok(policy)
}

fn set_default_policy_version<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
) -> ApiResult<Value> {
    let name = input.required("policyName")?;
    let version = version_id(input)?;
    let mut registry = ctx.write();
    existing_version(&registry, name, version)?;
    registry.set_default_policy_version(name, version)?;
    Ok(json!({}))
}

fn delete_policy_version<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("policyName")?;
    let version = version_id(input)?;
    let mut registry = ctx.write();
    let policy = existing_version(&registry, name, version)?;
    if policy.default_version_id == version {
        return Err(ApiError::delete_conflict(format!(
            "Cannot delete the default version {version} of the policy {name}; make another \
             version the default first"
        )));
    }
    registry.delete_policy_version(name, version)?;
    Ok(json!({}))
}
