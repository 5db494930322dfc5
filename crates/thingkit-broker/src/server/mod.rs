//! The server: an MQTT 3.1.1 + 5.0 broker on tokio and tokio-rustls, composed from the thingkit
//! crates around the sans-IO [`Router`]. The `broker` example, `thingkit serve`, the quickstart,
//! the load generator and the integration tests all run it through [`Broker::builder`].
//!
//! Data flow for one connection (see `connection.rs`):
//!
//! ```text
//! TCP accept -> TLS handshake (thingkit-provision ServerConfig: client certificate chained to an
//! ACTIVE registered CA) -> Registry::authenticate (ACTIVE certificate -> thing + policies)
//! -> CONNECT (iot:Connect decided by thingkit-policy) -> CONNACK
//! -> PUBLISH: alias -> iot:Publish (+ iot:RetainPublish) -> thingkit-meter limits + counters
//!    -> retained store -> SubscriptionIndex -> each subscriber's queue
//!    -> (subscriber task) iot:Receive -> topic alias -> socket
//! ```
//!
//! Revocation: the registry's `CertificateDeactivated` event reaches the broker through a channel
//! and the sessions that authenticated with that certificate are disconnected.

mod activity;
mod bridge;
mod connection;
mod handover;
mod metrics;
mod policy_sets;
pub mod rules;
mod service;
mod streams;

pub use activity::{
    ActivityCounters, ActivitySource, ActivityWindow, ConnectionRecord, DeviceActivity,
    FOLD_INTERVAL, MAX_SOURCE_IPS, MaintenanceCounters, RULES_LATENCY_SAMPLES,
};
pub use bridge::{Bridge, Confirmation, Confirmer};
pub use handover::{Acquire, AdoptedFuture, Handover, HandoverFuture};
use service::Services;
pub use service::{
    Disposition, FirmwareJobService, FleetProvisioningService, JobsService, RevocationService,
    ServiceReply, ServiceRequest, ServiceResponse, ShadowService, SharedJobs, TopicService,
};
pub use streams::StreamService;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use thingkit_firmware::TrustAnchors;
use thingkit_meter::MeteringPolicy;
use thingkit_meter::{ConnectionTable, Counts, Granularity, Meter, UsageKey};
use thingkit_meter::{LimiterConfig, RateLimiter, RateLimits};
use thingkit_mqtt::{PacketProperties, QoS, ReasonCode, TopicFilter, TopicName};
use thingkit_policy::{ArnPrefix, SetOptions};
use thingkit_provision::RegistryStore;
use thingkit_provision::{CertificateId, CertificateStatus};
use thingkit_provision::{DeviceIdentity, EffectivePolicy, Registry, RegistryEvent};
use thingkit_provision::{FleetProvisioning, Prepared, Reply};
use thingkit_provision::{ReloadableServerConfig, ServerConfigBuilder};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::{
    Error, PresenceVersions, PresenceVersionsConfig, Router, RouterCounters, RouterLimits,
    RouterStore, SessionConfig,
};
use connection::ConnectionOutlet;
pub use metrics::{METRICS_CONTENT_TYPE, MetricsSource, serve_metrics};

/// The topic prefix of firmware jobs: the operator publishes a signed SUIT envelope to
/// `$thingkit/things/{thing}/firmware`; the broker checks it and keeps it retained for the thing.
pub const FIRMWARE_TOPIC_PREFIX: &str = "$thingkit/things/";
/// The suffix of a firmware job topic.
pub const FIRMWARE_TOPIC_SUFFIX: &str = "/firmware";
/// The operator's revocation topic: the payload is a certificate ID (64 hex digits). Publishing
/// needs `iot:Publish` on it, like any topic; the broker then revokes the certificate in the
/// registry, which disconnects its sessions.
pub const REVOKE_TOPIC: &str = "$thingkit/admin/revoke";

/// Everything configurable about the broker. `Default` is safe for a test on loopback; change
/// a field with its `with_*` setter:
///
/// ```
/// use thingkit_broker::BrokerConfig;
/// let config = BrokerConfig::default().with_max_packet_size(128 * 1024).with_max_queued(1_000);
/// assert_eq!(config.max_packet_size, 128 * 1024);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct BrokerConfig {
    /// The ARN prefix requests are decided against (partition, region, account).
    pub arn: ArnPrefix,
    /// The account a thing is billed to unless its `account` attribute says otherwise.
    pub default_account: String,
    /// How messages become billable units.
    pub metering: MeteringPolicy,
    /// Per-connection publish limits (AWS: 100 publishes/s, 512 KiB/s, PUBACK 0x97).
    pub connection_limits: RateLimits,
    /// Per-account inbound publish limits (AWS us-east-1: 20,000/s, PUBACK 0x97).
    pub account_limits: RateLimits,
    /// Per-client-ID CONNECT limits (AWS: 1/s, CONNACK 0x9F); `None` disables the check.
    pub connect_limits: Option<RateLimits>,
    /// Limits per thing type or thing group instead of one set for every device: a device
    /// takes the first class (in order) its thing matches, else `connection_limits` and
    /// `connect_limits`. Each class has its own meter table of `max_connections` slots.
    pub limit_classes: Vec<LimitClass>,
    /// The largest packet the broker accepts, announced as Maximum Packet Size (MQTT 5).
    pub max_packet_size: u32,
    /// Topic Alias Maximum announced to MQTT 5 clients.
    pub topic_alias_maximum: u16,
    /// Receive Maximum announced to MQTT 5 clients (QoS 1 publishes in flight from a client).
    pub receive_maximum: u16,
    /// QoS 1 deliveries in flight to a client that announced no Receive Maximum.
    pub max_inflight: u16,
    /// Messages queued for one session. For a connected session, twice: in its connection's
    /// queue and in the session's queue for the in-flight window. When both are full, a
    /// publisher with a QoS 1 message for it waits (back-pressure: the publisher's packets
    /// are not read) up to [`BrokerConfig::slow_subscriber_timeout`]; QoS 0 messages are
    /// dropped and counted. For a disconnected persistent session, QoS 1 messages beyond it
    /// are dropped and counted (`thingkit_router_offline_dropped_total`).
    pub max_queued: usize,
    /// How long a publisher waits for room in a connected subscriber's full queue before that
    /// subscriber is disconnected (MQTT 5 DISCONNECT 0x97 Quota exceeded) and the message is
    /// queued in the persistent session it leaves behind (default 5 s). The publisher is
    /// acknowledged only once every copy is placed, so a QoS 1 message is never acknowledged
    /// and then dropped while its subscriber's session lives.
    pub slow_subscriber_timeout: Duration,
    /// Topics with a retained message; a retained PUBLISH on a new topic beyond it is refused
    /// (MQTT 5: PUBACK 0x97 Quota exceeded). See thingkit-broker's `RouterLimits`.
    pub max_retained_messages: usize,
    /// Topic and payload bytes of all retained messages; a retained PUBLISH that would pass it
    /// is refused like one over `max_retained_messages`.
    pub max_retained_bytes: usize,
    /// Largest keep-alive a client may ask for; longer ones are answered with Server Keep Alive.
    pub max_keep_alive: u16,
    /// Time allowed for the TLS handshake and the CONNECT packet.
    pub connect_timeout: Duration,
    /// Connections the meter's table can hold.
    pub max_connections: usize,
    /// Accounts the account limiter tracks at once (idle ones are evicted to make room). A
    /// device of an account beyond it still connects, but its publishes are refused (MQTT 5:
    /// PUBACK 0x80) until room frees up: what cannot be rate-limited is not admitted.
    pub max_accounts: usize,
    /// Client IDs the connection-rate limiter tracks at once (idle ones are evicted to make
    /// room). A CONNECT whose client ID cannot be tracked is refused with 0x89 Server busy
    /// (MQTT 3.1.1: 3 Server unavailable): what cannot be rate-limited is not admitted.
    pub max_connect_clients: usize,
    /// Firmware trust anchors: when set, envelopes published on a firmware topic must verify
    /// against them; otherwise they only have to be well-formed SUIT envelopes.
    pub firmware_trust: Option<TrustAnchors>,
    /// Options for compiling each connection's policies.
    pub policy_options: SetOptions,
    /// Fleet provisioning by claim (`$aws/certificates/...`, `$aws/provisioning-templates/...`),
    /// if enabled.
    pub fleet: Option<Arc<Mutex<FleetProvisioning>>>,
    /// ALPN protocol names the TLS server accepts, in preference order; default
    /// [`ALPN_PROTOCOLS`]. A client that offers no ALPN always connects; one that offers only
    /// other names is refused in the handshake with the `no_application_protocol` alert
    /// (RFC 7301 §3.2, rustls' behaviour when the server lists protocols). Empty: ALPN is
    /// ignored and every client connects without a negotiated protocol.
    pub alpn_protocols: Vec<Vec<u8>>,
    /// Publish AWS IoT lifecycle events (`$aws/events/presence/connected/{clientId}`,
    /// `.../disconnected/{clientId}`, `$aws/events/subscriptions/subscribed/{clientId}`,
    /// `.../unsubscribed/{clientId}`; default on). Subscribers need `iot:Subscribe` and
    /// `iot:Receive` on them like on any topic. Client IDs with `#` or `+` get none, as on AWS.
    pub lifecycle_events: bool,
    /// Where usage of closed meter windows goes: every 10 s, and at shutdown, the node meter's
    /// windows that have ended are removed from it and handed to the sink (deltas to add up;
    /// see thingkit-meter's `Meter::drain_closed`), so a long-running broker's meter holds only
    /// open windows. `None` (the default) keeps everything in the meter, which refuses new keys
    /// at its cap (1,000,000).
    pub usage_sink: Option<UsageSink>,
    /// The length of the meter's windows (default a UTC day).
    pub usage_window: Granularity,
    /// How long the connection log ([`BrokerHandle::connection_log`]) keeps a record after its
    /// connection closed (default 31 days: the window of an on-demand audit's connection
    /// checks, `DEVICE_CERTIFICATE_SHARED_CHECK` and `CONFLICTING_CLIENT_IDS_CHECK`). Open
    /// connections stay logged.
    pub connection_log_retention: Duration,
    /// Records the connection log holds at most (default 100,000, about 100 bytes each); a
    /// new connection beyond it drops the oldest record, counted in
    /// [`ActivityCounters::connection_records_dropped`]. 0 keeps no log.
    pub max_connection_records: usize,
    /// Devices one activity window ([`BrokerHandle::take_activity`]) tracks at most (default
    /// 100,000); updates for further devices are counted in [`ActivityWindow::overflow`], not
    /// kept.
    pub max_activity_devices: usize,
}

