//! Three things safe Rust cannot ask of the machine cheaply: a `&str` of bytes already known to
//! be ASCII, a cache prefetch, and huge pages for a large table. This is the one module of the
//! crate with `unsafe` (GUIDE §2: each use is measured, the first two by
//! `benches/suites/mqtt/benches/codec_mixed.rs`, the third by `benches/suites/mqtt/benches/index.rs`,
//! and each block has its `SAFETY` argument).
//!
//! - [`ascii_str`]: `std::str::from_utf8` spends about 120 instructions on a 40-byte fleet
//!   topic (it walks byte by byte up to a word boundary and after the last word), a third of
//!   what [`Decoder::decode_view`](crate::Decoder::decode_view) spends on a whole PUBLISH;
//!   checking that every byte is ASCII takes a few word-wide compares, and ASCII is UTF-8. On
//!   the mixed 3.1.1 stream `decode_view` went from 44.5 to 35.9 ns per frame.
//! - [`prefetch`]: the decoders start loading the next frame's first cache line as soon as they
//!   know where it is. A plain load would do the same, but it must complete before it retires,
//!   and on a stream that is not in cache it holds the reorder buffer until then; a prefetch
//!   retires at once. On the mixed 3.1.1 stream `decode` went from 47.3 to 44.2 ns per frame
//!   (an A/B of two builds differing only in this line).
//! - [`advise_huge_pages`]: the subscription index's node table (80 MB at 1,000,000 distinct
//!   fleet filters) is read at random slots, one per topic level; with 4 KiB pages nearly every
//!   level also misses the TLB and waits for a page walk. Asking Linux for transparent huge pages
//!   on the fresh table (`madvise(MADV_HUGEPAGE)`, which the default `madvise` THP mode honours)
//!   took the median match on that workload from 912-991 to 851-922 ns (five alternating pairs
//!   of runs of one build, the advice switched off and on).
#![allow(unsafe_code)]

use std::mem::MaybeUninit;

/// `bytes` as a `&str` if every byte is ASCII (below 0x80); `None` otherwise, when the caller
/// validates them as UTF-8 the usual way.
#[inline(always)]
pub(crate) fn ascii_str(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: `is_ascii` has just checked that every byte of `bytes` is below 0x80, and each
        // such byte is a complete one-byte UTF-8 sequence (RFC 3629 §3), so `bytes` is valid
        // UTF-8: `from_utf8_unchecked`'s only requirement. The `&str` borrows `bytes`.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        None
    }
}

/// Asks the CPU to start loading the cache line of `bytes[at]` (nothing if `at` is out of
/// range). A hint only: nothing waits for it.
#[inline(always)]
pub(crate) fn prefetch(bytes: &[u8], at: usize) {
    let Some(byte) = bytes.get(at) else {
        return;
    };
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: `_mm_prefetch` is `unsafe` only for its `#[target_feature(enable = "sse")]`,
        // and SSE is part of the x86_64 baseline that every x86_64 target of rustc enables. A
        // prefetch neither reads into the program nor faults, whatever the address; this one is
        // a byte of a live slice anyway.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(byte).cast()) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // Elsewhere a plain load, kept by `black_box`, starts the same cache miss.
        std::hint::black_box(*byte);
    }
}

