//! The control-plane API as `thingkit serve` hosts it: its TLS configuration (the `[tls]`
//! server certificate, no client certificates), the broker as the data-plane publisher, and
//! the audit log (`data_dir/audit.jsonl`, one JSON object per request, and the `audit` log
//! target).

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use thingkit_api::{ApiError, ApiResult, AuditRecord, DataPublish, Publisher};
use thingkit_broker::{BrokerPublisher, ShadowService};
use thingkit_mqtt::{MqttStr, PacketProperties, Properties, QoS, TopicName};

use crate::Failure;

/// The audit log inside `data_dir`.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// The provisioning templates created through the API, inside `data_dir`.
pub const TEMPLATES_FILE: &str = "provisioning-templates.json";

/// The job templates the API keeps beside the jobs engine, inside `data_dir`.
pub const JOBS_API_FILE: &str = "jobs-api.json";

/// The topic rules created through the API (`RedbTopicRuleStore`), inside `data_dir`.
pub const RULES_FILE: &str = "rules.redb";

/// The Device Defender records inside `data_dir`: audit tasks and findings, the account's
/// audit configuration, scheduled audits, suppressions, security profiles.
pub const DEVICE_DEFENDER_FILE: &str = "device-defender.json";

/// Where the API keeps its access keys, topic rules and job templates: `data_dir`
/// (`access-keys.json`, `rules.redb`, `jobs-api.json`) on one server, the cluster's PostgreSQL
/// with `[cluster] postgres`.
pub struct ApiStores {
    /// The access keys.
    pub keys: Arc<thingkit_api::keys::KeyStore>,
    /// The topic rules made through the API.
    pub rules: Arc<dyn thingkit_api::topic_rule::TopicRuleStore>,
    /// Where the rules are, for messages.
    pub rules_source: String,
    /// The job templates.
    pub job_templates: Arc<thingkit_api::job_store::JobStore>,
}

impl ApiStores {
    /// The stores in `config.data_dir`, or in `control` (the cluster's PostgreSQL).
    pub fn open(
        config: &crate::config::ServeConfig,
        control: Option<&thingkit_cluster::PgControlStore>,
    ) -> Result<ApiStores, Failure> {
        if let Some(control) = control {
            let keys = thingkit_api::keys::KeyStore::with_backend(Arc::new(control.access_keys()))
                .map_err(|e| Failure(format!("[cluster] postgres (access keys): {}", e.message)))?;
            return Ok(ApiStores {
                keys: Arc::new(keys),
                rules: Arc::new(control.topic_rules()),
                rules_source: format!("PostgreSQL schema {}", config.cluster.schema),
                job_templates: Arc::new(thingkit_api::job_store::JobStore::with_backend(Arc::new(
                    control.job_templates(),
                ))),
            });
        }
        let keys_path = config.data_dir.join(thingkit_api::keys::FILE_NAME);
        let keys = Arc::new(
            thingkit_api::keys::KeyStore::open(&keys_path)
                .map_err(|e| Failure(format!("{}: {e}", keys_path.display())))?,
        );
        let rules_path = config.data_dir.join(RULES_FILE);
        let rules = Arc::new(
            thingkit_api::topic_rule::RedbTopicRuleStore::open(&rules_path)
                .map_err(|e| Failure(format!("{}: {e}", rules_path.display())))?,
        );
        let jobs_path = config.data_dir.join(JOBS_API_FILE);
        let job_templates = Arc::new(
            thingkit_api::job_store::JobStore::open(&jobs_path)
                .map_err(|e| Failure(format!("{}: {e}", jobs_path.display())))?,
        );
        Ok(ApiStores {
            keys,
            rules,
            rules_source: rules_path.display().to_string(),
            job_templates,
        })
    }
}

