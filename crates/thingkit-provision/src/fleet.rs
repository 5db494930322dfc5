//! Fleet provisioning by claim (the AWS IoT device provisioning MQTT API); the user documentation is on [`FleetProvisioning`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::authority::{CaKeyType, CertificateAuthority, IssueOptions};
use crate::certificate::{CertificateId, CertificateStatus};
use crate::error::{Error, Result};
use crate::hook::{HookConfig, HookRequest, PreProvisioningHook, run_hook};
use crate::registry::{PolicyTarget, Registry};
use crate::request::VerifiedCsr;
use crate::store::RegistryStore;
use crate::template::{
    CERTIFICATE_ID, CertificateSource, Override, ProvisioningTemplate, RenderedCertificate,
    RenderedPolicy, RenderedTemplate, TemplateLimits,
};

/// The topic prefix of the certificate operations.
pub const CERTIFICATES_PREFIX: &str = "$aws/certificates/";
/// The topic prefix of RegisterThing.
pub const TEMPLATES_PREFIX: &str = "$aws/provisioning-templates/";
/// The common name given to certificates created without one (CreateKeysAndCertificate, or a
/// CSR without a common name).
pub const DEFAULT_COMMON_NAME: &str = "thingkit provisioned device";

/// Settings and limits of the fleet provisioning API.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FleetConfig {
    /// Lifetime of a certificate ownership token. Default 1 hour (as AWS).
    pub token_ttl: Duration,
    /// Most tokens outstanding at once; CreateKeysAndCertificate / CreateCertificateFromCsr are
    /// rejected with 429 beyond it. Default 10 000.
    pub max_pending_tokens: usize,
    /// Most tokens outstanding for one claim certificate, so that one leaked claim certificate
    /// cannot exhaust [`max_pending_tokens`](Self::max_pending_tokens) for the fleet. Default 10.
    pub max_pending_tokens_per_claim: usize,
    /// Largest request payload, in bytes. Default 64 KiB.
    pub max_payload_len: usize,
    /// Deepest CBOR nesting accepted. Default 8 (requests are at most two levels deep).
    pub max_cbor_depth: usize,
    /// Key type of CreateKeysAndCertificate. Default P-256.
    pub key_type: CaKeyType,
    /// The pre-provisioning hook's timeout.
    pub hook: HookConfig,
    /// Template limits (also bound the request's `parameters`).
    pub template_limits: TemplateLimits,
}

impl FleetConfig {
    /// This value with [`token_ttl`](Self::token_ttl) replaced.
    pub fn with_token_ttl(mut self, token_ttl: Duration) -> Self {
        self.token_ttl = token_ttl;
        self
    }

    /// This value with [`max_pending_tokens`](Self::max_pending_tokens) replaced.
    pub fn with_max_pending_tokens(mut self, max_pending_tokens: usize) -> Self {
        self.max_pending_tokens = max_pending_tokens;
        self
    }

    /// This value with [`max_pending_tokens_per_claim`](Self::max_pending_tokens_per_claim) replaced.
    pub fn with_max_pending_tokens_per_claim(
        mut self,
        max_pending_tokens_per_claim: usize,
    ) -> Self {
        self.max_pending_tokens_per_claim = max_pending_tokens_per_claim;
        self
    }

    /// This value with [`max_payload_len`](Self::max_payload_len) replaced.
    pub fn with_max_payload_len(mut self, max_payload_len: usize) -> Self {
        self.max_payload_len = max_payload_len;
        self
    }

    /// This value with [`max_cbor_depth`](Self::max_cbor_depth) replaced.
    pub fn with_max_cbor_depth(mut self, max_cbor_depth: usize) -> Self {
        self.max_cbor_depth = max_cbor_depth;
        self
    }

    /// This value with [`key_type`](Self::key_type) replaced.
    pub fn with_key_type(mut self, key_type: CaKeyType) -> Self {
        self.key_type = key_type;
        self
    }

    /// This value with [`hook`](Self::hook) replaced.
    pub fn with_hook(mut self, hook: HookConfig) -> Self {
        self.hook = hook;
        self
    }

    /// This value with [`template_limits`](Self::template_limits) replaced.
    pub fn with_template_limits(mut self, template_limits: TemplateLimits) -> Self {
        self.template_limits = template_limits;
        self
    }
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            token_ttl: Duration::from_secs(3600),
            max_pending_tokens: 10_000,
            max_pending_tokens_per_claim: 10,
            max_payload_len: 64 * 1024,
            max_cbor_depth: 8,
            key_type: CaKeyType::P256,
            hook: HookConfig::default(),
            template_limits: TemplateLimits::default(),
        }
    }
}

/// The payload format, chosen by the topic's last level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadFormat {
    /// `json`.
    Json,
    /// `cbor` (RFC 8949).
    Cbor,
}

impl PayloadFormat {
    /// The topic level: `json` or `cbor`.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Json => "json",
            PayloadFormat::Cbor => "cbor",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "json" => Some(PayloadFormat::Json),
            "cbor" => Some(PayloadFormat::Cbor),
            _ => None,
        }
    }
}

/// A provisioning operation, as named by its request topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `CreateKeysAndCertificate`.
    CreateKeysAndCertificate,
    /// `CreateCertificateFromCsr`.
    CreateCertificateFromCsr,
    /// `RegisterThing` with the named template.
    RegisterThing {
        /// The template name from the topic.
        template_name: String,
    },
}

/// Parses a request topic. `None` for anything else (including the reply topics).
pub fn parse_topic(topic: &str) -> Option<(Operation, PayloadFormat)> {
    if let Some(rest) = topic.strip_prefix(CERTIFICATES_PREFIX) {
        let (op, format) = rest.split_once('/')?;
        let format = PayloadFormat::parse(format)?;
        return match op {
            "create" => Some((Operation::CreateKeysAndCertificate, format)),
            "create-from-csr" => Some((Operation::CreateCertificateFromCsr, format)),
            _ => None,
        };
    }
    let rest = topic.strip_prefix(TEMPLATES_PREFIX)?;
    let (name, tail) = rest.split_once('/')?;
    let format = PayloadFormat::parse(tail.strip_prefix("provision/")?)?;
    if name.is_empty() {
        return None;
    }
    Some((
        Operation::RegisterThing {
            template_name: name.to_owned(),
        },
        format,
    ))
}

/// Whether `topic` is a provisioning request topic that [`FleetProvisioning::handle`] answers.
pub fn is_provisioning_topic(topic: &str) -> bool {
    parse_topic(topic).is_some()
}

