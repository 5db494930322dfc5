//! The evaluator: a [`Statement`] run on one message.
//!
//! Order (IOT-A `iot-sql-where.md`, IOT-NOW `iot-sql-set`): the payload is read once (and only
//! as far as the statement needs it, see below); SET assignments run in order, each seeing the
//! earlier ones; WHERE runs next and the rule fires only when it is exactly `Bool(true)`
//! (false, Undefined, Null, a String `"true"` all mean no output); then the SELECT items.
//!
//! # SELECT
//!
//! - `*` contributes the payload object's members, merged in order with the other items (`SELECT
//!   *, 15 as speed`, IOT-A `iot-sql-select.md`; a later key replaces an earlier one in place).
//!   When the payload is not JSON, `SELECT *` alone outputs the raw bytes ([`Output::Binary`]).
//!   With other items and a non-JSON payload, thingkit outputs the raw bytes unchanged and
//!   drops the other items: AWS's `binary-payloads.md` says data can be added only to "an
//!   empty or a JSON payload"; an empty payload counts as `{}` then. A JSON payload that is
//!   not an object (`80`, `[1]`) is output as is by `SELECT *` alone and contributes nothing
//!   when merged.
//! - An item's key is its alias; without one, the last name of a field path (`color.red` →
//!   `red`), the name of a variable or of a function (`topic(2)` → `topic`); any other
//!   expression is named `_N`, N being its 1-based position in the list. AWS documents no
//!   name for unaliased expressions; this is thingkit's choice.
//! - Items that are Undefined are dropped (IOT-A `iot-sql-data-types.md`).
//! - `SELECT VALUE e` outputs `e` itself; with several items (2016-03-23) only the first is
//!   output (AWS does not say what the others do). An Undefined VALUE is no output at all
//!   (`Ok(None)`), as AWS sends nothing for an empty payload.
//!
//! # Expressions
//!
//! - A field is a member of the current payload (the message's, or the element of a nested
//!   query); a field of a non-object (including raw bytes) is Undefined.
//! - `base.name` and `base['name']` read an object member, `base[i]` a 0-based array element;
//!   anything else is Undefined.
//! - `CASE v WHEN t THEN r ... ELSE e END` compares with `=`; if `v` is Undefined the result is
//!   Undefined even with ELSE (IOT-A `iot-sql-case.md`); no match and no ELSE is Undefined.
//! - A nested query `(SELECT ... FROM e [WHERE c])` (2016-03-23, IOT-A
//!   `iot-sql-nested-queries.md`) evaluates `e` in the enclosing scope; if it is an array, the
//!   query runs once per element with that element as the payload (variables stay visible) and
//!   the result is the array of the outputs (Undefined outputs dropped); otherwise it is
//!   Undefined.
//! - Function calls go to the function library with evaluated arguments; `*` as an argument is
//!   the payload (raw bytes for a non-JSON payload). Under 2015-10-08 a 2016-03-23-only
//!   function is Undefined.
//! - `*` given to `encode` or a hash function (`md2`, `md5`, `sha1`, `sha224`, `sha256`,
//!   `sha384`, `sha512`) is the message data as published (`Value::Binary` of the original
//!   bytes, AWS: "`*` is the message data"), JSON or not, so `{"t": 26.30}` is encoded or
//!   hashed byte for byte rather than re-serialized; such a call does not make the payload be
//!   parsed. Inside a nested query `*` is the current element, which has no bytes of its own:
//!   these functions see it through its String form (compact JSON).
//! - **The 2016-03-23 whole-number rule** (IOT-A `iot-sql-data-types.md`: "numeric values that
//!   are whole numbers, such as 10.0, are processed as an Int value") is applied wherever a
//!   value enters the evaluation under that version: payload numbers as they are read, number
//!   literals, operator results and function results. Under 2015-10-08 `10.0` stays a Decimal.
//!
//! # The window hook
//!
//! [`Scope::aggregates`] lets the window code substitute the result of an aggregate (`avg(t)`)
//! when it evaluates SELECT items at a window's close: it is consulted for every function call
//! *before* the arguments are evaluated and the library is called; `Some(value)` is the call's
//! result.

