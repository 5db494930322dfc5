//! Test helpers: a fixed environment, and a tiny SQL reader used until the real parser is
//! merged (it builds the same `ast` trees; it checks nothing beyond what the tests need).

#![allow(dead_code)]

use thingkit_rules::ast::{
    Assignment, BinaryOp, Expr, ExprKind, From, Literal, Select, SelectItem, Span, Statement,
    UnaryOp,
};
use thingkit_rules::{Environment, Limits, Message, Output, Rule, SqlVersion};

/// A fixed environment.
pub struct FixedEnv;

impl Environment for FixedEnv {
    fn new_uuid(&self) -> String {
        "00000000-0000-4000-8000-000000000000".to_owned()
    }
    fn random(&self) -> f64 {
        0.5
    }
}

/// Compiles `sql` for `version` (through the mini reader until the parser lands).
pub fn compile(sql: &str, version: SqlVersion) -> Rule {
    let statement = mini::parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    Rule::from_statement(statement, version)
}

/// Runs `sql` on `payload` published to `topic`, returning the output as JSON text (`None`
/// when the rule did not fire; `BINARY:<bytes>` for raw output).
pub fn run_on(sql: &str, version: SqlVersion, topic: &str, payload: &[u8]) -> Option<String> {
    let rule = compile(sql, version);
    let message = Message {
        topic,
        payload,
        client_id: Some("client-1"),
        principal: Some("principal-1"),
        timestamp_ms: 1_481_000_000_000,
    };
    match rule.evaluate(&message, &FixedEnv, &Limits::default()) {
        Ok(Some(Output::Json(value))) => Some(to_json(&value)),
        Ok(Some(Output::Binary(bytes))) => {
            Some(format!("BINARY:{}", String::from_utf8_lossy(&bytes)))
        }
        Ok(None) => None,
        Err(e) => Some(format!("ERROR:{e}")),
    }
}

/// `run_on` under 2016-03-23 on topic `topic/subtopic`.
pub fn run(sql: &str, payload: &str) -> Option<String> {
    run_on(
        sql,
        SqlVersion::V2016_03_23,
        "topic/subtopic",
        payload.as_bytes(),
    )
}

/// Compact JSON of a value (Undefined omitted).
pub fn to_json(value: &thingkit_rules::Value) -> String {
    value.to_json_string()
}

/// The serde_json form of a value; `None` for Undefined.
pub fn to_serde(value: &thingkit_rules::Value) -> Option<serde_json::Value> {
    use thingkit_rules::Value as V;
    Some(match value {
        V::Undefined => return None,
        V::Null => serde_json::Value::Null,
        V::Bool(b) => serde_json::Value::Bool(*b),
        V::Int(n) => serde_json::from_str(&n.to_string()).ok()?,
        V::Decimal(d) => serde_json::from_str(&d.to_string()).ok()?,
        V::String(s) => serde_json::Value::String(s.clone()),
        V::Array(items) => serde_json::Value::Array(items.iter().filter_map(to_serde).collect()),
        V::Object(o) => serde_json::Value::Object(
            o.iter()
                .filter_map(|(k, v)| Some((k.to_owned(), to_serde(v)?)))
                .collect(),
        ),
        V::Binary(b) => serde_json::Value::String(String::from_utf8_lossy(b).into_owned()),
    })
}

mod mini {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    enum Tok {
        Num(String),
        Str(String),
        Ident(String),
        Var(String),
        Sym(&'static str),
    }

