//! Attachments of policies and things to certificates and groups: `AttachPolicy`,
//! `DetachPolicy`, `AttachPrincipalPolicy`, `DetachPrincipalPolicy`, `ListAttachedPolicies`,
//! `ListTargetsForPolicy`, `ListPrincipalPolicies`, `AttachThingPrincipal`,
//! `DetachThingPrincipal`, `ListThingPrincipals`, `ListPrincipalThings`,
//! `GetEffectivePolicies` and `TestAuthorization`.
//!
//! Principals and targets are certificate ARNs (`arn:…:cert/<ID>`) or, for policy targets,
//! thing group ARNs (`arn:…:thinggroup/<name>`) of this server's account; Cognito identities
//! are refused with `InvalidRequestException`.
//!
//! `TestAuthorization` answers as AWS does and adds one member per auth result,
//! `x-thingkit-explanation`: the statements that decided it (`policyName`, 0-based
//! `statement` index, `sid` if any, the `resource` tested and its `decision`), from
//! `thingkit_policy::PolicySet::evaluate`. Clients built from botocore's model ignore it.
//! `implicitDeny.policies` lists every policy evaluated (none of which matched), as AWS
//! describes it.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use thingkit_policy::{Action, Context, Decision, PolicySet, Request, ThingContext};
use thingkit_provision::{CertificateId, PolicyTarget, RegistryStore, StoredPolicy};

use crate::error::{ApiError, ApiResult};
use crate::model::Input;
use crate::ops::Handler;
use crate::ops::certificates::{id_of_arn, not_found};
use crate::ops::paging::{page, page_size};
use crate::ops::policies::policy_not_found;
use crate::service::Ctx;

pub(crate) fn handlers<S: RegistryStore>() -> Vec<(&'static str, Handler<S>)> {
    vec![
        ("AttachPolicy", attach_policy::<S> as Handler<S>),
        ("DetachPolicy", detach_policy::<S>),
        ("AttachPrincipalPolicy", attach_principal_policy::<S>),
        ("DetachPrincipalPolicy", detach_principal_policy::<S>),
        ("ListAttachedPolicies", list_attached_policies::<S>),
        ("ListTargetsForPolicy", list_targets_for_policy::<S>),
        ("ListPrincipalPolicies", list_principal_policies::<S>),
        ("AttachThingPrincipal", attach_thing_principal::<S>),
        ("DetachThingPrincipal", detach_thing_principal::<S>),
        ("ListThingPrincipals", list_thing_principals::<S>),
        ("ListPrincipalThings", list_principal_things::<S>),
        ("GetEffectivePolicies", get_effective_policies::<S>),
        ("TestAuthorization", test_authorization::<S>),
    ]
}

/// A policy target ARN as a [`PolicyTarget`].
fn target_of<S: RegistryStore>(ctx: &Ctx<'_, S>, target: &str) -> ApiResult<PolicyTarget> {
    if target.starts_with(&ctx.arn("cert/")) {
        return Ok(PolicyTarget::Certificate(id_of_arn(ctx, target)?));
    }
    match target.strip_prefix(ctx.arn("thinggroup/").as_str()) {
        Some(group) if !group.is_empty() => Ok(PolicyTarget::ThingGroup(group.to_string())),
        _ => Err(ApiError::invalid_request(format!(
            "{target:?} is neither a certificate ARN ({}) nor a thing group ARN ({}) of this \
             account",
            ctx.arn("cert/<certificateId>"),
            ctx.arn("thinggroup/<thingGroupName>")
        ))),
    }
}

fn target_arn<S: RegistryStore>(ctx: &Ctx<'_, S>, target: &PolicyTarget) -> String {
    match target {
        PolicyTarget::Certificate(id) => ctx.arn(&format!("cert/{id}")),
        PolicyTarget::ThingGroup(name) => ctx.arn(&format!("thinggroup/{name}")),
    }
}

