//! Test helpers: a fixed environment and one-line runs of a statement on a payload.

#![allow(dead_code)]

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

/// Compiles `sql` for `version`.
pub fn compile(sql: &str, version: SqlVersion) -> Rule {
    Rule::compile(sql, version, &Limits::default()).unwrap_or_else(|e| panic!("{sql}: {e}"))
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