    fn lex(sql: &str) -> Result<Vec<Tok>, String> {
        let chars: Vec<char> = sql.chars().collect();
        let mut i = 0;
        let mut out = Vec::new();
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                i += 1;
            } else if c.is_ascii_digit() {
                let s = i;
                while i < chars.len()
                    && (chars[i].is_ascii_digit()
                        || chars[i] == '.'
                        || chars[i] == 'e'
                        || chars[i] == 'E'
                        || ((chars[i] == '-' || chars[i] == '+')
                            && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                out.push(Tok::Num(chars[s..i].iter().collect()));
            } else if c == '\'' || c == '"' {
                let s = i + 1;
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += 1;
                }
                out.push(Tok::Str(chars[s..i].iter().collect()));
                i += 1;
            } else if c.is_alphabetic() || c == '_' || c == '@' {
                let s = i;
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[s..i].iter().collect();
                out.push(match word.strip_prefix('@') {
                    Some(v) => Tok::Var(v.to_owned()),
                    None => Tok::Ident(word),
                });
            } else {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                let sym = ["<>", "!=", "<=", ">="]
                    .into_iter()
                    .find(|s| *s == two)
                    .or_else(|| {
                        [
                            "(", ")", ",", ".", "*", "+", "-", "/", "%", "=", "<", ">", "[", "]",
                            "{", "}", ":",
                        ]
                        .into_iter()
                        .find(|s| s.starts_with(c))
                    })
                    .ok_or_else(|| format!("unexpected {c}"))?;
                i += sym.len();
                out.push(Tok::Sym(sym));
            }
        }
        Ok(out)
    }

    struct P {
        toks: Vec<Tok>,
        at: usize,
    }

    fn e(kind: ExprKind) -> Expr {
        Expr {
            kind,
            span: Span::default(),
        }
    }

    impl P {
        fn peek(&self) -> Option<&Tok> {
            self.toks.get(self.at)
        }
        fn kw(&self, word: &str) -> bool {
            matches!(self.peek(), Some(Tok::Ident(w)) if w.eq_ignore_ascii_case(word))
        }
        fn eat_kw(&mut self, word: &str) -> bool {
            let yes = self.kw(word);
            if yes {
                self.at += 1;
            }
            yes
        }
        fn sym(&self, s: &str) -> bool {
            matches!(self.peek(), Some(Tok::Sym(t)) if *t == s)
        }
        fn eat(&mut self, s: &str) -> bool {
            let yes = self.sym(s);
            if yes {
                self.at += 1;
            }
            yes
        }
        fn need(&mut self, s: &str) -> Result<(), String> {
            if self.eat(s) {
                Ok(())
            } else {
                Err(format!("expected {s} at {:?}", self.peek()))
            }
        }
        fn next(&mut self) -> Option<Tok> {
            let t = self.toks.get(self.at).cloned();
            self.at += 1;
            t
        }

        fn statement(&mut self) -> Result<Statement, String> {
            let mut set = Vec::new();
            if self.eat_kw("SET") {
                loop {
                    let Some(Tok::Var(name)) = self.next() else {
                        return Err("expected @var".into());
                    };
                    self.need("=")?;
                    let value = self.expr()?;
                    set.push(Assignment {
                        name,
                        value,
                        span: Span::default(),
                    });
                    if !self.eat(",") {
                        break;
                    }
                }
            }
            if !self.eat_kw("SELECT") {
                return Err("expected SELECT".into());
            }
            let value = self.eat_kw("VALUE");
            let mut items = Vec::new();
            loop {
                if self.eat("*") {
                    items.push(SelectItem::Wildcard {
                        span: Span::default(),
                    });
                } else {
                    let expr = self.expr()?;
                    let alias = if self.eat_kw("AS") {
                        match self.next() {
                            Some(Tok::Ident(a)) => Some(a),
                            t => return Err(format!("bad alias {t:?}")),
                        }
                    } else {
                        None
                    };
                    items.push(SelectItem::Expr { expr, alias });
                }
                if !self.eat(",") {
                    break;
                }
            }
            let from = if self.eat_kw("FROM") {
                match self.peek() {
                    Some(Tok::Str(f)) => {
                        let filter = f.clone();
                        self.at += 1;
                        Some(From::Topic {
                            filter,
                            span: Span::default(),
                        })
                    }
                    _ => Some(From::Expr(self.expr()?)),
                }
            } else {
                None
            };
            let where_ = if self.eat_kw("WHERE") {
                Some(self.expr()?)
            } else {
                None
            };
            Ok(Statement {
                set,
                select: Select { value, items },
                from,
                where_,
                group_by: None,
                span: Span::default(),
            })
        }