/// A message to publish to the requesting client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The topic (`<request topic>/accepted` or `<request topic>/rejected`, or an event topic).
    pub topic: String,
    /// The payload (JSON or CBOR, as the request).
    pub payload: Vec<u8>,
}

impl Reply {
    /// Whether this is an `/accepted` reply.
    pub fn is_accepted(&self) -> bool {
        self.topic.ends_with("/accepted")
    }
}

/// Checks a template name (AWS: 1 to 36 characters of `[0-9A-Za-z_-]`).
pub fn check_template_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 36
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(Error::InvalidName {
            kind: "provisioning template",
            name: name.chars().take(64).collect(),
            rule: "1 to 36 characters of [0-9A-Za-z_-]",
        });
    }
    Ok(())
}

/// The least-privilege policy document for claim certificates: `iot:Connect`, and publish,
/// receive and subscribe on exactly the certificate topics and the RegisterThing topics of
/// `template_names` (JSON and CBOR, with their `/accepted` and `/rejected` replies). Nothing
/// else is allowed.
pub fn claim_policy(arn: &thingkit_policy::ArnPrefix, template_names: &[&str]) -> Result<String> {
    for name in template_names {
        check_template_name(name)?;
    }
    let mut topics = vec![
        "$aws/certificates/create/*".to_owned(),
        "$aws/certificates/create-from-csr/*".to_owned(),
    ];
    for name in template_names {
        topics.push(format!("{TEMPLATES_PREFIX}{name}/provision/*"));
    }
    let topic_arns: Vec<String> = topics
        .iter()
        .map(|t| arn.arn(&format!("topic/{t}")))
        .collect();
    let filter_arns: Vec<String> = topics
        .iter()
        .map(|t| arn.arn(&format!("topicfilter/{t}")))
        .collect();
    let doc = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"},
            {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"], "Resource": topic_arns},
            {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": filter_arns},
        ]
    });
    let text = doc.to_string();
    // The result must be a valid AWS IoT policy (this also enforces the 2048-byte size limit).
    crate::policy::StoredPolicyDocument::parse("claim", &text)?;
    Ok(text)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyRequest {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CsrRequest {
    certificate_signing_request: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RegisterThingRequest {
    certificate_ownership_token: String,
    #[serde(default)]
    parameters: Option<BTreeMap<String, String>>,
    #[serde(default)]
    template_name: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeysAccepted<'a> {
    certificate_id: String,
    certificate_pem: String,
    private_key: &'a str,
    certificate_ownership_token: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CsrAccepted {
    certificate_id: String,
    certificate_pem: String,
    certificate_ownership_token: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RegisterAccepted<'a> {
    device_configuration: &'a BTreeMap<String, String>,
    thing_name: Option<&'a str>,
}

/// The AWS error body of a `/rejected` reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    /// HTTP-style status (400, 403, 404, 429, 500).
    pub status_code: u16,
    /// AWS error code (`InvalidPayload`, `InvalidParameters`, ...).
    pub error_code: String,
    /// A human-readable message.
    pub error_message: String,
}

impl Rejection {
    /// The rejection for an error. Internal failures carry a generic message, never internals.
    pub fn of(e: &Error) -> Rejection {
        let (status_code, error_code) = match e {
            Error::Payload(_) | Error::TooLarge { .. } => (400, "InvalidPayload"),
            Error::Template { .. } | Error::MissingParameter { .. } => (400, "InvalidParameters"),
            Error::OwnershipToken(_) => (400, "InvalidCertificateOwnershipToken"),
            Error::HookRefused(_) => (403, "AccessDenied"),
            Error::NotFound {
                kind: "provisioning template",
                ..
            } => (404, "ResourceNotFound"),
            Error::LimitExceeded {
                what: "pending certificate ownership tokens",
                ..
            } => (429, "Throttled"),
            Error::BadCsrSignature
            | Error::Sha1Refused
            | Error::CurveHashMismatch { .. }
            | Error::UnsupportedKey(_)
            | Error::RsaKeyTooSmall { .. }
            | Error::BadSubject(_)
            | Error::Pem(_)
            | Error::Malformed { .. } => (400, "InvalidCsr"),
            Error::AlreadyExists { .. } | Error::Conflict { .. } => (409, "ResourceConflict"),
            Error::InvalidName { .. }
            | Error::LimitExceeded { .. }
            | Error::NotFound { .. }
            | Error::InvalidTransition { .. }
            | Error::Policy { .. } => (400, "InvalidRequest"),
            _ => (500, "InternalFailure"),
        };
        let error_message = if status_code == 500 {
            "internal failure".to_owned()
        } else {
            e.to_string()
        };
        Rejection {
            status_code,
            error_code: error_code.to_owned(),
            error_message,
        }
    }
}

struct PendingCertificate {
    certificate_id: CertificateId,
    claim: CertificateId,
}

struct RegisteredTemplate {
    template: ProvisioningTemplate,
    hook: Option<Arc<dyn PreProvisioningHook>>,
}

/// What [`FleetProvisioning::prepare`] decided.
#[derive(Debug)]
#[must_use = "a prepared registration does nothing until it is committed"]
pub enum Prepared {
    /// The request is answered: publish these replies to the client (exactly one).
    Replies(Vec<Reply>),
    /// A RegisterThing whose payload, template and ownership token checked out. Run its hook
    /// with [`PendingRegistration::run_hook`] *without* holding the registry, then apply it
    /// with [`FleetProvisioning::commit`].
    Register(PendingRegistration),
}

/// A RegisterThing between [`FleetProvisioning::prepare`] and [`FleetProvisioning::commit`]: the
/// decoded request, the ownership token it presented (checked, not yet consumed) and the
/// template and hook as they were when it was prepared. It borrows nothing, so the caller can
/// release its registry (and service) locks while the hook runs.
pub struct PendingRegistration {
    topic: String,
    format: PayloadFormat,
    template_name: String,
    client: CertificateId,
    token: [u8; 32],
    /// The token as presented, checked again at commit.
    token_text: String,
    certificate_id: CertificateId,
    parameters: BTreeMap<String, String>,
    registered: Arc<RegisteredTemplate>,
    hook_config: HookConfig,
}

impl std::fmt::Debug for PendingRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRegistration")
            .field("template_name", &self.template_name)
            .field("client", &self.client)
            .field("certificate_id", &self.certificate_id)
            .field("has_hook", &self.registered.hook.is_some())
            .finish_non_exhaustive()
    }
}

impl PendingRegistration {
    /// The template named by the request topic.
    pub fn template_name(&self) -> &str {
        &self.template_name
    }

    /// The certificate the ownership token provisions.
    pub fn certificate_id(&self) -> &CertificateId {
        &self.certificate_id
    }

