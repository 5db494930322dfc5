//! Provisioning templates (the AWS IoT template language): parameters, mappings, resources,
//! device configuration, override settings and the intrinsic functions `Ref`, `Fn::Join`,
//! `Fn::Select`, `Fn::Split`, `Fn::FindInMap` and `Fn::Sub`.
//!
//! A template is parsed and validated once ([`ProvisioningTemplate::parse`]): unknown sections,
//! resource types, properties and functions, wrong arity, references to undeclared parameters
//! or mappings, and a certificate resource without exactly one source are errors that name the
//! JSON path. [`ProvisioningTemplate::render`] then resolves the parameters into a
//! [`RenderedTemplate`]: the thing, certificate and policies that applying it would create.
//! Applying it to a registry is done by [`crate::fleet::FleetProvisioning`] in one atomic batch.
//!
//! ```
//! use std::collections::BTreeMap;
//! use thingkit_provision::template::{ProvisioningTemplate, TemplateLimits};
//!
//! let template = ProvisioningTemplate::parse(r#"{
//!   "Parameters": {"SerialNumber": {"Type": "String"},
//!                  "Site": {"Type": "String", "Default": "berlin"}},
//!   "Resources": {
//!     "thing": {"Type": "AWS::IoT::Thing", "Properties": {
//!       "ThingName": {"Fn::Join": ["-", ["sensor", {"Ref": "SerialNumber"}]]},
//!       "AttributePayload": {"site": {"Ref": "Site"}}}}
//!   }
//! }"#, &TemplateLimits::default())?;
//! let params = BTreeMap::from([("SerialNumber".to_string(), "42".to_string())]);
//! let rendered = template.render(&params, &BTreeMap::new())?;
//! assert_eq!(rendered.thing.as_ref().map(|t| t.name.as_str()), Some("sensor-42"));
//! # Ok::<(), thingkit_provision::Error>(())
//! ```

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::certificate::CertificateStatus;
use crate::error::{Error, Result};

/// The pseudo-parameter holding the ID of the certificate being provisioned.
pub const CERTIFICATE_ID: &str = "AWS::IoT::Certificate::Id";
/// The pseudo-parameter holding the PEM of the certificate being provisioned (JITP).
pub const CERTIFICATE_PEM: &str = "AWS::IoT::Certificate::CertificatePem";
/// Prefix of every pseudo-parameter filled in by the service, never by the device.
pub const PSEUDO_PREFIX: &str = "AWS::";

/// Size and shape limits for templates and rendering. The defaults follow AWS where AWS
/// documents a limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateLimits {
    /// Largest template body in bytes. AWS: 10 240.
    pub max_template_len: usize,
    /// Deepest nesting of JSON values (objects, arrays, function calls). Default 32.
    pub max_depth: usize,
    /// Most parameters a template may declare. Default 50.
    pub max_parameters: usize,
    /// Most resources a template may declare. Default 10.
    pub max_resources: usize,
    /// Most parameters a request may pass. Default 50.
    pub max_request_parameters: usize,
    /// Longest parameter name in a request. AWS: 2048.
    pub max_parameter_name_len: usize,
    /// Longest parameter value in a request, and longest string a function may produce. AWS:
    /// 4096.
    pub max_string_len: usize,
    /// Longest list a function (`Fn::Split`, a comma-delimited list) may produce. Default 100.
    pub max_list_len: usize,
}

impl Default for TemplateLimits {
    fn default() -> Self {
        TemplateLimits {
            max_template_len: 10_240,
            max_depth: 32,
            max_parameters: 50,
            max_resources: 10,
            max_request_parameters: 50,
            max_parameter_name_len: 2048,
            max_string_len: 4096,
            max_list_len: 100,
        }
    }
}

/// The type of a template parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ParameterType {
    /// Any string.
    String,
    /// A decimal number (validated, passed on as its string).
    Number,
    /// A comma-separated list (a `Ref` to it yields a list).
    CommaDelimitedList,
}

/// A declared template parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parameter {
    /// Its type.
    pub ty: ParameterType,
    /// Its default, used when the request does not give it.
    pub default: Option<String>,
}

/// What to do with a property of a thing that already exists (AWS `OverrideSettings`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Override {
    /// Keep the existing value (the default).
    #[default]
    DoNothing,
    /// Replace the existing value.
    Replace,
    /// Fail the whole provisioning.
    Fail,
    /// Merge (attributes and groups only).
    Merge,
}

/// Override settings of a thing resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OverrideSettings {
    /// For `AttributePayload`.
    pub attributes: Override,
    /// For `ThingTypeName`.
    pub thing_type: Override,
    /// For `ThingGroups`.
    pub thing_groups: Override,
}

