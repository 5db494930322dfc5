//! The fleet dashboard `thingkit serve` adds to its HTTPS API listener: `GET /dashboard` (the
//! fleet report's HTML page) and `GET /dashboard.json` (its JSON), computed live from the
//! registry, the broker's connection log and rules latencies, the meter's usage file, and an
//! audit run on a snapshot of the registry and the connection log.
//!
//! Access: HTTP Basic authentication with an access key ID (user) and its secret (password)
//! from the server's key store, whose identity policy must allow `iot:DescribeAuditTask` (a key
//! without a policy may do everything). No or wrong credentials: 401 with a
//! `WWW-Authenticate: Basic` challenge; a key whose policy does not allow it: 403.
//!
//! Connected devices over time: the server samples the number of connected registered things
//! once a minute into a ring of the last [`MAX_SAMPLES`] samples.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use base64::Engine as _;
use thingkit_api::keys::KeyStore;
use thingkit_broker::ActivitySource;
use thingkit_policy::ArnPrefix;
use thingkit_provision::{Registry, RegistryStore};

use crate::audit::RegistryData;
use crate::report::{self, ConnectedSample, FleetReport};

/// How many connected-devices samples the server keeps (one a minute: 24 hours).
pub const MAX_SAMPLES: usize = 24 * 60;

/// The action an access key's identity policy must allow to read the dashboard.
pub const ACTION: &str = "iot:DescribeAuditTask";

/// What the dashboard reads.
pub struct Dashboard<S: RegistryStore> {
    /// The live registry.
    pub registry: Arc<RwLock<Registry<S>>>,
    /// The broker's activity records.
    pub activity: ActivitySource,
    /// The access keys.
    pub keys: Arc<KeyStore>,
    /// The account's ARN prefix.
    pub arn: ArnPrefix,
    /// The account ID.
    pub account: String,
    /// The region.
    pub region: String,
    /// The usage ledger (`data_dir/usage.jsonl`, or the cluster's in PostgreSQL).
    pub usage: crate::report::UsageLedger,
    /// The server's metering policy (which price table bills the usage).
    pub metering: thingkit_meter::MeteringPolicy,
    /// Connected-devices samples, oldest first.
    pub samples: Mutex<VecDeque<ConnectedSample>>,
    /// The jobs engine (rollout progress).
    pub jobs: Option<thingkit_broker::SharedJobs>,
    /// The detect loop's detector (the configuration's and the API's profiles).
    pub detector: Option<Arc<Mutex<thingkit_audit::detect::Detector>>>,
    /// `[detect] vulnerable_firmware`.
    pub vulnerable_firmware: Vec<String>,
}

