//! IAM glob matching: `*` matches any run of characters (including `/` and none), `?` exactly one
//! character; everything else, including MQTT `+` and `#`, is literal.
//!
//! The matcher never backtracks over stars: the pattern is split at its stars into chunks, the
//! first chunk is anchored at the start, the last at the end, and each middle chunk is placed at
//! its leftmost occurrence after the previous one. A chunk contains no star, so it always spans
//! the same number of characters and leftmost placement is optimal. Time is
//! `O(len(text) × len(pattern))` — linear in the input for a compiled pattern — and no memory is
//! allocated.

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece<V> {
    /// Literal text (may be empty).
    Lit(String),
    /// `?`: exactly one character.
    One,
    /// `*`: any run of characters.
    Star,
    /// A variable, substituted literally at match time.
    Var(V),
}

/// Splits a pattern with no variables into pieces.
pub(crate) fn pieces_of<V>(pattern: &str) -> Vec<Piece<V>> {
    let mut out = Vec::new();
    let mut lit = String::new();
    for c in pattern.chars() {
        match c {
            '*' | '?' => {
                if !lit.is_empty() {
                    out.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                out.push(if c == '*' { Piece::Star } else { Piece::One });
            }
            _ => lit.push(c),
        }
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    out
}

/// Text a pattern is matched against: one byte string, or two joined without copying
/// ([`Joined`]: a request's resource type `topic/` and its topic).
pub(crate) trait Text: Copy {
    /// Length in bytes.
    fn len(self) -> usize;
    /// The byte at `pos`.
    fn byte(self, pos: usize) -> Option<u8>;
    /// Whether `lit` occurs at `pos` (ASCII case folded when `fold_case`).
    fn has_at(self, pos: usize, lit: &[u8], fold_case: bool) -> bool;
    /// The first position at or after `from` holding `b`.
    fn find_byte(self, from: usize, b: u8) -> Option<usize>;
}

fn eq_bytes(a: &[u8], b: &[u8], fold_case: bool) -> bool {
    if fold_case {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

impl Text for &[u8] {
    fn len(self) -> usize {
        <[u8]>::len(self)
    }
    fn byte(self, pos: usize) -> Option<u8> {
        self.get(pos).copied()
    }
    fn has_at(self, pos: usize, lit: &[u8], fold_case: bool) -> bool {
        pos.checked_add(lit.len())
            .and_then(|end| self.get(pos..end))
            .is_some_and(|w| eq_bytes(w, lit, fold_case))
    }
    fn find_byte(self, from: usize, b: u8) -> Option<usize> {
        Some(from + self.get(from..)?.iter().position(|x| *x == b)?)
    }
}

/// Two byte strings matched as one (`head` then `tail`), without concatenating them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Joined<'a> {
    /// The first part (e.g. `topic/`).
    pub(crate) head: &'a [u8],
    /// The second part (e.g. the topic).
    pub(crate) tail: &'a [u8],
}

impl Text for Joined<'_> {
    fn len(self) -> usize {
        self.head.len() + self.tail.len()
    }
    fn byte(self, pos: usize) -> Option<u8> {
        match pos.checked_sub(self.head.len()) {
            None => self.head.get(pos).copied(),
            Some(t) => self.tail.get(t).copied(),
        }
    }
    fn has_at(self, pos: usize, lit: &[u8], fold_case: bool) -> bool {
        let h = self.head.len();
        if pos >= h {
            return self.tail.has_at(pos - h, lit, fold_case);
        }
        // `lit` starts in the head; the rest of it (if any) must open the tail.
        let in_head = (h - pos).min(lit.len());
        let (a, b) = lit.split_at(in_head);
        self.head.has_at(pos, a, fold_case) && self.tail.has_at(0, b, fold_case)
    }
    fn find_byte(self, from: usize, b: u8) -> Option<usize> {
        let h = self.head.len();
        if from < h
            && let Some(at) = self.head.find_byte(from, b)
        {
            return Some(at);
        }
        Some(h + self.tail.find_byte(from.saturating_sub(h), b)?)
    }
}

/// Matches `text` against `pieces`. `resolve` gives each variable's value; the caller must have
/// checked that every variable resolves (an unresolved variable here makes the match fail).
pub(crate) fn matches<'c, V, F, T: Text>(
    pieces: &[Piece<V>],
    bytes: T,
    fold_case: bool,
    resolve: &F,
) -> bool
where
    F: Fn(&V) -> Option<&'c str>,
{
    let mut chunks = pieces.split(|p| matches!(p, Piece::Star));
    let first = chunks.next().unwrap_or(&[]);
    let star_count = pieces.iter().filter(|p| matches!(p, Piece::Star)).count();
    if star_count == 0 {
        return chunk_at(first, bytes, 0, fold_case, resolve) == Some(bytes.len());
    }
    let Some(mut pos) = chunk_at(first, bytes, 0, fold_case, resolve) else {
        return false;
    };
    let mut remaining = star_count;
    for chunk in chunks {
        remaining -= 1;
        if remaining == 0 {
            return last_chunk(chunk, bytes, pos, fold_case, resolve);
        }
        if chunk.is_empty() {
            continue;
        }
        let mut start = pos;
        loop {
            // Jump to the next occurrence of the chunk's leading literal (a linear substring
            // search), then try the whole chunk there.
            if !fold_case
                && let Some(Piece::Lit(lead)) = chunk.first()
                && !lead.is_empty()
            {
                match find_literal(bytes, start, lead.as_bytes()) {
                    Some(at) => start = at,
                    None => return false,
                }
            }
            if let Some(end) = chunk_at(chunk, bytes, start, fold_case, resolve) {
                pos = end;
                break;
            }
            if start >= bytes.len() {
                return false;
            }
            start += char_len(bytes, start);
        }
    }
    // Unreachable for a pattern with stars (the last chunk returns); be conservative.
    false
}

/// The first position at or after `from` where `lit` (non-empty) occurs. Cost is
/// `O((len(text) - from) × len(lit))`: linear in the text for a compiled pattern.
fn find_literal<T: Text>(text: T, from: usize, lit: &[u8]) -> Option<usize> {
    let (&first, rest) = lit.split_first()?;
    let mut at = from;
    while let Some(candidate) = text.find_byte(at, first) {
        if text.has_at(candidate + 1, rest, false) {
            return Some(candidate);
        }
        at = candidate + 1;
    }
    None
}

/// Matches the chunk after the last star: it must end exactly at the end of the text, at or
/// after `pos`.
fn last_chunk<'c, V, F, T: Text>(
    chunk: &[Piece<V>],
    text: T,
    pos: usize,
    fold_case: bool,
    resolve: &F,
) -> bool
where
    F: Fn(&V) -> Option<&'c str>,
{
    if chunk.is_empty() {
        return true;
    }
    // Without `?` the chunk has a fixed byte length, so it can only start at one place.
    if !chunk.iter().any(|p| matches!(p, Piece::One)) {
        let mut len = 0usize;
        for p in chunk {
            let piece_len = match p {
                Piece::Lit(s) => s.len(),
                Piece::Var(v) => match resolve(v) {
                    Some(s) => s.len(),
                    None => return false,
                },
                Piece::One | Piece::Star => 0,
            };
            len = len.saturating_add(piece_len);
        }
        let Some(start) = text.len().checked_sub(len) else {
            return false;
        };
        return start >= pos
            && chunk_at(chunk, text, start, fold_case, resolve) == Some(text.len());
    }
    let mut start = pos;
    loop {
        if chunk_at(chunk, text, start, fold_case, resolve) == Some(text.len()) {
            return true;
        }
        if start >= text.len() {
            return false;
        }
        start += char_len(text, start);
    }
}