use bytes::Bytes;

use crate::ast::{Expr, ExprKind, From, Literal, SelectItem, SqlVersion, Statement};
use crate::convert;
use crate::error::Error;
use crate::functions::{self, FunctionContext};
use crate::json::{self, JsonError, ReadOptions};
use crate::operator;
use crate::rule::{Environment, Limits, Message, Output, Variables};
use crate::template::{Template, TemplatePart};
use crate::value::{Object, Value};

/// The window hook: the value of an aggregate call, or `None` to evaluate it normally.
pub(crate) type AggregateHook<'a> = &'a dyn Fn(&Expr) -> Option<Value>;

/// Everything an expression can see.
pub(crate) struct Scope<'a> {
    /// The message.
    pub message: &'a Message<'a>,
    /// Randomness and external functions.
    pub env: &'a dyn Environment,
    /// The rule's SQL version.
    pub version: SqlVersion,
    /// The current payload: the message's (an object, any JSON value, or raw bytes), or the
    /// element of a nested query.
    pub payload: &'a Value,
    /// The SET variables assigned so far.
    pub variables: &'a [(String, Value)],
    /// The window hook (see the module docs): consulted for every function call first.
    pub aggregates: Option<AggregateHook<'a>>,
    /// The largest value (approximate JSON size in bytes) an expression may build.
    pub max_value_bytes: usize,
    /// Whether `payload` is the element of a nested query rather than the message's payload
    /// (then `*` given to a byte function is that element, not the message's bytes).
    pub element: bool,
}

impl<'a> Scope<'a> {
    fn with_payload<'b>(&'b self, payload: &'b Value, variables: &'b [(String, Value)]) -> Scope<'b>
    where
        'a: 'b,
    {
        Scope {
            message: self.message,
            env: self.env,
            version: self.version,
            payload,
            variables,
            aggregates: self.aggregates,
            max_value_bytes: self.max_value_bytes,
            element: self.element,
        }
    }

    /// [`Scope::with_payload`] for the element of a nested query.
    fn with_element<'b>(&'b self, element: &'b Value, variables: &'b [(String, Value)]) -> Scope<'b>
    where
        'a: 'b,
    {
        Scope {
            element: true,
            ..self.with_payload(element, variables)
        }
    }
}