/// Checks that the policy and the target exist, so that a missing one is named.
fn check_exists<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    policy: &str,
    target: &PolicyTarget,
) -> ApiResult<()> {
    let registry = ctx.read();
    if registry.policy(policy).is_none() {
        return Err(policy_not_found(policy));
    }
    match target {
        PolicyTarget::Certificate(id) if registry.certificate(id).is_none() => Err(not_found(id)),
        PolicyTarget::ThingGroup(name) if registry.thing_group(name).is_none() => Err(
            ApiError::not_found(format!("The thing group {name} does not exist")),
        ),
        _ => Ok(()),
    }
}

fn attach<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    policy: &str,
    target: &PolicyTarget,
) -> ApiResult<Value> {
    check_exists(ctx, policy, target)?;
    ctx.write().attach_policy(policy, target)?;
    Ok(json!({}))
}

/// Detaching a policy that is not attached succeeds (AWS's `DetachPolicy` has no
/// not-found error).
fn detach<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    policy: &str,
    target: &PolicyTarget,
) -> ApiResult<Value> {
    check_exists(ctx, policy, target)?;
    let mut registry = ctx.write();
    let attached = match target {
        PolicyTarget::Certificate(id) => registry
            .certificate(id)
            .is_some_and(|c| c.policies.iter().any(|p| &**p == policy)),
        PolicyTarget::ThingGroup(name) => registry
            .thing_group(name)
            .is_some_and(|g| g.policies.iter().any(|p| &**p == policy)),
    };
    if attached {
        registry.detach_policy(policy, target)?;
    }
    Ok(json!({}))
}

fn attach_policy<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let target = target_of(ctx, input.required("target")?)?;
    attach(ctx, input.required("policyName")?, &target)
}

fn detach_policy<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let target = target_of(ctx, input.required("target")?)?;
    detach(ctx, input.required("policyName")?, &target)
}

fn attach_principal_policy<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = id_of_arn(ctx, input.required("principal")?)?;
    attach(
        ctx,
        input.required("policyName")?,
        &PolicyTarget::Certificate(id),
    )
}

fn detach_principal_policy<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = id_of_arn(ctx, input.required("principal")?)?;
    detach(
        ctx,
        input.required("policyName")?,
        &PolicyTarget::Certificate(id),
    )
}

/// `{policyName, policyArn}` items keyed by name, for [`page`].
fn policy_items<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    names: impl IntoIterator<Item = String>,
) -> Vec<(String, Value)> {
    names
        .into_iter()
        .map(|name| {
            let item = json!({
                "policyName": name,
                "policyArn": ctx.arn(&format!("policy/{name}")),
            });
            (name, item)
        })
        .collect()
}

fn with_next(mut out: Value, member: &str, next: Option<String>) -> Value {
    if let (Some(next), Some(o)) = (next, out.as_object_mut()) {
        o.insert(member.into(), next.into());
    }
    out
}

