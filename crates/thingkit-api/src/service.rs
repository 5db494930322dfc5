//! [`ControlPlane`]: one HTTP request in (method, raw path and query, headers, body, the time),
//! one response out, with the audit record of the call. No sockets: the `server` feature (or a
//! test) carries the bytes.
//!
//! A request goes through, in order: SigV4 verification against the access keys
//! ([`crate::sigv4`], [`crate::keys`]); routing by method and path ([`crate::model`]); binding
//! and validation of its input against botocore's model; authorization of `iot:<Operation>` on
//! the operation's resource by the key's identity policy ([`crate::identity`]); the operation
//! itself (the `ops` modules, one per AWS resource), which goes through the registry. Any refusal stops there and
//! changes nothing.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;
use thingkit_policy::ArnPrefix;
use thingkit_provision::{CertificateAuthority, FleetProvisioning, Registry, RegistryStore};

use crate::error::{ApiError, ApiResult};
use crate::keys::KeyStore;
use crate::model::{Input, Model, Service};
use crate::templates::TemplateStore;

/// An HTTP request as the server received it.
#[derive(Clone, Debug, Default)]
pub struct ApiRequest {
    /// The method (`GET`, `POST`, ...).
    pub method: String,
    /// The path as sent, percent-encoded (`/things/my%3Athing`).
    pub path: String,
    /// The query string as sent, without `?` (may be empty).
    pub query: String,
    /// The headers, names lower-case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl ApiRequest {
    /// The first header named `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(h, _)| h == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP response to send.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiResponse {
    /// The status.
    pub status: u16,
    /// Headers (`content-type`, `x-amzn-RequestId`, `x-amzn-ErrorType` on errors).
    pub headers: Vec<(&'static str, String)>,
    /// The body (JSON).
    pub body: Vec<u8>,
}

/// What the audit log records of one call: who, what, on what, and how it ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditRecord {
    /// When the request arrived (RFC 3339).
    pub time: String,
    /// The request ID sent back in `x-amzn-RequestId`.
    pub request_id: String,
    /// The access key that signed it, once the signature verified (else `None`).
    pub access_key_id: Option<String>,
    /// The operation, once routed.
    pub operation: Option<String>,
    /// The resource ARN the call was authorized on, once known.
    pub resource: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// The error code, if it failed.
    pub error: Option<String>,
}

/// Who is calling: the verified access key.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The access key ID.
    pub access_key_id: String,
}

/// A message published through the data-plane `Publish` operation.
#[derive(Clone, Debug, PartialEq)]
pub struct DataPublish {
    /// The topic.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// 0 or 1.
    pub qos: u8,
    /// Retain it.
    pub retain: bool,
    /// MQTT 5 properties (content type, response topic, ...) as the request gave them.
    pub properties: DataProperties,
}

/// The MQTT 5 properties of a data-plane publish.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DataProperties {
    /// Content type.
    pub content_type: Option<String>,
    /// Response topic.
    pub response_topic: Option<String>,
    /// Correlation data.
    pub correlation_data: Option<Vec<u8>>,
    /// Message expiry in seconds.
    pub message_expiry: Option<u32>,
    /// Payload format indicator (`UTF8_DATA` is 1).
    pub payload_format_utf8: bool,
    /// User properties.
    pub user_properties: Vec<(String, String)>,
}

/// Where data-plane publishes go: the broker (the server implements it on its handle).
pub trait Publisher: Send + Sync {
    /// Routes one message to the subscribers; `Ok` once it is accepted (durably, for a
    /// QoS 1 message to persistent sessions, when the broker has a store). An invalid topic is
    /// `InvalidRequestException`; a broker that cannot take it answers its AWS error.
    fn publish(&self, message: DataPublish) -> ApiResult<()>;
}

/// The device shadow service, for the `iot-data` shadow operations over HTTPS (the server
/// implements it on the broker's shadow service, so both share one engine and store).
pub trait ShadowBackend: Send + Sync {
    /// Handles one request as if published to `topic` (`$aws/things/T/shadow[/name/N]/get`,
    /// `/update` or `/delete`) at `now_unix_secs`: the messages the shadow service publishes,
    /// in order (`(topic, payload)`; the `/accepted` or `/rejected` answer among them), after
    /// any change is stored. `None` when `topic` is not a valid shadow request topic.
    fn request(
        &self,
        topic: &str,
        payload: &[u8],
        now_unix_secs: u64,
    ) -> Option<Vec<(String, Vec<u8>)>>;