/// A template expression: a literal, a list, or an intrinsic function call.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expr {
    Lit(String),
    List(Vec<Expr>),
    Ref(String),
    Join(Box<Expr>, Box<Expr>),
    Select(Box<Expr>, Box<Expr>),
    Split(Box<Expr>, Box<Expr>),
    FindInMap(Box<[Expr; 3]>),
    Sub(Vec<SubPart>, BTreeMap<String, Expr>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum SubPart {
    Text(String),
    Var(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ThingResource {
    name: Expr,
    thing_type: Option<Expr>,
    attributes: Vec<(String, Expr)>,
    groups: Option<Expr>,
    overrides: OverrideSettings,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum CertSource {
    Id(Expr),
    Csr(Expr),
    Pem(Expr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct CertificateResource {
    source: CertSource,
    status: Option<Expr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PolicyResource {
    Name(Expr),
    Document(Expr),
}

/// A parsed and validated provisioning template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvisioningTemplate {
    parameters: BTreeMap<String, Parameter>,
    mappings: BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>>,
    thing: Option<ThingResource>,
    certificate: Option<CertificateResource>,
    policies: Vec<PolicyResource>,
    device_configuration: BTreeMap<String, Expr>,
    limits: TemplateLimits,
}

/// Where the provisioned certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CertificateSource {
    /// An already registered certificate (the one the ownership token is bound to, or the one
    /// presented for JITP).
    CertificateId(String),
    /// A PKCS #10 CSR (PEM) to issue a certificate from.
    CertificateSigningRequest(String),
    /// A certificate PEM to register.
    CertificatePem(String),
}

/// The thing a rendered template creates or updates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenderedThing {
    /// Thing name.
    pub name: String,
    /// Thing type name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thing_type: Option<String>,
    /// Attributes.
    pub attributes: BTreeMap<String, String>,
    /// Static thing groups (they must exist).
    pub thing_groups: Vec<String>,
    /// What to do if the thing already exists.
    pub override_settings: OverrideSettings,
}

/// The certificate a rendered template registers or activates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenderedCertificate {
    /// Its source.
    pub source: CertificateSource,
    /// The status to give it (default ACTIVE).
    pub status: CertificateStatus,
}

/// A policy a rendered template attaches to the certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RenderedPolicy {
    /// An existing policy, by name.
    PolicyName(String),
    /// An inline document, created (under a name derived from its SHA-256) if it does not
    /// exist yet.
    PolicyDocument(String),
}

/// The resources applying a template would create, with every parameter resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenderedTemplate {
    /// The thing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thing: Option<RenderedThing>,
    /// The certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<RenderedCertificate>,
    /// The policies.
    pub policies: Vec<RenderedPolicy>,
    /// `DeviceConfiguration`, returned to the device.
    pub device_configuration: BTreeMap<String, String>,
}

fn terr(path: &str, reason: impl Into<String>) -> Error {
    Error::Template {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn depth_of(v: &Value, limit: usize, path: &str) -> Result<()> {
    // Iterative so that the check itself cannot overflow the stack.
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        if d > limit {
            return Err(terr(
                path,
                format!("nesting deeper than the limit of {limit}"),
            ));
        }
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    Ok(())
}

fn as_object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| terr(path, "expected a JSON object"))
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn check_keys(obj: &Map<String, Value>, allowed: &[&str], path: &str) -> Result<()> {
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(terr(
                &format!("{path}.{k}"),
                format!("unknown key (allowed: {})", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

struct Parser<'t> {
    parameters: &'t BTreeMap<String, Parameter>,
    mappings: &'t BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>>,
}

impl Parser<'_> {
    fn expr(&self, v: &Value, path: &str) -> Result<Expr> {
        match v {
            Value::Null => Err(terr(path, "null is not a value")),
            Value::Array(items) => Ok(Expr::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| self.expr(x, &format!("{path}[{i}]")))
                    .collect::<Result<_>>()?,
            )),
            Value::Object(o) => {
                let mut it = o.iter();
                let (Some((name, arg)), None) = (it.next(), it.next()) else {
                    return Err(terr(
                        path,
                        "a function call is an object with exactly one key",
                    ));
                };
                let fpath = format!("{path}.{name}");
                self.function(name, arg, &fpath)
            }
            other => scalar_string(other)
                .map(Expr::Lit)
                .ok_or_else(|| terr(path, "unexpected value")),
        }
    }

    fn args<'v>(&self, arg: &'v Value, n: usize, path: &str, name: &str) -> Result<&'v [Value]> {
        match arg.as_array() {
            Some(a) if a.len() == n => Ok(a),
            Some(a) => Err(terr(
                path,
                format!("{name} takes {n} arguments, found {}", a.len()),
            )),
            None => Err(terr(path, format!("{name} takes a list of {n} arguments"))),
        }
    }

    fn arg(&self, args: &[Value], i: usize, path: &str) -> Result<Expr> {
        let v = args
            .get(i)
            .ok_or_else(|| terr(path, format!("argument {i} is missing")))?;
        self.expr(v, &format!("{path}[{i}]"))
    }

    fn check_ref(&self, name: &str, path: &str) -> Result<()> {
        if self.parameters.contains_key(name) || name.starts_with(PSEUDO_PREFIX) {
            Ok(())
        } else {
            Err(terr(path, format!("Ref to undeclared parameter {name:?}")))
        }
    }

    fn function(&self, name: &str, arg: &Value, path: &str) -> Result<Expr> {
        match name {
            "Ref" => {
                let target = arg
                    .as_str()
                    .ok_or_else(|| terr(path, "Ref takes a parameter name (a string)"))?;
                self.check_ref(target, path)?;
                Ok(Expr::Ref(target.to_owned()))
            }
            "Fn::Join" => {
                let a = self.args(arg, 2, path, name)?;
                Ok(Expr::Join(
                    Box::new(self.arg(a, 0, path)?),
                    Box::new(self.arg(a, 1, path)?),
                ))
            }
            "Fn::Select" => {
                let a = self.args(arg, 2, path, name)?;
                Ok(Expr::Select(
                    Box::new(self.arg(a, 0, path)?),
                    Box::new(self.arg(a, 1, path)?),
                ))
            }
            "Fn::Split" => {
                let a = self.args(arg, 2, path, name)?;
                Ok(Expr::Split(
                    Box::new(self.arg(a, 0, path)?),
                    Box::new(self.arg(a, 1, path)?),
                ))
            }
            "Fn::FindInMap" => {
                let a = self.args(arg, 3, path, name)?;
                if let Some(map) = a.first().and_then(Value::as_str)
                    && !self.mappings.contains_key(map)
                {
                    return Err(terr(
                        &format!("{path}[0]"),
                        format!("unknown mapping {map:?}"),
                    ));
                }
                Ok(Expr::FindInMap(Box::new([
                    self.arg(a, 0, path)?,
                    self.arg(a, 1, path)?,
                    self.arg(a, 2, path)?,
                ])))
            }
            "Fn::Sub" => {
                let (text, vars) = match arg {
                    Value::String(s) => (s.as_str(), None),
                    Value::Array(a) if a.len() == 2 => {
                        let text = a.first().and_then(Value::as_str).ok_or_else(|| {
                            terr(
                                &format!("{path}[0]"),
                                "Fn::Sub's first argument is a string",
                            )
                        })?;
                        let vars = a.get(1).and_then(Value::as_object).ok_or_else(|| {
                            terr(
                                &format!("{path}[1]"),
                                "Fn::Sub's second argument is an object",
                            )
                        })?;
                        (text, Some(vars))
                    }
                    _ => {
                        return Err(terr(
                            path,
                            "Fn::Sub takes a string, or a list of a string and an object",
                        ));
                    }
                };
                let mut bound = BTreeMap::new();
                if let Some(vars) = vars {
                    for (k, v) in vars {
                        bound.insert(k.clone(), self.expr(v, &format!("{path}[1].{k}"))?);
                    }
                }
                let parts = parse_sub(text, path)?;
                for part in &parts {
                    if let SubPart::Var(v) = part
                        && !bound.contains_key(v)
                    {
                        self.check_ref(v, path)?;
                    }
                }
                Ok(Expr::Sub(parts, bound))
            }
            other => Err(terr(path, format!("unknown function {other:?}"))),
        }
    }
}

