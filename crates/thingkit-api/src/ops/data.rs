//! The data-plane operations of `iot-data` that belong to services thingkit already has:
//! `Publish` (HTTP publish into the broker, authorized as `iot:Publish` on the topic by the
//! caller's identity policy before it gets here).

use serde_json::{Value, json};
use thingkit_provision::RegistryStore;

use crate::error::{ApiError, ApiResult};
use crate::model::Input;
use crate::ops::Handler;
use crate::service::{Ctx, DataProperties, DataPublish};

pub(crate) fn handlers<S: RegistryStore>() -> Vec<(&'static str, Handler<S>)> {
    vec![("Publish", publish::<S>)]
}

/// `POST /topics/{topic}?qos=&retain=`: the body is the payload, MQTT 5 properties come as
/// query parameters and headers.
fn publish<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let publisher = ctx
        .plane
        .publisher
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("this server has no broker to publish into"))?;
    let topic = input.required("topic")?;
    if topic.contains(['+', '#']) {
        return Err(ApiError::invalid_request(format!(
            "topic {topic:?}: a topic name cannot contain the wildcards + or #"
        )));
    }
    let qos = match input.int("qos").unwrap_or(0) {
        0 => 0,
        1 => 1,
        q => {
            return Err(ApiError::invalid_request(format!(
                "qos {q}: only 0 and 1 are supported"
            )));
        }
    };
    let correlation_data = match input.str("correlationData") {
        Some(b64) => {
            use base64::Engine;
            Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| ApiError::invalid_request("correlationData is not base64"))?,
            )
        }
        None => None,
    };
    let user_properties = match input.get("userProperties") {
        // `[{"key": "value"}, ...]`, base64 JSON in the header, as the model says.
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for item in items {
                let Value::Object(pairs) = item else {
                    return Err(ApiError::invalid_request(
                        "userProperties: each item must be an object of strings",
                    ));
                };
                for (k, v) in pairs {
                    let Some(v) = v.as_str() else {
                        return Err(ApiError::invalid_request(
                            "userProperties: values must be strings",
                        ));
                    };
                    out.push((k.clone(), v.to_string()));
                }
            }
            out
        }
        Some(_) => {
            return Err(ApiError::invalid_request(
                "userProperties must be a JSON array of objects",
            ));
        }
        None => Vec::new(),
    };
    let message = DataPublish {
        topic: topic.to_string(),
        payload: input.payload.clone().unwrap_or_default(),
        qos,
        retain: input.bool("retain").unwrap_or(false),
        properties: DataProperties {
            content_type: input.str("contentType").map(str::to_string),
            response_topic: input.str("responseTopic").map(str::to_string),
            correlation_data,
            message_expiry: input
                .int("messageExpiry")
                .map(|s| u32::try_from(s.max(0)).unwrap_or(u32::MAX)),
            payload_format_utf8: input.str("payloadFormatIndicator") == Some("UTF8_DATA"),
            user_properties,
        },
    };
    publisher.publish(message)?;
    Ok(json!({}))
}
