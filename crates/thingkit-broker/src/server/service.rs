//! Topic services: broker-served topics (fleet provisioning, revocation, firmware jobs, and
//! later shadows and jobs) plugged in behind one trait instead of hard-coded in the PUBLISH
//! path.

use std::sync::Arc;

use thingkit_firmware::Verifier;
use thingkit_mqtt::{ReasonCode, TopicFilter, TopicName};
use thingkit_provision::{CertificateId, is_provisioning_topic};

use super::{Directory, FIRMWARE_TOPIC_PREFIX, FIRMWARE_TOPIC_SUFFIX, REVOKE_TOPIC};
use crate::Message;

/// A request to a [`TopicService`]: a PUBLISH on a topic it claims, already authorized by the
/// client's policies (`iot:Publish`) and metered.
#[derive(Debug)]
#[non_exhaustive]
pub struct ServiceRequest<'a> {
    /// The message as published.
    pub message: &'a Message,
    /// The publishing client's ID.
    pub client_id: &'a str,
    /// The certificate the client authenticated with.
    pub certificate: &'a CertificateId,
}

/// A message a service sends to the requesting client only (for example
/// `.../accepted` or `.../rejected`), at the request's QoS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceReply {
    /// The topic.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
}

/// What the broker does with the request after the service handled it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Disposition {
    /// Consumed: not routed to subscribers.
    Consume,
    /// Routed to subscribers like any PUBLISH, with the RETAIN flag set when `retain` is
    /// true (a firmware job is kept for devices that connect later).
    Route {
        /// Whether the broker stores it as the topic's retained message.
        retain: bool,
    },
}

/// A service's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceResponse {
    /// The PUBACK reason code (MQTT 5; MQTT 3.1.1 gets a plain PUBACK).
    pub code: ReasonCode,
    /// The PUBACK reason string (MQTT 5).
    pub reason: Option<String>,
    /// Messages for the requester alone.
    pub replies: Vec<ServiceReply>,
    /// Messages published to their topics' subscribers, as from the broker (no publisher: No
    /// Local does not apply; each subscriber's `iot:Receive` decides), at QoS 1, after the
    /// request is answered — how AWS services answer (a shadow's `.../update/accepted`,
    /// `.../update/delta`, `.../update/documents` reach every client subscribed to them,
    /// the requester included when it is).
    pub publishes: Vec<ServiceReply>,
    /// Whether the request is also routed.
    pub disposition: Disposition,
}

impl ServiceResponse {
    /// Accepted and consumed, with `replies` for the requester.
    pub fn consumed(replies: Vec<ServiceReply>) -> Self {
        ServiceResponse {
            code: ReasonCode::SUCCESS,
            reason: None,
            replies,
            publishes: Vec::new(),
            disposition: Disposition::Consume,
        }
    }

    /// Refused with `code` and `reason` (MQTT 5 PUBACK), not routed.
    pub fn refused(code: ReasonCode, reason: impl Into<String>) -> Self {
        ServiceResponse {
            code,
            reason: Some(reason.into()),
            replies: Vec::new(),
            publishes: Vec::new(),
            disposition: Disposition::Consume,
        }
    }

    /// Accepted and consumed; `publishes` go to their topics' subscribers
    /// ([`ServiceResponse::publishes`]).
    pub fn published(publishes: Vec<ServiceReply>) -> Self {
        ServiceResponse {
            code: ReasonCode::SUCCESS,
            reason: None,
            replies: Vec::new(),
            publishes,
            disposition: Disposition::Consume,
        }
    }

    /// Accepted and routed to subscribers (retained when `retain`).
    pub fn routed(retain: bool) -> Self {
        ServiceResponse {
            code: ReasonCode::SUCCESS,
            reason: None,
            replies: Vec::new(),
            publishes: Vec::new(),
            disposition: Disposition::Route { retain },
        }
    }
}