/// Receives the usage of closed meter windows; see [`BrokerConfig::usage_sink`]. It runs on
/// the blocking pool, so it may write files.
pub type UsageSink = Arc<dyn Fn(BTreeMap<UsageKey, Counts>) + Send + Sync>;

impl BrokerConfig {
    /// Sets [`BrokerConfig::arn`].
    pub fn with_arn(mut self, value: ArnPrefix) -> Self {
        self.arn = value;
        self
    }

    /// Sets [`BrokerConfig::default_account`].
    pub fn with_default_account(mut self, value: String) -> Self {
        self.default_account = value;
        self
    }

    /// Sets [`BrokerConfig::metering`].
    pub fn with_metering(mut self, value: MeteringPolicy) -> Self {
        self.metering = value;
        self
    }

    /// Sets [`BrokerConfig::connection_limits`].
    pub fn with_connection_limits(mut self, value: RateLimits) -> Self {
        self.connection_limits = value;
        self
    }

    /// Sets [`BrokerConfig::account_limits`].
    pub fn with_account_limits(mut self, value: RateLimits) -> Self {
        self.account_limits = value;
        self
    }

    /// Sets [`BrokerConfig::limit_classes`].
    pub fn with_limit_classes(mut self, value: Vec<LimitClass>) -> Self {
        self.limit_classes = value;
        self
    }

    /// Sets [`BrokerConfig::connect_limits`].
    pub fn with_connect_limits(mut self, value: Option<RateLimits>) -> Self {
        self.connect_limits = value;
        self
    }

    /// Sets [`BrokerConfig::max_packet_size`].
    pub fn with_max_packet_size(mut self, value: u32) -> Self {
        self.max_packet_size = value;
        self
    }

    /// Sets [`BrokerConfig::topic_alias_maximum`].
    pub fn with_topic_alias_maximum(mut self, value: u16) -> Self {
        self.topic_alias_maximum = value;
        self
    }

    /// Sets [`BrokerConfig::receive_maximum`].
    pub fn with_receive_maximum(mut self, value: u16) -> Self {
        self.receive_maximum = value;
        self
    }

    /// Sets [`BrokerConfig::max_inflight`].
    pub fn with_max_inflight(mut self, value: u16) -> Self {
        self.max_inflight = value;
        self
    }

    /// Sets [`BrokerConfig::max_queued`].
    pub fn with_max_queued(mut self, value: usize) -> Self {
        self.max_queued = value;
        self
    }

    /// Sets [`BrokerConfig::slow_subscriber_timeout`].
    pub fn with_slow_subscriber_timeout(mut self, value: Duration) -> Self {
        self.slow_subscriber_timeout = value;
        self
    }

    /// Sets [`BrokerConfig::max_retained_messages`].
    pub fn with_max_retained_messages(mut self, value: usize) -> Self {
        self.max_retained_messages = value;
        self
    }

    /// Sets [`BrokerConfig::max_retained_bytes`].
    pub fn with_max_retained_bytes(mut self, value: usize) -> Self {
        self.max_retained_bytes = value;
        self
    }

    /// Sets [`BrokerConfig::max_keep_alive`].
    pub fn with_max_keep_alive(mut self, value: u16) -> Self {
        self.max_keep_alive = value;
        self
    }

    /// Sets [`BrokerConfig::connect_timeout`].
    pub fn with_connect_timeout(mut self, value: Duration) -> Self {
        self.connect_timeout = value;
        self
    }

    /// Sets [`BrokerConfig::max_connections`].
    pub fn with_max_connections(mut self, value: usize) -> Self {
        self.max_connections = value;
        self
    }

    /// Sets [`BrokerConfig::max_accounts`].
    pub fn with_max_accounts(mut self, value: usize) -> Self {
        self.max_accounts = value;
        self
    }

    /// Sets [`BrokerConfig::max_connect_clients`].
    pub fn with_max_connect_clients(mut self, value: usize) -> Self {
        self.max_connect_clients = value;
        self
    }

    /// Sets [`BrokerConfig::firmware_trust`].
    pub fn with_firmware_trust(mut self, value: Option<TrustAnchors>) -> Self {
        self.firmware_trust = value;
        self
    }

    /// Sets [`BrokerConfig::policy_options`].
    pub fn with_policy_options(mut self, value: SetOptions) -> Self {
        self.policy_options = value;
        self
    }

    /// Sets [`BrokerConfig::fleet`].
    pub fn with_fleet(mut self, value: Option<Arc<Mutex<FleetProvisioning>>>) -> Self {
        self.fleet = value;
        self
    }

    /// Sets [`BrokerConfig::alpn_protocols`].
    pub fn with_alpn_protocols(mut self, value: Vec<Vec<u8>>) -> Self {
        self.alpn_protocols = value;
        self
    }

    /// Sets [`BrokerConfig::usage_sink`].
    pub fn with_usage_sink(mut self, value: Option<UsageSink>) -> Self {
        self.usage_sink = value;
        self
    }

    /// Sets [`BrokerConfig::usage_window`].
    pub fn with_usage_window(mut self, value: Granularity) -> Self {
        self.usage_window = value;
        self
    }

    /// Sets [`BrokerConfig::connection_log_retention`].
    pub fn with_connection_log_retention(mut self, value: Duration) -> Self {
        self.connection_log_retention = value;
        self
    }

