//! Listing things, thing types and thing groups, and the metadata the control-plane API
//! describes them with; records written before that metadata was kept still load.

use std::time::{Duration, SystemTime};

use thingkit_provision::{
    Error, MAX_SEARCHABLE_ATTRIBUTES, MemoryStore, Registry, RegistryLimits, RegistryStore, StoreOp,
};

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn lists_every_thing_type_and_group() {
    let mut r = Registry::in_memory();
    r.create_thing("a", None, &[]).unwrap();
    r.create_thing("b", None, &[]).unwrap();
    r.create_thing_type("ty", None).unwrap();
    r.create_thing_group("g", None).unwrap();
    let mut things: Vec<&str> = r.things().map(|(n, _)| n).collect();
    things.sort_unstable();
    assert_eq!(things, ["a", "b"]);
    assert_eq!(r.thing_types().map(|(n, _)| n).collect::<Vec<_>>(), ["ty"]);
    assert_eq!(r.thing_groups().map(|(n, _)| n).collect::<Vec<_>>(), ["g"]);
}

#[test]
fn thing_type_keeps_creation_and_deprecation_dates() {
    let mut r = Registry::in_memory();
    r.create_thing_type_at("ty", Some("d"), &["room"], at(100))
        .unwrap();
    let ty = r.thing_type("ty").unwrap();
    assert_eq!((ty.created, ty.deprecated_at), (100, None));
    assert_eq!(&*ty.searchable_attributes[0], "room");
    r.deprecate_thing_type_at("ty", false, at(200)).unwrap();
    r.deprecate_thing_type_at("ty", false, at(300)).unwrap();
    assert_eq!(r.thing_type("ty").unwrap().deprecated_at, Some(200));
    r.deprecate_thing_type_at("ty", true, at(400)).unwrap();
    let ty = r.thing_type("ty").unwrap();
    assert!(!ty.deprecated);
    assert_eq!(ty.deprecated_at, None);
}

#[test]
fn refuses_more_searchable_attributes_than_aws_allows() {
    let mut r = Registry::in_memory();
    let names = ["a", "b", "c", "d"];
    assert!(matches!(
        r.create_thing_type_at("ty", None, &names[..=MAX_SEARCHABLE_ATTRIBUTES], at(0)),
        Err(Error::LimitExceeded { .. })
    ));
    assert!(r.thing_type("ty").is_none());
}

#[test]
fn creating_a_group_again_is_a_no_op_only_with_the_same_properties() {
    let mut r = Registry::in_memory();
    r.create_thing_group_at("g", None, Some("d"), &[("k", "v")], at(1))
        .unwrap();
    r.create_thing_group_at("g", None, Some("d"), &[("k", "v")], at(2))
        .unwrap();
    assert_eq!(r.thing_group("g").unwrap().created, 1);
    assert!(matches!(
        r.create_thing_group_at("g", None, None, &[("k", "v")], at(3)),
        Err(Error::AlreadyExists { .. })
    ));
}

#[test]
fn updating_a_group_bumps_its_version_and_persists() {
    let store = MemoryStore::new();
    let mut r = Registry::open(store.clone(), RegistryLimits::default()).unwrap();
    r.create_thing_group_at("g", None, None, &[("a", "1")], at(1))
        .unwrap();
    let v = r
        .update_thing_group("g", Some(Some("new")), &[("a", None), ("b", Some("2"))])
        .unwrap();
    assert_eq!(v, 2);
    let reopened = Registry::open(store, RegistryLimits::default()).unwrap();
    let g = reopened.thing_group("g").unwrap();
    assert_eq!(g.version, 2);
    assert_eq!(g.description.as_deref(), Some("new"));
    assert_eq!(g.attributes.len(), 1);
    assert_eq!(g.created, 1);
}

#[test]
fn records_from_before_the_metadata_was_kept_still_load() {
    let mut store = MemoryStore::new();
    store
        .commit(&[
            StoreOp::Put {
                key: "type/old".into(),
                value: br#"{"description":"x","deprecated":true}"#.to_vec(),
            },
            StoreOp::Put {
                key: "group/g".into(),
                value: br#"{}"#.to_vec(),
            },
        ])
        .unwrap();
    let r = Registry::open(store, RegistryLimits::default()).unwrap();
    let ty = r.thing_type("old").unwrap();
    assert!(ty.deprecated);
    assert_eq!((ty.created, ty.deprecated_at), (0, None));
    assert!(ty.searchable_attributes.is_empty());
    let g = r.thing_group("g").unwrap();
    assert_eq!((g.version, g.created), (1, 0));
    assert!(g.attributes.is_empty() && g.description.is_none());
}
