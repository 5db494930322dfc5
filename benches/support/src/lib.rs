//! Shared helpers for the thingkit benchmark suites.
//!
//! [`CountingAlloc`] wraps the system allocator and counts allocations, so a suite can report
//! "heap allocations per operation" next to its timings. Install it in a bench binary with
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: thingkit_bench_support::CountingAlloc = thingkit_bench_support::CountingAlloc;
//! ```
//!
//! and measure with [`count_allocations`]. Timed sections run inside [`uncounted`]: the
//! counters are atomics, and an allocator that updates four of them per allocation makes the
//! contender that allocates more look slower than it is.

pub mod report;
#[cfg(feature = "serve")]
pub mod serve;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);
// Signed: memory allocated inside `uncounted` and freed outside it is subtracted without having
// been added.
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static PEAK_LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
/// Off inside [`uncounted`].
static COUNTING: AtomicBool = AtomicBool::new(true);

/// The system allocator plus counters of allocations, allocated bytes and live bytes.
pub struct CountingAlloc;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counters
// are plain atomics and never touch the memory being managed.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record_alloc(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record_alloc(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        record_free(layout.size());
        // SAFETY: forwarded unchanged; `ptr` came from this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record_alloc(new_size);
        record_free(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn record_alloc(size: usize) {
    if !COUNTING.load(Ordering::Relaxed) {
        return;
    }
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    ALLOCATED_BYTES.fetch_add(size as u64, Ordering::Relaxed);
    let live = LIVE_BYTES.fetch_add(size as i64, Ordering::Relaxed) + size as i64;
    PEAK_LIVE_BYTES.fetch_max(live, Ordering::Relaxed);
}

fn record_free(size: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE_BYTES.fetch_sub(size as i64, Ordering::Relaxed);
    }
}

/// Runs `f` with the counters off: for timed sections, so that the allocator costs what the
/// system allocator costs (one relaxed load more) whoever allocates. Allocations made inside
/// are not counted, and neither are frees.
pub fn uncounted<T>(f: impl FnOnce() -> T) -> T {
    let was = COUNTING.swap(false, Ordering::SeqCst);
    let out = f();
    COUNTING.store(was, Ordering::SeqCst);
    out
}

/// Allocation counts observed while a closure ran (all threads; run it single-threaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocStats {
    /// Number of calls to `alloc`, `alloc_zeroed` and `realloc`.
    pub allocations: u64,
    /// Bytes requested by those calls.
    pub bytes: u64,
    /// Highest number of live heap bytes above the level at the start.
    pub peak_live_bytes: u64,
}

/// Runs `f` and returns its result with the allocations it made.
///
/// Counts are only meaningful when [`CountingAlloc`] is the global allocator.
pub fn count_allocations<T>(f: impl FnOnce() -> T) -> (T, AllocStats) {
    let a0 = ALLOCATIONS.load(Ordering::SeqCst);
    let b0 = ALLOCATED_BYTES.load(Ordering::SeqCst);
    let live0 = LIVE_BYTES.load(Ordering::SeqCst);
    PEAK_LIVE_BYTES.store(live0, Ordering::SeqCst);
    let out = f();
    let stats = AllocStats {
        allocations: ALLOCATIONS.load(Ordering::SeqCst) - a0,
        bytes: ALLOCATED_BYTES.load(Ordering::SeqCst) - b0,
        peak_live_bytes: PEAK_LIVE_BYTES
            .load(Ordering::SeqCst)
            .saturating_sub(live0)
            .max(0) as u64,
    };
    (out, stats)
}

/// Live heap bytes right now (allocated and not yet freed), when [`CountingAlloc`] is installed.
pub fn live_bytes() -> u64 {
    LIVE_BYTES.load(Ordering::SeqCst).max(0) as u64
}

/// splitmix64: a deterministic generator for the suites' fixed-seed workloads (no dependency,
/// the same stream on every machine).
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`; the modulo bias is irrelevant at the suites' sizes).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A value in `lo..=hi_inclusive`.
    pub fn range(&mut self, lo: usize, hi_inclusive: usize) -> usize {
        lo + self.below((hi_inclusive - lo + 1) as u64) as usize
    }
}

/// The environment variable `name` as a number, else `default` (suites' size overrides such as
/// `ROUNDS=3` for callgrind runs).
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