    /// Sets [`BrokerConfig::max_connection_records`].
    pub fn with_max_connection_records(mut self, value: usize) -> Self {
        self.max_connection_records = value;
        self
    }

    /// Sets [`BrokerConfig::max_activity_devices`].
    pub fn with_max_activity_devices(mut self, value: usize) -> Self {
        self.max_activity_devices = value;
        self
    }

    /// Sets [`BrokerConfig::lifecycle_events`].
    pub fn with_lifecycle_events(mut self, value: bool) -> Self {
        self.lifecycle_events = value;
        self
    }
}

impl BrokerConfig {
    /// What each connection's [`crate::Session`] is granted under this configuration.
    pub fn session_config(&self) -> SessionConfig {
        SessionConfig::default()
            .with_max_packet_size(self.max_packet_size)
            .with_topic_alias_maximum(self.topic_alias_maximum)
            .with_receive_maximum(self.receive_maximum)
            .with_max_inflight(self.max_inflight)
            .with_max_pending(self.max_queued)
            .with_max_keep_alive(self.max_keep_alive)
    }
}

/// Which devices a [`LimitClass`] applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ThingSelector {
    /// Things of this thing type.
    ThingType(String),
    /// Things in this thing group (directly).
    ThingGroup(String),
}

impl ThingSelector {
    fn matches(&self, auth: &Authenticated) -> bool {
        match self {
            ThingSelector::ThingType(t) => auth.thing_type.as_deref() == Some(t.as_str()),
            ThingSelector::ThingGroup(g) => auth.thing_groups.iter().any(|x| x == g),
        }
    }
}

/// Publish and connect limits for the devices a [`ThingSelector`] picks.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LimitClass {
    /// The devices it applies to.
    pub selector: ThingSelector,
    /// Their per-connection publish limits.
    pub connection_limits: RateLimits,
    /// Their per-client-ID CONNECT limits; `None` keeps [`BrokerConfig::connect_limits`].
    pub connect_limits: Option<RateLimits>,
}

impl LimitClass {
    /// A class for `selector` with `connection_limits` and the default CONNECT limits.
    pub fn new(selector: ThingSelector, connection_limits: RateLimits) -> Self {
        LimitClass {
            selector,
            connection_limits,
            connect_limits: None,
        }
    }

    /// Sets [`LimitClass::connect_limits`].
    pub fn with_connect_limits(mut self, value: Option<RateLimits>) -> Self {
        self.connect_limits = value;
        self
    }
}

/// The ALPN names accepted by default: `x-amzn-mqtt-ca`, what AWS IoT devices send for MQTT with
/// an X.509 client certificate on port 443 (AWS IoT Core Developer Guide, *Device communication
/// protocols*), and `mqtt`, the IANA-registered name other MQTT clients send. HTTP names
/// (`x-amzn-http-ca`, `h2`, `http/1.1`) are not accepted: this server speaks only MQTT.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"x-amzn-mqtt-ca", b"mqtt"];

impl Default for BrokerConfig {
    fn default() -> Self {
        // The session and router limits have one home each: SessionConfig and RouterLimits.
        let session = SessionConfig::default();
        let router = RouterLimits::default();
        BrokerConfig {
            arn: ArnPrefix::new("aws", "eu-central-1", "123456789012")
                .expect("a valid ARN prefix literal"),
            default_account: "123456789012".into(),
            metering: MeteringPolicy::aws(),
            connection_limits: RateLimits::aws_connection(),
            account_limits: RateLimits::aws_account_publish(),
            connect_limits: None,
            limit_classes: Vec::new(),
            max_packet_size: session.max_packet_size,
            topic_alias_maximum: session.topic_alias_maximum,
            receive_maximum: session.receive_maximum,
            max_inflight: session.max_inflight,
            max_queued: session.max_pending,
            slow_subscriber_timeout: Duration::from_secs(5),
            max_retained_messages: router.max_retained_messages,
            max_retained_bytes: router.max_retained_bytes,
            max_keep_alive: session.max_keep_alive,
            connect_timeout: Duration::from_secs(10),
            max_connections: 100_000,
            max_accounts: LimiterConfig::default().max_keys,
            max_connect_clients: LimiterConfig::default().max_keys,
            firmware_trust: None,
            policy_options: SetOptions::default().with_strict_identities(true),
            fleet: None,
            alpn_protocols: ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect(),
            lifecycle_events: true,
            usage_sink: None,
            usage_window: Granularity::Day,
            connection_log_retention: Duration::from_secs(31 * 24 * 3600),
            max_connection_records: 100_000,
            max_activity_devices: 100_000,
        }
    }
}

/// What the broker needs from the registry: authentication, thing details and revocation.
/// Implemented for `RwLock<Registry<S>>` for every store.
pub trait Directory: Send + Sync + 'static {
    /// Authenticates a verified TLS peer chain (end-entity first). `client_id` is the CONNECT's
    /// client ID (possibly empty): when it names a thing the certificate is attached to, that
    /// thing's type and attributes are returned (AWS takes the thing name from the client ID);
    /// otherwise the certificate's (first) thing's.
    fn authenticate(&self, chain: &[Vec<u8>], client_id: &str) -> Result<Authenticated, String>;
    /// Sets a certificate's status to REVOKED.
    fn revoke(&self, id: &CertificateId) -> Result<(), String>;
    /// Answers a fleet provisioning request from the client authenticated with `client`;
    /// `None` when fleet provisioning is off or `topic` is not one of its request topics.
    fn provision(&self, client: &CertificateId, topic: &str, payload: &[u8]) -> Option<Vec<Reply>>;
    /// Records that `thing` connected at `at_ms` (Unix milliseconds) with presence version
    /// `version` (the registry's connectivity status). The default records nothing.
    fn thing_connected(&self, thing: &str, at_ms: u64, version: u64) {
        let _ = (thing, at_ms, version);
    }
    /// Records that the connection of `thing` with presence `version` ended at `at_ms` for
    /// `reason` (an AWS `disconnectReason`). The default records nothing.
    fn thing_disconnected(&self, thing: &str, at_ms: u64, version: u64, reason: &str) {
        let _ = (thing, at_ms, version, reason);
    }
    /// A counter that moves whenever what [`Directory::effective_policies`] answers may have
    /// changed (a policy attached or detached, a default version set, a thing joining a
    /// group). Connections compare it before each decision and re-read their policies when it
    /// moved, so a change decides the next publish, not only the next connection. `None` (the
    /// default): policies are read at CONNECT only.
    fn generation(&self) -> Option<Arc<AtomicU64>> {
        None
    }
    /// The effective policies of certificate `id` now. `None` when the certificate is gone or
    /// they cannot be read: the connection is then denied everything (fail closed). The
    /// default answers `None`; implement it together with [`Directory::generation`].
    fn effective_policies(&self, id: &CertificateId) -> Option<Vec<EffectivePolicy>> {
        let _ = id;
        None
    }
}

/// The registry (and, when enabled, fleet provisioning) as the broker's [`Directory`].
pub struct RegistryDirectory<S: RegistryStore> {
    registry: Arc<RwLock<Registry<S>>>,
    fleet: Option<Arc<Mutex<FleetProvisioning>>>,
}

impl<S: RegistryStore> RegistryDirectory<S> {
    /// The registry, with fleet provisioning when `fleet` is set.
    pub fn new(
        registry: Arc<RwLock<Registry<S>>>,
        fleet: Option<Arc<Mutex<FleetProvisioning>>>,
    ) -> Self {
        RegistryDirectory { registry, fleet }
    }
}

/// An authenticated device: the registry's identity plus the type and attributes of its thing
/// (the one the client ID names, if the certificate is attached to it).
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// The registry identity.
    pub identity: DeviceIdentity,
    /// The thing's type, if any.
    pub thing_type: Option<String>,
    /// The thing's attributes.
    pub attributes: std::collections::BTreeMap<String, String>,
    /// The thing groups the thing belongs to (directly).
    pub thing_groups: Vec<String>,
}