    /// The names of `thing`'s named shadows, sorted.
    ///
    /// # Errors
    ///
    /// The store failed; the message says how.
    fn list_named(&self, thing: &str) -> Result<Vec<String>, String>;
}

/// Hostnames `DescribeEndpoint` answers.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    /// `iot:Data-ATS` (and `iot:Data`): the MQTT endpoint, `host` or `host:port`.
    pub data: String,
    /// `iot:CredentialProvider` and `iot:Jobs`: the HTTPS API endpoint.
    pub api: String,
}

/// Limits of the API.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ApiLimits {
    /// The largest request body accepted (AWS IoT's largest inputs are a 10 KB template body
    /// and a 128 KB publish payload).
    pub max_body_len: usize,
    /// How far a request's `X-Amz-Date` may be from the server's clock (AWS: 5 minutes).
    pub max_clock_skew: Duration,
    /// `maxResults` when a list call gives none.
    pub default_page_size: usize,
    /// The most topic rules kept (AWS's default quota: 1,000 per account and region).
    pub max_topic_rules: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_body_len: 256 * 1024,
            max_clock_skew: Duration::from_secs(5 * 60),
            default_page_size: 25,
            max_topic_rules: 1000,
        }
    }
}

/// The control plane over one registry.
pub struct ControlPlane<S: RegistryStore> {
    pub(crate) model: Model,
    pub(crate) handlers: Vec<(&'static str, crate::ops::Handler<S>)>,
    /// The registry every operation goes through (shared with the broker).
    pub registry: Arc<RwLock<Registry<S>>>,
    /// The CA that signs `CreateKeysAndCertificate` and `CreateCertificateFromCsr`.
    pub ca: Option<Arc<CertificateAuthority>>,
    /// The ARN prefix (partition, region, account) of resources.
    pub arn: ArnPrefix,
    /// What `DescribeEndpoint` answers.
    pub endpoints: Endpoints,
    /// Access keys and their identity policies.
    pub keys: Arc<KeyStore>,
    /// Provisioning templates (persisted) and the live fleet-provisioning service they feed.
    pub templates: Option<Arc<TemplateStore>>,
    /// The live fleet-provisioning service (the broker's), which API-created templates join.
    pub fleet: Option<Arc<Mutex<FleetProvisioning>>>,
    /// Where `Publish` goes.
    pub publisher: Option<Arc<dyn Publisher>>,
    /// The device shadows `GetThingShadow` and its siblings read and write.
    pub shadows: Option<Arc<dyn ShadowBackend>>,
    /// The jobs engine the job operations drive (shared with the broker, which answers the
    /// devices' jobs topics from it). Without one, the job operations answer
    /// `ServiceUnavailableException`.
    pub jobs: Option<Arc<Mutex<thingkit_jobs::DynJobs>>>,
    /// Job templates and the changes made to jobs after creation.
    pub job_store: Arc<crate::job_store::JobStore>,
    /// Topic rules: their store and the rules engine they drive (in memory, driving nothing,
    /// by default).
    pub topic_rules: crate::topic_rule::TopicRules,
    /// Device Defender: the audit store, what audits read besides the registry, and the
    /// running detector (in memory, reading nothing, driving nothing, by default).
    pub audit: Audit,
    /// Limits.
    pub limits: ApiLimits,
    next_request: std::sync::atomic::AtomicU64,
}

impl<S: RegistryStore> std::fmt::Debug for ControlPlane<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("arn", &self.arn)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

/// Device Defender's parts of the control plane ([`ControlPlane::with_audit`]).
#[derive(Clone)]
pub struct Audit {
    /// Audit tasks, findings, configuration, schedules, suppressions, security profiles.
    pub store: Arc<crate::audit_store::AuditStore>,
    /// What an audit reads besides the registry.
    pub sources: Arc<dyn crate::audit::AuditSources>,
    /// The running detector.
    pub detect: Arc<dyn crate::audit::DetectHook>,
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            store: Arc::new(crate::audit_store::AuditStore::in_memory()),
            sources: Arc::new(crate::audit::NoSources),
            detect: Arc::new(crate::audit::NoDetect),
        }
    }
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// What an operation's handler is given.
pub struct Ctx<'a, S: RegistryStore> {
    /// The control plane (registry, CA, ARN prefix, ...).
    pub plane: &'a ControlPlane<S>,
    /// The caller.
    pub caller: &'a Caller,
    /// The request's time.
    pub now: SystemTime,
    /// The request's headers (lower-case names), for the rare operation that reads one the
    /// model does not bind.
    pub headers: &'a [(String, String)],
}

