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

/// SET variables by name, in assignment order (what templates see besides the payload).
pub type Variables = Vec<(String, Value)>;

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
    /// Which payload members the statement reads, found once here rather than per message.
    payload_use: crate::eval::PayloadUse,
}

impl Rule {
    /// Parses and checks `sql` for `version`.
    ///
    /// # Errors
    ///
    /// [`Error::Parse`] with line:column, or a limit; [`Error::Window`] for a `GROUP BY`
    /// statement that cannot run as windows (see [`crate::window`]).
    pub fn compile(sql: &str, version: SqlVersion, limits: &Limits) -> Result<Rule, Error> {
        let statement = crate::parser::parse(sql, version, limits)?;
        match &statement.from {
            Some(crate::ast::From::Topic { filter, span }) => {
                if let Err(why) = check_topic_filter(filter) {
                    return Err(crate::lexer::error_at(
                        sql,
                        span.start as usize,
                        format!("FROM '{filter}' is not a valid MQTT topic filter: {why}"),
                    ));
                }
            }
            _ => {
                if let Some(group_by) = &statement.group_by {
                    return Err(crate::lexer::error_at(
                        sql,
                        group_by.span.start as usize,
                        "GROUP BY needs a FROM topic filter (a windowed rule listens on a topic)",
                    ));
                }
            }
        }
        if statement.group_by.is_some() {
            // A windowed statement's structural checks (what SELECT may say), so a rule that
            // no `Windows` would accept is refused when it is created.
            crate::window::check(&statement, sql)?;
        }
        Ok(Rule {
            sql: sql.to_string(),
            payload_use: crate::eval::payload_use(&statement),
            statement,
            version,
        })
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
        self.evaluate_with_variables(message, env, limits)
            .map(|(output, _)| output)
    }

    /// [`Rule::evaluate`], also returning the SET variables (in assignment order), which the
    /// actions' substitution templates see ([`crate::Template::render`]).
    ///
    /// # Errors
    ///
    /// A limit was exceeded, or an external function failed.
    pub fn evaluate_with_variables(
        &self,
        message: &Message<'_>,
        env: &dyn Environment,
        limits: &Limits,
    ) -> Result<(Option<Output>, Variables), Error> {
        crate::eval::evaluate(
            &self.statement,
            &self.payload_use,
            self.version,
            message,
            env,
            limits,
        )
    }

    /// A rule from an already built statement (the parser's output, or a tree built by code).
    /// It has no SQL text: errors found later (a window's checks) point at `1:1`.
    pub fn from_statement(statement: Statement, version: SqlVersion) -> Rule {
        Rule {
            sql: String::new(),
            payload_use: crate::eval::payload_use(&statement),
            statement,
            version,
        }
    }
}

/// Checks an MQTT topic filter: non-empty, no NUL, `#` only as the whole last level, `+` only
/// as a whole level. The reason is returned for the error message.
fn check_topic_filter(filter: &str) -> Result<(), &'static str> {
    if filter.is_empty() {
        return Err("it is empty");
    }
    if filter.contains('\0') {
        return Err("it contains a NUL character");
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err("`#` must be the whole last level");
        }
        if level.contains('+') && level != "+" {
            return Err("`+` must be a whole level");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(sql: &str) -> Result<Rule, Error> {
        Rule::compile(sql, SqlVersion::V2016_03_23, &Limits::default())
    }

    #[test]
    fn compiles_and_exposes_the_topic_filter() {
        let rule = compile("SELECT * FROM 'devices/+/telemetry/#'");
        assert_eq!(
            rule.as_ref().ok().and_then(Rule::topic_filter),
            Some("devices/+/telemetry/#")
        );
    }

    #[test]
    fn rejects_invalid_topic_filters_at_the_literal() {
        for filter in ["a/#/b", "a/b#", "a+/b", "", "a\\u0000b"] {
            let error = compile(&format!("SELECT * FROM '{filter}'")).map(|_| ());
            assert!(
                matches!(
                    error,
                    Err(Error::Parse {
                        line: 1,
                        column: 15,
                        ..
                    })
                ),
                "{filter}: {error:?}"
            );
        }
    }

    #[test]
    fn rejects_group_by_without_from() {
        let error = compile("SELECT count(*) GROUP BY TUMBLINGWINDOW(ss, 10)").map(|_| ());
        assert!(
            matches!(error, Err(Error::Parse { column: 17, .. })),
            "{error:?}"
        );
    }

    #[test]
    fn windowed_rule_is_windowed() {
        let rule = compile(
            "SELECT device, count(*) AS n FROM 'd/+' GROUP BY device, TUMBLINGWINDOW(mi, 5)",
        );
        assert!(rule.as_ref().is_ok_and(Rule::is_windowed), "{rule:?}");
    }
}