/// A broker-served topic namespace. The broker sends it every PUBLISH on the topic filters it
/// claims, after authorization and metering, and answers the client with its
/// [`ServiceResponse`]; nothing is routed unless the response says so.
///
/// A service that may block (signs certificates, writes the registry, calls a hook) says so in
/// [`TopicService::blocking`], and the broker calls it on the blocking pool, never on a
/// connection's runtime thread. A service that fails (panics) is answered for by the broker:
/// MQTT 5 PUBACK 0x80 Unspecified error plus whatever [`TopicService::failure_replies`] gives,
/// and the request is never routed (fail closed).
pub trait TopicService: Send + Sync + 'static {
    /// A name for logs.
    fn name(&self) -> &'static str;
    /// The topic filters it claims. The first service whose filter matches a topic serves it.
    fn filters(&self) -> Vec<TopicFilter>;
    /// Whether [`TopicService::handle`] may block (default false).
    fn blocking(&self) -> bool {
        false
    }
    /// Answers one request.
    fn handle(&self, request: &ServiceRequest<'_>) -> ServiceResponse;
    /// Answers a message published from inside the broker on a topic this service claims: a
    /// topic rule's republish action (AWS lets a rule republish to a shadow's `update` topic,
    /// which updates the shadow). There is no requester: the response's `replies` are dropped,
    /// its `publishes` go to subscribers. `None` (the default) means the service does not take
    /// such messages and the republish fails (AWS does not support republishing to the
    /// reserved job topics, for one).
    fn handle_internal(&self, message: &Message) -> Option<ServiceResponse> {
        let _ = message;
        None
    }
    /// What the requester is told when [`TopicService::handle`] failed (panicked or was
    /// cancelled); default nothing beyond the PUBACK.
    fn failure_replies(&self, request: &ServiceRequest<'_>) -> Vec<ServiceReply> {
        let _ = request;
        Vec::new()
    }
}

/// The services of a broker, and the filters each claims.
#[derive(Default, Clone)]
pub(crate) struct Services {
    entries: Vec<(TopicFilter, Arc<dyn TopicService>)>,
}

impl Services {
    pub(crate) fn add(&mut self, service: Arc<dyn TopicService>) {
        for filter in service.filters() {
            self.entries.push((filter, service.clone()));
        }
    }

    /// The service claiming `topic`, if any.
    pub(crate) fn find(&self, topic: &TopicName) -> Option<&Arc<dyn TopicService>> {
        self.entries
            .iter()
            .find(|(filter, _)| filter.matches(topic))
            .map(|(_, s)| s)
    }
}

pub(crate) fn filter(text: &str) -> TopicFilter {
    TopicFilter::new(text).expect("the services' filters are valid literals")
}

/// Fleet provisioning by claim (`$aws/certificates/create/...`,
/// `$aws/certificates/create-from-csr/...`, `$aws/provisioning-templates/{name}/provision/...`)
/// through the [`Directory`]. Blocking: it signs certificates, writes the registry and may wait
/// for a pre-provisioning hook.
pub struct FleetProvisioningService {
    directory: Arc<dyn Directory>,
}

impl FleetProvisioningService {
    /// Provisioning answered by `directory` ([`Directory::provision`]).
    pub fn new(directory: Arc<dyn Directory>) -> Self {
        FleetProvisioningService { directory }
    }
}

impl TopicService for FleetProvisioningService {
    fn name(&self) -> &'static str {
        "fleet provisioning"
    }

    fn filters(&self) -> Vec<TopicFilter> {
        vec![
            filter("$aws/certificates/create/+"),
            filter("$aws/certificates/create-from-csr/+"),
            filter("$aws/provisioning-templates/+/provision/+"),
        ]
    }

    fn blocking(&self) -> bool {
        true
    }

    fn handle(&self, request: &ServiceRequest<'_>) -> ServiceResponse {
        let topic = request.message.topic.as_str();
        if !is_provisioning_topic(topic) {
            // A topic under the filters that is not a request (e.g. `.../json/accepted` sent
            // by a client): routed like telemetry, as AWS does for its own reply topics.
            return ServiceResponse::routed(request.message.retain);
        }
        match self
            .directory
            .provision(request.certificate, topic, &request.message.payload)
        {
            Some(replies) => ServiceResponse::consumed(
                replies
                    .into_iter()
                    .map(|r| ServiceReply {
                        topic: r.topic,
                        payload: r.payload,
                    })
                    .collect(),
            ),
            // Fleet provisioning is off: the topic is an ordinary one.
            None => ServiceResponse::routed(request.message.retain),
        }
    }

    /// `.../rejected` with AWS's error shape (`statusCode` 500, `errorCode`
    /// `InternalFailure`), for requests in JSON; CBOR requests get only the PUBACK.
    fn failure_replies(&self, request: &ServiceRequest<'_>) -> Vec<ServiceReply> {
        let topic = request.message.topic.as_str();
        if !is_provisioning_topic(topic) || !topic.ends_with("/json") {
            return Vec::new();
        }
        let payload = serde_json::json!({
            "statusCode": 500,
            "errorCode": "InternalFailure",
            "errorMessage": "the provisioning request failed inside the broker",
        });
        vec![ServiceReply {
            topic: format!("{topic}/rejected"),
            payload: payload.to_string().into_bytes(),
        }]
    }
}

