//! The test suite every [`RegistryStore`] must pass (cargo feature `test-suite`).
//!
//! [`run`] takes a function that makes a fresh, empty store for each check; [`reopen`] takes
//! one that opens the *same* storage again each time it is called (the first call on empty
//! storage), and checks that what was committed is there after the previous store was dropped.
//!
//! ```ignore
//! #[test]
//! fn my_store_conforms() {
//!     thingkit_provision::conformance::run(|| Box::new(MyStore::new_empty()));
//!     thingkit_provision::conformance::reopen(|| Box::new(MyStore::open_the_same()));
//! }
//! ```

use crate::error::Error;
use crate::store::{RegistryStore, StoreOp};

/// Runs every check against fresh stores from `make` (each must start empty); panics on the
/// first store that does not behave as [`RegistryStore`] documents.
pub fn run(mut make: impl FnMut() -> Box<dyn RegistryStore>) {
    starts_empty(make());
    gets_what_was_committed(make());
    for_each_visits_records_in_byte_order_of_keys(make());
    applies_a_batch_in_order(make());
    deleting_an_absent_key_is_ok(make());
    an_empty_batch_changes_nothing(make());
    keeps_large_and_empty_values_exactly(make());
    a_batch_is_applied_whole_or_not_at_all(make());
    for_each_stops_at_the_callers_error(make());
}

/// Checks that stores from `open` (which opens the same storage on every call, empty on the
/// first) see every batch committed through a store opened before them and since dropped.
pub fn reopen(mut open: impl FnMut() -> Box<dyn RegistryStore>) {
    {
        let mut store = open();
        assert_eq!(all(&*store), vec![], "the first open starts empty");
        store
            .commit(&[
                put("thing/a", b"1"),
                put("thing/b", b"2"),
                put("cert/c", b"3"),
            ])
            .expect("commit");
        store
            .commit(&[StoreOp::Delete {
                key: "thing/b".into(),
            }])
            .expect("commit");
    }
    {
        let mut store = open();
        assert_eq!(
            all(&*store),
            vec![
                ("cert/c".into(), b"3".to_vec()),
                ("thing/a".into(), b"1".to_vec())
            ],
            "a reopened store holds what was committed before"
        );
        store.commit(&[put("thing/a", b"one")]).expect("commit");
    }
    let store = open();
    assert_eq!(store.get("thing/a").expect("get"), Some(b"one".to_vec()));
    assert_eq!(store.get("thing/b").expect("get"), None);
}

fn put(key: &str, value: &[u8]) -> StoreOp {
    StoreOp::Put {
        key: key.into(),
        value: value.to_vec(),
    }
}

fn all(store: &dyn RegistryStore) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    store
        .for_each(&mut |k, v| {
            out.push((k.to_owned(), v.to_vec()));
            Ok(())
        })
        .expect("for_each");
    out
}

fn starts_empty(store: Box<dyn RegistryStore>) {
    assert_eq!(all(&*store), vec![]);
    assert_eq!(store.get("thing/a").expect("get"), None);
}

fn gets_what_was_committed(mut store: Box<dyn RegistryStore>) {
    store.commit(&[put("thing/a", b"1")]).expect("commit");
    assert_eq!(store.get("thing/a").expect("get"), Some(b"1".to_vec()));
    store.commit(&[put("thing/a", b"2")]).expect("commit");
    assert_eq!(
        store.get("thing/a").expect("get"),
        Some(b"2".to_vec()),
        "a put replaces"
    );
    assert_eq!(store.get("thing/").expect("get"), None, "no prefix match");
    assert_eq!(store.get("thing/ab").expect("get"), None);
    store
        .commit(&[StoreOp::Delete {
            key: "thing/a".into(),
        }])
        .expect("commit");
    assert_eq!(store.get("thing/a").expect("get"), None);
}

fn for_each_visits_records_in_byte_order_of_keys(mut store: Box<dyn RegistryStore>) {
    // Upper before lower case, `/` (0x2F) before digits, multi-byte UTF-8 after ASCII: the
    // order of the keys' bytes, which is what redb and a BTreeMap<String, _> give.
    let keys = [
        "thing/é",
        "thing/a",
        "Thing/a",
        "thing/a/b",
        "thing/ab",
        "thing/B",
        "thing/a0",
        "a",
        "thing/",
        "thing/~",
        "z",
        "thing/a-",
        "thing/日本",
    ];
    let batch: Vec<StoreOp> = keys.iter().map(|k| put(k, k.as_bytes())).collect();
    store.commit(&batch).expect("commit");
    let mut sorted: Vec<&str> = keys.to_vec();
    sorted.sort_unstable();
    let listed: Vec<String> = all(&*store).into_iter().map(|(k, _)| k).collect();
    assert_eq!(listed, sorted, "for_each goes in key byte order");
    for (k, v) in all(&*store) {
        assert_eq!(k.as_bytes(), v.as_slice(), "each value stays with its key");
    }
}