impl<S: RegistryStore + Send + Sync + 'static> Directory for RegistryDirectory<S> {
    fn generation(&self) -> Option<Arc<AtomicU64>> {
        Some(
            self.registry
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .generation(),
        )
    }

    fn effective_policies(&self, id: &CertificateId) -> Option<Vec<EffectivePolicy>> {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .effective_policies(id)
            .ok()
    }

    fn thing_connected(&self, thing: &str, at_ms: u64, version: u64) {
        let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
        // A thing deleted meanwhile has no status to keep.
        let _ = registry.set_connected(thing, at_ms, version);
    }

    fn thing_disconnected(&self, thing: &str, at_ms: u64, version: u64, reason: &str) {
        let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
        let _ = registry.set_disconnected(thing, at_ms, version, reason);
    }

    fn authenticate(&self, chain: &[Vec<u8>], client_id: &str) -> Result<Authenticated, String> {
        let registry = self.registry.read().unwrap_or_else(|p| p.into_inner());
        let identity = registry
            .authenticate(chain, std::time::SystemTime::now())
            .map_err(|e| e.to_string())?;
        let thing = match identity.things.iter().find(|t| &***t == client_id) {
            Some(named) => Some(&**named),
            None => identity.thing.as_deref(),
        };
        let (thing_type, attributes, thing_groups) = match thing.and_then(|t| registry.thing(t)) {
            Some(thing) => (
                thing.thing_type.as_deref().map(str::to_string),
                thing
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                thing.groups.iter().map(|g| g.to_string()).collect(),
            ),
            None => (None, Default::default(), Vec::new()),
        };
        Ok(Authenticated {
            identity,
            thing_type,
            attributes,
            thing_groups,
        })
    }

    fn revoke(&self, id: &CertificateId) -> Result<(), String> {
        let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
        registry
            .update_certificate(id, CertificateStatus::Revoked, std::time::SystemTime::now())
            .map_err(|e| e.to_string())
    }

    fn provision(&self, client: &CertificateId, topic: &str, payload: &[u8]) -> Option<Vec<Reply>> {
        let fleet = self.fleet.as_ref()?;
        if !thingkit_provision::is_provisioning_topic(topic) {
            return None; // no locks for ordinary telemetry
        }
        // Checks (and certificate issuance) under the locks; the pre-provisioning hook of a
        // RegisterThing runs with both released, so `authenticate` and other provisioning
        // requests are not stalled for up to the hook's timeout; the commit re-checks the token.
        let prepared = {
            let mut fleet = fleet.lock().unwrap_or_else(|p| p.into_inner());
            let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
            fleet.prepare(
                &mut registry,
                client,
                topic,
                payload,
                std::time::SystemTime::now(),
            )?
        };
        match prepared {
            Prepared::Replies(replies) => Some(replies),
            Prepared::Register(pending) => {
                let outcome = pending.run_hook();
                let mut fleet = fleet.lock().unwrap_or_else(|p| p.into_inner());
                let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
                Some(fleet.commit(
                    &mut registry,
                    pending,
                    outcome,
                    std::time::SystemTime::now(),
                ))
            }
        }
    }
}

/// Counters an operator watches; all monotonic.
#[derive(Debug, Default)]
pub struct Stats {
    /// TLS handshakes that failed.
    pub tls_failures: AtomicU64,
    /// CONNECTs accepted.
    pub connects_accepted: AtomicU64,
    /// CONNECTs refused (authentication, authorization, rate).
    pub connects_refused: AtomicU64,
    /// PUBLISH packets accepted.
    pub publishes_in: AtomicU64,
    /// Messages from other servers of a cluster ([`BrokerPublisher::publish_remote`]).
    pub remote_publishes_in: AtomicU64,
    /// Messages written to subscribers.
    pub deliveries: AtomicU64,
    /// CONNECTs denied by policy (`iot:Connect`, or `iot:Publish` on the will's topic).
    pub denied_connect: AtomicU64,
    /// PUBLISH packets denied by policy (`iot:Publish`, `iot:RetainPublish`).
    pub denied_publish: AtomicU64,
    /// SUBSCRIBE filters denied by policy (`iot:Subscribe`).
    pub denied_subscribe: AtomicU64,
    /// Deliveries withheld by policy (`iot:Receive`).
    pub denied_receive: AtomicU64,
    /// Publishes refused or dropped by a rate limit (a delayed one counts once).
    pub throttled: AtomicU64,
    /// Publishes refused because the meter or the account limiter failed (e.g. its key cap was
    /// reached): the broker fails closed rather than route a message it cannot meter.
    pub meter_refusals: AtomicU64,
    /// Deliveries dropped: by the router (QoS 0 to a full connection queue or to a
    /// disconnected session, QoS 1 to a disconnected session whose queue is full; its
    /// counters tell which) or by a session (the message expired or is larger than the
    /// client's Maximum Packet Size).
    pub queue_drops: AtomicU64,
    /// QoS 1 publishes that waited for room in a subscriber's full queue before they were
    /// acknowledged (back-pressure).
    pub backpressure_waits: AtomicU64,
    /// QoS 1 publishes refused because the cluster's bridge could not make them durable
    /// ([`Confirmation`]).
    pub bridge_refusals: AtomicU64,
    /// Subscribers disconnected because their queue stayed full for
    /// [`BrokerConfig::slow_subscriber_timeout`] while a publisher waited.
    pub slow_subscriber_disconnects: AtomicU64,
    /// MQTT 3.1.1 connections closed because one of their QoS 1 publishes was refused (a rate
    /// limit still exceeded after a delay, the meter, the retained quota or the store failed):
    /// 3.1.1 has no negative PUBACK, and a silent one would leave the message unanswered.
    pub refusal_disconnects: AtomicU64,
    /// When a dropped delivery was last logged (milliseconds since start), so that drops
    /// under pressure are logged at most once per interval.
    pub(crate) drop_logged_ms: AtomicU64,
    /// Sessions disconnected because their certificate left ACTIVE.
    pub revocation_disconnects: AtomicU64,
    /// Topic service requests (fleet provisioning, revocation, firmware jobs, ...) whose
    /// service failed (panicked or was cancelled): answered with an error, never routed.
    pub provisioning_failures: AtomicU64,
}

/// A copy of [`Stats`] at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`Stats::tls_failures`].
    pub tls_failures: u64,
    /// See [`Stats::connects_accepted`].
    pub connects_accepted: u64,
    /// See [`Stats::connects_refused`].
    pub connects_refused: u64,
    /// See [`Stats::publishes_in`].
    pub publishes_in: u64,
    /// See [`Stats::remote_publishes_in`].
    pub remote_publishes_in: u64,
    /// See [`Stats::deliveries`].
    pub deliveries: u64,
    /// Requests denied by policy, all actions together (the sum of the four below).
    pub denied: u64,
    /// See [`Stats::denied_connect`].
    pub denied_connect: u64,
    /// See [`Stats::denied_publish`].
    pub denied_publish: u64,
    /// See [`Stats::denied_subscribe`].
    pub denied_subscribe: u64,
    /// See [`Stats::denied_receive`].
    pub denied_receive: u64,
    /// See [`Stats::throttled`].
    pub throttled: u64,
    /// See [`Stats::meter_refusals`].
    pub meter_refusals: u64,
    /// See [`Stats::queue_drops`].
    pub queue_drops: u64,
    /// See [`Stats::backpressure_waits`].
    pub backpressure_waits: u64,
    /// See [`Stats::bridge_refusals`].
    pub bridge_refusals: u64,
    /// See [`Stats::slow_subscriber_disconnects`].
    pub slow_subscriber_disconnects: u64,
    /// See [`Stats::refusal_disconnects`].
    pub refusal_disconnects: u64,
    /// See [`Stats::revocation_disconnects`].
    pub revocation_disconnects: u64,
    /// See [`Stats::provisioning_failures`].
    pub provisioning_failures: u64,
}