impl<S: RegistryStore + Send + Sync + 'static> Dashboard<S> {
    /// Names of the registered things connected now.
    fn connected(&self, registered: &BTreeSet<String>) -> Vec<String> {
        let now = report::now().max(0) as u64;
        let open: BTreeSet<String> = self
            .activity
            .connection_log(now)
            .into_iter()
            .filter(|c| c.disconnected_at.is_none())
            .map(|c| c.thing_name.unwrap_or(c.client_id))
            .filter(|t| registered.contains(t))
            .collect();
        open.into_iter().collect()
    }

    /// Takes one connected-devices sample.
    pub fn sample(&self) {
        let registered: BTreeSet<String> = match self.registry.read() {
            Ok(r) => r.things().map(|(n, _)| n.to_string()).collect(),
            Err(_) => return,
        };
        let connected = self.connected(&registered).len() as u64;
        if let Ok(mut samples) = self.samples.lock() {
            if samples.len() >= MAX_SAMPLES {
                samples.pop_front();
            }
            samples.push_back(ConnectedSample {
                at: report::now(),
                connected,
            });
        }
    }

    /// The report now.
    pub fn report(&self) -> Option<FleetReport> {
        let now = report::now();
        let data = {
            let registry = self.registry.read().ok()?;
            RegistryData::from_registry(&registry, &self.account, &self.region).ok()?
        };
        let mut snapshot = data.snapshot;
        // The connection checks look at the broker's log of the last 31 days.
        let since = (now - 31 * 24 * 3600).max(0) as u64;
        snapshot.connections = self
            .activity
            .connection_log(since)
            .into_iter()
            .map(|c| thingkit_audit::ConnectionRecord {
                client_id: c.client_id,
                certificate_id: c.principal,
                source: c.source_ip.to_string(),
                connected_at: c.connected_at as i64,
                disconnected_at: c.disconnected_at.map(|d| d as i64),
                disconnect_reason: None,
            })
            .collect();
        let mut inputs = data.inputs;
        let registered: BTreeSet<String> = inputs.things.iter().map(|t| t.0.clone()).collect();
        inputs.connected = self.connected(&registered);
        inputs.now = now;
        inputs.vulnerable_firmware = self.vulnerable_firmware.clone();
        inputs.findings =
            thingkit_audit::run_audit(&snapshot, &thingkit_audit::AuditConfig::default(), now)
                .findings;
        inputs.usage = self.usage.read(&self.metering).unwrap_or_else(|e| {
            tracing::warn!(error = %e.0, "dashboard: usage not read");
            Vec::new()
        });
        inputs.samples = self
            .samples
            .lock()
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        inputs.rules_latencies_us = self
            .activity
            .rules_latencies()
            .into_iter()
            .map(u64::from)
            .collect();
        let m = self.activity.maintenance_counters();
        inputs.maintenance = Some(thingkit_audit::metrics::MaintenanceUsage {
            firmware_bytes: m.stream_bytes_out,
            job_messages: m.job_messages_in.saturating_add(m.job_messages_out),
        });
        if let Some(jobs) = &self.jobs
            && let Ok(jobs) = jobs.lock()
        {
            inputs.rollout = report::rollout(&jobs);
        }
        if let Some(detector) = &self.detector
            && let Ok(detector) = detector.lock()
        {
            inputs.violations = detector
                .active_violations()
                .map(|v| report::ViolationRow {
                    thing: v.thing_name.clone(),
                    profile: v.security_profile_name.clone(),
                    behavior: v.behavior.name.clone(),
                    since: v.violation_start_time as i64,
                })
                .collect();
        }
        Some(FleetReport::build(&inputs))
    }

    /// Checks the request's Basic credentials: 401 or 403 when refused.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), StatusCode> {
        let unauthorized = || StatusCode::UNAUTHORIZED;
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(unauthorized)?;
        let encoded = value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))
            .ok_or_else(unauthorized)?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(unauthorized)?;
        let (id, secret) = decoded.split_once(':').ok_or_else(unauthorized)?;
        let known = self.keys.secret(id).ok_or_else(unauthorized)?;
        if !same_secret(known.as_bytes(), secret.as_bytes()) {
            return Err(unauthorized());
        }
        thingkit_api::identity::authorize(&self.keys, id, ACTION, "*", &self.arn)
            .map_err(|_| StatusCode::FORBIDDEN)
    }

    async fn answer(self: Arc<Self>, headers: HeaderMap, json: bool) -> Response<Body> {
        if let Err(status) = self.authorize(&headers) {
            let text = if status == StatusCode::FORBIDDEN {
                "403 Forbidden\n"
            } else {
                "401 Unauthorized\n"
            };
            let mut r = Response::new(Body::from(text));
            *r.status_mut() = status;
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"thingkit dashboard\""),
                );
            }
            return r;
        }
        let report = tokio::task::spawn_blocking(move || self.report())
            .await
            .ok()
            .flatten();
        let Some(report) = report else {
            let mut r = Response::new(Body::from("500 Internal Server Error\n"));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return r;
        };
        let (body, kind) = if json {
            (report.to_json(), "application/json")
        } else {
            (report.to_html(), "text/html; charset=utf-8")
        };
        let mut r = Response::new(Body::from(body));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

/// Compares two secrets in time that depends on their lengths only.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `/dashboard` and `/dashboard.json` routes.
pub fn routes<S: RegistryStore + Send + Sync + 'static>(
    dashboard: Arc<Dashboard<S>>,
) -> axum::Router {
    let html = dashboard.clone();
    axum::Router::new()
        .route(
            "/dashboard",
            axum::routing::get(move |headers: HeaderMap| html.clone().answer(headers, false)),
        )
        .route(
            "/dashboard.json",
            axum::routing::get(move |headers: HeaderMap| dashboard.clone().answer(headers, true)),
        )
}

/// The dashboard of a server, authorizing with the API's access keys `keys` and reading usage
/// from `usage`; starts the once-a-minute sampling task (it ends with the runtime).
// Each argument is one of the server's parts `serve` built.
#[allow(clippy::too_many_arguments)]
pub fn start<S: RegistryStore + Send + Sync + 'static>(
    config: &crate::config::ServeConfig,
    keys: Arc<KeyStore>,
    usage: crate::report::UsageLedger,
    registry: Arc<RwLock<Registry<S>>>,
    broker: &thingkit_broker::BrokerHandle,
    arn: &ArnPrefix,
    jobs: thingkit_broker::SharedJobs,
    detector: Option<Arc<Mutex<thingkit_audit::detect::Detector>>>,
) -> Result<Arc<Dashboard<S>>, crate::Failure> {
    let dashboard = Arc::new(Dashboard {
        registry,
        activity: broker.activity(),
        keys,
        arn: arn.clone(),
        account: config.account.account_id.clone(),
        region: config.account.region.clone(),
        usage,
        metering: config.metering.preset.policy(),
        samples: Mutex::new(VecDeque::new()),
        jobs: Some(jobs),
        detector,
        vulnerable_firmware: config.detect.vulnerable_firmware.clone(),
    });
    tokio::spawn(sample_loop(dashboard.clone()));
    Ok(dashboard)
}

/// Samples connected devices now and then once a minute, forever (abort the task to stop).
pub async fn sample_loop<S: RegistryStore + Send + Sync + 'static>(dashboard: Arc<Dashboard<S>>) {
    loop {
        dashboard.sample();
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}
