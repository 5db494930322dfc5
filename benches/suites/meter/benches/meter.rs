//! thingkit-meter hot path vs governor 0.10, same process, same keys.
//!
//! - `record_1m/*`: one message's rate-limit check (+ metering for thingkit's connection table)
//!   with 1,000,000 devices tracked, single thread, devices visited in sequential and in
//!   shuffled order. The same permutation picks governor's key and thingkit's connection
//!   handle (which holds the device's inbound state, so in shuffled order each call starts
//!   with a cold handle: the pessimistic case, as a broker that has just read the connection's
//!   socket usually has its handle in cache).
//! - `scaling/*`: the same work split over 1 and 2 threads (disjoint key halves), throughput.
//! - `account_100/*`: an account-level limit on 100 hot keys: keyed checks (ours and governor's),
//!   and the pre-resolved forms (our `check_handle`, governor's direct limiter per account).
//! - Bytes of state per device are measured with the counting allocator and printed first.
//!
//! Run: cargo bench --manifest-path benches/Cargo.toml -p thingkit-bench-meter

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use governor::clock::FakeRelativeClock;
use governor::state::keyed::DashMapStateStore;
use governor::{DefaultKeyedRateLimiter, Quota};
use thingkit_bench_support::{CountingAlloc, live_bytes};
use thingkit_meter::MeteringPolicy;
use thingkit_meter::{Connection, ConnectionTable};
use thingkit_meter::{LimiterConfig, Nanos, RateLimiter, RateLimits};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const DEVICES: usize = 1_000_000;
const MESSAGE_BYTES: u64 = 200;

fn table_with_devices() -> (ConnectionTable, Vec<Connection>) {
    let table = ConnectionTable::new(
        MeteringPolicy::aws(),
        &RateLimits::aws_connection(),
        DEVICES,
    )
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
    RateLimiter::new(
        LimiterConfig::default()
            .with_default(RateLimits::aws_connection())
            .with_max_keys(2 * DEVICES)
            .with_idle_after(Duration::from_secs(60)),
    )
    .expect("valid limiter")
}

fn quota() -> Quota {
    Quota::per_second(NonZeroU32::new(100).expect("nonzero"))
}

/// governor as most users run it: DashMap store, its default (quanta) clock.
fn governor_limiter() -> DefaultKeyedRateLimiter<u64> {
    governor::RateLimiter::keyed(quota())
}

type FakeClockLimiter = governor::RateLimiter<
    u64,
    DashMapStateStore<u64>,
    FakeRelativeClock,
    governor::middleware::NoOpMiddleware<governor::nanos::Nanos>,
>;

/// governor with a manually advanced clock: no clock read per call, like thingkit (the caller
/// passes `now`), so this isolates the keyed-store and GCRA cost.
fn governor_fake_clock() -> (FakeClockLimiter, FakeRelativeClock) {
    let clock = FakeRelativeClock::default();
    let limiter = governor::RateLimiter::new(quota(), DashMapStateStore::default(), clock.clone());
    (limiter, clock)
}

/// Shuffles `v` with a fixed pseudo-random permutation (xorshift-driven Fisher-Yates).
fn shuffle<T>(v: &mut [T]) {
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..v.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.swap(i, (s % (i as u64 + 1)) as usize);
    }
}

/// A fixed pseudo-random permutation of 0..n.
fn shuffled(n: usize) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    shuffle(&mut v);
    v
}

fn per_device(before: u64, after: u64) -> f64 {
    after.saturating_sub(before) as f64 / DEVICES as f64
}

fn report_memory() {
    let before = live_bytes();
    let (table, conns) = table_with_devices();
    let with_handles = live_bytes();
    // Dropping the handles (without disconnecting) leaves exactly the table's own memory.
    drop(conns);
    let table_only = live_bytes();
    let table_bytes = per_device(before, table_only);
    let inbound = thingkit_meter::INBOUND_BYTES as f64;
    println!(
        "state per device: thingkit {:.1} B = ConnectionTable {:.1} B (outbound slot {} B) + inbound state inside the handle {} B; the rest of the handle (identity: table id, slot, connect time, account and device names) {:.1} B",
        table_bytes + inbound,
        table_bytes,
        thingkit_meter::SLOT_BYTES,
        thingkit_meter::INBOUND_BYTES,
        per_device(table_only, with_handles) - inbound,
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

    let (table, mut conns) = table_with_devices();
    let ours = thingkit_limiter();
    let gov = governor_limiter();
    let (gov_fake, clock) = governor_fake_clock();
    for k in 0..DEVICES as u64 {
        let _ = ours.check_key(&k, MESSAGE_BYTES, Nanos(1));
        let _ = gov.check_key(&k);
        let _ = gov_fake.check_key(&k);
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
                    &mut conns[pick(i)],
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
        let mut i = 0usize;
        group.bench_function(
            BenchmarkId::new("governor_fake_clock_check_key", name),
            |b| {
                b.iter(|| {
                    i += 1;
                    if i & 1023 == 0 {
                        // 1 µs per message on average, as for thingkit.
                        clock.advance(Duration::from_micros(1024));
                    }
                    let key = pick(i) as u64;
                    black_box(gov_fake.check_key(&key).is_ok())
                })
            },
        );
    }
    group.finish();
}

fn scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("scaling");
    group.sample_size(15);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    let (table, mut conns) = table_with_devices();
    // Simulated time only moves forward across samples, so every check takes the allowed path.
    let mut next_base = 1_000_000_000u64;
    let (gov, clock) = governor_fake_clock();
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
                    let base = next_base;
                    next_base += (per as u64 + 1) * 1000;
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        // Each thread owns its half of the connections (`&mut Connection`).
                        for chunk in conns.chunks_mut(DEVICES / threads) {
                            let table = &table;
                            s.spawn(move || {
                                let len = chunk.len();
                                for i in 0..per {
                                    black_box(table.record_publish(
                                        &mut chunk[i % len],
                                        MESSAGE_BYTES,
                                        false,
                                        Nanos(base + i as u64 * 1000),
                                    ))
                                    .ok();
                                }
                            });
                        }
                    });
                    // Wall time for `iters` operations in total, so throughput adds up over threads.
                    start.elapsed()
                })
            },
        );
        group.bench_function(
            BenchmarkId::new("governor_fake_clock_check_key", threads),
            |b| {
                b.iter_custom(|iters| {
                    let per = iters as usize / threads + 1;
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for t in 0..threads {
                            let (gov, clock) = (&gov, &clock);
                            s.spawn(move || {
                                let half = DEVICES / threads;
                                for i in 0..per {
                                    if i & 1023 == 0 && t == 0 {
                                        clock.advance(Duration::from_micros(1024));
                                    }
                                    let key = (t * half + i % half) as u64;
                                    black_box(gov.check_key(&key).is_ok());
                                }
                            });
                        }
                    });
                    // Wall time for `iters` operations in total, so throughput adds up over threads.
                    start.elapsed()
                })
            },
        );
    }
    group.finish();
}

