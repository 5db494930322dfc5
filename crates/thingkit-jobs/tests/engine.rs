//! The `Jobs` driver as a rollout engine: pacing (J-11, J-12), abort (J-13, J-14), timeouts
//! through `tick` (J-15 … J-17), retries (J-18, J-19), continuous jobs, and resuming after a
//! restart on the redb store.

use thingkit_jobs::job::{
    AbortAction, AbortConfig, AbortCriteria, FailureType, RetryConfig, RetryCriteria,
    RolloutConfig, TimeoutConfig,
};
use thingkit_jobs::{
    ABORT_REASON_CODE, ExecutionStatus, Job, JobId, JobStatus, JobStore, Jobs, Limits,
    MemoryJobStore, OutMessage, RedbJobStore, TargetSelection,
};

fn id(s: &str) -> JobId {
    JobId::new(s).expect("valid job id")
}

fn things(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("dev-{i:05}")).collect()
}

/// The things that got `/notify-next` with an execution in `out`.
fn notified(out: &[OutMessage]) -> Vec<String> {
    out.iter()
        .filter(|m| m.topic.ends_with("/jobs/notify-next"))
        .filter(|m| std::str::from_utf8(&m.payload).is_ok_and(|p| p.contains("\"execution\"")))
        .map(|m| {
            m.topic
                .trim_start_matches("$aws/things/")
                .trim_end_matches("/jobs/notify-next")
                .to_owned()
        })
        .collect()
}

