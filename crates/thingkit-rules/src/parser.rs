//! The AWS IoT SQL parser: text to [`Statement`] (or one [`Expr`], for `${...}` templates).
//!
//! AWS publishes no grammar; this one is reconstructed from the SQL reference pages (spec
//! `rules-audit.md` §A.2) plus thingkit's `GROUP BY` window extension (§B):
//!
//! ```text
//! statement := [SET @name = expr {, @name = expr}] SELECT [VALUE] item {, item}
//!              [FROM 'topic/filter' | FROM expr (nested query)] [WHERE expr]
//!              [GROUP BY group_item {, group_item} [TIMESTAMP BY expr] [LATENESS(unit, n)]]
//! item      := * | expr [AS alias]          alias := word {. word}  (e.g. `AS bar.baz`)
//! group_item:= expr | TUMBLINGWINDOW(unit, n) | HOPPINGWINDOW(unit, size, hop)
//! unit      := ms | ss | mi | hh | dd
//! ```
//!
//! Expressions, loosest first (AWS documents no precedence; this is standard SQL's, and every
//! binary operator is left-associative): `OR`; `AND`; `NOT`; comparisons `= <> != < <= > >=`
//! and `IN`; `+ -`; `* / %`; unary `-`; postfix `.name` and `[index]`. Primaries: numbers,
//! strings in either quote, `true`/`false`/`NULL`, fields, `@variables`, calls (`*` is allowed
//! as an argument: `encode(*, 'base64')`), `cast(e AS Type)`, `CASE v WHEN .. THEN .. [ELSE ..]
//! END`, `{'k': e}` (keys in either quote or bare words), `[a, b]`, `(expr)` and
//! `(SELECT ...)`.
//!
//! Decisions where AWS is silent, each deliberate:
//! - **Keywords** and function names are case-insensitive (function names are stored
//!   lower-case); field names are case-sensitive. A keyword that cannot start or continue an
//!   expression (`AND`, `OR`, `NOT`, `IN`, `CASE`, `WHEN`, `THEN`, `ELSE`, `END`, `SELECT`,
//!   `FROM`, `WHERE`, `AS`, `TRUE`, `FALSE`, `NULL`) is never a field; every other word is a
//!   field unless followed by `(` (`topic` is a field, `topic()` a call). After `.` and `AS`
//!   any word is a name. `SELECT VALUE` is the keyword unless `VALUE` is followed by `,`, `.`,
//!   `)`, `AS`, `FROM`, `WHERE` or the end (then it is a field named `value`).
//! - **AS** is required before an alias (every AWS example writes it).
//! - **A minus sign directly before a number** is part of the literal (`-5` is
//!   `Number("-5")`, so the evaluator sees an Int literal); `-(5)` and `-x` are negations.
//! - **SQL version 2015-10-08** refuses, with an error naming the version, the constructs the
//!   AWS pages mark 2016-03-23-only: nested `SELECT`, object and array literals, and
//!   `SELECT VALUE` with more than one item. AWS does not say what the old version does with
//!   them; failing early at compile time is the safe reading. Functions added in 2016-03-23
//!   (`encode`, `decode`, ...) and the cast keywords `Decimal`/`Bool`/`Boolean` are left to the
//!   evaluator: they are names, not syntax.
//! - **FROM** at the top level takes a single-quoted topic filter only (the unquoted `FROM
//!   iot/rules` in AWS's JSON-extensions page is a doc erratum); in a nested query it takes an
//!   expression. `SET` and `GROUP BY` are only allowed at the top level.
//! - **Limits**: a statement longer than [`Limits::max_sql_bytes`] is refused before it is
//!   read, and nesting (expressions, parentheses, literals, nested queries) deeper than
//!   [`Limits::max_sql_depth`] is refused before the parser recurses, so no input can
//!   overflow the stack.

use crate::ast::{
    Assignment, BinaryOp, Duration, Expr, ExprKind, From, GroupBy, Literal, Select, SelectItem,
    Span, SqlVersion, Statement, TimeUnit, UnaryOp, Window,
};
use crate::error::Error;
use crate::lexer::{Punct, Token, TokenKind, error_at, tokenize};
use crate::rule::Limits;

/// Words that are never field names.
const RESERVED: &[&str] = &[
    "and", "or", "not", "in", "case", "when", "then", "else", "end", "select", "from", "where",
    "as", "true", "false", "null",
];

