//! Device Defender Detect: security profiles (`CreateSecurityProfile` and friends, each
//! version checked by `thingkit_audit::detect::SecurityProfile`), their targets, and the
//! violations the running detector reports through the [`DetectHook`](crate::audit::DetectHook).
//! Every change to the profiles or their targets is stored, then handed to the hook.

use serde_json::{Map, Value, json};
use thingkit_audit::detect::{ProfileLimits, SecurityProfile};
use thingkit_provision::RegistryStore;

use crate::audit_store::{AuditRecords, StoredSecurityProfile};
use crate::error::{ApiError, ApiResult};
use crate::model::Input;
use crate::ops::audits::timestamp;
use crate::ops::{Handler, page, with_token};
use crate::service::Ctx;

pub(crate) fn handlers<S: RegistryStore>() -> Vec<(&'static str, Handler<S>)> {
    vec![
        ("CreateSecurityProfile", create_security_profile::<S>),
        ("DescribeSecurityProfile", describe_security_profile::<S>),
        ("ListSecurityProfiles", list_security_profiles::<S>),
        ("UpdateSecurityProfile", update_security_profile::<S>),
        ("DeleteSecurityProfile", delete_security_profile::<S>),
        ("AttachSecurityProfile", attach_security_profile::<S>),
        ("DetachSecurityProfile", detach_security_profile::<S>),
        (
            "ListTargetsForSecurityProfile",
            list_targets_for_security_profile::<S>,
        ),
        (
            "ListSecurityProfilesForTarget",
            list_security_profiles_for_target::<S>,
        ),
        ("ListActiveViolations", list_active_violations::<S>),
        ("ListViolationEvents", list_violation_events::<S>),
    ]
}

fn profile_arn<S: RegistryStore>(ctx: &Ctx<'_, S>, name: &str) -> String {
    ctx.arn(&format!("securityprofile/{name}"))
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Security profile {name} cannot be found."))
}

/// The detector's form of a stored profile; refused as `InvalidRequestException` with the
/// checker's reason.
fn parse(p: &StoredSecurityProfile) -> ApiResult<SecurityProfile> {
    let mut doc = Map::new();
    doc.insert("securityProfileName".into(), p.name.clone().into());
    if let Some(d) = &p.description {
        doc.insert("securityProfileDescription".into(), d.clone().into());
    }
    doc.insert("behaviors".into(), Value::Array(p.behaviors.clone()));
    let bytes = serde_json::to_vec(&Value::Object(doc)).unwrap_or_default();
    SecurityProfile::parse(&bytes, &ProfileLimits::default())
        .map_err(|e| ApiError::invalid_request(e.to_string()))
}

/// Hands every profile in force, with its targets, to the detector.
fn notify<S: RegistryStore>(ctx: &Ctx<'_, S>, records: &AuditRecords) {
    ctx.plane
        .audit
        .detect
        .profiles_changed(&profiles_in_force(records));
}

/// Every stored profile, parsed, with the ARNs of its targets.
pub(crate) fn profiles_in_force(records: &AuditRecords) -> Vec<(SecurityProfile, Vec<String>)> {
    records
        .security_profiles
        .values()
        .filter_map(|p| parse(p).ok().map(|sp| (sp, p.targets.clone())))
        .collect()
}

fn describe<S: RegistryStore>(ctx: &Ctx<'_, S>, p: &StoredSecurityProfile) -> Value {
    let mut out = Map::new();
    out.insert("securityProfileName".into(), p.name.clone().into());
    out.insert(
        "securityProfileArn".into(),
        profile_arn(ctx, &p.name).into(),
    );
    if let Some(d) = &p.description {
        out.insert("securityProfileDescription".into(), d.clone().into());
    }
    out.insert("behaviors".into(), Value::Array(p.behaviors.clone()));
    if let Some(t) = &p.alert_targets {
        out.insert("alertTargets".into(), t.clone());
    }
    if !p.additional_metrics_to_retain_v2.is_empty() {
        out.insert(
            "additionalMetricsToRetainV2".into(),
            Value::Array(p.additional_metrics_to_retain_v2.clone()),
        );
    }
    out.insert("version".into(), p.version.into());
    out.insert("creationDate".into(), p.creation_date.into());
    out.insert("lastModifiedDate".into(), p.last_modified_date.into());
    Value::Object(out)
}

fn refuse_unsupported(input: &Input) -> ApiResult<()> {
    for member in ["additionalMetricsToRetain", "metricsExportConfig"] {
        if input.get(member).is_some() {
            return Err(ApiError::invalid_request(format!(
                "{member} is not supported by thingkit (use additionalMetricsToRetainV2; there is no metrics export)"
            )));
        }
    }
    Ok(())
}

