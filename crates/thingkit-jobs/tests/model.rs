//! Random sequences of device requests and service cancels: no execution ever leaves a
//! terminal state, versions only grow (by exactly one per change), every request is answered
//! with JSON, and a redb store driven alongside (then reopened) holds what the memory store
//! holds.

#![cfg(feature = "redb")]

use proptest::prelude::*;
use thingkit_jobs::execution::ExecutionStatus;
use thingkit_jobs::{Job, JobExecution, JobId, JobStore, Jobs, Limits, MemoryJobStore};

const THINGS: [&str; 2] = ["t0", "t1"];
const JOBS: [&str; 3] = ["j0", "j1", "j2"];

#[derive(Debug, Clone)]
enum Op {
    Update {
        thing: usize,
        job: usize,
        status: usize,
        expected: Option<(u64, bool)>,
    },
    StartNext {
        thing: usize,
    },
    Cancel {
        thing: usize,
        job: usize,
        force: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..3usize, 0..8usize, proptest::option::of((0..6u64, any::<bool>())))
            .prop_map(|(thing, job, status, expected)| Op::Update { thing, job, status, expected }),
        1 => (0..2usize).prop_map(|thing| Op::StartNext { thing }),
        1 => (0..2usize, 0..3usize, any::<bool>()).prop_map(|(thing, job, force)| Op::Cancel { thing, job, force }),
    ]
}

fn snapshot(store: &dyn JobStore) -> Vec<JobExecution> {
    THINGS
        .iter()
        .flat_map(|t| store.executions_of_thing(t).expect("list"))
        .collect()
}

fn setup<S: JobStore>(store: S) -> Jobs<S> {
    let mut jobs = Jobs::new(store, Limits::default());
    let things: Vec<String> = THINGS.iter().map(|t| (*t).to_owned()).collect();
    for (i, j) in JOBS.iter().enumerate() {
        let job = Job::new(
            JobId::new(j).expect("valid"),
            r#"{"op":"x"}"#,
            things.clone(),
            0,
        );
        jobs.create_job(job, &things, i as u64).expect("created");
    }
    jobs
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn executions_never_leave_terminal_states_and_versions_grow(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jobs.redb");
        let mut memory = setup(MemoryJobStore::new());
        let mut redb = setup(thingkit_jobs::RedbJobStore::open(&path).expect("open"));
        let mut now = 100;
        for op in ops {
            now += 1;
            let before = snapshot(memory.store());
            match op {
                Op::Update { thing, job, status, expected } => {
                    let mut payload = format!(r#"{{"status":"{}""#, ExecutionStatus::ALL[status].as_str());
                    match expected {
                        Some((v, true)) => payload.push_str(&format!(r#","expectedVersion":"{v}""#)),
                        Some((v, false)) => payload.push_str(&format!(r#","expectedVersion":{v}"#)),
                        None => {}
                    }
                    payload.push('}');
                    let topic = format!("$aws/things/{}/jobs/{}/update", THINGS[thing], JOBS[job]);
                    let a = memory.request(&topic, payload.as_bytes(), now).expect("ours");
                    let b = redb.request(&topic, payload.as_bytes(), now).expect("ours");
                    prop_assert_eq!(&a, &b);
                    for m in &a {
                        let text = std::str::from_utf8(&m.payload).expect("UTF-8");
                        prop_assert!(thingkit_json::parse(text, thingkit_json::Limits::default()).is_ok());
                    }
                }
                Op::StartNext { thing } => {
                    let topic = format!("$aws/things/{}/jobs/start-next", THINGS[thing]);
                    let a = memory.request(&topic, b"{}", now).expect("ours");
                    let b = redb.request(&topic, b"{}", now).expect("ours");
                    prop_assert_eq!(a, b);
                }
                Op::Cancel { thing, job, force } => {
                    let id = JobId::new(JOBS[job]).expect("valid");
                    let a = memory.cancel_execution(&id, THINGS[thing], force, None, None, now);
                    let b = redb.cancel_execution(&id, THINGS[thing], force, None, None, now);
                    prop_assert_eq!(a, b);
                }
            }
            let after = snapshot(memory.store());
            prop_assert_eq!(before.len(), after.len());
            for (x, y) in before.iter().zip(&after) {
                if x.status.is_terminal() {
                    prop_assert_eq!(x, y, "a terminal execution changed");
                }
                if x != y {
                    prop_assert_eq!(y.version_number, x.version_number + 1);
                } else {
                    prop_assert_eq!(y.version_number, x.version_number);
                }
            }
        }
        let jobs_memory = memory.list_jobs().expect("list");
        let executions_memory = snapshot(memory.store());
        drop(redb);
        let reopened = thingkit_jobs::RedbJobStore::open(&path).expect("reopen");
        prop_assert_eq!(reopened.list_jobs().expect("list"), jobs_memory);
        prop_assert_eq!(snapshot(&reopened), executions_memory);
    }
}
