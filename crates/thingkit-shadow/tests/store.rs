//! The shadow service over a durable store. The store suite every `ShadowStore` must pass is
//! `thingkit_shadow::conformance` (feature `test-suite`), run for the memory and redb stores by
//! the unit tests in `src/store.rs`.

#[cfg(feature = "redb")]
#[test]
fn redb_store_drives_shadows_across_reopen() {
    use thingkit_shadow::{Limits, RedbShadowStore, Shadows};
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
