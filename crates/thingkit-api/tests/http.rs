//! Whole requests through `ControlPlane::handle`, signed as botocore signs them: what a
//! signature, a region, a service scope, an identity policy and a body limit decide, what the
//! response carries (AWS's error headers and body, the request ID) and what the audit record
//! says. Every refusal leaves the registry as it was.

mod common;

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use thingkit_api::keys::KeyStore;
use thingkit_api::{ApiRequest, ApiResponse, AuditRecord, ControlPlane};
use thingkit_policy::ArnPrefix;
use thingkit_provision::{MemoryStore, Registry};

const REGION: &str = "eu-central-1";
/// 2026-12-04T12:00:00Z
const NOW: u64 = 1_796_385_600;

struct Fixture {
    plane: ControlPlane<MemoryStore>,
    registry: Arc<RwLock<Registry<MemoryStore>>>,
    admin: (String, String),
    reader: (String, String),
}

fn fixture() -> Fixture {
    let registry = Arc::new(RwLock::new(Registry::in_memory()));
    let keys = Arc::new(KeyStore::in_memory());
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW);
    let admin = keys.create(None, now).unwrap();
    let reader = keys
        .create(
            Some(
                r#"{"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": "iot:*", "Resource": "*"},
                    {"Effect": "Deny", "Action": ["iot:Create*", "iot:Delete*"], "Resource": "*"}]}"#
                    .into(),
            ),
            now,
        )
        .unwrap();
    let plane = ControlPlane::new(
        registry.clone(),
        ArnPrefix::new("aws", REGION, "123456789012").unwrap(),
        keys,
    );
    Fixture {
        plane,
        registry,
        admin: (admin.access_key_id, admin.secret_access_key),
        reader: (reader.access_key_id, reader.secret_access_key),
    }
}