/// Whether `word` is a reserved keyword (case-insensitive), which cannot be a field name.
pub fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

/// Parses a whole statement for `version`.
///
/// # Errors
///
/// [`Error::Parse`] with the line and column of the offending token, or [`Error::Limit`] when
/// the statement is longer than `limits.max_sql_bytes` or nests deeper than
/// `limits.max_sql_depth`.
pub fn parse(sql: &str, version: SqlVersion, limits: &Limits) -> Result<Statement, Error> {
    check_length(sql, limits)?;
    let mut parser = Parser::new(sql, 0, sql.len(), version, limits)?;
    let statement = parser.statement(true)?;
    parser.expect_end("end of statement")?;
    Ok(statement)
}

/// Parses one expression (the inside of a `${...}` substitution template) for `version`.
///
/// # Errors
///
/// As [`parse`].
pub fn parse_expression(text: &str, version: SqlVersion, limits: &Limits) -> Result<Expr, Error> {
    check_length(text, limits)?;
    parse_expression_in(text, 0, text.len(), version, limits)
}

/// Parses the expression in `text[start..end]`, reporting positions in the whole `text`.
pub(crate) fn parse_expression_in(
    text: &str,
    start: usize,
    end: usize,
    version: SqlVersion,
    limits: &Limits,
) -> Result<Expr, Error> {
    let mut parser = Parser::new(text, start, end, version, limits)?;
    let expr = parser.expr()?;
    parser.expect_end("end of expression")?;
    Ok(expr)
}

fn check_length(text: &str, limits: &Limits) -> Result<(), Error> {
    if text.len() > limits.max_sql_bytes {
        return Err(Error::Limit {
            what: "SQL statement (bytes)",
            limit: limits.max_sql_bytes,
        });
    }
    Ok(())
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    version: SqlVersion,
    depth: usize,
    max_depth: usize,
}