fn parse_sub(text: &str, path: &str) -> Result<Vec<SubPart>> {
    let mut parts = Vec::new();
    let mut rest = text;
    let mut literal = String::new();
    while let Some(pos) = rest.find("${") {
        literal.push_str(rest.get(..pos).unwrap_or_default());
        let after = rest.get(pos + 2..).unwrap_or_default();
        if let Some(stripped) = after.strip_prefix('!') {
            // `${!Literal}` is the escape for a literal `${Literal}`.
            literal.push_str("${");
            rest = stripped;
            continue;
        }
        let end = after
            .find('}')
            .ok_or_else(|| terr(path, "unterminated ${ in Fn::Sub"))?;
        let var = after.get(..end).unwrap_or_default();
        if var.is_empty() {
            return Err(terr(path, "empty ${} in Fn::Sub"));
        }
        if !literal.is_empty() {
            parts.push(SubPart::Text(std::mem::take(&mut literal)));
        }
        parts.push(SubPart::Var(var.to_owned()));
        rest = after.get(end + 1..).unwrap_or_default();
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(SubPart::Text(literal));
    }
    Ok(parts)
}

/// A value during rendering: a string or a list of strings.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Val {
    Str(String),
    List(Vec<String>),
}

struct Renderer<'t> {
    template: &'t ProvisioningTemplate,
    values: BTreeMap<&'t str, Val>,
    pseudo: &'t BTreeMap<String, String>,
    /// Rendering a `PolicyDocument`: parameter values are JSON-string-escaped so that a device
    /// cannot inject statements into a policy through a parameter.
    escape_json: bool,
}

fn json_escaped(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_owned()).to_string();
    quoted
        .get(1..quoted.len().saturating_sub(1))
        .unwrap_or_default()
        .to_owned()
}

