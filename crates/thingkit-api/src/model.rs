//! The service model: the operations we serve, cut from botocore's `iot` and `iot-data`
//! models (`model/iot.json`, written by `model/extract.py`), and the REST-JSON protocol driven
//! by it — which operation a method and path name, how its input members are bound from the
//! path, the query string, headers and the JSON body, and whether they satisfy the model's
//! constraints (required, lengths, ranges, patterns, enums), refused the way AWS refuses them.

use std::collections::HashMap;

use regex::Regex;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// The model file, embedded.
const MODEL: &str = include_str!("../model/iot.json");

/// Which AWS service an operation belongs to (its SigV4 signing name differs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// `iot` (the control plane), signing name `iot`.
    Iot,
    /// `iot-data` (the data plane), signing name `iotdata`.
    IotData,
}

impl Service {
    /// The SigV4 signing name (the service part of the credential scope).
    pub fn signing_name(self) -> &'static str {
        match self {
            Service::Iot => "iot",
            Service::IotData => "iotdata",
        }
    }
}

/// One segment of a request URI template.
#[derive(Clone, Debug)]
enum Segment {
    Literal(String),
    Param(String),
    /// `{name+}`: the rest of the path, slashes included.
    Greedy(String),
}

/// One operation of the model.
#[derive(Debug)]
pub struct Operation {
    /// The operation name, e.g. `CreateThing`.
    pub name: String,
    /// Its service.
    pub service: Service,
    /// The HTTP method.
    pub method: String,
    /// The success status (`responseCode`, default 200).
    pub status: u16,
    segments: Vec<Segment>,
    /// The input shape's name.
    input: Option<String>,
    /// The output shape's name.
    output: Option<String>,
    /// The shape names of the service this operation's shapes live in.
    shapes: Service,
}

/// The request's input: every member bound from wherever the model says it travels.
#[derive(Clone, Debug, Default)]
pub struct Input {
    /// The members, by member name, as JSON.
    pub members: Map<String, Value>,
    /// The raw body when the input's payload member is a blob (iot-data `Publish`).
    pub payload: Option<Vec<u8>>,
}

impl Input {
    /// An input from a JSON object of members (other values give an empty input).
    pub fn from_json(value: Value) -> Input {
        Input {
            members: match value {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            payload: None,
        }
    }

    /// A string member.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.members.get(name).and_then(Value::as_str)
    }

    /// A required string member (the model validation already refused its absence; this
    /// refuses again rather than panic).
    pub fn required(&self, name: &str) -> ApiResult<&str> {
        self.str(name).ok_or_else(|| {
            ApiError::invalid_request(format!(
                "1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null"
            ))
        })
    }

    /// A boolean member.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.members.get(name).and_then(Value::as_bool)
    }

    /// An integer member.
    pub fn int(&self, name: &str) -> Option<i64> {
        self.members.get(name).and_then(Value::as_i64)
    }

    /// Any member.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.members.get(name)
    }
}

/// The parsed model: operations and shapes, with every `pattern` compiled once.
pub struct Model {
    operations: Vec<Operation>,
    shapes: HashMap<Service, Map<String, Value>>,
    patterns: HashMap<String, Regex>,
    /// botocore's version the model was cut from.
    pub botocore: String,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("operations", &self.operations.len())
            .field("botocore", &self.botocore)
            .finish_non_exhaustive()
    }
}

/// A matched request: the operation and its path parameters (percent-decoded).
#[derive(Debug)]
pub struct Matched<'m> {
    /// The operation.
    pub operation: &'m Operation,
    /// `{name}` parameters of the path.
    pub params: Vec<(String, String)>,
}

impl Model {
    /// The embedded model. It is part of the build, so a broken one is a bug: this panics
    /// with what is wrong (a unit test loads it).
    pub fn embedded() -> Model {
        Model::parse(MODEL).expect("model/iot.json is valid (checked by a unit test)")
    }

