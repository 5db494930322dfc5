//! MQTT topics as NATS subjects (thingkit-cluster's `subject` module) on arbitrary bytes: never
//! panics; a topic's subject decodes back to the topic; a subject that decodes is the canonical
//! subject of its topic (one subject per topic); a filter's patterns match a topic exactly when
//! the MQTT matcher does.
#![no_main]

use std::sync::LazyLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use thingkit_cluster::subject::SubjectSpace;
use thingkit_mqtt::{TopicFilter, TopicName};

static SPACE: LazyLock<SubjectSpace> =
    LazyLock::new(|| SubjectSpace::new("fuzz").expect("a valid cluster name"));

fuzz_target!(|data: &[u8]| {
    // Input: a topic (or filter, or subject tail) bytes, 0xFF, more topic bytes.
    let (a, b) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[..0]),
    };
    let space = &*SPACE;
    if let Ok(text) = std::str::from_utf8(a) {
        let subject = format!("{}.{text}", space.prefix());
        if let Ok(topic) = space.topic(&subject) {
            assert_eq!(space.subject(&topic), subject);
        }
    }
    let topic = TopicName::from_bytes(Bytes::copy_from_slice(b));
    if let Ok(topic) = &topic {
        let subject = space.subject(topic);
        assert_eq!(space.topic(&subject).ok().as_ref(), Some(topic));
    }
    if let Ok(topic) = TopicName::from_bytes(Bytes::copy_from_slice(a)) {
        let subject = space.subject(&topic);
        assert_eq!(space.topic(&subject).ok().as_ref(), Some(&topic));
    }
    if let (Ok(filter), Ok(topic)) = (TopicFilter::from_bytes(Bytes::copy_from_slice(a)), &topic) {
        let patterns = space.patterns(&filter);
        assert_eq!(
            patterns.matches(&space.subject(topic)),
            filter.matches(topic)
        );
    }
});