impl<S: RegistryStore> Ctx<'_, S> {
    /// The full ARN of `resource` (`thing/NAME`, `cert/ID`, ...).
    pub fn arn(&self, resource: &str) -> String {
        self.plane.arn.arn(resource)
    }

    /// The request time in seconds since the epoch (AWS's timestamp format in REST-JSON).
    pub fn epoch(&self) -> i64 {
        self.now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    /// The registry, for reading.
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry<S>> {
        self.plane
            .registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The registry, for a change.
    pub fn write(&self) -> std::sync::RwLockWriteGuard<'_, Registry<S>> {
        self.plane
            .registry
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// `maxResults`, or the default page size.
    pub fn page_size(&self, input: &Input) -> usize {
        input
            .int("maxResults")
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n > 0)
            .unwrap_or(self.plane.limits.default_page_size)
    }
}

impl<S: RegistryStore> ControlPlane<S> {
    /// A control plane over `registry`, with resources named under `arn` and access keys from
    /// `keys`. The CA, endpoints, templates and publisher are set with the `with_` methods.
    pub fn new(registry: Arc<RwLock<Registry<S>>>, arn: ArnPrefix, keys: Arc<KeyStore>) -> Self {
        ControlPlane {
            model: Model::embedded(),
            handlers: crate::ops::handlers(),
            registry,
            ca: None,
            arn,
            endpoints: Endpoints::default(),
            keys,
            templates: None,
            fleet: None,
            publisher: None,
            shadows: None,
            jobs: None,
            job_store: Arc::new(crate::job_store::JobStore::in_memory()),
            topic_rules: crate::topic_rule::TopicRules::default(),
            audit: Audit::default(),
            limits: ApiLimits::default(),
            next_request: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Sets the CA that signs the certificates the API creates.
    pub fn with_ca(mut self, ca: Option<Arc<CertificateAuthority>>) -> Self {
        self.ca = ca;
        self
    }

    /// Sets what `DescribeEndpoint` answers.
    pub fn with_endpoints(mut self, endpoints: Endpoints) -> Self {
        self.endpoints = endpoints;
        self
    }

    /// Sets the provisioning-template store and the live fleet-provisioning service, and adds
    /// the store's enabled fleet-provisioning templates to the service
    /// ([`TemplateStore::install`]; a stored template whose body no longer parses stays
    /// unserved, as `DescribeProvisioningTemplate` still shows it).
    pub fn with_templates(
        mut self,
        templates: Option<Arc<TemplateStore>>,
        fleet: Option<Arc<Mutex<FleetProvisioning>>>,
    ) -> Self {
        if let (Some(store), Some(fleet)) = (&templates, &fleet) {
            let mut fleet = fleet.lock().unwrap_or_else(|p| p.into_inner());
            // Skipped templates are reported by `install` for callers that want them; here
            // they simply stay unserved.
            let _skipped = store.install(&mut fleet);
        }
        self.templates = templates;
        self.fleet = fleet;
        self
    }

    /// Sets where `Publish` goes.
    pub fn with_publisher(mut self, publisher: Option<Arc<dyn Publisher>>) -> Self {
        self.publisher = publisher;
        self
    }

    /// Sets the device shadow service of the `iot-data` shadow operations.
    pub fn with_shadows(mut self, shadows: Option<Arc<dyn ShadowBackend>>) -> Self {
        self.shadows = shadows;
        self
    }

    /// Sets the jobs engine of the job operations (`CreateJob`, `DescribeJob`, ...). Its
    /// notifications (`$aws/things/T/jobs/notify`, `/notify-next`) go to the publisher set by
    /// [`ControlPlane::with_publisher`], QoS 1; without a publisher they are dropped.
    pub fn with_jobs(mut self, jobs: Option<Arc<Mutex<thingkit_jobs::DynJobs>>>) -> Self {
        self.jobs = jobs;
        self
    }

    /// Sets the store of job templates (in memory by default).
    pub fn with_job_store(mut self, store: Arc<crate::job_store::JobStore>) -> Self {
        self.job_store = store;
        self
    }

    /// Sets the store of topic rules and the rules engine they drive: a change is checked,
    /// handed to `hook` (a disabled rule is removed from it, an enabled one upserted), then
    /// stored. Stored rules are not handed to the engine here: the server calls
    /// [`crate::topic_rule::TopicRules::install`] at startup.
    pub fn with_topic_rules(
        mut self,
        store: Arc<dyn crate::topic_rule::TopicRuleStore>,
        hook: Option<Arc<dyn crate::topic_rule::TopicRuleHook>>,
    ) -> Self {
        self.topic_rules = crate::topic_rule::TopicRules::new(store, hook);
        self
    }

    /// Sets the Device Defender store (audit tasks and findings, the account's audit
    /// configuration, scheduled audits, suppressions, security profiles), what an audit reads
    /// besides the registry, and the detector the security-profile operations drive. Stored
    /// profiles are not handed to the detector here: the server reads
    /// [`crate::audit_store::AuditStore::snapshot`] at startup.
    pub fn with_audit(
        mut self,
        store: Arc<crate::audit_store::AuditStore>,
        sources: Arc<dyn crate::audit::AuditSources>,
        detect: Arc<dyn crate::audit::DetectHook>,
    ) -> Self {
        self.audit = Audit {
            store,
            sources,
            detect,
        };
        self
    }

    /// Hands the stored security profiles, with their targets, to the detector
    /// ([`crate::audit::DetectHook::profiles_changed`]): the server calls it once at start-up;
    /// afterwards every change through the API does.
    pub fn sync_detector(&self) {
        let profiles = self
            .audit
            .store
            .read(crate::ops::security_profiles::profiles_in_force);
        self.audit.detect.profiles_changed(&profiles);
    }

    /// Runs the scheduled audits that are due at `now` (each on the first UTC day its
    /// `frequency`, `dayOfWeek` or `dayOfMonth` names after its creation or its last run;
    /// BIWEEKLY at least 14 days after the last run): the IDs of the tasks run. The server
    /// calls it once a minute.
    ///
    /// # Errors
    ///
    /// The registry or the store failed; the audits run before the failure are kept.
    pub fn run_scheduled_audits(&self, now: SystemTime) -> ApiResult<Vec<String>> {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let due: Vec<_> = self.audit.store.read(|r| {
            r.scheduled_audits
                .values()
                .filter(|a| crate::ops::audits::next_due(a).is_some_and(|t| t <= now))
                .cloned()
                .collect()
        });
        let mut ran = Vec::new();
        for audit in due {
            let checks: Vec<thingkit_audit::CheckName> = audit
                .target_check_names
                .iter()
                .filter_map(|n| thingkit_audit::CheckName::from_name(n))
                .collect();
            ran.push(crate::ops::audits::run_task(
                self,
                &checks,
                Some(&audit),
                now,
            )?);
        }
        Ok(ran)
    }

    /// Sets the limits.
    pub fn with_limits(mut self, limits: ApiLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The service model in use.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Answers one request at `now`. Never panics on any input; every refusal is an AWS error.
    pub fn handle(&self, request: &ApiRequest, now: SystemTime) -> (ApiResponse, AuditRecord) {
        let n = self
            .next_request
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let request_id = request_id(now, n);
        let mut audit = AuditRecord {
            time: rfc3339(now),
            request_id: request_id.clone(),
            access_key_id: None,
            operation: None,
            resource: None,
            status: 0,
            error: None,
        };
        let result = self.answer(request, now, &mut audit);
        let (status, body, error) = match result {
            Ok((status, body)) => (status, body, None),
            Err(e) => (e.status, Some(e.body()), Some(e.code)),
        };
        let mut headers = vec![
            ("content-type", "application/json".to_string()),
            ("x-amzn-RequestId", request_id),
        ];
        if let Some(code) = error {
            headers.push(("x-amzn-ErrorType", code.to_string()));
        }
        audit.status = status;
        audit.error = error.map(str::to_string);
        let body = match body {
            // A blob payload output (a shadow document): the body as it is.
            None => Vec::new(),
            Some(Value::String(raw)) if error.is_none() => raw.into_bytes(),
            Some(v) => serde_json::to_vec(&v).unwrap_or_else(|_| b"{}".to_vec()),
        };
        (
            ApiResponse {
                status,
                headers,
                body,
            },
            audit,
        )
    }

    fn answer(
        &self,
        request: &ApiRequest,
        now: SystemTime,
        audit: &mut AuditRecord,
    ) -> ApiResult<(u16, Option<Value>)> {
        if request.body.len() > self.limits.max_body_len {
            return Err(ApiError::too_large(format!(
                "the body is {} bytes, more than the limit of {}",
                request.body.len(),
                self.limits.max_body_len
            )));
        }
        // 1. Who: the signature, before anything of the request is interpreted.
        let verified = crate::sigv4::verify(
            &crate::sigv4::SignedRequest {
                method: &request.method,
                path: &request.path,
                query: &request.query,
                headers: &request.headers,
                body: &request.body,
            },
            |id| self.keys.secret(id),
            now,
            self.limits.max_clock_skew,
        )?;
        audit.access_key_id = Some(verified.access_key_id.clone());
        let caller = Caller {
            access_key_id: verified.access_key_id.clone(),
        };
        // 2. What: the operation, and its input as the model describes it.
        let matched = self.model.route(&request.method, &request.path)?;
        let op = matched.operation;
        audit.operation = Some(op.name.clone());
        let region = self.arn.as_str().split(':').nth(3).unwrap_or_default();
        if verified.region != region {
            return Err(ApiError::invalid_signature(format!(
                "Credential should be scoped to a valid region. The region of this server is '{region}'."
            )));
        }
        if verified.service != op.service.signing_name() {
            return Err(ApiError::invalid_signature(format!(
                "Credential should be scoped to correct service: '{}'. ",
                op.service.signing_name()
            )));
        }
        let input = self
            .model
            .bind(&matched, &request.query, &request.headers, &request.body)?;
        // 3. May they: `iot:<Operation>` on its resource, by the key's identity policy.
        let (action, resource) = crate::ops::authorization(&op.name, op.service, &input, &self.arn);
        audit.resource = Some(resource.clone());
        crate::identity::authorize(
            &self.keys,
            &caller.access_key_id,
            &action,
            &resource,
            &self.arn,
        )?;
        // 4. Do it.
        let handler = self
            .handlers
            .iter()
            .find(|(name, _)| *name == op.name)
            .map(|(_, h)| *h)
            .ok_or_else(|| {
                ApiError::new(
                    "NotImplementedException",
                    501,
                    format!("{} is not implemented by thingkit", op.name),
                )
            })?;
        let ctx = Ctx {
            plane: self,
            caller: &caller,
            now,
            headers: &request.headers,
        };
        let output = handler(&ctx, &input)?;
        if !self.model.raw_output(op) && output.is_string() {
            return Err(ApiError::internal(format!(
                "{}: a raw body for a JSON output",
                op.name
            )));
        }
        Ok((op.status, Some(output)))
    }

    /// Runs `operation` with `input`, skipping signature and identity checks: the in-process
    /// path tests and embedders use (the same validation and handlers as over HTTP).
    pub fn call(&self, operation: &str, input: Input, now: SystemTime) -> ApiResult<Value> {
        let op = self
            .model
            .operation(operation)
            .ok_or_else(|| ApiError::unknown_operation(operation.to_string()))?;
        self.model.check(op, &input)?;
        let handler = self
            .handlers
            .iter()
            .find(|(name, _)| *name == operation)
            .map(|(_, h)| *h)
            .ok_or_else(|| ApiError::unknown_operation(operation.to_string()))?;
        let caller = Caller {
            access_key_id: "in-process".into(),
        };
        let ctx = Ctx {
            plane: self,
            caller: &caller,
            now,
            headers: &[],
        };
        handler(&ctx, &input)
    }
}

/// A request ID in AWS's UUID shape: a digest of the time, the request's number in this
/// process and the process's address-space layout, so IDs do not reveal how many requests came
/// before and differ between processes.
fn request_id(now: SystemTime, n: u64) -> String {
    let t = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let salt = request_id as fn(SystemTime, u64) -> String as usize;
    uuid_of(&format!("{t}:{n}:{salt}:{}", std::process::id()))
}

/// A version 4 / RFC 9562 variant UUID (AWS's ID shape) from the SHA-256 of `text`.
pub(crate) fn uuid_of(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut b = [0u8; 16];
    for (dst, src) in b.iter_mut().zip(digest.as_ref()) {
        *dst = *src;
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    // 32 hex digits: the slices are in range.
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// RFC 3339 in UTC, seconds precision.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Which service a request's operation belongs to, for the signing name check.
pub fn service_of(model: &Model, method: &str, path: &str) -> Option<Service> {
    model.route(method, path).ok().map(|m| m.operation.service)
}
