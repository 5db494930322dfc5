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
//!
//! Run: cargo bench --manifest-path benches/Cargo.toml -p thingkit-bench-jobs

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput};
use thingkit_jobs::rollout::{
    AbortConfig, AbortCriterion, AbortFailureType, ExponentialRate, Percentage,
    RateIncreaseCriteria, RolloutConfig, StepTimeout, TimeoutConfig,
};
use thingkit_jobs::schedule::{JobPlan, Pacer, Report};

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

fn main() {
    let mut c = Criterion::default().configure_from_args();
    notify_1m(&mut c);
    c.final_summary();
    rollout_100k();
}
