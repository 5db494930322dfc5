//! The test suite every [`JobStore`] must pass (cargo feature `test-suite`).
//!
//! [`run`] takes a function that makes a fresh, empty store for each check; [`reopen`] takes
//! one that opens the *same* storage again on every call (empty on the first), and checks that
//! what was stored is there after the previous store was dropped.
//!
//! ```ignore
//! #[test]
//! fn my_store_conforms() {
//!     thingkit_jobs::conformance::run(|| Box::new(MyStore::new_empty()));
//!     thingkit_jobs::conformance::reopen(|| Box::new(MyStore::open_the_same()));
//! }
//! ```

use crate::execution::{ExecutionStatus, JobExecution};
use crate::job::{Job, JobId};
use crate::store::JobStore;

/// Runs every check against fresh stores from `make` (each must start empty); panics on the
/// first store that does not behave as [`JobStore`] documents.
pub fn run(mut make: impl FnMut() -> Box<dyn JobStore>) {
    stores_jobs_and_executions(make());
    lists_jobs_in_byte_order_of_ids(make());
    rollouts_are_replaced_and_removed(make());
    deleting_absent_records_is_ok(make());
    creating_an_execution_twice_keeps_the_first(make());
}

/// Checks that stores from `open` (the same storage on every call, empty on the first) see
/// what a store opened before them stored.
pub fn reopen(mut open: impl FnMut() -> Box<dyn JobStore>) {
    {
        let mut store = open();
        assert_eq!(
            store.list_jobs().expect("list"),
            vec![],
            "the first open is empty"
        );
        store
            .put_job(&Job::new(id("a"), "{}", vec!["t".into()], 1))
            .expect("put");
        store
            .put_job(&Job::new(id("b"), "{}", vec!["t".into()], 2))
            .expect("put");
        store
            .put_execution(&JobExecution::queued(id("b"), "t", 1, None, 2))
            .expect("put");
        store
            .put_execution(&JobExecution::queued(id("b"), "u", 1, None, 2))
            .expect("put");
        store
            .put_rollout(&id("b"), &["v".into(), "w".into()])
            .expect("put");
        store.delete_job(&id("a")).expect("delete");
    }
    let store = open();
    assert_eq!(store.list_jobs().expect("list").len(), 1);
    assert_eq!(store.executions_of_job(&id("b")).expect("list").len(), 2);
    assert_eq!(store.executions_of_thing("u").expect("list").len(), 1);
    assert_eq!(store.rollout(&id("b")).expect("rollout"), ["v", "w"]);
}

fn id(s: &str) -> JobId {
    JobId::new(s).expect("a valid conformance job id")
}

