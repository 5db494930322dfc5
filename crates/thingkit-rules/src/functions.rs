//! AWS IoT SQL's function library (IOT-A `iot-sql-functions.md`; spec digest §A.10): every
//! function that makes sense outside AWS, evaluated on already-evaluated argument values.
//!
//! [`call`] takes the lower-cased function name and its arguments. A wrong number of arguments,
//! an argument of a type the function's table does not accept, or a conversion that fails gives
//! `Undefined` (spec §A.6 rule 6), never an error. The only error is an external function
//! (`get_thing_shadow`, `aws_lambda`, ...) whose provider failed: that terminates the rule and
//! runs its error action.
//!
//! Results have their natural type (Int or Decimal as each function's table says; the "double
//! precision" functions return the Decimal of the f64); turning whole-number decimals into Ints
//! under 2016-03-23 is the evaluator's job, as it is for every expression.
//!
//! # Versions and Undefined cases
//!
//! [`is_v2_only`] names the functions AWS added in 2016-03-23 (spec §A.9); [`call`] itself does
//! not check the version, the compiler or evaluator does. Every function below also gives
//! Undefined for a wrong argument count.
//!
//! | function | versions | Undefined when |
//! |---|---|---|
//! | `abs`, `sign`, `ceil`, `floor`, `round` | all | not Int, Decimal or numeric String; result beyond 34 digits |
//! | `acos` `asin` `atan` `atan2` `cos` `cosh` `sin` `sinh` `tan` `tanh` `exp` `ln` `log` `sqrt` `power` | all | not numeric; result NaN or infinite |
//! | `mod`, `remainder` | all | not numeric; divisor zero |
//! | `trunc` | all | first not numeric; second not Int/Decimal |
//! | `bitand` `bitor` `bitxor` `bitnot` | all | not numeric; beyond 34 digits |
//! | `chr` | all | not numeric; not 0..=127 |
//! | `nanvl` | all | never (Undefined/Null first argument gives the second) |
//! | `isnull` | all | never |
//! | `concat` | all | no arguments; an argument without a string form (Null, Undefined); result over 1 MiB |
//! | `startswith` `endswith` `lower` `upper` `ltrim` `rtrim` `trim` `replace` `lpad` `rpad` `substring` `md2` `md5` `sha1` `sha224` `sha256` `sha384` `sha512` | all | an argument is Null or Undefined (no string form); a count not numeric; result over 1 MiB |
//! | `get` | all | not Array/String/Object; index out of range; key not a String or absent |
//! | `get_or_default` | all | the default is Undefined (and the first argument is Null/Undefined) |
//! | `regexp_matches` `regexp_replace` `regexp_substr` | all | Null/Undefined argument; invalid or oversized pattern (Java-only syntax: look-around, backreferences, possessive quantifiers); invalid replacement; no match (`regexp_substr`) |
//! | `topic` | all | segment out of range |
//! | `accountid`, `principal` | all | not provided by the environment / message |
//! | `clientid`, `timestamp`, `sql_version`, `newuuid`, `rand` | all | never |
//! | `traceid` | all | always (no MQTT trace ids here) |
//! | `sourceip` | all | the environment does not provide it (`call_external("sourceip", [])`) |
//! | `encode`, `decode` | 2016-03-23 | scheme not `base64` (`decode(..., 'proto')` is Undefined: no descriptor store); `decode` of undecodable text is **Null** |
//! | `indexof`, `length`, `numbytes` | 2016-03-23 | an argument without a string form |
//! | `isundefined` | 2016-03-23 | never |
//! | `transform` | 2016-03-23 | mode not `enrichArray`; not Object and Array of objects; result over 128 KiB |
//! | `parse_time` | 2016-03-23 | unsupported pattern letter; unknown zone; time out of range |
//! | `time_to_epoch` | 2016-03-23 | text does not match the pattern; unsupported letter; unknown zone |
//! | `get_thing_shadow`, `get_dynamodb` | 2016-03-23 | external: the environment does not provide it |
//! | `aws_lambda` `get_registry_data` `get_secret` `machinelearning_predict` `get_mqtt_property` `get_user_properties` | all | external: the environment does not provide it |
//!
//! `cast` is not a function here: it is syntax (`ExprKind::Cast`), evaluated by the evaluator.
//!
//! # Readings of the page
//!
//! Where the page contradicts itself (spec §A.15) or says nothing, this library reads it so:
//!
//! - `bitnot(13)` is -14 (two's complement), not the printed 2.
//! - `get("abc", 1)` is `"b"` (the 0-based rule), not the printed `"a"`.
//! - `ltrim(" h i ")` is `"h i "`, not the printed `"hi "`.
//! - `round` rounds half away from zero (the examples: `round(-1.5)` = -2), not "down" (the table).
//! - `concat(x)` with one argument applies the general rule, so `concat(1)` is `"1"` (the example),
//!   not "unmodified" (the table); `concat(1, 2)` (no String, no Array) is `"12"`.
//! - The `bitxor` example printed as `bitor(13, 5) = 8` is bitxor's.
//! - `regexp_substr` with no match is Undefined; `get_or_default` replaces Null as well as
//!   Undefined; `topic(n)` out of range is Undefined.
//! - Lengths and positions count Unicode scalar values, not Java's UTF-16 units.