    /// Parses a model file in the layout `model/extract.py` writes.
    pub fn parse(text: &str) -> Result<Model, String> {
        let root: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut operations = Vec::new();
        let mut shapes = HashMap::new();
        let mut patterns = HashMap::new();
        for (key, service) in [("iot", Service::Iot), ("iot-data", Service::IotData)] {
            let part = root.get(key).ok_or(format!("no {key} part"))?;
            let ops = part
                .get("operations")
                .and_then(Value::as_object)
                .ok_or(format!("{key}: no operations"))?;
            for (name, op) in ops {
                let http = op.get("http").ok_or(format!("{name}: no http"))?;
                let method = http
                    .get("method")
                    .and_then(Value::as_str)
                    .ok_or(format!("{name}: no method"))?;
                let uri = http
                    .get("requestUri")
                    .and_then(Value::as_str)
                    .ok_or(format!("{name}: no requestUri"))?;
                let path = uri.split('?').next().unwrap_or(uri);
                let segments = path
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(
                        |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                            Some(p) => match p.strip_suffix('+') {
                                Some(g) => Segment::Greedy(g.to_string()),
                                None => Segment::Param(p.to_string()),
                            },
                            None => Segment::Literal(s.to_string()),
                        },
                    )
                    .collect();
                operations.push(Operation {
                    name: name.clone(),
                    service,
                    method: method.to_string(),
                    status: http
                        .get("responseCode")
                        .and_then(Value::as_u64)
                        .and_then(|c| u16::try_from(c).ok())
                        .unwrap_or(200),
                    segments,
                    input: op
                        .get("input")
                        .and_then(|i| i.get("shape"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    output: op
                        .get("output")
                        .and_then(|i| i.get("shape"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    shapes: service,
                });
            }
            let map = part
                .get("shapes")
                .and_then(Value::as_object)
                .ok_or(format!("{key}: no shapes"))?
                .clone();
            for (name, shape) in &map {
                if let Some(p) = shape.get("pattern").and_then(Value::as_str) {
                    let re = Regex::new(&format!("^(?:{})$", java_classes(p)))
                        .map_err(|e| format!("{key} shape {name}: pattern {p:?}: {e}"))?;
                    patterns.insert(p.to_string(), re);
                }
            }
            shapes.insert(service, map);
        }
        // More literal segments first: `/thing-groups/addThingToThingGroup` before
        // `/thing-groups/{thingGroupName}`.
        operations.sort_by_key(|o| {
            std::cmp::Reverse(
                o.segments
                    .iter()
                    .filter(|s| matches!(s, Segment::Literal(_)))
                    .count(),
            )
        });
        Ok(Model {
            operations,
            shapes,
            patterns,
            botocore: root
                .get("botocore")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string(),
        })
    }

    /// The operations.
    pub fn operations(&self) -> impl Iterator<Item = &Operation> {
        self.operations.iter()
    }

    /// The operation named `name`.
    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.iter().find(|o| o.name == name)
    }

    /// The operation a method and raw (percent-encoded) path name, with its path parameters.
    pub fn route(&self, method: &str, raw_path: &str) -> ApiResult<Matched<'_>> {
        let segments: Vec<&str> = raw_path.split('/').filter(|s| !s.is_empty()).collect();
        let mut path_matched = false;
        'ops: for op in &self.operations {
            let mut params = Vec::new();
            let mut i = 0;
            for (n, seg) in op.segments.iter().enumerate() {
                match seg {
                    Segment::Literal(l) => {
                        if segments.get(i) != Some(&l.as_str()) {
                            continue 'ops;
                        }
                        i += 1;
                    }
                    Segment::Param(p) => {
                        let Some(raw) = segments.get(i) else {
                            continue 'ops;
                        };
                        params.push((p.clone(), percent_decode(raw)?));
                        i += 1;
                    }
                    Segment::Greedy(p) => {
                        if n + 1 != op.segments.len() || i >= segments.len() {
                            continue 'ops;
                        }
                        let rest = segments[i..].join("/");
                        params.push((p.clone(), percent_decode(&rest)?));
                        i = segments.len();
                    }
                }
            }
            if i != segments.len() {
                continue;
            }
            path_matched = true;
            if op.method.eq_ignore_ascii_case(method) {
                return Ok(Matched {
                    operation: op,
                    params,
                });
            }
        }
        Err(match path_matched {
            true => ApiError::new(
                "MethodNotAllowedException",
                405,
                format!("method {method} is not allowed on {raw_path}"),
            ),
            false => ApiError::unknown_operation(format!("no operation at {method} {raw_path}")),
        })
    }