fn report<S: JobStore>(jobs: &mut Jobs<S>, thing: &str, job: &str, status: &str, now: u64) {
    let out = jobs
        .request(
            &format!("$aws/things/{thing}/jobs/{job}/update"),
            format!(r#"{{"status":"{status}"}}"#).as_bytes(),
            now,
        )
        .expect("a jobs request topic");
    let accepted = format!("$aws/things/{thing}/jobs/{job}/update/accepted");
    assert!(
        out.iter().any(|m| m.topic == accepted),
        "{thing} {status}: {:?}",
        out.iter()
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
            .collect::<Vec<_>>()
    );
}

fn job_with(name: &str, targets: &[String], f: impl FnOnce(&mut Job)) -> Job {
    let mut job = Job::new(id(name), r#"{"op":"update"}"#, vec!["group".into()], 0);
    job.targets = targets.to_vec();
    f(&mut job);
    job
}

#[test]
fn a_constant_rate_notifies_that_many_things_per_minute() {
    let mut jobs = Jobs::new(MemoryJobStore::new(), Limits::default());
    let targets = things(5);
    let job = job_with("paced", &targets, |j| {
        j.rollout = Some(RolloutConfig {
            maximum_per_minute: Some(2),
            exponential_rate: None,
        });
    });
    let out = jobs.create_job(job, &targets, 1000).expect("created");
    assert_eq!(notified(&out), ["dev-00000", "dev-00001"]);
    assert_eq!(jobs.next_wakeup(), Some(1060));
    assert!(notified(&jobs.tick(1059).expect("tick")).is_empty());
    assert_eq!(
        notified(&jobs.tick(1060).expect("tick")),
        ["dev-00002", "dev-00003"]
    );
    let details = jobs.process_details(&id("paced")).expect("details");
    assert_eq!((details.queued, details.waiting), (4, 1));
    assert_eq!(notified(&jobs.tick(1125).expect("tick")), ["dev-00004"]);
    // Not-yet-reached things have no execution to see.
    assert_eq!(jobs.executions_of_job(&id("paced")).expect("list").len(), 5);
}

#[test]
fn without_a_rollout_config_a_job_rolls_out_at_1000_per_minute() {
    let mut jobs = Jobs::new(MemoryJobStore::new(), Limits::default());
    let targets = things(1500);
    let job = job_with("big", &targets, |_| {});
    assert_eq!(
        notified(&jobs.create_job(job, &targets, 0).expect("created")).len(),
        1000
    );
    assert_eq!(notified(&jobs.tick(60).expect("tick")).len(), 500);
}

/// The issue's simulation: 10,000 devices, 30 % of them fail, abort at 20 % after 100
/// completions. The abort fires at exactly the 100th completion, cancels the notified but
/// unstarted executions, and no device is notified after it.
#[test]
fn a_rollout_to_10000_devices_with_30_percent_failures_aborts_at_the_threshold() {
    let mut jobs = Jobs::new(MemoryJobStore::new(), Limits::default());
    let targets = things(10_000);
    let job = job_with("ota", &targets, |j| {
        j.abort = Some(AbortConfig {
            criteria_list: vec![AbortCriteria {
                failure_type: FailureType::Failed,
                action: AbortAction::Cancel,
                threshold_percentage: 20.0,
                min_number_of_executed_things: 100,
            }],
        });
    });
    let mut pending: Vec<String> = notified(&jobs.create_job(job, &targets, 0).expect("ok"));
    let mut completed = 0u64;
    let mut aborted_at = None;
    let mut now = 0;
    'minutes: for minute in 0..20 {
        now = minute * 60 + 1;
        for (i, thing) in std::mem::take(&mut pending).into_iter().enumerate() {
            let fails = i % 10 < 3;
            report(
                &mut jobs,
                &thing,
                "ota",
                if fails { "FAILED" } else { "SUCCEEDED" },
                now,
            );
            completed += 1;
            if jobs.describe_job(&id("ota")).expect("job").status == JobStatus::Canceled {
                aborted_at = Some(completed);
                break 'minutes;
            }
        }
        pending = notified(&jobs.tick((minute + 1) * 60).expect("tick"));
    }
    assert_eq!(aborted_at, Some(100), "20 % of 100 completions");
    let job = jobs.describe_job(&id("ota")).expect("job");
    assert_eq!(job.reason_code.as_deref(), Some(ABORT_REASON_CODE));
    let d = jobs.process_details(&id("ota")).expect("details");
    assert_eq!((d.succeeded, d.failed), (70, 30));
    assert_eq!(d.canceled, 900, "notified, never started: canceled (J-14)");
    assert_eq!(d.queued + d.in_progress, 0);
    assert_eq!(d.waiting, 0, "the rest of the rollout is dropped");
    // No device is notified after the abort, however long the engine runs.
    for minute in 1..30 {
        assert!(notified(&jobs.tick(now + minute * 60).expect("tick")).is_empty());
    }
    assert_eq!(
        jobs.executions_of_job(&id("ota")).expect("list").len(),
        1000
    );
}

#[test]
fn an_in_progress_execution_times_out_on_tick_and_is_retried_once() {
    let mut jobs = Jobs::new(MemoryJobStore::new(), Limits::default());
    let targets = vec!["lamp".to_owned()];
    let job = job_with("slow", &targets, |j| {
        j.timeout = Some(TimeoutConfig {
            in_progress_timeout_in_minutes: 1,
        });
        j.retry = Some(RetryConfig {
            criteria_list: vec![RetryCriteria {
                failure_type: FailureType::TimedOut,
                number_of_retries: 1,
            }],
        });
    });
    jobs.create_job(job, &targets, 0).expect("created");
    report(&mut jobs, "lamp", "slow", "IN_PROGRESS", 100);
    assert_eq!(jobs.next_wakeup(), Some(160));
    assert!(jobs.tick(159).expect("tick").is_empty());
    let out = jobs.tick(160).expect("tick");
    // The retry is a new QUEUED execution, number 2, and the device hears of it.
    assert_eq!(notified(&out), ["lamp"]);
    let e = jobs.describe_execution(&id("slow"), "lamp").expect("e");
    assert_eq!(
        (e.status, e.execution_number, e.retries_after_timed_out),
        (ExecutionStatus::Queued, 2, 1)
    );
    report(&mut jobs, "lamp", "slow", "IN_PROGRESS", 200);
    jobs.tick(260).expect("tick");
    let e = jobs.describe_execution(&id("slow"), "lamp").expect("e");
    assert_eq!(
        (e.status, e.execution_number),
        (ExecutionStatus::TimedOut, 2)
    );
    assert_eq!(
        jobs.describe_job(&id("slow")).expect("job").status,
        JobStatus::Completed
    );
}

#[test]
fn a_step_timer_times_out_before_the_in_progress_bound() {
    let mut jobs = Jobs::new(MemoryJobStore::new(), Limits::default());
    let targets = vec!["lamp".to_owned()];
    let job = job_with("steps", &targets, |j| {
        j.timeout = Some(TimeoutConfig {
            in_progress_timeout_in_minutes: 20,
        });
    });
    jobs.create_job(job, &targets, 0).expect("created");
    // The guide's example: a 20-minute timer from 12:00, step 7 at 12:05 → 12:12.
    let noon = 43_200;
    jobs.request(
        "$aws/things/lamp/jobs/steps/update",
        br#"{"status":"IN_PROGRESS"}"#,
        noon,
    );
    jobs.request(
        "$aws/things/lamp/jobs/steps/update",
        br#"{"status":"IN_PROGRESS","stepTimeoutInMinutes":7}"#,
        noon + 300,
    );
    assert_eq!(jobs.next_wakeup(), Some(noon + 720));
    jobs.tick(noon + 719).expect("tick");
    assert_eq!(
        jobs.describe_execution(&id("steps"), "lamp")
            .expect("e")
            .status,
        ExecutionStatus::InProgress
    );
    jobs.tick(noon + 720).expect("tick");
    assert_eq!(
        jobs.describe_execution(&id("steps"), "lamp")
            .expect("e")
            .status,
        ExecutionStatus::TimedOut
    );
}

#[test]
fn failed_executions_are_retried_until_the_budget_is_used() {
    let mut jobs = Jobs::new(MemoryJobStore::new(), Limits::default());
    let targets = vec!["lamp".to_owned(), "fan".to_owned()];
    let job = job_with("flaky", &targets, |j| {
        j.retry = Some(RetryConfig {
            criteria_list: vec![RetryCriteria {
                failure_type: FailureType::Failed,
                number_of_retries: 2,
            }],
        });
    });
    jobs.create_job(job, &targets, 0).expect("created");
    for (n, at) in [(1, 10), (2, 20), (3, 30)] {
        let e = jobs.describe_execution(&id("flaky"), "lamp").expect("e");
        assert_eq!((e.status, e.execution_number), (ExecutionStatus::Queued, n));
        report(&mut jobs, "lamp", "flaky", "FAILED", at);
    }
    let e = jobs.describe_execution(&id("flaky"), "lamp").expect("e");
    assert_eq!((e.status, e.execution_number), (ExecutionStatus::Failed, 3));
    // REJECTED is never retried (J-19).
    report(&mut jobs, "fan", "flaky", "REJECTED", 40);
    let e = jobs.describe_execution(&id("flaky"), "fan").expect("e");
    assert_eq!(
        (e.status, e.execution_number),
        (ExecutionStatus::Rejected, 1)
    );
    assert_eq!(
        jobs.describe_job(&id("flaky")).expect("job").status,
        JobStatus::Completed
    );
}

#[test]
fn a_continuous_job_reaches_things_that_join_later_and_never_completes() {
    let mut jobs = Jobs::new(MemoryJobStore::new(), Limits::default());
    let targets = vec!["lamp".to_owned()];
    let job = job_with("always", &targets, |j| {
        j.target_selection = TargetSelection::Continuous;
        j.rollout = Some(RolloutConfig {
            maximum_per_minute: Some(1),
            exponential_rate: None,
        });
    });
    jobs.create_job(job, &targets, 0).expect("created");
    report(&mut jobs, "lamp", "always", "SUCCEEDED", 5);
    // A late joiner is notified at once, outside the rate (J-12).
    assert_eq!(
        notified(&jobs.add_thing(&id("always"), "fan", 6).expect("added")),
        ["fan"]
    );
    report(&mut jobs, "fan", "always", "SUCCEEDED", 7);
    assert_eq!(
        jobs.describe_job(&id("always")).expect("job").status,
        JobStatus::InProgress
    );
    // Joining again after a terminal execution runs the job again (next executionNumber).
    jobs.add_thing(&id("always"), "fan", 8).expect("added");
    let e = jobs.describe_execution(&id("always"), "fan").expect("e");
    assert_eq!((e.status, e.execution_number), (ExecutionStatus::Queued, 2));
    // Leaving the group removes a QUEUED execution.
    jobs.remove_execution(&id("always"), "fan", 9)
        .expect("removed");
    let e = jobs.describe_execution(&id("always"), "fan").expect("e");
    assert_eq!(e.status, ExecutionStatus::Removed);
}

#[test]
fn a_restart_resumes_the_rollout_timers_and_completion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jobs.redb");
    let targets = things(3);
    {
        let store = RedbJobStore::open(&path).expect("open");
        let mut jobs = Jobs::open(store, Limits::default(), 0).expect("open");
        let job = job_with("resume", &targets, |j| {
            j.rollout = Some(RolloutConfig {
                maximum_per_minute: Some(1),
                exponential_rate: None,
            });
            j.timeout = Some(TimeoutConfig {
                in_progress_timeout_in_minutes: 5,
            });
        });
        assert_eq!(
            notified(&jobs.create_job(job, &targets, 0).expect("ok")),
            ["dev-00000"]
        );
        report(&mut jobs, "dev-00000", "resume", "IN_PROGRESS", 10);
        // Dropped without any shutdown, like kill -9: only the store remains.
    }
    let store = RedbJobStore::open(&path).expect("reopen");
    let mut jobs = Jobs::open(store, Limits::default(), 30).expect("open");
    // The rollout goes on with the things not notified yet, one per minute from the restart;
    // dev-00000, notified 30 s before it, spent the first of those minutes (no burst).
    assert!(notified(&jobs.tick(30).expect("tick")).is_empty());
    assert_eq!(notified(&jobs.tick(90).expect("tick")), ["dev-00001"]);
    assert_eq!(notified(&jobs.tick(150).expect("tick")), ["dev-00002"]);
    // The deadline of the IN_PROGRESS execution survived: 10 + 5 minutes.
    assert_eq!(jobs.next_wakeup(), Some(310));
    jobs.tick(310).expect("tick");
    assert_eq!(
        jobs.describe_execution(&id("resume"), "dev-00000")
            .expect("e")
            .status,
        ExecutionStatus::TimedOut
    );
    report(&mut jobs, "dev-00001", "resume", "SUCCEEDED", 320);
    report(&mut jobs, "dev-00002", "resume", "SUCCEEDED", 330);
    assert_eq!(
        jobs.describe_job(&id("resume")).expect("job").status,
        JobStatus::Completed
    );
    drop(jobs);
    // A completed job stays completed and rolls nothing out after another restart.
    let store = RedbJobStore::open(&path).expect("reopen");
    let mut jobs = Jobs::open(store, Limits::default(), 400).expect("open");
    assert!(jobs.tick(1000).expect("tick").is_empty());
}