    /// The claim certificate that sent the request.
    pub fn client(&self) -> &CertificateId {
        &self.client
    }

    /// Whether the template has a pre-provisioning hook ([`run_hook`](Self::run_hook) returns
    /// at once when it has none).
    pub fn has_hook(&self) -> bool {
        self.registered.hook.is_some()
    }

    /// Runs the template's pre-provisioning hook, if any, on its own thread with the configured
    /// timeout (see [`PreProvisioningHook`]); blocks for at most [`HookConfig::timeout`]. Needs no
    /// registry: call it with every lock released. A denial, timeout or panic yields an outcome
    /// that [`FleetProvisioning::commit`] turns into a rejection (fail closed).
    pub fn run_hook(&self) -> HookOutcome {
        let result = match &self.registered.hook {
            None => Ok(BTreeMap::new()),
            Some(hook) => run_hook(
                hook,
                HookRequest {
                    claim_certificate_id: self.client.to_string(),
                    certificate_id: self.certificate_id.to_string(),
                    template_name: self.template_name.clone(),
                    parameters: self.parameters.clone(),
                },
                &self.hook_config,
            )
            .map(|answer| answer.parameter_overrides),
        };
        HookOutcome {
            token: self.token,
            result,
        }
    }
}

/// The answer of a pending registration's hook ([`PendingRegistration::run_hook`]): the
/// parameter overrides, or why provisioning is refused. Only `run_hook` makes one, and
/// [`FleetProvisioning::commit`] accepts it only for the registration it was made for, so the
/// hook cannot be skipped.
#[derive(Debug)]
pub struct HookOutcome {
    token: [u8; 32],
    result: Result<BTreeMap<String, String>>,
}

impl HookOutcome {
    /// Whether the hook allowed provisioning (or there was no hook).
    pub fn is_allowed(&self) -> bool {
        self.result.is_ok()
    }
}

/// What applying a template did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provisioned {
    /// The thing created or updated.
    pub thing_name: Option<String>,
    /// The certificate registered or activated.
    pub certificate_id: Option<CertificateId>,
    /// The policies attached to the certificate.
    pub policies: Vec<String>,
    /// The template's `DeviceConfiguration`.
    pub device_configuration: BTreeMap<String, String>,
}

