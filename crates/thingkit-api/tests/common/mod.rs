//! Helpers shared by the API's integration tests (each test file includes this module).
#![allow(dead_code)]

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use thingkit_api::keys::KeyStore;
use thingkit_api::sigv4::{SignedRequest, sign};
use thingkit_api::{ApiError, ApiRequest, ApiResult, ControlPlane, Input};
use thingkit_policy::ArnPrefix;
use thingkit_provision::{MemoryStore, Registry};

/// The region of the fixtures' control planes and signed requests.
pub const REGION: &str = "eu-central-1";

/// The account of the fixtures' ARNs.
pub const ACCOUNT: &str = "123456789012";

/// The fixtures' clock, in seconds since the epoch (2026-12-04T12:00:00Z, [`AMZ_DATE`]).
pub const NOW: u64 = 1_796_385_600;

/// `secs` seconds after the epoch.
pub fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// A fresh in-memory key store and a control plane over an empty in-memory registry in
/// [`REGION`] and [`ACCOUNT`] that authenticates with it (a fixture adds its services).
pub fn control_plane() -> (ControlPlane<MemoryStore>, Arc<KeyStore>) {
    let keys = Arc::new(KeyStore::in_memory());
    let plane = ControlPlane::new(
        Arc::new(RwLock::new(Registry::in_memory())),
        ArnPrefix::new("aws", REGION, ACCOUNT).expect("a valid partition, region and account"),
        keys.clone(),
    );
    (plane, keys)
}

/// Calls on a fixture's control plane at [`NOW`]: a fixture names its plane, the rest is shared.
pub trait ApiCalls {
    /// The control plane under test.
    fn plane(&self) -> &ControlPlane<MemoryStore>;

    /// `op` with `members` as its JSON input.
    fn call(&self, op: &str, members: Value) -> ApiResult<Value> {
        self.plane().call(op, Input::from_json(members), at(NOW))
    }

    /// `op`'s output; panics, naming `op`, if it failed.
    fn ok(&self, op: &str, members: Value) -> Value {
        self.call(op, members)
            .unwrap_or_else(|e| panic!("{op} failed: {e}"))
    }

    /// Every page of the list operation `op` at `max_results` a page, following `nextToken`:
    /// the `field` of each item of the page's `list` member, and the number of pages. Panics
    /// if a page holds more than `max_results` items.
    fn list_all(
        &self,
        op: &str,
        max_results: usize,
        list: &str,
        field: &str,
    ) -> (Vec<String>, usize) {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut members = serde_json::json!({ "maxResults": max_results });
            if let Some(t) = &token {
                members["nextToken"] = serde_json::json!(t);
            }
            let out = self.ok(op, members);
            let page = out[list].as_array().expect("a list member");
            assert!(
                page.len() <= max_results,
                "{op}: {} > {max_results}",
                page.len()
            );
            names.extend(
                page.iter()
                    .map(|item| item[field].as_str().expect("a name").to_owned()),
            );
            pages += 1;
            match out.get("nextToken").and_then(Value::as_str) {
                Some(t) => token = Some(t.to_owned()),
                None => return (names, pages),
            }
        }
    }

    /// `op`'s error; panics, naming `op`, if it succeeded.
    fn err(&self, op: &str, members: Value) -> ApiError {
        self.call(op, members)
            .err()
            .unwrap_or_else(|| panic!("{op} succeeded"))
    }
}

/// A new access key `(id, secret)` in `keys` at [`NOW`], limited by the identity `policy` (a
/// JSON document; `None`: no policy, full access).
pub fn access_key(keys: &KeyStore, policy: Option<&str>) -> (String, String) {
    let key = keys
        .create(policy.map(str::to_owned), at(NOW))
        .expect("a key");
    (key.access_key_id, key.secret_access_key)
}

/// An IoT control-plane request signed with `key` in [`REGION`] at [`AMZ_DATE`].
pub fn signed(
    method: &str,
    path: &str,
    query: &str,
    body: &str,
    key: &(String, String),
) -> ApiRequest {
    signed_for(method, path, query, body, key, REGION, "iot")
}

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
