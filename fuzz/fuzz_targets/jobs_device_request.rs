//! Device jobs requests (thingkit-jobs' `device::handle`): the first byte picks the request
//! topic, the second the starting state of the thing's two executions, the rest is the payload.
//! Nothing panics; every request is answered first on its accepted/rejected topic; every publish
//! is JSON the strict reader accepts; a write never leaves a terminal state and bumps the
//! version by exactly one. The payload is also read as a firmware job document
//! (`ota::FirmwareJob::parse`): it never panics, and what it accepts round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingkit_jobs::device::{Limits, ThingJob, handle, parse_request_topic};
use thingkit_jobs::execution::ExecutionStatus;
use thingkit_jobs::{JobExecution, JobId};

const TOPICS: [&str; 7] = [
    "$aws/things/t/jobs/get",
    "$aws/things/t/jobs/start-next",
    "$aws/things/t/jobs/$next/get",
    "$aws/things/t/jobs/j1/get",
    "$aws/things/t/jobs/j1/update",
    "$aws/things/t/jobs/j2/update",
    "$aws/things/t/jobs/bad!/update",
];

fuzz_target!(|data: &[u8]| {
    let (Some(&t), Some(&s)) = (data.first(), data.get(1)) else {
        return;
    };
    let payload = &data[2..];
    if let Ok(text) = std::str::from_utf8(payload)
        && let Ok(job) = thingkit_jobs::ota::FirmwareJob::parse(text)
    {
        let again = thingkit_jobs::ota::FirmwareJob::parse(&job.to_document());
        assert_eq!(
            again.as_ref(),
            Ok(&job),
            "a firmware job document round-trips"
        );
    }
    let topic = TOPICS[usize::from(t) % TOPICS.len()];
    let (thing, request) = parse_request_topic(topic).expect("a request topic");
    let mut current = Vec::new();
    for (i, job) in ["j1", "j2"].iter().enumerate() {
        let mut e = JobExecution::queued(JobId::new(job).expect("valid"), "t", 1, Some(5), 10);
        let status = ExecutionStatus::ALL[usize::from(s >> (i * 3)) % 8];
        e.status = status;
        if status != ExecutionStatus::Queued {
            e.version_number = 2;
            e.started_at = Some(11);
        }
        current.push(ThingJob {
            execution: e,
            document: r#"{"op":"fuzz"}"#.to_owned(),
        });
    }
    let out = handle(thing, &current, &request, payload, 20, &Limits::default());
    let first = out.publishes.first().expect("every request is answered");
    assert!(first.topic.ends_with("/accepted") || first.topic.ends_with("/rejected"));
    for m in &out.publishes {
        let text = std::str::from_utf8(&m.payload).expect("publishes are UTF-8");
        let parsed = thingkit_json::parse(text, thingkit_json::Limits::default())
            .expect("publishes are JSON");
        assert!(parsed.duplicates.is_empty(), "no duplicate keys in {text}");
    }
    for w in &out.writes {
        let old = current
            .iter()
            .find(|c| c.execution.job_id == w.job_id)
            .expect("writes are of existing executions");
        assert!(!old.execution.status.is_terminal(), "terminal state left");
        assert_eq!(w.version_number, old.execution.version_number + 1);
    }
});
