//! Inputs the `cluster_subject` fuzz target found, each checked as the target checks it.

use bytes::Bytes;
use thingkit_cluster::subject::SubjectSpace;
use thingkit_mqtt::{TopicFilter, TopicName};

/// The fuzz target's checks on one input (`a` 0xFF `b`).
fn check(data: &[u8]) {
    let space = SubjectSpace::new("fuzz").expect("a valid cluster name");
    let (a, b) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[..0]),
    };
    if let Ok(text) = std::str::from_utf8(a) {
        let subject = format!("{}.{text}", space.prefix());
        if let Ok(topic) = space.topic(&subject) {
            assert_eq!(space.subject(&topic), subject, "subject {subject:?}");
        }
    }
    let topic = TopicName::from_bytes(Bytes::copy_from_slice(b));
    if let Ok(topic) = &topic {
        let subject = space.subject(topic);
        assert_eq!(space.topic(&subject).ok().as_ref(), Some(topic));
    }
    if let Ok(topic) = TopicName::from_bytes(Bytes::copy_from_slice(a)) {
        let subject = space.subject(&topic);
        assert_eq!(
            space.topic(&subject).ok().as_ref(),
            Some(&topic),
            "topic {topic:?} subject {subject:?}"
        );
    }
    if let (Ok(filter), Ok(topic)) = (TopicFilter::from_bytes(Bytes::copy_from_slice(a)), &topic) {
        let patterns = space.patterns(&filter);
        assert_eq!(
            patterns.matches(&space.subject(topic)),
            filter.matches(topic),
            "filter {filter:?} topic {topic:?}"
        );
    }
}

#[test]
fn a_topic_of_two_empty_levels() {
    check(b"/");
}