#[test]
fn update_job_changes_the_rate_from_the_next_minute_and_refuses_more_retries() {
    let mut jobs = Jobs::new(MemoryJobStore::new(), Limits::default());
    let targets = things(10);
    let job = job_with("tune", &targets, |j| {
        j.rollout = Some(RolloutConfig {
            maximum_per_minute: Some(1),
            exponential_rate: None,
        });
    });
    assert_eq!(
        notified(&jobs.create_job(job, &targets, 0).expect("ok")).len(),
        1
    );
    let update = thingkit_jobs::JobUpdate {
        description: Some("faster".into()),
        rollout: Some(RolloutConfig {
            maximum_per_minute: Some(3),
            exponential_rate: None,
        }),
        ..Default::default()
    };
    let job = jobs.update_job(&id("tune"), update, 10).expect("updated");
    assert_eq!(job.description.as_deref(), Some("faster"));
    // This minute keeps its rate of 1 (already used); the next one has 3.
    assert!(notified(&jobs.tick(30).expect("tick")).is_empty());
    assert_eq!(notified(&jobs.tick(60).expect("tick")).len(), 3);
    let more = thingkit_jobs::JobUpdate {
        retry: Some(RetryConfig {
            criteria_list: vec![RetryCriteria {
                failure_type: FailureType::Failed,
                number_of_retries: 1,
            }],
        }),
        ..Default::default()
    };
    let e = jobs.update_job(&id("tune"), more, 70).unwrap_err();
    assert!(e.to_string().contains("numberOfRetries to 0"), "{e}");
    let bad = thingkit_jobs::JobUpdate {
        rollout: Some(RolloutConfig {
            maximum_per_minute: Some(1001),
            exponential_rate: None,
        }),
        ..Default::default()
    };
    assert!(jobs.update_job(&id("tune"), bad, 70).is_err());
    assert_eq!(
        jobs.describe_job(&id("tune")).expect("job").rollout,
        Some(RolloutConfig {
            maximum_per_minute: Some(3),
            exponential_rate: None,
        })
    );
}