/// The operator's revocation topic ([`REVOKE_TOPIC`]): the payload is a certificate ID; the
/// certificate is set REVOKED in the registry, which disconnects its devices.
pub struct RevocationService {
    directory: Arc<dyn Directory>,
}

impl RevocationService {
    /// Revocation through `directory` ([`Directory::revoke`]).
    pub fn new(directory: Arc<dyn Directory>) -> Self {
        RevocationService { directory }
    }
}

impl TopicService for RevocationService {
    fn name(&self) -> &'static str {
        "revocation"
    }

    fn filters(&self) -> Vec<TopicFilter> {
        vec![filter(REVOKE_TOPIC)]
    }

    fn blocking(&self) -> bool {
        true // writes the registry
    }

    fn handle(&self, request: &ServiceRequest<'_>) -> ServiceResponse {
        let result = std::str::from_utf8(&request.message.payload)
            .map_err(|e| e.to_string())
            .and_then(|s| s.trim().parse::<CertificateId>().map_err(|e| e.to_string()))
            .and_then(|id| self.directory.revoke(&id).map(|()| id));
        match result {
            Ok(id) => {
                tracing::warn!(operator = request.client_id, certificate = %id, "certificate revoked by the operator");
                ServiceResponse::consumed(Vec::new())
            }
            Err(e) => {
                tracing::warn!(operator = request.client_id, error = %e, "revocation refused");
                ServiceResponse::refused(ReasonCode::PAYLOAD_FORMAT_INVALID, e)
            }
        }
    }
}

/// Firmware jobs: a SUIT envelope published to `$thingkit/things/{thing}/firmware` is checked
/// (signature against the trust anchors when set, else well-formedness and the manifest
/// digest) and kept retained for the thing; anything else is refused with 0x99 Payload format
/// invalid.
pub struct FirmwareJobService {
    trust: Option<thingkit_firmware::TrustAnchors>,
}

impl FirmwareJobService {
    /// Envelopes verified against `trust` (or only inspected when `None`).
    pub fn new(trust: Option<thingkit_firmware::TrustAnchors>) -> Self {
        FirmwareJobService { trust }
    }
}

impl TopicService for FirmwareJobService {
    fn name(&self) -> &'static str {
        "firmware jobs"
    }

    fn filters(&self) -> Vec<TopicFilter> {
        vec![filter(&format!(
            "{FIRMWARE_TOPIC_PREFIX}+{FIRMWARE_TOPIC_SUFFIX}"
        ))]
    }

    fn handle(&self, request: &ServiceRequest<'_>) -> ServiceResponse {
        let payload = &request.message.payload;
        let checked = match &self.trust {
            Some(anchors) => Verifier::new(anchors.clone())
                .verify(payload)
                .map(|v| v.sequence_number)
                .map_err(|e| e.to_string()),
            None => thingkit_firmware::inspect(payload, &Default::default())
                .map_err(|e| e.to_string())
                .and_then(|i| {
                    if i.manifest_digest_matches {
                        Ok(i.sequence_number)
                    } else {
                        Err("the manifest digest does not match".to_string())
                    }
                }),
        };
        let topic = request.message.topic.as_str();
        match checked {
            Ok(sequence) => {
                tracing::info!(
                    operator = request.client_id,
                    topic,
                    sequence,
                    bytes = payload.len(),
                    "firmware job published"
                );
                // A device that connects later still gets its job.
                ServiceResponse::routed(true)
            }
            Err(e) => {
                tracing::warn!(operator = request.client_id, topic, error = %e, "firmware envelope refused");
                ServiceResponse::refused(ReasonCode::PAYLOAD_FORMAT_INVALID, e)
            }
        }
    }
}

/// The AWS IoT Device Shadow service ([`thingkit_shadow`]): the request topics
/// `$aws/things/{thing}/shadow/{get,update,delete}` and
/// `$aws/things/{thing}/shadow/name/{shadow}/{get,update,delete}`, answered on AWS's response
/// topics (`.../accepted`, `.../rejected`, `.../update/delta`, `.../update/documents`) for
/// every subscriber allowed to receive them ([`ServiceResponse::publishes`]). Requests are
/// authorized by the requester's policies like any publish (`iot:Publish` on the request
/// topic). An accepted update is in the store (durably, for `RedbShadowStore`) before
/// `.../accepted` is published; a store failure answers 500 on `.../rejected`.
pub struct ShadowService<S: thingkit_shadow::ShadowStore + 'static> {
    shadows: std::sync::Mutex<thingkit_shadow::Shadows<S>>,
}

