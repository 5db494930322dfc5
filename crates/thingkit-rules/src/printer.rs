//! Canonical SQL for a syntax tree: `Display` for [`Statement`] and [`Expr`].
//!
//! The output parses back to the same tree (`parse(&tree.to_string()) == tree` for every
//! tree the parser builds, checked by a property test and the `rules_parse` fuzz target):
//! - every binary operation is parenthesized (`(a + (b * c))`), `NOT` is written
//!   `(NOT (x))` and negation `-(x)`, so precedence never matters;
//! - keywords are upper-case, function names as stored (lower-case), fields and aliases as
//!   written;
//! - strings are single-quoted with JSON escapes (`\'`, `\\`, `\n`, `\u0001`, ...);
//!   object keys likewise;
//! - numbers are printed as their text (`5E-12`, `-1.5`);
//! - a literal or a negation used as the base of `.name` / `[i]` is parenthesized
//!   (`(5).x`), and a first SELECT item that would start with the word `value` is
//!   parenthesized so it is not read as `SELECT VALUE`.

use std::fmt::{self, Write};

use crate::ast::{
    BinaryOp, Expr, ExprKind, From, GroupBy, Literal, SelectItem, Statement, UnaryOp, Window,
};

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.set.is_empty() {
            f.write_str("SET ")?;
            for (i, assignment) in self.set.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "@{} = {}", assignment.name, assignment.value)?;
            }
            f.write_str(" ")?;
        }
        f.write_str("SELECT ")?;
        if self.select.value {
            f.write_str("VALUE ")?;
        }
        for (i, item) in self.select.items.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match item {
                SelectItem::Wildcard { .. } => f.write_str("*")?,
                SelectItem::Expr { expr, alias } => {
                    let text = expr.to_string();
                    if i == 0 && !self.select.value && starts_with_word(&text, "value") {
                        write!(f, "({text})")?;
                    } else {
                        f.write_str(&text)?;
                    }
                    if let Some(alias) = alias {
                        write!(f, " AS {alias}")?;
                    }
                }
            }
        }
        match &self.from {
            Some(From::Topic { filter, .. }) => {
                f.write_str(" FROM ")?;
                write_string(f, filter)?;
            }
            Some(From::Expr(expr)) => write!(f, " FROM {expr}")?,
            None => {}
        }
        if let Some(condition) = &self.where_ {
            write!(f, " WHERE {condition}")?;
        }
        if let Some(group_by) = &self.group_by {
            write!(f, " {group_by}")?;
        }
        Ok(())
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GROUP BY ")?;
        for key in &self.keys {
            write!(f, "{key}, ")?;
        }
        match &self.window {
            Window::Tumbling { size, .. } => {
                write!(f, "TUMBLINGWINDOW({}, {})", size.unit.as_str(), size.count)?;
            }
            Window::Hopping { size, hop, .. } => {
                // The parser reads one unit for both lengths (a tree with two units, which the
                // parser never builds, prints the hop in the size's unit).
                write!(
                    f,
                    "HOPPINGWINDOW({}, {}, {})",
                    size.unit.as_str(),
                    size.count,
                    hop.count
                )?;
            }
        }
        if let Some(timestamp) = &self.timestamp_by {
            write!(f, " TIMESTAMP BY {timestamp}")?;
        }
        if let Some(lateness) = &self.lateness {
            write!(
                f,
                " LATENESS({}, {})",
                lateness.unit.as_str(),
                lateness.count
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Literal(literal) => write_literal(f, literal),
            ExprKind::Field(name) => f.write_str(name),
            ExprKind::Wildcard => f.write_str("*"),
            ExprKind::Variable(name) => write!(f, "@{name}"),
            ExprKind::Member { base, name } => {
                write_base(f, base)?;
                write!(f, ".{name}")
            }
            ExprKind::Index { base, index } => {
                write_base(f, base)?;
                write!(f, "[{index}]")
            }
            ExprKind::Call { name, args } => {
                write!(f, "{name}(")?;
                for (i, arg) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{arg}")?;
                }
                f.write_str(")")
            }
            ExprKind::Cast { expr, ty } => write!(f, "cast({expr} AS {ty})"),
            ExprKind::Unary { op, expr } => match op {
                UnaryOp::Not => write!(f, "(NOT ({expr}))"),
                UnaryOp::Neg => write!(f, "-({expr})"),
            },
            ExprKind::Binary { op, left, right } => {
                write!(f, "({left} {} {right})", binary_symbol(*op))
            }
            ExprKind::Case {
                operand,
                whens,
                else_,
            } => {
                write!(f, "CASE {operand}")?;
                for (value, result) in whens {
                    write!(f, " WHEN {value} THEN {result}")?;
                }
                if let Some(otherwise) = else_ {
                    write!(f, " ELSE {otherwise}")?;
                }
                f.write_str(" END")
            }
            ExprKind::Object(members) => {
                f.write_str("{")?;
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_string(f, key)?;
                    write!(f, ": {value}")?;
                }
                f.write_str("}")
            }
            ExprKind::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            ExprKind::Subquery(statement) => write!(f, "({statement})"),
        }
    }
}

/// The SQL spelling of a binary operator.
pub fn binary_symbol(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::And => "AND",
        BinaryOp::Or => "OR",
        BinaryOp::Eq => "=",
        BinaryOp::NotEq => "<>",
        BinaryOp::Lt => "<",
        BinaryOp::LtEq => "<=",
        BinaryOp::Gt => ">",
        BinaryOp::GtEq => ">=",
        BinaryOp::Add => "+",
        BinaryOp::Sub => "-",
        BinaryOp::Mul => "*",
        BinaryOp::Div => "/",
        BinaryOp::Rem => "%",
        BinaryOp::In => "IN",
    }
}

fn write_base(f: &mut fmt::Formatter<'_>, base: &Expr) -> fmt::Result {
    match base.kind {
        ExprKind::Literal(_) | ExprKind::Unary { .. } | ExprKind::Wildcard => {
            write!(f, "({base})")
        }
        _ => write!(f, "{base}"),
    }
}

fn write_literal(f: &mut fmt::Formatter<'_>, literal: &Literal) -> fmt::Result {
    match literal {
        Literal::Number(text) => f.write_str(text),
        Literal::String(text) => write_string(f, text),
        Literal::Bool(true) => f.write_str("true"),
        Literal::Bool(false) => f.write_str("false"),
        Literal::Null => f.write_str("NULL"),
    }
}

/// Writes `text` as a single-quoted SQL string with JSON escapes.
pub(crate) fn write_string(f: &mut impl Write, text: &str) -> fmt::Result {
    f.write_char('\'')?;
    for ch in text.chars() {
        match ch {
            '\'' => f.write_str("\\'")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{:04x}", u32::from(c))?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('\'')
}

fn starts_with_word(text: &str, word: &str) -> bool {
    text.get(..word.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(word))
        && !text
            .as_bytes()
            .get(word.len())
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
}