impl Stats {
    /// Counts a policy denial of `action` (a [`crate::Denial`]'s action: `"connect"`,
    /// `"publish"`, `"subscribe"` or `"receive"`; anything else counts as `"publish"`, the
    /// action every other request is decided as).
    pub(crate) fn deny(&self, action: &str) {
        let counter = match action {
            "connect" => &self.denied_connect,
            "subscribe" => &self.denied_subscribe,
            "receive" => &self.denied_receive,
            _ => &self.denied_publish,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let denied = [
            &self.denied_connect,
            &self.denied_publish,
            &self.denied_subscribe,
            &self.denied_receive,
        ];
        StatsSnapshot {
            denied: denied.iter().map(|c| l(c)).sum(),
            denied_connect: l(&self.denied_connect),
            denied_publish: l(&self.denied_publish),
            denied_subscribe: l(&self.denied_subscribe),
            denied_receive: l(&self.denied_receive),
            tls_failures: l(&self.tls_failures),
            connects_accepted: l(&self.connects_accepted),
            connects_refused: l(&self.connects_refused),
            publishes_in: l(&self.publishes_in),
            remote_publishes_in: l(&self.remote_publishes_in),
            deliveries: l(&self.deliveries),
            throttled: l(&self.throttled),
            meter_refusals: l(&self.meter_refusals),
            queue_drops: l(&self.queue_drops),
            backpressure_waits: l(&self.backpressure_waits),
            bridge_refusals: l(&self.bridge_refusals),
            slow_subscriber_disconnects: l(&self.slow_subscriber_disconnects),
            refusal_disconnects: l(&self.refusal_disconnects),
            revocation_disconnects: l(&self.revocation_disconnects),
            provisioning_failures: l(&self.provisioning_failures),
        }
    }
}

/// How often expired persistent sessions are removed (a reconnecting client also finds its
/// expired session gone at once).
const SESSION_SWEEP: Duration = Duration::from_secs(10);

/// The signal that ends a connection with a reason code.
pub(crate) type Kick = watch::Sender<Option<ReasonCode>>;

/// State shared by every connection task.
pub(crate) struct Shared {
    pub(crate) config: BrokerConfig,
    pub(crate) directory: Arc<dyn Directory>,
    pub(crate) router: Mutex<Router<ConnectionOutlet>>,
    /// Per limit class (the default first, then [`BrokerConfig::limit_classes`] in order): the
    /// meter's connection table and the CONNECT rate limiter.
    pub(crate) classes: Vec<LimitState>,
    pub(crate) meter: Meter,
    pub(crate) account_limiter: RateLimiter<Arc<str>>,
    pub(crate) stats: Stats,
    pub(crate) epoch: Instant,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Presence version numbers per client ID (the lifecycle events' `versionNumber`).
    pub(crate) presence: Mutex<PresenceVersions>,
    /// The topic services, in the order they claim topics.
    pub(crate) services: Services,
    /// What every connection's session is granted (from `config`).
    pub(crate) session_config: SessionConfig,
    /// Wills waiting for their delay, by client ID: the connection number they came from. A
    /// reconnect removes the entry, which cancels the will.
    pub(crate) delayed_wills: Mutex<HashMap<Arc<str>, u64>>,
    /// Live connections by certificate: kick senders, for revocation.
    pub(crate) by_certificate: Mutex<HashMap<CertificateId, Vec<(u64, Kick)>>>,
    pub(crate) next_connection: AtomicU64,
    /// Compiled policy sets, shared by connections with the same effective policies.
    pub(crate) policy_sets: policy_sets::PolicySets,
    /// The directory's [`Directory::generation`], read once.
    pub(crate) policy_generation: Option<Arc<AtomicU64>>,
    /// The rules engine, when installed ([`BrokerBuilder::rules`]).
    pub(crate) rules: Option<rules::RulesEngine>,
    /// The bridge to the other servers of a cluster, when installed ([`BrokerBuilder::bridge`]).
    pub(crate) bridge: Option<Arc<dyn Bridge>>,
    /// Frees client IDs on the other servers of a cluster ([`BrokerBuilder::handover`]).
    pub(crate) handover: Option<Arc<dyn Handover>>,
    /// The connection log, per-device activity and maintenance counters.
    pub(crate) activity: activity::Activity,
}

/// The rate-limit state of one limit class.
pub(crate) struct LimitState {
    /// Per-connection publish limits and counters.
    pub(crate) table: ConnectionTable,
    /// Per-client-ID CONNECT limits, if any.
    pub(crate) connect_limiter: Option<RateLimiter<String>>,
}

impl Shared {
    /// The limit class of an authenticated device: the first of
    /// [`BrokerConfig::limit_classes`] its thing matches (index from 1), else 0.
    pub(crate) fn limit_class(&self, auth: &Authenticated) -> usize {
        self.config
            .limit_classes
            .iter()
            .position(|c| c.selector.matches(auth))
            .map_or(0, |i| i + 1)
    }

    /// Connections past CONNECT holding a meter slot, over every limit class.
    pub(crate) fn connections(&self) -> usize {
        self.classes.iter().map(|c| c.table.len()).sum()
    }

    /// Nanoseconds since the broker started (the meter's clock), read now.
    pub(crate) fn now_nanos(&self) -> thingkit_meter::Nanos {
        self.nanos_at(Instant::now())
    }

    /// `at` on the meter's clock: nanoseconds since the broker started. The connection task
    /// reads the clock once per socket read and meters every message of the batch at that
    /// instant (an earlier instant only makes the limits stricter).
    pub(crate) fn nanos_at(&self, at: Instant) -> thingkit_meter::Nanos {
        thingkit_meter::Nanos(
            u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX),
        )
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The entry point of the server: [`Broker::builder`] gathers the registry, the server's TLS
/// identity and a [`BrokerConfig`]; [`BrokerBuilder::serve`] starts it on a bound listener and
/// returns a [`BrokerHandle`].
#[derive(Debug)]
pub struct Broker(());

impl Broker {
    /// A builder for a broker that authenticates devices against `registry` (mutual TLS
    /// against its ACTIVE CAs, then its ACTIVE certificates), presents `tls` as its own
    /// identity and otherwise runs with [`BrokerConfig::default`].
    pub fn builder<S: RegistryStore + Send + Sync + 'static>(
        registry: Arc<RwLock<Registry<S>>>,
        tls: ServerIdentity,
    ) -> BrokerBuilder<S> {
        BrokerBuilder {
            registry,
            tls,
            config: BrokerConfig::default(),
            directory: None,
            services: Vec::new(),
            store: None,
            rules: None,
            bridge: None,
            handover: None,
        }
    }
}

/// The server's own certificate chain and private key, PEM.
#[derive(Clone)]
pub struct ServerIdentity {
    chain_pem: String,
    key_pem: String,
}

impl ServerIdentity {
    /// The server certificate followed by its intermediates (PEM), and its private key (PEM).
    pub fn from_pem(chain_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        ServerIdentity {
            chain_pem: chain_pem.into(),
            key_pem: key_pem.into(),
        }
    }
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("chain_pem", &self.chain_pem.len())
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Configures a broker before it starts; see [`Broker::builder`].
pub struct BrokerBuilder<S: RegistryStore> {
    registry: Arc<RwLock<Registry<S>>>,
    tls: ServerIdentity,
    config: BrokerConfig,
    directory: Option<Arc<dyn Directory>>,
    services: Vec<Arc<dyn TopicService>>,
    store: Option<Box<dyn RouterStore>>,
    rules: Option<rules::RulesEngine>,
    bridge: Option<Arc<dyn Bridge>>,
    handover: Option<Arc<dyn Handover>>,
}

impl<S: RegistryStore + Send + Sync + 'static> BrokerBuilder<S> {
    /// Runs with `config` instead of [`BrokerConfig::default`].
    pub fn config(mut self, config: BrokerConfig) -> Self {
        self.config = config;
        self
    }