impl<S: thingkit_shadow::ShadowStore + 'static> ShadowService<S> {
    /// Shadows kept in `store`, requests checked against `limits` (AWS's by default).
    pub fn new(store: S, limits: thingkit_shadow::Limits) -> Self {
        ShadowService {
            shadows: std::sync::Mutex::new(thingkit_shadow::Shadows::new(store, limits)),
        }
    }

    /// The shadows, for reads outside MQTT (the control plane's GetThingShadow,
    /// ListNamedShadowsForThing).
    pub fn shadows(&self) -> std::sync::MutexGuard<'_, thingkit_shadow::Shadows<S>> {
        self.shadows.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `get_thing_shadow(thingName, roleArn)` and `get_thing_shadow(thingName, shadowName,
/// roleArn)` for the rules engine: the shadow's GetThingShadow document (state with delta,
/// metadata, version, timestamp) as a value, Undefined when the shadow does not exist or a name
/// is not a valid thing or shadow name; a store failure terminates the rule (its error action
/// runs). The role ARN is accepted and ignored: there is no IAM role to assume.
impl<S: thingkit_shadow::ShadowStore + 'static> super::rules::ExternalFunctions
    for ShadowService<S>
{
    fn call(
        &self,
        name: &str,
        args: &[thingkit_rules::Value],
    ) -> Option<Result<thingkit_rules::Value, String>> {
        use thingkit_rules::Value;
        if name != "get_thing_shadow" {
            return None;
        }
        let key = match args {
            [Value::String(thing), _role] => thingkit_shadow::ShadowKey::classic(thing.as_str()),
            [Value::String(thing), Value::String(shadow), _role] => {
                thingkit_shadow::ShadowKey::named(thing.as_str(), shadow.as_str())
            }
            _ => return Some(Ok(Value::Undefined)),
        };
        let Ok(key) = key else {
            return Some(Ok(Value::Undefined));
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Some(match self.shadows().get_document(&key, now) {
            Ok(Some(document)) => Ok(Value::from_json(&document, 64).unwrap_or(Value::Undefined)),
            Ok(None) => Ok(Value::Undefined),
            Err(e) => Err(format!("get_thing_shadow: the shadow store failed: {e}")),
        })
    }
}

impl<S: thingkit_shadow::ShadowStore + 'static> TopicService for ShadowService<S> {
    fn name(&self) -> &'static str {
        "device shadow"
    }

    fn filters(&self) -> Vec<TopicFilter> {
        thingkit_shadow::request_filters()
            .into_iter()
            .map(filter)
            .collect()
    }

    fn blocking(&self) -> bool {
        // It writes (and fsyncs) the store.
        true
    }

    fn handle(&self, request: &ServiceRequest<'_>) -> ServiceResponse {
        self.answer(request.message)
    }

    fn handle_internal(&self, message: &Message) -> Option<ServiceResponse> {
        Some(self.answer(message))
    }
}

impl<S: thingkit_shadow::ShadowStore + 'static> ShadowService<S> {
    /// The answer to a shadow request, from a client or a rule's republish alike.
    fn answer(&self, message: &Message) -> ServiceResponse {
        let answer =
            self.shadows()
                .request(message.topic.as_str(), &message.payload, super::unix_now());
        match answer {
            Some(publishes) => ServiceResponse::published(
                publishes
                    .into_iter()
                    .map(|m| ServiceReply {
                        topic: m.topic,
                        payload: m.payload,
                    })
                    .collect(),
            ),
            // A topic of the request shapes whose thing or shadow name AWS would refuse.
            None => ServiceResponse::refused(
                ReasonCode::TOPIC_NAME_INVALID,
                "not a valid shadow request topic (thing or shadow name)",
            ),
        }
    }
}

/// The engine a [`JobsService`] shares with the control plane.
pub type SharedJobs = Arc<std::sync::Mutex<thingkit_jobs::DynJobs>>;