/// The policies of a group and, if `ancestors`, of its ancestors (nearest first).
fn group_policies<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    group: &str,
    ancestors: bool,
) -> ApiResult<Vec<String>> {
    let registry = ctx.read();
    if registry.thing_group(group).is_none() {
        return Err(ApiError::not_found(format!(
            "The thing group {group} does not exist"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    let mut current = Some(group.to_string());
    let mut hops = 0;
    while let Some(name) = current {
        let Some(g) = registry.thing_group(&name) else {
            break;
        };
        for p in &g.policies {
            if !out.iter().any(|o| o == &**p) {
                out.push(p.to_string());
            }
        }
        hops += 1;
        if !ancestors || hops > registry.limits().max_group_depth {
            break;
        }
        current = g.parent.as_deref().map(str::to_string);
    }
    Ok(out)
}

fn list_attached_policies<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let target = target_of(ctx, input.required("target")?)?;
    let recursive = input.bool("recursive").unwrap_or(false);
    let names: Vec<String> = match &target {
        PolicyTarget::Certificate(id) => {
            let registry = ctx.read();
            let cert = registry.certificate(id).ok_or_else(|| not_found(id))?;
            if recursive {
                registry
                    .effective_policies(id)?
                    .iter()
                    .map(|p| p.name.to_string())
                    .collect()
            } else {
                cert.policies.iter().map(|p| p.to_string()).collect()
            }
        }
        PolicyTarget::ThingGroup(name) => group_policies(ctx, name, recursive)?,
    };
    let (policies, next) = page(
        policy_items(ctx, names),
        input.str("marker"),
        page_size(ctx, input),
        false,
    )?;
    Ok(with_next(
        json!({ "policies": policies }),
        "nextMarker",
        next,
    ))
}

fn list_targets_for_policy<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("policyName")?;
    let registry = ctx.read();
    if registry.policy(name).is_none() {
        return Err(policy_not_found(name));
    }
    let items: Vec<(String, String)> = registry
        .policy_targets(name)
        .iter()
        .map(|t| {
            let arn = target_arn(ctx, t);
            (arn.clone(), arn)
        })
        .collect();
    let (targets, next) = page(items, input.str("marker"), page_size(ctx, input), false)?;
    Ok(with_next(json!({ "targets": targets }), "nextMarker", next))
}

fn list_principal_policies<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = id_of_arn(ctx, input.required("principal")?)?;
    let names: Vec<String> = {
        let registry = ctx.read();
        let cert = registry.certificate(&id).ok_or_else(|| not_found(&id))?;
        cert.policies.iter().map(|p| p.to_string()).collect()
    };
    let descending = input.bool("ascendingOrder") == Some(false);
    let (policies, next) = page(
        policy_items(ctx, names),
        input.str("marker"),
        page_size(ctx, input),
        descending,
    )?;
    Ok(with_next(
        json!({ "policies": policies }),
        "nextMarker",
        next,
    ))
}

fn thing_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("The thing {name} does not exist"))
}

fn attach_thing_principal<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let thing = input.required("thingName")?;
    let id = id_of_arn(ctx, input.required("principal")?)?;
    let exclusive = match input.str("thingPrincipalType") {
        None | Some("NON_EXCLUSIVE_THING") => false,
        Some("EXCLUSIVE_THING") => true,
        Some(other) => {
            return Err(ApiError::invalid_request(format!(
                "{other:?} is not a thing principal type (EXCLUSIVE_THING or NON_EXCLUSIVE_THING)"
            )));
        }
    };
    let mut registry = ctx.write();
    if registry.thing(thing).is_none() {
        return Err(thing_not_found(thing));
    }
    if registry.certificate(&id).is_none() {
        return Err(not_found(&id));
    }
    registry
        .attach_thing_principal(thing, &id, exclusive)
        .map_err(|e| {
            // An exclusivity conflict is a bad request on AWS (the operation has no conflict error).
            match ApiError::from(e) {
                e if e.code == "DeleteConflictException" => ApiError::invalid_request(e.message),
                e => e,
            }
        })?;
    Ok(json!({}))
}

fn detach_thing_principal<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let thing = input.required("thingName")?;
    let id = id_of_arn(ctx, input.required("principal")?)?;
    let mut registry = ctx.write();
    if registry.thing(thing).is_none() {
        return Err(thing_not_found(thing));
    }
    let cert = registry.certificate(&id).ok_or_else(|| not_found(&id))?;
    // Detaching what is not attached succeeds, as on AWS.
    if cert.things.iter().any(|a| &*a.thing == thing) {
        registry.detach_thing_principal(thing, &id)?;
    }
    Ok(json!({}))
}

fn list_thing_principals<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let thing = input.required("thingName")?;
    let registry = ctx.read();
    if registry.thing(thing).is_none() {
        return Err(thing_not_found(thing));
    }
    let items: Vec<(String, String)> = registry
        .thing_principals(thing)
        .iter()
        .map(|id| {
            let arn = ctx.arn(&format!("cert/{id}"));
            (arn.clone(), arn)
        })
        .collect();
    let (principals, next) = page(items, input.str("nextToken"), ctx.page_size(input), false)?;
    Ok(with_next(
        json!({ "principals": principals }),
        "nextToken",
        next,
    ))
}

