//! Topic filter and topic name validation and matching on arbitrary bytes: never panics; the
//! subscription index agrees with `TopicFilter::matches`; a valid name is never a wildcard filter.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use thingkit_mqtt::{SubscriptionIndex, TopicFilter, TopicName};

fuzz_target!(|data: &[u8]| {
    // Input: filter bytes, 0xFF, topic bytes.
    let (f, t) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[..0]),
    };
    let filter = TopicFilter::from_bytes(Bytes::copy_from_slice(f));
    let topic = TopicName::from_bytes(Bytes::copy_from_slice(t));
    // Every valid topic name is also a valid filter that matches exactly itself, except names
    // under `$share/`, which a filter reads as a shared subscription (found by this target).
    if let Some(name) = TopicName::from_bytes(Bytes::copy_from_slice(f))
        .ok()
        .filter(|n| !n.as_str().starts_with("$share/"))
    {
        let as_filter = TopicFilter::from_bytes(Bytes::copy_from_slice(f))
            .expect("a topic name is a valid filter");
        assert!(as_filter.matches(&name));
    }
    if let Ok(filter) = &filter {
        let _ = (filter.share_group(), filter.inner(), filter.has_wildcards());
        if let Ok(topic) = &topic {
            let mut index = SubscriptionIndex::new();
            index.insert(filter, 1u8, ());
            assert_eq!(index.has_match(topic), filter.matches(topic));
            assert_eq!(index.remove(filter, &1), Some(()));
            assert_eq!(index.node_count(), 1);
        }
    }
});
