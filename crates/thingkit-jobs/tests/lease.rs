//! Two engines on one store, as two servers of a cluster: a [`MemoryLease`] lets exactly one
//! of them pace a job; what a device reports through the other counts for the rollout (its
//! completion and abort criteria); when the pacing engine stops renewing (a crash), the other
//! takes the rollout over from the stored state with no duplicate execution.

use std::sync::{Arc, Mutex};

use thingkit_jobs::job::{AbortAction, AbortConfig, AbortCriteria, FailureType, RolloutConfig};
use thingkit_jobs::{
    ABORT_REASON_CODE, Error, Job, JobExecution, JobId, JobStatus, JobStore, Jobs, Limits,
    MemoryJobStore, MemoryLease, OutMessage,
};

/// One [`MemoryJobStore`] that several engines share.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<MemoryJobStore>>);

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryJobStore> {
        self.0.lock().expect("not poisoned")
    }
}

impl JobStore for Shared {
    fn get_job(&self, id: &JobId) -> Result<Option<Job>, Error> {
        self.lock().get_job(id)
    }
    fn put_job(&mut self, job: &Job) -> Result<(), Error> {
        self.lock().put_job(job)
    }
    fn delete_job(&mut self, id: &JobId) -> Result<(), Error> {
        self.lock().delete_job(id)
    }
    fn list_jobs(&self) -> Result<Vec<Job>, Error> {
        self.lock().list_jobs()
    }
    fn get_execution(&self, thing: &str, job: &JobId) -> Result<Option<JobExecution>, Error> {
        self.lock().get_execution(thing, job)
    }
    fn put_execution(&mut self, e: &JobExecution) -> Result<(), Error> {
        self.lock().put_execution(e)
    }
    fn create_execution(&mut self, e: &JobExecution) -> Result<bool, Error> {
        self.lock().create_execution(e)
    }
    fn executions_of_thing(&self, thing: &str) -> Result<Vec<JobExecution>, Error> {
        self.lock().executions_of_thing(thing)
    }
    fn executions_of_job(&self, job: &JobId) -> Result<Vec<JobExecution>, Error> {
        self.lock().executions_of_job(job)
    }
    fn delete_execution(&mut self, thing: &str, job: &JobId) -> Result<(), Error> {
        self.lock().delete_execution(thing, job)
    }
    fn put_rollout(&mut self, job: &JobId, things: &[String]) -> Result<(), Error> {
        self.lock().put_rollout(job, things)
    }
    fn rollout(&self, job: &JobId) -> Result<Vec<String>, Error> {
        self.lock().rollout(job)
    }
}

fn id(s: &str) -> JobId {
    JobId::new(s).expect("valid job id")
}

fn things(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("dev-{i}")).collect()
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