/// Evaluates one expression.
///
/// # Errors
///
/// An external function failed, or a value grew beyond `scope.max_value_bytes`.
pub(crate) fn eval_expr(expr: &Expr, scope: &Scope<'_>) -> Result<Value, Error> {
    let value = match &expr.kind {
        ExprKind::Literal(literal) => literal_value(literal, scope.version),
        ExprKind::Field(name) => member(scope.payload, name),
        ExprKind::Wildcard => scope.payload.clone(),
        ExprKind::Variable(name) => scope
            .variables
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map_or(Value::Undefined, |(_, v)| v.clone()),
        ExprKind::Member { base, name } => member(&eval_expr(base, scope)?, name),
        ExprKind::Index { base, index } => {
            let base = eval_expr(base, scope)?;
            let index = eval_expr(index, scope)?;
            match (&base, &index) {
                (Value::Array(items), Value::Int(i)) => usize::try_from(*i)
                    .ok()
                    .and_then(|i| items.get(i))
                    .cloned()
                    .unwrap_or(Value::Undefined),
                (Value::Object(_), Value::String(key)) => member(&base, key),
                _ => Value::Undefined,
            }
        }
        ExprKind::Call { name, args } => {
            if let Some(value) = scope.aggregates.and_then(|hook| hook(expr)) {
                return Ok(value);
            }
            if !scope.version.is_v2() && functions::is_v2_only(name) {
                return Ok(Value::Undefined);
            }
            let argument = |a: &Expr| match a.kind {
                // `*` is the message data: the bytes as published, not a re-serialization
                // of the parsed payload (`26.30` stays `26.30`).
                ExprKind::Wildcard if !scope.element && reads_bytes(name) => {
                    Ok(Value::Binary(Bytes::copy_from_slice(scope.message.payload)))
                }
                _ => eval_expr(a, scope),
            };
            let ctx = FunctionContext {
                message: scope.message,
                env: scope.env,
                version: scope.version,
            };
            // Most calls have a few arguments: they are evaluated into an array on the stack
            // rather than a Vec allocated per call.
            let result = if args.len() <= INLINE_ARGS {
                let mut values: [Value; INLINE_ARGS] = std::array::from_fn(|_| Value::Undefined);
                for (slot, a) in values.iter_mut().zip(args) {
                    *slot = argument(a)?;
                }
                let values = values.get(..args.len()).unwrap_or_default();
                functions::call(name, values, &ctx)?
            } else {
                let values = args.iter().map(argument).collect::<Result<Vec<_>, _>>()?;
                functions::call(name, &values, &ctx)?
            };
            check_size(convert::normalize(result, scope.version), scope)?
        }
        ExprKind::Cast { expr, ty } => convert::cast(&eval_expr(expr, scope)?, ty, scope.version),
        ExprKind::Unary { op, expr } => {
            let operand = eval_expr(expr, scope)?;
            convert::normalize(operator::unary(*op, &operand), scope.version)
        }
        ExprKind::Binary { op, left, right } => {
            let left = eval_expr(left, scope)?;
            let right = eval_expr(right, scope)?;
            let value = convert::normalize(operator::binary(*op, &left, &right), scope.version);
            check_size(value, scope)?
        }
        ExprKind::Case {
            operand,
            whens,
            else_,
        } => {
            let operand = eval_expr(operand, scope)?;
            if operand.is_undefined() {
                return Ok(Value::Undefined);
            }
            for (when, then) in whens {
                let candidate = eval_expr(when, scope)?;
                if operator::equals(&operand, &candidate) == Some(true) {
                    return eval_expr(then, scope);
                }
            }
            match else_ {
                Some(e) => eval_expr(e, scope)?,
                None => Value::Undefined,
            }
        }
        ExprKind::Object(members) => {
            let mut object = Object::new();
            for (key, value) in members {
                object.insert(key.clone(), eval_expr(value, scope)?);
            }
            check_size(Value::Object(object), scope)?
        }
        ExprKind::Array(items) => {
            let items = items
                .iter()
                .map(|e| eval_expr(e, scope))
                .collect::<Result<Vec<_>, _>>()?;
            check_size(Value::Array(items), scope)?
        }
        ExprKind::Subquery(statement) => nested_query(statement, scope)?,
    };
    Ok(value)
}

/// How many arguments of a function call are evaluated without allocating.
const INLINE_ARGS: usize = 4;

/// The functions that read `*` as the message's original bytes (see the module docs).
fn reads_bytes(name: &str) -> bool {
    matches!(
        name,
        "encode" | "md2" | "md5" | "sha1" | "sha224" | "sha256" | "sha384" | "sha512"
    )
}

/// The value of a literal under `version`.
fn literal_value(literal: &Literal, version: SqlVersion) -> Value {
    match literal {
        Literal::Number(text) => {
            let integer = !text.contains(['.', 'e', 'E']);
            json::number_value(text, integer, version.is_v2()).unwrap_or(Value::Undefined)
        }
        Literal::String(s) => Value::String(s.clone()),
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Null => Value::Null,
    }
}

fn member(base: &Value, name: &str) -> Value {
    match base {
        Value::Object(object) => object.get(name).cloned().unwrap_or(Value::Undefined),
        _ => Value::Undefined,
    }
}

