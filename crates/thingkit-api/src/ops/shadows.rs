//! The `iot-data` Device Shadow operations over HTTPS: GetThingShadow, UpdateThingShadow,
//! DeleteThingShadow (classic, or named with `?name=`) and ListNamedShadowsForThing. They go
//! through the same shadow engine and store as the MQTT topics ([`ShadowBackend`]): a request
//! over HTTPS is the request published to its topic, and the answer is what `/accepted` or
//! `/rejected` would carry. An accepted update or delete also publishes what it publishes over
//! MQTT (`/update/accepted`, `/update/documents`, `/update/delta`, `/delete/accepted`) to
//! subscribers, as AWS does; a get publishes nothing.

use serde_json::{Value, json};
use thingkit_provision::RegistryStore;

use crate::error::{ApiError, ApiResult};
use crate::model::Input;
use crate::ops::{Handler, page, with_token};
use crate::service::{Ctx, DataProperties, DataPublish};

pub(crate) fn handlers<S: RegistryStore>() -> Vec<(&'static str, Handler<S>)> {
    vec![
        ("GetThingShadow", get::<S>),
        ("UpdateThingShadow", update::<S>),
        ("DeleteThingShadow", delete::<S>),
        ("ListNamedShadowsForThing", list_named::<S>),
    ]
}

fn get<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    shadow_request(ctx, input, "get", b"")
}

fn update<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let payload = input.payload.as_deref().unwrap_or_default();
    shadow_request(ctx, input, "update", payload)
}

fn delete<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    shadow_request(ctx, input, "delete", b"")
}

/// Runs one request through the shadow engine; the answer body is the `/accepted` payload
/// (a JSON document, returned raw: the operation's output is a blob payload).
fn shadow_request<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
    operation: &str,
    payload: &[u8],
) -> ApiResult<Value> {
    let backend = ctx
        .plane
        .shadows
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("this server has no device shadow service"))?;
    let thing = input.required("thingName")?;
    let base = match input.str("shadowName") {
        Some(name) => format!("$aws/things/{thing}/shadow/name/{name}/{operation}"),
        None => format!("$aws/things/{thing}/shadow/{operation}"),
    };
    let now = u64::try_from(ctx.epoch()).unwrap_or(0);
    let messages = backend.request(&base, payload, now).ok_or_else(|| {
        ApiError::invalid_request(format!(
            "{base:?} is not a valid shadow (thing or shadow name)"
        ))
    })?;
    let accepted = format!("{base}/accepted");
    let answer = messages.iter().find(|(t, _)| t.starts_with(&base));
    match answer {
        Some((topic, body)) if *topic == accepted => {
            if operation != "get"
                && let Some(publisher) = &ctx.plane.publisher
            {
                for (topic, payload) in &messages {
                    // The HTTP caller has its answer; subscribers get theirs best effort, as
                    // a device's update over MQTT gives them (a broker refusal is logged by it).
                    let _ = publisher.publish(DataPublish {
                        topic: topic.clone(),
                        payload: payload.clone(),
                        qos: 1,
                        retain: false,
                        properties: DataProperties::default(),
                    });
                }
            }
            Ok(Value::String(String::from_utf8_lossy(body).into_owned()))
        }
        Some((_, body)) => Err(rejection(body)),
        None => Err(ApiError::internal("the shadow service gave no answer")),
    }
}

/// A `/rejected` payload (`{"code": 404, "message": "No shadow exists with name: 'x'"}`) as
/// the `iot-data` error of its code.
fn rejection(body: &[u8]) -> ApiError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = v["message"].as_str().unwrap_or("rejected").to_string();
    match v["code"].as_u64().unwrap_or(500) {
        400 => ApiError::invalid_request(message),
        401 | 403 => ApiError::unauthorized(message),
        404 => ApiError::not_found(message),
        409 => ApiError::new("ConflictException", 409, message),
        413 => ApiError::too_large(message),
        415 => ApiError::new("UnsupportedDocumentEncodingException", 415, message),
        429 => ApiError::new("ThrottlingException", 429, message),
        _ => ApiError::internal(message),
    }
}

fn list_named<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let backend = ctx
        .plane
        .shadows
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("this server has no device shadow service"))?;
    let thing = input.required("thingName")?;
    let names = backend.list_named(thing).map_err(ApiError::internal)?;
    let size = input
        .int("pageSize")
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(ctx.plane.limits.default_page_size);
    let (results, next) = page(
        names.into_iter().map(|n| (n.clone(), n)),
        input.str("nextToken"),
        size,
    )?;
    Ok(with_token(
        json!({"results": results, "timestamp": ctx.epoch()}),
        next,
    ))
}