/// The fleet provisioning service: templates, ownership tokens, the CA that signs the new
/// certificates, and JIT registration ([`FleetProvisioning::on_unknown_certificate`]).
///
/// Fleet provisioning by claim: the AWS IoT "device provisioning MQTT API", sans-IO.
///
/// A broker routes every PUBLISH on a provisioning topic to [`FleetProvisioning::handle`] (or,
/// to run a pre-provisioning hook without holding the registry, `prepare` and `commit`) and
/// publishes the [`Reply`]s it returns to the same client. The topics and payloads are AWS's,
/// so the AWS IoT device SDKs' fleet provisioning samples work unchanged:
///
/// | request topic | reply topics | request → accepted fields |
/// |---|---|---|
/// | `$aws/certificates/create/{json,cbor}` | `…/accepted`, `…/rejected` | `{}` → `certificateId`, `certificatePem`, `privateKey`, `certificateOwnershipToken` |
/// | `$aws/certificates/create-from-csr/{json,cbor}` | `…/accepted`, `…/rejected` | `certificateSigningRequest` → `certificateId`, `certificatePem`, `certificateOwnershipToken` |
/// | `$aws/provisioning-templates/<templateName>/provision/{json,cbor}` | `…/accepted`, `…/rejected` | `certificateOwnershipToken`, `parameters` → `deviceConfiguration`, `thingName` |
///
/// Rejections carry the AWS error body `{"statusCode", "errorCode", "errorMessage"}`.
///
/// ```
/// use std::sync::Arc;
/// use std::time::SystemTime;
/// use thingkit_provision::{CaOptions, CertificateAuthority, CaKeyType};
/// use thingkit_provision::{CaStatus, CertificateStatus};
/// use thingkit_provision::{FleetConfig, FleetProvisioning, claim_policy};
/// use thingkit_provision::{PolicyTarget, Registry};
/// use thingkit_provision::{ProvisioningTemplate, TemplateLimits};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let now = SystemTime::now();
/// let ca = Arc::new(CertificateAuthority::create_root(&CaOptions::default(), now)?);
/// let mut registry = Registry::in_memory();
/// registry.register_ca_certificate(ca.certificate_der(), CaStatus::Active, false)?;
/// // The claim certificate and its least-privilege policy.
/// let claim = ca.create_keys_and_certificate("claim", CaKeyType::P256, now)?;
/// let claim_id =
///     registry.register_certificate(&claim.certificate.der, CertificateStatus::Active, now)?;
/// let arn = thingkit_policy::ArnPrefix::new("aws", "us-east-1", "123456789012").unwrap();
/// registry.create_policy("claim", &claim_policy(&arn, &["Sensors"])?, now)?;
/// registry.attach_policy("claim", &PolicyTarget::Certificate(claim_id))?;
///
/// let mut fleet = FleetProvisioning::new(ca, FleetConfig::default());
/// fleet.add_template("Sensors", ProvisioningTemplate::parse(r#"{
///   "Parameters": {"Serial": {"Type": "String"}},
///   "Resources": {
///     "thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": {"Ref": "Serial"}}},
///     "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
///       "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}}}}"#,
///   &TemplateLimits::default())?)?;
///
/// // In the broker, for every PUBLISH of a client authenticated with `claim_id`:
/// let replies = fleet
///     .handle(&mut registry, &claim_id, "$aws/certificates/create/json", b"{}", now)
///     .expect("a provisioning topic");
/// assert_eq!(replies[0].topic, "$aws/certificates/create/json/accepted");
/// let created: serde_json::Value = serde_json::from_slice(&replies[0].payload)?;
/// let request = serde_json::json!({
///     "certificateOwnershipToken": created["certificateOwnershipToken"],
///     "parameters": {"Serial": "sensor-1"},
/// });
/// let replies = fleet
///     .handle(&mut registry, &claim_id, "$aws/provisioning-templates/Sensors/provision/json",
///             request.to_string().as_bytes(), now)
///     .expect("a provisioning topic");
/// assert!(replies[0].is_accepted());
/// assert!(registry.thing("sensor-1").is_some());
/// # Ok(()) }
/// ```
///
/// # Certificate ownership tokens
///
/// Each created certificate is registered PENDING_ACTIVATION and gets a token: 256 random bits
/// (hex), kept only as its SHA-256, single use, bound to that certificate *and* to the claim
/// certificate that asked for it, valid for [`FleetConfig::token_ttl`] (1 hour). RegisterThing
/// consumes the token only when the registration succeeds. A certificate whose token expires
/// unclaimed is deleted ([`FleetProvisioning::expire`], also run on every `handle`).
///
/// A claim certificate may hold at most [`FleetConfig::max_pending_tokens_per_claim`] tokens
/// (default 10) and the service [`FleetConfig::max_pending_tokens`]; beyond that the certificate
/// operations are rejected with 429 `Throttled`.
///
/// # Security notes
///
/// - As in AWS, a RegisterThing for a thing that **already exists** attaches the new certificate
///   to it (that is how devices rotate certificates). Whoever holds a claim certificate can thus
///   name any thing the template lets them name: guard such templates with a pre-provisioning
///   hook ([`PreProvisioningHook`]) that checks the device's parameters (e.g. a serial-number allow list).
/// - Parameter values substituted into an inline `PolicyDocument` are JSON-string-escaped, so a
///   device cannot inject statements into its own policy.
///
/// # All or nothing
///
/// RegisterThing renders the template, then applies it inside one [`Registry::batch`]: the
/// certificate status, the thing (with its override settings), its groups, the attachment and
/// the policies are committed together or not at all.
///
/// # The hook runs without the registry
///
/// A pre-provisioning hook may take up to [`HookConfig::timeout`] (5 s). So that a server does
/// not hold its registry across it (stalling every [`Registry::authenticate`]), RegisterThing is
/// three steps: [`FleetProvisioning::prepare`] (checks; returns a [`PendingRegistration`] that
/// borrows nothing), [`PendingRegistration::run_hook`] (no registry), and
/// [`FleetProvisioning::commit`] (checks the token again — a concurrent request with the same
/// token may have used it meanwhile, and exactly one of them succeeds — then applies).
/// [`FleetProvisioning::handle`] runs the three in one call.
///
/// ```
/// # use std::sync::Arc;
/// # use std::time::SystemTime;
/// # use thingkit_provision::{CaOptions, CertificateAuthority, CaKeyType};
/// # use thingkit_provision::{CaStatus, CertificateStatus};
/// # use thingkit_provision::{FleetConfig, FleetProvisioning, Prepared};
/// # use thingkit_provision::{HookRequest, HookResponse};
/// # use thingkit_provision::Registry;
/// # use thingkit_provision::{ProvisioningTemplate, TemplateLimits};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let now = SystemTime::now();
/// # let ca = Arc::new(CertificateAuthority::create_root(&CaOptions::default(), now)?);
/// # let mut registry = Registry::in_memory();
/// # registry.register_ca_certificate(ca.certificate_der(), CaStatus::Active, false)?;
/// # let claim = ca.create_keys_and_certificate("claim", CaKeyType::P256, now)?;
/// # let claim_id =
/// #     registry.register_certificate(&claim.certificate.der, CertificateStatus::Active, now)?;
/// # let template = ProvisioningTemplate::parse(r#"{
/// #   "Parameters": {"Serial": {"Type": "String"}},
/// #   "Resources": {
/// #     "thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": {"Ref": "Serial"}}},
/// #     "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
/// #       "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}}}}"#,
/// #   &TemplateLimits::default())?;
/// let mut fleet = FleetProvisioning::new(ca, FleetConfig::default());
/// fleet.add_template_with_hook("Sensors", template, |r: &HookRequest| {
///     if r.parameters.get("Serial").is_some_and(|s| s.starts_with("sensor-")) {
///         HookResponse::allow()
///     } else {
///         HookResponse::deny()
///     }
/// })?;
/// # let replies = fleet
/// #     .handle(&mut registry, &claim_id, "$aws/certificates/create/json", b"{}", now)
/// #     .expect("a provisioning topic");
/// # let created: serde_json::Value = serde_json::from_slice(&replies[0].payload)?;
/// let request = serde_json::json!({
///     "certificateOwnershipToken": created["certificateOwnershipToken"],
///     "parameters": {"Serial": "sensor-1"},
/// });
/// let topic = "$aws/provisioning-templates/Sensors/provision/json";
/// let payload = request.to_string();
/// let replies = match fleet.prepare(&mut registry, &claim_id, topic, payload.as_bytes(), now) {
///     None => unreachable!("a provisioning topic"),
///     Some(Prepared::Replies(replies)) => replies, // refused before the hook
///     Some(Prepared::Register(pending)) => {
///         // A server releases its registry lock here.
///         let outcome = pending.run_hook();
///         fleet.commit(&mut registry, pending, outcome, now)
///     }
/// };
/// assert!(replies[0].is_accepted());
/// assert!(registry.thing("sensor-1").is_some());
/// # Ok(()) }
/// ```
pub struct FleetProvisioning {
    ca: Arc<CertificateAuthority>,
    config: FleetConfig,
    templates: BTreeMap<String, Arc<RegisteredTemplate>>,
    tokens: HashMap<[u8; 32], PendingCertificate>,
    expiry: VecDeque<(SystemTime, [u8; 32])>,
    per_claim: HashMap<CertificateId, usize>,
    pub(crate) registration_templates: HashMap<CertificateId, ProvisioningTemplate>,
    /// Signs and checks ownership tokens (see [`FleetProvisioning::new`]).
    token_signer: ring::hmac::Key,
}

