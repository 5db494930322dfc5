//! The iot-data shadow operations over the same engine the MQTT topics use: the answers are the
//! `/accepted` documents, refusals are the iot-data errors of the `/rejected` codes, accepted
//! updates are also published to MQTT subscribers, and the body is the raw document.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use thingkit_api::keys::KeyStore;
use thingkit_api::{ApiResult, ControlPlane, DataPublish, Input, Publisher, ShadowBackend};
use thingkit_policy::ArnPrefix;
use thingkit_provision::{MemoryStore, Registry};
use thingkit_shadow::{Limits, MemoryShadowStore, Shadows};

struct Engine(Mutex<Shadows<MemoryShadowStore>>);

impl ShadowBackend for Engine {
    fn request(&self, topic: &str, payload: &[u8], now: u64) -> Option<Vec<(String, Vec<u8>)>> {
        self.0
            .lock()
            .unwrap()
            .request(topic, payload, now)
            .map(|out| out.into_iter().map(|m| (m.topic, m.payload)).collect())
    }

    fn list_named(&self, thing: &str) -> Result<Vec<String>, String> {
        self.0
            .lock()
            .unwrap()
            .list_named(thing)
            .map_err(|e| e.to_string())
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<DataPublish>>);

impl Publisher for Recorder {
    fn publish(&self, message: DataPublish) -> ApiResult<()> {
        self.0.lock().unwrap().push(message);
        Ok(())
    }
}

fn plane() -> (ControlPlane<MemoryStore>, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let plane = ControlPlane::new(
        Arc::new(RwLock::new(Registry::in_memory())),
        ArnPrefix::new("aws", "us-east-1", "123456789012").unwrap(),
        Arc::new(KeyStore::default()),
    )
    .with_publisher(Some(recorder.clone()))
    .with_shadows(Some(Arc::new(Engine(Mutex::new(Shadows::new(
        MemoryShadowStore::new(),
        Limits::default(),
    ))))));
    (plane, recorder)
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn call(
    plane: &ControlPlane<MemoryStore>,
    op: &str,
    members: Value,
    payload: Option<&str>,
) -> ApiResult<Value> {
    let mut input = Input::from_json(members);
    input.payload = payload.map(|p| p.as_bytes().to_vec());
    plane.call(op, input, now())
}

/// The raw body a blob-payload operation answers, parsed.
fn doc(v: Value) -> Value {
    serde_json::from_str(v.as_str().expect("a raw document")).expect("JSON")
}

#[test]
fn update_get_and_delete_answer_the_accepted_documents() {
    let (plane, published) = plane();
    let updated = call(
        &plane,
        "UpdateThingShadow",
        json!({"thingName": "lamp"}),
        Some(r#"{"state": {"desired": {"on": true}}, "clientToken": "t1"}"#),
    )
    .unwrap();
    let updated = doc(updated);
    assert_eq!(updated["state"]["desired"]["on"], true);
    assert_eq!(updated["version"], 1);
    assert_eq!(updated["clientToken"], "t1");

    // The update's MQTT messages reach subscribers, as a device's update over MQTT would.
    let topics: Vec<String> = published
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.topic.clone())
        .collect();
    assert_eq!(
        topics,
        [
            "$aws/things/lamp/shadow/update/accepted",
            "$aws/things/lamp/shadow/update/documents",
            "$aws/things/lamp/shadow/update/delta"
        ]
    );

    let got = doc(call(&plane, "GetThingShadow", json!({"thingName": "lamp"}), None).unwrap());
    assert_eq!(got["state"]["delta"]["on"], true);
    assert_eq!(got["version"], 1);
    assert_eq!(
        published.0.lock().unwrap().len(),
        3,
        "a get publishes nothing"
    );

    let deleted = doc(call(
        &plane,
        "DeleteThingShadow",
        json!({"thingName": "lamp"}),
        None,
    )
    .unwrap());
    assert_eq!(deleted["version"], 1);
    let gone = call(&plane, "GetThingShadow", json!({"thingName": "lamp"}), None).unwrap_err();
    assert_eq!((gone.code, gone.status), ("ResourceNotFoundException", 404));
}

#[test]
fn named_shadows_are_listed_and_refusals_are_iot_data_errors() {
    let (plane, _) = plane();
    for name in ["b", "a", "c"] {
        call(
            &plane,
            "UpdateThingShadow",
            json!({"thingName": "lamp", "shadowName": name}),
            Some(r#"{"state": {"reported": {"x": 1}}}"#),
        )
        .unwrap();
    }
    let first = call(
        &plane,
        "ListNamedShadowsForThing",
        json!({"thingName": "lamp", "pageSize": 2}),
        None,
    )
    .unwrap();
    assert_eq!(first["results"], json!(["a", "b"]));
    let token = first["nextToken"].as_str().unwrap();
    let rest = call(
        &plane,
        "ListNamedShadowsForThing",
        json!({"thingName": "lamp", "pageSize": 2, "nextToken": token}),
        None,
    )
    .unwrap();
    assert_eq!(rest["results"], json!(["c"]));
    assert!(rest.get("nextToken").is_none());

    // A version conflict is 409 ConflictException; bad JSON 400; no state 400.
    let conflict = call(
        &plane,
        "UpdateThingShadow",
        json!({"thingName": "lamp", "shadowName": "a"}),
        Some(r#"{"state": {"reported": {"x": 2}}, "version": 7}"#),
    )
    .unwrap_err();
    assert_eq!((conflict.code, conflict.status), ("ConflictException", 409));
    let bad = call(
        &plane,
        "UpdateThingShadow",
        json!({"thingName": "lamp"}),
        Some("{"),
    )
    .unwrap_err();
    assert_eq!((bad.code, bad.status), ("InvalidRequestException", 400));
    let too_big = "x".repeat(200 * 1024);
    let big = call(
        &plane,
        "UpdateThingShadow",
        json!({"thingName": "lamp"}),
        Some(&format!(
            r#"{{"state": {{"reported": {{"x": "{too_big}"}}}}}}"#
        )),
    )
    .unwrap_err();
    assert_eq!(big.status, 413, "{big}");
}
