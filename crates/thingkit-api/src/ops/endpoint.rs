//! `DescribeEndpoint`: where devices and clients connect.

use serde_json::{Value, json};
use thingkit_provision::RegistryStore;

use crate::error::{ApiError, ApiResult};
use crate::model::Input;
use crate::ops::Handler;
use crate::service::Ctx;

pub(crate) fn handlers<S: RegistryStore>() -> Vec<(&'static str, Handler<S>)> {
    vec![("DescribeEndpoint", describe_endpoint::<S>)]
}

/// `DescribeEndpoint`: `iot:Data` (the default) and `iot:Data-ATS` are the MQTT endpoint;
/// `iot:CredentialProvider` and `iot:Jobs` the HTTPS API endpoint. thingkit serves one
/// certificate chain, so the legacy (Symantec-signed) `iot:Data` and `iot:Data-ATS` are the
/// same host. Any other type is `InvalidRequestException`.
fn describe_endpoint<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let endpoints = &ctx.plane.endpoints;
    let address = match input.str("endpointType").unwrap_or("iot:Data") {
        "iot:Data" | "iot:Data-ATS" => &endpoints.data,
        "iot:CredentialProvider" | "iot:Jobs" => &endpoints.api,
        other => {
            return Err(ApiError::invalid_request(format!(
                "Endpoint type {other} is not valid. Valid types are iot:Data, iot:Data-ATS, iot:CredentialProvider and iot:Jobs"
            )));
        }
    };
    Ok(json!({ "endpointAddress": address }))
}