impl std::fmt::Debug for FleetProvisioning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetProvisioning")
            .field("ca", &self.ca.id())
            .field("templates", &self.templates.keys().collect::<Vec<_>>())
            .field("pending_tokens", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

/// What an ownership token's signing key is derived from, with the CA's private key.
const TOKEN_KEY_CONTEXT: &[u8] = b"thingkit fleet provisioning: certificate ownership tokens v1";

/// The signed part of an ownership token: the certificate, the claim certificate it was issued
/// to and its expiry (Unix seconds), as `<certificate id><claim id><expiry, 16 hex digits>`.
fn token_claims(certificate_id: &CertificateId, claim: &CertificateId, expires: u64) -> String {
    format!("{certificate_id}{claim}{expires:016x}")
}

/// The claims of a token `<claims>.<HMAC-SHA256 of the claims, hex>` whose signature `key`
/// verifies: (certificate, claim certificate, expiry in Unix seconds). `None` for anything
/// else (checked in constant time before anything is parsed).
fn verify_token(key: &ring::hmac::Key, token: &str) -> Option<(CertificateId, CertificateId, u64)> {
    let (claims, tag) = token.split_once('.')?;
    let tag = hex::decode(tag).ok()?;
    ring::hmac::verify(key, claims.as_bytes(), &tag).ok()?;
    if claims.len() != 64 + 64 + 16 || !claims.is_ascii() {
        return None;
    }
    let certificate_id = claims[..64].parse().ok()?;
    let claim = claims[64..128].parse().ok()?;
    let expires = u64::from_str_radix(&claims[128..], 16).ok()?;
    Some((certificate_id, claim, expires))
}

fn token_key(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

impl FleetProvisioning {
    /// A service whose new certificates are signed by `ca` (which must be registered, ACTIVE,
    /// in the registry passed to [`handle`](Self::handle)).
    ///
    /// Certificate ownership tokens are signed (HMAC-SHA256) with a key derived from `ca`'s
    /// private key, and carry their certificate, claim certificate and expiry: every service
    /// with the same CA accepts a token any of them issued (the servers of a cluster share
    /// their CA), and a token is used once because RegisterThing takes it only while its
    /// certificate is still PENDING_ACTIVATION and unattached in the (shared) registry. Each
    /// service still counts the tokens it issued for
    /// [`FleetConfig::max_pending_tokens`] and deletes their certificates when they expire
    /// unclaimed.
    pub fn new(ca: Arc<CertificateAuthority>, config: FleetConfig) -> Self {
        let mut material = TOKEN_KEY_CONTEXT.to_vec();
        material.extend_from_slice(ca.private_key_pem().as_bytes());
        let derived = ring::digest::digest(&ring::digest::SHA256, &material);
        let token_signer = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref());
        FleetProvisioning {
            token_signer,
            ca,
            config,
            templates: BTreeMap::new(),
            tokens: HashMap::new(),
            expiry: VecDeque::new(),
            per_claim: HashMap::new(),
            registration_templates: HashMap::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    /// The CA that signs new certificates.
    pub fn certificate_authority(&self) -> &Arc<CertificateAuthority> {
        &self.ca
    }

    /// Adds (or replaces) a fleet provisioning template. It must activate the certificate of
    /// the ownership token: an `AWS::IoT::Certificate` with `CertificateId`.
    pub fn add_template(&mut self, name: &str, template: ProvisioningTemplate) -> Result<()> {
        self.insert_template(name, template, None)
    }

    /// Adds (or replaces) a template guarded by a pre-provisioning hook.
    pub fn add_template_with_hook(
        &mut self,
        name: &str,
        template: ProvisioningTemplate,
        hook: impl PreProvisioningHook,
    ) -> Result<()> {
        self.insert_template(name, template, Some(Arc::new(hook)))
    }

    fn insert_template(
        &mut self,
        name: &str,
        template: ProvisioningTemplate,
        hook: Option<Arc<dyn PreProvisioningHook>>,
    ) -> Result<()> {
        check_template_name(name)?;
        if !template.uses_certificate_id() {
            return Err(Error::Template {
                path: "Resources".into(),
                line: 0,
                column: 0,
                reason: "a fleet provisioning template needs an AWS::IoT::Certificate with \
                         CertificateId (e.g. {\"Ref\": \"AWS::IoT::Certificate::Id\"})"
                    .into(),
            });
        }
        self.templates.insert(
            name.to_owned(),
            Arc::new(RegisteredTemplate { template, hook }),
        );
        Ok(())
    }

    /// Removes a template (deleted or disabled through the API): `RegisterThing` requests that
    /// name it are refused from now on. Ownership tokens already issued stay valid until they
    /// expire; they are not bound to a template. Returns whether it was there.
    pub fn remove_template(&mut self, name: &str) -> bool {
        self.templates.remove(name).is_some()
    }

    /// Whether a template of this name is in service.
    pub fn has_template(&self, name: &str) -> bool {
        self.templates.contains_key(name)
    }

    /// The number of ownership tokens outstanding.
    pub fn pending_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// Handles one PUBLISH from `client` (the certificate it authenticated with) in one call:
    /// [`prepare`](Self::prepare), the hook, [`commit`](Self::commit). `None`: the topic is not
    /// a provisioning request topic, route it elsewhere. Otherwise the replies to publish to
    /// this client (exactly one: `/accepted` or `/rejected`).
    ///
    /// Convenient where nothing else needs the registry meanwhile (tests, tools): with a
    /// pre-provisioning hook it keeps `registry` borrowed for as long as the hook runs (up to
    /// [`HookConfig::timeout`]). A server should call `prepare` and `commit` itself and run the
    /// hook with its locks released.
    pub fn handle<S: RegistryStore>(
        &mut self,
        registry: &mut Registry<S>,
        client: &CertificateId,
        topic: &str,
        payload: &[u8],
        now: SystemTime,
    ) -> Option<Vec<Reply>> {
        match self.prepare(registry, client, topic, payload, now)? {
            Prepared::Replies(replies) => Some(replies),
            Prepared::Register(pending) => {
                let outcome = pending.run_hook();
                Some(self.commit(registry, pending, outcome, now))
            }
        }
    }

    /// The first half of handling a PUBLISH from `client`. `None`: not a provisioning request
    /// topic. CreateKeysAndCertificate and CreateCertificateFromCsr are answered at once
    /// ([`Prepared::Replies`]); so is a RegisterThing that is refused before its hook (bad
    /// payload, unknown template, unknown, expired or foreign ownership token). A RegisterThing
    /// that passes those checks becomes a [`Prepared::Register`]: run its hook with no lock
    /// held, then [`commit`](Self::commit) it. Never runs a hook itself.
    pub fn prepare<S: RegistryStore>(
        &mut self,
        registry: &mut Registry<S>,
        client: &CertificateId,
        topic: &str,
        payload: &[u8],
        now: SystemTime,
    ) -> Option<Prepared> {
        let (operation, format) = parse_topic(topic)?;
        self.expire(registry, now);
        let result = match &operation {
            Operation::CreateKeysAndCertificate => {
                self.create_keys_and_certificate(registry, client, payload, format, now)
            }
            Operation::CreateCertificateFromCsr => {
                self.create_from_csr(registry, client, payload, format, now)
            }
            Operation::RegisterThing { template_name } => {
                match self.prepare_registration(
                    registry,
                    client,
                    template_name,
                    topic,
                    payload,
                    format,
                    now,
                ) {
                    Ok(pending) => return Some(Prepared::Register(pending)),
                    Err(e) => Err(e),
                }
            }
        };
        Some(Prepared::Replies(vec![reply(topic, format, result)]))
    }

    /// The second half of a RegisterThing: checks the ownership token again (it may have been
    /// used, or have expired, while the hook ran: a concurrent request with the same token
    /// commits first and this one is rejected), then applies the template with the hook's
    /// parameter overrides in one registry batch and consumes the token. A hook that denied,
    /// failed or timed out rejects the request; nothing is changed then. Returns the replies
    /// (exactly one).
    pub fn commit<S: RegistryStore>(
        &mut self,
        registry: &mut Registry<S>,
        pending: PendingRegistration,
        outcome: HookOutcome,
        now: SystemTime,
    ) -> Vec<Reply> {
        self.expire(registry, now);
        let result = self.commit_registration(registry, &pending, outcome, now);
        vec![reply(&pending.topic, pending.format, result)]
    }

    /// Deletes the certificates whose ownership tokens expired unclaimed, and forgets the
    /// tokens. Returns the deleted certificate IDs.
    pub fn expire<S: RegistryStore>(
        &mut self,
        registry: &mut Registry<S>,
        now: SystemTime,
    ) -> Vec<CertificateId> {
        let mut deleted = Vec::new();
        while let Some((when, key)) = self.expiry.front().copied() {
            if when > now {
                break;
            }
            self.expiry.pop_front();
            let Some(pending) = self.take_token(&key) else {
                continue;
            };
            let unclaimed = registry
                .certificate(&pending.certificate_id)
                .is_some_and(|c| {
                    c.status == CertificateStatus::PendingActivation
                        && c.things.is_empty()
                        && c.policies.is_empty()
                });
            if unclaimed && registry.delete_certificate(&pending.certificate_id).is_ok() {
                deleted.push(pending.certificate_id);
            }
        }
        deleted
    }

    fn take_token(&mut self, key: &[u8; 32]) -> Option<PendingCertificate> {
        let pending = self.tokens.remove(key)?;
        if let Some(n) = self.per_claim.get_mut(&pending.claim) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_claim.remove(&pending.claim);
            }
        }
        Some(pending)
    }

    fn new_token(
        &mut self,
        certificate_id: CertificateId,
        claim: &CertificateId,
        now: SystemTime,
    ) -> Result<String> {
        let expires = now + self.config.token_ttl;
        let expires_secs = expires
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Error::Generation("a token expiry before 1970".into()))?
            .as_secs();
        let claims = token_claims(&certificate_id, claim, expires_secs);
        let tag = ring::hmac::sign(&self.token_signer, claims.as_bytes());
        let token = format!("{claims}.{}", hex::encode(tag.as_ref()));
        let key = token_key(&token);
        self.tokens.insert(
            key,
            PendingCertificate {
                certificate_id,
                claim: *claim,
            },
        );
        self.expiry.push_back((expires, key));
        *self.per_claim.entry(*claim).or_default() += 1;
        Ok(token)
    }

    fn check_capacity(&self, claim: &CertificateId) -> Result<()> {
        let limit = self.config.max_pending_tokens_per_claim;
        if self.tokens.len() >= self.config.max_pending_tokens
            || self.per_claim.get(claim).copied().unwrap_or(0) >= limit
        {
            return Err(Error::LimitExceeded {
                what: "pending certificate ownership tokens",
                limit: if self.tokens.len() >= self.config.max_pending_tokens {
                    self.config.max_pending_tokens
                } else {
                    limit
                },
            });
        }
        Ok(())
    }

    fn create_keys_and_certificate<S: RegistryStore>(
        &mut self,
        registry: &mut Registry<S>,
        client: &CertificateId,
        payload: &[u8],
        format: PayloadFormat,
        now: SystemTime,
    ) -> Result<Vec<u8>> {
        if !payload.is_empty() {
            let _: EmptyRequest = decode(payload, format, &self.config)?;
        }
        self.check_capacity(client)?;
        let made =
            self.ca
                .create_keys_and_certificate(DEFAULT_COMMON_NAME, self.config.key_type, now)?;
        let id = registry.register_certificate(
            &made.certificate.der,
            CertificateStatus::PendingActivation,
            now,
        )?;
        let token = self.new_token(id, client, now)?;
        encode(
            &KeysAccepted {
                certificate_id: id.to_string(),
                certificate_pem: made.certificate.pem(),
                private_key: &made.private_key_pem,
                certificate_ownership_token: token,
            },
            format,
        )
    }

    fn create_from_csr<S: RegistryStore>(
        &mut self,
        registry: &mut Registry<S>,
        client: &CertificateId,
        payload: &[u8],
        format: PayloadFormat,
        now: SystemTime,
    ) -> Result<Vec<u8>> {
        let request: CsrRequest = decode(payload, format, &self.config)?;
        self.check_capacity(client)?;
        let issued = issue_from_csr(&self.ca, &request.certificate_signing_request, now)?;
        let id = registry.register_certificate(
            &issued.der,
            CertificateStatus::PendingActivation,
            now,
        )?;
        let token = self.new_token(id, client, now)?;
        encode(
            &CsrAccepted {
                certificate_id: id.to_string(),
                certificate_pem: issued.pem(),
                certificate_ownership_token: token,
            },
            format,
        )
    }

    /// The ownership token `token` as presented by `client` at `now`: signed by a service with
    /// this CA, unexpired, issued to `client`, and its certificate still waiting in `registry`
    /// (PENDING_ACTIVATION, attached to nothing: not yet used). Returns the certificate it
    /// provisions.
    fn check_token<S: RegistryStore>(
        &self,
        registry: &Registry<S>,
        token: &str,
        client: &CertificateId,
        now: SystemTime,
    ) -> Result<CertificateId> {
        let unknown = || Error::OwnershipToken("unknown, expired or already used".into());
        let (certificate_id, claim, expires) =
            verify_token(&self.token_signer, token).ok_or_else(unknown)?;
        let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if expires <= now_secs {
            return Err(Error::OwnershipToken("expired".into()));
        }
        if claim != *client {
            return Err(Error::OwnershipToken(
                "issued to another claim certificate".into(),
            ));
        }
        let waiting = registry.certificate(&certificate_id).is_some_and(|c| {
            c.status == CertificateStatus::PendingActivation
                && c.things.is_empty()
                && c.policies.is_empty()
        });
        if !waiting {
            return Err(unknown());
        }
        Ok(certificate_id)
    }

    #[allow(clippy::too_many_arguments)]
    fn prepare_registration<S: RegistryStore>(
        &self,
        registry: &Registry<S>,
        client: &CertificateId,
        template_name: &str,
        topic: &str,
        payload: &[u8],
        format: PayloadFormat,
        now: SystemTime,
    ) -> Result<PendingRegistration> {
        let request: RegisterThingRequest = decode(payload, format, &self.config)?;
        if let Some(name) = &request.template_name
            && name != template_name
        {
            return Err(Error::Payload(
                "templateName does not match the topic's template name".into(),
            ));
        }
        let registered = self
            .templates
            .get(template_name)
            .ok_or_else(|| Error::NotFound {
                kind: "provisioning template",
                id: template_name.chars().take(64).collect(),
            })?;
        let key = token_key(&request.certificate_ownership_token);
        let certificate_id =
            self.check_token(registry, &request.certificate_ownership_token, client, now)?;
        Ok(PendingRegistration {
            topic: topic.to_owned(),
            format,
            template_name: template_name.to_owned(),
            client: *client,
            token: key,
            token_text: request.certificate_ownership_token.clone(),
            certificate_id,
            parameters: request.parameters.unwrap_or_default(),
            registered: Arc::clone(registered),
            hook_config: self.config.hook.clone(),
        })
    }

    fn commit_registration<S: RegistryStore>(
        &mut self,
        registry: &mut Registry<S>,
        pending: &PendingRegistration,
        outcome: HookOutcome,
        now: SystemTime,
    ) -> Result<Vec<u8>> {
        if outcome.token != pending.token {
            return Err(Error::HookRefused(
                "the hook outcome belongs to another request".into(),
            ));
        }
        let overrides = outcome.result?;
        let key = pending.token;
        let certificate_id =
            self.check_token(registry, &pending.token_text, &pending.client, now)?;
        if certificate_id != pending.certificate_id {
            // Unreachable (a token is bound to one certificate for life); checked anyway.
            return Err(Error::OwnershipToken(
                "the token now names another certificate".into(),
            ));
        }
        let mut parameters = pending.parameters.clone();
        parameters.extend(overrides);
        let pseudo = BTreeMap::from([(CERTIFICATE_ID.to_owned(), certificate_id.to_string())]);
        let rendered = pending.registered.template.render(&parameters, &pseudo)?;
        let done = apply(&self.ca, registry, &rendered, Some(certificate_id), now)?;
        if done.certificate_id != Some(certificate_id) {
            // Unreachable with a template accepted by `add_template`, but never leave the token's
            // certificate unclaimed while reporting success.
            return Err(Error::OwnershipToken(
                "the template did not provision the token's certificate".into(),
            ));
        }
        self.take_token(&key);
        encode(
            &RegisterAccepted {
                device_configuration: &done.device_configuration,
                thing_name: done.thing_name.as_deref(),
            },
            pending.format,
        )
    }
}

