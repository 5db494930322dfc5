//! What the runtime needs from thingkit-rules besides `Rule::evaluate`: substitution
//! templates, the output's serialization, the environment (UUIDs, randomness) and the
//! windows of GROUP BY rules.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use ring::rand::{SecureRandom, SystemRandom};
use thingkit_rules::rule::Environment;
use thingkit_rules::{Limits, Output, Rule, SqlVersion, Value};

use super::{ActiveRule, RuleSet, RulesConfig};

/// The environment rules run in: random UUIDs and numbers from the system's CSPRNG; no
/// external functions (they are Undefined).
pub(crate) struct RuntimeEnvironment {
    random: SystemRandom,
}

impl Default for RuntimeEnvironment {
    fn default() -> Self {
        RuntimeEnvironment {
            random: SystemRandom::new(),
        }
    }
}

impl RuntimeEnvironment {
    fn bytes<const N: usize>(&self) -> [u8; N] {
        let mut out = [0u8; N];
        // SystemRandom fails only when the OS has no randomness; zeros are then still unique
        // enough for trace IDs to be valid text, and the failure is logged.
        if self.random.fill(&mut out).is_err() {
            tracing::error!("rules: the system random number generator failed");
        }
        out
    }

    /// A random version-4 UUID.
    pub(crate) fn uuid(&self) -> String {
        let mut b: [u8; 16] = self.bytes();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

impl Environment for RuntimeEnvironment {
    fn new_uuid(&self) -> String {
        self.uuid()
    }

    fn random(&self) -> f64 {
        let b: [u8; 8] = self.bytes();
        // 53 random bits over 2^53: uniform in [0, 1).
        (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A substitution template (`${expr}`; `$$` writes a `$` in a republish topic).
pub(crate) struct Template {
    version: SqlVersion,
    parts: Vec<Part>,
}

enum Part {
    Text(String),
    Expr(String),
}

impl Template {
    /// Parses `text`. `dollar_escape`: `$$` is a literal `$` (the republish topic).
    pub(crate) fn parse(
        text: &str,
        version: SqlVersion,
        limits: &Limits,
        dollar_escape: bool,
    ) -> Result<Template, String> {
        let _ = limits;
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if dollar_escape && after.starts_with('$') {
                literal.push('$');
                rest = &after[1..];
            } else if let Some(body) = after.strip_prefix('{') {
                let end = body
                    .find('}')
                    .ok_or_else(|| format!("an unclosed ${{ at byte {at}"))?;
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                parts.push(Part::Expr(body[..end].trim().to_string()));
                rest = &body[end + 1..];
            } else {
                literal.push('$');
                rest = after;
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { version, parts })
    }

    /// Renders it for `message`.
    pub(crate) fn render(
        &self,
        message: &thingkit_rules::Message<'_>,
        env: &dyn Environment,
    ) -> Result<String, String> {
        let _ = self.version;
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Expr(e) => out.push_str(&fallback_expr(e, message, env)),
            }
        }
        Ok(out)
    }
}

/// A few template expressions, until the evaluator's templates are merged.
fn fallback_expr(
    expr: &str,
    message: &thingkit_rules::Message<'_>,
    env: &dyn Environment,
) -> String {
    let topic_levels: Vec<&str> = message.topic.split('/').collect();
    match expr {
        "topic()" => return message.topic.to_string(),
        "clientid()" => return message.client_id.unwrap_or("n/a").to_string(),
        "principal()" => return message.principal.unwrap_or_default().to_string(),
        "timestamp()" => return message.timestamp_ms.to_string(),
        "newuuid()" => return env.new_uuid(),
        _ => {}
    }
    if let Some(n) = expr
        .strip_prefix("topic(")
        .and_then(|r| r.strip_suffix(')'))
        .and_then(|n| n.trim().parse::<usize>().ok())
    {
        return n
            .checked_sub(1)
            .and_then(|i| topic_levels.get(i))
            .map(|s| s.to_string())
            .unwrap_or_default();
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(message.payload) else {
        return String::new();
    };
    let mut at = &json;
    for key in expr.split('.') {
        match at.get(key) {
            Some(v) => at = v,
            None => return String::new(),
        }
    }
    match at {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The bytes an action sends: JSON text (Undefined members left out), or the raw bytes.
pub(crate) fn serialize(output: &Output) -> Bytes {
    match output {
        Output::Binary(b) => b.clone(),
        Output::Json(v) => {
            let mut out = String::new();
            write_json(v, &mut out);
            Bytes::from(out.into_bytes())
        }
    }
}

fn write_json(value: &Value, out: &mut String) {
    match value {
        Value::Undefined | Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Decimal(d) => out.push_str(&d.to_string()),
        Value::String(s) => write_string(s, out),
        Value::Binary(b) => write_string(&String::from_utf8_lossy(b), out),
        Value::Array(items) => {
            out.push('[');
            let mut first = true;
            for item in items.iter().filter(|v| !v.is_undefined()) {
                if !first {
                    out.push(',');
                }
                first = false;
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Object(object) => {
            out.push('{');
            let mut first = true;
            for (k, v) in object.iter().filter(|(_, v)| !v.is_undefined()) {
                if !first {
                    out.push(',');
                }
                first = false;
                write_string(k, out);
                out.push(':');
                write_json(v, out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push_str(&serde_json::Value::String(s.to_string()).to_string());
}

/// A serde_json value as a rules value (the error record, for the error action's sinks).
pub(crate) fn value_of_json(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i128::from(i)),
            None => thingkit_rules::Decimal::parse(&n.to_string())
                .map(Value::Decimal)
                .unwrap_or(Value::Undefined),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(value_of_json).collect()),
        serde_json::Value::Object(o) => {
            let mut object = thingkit_rules::Object::new();
            for (k, v) in o {
                object.insert(k.clone(), value_of_json(v));
            }
            Value::Object(object)
        }
    }
}

/// A value as CSV text: strings as they are, numbers and Booleans as JSON writes them, arrays
/// and objects as JSON; Undefined and Null as the empty field.
pub(crate) fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::Undefined | Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
        other => {
            let mut out = String::new();
            write_json(other, &mut out);
            Some(out)
        }
    }
}

/// What a window did with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushOutcome {
    Accepted,
    Filtered,
    Late,
    OverCapacity,
}

/// Refuses a windowed rule the window engine cannot run.
pub(crate) fn check_windowed(rule: &Rule, config: &RulesConfig) -> Result<(), String> {
    let _ = (rule, config);
    Err("windowed rules need the window engine (not merged yet)".into())
}

/// The windows of every windowed rule, owned by the evaluator thread.
#[derive(Default)]
pub(crate) struct WindowSet {
    rules: HashMap<u64, Arc<ActiveRule>>,
}

impl WindowSet {
    pub(crate) fn push(
        &mut self,
        rule: &Arc<ActiveRule>,
        config: &RulesConfig,
        message: &thingkit_rules::Message<'_>,
        env: &dyn Environment,
    ) -> Result<PushOutcome, String> {
        let _ = (config, message, env);
        self.rules.insert(rule.generation, rule.clone());
        Err("windowed rules need the window engine".into())
    }

    pub(crate) fn next_deadline(&self) -> Option<u64> {
        None
    }

    /// Drops the windows of rules that were removed or replaced.
    pub(crate) fn retain_live(&mut self, set: &RuleSet) {
        self.rules.retain(|_, r| {
            set.rules
                .get(r.name.as_ref())
                .is_some_and(|live| live.generation == r.generation)
        });
    }

    pub(crate) fn advance_all(&mut self, now_ms: u64) -> Vec<(Arc<ActiveRule>, Vec<Output>)> {
        let _ = now_ms;
        Vec::new()
    }

    pub(crate) fn flush_all(&mut self) -> Vec<(Arc<ActiveRule>, Vec<Output>)> {
        Vec::new()
    }
}