/// Matches one star-free chunk at byte `start`, returning the end offset.
fn chunk_at<'c, V, F, T: Text>(
    chunk: &[Piece<V>],
    text: T,
    start: usize,
    fold_case: bool,
    resolve: &F,
) -> Option<usize>
where
    F: Fn(&V) -> Option<&'c str>,
{
    #[cfg(test)]
    tests::STEPS.with(|s| s.set(s.get() + chunk.len() as u64 + 1));
    let mut pos = start;
    for piece in chunk {
        match piece {
            Piece::Lit(s) => pos = literal_at(s.as_bytes(), text, pos, fold_case)?,
            Piece::Var(v) => pos = literal_at(resolve(v)?.as_bytes(), text, pos, fold_case)?,
            Piece::One => {
                if pos >= text.len() {
                    return None;
                }
                pos += char_len(text, pos);
            }
            Piece::Star => return None,
        }
    }
    Some(pos)
}

fn literal_at<T: Text>(lit: &[u8], text: T, pos: usize, fold_case: bool) -> Option<usize> {
    text.has_at(pos, lit, fold_case).then(|| pos + lit.len())
}

/// Length of the UTF-8 character starting at `pos` (1 for a continuation byte, defensively).
fn char_len<T: Text>(text: T, pos: usize) -> usize {
    match text.byte(pos) {
        Some(b) if b >= 0xF0 => 4,
        Some(b) if b >= 0xE0 => 3,
        Some(b) if b >= 0xC0 => 2,
        _ => 1,
    }
}