fn at(text: &str) -> u64 {
    thingkit_jobs::rollout::parse_schedule_time(text).expect("a schedule time")
}

fn scheduled(
    start: Option<&str>,
    end: Option<&str>,
    behavior: Option<&str>,
) -> thingkit_jobs::job::JobScheduling {
    thingkit_jobs::job::JobScheduling {
        start_time: start.map(str::to_owned),
        end_time: end.map(str::to_owned),
        end_behavior: behavior.map(str::to_owned),
        maintenance_windows: Vec::new(),
    }
}

#[test]
fn a_scheduled_job_starts_at_its_start_time_and_cancels_at_its_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jobs.redb");
    let now = at("2026-12-04T12:00");
    let targets = things(3);
    {
        let store = RedbJobStore::open(&path).expect("open");
        let mut jobs = Jobs::open(store, Limits::default(), now).expect("open");
        let job = job_with("night", &targets, |j| {
            j.scheduling = Some(scheduled(
                Some("2026-12-04T13:00"),
                Some("2026-12-04T14:00"),
                Some("CANCEL"),
            ));
            j.rollout = Some(RolloutConfig {
                maximum_per_minute: Some(2),
                exponential_rate: None,
            });
        });
        assert!(jobs.create_job(job, &targets, now).expect("ok").is_empty());
        assert_eq!(
            jobs.describe_job(&id("night")).expect("job").status,
            JobStatus::Scheduled
        );
        assert_eq!(jobs.next_wakeup(), Some(at("2026-12-04T13:00")));
        assert!(jobs.tick(at("2026-12-04T12:59")).expect("tick").is_empty());
        // A restart before the start keeps the schedule.
    }
    let store = RedbJobStore::open(&path).expect("reopen");
    let mut jobs = Jobs::open(store, Limits::default(), now + 60).expect("open");
    assert_eq!(
        notified(&jobs.tick(at("2026-12-04T13:00")).expect("tick")),
        ["dev-00000", "dev-00001"]
    );
    assert_eq!(
        jobs.describe_job(&id("night")).expect("job").status,
        JobStatus::InProgress
    );
    report(
        &mut jobs,
        "dev-00000",
        "night",
        "IN_PROGRESS",
        at("2026-12-04T13:01"),
    );
    // The end (processed before the rollout's next release in the same tick) cancels the job
    // and its QUEUED execution; the IN_PROGRESS one keeps running, the third thing is never
    // notified.
    jobs.tick(at("2026-12-04T14:00")).expect("tick");
    let job = jobs.describe_job(&id("night")).expect("job");
    assert_eq!(job.status, JobStatus::Canceled);
    let d = jobs.process_details(&id("night")).expect("details");
    assert_eq!((d.in_progress, d.canceled, d.waiting), (1, 1, 0), "{d:?}");
    assert!(jobs.describe_execution(&id("night"), "dev-00002").is_err());
}

