//! thingkit-meter hot path vs governor 0.10, same process, same keys.
//!
//! The timed rows run in interleaved rounds: every contender runs once per round over the same
//! slice of the same device order, and each row reports the contender's minimum over the
//! rounds (the machine is shared and noisy; the minimum is the least disturbed estimate, and
//! interleaving exposes both sides to the same load).
//!
//! - `batched` (the headline): what a broker does. 1,000,000 connected devices; connections
//!   read batches of 1–8 messages per socket read (a fixed pseudo-random mix, mean 4.5),
//!   devices in shuffled order. thingkit reads the clock once per batch with the broker's
//!   clock source (`Instant::now()` converted to nanoseconds since the broker's start) and
//!   calls `ConnectionTable::record_publish` for each message; governor runs `check_key` with
//!   its default clock, which reads the clock in every call (as governor users run it).
//! - `batched floor`: the headline's batches with no limiter, each message only reading its
//!   device's handle, with and without the broker's clock read per batch: what any per-device
//!   meter pays in this order with that clock.
//! - `batched, no clock read per batch`: the headline with thingkit's time read once per round
//!   (governor unchanged): not what a broker does, nor like for like; it shows the clock's share.
//! - `per_message_clock`: one message per socket read, the clock read for every message on both
//!   sides (thingkit: `Instant::now()`; governor: its default clock), shuffled and sequential.
//! - `manual_clock`: no clock read on either side (thingkit: a synthetic `Nanos`; governor: a
//!   `FakeRelativeClock`), shuffled and sequential: the keyed-store and GCRA cost alone.
//! - Bytes of state per device are measured with the counting allocator and printed first.
//! - With `METER_CRITERION=1`, the older criterion groups also run: `account_100` (an
//!   account-level limit on 100 hot keys) and `scaling` (1 and 2 threads).
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
        .map(|_| table.connect("acme", 0).expect("below the cap"))
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
    let all = per_device(before, live_bytes());
    // Dropping the handles (without disconnecting) leaves exactly the table's own memory.
    drop(conns);
    let table_only = per_device(before, live_bytes());
    println!(
        "state per device, 1,000,000 connected, counting allocator (live bytes): thingkit {all:.1} B all included = ConnectionTable {table_only:.1} B (slot {} B, pages, the one interned account) + Connection handles {:.1} B (STATE_BYTES = {})",
        thingkit_meter::SLOT_BYTES,
        all - table_only,
        thingkit_meter::STATE_BYTES,
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

/// Interleaved rounds per row.
const ROUNDS: usize = 30;
/// Messages each contender handles per round (a slice of the device order; the next round
/// takes the next slice).
const PER_ROUND: usize = 300_000;

/// Runs `ours` and `theirs` once per round, interleaved, each returning its nanoseconds per
/// message for that round; prints the per-contender minimums, their ratio and the range of the
/// per-round ratios.
fn row(
    name: &str,
    ours_label: &str,
    theirs_label: &str,
    mut ours: impl FnMut(usize) -> f64,
    mut theirs: impl FnMut(usize) -> f64,
) {
    let (mut best_ours, mut best_theirs) = (f64::MAX, f64::MAX);
    let (mut lo, mut hi) = (f64::MAX, 0f64);
    for r in 0..ROUNDS {
        let a = ours(r);
        let b = theirs(r);
        best_ours = best_ours.min(a);
        best_theirs = best_theirs.min(b);
        lo = lo.min(b / a);
        hi = hi.max(b / a);
    }
    println!(
        "{name}: {ours_label} {best_ours:.1} ns/msg, {theirs_label} {best_theirs:.1} ns/msg, ratio {:.2}x (min of {ROUNDS} interleaved rounds; per-round ratios {lo:.2}x-{hi:.2}x)",
        best_theirs / best_ours
    );
}

/// Batch sizes of 1 to 8 messages per socket read, a fixed pseudo-random mix (mean 4.5).
fn batch_sizes(n: usize) -> Vec<u8> {
    let mut s: u64 = 0x2545_F491_4F6C_DD1D;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 8) as u8 + 1
        })
        .collect()
}

