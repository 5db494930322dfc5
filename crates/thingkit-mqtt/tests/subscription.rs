//! The subscription index agrees with a linear scan over `TopicFilter::matches` (the reference
//! model) under random inserts, removes and topics, including `$` topics and shared groups.

use std::collections::BTreeSet;

use proptest::prelude::*;
use thingkit_mqtt::{Match, SubscriptionIndex, TopicFilter, TopicName};

/// Short levels, and levels around the index's 10-byte inline limit (stored in the node up to
/// 10 bytes, in a side table beyond), sharing prefixes so that only the tail tells them apart.
fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("a".to_string()),
        4 => Just("b".to_string()),
        2 => Just(String::new()),
        2 => Just("$s".to_string()),
        1 => Just("dev-000001".to_string()),
        1 => Just("dev-000002".to_string()),
        1 => Just("dev-0000001".to_string()),
        1 => Just("dev-000000000000000000001".to_string()),
        1 => Just("dev-000000000000000000002".to_string()),
    ]
}

fn filter() -> impl Strategy<Value = TopicFilter> {
    (
        prop::collection::vec(prop_oneof![3 => level(), 1 => Just("+".to_string())], 1..4),
        any::<bool>(),
        prop::option::of(prop_oneof![Just("g"), Just("h")]),
    )
        .prop_map(|(levels, hash, share)| {
            let mut f = levels.join("/");
            if hash {
                f.push_str("/#");
            }
            if f.is_empty() {
                f = "#".into();
            }
            if let Some(g) = share {
                f = format!("$share/{g}/{f}");
            }
            TopicFilter::new(&f).unwrap()
        })
}

fn topic() -> impl Strategy<Value = TopicName> {
    prop::collection::vec(level(), 1..5).prop_map(|l| {
        let t = l.join("/");
        TopicName::new(if t.is_empty() { "/" } else { &t }).unwrap()
    })
}

#[derive(Debug, Clone)]
enum Op {
    Insert(TopicFilter, u8),
    Remove(TopicFilter, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (filter(), 0u8..4).prop_map(|(f, s)| Op::Insert(f, s)),
        1 => (filter(), 0u8..4).prop_map(|(f, s)| Op::Remove(f, s)),
    ]
}

/// (filter string, subscriber) pairs the index reports for `topic`.
fn from_index(ix: &SubscriptionIndex<u8, String>, topic: &TopicName) -> BTreeSet<(String, u8)> {
    let mut out = BTreeSet::new();
    ix.for_each_match(topic, |m| match m {
        Match::Direct { subscriber, value } => {
            assert!(out.insert((value.clone(), *subscriber)), "duplicate match");
        }
        Match::Shared { members, .. } => {
            assert!(!members.is_empty());
            for (s, v) in members {
                assert!(out.insert((v.clone(), *s)), "duplicate match");
            }
        }
    });
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn index_agrees_with_linear_scan(ops in prop::collection::vec(op(), 0..40), topics in prop::collection::vec(topic(), 1..10)) {
        let mut ix = SubscriptionIndex::new();
        let mut model: BTreeSet<(String, u8)> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Insert(f, s) => {
                    let had = !model.insert((f.as_str().to_string(), s));
                    prop_assert_eq!(ix.insert(&f, s, f.as_str().to_string()).is_some(), had);
                }
                Op::Remove(f, s) => {
                    let had = model.remove(&(f.as_str().to_string(), s));
                    prop_assert_eq!(ix.remove(&f, &s).is_some(), had);
                }
            }
            prop_assert_eq!(ix.len(), model.len());
        }
        for t in &topics {
            let expected: BTreeSet<(String, u8)> = model
                .iter()
                .filter(|(f, _)| TopicFilter::new(f).unwrap().matches(t))
                .cloned()
                .collect();
            prop_assert_eq!(from_index(&ix, t), expected, "topic {}", t);
        }
        // Removing everything leaves a single root node.
        for (f, s) in model {
            prop_assert!(ix.remove(&TopicFilter::new(&f).unwrap(), &s).is_some());
        }
        prop_assert!(ix.is_empty());
        prop_assert_eq!(ix.node_count(), 1);
    }
}