fn array(input: &Input, member: &str) -> Vec<Value> {
    input
        .get(member)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn create_security_profile<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    refuse_unsupported(input)?;
    let name = input.required("securityProfileName")?.to_string();
    let now = ctx.epoch();
    let profile = StoredSecurityProfile {
        name: name.clone(),
        description: input.str("securityProfileDescription").map(str::to_string),
        behaviors: array(input, "behaviors"),
        alert_targets: input.get("alertTargets").cloned(),
        additional_metrics_to_retain_v2: array(input, "additionalMetricsToRetainV2"),
        version: 1,
        creation_date: now,
        last_modified_date: now,
        targets: Vec::new(),
    };
    parse(&profile)?;
    let records = ctx.plane.audit.store.update(|r| {
        if r.security_profiles.contains_key(&name) {
            return Err(ApiError::already_exists(format!(
                "Security profile {name} already exists."
            ))
            .with("resourceId", name.clone())
            .with("resourceArn", profile_arn(ctx, &name)));
        }
        r.security_profiles.insert(name.clone(), profile);
        Ok(r.clone())
    })?;
    notify(ctx, &records);
    Ok(json!({
        "securityProfileName": name,
        "securityProfileArn": profile_arn(ctx, &name),
    }))
}

fn describe_security_profile<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
) -> ApiResult<Value> {
    let name = input.required("securityProfileName")?;
    let p = ctx
        .plane
        .audit
        .store
        .read(|r| r.security_profiles.get(name).cloned())
        .ok_or_else(|| not_found(name))?;
    Ok(describe(ctx, &p))
}

/// `ListSecurityProfiles`; `metricName` keeps those with a behavior on that metric.
fn list_security_profiles<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    if input.get("dimensionName").is_some() {
        return Err(ApiError::invalid_request(
            "dimensionName is not supported by thingkit (metric dimensions are not implemented)",
        ));
    }
    let metric = input.str("metricName");
    let items: Vec<(String, Value)> = ctx.plane.audit.store.read(|r| {
        r.security_profiles
            .values()
            .filter(|p| {
                metric.is_none_or(|m| {
                    p.behaviors
                        .iter()
                        .any(|b| b.get("metric").and_then(Value::as_str) == Some(m))
                })
            })
            .map(|p| {
                (
                    p.name.clone(),
                    json!({"name": p.name, "arn": profile_arn(ctx, &p.name)}),
                )
            })
            .collect()
    });
    let (ids, next) = page(
        items.into_iter(),
        input.str("nextToken"),
        ctx.page_size(input),
    )?;
    Ok(with_token(
        json!({ "securityProfileIdentifiers": ids }),
        next,
    ))
}

fn update_security_profile<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    refuse_unsupported(input)?;
    let name = input.required("securityProfileName")?.to_string();
    let now = ctx.epoch();
    let (records, updated) = ctx.plane.audit.store.update(|r| {
        let p = r
            .security_profiles
            .get_mut(&name)
            .ok_or_else(|| not_found(&name))?;
        crate::ops::check_version(input, "security profile", &name, p.version)?;
        if let Some(d) = input.str("securityProfileDescription") {
            p.description = Some(d.to_string());
        }
        if input.get("behaviors").is_some() {
            p.behaviors = array(input, "behaviors");
        }
        if input.bool("deleteBehaviors") == Some(true) {
            p.behaviors.clear();
        }
        if input.get("alertTargets").is_some() {
            p.alert_targets = input.get("alertTargets").cloned();
        }
        if input.bool("deleteAlertTargets") == Some(true) {
            p.alert_targets = None;
        }
        if input.get("additionalMetricsToRetainV2").is_some() {
            p.additional_metrics_to_retain_v2 = array(input, "additionalMetricsToRetainV2");
        }
        if input.bool("deleteAdditionalMetricsToRetain") == Some(true) {
            p.additional_metrics_to_retain_v2.clear();
        }
        parse(p)?;
        p.version += 1;
        p.last_modified_date = now;
        let updated = p.clone();
        Ok::<_, ApiError>((r.clone(), updated))
    })?;
    notify(ctx, &records);
    Ok(describe(ctx, &updated))
}

fn delete_security_profile<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("securityProfileName")?.to_string();
    let records = ctx.plane.audit.store.update(|r| {
        let p = r
            .security_profiles
            .get(&name)
            .ok_or_else(|| not_found(&name))?;
        crate::ops::check_version(input, "security profile", &name, p.version)?;
        r.security_profiles.remove(&name);
        Ok::<_, ApiError>(r.clone())
    })?;
    notify(ctx, &records);
    Ok(json!({}))
}

