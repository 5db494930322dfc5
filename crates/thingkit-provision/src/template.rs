//! Provisioning templates (the AWS IoT template language); the user documentation is on [`ProvisioningTemplate`].

use std::collections::BTreeMap;

use serde::Serialize;
use thingkit_json::{self as json, Kind, LineIndex, Member, Node};

use crate::certificate::CertificateStatus;
use crate::error::{Error, Result};

/// The pseudo-parameter holding the ID of the certificate being provisioned.
pub const CERTIFICATE_ID: &str = "AWS::IoT::Certificate::Id";
/// The pseudo-parameter holding the PEM of the certificate being provisioned (JITP).
pub const CERTIFICATE_PEM: &str = "AWS::IoT::Certificate::CertificatePem";
/// Prefix of every pseudo-parameter filled in by the service, never by the device.
pub const PSEUDO_PREFIX: &str = "AWS::";

/// The resource types a template may declare (AWS: "Valid types are").
pub const RESOURCE_TYPES: [&str; 3] = [
    "AWS::IoT::Thing",
    "AWS::IoT::Certificate",
    "AWS::IoT::Policy",
];

/// Size and shape limits for templates and rendering. The defaults follow AWS where AWS
/// documents a limit.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TemplateLimits {
    /// Largest template body in bytes. AWS: 10 240.
    pub max_template_len: usize,
    /// Deepest nesting of JSON arrays and objects (function calls included). Default 32.
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
    /// Longest policy document (JSON text) rendering a `PolicyDocument` object may produce.
    /// Default 10 240, the template limit (the registry then applies the policy limits).
    pub max_policy_document_len: usize,
}

impl TemplateLimits {
    /// This value with [`max_template_len`](Self::max_template_len) replaced.
    pub fn with_max_template_len(mut self, max_template_len: usize) -> Self {
        self.max_template_len = max_template_len;
        self
    }

    /// This value with [`max_depth`](Self::max_depth) replaced.
    pub fn with_max_depth(mut self, max_depth: usize) -> Self {
        self.max_depth = max_depth;
        self
    }

    /// This value with [`max_parameters`](Self::max_parameters) replaced.
    pub fn with_max_parameters(mut self, max_parameters: usize) -> Self {
        self.max_parameters = max_parameters;
        self
    }

    /// This value with [`max_resources`](Self::max_resources) replaced.
    pub fn with_max_resources(mut self, max_resources: usize) -> Self {
        self.max_resources = max_resources;
        self
    }

    /// This value with [`max_request_parameters`](Self::max_request_parameters) replaced.
    pub fn with_max_request_parameters(mut self, max_request_parameters: usize) -> Self {
        self.max_request_parameters = max_request_parameters;
        self
    }

    /// This value with [`max_parameter_name_len`](Self::max_parameter_name_len) replaced.
    pub fn with_max_parameter_name_len(mut self, max_parameter_name_len: usize) -> Self {
        self.max_parameter_name_len = max_parameter_name_len;
        self
    }

    /// This value with [`max_string_len`](Self::max_string_len) replaced.
    pub fn with_max_string_len(mut self, max_string_len: usize) -> Self {
        self.max_string_len = max_string_len;
        self
    }

    /// This value with [`max_list_len`](Self::max_list_len) replaced.
    pub fn with_max_list_len(mut self, max_list_len: usize) -> Self {
        self.max_list_len = max_list_len;
        self
    }

    /// This value with [`max_policy_document_len`](Self::max_policy_document_len) replaced.
    pub fn with_max_policy_document_len(mut self, max_policy_document_len: usize) -> Self {
        self.max_policy_document_len = max_policy_document_len;
        self
    }
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
            max_policy_document_len: 10_240,
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

/// What to do with a property of a resource that already exists (AWS `OverrideSettings`).
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
    /// Merge (thing attributes and groups only).
    Merge,
}

/// Override settings of a thing resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OverrideSettings {
    /// For `AttributePayload`.
    pub attributes: Override,
    /// For `ThingTypeName` (never `Merge`).
    pub thing_type: Override,
    /// For `ThingGroups`.
    pub thing_groups: Override,
}

/// Override settings of a certificate resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CertificateOverrideSettings {
    /// For `Status` (never `Merge`).
    pub status: Override,
}

/// A line and column in the template text (1-based; `0:0` for no position).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Pos {
    line: usize,
    column: usize,
}

/// A template expression with the position it was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Expr {
    pos: Pos,
    kind: ExprKind,
}

/// A literal, a list, or an intrinsic function call.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ExprKind {
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

/// What an expression produces, as far as the template alone tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Str,
    List,
    Either,
}

/// A `PolicyDocument` given as a JSON object: literal JSON with function calls inside.
#[derive(Clone, Debug, PartialEq, Eq)]
enum DocValue {
    Null,
    Bool(bool),
    Number(String),
    Str(String),
    Array(Vec<DocValue>),
    Object(Vec<(String, DocValue)>),
    Call(Box<Expr>),
}

/// A value of a mapping (`Mappings.Name.Key1.Key2`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum MapValue {
    Scalar(String),
    List(Vec<String>),
}

type Mappings = BTreeMap<String, BTreeMap<String, BTreeMap<String, MapValue>>>;

