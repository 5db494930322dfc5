//! thingkit-jobs: the rollout pacer at scale.
//!
//! - `notify_1m/pacer`: one job with 1,000,000 things queued at 1000 per minute; one iteration is a
//!   minute: `due` notifies 1000 things, each reports IN_PROGRESS (a 10-minute timer starts) and
//!   SUCCEEDED (the timer stops, counts and abort criteria are updated), and is enqueued again so
//!   the queue stays at 1,000,000; `expire` runs once per minute as a driver would. Throughput is
//!   per notified device.
//! - `notify_1m/fifo_floor`: the same 1000 things popped from and pushed back onto a 1,000,000-entry
//!   `VecDeque` — the least any FIFO rollout queue must do per device.
//! - `rollout_100k` (printed, not criterion): a full simulated rollout to 100,000 devices with the
//!   guide's exponential rate (base 50, factor 2, +1 step per 1000 notified, max 1000), a 10-minute
//!   in-progress timeout, 95% succeed, 3% fail, 2% never answer and time out, and an abort criterion
//!   {ALL, 20%, min 1000} that does not fire: wall time and simulated minutes.
//!   JOBS_BENCH_DEVICES overrides 100,000; 0 skips it.
//! - `engine_100k` (printed): the same rollout through the whole engine, `Jobs` on the in-memory
//!   store: CreateJob with 100,000 resolved things, `tick` once per simulated minute, and every
//!   device answering over the device MQTT API as JSON (`start-next`, then `update` SUCCEEDED or
//!   FAILED; 2 % never answer and time out through `tick`). Wall time per device, including
//!   parsing requests and rendering every accepted answer and notification.
//! - `engine_1m` (printed): `Jobs` on the memory store with a job of 1,000,000 things at 1000
//!   per minute: the CreateJob time, then ten simulated minutes in which each of the 1000
//!   things a minute releases answers `start-next` and SUCCEEDED. The cost per notified device
//!   matches `engine_100k`'s when no event scans the job's executions or its queue.
//!   JOBS_BENCH_1M=0 skips it.
//! - `engine_redb` (printed): the engine on `RedbJobStore`, where each accepted change is one
//!   durable redb commit, for JOBS_BENCH_REDB_DEVICES devices (2,000 by default); next to it
//!   the floor measured in the same run: one redb commit with `Durability::Immediate` of an
//!   execution-sized record. A device costs about three such commits (QUEUED, IN_PROGRESS,
//!   terminal).
//!
//! Run: cargo bench --manifest-path benches/Cargo.toml -p thingkit-bench-jobs

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput};
use thingkit_jobs::job::{
    AbortAction, AbortConfig as WireAbort, AbortCriteria, ExponentialRate as WireExponential,
    FailureType, RateIncreaseCriteria as WireCriteria, RolloutConfig as WireRollout,
    TimeoutConfig as WireTimeout,
};
use thingkit_jobs::rollout::{
    AbortConfig, AbortCriterion, AbortFailureType, ExponentialRate, Percentage,
    RateIncreaseCriteria, RolloutConfig, StepTimeout, TimeoutConfig,
};
use thingkit_jobs::schedule::{JobPlan, Pacer, Report};
use thingkit_jobs::{Job, JobId, JobStore, Jobs, Limits, MemoryJobStore, RedbJobStore};

const TARGETS: u32 = 1_000_000;
const T0: u64 = 1_700_000_000;

