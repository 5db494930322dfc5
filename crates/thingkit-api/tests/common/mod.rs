//! Helpers shared by the API's integration tests (each test file includes this module).
#![allow(dead_code)]

use thingkit_api::ApiRequest;
use thingkit_api::sigv4::{SignedRequest, sign};

/// The `X-Amz-Date` every signed test request carries.
pub const AMZ_DATE: &str = "20261204T120000Z";

/// A request signed with `key` for `region`/`service` at [`AMZ_DATE`], as botocore signs it.
pub fn signed_for(
    method: &str,
    path: &str,
    query: &str,
    body: &str,
    key: &(String, String),
    region: &str,
    service: &str,
) -> ApiRequest {
    let mut request = ApiRequest {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: vec![
            ("host".into(), "localhost:8443".into()),
            ("x-amz-date".into(), AMZ_DATE.into()),
            ("content-type".into(), "application/json".into()),
        ],
        body: body.as_bytes().to_vec(),
    };
    let auth = sign(
        &SignedRequest {
            method: &request.method,
            path: &request.path,
            query: &request.query,
            headers: &request.headers,
            body: &request.body,
        },
        &key.0,
        &key.1,
        region,
        service,
    )
    .expect("signable");
    request.headers.push(("authorization".into(), auth));
    request
}