/// The broker's meter clock: `Instant::now()` as nanoseconds since the broker started
/// (`Shared::nanos_at` in thingkit-broker).
#[inline]
fn broker_clock(epoch: Instant) -> Nanos {
    Nanos(
        u64::try_from(Instant::now().saturating_duration_since(epoch).as_nanos())
            .unwrap_or(u64::MAX),
    )
}

fn interleaved() {
    let order_shuffled = shuffled(DEVICES);
    let order_sequential: Vec<u32> = (0..DEVICES as u32).collect();
    let sizes = batch_sizes(1 << 16);

    // Real-clock contenders: the broker's clock for thingkit, governor's default clock.
    let (table, mut conns) = table_with_devices();
    let gov = governor_limiter();
    for k in 0..DEVICES as u64 {
        let _ = gov.check_key(&k);
    }
    let epoch = Instant::now();
    let (mut ours_allowed, mut theirs_allowed, mut messages) = (0usize, 0usize, 0usize);

    // Headline: batches of 1-8 messages per socket read, one clock read per batch. Then the
    // same batches with thingkit's clock read once per round instead: not what a broker does
    // (it reads the time per socket read), and not like for like (governor still reads its
    // clock per call); it shows how much of the headline is the fenced clock read letting no
    // two batches' cache misses overlap.
    for (name, ours_label, per_batch) in [
        (
            "batched (1-8 msgs per read, 1,000,000 devices shuffled)",
            "thingkit record_publish, clock read once per batch",
            true,
        ),
        (
            "batched, no clock read per batch (1-8 msgs per read, 1,000,000 devices shuffled)",
            "thingkit record_publish, clock read once per round",
            false,
        ),
    ] {
        let order = &order_shuffled;
        let sizes = &sizes;
        // Both sides replay the same batches: round r starts at batch r * (PER_ROUND / 4).
        let start = |r: usize| r * (PER_ROUND / 4);
        row(
            name,
            ours_label,
            "governor check_key, default clock",
            |r| {
                let t = Instant::now();
                let round_now = broker_clock(epoch);
                let (mut b, mut n) = (start(r), 0usize);
                while n < PER_ROUND {
                    let conn = &mut conns[order[b % DEVICES] as usize];
                    let now = if per_batch {
                        broker_clock(epoch)
                    } else {
                        round_now
                    };
                    for _ in 0..sizes[b % sizes.len()] {
                        let d = table.record_publish(conn, MESSAGE_BYTES, false, now);
                        ours_allowed += usize::from(matches!(d, Ok(d) if d.is_allowed()));
                        n += 1;
                    }
                    b += 1;
                }
                messages += n;
                t.elapsed().as_nanos() as f64 / n as f64
            },
            |r| {
                let t = Instant::now();
                let (mut b, mut n) = (start(r), 0usize);
                while n < PER_ROUND {
                    let key = u64::from(order[b % DEVICES]);
                    for _ in 0..sizes[b % sizes.len()] {
                        theirs_allowed += usize::from(gov.check_key(black_box(&key)).is_ok());
                        n += 1;
                    }
                    b += 1;
                }
                t.elapsed().as_nanos() as f64 / n as f64
            },
        );
    }

    // Floors of the headline row: the same batches with no limiter at all, each message only
    // reading its device's handle; once with the broker's clock read per batch, once without.
    // The first is what any per-device meter pays here with the broker's clock; the second
    // shows how much of it is the clock read, which (`lfence; rdtsc` in the vDSO) waits for the
    // handle's cache miss instead of overlapping it with the next batch's.
    {
        let order = &order_shuffled;
        let start = |r: usize| r * (PER_ROUND / 4);
        let (mut with_clock, mut without) = (f64::MAX, f64::MAX);
        for r in 0..ROUNDS {
            for clocked in [true, false] {
                let t = Instant::now();
                let (mut b, mut n, mut acc) = (start(r), 0usize, 0u64);
                while n < PER_ROUND {
                    let conn = &conns[order[b % DEVICES] as usize];
                    let now = if clocked { broker_clock(epoch).0 } else { 0 };
                    for _ in 0..sizes[b % sizes.len()] {
                        acc = acc.wrapping_add(u64::from(conn.slot()) ^ now);
                        n += 1;
                    }
                    b += 1;
                }
                black_box(acc);
                let ns = t.elapsed().as_nanos() as f64 / n as f64;
                if clocked {
                    with_clock = with_clock.min(ns);
                } else {
                    without = without.min(ns);
                }
            }
        }
        println!(
            "batched floor (no limiter; each message reads its device's handle): {with_clock:.1} ns/msg with the broker's clock read once per batch, {without:.1} ns/msg without a clock read (min of {ROUNDS} rounds)"
        );
    }

    // One message per read, the clock read per message on both sides.
    for (label, order) in [
        ("shuffled", &order_shuffled),
        ("sequential", &order_sequential),
    ] {
        let start = |r: usize| r * PER_ROUND;
        row(
            &format!("per_message_clock ({label}, 1,000,000 devices)"),
            "thingkit record_publish, clock read per message",
            "governor check_key, default clock",
            |r| {
                let t = Instant::now();
                for i in start(r)..start(r) + PER_ROUND {
                    let conn = &mut conns[order[i % DEVICES] as usize];
                    let d = table.record_publish(conn, MESSAGE_BYTES, false, broker_clock(epoch));
                    ours_allowed += usize::from(matches!(d, Ok(d) if d.is_allowed()));
                }
                messages += PER_ROUND;
                t.elapsed().as_nanos() as f64 / PER_ROUND as f64
            },
            |r| {
                let t = Instant::now();
                for i in start(r)..start(r) + PER_ROUND {
                    let key = u64::from(order[i % DEVICES]);
                    theirs_allowed += usize::from(gov.check_key(black_box(&key)).is_ok());
                }
                t.elapsed().as_nanos() as f64 / PER_ROUND as f64
            },
        );
    }
    println!(
        "admitted (real-clock rows): thingkit {ours_allowed} of {messages}, governor {theirs_allowed} of {messages}"
    );
    assert_eq!(
        (ours_allowed, theirs_allowed),
        (messages, messages),
        "both sides admit every message (the allowed path, as in steady state)"
    );
    drop((table, conns, gov));

    // No clock read on either side: synthetic time, 1 µs per message on average.
    let (table, mut conns) = table_with_devices();
    let (gov, clock) = governor_fake_clock();
    for k in 0..DEVICES as u64 {
        let _ = gov.check_key(&k);
    }
    let (mut ours_allowed, mut theirs_allowed, mut messages) = (0usize, 0usize, 0usize);
    let mut ticks = 0u64;
    for (label, order) in [
        ("shuffled", &order_shuffled),
        ("sequential", &order_sequential),
    ] {
        let start = |r: usize| r * PER_ROUND;
        let base = ticks;
        row(
            &format!("manual_clock ({label}, 1,000,000 devices)"),
            "thingkit record_publish, caller's Nanos",
            "governor check_key, FakeRelativeClock",
            |r| {
                let t = Instant::now();
                for i in start(r)..start(r) + PER_ROUND {
                    let conn = &mut conns[order[i % DEVICES] as usize];
                    let now = Nanos(1_000_000_000 + (base + i as u64) * 1000);
                    let d = table.record_publish(conn, MESSAGE_BYTES, false, now);
                    ours_allowed += usize::from(matches!(d, Ok(d) if d.is_allowed()));
                }
                messages += PER_ROUND;
                t.elapsed().as_nanos() as f64 / PER_ROUND as f64
            },
            |r| {
                let t = Instant::now();
                for i in start(r)..start(r) + PER_ROUND {
                    if i & 1023 == 0 {
                        // 1 µs per message on average, as for thingkit.
                        clock.advance(Duration::from_micros(1024));
                    }
                    let key = u64::from(order[i % DEVICES]);
                    theirs_allowed += usize::from(gov.check_key(black_box(&key)).is_ok());
                }
                t.elapsed().as_nanos() as f64 / PER_ROUND as f64
            },
        );
        ticks += (ROUNDS * PER_ROUND) as u64;
        clock.advance(Duration::from_secs(2));
    }
    println!(
        "admitted (manual-clock rows): thingkit {ours_allowed} of {messages}, governor {theirs_allowed} of {messages}"
    );
    assert_eq!(ours_allowed, messages, "thingkit admits every message");
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
    interleaved();
    if std::env::var_os("METER_CRITERION").is_some() {
        let mut c = Criterion::default().configure_from_args();
        hot_keys(&mut c);
        scaling(&mut c);
        c.final_summary();
    }
}