fn notify_1m(c: &mut Criterion) {
    let mut group = c.benchmark_group("notify_1m");
    group.throughput(Throughput::Elements(1000));

    let mut pacer: Pacer<u32, u32> = Pacer::new();
    let plan = JobPlan {
        rollout: RolloutConfig::constant(1000).expect("1000 is a valid rate"),
        abort: None,
        timeout: TimeoutConfig::new(Some(10)).expect("10 minutes is a valid timeout"),
    };
    pacer.add_job(1, plan, T0).expect("new job");
    for thing in 0..TARGETS {
        pacer.enqueue(&1, thing, T0).expect("known job");
    }
    let mut now = T0;
    group.bench_function("pacer", |b| {
        b.iter(|| {
            let expired = pacer.expire(now);
            debug_assert!(expired.timed_out.is_empty());
            let batch = pacer.due(now);
            for n in &batch {
                let _ =
                    pacer.record_outcome(&1, &n.thing, Report::InProgress(StepTimeout::Keep), now);
                let _ = pacer.record_outcome(&1, &n.thing, Report::Succeeded, now + 30);
            }
            for n in batch {
                let _ = pacer.enqueue(&1, n.thing, now);
            }
            now += 60;
        });
    });

    let mut fifo: VecDeque<u32> = (0..TARGETS).collect();
    group.bench_function("fifo_floor", |b| {
        b.iter(|| {
            for _ in 0..1000 {
                let t = fifo.pop_front().expect("never empty");
                fifo.push_back(black_box(t));
            }
        });
    });
    group.finish();
}

fn rollout_100k() {
    let devices: u32 = std::env::var("JOBS_BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    if devices == 0 {
        return;
    }
    let rollout = RolloutConfig::exponential(
        ExponentialRate::new(
            50,
            20,
            RateIncreaseCriteria {
                number_of_notified_things: Some(1000),
                number_of_succeeded_things: None,
            },
        )
        .expect("guide config"),
        Some(1000),
    )
    .expect("guide config");
    let abort = AbortConfig::new(vec![
        AbortCriterion::new(
            AbortFailureType::All,
            Percentage::from_hundredths(2000).expect("20%"),
            1000,
        )
        .expect("valid criterion"),
    ])
    .expect("one criterion");
    let plan = JobPlan {
        rollout,
        abort: Some(abort),
        timeout: TimeoutConfig::new(Some(10)).expect("10 minutes"),
    };

    let start = Instant::now();
    let mut pacer: Pacer<u32, u32> = Pacer::new();
    pacer.add_job(7, plan, T0).expect("new job");
    for thing in 0..devices {
        pacer.enqueue(&7, thing, T0).expect("known job");
    }
    let mut minute = 0u64;
    let mut timed_out = 0usize;
    loop {
        let now = T0 + minute * 60;
        timed_out += pacer.expire(now).timed_out.len();
        let batch = pacer.due(now);
        for n in &batch {
            let _ = pacer.record_outcome(&7, &n.thing, Report::InProgress(StepTimeout::Keep), now);
            let report = match n.thing % 100 {
                0..=94 => Some(Report::Succeeded),
                95..=97 => Some(Report::Failed),
                _ => None, // never answers: times out
            };
            if let Some(r) = report {
                let _ = pacer.record_outcome(&7, &n.thing, r, now + 20);
            }
        }
        if pacer.queued(&7) == Some(0) && pacer.next_wakeup().is_none() {
            break;
        }
        minute += 1;
    }
    let wall = start.elapsed();
    let counts = pacer.counts(&7).expect("known job");
    println!(
        "rollout_100k: {devices} devices, {minute} simulated minutes, {} succeeded, {} failed, \
         {timed_out} timed out, status {:?}; wall {:.1} ms ({:.0} ns per device)",
        counts.succeeded,
        counts.failed,
        pacer.status(&7),
        wall.as_secs_f64() * 1e3,
        wall.as_nanos() as f64 / f64::from(devices),
    );
}