/// An approximate JSON size of `value` in bytes, counting no further than `limit`.
fn approximate_size(value: &Value, limit: usize) -> usize {
    match value {
        Value::String(s) => s.len() + 2,
        Value::Binary(b) => b.len() * 4 / 3 + 2,
        Value::Array(items) => {
            let mut total = 2;
            for item in items {
                total += approximate_size(item, limit) + 1;
                if total > limit {
                    break;
                }
            }
            total
        }
        Value::Object(object) => {
            let mut total = 2;
            for (k, v) in object.iter() {
                total += k.len() + 4 + approximate_size(v, limit);
                if total > limit {
                    break;
                }
            }
            total
        }
        _ => 8,
    }
}

fn check_size(value: Value, scope: &Scope<'_>) -> Result<Value, Error> {
    if approximate_size(&value, scope.max_value_bytes) > scope.max_value_bytes {
        return Err(Error::Limit {
            what: "a value built by the statement",
            limit: scope.max_value_bytes,
        });
    }
    Ok(value)
}

/// Runs SET in order on top of `scope`'s variables, returning the extended list.
fn assign(statement: &Statement, scope: &Scope<'_>) -> Result<Variables, Error> {
    let mut variables: Variables = scope.variables.to_vec();
    for assignment in &statement.set {
        let value = {
            let inner = scope.with_payload(scope.payload, &variables);
            eval_expr(&assignment.value, &inner)?
        };
        variables.push((assignment.name.clone(), value));
    }
    Ok(variables)
}

/// Whether WHERE (if any) is exactly true.
fn passes(statement: &Statement, scope: &Scope<'_>) -> Result<bool, Error> {
    match &statement.where_ {
        Some(condition) => Ok(eval_expr(condition, scope)? == Value::Bool(true)),
        None => Ok(true),
    }
}

/// The key of an unaliased SELECT item (see the module docs).
pub(crate) fn item_name(expr: &Expr, position: usize) -> String {
    match &expr.kind {
        ExprKind::Field(name)
        | ExprKind::Member { name, .. }
        | ExprKind::Variable(name)
        | ExprKind::Call { name, .. } => name.clone(),
        _ => format!("_{position}"),
    }
}

/// What a SELECT produced.
enum Selected {
    Json(Value),
    Binary,
}

/// The SELECT clause on one payload (WHERE already passed).
fn select(statement: &Statement, scope: &Scope<'_>) -> Result<Selected, Error> {
    let items = &statement.select.items;
    if statement.select.value {
        return match items.first() {
            Some(SelectItem::Expr { expr, .. }) => Ok(Selected::Json(eval_expr(expr, scope)?)),
            Some(SelectItem::Wildcard { .. }) => Ok(wildcard_alone(scope.payload)),
            None => Ok(Selected::Json(Value::Undefined)),
        };
    }
    if let [SelectItem::Wildcard { .. }] = items.as_slice() {
        return Ok(wildcard_alone(scope.payload));
    }
    let mut out = Object::new();
    for (position, item) in items.iter().enumerate() {
        match item {
            SelectItem::Wildcard { .. } => match scope.payload {
                Value::Object(object) if out.is_empty() => out = object.clone(),
                Value::Object(object) => {
                    for (k, v) in object.iter() {
                        out.insert(k.to_owned(), v.clone());
                    }
                }
                Value::Binary(bytes) if !bytes.is_empty() => return Ok(Selected::Binary),
                _ => {}
            },
            SelectItem::Expr { expr, alias } => {
                let value = eval_expr(expr, scope)?;
                if !value.is_undefined() {
                    let key = alias
                        .clone()
                        .unwrap_or_else(|| item_name(expr, position + 1));
                    out.insert(key, value);
                }
            }
        }
    }
    Ok(Selected::Json(Value::Object(out)))
}

fn wildcard_alone(payload: &Value) -> Selected {
    match payload {
        Value::Binary(_) => Selected::Binary,
        other => Selected::Json(other.clone()),
    }
}

