//! The shared store suite: every `ShadowStore` implementation must pass it.

use thingkit_shadow::{
    Limits, MemoryShadowStore, Operation, ShadowKey, ShadowStore, StoredShadow, handle,
};

fn shadow(payload: &str) -> StoredShadow {
    let key = ShadowKey::classic("x").unwrap();
    handle(
        None,
        &key,
        Operation::Update,
        payload.as_bytes(),
        5,
        &Limits::default(),
    )
    .write
    .unwrap()
}

fn suite(store: &mut dyn ShadowStore) {
    let classic = ShadowKey::classic("t1").unwrap();
    let a = ShadowKey::named("t1", "a").unwrap();
    let b = ShadowKey::named("t1", "b").unwrap();
    let other = ShadowKey::named("t10", "c").unwrap();
    assert!(store.get(&classic).unwrap().is_none());
    let s1 = shadow(r#"{"state":{"desired":{"x":[1,2]}}}"#);
    for k in [&classic, &b, &a, &other] {
        store.put(k, &s1).unwrap();
    }
    assert_eq!(store.get(&a).unwrap(), Some(s1.clone()));
    assert_eq!(store.list_named("t1").unwrap(), ["a", "b"]);
    assert_eq!(store.list_named("t10").unwrap(), ["c"]);
    assert!(store.list_named("t").unwrap().is_empty());
    // A tombstone is stored but not listed.
    let deleted = handle(Some(&s1), &b, Operation::Delete, b"", 6, &Limits::default())
        .write
        .unwrap();
    store.put(&b, &deleted).unwrap();
    assert_eq!(store.get(&b).unwrap(), Some(deleted));
    assert_eq!(store.list_named("t1").unwrap(), ["a"]);
}

#[test]
fn memory_store_passes_the_suite() {
    suite(&mut MemoryShadowStore::new());
}

#[cfg(feature = "redb")]
#[test]
fn redb_store_passes_the_suite_and_keeps_shadows_across_reopen() {
    use thingkit_shadow::RedbShadowStore;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shadows.redb");
    {
        let mut store = RedbShadowStore::open(&path).unwrap();
        suite(&mut store);
    }
    let store = RedbShadowStore::open(&path).unwrap();
    let a = ShadowKey::named("t1", "a").unwrap();
    assert_eq!(
        store.get(&a).unwrap(),
        Some(shadow(r#"{"state":{"desired":{"x":[1,2]}}}"#))
    );
    assert_eq!(store.list_named("t1").unwrap(), ["a"]);
    assert!(
        store
            .get(&ShadowKey::named("t1", "b").unwrap())
            .unwrap()
            .unwrap()
            .is_deleted()
    );
}

#[cfg(feature = "redb")]
#[test]
fn redb_store_drives_shadows_across_reopen() {
    use thingkit_shadow::{RedbShadowStore, Shadows};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shadows.redb");
    let topic = "$aws/things/t/shadow/update";
    {
        let mut shadows = Shadows::new(RedbShadowStore::open(&path).unwrap(), Limits::default());
        shadows
            .request(topic, br#"{"state":{"reported":{"on":true}}}"#, 1)
            .unwrap();
        shadows
            .request(topic, br#"{"state":{"reported":{"on":false}}}"#, 2)
            .unwrap();
    }
    let mut shadows = Shadows::new(RedbShadowStore::open(&path).unwrap(), Limits::default());
    let out = shadows
        .request(
            topic,
            br#"{"state":{"desired":{"on":true}},"version":2}"#,
            3,
        )
        .unwrap();
    assert!(
        out[0].topic.ends_with("/update/accepted"),
        "the version survived the reopen"
    );
}