/// The guide's exponential job (as the control plane receives it) on `things`.
fn guide_job(things: &[String]) -> Job {
    let mut job = Job::new(
        JobId::new("ota").expect("valid id"),
        r#"{"operation":"install","version":"2.0.0"}"#,
        vec!["arn:aws:iot:eu-central-1:123456789012:thinggroup/fleet".into()],
        T0,
    );
    // The targets are what CreateJob was given (one group ARN); `things` are what it resolved to.
    let _ = things;
    job.rollout = Some(WireRollout {
        maximum_per_minute: Some(1000),
        exponential_rate: Some(WireExponential {
            base_rate_per_minute: 50,
            increment_factor: 2.0,
            rate_increase_criteria: WireCriteria {
                number_of_notified_things: Some(1000),
                number_of_succeeded_things: None,
            },
        }),
    });
    job.abort = Some(WireAbort {
        criteria_list: vec![AbortCriteria {
            failure_type: FailureType::All,
            action: AbortAction::Cancel,
            threshold_percentage: 20.0,
            min_number_of_executed_things: 1000,
        }],
    });
    job.timeout = Some(WireTimeout {
        in_progress_timeout_in_minutes: 10,
    });
    job
}

/// Runs the guide's rollout through `jobs` until nothing is left; returns (minutes, requests).
fn run_engine<S: JobStore>(jobs: &mut Jobs<S>, things: &[String]) -> (u64, u64) {
    let notified = |out: &[thingkit_jobs::OutMessage]| -> Vec<String> {
        out.iter()
            .filter(|m| m.topic.ends_with("/jobs/notify-next") && m.payload.len() > 40)
            .map(|m| {
                m.topic["$aws/things/".len()..m.topic.len() - "/jobs/notify-next".len()].to_owned()
            })
            .collect()
    };
    let mut batch = notified(
        &jobs
            .create_job(guide_job(things), things, T0)
            .expect("created"),
    );
    let mut minute = 0u64;
    let mut requests = 0u64;
    loop {
        let now = T0 + minute * 60;
        for thing in &batch {
            let n: u32 = thing[4..].parse().expect("dev-N");
            jobs.request(&format!("$aws/things/{thing}/jobs/start-next"), b"{}", now)
                .expect("a request topic");
            requests += 1;
            let status = match n % 100 {
                0..=94 => "SUCCEEDED",
                95..=97 => "FAILED",
                _ => continue, // never answers: times out
            };
            jobs.request(
                &format!("$aws/things/{thing}/jobs/ota/update"),
                format!(r#"{{"status":"{status}","statusDetails":{{"reason":"bench"}}}}"#)
                    .as_bytes(),
                now + 20,
            )
            .expect("a request topic");
            requests += 1;
        }
        minute += 1;
        let out = jobs.tick(T0 + minute * 60).expect("tick");
        batch = notified(&out);
        if batch.is_empty() && jobs.next_wakeup().is_none() {
            break;
        }
    }
    (minute, requests)
}

fn engine_100k() {
    let devices: usize = std::env::var("JOBS_BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    if devices == 0 {
        return;
    }
    let things: Vec<String> = (0..devices).map(|i| format!("dev-{i}")).collect();
    let start = Instant::now();
    let mut jobs = Jobs::new(MemoryJobStore::new(), Limits::default());
    let (minutes, requests) = run_engine(&mut jobs, &things);
    let wall = start.elapsed();
    let d = jobs
        .process_details(&JobId::new("ota").expect("valid"))
        .expect("job");
    println!(
        "engine_100k: {devices} devices through Jobs<MemoryJobStore>, {minutes} simulated minutes, \
         {requests} device requests; {} succeeded, {} failed, {} timed out; wall {:.0} ms \
         ({:.1} µs per device)",
        d.succeeded,
        d.failed,
        d.timed_out,
        wall.as_secs_f64() * 1e3,
        wall.as_secs_f64() * 1e6 / devices as f64,
    );
}

fn engine_1m() {
    if std::env::var("JOBS_BENCH_1M").is_ok_and(|v| v == "0") {
        return;
    }
    let devices = 1_000_000usize;
    let things: Vec<String> = (0..devices).map(|i| format!("dev-{i}")).collect();
    let mut job = guide_job(&things);
    job.rollout = Some(WireRollout {
        maximum_per_minute: Some(1000),
        exponential_rate: None,
    });
    let mut jobs = Jobs::new(MemoryJobStore::new(), Limits::default());
    let start = Instant::now();
    let first = jobs.create_job(job, &things, T0).expect("created");
    let create = start.elapsed();
    drop(things);
    let name = |m: &thingkit_jobs::OutMessage| -> Option<String> {
        (m.topic.ends_with("/jobs/notify-next") && m.payload.len() > 40).then(|| {
            m.topic["$aws/things/".len()..m.topic.len() - "/jobs/notify-next".len()].to_owned()
        })
    };
    let mut batch: Vec<String> = first.iter().filter_map(name).collect();
    let start = Instant::now();
    let mut notified = 0usize;
    for minute in 0..10u64 {
        let now = T0 + minute * 60;
        notified += batch.len();
        for thing in &batch {
            jobs.request(&format!("$aws/things/{thing}/jobs/start-next"), b"{}", now)
                .expect("a request topic");
            jobs.request(
                &format!("$aws/things/{thing}/jobs/ota/update"),
                br#"{"status":"SUCCEEDED"}"#,
                now + 20,
            )
            .expect("a request topic");
        }
        let out = jobs.tick(T0 + (minute + 1) * 60).expect("tick");
        batch = out.iter().filter_map(name).collect();
    }
    let wall = start.elapsed();
    let d = jobs
        .process_details(&JobId::new("ota").expect("valid"))
        .expect("job");
    println!(
        "engine_1m: a job of {devices} things through Jobs<MemoryJobStore>: CreateJob {:.0} ms; \
         10 simulated minutes, {notified} devices notified and answered, {} waiting: wall {:.0} ms \
         ({:.1} µs per notified device)",
        create.as_secs_f64() * 1e3,
        d.waiting,
        wall.as_secs_f64() * 1e3,
        wall.as_secs_f64() * 1e6 / notified as f64,
    );
}

fn engine_redb() {
    let devices: usize = std::env::var("JOBS_BENCH_REDB_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    if devices == 0 {
        return;
    }
    let dir = std::env::temp_dir().join(format!("thingkit-jobs-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // The floor: one durable redb commit of an execution-sized record.
    let floor = {
        let db = redb_floor::open(&dir.join("floor.redb"));
        let record = vec![b'x'; 300];
        let n: u32 = 200;
        let start = Instant::now();
        for i in 0..n {
            redb_floor::commit(&db, u64::from(i), &record);
        }
        start.elapsed() / n
    };
    let things: Vec<String> = (0..devices).map(|i| format!("dev-{i}")).collect();
    let store = RedbJobStore::open(dir.join("jobs.redb")).expect("open");
    let start = Instant::now();
    let mut jobs = Jobs::new(store, Limits::default());
    let (minutes, requests) = run_engine(&mut jobs, &things);
    let wall = start.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    let per_device = wall.as_secs_f64() * 1e6 / devices as f64;
    let floor_us = floor.as_secs_f64() * 1e6;
    println!(
        "engine_redb: {devices} devices through Jobs<RedbJobStore>, {minutes} simulated minutes, \
         {requests} device requests; wall {:.0} ms ({per_device:.0} µs per device); floor: one \
         durable redb commit {floor_us:.0} µs, so {:.1} commits' worth per device",
        wall.as_secs_f64() * 1e3,
        per_device / floor_us,
    );
}

/// One durable redb commit, the physical floor of an acknowledged change.
mod redb_floor {
    use redb::{Database, Durability, TableDefinition};

    const T: TableDefinition<u64, &[u8]> = TableDefinition::new("floor");

    pub fn open(path: &std::path::Path) -> Database {
        Database::create(path).expect("redb")
    }

    pub fn commit(db: &Database, key: u64, value: &[u8]) {
        let mut txn = db.begin_write().expect("txn");
        txn.set_durability(Durability::Immediate)
            .expect("durability");
        {
            let mut t = txn.open_table(T).expect("table");
            t.insert(key, value).expect("insert");
        }
        txn.commit().expect("commit");
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    notify_1m(&mut c);
    c.final_summary();
    rollout_100k();
    engine_100k();
    engine_1m();
    engine_redb();
}
