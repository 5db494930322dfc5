//! thingkit-meter hot path vs governor 0.10, same process, same keys.
//!
//! - `record_1m/*`: one message's rate-limit check (+ metering for thingkit's connection table)
//!   with 1,000,000 devices tracked, single thread, keys visited in sequential and in shuffled
//!   order.
//! - `scaling/*`: the same work split over 1 and 2 threads (disjoint key halves), throughput.
//! - Bytes of state per device are measured with the counting allocator and printed first.
//!
//! Run: cargo bench --manifest-path benches/Cargo.toml -p thingkit-bench-meter

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use governor::{DefaultKeyedRateLimiter, Quota};
use thingkit_bench_support::{CountingAlloc, live_bytes};
use thingkit_meter::limiter::{LimiterConfig, Limits, Nanos, RateLimiter};
use thingkit_meter::meter::{Connection, ConnectionTable};
use thingkit_meter::policy::MeteringPolicy;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const DEVICES: usize = 1_000_000;
const MESSAGE_BYTES: u64 = 200;

fn table_with_devices() -> (ConnectionTable, Vec<Connection>) {
    let table = ConnectionTable::new(MeteringPolicy::aws(), &Limits::aws_connection(), DEVICES)
        .expect("valid table");
    let conns = (0..DEVICES)
        .map(|i| {
            table
                .connect("acme", &format!("device-{i}"), 0)
                .expect("below the cap")
        })
        .collect();
    (table, conns)
}

fn thingkit_limiter() -> RateLimiter<u64> {
    RateLimiter::new(LimiterConfig {
        default: Limits::aws_connection(),
        max_keys: 2 * DEVICES,
        idle_after: Duration::from_secs(60),
    })
    .expect("valid limiter")
}

fn governor_limiter() -> DefaultKeyedRateLimiter<u64> {
    governor::RateLimiter::keyed(Quota::per_second(NonZeroU32::new(100).expect("nonzero")))
}

/// A fixed pseudo-random permutation of 0..n (xorshift-driven Fisher-Yates).
fn shuffled(n: usize) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..n).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.swap(i, (s % (i as u64 + 1)) as usize);
    }
    v
}

fn per_device(before: u64, after: u64) -> f64 {
    after.saturating_sub(before) as f64 / DEVICES as f64
}

fn report_memory() {
    let before = live_bytes();
    let (table, conns) = table_with_devices();
    let with_handles = live_bytes();
    drop(conns);
    println!(
        "state per device: thingkit ConnectionTable hot slot {} B; table incl. registry (account, device names) {:.1} B",
        thingkit_meter::meter::SLOT_BYTES,
        per_device(before, live_bytes().min(with_handles)),
    );
    drop(table);

    let before = live_bytes();
    let ours = thingkit_limiter();
    for k in 0..DEVICES as u64 {
        let _ = ours.check_key(&k, MESSAGE_BYTES, Nanos(1));
    }
    println!(
        "state per device: thingkit RateLimiter<u64> (messages + bytes GCRA) {:.1} B",
        per_device(before, live_bytes())
    );
    drop(ours);

    let before = live_bytes();
    let gov = governor_limiter();
    for k in 0..DEVICES as u64 {
        let _ = gov.check_key(&k);
    }
    println!(
        "state per device: governor DefaultKeyedRateLimiter<u64> (messages only) {:.1} B",
        per_device(before, live_bytes())
    );
}

fn record_1m(c: &mut Criterion) {
    let mut group = c.benchmark_group("record_1m");
    group.sample_size(30);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(1));
    let order_shuffled = shuffled(DEVICES);
    let orders: [(&str, Option<&[u32]>); 2] =
        [("sequential", None), ("shuffled", Some(&order_shuffled))];

    let (table, conns) = table_with_devices();
    let ours = thingkit_limiter();
    let gov = governor_limiter();
    for k in 0..DEVICES as u64 {
        let _ = ours.check_key(&k, MESSAGE_BYTES, Nanos(1));
        let _ = gov.check_key(&k);
    }

    for (name, order) in orders {
        let pick = |i: usize| match order {
            Some(o) => o[i % DEVICES] as usize,
            None => i % DEVICES,
        };
        // Time advances 1 µs per message, so each device sees one message per second: the
        // allowed path, as in steady state.
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("thingkit_connection_table", name), |b| {
            b.iter(|| {
                i += 1;
                let d = table.record_publish(
                    &conns[pick(i)],
                    MESSAGE_BYTES,
                    false,
                    Nanos(1_000_000_000 + i as u64 * 1000),
                );
                black_box(d)
            })
        });
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("thingkit_check_key", name), |b| {
            b.iter(|| {
                i += 1;
                let key = pick(i) as u64;
                black_box(ours.check_key(
                    &key,
                    MESSAGE_BYTES,
                    Nanos(1_000_000_000 + i as u64 * 1000),
                ))
            })
        });
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("governor_check_key", name), |b| {
            b.iter(|| {
                i += 1;
                let key = pick(i) as u64;
                black_box(gov.check_key(&key).is_ok())
            })
        });
    }
    group.finish();
}

fn scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("scaling");
    group.sample_size(15);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    let (table, conns) = table_with_devices();
    let table = Arc::new(table);
    let conns = Arc::new(conns);
    let gov = Arc::new(governor_limiter());
    for k in 0..DEVICES as u64 {
        let _ = gov.check_key(&k);
    }
    for threads in [1usize, 2] {
        group.throughput(Throughput::Elements(1));
        group.bench_function(
            BenchmarkId::new("thingkit_connection_table", threads),
            |b| {
                b.iter_custom(|iters| {
                    let per = iters as usize / threads + 1;
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for t in 0..threads {
                            let (table, conns) = (&table, &conns);
                            s.spawn(move || {
                                let half = DEVICES / threads;
                                for i in 0..per {
                                    let d = t * half + i % half;
                                    black_box(table.record_publish(
                                        &conns[d],
                                        MESSAGE_BYTES,
                                        false,
                                        Nanos(1_000_000_000 + i as u64 * 1000),
                                    ))
                                    .ok();
                                }
                            });
                        }
                    });
                    start.elapsed() / threads as u32
                })
            },
        );
        group.bench_function(BenchmarkId::new("governor_check_key", threads), |b| {
            b.iter_custom(|iters| {
                let per = iters as usize / threads + 1;
                let start = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..threads {
                        let gov = &gov;
                        s.spawn(move || {
                            let half = DEVICES / threads;
                            for i in 0..per {
                                let key = (t * half + i % half) as u64;
                                black_box(gov.check_key(&key).is_ok());
                            }
                        });
                    }
                });
                start.elapsed() / threads as u32
            })
        });
    }
    group.finish();
}

fn main() {
    report_memory();
    let mut c = Criterion::default().configure_from_args();
    record_1m(&mut c);
    scaling(&mut c);
    c.final_summary();
}