    /// Whether `op`'s output is a blob payload (the body is the document itself, not a JSON
    /// object of members): its handler returns the body as a JSON string.
    pub fn raw_output(&self, op: &Operation) -> bool {
        let Some(shape) = op.output.as_ref().and_then(|s| self.shape(op.shapes, s)) else {
            return false;
        };
        let Some(member) = shape.get("payload").and_then(Value::as_str) else {
            return false;
        };
        shape
            .get("members")
            .and_then(|m| m.get(member))
            .and_then(|m| m.get("shape"))
            .and_then(Value::as_str)
            .and_then(|t| self.shape(op.shapes, t))
            .and_then(|t| t.get("type"))
            .and_then(Value::as_str)
            == Some("blob")
    }

    fn shape(&self, service: Service, name: &str) -> Option<&Value> {
        self.shapes.get(&service).and_then(|m| m.get(name))
    }

    /// Binds the input of `matched` from the query string (raw, percent-encoded), the headers
    /// (lower-case names) and the body, then validates it against the model.
    pub fn bind(
        &self,
        matched: &Matched<'_>,
        raw_query: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> ApiResult<Input> {
        let op = matched.operation;
        let mut input = Input::default();
        let Some(shape_name) = &op.input else {
            return Ok(input);
        };
        let shape = self
            .shape(op.shapes, shape_name)
            .ok_or_else(|| ApiError::internal(format!("model: no shape {shape_name}")))?;
        let empty = Map::new();
        let members = shape
            .get("members")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let query = parse_query(raw_query)?;
        let payload_member = shape.get("payload").and_then(Value::as_str);
        let mut body_members = false;
        for (name, member) in members {
            let target = member.get("shape").and_then(Value::as_str).unwrap_or("");
            let target_shape = self.shape(op.shapes, target);
            let kind = target_shape
                .and_then(|s| s.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("string");
            let wire = member
                .get("locationName")
                .and_then(Value::as_str)
                .unwrap_or(name);
            match member.get("location").and_then(Value::as_str) {
                Some("uri") => {
                    if let Some((_, v)) = matched.params.iter().find(|(p, _)| p == wire) {
                        input
                            .members
                            .insert(name.clone(), scalar(kind, v, name, wire)?);
                    }
                }
                Some("querystring") => {
                    let values: Vec<&String> = query
                        .iter()
                        .filter(|(k, _)| k == wire)
                        .map(|(_, v)| v)
                        .collect();
                    if values.is_empty() {
                        continue;
                    }
                    if kind == "list" {
                        let item = target_shape
                            .and_then(|s| s.get("member"))
                            .and_then(|m| m.get("shape"))
                            .and_then(Value::as_str)
                            .and_then(|s| self.shape(op.shapes, s))
                            .and_then(|s| s.get("type"))
                            .and_then(Value::as_str)
                            .unwrap_or("string");
                        let list = values
                            .iter()
                            .map(|v| scalar(item, v, name, wire))
                            .collect::<ApiResult<Vec<_>>>()?;
                        input.members.insert(name.clone(), Value::Array(list));
                    } else if let Some(v) = values.first() {
                        input
                            .members
                            .insert(name.clone(), scalar(kind, v, name, wire)?);
                    }
                }
                Some("header") => {
                    let Some((_, v)) = headers.iter().find(|(h, _)| h.eq_ignore_ascii_case(wire))
                    else {
                        continue;
                    };
                    let value = if member.get("jsonvalue").and_then(Value::as_bool) == Some(true) {
                        use base64::Engine;
                        let raw = base64::engine::general_purpose::STANDARD
                            .decode(v.trim())
                            .map_err(|_| {
                                ApiError::serialization(format!("header {wire}: not base64"))
                            })?;
                        serde_json::from_slice(&raw).map_err(|_| {
                            ApiError::serialization(format!("header {wire}: not JSON"))
                        })?
                    } else {
                        scalar(kind, v, name, wire)?
                    };
                    input.members.insert(name.clone(), value);
                }
                Some(_) => {}
                None => {
                    if payload_member == Some(name.as_str()) {
                        if kind == "blob" || kind == "string" {
                            input.payload = Some(body.to_vec());
                        } else if !body.is_empty() {
                            let v: Value = serde_json::from_slice(body).map_err(|e| {
                                ApiError::serialization(format!("the body is not JSON: {e}"))
                            })?;
                            input.members.insert(name.clone(), v);
                        }
                    } else {
                        body_members = true;
                    }
                }
            }
        }
        if body_members && payload_member.is_none() && !body.iter().all(u8::is_ascii_whitespace) {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::serialization(format!("the body is not JSON: {e}")))?;
            let Value::Object(obj) = v else {
                return Err(ApiError::serialization("the body is not a JSON object"));
            };
            for (k, v) in obj {
                let in_body = members
                    .get(&k)
                    .is_some_and(|m| m.get("location").is_none() && !v.is_null());
                if in_body {
                    input.members.insert(k, v);
                }
            }
        }
        self.check(op, &input)?;
        Ok(input)
    }

    /// Validates `input` against the input shape of `op` (required members, lengths, ranges,
    /// patterns, enums), refusing with AWS's `InvalidRequestException` message.
    pub fn check(&self, op: &Operation, input: &Input) -> ApiResult<()> {
        let Some(shape) = op.input.as_ref().and_then(|s| self.shape(op.shapes, s)) else {
            return Ok(());
        };
        // A blob payload travels beside the members: present when the body was bound.
        let blob = shape.get("payload").and_then(Value::as_str);
        let without_blob;
        let shape = match (blob, &input.payload) {
            (Some(p), Some(_)) => {
                let mut s = shape.clone();
                if let Some(Value::Array(required)) = s.get_mut("required") {
                    required.retain(|r| r.as_str() != Some(p));
                }
                without_blob = s;
                &without_blob
            }
            _ => shape,
        };
        let mut findings = Vec::new();
        self.check_structure(op.shapes, shape, &input.members, "", &mut findings);
        if !findings.is_empty() {
            let n = findings.len();
            let s = if n == 1 { "error" } else { "errors" };
            return Err(ApiError::invalid_request(format!(
                "{n} validation {s} detected: {}",
                findings.join("; ")
            )));
        }
        Ok(())
    }

    fn check_structure(
        &self,
        service: Service,
        shape: &Value,
        value: &Map<String, Value>,
        at: &str,
        findings: &mut Vec<String>,
    ) {
        let path = |m: &str| match at {
            "" => m.to_string(),
            _ => format!("{at}.{m}"),
        };
        if let Some(required) = shape.get("required").and_then(Value::as_array) {
            for r in required.iter().filter_map(Value::as_str) {
                if value.get(r).is_none_or(Value::is_null) {
                    findings.push(format!(
                        "Value null at '{}' failed to satisfy constraint: Member must not be null",
                        path(r)
                    ));
                }
            }
        }
        let Some(members) = shape.get("members").and_then(Value::as_object) else {
            return;
        };
        for (name, v) in value {
            let Some(target) = members
                .get(name)
                .and_then(|m| m.get("shape"))
                .and_then(Value::as_str)
            else {
                continue;
            };
            self.check_value(service, target, v, &path(name), findings);
        }
    }

    fn check_value(
        &self,
        service: Service,
        shape_name: &str,
        v: &Value,
        at: &str,
        findings: &mut Vec<String>,
    ) {
        let Some(shape) = self.shape(service, shape_name) else {
            return;
        };
        if findings.len() >= 10 {
            return;
        }
        let kind = shape.get("type").and_then(Value::as_str).unwrap_or("");
        let min = shape.get("min").and_then(Value::as_f64);
        let max = shape.get("max").and_then(Value::as_f64);
        let type_error = |findings: &mut Vec<String>| {
            findings.push(format!(
                "Value at '{at}' failed to satisfy constraint: Member must be of type {kind}"
            ))
        };
        match (kind, v) {
            (_, Value::Null) => {}
            ("string", Value::String(s)) => {
                let len = s.chars().count() as f64;
                let shown = shown(s);
                if let Some(min) = min.filter(|m| len < *m) {
                    findings.push(format!("Value '{shown}' at '{at}' failed to satisfy constraint: Member must have length greater than or equal to {min}"));
                }
                if let Some(max) = max.filter(|m| len > *m) {
                    findings.push(format!("Value '{shown}' at '{at}' failed to satisfy constraint: Member must have length less than or equal to {max}"));
                }
                if let Some(p) = shape.get("pattern").and_then(Value::as_str) {
                    let ok = self.patterns.get(p).is_none_or(|re| re.is_match(s));
                    if !ok {
                        findings.push(format!("Value '{shown}' at '{at}' failed to satisfy constraint: Member must satisfy regular expression pattern: {p}"));
                    }
                }
                if let Some(values) = shape.get("enum").and_then(Value::as_array)
                    && !values.iter().any(|e| e.as_str() == Some(s))
                {
                    let set: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
                    findings.push(format!("Value '{shown}' at '{at}' failed to satisfy constraint: Member must satisfy enum value set: [{}]", set.join(", ")));
                }
            }
            ("integer" | "long", Value::Number(n)) if n.is_i64() || n.is_u64() => {
                let x = n.as_f64().unwrap_or(0.0);
                if let Some(min) = min.filter(|m| x < *m) {
                    findings.push(format!("Value '{n}' at '{at}' failed to satisfy constraint: Member must have value greater than or equal to {min}"));
                }
                if let Some(max) = max.filter(|m| x > *m) {
                    findings.push(format!("Value '{n}' at '{at}' failed to satisfy constraint: Member must have value less than or equal to {max}"));
                }
            }
            ("double" | "float", Value::Number(_)) => {}
            ("boolean", Value::Bool(_)) => {}
            ("timestamp", Value::Number(_) | Value::String(_)) => {}
            ("blob", Value::String(_)) => {}
            ("structure", Value::Object(o)) => {
                self.check_structure(service, shape, o, at, findings)
            }
            ("list", Value::Array(items)) => {
                let len = items.len() as f64;
                if let Some(min) = min.filter(|m| len < *m) {
                    findings.push(format!("Value at '{at}' failed to satisfy constraint: Member must have length greater than or equal to {min}"));
                }
                if let Some(max) = max.filter(|m| len > *m) {
                    findings.push(format!("Value at '{at}' failed to satisfy constraint: Member must have length less than or equal to {max}"));
                }
                if let Some(m) = shape
                    .get("member")
                    .and_then(|m| m.get("shape"))
                    .and_then(Value::as_str)
                {
                    for (i, item) in items.iter().enumerate() {
                        self.check_value(
                            service,
                            m,
                            item,
                            &format!("{at}.{}.member", i + 1),
                            findings,
                        );
                    }
                }
            }
            ("map", Value::Object(o)) => {
                let key = shape
                    .get("key")
                    .and_then(|k| k.get("shape"))
                    .and_then(Value::as_str);
                let val = shape
                    .get("value")
                    .and_then(|k| k.get("shape"))
                    .and_then(Value::as_str);
                for (k, v) in o {
                    if let Some(key) = key {
                        self.check_value(
                            service,
                            key,
                            &Value::String(k.clone()),
                            &format!("{at}.key"),
                            findings,
                        );
                    }
                    if let Some(val) = val {
                        self.check_value(service, val, v, &format!("{at}.{k}"), findings);
                    }
                }
            }
            _ => type_error(findings),
        }
    }
}

/// Java's POSIX character classes (AWS's models are Java regexes) as the ASCII ranges they
/// are in Java (`\p{Graph}` is `[\x21-\x7E]`, not Unicode's Graph).
fn java_classes(p: &str) -> String {
    p.replace(r"\p{Graph}", r"\x21-\x7E")
        .replace(r"\p{Print}", r"\x20-\x7E")
        .replace(r"\p{Alnum}", r"a-zA-Z0-9")
        .replace(r"\p{ASCII}", r"\x00-\x7F")
        .replace(r"\p{Upper}", r"A-Z")
        .replace(r"\p{Lower}", r"a-z")
        .replace(r"\p{Alpha}", r"a-zA-Z")
        .replace(r"\p{Digit}", r"0-9")
}

/// The value as AWS shows it in a validation message (long ones cut).
fn shown(s: &str) -> String {
    match s.char_indices().nth(128) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// A path, query or header value as the member's type.
fn scalar(kind: &str, v: &str, member: &str, wire: &str) -> ApiResult<Value> {
    let bad = || ApiError::serialization(format!("{member} ({wire}): {v:?} is not a valid {kind}"));
    Ok(match kind {
        "integer" | "long" => Value::Number(v.parse::<i64>().map_err(|_| bad())?.into()),
        "boolean" => match v {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(bad()),
        },
        _ => Value::String(v.to_string()),
    })
}

/// Splits a raw query string into percent-decoded pairs (`+` stays `+`, as SigV4 reads it).
pub fn parse_query(raw: &str) -> ApiResult<Vec<(String, String)>> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

/// Percent-decodes a path segment or query part; the result must be UTF-8.
pub fn percent_decode(s: &str) -> ApiResult<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    ApiError::invalid_request(format!("bad percent-encoding in {s:?}"))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| ApiError::invalid_request(format!("{s:?} does not decode to UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_posix_classes_are_their_ascii_ranges() {
        // CancelJob's ReasonCode: Java's \p{Upper} and \p{Digit} are ASCII only, and need
        // no Unicode tables of the regex crate.
        let re = regex::Regex::new(&format!(
            "^(?:{})$",
            java_classes(r"[\p{Upper}\p{Digit}_]+")
        ))
        .unwrap();
        assert!(re.is_match("OPERATOR_1"));
        assert!(!re.is_match("operator"));
        assert!(!re.is_match("É"));
    }

    #[test]
    fn the_embedded_model_loads_and_every_pattern_compiles() {
        let m = Model::embedded();
        assert!(m.operations().count() >= 60);
        assert!(m.operation("CreateThing").is_some());
        assert_eq!(
            m.operation("Publish").map(|o| o.service),
            Some(Service::IotData)
        );
    }

    #[test]
    fn routes_prefer_literal_segments_and_decode_parameters() {
        let m = Model::embedded();
        let r = m
            .route("PUT", "/thing-groups/addThingToThingGroup")
            .unwrap();
        assert_eq!(r.operation.name, "AddThingToThingGroup");
        let r = m.route("GET", "/things/a%3Ab").unwrap();
        assert_eq!(r.operation.name, "DescribeThing");
        assert_eq!(r.params, vec![("thingName".to_string(), "a:b".to_string())]);
        let r = m.route("POST", "/topics/a%2Fb%2Fc").unwrap();
        assert_eq!(r.operation.name, "Publish");
        assert_eq!(r.params[0].1, "a/b/c");
        assert_eq!(
            m.route("GET", "/nope").unwrap_err().code,
            "UnknownOperationException"
        );
        assert_eq!(m.route("PUT", "/things").unwrap_err().status, 405);
    }

    #[test]
    fn binding_validates_like_aws() {
        let m = Model::embedded();
        let r = m.route("POST", "/things/bad%20name").unwrap();
        let e = m.bind(&r, "", &[], b"{}").unwrap_err();
        assert_eq!(e.code, "InvalidRequestException");
        assert_eq!(
            e.message,
            "1 validation error detected: Value 'bad name' at 'thingName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9:_-]+"
        );
        let r = m.route("GET", "/things").unwrap();
        let i = m
            .bind(&r, "maxResults=5&attributeName=a", &[], b"")
            .unwrap();
        assert_eq!(i.int("maxResults"), Some(5));
        assert_eq!(i.str("attributeName"), Some("a"));
        let e = m.bind(&r, "maxResults=500", &[], b"").unwrap_err();
        assert!(
            e.message.contains("less than or equal to 250"),
            "{}",
            e.message
        );
        let e = m.bind(&r, "maxResults=x", &[], b"").unwrap_err();
        assert_eq!(e.code, "SerializationException");
        let r = m.route("PUT", "/certificates/abc").unwrap();
        let e = m.bind(&r, "newStatus=BROKEN", &[], b"").unwrap_err();
        assert!(e.message.contains("enum value set"), "{}", e.message);
        let r = m.route("POST", "/policies/p").unwrap();
        let e = m.bind(&r, "", &[], b"[1]").unwrap_err();
        assert_eq!(e.code, "SerializationException");
        let e = m.bind(&r, "", &[], b"{}").unwrap_err();
        assert!(e.message.contains("'policyDocument'"), "{}", e.message);
    }
}