impl Renderer<'_> {
    fn check_str(&self, s: String, path: &str) -> Result<String> {
        let limit = self.template.limits.max_string_len;
        if s.len() > limit {
            return Err(terr(
                path,
                format!("produces a string of {} bytes, more than {limit}", s.len()),
            ));
        }
        Ok(s)
    }

    fn check_list(&self, l: Vec<String>, path: &str) -> Result<Vec<String>> {
        let limit = self.template.limits.max_list_len;
        if l.len() > limit {
            return Err(terr(
                path,
                format!("produces a list of {} items, more than {limit}", l.len()),
            ));
        }
        Ok(l)
    }

    fn lookup(&self, name: &str, path: &str) -> Result<Val> {
        let v = self.lookup_raw(name, path)?;
        if !self.escape_json {
            return Ok(v);
        }
        Ok(match v {
            Val::Str(s) => Val::Str(json_escaped(&s)),
            Val::List(l) => Val::List(l.iter().map(|s| json_escaped(s)).collect()),
        })
    }

    fn lookup_raw(&self, name: &str, path: &str) -> Result<Val> {
        if let Some(v) = self.values.get(name) {
            return Ok(v.clone());
        }
        if let Some(v) = self.pseudo.get(name) {
            return Ok(Val::Str(v.clone()));
        }
        if self.template.parameters.contains_key(name) || name.starts_with(PSEUDO_PREFIX) {
            return Err(Error::MissingParameter {
                name: name.to_owned(),
            });
        }
        Err(terr(path, format!("Ref to undeclared parameter {name:?}")))
    }

    fn string(&self, e: &Expr, path: &str) -> Result<String> {
        match self.eval(e, path)? {
            Val::Str(s) => Ok(s),
            Val::List(_) => Err(terr(path, "expected a string, found a list")),
        }
    }

    fn list(&self, e: &Expr, path: &str) -> Result<Vec<String>> {
        match self.eval(e, path)? {
            Val::List(l) => Ok(l),
            Val::Str(_) => Err(terr(path, "expected a list, found a string")),
        }
    }

    fn eval(&self, e: &Expr, path: &str) -> Result<Val> {
        Ok(match e {
            Expr::Lit(s) => Val::Str(s.clone()),
            Expr::List(items) => Val::List(
                self.check_list(
                    items
                        .iter()
                        .map(|x| self.string(x, path))
                        .collect::<Result<_>>()?,
                    path,
                )?,
            ),
            Expr::Ref(name) => self.lookup(name, path)?,
            Expr::Join(delim, items) => {
                let delim = self.string(delim, path)?;
                let items = self.list(items, path)?;
                let total: usize = items.iter().map(String::len).sum::<usize>()
                    + delim.len().saturating_mul(items.len());
                if total
                    > self
                        .template
                        .limits
                        .max_string_len
                        .saturating_add(delim.len())
                {
                    return Err(terr(path, "Fn::Join produces a string over the limit"));
                }
                Val::Str(self.check_str(items.join(&delim), path)?)
            }
            Expr::Select(index, items) => {
                let index = self.string(index, path)?;
                let i: usize = index.trim().parse().map_err(|_| {
                    terr(path, format!("Fn::Select index {index:?} is not a number"))
                })?;
                let items = self.list(items, path)?;
                let len = items.len();
                Val::Str(items.into_iter().nth(i).ok_or_else(|| {
                    terr(
                        path,
                        format!("Fn::Select index {i} is out of range (list of {len})"),
                    )
                })?)
            }
            Expr::Split(delim, text) => {
                let delim = self.string(delim, path)?;
                if delim.is_empty() {
                    return Err(terr(path, "Fn::Split delimiter is empty"));
                }
                let text = self.string(text, path)?;
                let limit = self.template.limits.max_list_len;
                let parts: Vec<String> = text
                    .split(delim.as_str())
                    .take(limit.saturating_add(1))
                    .map(str::to_owned)
                    .collect();
                Val::List(self.check_list(parts, path)?)
            }
            Expr::FindInMap(args) => {
                let [m, k1, k2] = &**args;
                let m = self.string(m, path)?;
                let k1 = self.string(k1, path)?;
                let k2 = self.string(k2, path)?;
                let v = self
                    .template
                    .mappings
                    .get(&m)
                    .ok_or_else(|| terr(path, format!("unknown mapping {m:?}")))?
                    .get(&k1)
                    .ok_or_else(|| terr(path, format!("mapping {m:?} has no key {k1:?}")))?
                    .get(&k2)
                    .ok_or_else(|| terr(path, format!("mapping {m:?}.{k1:?} has no key {k2:?}")))?;
                match v {
                    Value::Array(a) => Val::List(
                        a.iter()
                            .map(|x| {
                                scalar_string(x)
                                    .ok_or_else(|| terr(path, "mapping list item is not a scalar"))
                            })
                            .collect::<Result<_>>()?,
                    ),
                    other => Val::Str(
                        scalar_string(other)
                            .ok_or_else(|| terr(path, "mapping value is not a scalar"))?,
                    ),
                }
            }
            Expr::Sub(parts, bound) => {
                let mut out = String::new();
                for part in parts {
                    match part {
                        SubPart::Text(t) => out.push_str(t),
                        SubPart::Var(v) => {
                            let value = match bound.get(v) {
                                Some(e) => self.string(e, path)?,
                                None => match self.lookup(v, path)? {
                                    Val::Str(s) => s,
                                    Val::List(_) => {
                                        return Err(terr(
                                            path,
                                            format!("Fn::Sub variable {v:?} is a list"),
                                        ));
                                    }
                                },
                            };
                            out.push_str(&value);
                        }
                    }
                    if out.len() > self.template.limits.max_string_len {
                        return Err(terr(path, "Fn::Sub produces a string over the limit"));
                    }
                }
                Val::Str(out)
            }
        })
    }
}

fn parse_override(v: Option<&Value>, path: &str, merge_ok: bool) -> Result<Override> {
    let Some(v) = v else {
        return Ok(Override::DoNothing);
    };
    match v.as_str() {
        Some("DO_NOTHING") => Ok(Override::DoNothing),
        Some("REPLACE") => Ok(Override::Replace),
        Some("FAIL") => Ok(Override::Fail),
        Some("MERGE") if merge_ok => Ok(Override::Merge),
        _ => Err(terr(
            path,
            if merge_ok {
                "override must be DO_NOTHING, REPLACE, FAIL or MERGE"
            } else {
                "override must be DO_NOTHING, REPLACE or FAIL"
            },
        )),
    }
}

