//! Thing types: `CreateThingType`, `DescribeThingType`, `ListThingTypes`,
//! `DeprecateThingType`, `DeleteThingType`.

use serde_json::{Map, Value, json};
use thingkit_provision::{MAX_SEARCHABLE_ATTRIBUTES, RegistryStore, ThingType};

use crate::error::{ApiError, ApiResult};
use crate::model::Input;
use crate::ops::{Handler, page, registry_refusal, resource_id, with_token};
use crate::service::Ctx;

/// How long a thing type must have been deprecated before it can be deleted (AWS: "you must
/// wait five minutes after deprecating a thing type before you can delete it").
const DELETE_AFTER_DEPRECATION_SECS: i64 = 5 * 60;

pub(crate) fn handlers<S: RegistryStore>() -> Vec<(&'static str, Handler<S>)> {
    vec![
        ("CreateThingType", create_thing_type::<S>),
        ("DescribeThingType", describe_thing_type::<S>),
        ("ListThingTypes", list_thing_types::<S>),
        ("DeprecateThingType", deprecate_thing_type::<S>),
        ("DeleteThingType", delete_thing_type::<S>),
    ]
}

fn type_id(name: &str, ty: &ThingType) -> String {
    resource_id("thingtype", name, ty.created)
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Thing type {name} cannot be found."))
}

/// `thingTypeProperties` and `thingTypeMetadata` of a type (dates omitted when unknown).
fn properties_and_metadata(ty: &ThingType) -> (Value, Value) {
    let mut properties = Map::new();
    if let Some(d) = &ty.description {
        properties.insert("thingTypeDescription".into(), json!(d));
    }
    if !ty.searchable_attributes.is_empty() {
        properties.insert(
            "searchableAttributes".into(),
            json!(ty.searchable_attributes),
        );
    }
    let mut metadata = Map::new();
    metadata.insert("deprecated".into(), json!(ty.deprecated));
    if let Some(at) = ty.deprecated_at {
        metadata.insert("deprecationDate".into(), json!(at));
    }
    if ty.created != 0 {
        metadata.insert("creationDate".into(), json!(ty.created));
    }
    (Value::Object(properties), Value::Object(metadata))
}

/// `CreateThingType`: at most three searchable attributes (more is `InvalidRequestException`,
/// as AWS's model has no limit error for this operation). Tags are accepted and not kept.
fn create_thing_type<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("thingTypeName")?;
    let properties = input.get("thingTypeProperties");
    let description = properties
        .and_then(|p| p.get("thingTypeDescription"))
        .and_then(Value::as_str);
    let searchable: Vec<&str> = properties
        .and_then(|p| p.get("searchableAttributes"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if searchable.len() > MAX_SEARCHABLE_ATTRIBUTES {
        return Err(ApiError::invalid_request(format!(
            "A thing type can have at most {MAX_SEARCHABLE_ATTRIBUTES} searchable attributes"
        )));
    }
    let mut registry = ctx.write();
    registry
        .create_thing_type_at(name, description, &searchable, ctx.now)
        .map_err(registry_refusal)?;
    let id = registry
        .thing_type(name)
        .map(|ty| type_id(name, ty))
        .unwrap_or_default();
    Ok(json!({
        "thingTypeName": name,
        "thingTypeArn": ctx.arn(&format!("thingtype/{name}")),
        "thingTypeId": id,
    }))
}

fn describe_thing_type<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("thingTypeName")?;
    let registry = ctx.read();
    let ty = registry.thing_type(name).ok_or_else(|| not_found(name))?;
    let (properties, metadata) = properties_and_metadata(ty);
    Ok(json!({
        "thingTypeName": name,
        "thingTypeId": type_id(name, ty),
        "thingTypeArn": ctx.arn(&format!("thingtype/{name}")),
        "thingTypeProperties": properties,
        "thingTypeMetadata": metadata,
    }))
}

/// `ListThingTypes`, sorted by name; `thingTypeName` keeps only that type.
fn list_thing_types<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let only = input.str("thingTypeName");
    let registry = ctx.read();
    let mut types: Vec<(&str, &ThingType)> = registry
        .thing_types()
        .filter(|(name, _)| only.is_none_or(|o| o == *name))
        .collect();
    types.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let (types, next) = page(
        types.into_iter().map(|(name, ty)| {
            let (properties, metadata) = properties_and_metadata(ty);
            (
                name.to_string(),
                json!({
                    "thingTypeName": name,
                    "thingTypeArn": ctx.arn(&format!("thingtype/{name}")),
                    "thingTypeProperties": properties,
                    "thingTypeMetadata": metadata,
                }),
            )
        }),
        input.str("nextToken"),
        ctx.page_size(input),
    )?;
    Ok(with_token(json!({ "thingTypes": types }), next))
}

fn deprecate_thing_type<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("thingTypeName")?;
    let undo = input.bool("undoDeprecate").unwrap_or(false);
    ctx.write()
        .deprecate_thing_type_at(name, undo, ctx.now)
        .map_err(registry_refusal)?;
    Ok(json!({}))
}

/// `DeleteThingType`: only a type deprecated at least five minutes ago, that no thing has
/// (`InvalidRequestException` otherwise, the registry's conflict as AWS answers it). A type
/// deprecated before deprecation dates were kept counts as deprecated long ago.
fn delete_thing_type<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("thingTypeName")?;
    let mut registry = ctx.write();
    let ty = registry.thing_type(name).ok_or_else(|| not_found(name))?;
    if let Some(at) = ty.deprecated_at
        && ty.deprecated
        && ctx.epoch() - at < DELETE_AFTER_DEPRECATION_SECS
    {
        return Err(ApiError::invalid_request(format!(
            "Thing type {name} was deprecated less than 5 minutes ago; wait before deleting it"
        )));
    }
    registry.delete_thing_type(name).map_err(registry_refusal)?;
    Ok(json!({}))
}
