//! Things: `CreateThing`, `DescribeThing`, `ListThings`, `UpdateThing`, `DeleteThing`,
//! `ListThingGroupsForThing`.

use serde_json::{Map, Value, json};
use thingkit_provision::{RegistryStore, Thing};

use crate::error::{ApiError, ApiResult};
use crate::model::Input;
use crate::ops::{
    Handler, attribute_changes, check_version, page, payload_attributes, registry_refusal,
    resource_id, with_token,
};
use crate::service::Ctx;

pub(crate) fn handlers<S: RegistryStore>() -> Vec<(&'static str, Handler<S>)> {
    vec![
        ("CreateThing", create_thing::<S>),
        ("DescribeThing", describe_thing::<S>),
        ("ListThings", list_things::<S>),
        ("UpdateThing", update_thing::<S>),
        ("DeleteThing", delete_thing::<S>),
        ("ListThingGroupsForThing", list_thing_groups_for_thing::<S>),
    ]
}

/// A thing's ID (see [`resource_id`]).
pub(crate) fn thing_id(name: &str) -> String {
    resource_id("thing", name, 0)
}

fn attributes_json(thing: &Thing) -> Value {
    Value::Object(
        thing
            .attributes
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect::<Map<_, _>>(),
    )
}

/// `CreateThing`. AWS: creating a thing that exists with the same type and attributes
/// succeeds and returns it; with different ones it is `ResourceAlreadyExistsException` (the
/// registry's rule). thingkit has no billing groups, so naming one is
/// `ResourceNotFoundException`, as naming a missing one is in AWS.
fn create_thing<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("thingName")?;
    if let Some(billing) = input.str("billingGroupName") {
        return Err(ApiError::not_found(format!(
            "Billing group {billing} does not exist"
        )));
    }
    let attributes = payload_attributes(input.get("attributePayload"));
    let pairs: Vec<(&str, &str)> = attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    ctx.write()
        .create_thing(name, input.str("thingTypeName"), &pairs)
        .map_err(registry_refusal)?;
    Ok(json!({
        "thingName": name,
        "thingArn": ctx.arn(&format!("thing/{name}")),
        "thingId": thing_id(name),
    }))
}

fn describe_thing<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("thingName")?;
    let registry = ctx.read();
    let thing = registry
        .thing(name)
        .ok_or_else(|| ApiError::not_found(format!("Thing {name} cannot be found.")))?;
    let mut out = json!({
        "defaultClientId": name,
        "thingName": name,
        "thingId": thing_id(name),
        "thingArn": ctx.arn(&format!("thing/{name}")),
        "attributes": attributes_json(thing),
        "version": thing.version,
    });
    if let (Some(ty), Some(obj)) = (&thing.thing_type, out.as_object_mut()) {
        obj.insert("thingTypeName".into(), Value::String(ty.to_string()));
    }
    Ok(out)
}

/// `ListThings`, sorted by name. Filters: `thingTypeName`; `attributeName` with
/// `attributeValue` (equal, or a prefix with `usePrefixAttributeValue`); `attributeName`
/// alone keeps the things that have the attribute. A value without a name is refused.
fn list_things<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let attribute = input.str("attributeName");
    let value = input.str("attributeValue");
    let prefix = input.bool("usePrefixAttributeValue").unwrap_or(false);
    if attribute.is_none() && value.is_some() {
        return Err(ApiError::invalid_request(
            "attributeValue requires attributeName",
        ));
    }
    let ty = input.str("thingTypeName");
    let registry = ctx.read();
    let mut matching: Vec<(&str, &Thing)> = registry
        .things()
        .filter(|(_, t)| ty.is_none() || t.thing_type.as_deref() == ty)
        .filter(|(_, t)| match attribute {
            None => true,
            Some(a) => match (t.attributes.get(a), value) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(v), Some(want)) if prefix => v.starts_with(want),
                (Some(v), Some(want)) => &**v == want,
            },
        })
        .collect();
    matching.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let (things, next) = page(
        matching.into_iter().map(|(name, t)| {
            let mut item = json!({
                "thingName": name,
                "thingArn": ctx.arn(&format!("thing/{name}")),
                "attributes": attributes_json(t),
                "version": t.version,
            });
            if let (Some(ty), Some(obj)) = (&t.thing_type, item.as_object_mut()) {
                obj.insert("thingTypeName".into(), Value::String(ty.to_string()));
            }
            (name.to_string(), item)
        }),
        input.str("nextToken"),
        ctx.page_size(input),
    )?;
    Ok(with_token(json!({ "things": things }), next))
}

/// `UpdateThing`: `thingTypeName` sets the type, `removeThingType` removes it (both at once is
/// refused); the attribute payload merges or replaces (see [`attribute_changes`]);
/// `expectedVersion` must match. The version goes up by one.
fn update_thing<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("thingName")?;
    let remove_type = input.bool("removeThingType").unwrap_or(false);
    let thing_type = match (input.str("thingTypeName"), remove_type) {
        (Some(_), true) => {
            return Err(ApiError::invalid_request(
                "Cannot specify both thingTypeName and removeThingType",
            ));
        }
        (Some(t), false) => Some(Some(t)),
        (None, true) => Some(None),
        (None, false) => None,
    };
    let mut registry = ctx.write();
    let thing = registry
        .thing(name)
        .ok_or_else(|| ApiError::not_found(format!("Thing {name} cannot be found.")))?;
    check_version(input, "thing", name, thing.version)?;
    let changes = attribute_changes(
        input.get("attributePayload"),
        thing.attributes.keys().map(|k| &**k),
    );
    let changes: Vec<(&str, Option<&str>)> = changes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .collect();
    registry
        .update_thing(name, thing_type, &changes)
        .map_err(registry_refusal)?;
    Ok(json!({}))
}

/// `DeleteThing`. AWS: "returns successfully with no error if the deletion is successful or
/// you specify a thing that doesn't exist", so a missing thing is success (and no version can
/// conflict with it). A thing with certificates attached is refused, as the registry refuses
/// it (the AWS developer guide has devices' certificates detached before a thing is deleted);
/// AWS's model gives `DeleteThing` no `DeleteConflictException`, so the refusal is
/// `InvalidRequestException`.
fn delete_thing<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("thingName")?;
    let mut registry = ctx.write();
    let Some(thing) = registry.thing(name) else {
        return Ok(json!({}));
    };
    check_version(input, "thing", name, thing.version)?;
    registry.delete_thing(name).map_err(registry_refusal)?;
    Ok(json!({}))
}

/// `ListThingGroupsForThing`: the thing's static groups, sorted by name.
fn list_thing_groups_for_thing<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
) -> ApiResult<Value> {
    let name = input.required("thingName")?;
    let registry = ctx.read();
    let thing = registry
        .thing(name)
        .ok_or_else(|| ApiError::not_found(format!("Thing {name} cannot be found.")))?;
    let mut groups: Vec<&str> = thing.groups.iter().map(|g| &**g).collect();
    groups.sort_unstable();
    groups.dedup();
    let (groups, next) = page(
        groups.into_iter().map(|g| {
            (
                g.to_string(),
                json!({ "groupName": g, "groupArn": ctx.arn(&format!("thinggroup/{g}")) }),
            )
        }),
        input.str("nextToken"),
        ctx.page_size(input),
    )?;
    Ok(with_token(json!({ "thingGroups": groups }), next))
}