impl ProvisioningTemplate {
    /// Parses and validates a template body (JSON text).
    pub fn parse(text: &str, limits: &TemplateLimits) -> Result<Self> {
        if text.len() > limits.max_template_len {
            return Err(Error::TooLarge {
                what: "provisioning template",
                actual: text.len(),
                limit: limits.max_template_len,
            });
        }
        let root: Value = serde_json::from_str(text).map_err(|e| {
            terr(
                "$",
                format!("not JSON: {e} (line {}, column {})", e.line(), e.column()),
            )
        })?;
        depth_of(&root, limits.max_depth, "$")?;
        let top = as_object(&root, "$")?;
        check_keys(
            top,
            &[
                "AWSTemplateFormatVersion",
                "Description",
                "Parameters",
                "Mappings",
                "Resources",
                "DeviceConfiguration",
            ],
            "$",
        )?;

        let mut parameters = BTreeMap::new();
        if let Some(p) = top.get("Parameters") {
            let p = as_object(p, "Parameters")?;
            if p.len() > limits.max_parameters {
                return Err(Error::LimitExceeded {
                    what: "template parameters",
                    limit: limits.max_parameters,
                });
            }
            for (name, decl) in p {
                let path = format!("Parameters.{name}");
                let decl = as_object(decl, &path)?;
                check_keys(decl, &["Type", "Default", "Description"], &path)?;
                let ty = match decl.get("Type").and_then(Value::as_str) {
                    Some("String") => ParameterType::String,
                    Some("Number") => ParameterType::Number,
                    Some("CommaDelimitedList") => ParameterType::CommaDelimitedList,
                    _ => {
                        return Err(terr(
                            &format!("{path}.Type"),
                            "Type must be String, Number or CommaDelimitedList",
                        ));
                    }
                };
                let default = match decl.get("Default") {
                    None => None,
                    Some(v) => Some(scalar_string(v).ok_or_else(|| {
                        terr(&format!("{path}.Default"), "Default must be a scalar")
                    })?),
                };
                if let Some(d) = &default {
                    check_typed(ty, d, &format!("{path}.Default"))?;
                }
                parameters.insert(name.clone(), Parameter { ty, default });
            }
        }

        let mut mappings = BTreeMap::new();
        if let Some(m) = top.get("Mappings") {
            for (name, first) in as_object(m, "Mappings")? {
                let path = format!("Mappings.{name}");
                let mut level1 = BTreeMap::new();
                for (k1, second) in as_object(first, &path)? {
                    let path = format!("{path}.{k1}");
                    let mut level2 = BTreeMap::new();
                    for (k2, v) in as_object(second, &path)? {
                        let ok = scalar_string(v).is_some()
                            || v.as_array()
                                .is_some_and(|a| a.iter().all(|x| scalar_string(x).is_some()));
                        if !ok {
                            return Err(terr(
                                &format!("{path}.{k2}"),
                                "a mapping value is a scalar or a list of scalars",
                            ));
                        }
                        level2.insert(k2.clone(), v.clone());
                    }
                    level1.insert(k1.clone(), level2);
                }
                mappings.insert(name.clone(), level1);
            }
        }

        let parser = Parser {
            parameters: &parameters,
            mappings: &mappings,
        };
        let mut thing = None;
        let mut certificate = None;
        let mut policies = Vec::new();
        let resources = top
            .get("Resources")
            .ok_or_else(|| terr("$", "the Resources section is missing"))?;
        let resources = as_object(resources, "Resources")?;
        if resources.len() > limits.max_resources {
            return Err(Error::LimitExceeded {
                what: "template resources",
                limit: limits.max_resources,
            });
        }
        for (id, res) in resources {
            let path = format!("Resources.{id}");
            let res = as_object(res, &path)?;
            check_keys(res, &["Type", "Properties", "OverrideSettings"], &path)?;
            let props_path = format!("{path}.Properties");
            let empty = Map::new();
            let props = match res.get("Properties") {
                Some(p) => as_object(p, &props_path)?,
                None => &empty,
            };
            let prop = |k: &str| -> Result<Option<Expr>> {
                props
                    .get(k)
                    .map(|v| parser.expr(v, &format!("{props_path}.{k}")))
                    .transpose()
            };
            match res.get("Type").and_then(Value::as_str) {
                Some("AWS::IoT::Thing") => {
                    check_keys(
                        props,
                        &[
                            "ThingName",
                            "ThingTypeName",
                            "ThingGroups",
                            "AttributePayload",
                        ],
                        &props_path,
                    )?;
                    if thing.is_some() {
                        return Err(terr(&path, "a template may declare one AWS::IoT::Thing"));
                    }
                    let name = prop("ThingName")?
                        .ok_or_else(|| terr(&props_path, "AWS::IoT::Thing needs a ThingName"))?;
                    let mut attributes = Vec::new();
                    if let Some(a) = props.get("AttributePayload") {
                        let apath = format!("{props_path}.AttributePayload");
                        for (k, v) in as_object(a, &apath)? {
                            attributes.push((k.clone(), parser.expr(v, &format!("{apath}.{k}"))?));
                        }
                    }
                    let opath = format!("{path}.OverrideSettings");
                    let overrides = match res.get("OverrideSettings") {
                        None => OverrideSettings::default(),
                        Some(o) => {
                            let o = as_object(o, &opath)?;
                            check_keys(
                                o,
                                &["AttributePayload", "ThingTypeName", "ThingGroups"],
                                &opath,
                            )?;
                            OverrideSettings {
                                attributes: parse_override(
                                    o.get("AttributePayload"),
                                    &format!("{opath}.AttributePayload"),
                                    true,
                                )?,
                                thing_type: parse_override(
                                    o.get("ThingTypeName"),
                                    &format!("{opath}.ThingTypeName"),
                                    false,
                                )?,
                                thing_groups: parse_override(
                                    o.get("ThingGroups"),
                                    &format!("{opath}.ThingGroups"),
                                    true,
                                )?,
                            }
                        }
                    };
                    thing = Some(ThingResource {
                        name,
                        thing_type: prop("ThingTypeName")?,
                        attributes,
                        groups: prop("ThingGroups")?,
                        overrides,
                    });
                }
                Some("AWS::IoT::Certificate") => {
                    check_keys(
                        props,
                        &[
                            "CertificateId",
                            "CertificateSigningRequest",
                            "CertificatePem",
                            "Status",
                        ],
                        &props_path,
                    )?;
                    if res.contains_key("OverrideSettings") {
                        return Err(terr(&path, "OverrideSettings applies to a thing only"));
                    }
                    if certificate.is_some() {
                        return Err(terr(
                            &path,
                            "a template may declare one AWS::IoT::Certificate",
                        ));
                    }
                    let mut sources = Vec::new();
                    if let Some(e) = prop("CertificateId")? {
                        sources.push(CertSource::Id(e));
                    }
                    if let Some(e) = prop("CertificateSigningRequest")? {
                        sources.push(CertSource::Csr(e));
                    }
                    if let Some(e) = prop("CertificatePem")? {
                        sources.push(CertSource::Pem(e));
                    }
                    if sources.len() != 1 {
                        return Err(terr(
                            &props_path,
                            format!(
                                "exactly one of CertificateId, CertificateSigningRequest and \
                                 CertificatePem is required, found {}",
                                sources.len()
                            ),
                        ));
                    }
                    let source = sources.remove(0);
                    let status = prop("Status")?;
                    if let Some(Expr::Lit(s)) = &status {
                        parse_status(s, &format!("{props_path}.Status"))?;
                    }
                    certificate = Some(CertificateResource { source, status });
                }
                Some("AWS::IoT::Policy") => {
                    check_keys(props, &["PolicyName", "PolicyDocument"], &props_path)?;
                    if res.contains_key("OverrideSettings") {
                        return Err(terr(&path, "OverrideSettings applies to a thing only"));
                    }
                    let p = match (prop("PolicyName")?, prop("PolicyDocument")?) {
                        (Some(n), None) => PolicyResource::Name(n),
                        (None, Some(d)) => PolicyResource::Document(d),
                        _ => {
                            return Err(terr(
                                &props_path,
                                "exactly one of PolicyName and PolicyDocument is required",
                            ));
                        }
                    };
                    policies.push(p);
                }
                _ => {
                    return Err(terr(
                        &format!("{path}.Type"),
                        "Type must be AWS::IoT::Thing, AWS::IoT::Certificate or AWS::IoT::Policy",
                    ));
                }
            }
        }
        if !policies.is_empty() && certificate.is_none() {
            return Err(terr(
                "Resources",
                "a policy needs an AWS::IoT::Certificate to attach to",
            ));
        }

        let mut device_configuration = BTreeMap::new();
        if let Some(dc) = top.get("DeviceConfiguration") {
            for (k, v) in as_object(dc, "DeviceConfiguration")? {
                device_configuration.insert(
                    k.clone(),
                    parser.expr(v, &format!("DeviceConfiguration.{k}"))?,
                );
            }
        }

        Ok(ProvisioningTemplate {
            parameters,
            mappings,
            thing,
            certificate,
            policies,
            device_configuration,
            limits: limits.clone(),
        })
    }