/// The `/accepted` or `/rejected` reply to a request on `topic`.
fn reply(topic: &str, format: PayloadFormat, result: Result<Vec<u8>>) -> Reply {
    match result {
        Ok(body) => Reply {
            topic: format!("{topic}/accepted"),
            payload: body,
        },
        Err(e) => Reply {
            topic: format!("{topic}/rejected"),
            payload: encode(&Rejection::of(&e), format).unwrap_or_default(),
        },
    }
}

fn decode<T: DeserializeOwned>(
    payload: &[u8],
    format: PayloadFormat,
    config: &FleetConfig,
) -> Result<T> {
    if payload.len() > config.max_payload_len {
        return Err(Error::TooLarge {
            what: "provisioning request payload",
            actual: payload.len(),
            limit: config.max_payload_len,
        });
    }
    match format {
        PayloadFormat::Json => {
            serde_json::from_slice(payload).map_err(|e| Error::Payload(format!("JSON: {e}")))
        }
        PayloadFormat::Cbor => {
            let mut rest: &[u8] = payload;
            let value =
                ciborium::de::from_reader_with_recursion_limit(&mut rest, config.max_cbor_depth)
                    .map_err(|e| Error::Payload(format!("CBOR: {e}")))?;
            if !rest.is_empty() {
                return Err(Error::Payload(format!(
                    "CBOR: {} bytes after the request item (RFC 8949 section 5.1)",
                    rest.len()
                )));
            }
            Ok(value)
        }
    }
}

