//! Property test of the `Jobs` engine: any interleaving of job creation (with random rollout,
//! abort, timeout and retry configurations), device reports, ticks, cancels, continuous joins
//! and restarts keeps these invariants:
//!
//! - a job is COMPLETED only when it is a snapshot job, every execution is terminal and the
//!   rollout reached every target; and such a job is always COMPLETED (none is left hanging);
//! - a CANCELED or COMPLETED job never gets a new execution;
//! - an execution's `versionNumber` never decreases, and a terminal execution only changes by
//!   being retried (a higher `executionNumber`);
//! - no minute notifies more things of a job than its `maximumPerMinute`;
//! - a restart (`Jobs::open` on the same store) changes no job or execution.

use std::collections::BTreeMap;

use proptest::prelude::*;
use thingkit_jobs::job::{
    AbortAction, AbortConfig, AbortCriteria, FailureType, RetryConfig, RetryCriteria,
    RolloutConfig, TimeoutConfig,
};
use thingkit_jobs::{
    CancelJob, ExecutionStatus, Job, JobId, JobStatus, JobStore, Jobs, Limits, MemoryJobStore,
    TargetSelection,
};

const THINGS: usize = 6;
const JOBS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Create {
        job: usize,
        rate: u32,
        abort: bool,
        timeout: bool,
        retries: u32,
        continuous: bool,
        targets: u8,
    },
    Report {
        thing: usize,
        job: usize,
        status: u8,
    },
    StartNext {
        thing: usize,
    },
    Advance {
        seconds: u64,
    },
    Cancel {
        job: usize,
        force: bool,
    },
    Join {
        job: usize,
        thing: usize,
    },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..JOBS, 1..4u32, any::<bool>(), any::<bool>(), 0..3u32, any::<bool>(), 1..64u8).prop_map(
            |(job, rate, abort, timeout, retries, continuous, targets)| Op::Create {
                job,
                rate,
                abort,
                timeout,
                retries,
                continuous,
                targets,
            }
        ),
        4 => (0..THINGS, 0..JOBS, 0..4u8).prop_map(|(thing, job, status)| Op::Report {
            thing,
            job,
            status
        }),
        2 => (0..THINGS).prop_map(|thing| Op::StartNext { thing }),
        3 => (1..200u64).prop_map(|seconds| Op::Advance { seconds }),
        1 => (0..JOBS, any::<bool>()).prop_map(|(job, force)| Op::Cancel { job, force }),
        1 => (0..JOBS, 0..THINGS).prop_map(|(job, thing)| Op::Join { job, thing }),
        1 => Just(Op::Restart),
    ]
}

fn job_id(i: usize) -> JobId {
    JobId::new(&format!("job{i}")).expect("valid")
}

fn thing(i: usize) -> String {
    format!("t{i}")
}

/// Every (job, thing) execution: (status, version, execution number).
fn snapshot(store: &MemoryJobStore) -> BTreeMap<(String, String), (ExecutionStatus, u64, u64)> {
    let mut out = BTreeMap::new();
    for t in 0..THINGS {
        for e in store.executions_of_thing(&thing(t)).expect("memory store") {
            out.insert(
                (e.job_id.to_string(), e.thing_name.clone()),
                (e.status, e.version_number, e.execution_number),
            );
        }
    }
    out
}

