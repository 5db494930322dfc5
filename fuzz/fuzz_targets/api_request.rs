//! Arbitrary requests past authentication: the method, path, query, headers and body of a
//! control-plane call are routed, bound and validated against botocore's model, and the
//! operation runs against an in-memory registry. Nothing may panic, hang or allocate without
//! bound; every refusal is an AWS error.
#![no_main]

use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use thingkit_api::keys::KeyStore;
use thingkit_api::{ControlPlane, Input};
use thingkit_policy::ArnPrefix;
use thingkit_provision::{MemoryStore, Registry};

static PLANE: LazyLock<ControlPlane<MemoryStore>> = LazyLock::new(|| {
    ControlPlane::new(
        Arc::new(RwLock::new(Registry::in_memory())),
        ArnPrefix::new("aws", "eu-central-1", "123456789012").expect("a valid prefix"),
        Arc::new(KeyStore::in_memory()),
    )
});

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    // Pieces separated by NUL: path, query, a header value, body.
    let mut pieces = text.splitn(4, '\0');
    let path = pieces.next().unwrap_or_default();
    let query = pieces.next().unwrap_or_default();
    let header = pieces.next().unwrap_or_default();
    let body = pieces.next().unwrap_or_default();
    let method = METHODS[usize::from(selector) % METHODS.len()];
    let model = PLANE.model();
    let Ok(matched) = model.route(method, path) else {
        return;
    };
    let headers = vec![
        ("x-amzn-iot-principal".to_string(), header.to_string()),
        ("x-amzn-principal".to_string(), header.to_string()),
    ];
    let Ok(input): Result<Input, _> = model.bind(&matched, query, &headers, body.as_bytes()) else {
        return;
    };
    let name = matched.operation.name.clone();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_385_600);
    let _ = PLANE.call(&name, input, now);
});