/// A request signed with `key` for `region`/`service` at `AMZ_DATE`.
fn signed(
    method: &str,
    path: &str,
    body: &str,
    key: &(String, String),
    region: &str,
    service: &str,
) -> ApiRequest {
    common::signed_for(method, path, "", body, key, region, service)
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn header<'a>(r: &'a ApiResponse, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn error(r: &(ApiResponse, AuditRecord)) -> (u16, String, String) {
    let body: Value = serde_json::from_slice(&r.0.body).unwrap();
    (
        r.0.status,
        header(&r.0, "x-amzn-ErrorType").unwrap_or("").to_string(),
        body["message"].as_str().unwrap_or("").to_string(),
    )
}

fn things(f: &Fixture) -> usize {
    f.registry.read().unwrap().thing_count()
}

#[test]
fn a_signed_request_runs_and_is_audited() {
    let f = fixture();
    let r = f.plane.handle(
        &signed("POST", "/things/sensor-1", "{}", &f.admin, REGION, "iot"),
        at(NOW),
    );
    assert_eq!(r.0.status, 200, "{}", String::from_utf8_lossy(&r.0.body));
    let body: Value = serde_json::from_slice(&r.0.body).unwrap();
    assert_eq!(body["thingName"], "sensor-1");
    assert_eq!(
        header(&r.0, "x-amzn-RequestId"),
        Some(r.1.request_id.as_str())
    );
    assert_eq!(r.1.access_key_id.as_deref(), Some(f.admin.0.as_str()));
    assert_eq!(r.1.operation.as_deref(), Some("CreateThing"));
    assert_eq!(
        r.1.resource.as_deref(),
        Some("arn:aws:iot:eu-central-1:123456789012:thing/sensor-1")
    );
    assert_eq!((r.1.status, r.1.error.as_deref()), (200, None));
    assert_eq!(things(&f), 1);
}

#[test]
fn forged_stale_and_misscoped_requests_are_refused_and_change_nothing() {
    let f = fixture();
    // Another secret.
    let forged = (f.admin.0.clone(), "x".repeat(40));
    let r = f.plane.handle(
        &signed("POST", "/things/a", "{}", &forged, REGION, "iot"),
        at(NOW),
    );
    assert_eq!(error(&r).0, 403);
    assert_eq!(error(&r).1, "InvalidSignatureException");
    assert_eq!(
        r.1.access_key_id, None,
        "an unverified key is not the caller"
    );
    // The body changed after signing.
    let mut tampered = signed("POST", "/things/a", "{}", &f.admin, REGION, "iot");
    tampered.body = br#"{"thingTypeName": "x"}"#.to_vec();
    assert_eq!(
        error(&f.plane.handle(&tampered, at(NOW))).1,
        "InvalidSignatureException"
    );
    // The path changed after signing.
    let mut moved = signed("POST", "/things/a", "{}", &f.admin, REGION, "iot");
    moved.path = "/things/b".into();
    assert_eq!(
        error(&f.plane.handle(&moved, at(NOW))).1,
        "InvalidSignatureException"
    );
    // Replayed six minutes later: outside the skew window.
    let replay = signed("POST", "/things/a", "{}", &f.admin, REGION, "iot");
    let (status, code, message) = error(&f.plane.handle(&replay, at(NOW + 360)));
    assert_eq!((status, code.as_str()), (403, "InvalidSignatureException"));
    assert!(message.starts_with("Signature expired"), "{message}");
    // An unknown key, no signature at all, another region, another service's scope.
    let unknown = ("AKIAUNKNOWNUNKNOWN00".to_string(), "x".repeat(40));
    assert_eq!(
        error(&f.plane.handle(
            &signed("POST", "/things/a", "{}", &unknown, REGION, "iot"),
            at(NOW)
        ))
        .1,
        "UnrecognizedClientException"
    );
    let mut anonymous = signed("POST", "/things/a", "{}", &f.admin, REGION, "iot");
    anonymous.headers.retain(|(k, _)| k != "authorization");
    assert_eq!(
        error(&f.plane.handle(&anonymous, at(NOW))).1,
        "MissingAuthenticationTokenException"
    );
    let elsewhere = signed("POST", "/things/a", "{}", &f.admin, "us-east-1", "iot");
    assert_eq!(
        error(&f.plane.handle(&elsewhere, at(NOW))).1,
        "InvalidSignatureException"
    );
    let data_scope = signed("POST", "/things/a", "{}", &f.admin, REGION, "iotdata");
    assert_eq!(
        error(&f.plane.handle(&data_scope, at(NOW))).1,
        "InvalidSignatureException"
    );
    assert_eq!(things(&f), 0, "no refused request created anything");
}

#[test]
fn the_identity_policy_decides_each_operation_and_explicit_deny_wins() {
    let f = fixture();
    let r = f.plane.handle(
        &signed("POST", "/things/a", "{}", &f.admin, REGION, "iot"),
        at(NOW),
    );
    assert_eq!(r.0.status, 200);
    let read = f.plane.handle(
        &signed("GET", "/things/a", "", &f.reader, REGION, "iot"),
        at(NOW),
    );
    assert_eq!(read.0.status, 200);
    let denied = f.plane.handle(
        &signed("DELETE", "/things/a", "", &f.reader, REGION, "iot"),
        at(NOW),
    );
    let (status, code, message) = error(&denied);
    assert_eq!((status, code.as_str()), (403, "AccessDeniedException"));
    assert!(
        message.contains("is not authorized to perform: iot:DeleteThing on resource: arn:aws:iot:eu-central-1:123456789012:thing/a with an explicit deny"),
        "{message}"
    );
    assert_eq!(denied.1.error.as_deref(), Some("AccessDeniedException"));
    assert_eq!(things(&f), 1);
}

#[test]
fn routing_validation_and_size_errors_are_aws_errors() {
    let f = fixture();
    let nowhere = f.plane.handle(
        &signed("GET", "/nowhere", "", &f.admin, REGION, "iot"),
        at(NOW),
    );
    assert_eq!(error(&nowhere).1, "UnknownOperationException");
    let invalid = f.plane.handle(
        &signed("POST", "/things/bad%20name", "{}", &f.admin, REGION, "iot"),
        at(NOW),
    );
    let (status, code, message) = error(&invalid);
    assert_eq!((status, code.as_str()), (400, "InvalidRequestException"));
    assert!(
        message.starts_with("1 validation error detected: Value 'bad name' at 'thingName'"),
        "{message}"
    );
    let not_json = f.plane.handle(
        &signed("POST", "/things/a", "{", &f.admin, REGION, "iot"),
        at(NOW),
    );
    assert_eq!(error(&not_json).1, "SerializationException");
    let huge = "x".repeat(300 * 1024);
    let big = f.plane.handle(
        &signed("POST", "/things/a", &huge, &f.admin, REGION, "iot"),
        at(NOW),
    );
    assert_eq!(error(&big).0, 413);
    assert_eq!(things(&f), 0);
}