/// A nested query in the scope of its enclosing statement.
fn nested_query(statement: &Statement, scope: &Scope<'_>) -> Result<Value, Error> {
    let source = match &statement.from {
        Some(From::Expr(e)) => eval_expr(e, scope)?,
        _ => return Ok(Value::Undefined),
    };
    let Value::Array(elements) = source else {
        return Ok(Value::Undefined);
    };
    let mut results = Vec::new();
    for element in &elements {
        let inner = scope.with_element(element, scope.variables);
        let variables = assign(statement, &inner)?;
        let inner = scope.with_element(element, &variables);
        if !passes(statement, &inner)? {
            continue;
        }
        match select(statement, &inner)? {
            Selected::Json(Value::Undefined) => {}
            Selected::Json(value) => results.push(value),
            Selected::Binary => results.push(element.clone()),
        }
    }
    check_size(Value::Array(results), scope)
}

/// How much of the payload a statement reads: computed once per rule ([`payload_use`]).
#[derive(Debug, Clone)]
pub(crate) enum PayloadUse {
    /// Nothing: the payload is never parsed.
    None,
    /// Only these top-level members.
    Fields(Vec<String>),
    /// The whole payload (`*`).
    Whole,
}

/// Collects the top-level payload fields an expression reads, and whether it reads all of it.
fn visit(expr: &Expr, fields: &mut Vec<String>, whole: &mut bool) {
    match &expr.kind {
        ExprKind::Field(name) => {
            if !fields.contains(name) {
                fields.push(name.clone());
            }
        }
        ExprKind::Wildcard => *whole = true,
        ExprKind::Literal(_) | ExprKind::Variable(_) => {}
        ExprKind::Member { base, .. } => visit(base, fields, whole),
        ExprKind::Index { base, index } => {
            visit(base, fields, whole);
            visit(index, fields, whole);
        }
        ExprKind::Call { name, args } => {
            for arg in args {
                // `*` given to a byte function is the raw message, not the parsed payload.
                if !(matches!(arg.kind, ExprKind::Wildcard) && reads_bytes(name)) {
                    visit(arg, fields, whole);
                }
            }
        }
        ExprKind::Cast { expr, .. } | ExprKind::Unary { expr, .. } => {
            visit(expr, fields, whole);
        }
        ExprKind::Binary { left, right, .. } => {
            visit(left, fields, whole);
            visit(right, fields, whole);
        }
        ExprKind::Case {
            operand,
            whens,
            else_,
        } => {
            visit(operand, fields, whole);
            for (w, t) in whens {
                visit(w, fields, whole);
                visit(t, fields, whole);
            }
            if let Some(e) = else_ {
                visit(e, fields, whole);
            }
        }
        ExprKind::Object(members) => members.iter().for_each(|(_, e)| visit(e, fields, whole)),
        ExprKind::Array(items) => items.iter().for_each(|e| visit(e, fields, whole)),
        // Inside a nested query fields name the element's members; only its FROM reads
        // the enclosing payload.
        ExprKind::Subquery(inner) => {
            if let Some(From::Expr(e)) = &inner.from {
                visit(e, fields, whole);
            }
        }
    }
}

/// How much of the payload `statement` reads (a walk of the statement: done when a rule is
/// built, not per message).
pub(crate) fn payload_use(statement: &Statement) -> PayloadUse {
    let mut whole = false;
    let mut exprs = Vec::new();
    exprs.extend(statement.set.iter().map(|assignment| &assignment.value));
    exprs.extend(&statement.where_);
    for item in &statement.select.items {
        match item {
            SelectItem::Wildcard { .. } => whole = true,
            SelectItem::Expr { expr, .. } => exprs.push(expr),
        }
    }
    let mut used = payload_use_of(exprs);
    if whole {
        used = PayloadUse::Whole;
    }
    used
}

