//! Job ownership on PostgreSQL: [`PgJobLease`] grants each job to one server at a time and
//! hands it over when its holder's lease expired; [`PgJobStore::create_execution`] creates an
//! execution once however many servers race; and two engines on one schema pace a rollout
//! once between them.
//!
//! Ignored by default; run with a server (see `.ci/postgres`):
//!
//! ```text
//! .ci/postgres start
//! THINGKIT_TEST_POSTGRES=$(.ci/postgres url) cargo test -p thingkit-cluster --test job_lease -- --ignored
//! ```

use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thingkit_cluster::{PgJobLease, PgJobStore, PostgresConfig};
use thingkit_jobs::job::RolloutConfig;
use thingkit_jobs::{Job, JobExecution, JobId, JobStore, Jobs, Limits, PacingLease};

const ENV: &str = "THINGKIT_TEST_POSTGRES";

fn config(test: &str) -> PostgresConfig {
    let url = match std::env::var(ENV) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{ENV} is not set: these tests need PostgreSQL. Start one with `.ci/postgres start` \
             and run `{ENV}=$(.ci/postgres url) cargo test -p thingkit-cluster -- --ignored`"
        ),
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000_000)
        .unwrap_or(0);
    PostgresConfig::new(url).with_schema(format!("tk_lease_{test}_{}_{nanos}", std::process::id()))
}

fn id(s: &str) -> JobId {
    JobId::new(s).expect("valid job id")
}

fn lease(config: &PostgresConfig, owner: &str) -> PgJobLease {
    PgJobLease::open(config, owner, Duration::from_secs(15)).expect("open the lease")
}

#[test]
#[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
fn two_lease_holders_racing_for_one_job_exactly_one_wins() {
    let config = config("race");
    let holders = ["server-a", "server-b"];
    let mut leases: Vec<PgJobLease> = holders.iter().map(|h| lease(&config, h)).collect();
    for round in 0..20 {
        let job = id(&format!("job-{round}"));
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = leases
            .drain(..)
            .map(|mut lease| {
                let barrier = barrier.clone();
                let job = job.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    let held = lease.hold(std::slice::from_ref(&job), 1000).expect("hold");
                    (lease, held.contains(&job))
                })
            })
            .collect();
        let results: Vec<(PgJobLease, bool)> = handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect();
        let winners: Vec<&str> = results
            .iter()
            .filter(|(_, won)| *won)
            .map(|(l, _)| l.owner())
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        // The winner renews; the loser is still refused while the lease runs.
        for (lease, won) in &results {
            let mut lease =
                PgJobLease::open(&config, lease.owner(), Duration::from_secs(15)).expect("reopen");
            let held = lease.hold(std::slice::from_ref(&job), 1005).expect("hold");
            assert_eq!(
                held.contains(&job),
                *won,
                "round {round}, {}",
                lease.owner()
            );
        }
        leases = results.into_iter().map(|(l, _)| l).collect();
    }
}

#[test]
#[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
fn an_expired_lease_hands_the_job_over_and_a_released_one_is_free_at_once() {
    let config = config("expiry");
    let mut a = lease(&config, "server-a");
    let mut b = lease(&config, "server-b");
    let jobs = [id("one"), id("two")];
    assert_eq!(a.hold(&jobs, 100).expect("hold").len(), 2);
    assert!(
        b.hold(&jobs, 114).expect("hold").is_empty(),
        "a's leases run to 115"
    );
    // a renews "one" only; "two" expires at 115 and b takes it.
    assert_eq!(a.hold(&jobs[..1], 110).expect("hold").len(), 1);
    let held = b.hold(&jobs, 115).expect("hold");
    assert_eq!(held.into_iter().collect::<Vec<_>>(), vec![id("two")]);
    assert!(
        !a.hold(&jobs, 116).expect("hold").contains(&id("two")),
        "b holds two now"
    );
    // Releasing a job another holds does nothing; the holder's release frees it at once.
    a.release(&id("two")).expect("release");
    assert!(!a.hold(&jobs[1..], 117).expect("hold").contains(&id("two")));
    b.release(&id("two")).expect("release");
    assert!(a.hold(&jobs[1..], 118).expect("hold").contains(&id("two")));
    assert_eq!(a.renew_every(), Some(5));
}

#[test]
#[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
fn servers_racing_to_create_one_execution_create_it_once() {
    let config = config("create");
    for round in 0..10 {
        let barrier = Arc::new(Barrier::new(3));
        let handles: Vec<_> = (0..3)
            .map(|server| {
                let mut store = PgJobStore::open(&config).expect("open");
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let mut e =
                        JobExecution::queued(id("ota"), format!("dev-{round}"), 1, None, 100);
                    e.queued_at += server; // each server's record differs
                    barrier.wait();
                    store.create_execution(&e).expect("create")
                })
            })
            .collect();
        let created = handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .filter(|c| *c)
            .count();
        assert_eq!(created, 1, "round {round}");
    }
    let store = PgJobStore::open(&config).expect("open");
    assert_eq!(store.executions_of_job(&id("ota")).expect("list").len(), 10);
}

#[test]
#[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
fn two_engines_on_one_schema_pace_a_rollout_once_and_hand_it_over() {
    let config = config("engines");
    let open = |owner: &str| {
        Jobs::open_with(
            PgJobStore::open(&config).expect("open"),
            Limits::default(),
            Box::new(lease(&config, owner)),
            0,
        )
        .expect("open the engine")
    };
    let mut a = open("server-a");
    let mut b = open("server-b");
    let targets: Vec<String> = (0..3).map(|i| format!("dev-{i}")).collect();
    let mut job = Job::new(id("paced"), r#"{"op":"update"}"#, targets.clone(), 0);
    job.rollout = Some(RolloutConfig {
        maximum_per_minute: Some(1),
        exponential_rate: None,
    });
    a.create_job(job, &targets, 0).expect("created");
    let notify_next = |out: &[thingkit_jobs::OutMessage]| {
        out.iter()
            .filter(|m| m.topic.ends_with("/notify-next"))
            .count()
    };
    let (mut by_a, mut by_b) = (0, 0);
    for now in (3..=60).step_by(3) {
        by_a += notify_next(&a.tick(now).expect("tick a"));
        by_b += notify_next(&b.tick(now).expect("tick b"));
    }
    assert_eq!((by_a, by_b), (1, 0), "A paces the job it created");
    drop(a); // kill -9: its leases expire 15 s after its last renewal
    for now in (63..=150).step_by(3) {
        by_b += notify_next(&b.tick(now).expect("tick b"));
    }
    assert_eq!(
        by_b, 1,
        "B took the rollout over and notified the last thing"
    );
    let store = PgJobStore::open(&config).expect("open");
    assert_eq!(
        store.executions_of_job(&id("paced")).expect("list").len(),
        3
    );
}