/// A target ARN: a thing group of this account that exists, or `all/registered-things` /
/// `all/unregistered-things`.
fn target<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<String> {
    let arn = input.required("securityProfileTargetArn")?.to_string();
    if arn == ctx.arn("all/registered-things") || arn == ctx.arn("all/unregistered-things") {
        return Ok(arn);
    }
    let group = arn
        .strip_prefix(ctx.arn("thinggroup/").as_str())
        .filter(|g| !g.is_empty() && !g.contains('/'))
        .ok_or_else(|| {
            ApiError::invalid_request(format!(
                "securityProfileTargetArn {arn} is not a thing group ARN of this account, nor all/registered-things or all/unregistered-things"
            ))
        })?;
    if ctx.read().thing_group(group).is_none() {
        return Err(ApiError::not_found(format!(
            "Thing group {group} cannot be found."
        )));
    }
    Ok(arn)
}

fn attach_security_profile<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("securityProfileName")?.to_string();
    let arn = target(ctx, input)?;
    let records = ctx.plane.audit.store.update(|r| {
        let p = r
            .security_profiles
            .get_mut(&name)
            .ok_or_else(|| not_found(&name))?;
        if !p.targets.contains(&arn) {
            p.targets.push(arn.clone());
            p.targets.sort();
        }
        Ok::<_, ApiError>(r.clone())
    })?;
    notify(ctx, &records);
    Ok(json!({}))
}

fn detach_security_profile<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("securityProfileName")?.to_string();
    let arn = input.required("securityProfileTargetArn")?.to_string();
    let records = ctx.plane.audit.store.update(|r| {
        let p = r
            .security_profiles
            .get_mut(&name)
            .ok_or_else(|| not_found(&name))?;
        p.targets.retain(|t| *t != arn);
        Ok::<_, ApiError>(r.clone())
    })?;
    notify(ctx, &records);
    Ok(json!({}))
}

fn list_targets_for_security_profile<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
) -> ApiResult<Value> {
    let name = input.required("securityProfileName")?;
    let targets = ctx
        .plane
        .audit
        .store
        .read(|r| r.security_profiles.get(name).map(|p| p.targets.clone()))
        .ok_or_else(|| not_found(name))?;
    let items = targets
        .into_iter()
        .map(|t| (t.clone(), json!({ "arn": t })));
    let (targets, next) = page(items, input.str("nextToken"), ctx.page_size(input))?;
    Ok(with_token(
        json!({ "securityProfileTargets": targets }),
        next,
    ))
}

/// `ListSecurityProfilesForTarget`: the profiles attached to the target itself (`recursive`
/// does not follow thing-group parents).
fn list_security_profiles_for_target<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
) -> ApiResult<Value> {
    let arn = input.required("securityProfileTargetArn")?;
    let items: Vec<(String, Value)> = ctx.plane.audit.store.read(|r| {
        r.security_profiles
            .values()
            .filter(|p| p.targets.iter().any(|t| t == arn))
            .map(|p| {
                (
                    p.name.clone(),
                    json!({
                        "securityProfileIdentifier": {"name": p.name, "arn": profile_arn(ctx, &p.name)},
                        "target": {"arn": arn},
                    }),
                )
            })
            .collect()
    });
    let (mappings, next) = page(
        items.into_iter(),
        input.str("nextToken"),
        ctx.page_size(input),
    )?;
    Ok(with_token(
        json!({ "securityProfileTargetMappings": mappings }),
        next,
    ))
}

fn matches(v: &Value, input: &Input) -> bool {
    ["thingName", "securityProfileName"].into_iter().all(|m| {
        input
            .str(m)
            .is_none_or(|want| v.get(m).and_then(Value::as_str) == Some(want))
    })
}

fn list_active_violations<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let items: Vec<(String, Value)> = ctx
        .plane
        .audit
        .detect
        .active_violations()
        .into_iter()
        .map(|v| {
            (
                v.violation_id.clone(),
                serde_json::to_value(&v).unwrap_or(Value::Null),
            )
        })
        .filter(|(_, v)| matches(v, input))
        .collect();
    let (violations, next) = page(
        items.into_iter(),
        input.str("nextToken"),
        ctx.page_size(input),
    )?;
    Ok(with_token(json!({ "activeViolations": violations }), next))
}

fn list_violation_events<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let start = timestamp(input, "startTime")?.unwrap_or(0);
    let end = timestamp(input, "endTime")?.unwrap_or(i64::MAX);
    let (start, end) = (
        u64::try_from(start).unwrap_or(0),
        u64::try_from(end).unwrap_or(0),
    );
    let items: Vec<(String, Value)> = ctx
        .plane
        .audit
        .detect
        .violation_events(start, end)
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            (
                format!("{:020}:{i:010}", v.violation_event_time),
                serde_json::to_value(&v).unwrap_or(Value::Null),
            )
        })
        .filter(|(_, v)| matches(v, input))
        .collect();
    let (events, next) = page(
        items.into_iter(),
        input.str("nextToken"),
        ctx.page_size(input),
    )?;
    Ok(with_token(json!({ "violationEvents": events }), next))
}