/// Account-level limits as a broker checks them on every message: a few hot keys (100
/// account names, `Arc<str>` as the thingkit broker uses), so hashing, locking and the atomic
/// update are the cost, not cache misses.
fn hot_keys(c: &mut Criterion) {
    let mut group = c.benchmark_group("account_100");
    group.sample_size(30);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    let accounts: Vec<std::sync::Arc<str>> = (0..100)
        .map(|i| std::sync::Arc::from(format!("account-{i:04}").as_str()))
        .collect();
    let ours = RateLimiter::<std::sync::Arc<str>>::new(
        LimiterConfig::default()
            .with_default(RateLimits::aws_account_publish())
            .with_max_keys(1000)
            .with_idle_after(Duration::from_secs(60)),
    )
    .expect("valid limiter");
    let clock = FakeRelativeClock::default();
    let gov: governor::RateLimiter<
        std::sync::Arc<str>,
        DashMapStateStore<std::sync::Arc<str>>,
        FakeRelativeClock,
        governor::middleware::NoOpMiddleware<governor::nanos::Nanos>,
    > = governor::RateLimiter::new(
        Quota::per_second(NonZeroU32::new(20_000).expect("nonzero")),
        DashMapStateStore::default(),
        clock.clone(),
    );
    let mut i = 0usize;
    group.bench_function("thingkit_check_key", |b| {
        b.iter(|| {
            i += 1;
            black_box(ours.check_key(
                &accounts[i % 100],
                MESSAGE_BYTES,
                Nanos(1_000_000_000 + i as u64 * 1000),
            ))
        })
    });
    // The broker resolves the account's handle once, when a device connects.
    let handles: Vec<_> = accounts
        .iter()
        .map(|a| ours.handle(a, Nanos(1)).expect("below the cap"))
        .collect();
    let mut i = 0usize;
    group.bench_function("thingkit_check_handle", |b| {
        b.iter(|| {
            i += 1;
            black_box(ours.check_handle(
                &handles[i % 100],
                MESSAGE_BYTES,
                Nanos(1_000_000_000 + i as u64 * 1000),
            ))
        })
    });
    let mut i = 0usize;
    group.bench_function("governor_fake_clock_check_key", |b| {
        b.iter(|| {
            i += 1;
            if i & 1023 == 0 {
                clock.advance(Duration::from_micros(1024));
            }
            black_box(gov.check_key(&accounts[i % 100]).is_ok())
        })
    });
    // Like for like with `check_handle`: governor's direct (un-keyed) limiter is its form of a
    // limiter resolved once per account, with no key lookup per check.
    let direct: Vec<_> = accounts
        .iter()
        .map(|_| {
            governor::RateLimiter::direct_with_clock(
                Quota::per_second(NonZeroU32::new(20_000).expect("nonzero")),
                clock.clone(),
            )
        })
        .collect();
    // Like for like also means both sides admit: over the same 100,000 checks (1 µs apart, so
    // each account sees 10,000/s of its 20,000/s), every one must pass on both sides, or one
    // side would be timing its cheaper refusal path.
    let (mut ours_allowed, mut theirs_allowed) = (0, 0);
    for k in 0..100_000usize {
        let now = Nanos(1_000_000_000_000_000 + k as u64 * 1000);
        ours_allowed += usize::from(
            ours.peek_handle(&handles[k % 100], MESSAGE_BYTES, now)
                .expect("own handle")
                .is_allowed(),
        );
        if k % 1000 == 0 {
            clock.advance(Duration::from_millis(1));
        }
        theirs_allowed += usize::from(direct[k % 100].check().is_ok());
    }
    println!(
        "account_100: admitted of 100,000: thingkit {ours_allowed}, governor {theirs_allowed}"
    );
    assert_eq!(
        (ours_allowed, theirs_allowed),
        (100_000, 100_000),
        "both sides admit"
    );
    let mut i = 0usize;
    group.bench_function("governor_fake_clock_direct_check", |b| {
        b.iter(|| {
            i += 1;
            if i & 1023 == 0 {
                clock.advance(Duration::from_micros(1024));
            }
            black_box(direct[i % 100].check().is_ok())
        })
    });
    group.finish();
}

fn main() {
    report_memory();
    let mut c = Criterion::default().configure_from_args();
    hot_keys(&mut c);
    record_1m(&mut c);
    scaling(&mut c);
    c.final_summary();
}
