//! Property tests: any sequence of updates gives the document a naive recursive merge gives;
//! the delta is desired minus reported; versions strictly increase; the stored form round-trips;
//! arbitrary bytes never panic `from_bytes` or `handle`.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use thingkit_shadow::{Limits, Operation, ShadowKey, StoredShadow, handle};

/// JSON values as updates carry them: small keys so updates collide, nulls to delete.
fn value(depth: u32) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::from),
        (-3i64..3).prop_map(Value::from),
        prop_oneof![Just(1.5f64), Just(-0.25)].prop_map(Value::from),
        "[a-c]{0,2}".prop_map(Value::from),
        prop::collection::vec(-2i64..2, 0..3).prop_map(|v| json!(v)),
    ];
    if depth == 0 {
        return prop_oneof![4 => leaf, 1 => Just(Value::Null)].boxed();
    }
    prop_oneof![
        4 => leaf,
        1 => Just(Value::Null),
        2 => object(depth - 1).prop_map(Value::Object),
    ]
    .boxed()
}

fn object(depth: u32) -> BoxedStrategy<Map<String, Value>> {
    prop::collection::btree_map("[a-c]", value(depth), 0..3)
        .prop_map(|m| m.into_iter().collect())
        .boxed()
}

fn section() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(Value::Null)),
        4 => object(3).prop_map(|m| Some(Value::Object(m))),
    ]
}

fn update() -> impl Strategy<Value = Value> {
    prop_oneof![
        12 => (section(), section()).prop_map(|(d, r)| {
            let mut state = Map::new();
            if let Some(d) = d { state.insert("desired".into(), d); }
            if let Some(r) = r { state.insert("reported".into(), r); }
            json!({"state": state})
        }),
        1 => Just(json!({"state": null})),
    ]
}

/// The model: objects merge, null deletes, everything else replaces, empty objects vanish.
fn merge(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(k);
            }
            Value::Object(p) => {
                let mut inner = match target.get(k) {
                    Some(Value::Object(m)) => m.clone(),
                    _ => Map::new(),
                };
                merge(&mut inner, p);
                if inner.is_empty() {
                    target.remove(k);
                } else {
                    target.insert(k.clone(), Value::Object(inner));
                }
            }
            other => {
                target.insert(k.clone(), other.clone());
            }
        }
    }
}

fn model_delta(desired: &Map<String, Value>, reported: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, d) in desired {
        match (d, reported.get(k)) {
            (Value::Object(d), Some(Value::Object(r))) => {
                let inner = model_delta(d, r);
                if !inner.is_empty() {
                    out.insert(k.clone(), Value::Object(inner));
                }
            }
            (d, Some(r)) if d == r => {}
            (d, _) => {
                out.insert(k.clone(), d.clone());
            }
        }
    }
    out
}

fn apply(model: &mut [Map<String, Value>; 2], request: &Value) {
    match &request["state"] {
        Value::Null => model.iter_mut().for_each(Map::clear),
        state => {
            for (i, name) in ["desired", "reported"].iter().enumerate() {
                match state.get(*name) {
                    None => {}
                    Some(Value::Object(p)) => merge(&mut model[i], p),
                    Some(_) => model[i].clear(),
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn updates_agree_with_the_naive_merge(updates in prop::collection::vec(update(), 1..12)) {
        let key = ShadowKey::named("thing", "s").unwrap();
        let limits = Limits::default();
        let mut current: Option<StoredShadow> = None;
        let mut model = [Map::new(), Map::new()];
        let mut last_version = 0;
        for (t, request) in updates.iter().enumerate() {
            let now = 1000 + t as u64;
            let out = handle(current.as_ref(), &key, Operation::Update,
                request.to_string().as_bytes(), now, &limits);
            let written = out.write.expect("every generated update is valid");
            apply(&mut model, request);

            // Versions strictly increase, by one, and every message carries the new one.
            prop_assert_eq!(written.version(), last_version + 1);
            last_version = written.version();
            let accepted: Value = serde_json::from_slice(&out.publishes[0].payload).unwrap();
            prop_assert_eq!(&accepted["version"], &json!(last_version));
            prop_assert_eq!(&accepted["state"], &request["state"]);

            // The stored form round-trips.
            prop_assert_eq!(&StoredShadow::from_bytes(&written.to_bytes()).unwrap(), &written);

            // The document equals the model, and the delta is desired minus reported.
            let got = handle(Some(&written), &key, Operation::Get, b"", now, &limits);
            let doc: Value = serde_json::from_slice(&got.publishes[0].payload).unwrap();
            let section = |m: &Map<String, Value>| (!m.is_empty()).then(|| Value::Object(m.clone()));
            prop_assert_eq!(doc["state"].get("desired").cloned(), section(&model[0]));
            prop_assert_eq!(doc["state"].get("reported").cloned(), section(&model[1]));
            let delta = model_delta(&model[0], &model[1]);
            prop_assert_eq!(doc["state"].get("delta").cloned(), section(&delta));
            let delta_msg = out.publishes.iter().find(|m| m.topic.ends_with("/update/delta"));
            match delta_msg {
                Some(m) => {
                    let d: Value = serde_json::from_slice(&m.payload).unwrap();
                    prop_assert_eq!(&d["state"], &Value::Object(delta.clone()));
                    prop_assert_eq!(&d["version"], &json!(last_version));
                }
                None => prop_assert!(delta.is_empty()),
            }
            // /update/documents: current equals what a get shows.
            let docs = out.publishes.iter().find(|m| m.topic.ends_with("/update/documents")).unwrap();
            let docs: Value = serde_json::from_slice(&docs.payload).unwrap();
            prop_assert_eq!(&docs["current"]["state"].get("desired").cloned(), &section(&model[0]));
            prop_assert_eq!(&docs["current"]["version"], &json!(last_version));
            current = Some(written);
        }
    }

    #[test]
    fn from_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = StoredShadow::from_bytes(&bytes);
        let mut tagged = b"TKS\x01".to_vec();
        tagged.extend_from_slice(&bytes);
        if let Ok(s) = StoredShadow::from_bytes(&tagged) {
            prop_assert_eq!(s.to_bytes(), tagged, "one encoding per shadow");
        }
    }

    #[test]
    fn handle_never_panics(payload in prop::collection::vec(any::<u8>(), 0..256),
                           json_like in "[{}\\[\\]\",:a-c0-9 nulstrefdeiv]{0,80}",
                           op in prop_oneof![Just(Operation::Get), Just(Operation::Update), Just(Operation::Delete)]) {
        let key = ShadowKey::classic("t").unwrap();
        let limits = Limits::default();
        let current = handle(None, &key, Operation::Update,
            br#"{"state":{"desired":{"a":[1,{"b":2}]},"reported":{"c":"x"}}}"#, 1, &limits).write;
        for p in [payload.as_slice(), json_like.as_bytes()] {
            let out = handle(current.as_ref(), &key, op, p, 2, &limits);
            prop_assert!(!out.publishes.is_empty());
            for m in &out.publishes {
                prop_assert!(serde_json::from_slice::<Value>(&m.payload).is_ok());
            }
        }
    }
}
