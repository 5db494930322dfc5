//! Prometheus metrics and the health endpoint.
//!
//! Nothing here is on the hot path: connection tasks bump the [`Stats`](super::Stats) atomics
//! they always did, and a scrape reads them (and, for a few microseconds under its lock, the
//! router's counters and gauges) into OpenMetrics text with prometheus-client. The registry is
//! built once per broker, holding one [`Collector`] over the broker's shared state; there is no
//! global registry, so two brokers in one process report separately.

use std::fmt;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use super::Shared;

/// The content type of [`MetricsSource::render`]'s text: OpenMetrics 1.0, which Prometheus
/// asks for first and prometheus-client writes.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A running broker's metrics and health, for an HTTP endpoint ([`serve_metrics`]) or anything
/// else that wants the exposition text. Cheap to clone; every clone reads the same broker.
/// Get one from [`BrokerHandle::metrics`](super::BrokerHandle::metrics).
#[derive(Clone)]
pub struct MetricsSource {
    registry: Arc<Registry>,
    shared: Arc<Shared>,
}

impl fmt::Debug for MetricsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsSource").finish_non_exhaustive()
    }
}

impl MetricsSource {
    /// The registry (metric names prefixed `thingkit_`) over `shared`.
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let mut registry = Registry::with_prefix("thingkit");
        registry.register_collector(Box::new(BrokerCollector {
            shared: shared.clone(),
        }));
        MetricsSource {
            registry: Arc::new(registry),
            shared,
        }
    }

    /// The metrics now, as OpenMetrics text ending in `# EOF` (content type
    /// [`METRICS_CONTENT_TYPE`]). The metric names and types are listed in the crate's README.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Writing to a String does not fail; a collector error would be ours.
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }

    /// Whether the broker still accepts connections: true until shutdown begins.
    pub fn healthy(&self) -> bool {
        !*self.shared.shutdown.borrow()
    }
}

/// Serves `GET /metrics` ([`MetricsSource::render`], content type [`METRICS_CONTENT_TYPE`])
/// and `GET /health` (200 `ok` while the broker accepts connections, 503 `shutting down` once
/// its shutdown has begun) on `listener` over HTTP/1.1 until `shutdown` resolves; any other
/// path is 404. Plain HTTP: bind it to an address only the scraper reaches.
///
/// # Errors
///
/// When the listener fails (the error axum's server returns).
pub async fn serve_metrics(
    listener: TcpListener,
    source: MetricsSource,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics endpoint listening (GET /metrics, GET /health)");
    }
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(source);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(source): State<MetricsSource>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        source.render(),
    )
}

async fn health(State(source): State<MetricsSource>) -> (StatusCode, &'static str) {
    if source.healthy() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    }
}

/// Reads the broker's counters at scrape time.
struct BrokerCollector {
    shared: Arc<Shared>,
}