    /// Answers authentication, revocation and provisioning with `directory` instead of the
    /// registry itself ([`RegistryDirectory`] with [`BrokerConfig::fleet`]). The registry still
    /// provides the TLS trust (its ACTIVE CAs) and the events that disconnect revoked devices;
    /// `config.fleet` is then only what `directory` makes of it.
    pub fn directory(mut self, directory: Arc<dyn Directory>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// Adds a topic service: PUBLISHes on the filters it claims go to it instead of being
    /// routed (see [`TopicService`]). Services added here come before the built-in ones
    /// ([`FleetProvisioningService`], [`RevocationService`], [`FirmwareJobService`]), in the
    /// order added, so one can take over a built-in topic.
    pub fn service(mut self, service: Arc<dyn TopicService>) -> Self {
        self.services.push(service);
        self
    }

    /// Keeps persistent sessions (subscriptions, queued QoS 1 messages) and retained messages
    /// in `store` ([`crate::RedbStore`] for one redb file), restored from it at start: what the
    /// broker acknowledged survives a restart, `kill -9` included. Without a store they live in
    /// memory only.
    pub fn store(mut self, store: impl RouterStore + 'static) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    /// Runs `engine`'s rules on every routed message (see [`rules`]) and serves Basic Ingest
    /// (`$aws/rules/<rule>/...`, [`rules::BasicIngestService`], after the services added with
    /// [`BrokerBuilder::service`]). Its republish actions route through this broker;
    /// [`BrokerHandle::shutdown`] flushes its windows and closes its sinks.
    pub fn rules(mut self, engine: rules::RulesEngine) -> Self {
        self.rules = Some(engine);
        self
    }

    /// Offers every message this broker accepts and routes to `bridge`, which carries it to the
    /// other servers of a cluster (see [`Bridge`]); messages from those servers come in through
    /// [`BrokerPublisher::publish_remote`].
    pub fn bridge(mut self, bridge: Arc<dyn Bridge>) -> Self {
        self.bridge = Some(bridge);
        self
    }

    /// Asks `handover`, before each CONNECT attaches its session, to end the client ID's
    /// connections on the other servers of a cluster and to bring its persistent session here
    /// (see [`Handover`]).
    pub fn handover(mut self, handover: Arc<dyn Handover>) -> Self {
        self.handover = Some(handover);
        self
    }

    /// Binds `addr` and serves on it; see [`BrokerBuilder::serve`].
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the address cannot be bound, and everything `serve` refuses.
    pub async fn bind(self, addr: SocketAddr) -> crate::Result<BrokerHandle> {
        let listener = TcpListener::bind(addr).await.map_err(|e| Error::Io {
            context: "binding the MQTT listener",
            reason: e.to_string(),
        })?;
        self.serve(listener).await
    }

    /// Builds the mutual TLS configuration from the registry's ACTIVE CAs and the server's
    /// identity, subscribes to the registry's events (a certificate or CA leaving ACTIVE
    /// disconnects its devices at once) and starts accepting on `listener`. Call it inside a
    /// tokio runtime; the broker's tasks run on it until [`BrokerHandle::shutdown`].
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] when the identity or the registry's CAs make no TLS configuration,
    /// [`Error::Config`] when a [`BrokerConfig`] limit is out of range, [`Error::Io`] when the
    /// listener has no local address.
    pub async fn serve(self, listener: TcpListener) -> crate::Result<BrokerHandle> {
        let BrokerBuilder {
            registry,
            tls,
            config,
            directory,
            services: custom,
            store,
            rules,
            bridge,
            handover,
        } = self;
        let directory = directory.unwrap_or_else(|| {
            Arc::new(RegistryDirectory::new(
                registry.clone(),
                config.fleet.clone(),
            ))
        });
        let mut services = Services::default();
        for service in custom {
            services.add(service);
        }
        if let Some(engine) = &rules {
            services.add(Arc::new(rules::BasicIngestService::new(engine.clone())));
        }
        services.add(Arc::new(FleetProvisioningService::new(directory.clone())));
        services.add(Arc::new(RevocationService::new(directory.clone())));
        services.add(Arc::new(FirmwareJobService::new(
            config.firmware_trust.clone(),
        )));
        let tls_error = |e: thingkit_provision::Error| Error::Tls(e.to_string());
        let builder = ServerConfigBuilder::from_pem(&tls.chain_pem, &tls.key_pem)
            .map_err(tls_error)?
            .alpn_protocols(config.alpn_protocols.clone());
        let configs = {
            let reg = registry.read().unwrap_or_else(|p| p.into_inner());
            Arc::new(ReloadableServerConfig::new(
                builder.build(&*reg).map_err(tls_error)?,
            ))
        };
        let config_error = |field: &'static str| {
            move |e: thingkit_meter::Error| Error::Config {
                field,
                reason: e.to_string(),
            }
        };
        let meter = Meter::new(
            "broker",
            config.metering.clone(),
            config.usage_window,
            1_000_000,
        )
        .map_err(config_error("metering"))?;
        let account_limiter = RateLimiter::new(
            LimiterConfig::default()
                .with_default(config.account_limits)
                .with_max_keys(config.max_accounts),
        )
        .map_err(config_error("account_limits"))?;
        // One meter table and connect limiter per limit class; the default class first.
        let mut classes = Vec::with_capacity(1 + config.limit_classes.len());
        let defaults = std::iter::once((config.connection_limits, config.connect_limits));
        let custom = config.limit_classes.iter().map(|c| {
            (
                c.connection_limits,
                c.connect_limits.or(config.connect_limits),
            )
        });
        for (connection_limits, connect_limits) in defaults.chain(custom) {
            let table = ConnectionTable::new(
                config.metering.clone(),
                &connection_limits,
                config.max_connections,
            )
            .map_err(config_error("connection_limits"))?;
            let connect_limiter = match connect_limits {
                Some(limits) => Some(
                    RateLimiter::new(
                        LimiterConfig::default()
                            .with_default(limits)
                            .with_max_keys(config.max_connect_clients),
                    )
                    .map_err(config_error("connect_limits"))?,
                ),
                None => None,
            };
            classes.push(LimitState {
                table,
                connect_limiter,
            });
        }
        let local_addr = listener.local_addr().map_err(|e| Error::Io {
            context: "reading the listener's address",
            reason: e.to_string(),
        })?;
        let (events_tx, events_rx) = mpsc::unbounded_channel::<RegistryEvent>();
        registry
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .subscribe(move |event| {
                let _ = events_tx.send(event.clone());
            });
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let limits = RouterLimits::default()
            .with_max_offline_messages(config.max_queued)
            .with_max_retained_messages(config.max_retained_messages)
            .with_max_retained_bytes(config.max_retained_bytes);
        let router = match store {
            Some(store) => {
                let started = Instant::now();
                let router =
                    Router::with_store(limits, store, started, std::time::SystemTime::now())?;
                tracing::info!(elapsed = ?started.elapsed(), "sessions and retained messages restored");
                router
            }
            None => Router::new(limits),
        };
        let mut router = router;
        if let Some(bridge) = &bridge {
            let bridge = bridge.clone();
            router.set_interest_observer(Box::new(move |filter, subscribed| {
                bridge.interest(filter, subscribed)
            }));
        }
        if let Some(bridge) = bridge.as_ref().filter(|b| b.routes_shared()) {
            let bridge = bridge.clone();
            router.route_shared_through(Box::new(move |group, filter, subscribed| {
                bridge.shared(group, filter, subscribed)
            }));
        }
        let session_config = config.session_config();
        let policy_generation = directory.generation();
        // A number unique to this broker instance (its start time in nanoseconds), so session
        // identifiers differ across restarts.
        let instance = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let activity = activity::Activity::new(
            config.connection_log_retention,
            config.max_connection_records,
            config.max_activity_devices,
            instance,
            unix_now(),
        );
        let shared = Arc::new(Shared {
            session_config,
            delayed_wills: Mutex::new(HashMap::new()),
            services,
            presence: Mutex::new(PresenceVersions::new(PresenceVersionsConfig::default())),
            config,
            directory,
            router: Mutex::new(router),
            classes,
            meter,
            account_limiter,
            stats: Stats::default(),
            epoch: Instant::now(),
            shutdown: shutdown_rx,
            by_certificate: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(1),
            policy_sets: policy_sets::PolicySets::default(),
            policy_generation,
            rules,
            bridge,
            handover,
            activity,
        });
        if let Some(engine) = &shared.rules {
            rules::install(engine, &shared);
        }
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(listener, shared.clone(), configs.clone()));
        tasks.spawn(revocation_loop(
            events_rx,
            shared.clone(),
            registry,
            builder,
            configs,
        ));
        tracing::info!(%local_addr, "broker listening (MQTT 3.1.1 + 5.0 over mutual TLS)");
        Ok(BrokerHandle {
            metrics: MetricsSource::new(shared.clone()),
            shared,
            local_addr,
            shutdown_tx,
            tasks,
        })
    }
}

/// A running broker: its address, counters and meter, a way to disconnect a certificate's
/// devices, and graceful shutdown. Dropping it does not stop the broker: call
/// [`BrokerHandle::shutdown`].
pub struct BrokerHandle {
    shared: Arc<Shared>,
    metrics: MetricsSource,
    local_addr: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// Publishes messages into a running broker from outside MQTT (the control plane's HTTP
/// `Publish`): cheap to clone, usable after the [`BrokerHandle`] moved elsewhere.
#[derive(Clone)]
pub struct BrokerPublisher {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BrokerPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerPublisher").finish_non_exhaustive()
    }
}

impl BrokerPublisher {
    /// Stores (if `retain`) and routes one message to the subscribers, as if a client had
    /// published it (no client: No Local never applies). Returns once every QoS 1 delivery is
    /// queued, or kept in the store for a disconnected persistent session, and the cluster's
    /// bridge (if any) confirmed it durable: the caller may then acknowledge it.
    /// Authorization is the caller's business.
    ///
    /// # Errors
    ///
    /// The retained store is full (the message is refused as a whole), the session store
    /// failed to keep a delivery, or the bridge could not make it durable
    /// ([`crate::Error::Bridge`]).
    pub async fn publish(
        &self,
        topic: TopicName,
        payload: bytes::Bytes,
        qos: QoS,
        retain: bool,
        properties: PacketProperties,
    ) -> crate::Result<()> {
        let message = Arc::new(crate::Message {
            topic,
            payload,
            qos,
            retain,
            properties,
            from: None,
            received: Instant::now(),
        });
        self.shared
            .stats
            .publishes_in
            .fetch_add(1, Ordering::Relaxed);
        let (routed, confirmation) =
            connection::route_message_from(&self.shared, &message, &rules::Origin::default())?;
        connection::place_blocked(&self.shared, routed.blocked).await?;
        match confirmation {
            Some(confirmation) => confirmation.wait().await.map_err(crate::Error::Bridge),
            None => Ok(()),
        }
    }