fn report(jobs: &mut Jobs<Shared>, thing: &str, job: &str, status: &str, now: u64) {
    let out = jobs
        .request(
            &format!("$aws/things/{thing}/jobs/{job}/update"),
            format!(r#"{{"status":"{status}"}}"#).as_bytes(),
            now,
        )
        .expect("a jobs request topic");
    let accepted = format!("$aws/things/{thing}/jobs/{job}/update/accepted");
    assert!(out.iter().any(|m| m.topic == accepted), "{thing} {status}");
}

fn one_per_minute(name: &str, targets: &[String]) -> Job {
    let mut job = Job::new(id(name), r#"{"op":"update"}"#, targets.to_vec(), 0);
    job.rollout = Some(RolloutConfig {
        maximum_per_minute: Some(1),
        exponential_rate: None,
    });
    job
}

fn two_servers() -> (Shared, Jobs<Shared>, Jobs<Shared>) {
    let store = Shared::default();
    let lease = MemoryLease::new("a", 15);
    let a = Jobs::open_with(store.clone(), Limits::default(), Box::new(lease.clone()), 0)
        .expect("open a");
    let b = Jobs::open_with(
        store.clone(),
        Limits::default(),
        Box::new(lease.holder("b")),
        0,
    )
    .expect("open b");
    (store, a, b)
}

#[test]
fn one_server_paces_a_job_and_another_takes_it_over_when_it_stops_renewing() {
    let (store, mut a, mut b) = two_servers();
    let targets = things(3);
    let created = a
        .create_job(one_per_minute("ota", &targets), &targets, 0)
        .expect("created");
    assert_eq!(notified(&created), ["dev-0"]);

    // dev-0 is connected to B: it sees the job A created, and completes it through B.
    let started = b
        .request("$aws/things/dev-0/jobs/start-next", b"{}", 5)
        .expect("a request topic");
    assert!(
        started[0].topic.ends_with("start-next/accepted")
            && String::from_utf8_lossy(&started[0].payload).contains("\"jobId\":\"ota\""),
        "B serves the job A created: {started:?}"
    );
    report(&mut b, "dev-0", "ota", "SUCCEEDED", 6);
    // B does not pace the job: its only execution ended, yet the job is not complete.
    assert_eq!(
        b.describe_job(&id("ota")).expect("job").status,
        JobStatus::InProgress
    );
    // Only A paces (both tick every second, as servers do): in the next minute A notifies one
    // thing, B no one.
    let (mut by_a, mut by_b) = (Vec::new(), Vec::new());
    for now in 7..=60 {
        by_a.extend(notified(&a.tick(now).expect("tick a")));
        by_b.extend(notified(&b.tick(now).expect("tick b")));
    }
    assert_eq!((by_a, by_b), (vec!["dev-1".to_owned()], vec![]));
    // B reads the progress A's rollout has not reached yet from the store.
    let details = b.process_details(&id("ota")).expect("details");
    assert_eq!(
        (details.succeeded, details.queued, details.waiting),
        (1, 1, 1)
    );

    // A stops (kill -9): its lease, last renewed at 57, runs out at 72; B takes over then, and
    // as dev-1 was notified in the minute before, its first window is spent: dev-2 at 132.
    drop(a);
    for now in 61..75 {
        assert!(notified(&b.tick(now).expect("tick b")).is_empty());
    }
    let mut resumed = Vec::new();
    for now in 75..=140 {
        resumed.extend(notified(&b.tick(now).expect("tick b")));
    }
    assert_eq!(resumed, ["dev-2"], "B notifies the thing A had not reached");
    assert_eq!(
        store.executions_of_job(&id("ota")).expect("list").len(),
        3,
        "one execution per thing"
    );
    report(&mut b, "dev-1", "ota", "SUCCEEDED", 141);
    report(&mut b, "dev-2", "ota", "SUCCEEDED", 142);
    assert_eq!(
        b.describe_job(&id("ota")).expect("job").status,
        JobStatus::Completed,
        "the pacing server completes the job"
    );
}

#[test]
fn outcomes_reported_through_another_server_count_for_the_abort_criteria() {
    let (_store, mut a, mut b) = two_servers();
    let targets = things(4);
    let mut job = Job::new(id("risky"), r#"{"op":"update"}"#, targets.clone(), 0);
    job.abort = Some(AbortConfig {
        criteria_list: vec![AbortCriteria {
            failure_type: FailureType::Failed,
            action: AbortAction::Cancel,
            threshold_percentage: 50.0,
            min_number_of_executed_things: 2,
        }],
    });
    assert_eq!(a.create_job(job, &targets, 0).expect("created").len(), 8);
    report(&mut b, "dev-0", "risky", "FAILED", 1);
    report(&mut b, "dev-1", "risky", "FAILED", 2);
    // B applies no criteria to a job it does not pace.
    assert_eq!(
        b.describe_job(&id("risky")).expect("job").status,
        JobStatus::InProgress
    );
    // A's next renewal (every 5 s) reads the executions and aborts.
    a.tick(4).expect("tick");
    let out = a.tick(5).expect("tick");
    let job = a.describe_job(&id("risky")).expect("job");
    assert_eq!(job.status, JobStatus::Canceled, "{out:?}");
    assert_eq!(job.reason_code.as_deref(), Some(ABORT_REASON_CODE));
}

#[test]
fn two_engines_racing_for_one_stored_rollout_create_each_execution_once() {
    // Both engines hold the "lease" (one server alone each): the store's create_execution
    // still keeps one execution per thing.
    let store = Shared::default();
    let mut a = Jobs::new(store.clone(), Limits::default());
    let targets = things(3);
    let job = one_per_minute("raced", &targets);
    a.create_job(job, &targets, 0).expect("created");
    let mut b = Jobs::open(store.clone(), Limits::default(), 0).expect("open");
    let mut total = 0;
    for now in [60, 120, 180] {
        total += notified(&a.tick(now).expect("a")).len();
        total += notified(&b.tick(now).expect("b")).len();
    }
    assert_eq!(total, 2, "dev-1 and dev-2, each once");
    assert_eq!(
        store.executions_of_job(&id("raced")).expect("list").len(),
        3
    );
}
