//! The test suite every [`ShadowStore`] must pass (cargo feature `test-suite`).
//!
//! [`run`] takes a function that makes a fresh, empty store for each check; [`reopen`] takes
//! one that opens the *same* storage again on every call (empty on the first), and checks that
//! what was stored is there after the previous store was dropped.
//!
//! ```ignore
//! #[test]
//! fn my_store_conforms() {
//!     thingkit_shadow::conformance::run(|| Box::new(MyStore::new_empty()));
//!     thingkit_shadow::conformance::reopen(|| Box::new(MyStore::open_the_same()));
//! }
//! ```

use crate::request::{Limits, handle};
use crate::store::ShadowStore;
use crate::stored::StoredShadow;
use crate::topic::{Operation, ShadowKey};

/// Runs every check against fresh stores from `make` (each must start empty); panics on the
/// first store that does not behave as [`ShadowStore`] documents.
pub fn run(mut make: impl FnMut() -> Box<dyn ShadowStore>) {
    stores_and_lists_shadows(make());
    a_put_replaces_the_stored_value(make());
    lists_named_shadows_in_byte_order(make());
    keeps_large_documents_exactly(make());
}

/// Checks that stores from `open` (the same storage on every call, empty on the first) see
/// what a store opened before them stored, tombstones included.
pub fn reopen(mut open: impl FnMut() -> Box<dyn ShadowStore>) {
    let a = key("t1", Some("a"));
    let b = key("t1", Some("b"));
    let s1 = shadow(r#"{"state":{"desired":{"x":[1,2]}}}"#);
    let deleted = handle(Some(&s1), &b, Operation::Delete, b"", 6, &Limits::default())
        .write
        .expect("a delete writes a tombstone");
    {
        let mut store = open();
        assert!(
            store.get(&a).expect("get").is_none(),
            "the first open is empty"
        );
        store.put(&a, &s1).expect("put");
        store.put(&b, &s1).expect("put");
        store.put(&b, &deleted).expect("put");
    }
    let store = open();
    assert_eq!(store.get(&a).expect("get"), Some(s1));
    assert_eq!(store.get(&b).expect("get"), Some(deleted));
    assert_eq!(store.list_named("t1").expect("list"), ["a"]);
}

fn key(thing: &str, name: Option<&str>) -> ShadowKey {
    match name {
        Some(n) => ShadowKey::named(thing, n).expect("a valid conformance shadow name"),
        None => ShadowKey::classic(thing).expect("a valid conformance thing name"),
    }
}

fn shadow(payload: &str) -> StoredShadow {
    let key = key("x", None);
    handle(
        None,
        &key,
        Operation::Update,
        payload.as_bytes(),
        5,
        &Limits::default(),
    )
    .write
    .expect("a valid conformance update writes a shadow")
}

fn stores_and_lists_shadows(mut store: Box<dyn ShadowStore>) {
    let classic = key("t1", None);
    let a = key("t1", Some("a"));
    let b = key("t1", Some("b"));
    let other = key("t10", Some("c"));
    assert!(store.get(&classic).expect("get").is_none());
    let s1 = shadow(r#"{"state":{"desired":{"x":[1,2]}}}"#);
    for k in [&classic, &b, &a, &other] {
        store.put(k, &s1).expect("put");
    }
    assert_eq!(store.get(&a).expect("get"), Some(s1.clone()));
    assert_eq!(store.get(&classic).expect("get"), Some(s1.clone()));
    assert!(store.get(&key("t1", Some("c"))).expect("get").is_none());
    assert_eq!(store.list_named("t1").expect("list"), ["a", "b"]);
    assert_eq!(store.list_named("t10").expect("list"), ["c"]);
    assert!(store.list_named("t").expect("list").is_empty());
    assert!(store.list_named("nobody").expect("list").is_empty());
    // A tombstone is stored but not listed.
    let deleted = handle(Some(&s1), &b, Operation::Delete, b"", 6, &Limits::default())
        .write
        .expect("a delete writes a tombstone");
    store.put(&b, &deleted).expect("put");
    assert_eq!(store.get(&b).expect("get"), Some(deleted));
    assert_eq!(store.list_named("t1").expect("list"), ["a"]);
}

fn a_put_replaces_the_stored_value(mut store: Box<dyn ShadowStore>) {
    let k = key("t", None);
    let first = shadow(r#"{"state":{"reported":{"on":true}}}"#);
    let second = handle(
        Some(&first),
        &k,
        Operation::Update,
        br#"{"state":{"reported":{"on":false}}}"#,
        7,
        &Limits::default(),
    )
    .write
    .expect("an update writes");
    store.put(&k, &first).expect("put");
    store.put(&k, &second).expect("put");
    assert_eq!(store.get(&k).expect("get"), Some(second));
}

fn lists_named_shadows_in_byte_order(mut store: Box<dyn ShadowStore>) {
    let s = shadow(r#"{"state":{"desired":{"n":1}}}"#);
    let names = ["b", "B", "a-1", "a", "a_1", "Z9", "0", "aa"];
    for n in names {
        store.put(&key("t", Some(n)), &s).expect("put");
    }
    let mut sorted = names.to_vec();
    sorted.sort_unstable();
    assert_eq!(store.list_named("t").expect("list"), sorted);
}

fn keeps_large_documents_exactly(mut store: Box<dyn ShadowStore>) {
    let big: String = (0..6000).map(|i| format!("\"k{i}\":{i},")).collect();
    let payload = format!(r#"{{"state":{{"desired":{{{}"end":"é\u0000"}}}}}}"#, big);
    let s = handle(
        None,
        &key("big", None),
        Operation::Update,
        payload.as_bytes(),
        9,
        &Limits {
            max_payload_bytes: 1 << 20,
            max_state_bytes: 1 << 20,
            max_json_values: 1 << 20,
            ..Limits::default()
        },
    )
    .write
    .expect("a large update writes");
    store.put(&key("big", None), &s).expect("put");
    assert_eq!(store.get(&key("big", None)).expect("get"), Some(s));
}
