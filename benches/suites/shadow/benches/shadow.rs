//! thingkit-shadow: one update of a 4 KB document against the floor, and the redb store at scale.
//!
//! - `update_4kb/thingkit`: `handle` of an update whose state is a 4 KB document, merged into a
//!   stored shadow of the same shape: parse (strict), validate, merge, delta, metadata, and the
//!   three publishes serialized (accepted, documents with previous and current, delta).
//! - `update_4kb/serde_json_floor`: `serde_json` parsing the same payload into a `Value` and
//!   serializing it once — the least any JSON engine must do with it.
//! - `store`: `RedbShadowStore` with SHADOW_BENCH_SHADOWS (default 1,000,000) shadows of ~1 KB:
//!   load time, file size, time to open, and get latency (random keys), printed, not criterion.
//!   SHADOW_BENCH_SHADOWS=0 skips it.
//!
//! Run: cargo bench --manifest-path benches/Cargo.toml -p thingkit-bench-shadow

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput};
use thingkit_shadow::{
    Limits, Operation, RedbShadowStore, ShadowKey, ShadowStore, StoredShadow, handle,
};

/// A state document of about `bytes` bytes: nested objects, arrays, numbers, strings, booleans.
fn state(bytes: usize, salt: u64) -> String {
    let mut desired = Vec::new();
    let mut reported = Vec::new();
    let mut i = 0u64;
    let mut len = 0;
    while len < bytes {
        let group = format!(
            r#""sensor{i}":{{"temp":{t}.5,"unit":"celsius","on":{on},"limits":[{a},{b}],"cfg":{{"rate":{r},"name":"s-{i}-{salt}"}}}}"#,
            t = 20 + (i + salt) % 7,
            on = (i + salt) % 2 == 0,
            a = i,
            b = i + 10,
            r = (i * 3 + salt) % 100,
        );
        len += group.len() + 1;
        if i % 2 == 0 {
            desired.push(group);
        } else {
            reported.push(group);
        }
        i += 1;
    }
    format!(
        r#"{{"desired":{{{}}},"reported":{{{}}}}}"#,
        desired.join(","),
        reported.join(",")
    )
}

fn update_4kb(c: &mut Criterion) {
    let key = ShadowKey::classic("bench-thing").unwrap();
    let limits = Limits::default();
    let initial = format!(r#"{{"state":{}}}"#, state(3900, 0));
    let current = handle(
        None,
        &key,
        Operation::Update,
        initial.as_bytes(),
        1,
        &limits,
    )
    .write
    .expect("initial document accepted");
    let payload = format!(
        r#"{{"state":{},"clientToken":"bench-token","version":1}}"#,
        state(3900, 1)
    );
    let out = handle(
        Some(&current),
        &key,
        Operation::Update,
        payload.as_bytes(),
        2,
        &limits,
    );
    assert!(out.write.is_some(), "bench update accepted");
    let published: usize = out.publishes.iter().map(|m| m.payload.len()).sum();
    eprintln!(
        "update_4kb: payload {} bytes; {} publishes, {published} bytes",
        payload.len(),
        out.publishes.len()
    );

    let mut group = c.benchmark_group("update_4kb");
    group.throughput(Throughput::Bytes(payload.len() as u64));
    group.bench_function("thingkit", |b| {
        b.iter(|| {
            black_box(handle(
                Some(&current),
                &key,
                Operation::Update,
                black_box(payload.as_bytes()),
                2,
                &limits,
            ))
        })
    });
    group.bench_function("serde_json_floor", |b| {
        b.iter(|| {
            let v: serde_json::Value =
                serde_json::from_slice(black_box(payload.as_bytes())).unwrap();
            black_box(serde_json::to_vec(&v).unwrap())
        })
    });
    group.finish();
}

fn store_at_scale() {
    let n: usize = std::env::var("SHADOW_BENCH_SHADOWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    if n == 0 {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shadows.redb");
    let limits = Limits::default();
    // One ~1 KB shadow, stored under n keys (thing-i, classic).
    let doc = format!(r#"{{"state":{}}}"#, state(1000, 7));
    let shadow: StoredShadow = handle(
        None,
        &ShadowKey::classic("x").unwrap(),
        Operation::Update,
        doc.as_bytes(),
        1_700_000_000,
        &limits,
    )
    .write
    .unwrap();
    let stored_bytes = shadow.to_bytes().len();
    let keys: Vec<ShadowKey> = (0..n)
        .map(|i| ShadowKey::classic(format!("thing-{i:07}")).unwrap())
        .collect();
    let t = Instant::now();
    {
        let mut store = RedbShadowStore::open(&path).unwrap();
        for chunk in keys.chunks(10_000) {
            store.put_many(chunk.iter().map(|k| (k, &shadow))).unwrap();
        }
    }
    let load = t.elapsed();
    let size = std::fs::metadata(&path).unwrap().len();
    let t = Instant::now();
    let store = RedbShadowStore::open(&path).unwrap();
    let open = t.elapsed();
    // Random gets: a simple LCG over the key space, same sequence every run.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let gets = 200_000;
    let mut lat = Vec::with_capacity(gets);
    for _ in 0..gets {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let k = &keys[(x >> 33) as usize % n];
        let t = Instant::now();
        black_box(store.get(k).unwrap().unwrap());
        lat.push(t.elapsed().as_nanos() as u64);
    }
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0;
    // One durable single-shadow put (an accepted update's write), averaged.
    let mut store = store;
    let t = Instant::now();
    let puts = 200;
    for k in keys.iter().take(puts) {
        store.put(k, &shadow).unwrap();
    }
    let put = t.elapsed() / puts as u32;
    println!(
        "store: {n} shadows of {stored_bytes} stored bytes (~1 KB JSON state); load {:.1} s \
         (batches of 10,000); file {:.2} GB ({:.0} bytes/shadow); open {:.1} ms; \
         get p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs ({gets} random gets); durable put {:.2} ms",
        load.as_secs_f64(),
        size as f64 / 1e9,
        size as f64 / n as f64,
        open.as_secs_f64() * 1e3,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        put.as_secs_f64() * 1e3,
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    update_4kb(&mut c);
    c.final_summary();
    store_at_scale();
}