        fn expr(&mut self) -> Result<Expr, String> {
            let mut left = self.and()?;
            while self.eat_kw("OR") {
                let right = self.and()?;
                left = bin(BinaryOp::Or, left, right);
            }
            Ok(left)
        }
        fn and(&mut self) -> Result<Expr, String> {
            let mut left = self.not()?;
            while self.eat_kw("AND") {
                let right = self.not()?;
                left = bin(BinaryOp::And, left, right);
            }
            Ok(left)
        }
        fn not(&mut self) -> Result<Expr, String> {
            if self.eat_kw("NOT") {
                let operand = self.not()?;
                return Ok(e(ExprKind::Unary {
                    op: UnaryOp::Not,
                    expr: Box::new(operand),
                }));
            }
            self.cmp()
        }
        fn cmp(&mut self) -> Result<Expr, String> {
            let left = self.add()?;
            let op = if self.kw("IN") {
                BinaryOp::In
            } else {
                match self.peek() {
                    Some(Tok::Sym("=")) => BinaryOp::Eq,
                    Some(Tok::Sym("<>" | "!=")) => BinaryOp::NotEq,
                    Some(Tok::Sym("<")) => BinaryOp::Lt,
                    Some(Tok::Sym("<=")) => BinaryOp::LtEq,
                    Some(Tok::Sym(">")) => BinaryOp::Gt,
                    Some(Tok::Sym(">=")) => BinaryOp::GtEq,
                    _ => return Ok(left),
                }
            };
            self.at += 1;
            let right = self.add()?;
            Ok(bin(op, left, right))
        }
        fn add(&mut self) -> Result<Expr, String> {
            let mut left = self.mul()?;
            loop {
                let op = if self.eat("+") {
                    BinaryOp::Add
                } else if self.eat("-") {
                    BinaryOp::Sub
                } else {
                    return Ok(left);
                };
                let right = self.mul()?;
                left = bin(op, left, right);
            }
        }
        fn mul(&mut self) -> Result<Expr, String> {
            let mut left = self.unary()?;
            loop {
                let op = if self.eat("*") {
                    BinaryOp::Mul
                } else if self.eat("/") {
                    BinaryOp::Div
                } else if self.eat("%") {
                    BinaryOp::Rem
                } else {
                    return Ok(left);
                };
                let right = self.unary()?;
                left = bin(op, left, right);
            }
        }
        fn unary(&mut self) -> Result<Expr, String> {
            if self.eat("-") {
                if let Some(Tok::Num(n)) = self.peek() {
                    let n = format!("-{n}");
                    self.at += 1;
                    return self.postfix(e(ExprKind::Literal(Literal::Number(n))));
                }
                let operand = self.unary()?;
                return Ok(e(ExprKind::Unary {
                    op: UnaryOp::Neg,
                    expr: Box::new(operand),
                }));
            }
            let p = self.primary()?;
            self.postfix(p)
        }
        fn postfix(&mut self, mut base: Expr) -> Result<Expr, String> {
            loop {
                if self.eat(".") {
                    match self.next() {
                        Some(Tok::Ident(name)) => {
                            base = e(ExprKind::Member {
                                base: Box::new(base),
                                name,
                            })
                        }
                        t => return Err(format!("bad member {t:?}")),
                    }
                } else if self.eat("[") {
                    let index = self.expr()?;
                    self.need("]")?;
                    base = e(ExprKind::Index {
                        base: Box::new(base),
                        index: Box::new(index),
                    });
                } else {
                    return Ok(base);
                }
            }
        }
        fn primary(&mut self) -> Result<Expr, String> {
            match self.next() {
                Some(Tok::Num(n)) => Ok(e(ExprKind::Literal(Literal::Number(n)))),
                Some(Tok::Str(s)) => Ok(e(ExprKind::Literal(Literal::String(s)))),
                Some(Tok::Var(v)) => Ok(e(ExprKind::Variable(v))),
                Some(Tok::Sym("(")) => {
                    if self.kw("SELECT") {
                        let s = self.statement()?;
                        self.need(")")?;
                        return Ok(e(ExprKind::Subquery(Box::new(s))));
                    }
                    let inner = self.expr()?;
                    self.need(")")?;
                    Ok(inner)
                }
                Some(Tok::Sym("{")) => {
                    let mut members = Vec::new();
                    if !self.eat("}") {
                        loop {
                            let Some(Tok::Str(k)) = self.next() else {
                                return Err("bad key".into());
                            };
                            self.need(":")?;
                            members.push((k, self.expr()?));
                            if !self.eat(",") {
                                break;
                            }
                        }
                        self.need("}")?;
                    }
                    Ok(e(ExprKind::Object(members)))
                }
                Some(Tok::Sym("[")) => {
                    let mut items = Vec::new();
                    if !self.eat("]") {
                        loop {
                            items.push(self.expr()?);
                            if !self.eat(",") {
                                break;
                            }
                        }
                        self.need("]")?;
                    }
                    Ok(e(ExprKind::Array(items)))
                }
                Some(Tok::Ident(word)) => {
                    let lower = word.to_ascii_lowercase();
                    match lower.as_str() {
                        "true" => return Ok(e(ExprKind::Literal(Literal::Bool(true)))),
                        "false" => return Ok(e(ExprKind::Literal(Literal::Bool(false)))),
                        "null" => return Ok(e(ExprKind::Literal(Literal::Null))),
                        "case" => {
                            let operand = self.expr()?;
                            let mut whens = Vec::new();
                            while self.eat_kw("WHEN") {
                                let w = self.expr()?;
                                if !self.eat_kw("THEN") {
                                    return Err("expected THEN".into());
                                }
                                whens.push((w, self.expr()?));
                            }
                            let else_ = if self.eat_kw("ELSE") {
                                Some(Box::new(self.expr()?))
                            } else {
                                None
                            };
                            if !self.eat_kw("END") {
                                return Err("expected END".into());
                            }
                            return Ok(e(ExprKind::Case {
                                operand: Box::new(operand),
                                whens,
                                else_,
                            }));
                        }
                        _ => {}
                    }
                    if self.eat("(") {
                        if lower == "cast" {
                            let value = self.expr()?;
                            if !self.eat_kw("AS") {
                                return Err("expected AS".into());
                            }
                            let Some(Tok::Ident(ty)) = self.next() else {
                                return Err("expected type".into());
                            };
                            self.need(")")?;
                            return Ok(e(ExprKind::Cast {
                                expr: Box::new(value),
                                ty,
                            }));
                        }
                        let mut args = Vec::new();
                        if !self.eat(")") {
                            loop {
                                if self.eat("*") {
                                    args.push(e(ExprKind::Wildcard));
                                } else {
                                    args.push(self.expr()?);
                                }
                                if !self.eat(",") {
                                    break;
                                }
                            }
                            self.need(")")?;
                        }
                        return Ok(e(ExprKind::Call { name: lower, args }));
                    }
                    Ok(e(ExprKind::Field(word)))
                }
                t => Err(format!("unexpected {t:?}")),
            }
        }
    }

    fn bin(op: BinaryOp, left: Expr, right: Expr) -> Expr {
        e(ExprKind::Binary {
            op,
            left: Box::new(left),
            right: Box::new(right),
        })
    }

    pub fn parse(sql: &str) -> Result<Statement, String> {
        let mut p = P {
            toks: lex(sql)?,
            at: 0,
        };
        let s = p.statement()?;
        if p.at != p.toks.len() {
            return Err(format!("trailing {:?}", p.peek()));
        }
        Ok(s)
    }
}
