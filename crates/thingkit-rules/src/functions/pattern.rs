//! `regexp_matches`, `regexp_replace` and `regexp_substr` over the `regex` crate: linear-time
//! matching (no backtracking), so a hostile pattern cannot hang a rule. Java-only syntax
//! (look-around, backreferences, possessive quantifiers) does not compile and gives Undefined,
//! as any invalid pattern does. Java's `$n` group references in replacements are translated.

use regex::{Regex, RegexBuilder};

use super::conversion::to_string;
use crate::functions::MAX_STRING_BYTES;
use crate::value::Value;

/// The longest pattern accepted, in bytes.
const MAX_PATTERN_BYTES: usize = 4 * 1024;
/// The most memory one compiled pattern (and its lazy DFA) may use.
const MAX_COMPILED_BYTES: usize = 1024 * 1024;

fn compile(pattern: &Value) -> Option<Regex> {
    let pattern = to_string(pattern)?;
    if pattern.len() > MAX_PATTERN_BYTES {
        return None;
    }
    RegexBuilder::new(&pattern)
        .size_limit(MAX_COMPILED_BYTES)
        .dfa_size_limit(MAX_COMPILED_BYTES)
        .build()
        .ok()
}

/// `regexp_matches(s, re)`: whether `s` contains a match.
pub(super) fn matches(s: &Value, re: &Value) -> Option<Value> {
    let s = to_string(s)?;
    Some(Value::Bool(compile(re)?.is_match(&s)))
}

/// `regexp_substr(s, re)`: the first match; Undefined when there is none.
pub(super) fn substr(s: &Value, re: &Value) -> Option<Value> {
    let s = to_string(s)?;
    let found = compile(re)?.find(&s)?;
    Some(Value::String(found.as_str().to_owned()))
}

/// `regexp_replace(s, re, replacement)`: every match replaced; `$n` and `${name}` refer to
/// groups, `\x` is a literal `x` (Java's `Matcher.replaceAll` syntax).
pub(super) fn replace(s: &Value, re: &Value, replacement: &Value) -> Option<Value> {
    let s = to_string(s)?;
    let regex = compile(re)?;
    let replacement = to_string(replacement)?;
    let pieces = parse_replacement(&replacement, &regex)?;
    let mut out = String::new();
    let mut last = 0;
    for captures in regex.captures_iter(&s) {
        let whole = captures.get(0)?;
        out.push_str(s.get(last..whole.start())?);
        for piece in &pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Group(index) => {
                    out.push_str(captures.get(*index).map_or("", |m| m.as_str()));
                }
                Piece::Named(name) => {
                    out.push_str(captures.name(name).map_or("", |m| m.as_str()));
                }
            }
        }
        last = whole.end();
        if out.len() > MAX_STRING_BYTES {
            return None;
        }
    }
    out.push_str(s.get(last..)?);
    (out.len() <= MAX_STRING_BYTES).then_some(Value::String(out))
}

/// One part of a parsed replacement.
#[derive(Debug, PartialEq)]
enum Piece {
    Literal(String),
    Group(usize),
    Named(String),
}

/// Parses Java replacement syntax: `$n` takes digits while the group number stays valid,
/// `${name}` a named group, `\c` the literal `c`. A `$` not followed by a group, a group that
/// does not exist, or a trailing `\` is an invalid replacement (`None`).
fn parse_replacement(replacement: &str, regex: &Regex) -> Option<Vec<Piece>> {
    let groups = regex.captures_len();
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => literal.push(chars.next()?),
            '$' => {
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                if chars.peek() == Some(&'{') {
                    chars.next();
                    let mut name = String::new();
                    loop {
                        match chars.next()? {
                            '}' => break,
                            c if c.is_ascii_alphanumeric() => name.push(c),
                            _ => return None,
                        }
                    }
                    regex.capture_names().flatten().find(|n| *n == name)?;
                    pieces.push(Piece::Named(name));
                } else {
                    let mut index = usize::try_from(chars.next()?.to_digit(10)?).ok()?;
                    if index >= groups {
                        return None;
                    }
                    while let Some(digit) = chars.peek().and_then(|c| c.to_digit(10)) {
                        let next = index
                            .checked_mul(10)?
                            .checked_add(usize::try_from(digit).ok()?)?;
                        if next >= groups {
                            break;
                        }
                        index = next;
                        chars.next();
                    }
                    pieces.push(Piece::Group(index));
                }
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Some(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_group_reference_takes_digits_only_while_the_group_exists() {
        let regex = Regex::new("(a)(b)").expect("valid test pattern");
        assert_eq!(
            parse_replacement("$10", &regex),
            Some(vec![Piece::Group(1), Piece::Literal("0".into())])
        );
        assert_eq!(parse_replacement("$3", &regex), None);
        assert_eq!(parse_replacement("x$", &regex), None);
        assert_eq!(
            parse_replacement("\\$1", &regex),
            Some(vec![Piece::Literal("$1".into())])
        );
    }
}