fn list_principal_things<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let id = id_of_arn(ctx, input.required("principal")?)?;
    let registry = ctx.read();
    let cert = registry.certificate(&id).ok_or_else(|| not_found(&id))?;
    let items: Vec<(String, String)> = cert
        .things
        .iter()
        .map(|a| (a.thing.to_string(), a.thing.to_string()))
        .collect();
    let (things, next) = page(items, input.str("nextToken"), ctx.page_size(input), false)?;
    Ok(with_next(json!({ "things": things }), "nextToken", next))
}

/// The names of the policies in effect for `principal` (a certificate) and `thing` (its
/// groups' and their ancestors'), each once: the certificate's, then the groups'.
fn effective_names<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    principal: Option<CertificateId>,
    thing: Option<&str>,
) -> ApiResult<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    if let Some(id) = principal {
        let registry = ctx.read();
        if registry.certificate(&id).is_none() {
            return Err(not_found(&id));
        }
        names.extend(
            registry
                .effective_policies(&id)?
                .iter()
                .map(|p| p.name.to_string()),
        );
    }
    if let Some(thing) = thing {
        let groups: Vec<String> = {
            let registry = ctx.read();
            let t = registry
                .thing(thing)
                .ok_or_else(|| thing_not_found(thing))?;
            t.groups.iter().map(|g| g.to_string()).collect()
        };
        for group in groups {
            for p in group_policies(ctx, &group, true)? {
                if !names.contains(&p) {
                    names.push(p);
                }
            }
        }
    }
    Ok(names)
}

fn get_effective_policies<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    if input.get("cognitoIdentityPoolId").is_some() {
        return Err(ApiError::invalid_request(
            "Cognito identities are not supported by thingkit; give a certificate principal",
        ));
    }
    let principal = input
        .str("principal")
        .map(|p| id_of_arn(ctx, p))
        .transpose()?;
    let thing = input.str("thingName");
    if principal.is_none() && thing.is_none() {
        return Err(ApiError::invalid_request(
            "give a principal (certificate ARN), a thingName, or both",
        ));
    }
    let names = effective_names(ctx, principal, thing)?;
    let registry = ctx.read();
    let mut out = Vec::new();
    for name in names {
        let Some(policy) = registry.policy(&name) else {
            continue;
        };
        if let Some(v) = policy.default_version() {
            out.push(json!({
                "policyName": name,
                "policyArn": ctx.arn(&format!("policy/{name}")),
                "policyDocument": v.document.text(),
            }));
        }
    }
    Ok(json!({ "effectivePolicies": out }))
}

fn policy_refs<S: RegistryStore>(ctx: &Ctx<'_, S>, names: &BTreeSet<String>) -> Vec<Value> {
    names
        .iter()
        .map(|name| {
            json!({
                "policyName": name,
                "policyArn": ctx.arn(&format!("policy/{name}")),
            })
        })
        .collect()
}

fn action_of(text: &str) -> ApiResult<Action> {
    match text {
        "PUBLISH" => Ok(Action::Publish),
        "SUBSCRIBE" => Ok(Action::Subscribe),
        "RECEIVE" => Ok(Action::Receive),
        "CONNECT" => Ok(Action::Connect),
        other => Err(ApiError::invalid_request(format!(
            "{other:?} is not an action type (PUBLISH, SUBSCRIBE, RECEIVE or CONNECT)"
        ))),
    }
}

