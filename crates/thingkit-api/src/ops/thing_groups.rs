//! Static thing groups: `CreateThingGroup`, `DescribeThingGroup`, `ListThingGroups`,
//! `UpdateThingGroup`, `DeleteThingGroup`, `AddThingToThingGroup`,
//! `RemoveThingFromThingGroup`, `ListThingsInThingGroup`.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use thingkit_provision::{Registry, RegistryStore, ThingGroup};

use crate::error::{ApiError, ApiResult};
use crate::model::Input;
use crate::ops::{
    Handler, attribute_changes, check_version, name_or_arn, page, payload_attributes,
    registry_refusal, resource_id, with_token,
};
use crate::service::Ctx;

pub(crate) fn handlers<S: RegistryStore>() -> Vec<(&'static str, Handler<S>)> {
    vec![
        ("CreateThingGroup", create_thing_group::<S>),
        ("DescribeThingGroup", describe_thing_group::<S>),
        ("ListThingGroups", list_thing_groups::<S>),
        ("UpdateThingGroup", update_thing_group::<S>),
        ("DeleteThingGroup", delete_thing_group::<S>),
        ("AddThingToThingGroup", add_thing_to_thing_group::<S>),
        (
            "RemoveThingFromThingGroup",
            remove_thing_from_thing_group::<S>,
        ),
        ("ListThingsInThingGroup", list_things_in_thing_group::<S>),
    ]
}

fn group_id(name: &str, group: &ThingGroup) -> String {
    resource_id("thinggroup", name, group.created)
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Thing group {name} cannot be found."))
}

fn name_and_arn<S: RegistryStore>(ctx: &Ctx<'_, S>, name: &str) -> Value {
    json!({ "groupName": name, "groupArn": ctx.arn(&format!("thinggroup/{name}")) })
}

/// The groups under `root` (children, their children, ...), without `root`.
pub(crate) fn descendants<S: RegistryStore>(
    registry: &Registry<S>,
    root: &str,
) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut frontier = vec![root.to_string()];
    while let Some(parent) = frontier.pop() {
        for (name, g) in registry.thing_groups() {
            if g.parent.as_deref() == Some(parent.as_str()) && found.insert(name.to_string()) {
                frontier.push(name.to_string());
            }
        }
    }
    found
}

/// `CreateThingGroup`. Creating a group that exists with the same parent and properties
/// again succeeds and returns it (as `CreateThing` does); with different ones it is
/// `ResourceAlreadyExistsException`. A missing parent is `ResourceNotFoundException`. Tags
/// are accepted and not kept.
fn create_thing_group<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("thingGroupName")?;
    let properties = input.get("thingGroupProperties");
    let description = properties
        .and_then(|p| p.get("thingGroupDescription"))
        .and_then(Value::as_str);
    let attributes = payload_attributes(properties.and_then(|p| p.get("attributePayload")));
    let pairs: Vec<(&str, &str)> = attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut registry = ctx.write();
    registry
        .create_thing_group_at(
            name,
            input.str("parentGroupName"),
            description,
            &pairs,
            ctx.now,
        )
        .map_err(registry_refusal)?;
    let id = registry
        .thing_group(name)
        .map(|g| group_id(name, g))
        .unwrap_or_default();
    Ok(json!({
        "thingGroupName": name,
        "thingGroupArn": ctx.arn(&format!("thinggroup/{name}")),
        "thingGroupId": id,
    }))
}

