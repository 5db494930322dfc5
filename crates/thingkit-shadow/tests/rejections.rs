//! Every rejection of digest A.6 the shadow engine produces: code, exact message, the
//! clientToken echoed when it was valid, a timestamp, and nothing written.

use serde_json::{Value, json};
use thingkit_shadow::{
    Limits, MemoryShadowStore, Operation, ShadowKey, ShadowStore, Shadows, StoreError,
    StoredShadow, handle,
};

const T: &str = "$aws/things/dev/shadow";

fn reject(current: Option<&StoredShadow>, op: Operation, payload: &[u8], limits: &Limits) -> Value {
    let key = ShadowKey::classic("dev").unwrap();
    let out = handle(current, &key, op, payload, 99, limits);
    assert!(out.write.is_none(), "a rejection writes nothing");
    assert_eq!(out.publishes.len(), 1);
    assert_eq!(
        out.publishes[0].topic,
        format!("{T}/{}/rejected", op.as_str())
    );
    let v: Value = serde_json::from_slice(&out.publishes[0].payload).unwrap();
    assert_eq!(v["timestamp"], 99);
    v
}

fn existing(version: u64) -> StoredShadow {
    let key = ShadowKey::classic("dev").unwrap();
    let mut current = None;
    for _ in 0..version {
        let out = handle(
            current.as_ref(),
            &key,
            Operation::Update,
            br#"{"state":{"reported":{"a":1}}}"#,
            1,
            &Limits::default(),
        );
        current = out.write;
    }
    current.unwrap()
}

fn update_rejection(payload: &str) -> (u64, String, Option<String>) {
    let v = reject(
        Some(&existing(1)),
        Operation::Update,
        payload.as_bytes(),
        &Limits::default(),
    );
    (
        v["code"].as_u64().unwrap(),
        v["message"].as_str().unwrap().to_owned(),
        v["clientToken"].as_str().map(str::to_owned),
    )
}

#[test]
fn rejects_invalid_json_with_400() {
    for bad in [
        "",
        "{",
        "{\"state\":{}}x",
        "{\"state\":{\"desired\":{\"a\":1,}}}",
        "[]",
        "\"state\"",
        "{\"state\":{\"desired\":{\"a\":1,\"a\":2}}}",
        "{\"state\":{},\"state\":{}}",
    ] {
        let (code, message, _) = update_rejection(bad);
        assert_eq!((code, message.as_str()), (400, "Invalid JSON"), "{bad:?}");
    }
}