impl<'a> Parser<'a> {
    fn new(
        text: &'a str,
        start: usize,
        end: usize,
        version: SqlVersion,
        limits: &Limits,
    ) -> Result<Parser<'a>, Error> {
        Ok(Parser {
            text,
            tokens: tokenize(text, start, end)?,
            pos: 0,
            version,
            depth: 0,
            max_depth: limits.max_sql_depth,
        })
    }

    // ----- token access -------------------------------------------------------------------

    fn peek(&self) -> &TokenKind {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &TokenKind {
        self.tokens
            .get(self.pos + ahead)
            .or_else(|| self.tokens.last())
            .map_or(&TokenKind::End, |t| &t.kind)
    }

    fn start(&self) -> usize {
        self.tokens
            .get(self.pos)
            .or_else(|| self.tokens.last())
            .map_or(0, |t| t.start)
    }

    /// End offset of the last consumed token.
    fn last_end(&self) -> usize {
        self.pos
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i))
            .map_or(0, |t| t.end)
    }

    fn bump(&mut self) {
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
    }

    fn is_punct(&self, punct: Punct) -> bool {
        matches!(self.peek(), TokenKind::Punct(p) if *p == punct)
    }

    fn eat_punct(&mut self, punct: Punct) -> bool {
        if self.is_punct(punct) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn is_word_at(&self, ahead: usize, keyword: &str) -> bool {
        matches!(self.peek_at(ahead), TokenKind::Word(w) if w.eq_ignore_ascii_case(keyword))
    }

    fn is_word(&self, keyword: &str) -> bool {
        self.is_word_at(0, keyword)
    }

    fn eat_word(&mut self, keyword: &str) -> bool {
        if self.is_word(keyword) {
            self.bump();
            true
        } else {
            false
        }
    }

    /// How the current token is shown in a message.
    fn found(&self) -> String {
        match self.tokens.get(self.pos) {
            None => "end of text".to_owned(),
            Some(Token {
                kind: TokenKind::End,
                ..
            }) => "end of text".to_owned(),
            Some(token) => {
                let raw = self.text.get(token.start..token.end).unwrap_or("?");
                let shown: String = raw.chars().take(40).collect();
                if shown.len() < raw.len() {
                    format!("`{shown}...`")
                } else {
                    format!("`{shown}`")
                }
            }
        }
    }

    fn error_here(&self, message: impl Into<String>) -> Error {
        error_at(self.text, self.start(), message)
    }

    fn expected(&self, what: &str) -> Error {
        self.error_here(format!("expected {what}, found {}", self.found()))
    }

    fn expect_punct(&mut self, punct: Punct, shown: &str) -> Result<(), Error> {
        if self.eat_punct(punct) {
            Ok(())
        } else {
            Err(self.expected(&format!("`{shown}`")))
        }
    }

    fn expect_word(&mut self, keyword: &str) -> Result<(), Error> {
        if self.eat_word(keyword) {
            Ok(())
        } else {
            Err(self.expected(&format!("`{keyword}`")))
        }
    }

    fn expect_end(&self, what: &str) -> Result<(), Error> {
        if matches!(self.peek(), TokenKind::End) {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    /// Any word (keywords included), e.g. after `.` or `AS`.
    fn any_word(&mut self, what: &str) -> Result<String, Error> {
        if let TokenKind::Word(w) = self.peek() {
            let w = w.clone();
            self.bump();
            Ok(w)
        } else {
            Err(self.expected(what))
        }
    }

    fn enter(&mut self) -> Result<(), Error> {
        if self.depth >= self.max_depth {
            return Err(Error::Limit {
                what: "SQL nesting depth",
                limit: self.max_depth,
            });
        }
        self.depth += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn needs_v2(&self, what: &str) -> Result<(), Error> {
        if self.version.is_v2() {
            Ok(())
        } else {
            Err(self.error_here(format!(
                "{what} needs SQL version 2016-03-23 or later; this rule uses {}",
                self.version
            )))
        }
    }

    // ----- statements ---------------------------------------------------------------------

    fn statement(&mut self, top: bool) -> Result<Statement, Error> {
        self.enter()?;
        let result = self.statement_inner(top);
        self.leave();
        result
    }

    fn statement_inner(&mut self, top: bool) -> Result<Statement, Error> {
        let begin = self.start();
        let mut set = Vec::new();
        if self.is_word("set") && matches!(self.peek_at(1), TokenKind::Variable(_)) {
            if !top {
                return Err(self.error_here("SET is only allowed in the top-level statement"));
            }
            self.bump();
            loop {
                let at = self.start();
                let TokenKind::Variable(name) = self.peek().clone() else {
                    return Err(self.expected("a variable `@name`"));
                };
                if set.iter().any(|a: &Assignment| a.name == name) {
                    return Err(
                        self.error_here(format!("variable `@{name}` is assigned more than once"))
                    );
                }
                self.bump();
                self.expect_punct(Punct::Eq, "=")?;
                let value = self.expr()?;
                set.push(Assignment {
                    name,
                    value,
                    span: Span::new(at, self.last_end()),
                });
                if !self.eat_punct(Punct::Comma) {
                    break;
                }
            }
        }
        self.expect_word("select")?;
        let value_at = self.start();
        let value = self.is_word("value") && !self.value_is_field();
        if value {
            self.bump();
        }
        let mut items = vec![self.select_item()?];
        while self.eat_punct(Punct::Comma) {
            items.push(self.select_item()?);
        }
        if value && items.len() > 1 && !self.version.is_v2() {
            return Err(error_at(
                self.text,
                value_at,
                format!(
                    "SELECT VALUE with more than one item needs SQL version 2016-03-23 or later; this rule uses {}",
                    self.version
                ),
            ));
        }
        let select = Select { value, items };
        let mut from = None;
        if self.is_word("from") {
            self.bump();
            if top {
                match self.peek().clone() {
                    TokenKind::Str {
                        value: filter,
                        single: true,
                    } => {
                        let at = self.start();
                        self.bump();
                        from = Some(From::Topic {
                            filter,
                            span: Span::new(at, self.last_end()),
                        });
                    }
                    _ => {
                        return Err(self.expected("a single-quoted topic filter after FROM"));
                    }
                }
            } else {
                from = Some(From::Expr(self.expr()?));
            }
        }
        let mut where_ = None;
        if self.eat_word("where") {
            where_ = Some(self.expr()?);
        }
        let mut group_by = None;
        if self.is_word("group") && self.is_word_at(1, "by") {
            if !top {
                return Err(self.error_here("GROUP BY is only allowed in the top-level statement"));
            }
            group_by = Some(self.group_by()?);
        }
        if !matches!(self.peek(), TokenKind::End) && (top || !self.is_punct(Punct::RParen)) {
            let mut what = String::new();
            if from.is_none() && where_.is_none() && group_by.is_none() {
                what.push_str("`,`, `FROM`, ");
            }
            if where_.is_none() && group_by.is_none() {
                what.push_str("`WHERE`, ");
            }
            if top && group_by.is_none() {
                what.push_str("`GROUP BY`, ");
            }
            what.push_str(if top { "or end of statement" } else { "or `)`" });
            return Err(self.expected(&what));
        }
        Ok(Statement {
            set,
            select,
            from,
            where_,
            group_by,
            span: Span::new(begin, self.last_end()),
        })
    }

    /// `VALUE` right after SELECT is a field, not the keyword, when what follows cannot start
    /// an item (`[` starts an array literal, so `SELECT VALUE [a]` is the keyword).
    fn value_is_field(&self) -> bool {
        match self.peek_at(1) {
            TokenKind::End => true,
            TokenKind::Punct(p) => matches!(p, Punct::Comma | Punct::Dot | Punct::RParen),
            TokenKind::Word(w) => ["as", "from", "where"]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(w)),
            _ => false,
        }
    }

    fn select_item(&mut self) -> Result<SelectItem, Error> {
        if self.is_punct(Punct::Star) {
            let at = self.start();
            self.bump();
            return Ok(SelectItem::Wildcard {
                span: Span::new(at, self.last_end()),
            });
        }
        let expr = self.expr()?;
        let alias = if self.eat_word("as") {
            let mut alias = self.any_word("an alias after AS")?;
            while self.is_punct(Punct::Dot) && matches!(self.peek_at(1), TokenKind::Word(_)) {
                self.bump();
                alias.push('.');
                alias.push_str(&self.any_word("a name after `.`")?);
            }
            Some(alias)
        } else {
            None
        };
        Ok(SelectItem::Expr { expr, alias })
    }

    fn group_by(&mut self) -> Result<GroupBy, Error> {
        let begin = self.start();
        self.bump();
        self.bump();
        let mut keys = Vec::new();
        let mut window: Option<Window> = None;
        loop {
            let at = self.start();
            let tumbling = self.is_word("tumblingwindow");
            let hopping = self.is_word("hoppingwindow");
            if (tumbling || hopping) && matches!(self.peek_at(1), TokenKind::Punct(Punct::LParen)) {
                if window.is_some() {
                    return Err(self.error_here("GROUP BY takes exactly one window"));
                }
                self.bump();
                self.bump();
                let unit = self.time_unit()?;
                self.expect_punct(Punct::Comma, ",")?;
                let size = Duration {
                    unit,
                    count: self.count()?,
                };
                if tumbling {
                    self.expect_punct(Punct::RParen, ")")?;
                    window = Some(Window::Tumbling {
                        size,
                        span: Span::new(at, self.last_end()),
                    });
                } else {
                    self.expect_punct(Punct::Comma, ",")?;
                    let hop_at = self.start();
                    let hop = Duration {
                        unit,
                        count: self.count()?,
                    };
                    if hop.as_millis() > size.as_millis() {
                        return Err(error_at(
                            self.text,
                            hop_at,
                            "HOPPINGWINDOW's hop must not be longer than its size",
                        ));
                    }
                    self.expect_punct(Punct::RParen, ")")?;
                    window = Some(Window::Hopping {
                        size,
                        hop,
                        span: Span::new(at, self.last_end()),
                    });
                }
            } else {
                keys.push(self.expr()?);
            }
            if !self.eat_punct(Punct::Comma) {
                break;
            }
        }
        let Some(window) = window else {
            return Err(self.error_here(
                "GROUP BY needs a window: TUMBLINGWINDOW(unit, n) or HOPPINGWINDOW(unit, size, hop)",
            ));
        };
        let mut timestamp_by = None;
        if self.is_word("timestamp") && self.is_word_at(1, "by") {
            self.bump();
            self.bump();
            timestamp_by = Some(self.expr()?);
        }
        let mut lateness = None;
        if self.is_word("lateness") && matches!(self.peek_at(1), TokenKind::Punct(Punct::LParen)) {
            self.bump();
            self.bump();
            let unit = self.time_unit()?;
            self.expect_punct(Punct::Comma, ",")?;
            let count = self.count()?;
            self.expect_punct(Punct::RParen, ")")?;
            lateness = Some(Duration { unit, count });
        }
        Ok(GroupBy {
            keys,
            window,
            timestamp_by,
            lateness,
            span: Span::new(begin, self.last_end()),
        })
    }

    fn time_unit(&mut self) -> Result<TimeUnit, Error> {
        let unit = match self.peek() {
            TokenKind::Word(w) => match w.to_ascii_lowercase().as_str() {
                "ms" => Some(TimeUnit::Millisecond),
                "ss" => Some(TimeUnit::Second),
                "mi" => Some(TimeUnit::Minute),
                "hh" => Some(TimeUnit::Hour),
                "dd" => Some(TimeUnit::Day),
                _ => None,
            },
            _ => None,
        };
        match unit {
            Some(unit) => {
                self.bump();
                Ok(unit)
            }
            None => Err(self.expected("a time unit (`ms`, `ss`, `mi`, `hh` or `dd`)")),
        }
    }

    fn count(&mut self) -> Result<u64, Error> {
        let count = match self.peek() {
            TokenKind::Number(n) if n.bytes().all(|b| b.is_ascii_digit()) => n.parse::<u64>().ok(),
            _ => None,
        };
        match count {
            Some(n) if n >= 1 => {
                self.bump();
                Ok(n)
            }
            _ => Err(self.expected("a whole number of at least 1")),
        }
    }

    // ----- expressions --------------------------------------------------------------------

    fn expr(&mut self) -> Result<Expr, Error> {
        self.enter()?;
        let result = self.or();
        self.leave();
        result
    }

    fn binary(left: Expr, op: BinaryOp, right: Expr) -> Expr {
        let span = Span::new(left.span.start as usize, right.span.end as usize);
        Expr {
            kind: ExprKind::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
            },
            span,
        }
    }

    fn or(&mut self) -> Result<Expr, Error> {
        let mut left = self.and()?;
        while self.eat_word("or") {
            let right = self.and()?;
            left = Self::binary(left, BinaryOp::Or, right);
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, Error> {
        let mut left = self.not()?;
        while self.eat_word("and") {
            let right = self.not()?;
            left = Self::binary(left, BinaryOp::And, right);
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, Error> {
        if self.is_word("not") {
            let at = self.start();
            self.bump();
            self.enter()?;
            let operand = self.not();
            self.leave();
            let operand = operand?;
            return Ok(Expr {
                span: Span::new(at, operand.span.end as usize),
                kind: ExprKind::Unary {
                    op: UnaryOp::Not,
                    expr: Box::new(operand),
                },
            });
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, Error> {
        let mut left = self.additive()?;
        loop {
            let op = match self.peek() {
                TokenKind::Punct(Punct::Eq) => BinaryOp::Eq,
                TokenKind::Punct(Punct::NotEq) => BinaryOp::NotEq,
                TokenKind::Punct(Punct::Lt) => BinaryOp::Lt,
                TokenKind::Punct(Punct::LtEq) => BinaryOp::LtEq,
                TokenKind::Punct(Punct::Gt) => BinaryOp::Gt,
                TokenKind::Punct(Punct::GtEq) => BinaryOp::GtEq,
                TokenKind::Word(w) if w.eq_ignore_ascii_case("in") => BinaryOp::In,
                _ => return Ok(left),
            };
            self.bump();
            let right = self.additive()?;
            left = Self::binary(left, op, right);
        }
    }

    fn additive(&mut self) -> Result<Expr, Error> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                TokenKind::Punct(Punct::Plus) => BinaryOp::Add,
                TokenKind::Punct(Punct::Minus) => BinaryOp::Sub,
                _ => return Ok(left),
            };
            self.bump();
            let right = self.multiplicative()?;
            left = Self::binary(left, op, right);
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, Error> {
        let mut left = self.negation()?;
        loop {
            let op = match self.peek() {
                TokenKind::Punct(Punct::Star) => BinaryOp::Mul,
                TokenKind::Punct(Punct::Slash) => BinaryOp::Div,
                TokenKind::Punct(Punct::Percent) => BinaryOp::Rem,
                _ => return Ok(left),
            };
            self.bump();
            let right = self.negation()?;
            left = Self::binary(left, op, right);
        }
    }

    fn negation(&mut self) -> Result<Expr, Error> {
        if !self.is_punct(Punct::Minus) {
            return self.postfix();
        }
        let at = self.start();
        self.bump();
        // `-5` is a negative literal (unless `.`/`[` follows: `-5.x` is `-(5.x)`).
        if let TokenKind::Number(n) = self.peek().clone()
            && !matches!(
                self.peek_at(1),
                TokenKind::Punct(Punct::Dot | Punct::LBracket)
            )
        {
            self.bump();
            return Ok(Expr {
                kind: ExprKind::Literal(Literal::Number(format!("-{n}"))),
                span: Span::new(at, self.last_end()),
            });
        }
        self.enter()?;
        let operand = self.negation();
        self.leave();
        let operand = operand?;
        Ok(Expr {
            span: Span::new(at, operand.span.end as usize),
            kind: ExprKind::Unary {
                op: UnaryOp::Neg,
                expr: Box::new(operand),
            },
        })
    }

    fn postfix(&mut self) -> Result<Expr, Error> {
        let mut expr = self.primary()?;
        let begin = expr.span.start as usize;
        loop {
            if self.eat_punct(Punct::Dot) {
                let name = self.any_word("a member name after `.`")?;
                expr = Expr {
                    kind: ExprKind::Member {
                        base: Box::new(expr),
                        name,
                    },
                    span: Span::new(begin, self.last_end()),
                };
            } else if self.eat_punct(Punct::LBracket) {
                let index = self.expr()?;
                self.expect_punct(Punct::RBracket, "]")?;
                expr = Expr {
                    kind: ExprKind::Index {
                        base: Box::new(expr),
                        index: Box::new(index),
                    },
                    span: Span::new(begin, self.last_end()),
                };
            } else {
                return Ok(expr);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, Error> {
        let at = self.start();
        let kind = match self.peek().clone() {
            TokenKind::Number(n) => {
                self.bump();
                ExprKind::Literal(Literal::Number(n))
            }
            TokenKind::Str { value, .. } => {
                self.bump();
                ExprKind::Literal(Literal::String(value))
            }
            TokenKind::Variable(name) => {
                self.bump();
                ExprKind::Variable(name)
            }
            TokenKind::Punct(Punct::LParen) => {
                self.bump();
                let kind = if self.is_word("select") {
                    self.needs_v2("a nested SELECT")?;
                    let statement = self.statement(false)?;
                    ExprKind::Subquery(Box::new(statement))
                } else {
                    self.expr()?.kind
                };
                self.expect_punct(Punct::RParen, ")")?;
                kind
            }
            TokenKind::Punct(Punct::LBrace) => {
                self.needs_v2("an object literal")?;
                self.bump();
                self.enter()?;
                let members = self.object_members();
                self.leave();
                ExprKind::Object(members?)
            }
            TokenKind::Punct(Punct::LBracket) => {
                self.needs_v2("an array literal")?;
                self.bump();
                let mut items = Vec::new();
                if !self.eat_punct(Punct::RBracket) {
                    loop {
                        items.push(self.expr()?);
                        if self.eat_punct(Punct::RBracket) {
                            break;
                        }
                        if !self.eat_punct(Punct::Comma) {
                            return Err(self.expected("`,` or `]`"));
                        }
                    }
                }
                ExprKind::Array(items)
            }
            TokenKind::Word(word) => self.word(word)?,
            _ => return Err(self.expected("an expression")),
        };
        Ok(Expr {
            kind,
            span: Span::new(at, self.last_end()),
        })
    }

    fn object_members(&mut self) -> Result<Vec<(String, Expr)>, Error> {
        let mut members = Vec::new();
        if self.eat_punct(Punct::RBrace) {
            return Ok(members);
        }
        loop {
            let key = match self.peek().clone() {
                TokenKind::Str { value, .. } => value,
                TokenKind::Word(w) => w,
                _ => return Err(self.expected("an object key (a string or a name)")),
            };
            self.bump();
            self.expect_punct(Punct::Colon, ":")?;
            members.push((key, self.expr()?));
            if self.eat_punct(Punct::RBrace) {
                return Ok(members);
            }
            if !self.eat_punct(Punct::Comma) {
                return Err(self.expected("`,` or `}`"));
            }
        }
    }

    fn word(&mut self, word: String) -> Result<ExprKind, Error> {
        let lower = word.to_ascii_lowercase();
        match lower.as_str() {
            "true" => {
                self.bump();
                return Ok(ExprKind::Literal(Literal::Bool(true)));
            }
            "false" => {
                self.bump();
                return Ok(ExprKind::Literal(Literal::Bool(false)));
            }
            "null" => {
                self.bump();
                return Ok(ExprKind::Literal(Literal::Null));
            }
            "case" => {
                self.bump();
                return self.case();
            }
            _ if is_reserved(&lower) => return Err(self.expected("an expression")),
            _ => {}
        }
        self.bump();
        if !self.eat_punct(Punct::LParen) {
            return Ok(ExprKind::Field(word));
        }
        if lower == "cast" {
            let expr = self.expr()?;
            self.expect_word("as")?;
            let ty = self.any_word("a type name after AS")?;
            self.expect_punct(Punct::RParen, ")")?;
            return Ok(ExprKind::Cast {
                expr: Box::new(expr),
                ty,
            });
        }
        let mut args = Vec::new();
        if !self.eat_punct(Punct::RParen) {
            loop {
                let is_star = self.is_punct(Punct::Star)
                    && matches!(
                        self.peek_at(1),
                        TokenKind::Punct(Punct::Comma | Punct::RParen)
                    );
                if is_star {
                    let at = self.start();
                    self.bump();
                    args.push(Expr {
                        kind: ExprKind::Wildcard,
                        span: Span::new(at, self.last_end()),
                    });
                } else {
                    args.push(self.expr()?);
                }
                if self.eat_punct(Punct::RParen) {
                    break;
                }
                if !self.eat_punct(Punct::Comma) {
                    return Err(self.expected("`,` or `)`"));
                }
            }
        }
        Ok(ExprKind::Call { name: lower, args })
    }

    fn case(&mut self) -> Result<ExprKind, Error> {
        let operand = self.expr()?;
        let mut whens = Vec::new();
        while self.eat_word("when") {
            let value = self.expr()?;
            self.expect_word("then")?;
            let result = self.expr()?;
            whens.push((value, result));
        }
        if whens.is_empty() {
            return Err(self.expected("`WHEN` (CASE needs at least one)"));
        }
        let else_ = if self.eat_word("else") {
            Some(Box::new(self.expr()?))
        } else {
            None
        };
        if !self.eat_word("end") {
            return Err(self.expected(if else_.is_some() {
                "`END`"
            } else {
                "`WHEN`, `ELSE` or `END`"
            }));
        }
        Ok(ExprKind::Case {
            operand: Box::new(operand),
            whens,
            else_,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(sql: &str) -> Result<Statement, Error> {
        parse(sql, SqlVersion::V2016_03_23, &Limits::default())
    }

    fn expr(text: &str) -> Expr {
        match parse_expression(text, SqlVersion::V2016_03_23, &Limits::default()) {
            Ok(e) => e,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    fn field(name: &str) -> Expr {
        Expr {
            kind: ExprKind::Field(name.into()),
            span: Span::default(),
        }
    }

    fn num(text: &str) -> Expr {
        Expr {
            kind: ExprKind::Literal(Literal::Number(text.into())),
            span: Span::default(),
        }
    }

    #[test]
    fn multiplication_binds_tighter_than_addition() {
        let want = Parser::binary(
            field("a"),
            BinaryOp::Add,
            Parser::binary(field("b"), BinaryOp::Mul, field("c")),
        );
        assert_eq!(expr("a + b * c"), want);
    }

    #[test]
    fn subtraction_is_left_associative() {
        let want = Parser::binary(
            Parser::binary(field("a"), BinaryOp::Sub, field("b")),
            BinaryOp::Sub,
            field("c"),
        );
        assert_eq!(expr("a - b - c"), want);
    }

    #[test]
    fn minus_before_a_number_is_part_of_the_literal() {
        assert_eq!(expr("-5"), num("-5"));
        assert_eq!(
            expr("a - -1.5"),
            Parser::binary(field("a"), BinaryOp::Sub, num("-1.5"))
        );
    }

    #[test]
    fn keyword_word_is_a_field_and_call_when_followed_by_parenthesis() {
        assert_eq!(expr("topic"), field("topic"));
        assert!(matches!(
            expr("TOPIC(2)").kind,
            ExprKind::Call { ref name, .. } if name == "topic"
        ));
    }

    #[test]
    fn select_value_field_named_value() {
        let statement = v2("SELECT value FROM 't'").map_err(|e| e.to_string());
        assert!(matches!(statement, Ok(ref s) if !s.select.value));
    }

    #[test]
    fn rejects_duplicate_set_variable() {
        assert!(v2("SET @a = 1, @a = 2 SELECT @a FROM 't'").is_err());
    }

    #[test]
    fn rejects_hop_longer_than_size() {
        assert!(v2("SELECT count(*) FROM 't' GROUP BY HOPPINGWINDOW(ss, 5, 10)").is_err());
    }
}