fn applies_a_batch_in_order(mut store: Box<dyn RegistryStore>) {
    store
        .commit(&[
            put("k", b"1"),
            StoreOp::Delete { key: "k".into() },
            put("k", b"2"),
            put("j", b"1"),
            put("j", b"3"),
            put("gone", b"x"),
            StoreOp::Delete { key: "gone".into() },
        ])
        .expect("commit");
    assert_eq!(
        all(&*store),
        vec![("j".into(), b"3".to_vec()), ("k".into(), b"2".to_vec())]
    );
}

fn deleting_an_absent_key_is_ok(mut store: Box<dyn RegistryStore>) {
    store.commit(&[put("present", b"p")]).expect("commit");
    store
        .commit(&[StoreOp::Delete {
            key: "absent".into(),
        }])
        .expect("deleting an absent key is not an error");
    assert_eq!(all(&*store), vec![("present".into(), b"p".to_vec())]);
}

fn an_empty_batch_changes_nothing(mut store: Box<dyn RegistryStore>) {
    store.commit(&[]).expect("an empty batch on an empty store");
    assert_eq!(all(&*store), vec![]);
    store.commit(&[put("a", b"1")]).expect("commit");
    store.commit(&[]).expect("an empty batch");
    assert_eq!(all(&*store), vec![("a".into(), b"1".to_vec())]);
}

fn keeps_large_and_empty_values_exactly(mut store: Box<dyn RegistryStore>) {
    // 4 MiB holding every byte value (0x00 included), and an empty value.
    let large: Vec<u8> = (0..4 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    store
        .commit(&[put("large", &large), put("empty", b"")])
        .expect("commit");
    assert_eq!(
        store.get("large").expect("get").as_deref(),
        Some(&large[..])
    );
    assert_eq!(store.get("empty").expect("get"), Some(Vec::new()));
    let mut seen = Vec::new();
    store
        .for_each(&mut |k, v| {
            seen.push((k.to_owned(), v.len()));
            Ok(())
        })
        .expect("for_each");
    assert_eq!(
        seen,
        vec![("empty".into(), 0), ("large".into(), large.len())]
    );
}

fn a_batch_is_applied_whole_or_not_at_all(mut store: Box<dyn RegistryStore>) {
    store
        .commit(&[put("before", b"old"), put("kept", b"k")])
        .expect("commit");
    // A key with a NUL character: some backends (PostgreSQL's `text`) refuse it, and then the
    // whole batch must be refused; a backend that takes it must take the whole batch.
    let batch = [
        put("before", b"new"),
        StoreOp::Delete { key: "kept".into() },
        put("nul\u{0}key", b"x"),
        put("after", b"a"),
    ];
    match store.commit(&batch) {
        Ok(()) => assert_eq!(
            all(&*store),
            vec![
                ("after".into(), b"a".to_vec()),
                ("before".into(), b"new".to_vec()),
                ("nul\u{0}key".into(), b"x".to_vec()),
            ],
            "an acknowledged batch is applied whole"
        ),
        Err(_) => assert_eq!(
            all(&*store),
            vec![
                ("before".into(), b"old".to_vec()),
                ("kept".into(), b"k".to_vec()),
            ],
            "a refused batch changes nothing"
        ),
    }
    // The store still works after a refused batch.
    store.commit(&[put("later", b"l")]).expect("commit after");
    assert_eq!(store.get("later").expect("get"), Some(b"l".to_vec()));
}

fn for_each_stops_at_the_callers_error(mut store: Box<dyn RegistryStore>) {
    store
        .commit(&[put("a", b"1"), put("b", b"2"), put("c", b"3")])
        .expect("commit");
    let mut visited = 0;
    let result = store.for_each(&mut |_, _| {
        visited += 1;
        if visited == 2 {
            Err(Error::store("stop here"))
        } else {
            Ok(())
        }
    });
    assert!(result.is_err(), "the callback's error is returned");
    assert_eq!(
        visited, 2,
        "no record is visited after the callback's error"
    );
}
