//! The AWS IoT SQL rules engine, sans-IO: a statement is compiled once ([`Rule::compile`]) and
//! evaluated on each message ([`Rule::evaluate`]) with AWS's exact value model — Int, 34-digit
//! Decimal, Boolean, String, Array, Object, Null and **Undefined** — every operator's type table,
//! both SQL versions and the function library. thingkit's opt-in `GROUP BY` extension adds what
//! AWS IoT SQL lacks: aggregates over tumbling and hopping windows ([`Windows`]).
//!
//! ```
//! use thingkit_rules::{Environment, Limits, Message, Output, Rule, SqlVersion};
//!
//! /// Randomness is an input (sans-IO): the server passes a real source, a test a fixed one.
//! struct Fixed;
//! impl Environment for Fixed {
//!     fn new_uuid(&self) -> String {
//!         "7c1f5b0e-8a6e-4a3b-9c0d-2f4e6a8b0c1d".into()
//!     }
//!     fn random(&self) -> f64 {
//!         0.5
//!     }
//! }
//!
//! let limits = Limits::default();
//! let rule = Rule::compile(
//!     "SELECT temperature, topic(2) AS device, '5' + 3 AS concatenated, missing AS gone \
//!      FROM 'telemetry/+/temp' WHERE temperature > 25",
//!     SqlVersion::V2016_03_23,
//!     &limits,
//! )?;
//! assert_eq!(rule.topic_filter(), Some("telemetry/+/temp"));
//! let message = |payload: &'static str| Message {
//!     topic: "telemetry/pump-7/temp",
//!     payload: payload.as_bytes(),
//!     client_id: Some("pump-7"),
//!     principal: None,
//!     timestamp_ms: 1_764_115_200_000,
//! };
//! // WHERE is exactly true: an output, with the Undefined item dropped and `+` concatenating.
//! let Some(Output::Json(out)) = rule.evaluate(&message(r#"{"temperature": 25.5}"#), &Fixed, &limits)? else {
//!     panic!("the rule fires");
//! };
//! assert_eq!(out.to_json_string(), r#"{"temperature":25.5,"device":"pump-7","concatenated":"53"}"#);
//! // Not above 25, or no temperature at all (Undefined): no output.
//! assert_eq!(rule.evaluate(&message(r#"{"temperature": 20}"#), &Fixed, &limits)?, None);
//! assert_eq!(rule.evaluate(&message("not json"), &Fixed, &limits)?, None);
//!
//! // Errors carry line:column.
//! let err = Rule::compile("SELECT a\nFROM 'x' WHERE", SqlVersion::default(), &limits).unwrap_err();
//! assert!(err.to_string().starts_with("2:"), "{err}");
//! # Ok::<(), thingkit_rules::Error>(())
//! ```
//!
//! # What is where
//!
//! | module | what it does |
//! |---|---|
//! | [`parser`], [`printer`], [`ast`] | the dialect (SET, SELECT \[VALUE\], FROM, WHERE, CASE, nested SELECT, literals, `.`/`[]`, `*`, the GROUP BY extension) into a tree with spans; errors with line:column; the printer writes canonical SQL that parses back to the same tree |
//! | [`value`], [`decimal`] | the eight AWS types plus raw bytes; Decimal keeps 34 significant digits (Java's `MathContext.DECIMAL128`, round half even) |
//! | `json` | a strict RFC 8259 reader that keeps numbers exact and builds only the members a statement reads; the writer that drops Undefined |
//! | `convert`, `operator` | AWS's implicit-conversion and cast tables; every operator's type table |
//! | `eval` | a statement on one message: SET, WHERE first, SELECT, nested queries, the 2016-03-23 whole-number rule |
//! | `functions` | the function library (math, string, hash, regex, time with Joda/JDK patterns and IANA zones, `topic(n)`, `clientid()`, `principal()`, `timestamp()`, `newuuid()`, `encode`/`decode`, `transform`, ...) |
//! | [`template`] | `${expr}` substitution templates for action fields, evaluated against the original message |
//! | [`window`] | the GROUP BY extension: aggregates over tumbling and hopping windows, event or arrival time, bounded lateness, bounded memory |
//! | [`topic_rule`] | AWS's `TopicRulePayload` and the actions as data (republish, HTTP, thingkit's file sinks), shared by the server's config file and its API |
//!
//! # Design
//!
//! - **Sans-IO.** Time is [`Message::timestamp_ms`]; randomness (`newuuid()`, `rand()`) and
//!   every function that calls another service (`get_thing_shadow`, `aws_lambda`,
//!   `get_dynamodb`, `get_secret`, `sourceip`, ...) come from the caller's [`Environment`]:
//!   [`Environment::call_external`] is the extension point, and a function the environment
//!   does not provide is Undefined (as any function given arguments it cannot use), never a
//!   stub with a made-up value. The actions are performed by the broker's rules runtime
//!   (`thingkit-broker`), not here.
//! - **Undefined is exact.** Missing keys, failed conversions and bad calls are Undefined; it
//!   propagates through operators, makes WHERE not fire, and is dropped from every output
//!   object at any depth (a property test checks no output ever holds one).
//! - **Untrusted input has limits** ([`Limits`]): statement size and nesting depth (checked
//!   before recursing: 100,000 nested parentheses are an error, not a stack overflow), payload
//!   size and JSON depth, the size of values a statement builds and of its output; regular
//!   expressions are size-limited and linear-time (the `regex` crate); window groups are
//!   capped ([`WindowLimits`]). Fuzzed by `rules_parse` and `rules_eval`.
//! - **Two SQL versions.** `2015-10-08` (AWS's default when a rule names none) and
//!   `2016-03-23` are part of the compiled rule: the newer syntax (nested SELECT, object and
//!   array literals, `SELECT VALUE` of several items) is refused under 2015-10-08 with the
//!   version named, the newer functions are Undefined there, and under 2016-03-23 whole-number
//!   decimals (`10.0`) are Ints.
//!
//! # Where AWS's pages contradict themselves
//!
//! The readings chosen (each has a test): `bitnot(13)` is `-14` (two's complement, not the
//! printed 2); `get("abc", 1)` is `"b"` (0-based, as the rule says); `Ltrim(" h i ")` is
//! `"h i "`; `round` rounds half away from zero as the examples do (the table says "rounded
//! down"); `concat(1)` is `"1"`; the NOT table's "Otherwise, true" is a typo for negation; a
//! String casts to itself (the cast table's row is copied from Boolean); Int / Int truncates
//! toward zero (the SET page prints 23.89 for `(75-32)*5/9`, the table says Int); implicit
//! Decimal→Int rounds half away from zero, `cast` and String→Int truncate; `Null = Null` is
//! true (from the `<>` table's Null row); the literals page's 47.696/47.606 typo.
//!
//! # Not supported
//!
//! `decode(x, 'proto')` (protobuf descriptors in S3) is Undefined; string lengths and positions
//! count Unicode scalar values, where AWS's JVM counts UTF-16 units (they differ only outside
//! the Basic Multilingual Plane); regular expressions are the `regex` crate's (no look-around or
//! backreferences: such a pattern is Undefined); `traceid()` is Undefined.
//!
//! # Cargo features
//!
//! None: the crate is always sans-IO.
//!
//! # Specifications
//!
//! AWS IoT developer guide: `iot-sql-reference`, `-select`, `-from`, `-where`, `-data-types`,
//! `-operators`, `-functions`, `-case`, `-literals`, `-nested-queries`, `-json`, `-set`,
//! `iot-substitution-templates`, `iot-rule-sql-version`, `binary-payloads`; RFC 8259 (JSON).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod ast;
mod convert;
pub mod decimal;
mod error;
mod eval;
mod functions;
mod json;
mod lexer;
mod operator;
pub mod parser;
pub mod printer;
pub mod rule;
pub mod template;
pub mod topic_rule;
pub mod value;
pub mod window;

pub use ast::{SqlVersion, Statement};
pub use decimal::Decimal;
pub use error::Error;
pub use parser::{parse, parse_expression};
pub use rule::{Environment, Limits, Message, Output, Rule, Variables};
pub use template::{Template, TemplatePart, parse_template};
pub use value::{Object, Value};
pub use window::{Pushed, WindowLimits, WindowStats, Windows};