fn stores_jobs_and_executions(mut store: Box<dyn JobStore>) {
    assert_eq!(store.get_job(&id("a")).expect("get"), None);
    let mut job = Job::new(id("a"), r#"{"x":1}"#, vec!["t1".into()], 5);
    job.description = Some("first".into());
    store.put_job(&job).expect("put");
    store
        .put_job(&Job::new(id("b"), "{}", vec!["g".into()], 6))
        .expect("put");
    assert_eq!(store.get_job(&id("a")).expect("get"), Some(job.clone()));
    let listed: Vec<String> = store
        .list_jobs()
        .expect("list")
        .iter()
        .map(|j| j.job_id.to_string())
        .collect();
    assert_eq!(listed, ["a", "b"]);

    // Things whose names share prefixes must not leak into each other's range.
    for (thing, job) in [("t1", "a"), ("t1", "b"), ("t10", "a"), ("t", "b")] {
        store
            .put_execution(&JobExecution::queued(id(job), thing, 1, Some(3), 7))
            .expect("put");
    }
    let of_t1: Vec<String> = store
        .executions_of_thing("t1")
        .expect("list")
        .iter()
        .map(|e| e.job_id.to_string())
        .collect();
    assert_eq!(of_t1, ["a", "b"]);
    assert_eq!(store.executions_of_thing("nobody").expect("list"), vec![]);
    let of_a: Vec<String> = store
        .executions_of_job(&id("a"))
        .expect("list")
        .iter()
        .map(|e| e.thing_name.clone())
        .collect();
    assert_eq!(of_a, ["t1", "t10"]);

    // Replacing an execution keeps one record.
    let mut e = store
        .get_execution("t1", &id("a"))
        .expect("get")
        .expect("present");
    e.status = ExecutionStatus::InProgress;
    e.version_number = 2;
    store.put_execution(&e).expect("put");
    assert_eq!(store.get_execution("t1", &id("a")).expect("get"), Some(e));
    assert_eq!(store.executions_of_job(&id("a")).expect("list").len(), 2);

    // Deleting one execution removes it from both listings.
    store.delete_execution("t", &id("b")).expect("delete");
    assert_eq!(store.get_execution("t", &id("b")).expect("get"), None);
    assert_eq!(store.executions_of_thing("t").expect("list"), vec![]);
    assert_eq!(store.executions_of_job(&id("b")).expect("list").len(), 1);

    // Deleting a job removes its executions and nothing else.
    store.delete_job(&id("a")).expect("delete");
    assert_eq!(store.get_job(&id("a")).expect("get"), None);
    assert_eq!(store.executions_of_job(&id("a")).expect("list"), vec![]);
    assert_eq!(store.get_execution("t10", &id("a")).expect("get"), None);
    assert_eq!(store.executions_of_thing("t1").expect("list").len(), 1);
    assert_eq!(store.executions_of_job(&id("b")).expect("list").len(), 1);
    assert!(store.get_job(&id("b")).expect("get").is_some());
}

fn lists_jobs_in_byte_order_of_ids(mut store: Box<dyn JobStore>) {
    let ids = ["b", "B", "a-1", "a", "a_1", "Z9", "0", "aa"];
    for (n, i) in ids.iter().enumerate() {
        store
            .put_job(&Job::new(id(i), "{}", vec!["t".into()], n as u64))
            .expect("put");
        store
            .put_execution(&JobExecution::queued(id(i), "thing", 1, None, 1))
            .expect("put");
        store
            .put_execution(&JobExecution::queued(id("a"), *i, 1, None, 1))
            .expect("put");
    }
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    let listed: Vec<String> = store
        .list_jobs()
        .expect("list")
        .iter()
        .map(|j| j.job_id.to_string())
        .collect();
    assert_eq!(listed, sorted, "list_jobs goes in id byte order");
    let of_thing: Vec<String> = store
        .executions_of_thing("thing")
        .expect("list")
        .iter()
        .map(|e| e.job_id.to_string())
        .collect();
    assert_eq!(
        of_thing, sorted,
        "executions_of_thing goes in job id byte order"
    );
    let of_job: Vec<String> = store
        .executions_of_job(&id("a"))
        .expect("list")
        .iter()
        .map(|e| e.thing_name.clone())
        .collect();
    let mut things: Vec<&str> = ids.iter().copied().chain(["thing"]).collect();
    things.sort_unstable();
    assert_eq!(of_job, things, "executions_of_job goes in thing byte order");
}

fn rollouts_are_replaced_and_removed(mut store: Box<dyn JobStore>) {
    assert_eq!(
        store.rollout(&id("j")).expect("rollout"),
        Vec::<String>::new()
    );
    let things: Vec<String> = (0..2000).map(|i| format!("thing-{i}")).collect();
    store.put_rollout(&id("j"), &things).expect("put");
    assert_eq!(
        store.rollout(&id("j")).expect("rollout"),
        things,
        "in rollout order"
    );
    store
        .put_rollout(&id("j"), &["z".into(), "a".into()])
        .expect("put");
    assert_eq!(store.rollout(&id("j")).expect("rollout"), ["z", "a"]);
    store.put_rollout(&id("j"), &[]).expect("put");
    assert_eq!(
        store.rollout(&id("j")).expect("rollout"),
        Vec::<String>::new()
    );
    store.put_rollout(&id("k"), &["x".into()]).expect("put");
    store
        .put_job(&Job::new(id("k"), "{}", vec!["x".into()], 1))
        .expect("put");
    store.delete_job(&id("k")).expect("delete");
    assert_eq!(
        store.rollout(&id("k")).expect("rollout"),
        Vec::<String>::new(),
        "deleting a job removes its rollout"
    );
}

fn deleting_absent_records_is_ok(mut store: Box<dyn JobStore>) {
    store.delete_job(&id("none")).expect("delete an absent job");
    store
        .delete_execution("nobody", &id("none"))
        .expect("delete an absent execution");
    assert_eq!(store.list_jobs().expect("list"), vec![]);
}

fn creating_an_execution_twice_keeps_the_first(mut store: Box<dyn JobStore>) {
    let first = JobExecution::queued(id("j"), "t", 1, None, 10);
    assert!(store.create_execution(&first).expect("create"), "created");
    let mut second = JobExecution::queued(id("j"), "t", 1, None, 20);
    second.status = ExecutionStatus::InProgress;
    assert!(
        !store.create_execution(&second).expect("create"),
        "an execution of the job on the thing exists"
    );
    assert_eq!(
        store.get_execution("t", &id("j")).expect("get"),
        Some(first),
        "the first execution is kept"
    );
    assert_eq!(store.executions_of_job(&id("j")).expect("list").len(), 1);
}