impl fmt::Debug for BrokerCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerCollector").finish_non_exhaustive()
    }
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    ConstCounter::new(value).encode(enc.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    ConstGauge::new(value).encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl Collector for BrokerCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let shared = &self.shared;
        let s = shared.stats.snapshot();
        let (router, sessions, offline, retained, retained_bytes) = {
            let router = shared.router.lock().unwrap_or_else(|p| p.into_inner());
            (
                router.counters(),
                router.session_count(),
                router.offline_total(),
                router.retained_count(),
                router.retained_bytes(),
            )
        };
        let n = |v: usize| v as u64;

        // OpenMetrics' info type: the sample is `thingkit_build_info{version="..."} 1`, what
        // Prometheus stores like the `*_build_info` gauges other exporters write, without a
        // gauge family whose name ends in the reserved `_info` suffix.
        Info::new([("version", env!("CARGO_PKG_VERSION"))]).encode(enc.encode_descriptor(
            "build",
            "The broker's version.",
            None,
            MetricType::Info,
        )?)?;

        gauge(
            &mut enc,
            "connections",
            "Connections past CONNECT now.",
            n(shared.connections()),
        )?;
        gauge(
            &mut enc,
            "sessions",
            "Sessions the router holds now (connected or persistent).",
            n(sessions),
        )?;
        gauge(
            &mut enc,
            "offline_queued_messages",
            "QoS 1 messages queued for disconnected persistent sessions now.",
            n(offline),
        )?;
        gauge(
            &mut enc,
            "retained_messages",
            "Retained messages held now.",
            n(retained),
        )?;
        gauge(
            &mut enc,
            "retained_bytes",
            "Topic and payload bytes of the retained messages held now.",
            n(retained_bytes),
        )?;

        counter(
            &mut enc,
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out.",
            s.tls_failures,
        )?;
        counter(
            &mut enc,
            "connects_accepted",
            "CONNECTs accepted.",
            s.connects_accepted,
        )?;
        counter(
            &mut enc,
            "connects_refused",
            "CONNECTs refused (authentication, authorization, rate, capacity).",
            s.connects_refused,
        )?;
        counter(
            &mut enc,
            "messages_in",
            "PUBLISH packets accepted from clients.",
            s.publishes_in,
        )?;
        counter(
            &mut enc,
            "messages_out",
            "Messages written to subscribers.",
            s.deliveries,
        )?;
        {
            let mut denied = enc.encode_descriptor(
                "denied",
                "Requests denied by policy, by action (connect, publish, subscribe, receive).",
                None,
                MetricType::Counter,
            )?;
            for (action, value) in [
                ("connect", s.denied_connect),
                ("publish", s.denied_publish),
                ("subscribe", s.denied_subscribe),
                ("receive", s.denied_receive),
            ] {
                ConstCounter::new(value).encode(denied.encode_family(&[("action", action)])?)?;
            }
        }
        counter(
            &mut enc,
            "throttled",
            "Publishes refused or delayed by a rate limit.",
            s.throttled,
        )?;
        counter(
            &mut enc,
            "meter_refusals",
            "Publishes refused because the meter or the account limiter failed.",
            s.meter_refusals,
        )?;
        counter(
            &mut enc,
            "queue_drops",
            "Deliveries dropped: QoS 0 under pressure, QoS 1 for a disconnected session whose queue is full, expired or oversized messages.",
            s.queue_drops,
        )?;
        counter(
            &mut enc,
            "backpressure_waits",
            "QoS 1 publishes that waited for room in a subscriber's full queue before they were acknowledged.",
            s.backpressure_waits,
        )?;
        counter(
            &mut enc,
            "bridge_refusals",
            "QoS 1 publishes refused because the cluster's bridge could not make them durable.",
            s.bridge_refusals,
        )?;
        counter(
            &mut enc,
            "slow_subscriber_disconnects",
            "Subscribers disconnected because their queue stayed full while a publisher waited.",
            s.slow_subscriber_disconnects,
        )?;
        counter(
            &mut enc,
            "refusal_disconnects",
            "MQTT 3.1.1 connections closed because a QoS 1 publish of theirs was refused (3.1.1 has no negative PUBACK).",
            s.refusal_disconnects,
        )?;
        counter(
            &mut enc,
            "revocation_disconnects",
            "Connections closed because their certificate left ACTIVE or was disconnected.",
            s.revocation_disconnects,
        )?;
        counter(
            &mut enc,
            "provisioning_failures",
            "Topic service requests (fleet provisioning, revocation, firmware jobs, ...) whose service failed.",
            s.provisioning_failures,
        )?;
        counter(
            &mut enc,
            "router_outlet_refused",
            "QoS 0 deliveries a connected session's queue refused (full or closed).",
            router.outlet_refused,
        )?;
        counter(
            &mut enc,
            "router_ended_dropped",
            "QoS 1 deliveries that waited for room and found their (non-persistent) session ended.",
            router.ended_dropped,
        )?;
        counter(
            &mut enc,
            "router_offline_dropped",
            "Deliveries dropped because a disconnected session's queue was full.",
            router.offline_dropped,
        )?;
        counter(
            &mut enc,
            "router_offline_qos0_dropped",
            "QoS 0 deliveries to disconnected sessions (never queued).",
            router.offline_qos0_dropped,
        )?;
        counter(
            &mut enc,
            "router_expired_dropped",
            "Queued messages dropped because their Message Expiry Interval passed.",
            router.expired_dropped,
        )?;
        counter(
            &mut enc,
            "router_retained_refused",
            "Retained messages refused by the retained store's caps.",
            router.retained_refused,
        )?;
        counter(
            &mut enc,
            "router_retained_expired",
            "Retained messages removed because they expired.",
            router.retained_expired,
        )?;
        counter(
            &mut enc,
            "router_sessions_expired",
            "Persistent sessions removed because their Session Expiry Interval passed.",
            router.sessions_expired,
        )?;
        counter(
            &mut enc,
            "router_store_failures",
            "Writes to the session and retained-message store that failed.",
            router.store_failures,
        )?;
        if let Some(engine) = &shared.rules {
            encode_rules(&mut enc, &engine.stats())?;
        }
        Ok(())
    }
}