/// A rustls server configuration (ring, TLS 1.2 and 1.3, HTTP/1.1 by ALPN) from PEM files.
pub fn tls_config(chain_pem: &str, key_pem: &str) -> Result<Arc<rustls::ServerConfig>, Failure> {
    let chain: Vec<_> = thingkit_provision::decode_pem_blocks(chain_pem)
        .map_err(|e| Failure(format!("tls.certificate: {e}")))?
        .into_iter()
        .filter(|(label, _)| label == "CERTIFICATE")
        .map(|(_, der)| rustls::pki_types::CertificateDer::from(der))
        .collect();
    let key = thingkit_provision::decode_pem_blocks(key_pem)
        .map_err(|e| Failure(format!("tls.private_key: {e}")))?
        .into_iter()
        .find(|(label, _)| label.ends_with("PRIVATE KEY"))
        .ok_or_else(|| Failure("tls.private_key: no PRIVATE KEY block".into()))?;
    let key = match key.0.as_str() {
        "PRIVATE KEY" => rustls::pki_types::PrivateKeyDer::Pkcs8(key.1.into()),
        "EC PRIVATE KEY" => rustls::pki_types::PrivateKeyDer::Sec1(key.1.into()),
        _ => rustls::pki_types::PrivateKeyDer::Pkcs1(key.1.into()),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure(format!("tls: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| Failure(format!("tls: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The audit sink: appends each record to the audit file and logs it.
pub fn audit_sink(path: PathBuf) -> Result<thingkit_api::server::AuditSink, Failure> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
    let file = Mutex::new(file);
    Ok(Arc::new(move |record: &AuditRecord| {
        tracing::info!(
            target: "audit",
            request_id = %record.request_id,
            access_key = record.access_key_id.as_deref().unwrap_or("-"),
            operation = record.operation.as_deref().unwrap_or("-"),
            resource = record.resource.as_deref().unwrap_or("-"),
            status = record.status,
            error = record.error.as_deref().unwrap_or("-"),
            "api request"
        );
        let Ok(mut line) = serde_json::to_vec(record) else {
            return;
        };
        line.push(b'\n');
        let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(&line) {
            tracing::error!(path = %path.display(), error = %e, "audit record not written");
        }
    }))
}

/// The broker as the API's data-plane publisher. `publish` runs on the blocking pool (the
/// API's handlers do), so it may wait for the broker's async publish.
pub struct BrokerData {
    /// The broker.
    pub publisher: BrokerPublisher,
    /// The runtime the broker runs on.
    pub runtime: tokio::runtime::Handle,
}

impl Publisher for BrokerData {
    fn publish(&self, m: DataPublish) -> ApiResult<()> {
        let topic = TopicName::new(&m.topic)
            .map_err(|e| ApiError::invalid_request(format!("topic {:?}: {e}", m.topic)))?;
        let mqtt_str = |what: &str, s: &str| {
            MqttStr::new(s).map_err(|e| ApiError::invalid_request(format!("{what}: {e}")))
        };
        let mut p = Properties {
            payload_format_indicator: m.properties.payload_format_utf8.then_some(true),
            message_expiry_interval: m.properties.message_expiry,
            correlation_data: m.properties.correlation_data.map(Into::into),
            ..Properties::default()
        };
        if let Some(ct) = &m.properties.content_type {
            p.content_type = Some(mqtt_str("contentType", ct)?);
        }
        if let Some(rt) = &m.properties.response_topic {
            p.response_topic =
                Some(TopicName::new(rt).map_err(|e| {
                    ApiError::invalid_request(format!("responseTopic {rt:?}: {e}"))
                })?);
        }
        for (k, v) in &m.properties.user_properties {
            p.user_properties.push((
                mqtt_str("userProperties", k)?,
                mqtt_str("userProperties", v)?,
            ));
        }
        let qos = if m.qos == 1 {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        self.runtime
            .block_on(self.publisher.publish(
                topic,
                m.payload.into(),
                qos,
                m.retain,
                PacketProperties::from(p),
            ))
            .map_err(|e| ApiError::unavailable(format!("the broker did not take the message: {e}")))
    }
}

/// The control plane over the server's registry, CA, fleet provisioning, broker and jobs
/// engine (`None`: the job operations answer ServiceUnavailableException; job templates work
/// either way), with the access keys and topic rules of `stores`, the rules driving `rules`
/// (the broker's rules engine; `None`: rules are stored and served, and run nowhere). Every
/// stored enabled rule is handed to `rules` here; one it refuses is logged and stays stored.
// Each argument is one of the server's parts `serve` built; a struct to hold them for this one
// call would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn control_plane(
    config: &crate::config::ServeConfig,
    stores: ApiStores,
    registry: Arc<
        std::sync::RwLock<thingkit_provision::Registry<crate::serve::ServerRegistryStore>>,
    >,
    arn: thingkit_policy::ArnPrefix,
    ca: Arc<thingkit_provision::CertificateAuthority>,
    (templates, fleet): (
        Arc<thingkit_api::templates::TemplateStore>,
        Arc<Mutex<thingkit_provision::FleetProvisioning>>,
    ),
    shadows: Arc<ShadowService<crate::serve::ServerShadowStore>>,
    publisher: BrokerPublisher,
    mqtt: std::net::SocketAddr,
    jobs: Option<Arc<Mutex<thingkit_jobs::DynJobs>>>,
    rules: Option<Arc<dyn thingkit_api::topic_rule::TopicRuleHook>>,
    activity: thingkit_broker::ActivitySource,
    detect: Arc<dyn thingkit_api::audit::DetectHook>,
) -> Result<Arc<thingkit_api::ControlPlane<crate::serve::ServerRegistryStore>>, Failure> {
    let ApiStores {
        keys,
        rules: rule_store,
        rules_source,
        job_templates: job_store,
    } = stores;
    let defender_path = config.data_dir.join(DEVICE_DEFENDER_FILE);
    let defender = Arc::new(
        thingkit_api::audit_store::AuditStore::open(&defender_path)
            .map_err(|e| Failure(format!("{}: {e}", defender_path.display())))?,
    );
    let endpoints = thingkit_api::Endpoints {
        data: config
            .api
            .data_endpoint
            .clone()
            .unwrap_or_else(|| mqtt.to_string()),
        api: config.api.listen.to_string(),
    };
    let plane = Arc::new(
        thingkit_api::ControlPlane::new(registry, arn, keys)
            .with_ca(Some(ca))
            .with_endpoints(endpoints)
            .with_templates(Some(templates), Some(fleet))
            .with_publisher(Some(Arc::new(BrokerData {
                publisher,
                runtime: tokio::runtime::Handle::current(),
            })))
            .with_shadows(Some(Arc::new(ShadowData(shadows))))
            .with_jobs(jobs)
            .with_job_store(job_store)
            .with_topic_rules(rule_store, rules)
            .with_audit(defender, Arc::new(BrokerActivity(activity)), detect),
    );
    let refused = plane
        .topic_rules
        .install()
        .map_err(|e| Failure(format!("{rules_source}: {e}")))?;
    for (name, why) in refused {
        tracing::warn!(rule = %name, "the rules engine refused a stored topic rule: {why}");
    }
    Ok(plane)
}

/// The broker's connection log as the audits' source. The server always writes its logs
/// (`LOGGING_DISABLED_CHECK` is compliant); it has no CRLs or weak-key list configured.
pub struct BrokerActivity(pub thingkit_broker::ActivitySource);

impl thingkit_api::audit::AuditSources for BrokerActivity {
    fn connections(&self, since_unix: i64) -> Vec<thingkit_api::audit::ConnectionRecord> {
        self.0
            .connection_log(u64::try_from(since_unix).unwrap_or(0))
            .into_iter()
            .map(|r| thingkit_api::audit::ConnectionRecord {
                client_id: r.client_id,
                certificate_id: r.principal,
                source: r.source_ip.to_string(),
                connected_at: i64::try_from(r.connected_at).unwrap_or(i64::MAX),
                disconnected_at: r
                    .disconnected_at
                    .map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
                disconnect_reason: r.disconnect_reason.map(|d| d.as_str().to_string()),
            })
            .collect()
    }

    fn logging_enabled(&self) -> bool {
        true
    }

    fn crls(&self) -> Vec<thingkit_api::audit::Crl> {
        Vec::new()
    }

    fn weak_keys(&self) -> thingkit_api::audit::WeakKeyList {
        thingkit_api::audit::WeakKeyList::new()
    }
}

/// The broker's shadow service as the API's shadow backend: one engine and store for MQTT and
/// HTTPS.
pub struct ShadowData(pub Arc<ShadowService<crate::serve::ServerShadowStore>>);

impl thingkit_api::ShadowBackend for ShadowData {
    fn request(&self, topic: &str, payload: &[u8], now: u64) -> Option<Vec<(String, Vec<u8>)>> {
        self.0
            .shadows()
            .request(topic, payload, now)
            .map(|out| out.into_iter().map(|m| (m.topic, m.payload)).collect())
    }

    fn list_named(&self, thing: &str) -> Result<Vec<String>, String> {
        self.0
            .shadows()
            .list_named(thing)
            .map_err(|e| e.to_string())
    }
}

/// The broker's rules engine as the API's topic-rule hook: `CreateTopicRule` and its siblings
/// start, replace and stop rules in the engine the broker routes through. The `[[rules]]` of the
/// configuration file belong to the file: a rule of the API may not take one of their names
/// (refused with the reason), and the API never stops one.
///
/// It remembers the payload each API rule runs with, so the same rule handed to it twice (by
/// this server's API, then by the cluster's change feed that reports the same commit) is
/// started once: a restart would drop the rule's window state for nothing.
pub struct RulesHook {
    /// The engine.
    pub engine: thingkit_broker::rules::RulesEngine,
    /// The names of the configuration file's rules.
    pub configured: std::collections::BTreeSet<String>,
    running:
        Mutex<std::collections::BTreeMap<String, thingkit_rules::topic_rule::TopicRulePayload>>,
}

impl RulesHook {
    /// The hook on `engine`, leaving the file's rules `configured` alone.
    pub fn new(
        engine: thingkit_broker::rules::RulesEngine,
        configured: std::collections::BTreeSet<String>,
    ) -> RulesHook {
        RulesHook {
            engine,
            configured,
            running: Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    fn running(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::BTreeMap<String, thingkit_rules::topic_rule::TopicRulePayload>,
    > {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The names of the API's rules running in the engine.
    pub fn running_names(&self) -> Vec<String> {
        self.running().keys().cloned().collect()
    }
}

impl thingkit_api::topic_rule::TopicRuleHook for RulesHook {
    fn upsert(
        &self,
        name: &str,
        payload: &thingkit_rules::topic_rule::TopicRulePayload,
    ) -> Result<(), String> {
        if self.configured.contains(name) {
            return Err(format!(
                "rule {name} is declared in the server's configuration file; the API cannot replace it"
            ));
        }
        let mut running = self.running();
        if running.get(name) == Some(payload) {
            return Ok(());
        }
        self.engine
            .upsert(name, payload)
            .map_err(|e| e.to_string())?;
        running.insert(name.to_string(), payload.clone());
        Ok(())
    }

    fn remove(&self, name: &str) {
        if !self.configured.contains(name) {
            let mut running = self.running();
            self.engine.remove(name);
            running.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use thingkit_api::topic_rule::TopicRuleHook;
    use thingkit_broker::rules::{RulesConfig, RulesEngine};
    use thingkit_rules::topic_rule::TopicRulePayload;

    use super::RulesHook;

    fn payload(sql: &str) -> TopicRulePayload {
        TopicRulePayload {
            sql: sql.into(),
            description: None,
            actions: Vec::new(),
            rule_disabled: None,
            aws_iot_sql_version: None,
            error_action: None,
        }
    }

    #[test]
    fn the_api_runs_its_rules_in_the_engine_and_leaves_the_files_rules_alone() {
        let engine = RulesEngine::new(RulesConfig::default());
        engine
            .upsert("from_file", &payload("SELECT * FROM 'a'"))
            .unwrap();
        let hook = RulesHook::new(engine.clone(), ["from_file".to_string()].into());
        assert!(
            hook.upsert("from_api", &payload("SELECT * FROM 'b'"))
                .is_ok()
        );
        let refused = hook
            .upsert("from_file", &payload("SELECT * FROM 'c'"))
            .unwrap_err();
        assert!(refused.contains("configuration file"), "{refused}");
        hook.remove("from_file");
        let mut names = engine.names();
        names.sort();
        assert_eq!(names, ["from_api", "from_file"]);
        assert_eq!(
            hook.running_names(),
            ["from_api"],
            "the file's rules are not the API's"
        );
        assert!(
            hook.upsert("from_api", &payload("SELECT * FROM 'b'"))
                .is_ok(),
            "the same rule again (the cluster feed reporting this server's own change) is fine"
        );
        hook.remove("from_api");
        assert_eq!(engine.names(), ["from_file"]);
        assert!(hook.running_names().is_empty());
        assert!(
            hook.upsert("bad", &payload("SELECT * FROM")).is_err(),
            "the engine's own refusal reaches the API"
        );
    }
}