/// How much of the payload the expressions `exprs` read (the window code gives its SET,
/// WHERE, keys, event time and aggregate inputs).
pub(crate) fn payload_use_of<'e>(exprs: impl IntoIterator<Item = &'e Expr>) -> PayloadUse {
    let mut fields = Vec::new();
    let mut whole = false;
    for expr in exprs {
        visit(expr, &mut fields, &mut whole);
    }
    PayloadUse::of(fields, whole)
}

impl PayloadUse {
    fn of(fields: Vec<String>, whole: bool) -> PayloadUse {
        if whole {
            PayloadUse::Whole
        } else if fields.is_empty() {
            PayloadUse::None
        } else {
            PayloadUse::Fields(fields)
        }
    }

    /// Reads the payload as far as this use needs.
    pub(crate) fn read(
        &self,
        message: &Message<'_>,
        version: SqlVersion,
        limits: &Limits,
    ) -> Result<Value, Error> {
        match self {
            PayloadUse::None => Ok(Value::Undefined),
            PayloadUse::Whole => read_payload(message.payload, version, limits, None),
            // The usual handful of names is passed from the stack; only a statement reading
            // more members than that allocates the list.
            PayloadUse::Fields(fields) if fields.len() <= INLINE_KEYS => {
                let mut keys = [""; INLINE_KEYS];
                for (slot, field) in keys.iter_mut().zip(fields) {
                    *slot = field;
                }
                let keys = keys.get(..fields.len()).unwrap_or_default();
                read_payload(message.payload, version, limits, Some(keys))
            }
            PayloadUse::Fields(fields) => {
                let keys: Vec<&str> = fields.iter().map(String::as_str).collect();
                read_payload(message.payload, version, limits, Some(&keys))
            }
        }
    }
}

/// How many member names [`PayloadUse::read`] passes without allocating.
const INLINE_KEYS: usize = 8;

/// Reads the message payload as a statement needs it: a JSON value, or the raw bytes.
///
/// # Errors
///
/// The payload is larger than `limits.max_payload_bytes` or nested deeper than
/// `limits.max_json_depth`.
pub(crate) fn read_payload(
    payload: &[u8],
    version: SqlVersion,
    limits: &Limits,
    only_keys: Option<&[&str]>,
) -> Result<Value, Error> {
    if payload.len() > limits.max_payload_bytes {
        return Err(Error::Limit {
            what: "payload",
            limit: limits.max_payload_bytes,
        });
    }
    let options = ReadOptions {
        max_depth: limits.max_json_depth,
        whole_decimals_as_int: version.is_v2(),
        only_keys,
    };
    match json::read(payload, &options) {
        Ok(value) => Ok(value),
        Err(JsonError::NotJson) => Ok(Value::Binary(Bytes::copy_from_slice(payload))),
        Err(JsonError::TooDeep) => Err(Error::Limit {
            what: "JSON nesting",
            limit: limits.max_json_depth,
        }),
    }
}

fn has_undefined(value: &Value) -> bool {
    match value {
        Value::Undefined => true,
        Value::Array(items) => items.iter().any(has_undefined),
        Value::Object(object) => object.iter().any(|(_, v)| has_undefined(v)),
        _ => false,
    }
}

/// Removes Undefined members and elements at every depth, so an output holds only JSON
/// values (serializing would omit them anyway; callers that walk the tree see the same).
fn strip_undefined(value: &mut Value) {
    if !has_undefined(value) {
        return;
    }
    match value {
        Value::Array(items) => {
            items.retain(|v| !v.is_undefined());
            items.iter_mut().for_each(strip_undefined);
        }
        Value::Object(object) => {
            let mut kept = Object::new();
            for (k, v) in object.iter() {
                if !v.is_undefined() {
                    let mut v = v.clone();
                    strip_undefined(&mut v);
                    kept.push_unchecked(k.to_owned(), v);
                }
            }
            *object = kept;
        }
        _ => {}
    }
}