    /// Routes a message that another server of the cluster accepted (and that came through a
    /// [`Bridge`]) to this server's subscribers: stored if retained, each delivery checked
    /// against its subscriber's `iot:Receive` as for a local publish, No Local applied with
    /// [`crate::Message::from`]. Unlike [`BrokerPublisher::publish`], the rules engine does not
    /// see it (it ran on the server that accepted the message) and the bridge is not offered it
    /// (no loops). Returns once every QoS 1 delivery is queued or stored.
    ///
    /// # Errors
    ///
    /// As [`BrokerPublisher::publish`]: the retained store is full, or the session store failed
    /// to keep a delivery.
    pub async fn publish_remote(&self, message: Arc<crate::Message>) -> crate::Result<()> {
        self.shared
            .stats
            .remote_publishes_in
            .fetch_add(1, Ordering::Relaxed);
        let routed = connection::route_remote(&self.shared, &message)?;
        connection::place_blocked(&self.shared, routed.blocked).await
    }

    /// Delivers a message to one member here of the shared subscription
    /// `$share/{group}/{filter}`, chosen by a bridge that routes shared subscriptions
    /// cluster-wide ([`Bridge::routes_shared`]): the message went to this server for that
    /// group, and to no other. `iot:Receive` is checked when the copy is written, as for any.
    /// Returns once the copy is queued or stored; nothing when no member is here any more.
    ///
    /// # Errors
    ///
    /// The session store failed to keep the copy for a detached member.
    pub async fn publish_shared(
        &self,
        group: &str,
        filter: &TopicFilter,
        message: Arc<crate::Message>,
    ) -> crate::Result<()> {
        self.shared
            .stats
            .remote_publishes_in
            .fetch_add(1, Ordering::Relaxed);
        let routed = self
            .shared
            .router
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_route_shared(group, filter, &message)?;
        connection::place_blocked(&self.shared, routed.blocked).await
    }

    /// Routes messages the cluster accepted earlier to `client_id`'s session alone, in order,
    /// by its subscriptions ([`crate::Router::try_route_to`]; each delivery checked against
    /// `iot:Receive` when it is written, like any): what a session that moved to this server
    /// may have missed while it moved ([`Handover::adopted`]). Neither the rules engine, the
    /// retained store nor the bridge sees them. Returns how many copies were queued, once each
    /// is queued or stored.
    ///
    /// # Errors
    ///
    /// The session store failed to keep a copy for the detached session (the copies before it
    /// are kept).
    pub async fn replay_to(
        &self,
        client_id: &str,
        messages: &[Arc<crate::Message>],
    ) -> crate::Result<usize> {
        let mut queued = 0;
        for message in messages {
            let routed = self
                .shared
                .router
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .try_route_to(client_id, message)?;
            queued += routed.queued + routed.blocked.len();
            connection::place_blocked(&self.shared, routed.blocked).await?;
        }
        Ok(queued)
    }