#[derive(Clone, Debug, PartialEq, Eq)]
struct ThingResource {
    path: String,
    name: Expr,
    thing_type: Option<Expr>,
    attributes: Vec<(String, Expr)>,
    groups: Option<Expr>,
    billing_group: Option<Expr>,
    overrides: OverrideSettings,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum CertSource {
    Id(Expr),
    Csr(Expr),
    Pem(Expr, Option<Expr>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct CertificateResource {
    path: String,
    source: CertSource,
    status: Option<Expr>,
    overrides: CertificateOverrideSettings,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PolicyKind {
    Name(Expr),
    Document(Expr),
    DocumentObject(DocValue),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PolicyResource {
    path: String,
    kind: PolicyKind,
}

/// A parsed and validated provisioning template.
///
/// Provisioning templates (the AWS IoT template language): parameters, mappings, resources,
/// device configuration, override settings and the intrinsic functions `Ref`, `Fn::Join`,
/// `Fn::Select`, `Fn::Split`, `Fn::FindInMap` and `Fn::Sub`.
///
/// A template is parsed and validated once ([`ProvisioningTemplate::parse`]) with the strict
/// JSON reader of `thingkit-json`: duplicate keys, unknown sections, resource types, properties
/// and functions, wrong arity, values of the wrong shape (a list where a string is needed, an
/// `Fn::Select` index outside its literal list, an `Fn::Join` of something that is not a list),
/// references to undeclared parameters or mappings, and a certificate resource without exactly
/// one source are errors ([`Error::Template`]) that name the JSON path *and* the line and column.
/// [`ProvisioningTemplate::render`] then resolves the parameters into a [`RenderedTemplate`]:
/// the thing, certificate and policies that applying it would create, with the override settings
/// that say what to do with resources that already exist. Applying it to a registry is done by
/// [`crate::fleet::apply`] (fleet provisioning and JITP) in one atomic batch.
///
/// ```
/// use std::collections::BTreeMap;
/// use thingkit_provision::{ProvisioningTemplate, RenderedPolicy, TemplateLimits};
///
/// let template = ProvisioningTemplate::parse(r#"{
///   "Parameters": {"SerialNumber": {"Type": "String"},
///                  "Site": {"Type": "String", "Default": "berlin"}},
///   "Resources": {
///     "thing": {"Type": "AWS::IoT::Thing", "Properties": {
///       "ThingName": {"Fn::Join": ["-", ["sensor", {"Ref": "SerialNumber"}]]},
///       "AttributePayload": {"site": {"Ref": "Site"}}}},
///     "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
///       "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"},
///       "OverrideSettings": {"Status": "DO_NOTHING"}},
///     "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyDocument": {
///       "Version": "2012-10-17",
///       "Statement": [{"Effect": "Allow", "Action": "iot:Publish",
///         "Resource": {"Fn::Sub": "arn:aws:iot:eu-central-1:123456789012:topic/d/${SerialNumber}"}}]}}}
///   }
/// }"#, &TemplateLimits::default())?;
/// let params = BTreeMap::from([("SerialNumber".to_string(), "42".to_string())]);
/// let pseudo = BTreeMap::from([("AWS::IoT::Certificate::Id".to_string(), "ab".repeat(32))]);
/// let rendered = template.render(&params, &pseudo)?;
/// assert_eq!(rendered.thing.as_ref().map(|t| t.name.as_str()), Some("sensor-42"));
/// assert_eq!(rendered.policies, [RenderedPolicy::PolicyDocument(
///     r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:eu-central-1:123456789012:topic/d/42"}]}"#.into())]);
/// # Ok::<(), thingkit_provision::Error>(())
/// ```
///
/// # Where literals and functions may appear
///
/// AWS documents the resource properties in the developer guide's *Provisioning templates* page
/// (section *Resources*). Each property takes a string, a list or an object as below; wherever
/// a string or a list is taken, an intrinsic function call that produces one may stand instead
/// (`Ref`, `Fn::Join`, `Fn::Select`, `Fn::Split`, `Fn::FindInMap`, `Fn::Sub` — the page's
/// *Intrinsic functions* section: "used in any section of the provisioning template except the
/// Mappings section"). A function call is an object with exactly one key, the function's name.
/// Numbers and booleans given where a string is taken are used as their JSON text.
///
/// | resource | property | takes | functions |
/// |---|---|---|---|
/// | `AWS::IoT::Thing` | `ThingName` (required) | string | yes, must produce a string |
/// | | `AttributePayload` | literal object of name → string | in each value, not for the object |
/// | | `ThingTypeName` | string | yes, string |
/// | | `ThingGroups` | literal list of strings, or a function producing a list (`Fn::Split`, `Ref` to a `CommaDelimitedList`, `Fn::FindInMap` of a list) | yes, in the list's items or for the whole list |
/// | | `BillingGroup` | string | yes, string (carried in the output; thingkit has no billing groups) |
/// | `AWS::IoT::Certificate` | `CertificateId` | string | yes, string |
/// | | `CertificateSigningRequest` | string (PEM) | yes, string |
/// | | `CertificatePem` | string (PEM) | yes, string |
/// | | `CACertificatePem` | string (PEM), only beside `CertificatePem` | yes, string |
/// | | `Status` | `ACTIVE` or `INACTIVE` (any case; the guide itself writes `Active`) | yes, string |
/// | `AWS::IoT::Policy` | `PolicyName` | string | yes, string |
/// | | `PolicyDocument` | a JSON **object** (the policy), or a **string** holding the policy's JSON text | object: function calls anywhere inside it are evaluated (a string result becomes a JSON string, a list a JSON array of strings), every other object and string is literal (policy variables such as `${iot:ClientId}` stay as they are); string: yes, a function producing the text, with parameter values JSON-escaped so they cannot add statements |
/// | `DeviceConfiguration` | each value | string (no nested objects, as the guide says) | yes, string |
///
/// Inside a policy object an object with one key is a function call only when that key is `Ref`
/// or starts with `Fn::` (so `{"StringEquals": {...}}` stays a condition). Either way the
/// rendered [`RenderedPolicy::PolicyDocument`] is the JSON text the registry stores.
///
/// Conditions (`Conditions`, `Fn::If`, `Fn::Equals`, ...) are CloudFormation features that the
/// provisioning-template pages do not list; they are refused as unknown functions.
///
/// # Override settings
///
/// `OverrideSettings` says what to do with a resource that already exists: `DO_NOTHING` (leave
/// it, the default when a setting is absent), `REPLACE` (replace it with the template's value),
/// `FAIL` (fail the whole request with a conflict, AWS `ResourceConflictsException`) or `MERGE`
/// (thing attributes and groups only: add the template's to the existing ones).
///
/// | resource | settings |
/// |---|---|
/// | `AWS::IoT::Thing` | `AttributePayload` (all four), `ThingTypeName` (`DO_NOTHING`, `REPLACE`, `FAIL`), `ThingGroups` (all four) |
/// | `AWS::IoT::Certificate` | `Status` (`DO_NOTHING`, `REPLACE`, `FAIL`) |
/// | `AWS::IoT::Policy` | none: "OverrideSettings are not available for policy resources" — refused |
///
/// A certificate being provisioned by the request itself — the one JITP registers
/// `PENDING_ACTIVATION` on first connection, or the one `CreateKeysAndCertificate` /
/// `CreateCertificateFromCsr` made for the ownership token, still `PENDING_ACTIVATION` — is new,
/// not existing: it gets the template's `Status` whatever `OverrideSettings` says. A certificate
/// that was registered before and left `PENDING_ACTIVATION` (a `CertificatePem` already in the
/// registry, or a token's certificate an operator changed meanwhile) exists, and its `Status`
/// setting decides.
///
/// # Sources, and where the AWS documents disagree
///
/// The behaviour follows the AWS IoT Core Developer Guide pages *Provisioning templates*
/// (`provision-template`), *Just-in-time provisioning* (`jit-provisioning`), *Provisioning
/// devices that don't have device certificates using fleet provisioning* (`provision-wo-cert`,
/// with its pre-provisioning hook template), *Bulk registration* (`bulk-provisioning`) and
/// *Device provisioning MQTT API* (`fleet-provision-api`), and the fleet provisioning samples of
/// the AWS IoT Device SDKs v2 (Python, Java, JavaScript, C++: one shared template). Every
/// template they print is a test fixture (`tests/aws/templates/`). Where they disagree:
///
/// - **`PolicyDocument`**: the *Resources* section says "A JSON object specified as an escaped
///   string" and the bulk-registration example repeats it, but the same page's fleet
///   provisioning example, the pre-provisioning hook example and all SDK samples give a JSON
///   object. Both are accepted.
/// - **`OverrideSettings` property names**: the text lists `ATTRIBUTE_PAYLOAD`,
///   `THING_TYPE_NAME` and `THING_GROUPS`, every example writes `AttributePayload`,
///   `ThingTypeName` and `ThingGroups`. Both spellings are accepted; giving both for one
///   property is refused as ambiguous.
/// - **Certificate `Status` override in JITP**: the JITP example sets `"Status": "ACTIVE"` with
///   `OverrideSettings` `{"Status": "DO_NOTHING"}`, while the page says JITP registers the
///   certificate `PENDING_ACTIVATION` and the flow ends by making it `ACTIVE`. Read literally,
///   `DO_NOTHING` would leave the device inactive; the reading chosen (above) is that the
///   certificate the request provisions is new, so the example activates it as the page says.
///   (The SDK samples write `{"Status": "REPLACE"}`, which gives the same result.)
/// - **`Status` case**: the text says `ACTIVE` or `INACTIVE`, the fleet example writes
///   `"Active"`. Accepted in any case.
/// - **`PolicyName` with `PolicyDocument`**: `PolicyName` "defaults to a hash of the policy
///   document" suggests both may be given, the note below it says "`PolicyName` or
///   `PolicyDocument`, but not both". The note is followed: exactly one; an inline document is
///   created under a name derived from its SHA-256 ([`crate::fleet::inline_policy_name`]).
/// - **Undeclared parameters**: the *Parameters* section "declares the parameters used in the
///   Resources section", but the pre-provisioning hook example (`provision-wo-cert`) uses
///   `{"Ref": "SerialNumber"}` without declaring it. A `Ref` to an undeclared parameter is
///   refused (with its line and column); pseudo-parameters (`AWS::...`) need no declaration.
/// - **`Fn::Select` out of range**: the guide says `Fn::Select` "does not check ... if the index
///   is out of bounds" and that this results "in a provisioning error". An index outside a
///   literal list, a negative or a non-numeric literal index can never succeed, so they are
///   refused when the template is parsed; other indexes are checked when rendering.
/// - **`BillingGroup`**: listed for things and used in the fleet examples, absent from other
///   property lists. Accepted and carried in [`RenderedThing::billing_group`]; thingkit's
///   registry has no billing groups, so applying a template does nothing with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvisioningTemplate {
    parameters: BTreeMap<String, Parameter>,
    mappings: Mappings,
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
    /// The AWS billing group (`BillingGroup`). thingkit has no billing groups: applying the
    /// template ignores it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing_group: Option<String>,
    /// What to do if the thing already exists.
    pub override_settings: OverrideSettings,
}

/// The certificate a rendered template registers or activates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenderedCertificate {
    /// Its source.
    pub source: CertificateSource,
    /// The PEM of the CA that signed a `CertificatePem` source (`CACertificatePem`): the
    /// certificate must chain to exactly this registered CA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_certificate_pem: Option<String>,
    /// The status to give it (default ACTIVE).
    pub status: CertificateStatus,
    /// What to do with the status if the certificate already exists.
    pub override_settings: CertificateOverrideSettings,
}

/// A policy a rendered template attaches to the certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RenderedPolicy {
    /// An existing policy, by name.
    PolicyName(String),
    /// An inline document (JSON text), created (under a name derived from its SHA-256) if it
    /// does not exist yet. A `PolicyDocument` object is rendered as compact JSON text in the
    /// template's key order.
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

fn terr(path: &str, pos: Pos, reason: impl Into<String>) -> Error {
    Error::Template {
        path: path.to_owned(),
        line: pos.line,
        column: pos.column,
        reason: reason.into(),
    }
}

/// Positions in the template text.
struct Source<'t> {
    text: &'t str,
    lines: LineIndex,
}

impl Source<'_> {
    fn pos(&self, offset: usize) -> Pos {
        let (line, column) = self.lines.line_col(self.text, offset);
        Pos { line, column }
    }

    fn err(&self, path: &str, offset: usize, reason: impl Into<String>) -> Error {
        terr(path, self.pos(offset), reason)
    }

    fn object<'a, 'n>(&self, node: &'a Node<'n>, path: &str) -> Result<&'a [Member<'n>]> {
        match &node.kind {
            Kind::Object(members) => Ok(members),
            other => Err(self.err(
                path,
                node.offset,
                format!("expected a JSON object, found {}", other.type_name()),
            )),
        }
    }