/// The policy set and context of a `TestAuthorization` call.
fn authorization_subject<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
) -> ApiResult<(PolicySet, Vec<String>, Context)> {
    if input.get("cognitoIdentityPoolId").is_some() {
        return Err(ApiError::invalid_request(
            "Cognito identities are not supported by thingkit; give a certificate principal",
        ));
    }
    let id = id_of_arn(ctx, input.required("principal")?)?;
    let strings = |member: &str| -> Vec<String> {
        input
            .get(member)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let skip = strings("policyNamesToSkip");
    let mut names: Vec<String> = effective_names(ctx, Some(id), None)?
        .into_iter()
        .filter(|n| !skip.contains(n))
        .collect();
    for add in strings("policyNamesToAdd") {
        if !names.contains(&add) {
            names.push(add);
        }
    }
    let registry = ctx.read();
    let mut set = PolicySet::new();
    for name in &names {
        let policy: &StoredPolicy = registry
            .policy(name)
            .ok_or_else(|| policy_not_found(name))?;
        if let Some(v) = policy.default_version() {
            set.add(name.clone(), v.document.parsed())
                .map_err(|e| ApiError::limit_exceeded(e.to_string()))?;
        }
    }
    let cert = registry.certificate(&id).ok_or_else(|| not_found(&id))?;
    let mut context = Context {
        client_id: input.str("clientId").map(str::to_string),
        ..Context::default()
    };
    let pem = registry.certificate_pem(&id)?;
    context.certificate = thingkit_provision::policy_certificate(pem.as_bytes()).ok();
    let attached = cert
        .things
        .iter()
        .find(|a| a.exclusive)
        .or_else(|| cert.things.first());
    if let Some(a) = attached
        && let Some(thing) = registry.thing(&a.thing)
    {
        context.thing = Some(ThingContext {
            name: a.thing.to_string(),
            thing_type: thing.thing_type.as_deref().map(str::to_string),
            attributes: thing
                .attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            attached: true,
        });
    }
    context.current_time = Some(ctx.epoch());
    Ok((set, names, context))
}

fn test_authorization<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let (set, names, context) = authorization_subject(ctx, input)?;
    let infos = input
        .get("authInfos")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid_request("authInfos must be a list"))?;
    let mut results = Vec::with_capacity(infos.len());
    for info in infos {
        let action = action_of(
            info.get("actionType")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::invalid_request("every authInfo needs an actionType"))?,
        )?;
        let resources: Vec<&str> = info
            .get("resources")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut decision = Decision::Allow;
        let mut allowing = BTreeSet::new();
        let mut denying = BTreeSet::new();
        let mut missing = BTreeSet::new();
        let mut explanation = Vec::new();
        for resource in &resources {
            let evaluation = set.evaluate(&Request::new(action, resource), &context);
            for s in &evaluation.determining {
                match evaluation.decision {
                    Decision::Allow => allowing.insert(s.policy.clone()),
                    Decision::ExplicitDeny => denying.insert(s.policy.clone()),
                    Decision::ImplicitDeny => false,
                };
                let mut e = json!({
                    "policyName": s.policy,
                    "statement": s.statement,
                    "resource": resource,
                    "decision": evaluation.decision.as_str(),
                });
                if let (Some(sid), Some(o)) = (&s.sid, e.as_object_mut()) {
                    o.insert("sid".into(), sid.clone().into());
                }
                explanation.push(e);
            }
            missing.extend(evaluation.missing_context.iter().cloned());
            decision = match (decision, evaluation.decision) {
                (Decision::ExplicitDeny, _) | (_, Decision::ExplicitDeny) => Decision::ExplicitDeny,
                (Decision::ImplicitDeny, _) | (_, Decision::ImplicitDeny) => Decision::ImplicitDeny,
                _ => Decision::Allow,
            };
        }
        if resources.is_empty() {
            decision = Decision::ImplicitDeny;
        }
        let everything: BTreeSet<String> = names.iter().cloned().collect();
        let (allowed, implicit, explicit) = match decision {
            Decision::Allow => (allowing, BTreeSet::new(), BTreeSet::new()),
            Decision::ExplicitDeny => (BTreeSet::new(), BTreeSet::new(), denying),
            Decision::ImplicitDeny => (BTreeSet::new(), everything, BTreeSet::new()),
        };
        results.push(json!({
            "authInfo": info,
            "allowed": { "policies": policy_refs(ctx, &allowed) },
            "denied": {
                "implicitDeny": { "policies": policy_refs(ctx, &implicit) },
                "explicitDeny": { "policies": policy_refs(ctx, &explicit) },
            },
            "authDecision": match decision {
                Decision::Allow => "ALLOWED",
                Decision::ExplicitDeny => "EXPLICIT_DENY",
                Decision::ImplicitDeny => "IMPLICIT_DENY",
            },
            "missingContextValues": missing.into_iter().collect::<Vec<_>>(),
            "x-thingkit-explanation": explanation,
        }));
    }
    Ok(json!({ "authResults": results }))
}
