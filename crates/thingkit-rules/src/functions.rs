//! The function library (stub until the function-library work lands: every function is
//! Undefined).

use crate::ast::SqlVersion;
use crate::error::Error;
use crate::rule::{Environment, Message};
use crate::value::Value;

/// What a function sees besides its arguments.
pub(crate) struct FunctionContext<'a> {
    pub message: &'a Message<'a>,
    pub env: &'a dyn Environment,
    pub version: SqlVersion,
}

/// Calls `name` (lower-case) with evaluated arguments; `Err` only when an external function
/// failed.
pub(crate) fn call(name: &str, args: &[Value], ctx: &FunctionContext<'_>) -> Result<Value, Error> {
    let _ = (name, args, ctx.message, ctx.env, ctx.version);
    Ok(Value::Undefined)
}

/// Whether `name` exists only under SQL 2016-03-23.
pub(crate) fn is_v2_only(name: &str) -> bool {
    let _ = name;
    false
}