    /// The declared parameters.
    pub fn parameters(&self) -> &BTreeMap<String, Parameter> {
        &self.parameters
    }

    /// Whether the template declares a certificate resource.
    pub fn has_certificate(&self) -> bool {
        self.certificate.is_some()
    }

    /// Whether the template's certificate resource names an existing certificate
    /// (`CertificateId`), as fleet provisioning and JITP templates must.
    pub fn uses_certificate_id(&self) -> bool {
        matches!(
            self.certificate,
            Some(CertificateResource {
                source: CertSource::Id(_),
                ..
            })
        )
    }

    /// Resolves every expression with the device's `parameters` and the service's `pseudo`
    /// parameters (`AWS::IoT::Certificate::Id`, ...). The device may not set pseudo-parameters
    /// (names starting with `AWS::`) nor undeclared ones; declared parameters without a value or
    /// default are a [`Error::MissingParameter`].
    pub fn render(
        &self,
        parameters: &BTreeMap<String, String>,
        pseudo: &BTreeMap<String, String>,
    ) -> Result<RenderedTemplate> {
        let limits = &self.limits;
        if parameters.len() > limits.max_request_parameters {
            return Err(Error::LimitExceeded {
                what: "request parameters",
                limit: limits.max_request_parameters,
            });
        }
        let mut values = BTreeMap::new();
        for (name, value) in parameters {
            let path = format!("parameters.{}", name.chars().take(64).collect::<String>());
            if name.len() > limits.max_parameter_name_len || value.len() > limits.max_string_len {
                return Err(terr(&path, "parameter name or value is too long"));
            }
            if name.starts_with(PSEUDO_PREFIX) {
                return Err(terr(&path, "pseudo-parameters are set by the service"));
            }
            let decl = self
                .parameters
                .get(name)
                .ok_or_else(|| terr(&path, "the template declares no such parameter"))?;
            check_typed(decl.ty, value, &path)?;
            values.insert(name.as_str(), typed(decl.ty, value, limits, &path)?);
        }
        for (name, decl) in &self.parameters {
            if values.contains_key(name.as_str()) || pseudo.contains_key(name) {
                continue;
            }
            if let Some(d) = &decl.default {
                let path = format!("Parameters.{name}.Default");
                values.insert(name.as_str(), typed(decl.ty, d, limits, &path)?);
            }
        }
        let mut r = Renderer {
            template: self,
            values,
            pseudo,
            escape_json: false,
        };

        let thing = match &self.thing {
            None => None,
            Some(t) => {
                let p = "Resources.thing";
                let mut attributes = BTreeMap::new();
                for (k, e) in &t.attributes {
                    attributes.insert(
                        k.clone(),
                        r.string(e, &format!("{p}.AttributePayload.{k}"))?,
                    );
                }
                Some(RenderedThing {
                    name: r.string(&t.name, &format!("{p}.ThingName"))?,
                    thing_type: t
                        .thing_type
                        .as_ref()
                        .map(|e| r.string(e, &format!("{p}.ThingTypeName")))
                        .transpose()?,
                    attributes,
                    thing_groups: match &t.groups {
                        None => Vec::new(),
                        Some(e) => r.list(e, &format!("{p}.ThingGroups"))?,
                    },
                    override_settings: t.overrides,
                })
            }
        };
        let certificate = match &self.certificate {
            None => None,
            Some(c) => {
                let p = "Resources.certificate";
                let source = match &c.source {
                    CertSource::Id(e) => CertificateSource::CertificateId(
                        r.string(e, &format!("{p}.CertificateId"))?,
                    ),
                    CertSource::Csr(e) => CertificateSource::CertificateSigningRequest(
                        r.string(e, &format!("{p}.CertificateSigningRequest"))?,
                    ),
                    CertSource::Pem(e) => CertificateSource::CertificatePem(
                        r.string(e, &format!("{p}.CertificatePem"))?,
                    ),
                };
                let status = match &c.status {
                    None => CertificateStatus::Active,
                    Some(e) => {
                        let path = format!("{p}.Status");
                        parse_status(&r.string(e, &path)?, &path)?
                    }
                };
                Some(RenderedCertificate { source, status })
            }
        };
        let mut policies = Vec::new();
        for (i, pol) in self.policies.iter().enumerate() {
            let p = format!("Resources.policy[{i}]");
            policies.push(match pol {
                PolicyResource::Name(e) => {
                    RenderedPolicy::PolicyName(r.string(e, &format!("{p}.PolicyName"))?)
                }
                PolicyResource::Document(e) => {
                    r.escape_json = true;
                    let doc = r.string(e, &format!("{p}.PolicyDocument"));
                    r.escape_json = false;
                    RenderedPolicy::PolicyDocument(doc?)
                }
            });
        }
        let mut device_configuration = BTreeMap::new();
        for (k, e) in &self.device_configuration {
            device_configuration
                .insert(k.clone(), r.string(e, &format!("DeviceConfiguration.{k}"))?);
        }
        Ok(RenderedTemplate {
            thing,
            certificate,
            policies,
            device_configuration,
        })
    }
}