fn describe_thing_group<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("thingGroupName")?;
    let registry = ctx.read();
    let group = registry.thing_group(name).ok_or_else(|| not_found(name))?;
    let mut properties = Map::new();
    if let Some(d) = &group.description {
        properties.insert("thingGroupDescription".into(), json!(d));
    }
    properties.insert(
        "attributePayload".into(),
        json!({ "attributes": group.attributes }),
    );
    // Root first, down to the parent.
    let mut ancestors = Vec::new();
    let mut current = group.parent.as_deref();
    while let Some(p) = current {
        if ancestors.len() > registry.limits().max_group_depth {
            break;
        }
        ancestors.push(name_and_arn(ctx, p));
        current = registry.thing_group(p).and_then(|g| g.parent.as_deref());
    }
    ancestors.reverse();
    let mut metadata = Map::new();
    if let Some(p) = &group.parent {
        metadata.insert("parentGroupName".into(), json!(p));
    }
    metadata.insert("rootToParentThingGroups".into(), Value::Array(ancestors));
    if group.created != 0 {
        metadata.insert("creationDate".into(), json!(group.created));
    }
    Ok(json!({
        "thingGroupName": name,
        "thingGroupId": group_id(name, group),
        "thingGroupArn": ctx.arn(&format!("thinggroup/{name}")),
        "version": group.version,
        "thingGroupProperties": properties,
        "thingGroupMetadata": metadata,
        "status": "ACTIVE",
    }))
}

/// `ListThingGroups`, sorted by name. With `parentGroup`: its children, or all its
/// descendants with `recursive` true. Without: every group, or only root groups with
/// `recursive` false. `namePrefixFilter` keeps names starting with it.
fn list_thing_groups<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let registry = ctx.read();
    let recursive = input.bool("recursive");
    let prefix = input.str("namePrefixFilter").unwrap_or("");
    let mut names: Vec<String> = match input.str("parentGroup") {
        Some(parent) => {
            if registry.thing_group(parent).is_none() {
                return Err(not_found(parent));
            }
            if recursive == Some(true) {
                descendants(&registry, parent).into_iter().collect()
            } else {
                registry
                    .thing_groups()
                    .filter(|(_, g)| g.parent.as_deref() == Some(parent))
                    .map(|(n, _)| n.to_string())
                    .collect()
            }
        }
        None => registry
            .thing_groups()
            .filter(|(_, g)| recursive != Some(false) || g.parent.is_none())
            .map(|(n, _)| n.to_string())
            .collect(),
    };
    names.retain(|n| n.starts_with(prefix));
    names.sort_unstable();
    let (groups, next) = page(
        names.into_iter().map(|n| {
            let item = name_and_arn(ctx, &n);
            (n, item)
        }),
        input.str("nextToken"),
        ctx.page_size(input),
    )?;
    Ok(with_token(json!({ "thingGroups": groups }), next))
}

/// `UpdateThingGroup`: a description given replaces the old one (`""` removes it), absent
/// keeps it; the attribute payload merges or replaces as for things; `expectedVersion` must
/// match. Returns the new version.
fn update_thing_group<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("thingGroupName")?;
    let properties = input.get("thingGroupProperties");
    let description = properties
        .and_then(|p| p.get("thingGroupDescription"))
        .and_then(Value::as_str)
        .map(|d| (!d.is_empty()).then_some(d));
    let mut registry = ctx.write();
    let group = registry.thing_group(name).ok_or_else(|| not_found(name))?;
    check_version(input, "thing group", name, group.version)?;
    let changes = attribute_changes(
        properties.and_then(|p| p.get("attributePayload")),
        group.attributes.keys().map(|k| &**k),
    );
    let changes: Vec<(&str, Option<&str>)> = changes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .collect();
    let version = registry
        .update_thing_group(name, description, &changes)
        .map_err(registry_refusal)?;
    Ok(json!({ "version": version }))
}