#[test]
fn stop_rollout_at_the_end_notifies_no_one_more_and_the_job_completes() {
    let mut jobs = Jobs::new(MemoryJobStore::new(), Limits::default());
    let now = at("2026-12-04T12:00");
    let targets = things(100);
    let job = job_with("slow", &targets, |j| {
        j.scheduling = Some(scheduled(None, Some("2026-12-04T12:30"), None));
        j.rollout = Some(RolloutConfig {
            maximum_per_minute: Some(1),
            exponential_rate: None,
        });
    });
    assert_eq!(
        notified(&jobs.create_job(job, &targets, now).expect("ok")).len(),
        1
    );
    let mut reached = 1;
    for minute in 1..=40 {
        reached += notified(&jobs.tick(now + minute * 60).expect("tick")).len();
    }
    assert_eq!(reached, 30, "one a minute until the end at 12:30");
    for i in 0..30 {
        report(
            &mut jobs,
            &format!("dev-{i:05}"),
            "slow",
            "SUCCEEDED",
            now + 3000,
        );
    }
    assert_eq!(
        jobs.describe_job(&id("slow")).expect("job").status,
        JobStatus::Completed
    );
}

#[test]
fn scheduling_rules_are_checked_at_creation() {
    let mut jobs = Jobs::new(MemoryJobStore::new(), Limits::default());
    let now = at("2026-12-04T12:00");
    let targets = things(1);
    for (start, end, behavior, why) in [
        (Some("2026-12-04T12:10"), None, None, "30 minutes"),
        (
            Some("2026-12-04T13:00"),
            Some("2026-12-04T13:10"),
            None,
            "30 minutes after",
        ),
        (Some("2026-12-04 13:00"), None, None, "2026-12-04 13:00"),
        (None, Some("2026-12-04T14:00"), Some("LATER"), "endBehavior"),
    ] {
        let job = job_with("bad", &targets, |j| {
            j.scheduling = Some(scheduled(start, end, behavior));
        });
        let e = jobs.create_job(job, &targets, now).unwrap_err().to_string();
        assert!(e.contains(why), "{why}: {e}");
    }
    let job = job_with("windows", &targets, |j| {
        let mut s = scheduled(Some("2026-12-04T13:00"), None, None);
        s.maintenance_windows =
            vec![serde_json::json!({"startTime": "cron(0 0 * * ? *)", "durationInMinutes": 60})];
        j.scheduling = Some(s);
    });
    let e = jobs.create_job(job, &targets, now).unwrap_err().to_string();
    assert!(e.contains("maintenanceWindows"), "{e}");
}

/// Regression (found by `engine_model`): a device reporting FAILED straight from QUEUED on a
/// job with retries completed the job before the retry was queued, leaving a COMPLETED job
/// with a QUEUED execution.
#[test]
fn a_retry_from_a_direct_failure_keeps_the_job_open() {
    let mut jobs = Jobs::new(MemoryJobStore::new(), Limits::default());
    let targets = vec!["lamp".to_owned()];
    let job = job_with("again", &targets, |j| {
        j.retry = Some(RetryConfig {
            criteria_list: vec![RetryCriteria {
                failure_type: FailureType::Failed,
                number_of_retries: 1,
            }],
        });
    });
    jobs.create_job(job, &targets, 0).expect("created");
    report(&mut jobs, "lamp", "again", "FAILED", 5);
    assert_eq!(
        jobs.describe_job(&id("again")).expect("job").status,
        JobStatus::InProgress
    );
    let e = jobs.describe_execution(&id("again"), "lamp").expect("e");
    assert_eq!((e.status, e.execution_number), (ExecutionStatus::Queued, 2));
    report(&mut jobs, "lamp", "again", "SUCCEEDED", 6);
    assert_eq!(
        jobs.describe_job(&id("again")).expect("job").status,
        JobStatus::Completed
    );
}