fn encode<T: Serialize>(value: &T, format: PayloadFormat) -> Result<Vec<u8>> {
    match format {
        PayloadFormat::Json => {
            serde_json::to_vec(value).map_err(|e| Error::Generation(format!("JSON: {e}")))
        }
        PayloadFormat::Cbor => {
            let mut out = Vec::new();
            ciborium::ser::into_writer(value, &mut out)
                .map_err(|e| Error::Generation(format!("CBOR: {e}")))?;
            Ok(out)
        }
    }
}

/// The name under which an inline policy document is created: `thingkit-` and the first 128
/// bits of its SHA-256, so devices provisioned with the same document share one policy.
pub fn inline_policy_name(document: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, document.as_bytes());
    let prefix = digest.as_ref().get(..16).expect("SHA-256 has 32 bytes");
    format!("thingkit-{}", hex::encode(prefix))
}

/// Applies a rendered template to `registry` in one atomic batch. `presented` is the
/// certificate the request proved ownership of (token or JIT): a `CertificateId` source must
/// name exactly it. `now` dates what the template issues, revokes or creates. Nothing is changed
/// if any step fails.
pub fn apply<S: RegistryStore>(
    ca: &CertificateAuthority,
    registry: &mut Registry<S>,
    rendered: &RenderedTemplate,
    presented: Option<CertificateId>,
    now: SystemTime,
) -> Result<Provisioned> {
    registry.batch(|r| {
        let certificate_id = match &rendered.certificate {
            None => None,
            Some(c) => Some(apply_certificate(ca, r, c, presented, now)?),
        };
        let thing_name = match &rendered.thing {
            None => None,
            Some(t) => {
                apply_thing(r, t)?;
                if let Some(id) = &certificate_id {
                    r.attach_thing_principal(&t.name, id, false)?;
                }
                Some(t.name.clone())
            }
        };
        let mut policies = Vec::new();
        if let Some(id) = &certificate_id {
            for p in &rendered.policies {
                let name = match p {
                    RenderedPolicy::PolicyName(name) => name.clone(),
                    RenderedPolicy::PolicyDocument(doc) => {
                        let name = inline_policy_name(doc);
                        match r.policy(&name) {
                            Some(existing)
                                if existing
                                    .default_version()
                                    .is_some_and(|v| v.document.text() == doc) => {}
                            Some(_) => {
                                return Err(Error::conflict(
                                    "policy",
                                    name.clone(),
                                    "it exists with another document",
                                ));
                            }
                            None => r.create_policy(&name, doc, now)?,
                        }
                        name
                    }
                };
                r.attach_policy(&name, &PolicyTarget::Certificate(*id))?;
                policies.push(name);
            }
        }
        Ok(Provisioned {
            thing_name,
            certificate_id,
            policies,
            device_configuration: rendered.device_configuration.clone(),
        })
    })
}