    /// Another server of the cluster takes `client_id` over, session and all (see
    /// [`Handover`]): its connection here, if any, ends (MQTT 5 DISCONNECT 0x8E Session taken
    /// over; 3.1.1: the network connection closes) and its session leaves this server's memory
    /// but not the store ([`crate::Router::release`]). Returns once the session has left (the
    /// QoS 1 messages its connection had in flight stored), or after `timeout`; whether there
    /// was a session.
    pub async fn release(&self, client_id: &str, timeout: Duration) -> bool {
        let id: Arc<str> = client_id.into();
        let lock = || self.shared.router.lock().unwrap_or_else(|p| p.into_inner());
        if !lock().release(&id) {
            return false;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while lock().has_session(&id) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }

    /// Another server of the cluster accepted a connection with `client_id`: its connection
    /// here, if any, ends (0x8E Session taken over) and its session stays here, detached (when
    /// persistent). Returns whether a connection was ended.
    pub fn kick(&self, client_id: &str) -> bool {
        self.shared
            .router
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .kick(client_id, ReasonCode::SESSION_TAKEN_OVER)
    }
}

impl std::fmt::Debug for BrokerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl BrokerHandle {
    /// The address the broker listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A publisher into this broker, for messages that arrive other than over MQTT.
    pub fn publisher(&self) -> BrokerPublisher {
        BrokerPublisher {
            shared: self.shared.clone(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// The broker's Prometheus metrics and health, for [`serve_metrics`] or another endpoint:
    /// a cheap clone of one registry built when the broker started, read at each
    /// [`MetricsSource::render`]. It stays valid after [`BrokerHandle::shutdown`] (the health
    /// then reads "shutting down").
    pub fn metrics(&self) -> MetricsSource {
        self.metrics.clone()
    }

    /// What the router's caps and expiry dropped so far.
    pub fn router_counters(&self) -> RouterCounters {
        self.shared
            .router
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .counters()
    }

    /// The node meter (usage per account, device, kind; flushed when connections close).
    pub fn meter(&self) -> &Meter {
        &self.shared.meter
    }

    /// Connections past CONNECT that hold a meter slot now (what
    /// [`BrokerConfig::max_connections`] caps).
    pub fn connections(&self) -> usize {
        self.shared.connections()
    }

    /// A reader of the activity records that stays usable after this handle moved (cheap to
    /// clone); the methods below are its methods.
    pub fn activity(&self) -> ActivitySource {
        ActivitySource::new(self.shared.clone())
    }

    /// The connection log: a record of every accepted connection that was open at some time
    /// since `since_unix` (Unix seconds) — those still open and those that closed at
    /// `since_unix` or later — in the order they were accepted, as far as
    /// [`BrokerConfig::connection_log_retention`] and [`BrokerConfig::max_connection_records`]
    /// kept them. A copy: what the audit's connection checks read (one certificate on
    /// overlapping connections; a connection ended with `DUPLICATE_CLIENTID`). Refused CONNECTs
    /// are not connections; they count in [`BrokerHandle::take_activity`]'s attempts.
    pub fn connection_log(&self, since_unix: u64) -> Vec<ConnectionRecord> {
        self.activity().connection_log(since_unix)
    }

    /// Drains the per-device detect metrics gathered since the previous call (or the start)
    /// and starts a new window at `now_unix`. Meant for **one reader** (the detect
    /// evaluation): a second caller would take the counts away from the first. Live
    /// connections' counts arrive within [`FOLD_INTERVAL`]; a closed connection's are in
    /// before its meter slot is freed ([`BrokerHandle::connections`]).
    pub fn take_activity(&self, now_unix: u64) -> ActivityWindow {
        self.activity().take_activity(now_unix)
    }

    /// Job messages and firmware stream bytes since the start, for the maintenance-cost
    /// metric.
    pub fn maintenance_counters(&self) -> MaintenanceCounters {
        self.activity().maintenance_counters()
    }

    /// The rules engine's most recent publish-to-action latencies in microseconds (at most
    /// [`RULES_LATENCY_SAMPLES`], oldest first; see [`rules::RulesEngine::action_latencies`]).
    /// Empty without a rules engine.
    pub fn rules_latencies(&self) -> Vec<u32> {
        self.activity().rules_latencies()
    }

    /// How full the connection log and the activity table are, and what they dropped.
    pub fn activity_counters(&self) -> ActivityCounters {
        self.activity().activity_counters()
    }

    /// Disconnects every live connection that authenticated with certificate `id` (MQTT 5:
    /// DISCONNECT 0x98 Administrative action) and returns how many there were. It does not
    /// change the certificate: a device may connect again unless its certificate also leaves
    /// ACTIVE in the registry (which disconnects it by itself).
    pub fn disconnect_certificate(&self, id: &CertificateId) -> usize {
        kick_certificate(&self.shared, id)
    }

    /// Graceful shutdown: stop accepting, send DISCONNECT 0x8B (Server shutting down) to MQTT 5
    /// clients, close every connection (flushing its usage into the meter) and wait for the
    /// tasks, at most `grace`; then the rules engine (if any) flushes its windows, drains its
    /// action queues and closes its sinks ([`rules::RulesEngine::shutdown_blocking`]). Hands closed windows to [`BrokerConfig::usage_sink`] (if any)
    /// and returns the meter's remaining totals.
    pub async fn shutdown(mut self, grace: Duration) -> BTreeMap<UsageKey, Counts> {
        let _ = self.shutdown_tx.send(true);
        let _ = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
        if let Some(engine) = self.shared.rules.clone() {
            // Windows flushed, queues drained, sinks closed (Parquet footers written).
            let _ = tokio::task::spawn_blocking(move || engine.shutdown_blocking()).await;
        }
        if let Some(sink) = &self.shared.config.usage_sink {
            let closed = self.shared.meter.drain_closed(unix_now());
            if !closed.is_empty() {
                sink(closed);
            }
        }
        tracing::info!("broker stopped");
        self.shared.meter.totals()
    }
}

/// Installs SIGINT and SIGTERM handlers (Ctrl-C elsewhere than Unix) and returns a future that
/// resolves with the signal's name at the first of them: what `kill`, systemd, Docker and
/// Kubernetes send to stop a service. The handlers are installed when this returns, not when
/// the future is first polled, so a supervisor that signals right after reading the
/// "listening" line is never met by the default action (termination).
///
/// # Errors
///
/// When the runtime cannot install a handler.
#[cfg(unix)]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = &'static str> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    })
}

/// Installs the Ctrl-C handler and returns a future that resolves at Ctrl-C (only Unix has
/// SIGTERM).
///
/// # Errors
///
/// Never on this platform; the signature matches the Unix one.
#[cfg(not(unix))]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = &'static str> + Send> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    })
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    configs: Arc<ReloadableServerConfig>,
) {
    let mut shutdown = shared.shutdown.clone();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                match accepted {
                    Ok((tcp, peer)) => {
                        let _ = tcp.set_nodelay(true);
                        let acceptor = tokio_rustls::TlsAcceptor::from(configs.current());
                        connections.spawn(connection::run(tcp, peer, acceptor, shared.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    // Every connection task watches the same shutdown signal; wait for them to close.
    while connections.join_next().await.is_some() {}
}

async fn revocation_loop<S: RegistryStore + Send + Sync + 'static>(
    mut events: mpsc::UnboundedReceiver<RegistryEvent>,
    shared: Arc<Shared>,
    registry: Arc<RwLock<Registry<S>>>,
    builder: ServerConfigBuilder,
    configs: Arc<ReloadableServerConfig>,
) {
    let mut shutdown = shared.shutdown.clone();
    let mut sweep = tokio::time::interval(SESSION_SWEEP);
    loop {
        let event = tokio::select! {
            e = events.recv() => match e { Some(e) => e, None => break },
            _ = shutdown.changed() => break,
            _ = sweep.tick() => {
                if let Some(sink) = shared.config.usage_sink.clone() {
                    let closed = shared.meter.drain_closed(unix_now());
                    if !closed.is_empty() {
                        let _ = tokio::task::spawn_blocking(move || sink(closed)).await;
                    }
                }
                let swept = shared.router.lock().unwrap_or_else(|p| p.into_inner()).try_sweep(Instant::now());
                let n = swept.unwrap_or_else(|e| {
                    tracing::error!(error = %e, "session store failed while removing expired sessions");
                    0
                });
                if n > 0 {
                    tracing::info!(sessions = n, "expired sessions removed");
                }
                continue;
            }
        };
        match event {
            RegistryEvent::CertificateDeactivated {
                certificate_id,
                status,
            } => {
                let kicked = kick_certificate(&shared, &certificate_id);
                tracing::warn!(certificate = %certificate_id, %status, sessions = kicked,
                    "certificate left ACTIVE: its sessions are disconnected");
            }
            RegistryEvent::CaDeactivated { ca_certificate_id } => {
                let reg = registry.read().unwrap_or_else(|p| p.into_inner());
                let mut kicked = 0;
                let ids: Vec<CertificateId> = shared
                    .by_certificate
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .keys()
                    .copied()
                    .collect();
                for id in ids {
                    if reg.certificate(&id).and_then(|c| c.ca) == Some(ca_certificate_id) {
                        kicked += kick_certificate(&shared, &id);
                    }
                }
                match builder.build(&*reg) {
                    Ok(config) => configs.replace(config),
                    Err(e) => tracing::error!(error = %e, "cannot rebuild the TLS configuration"),
                }
                tracing::warn!(ca = %ca_certificate_id, sessions = kicked,
                    "CA deactivated: its devices are disconnected, TLS configuration rebuilt");
            }
            _ => {}
        }
    }
}

fn kick_certificate(shared: &Shared, id: &CertificateId) -> usize {
    let map = shared
        .by_certificate
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let Some(list) = map.get(id) else { return 0 };
    for (_, kick) in list {
        let _ = kick.send(Some(ReasonCode::ADMINISTRATIVE_ACTION));
    }
    shared
        .stats
        .revocation_disconnects
        .fetch_add(list.len() as u64, Ordering::Relaxed);
    list.len()
}