#[test]
fn rejects_update_without_state() {
    assert_eq!(
        update_rejection(r#"{"clientToken":"c","desired":{}}"#),
        (400, "Missing required node: state".into(), Some("c".into()))
    );
}

#[test]
fn rejects_non_object_state_and_sections() {
    assert_eq!(
        update_rejection(r#"{"state":[1],"clientToken":"c"}"#),
        (400, "State node must be an object".into(), Some("c".into()))
    );
    assert_eq!(
        update_rejection(r#"{"state":{"desired":"on"}}"#),
        (400, "Desired node must be an object".into(), None)
    );
    assert_eq!(
        update_rejection(r#"{"state":{"reported":[1]}}"#),
        (400, "Reported node must be an object".into(), None)
    );
}

#[test]
fn rejects_invalid_state_node() {
    assert_eq!(
        update_rejection(r#"{"state":{"delta":{"a":1}}}"#),
        (400, "State contains an invalid node: 'delta'".into(), None)
    );
    assert_eq!(
        update_rejection(r#"{"state":{"desired":{},"metadata":{}}}"#).1,
        "State contains an invalid node: 'metadata'"
    );
}

#[test]
fn rejects_invalid_version() {
    for bad in [
        r#""1""#,
        "1.5",
        "-1",
        "null",
        "1e0",
        "99999999999999999999999",
    ] {
        let (code, message, token) = update_rejection(&format!(
            r#"{{"state":{{}},"version":{bad},"clientToken":"c"}}"#
        ));
        assert_eq!(
            (code, message.as_str(), token.as_deref()),
            (400, "Invalid version", Some("c")),
            "{bad}"
        );
    }
}

#[test]
fn rejects_client_token_over_64_bytes_or_not_a_string() {
    let ok = "x".repeat(64);
    let (code, ..) = update_rejection(&format!(
        r#"{{"state":{{}},"clientToken":"{ok}","version":0}}"#
    ));
    assert_eq!(
        code, 409,
        "a 64-byte token is valid (and echoed with the conflict)"
    );
    let long = "x".repeat(65);
    assert_eq!(
        update_rejection(&format!(r#"{{"state":{{}},"clientToken":"{long}"}}"#)),
        (400, "Invalid clientToken".into(), None)
    );
    assert_eq!(
        update_rejection(r#"{"state":{},"clientToken":5}"#),
        (400, "Invalid clientToken".into(), None)
    );
    // Get too.
    let v = reject(
        Some(&existing(1)),
        Operation::Get,
        format!(r#"{{"clientToken":"{long}"}}"#).as_bytes(),
        &Limits::default(),
    );
    assert_eq!(v["message"], "Invalid clientToken");
}

#[test]
fn rejects_too_deep_nesting() {
    let (code, message, _) =
        update_rejection(r#"{"state":{"reported":{"1":{"2":{"3":{"4":{"5":{"6":true}}}}}}}}"#);
    assert_eq!(
        (code, message.as_str()),
        (
            400,
            "JSON contains too many levels of nesting; maximum is 6"
        )
    );
    // Far deeper than the parser's bound: the same answer, without recursing that deep.
    let deep = format!(
        r#"{{"state":{{"desired":{}1{}}}}}"#,
        r#"{"a":"#.repeat(10_000),
        "}".repeat(10_000)
    );
    assert_eq!(
        update_rejection(&deep).1,
        "JSON contains too many levels of nesting; maximum is 6"
    );
}

#[test]
fn rejects_null_inside_arrays_at_any_depth() {
    let (code, message, _) = update_rejection(r#"{"state":{"desired":{"a":[[1,null]]}}}"#);
    assert_eq!(code, 400);
    assert!(message.starts_with("Invalid JSON"));
    assert_eq!(
        update_rejection(r#"{"state":{"desired":{"a":[{"b":null}]}}}"#).0,
        400
    );
}

#[test]
fn rejects_get_and_delete_of_missing_shadow_with_404() {
    for op in [Operation::Get, Operation::Delete] {
        let v = reject(None, op, br#"{"clientToken":"t"}"#, &Limits::default());
        assert_eq!(
            v,
            json!({"code":404,"message":"No shadow exists with name: 'dev'","timestamp":99,"clientToken":"t"})
        );
    }
    // A deleted shadow is missing too.
    let key = ShadowKey::classic("dev").unwrap();
    let deleted = handle(
        Some(&existing(2)),
        &key,
        Operation::Delete,
        b"",
        5,
        &Limits::default(),
    )
    .write
    .unwrap();
    assert!(deleted.is_deleted());
    assert_eq!(
        reject(Some(&deleted), Operation::Get, b"", &Limits::default())["code"],
        404
    );
    assert_eq!(
        reject(Some(&deleted), Operation::Delete, b"", &Limits::default())["code"],
        404
    );
}

#[test]
fn rejects_version_conflict_with_409() {
    assert_eq!(
        update_rejection(r#"{"state":{},"version":2,"clientToken":"c"}"#),
        (409, "Version conflict".into(), Some("c".into()))
    );
    // A shadow that never existed is at version 0: `version: 0` creates it only if absent.
    let v = reject(
        None,
        Operation::Update,
        br#"{"state":{},"version":1}"#,
        &Limits::default(),
    );
    assert_eq!(v["code"], 409);
}

#[test]
fn rejects_payload_over_the_limit_before_parsing_with_413() {
    let limits = Limits::default().with_max_payload_bytes(16);
    // Not even JSON: the size is checked first.
    let v = reject(None, Operation::Update, &[b'x'; 17], &limits);
    assert_eq!(
        v,
        json!({"code":413,"message":"The payload exceeds the maximum size allowed","timestamp":99})
    );
    assert_eq!(
        reject(None, Operation::Get, &[b'{'; 17], &limits)["code"],
        413
    );
}

#[test]
fn rejects_state_over_8_kb_after_the_merge_with_413() {
    let key = ShadowKey::classic("dev").unwrap();
    let limits = Limits::default();
    let half = "x".repeat(4100);
    let first = handle(
        None,
        &key,
        Operation::Update,
        format!(r#"{{"state":{{"desired":{{"a":"{half}"}}}}}}"#).as_bytes(),
        1,
        &limits,
    );
    let current = first.write.unwrap();
    // Each request is small enough; the merged document is not (F-S2: merged, compact).
    let v = reject(
        Some(&current),
        Operation::Update,
        format!(r#"{{"state":{{"reported":{{"b":"{half}"}}}},"clientToken":"c"}}"#).as_bytes(),
        &limits,
    );
    assert_eq!(
        v,
        json!({"code":413,"message":"The payload exceeds the maximum size allowed","timestamp":99,"clientToken":"c"})
    );
    // Replacing the big value instead is fine.
    let out = handle(
        Some(&current),
        &key,
        Operation::Update,
        format!(r#"{{"state":{{"desired":{{"a":"{half}"}}}}}}"#).as_bytes(),
        2,
        &limits,
    );
    assert!(out.write.is_some());
}

#[test]
fn rejects_non_utf8_with_415() {
    let v = reject(
        None,
        Operation::Update,
        b"{\"state\":{\"desired\":{\"a\":\"\xff\"}}}",
        &Limits::default(),
    );
    assert_eq!(
        v,
        json!({"code":415,"message":"Unsupported documented encoding; supported encoding is UTF-8","timestamp":99})
    );
}

/// A store that fails on demand.
struct Failing {
    inner: MemoryShadowStore,
    fail_get: bool,
    fail_put: bool,
}

impl ShadowStore for Failing {
    fn get(&self, key: &ShadowKey) -> Result<Option<StoredShadow>, StoreError> {
        if self.fail_get {
            return Err(StoreError::Backend {
                operation: "get",
                detail: "disk on fire".into(),
            });
        }
        self.inner.get(key)
    }
    fn put(&mut self, key: &ShadowKey, value: &StoredShadow) -> Result<(), StoreError> {
        if self.fail_put {
            return Err(StoreError::Backend {
                operation: "put",
                detail: "disk full".into(),
            });
        }
        self.inner.put(key, value)
    }
    fn list_named(&self, thing: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list_named(thing)
    }
}

#[test]
fn store_failure_answers_500_and_writes_nothing() {
    let store = Failing {
        inner: MemoryShadowStore::new(),
        fail_get: false,
        fail_put: true,
    };
    let mut shadows = Shadows::new(store, Limits::default());
    let out = shadows
        .request(
            &format!("{T}/update"),
            br#"{"state":{"desired":{"a":1}},"clientToken":"c"}"#,
            7,
        )
        .unwrap();
    assert_eq!(
        out.len(),
        1,
        "no accepted, delta or documents when the write failed"
    );
    assert_eq!(out[0].topic, format!("{T}/update/rejected"));
    assert_eq!(
        serde_json::from_slice::<Value>(&out[0].payload).unwrap(),
        json!({"code":500,"message":"Internal service failure","timestamp":7,"clientToken":"c"})
    );
    let store = shadows.into_store();
    assert!(
        store
            .inner
            .get(&ShadowKey::classic("dev").unwrap())
            .unwrap()
            .is_none()
    );

    let store = Failing {
        inner: MemoryShadowStore::new(),
        fail_get: true,
        fail_put: false,
    };
    let mut shadows = Shadows::new(store, Limits::default());
    let out = shadows.request(&format!("{T}/get"), b"", 8).unwrap();
    assert_eq!(out[0].topic, format!("{T}/get/rejected"));
    assert_eq!(
        serde_json::from_slice::<Value>(&out[0].payload).unwrap()["code"],
        500
    );
}