/// Issues a certificate for a CSR (PEM or DER), with the default common name when it has none.
fn issue_from_csr(
    ca: &CertificateAuthority,
    csr_pem: &str,
    now: SystemTime,
) -> Result<crate::authority::IssuedCertificate> {
    let csr = VerifiedCsr::parse(csr_pem.as_bytes(), &ca.profile().csr_limits)?;
    let options = IssueOptions {
        common_name: csr
            .common_name()
            .is_none()
            .then(|| DEFAULT_COMMON_NAME.to_owned()),
        validity_days: None,
    };
    ca.issue_verified(&csr, &options, now)
}

/// Registers, issues or updates the template's certificate. A certificate that already exists
/// and is not the `PENDING_ACTIVATION` certificate this request provisions keeps or changes its
/// status as its `OverrideSettings` say (see the [`crate::template`] docs).
fn apply_certificate<S: RegistryStore>(
    ca: &CertificateAuthority,
    r: &mut Registry<S>,
    c: &RenderedCertificate,
    presented: Option<CertificateId>,
    now: SystemTime,
) -> Result<CertificateId> {
    let id = match &c.source {
        CertificateSource::CertificateId(text) => {
            let id: CertificateId = text.parse()?;
            if Some(id) != presented {
                return Err(Error::OwnershipToken(
                    "the template names another certificate than the one presented".into(),
                ));
            }
            let current = r
                .certificate(&id)
                .ok_or_else(|| Error::NotFound {
                    kind: "certificate",
                    id: id.to_string(),
                })?
                .status;
            if current == CertificateStatus::PendingActivation {
                // The certificate this request provisions (JITP, or the ownership token's).
                r.update_certificate(&id, c.status, now)?;
            } else {
                apply_status_override(r, &id, current, c, now)?;
            }
            id
        }
        CertificateSource::CertificateSigningRequest(pem) => {
            let issued = issue_from_csr(ca, pem, now)?;
            r.register_certificate(&issued.der, c.status, now)?
        }
        CertificateSource::CertificatePem(pem) => {
            let der = crate::pem::decode_if_pem(pem.as_bytes(), &["CERTIFICATE"])?;
            let id = CertificateId::of_der(&der);
            match r.certificate(&id).map(|existing| existing.status) {
                Some(current) => apply_status_override(r, &id, current, c, now)?,
                None => {
                    r.register_certificate(&der, c.status, now)?;
                }
            }
            id
        }
    };
    if let Some(ca_pem) = &c.ca_certificate_pem {
        let ca_der = crate::pem::decode_if_pem(ca_pem.as_bytes(), &["CERTIFICATE"])?;
        let ca_id = CertificateId::of_der(&ca_der);
        if r.ca_certificate(&ca_id).is_none() {
            return Err(Error::NotFound {
                kind: "registered CA certificate (CACertificatePem)",
                id: ca_id.to_string(),
            });
        }
        if r.certificate(&id).and_then(|x| x.ca) != Some(ca_id) {
            return Err(Error::conflict(
                "certificate",
                id.to_string(),
                format!("not signed by the CA given as CACertificatePem ({ca_id})"),
            ));
        }
    }
    Ok(id)
}

/// The template's status for a certificate that already exists, per `OverrideSettings.Status`.
fn apply_status_override<S: RegistryStore>(
    r: &mut Registry<S>,
    id: &CertificateId,
    current: CertificateStatus,
    c: &RenderedCertificate,
    now: SystemTime,
) -> Result<()> {
    if current == c.status {
        return Ok(());
    }
    match c.override_settings.status {
        Override::DoNothing => Ok(()),
        Override::Replace | Override::Merge => r.update_certificate(id, c.status, now),
        Override::Fail => Err(Error::conflict(
            "certificate",
            id.to_string(),
            format!(
                "exists with status {current} and OverrideSettings says FAIL (AWS ResourceConflictsException)"
            ),
        )),
    }
}

fn apply_thing<S: RegistryStore>(
    r: &mut Registry<S>,
    t: &crate::template::RenderedThing,
) -> Result<()> {
    let attrs: Vec<(&str, &str)> = t
        .attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let Some(existing) = r.thing(&t.name).cloned() else {
        r.create_thing(&t.name, t.thing_type.as_deref(), &attrs)?;
        for g in &t.thing_groups {
            r.add_thing_to_group(&t.name, g)?;
        }
        return Ok(());
    };
    let conflict = |what: &str| {
        Err(Error::conflict(
            "thing",
            t.name.clone(),
            format!("exists with another {what} and OverrideSettings says FAIL"),
        ))
    };
    let o = t.override_settings;
    // Thing type.
    if existing.thing_type.as_deref() != t.thing_type.as_deref() {
        match o.thing_type {
            Override::DoNothing => {}
            Override::Fail => return conflict("thing type"),
            Override::Replace | Override::Merge => {
                r.update_thing(&t.name, Some(t.thing_type.as_deref()), &[])?;
            }
        }
    }
    // Attributes.
    let same_attrs = existing.attributes.len() == t.attributes.len()
        && t.attributes
            .iter()
            .all(|(k, v)| existing.attributes.get(k.as_str()).map(|x| &**x) == Some(v.as_str()));
    if !same_attrs {
        let mut changes: Vec<(&str, Option<&str>)> = Vec::new();
        match o.attributes {
            Override::DoNothing => {}
            Override::Fail => return conflict("attribute payload"),
            Override::Merge => changes.extend(attrs.iter().map(|(k, v)| (*k, Some(*v)))),
            Override::Replace => {
                for k in existing.attributes.keys() {
                    if !t.attributes.contains_key(&**k) {
                        changes.push((k, None));
                    }
                }
                changes.extend(attrs.iter().map(|(k, v)| (*k, Some(*v))));
            }
        }
        if !changes.is_empty() {
            r.update_thing(&t.name, None, &changes)?;
        }
    }
    // Groups.
    let mut want: Vec<&str> = t.thing_groups.iter().map(String::as_str).collect();
    want.sort_unstable();
    want.dedup();
    let mut have: Vec<&str> = existing.groups.iter().map(|g| &**g).collect();
    have.sort_unstable();
    if want != have {
        match o.thing_groups {
            Override::DoNothing => {}
            Override::Fail => return conflict("set of thing groups"),
            Override::Merge | Override::Replace => {
                if o.thing_groups == Override::Replace {
                    for g in &have {
                        if !want.contains(g) {
                            r.remove_thing_from_group(&t.name, g)?;
                        }
                    }
                }
                for g in &want {
                    if !have.contains(g) {
                        r.add_thing_to_group(&t.name, g)?;
                    }
                }
            }
        }
    }
    Ok(())
}