/// `DeleteThingGroup`. AWS answers success for a group that does not exist (its model gives
/// the operation no `ResourceNotFoundException`), refuses a group with child groups with
/// `InvalidRequestException`, and deletes a group that still has things: they leave it (in
/// one commit with the deletion).
fn delete_thing_group<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("thingGroupName")?;
    let mut registry = ctx.write();
    let Some(group) = registry.thing_group(name) else {
        return Ok(json!({}));
    };
    check_version(input, "thing group", name, group.version)?;
    if registry
        .thing_groups()
        .any(|(_, g)| g.parent.as_deref() == Some(name))
    {
        return Err(ApiError::invalid_request(format!(
            "Cannot delete thing group : {name} when there are still child groups attached to it"
        )));
    }
    let members: Vec<String> = registry
        .things()
        .filter(|(_, t)| t.groups.iter().any(|g| &**g == name))
        .map(|(n, _)| n.to_string())
        .collect();
    registry
        .batch(|r| {
            for thing in &members {
                r.remove_thing_from_group(thing, name)?;
            }
            r.delete_thing_group(name)
        })
        .map_err(registry_refusal)?;
    Ok(json!({}))
}

/// `AddThingToThingGroup`, by names or ARNs. Adding a member again changes nothing. A thing
/// that a continuous job now reaches through the group (or an ancestor) gets its execution
/// ([`crate::ops::jobs::membership_changed`]).
fn add_thing_to_thing_group<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let group = name_or_arn(ctx, input, "thingGroupName", "thingGroupArn", "thinggroup")?;
    let thing = name_or_arn(ctx, input, "thingName", "thingArn", "thing")?;
    let before = crate::ops::jobs::groups_of(&ctx.read(), &thing);
    ctx.write()
        .add_thing_to_group(&thing, &group)
        .map_err(registry_refusal)?;
    let after = crate::ops::jobs::groups_of(&ctx.read(), &thing);
    crate::ops::jobs::membership_changed(ctx, &thing, &before, &after);
    Ok(json!({}))
}

/// `RemoveThingFromThingGroup`, by names or ARNs. A missing thing or group is
/// `ResourceNotFoundException`; removing a thing that is not a member succeeds and changes
/// nothing, as adding one twice does. A continuous job that no longer reaches the thing
/// removes its QUEUED execution ([`crate::ops::jobs::membership_changed`]).
fn remove_thing_from_thing_group<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
) -> ApiResult<Value> {
    let group = name_or_arn(ctx, input, "thingGroupName", "thingGroupArn", "thinggroup")?;
    let thing = name_or_arn(ctx, input, "thingName", "thingArn", "thing")?;
    let mut registry = ctx.write();
    if registry.thing_group(&group).is_none() {
        return Err(not_found(&group));
    }
    let t = registry
        .thing(&thing)
        .ok_or_else(|| ApiError::not_found(format!("Thing {thing} cannot be found.")))?;
    if !t.groups.iter().any(|g| **g == *group) {
        return Ok(json!({}));
    }
    let before = crate::ops::jobs::groups_of(&registry, &thing);
    registry
        .remove_thing_from_group(&thing, &group)
        .map_err(registry_refusal)?;
    let after = crate::ops::jobs::groups_of(&registry, &thing);
    drop(registry);
    crate::ops::jobs::membership_changed(ctx, &thing, &before, &after);
    Ok(json!({}))
}

/// `ListThingsInThingGroup`: the group's things (with `recursive`, its descendants' too),
/// sorted by name.
fn list_things_in_thing_group<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
) -> ApiResult<Value> {
    let name = input.required("thingGroupName")?;
    let registry = ctx.read();
    if registry.thing_group(name).is_none() {
        return Err(not_found(name));
    }
    let mut groups = BTreeSet::from([name.to_string()]);
    if input.bool("recursive").unwrap_or(false) {
        groups.extend(descendants(&registry, name));
    }
    let mut things: Vec<&str> = registry
        .things()
        .filter(|(_, t)| t.groups.iter().any(|g| groups.contains(&**g)))
        .map(|(n, _)| n)
        .collect();
    things.sort_unstable();
    let (things, next) = page(
        things.into_iter().map(|n| (n.to_string(), json!(n))),
        input.str("nextToken"),
        ctx.page_size(input),
    )?;
    Ok(with_token(json!({ "things": things }), next))
}