fn statuses(store: &MemoryJobStore) -> BTreeMap<String, JobStatus> {
    store
        .list_jobs()
        .expect("memory store")
        .into_iter()
        .map(|j| (j.job_id.to_string(), j.status))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn the_engine_keeps_its_invariants(ops in proptest::collection::vec(op(), 1..60)) {
        let mut now = 1_000_000u64;
        let mut jobs = Jobs::new(MemoryJobStore::new(), Limits::default());
        let mut rates: BTreeMap<String, u32> = BTreeMap::new();
        // Executions created per (job, minute since creation window) — approximated by the
        // absolute minute, which a rate window never straddles more than two of.
        let mut created_in_minute: BTreeMap<(String, u64), u32> = BTreeMap::new();
        let mut before = snapshot(jobs.store());
        for op in ops {
            let statuses_before = statuses(jobs.store());
            // Continuous joiners are admitted outside rollout control (J-12).
            let paced = !matches!(op, Op::Join { .. });
            match op {
                Op::Create { job, rate, abort, timeout, retries, continuous, targets } => {
                    let things: Vec<String> = (0..THINGS)
                        .filter(|t| targets & (1 << t) != 0)
                        .map(thing)
                        .collect();
                    let mut j = Job::new(job_id(job), r#"{"op":"x"}"#, vec!["arn".into()], now);
                    j.rollout = Some(RolloutConfig { maximum_per_minute: Some(rate), exponential_rate: None });
                    if abort {
                        j.abort = Some(AbortConfig { criteria_list: vec![AbortCriteria {
                            failure_type: FailureType::All,
                            action: AbortAction::Cancel,
                            threshold_percentage: 50.0,
                            min_number_of_executed_things: 2,
                        }]});
                    }
                    if timeout {
                        j.timeout = Some(TimeoutConfig { in_progress_timeout_in_minutes: 1 });
                    }
                    if retries > 0 {
                        j.retry = Some(RetryConfig { criteria_list: vec![RetryCriteria {
                            failure_type: FailureType::Failed,
                            number_of_retries: retries,
                        }]});
                    }
                    if continuous {
                        j.target_selection = TargetSelection::Continuous;
                    }
                    if !things.is_empty() && jobs.create_job(j, &things, now).is_ok() {
                        rates.insert(job_id(job).to_string(), rate);
                    }
                }
                Op::Report { thing: t, job, status } => {
                    let status = ["IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED"][status as usize];
                    let topic = format!("$aws/things/{}/jobs/{}/update", thing(t), job_id(job));
                    let out = jobs
                        .request(&topic, format!(r#"{{"status":"{status}"}}"#).as_bytes(), now)
                        .expect("a request topic");
                    prop_assert!(!out.is_empty(), "every request is answered");
                }
                Op::StartNext { thing: t } => {
                    let topic = format!("$aws/things/{}/jobs/start-next", thing(t));
                    jobs.request(&topic, b"{}", now).expect("a request topic");
                }
                Op::Advance { seconds } => {
                    now += seconds;
                    jobs.tick(now).expect("memory store");
                }
                Op::Cancel { job, force } => {
                    let cancel = CancelJob { force, ..CancelJob::default() };
                    let _ = jobs.cancel_job(&job_id(job), &cancel, now);
                }
                Op::Join { job, thing: t } => {
                    let _ = jobs.add_thing(&job_id(job), &thing(t), now);
                }
                Op::Restart => {
                    let store = jobs.into_store();
                    let kept = store.clone();
                    jobs = Jobs::open(store, Limits::default(), now).expect("memory store");
                    prop_assert_eq!(jobs.store(), &kept, "a restart changes nothing stored");
                }
            }
            let after = snapshot(jobs.store());
            for (key, (status, version, number)) in &after {
                match before.get(key) {
                    None => {
                        // A new execution: never for a job that was already finished.
                        let was = statuses_before.get(&key.0).copied();
                        prop_assert!(
                            !matches!(was, Some(JobStatus::Canceled | JobStatus::Completed)),
                            "{key:?} created for a {was:?} job"
                        );
                        if paced && *number == 1 && rates.contains_key(&key.0) {
                            *created_in_minute.entry((key.0.clone(), now / 60)).or_default() += 1;
                        }
                    }
                    Some((old_status, old_version, old_number)) => {
                        if number == old_number {
                            prop_assert!(version >= old_version, "{key:?} version went back");
                            if old_status.is_terminal() {
                                prop_assert_eq!(status, old_status, "{:?} left a terminal state", key);
                            }
                        } else {
                            prop_assert!(number > old_number, "{key:?} execution number went back");
                        }
                    }
                }
            }
            for j in jobs.store().list_jobs().expect("memory store") {
                let id = j.job_id.to_string();
                let executions = jobs.executions_of_job(&j.job_id).expect("memory store");
                let details = jobs.process_details(&j.job_id).expect("known job");
                let all_terminal = executions.iter().all(|e| e.status.is_terminal());
                if j.status == JobStatus::Completed {
                    prop_assert_eq!(j.target_selection, TargetSelection::Snapshot);
                    prop_assert!(all_terminal, "{id} COMPLETED with open executions");
                    prop_assert_eq!(details.waiting, 0);
                }
                if j.status == JobStatus::InProgress
                    && j.target_selection == TargetSelection::Snapshot
                    && all_terminal
                    && details.waiting == 0
                {
                    prop_assert!(false, "{id} left IN_PROGRESS with nothing to do: {details:?}");
                }
            }
            for ((job, _minute), n) in &created_in_minute {
                // Two adjacent absolute minutes may share one rate window's releases.
                let rate = rates.get(job).copied().unwrap_or(u32::MAX);
                prop_assert!(*n <= 2 * rate, "{job}: {n} notified in a minute at rate {rate}");
            }
            before = after;
        }
    }
}
