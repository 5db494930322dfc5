//! One conformance suite for every `JobStore`: the memory store and the redb store.

use thingkit_jobs::execution::ExecutionStatus;
use thingkit_jobs::{Job, JobExecution, JobId, JobStore, MemoryJobStore};

fn id(s: &str) -> JobId {
    JobId::new(s).expect("valid job id")
}

fn conformance(store: &mut dyn JobStore) {
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

    // Deleting a job removes its executions and nothing else.
    store.delete_job(&id("a")).expect("delete");
    assert_eq!(store.get_job(&id("a")).expect("get"), None);
    assert_eq!(store.executions_of_job(&id("a")).expect("list"), vec![]);
    assert_eq!(store.get_execution("t10", &id("a")).expect("get"), None);
    assert_eq!(store.executions_of_thing("t1").expect("list").len(), 1);
    assert_eq!(store.executions_of_job(&id("b")).expect("list").len(), 2);
}

#[test]
fn memory_store_passes_the_conformance_suite() {
    conformance(&mut MemoryJobStore::new());
}

#[cfg(feature = "redb")]
#[test]
fn redb_store_passes_the_conformance_suite_and_survives_reopening() {
    use thingkit_jobs::RedbJobStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jobs.redb");
    {
        let mut store = RedbJobStore::open(&path).expect("open");
        conformance(&mut store);
    }
    let store = RedbJobStore::open(&path).expect("reopen");
    assert_eq!(store.list_jobs().expect("list").len(), 1);
    assert_eq!(store.executions_of_job(&id("b")).expect("list").len(), 2);
}