fn parse_status(s: &str, path: &str) -> Result<CertificateStatus> {
    match s.to_ascii_uppercase().as_str() {
        "ACTIVE" => Ok(CertificateStatus::Active),
        "INACTIVE" => Ok(CertificateStatus::Inactive),
        _ => Err(terr(path, "Status must be ACTIVE or INACTIVE")),
    }
}

fn check_typed(ty: ParameterType, value: &str, path: &str) -> Result<()> {
    if ty == ParameterType::Number && !value.trim().parse::<f64>().is_ok_and(f64::is_finite) {
        return Err(terr(path, format!("{value:?} is not a Number")));
    }
    Ok(())
}

fn typed(ty: ParameterType, value: &str, limits: &TemplateLimits, path: &str) -> Result<Val> {
    Ok(match ty {
        ParameterType::CommaDelimitedList => {
            let items: Vec<String> = value
                .split(',')
                .take(limits.max_list_len.saturating_add(1))
                .map(|s| s.trim().to_owned())
                .collect();
            if items.len() > limits.max_list_len {
                return Err(terr(path, "list longer than the limit"));
            }
            Val::List(items)
        }
        _ => Val::Str(value.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<ProvisioningTemplate> {
        ProvisioningTemplate::parse(t, &TemplateLimits::default())
    }

    fn params(p: &[(&str, &str)]) -> BTreeMap<String, String> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn thing_name(body: &str, p: &[(&str, &str)]) -> Result<String> {
        let t = parse(&format!(
            r#"{{"Parameters":{{"A":{{"Type":"String"}},"L":{{"Type":"CommaDelimitedList","Default":"x,y,z"}}}},
               "Mappings":{{"M":{{"eu":{{"zone":"west","list":["p","q"]}}}}}},
               "Resources":{{"thing":{{"Type":"AWS::IoT::Thing","Properties":{{"ThingName":{body}}}}}}}}}"#
        ))?;
        Ok(t.render(&params(p), &BTreeMap::new())?
            .thing
            .map(|t| t.name)
            .unwrap_or_default())
    }

    #[test]
    fn evaluates_every_intrinsic_function() -> Result<()> {
        assert_eq!(thing_name(r#"{"Ref":"A"}"#, &[("A", "a1")])?, "a1");
        assert_eq!(
            thing_name(r#"{"Fn::Join":["-",["x",{"Ref":"A"}]]}"#, &[("A", "a1")])?,
            "x-a1"
        );
        assert_eq!(thing_name(r#"{"Fn::Select":["1",{"Ref":"L"}]}"#, &[])?, "y");
        assert_eq!(
            thing_name(r#"{"Fn::Select":[2,{"Fn::Split":[":","a:b:c"]}]}"#, &[])?,
            "c"
        );
        assert_eq!(
            thing_name(r#"{"Fn::FindInMap":["M","eu","zone"]}"#, &[])?,
            "west"
        );
        assert_eq!(
            thing_name(
                r#"{"Fn::Join":["+",{"Fn::FindInMap":["M",{"Ref":"A"},"list"]}]}"#,
                &[("A", "eu")]
            )?,
            "p+q"
        );
        assert_eq!(
            thing_name(r#"{"Fn::Sub":"d-${A}-${!Lit}"}"#, &[("A", "7")])?,
            "d-7-${Lit}"
        );
        assert_eq!(
            thing_name(
                r#"{"Fn::Sub":["${X}/${A}",{"X":{"Ref":"A"}}]}"#,
                &[("A", "7")]
            )?,
            "7/7"
        );
        Ok(())
    }

    fn reason(r: Result<impl std::fmt::Debug>) -> String {
        match r {
            Err(e) => e.to_string(),
            Ok(v) => panic!("expected an error, got {v:?}"),
        }
    }

    #[test]
    fn rejects_unknown_function_with_its_path() {
        let e = reason(thing_name(r#"{"Fn::If":["a","b","c"]}"#, &[]));
        assert!(
            e.contains("Resources.thing.Properties.ThingName.Fn::If"),
            "{e}"
        );
        assert!(e.contains("unknown function"), "{e}");
    }

    #[test]
    fn rejects_wrong_arity() {
        let e = reason(thing_name(r#"{"Fn::Join":["-"]}"#, &[]));
        assert!(e.contains("takes 2 arguments, found 1"), "{e}");
        let e = reason(thing_name(r#"{"Fn::FindInMap":["M","eu"]}"#, &[]));
        assert!(e.contains("takes 3 arguments"), "{e}");
    }

    #[test]
    fn rejects_missing_and_undeclared_parameters() {
        assert!(matches!(
            thing_name(r#"{"Ref":"A"}"#, &[]),
            Err(Error::MissingParameter { name }) if name == "A"
        ));
        let e = reason(thing_name(r#"{"Ref":"Nope"}"#, &[]));
        assert!(e.contains("undeclared parameter"), "{e}");
        let e = reason(thing_name(r#"{"Ref":"A"}"#, &[("A", "x"), ("B", "y")]));
        assert!(e.contains("declares no such parameter"), "{e}");
        let e = reason(thing_name(
            r#"{"Ref":"A"}"#,
            &[("A", "x"), ("AWS::IoT::Certificate::Id", "y")],
        ));
        assert!(e.contains("set by the service"), "{e}");
    }

    #[test]
    fn requires_exactly_one_certificate_source() {
        let e = reason(parse(
            r#"{"Resources":{"c":{"Type":"AWS::IoT::Certificate","Properties":{
                "CertificateId":"a","CertificatePem":"b"}}}}"#,
        ));
        assert!(e.contains("exactly one of CertificateId"), "{e}");
        let e = reason(parse(
            r#"{"Resources":{"c":{"Type":"AWS::IoT::Certificate","Properties":{"Status":"ACTIVE"}}}}"#,
        ));
        assert!(e.contains("found 0"), "{e}");
    }

    #[test]
    fn enforces_size_and_output_limits() {
        let big = format!(
            r#"{{"Resources":{{}},"Description":"{}"}}"#,
            "x".repeat(20_000)
        );
        assert!(matches!(
            parse(&big),
            Err(Error::TooLarge { limit: 10_240, .. })
        ));
        let e = reason(thing_name(
            r#"{"Fn::Split":[",",{"Ref":"A"}]}"#,
            &[("A", &",".repeat(200))],
        ));
        assert!(e.contains("more than 100"), "{e}");
        let deep = format!("{}\"x\"{}", "[".repeat(40), "]".repeat(40));
        let e = reason(thing_name(&deep, &[]));
        assert!(e.contains("nesting deeper"), "{e}");
        let e = reason(thing_name(r#"{"Fn::Select":["9",["a"]]}"#, &[]));
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn parameters_cannot_inject_statements_into_an_inline_policy() -> Result<()> {
        let t = parse(
            r#"{"Parameters":{"S":{"Type":"String"},"AWS::IoT::Certificate::Id":{"Type":"String"}},
               "Resources":{"c":{"Type":"AWS::IoT::Certificate","Properties":{
                 "CertificateId":{"Ref":"AWS::IoT::Certificate::Id"}}},
               "p":{"Type":"AWS::IoT::Policy","Properties":{"PolicyDocument":{"Fn::Sub":
                 "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"iot:Publish\",\"Resource\":\"arn:aws:iot:r:1:topic/d/${S}\"}]}"}}}}}"#,
        )?;
        let attack = r#"x"},{"Effect":"Allow","Action":"iot:*","Resource":"*"#;
        let pseudo = BTreeMap::from([(CERTIFICATE_ID.to_string(), "ab".repeat(32))]);
        let r = t.render(&params(&[("S", attack)]), &pseudo)?;
        let [RenderedPolicy::PolicyDocument(doc)] = r.policies.as_slice() else {
            panic!("one inline policy expected");
        };
        let v: serde_json::Value = serde_json::from_str(doc).expect("still valid JSON");
        let statements = v["Statement"].as_array().expect("statements");
        assert_eq!(statements.len(), 1, "no statement was injected: {doc}");
        assert!(
            statements[0]["Resource"]
                .as_str()
                .is_some_and(|r| r.ends_with(attack))
        );
        Ok(())
    }

    #[test]
    fn number_parameters_are_checked() {
        let t = parse(
            r#"{"Parameters":{"N":{"Type":"Number"}},"Resources":{"t":{"Type":"AWS::IoT::Thing",
               "Properties":{"ThingName":{"Ref":"N"}}}}}"#,
        );
        let t = t.expect("valid template");
        assert!(t.render(&params(&[("N", "12")]), &BTreeMap::new()).is_ok());
        assert!(
            t.render(&params(&[("N", "twelve")]), &BTreeMap::new())
                .is_err()
        );
    }
}