    fn check_keys(&self, members: &[Member<'_>], allowed: &[&str], path: &str) -> Result<()> {
        for m in members {
            if !allowed.contains(&&*m.key) {
                return Err(self.err(
                    &format!("{path}.{}", m.key),
                    m.key_offset,
                    format!("unknown key (allowed: {})", allowed.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

fn get<'a, 'n>(members: &'a [Member<'n>], key: &str) -> Option<&'a Node<'n>> {
    members.iter().find(|m| m.key == key).map(|m| &m.value)
}

fn scalar_string(kind: &Kind<'_>) -> Option<String> {
    match kind {
        Kind::String(s) => Some(s.to_string()),
        Kind::Number(n) => Some((*n).to_owned()),
        Kind::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn is_function_name(key: &str) -> bool {
    key == "Ref" || key.starts_with("Fn::")
}

/// The JSON path of the object member whose key starts at `offset`, if any.
fn path_to_key(node: &Node<'_>, offset: usize, path: &str) -> Option<String> {
    match &node.kind {
        Kind::Object(members) => members.iter().find_map(|m| {
            let p = if path.is_empty() {
                m.key.to_string()
            } else {
                format!("{path}.{}", m.key)
            };
            if m.key_offset == offset {
                Some(p)
            } else {
                path_to_key(&m.value, offset, &p)
            }
        }),
        Kind::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| path_to_key(x, offset, &format!("{path}[{i}]"))),
        _ => None,
    }
}

struct Parser<'s, 't> {
    src: &'s Source<'t>,
    parameters: &'s BTreeMap<String, Parameter>,
    mappings: &'s Mappings,
}

impl Parser<'_, '_> {
    fn expr(&self, node: &Node<'_>, path: &str) -> Result<Expr> {
        let pos = self.src.pos(node.offset);
        let kind = match &node.kind {
            Kind::Null => return Err(terr(path, pos, "null is not a value")),
            Kind::Array(items) => {
                let mut list = Vec::with_capacity(items.len());
                for (i, x) in items.iter().enumerate() {
                    let ipath = format!("{path}[{i}]");
                    let e = self.expr(x, &ipath)?;
                    self.want_str(&e, &ipath, "a list item")?;
                    list.push(e);
                }
                ExprKind::List(list)
            }
            Kind::Object(members) => {
                let [m] = members.as_slice() else {
                    return Err(terr(
                        path,
                        pos,
                        format!(
                            "expected a string, a list or an intrinsic function call; a \
                             function call is an object with exactly one key (Ref, Fn::Join, \
                             Fn::Select, Fn::Split, Fn::FindInMap, Fn::Sub), found {} keys",
                            members.len()
                        ),
                    ));
                };
                let fpath = format!("{path}.{}", m.key);
                return self.function(&m.key, &m.value, &fpath, self.src.pos(m.key_offset));
            }
            other => ExprKind::Lit(scalar_string(other).unwrap_or_default()),
        };
        Ok(Expr { pos, kind })
    }

    /// What `e` produces, as far as the template tells.
    fn shape(&self, e: &Expr) -> Shape {
        match &e.kind {
            ExprKind::Lit(_) | ExprKind::Join(..) | ExprKind::Select(..) | ExprKind::Sub(..) => {
                Shape::Str
            }
            ExprKind::List(_) | ExprKind::Split(..) => Shape::List,
            ExprKind::Ref(name) => match self.parameters.get(name) {
                Some(p) if p.ty == ParameterType::CommaDelimitedList => Shape::List,
                _ => Shape::Str,
            },
            ExprKind::FindInMap(args) => {
                let [m, k1, k2] = &**args;
                match (&m.kind, &k1.kind, &k2.kind) {
                    (ExprKind::Lit(m), ExprKind::Lit(k1), ExprKind::Lit(k2)) => {
                        match self.mappings.get(m).and_then(|x| x.get(k1)?.get(k2)) {
                            Some(MapValue::Scalar(_)) => Shape::Str,
                            Some(MapValue::List(_)) => Shape::List,
                            None => Shape::Either,
                        }
                    }
                    _ => Shape::Either,
                }
            }
        }
    }

    fn want_str(&self, e: &Expr, path: &str, what: &str) -> Result<()> {
        if self.shape(e) == Shape::List {
            return Err(terr(
                path,
                e.pos,
                format!("{what} is a string, found a list"),
            ));
        }
        Ok(())
    }

    fn want_list(&self, e: &Expr, path: &str, what: &str) -> Result<()> {
        if self.shape(e) == Shape::Str {
            return Err(terr(
                path,
                e.pos,
                format!(
                    "{what} is a list (a JSON array, or Fn::Split, Fn::FindInMap of a list, \
                     or a Ref to a CommaDelimitedList parameter), found a string"
                ),
            ));
        }
        Ok(())
    }

    fn args<'a, 'n>(
        &self,
        arg: &'a Node<'n>,
        n: usize,
        path: &str,
        name: &str,
    ) -> Result<&'a [Node<'n>]> {
        match &arg.kind {
            Kind::Array(a) if a.len() == n => Ok(a),
            Kind::Array(a) => Err(self.src.err(
                path,
                arg.offset,
                format!("{name} takes {n} arguments, found {}", a.len()),
            )),
            _ => Err(self.src.err(
                path,
                arg.offset,
                format!("{name} takes a list of {n} arguments"),
            )),
        }
    }

    fn arg(&self, args: &[Node<'_>], i: usize, path: &str) -> Result<Expr> {
        match args.get(i) {
            Some(v) => self.expr(v, &format!("{path}[{i}]")),
            None => Err(terr(
                path,
                Pos::default(),
                format!("argument {i} is missing"),
            )),
        }
    }

    fn check_ref(&self, name: &str, path: &str, pos: Pos) -> Result<()> {
        if self.parameters.contains_key(name) || name.starts_with(PSEUDO_PREFIX) {
            Ok(())
        } else {
            Err(terr(
                path,
                pos,
                format!(
                    "Ref to undeclared parameter {name:?} (declare it in the Parameters section)"
                ),
            ))
        }
    }

    fn function(&self, name: &str, arg: &Node<'_>, path: &str, pos: Pos) -> Result<Expr> {
        let kind = match name {
            "Ref" => {
                let Kind::String(target) = &arg.kind else {
                    return Err(self.src.err(
                        path,
                        arg.offset,
                        "Ref takes a parameter name (a string)",
                    ));
                };
                self.check_ref(target, path, self.src.pos(arg.offset))?;
                ExprKind::Ref(target.to_string())
            }
            "Fn::Join" => {
                let a = self.args(arg, 2, path, name)?;
                let delim = self.arg(a, 0, path)?;
                let items = self.arg(a, 1, path)?;
                self.want_str(&delim, &format!("{path}[0]"), "Fn::Join's delimiter")?;
                self.want_list(&items, &format!("{path}[1]"), "Fn::Join's second argument")?;
                ExprKind::Join(Box::new(delim), Box::new(items))
            }
            "Fn::Select" => {
                let a = self.args(arg, 2, path, name)?;
                let index = self.arg(a, 0, path)?;
                let items = self.arg(a, 1, path)?;
                let ipath = format!("{path}[0]");
                self.want_str(&index, &ipath, "Fn::Select's index")?;
                self.want_list(
                    &items,
                    &format!("{path}[1]"),
                    "Fn::Select's second argument",
                )?;
                if let ExprKind::Lit(text) = &index.kind {
                    let i = parse_index(text).map_err(|reason| terr(&ipath, index.pos, reason))?;
                    if let ExprKind::List(list) = &items.kind
                        && i >= list.len()
                    {
                        return Err(terr(
                            &ipath,
                            index.pos,
                            format!(
                                "Fn::Select index {i} is past the end of its list of {}",
                                list.len()
                            ),
                        ));
                    }
                }
                ExprKind::Select(Box::new(index), Box::new(items))
            }
            "Fn::Split" => {
                let a = self.args(arg, 2, path, name)?;
                let delim = self.arg(a, 0, path)?;
                let text = self.arg(a, 1, path)?;
                self.want_str(&delim, &format!("{path}[0]"), "Fn::Split's delimiter")?;
                if let ExprKind::Lit(d) = &delim.kind
                    && d.is_empty()
                {
                    return Err(terr(
                        &format!("{path}[0]"),
                        delim.pos,
                        "Fn::Split delimiter is empty",
                    ));
                }
                self.want_str(&text, &format!("{path}[1]"), "Fn::Split's second argument")?;
                ExprKind::Split(Box::new(delim), Box::new(text))
            }
            "Fn::FindInMap" => {
                let a = self.args(arg, 3, path, name)?;
                let args = [
                    self.arg(a, 0, path)?,
                    self.arg(a, 1, path)?,
                    self.arg(a, 2, path)?,
                ];
                for (i, e) in args.iter().enumerate() {
                    self.want_str(e, &format!("{path}[{i}]"), "an Fn::FindInMap key")?;
                }
                let [m, k1, k2] = &args;
                if let ExprKind::Lit(map) = &m.kind {
                    let Some(level1) = self.mappings.get(map) else {
                        return Err(terr(
                            &format!("{path}[0]"),
                            m.pos,
                            format!("unknown mapping {map:?}"),
                        ));
                    };
                    if let (ExprKind::Lit(k1v), ExprKind::Lit(k2v)) = (&k1.kind, &k2.kind) {
                        match level1.get(k1v) {
                            None => {
                                return Err(terr(
                                    &format!("{path}[1]"),
                                    k1.pos,
                                    format!("mapping {map:?} has no key {k1v:?}"),
                                ));
                            }
                            Some(level2) if !level2.contains_key(k2v) => {
                                return Err(terr(
                                    &format!("{path}[2]"),
                                    k2.pos,
                                    format!("mapping {map:?}.{k1v:?} has no key {k2v:?}"),
                                ));
                            }
                            Some(_) => {}
                        }
                    }
                }
                ExprKind::FindInMap(Box::new(args))
            }
            "Fn::Sub" => {
                let (text, text_offset, vars) = match &arg.kind {
                    Kind::String(s) => (s, arg.offset, None),
                    Kind::Array(a) if a.len() == 2 => {
                        let (Some(first), Some(second)) = (a.first(), a.get(1)) else {
                            return Err(self.src.err(
                                path,
                                arg.offset,
                                "Fn::Sub takes 2 arguments",
                            ));
                        };
                        let Kind::String(text) = &first.kind else {
                            return Err(self.src.err(
                                &format!("{path}[0]"),
                                first.offset,
                                "Fn::Sub's first argument is a string",
                            ));
                        };
                        let Kind::Object(vars) = &second.kind else {
                            return Err(self.src.err(
                                &format!("{path}[1]"),
                                second.offset,
                                "Fn::Sub's second argument is an object",
                            ));
                        };
                        (text, first.offset, Some(vars))
                    }
                    _ => {
                        return Err(self.src.err(
                            path,
                            arg.offset,
                            "Fn::Sub takes a string, or a list of a string and an object",
                        ));
                    }
                };
                let mut bound = BTreeMap::new();
                for m in vars.into_iter().flatten() {
                    let vpath = format!("{path}[1].{}", m.key);
                    let e = self.expr(&m.value, &vpath)?;
                    self.want_str(&e, &vpath, "an Fn::Sub variable")?;
                    bound.insert(m.key.to_string(), e);
                }
                let text_pos = self.src.pos(text_offset);
                let parts = parse_sub(text).map_err(|reason| terr(path, text_pos, reason))?;
                for part in &parts {
                    if let SubPart::Var(v) = part
                        && !bound.contains_key(v)
                    {
                        self.check_ref(v, path, text_pos)?;
                        if self
                            .parameters
                            .get(v)
                            .is_some_and(|p| p.ty == ParameterType::CommaDelimitedList)
                        {
                            return Err(terr(
                                path,
                                text_pos,
                                format!(
                                    "Fn::Sub variable {v:?} is a CommaDelimitedList, not a string"
                                ),
                            ));
                        }
                    }
                }
                ExprKind::Sub(parts, bound)
            }
            other => {
                return Err(terr(
                    path,
                    pos,
                    format!(
                        "unknown function {other:?} (provisioning templates have Ref, Fn::Join, \
                         Fn::Select, Fn::Split, Fn::FindInMap and Fn::Sub)"
                    ),
                ));
            }
        };
        Ok(Expr { pos, kind })
    }

    /// A `PolicyDocument` object: literal JSON, with function calls evaluated.
    fn doc(&self, node: &Node<'_>, path: &str) -> Result<DocValue> {
        Ok(match &node.kind {
            Kind::Null => DocValue::Null,
            Kind::Bool(b) => DocValue::Bool(*b),
            Kind::Number(n) => DocValue::Number((*n).to_owned()),
            Kind::String(s) => DocValue::Str(s.to_string()),
            Kind::Array(items) => DocValue::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| self.doc(x, &format!("{path}[{i}]")))
                    .collect::<Result<_>>()?,
            ),
            Kind::Object(members) => match members.as_slice() {
                [m] if is_function_name(&m.key) => {
                    let fpath = format!("{path}.{}", m.key);
                    let e = self.function(&m.key, &m.value, &fpath, self.src.pos(m.key_offset))?;
                    DocValue::Call(Box::new(e))
                }
                _ => DocValue::Object(
                    members
                        .iter()
                        .map(|m| {
                            let v = self.doc(&m.value, &format!("{path}.{}", m.key))?;
                            Ok((m.key.to_string(), v))
                        })
                        .collect::<Result<_>>()?,
                ),
            },
        })
    }

    /// A property that must produce a string.
    fn string_prop(&self, props: &[Member<'_>], key: &str, path: &str) -> Result<Option<Expr>> {
        let Some(node) = get(props, key) else {
            return Ok(None);
        };
        let ppath = format!("{path}.{key}");
        let e = self.expr(node, &ppath)?;
        self.want_str(&e, &ppath, key)?;
        Ok(Some(e))
    }
}

fn parse_index(text: &str) -> std::result::Result<usize, String> {
    let t = text.trim();
    if t.starts_with('-') && t.get(1..).is_some_and(|d| d.parse::<u64>().is_ok()) {
        return Err(format!("Fn::Select index {text:?} is negative"));
    }
    t.parse::<usize>()
        .map_err(|_| format!("Fn::Select index {text:?} is not a whole number"))
}

fn parse_sub(text: &str) -> std::result::Result<Vec<SubPart>, String> {
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
            .ok_or_else(|| "unterminated ${ in Fn::Sub".to_owned())?;
        let var = after.get(..end).unwrap_or_default();
        if var.is_empty() {
            return Err("empty ${} in Fn::Sub".to_owned());
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
    /// Rendering a `PolicyDocument` string: parameter values are JSON-string-escaped so that a
    /// device cannot inject statements into a policy through a parameter.
    escape_json: bool,
}

fn json_escaped(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_owned()).to_string();
    quoted
        .get(1..quoted.len().saturating_sub(1))
        .unwrap_or_default()
        .to_owned()
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    out.push_str(&json_escaped(s));
    out.push('"');
}

impl Renderer<'_> {
    fn check_str(&self, s: String, path: &str, pos: Pos) -> Result<String> {
        let limit = self.template.limits.max_string_len;
        if s.len() > limit {
            return Err(terr(
                path,
                pos,
                format!("produces a string of {} bytes, more than {limit}", s.len()),
            ));
        }
        Ok(s)
    }

    fn check_list(&self, l: Vec<String>, path: &str, pos: Pos) -> Result<Vec<String>> {
        let limit = self.template.limits.max_list_len;
        if l.len() > limit {
            return Err(terr(
                path,
                pos,
                format!("produces a list of {} items, more than {limit}", l.len()),
            ));
        }
        Ok(l)
    }

    fn lookup(&self, name: &str, path: &str, pos: Pos) -> Result<Val> {
        let v = self.lookup_raw(name, path, pos)?;
        if !self.escape_json {
            return Ok(v);
        }
        Ok(match v {
            Val::Str(s) => Val::Str(json_escaped(&s)),
            Val::List(l) => Val::List(l.iter().map(|s| json_escaped(s)).collect()),
        })
    }

    fn lookup_raw(&self, name: &str, path: &str, pos: Pos) -> Result<Val> {
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
        Err(terr(
            path,
            pos,
            format!("Ref to undeclared parameter {name:?}"),
        ))
    }

    fn string(&self, e: &Expr, path: &str) -> Result<String> {
        match self.eval(e, path)? {
            Val::Str(s) => Ok(s),
            Val::List(_) => Err(terr(path, e.pos, "expected a string, found a list")),
        }
    }

    fn list(&self, e: &Expr, path: &str) -> Result<Vec<String>> {
        match self.eval(e, path)? {
            Val::List(l) => Ok(l),
            Val::Str(_) => Err(terr(path, e.pos, "expected a list, found a string")),
        }
    }

    fn eval(&self, e: &Expr, path: &str) -> Result<Val> {
        let pos = e.pos;
        Ok(match &e.kind {
            ExprKind::Lit(s) => Val::Str(s.clone()),
            ExprKind::List(items) => Val::List(
                self.check_list(
                    items
                        .iter()
                        .map(|x| self.string(x, path))
                        .collect::<Result<_>>()?,
                    path,
                    pos,
                )?,
            ),
            ExprKind::Ref(name) => self.lookup(name, path, pos)?,
            ExprKind::Join(delim, items) => {
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
                    return Err(terr(path, pos, "Fn::Join produces a string over the limit"));
                }
                Val::Str(self.check_str(items.join(&delim), path, pos)?)
            }
            ExprKind::Select(index, items) => {
                let index_text = self.string(index, path)?;
                let i = parse_index(&index_text).map_err(|reason| terr(path, index.pos, reason))?;
                let items = self.list(items, path)?;
                let len = items.len();
                Val::Str(items.into_iter().nth(i).ok_or_else(|| {
                    terr(
                        path,
                        pos,
                        format!("Fn::Select index {i} is out of range (list of {len})"),
                    )
                })?)
            }
            ExprKind::Split(delim, text) => {
                let delim = self.string(delim, path)?;
                if delim.is_empty() {
                    return Err(terr(path, pos, "Fn::Split delimiter is empty"));
                }
                let text = self.string(text, path)?;
                let limit = self.template.limits.max_list_len;
                let parts: Vec<String> = text
                    .split(delim.as_str())
                    .take(limit.saturating_add(1))
                    .map(str::to_owned)
                    .collect();
                Val::List(self.check_list(parts, path, pos)?)
            }
            ExprKind::FindInMap(args) => {
                let [m, k1, k2] = &**args;
                let m = self.string(m, path)?;
                let k1 = self.string(k1, path)?;
                let k2 = self.string(k2, path)?;
                let v = self
                    .template
                    .mappings
                    .get(&m)
                    .ok_or_else(|| terr(path, pos, format!("unknown mapping {m:?}")))?
                    .get(&k1)
                    .ok_or_else(|| terr(path, pos, format!("mapping {m:?} has no key {k1:?}")))?
                    .get(&k2)
                    .ok_or_else(|| {
                        terr(path, pos, format!("mapping {m:?}.{k1:?} has no key {k2:?}"))
                    })?;
                match v {
                    MapValue::Scalar(s) => Val::Str(s.clone()),
                    MapValue::List(l) => Val::List(l.clone()),
                }
            }
            ExprKind::Sub(parts, bound) => {
                let mut out = String::new();
                for part in parts {
                    match part {
                        SubPart::Text(t) => out.push_str(t),
                        SubPart::Var(v) => {
                            let value = match bound.get(v) {
                                Some(e) => self.string(e, path)?,
                                None => match self.lookup(v, path, pos)? {
                                    Val::Str(s) => s,
                                    Val::List(_) => {
                                        return Err(terr(
                                            path,
                                            pos,
                                            format!("Fn::Sub variable {v:?} is a list"),
                                        ));
                                    }
                                },
                            };
                            out.push_str(&value);
                        }
                    }
                    if out.len() > self.template.limits.max_string_len {
                        return Err(terr(path, pos, "Fn::Sub produces a string over the limit"));
                    }
                }
                Val::Str(out)
            }
        })
    }

    /// Writes a `PolicyDocument` object as compact JSON text.
    fn write_doc(&self, d: &DocValue, path: &str, out: &mut String) -> Result<()> {
        match d {
            DocValue::Null => out.push_str("null"),
            DocValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            DocValue::Number(n) => out.push_str(n),
            DocValue::Str(s) => push_json_string(out, s),
            DocValue::Array(items) => {
                out.push('[');
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.write_doc(x, path, out)?;
                }
                out.push(']');
            }
            DocValue::Object(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_json_string(out, k);
                    out.push(':');
                    self.write_doc(v, path, out)?;
                }
                out.push('}');
            }
            DocValue::Call(e) => match self.eval(e, path)? {
                Val::Str(s) => push_json_string(out, &s),
                Val::List(l) => {
                    out.push('[');
                    for (i, s) in l.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        push_json_string(out, s);
                    }
                    out.push(']');
                }
            },
        }
        let limit = self.template.limits.max_policy_document_len;
        if out.len() > limit {
            return Err(terr(
                path,
                Pos::default(),
                format!("the rendered policy document is longer than {limit} bytes"),
            ));
        }
        Ok(())
    }
}

fn parse_override(
    src: &Source<'_>,
    o: &[Member<'_>],
    names: &[&str],
    path: &str,
    merge_ok: bool,
) -> Result<Override> {
    let mut found: Option<&Member<'_>> = None;
    for m in o.iter().filter(|m| names.contains(&&*m.key)) {
        if let Some(first) = found {
            return Err(src.err(
                &format!("{path}.{}", m.key),
                m.key_offset,
                format!(
                    "{} and {} are two spellings of the same setting; give one",
                    first.key, m.key
                ),
            ));
        }
        found = Some(m);
    }
    let Some(m) = found else {
        return Ok(Override::DoNothing);
    };
    let mpath = format!("{path}.{}", m.key);
    let value = match &m.value.kind {
        Kind::String(s) => &**s,
        _ => "",
    };
    match value {
        "DO_NOTHING" => Ok(Override::DoNothing),
        "REPLACE" => Ok(Override::Replace),
        "FAIL" => Ok(Override::Fail),
        "MERGE" if merge_ok => Ok(Override::Merge),
        _ => Err(src.err(
            &mpath,
            m.value.offset,
            if merge_ok {
                "override must be DO_NOTHING, REPLACE, FAIL or MERGE"
            } else {
                "override must be DO_NOTHING, REPLACE or FAIL (MERGE applies to a thing's \
                 AttributePayload and ThingGroups only)"
            },
        )),
    }
}

const THING_OVERRIDES: [(&str, &str); 3] = [
    ("AttributePayload", "ATTRIBUTE_PAYLOAD"),
    ("ThingTypeName", "THING_TYPE_NAME"),
    ("ThingGroups", "THING_GROUPS"),
];

impl ProvisioningTemplate {
    /// Parses and validates a template body (JSON text). Errors are [`Error::Template`] with the
    /// JSON path, line and column of the offending element, [`Error::TooLarge`] or
    /// [`Error::LimitExceeded`].
    pub fn parse(text: &str, limits: &TemplateLimits) -> Result<Self> {
        if text.len() > limits.max_template_len {
            return Err(Error::TooLarge {
                what: "provisioning template",
                actual: text.len(),
                limit: limits.max_template_len,
            });
        }
        let src = Source {
            text,
            lines: LineIndex::new(text),
        };
        let parsed = json::parse(
            text,
            json::Limits::default()
                .with_max_depth(limits.max_depth)
                .with_max_values(limits.max_template_len.saturating_add(1)),
        )
        .map_err(|e| {
            let reason = match e.limit {
                Some(("max_depth", limit)) => format!("nesting deeper than the limit of {limit}"),
                _ => format!("not JSON: {}", e.message),
            };
            src.err("$", e.offset, reason)
        })?;
        if let Some(d) = parsed.duplicates.first() {
            let (line, column) = src.lines.line_col(text, d.first_offset);
            let path = path_to_key(&parsed.root, d.offset, "").unwrap_or_else(|| "$".into());
            return Err(src.err(
                &path,
                d.offset,
                format!(
                    "duplicate key {:?} (first at {line}:{column}); a JSON reader would keep \
                     only one of them, so the template is ambiguous",
                    d.key
                ),
            ));
        }
        let top = src.object(&parsed.root, "$")?;
        src.check_keys(
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

        let parameters = parse_parameters(&src, top, limits)?;
        let mappings = parse_mappings(&src, top)?;
        let parser = Parser {
            src: &src,
            parameters: &parameters,
            mappings: &mappings,
        };
        let mut thing = None;
        let mut certificate = None;
        let mut policies = Vec::new();
        let resources_node = get(top, "Resources")
            .ok_or_else(|| src.err("$", 0, "the Resources section is missing"))?;
        let resources = src.object(resources_node, "Resources")?;
        if resources.len() > limits.max_resources {
            return Err(Error::LimitExceeded {
                what: "template resources",
                limit: limits.max_resources,
            });
        }
        for resource in resources {
            let path = format!("Resources.{}", resource.key);
            let res = src.object(&resource.value, &path)?;
            src.check_keys(res, &["Type", "Properties", "OverrideSettings"], &path)?;
            let props_path = format!("{path}.Properties");
            let props: &[Member<'_>] = match get(res, "Properties") {
                Some(p) => src.object(p, &props_path)?,
                None => &[],
            };
            let overrides = match get(res, "OverrideSettings") {
                Some(o) => Some(src.object(o, &format!("{path}.OverrideSettings"))?),
                None => None,
            };
            let opath = format!("{path}.OverrideSettings");
            let ty = match get(res, "Type") {
                None => {
                    return Err(src.err(
                        &path,
                        resource.value.offset,
                        format!(
                            "the resource has no Type (one of {})",
                            RESOURCE_TYPES.join(", ")
                        ),
                    ));
                }
                Some(Node {
                    kind: Kind::String(s),
                    offset,
                }) => (&**s, *offset),
                Some(other) => {
                    return Err(src.err(
                        &format!("{path}.Type"),
                        other.offset,
                        format!("Type is a string, found {}", other.kind.type_name()),
                    ));
                }
            };
            match ty.0 {
                "AWS::IoT::Thing" => {
                    src.check_keys(
                        props,
                        &[
                            "ThingName",
                            "ThingTypeName",
                            "ThingGroups",
                            "AttributePayload",
                            "BillingGroup",
                        ],
                        &props_path,
                    )?;
                    if thing.is_some() {
                        return Err(src.err(
                            &path,
                            resource.key_offset,
                            "a template may declare one AWS::IoT::Thing",
                        ));
                    }
                    let name = parser
                        .string_prop(props, "ThingName", &props_path)?
                        .ok_or_else(|| {
                            src.err(
                                &props_path,
                                resource.value.offset,
                                "AWS::IoT::Thing needs a ThingName",
                            )
                        })?;
                    let mut attributes = Vec::new();
                    if let Some(a) = get(props, "AttributePayload") {
                        let apath = format!("{props_path}.AttributePayload");
                        for m in src.object(a, &apath)? {
                            let kpath = format!("{apath}.{}", m.key);
                            let e = parser.expr(&m.value, &kpath)?;
                            parser.want_str(&e, &kpath, "an attribute value")?;
                            attributes.push((m.key.to_string(), e));
                        }
                    }
                    let groups = match get(props, "ThingGroups") {
                        None => None,
                        Some(g) => {
                            let gpath = format!("{props_path}.ThingGroups");
                            let e = parser.expr(g, &gpath)?;
                            parser.want_list(&e, &gpath, "ThingGroups")?;
                            Some(e)
                        }
                    };
                    let overrides = match overrides {
                        None => OverrideSettings::default(),
                        Some(o) => {
                            let allowed: Vec<&str> =
                                THING_OVERRIDES.iter().flat_map(|(a, b)| [*a, *b]).collect();
                            src.check_keys(o, &allowed, &opath)?;
                            let [a, t, g] = THING_OVERRIDES;
                            OverrideSettings {
                                attributes: parse_override(&src, o, &[a.0, a.1], &opath, true)?,
                                thing_type: parse_override(&src, o, &[t.0, t.1], &opath, false)?,
                                thing_groups: parse_override(&src, o, &[g.0, g.1], &opath, true)?,
                            }
                        }
                    };
                    thing = Some(ThingResource {
                        name,
                        thing_type: parser.string_prop(props, "ThingTypeName", &props_path)?,
                        attributes,
                        groups,
                        billing_group: parser.string_prop(props, "BillingGroup", &props_path)?,
                        overrides,
                        path: path.clone(),
                    });
                }
                "AWS::IoT::Certificate" => {
                    src.check_keys(
                        props,
                        &[
                            "CertificateId",
                            "CertificateSigningRequest",
                            "CertificatePem",
                            "CACertificatePem",
                            "Status",
                        ],
                        &props_path,
                    )?;
                    if certificate.is_some() {
                        return Err(src.err(
                            &path,
                            resource.key_offset,
                            "a template may declare one AWS::IoT::Certificate",
                        ));
                    }
                    let id = parser.string_prop(props, "CertificateId", &props_path)?;
                    let csr =
                        parser.string_prop(props, "CertificateSigningRequest", &props_path)?;
                    let pem = parser.string_prop(props, "CertificatePem", &props_path)?;
                    let ca = parser.string_prop(props, "CACertificatePem", &props_path)?;
                    let source = match (id, csr, pem) {
                        (Some(e), None, None) => CertSource::Id(e),
                        (None, Some(e), None) => CertSource::Csr(e),
                        (None, None, Some(e)) => CertSource::Pem(e, ca.clone()),
                        (id, csr, pem) => {
                            let n = [id.is_some(), csr.is_some(), pem.is_some()]
                                .iter()
                                .filter(|x| **x)
                                .count();
                            return Err(src.err(
                                &props_path,
                                resource.value.offset,
                                format!(
                                    "exactly one of CertificateId, CertificateSigningRequest and \
                                     CertificatePem is required, found {n}"
                                ),
                            ));
                        }
                    };
                    if let (Some(ca), false) = (&ca, matches!(source, CertSource::Pem(..))) {
                        return Err(terr(
                            &format!("{props_path}.CACertificatePem"),
                            ca.pos,
                            "CACertificatePem names the CA of a CertificatePem and goes only \
                             with CertificatePem",
                        ));
                    }
                    let status = parser.string_prop(props, "Status", &props_path)?;
                    if let Some(Expr {
                        kind: ExprKind::Lit(s),
                        pos,
                    }) = &status
                    {
                        parse_status(s, &format!("{props_path}.Status"), *pos)?;
                    }
                    let overrides = match overrides {
                        None => CertificateOverrideSettings::default(),
                        Some(o) => {
                            src.check_keys(o, &["Status"], &opath)?;
                            CertificateOverrideSettings {
                                status: parse_override(&src, o, &["Status"], &opath, false)?,
                            }
                        }
                    };
                    certificate = Some(CertificateResource {
                        path: path.clone(),
                        source,
                        status,
                        overrides,
                    });
                }
                "AWS::IoT::Policy" => {
                    src.check_keys(props, &["PolicyName", "PolicyDocument"], &props_path)?;
                    if let Some(o) = get(res, "OverrideSettings") {
                        return Err(src.err(
                            &opath,
                            o.offset,
                            "OverrideSettings are not available for policy resources (AWS IoT \
                             Developer Guide, Provisioning templates)",
                        ));
                    }
                    let name = parser.string_prop(props, "PolicyName", &props_path)?;
                    let dpath = format!("{props_path}.PolicyDocument");
                    let document = match get(props, "PolicyDocument") {
                        None => None,
                        Some(node) => Some(match &node.kind {
                            Kind::Object(members) if !matches!(members.as_slice(), [m] if is_function_name(&m.key)) => {
                                PolicyKind::DocumentObject(parser.doc(node, &dpath)?)
                            }
                            _ => {
                                let e = parser.expr(node, &dpath)?;
                                parser.want_str(&e, &dpath, "PolicyDocument")?;
                                PolicyKind::Document(e)
                            }
                        }),
                    };
                    let kind = match (name, document) {
                        (Some(n), None) => PolicyKind::Name(n),
                        (None, Some(d)) => d,
                        _ => {
                            return Err(src.err(
                                &props_path,
                                resource.value.offset,
                                "exactly one of PolicyName and PolicyDocument is required",
                            ));
                        }
                    };
                    policies.push(PolicyResource {
                        path: path.clone(),
                        kind,
                    });
                }
                other => {
                    return Err(src.err(
                        &format!("{path}.Type"),
                        ty.1,
                        format!(
                            "resource type {other:?} is not supported in a provisioning template \
                             (the types are {})",
                            RESOURCE_TYPES.join(", ")
                        ),
                    ));
                }
            }
        }
        if !policies.is_empty() && certificate.is_none() {
            return Err(src.err(
                "Resources",
                resources_node.offset,
                "a policy needs an AWS::IoT::Certificate to attach to",
            ));
        }

        let mut device_configuration = BTreeMap::new();
        if let Some(dc) = get(top, "DeviceConfiguration") {
            for m in src.object(dc, "DeviceConfiguration")? {
                let kpath = format!("DeviceConfiguration.{}", m.key);
                let e = parser.expr(&m.value, &kpath)?;
                parser.want_str(&e, &kpath, "a DeviceConfiguration value")?;
                device_configuration.insert(m.key.to_string(), e);
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
        let none = Pos::default();
        let mut values = BTreeMap::new();
        for (name, value) in parameters {
            let path = format!("parameters.{}", name.chars().take(64).collect::<String>());
            if name.len() > limits.max_parameter_name_len || value.len() > limits.max_string_len {
                return Err(terr(&path, none, "parameter name or value is too long"));
            }
            if name.starts_with(PSEUDO_PREFIX) {
                return Err(terr(
                    &path,
                    none,
                    "pseudo-parameters are set by the service",
                ));
            }
            let decl = self
                .parameters
                .get(name)
                .ok_or_else(|| terr(&path, none, "the template declares no such parameter"))?;
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
                let p = format!("{}.Properties", t.path);
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
                    billing_group: t
                        .billing_group
                        .as_ref()
                        .map(|e| r.string(e, &format!("{p}.BillingGroup")))
                        .transpose()?,
                    override_settings: t.overrides,
                })
            }
        };
        let certificate = match &self.certificate {
            None => None,
            Some(c) => {
                let p = format!("{}.Properties", c.path);
                let mut ca_certificate_pem = None;
                let source = match &c.source {
                    CertSource::Id(e) => CertificateSource::CertificateId(
                        r.string(e, &format!("{p}.CertificateId"))?,
                    ),
                    CertSource::Csr(e) => CertificateSource::CertificateSigningRequest(
                        r.string(e, &format!("{p}.CertificateSigningRequest"))?,
                    ),
                    CertSource::Pem(e, ca) => {
                        ca_certificate_pem = ca
                            .as_ref()
                            .map(|ca| r.string(ca, &format!("{p}.CACertificatePem")))
                            .transpose()?;
                        CertificateSource::CertificatePem(
                            r.string(e, &format!("{p}.CertificatePem"))?,
                        )
                    }
                };
                let status = match &c.status {
                    None => CertificateStatus::Active,
                    Some(e) => {
                        let path = format!("{p}.Status");
                        parse_status(&r.string(e, &path)?, &path, e.pos)?
                    }
                };
                Some(RenderedCertificate {
                    source,
                    ca_certificate_pem,
                    status,
                    override_settings: c.overrides,
                })
            }
        };
        let mut policies = Vec::new();
        for pol in &self.policies {
            let p = format!("{}.Properties", pol.path);
            policies.push(match &pol.kind {
                PolicyKind::Name(e) => {
                    RenderedPolicy::PolicyName(r.string(e, &format!("{p}.PolicyName"))?)
                }
                PolicyKind::Document(e) => {
                    r.escape_json = true;
                    let doc = r.string(e, &format!("{p}.PolicyDocument"));
                    r.escape_json = false;
                    RenderedPolicy::PolicyDocument(doc?)
                }
                PolicyKind::DocumentObject(d) => {
                    let mut out = String::new();
                    r.write_doc(d, &format!("{p}.PolicyDocument"), &mut out)?;
                    RenderedPolicy::PolicyDocument(out)
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

fn parse_parameters(
    src: &Source<'_>,
    top: &[Member<'_>],
    limits: &TemplateLimits,
) -> Result<BTreeMap<String, Parameter>> {
    let mut parameters = BTreeMap::new();
    let Some(p) = get(top, "Parameters") else {
        return Ok(parameters);
    };
    let p = src.object(p, "Parameters")?;
    if p.len() > limits.max_parameters {
        return Err(Error::LimitExceeded {
            what: "template parameters",
            limit: limits.max_parameters,
        });
    }
    for m in p {
        let path = format!("Parameters.{}", m.key);
        let decl = src.object(&m.value, &path)?;
        src.check_keys(decl, &["Type", "Default", "Description"], &path)?;
        let ty = match get(decl, "Type").map(|t| &t.kind) {
            Some(Kind::String(t)) if t == "String" => ParameterType::String,
            Some(Kind::String(t)) if t == "Number" => ParameterType::Number,
            Some(Kind::String(t)) if t == "CommaDelimitedList" => ParameterType::CommaDelimitedList,
            _ => {
                let offset = get(decl, "Type").map_or(m.value.offset, |t| t.offset);
                return Err(src.err(
                    &format!("{path}.Type"),
                    offset,
                    "Type must be String, Number or CommaDelimitedList",
                ));
            }
        };
        let default = match get(decl, "Default") {
            None => None,
            Some(v) => Some(scalar_string(&v.kind).ok_or_else(|| {
                src.err(
                    &format!("{path}.Default"),
                    v.offset,
                    "Default must be a scalar",
                )
            })?),
        };
        if let (Some(d), Some(node)) = (&default, get(decl, "Default")) {
            check_typed(ty, d, &format!("{path}.Default")).map_err(|_| {
                src.err(
                    &format!("{path}.Default"),
                    node.offset,
                    format!("{d:?} is not a Number"),
                )
            })?;
        }
        parameters.insert(m.key.to_string(), Parameter { ty, default });
    }
    Ok(parameters)
}

fn parse_mappings(src: &Source<'_>, top: &[Member<'_>]) -> Result<Mappings> {
    let mut mappings = BTreeMap::new();
    let Some(m) = get(top, "Mappings") else {
        return Ok(mappings);
    };
    for map in src.object(m, "Mappings")? {
        let path = format!("Mappings.{}", map.key);
        let mut level1 = BTreeMap::new();
        for first in src.object(&map.value, &path)? {
            let path = format!("{path}.{}", first.key);
            let mut level2 = BTreeMap::new();
            for second in src.object(&first.value, &path)? {
                let value = match &second.value.kind {
                    Kind::Array(items) => items
                        .iter()
                        .map(|x| scalar_string(&x.kind))
                        .collect::<Option<Vec<_>>>()
                        .map(MapValue::List),
                    other => scalar_string(other).map(MapValue::Scalar),
                };
                let Some(value) = value else {
                    return Err(src.err(
                        &format!("{path}.{}", second.key),
                        second.value.offset,
                        "a mapping value is a scalar or a list of scalars (no functions or \
                         parameters in Mappings)",
                    ));
                };
                level2.insert(second.key.to_string(), value);
            }
            level1.insert(first.key.to_string(), level2);
        }
        mappings.insert(map.key.to_string(), level1);
    }
    Ok(mappings)
}

fn parse_status(s: &str, path: &str, pos: Pos) -> Result<CertificateStatus> {
    match s.to_ascii_uppercase().as_str() {
        "ACTIVE" => Ok(CertificateStatus::Active),
        "INACTIVE" => Ok(CertificateStatus::Inactive),
        _ => Err(terr(path, pos, "Status must be ACTIVE or INACTIVE")),
    }
}

fn check_typed(ty: ParameterType, value: &str, path: &str) -> Result<()> {
    if ty == ParameterType::Number && !value.trim().parse::<f64>().is_ok_and(f64::is_finite) {
        return Err(terr(
            path,
            Pos::default(),
            format!("{value:?} is not a Number"),
        ));
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
                return Err(terr(path, Pos::default(), "list longer than the limit"));
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
            r#"{"Fn::Join":["",{"Fn::Split":[",",{"Ref":"A"}]}]}"#,
            &[("A", &",".repeat(200))],
        ));
        assert!(e.contains("more than 100"), "{e}");
        let deep = format!("{}\"x\"{}", "[".repeat(40), "]".repeat(40));
        let e = reason(thing_name(&deep, &[]));
        assert!(e.contains("nesting deeper"), "{e}");
        let e = reason(thing_name(
            r#"{"Fn::Select":["1",{"Fn::Split":[",","a"]}]}"#,
            &[],
        ));
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

    fn at(r: Result<impl std::fmt::Debug>) -> (String, usize, usize, String) {
        match r {
            Err(Error::Template {
                path,
                line,
                column,
                reason,
            }) => (path, line, column, reason),
            other => panic!("expected a template error, got {other:?}"),
        }
    }

    const CERT: &str = r#""certificate":{"Type":"AWS::IoT::Certificate","Properties":{
        "CertificateId":{"Ref":"AWS::IoT::Certificate::Id"}}}"#;

    fn pseudo() -> BTreeMap<String, String> {
        BTreeMap::from([(CERTIFICATE_ID.to_string(), "ab".repeat(32))])
    }

    fn with_policy(doc: &str) -> Result<ProvisioningTemplate> {
        parse(&format!(
            r#"{{"Parameters":{{"S":{{"Type":"String"}},"L":{{"Type":"CommaDelimitedList","Default":"a,b"}}}},
               "Resources":{{{CERT},"policy":{{"Type":"AWS::IoT::Policy","Properties":{{"PolicyDocument":{doc}}}}}}}}}"#
        ))
    }

    fn policy_text(t: &ProvisioningTemplate, p: &[(&str, &str)]) -> Result<String> {
        let r = t.render(&params(p), &pseudo())?;
        match r.policies.as_slice() {
            [RenderedPolicy::PolicyDocument(doc)] => Ok(doc.clone()),
            other => panic!("one inline policy expected, got {other:?}"),
        }
    }

    // Regression (#13): OverrideSettings on a certificate was refused with "OverrideSettings
    // applies to a thing only".
    #[test]
    fn accepts_override_settings_on_a_certificate_and_carries_them() -> Result<()> {
        for (text, want) in [
            ("DO_NOTHING", Override::DoNothing),
            ("REPLACE", Override::Replace),
            ("FAIL", Override::Fail),
        ] {
            let t = parse(&format!(
                r#"{{"Resources":{{"certificate":{{"Type":"AWS::IoT::Certificate",
                   "Properties":{{"CertificateId":{{"Ref":"AWS::IoT::Certificate::Id"}},"Status":"ACTIVE"}},
                   "OverrideSettings":{{"Status":"{text}"}}}}}}}}"#
            ))?;
            let r = t.render(&BTreeMap::new(), &pseudo())?;
            let c = r.certificate.expect("a certificate");
            assert_eq!(c.override_settings.status, want);
            assert_eq!(c.status, CertificateStatus::Active);
        }
        Ok(())
    }

    #[test]
    fn refuses_merge_and_unknown_settings_for_a_certificate() {
        let e = reason(parse(
            r#"{"Resources":{"c":{"Type":"AWS::IoT::Certificate","Properties":{"CertificateId":"x"},
               "OverrideSettings":{"Status":"MERGE"}}}}"#,
        ));
        assert!(e.contains("DO_NOTHING, REPLACE or FAIL"), "{e}");
        let (path, ..) = at(parse(
            r#"{"Resources":{"c":{"Type":"AWS::IoT::Certificate","Properties":{"CertificateId":"x"},
               "OverrideSettings":{"CertificateId":"REPLACE"}}}}"#,
        ));
        assert_eq!(path, "Resources.c.OverrideSettings.CertificateId");
    }

    #[test]
    fn refuses_override_settings_on_a_policy_as_aws_documents() {
        let (path, line, column, reason) = at(parse(&format!(
            r#"{{"Resources":{{{CERT},
"p":{{"Type":"AWS::IoT::Policy","Properties":{{"PolicyName":"x"}},"OverrideSettings":{{}}}}}}}}"#
        )));
        assert_eq!(path, "Resources.p.OverrideSettings");
        assert_eq!((line, column), (3, 83));
        assert!(
            reason.contains("not available for policy resources"),
            "{reason}"
        );
    }

    #[test]
    fn accepts_both_spellings_of_thing_override_names_but_not_both_at_once() -> Result<()> {
        let t = parse(
            r#"{"Resources":{"t":{"Type":"AWS::IoT::Thing","Properties":{"ThingName":"a"},
               "OverrideSettings":{"ATTRIBUTE_PAYLOAD":"MERGE","ThingTypeName":"FAIL","THING_GROUPS":"REPLACE"}}}}"#,
        )?;
        let r = t.render(&BTreeMap::new(), &BTreeMap::new())?;
        let o = r.thing.expect("thing").override_settings;
        assert_eq!(
            (o.attributes, o.thing_type, o.thing_groups),
            (Override::Merge, Override::Fail, Override::Replace)
        );
        let e = reason(parse(
            r#"{"Resources":{"t":{"Type":"AWS::IoT::Thing","Properties":{"ThingName":"a"},
               "OverrideSettings":{"ThingGroups":"MERGE","THING_GROUPS":"FAIL"}}}}"#,
        ));
        assert!(e.contains("two spellings"), "{e}");
        Ok(())
    }

    // Regression (#13): a PolicyDocument given as a JSON object was taken for a function call.
    #[test]
    fn accepts_a_policy_document_object_and_renders_it_as_json_text() -> Result<()> {
        let t = with_policy(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iot:Publish"],
                "Resource":["arn:aws:iot:us-east-1:123456789012:topic/foo/bar"]}]}"#,
        )?;
        assert_eq!(
            policy_text(&t, &[])?,
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iot:Publish"],"Resource":["arn:aws:iot:us-east-1:123456789012:topic/foo/bar"]}]}"#
        );
        Ok(())
    }

    #[test]
    fn evaluates_functions_inside_a_policy_document_object_only() -> Result<()> {
        let t = with_policy(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect",
                "Resource":{"Fn::Join":["",["arn:aws:iot:r:1:client/",{"Ref":"S"}]]},
                "Condition":{"Bool":{"iot:Connection.Thing.IsAttached":"true"}}},
               {"Effect":"Allow","Action":"iot:Publish","Resource":{"Fn::Split":[",","a,b"]},
                "Sid":{"Ref":"S"}},
               {"Effect":"Allow","Action":"iot:Receive","Resource":"arn:aws:iot:r:1:topic/${iot:ClientId}"},
               {"Effect":"Deny","Action":{"Ref":"L"},"Resource":"*","n":1.5e3,"b":true,"z":null}]}"#,
        )?;
        let attack = r#"x","Action":"iot:*"#;
        let doc = policy_text(&t, &[("S", attack)])?;
        let v: serde_json::Value = serde_json::from_str(&doc).expect("valid JSON");
        let s = &v["Statement"];
        assert_eq!(s[0]["Resource"], format!("arn:aws:iot:r:1:client/{attack}"));
        assert_eq!(
            s[0]["Condition"]["Bool"]["iot:Connection.Thing.IsAttached"],
            "true"
        );
        assert_eq!(s[1]["Resource"], serde_json::json!(["a", "b"]));
        assert_eq!(s[1]["Sid"], attack, "a parameter stays one JSON string");
        assert_eq!(s[2]["Resource"], "arn:aws:iot:r:1:topic/${iot:ClientId}");
        assert_eq!(s[3]["Action"], serde_json::json!(["a", "b"]));
        assert!(doc.contains(r#""n":1.5e3,"b":true,"z":null"#), "{doc}");
        let e = reason(with_policy(r#"{"Statement":{"Fn::If":["c","a","b"]}}"#));
        assert!(e.contains("unknown function \"Fn::If\""), "{e}");
        Ok(())
    }

    #[test]
    fn accepts_a_policy_document_string_or_a_function_producing_one() -> Result<()> {
        let t = with_policy(r#""{\"Version\":\"2012-10-17\",\"Statement\":[]}""#)?;
        assert_eq!(
            policy_text(&t, &[])?,
            r#"{"Version":"2012-10-17","Statement":[]}"#
        );
        let t = with_policy(r#"{"Fn::Join":["",["{\"Version\":\"",{"Ref":"S"},"\"}"]]}"#)?;
        assert_eq!(policy_text(&t, &[("S", "a\"b")])?, r#"{"Version":"a\"b"}"#);
        let e = reason(with_policy(r#"{"Fn::Split":[",","a"]}"#));
        assert!(
            e.contains("PolicyDocument is a string, found a list"),
            "{e}"
        );
        Ok(())
    }

    #[test]
    fn bounds_the_rendered_policy_document() {
        let limits = TemplateLimits {
            max_policy_document_len: 64,
            ..TemplateLimits::default()
        };
        let t = ProvisioningTemplate::parse(
            &format!(
                r#"{{"Parameters":{{"S":{{"Type":"String"}}}},"Resources":{{{CERT},
                   "p":{{"Type":"AWS::IoT::Policy","Properties":{{"PolicyDocument":{{"a":[{{"Ref":"S"}},{{"Ref":"S"}}]}}}}}}}}}}"#
            ),
            &limits,
        )
        .expect("valid template");
        assert!(policy_text(&t, &[("S", "short")]).is_ok());
        let e = reason(policy_text(&t, &[("S", &"x".repeat(40))]));
        assert!(e.contains("longer than 64 bytes"), "{e}");
    }

    // Regression (#13): statically impossible Fn::Select and Fn::Join were only caught when
    // rendering (or not at all).
    #[test]
    fn refuses_impossible_select_and_join_when_parsing() {
        for (body, want) in [
            (
                r#"{"Fn::Select":["3",["a","b","c"]]}"#,
                "past the end of its list of 3",
            ),
            (
                r#"{"Fn::Select":[3,["a","b","c"]]}"#,
                "past the end of its list of 3",
            ),
            (r#"{"Fn::Select":["-1",["a"]]}"#, "is negative"),
            (r#"{"Fn::Select":[-1,{"Ref":"L"}]}"#, "is negative"),
            (r#"{"Fn::Select":["one",["a"]]}"#, "not a whole number"),
            (r#"{"Fn::Select":["0","a,b"]}"#, "found a string"),
            (
                r#"{"Fn::Select":[["0"],["a"]]}"#,
                "index is a string, found a list",
            ),
            (
                r#"{"Fn::Join":["-","a"]}"#,
                "Fn::Join's second argument is a list",
            ),
            (
                r#"{"Fn::Join":["-",{"Ref":"A"}]}"#,
                "Fn::Join's second argument is a list",
            ),
            (
                r#"{"Fn::Join":["-",{"Fn::Sub":"x"}]}"#,
                "Fn::Join's second argument is a list",
            ),
            (r#"{"Fn::Join":[["-"],["a"]]}"#, "delimiter is a string"),
            (r#"{"Fn::Split":["",{"Ref":"A"}]}"#, "delimiter is empty"),
            (r#"["a"]"#, "ThingName is a string, found a list"),
            (r#"{"Ref":"L"}"#, "ThingName is a string, found a list"),
            (r#"{"Fn::Join":["-",[["a"]]]}"#, "a list item is a string"),
            (
                r#"{"Fn::FindInMap":["M","eu","nope"]}"#,
                "has no key \"nope\"",
            ),
            (
                r#"{"Fn::FindInMap":["M","us","zone"]}"#,
                "has no key \"us\"",
            ),
            (r#"{"Fn::FindInMap":["M","eu","list"]}"#, "found a list"),
            (r#"{"Fn::Sub":"${L}"}"#, "CommaDelimitedList, not a string"),
        ] {
            let e = reason(thing_name(body, &[("A", "x")]));
            assert!(e.contains(want), "{body}: {e}");
        }
        // Functions that yield lists are fine where a list is needed.
        assert_eq!(
            thing_name(r#"{"Fn::Join":["-",{"Ref":"L"}]}"#, &[])
                .ok()
                .as_deref(),
            Some("x-y-z")
        );
        assert_eq!(
            thing_name(
                r#"{"Fn::Select":[0,{"Fn::FindInMap":["M",{"Ref":"A"},"list"]}]}"#,
                &[("A", "eu")]
            )
            .ok()
            .as_deref(),
            Some("p")
        );
    }

    #[test]
    fn thing_groups_must_be_a_list() -> Result<()> {
        let body = |g: &str| {
            format!(
                r#"{{"Parameters":{{"L":{{"Type":"CommaDelimitedList","Default":"g1,g2"}}}},
                   "Resources":{{"t":{{"Type":"AWS::IoT::Thing","Properties":{{"ThingName":"a","ThingGroups":{g}}}}}}}}}"#
            )
        };
        let e = reason(parse(&body(r#""g1""#)));
        assert!(e.contains("ThingGroups is a list"), "{e}");
        let t = parse(&body(r#"{"Ref":"L"}"#))?;
        let r = t.render(&BTreeMap::new(), &BTreeMap::new())?;
        assert_eq!(r.thing.expect("thing").thing_groups, ["g1", "g2"]);
        Ok(())
    }

    // Regression (#13): an unknown resource type was refused without naming it.
    #[test]
    fn names_an_unknown_resource_type() {
        let (path, line, column, reason) = at(parse(
            "{\"Resources\":{\n  \"group\":{\"Type\":\"AWS::IoT::ThingGroup\",\"Properties\":{}}}}",
        ));
        assert_eq!(path, "Resources.group.Type");
        assert_eq!((line, column), (2, 19));
        assert!(reason.contains("\"AWS::IoT::ThingGroup\""), "{reason}");
        let e = reason_of_missing_type();
        assert!(e.contains("has no Type"), "{e}");
    }

    fn reason_of_missing_type() -> String {
        reason(parse(r#"{"Resources":{"x":{"Properties":{}}}}"#))
    }

    #[test]
    fn refuses_duplicate_keys_with_both_positions() {
        let (path, line, column, reason) = at(parse(
            "{\"Resources\":{\"t\":{\"Type\":\"AWS::IoT::Thing\",\n\"Properties\":{\"ThingName\":\"a\",\n  \"ThingName\":\"b\"}}}}",
        ));
        assert_eq!(path, "Resources.t.Properties.ThingName");
        assert_eq!((line, column), (3, 3));
        assert!(
            reason.contains("duplicate key \"ThingName\" (first at 2:15)"),
            "{reason}"
        );
    }

    #[test]
    fn every_template_error_carries_line_and_column() {
        let text = "{\n  \"Resources\": {\n    \"t\": {\"Type\": \"AWS::IoT::Thing\",\n      \"Properties\": {\"ThingName\": {\"Ref\": \"Nope\"}}}}}";
        let e = parse(text).expect_err("undeclared parameter");
        assert_eq!(
            e.to_string(),
            "template: 4:43: Resources.t.Properties.ThingName.Ref: Ref to undeclared parameter \
             \"Nope\" (declare it in the Parameters section)"
        );
        let (_, line, column, reason) = at(parse("{\"Resources\": {\n  \"t\": [1,]}}"));
        assert_eq!((line, column), (2, 11));
        assert!(reason.starts_with("not JSON"), "{reason}");
        // Render errors point at the expression too.
        let t = parse(
            "{\"Parameters\":{\"I\":{\"Type\":\"String\"}},\"Resources\":{\"t\":{\"Type\":\"AWS::IoT::Thing\",\n\"Properties\":{\"ThingName\":{\"Fn::Select\":[{\"Ref\":\"I\"},[\"a\"]]}}}}}",
        )
        .expect("valid");
        let (path, line, column, reason) = at(t.render(&params(&[("I", "5")]), &BTreeMap::new()));
        assert_eq!(path, "Resources.t.Properties.ThingName");
        assert_eq!((line, column), (2, 28));
        assert!(reason.contains("out of range"), "{reason}");
    }

    #[test]
    fn accepts_billing_group_and_ca_certificate_pem() -> Result<()> {
        let t = parse(
            r#"{"Parameters":{"P":{"Type":"String"},"C":{"Type":"String"}},"Resources":{
                "t":{"Type":"AWS::IoT::Thing","Properties":{"ThingName":"a","BillingGroup":"bg"}},
                "c":{"Type":"AWS::IoT::Certificate","Properties":{"CertificatePem":{"Ref":"P"},
                     "CACertificatePem":{"Ref":"C"},"Status":"Inactive"}}}}"#,
        )?;
        let r = t.render(&params(&[("P", "pem"), ("C", "ca")]), &BTreeMap::new())?;
        assert_eq!(r.thing.expect("thing").billing_group.as_deref(), Some("bg"));
        let c = r.certificate.expect("certificate");
        assert_eq!(c.source, CertificateSource::CertificatePem("pem".into()));
        assert_eq!(c.ca_certificate_pem.as_deref(), Some("ca"));
        assert_eq!(c.status, CertificateStatus::Inactive);
        let e = reason(parse(
            r#"{"Resources":{"c":{"Type":"AWS::IoT::Certificate","Properties":{"CertificateId":"x","CACertificatePem":"y"}}}}"#,
        ));
        assert!(e.contains("goes only with CertificatePem"), "{e}");
        Ok(())
    }

    #[test]
    fn device_configuration_values_are_strings() {
        let e = reason(parse(
            r#"{"Resources":{},"DeviceConfiguration":{"a":{"nested":1,"object":2}}}"#,
        ));
        assert!(e.contains("found 2 keys"), "{e}");
        let e = reason(parse(
            r#"{"Resources":{},"DeviceConfiguration":{"a":["x"]}}"#,
        ));
        assert!(e.contains("found a list"), "{e}");
    }
}
