//! Shadow updates (thingkit-shadow's `handle`): the input is split at the first 0xFF byte into
//! an update that builds the current document and the update under test, so the fuzzer explores
//! merges into arbitrary existing documents. Nothing panics; every publish is JSON the engine's
//! own reader accepts; an accepted update's stored form round-trips and bumps the version by one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingkit_shadow::{Limits, Operation, ShadowKey, StoredShadow, handle};

fuzz_target!(|data: &[u8]| {
    let (first, second) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let key = ShadowKey::named("thing", "fuzz").expect("valid names");
    let limits = Limits::default();
    let current = handle(None, &key, Operation::Update, first, 1, &limits).write;
    for op in [Operation::Update, Operation::Get, Operation::Delete] {
        let out = handle(current.as_ref(), &key, op, second, 2, &limits);
        assert!(!out.publishes.is_empty(), "every request is answered");
        for m in &out.publishes {
            let text = std::str::from_utf8(&m.payload).expect("publishes are UTF-8");
            thingkit_json::parse(text, thingkit_json::Limits::default())
                .expect("publishes are JSON");
        }
        if let (Operation::Update, Some(written)) = (op, &out.write) {
            let again = StoredShadow::from_bytes(&written.to_bytes()).expect("round trip");
            assert_eq!(&again, written);
            assert_eq!(
                written.version(),
                current.as_ref().map_or(0, |c| c.version()) + 1
            );
        }
    }
});