/// Asks the kernel to back `spare` — a fresh allocation's capacity, before anything is written
/// to it — with transparent huge pages where it covers whole 2 MiB-aligned stretches (nothing
/// on a smaller allocation, nothing outside Linux). Advice only: its result is ignored, and the
/// memory's contents and validity do not depend on it.
pub(crate) fn advise_huge_pages<T>(spare: &mut [MaybeUninit<T>]) {
    #[cfg(target_os = "linux")]
    {
        let start = spare.as_mut_ptr().cast::<u8>();
        if let Some((from, to)) = huge_page_span(start as usize, std::mem::size_of_val(spare)) {
            // SAFETY: `huge_page_span` returns `start <= from < to <= start + len`, so
            // `start.wrapping_add(from - start)` and the `to - from` bytes after it lie inside
            // `spare`: memory this process owns through the exclusive borrow. `madvise` is `unsafe` because some
            // advice (`MADV_DONTNEED`, `MADV_FREE`) discards contents; `MADV_HUGEPAGE` only
            // changes how the kernel backs the pages, never what they hold, and these are not
            // even initialised yet. The address is 2 MiB-aligned, so page-aligned as `madvise`
            // requires, and the length a multiple of the page size.
            unsafe {
                libc::madvise(
                    start.wrapping_add(from - start as usize).cast(),
                    to - from,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = spare;
}

/// A huge page on x86_64, and on aarch64 with 4 KiB base pages.
const HUGE_PAGE: usize = 2 << 20;

/// The whole [`HUGE_PAGE`]-aligned stretches inside the `len` bytes at address `start`, as
/// `(from, to)` with `start <= from < to <= start + len`; `None` when there is none.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn huge_page_span(start: usize, len: usize) -> Option<(usize, usize)> {
    let from = start.checked_next_multiple_of(HUGE_PAGE)?;
    let to = start.checked_add(len)? / HUGE_PAGE * HUGE_PAGE;
    (from < to).then_some((from, to))
}

#[cfg(test)]
mod tests {
    use super::{HUGE_PAGE, advise_huge_pages, ascii_str, huge_page_span, prefetch};
    use proptest::prelude::*;

    proptest! {
        /// Exactly the ASCII inputs come back, as `from_utf8` reads them.
        #[test]
        fn ascii_str_agrees_with_from_utf8(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            match ascii_str(&bytes) {
                Some(s) => {
                    prop_assert!(bytes.is_ascii());
                    prop_assert_eq!(Ok(s), std::str::from_utf8(&bytes));
                }
                None => prop_assert!(!bytes.is_ascii()),
            }
        }
    }

    #[test]
    fn ascii_and_not() {
        let topic = "fleet/site-12/dev-00042/telemetry/temp";
        assert_eq!(ascii_str(topic.as_bytes()), Some(topic));
        assert_eq!(ascii_str(b""), Some(""));
        assert_eq!(ascii_str(b"\x00\x7f"), Some("\u{0}\u{7f}"));
        assert_eq!(ascii_str("caf\u{e9}".as_bytes()), None);
        assert_eq!(ascii_str(b"ok\x80"), None);
    }

    /// The advice takes any allocation, including ones with no whole 2 MiB stretch, and the
    /// memory behaves as before once written.
    #[test]
    fn huge_page_advice_leaves_the_memory_usable() {
        for capacity in [0, 1, 1000, (2 << 20) / 32, (9 << 20) / 32 + 3] {
            let mut v: Vec<[u64; 4]> = Vec::with_capacity(capacity);
            advise_huge_pages(v.spare_capacity_mut());
            v.extend((0..capacity as u64).map(|i| [i, !i, i << 1, 7]));
            assert!(
                v.iter()
                    .enumerate()
                    .all(|(i, x)| *x == [i as u64, !(i as u64), (i as u64) << 1, 7])
            );
        }
    }

    /// The advised range is rounded inwards to whole huge pages, never past the allocation.
    #[test]
    fn huge_page_span_rounds_inwards() {
        const H: usize = HUGE_PAGE;
        assert_eq!(huge_page_span(H, H), Some((H, 2 * H)));
        assert_eq!(huge_page_span(H + 1, 2 * H), Some((2 * H, 3 * H)));
        assert_eq!(huge_page_span(H - 16, 3 * H), Some((H, 3 * H)));
        assert_eq!(huge_page_span(H + 1, 2 * H - 2), None);
        assert_eq!(huge_page_span(H, H - 1), None);
        assert_eq!(huge_page_span(8, 0), None);
        assert_eq!(huge_page_span(usize::MAX - 10, 5), None);
        assert_eq!(huge_page_span(usize::MAX - 10, 20), None);
    }

    #[test]
    fn prefetch_takes_any_index() {
        let bytes = [1u8, 2, 3];
        for at in [0, 2, 3, usize::MAX] {
            prefetch(&bytes, at);
        }
        prefetch(&[], 0);
    }
}