/// The AWS IoT Jobs device API ([`thingkit_jobs`]): the request topics
/// `$aws/things/{thing}/jobs/get`, `/start-next`, `/{jobId}/get` and `/{jobId}/update`.
/// As AWS does, the `.../accepted` and `.../rejected` answers go to the requesting client only
/// (it needs no subscription, and other clients never see them), while `/notify` and
/// `/notify-next` go to every subscriber allowed to receive them. Requests are authorized by
/// the requester's policies like any publish (`iot:Publish` on the request topic). A change is
/// in the store (durably, for `RedbJobStore`) before it is answered. The engine's timers
/// (rollout pacing, execution timeouts) run in [`JobsService::drive`].
pub struct JobsService {
    jobs: SharedJobs,
}

impl JobsService {
    /// The device API on the shared engine `jobs`.
    pub fn new(jobs: SharedJobs) -> Self {
        JobsService { jobs }
    }

    /// The engine, for the control plane (CreateJob, CancelJob, ...).
    pub fn engine(&self) -> &SharedJobs {
        &self.jobs
    }

    fn lock(jobs: &SharedJobs) -> std::sync::MutexGuard<'_, thingkit_jobs::DynJobs> {
        jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the engine's clock for as long as the task lives: about once a second (sooner
    /// when the engine's next wake-up is due) it calls [`thingkit_jobs::Jobs::tick`] on the
    /// blocking pool — notifying the things each rollout's rate allows, timing out executions
    /// (AWS allows itself 60 seconds of lateness, J-16) — and publishes the notifications
    /// through `publisher` at QoS 1. Spawn it once per engine; abort the task to stop it.
    pub async fn drive(jobs: SharedJobs, publisher: super::BrokerPublisher) {
        loop {
            let engine = jobs.clone();
            let ticked =
                tokio::task::spawn_blocking(move || Self::lock(&engine).tick(super::unix_now()))
                    .await;
            match ticked {
                Ok(Ok(messages)) => {
                    for m in messages {
                        publish_notification(&publisher, m).await;
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "jobs: the engine's tick failed"),
                Err(e) => tracing::error!(error = %e, "jobs: the engine's tick panicked"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

/// Publishes one engine notification to the subscribers (QoS 1, not retained).
pub(crate) async fn publish_notification(
    publisher: &super::BrokerPublisher,
    message: thingkit_jobs::OutMessage,
) {
    let Ok(topic) = TopicName::new(&message.topic) else {
        tracing::error!(topic = message.topic, "jobs: an invalid notification topic");
        return;
    };
    if let Err(e) = publisher
        .publish(
            topic,
            bytes::Bytes::from(message.payload),
            thingkit_mqtt::QoS::AtLeastOnce,
            false,
            thingkit_mqtt::PacketProperties::default(),
        )
        .await
    {
        tracing::warn!(error = %e, "jobs: a notification was not delivered");
    }
}

impl TopicService for JobsService {
    fn name(&self) -> &'static str {
        "jobs"
    }

    fn filters(&self) -> Vec<TopicFilter> {
        thingkit_jobs::request_filters()
            .into_iter()
            .map(filter)
            .collect()
    }

    fn blocking(&self) -> bool {
        // It writes (and fsyncs) the store.
        true
    }

    fn handle(&self, request: &ServiceRequest<'_>) -> ServiceResponse {
        let topic = request.message.topic.as_str();
        let answer =
            Self::lock(&self.jobs).request(topic, &request.message.payload, super::unix_now());
        let Some(messages) = answer else {
            // A topic under the filters that is not a request (`.../notify` or a reply topic
            // sent by a client): routed like telemetry, as AWS does for its own topics.
            return ServiceResponse::routed(request.message.retain);
        };
        let accepted = format!("{topic}/accepted");
        let rejected = format!("{topic}/rejected");
        let (replies, publishes): (Vec<_>, Vec<_>) = messages
            .into_iter()
            .map(|m| ServiceReply {
                topic: m.topic,
                payload: m.payload,
            })
            .partition(|r| r.topic == accepted || r.topic == rejected);
        ServiceResponse {
            code: ReasonCode::SUCCESS,
            reason: None,
            replies,
            publishes,
            disposition: Disposition::Consume,
        }
    }

    /// `.../rejected` with AWS's InternalError document.
    fn failure_replies(&self, request: &ServiceRequest<'_>) -> Vec<ServiceReply> {
        let topic = request.message.topic.as_str();
        if thingkit_jobs::device::parse_request_topic(topic).is_none() {
            return Vec::new();
        }
        let m = thingkit_jobs::device::internal_error(
            topic,
            "the jobs request failed inside the broker",
            super::unix_now(),
        );
        vec![ServiceReply {
            topic: m.topic,
            payload: m.payload,
        }]
    }
}
