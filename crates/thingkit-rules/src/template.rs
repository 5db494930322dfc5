//! AWS substitution templates: action fields such as `${topic()}/republish` or
//! `${replace(topic(), '/', '-') + '-' + timestamp() + '-' + newuuid()}`, parsed into literal
//! text and `${...}` expressions (rendering them is the evaluator's job).
//!
//! The rules, AWS's where it states them and thingkit's where it does not:
//! - `${expr}` holds any expression of a SELECT or WHERE clause; the expression ends at the
//!   first `}` that closes it, so strings and object literals inside may contain `}`
//!   (`${get({'a': '}'}, 'a')}`).
//! - `$$` is a literal `$` (AWS documents it for the republish topic, where a topic that
//!   starts with `$` is written `$$aws/...`). thingkit applies it in every templated field, so
//!   that any field can hold a literal `${`: write `$${`. A `$` followed by anything else is
//!   kept as it is.
//! - Other text, `}` included, is kept as written.
//! - An unclosed `${` is an error at the `${`; so is an empty `${}`.
//! - The whole template counts against [`Limits::max_sql_bytes`], and each expression
//!   against [`Limits::max_sql_depth`].

use std::fmt;

use crate::ast::{Expr, SqlVersion};
use crate::error::Error;
use crate::lexer::error_at;
use crate::parser::parse_expression_in;
use crate::rule::Limits;

/// A parsed substitution template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<TemplatePart>,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplatePart {
    /// Literal text (with `$$` already turned into `$`).
    Text(String),
    /// A `${...}` expression.
    Expr(Expr),
}

impl Template {
    /// The pieces in order; adjacent text is merged, so two `Text` parts never follow each
    /// other.
    pub fn parts(&self) -> &[TemplatePart] {
        &self.parts
    }

    /// The pieces, by value.
    pub fn into_parts(self) -> Vec<TemplatePart> {
        self.parts
    }

    /// The text, if the template has no `${...}` at all.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [TemplatePart::Text(text)] => Some(text),
            _ => None,
        }
    }
}

impl fmt::Display for Template {
    /// The template as written canonically: `$` doubled in text, expressions printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                TemplatePart::Text(text) => f.write_str(&text.replace('$', "$$"))?,
                TemplatePart::Expr(expr) => write!(f, "${{{expr}}}")?,
            }
        }
        Ok(())
    }
}

/// Parses a substitution template for `version`.
///
/// # Errors
///
/// [`Error::Parse`] for an unclosed `${`, an empty one, or an expression that does not parse
/// (line and column count from the start of `text`); [`Error::Limit`] as for statements.
pub fn parse_template(text: &str, version: SqlVersion, limits: &Limits) -> Result<Template, Error> {
    if text.len() > limits.max_sql_bytes {
        return Err(Error::Limit {
            what: "substitution template (bytes)",
            limit: limits.max_sql_bytes,
        });
    }
    let mut parts = Vec::new();
    let mut literal = String::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut run_start = 0;
    while i < bytes.len() {
        if bytes.get(i) != Some(&b'$') {
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'$') => {
                literal.push_str(text.get(run_start..=i).unwrap_or(""));
                i += 2;
                run_start = i;
            }
            Some(b'{') => {
                literal.push_str(text.get(run_start..i).unwrap_or(""));
                let inner = i + 2;
                let Some(close) = closing_brace(bytes, inner) else {
                    return Err(error_at(text, i, "`${` is not closed by a matching `}`"));
                };
                if text.get(inner..close).is_none_or(|s| s.trim().is_empty()) {
                    return Err(error_at(text, i, "`${}` holds no expression"));
                }
                let expr = parse_expression_in(text, inner, close, version, limits)?;
                if !literal.is_empty() {
                    parts.push(TemplatePart::Text(std::mem::take(&mut literal)));
                }
                parts.push(TemplatePart::Expr(expr));
                i = close + 1;
                run_start = i;
            }
            _ => i += 1,
        }
    }
    literal.push_str(text.get(run_start..).unwrap_or(""));
    if !literal.is_empty() {
        parts.push(TemplatePart::Text(literal));
    }
    Ok(Template { parts })
}

/// The byte offset of the `}` that closes an expression starting at `from`: braces of object
/// literals nest, and quoted strings (with backslash escapes) are skipped.
fn closing_brace(bytes: &[u8], from: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = from;
    let mut quote: Option<u8> = None;
    while let Some(&b) = bytes.get(i) {
        match quote {
            Some(q) => {
                if b == b'\\' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
            }
            None => match b {
                b'\'' | b'"' => quote = Some(b),
                b'{' => depth += 1,
                b'}' if depth == 0 => return Some(i),
                b'}' => depth -= 1,
                _ => {}
            },
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::ExprKind;

    fn parse(text: &str) -> Result<Template, Error> {
        parse_template(text, SqlVersion::V2016_03_23, &Limits::default())
    }

    #[test]
    fn splits_text_and_expressions() {
        let template = parse("${topic()}/republish").map_err(|e| e.to_string());
        let Ok(template) = template else {
            panic!("{template:?}")
        };
        assert!(matches!(
            template.parts(),
            [TemplatePart::Expr(Expr { kind: ExprKind::Call { name, .. }, .. }), TemplatePart::Text(t)]
                if name == "topic" && t == "/republish"
        ));
    }

    #[test]
    fn double_dollar_is_a_literal_dollar() {
        let template = parse("$$aws/things/${topic(2)}/x $ y").map_err(|e| e.to_string());
        let Ok(template) = template else {
            panic!("{template:?}")
        };
        assert!(matches!(
            template.parts(),
            [TemplatePart::Text(a), TemplatePart::Expr(_), TemplatePart::Text(b)]
                if a == "$aws/things/" && b == "/x $ y"
        ));
        assert_eq!(template.to_string(), "$$aws/things/${topic(2)}/x $$ y");
    }

    #[test]
    fn braces_inside_strings_and_objects_do_not_close_the_expression() {
        let template = parse("${get({'a': '}'}, 'a')}!");
        assert!(matches!(template.as_ref().map(|t| t.parts().len()), Ok(2)));
    }

    #[test]
    fn unclosed_expression_is_an_error_at_the_dollar() {
        assert_eq!(
            parse("ab${topic()").map_err(|e| e.to_string()),
            Err("1:3: `${` is not closed by a matching `}`".to_owned())
        );
    }

    #[test]
    fn expression_errors_point_into_the_template() {
        let error = parse("xx/${topic(}").map_err(|e| e.to_string());
        assert!(
            matches!(error, Err(ref e) if e.starts_with("1:12:")),
            "{error:?}"
        );
    }

    #[test]
    fn plain_text_is_literal() {
        assert_eq!(
            parse("a/b}c").ok().as_ref().and_then(Template::as_literal),
            Some("a/b}c")
        );
    }
}
