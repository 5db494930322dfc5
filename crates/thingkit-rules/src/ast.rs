//! The syntax tree of an AWS IoT SQL statement (plus thingkit's opt-in `GROUP BY` window
//! extension), as the parser builds it and the printer writes it back.
//!
//! Every node carries a [`Span`]: byte offsets into the statement's text, which errors turn
//! into `line:column`. Spans are positions, not content: two spans always compare equal, so
//! `==` on trees is structural (`parse(print(tree)) == tree` although the offsets differ).

use std::fmt;

/// The AWS IoT SQL version a rule is compiled for (`awsIotSqlVersion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SqlVersion {
    /// `2015-10-08`, the original version and AWS's default when a rule names none.
    #[default]
    V2015_10_08,
    /// `2016-03-23`: nested SELECT, object and array literals, `encode`/`decode` and the other
    /// V2 functions; whole-number decimals become Int.
    V2016_03_23,
    /// `beta`: AWS's moving target; thingkit treats it as `2016-03-23`.
    Beta,
}

impl SqlVersion {
    /// The version as AWS writes it (`"2015-10-08"`, `"2016-03-23"`, `"beta"`).
    pub fn as_str(self) -> &'static str {
        match self {
            SqlVersion::V2015_10_08 => "2015-10-08",
            SqlVersion::V2016_03_23 => "2016-03-23",
            SqlVersion::Beta => "beta",
        }
    }

    /// Parses AWS's spelling; `None` for anything else.
    pub fn parse(text: &str) -> Option<SqlVersion> {
        match text {
            "2015-10-08" => Some(SqlVersion::V2015_10_08),
            "2016-03-23" => Some(SqlVersion::V2016_03_23),
            "beta" => Some(SqlVersion::Beta),
            _ => None,
        }
    }

    /// Whether the 2016-03-23 features (and its whole-number-decimal rule) apply.
    pub fn is_v2(self) -> bool {
        !matches!(self, SqlVersion::V2015_10_08)
    }
}

impl fmt::Display for SqlVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Byte offsets `start..end` into the statement's text.
#[derive(Debug, Clone, Copy, Default, Eq)]
pub struct Span {
    /// The first byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl PartialEq for Span {
    /// Always true: spans are positions, not content (see the module docs).
    fn eq(&self, _: &Span) -> bool {
        true
    }
}

impl Span {
    /// The span `start..end`.
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            end: u32::try_from(end).unwrap_or(u32::MAX),
        }
    }
}

/// A whole statement: `[SET ...] SELECT [VALUE] ... [FROM ...] [WHERE ...] [GROUP BY ...]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// `SET @a = e, ...` (evaluated in order, before WHERE).
    pub set: Vec<Assignment>,
    /// The SELECT clause.
    pub select: Select,
    /// The FROM clause: a quoted topic filter at the top level, a payload expression in a
    /// nested query. Optional (Basic Ingest rules need none).
    pub from: Option<From>,
    /// The WHERE condition: the rule fires only when it is exactly `true`.
    pub where_: Option<Expr>,
    /// thingkit's window extension; `None` for every AWS statement.
    pub group_by: Option<GroupBy>,
    /// The whole statement.
    pub span: Span,
}

/// `@name = value` in a SET clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// The variable's name, without the `@`.
    pub name: String,
    /// Its value.
    pub value: Expr,
    /// `@name = value`.
    pub span: Span,
}

/// The SELECT clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    /// `SELECT VALUE ...`: the output is the item itself, not an object.
    pub value: bool,
    /// The items, in order.
    pub items: Vec<SelectItem>,
}

/// One item of a SELECT list.
#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    /// `*`: the whole payload (its keys, or the raw bytes of a non-JSON payload).
    Wildcard {
        /// The `*`.
        span: Span,
    },
    /// `expr [AS alias]`.
    Expr {
        /// The expression.
        expr: Expr,
        /// The output key given with `AS`; without one, the key is derived from the
        /// expression (a field's last name).
        alias: Option<String>,
    },
}

/// The FROM clause.
#[derive(Debug, Clone, PartialEq)]
pub enum From {
    /// `FROM 'a/+/b'`: the MQTT topic filter the rule listens on (the text between the
    /// quotes, unvalidated by the parser).
    Topic {
        /// The filter.
        filter: String,
        /// The quoted literal.
        span: Span,
    },
    /// `FROM expr` in a nested query: the array (of the enclosing payload) it iterates.
    Expr(Expr),
}

/// thingkit's window extension: `GROUP BY key, ..., TUMBLINGWINDOW(unit, n)
/// [TIMESTAMP BY expr] [LATENESS(unit, n)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupBy {
    /// The grouping keys, in order (may be empty: one group per window).
    pub keys: Vec<Expr>,
    /// The window.
    pub window: Window,
    /// Event time in milliseconds since the epoch; `None` means arrival time (`timestamp()`).
    pub timestamp_by: Option<Expr>,
    /// How long after a window's end late events are still counted; `None` means zero.
    pub lateness: Option<Duration>,
    /// The whole clause.
    pub span: Span,
}