/// Runs a top-level statement on a message: the output (`None` when WHERE is not exactly
/// true or `SELECT VALUE` is Undefined) and the SET variables (for the actions' templates).
///
/// # Errors
///
/// A limit was exceeded, or an external function failed.
pub(crate) fn evaluate(
    statement: &Statement,
    payload_use: &PayloadUse,
    version: SqlVersion,
    message: &Message<'_>,
    env: &dyn Environment,
    limits: &Limits,
) -> Result<(Option<Output>, Variables), Error> {
    let payload = payload_use.read(message, version, limits)?;
    let scope = Scope {
        message,
        env,
        version,
        payload: &payload,
        variables: &[],
        aggregates: None,
        max_value_bytes: limits.max_output_bytes,
        element: false,
    };
    let variables = assign(statement, &scope)?;
    let scope = scope.with_payload(&payload, &variables);
    if !passes(statement, &scope)? {
        return Ok((None, variables));
    }
    // `SELECT *` of a JSON payload: the payload itself, moved rather than copied.
    if let [SelectItem::Wildcard { .. }] = statement.select.items.as_slice()
        && !matches!(payload, Value::Binary(_))
    {
        if approximate_size(&payload, limits.max_output_bytes) > limits.max_output_bytes {
            return Err(Error::Limit {
                what: "output",
                limit: limits.max_output_bytes,
            });
        }
        return Ok((Some(Output::Json(payload)), variables));
    }
    let output = match select(statement, &scope)? {
        Selected::Json(Value::Undefined) => return Ok((None, variables)),
        Selected::Json(mut value) => {
            strip_undefined(&mut value);
            if approximate_size(&value, limits.max_output_bytes) > limits.max_output_bytes {
                return Err(Error::Limit {
                    what: "output",
                    limit: limits.max_output_bytes,
                });
            }
            Output::Json(value)
        }
        Selected::Binary => Output::Binary(Bytes::copy_from_slice(message.payload)),
    };
    Ok((Some(output), variables))
}

impl Template {
    /// Renders the template for one message (IOT-A `iot-substitution-templates.md`): each
    /// `${expr}` is evaluated on the **original** payload, with functions, operators and the
    /// SET `variables` (what [`crate::Rule::evaluate_with_variables`] returns) — never SELECT
    /// aliases. An Undefined expression renders as the empty string; a String as its text
    /// (unquoted); raw bytes as their text (invalid UTF-8 replaced); anything else as its
    /// compact JSON text.
    ///
    /// # Errors
    ///
    /// A limit (payload, JSON nesting, or a result longer than `limits.max_output_bytes`),
    /// or an external function failed.
    pub fn render(
        &self,
        message: &Message<'_>,
        env: &dyn Environment,
        version: SqlVersion,
        variables: &[(String, Value)],
        limits: &Limits,
    ) -> Result<String, Error> {
        let mut fields = Vec::new();
        let mut whole = false;
        for part in self.parts() {
            if let TemplatePart::Expr(expr) = part {
                visit(expr, &mut fields, &mut whole);
            }
        }
        let payload = PayloadUse::of(fields, whole).read(message, version, limits)?;
        let scope = Scope {
            message,
            env,
            version,
            payload: &payload,
            variables,
            aggregates: None,
            max_value_bytes: limits.max_output_bytes,
            element: false,
        };
        let mut out = String::new();
        for part in self.parts() {
            match part {
                TemplatePart::Text(text) => out.push_str(text),
                TemplatePart::Expr(expr) => match eval_expr(expr, &scope)? {
                    Value::Undefined => {}
                    Value::String(s) => out.push_str(&s),
                    Value::Binary(b) => out.push_str(&String::from_utf8_lossy(&b)),
                    other => json::write(&other, &mut out),
                },
            }
            if out.len() > limits.max_output_bytes {
                return Err(Error::Limit {
                    what: "rendered substitution template",
                    limit: limits.max_output_bytes,
                });
            }
        }
        Ok(out)
    }
}