// Called by the evaluator; on a branch without it only the tests call this module.
#![cfg_attr(not(test), allow(dead_code))]

mod codec;
mod collection;
mod conversion;
mod digest;
mod math;
mod pattern;
mod text;
mod time;

#[cfg(test)]
mod tests;

use crate::ast::SqlVersion;
use crate::error::Error;
use crate::rule::{Environment, Message};
use crate::value::Value;

/// The largest string (in bytes) a string function builds; a longer result is Undefined.
pub(crate) const MAX_STRING_BYTES: usize = 1024 * 1024;

/// What a function may read besides its arguments.
pub(crate) struct FunctionContext<'a> {
    /// The message the rule runs on (`topic()`, `clientid()`, `timestamp()`, ...).
    pub message: &'a Message<'a>,
    /// Randomness, the account and the external functions.
    pub env: &'a dyn Environment,
    /// The rule's SQL version (`sql_version()`).
    pub version: SqlVersion,
}

/// The functions added in 2016-03-23 (spec §A.9).
const V2_ONLY: &[&str] = &[
    "decode",
    "encode",
    "get_dynamodb",
    "get_thing_shadow",
    "indexof",
    "isundefined",
    "length",
    "numbytes",
    "parse_time",
    "time_to_epoch",
    "transform",
];

/// The functions that call other services through [`Environment::call_external`].
const EXTERNAL: &[&str] = &[
    "aws_lambda",
    "get_dynamodb",
    "get_mqtt_property",
    "get_registry_data",
    "get_secret",
    "get_thing_shadow",
    "get_user_properties",
    "machinelearning_predict",
];

/// Every built-in function name (lower case), external ones included.
const BUILT_IN: &[&str] = &[
    "abs",
    "accountid",
    "acos",
    "asin",
    "atan",
    "atan2",
    "bitand",
    "bitnot",
    "bitor",
    "bitxor",
    "ceil",
    "chr",
    "clientid",
    "concat",
    "cos",
    "cosh",
    "decode",
    "encode",
    "endswith",
    "exp",
    "floor",
    "get",
    "get_or_default",
    "indexof",
    "isnull",
    "isundefined",
    "length",
    "ln",
    "log",
    "lower",
    "lpad",
    "ltrim",
    "md2",
    "md5",
    "mod",
    "nanvl",
    "newuuid",
    "numbytes",
    "parse_time",
    "power",
    "principal",
    "rand",
    "regexp_matches",
    "regexp_replace",
    "regexp_substr",
    "remainder",
    "replace",
    "round",
    "rpad",
    "rtrim",
    "sha1",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "sign",
    "sin",
    "sinh",
    "sourceip",
    "sql_version",
    "sqrt",
    "startswith",
    "substring",
    "tan",
    "tanh",
    "time_to_epoch",
    "timestamp",
    "topic",
    "traceid",
    "transform",
    "trim",
    "trunc",
    "upper",
];

