//! Two things safe Rust cannot ask of the CPU cheaply: a `&str` of bytes already known to be
//! ASCII, and a cache prefetch. This is the one module of the crate with `unsafe` (GUIDE §2:
//! each use is measured by `benches/suites/mqtt/benches/codec_mixed.rs`, and each block has its
//! `SAFETY` argument).
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
#![allow(unsafe_code)]

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

#[cfg(test)]
mod tests {
    use super::{ascii_str, prefetch};
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

    #[test]
    fn prefetch_takes_any_index() {
        let bytes = [1u8, 2, 3];
        for at in [0, 2, 3, usize::MAX] {
            prefetch(&bytes, at);
        }
        prefetch(&[], 0);
    }
}
