//! The device MQTT API (digest B.3) through the `Jobs` driver: AWS's documents, error codes and
//! notifications.

use thingkit_jobs::device::{JobRef, Request, parse_request_topic};
use thingkit_jobs::{CancelJob, Job, JobId, JobStatus, Jobs, Limits, MemoryJobStore, OutMessage};

fn id(s: &str) -> JobId {
    JobId::new(s).expect("valid job id")
}

fn jobs_with(ids: &[(&str, u64)]) -> Jobs<MemoryJobStore> {
    let mut jobs = Jobs::new(MemoryJobStore::new(), Limits::default());
    for (j, at) in ids {
        let job = Job::new(id(j), format!(r#"{{"job":"{j}"}}"#), vec!["t".into()], 0);
        jobs.create_job(job, &["t".to_owned()], *at)
            .expect("created");
    }
    jobs
}

fn req(jobs: &mut Jobs<MemoryJobStore>, topic: &str, payload: &str, now: u64) -> Vec<OutMessage> {
    jobs.request(topic, payload.as_bytes(), now)
        .expect("a jobs request topic")
}

fn text(m: &OutMessage) -> &str {
    std::str::from_utf8(&m.payload).expect("UTF-8")
}

fn topics(out: &[OutMessage]) -> Vec<&str> {
    out.iter().map(|m| m.topic.as_str()).collect()
}

#[test]
fn request_topics_are_parsed_and_others_ignored() {
    assert_eq!(
        parse_request_topic("$aws/things/t/jobs/get"),
        Some(("t", Request::GetPending))
    );
    assert_eq!(
        parse_request_topic("$aws/things/t/jobs/$next/get"),
        Some(("t", Request::Describe(JobRef::Next)))
    );
    assert_eq!(
        parse_request_topic("$aws/things/t/jobs/j1/update"),
        Some(("t", Request::Update(id("j1"))))
    );
    assert!(parse_request_topic("$aws/things/t/jobs/notify").is_none());
    assert!(parse_request_topic("$aws/things/t/jobs/get/accepted").is_none());
    assert!(parse_request_topic("$aws/things/t/shadow/get").is_none());
    assert!(matches!(
        parse_request_topic("$aws/things/t/jobs/$next/update"),
        Some((_, Request::Invalid { .. }))
    ));
    assert_eq!(thingkit_jobs::request_filters().len(), 4);
}

#[test]
fn get_pending_lists_in_progress_and_queued_summaries() {
    let mut jobs = jobs_with(&[("job1", 10), ("job2", 11)]);
    req(
        &mut jobs,
        "$aws/things/t/jobs/job2/update",
        r#"{"status":"IN_PROGRESS"}"#,
        12,
    );
    let out = req(
        &mut jobs,
        "$aws/things/t/jobs/get",
        r#"{"clientToken":"abc"}"#,
        13,
    );
    assert_eq!(topics(&out), ["$aws/things/t/jobs/get/accepted"]);
    assert_eq!(
        text(&out[0]),
        r#"{"inProgressJobs":[{"jobId":"job2","queuedAt":11,"startedAt":12,"lastUpdatedAt":12,"versionNumber":2,"executionNumber":1}],"queuedJobs":[{"jobId":"job1","queuedAt":10,"lastUpdatedAt":10,"versionNumber":1,"executionNumber":1}],"timestamp":13,"clientToken":"abc"}"#
    );
}

#[test]
fn start_next_with_nothing_pending_has_no_execution() {
    let mut jobs = jobs_with(&[]);
    let out = req(&mut jobs, "$aws/things/t/jobs/start-next", "{}", 5);
    assert_eq!(text(&out[0]), r#"{"timestamp":5}"#);
}

#[test]
fn start_next_starts_the_oldest_queued_with_status_details_and_timer() {
    let mut jobs = Jobs::new(MemoryJobStore::new(), Limits::default());
    let mut job = Job::new(id("j"), r#"{"a":1}"#, vec!["t".into()], 0);
    job.timeout = Some(thingkit_jobs::job::TimeoutConfig {
        in_progress_timeout_in_minutes: 10,
    });
    jobs.create_job(job, &["t".to_owned()], 100)
        .expect("created");
    let out = req(
        &mut jobs,
        "$aws/things/t/jobs/start-next",
        r#"{"statusDetails":{"step":"download"},"stepTimeoutInMinutes":5}"#,
        200,
    );
    assert_eq!(
        text(&out[0]),
        r#"{"execution":{"jobId":"j","thingName":"t","jobDocument":{"a":1},"status":"IN_PROGRESS","statusDetails":{"step":"download"},"queuedAt":100,"startedAt":200,"lastUpdatedAt":200,"approximateSecondsBeforeTimedOut":300,"versionNumber":2,"executionNumber":1},"timestamp":200}"#
    );
    // Again: the IN_PROGRESS execution is returned as it is (F-J9: no change, no version bump).
    let out = req(&mut jobs, "$aws/things/t/jobs/start-next", "{}", 260);
    assert!(
        text(&out[0]).contains(r#""versionNumber":2"#),
        "{}",
        text(&out[0])
    );
    assert!(text(&out[0]).contains(r#""approximateSecondsBeforeTimedOut":240"#));
}

#[test]
fn describe_returns_the_execution_with_or_without_document() {
    let mut jobs = jobs_with(&[("job1", 10)]);
    let out = req(
        &mut jobs,
        "$aws/things/t/jobs/$next/get",
        r#"{"clientToken":"x"}"#,
        11,
    );
    assert_eq!(
        text(&out[0]),
        r#"{"execution":{"jobId":"job1","thingName":"t","jobDocument":{"job":"job1"},"status":"QUEUED","queuedAt":10,"lastUpdatedAt":10,"versionNumber":1,"executionNumber":1},"timestamp":11,"clientToken":"x"}"#
    );
    let out = req(
        &mut jobs,
        "$aws/things/t/jobs/job1/get",
        r#"{"includeJobDocument":false}"#,
        11,
    );
    assert!(!text(&out[0]).contains("jobDocument"));
    let out = req(
        &mut jobs,
        "$aws/things/t/jobs/job1/get",
        r#"{"executionNumber":2}"#,
        11,
    );
    assert_eq!(out[0].topic, "$aws/things/t/jobs/job1/get/rejected");
    assert!(text(&out[0]).starts_with(r#"{"code":"ResourceNotFound""#));
}

#[test]
fn describe_of_next_with_nothing_pending_is_not_found() {
    let mut jobs = jobs_with(&[]);
    let out = req(&mut jobs, "$aws/things/t/jobs/$next/get", "", 1);
    assert_eq!(out[0].topic, "$aws/things/t/jobs/$next/get/rejected");
    assert!(text(&out[0]).contains(r#""code":"ResourceNotFound""#));
}

#[test]
fn update_answers_with_execution_state_and_document_when_asked() {
    let mut jobs = jobs_with(&[("job1", 10)]);
    let out = req(
        &mut jobs,
        "$aws/things/t/jobs/job1/update",
        r#"{"status":"IN_PROGRESS","expectedVersion":1,"includeJobExecutionState":true,"includeJobDocument":true,"clientToken":"c"}"#,
        20,
    );
    assert_eq!(out[0].topic, "$aws/things/t/jobs/job1/update/accepted");
    assert_eq!(
        text(&out[0]),
        r#"{"executionState":{"status":"IN_PROGRESS","versionNumber":2},"jobDocument":{"job":"job1"},"timestamp":20,"clientToken":"c"}"#
    );
}

#[test]
fn expected_version_as_string_is_accepted_and_checked() {
    let mut jobs = jobs_with(&[("job1", 10)]);
    let out = req(
        &mut jobs,
        "$aws/things/t/jobs/job1/update",
        r#"{"status":"IN_PROGRESS","expectedVersion":"7","clientToken":"c"}"#,
        20,
    );
    assert_eq!(out[0].topic, "$aws/things/t/jobs/job1/update/rejected");
    assert_eq!(
        text(&out[0]),
        r#"{"code":"VersionMismatch","message":"Expected version 7 does not match current version 1","clientToken":"c","timestamp":20,"executionState":{"status":"QUEUED","versionNumber":1}}"#
    );
    let out = req(
        &mut jobs,
        "$aws/things/t/jobs/job1/update",
        r#"{"status":"IN_PROGRESS","expectedVersion":"1"}"#,
        21,
    );
    assert_eq!(out[0].topic, "$aws/things/t/jobs/job1/update/accepted");
}

#[test]
fn terminal_execution_cannot_be_updated() {
    let mut jobs = jobs_with(&[("job1", 10), ("job2", 10)]);
    req(
        &mut jobs,
        "$aws/things/t/jobs/job1/update",
        r#"{"status":"SUCCEEDED"}"#,
        11,
    );
    let out = req(
        &mut jobs,
        "$aws/things/t/jobs/job1/update",
        r#"{"status":"IN_PROGRESS"}"#,
        12,
    );
    assert_eq!(
        text(&out[0]),
        r#"{"code":"InvalidStateTransition","message":"Job execution status cannot be changed from state SUCCEEDED to state IN_PROGRESS","timestamp":12,"executionState":{"status":"SUCCEEDED","versionNumber":2}}"#
    );
    // A terminal execution is still described normally (F-J8).
    let out = req(&mut jobs, "$aws/things/t/jobs/job1/get", "{}", 13);
    assert_eq!(out[0].topic, "$aws/things/t/jobs/job1/get/accepted");
}

#[test]
fn rejected_is_refused_after_start_and_service_statuses_are_invalid_requests() {
    let mut jobs = jobs_with(&[("job1", 10)]);
    let out = req(
        &mut jobs,
        "$aws/things/t/jobs/job1/update",
        r#"{"status":"CANCELED"}"#,
        11,
    );
    assert!(
        text(&out[0]).starts_with(r#"{"code":"InvalidRequest""#),
        "{}",
        text(&out[0])
    );
    req(
        &mut jobs,
        "$aws/things/t/jobs/job1/update",
        r#"{"status":"IN_PROGRESS"}"#,
        11,
    );
    let out = req(
        &mut jobs,
        "$aws/things/t/jobs/job1/update",
        r#"{"status":"REJECTED"}"#,
        12,
    );
    assert!(text(&out[0]).starts_with(r#"{"code":"InvalidStateTransition""#));
}

#[test]
fn malformed_requests_get_aws_error_codes() {
    let mut jobs = jobs_with(&[("job1", 10)]);
    let cases: &[(&str, &str, &str)] = &[
        (
            "$aws/things/t/jobs/job1/update",
            r#"{"status":"IN_PROGRESS","status":"FAILED"}"#,
            "InvalidJson",
        ),
        ("$aws/things/t/jobs/job1/update", "{", "InvalidJson"),
        ("$aws/things/t/jobs/job1/update", "[]", "InvalidJson"),
        ("$aws/things/t/jobs/job1/update", r#"{}"#, "InvalidRequest"),
        (
            "$aws/things/t/jobs/job1/update",
            r#"{"status":"DONE"}"#,
            "InvalidRequest",
        ),
        (
            "$aws/things/t/jobs/job1/update",
            r#"{"status":"FAILED","statusDetails":{"n":1}}"#,
            "InvalidRequest",
        ),
        (
            "$aws/things/t/jobs/job1/update",
            r#"{"status":"FAILED","expectedVersion":"x"}"#,
            "InvalidRequest",
        ),
        (
            "$aws/things/t/jobs/job1/update",
            r#"{"status":"IN_PROGRESS","stepTimeoutInMinutes":0}"#,
            "InvalidRequest",
        ),
        (
            "$aws/things/t/jobs/nope/update",
            r#"{"status":"FAILED"}"#,
            "ResourceNotFound",
        ),
        ("$aws/things/t/jobs/bad!id/get", "{}", "InvalidTopic"),
        (
            "$aws/things/t/jobs/bad!id/update",
            "not json",
            "InvalidTopic",
        ),
        ("$aws/things/bad!thing/jobs/get", "{}", "InvalidTopic"),
    ];
    for (topic, payload, code) in cases {
        let out = req(&mut jobs, topic, payload, 11);
        assert_eq!(out.len(), 1, "{topic} {payload}");
        assert_eq!(out[0].topic, format!("{topic}/rejected"));
        assert!(
            text(&out[0]).starts_with(&format!(r#"{{"code":"{code}""#)),
            "{payload}: {}",
            text(&out[0])
        );
    }
    // The clientToken is echoed in errors found after it was read.
    let out = req(
        &mut jobs,
        "$aws/things/t/jobs/job1/update",
        r#"{"status":"DONE","clientToken":"tok"}"#,
        11,
    );
    assert!(text(&out[0]).contains(r#""clientToken":"tok""#));
    // The size limit is checked before parsing.
    let mut small = Jobs::new(
        MemoryJobStore::new(),
        Limits::default().with_max_payload_bytes(8),
    );
    let out = small
        .request("$aws/things/t/jobs/get", br#"{"clientToken":"x"}"#, 1)
        .expect("ours");
    assert!(text(&out[0]).starts_with(r#"{"code":"InvalidJson""#));
}

/// The JCN23 walk-through: three jobs for one thing, then the device works through them.
/// `/notify` is published when an execution enters or leaves the pending list (F-J3),
/// `/notify-next` when the first pending execution changes.
#[test]
fn notification_trace_follows_the_guide_example() {
    let mut jobs = Jobs::new(MemoryJobStore::new(), Limits::default());
    let create = |jobs: &mut Jobs<MemoryJobStore>, j: &str, at: u64| {
        let job = Job::new(id(j), format!(r#"{{"n":"{j}"}}"#), vec!["t".into()], 0);
        jobs.create_job(job, &["t".to_owned()], at)
            .expect("created")
    };
    let out = create(&mut jobs, "job1", 1);
    assert_eq!(
        topics(&out),
        [
            "$aws/things/t/jobs/notify",
            "$aws/things/t/jobs/notify-next"
        ]
    );
    assert_eq!(
        text(&out[0]),
        r#"{"timestamp":1,"jobs":{"QUEUED":[{"jobId":"job1","queuedAt":1,"lastUpdatedAt":1,"versionNumber":1,"executionNumber":1}]}}"#
    );
    assert_eq!(
        text(&out[1]),
        r#"{"timestamp":1,"execution":{"jobId":"job1","thingName":"t","jobDocument":{"n":"job1"},"status":"QUEUED","queuedAt":1,"lastUpdatedAt":1,"versionNumber":1,"executionNumber":1}}"#
    );
    // job2 and job3 join the list, but job1 stays first: no notify-next.
    assert_eq!(
        topics(&create(&mut jobs, "job2", 2)),
        ["$aws/things/t/jobs/notify"]
    );
    assert_eq!(
        topics(&create(&mut jobs, "job3", 3)),
        ["$aws/things/t/jobs/notify"]
    );
    // job1 starts: same list, same first execution — nothing published but the answer.
    let out = req(
        &mut jobs,
        "$aws/things/t/jobs/job1/update",
        r#"{"status":"IN_PROGRESS"}"#,
        4,
    );
    assert_eq!(topics(&out), ["$aws/things/t/jobs/job1/update/accepted"]);
    // job1 succeeds: it leaves the list and job2 becomes first.
    let out = req(
        &mut jobs,
        "$aws/things/t/jobs/job1/update",
        r#"{"status":"SUCCEEDED"}"#,
        5,
    );
    assert_eq!(
        topics(&out),
        [
            "$aws/things/t/jobs/job1/update/accepted",
            "$aws/things/t/jobs/notify",
            "$aws/things/t/jobs/notify-next"
        ]
    );
    assert!(text(&out[2]).contains(r#""jobId":"job2""#));
    // job2 is rejected while QUEUED: job3 becomes next.
    let out = req(
        &mut jobs,
        "$aws/things/t/jobs/job2/update",
        r#"{"status":"REJECTED"}"#,
        6,
    );
    assert_eq!(topics(&out).len(), 3);
    assert!(text(&out[2]).contains(r#""jobId":"job3""#));
    // job3 is canceled by the service: the list is empty.
    let out = jobs
        .cancel_job(&id("job3"), &CancelJob::default(), 7)
        .expect("canceled");
    assert_eq!(text(&out[0]), r#"{"timestamp":7,"jobs":{}}"#);
    assert_eq!(text(&out[1]), r#"{"timestamp":7}"#);
    assert_eq!(
        jobs.describe_job(&id("job1")).expect("job1").status,
        JobStatus::Completed
    );
    assert_eq!(
        jobs.describe_job(&id("job2")).expect("job2").status,
        JobStatus::Completed
    );
    assert_eq!(
        jobs.describe_job(&id("job3")).expect("job3").status,
        JobStatus::Canceled
    );
}

#[test]
fn notify_lists_at_most_ten_in_progress_first() {
    let names: Vec<String> = (0..12).map(|i| format!("j{i:02}")).collect();
    let specs: Vec<(&str, u64)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u64))
        .collect();
    let mut jobs = jobs_with(&specs);
    let out = req(
        &mut jobs,
        "$aws/things/t/jobs/j05/update",
        r#"{"status":"IN_PROGRESS"}"#,
        50,
    );
    assert_eq!(
        out.len(),
        2,
        "the list and the first pending execution changed"
    );
    let out = req(
        &mut jobs,
        "$aws/things/t/jobs/j00/update",
        r#"{"status":"FAILED"}"#,
        51,
    );
    let notify = text(&out[1]);
    assert!(
        notify.starts_with(r#"{"timestamp":51,"jobs":{"IN_PROGRESS":[{"jobId":"j05""#),
        "{notify}"
    );
    assert_eq!(notify.matches("\"jobId\"").count(), 10);
    assert!(!notify.contains("j11"));
}

#[test]
fn create_job_refuses_invalid_thing_names_and_duplicate_ids() {
    let mut jobs = jobs_with(&[("job1", 1)]);
    let job = Job::new(id("job2"), "{}", vec!["x".into()], 0);
    let e = jobs.create_job(job, &["a/b".to_owned()], 2).unwrap_err();
    assert_eq!(e.code(), "InvalidRequest");
    let job = Job::new(id("job1"), "{}", vec!["x".into()], 0);
    let e = jobs.create_job(job, &["t".to_owned()], 2).unwrap_err();
    assert_eq!(e.code(), "ResourceAlreadyExists");
}

#[test]
fn cancel_respects_force_for_in_progress_executions() {
    let mut jobs = jobs_with(&[("job1", 1)]);
    req(
        &mut jobs,
        "$aws/things/t/jobs/job1/update",
        r#"{"status":"IN_PROGRESS"}"#,
        2,
    );
    let e = jobs
        .cancel_execution(&id("job1"), "t", false, None, None, 3)
        .unwrap_err();
    assert_eq!(e.code(), "InvalidStateTransition");
    let e = jobs
        .cancel_execution(&id("job1"), "t", true, Some(1), None, 3)
        .unwrap_err();
    assert_eq!(e.code(), "VersionConflict");
    jobs.cancel_execution(&id("job1"), "t", true, Some(2), None, 3)
        .expect("forced cancel");
    let e = jobs.describe_execution(&id("job1"), "t").expect("exists");
    assert_eq!(e.status, thingkit_jobs::ExecutionStatus::Canceled);
    // A deleted job takes its executions with it; an unfinished one needs force.
    let mut jobs = jobs_with(&[("job2", 1)]);
    assert_eq!(
        jobs.delete_job(&id("job2"), false, 5).unwrap_err().code(),
        "InvalidStateTransition"
    );
    let out = jobs.delete_job(&id("job2"), true, 5).expect("deleted");
    assert_eq!(
        topics(&out),
        [
            "$aws/things/t/jobs/notify",
            "$aws/things/t/jobs/notify-next"
        ]
    );
    assert!(jobs.list_jobs().expect("list").is_empty());
}

#[test]
fn cancel_job_cancels_only_queued_executions_without_force() {
    let mut jobs = Jobs::new(MemoryJobStore::new(), Limits::default());
    let job = Job::new(id("j"), "{}", vec!["g".into()], 0);
    jobs.create_job(job, &["a".to_owned(), "b".to_owned()], 1)
        .expect("created");
    req(
        &mut jobs,
        "$aws/things/a/jobs/j/update",
        r#"{"status":"IN_PROGRESS"}"#,
        2,
    );
    let cancel = CancelJob {
        force: false,
        reason_code: Some("TOO_MANY_FAILURES".into()),
        comment: Some("stop".into()),
    };
    jobs.cancel_job(&id("j"), &cancel, 3).expect("canceled");
    let status = |jobs: &Jobs<MemoryJobStore>, t: &str| {
        jobs.describe_execution(&id("j"), t).expect("exists").status
    };
    assert_eq!(
        status(&jobs, "a"),
        thingkit_jobs::ExecutionStatus::InProgress
    );
    assert_eq!(status(&jobs, "b"), thingkit_jobs::ExecutionStatus::Canceled);
    let job = jobs.describe_job(&id("j")).expect("job");
    assert_eq!(job.status, JobStatus::Canceled);
    assert_eq!(job.reason_code.as_deref(), Some("TOO_MANY_FAILURES"));
    let bad = CancelJob {
        reason_code: Some("lower".into()),
        ..CancelJob::default()
    };
    assert_eq!(
        jobs.cancel_job(&id("j"), &bad, 4).unwrap_err().code(),
        "InvalidRequest"
    );
}

#[test]
fn due_timer_times_out_an_in_progress_execution_and_completes_the_job() {
    let mut jobs = Jobs::new(MemoryJobStore::new(), Limits::default());
    let mut job = Job::new(id("j"), "{}", vec!["t".into()], 0);
    job.timeout = Some(thingkit_jobs::job::TimeoutConfig {
        in_progress_timeout_in_minutes: 1,
    });
    jobs.create_job(job, &["t".to_owned()], 0).expect("created");
    assert_eq!(
        jobs.time_out_execution(&id("j"), "t", 1000).expect("ok"),
        None
    );
    req(
        &mut jobs,
        "$aws/things/t/jobs/j/update",
        r#"{"status":"IN_PROGRESS"}"#,
        10,
    );
    assert_eq!(
        jobs.time_out_execution(&id("j"), "t", 69).expect("ok"),
        None
    );
    let out = jobs
        .time_out_execution(&id("j"), "t", 70)
        .expect("ok")
        .expect("due");
    assert_eq!(text(&out[0]), r#"{"timestamp":70,"jobs":{}}"#);
    let e = jobs.describe_execution(&id("j"), "t").expect("exists");
    assert_eq!(e.status, thingkit_jobs::ExecutionStatus::TimedOut);
    assert_eq!(
        jobs.describe_job(&id("j")).expect("job").status,
        JobStatus::Completed
    );
}

#[test]
fn removing_a_thing_removes_only_queued_executions() {
    let mut jobs = jobs_with(&[("j1", 1), ("j2", 2)]);
    req(
        &mut jobs,
        "$aws/things/t/jobs/j2/update",
        r#"{"status":"IN_PROGRESS"}"#,
        3,
    );
    let e = jobs.remove_execution(&id("j2"), "t", 4).unwrap_err();
    assert_eq!(e.code(), "InvalidStateTransition");
    jobs.remove_execution(&id("j1"), "t", 4).expect("removed");
    let e = jobs.describe_execution(&id("j1"), "t").expect("exists");
    assert_eq!(e.status, thingkit_jobs::ExecutionStatus::Removed);
}

#[test]
fn start_next_checks_status_details_even_for_a_started_execution() {
    let mut jobs = jobs_with(&[("j1", 1)]);
    req(&mut jobs, "$aws/things/t/jobs/start-next", "{}", 2);
    let out = req(
        &mut jobs,
        "$aws/things/t/jobs/start-next",
        r#"{"statusDetails":{"bad key":"v"}}"#,
        3,
    );
    assert_eq!(out[0].topic, "$aws/things/t/jobs/start-next/rejected");
    assert!(text(&out[0]).starts_with(r#"{"code":"InvalidRequest""#));
}