/// A counter family with one label: `(label value, value)` per sample.
fn labelled_counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    samples: &[(&str, u64)],
) -> fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in samples {
        let labels = [(label, *value)];
        ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The rules engine's counters (`thingkit_rules_*`).
fn encode_rules(enc: &mut DescriptorEncoder, s: &super::rules::RulesStats) -> fmt::Result {
    gauge(enc, "rules", "Topic rules installed now.", s.rules)?;
    counter(
        enc,
        "rules_matched",
        "(message, rule) pairs whose FROM filter matched.",
        s.matched,
    )?;
    counter(
        enc,
        "rules_fired",
        "Rule outputs (WHERE true, or a window's emitted row).",
        s.fired,
    )?;
    counter(
        enc,
        "rules_evaluation_errors",
        "Rule evaluations that failed (a limit, an external function).",
        s.evaluation_errors,
    )?;
    labelled_counter(
        enc,
        "rules_queue_dropped",
        "Work dropped because a rules queue was full (rules: the evaluator's; action: an action's).",
        "queue",
        &[
            ("rules", s.queue_dropped),
            ("action", s.action_queue_dropped),
        ],
    )?;
    counter(
        enc,
        "rules_hop_limited",
        "Republished messages not offered to rules: their chain reached 8 hops.",
        s.hop_limited,
    )?;
    let kinds = super::rules::ACTION_KINDS;
    let per_kind = |values: [u64; 3]| -> [(&str, u64); 3] {
        [
            (kinds[0], values[0]),
            (kinds[1], values[1]),
            (kinds[2], values[2]),
        ]
    };
    labelled_counter(
        enc,
        "rules_action_success",
        "Action deliveries that succeeded.",
        "action",
        &per_kind(s.action_success),
    )?;
    labelled_counter(
        enc,
        "rules_action_failure",
        "Action deliveries that failed after their attempts (reported to the error action).",
        "action",
        &per_kind(s.action_failure),
    )?;
    labelled_counter(
        enc,
        "rules_action_retries",
        "Action delivery retries.",
        "action",
        &per_kind(s.action_retries),
    )?;
    counter(
        enc,
        "rules_dead_lettered",
        "Error records written to the dead-letter file.",
        s.dead_lettered,
    )?;
    counter(
        enc,
        "rules_dead_letter_failures",
        "Error records lost because the dead-letter file could not be written.",
        s.dead_letter_failures,
    )?;
    labelled_counter(
        enc,
        "rules_window_refused",
        "Window events refused: late (after their window closed) or over capacity (max groups).",
        "reason",
        &[
            ("late", s.window_late),
            ("over_capacity", s.window_over_capacity),
        ],
    )?;
    counter(
        enc,
        "rules_rule_not_found",
        "Basic Ingest messages for a rule that does not exist or is disabled (AWS RuleNotFound).",
        s.rule_not_found,
    )
}
