//! A compiled rule and its evaluation on one message: the public entry point.
//!
//! CONTRACT (scaffolding, filled in by the evaluator work): the signatures below are what the
//! broker, the CLI and the API code against.

use bytes::Bytes;

use crate::ast::{SqlVersion, Statement};
use crate::error::Error;
use crate::value::Value;

/// Limits on untrusted input: the statement, the payload, the output. Every one is checked.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// The longest statement, in bytes (AWS: 256 KiB... see docs).
    pub max_sql_bytes: usize,
    /// The deepest nesting of expressions and nested queries in a statement.
    pub max_sql_depth: usize,
    /// The largest payload a rule reads, in bytes (AWS's message limit is 128 KiB).
    pub max_payload_bytes: usize,
    /// The deepest nesting of a JSON payload.
    pub max_json_depth: usize,
    /// The largest output (serialized), in bytes.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_sql_bytes: 256 * 1024,
            max_sql_depth: 64,
            max_payload_bytes: 128 * 1024,
            max_json_depth: 64,
            max_output_bytes: 1024 * 1024,
        }
    }
}

/// The message a rule runs on, with what AWS's functions read besides the payload.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The topic it was published to (`topic()`).
    pub topic: &'a str,
    /// The payload.
    pub payload: &'a [u8],
    /// The publisher's MQTT client ID (`clientid()`; `"n/a"` when not MQTT).
    pub client_id: Option<&'a str>,
    /// The publisher's principal (`principal()`: the certificate ID for X.509 clients).
    pub principal: Option<&'a str>,
    /// When the rules engine received it, milliseconds since the epoch (`timestamp()`).
    pub timestamp_ms: u64,
}

/// What a rule needs from outside that is not in the message: randomness and the
/// functions that call other services (`get_thing_shadow`, ...). Sans-IO: the caller
/// provides it.
pub trait Environment {
    /// A random version-4 UUID (`newuuid()`).
    fn new_uuid(&self) -> String;
    /// A random double in [0, 1) (`rand()`).
    fn random(&self) -> f64;
    /// The account ID (`accountid()`), if any.
    fn account_id(&self) -> Option<&str> {
        None
    }
    /// An external function (`get_thing_shadow`, `aws_lambda`, `get_dynamodb`, ...):
    /// `None` if this environment does not provide `name` (the call is then Undefined),
    /// `Some(Err)` if the call failed (the rule is terminated and its error action runs).
    fn call_external(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        let _ = (name, args);
        None
    }
}

/// What a rule produced for a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A JSON value (an object, or anything with `SELECT VALUE`).
    Json(Value),
    /// Raw bytes (`SELECT *` on a non-JSON payload).
    Binary(Bytes),
}

/// A compiled rule: its statement, SQL version and topic filter.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The statement's text, for errors found after parsing (`line:column` of a span).
    sql: String,
    statement: Statement,
    version: SqlVersion,
}

impl Rule {
    /// Parses and checks `sql` for `version`.
    ///
    /// # Errors
    ///
    /// [`Error::Parse`] with line:column, or a limit.
    pub fn compile(sql: &str, version: SqlVersion, limits: &Limits) -> Result<Rule, Error> {
        let _ = (sql, version, limits);
        todo!("parser")
    }

    /// The statement.
    pub fn statement(&self) -> &Statement {
        &self.statement
    }

    /// The statement's text, as compiled.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The SQL version.
    pub fn version(&self) -> SqlVersion {
        self.version
    }

    /// The FROM topic filter, if any.
    pub fn topic_filter(&self) -> Option<&str> {
        match &self.statement.from {
            Some(crate::ast::From::Topic { filter, .. }) => Some(filter),
            _ => None,
        }
    }

    /// Whether it has the GROUP BY window extension (then it runs in a
    /// [`crate::window::Windows`], not through [`Rule::evaluate`]).
    pub fn is_windowed(&self) -> bool {
        self.statement.group_by.is_some()
    }

    /// Runs the rule on one message: `Ok(None)` when WHERE is not exactly true.
    ///
    /// # Errors
    ///
    /// A limit was exceeded, or an external function failed.
    pub fn evaluate(
        &self,
        message: &Message<'_>,
        env: &dyn Environment,
        limits: &Limits,
    ) -> Result<Option<Output>, Error> {
        let _ = (message, env, limits);
        todo!("evaluator")
    }
}