/// A window of the GROUP BY extension.
#[derive(Debug, Clone, PartialEq)]
pub enum Window {
    /// `TUMBLINGWINDOW(unit, size)`: contiguous, non-overlapping windows of `size`.
    Tumbling {
        /// The window's length.
        size: Duration,
        /// `TUMBLINGWINDOW(...)`.
        span: Span,
    },
    /// `HOPPINGWINDOW(unit, size, hop)`: windows of `size` starting every `hop`.
    Hopping {
        /// The window's length.
        size: Duration,
        /// The distance between window starts.
        hop: Duration,
        /// `HOPPINGWINDOW(...)`.
        span: Span,
    },
}

/// A length of time as written: a count of a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration {
    /// The unit.
    pub unit: TimeUnit,
    /// How many (at least 1).
    pub count: u64,
}

impl Duration {
    /// The length in milliseconds (saturating).
    pub fn as_millis(self) -> u64 {
        self.count.saturating_mul(self.unit.millis())
    }
}

/// The time units of the window extension (eKuiper's and Azure Stream Analytics' spellings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    /// `ms`.
    Millisecond,
    /// `ss`.
    Second,
    /// `mi`.
    Minute,
    /// `hh`.
    Hour,
    /// `dd`.
    Day,
}

impl TimeUnit {
    /// Milliseconds in one unit.
    pub fn millis(self) -> u64 {
        match self {
            TimeUnit::Millisecond => 1,
            TimeUnit::Second => 1_000,
            TimeUnit::Minute => 60_000,
            TimeUnit::Hour => 3_600_000,
            TimeUnit::Day => 86_400_000,
        }
    }

    /// The keyword (`ms`, `ss`, `mi`, `hh`, `dd`).
    pub fn as_str(self) -> &'static str {
        match self {
            TimeUnit::Millisecond => "ms",
            TimeUnit::Second => "ss",
            TimeUnit::Minute => "mi",
            TimeUnit::Hour => "hh",
            TimeUnit::Day => "dd",
        }
    }
}

/// An expression and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it is.
    pub span: Span,
}

/// The kinds of expression.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// A literal.
    Literal(Literal),
    /// A payload field by name (`temperature`).
    Field(String),
    /// `*` as a function argument (`encode(*, 'base64')`, `count(*)`): the whole payload.
    Wildcard,
    /// `@name`: a SET variable.
    Variable(String),
    /// `base.name`: a member of an object.
    Member {
        /// The object.
        base: Box<Expr>,
        /// The key.
        name: String,
    },
    /// `base[index]`: an array element (Int index) or an object member (String index).
    Index {
        /// The array or object.
        base: Box<Expr>,
        /// The index.
        index: Box<Expr>,
    },
    /// `name(args)`: a function call; `name` is lower-case (names are case-insensitive).
    Call {
        /// The function's name, lower-cased.
        name: String,
        /// The arguments.
        args: Vec<Expr>,
    },
    /// `cast(expr AS type)`; `ty` is the type keyword as written.
    Cast {
        /// The value.
        expr: Box<Expr>,
        /// The type keyword (`Int`, `Decimal`, `String`, ...), as written.
        ty: String,
    },
    /// A unary operator.
    Unary {
        /// The operator.
        op: UnaryOp,
        /// The operand.
        expr: Box<Expr>,
    },
    /// A binary operator.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// The left operand.
        left: Box<Expr>,
        /// The right operand.
        right: Box<Expr>,
    },
    /// `CASE operand WHEN v THEN r ... [ELSE e] END` (AWS has only the simple form).
    Case {
        /// The value compared.
        operand: Box<Expr>,
        /// `(WHEN value, THEN result)` pairs, at least one.
        whens: Vec<(Expr, Expr)>,
        /// The ELSE result.
        else_: Option<Box<Expr>>,
    },
    /// `{'key': expr, ...}` (2016-03-23).
    Object(Vec<(String, Expr)>),
    /// `[expr, ...]` (2016-03-23).
    Array(Vec<Expr>),
    /// `(SELECT ...)`: a nested query (2016-03-23).
    Subquery(Box<Statement>),
}

/// A literal value as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A number, as its text (`25`, `-1.5`, `5E-12`): the evaluator decides Int or Decimal.
    Number(String),
    /// A string, unescaped.
    String(String),
    /// `true` / `false`.
    Bool(bool),
    /// `NULL`.
    Null,
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// `NOT`.
    Not,
    /// `-` (negation).
    Neg,
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `AND`.
    And,
    /// `OR`.
    Or,
    /// `=`.
    Eq,
    /// `<>` (and `!=`).
    NotEq,
    /// `<`.
    Lt,
    /// `<=`.
    LtEq,
    /// `>`.
    Gt,
    /// `>=`.
    GtEq,
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`.
    Rem,
    /// `IN`: membership in an array.
    In,
}