/// Glob match without variables, case-sensitive.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let pieces: Vec<Piece<()>> = pieces_of(pattern);
    matches(&pieces, text.as_bytes(), false, &|_: &()| None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious exponential-time recursive matcher, as a reference model.
    fn reference(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| reference(rest, &t[i..])),
            Some(('?', rest)) => !t.is_empty() && reference(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && reference(rest, &t[1..]),
        }
    }

    #[test]
    fn star_matches_across_slashes_and_nothing() {
        assert!(glob_match("a/*", "a/b/c"));
        assert!(glob_match("a/*", "a/"));
        assert!(!glob_match("a/*", "a"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
    }

    #[test]
    fn question_matches_exactly_one_character() {
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("a?c", "aéc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(!glob_match("a?c", "abbc"));
    }

    #[test]
    fn mqtt_wildcards_are_literal() {
        assert!(glob_match("a/+/b", "a/+/b"));
        assert!(!glob_match("a/+/b", "a/x/b"));
        assert!(!glob_match("a/#", "a/b"));
        assert!(glob_match("a/#", "a/#"));
    }

    thread_local! {
        /// Pieces examined by `chunk_at` (test builds only): a deterministic measure of work.
        pub(super) static STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    fn steps(pattern: &str, text: &str) -> u64 {
        STEPS.with(|s| s.set(0));
        let _ = glob_match(pattern, text);
        STEPS.with(|s| s.get())
    }

    #[test]
    fn adversarial_star_patterns_take_linear_work() {
        // Work is counted, not timed: doubling the input must (about) double the work, where a
        // backtracking matcher's work would explode.
        for pattern in [
            "*a".repeat(30) + "*b",
            "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*c".to_string(),
            "*?".repeat(20) + "x",
            "*aaaaaaaaab*".to_string(),
        ] {
            let small = steps(&pattern, &"a".repeat(10_000));
            let large = steps(&pattern, &"a".repeat(20_000));
            assert!(
                large <= small * 2 + 1000,
                "{pattern}: {small} steps for 10k, {large} for 20k"
            );
            assert!(
                large <= 20_000 * (pattern.len() as u64 + 2) * 2,
                "{pattern}: {large}"
            );
        }
    }

    #[test]
    fn adversarial_star_pattern_finishes_on_long_input() {
        // Backtracking matchers take exponential time here; this one does one left-to-right pass
        // per chunk. Correctness is asserted; no timing is asserted.
        let pattern = "*a".repeat(50) + "*b";
        let text = "a".repeat(100_000);
        assert!(!glob_match(&pattern, &text));
        let text_b = "a".repeat(100_000) + "b";
        assert!(glob_match(&pattern, &text_b));
        let q = "*?".repeat(40) + "x";
        assert!(!glob_match(&q, &"y".repeat(50_000)));
    }

    proptest! {
        #[test]
        fn agrees_with_reference_matcher(p in "[ab*?/+é]{0,8}", t in "[ab/+é]{0,10}") {
            let pc: Vec<char> = p.chars().collect();
            let tc: Vec<char> = t.chars().collect();
            prop_assert_eq!(glob_match(&p, &t), reference(&pc, &tc));
        }

        #[test]
        fn joined_text_matches_like_one_string(
            p in "[ab*?/+é]{0,8}",
            t in "[ab/+é]{0,10}",
            cut in 0usize..12,
            fold in any::<bool>(),
        ) {
            let mut cut = cut.min(t.len());
            while !t.is_char_boundary(cut) { cut -= 1; }
            let (head, tail) = t.split_at(cut);
            let pieces: Vec<Piece<()>> = pieces_of(&p);
            let joined = Joined { head: head.as_bytes(), tail: tail.as_bytes() };
            prop_assert_eq!(
                matches(&pieces, joined, fold, &|_: &()| None),
                matches(&pieces, t.as_bytes(), fold, &|_: &()| None)
            );
        }
    }
}
