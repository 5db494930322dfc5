//! Arbitrary payloads on every request topic: `handle` never panics, answers first on the
//! request's accepted/rejected topic, and publishes only strict JSON.

use proptest::prelude::*;
use thingkit_jobs::device::{Limits, ThingJob, handle, parse_request_topic};
use thingkit_jobs::{JobExecution, JobId};

const TOPICS: [&str; 5] = [
    "$aws/things/t/jobs/get",
    "$aws/things/t/jobs/start-next",
    "$aws/things/t/jobs/$next/get",
    "$aws/things/t/jobs/j1/get",
    "$aws/things/t/jobs/j1/update",
];

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        (
            prop::sample::select(vec!["IN_PROGRESS", "SUCCEEDED", "REJECTED", "QUEUED", "x"]),
            prop::option::of(0..4u64),
            prop::option::of(-2..20i64),
            any::<bool>(),
            "[a-z\"\\\\ ]{0,8}",
        )
            .prop_map(|(status, version, step, include, detail)| {
                let mut s = format!(r#"{{"status":"{status}""#);
                if let Some(v) = version {
                    s.push_str(&format!(r#","expectedVersion":{v}"#));
                }
                if let Some(m) = step {
                    s.push_str(&format!(r#","stepTimeoutInMinutes":{m}"#));
                }
                s.push_str(&format!(
                    r#","includeJobExecutionState":{include},"statusDetails":{{"k":"{detail}"}}}}"#
                ));
                s.into_bytes()
            }),
    ]
}

proptest! {
    #[test]
    fn any_payload_gets_one_json_answer(topic in 0..TOPICS.len(), payload in payload()) {
        let (thing, request) = parse_request_topic(TOPICS[topic]).expect("request topic");
        let current = vec![ThingJob {
            execution: JobExecution::queued(JobId::new("j1").expect("valid"), "t", 1, Some(5), 1),
            document: r#"{"a":"b"}"#.to_owned(),
        }];
        let out = handle(thing, &current, &request, &payload, 2, &Limits::default());
        let first = out.publishes.first().expect("answered");
        prop_assert!(first.topic.starts_with(TOPICS[topic]));
        for m in &out.publishes {
            let text = std::str::from_utf8(&m.payload).expect("UTF-8");
            let parsed = thingkit_json::parse(text, thingkit_json::Limits::default());
            prop_assert!(parsed.is_ok(), "{}", text);
        }
        prop_assert!(out.writes.len() <= 1);
    }
}
