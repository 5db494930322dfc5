//! Policy strings with variables: `arn:aws:iot:*:*:topic/${iot:ClientId}/*`.

use crate::context::Context;
use crate::glob::{self, Piece, Text};
use crate::key::ContextKey;

/// A compiled glob pattern whose variables are substituted (literally) at match time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    pieces: Vec<Piece<ContextKey>>,
    vars: Vec<ContextKey>,
    /// The literal text every match starts with (for a cheap early rejection).
    lead: String,
}

/// Splits `text` into literal text, `*`/`?` wildcards and `${...}` variables.
///
/// `${*}`, `${?}` and `${$}` are the literal characters. An unterminated or empty `${` is an error.
/// When `wildcards` is false, `*` and `?` are literal (exact-match condition operators).
pub(crate) fn pieces(text: &str, wildcards: bool) -> Result<Vec<Piece<ContextKey>>, String> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("${") {
            let Some(end) = rest.find('}') else {
                return Err(format!("unterminated policy variable in `{text}`"));
            };
            let name = rest.get(2..end).unwrap_or_default();
            match name {
                "*" | "?" | "$" => lit.push_str(name),
                "" => return Err(format!("empty policy variable `${{}}` in `{text}`")),
                _ => {
                    if !lit.is_empty() {
                        out.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    out.push(Piece::Var(ContextKey::parse(name)));
                }
            }
            rest = rest.get(end + 1..).unwrap_or_default();
            continue;
        }
        match c {
            '*' | '?' if wildcards => {
                if !lit.is_empty() {
                    out.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                out.push(if c == '*' { Piece::Star } else { Piece::One });
            }
            _ => lit.push(c),
        }
        rest = rest.get(c.len_utf8()..).unwrap_or_default();
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    Ok(out)
}

/// The variables a string refers to (for validation), or the syntax error.
pub(crate) fn variables(text: &str) -> Result<Vec<ContextKey>, String> {
    Ok(pieces(text, true)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Var(k) => Some(k),
            _ => None,
        })
        .collect())
}

/// Outcome of matching a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatternMatch<'p> {
    Matched,
    NotMatched,
    /// A variable had no usable value, so the pattern matches nothing.
    Unresolved(&'p ContextKey),
}

impl Pattern {
    /// Compiles `text`; `wildcards` says whether `*`/`?` are wildcards.
    pub(crate) fn new(text: &str, wildcards: bool) -> Result<Pattern, String> {
        let pieces = pieces(text, wildcards)?;
        let mut vars: Vec<ContextKey> = Vec::new();
        for p in &pieces {
            if let Piece::Var(k) = p
                && !vars.contains(k)
            {
                vars.push(k.clone());
            }
        }
        let lead = match pieces.first() {
            Some(Piece::Lit(s)) => s.clone(),
            _ => String::new(),
        };
        Ok(Pattern { pieces, vars, lead })
    }

    /// Whether the pattern is plain literal text; returns it.
    pub(crate) fn as_literal(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [] => Some(""),
            [Piece::Lit(s)] => Some(s),
            _ => None,
        }
    }

    /// Matches without reporting which variable was missing (a missing variable simply fails the
    /// match). This is the allocation-free hot path.
    pub(crate) fn is_match<T: Text>(
        &self,
        text: T,
        ctx: &Context,
        strict: bool,
        fold_case: bool,
    ) -> bool {
        if !fold_case && !text.has_at(0, self.lead.as_bytes(), false) {
            return false;
        }
        glob::matches(&self.pieces, text, fold_case, &|k: &ContextKey| {
            k.substitute(ctx, strict)
        })
    }

    /// The literal text every match starts with.
    pub(crate) fn lead(&self) -> &str {
        &self.lead
    }

    /// The variables the pattern uses.
    pub(crate) fn vars(&self) -> &[ContextKey] {
        &self.vars
    }

    /// Matches `text` after substituting variables from `ctx`.
    pub(crate) fn matches<T: Text>(
        &self,
        text: T,
        ctx: &Context,
        strict: bool,
        fold_case: bool,
    ) -> PatternMatch<'_> {
        for v in &self.vars {
            if v.substitute(ctx, strict).is_none() {
                return PatternMatch::Unresolved(v);
            }
        }
        if glob::matches(&self.pieces, text, fold_case, &|k: &ContextKey| {
            k.substitute(ctx, strict)
        }) {
            PatternMatch::Matched
        } else {
            PatternMatch::NotMatched
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substituted_values_are_literal_not_wildcards() {
        let p = Pattern::new("a/${iot:ClientId}", true).unwrap();
        let star = Context::with_client_id("*");
        assert_eq!(
            p.matches("a/*".as_bytes(), &star, false, false),
            PatternMatch::Matched
        );
        assert_eq!(
            p.matches("a/b".as_bytes(), &star, false, false),
            PatternMatch::NotMatched
        );
    }

    #[test]
    fn missing_variable_matches_nothing() {
        let p = Pattern::new("*${iot:ClientId}*", true).unwrap();
        assert!(matches!(
            p.matches("anything".as_bytes(), &Context::default(), false, false),
            PatternMatch::Unresolved(ContextKey::ClientId)
        ));
    }

    #[test]
    fn escapes_are_literal_characters() {
        let p = Pattern::new("a${*}b${?}${$}", true).unwrap();
        assert_eq!(p.as_literal(), Some("a*b?$"));
        assert!(Pattern::new("a${iot:ClientId", true).is_err());
        assert!(Pattern::new("a${}", true).is_err());
        assert_eq!(Pattern::new("$x", true).unwrap().as_literal(), Some("$x"));
    }
}