/// Whether `name` (lower case) is a function AWS added in SQL version 2016-03-23.
pub(crate) fn is_v2_only(name: &str) -> bool {
    V2_ONLY.contains(&name)
}

/// Whether `name` (lower case) is a built-in or external function.
pub(crate) fn is_function(name: &str) -> bool {
    BUILT_IN.contains(&name) || EXTERNAL.contains(&name)
}

/// Calls the function `name` (lower case) on `args`.
///
/// # Errors
///
/// [`Error::External`] when an external function's provider failed (the rule is terminated).
/// Everything else that goes wrong is `Ok(Value::Undefined)`.
pub(crate) fn call(name: &str, args: &[Value], ctx: &FunctionContext<'_>) -> Result<Value, Error> {
    if EXTERNAL.contains(&name) {
        return external(name, args, ctx);
    }
    Ok(builtin(name, args, ctx).unwrap_or(Value::Undefined))
}

fn external(name: &str, args: &[Value], ctx: &FunctionContext<'_>) -> Result<Value, Error> {
    match ctx.env.call_external(name, args) {
        None => Ok(Value::Undefined),
        Some(Ok(value)) => Ok(value),
        Some(Err(message)) => Err(Error::External {
            function: name.to_owned(),
            message,
        }),
    }
}

/// The built-in functions: `None` is Undefined.
fn builtin(name: &str, args: &[Value], ctx: &FunctionContext<'_>) -> Option<Value> {
    use Value::{Int, String as Str};
    match (name, args) {
        // The message and the environment.
        ("accountid", []) => ctx.env.account_id().map(|id| Str(id.to_owned())),
        ("clientid", []) => Some(Str(ctx.message.client_id.unwrap_or("n/a").to_owned())),
        ("principal", []) => ctx.message.principal.map(|p| Str(p.to_owned())),
        ("newuuid", []) => Some(Str(ctx.env.new_uuid())),
        ("rand", []) => math::double(ctx.env.random()),
        ("timestamp", []) => Some(Int(i128::from(ctx.message.timestamp_ms))),
        ("sql_version", []) => Some(Str(ctx.version.as_str().to_owned())),
        ("traceid", []) => None,
        ("sourceip", []) => match ctx.env.call_external("sourceip", &[]) {
            Some(Ok(value)) => Some(value),
            _ => None,
        },
        ("topic", []) => Some(Str(
            topic_without_ingest_prefix(ctx.message.topic).to_owned()
        )),
        ("topic", [n]) => topic_segment(ctx.message.topic, n),

        // Null and Undefined.
        ("isnull", [v]) => Some(Value::Bool(matches!(v, Value::Null))),
        ("isundefined", [v]) => Some(Value::Bool(v.is_undefined())),
        ("nanvl", [v, other]) => Some(math::nanvl(v, other)),
        ("get_or_default", [v, default]) => match v {
            Value::Undefined | Value::Null => Some(default.clone()),
            _ => Some(v.clone()),
        },

        // Numbers.
        ("abs", [v]) => math::abs(v),
        ("sign", [v]) => math::sign(v),
        ("ceil", [v]) => math::ceil(v),
        ("floor", [v]) => math::floor(v),
        ("round", [v]) => math::round(v),
        ("trunc", [v, places]) => math::trunc(v, places),
        ("mod" | "remainder", [a, b]) => math::modulo(a, b),
        ("power", [a, b]) => math::binary_double(a, b, f64::powf),
        ("atan2", [y, x]) => math::binary_double(y, x, f64::atan2),
        ("acos", [v]) => math::unary_double(v, f64::acos),
        ("asin", [v]) => math::unary_double(v, f64::asin),
        ("atan", [v]) => math::unary_double(v, f64::atan),
        ("cos", [v]) => math::unary_double(v, f64::cos),
        ("cosh", [v]) => math::unary_double(v, f64::cosh),
        ("sin", [v]) => math::unary_double(v, f64::sin),
        ("sinh", [v]) => math::unary_double(v, f64::sinh),
        ("tan", [v]) => math::unary_double(v, f64::tan),
        ("tanh", [v]) => math::unary_double(v, f64::tanh),
        ("exp", [v]) => math::unary_double(v, f64::exp),
        ("ln", [v]) => math::unary_double(v, f64::ln),
        ("log", [v]) => math::unary_double(v, f64::log10),
        ("sqrt", [v]) => math::unary_double(v, f64::sqrt),
        ("bitand", [a, b]) => math::bitwise(a, b, |x, y| x & y),
        ("bitor", [a, b]) => math::bitwise(a, b, |x, y| x | y),
        ("bitxor", [a, b]) => math::bitwise(a, b, |x, y| x ^ y),
        ("bitnot", [v]) => math::bitnot(v),

        // Strings.
        ("chr", [v]) => text::chr(v),
        ("concat", _) => collection::concat(args),
        ("startswith", [s, prefix]) => text::startswith(s, prefix),
        ("endswith", [s, suffix]) => text::endswith(s, suffix),
        ("indexof", [s, needle]) => text::indexof(s, needle),
        ("length", [s]) => text::length(s),
        ("numbytes", [s]) => text::numbytes(s),
        ("lower", [s]) => text::lower(s),
        ("upper", [s]) => text::upper(s),
        ("lpad", [s, n]) => text::pad(s, n, text::Side::Left),
        ("rpad", [s, n]) => text::pad(s, n, text::Side::Right),
        ("ltrim", [s]) => text::trim(s, text::Side::Left),
        ("rtrim", [s]) => text::trim(s, text::Side::Right),
        ("trim", [s]) => text::trim(s, text::Side::Both),
        ("replace", [s, from, to]) => text::replace(s, from, to),
        ("substring", [s, start]) => text::substring(s, start, None),
        ("substring", [s, start, end]) => text::substring(s, start, Some(end)),
        ("regexp_matches", [s, re]) => pattern::matches(s, re),
        ("regexp_replace", [s, re, replacement]) => pattern::replace(s, re, replacement),
        ("regexp_substr", [s, re]) => pattern::substr(s, re),
        ("md2" | "md5" | "sha1" | "sha224" | "sha256" | "sha384" | "sha512", [s]) => {
            digest::hex_digest(name, s)
        }

        // Collections and encodings.
        ("get", [collection, key]) => collection::get(collection, key),
        ("transform", [mode, object, array]) => collection::transform(mode, object, array),
        ("encode", [v, scheme]) => codec::encode(v, scheme),
        ("decode", [v, scheme]) => codec::decode(v, scheme),

        // Time.
        ("parse_time", [pattern, millis]) => time::parse_time(pattern, millis, None),
        ("parse_time", [pattern, millis, zone]) => time::parse_time(pattern, millis, Some(zone)),
        ("time_to_epoch", [text, pattern]) => time::time_to_epoch(text, pattern),

        _ => None,
    }
}

/// The topic as `topic()` sees it: without a Basic Ingest `$aws/rules/<ruleName>/` prefix.
fn topic_without_ingest_prefix(topic: &str) -> &str {
    match topic.strip_prefix("$aws/rules/") {
        Some(rest) => match rest.split_once('/') {
            Some((_rule, tail)) => tail,
            None => "",
        },
        None => topic,
    }
}

/// `topic(n)`: the n-th level, 1-based; Undefined out of range.
fn topic_segment(topic: &str, n: &Value) -> Option<Value> {
    let n = conversion::standard_int(n)?;
    let index = usize::try_from(n.checked_sub(1)?).ok()?;
    // A byte scan: topics are short, and `str::split`'s searcher costs more than the walk.
    let mut rest = topic_without_ingest_prefix(topic);
    for _ in 0..index {
        let slash = rest.bytes().position(|b| b == b'/')?;
        rest = rest.get(slash + 1..)?;
    }
    let end = rest.bytes().position(|b| b == b'/').unwrap_or(rest.len());
    rest.get(..end)
        .map(|segment| Value::String(segment.to_owned()))
}
