//! `thingkit serve --config FILE`: the server, configured by one TOML file (see `config`).
//!
//! It opens the registry in `data_dir`, registers the CA, the policies and the devices the file
//! names (idempotently, so the same file serves every restart), starts the broker on
//! `[mqtt] listen`, prints one line per listener once it accepts connections, and shuts down
//! gracefully at SIGINT or SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use thingkit_broker::rules::{RulesConfig, RulesEngine};
use thingkit_broker::{
    Broker, BrokerConfig, JobsService, LimitClass, ServerIdentity, ShadowService, SharedJobs,
    StreamService, ThingSelector, shutdown_signal,
};
use thingkit_firmware::{PublicKey, TrustAnchors};
use thingkit_meter::{LimitAction, Rate, RateLimits};
use thingkit_provision::{
    CaStatus, CertificateAuthority, CertificateId, CertificateStatus, FleetConfig as Fleet,
    FleetProvisioning, PolicyTarget, ProvisioningTemplate, RedbStore, Registry, RegistryLimits,
    TemplateLimits, claim_policy,
};

use crate::Failure;
use crate::config::{LimitsConfig, LogFormat, OverLimit, ServeConfig};

/// `thingkit serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The configuration file (`thingkit init DIR` writes DIR/thingkit.toml). Relative paths in
    /// it are relative to its directory.
    #[arg(long, value_name = "PATH")]
    pub config: PathBuf,
}

/// Where the server keeps its registry: the embedded redb file in `data_dir`, or a store shared
/// with other servers (`[cluster]`).
pub type ServerRegistryStore = Box<dyn thingkit_provision::RegistryStore>;

/// Where the server keeps its device shadows (see [`ServerRegistryStore`]).
pub type ServerShadowStore = Box<dyn thingkit_shadow::ShadowStore>;

/// The registry database inside `data_dir`.
const REGISTRY_FILE: &str = "registry.redb";

/// The broker's store inside `data_dir`: persistent sessions, their queued QoS 1 messages and
/// retained messages.
const BROKER_STORE_FILE: &str = "broker.redb";

/// The device shadows inside `data_dir` (AWS IoT Device Shadow, classic and named), each
/// accepted update committed durably before `.../accepted` is published.
const SHADOW_STORE_FILE: &str = "shadows.redb";
/// Jobs, executions and rollout lists (`RedbJobStore`), in the data directory.
const JOBS_STORE_FILE: &str = "jobs.redb";

/// Usage of closed meter windows inside `data_dir`: one JSON object per line (account, device,
/// kind, window start, messages, units, bytes, minutes), appended as windows close and, for the
/// windows still open, at shutdown. Lines for the same key add up (late counts for a closed
/// window, or the counts of the next run, come as another line). With `[cluster] postgres` the
/// rows go to the cluster's ledger instead (`thingkit_cluster::PgUsageLedger`).
const USAGE_FILE: &str = "usage.jsonl";

/// Appends closed windows to the usage file and syncs it; a failure is logged (the counts are
/// then lost, which the log says).
fn append_usage(
    path: &Path,
    closed: &std::collections::BTreeMap<thingkit_meter::UsageKey, thingkit_meter::Counts>,
) {
    use std::io::Write;
    let mut text = String::new();
    for (key, counts) in closed {
        let line = serde_json::json!({
            "account": key.account,
            "device": key.device,
            "kind": key.kind,
            "window": key.window,
            "messages": counts.messages,
            "units": counts.units,
            "bytes": counts.bytes,
            "minutes": counts.minutes,
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_data()
        });
    if let Err(e) = written {
        tracing::error!(path = %path.display(), windows = closed.len(), error = %e, "usage of closed windows lost");
    }
}

/// Runs the server with a configuration that has been read and validated, until SIGINT or
/// SIGTERM.
pub fn serve(config: ServeConfig) -> Result<(), Failure> {
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(run(config))
}

fn init_logging(config: &ServeConfig) {
    let level = match config.log.level {
        crate::config::LogLevel::Error => tracing::Level::ERROR,
        crate::config::LogLevel::Warn => tracing::Level::WARN,
        crate::config::LogLevel::Info => tracing::Level::INFO,
        crate::config::LogLevel::Debug => tracing::Level::DEBUG,
        crate::config::LogLevel::Trace => tracing::Level::TRACE,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_writer(std::io::stderr);
    // A second subscriber (tests that serve twice in one process) is not an error.
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

fn read(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| Failure(format!("{}: {e}", path.display())))
}

async fn run(config: ServeConfig) -> Result<(), Failure> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| Failure(format!("{}: {e}", config.data_dir.display())))?;
    let registry_path = config.data_dir.join(REGISTRY_FILE);
    // `[cluster] postgres`: the registry, shadows and jobs every server of the cluster shares.
    let postgres = config.cluster.postgres.as_ref().map(|url| {
        thingkit_cluster::PostgresConfig::new(url.clone())
            .with_schema(config.cluster.schema.clone())
    });
    let pg_failure = |what: &str, e: thingkit_cluster::Error| {
        Failure(format!("[cluster] postgres ({what}): {e}"))
    };
    // The change feed listens before the registry loads, so no commit another server makes
    // between the load and the first refresh is missed; what arrives before the registry is
    // ready waits in the channel (refreshing a key already loaded changes nothing).
    let (changes_tx, changes) = std::sync::mpsc::channel();
    let feed = match &postgres {
        Some(pg) => Some(
            thingkit_cluster::RegistryFeed::start(pg, move |change| {
                let _ = changes_tx.send(change);
            })
            .map_err(|e| pg_failure("registry change feed", e))?,
        ),
        None => None,
    };
    // The control plane's state (topic rules, templates and access keys made through the API,
    // the usage ledger) on PostgreSQL too; its feed listens before anything is loaded, for the
    // same reason as the registry's.
    let (control_tx, control_changes) = std::sync::mpsc::channel();
    let control_feed = match &postgres {
        Some(pg) => Some(
            thingkit_cluster::ControlFeed::start(pg, move |change| {
                let _ = control_tx.send(change);
            })
            .map_err(|e| pg_failure("control plane change feed", e))?,
        ),
        None => None,
    };
    let control = match &postgres {
        Some(pg) => Some(
            thingkit_cluster::PgControlStore::open(pg, &cluster_server_id(&config))
                .map_err(|e| pg_failure("control plane", e))?,
        ),
        None => None,
    };
    if control.is_some() {
        // What the API kept in data_dir before the cluster had PostgreSQL is not read now.
        for file in [
            thingkit_api::keys::FILE_NAME,
            crate::api::RULES_FILE,
            crate::api::TEMPLATES_FILE,
            crate::api::JOBS_API_FILE,
            USAGE_FILE,
        ] {
            let path = config.data_dir.join(file);
            if path.exists() {
                tracing::warn!(path = %path.display(), "not read: with [cluster] postgres, access keys, topic rules, templates, job templates and usage are the cluster's, in PostgreSQL (docs/cluster.md)");
            }
        }
    }
    let (store, registry_source): (ServerRegistryStore, String) = match &postgres {
        Some(pg) => (
            Box::new(
                thingkit_cluster::PgRegistryStore::open(pg)
                    .map_err(|e| pg_failure("registry", e))?,
            ),
            format!("PostgreSQL schema {}", pg.schema),
        ),
        None => (
            Box::new(
                RedbStore::open(&registry_path)
                    .map_err(|e| Failure(format!("{}: {e}", registry_path.display())))?,
            ),
            registry_path.display().to_string(),
        ),
    };
    let mut registry = Registry::open(store, RegistryLimits::default())
        .map_err(|e| Failure(format!("{registry_source}: {e}")))?;
    let ca = Arc::new(
        CertificateAuthority::from_pem(
            &read(&config.ca.certificate)?,
            &read(&config.ca.private_key)?,
        )
        .map_err(|e| Failure(format!("{}: {e}", config.ca.certificate.display())))?,
    );
    let now = SystemTime::now();
    if registry.ca_certificate(&ca.id()).is_none() {
        registry.register_ca_certificate(ca.certificate_der(), CaStatus::Active, false)?;
    }
    let policies = load_policies(&mut registry, &config, now)?;
    register_devices(&mut registry, &config, &policies, now)?;
    let arn = config
        .account
        .arn_prefix()
        .ok_or_else(|| Failure("account: invalid partition, region or account".into()))?;
    // Always on: templates created through the API join it without a restart.
    let fleet = Arc::new(Mutex::new(fleet_provisioning(
        &mut registry,
        &ca,
        &arn,
        &config,
        now,
    )?));
    // Templates created through the API, served from the first connection on: this server's
    // file, or the cluster's (PostgreSQL).
    let templates_path = config.data_dir.join(crate::api::TEMPLATES_FILE);
    let templates = Arc::new(match &control {
        Some(control) => {
            thingkit_api::templates::TemplateStore::with_backend(Arc::new(control.templates()))
                .map_err(|e| Failure(format!("[cluster] postgres (templates): {e}")))?
        }
        None => thingkit_api::templates::TemplateStore::open(&templates_path)
            .map_err(|e| Failure(format!("{}: {e}", templates_path.display())))?,
    });
    for name in templates.install(&mut fleet.lock().unwrap_or_else(|p| p.into_inner())) {
        tracing::warn!(template = %name, "provisioning template not served: its body does not parse under the current limits");
    }
    let mut firmware_keys = Vec::new();
    for path in &config.firmware.trusted_keys {
        firmware_keys.push(
            PublicKey::from_spki_pem(&read(path)?)
                .map_err(|e| Failure(format!("{}: {e}", path.display())))?,
        );
    }
    let firmware_trust = match firmware_keys.len() {
        0 => None,
        _ => Some(TrustAnchors::new(0, 1, firmware_keys)?),
    };

    let identity = ServerIdentity::from_pem(
        read(&config.tls.certificate)?,
        read(&config.tls.private_key)?,
    );
    let usage_path = config.data_dir.join(USAGE_FILE);
    let usage_sink: thingkit_broker::UsageSink = match &control {
        // Every server's windows in one table: `thingkit report` sums them.
        Some(control) => {
            let ledger = control.usage();
            Arc::new(move |closed| {
                if let Err(e) = ledger.append(&closed) {
                    tracing::error!(windows = closed.len(), error = %e, "usage of closed windows lost");
                }
            })
        }
        None => Arc::new(move |closed| append_usage(&usage_path, &closed)),
    };
    let broker_config = broker_config(&config, arn.clone(), Some(fleet.clone()), firmware_trust)
        .with_usage_sink(Some(usage_sink.clone()));
    let listener = tokio::net::TcpListener::bind(config.mqtt.listen)
        .await
        .map_err(|e| Failure(format!("mqtt.listen {}: {e}", config.mqtt.listen)))?;
    let store_path = config.data_dir.join(BROKER_STORE_FILE);
    // With PostgreSQL and NATS, persistent sessions and retained messages are the cluster's
    // (each session owned by one server, moving to the server its client connects to);
    // otherwise they stay in this server's data_dir.
    let session_store = match (&postgres, &config.cluster.nats) {
        (Some(pg), Some(_)) => Some(
            thingkit_cluster::PgRouterStore::open(pg, &cluster_server_id(&config))
                .map_err(|e| pg_failure("sessions", e))?,
        ),
        _ => None,
    };
    let store: Box<dyn thingkit_broker::RouterStore> = match &session_store {
        Some(pg) => Box::new(pg.clone()),
        None => Box::new(
            thingkit_broker::RedbStore::open(&store_path)
                .map_err(|e| Failure(format!("{}: {e}", store_path.display())))?,
        ),
    };
    let shadow_path = config.data_dir.join(SHADOW_STORE_FILE);
    let shadows: ServerShadowStore = match &postgres {
        Some(pg) => Box::new(
            thingkit_cluster::PgShadowStore::open(pg).map_err(|e| pg_failure("shadows", e))?,
        ),
        None => Box::new(
            thingkit_shadow::RedbShadowStore::open(&shadow_path)
                .map_err(|e| Failure(format!("{}: {e}", shadow_path.display())))?,
        ),
    };
    let metrics_listener = match config.metrics.enabled {
        true => Some(
            tokio::net::TcpListener::bind(config.metrics.listen)
                .await
                .map_err(|e| Failure(format!("metrics.listen {}: {e}", config.metrics.listen)))?,
        ),
        false => None,
    };
    let shadow_service = Arc::new(ShadowService::new(shadows, config.shadow.limits()));
    let jobs_path = config.data_dir.join(JOBS_STORE_FILE);
    let job_store: Box<dyn thingkit_jobs::JobStore> = match &postgres {
        Some(pg) => {
            Box::new(thingkit_cluster::PgJobStore::open(pg).map_err(|e| pg_failure("jobs", e))?)
        }
        None => Box::new(
            thingkit_jobs::RedbJobStore::open(&jobs_path)
                .map_err(|e| Failure(format!("{}: {e}", jobs_path.display())))?,
        ),
    };
    // With PostgreSQL the servers share the jobs: one at a time paces each job's rollout, the
    // one holding its lease (issue #20); alone, this server paces every job.
    let job_lease: Box<dyn thingkit_jobs::PacingLease> = match &postgres {
        Some(pg) => Box::new(
            thingkit_cluster::PgJobLease::open(
                pg,
                &cluster_server_id(&config),
                thingkit_cluster::DEFAULT_JOB_LEASE,
            )
            .map_err(|e| pg_failure("jobs", e))?,
        ),
        None => Box::new(thingkit_jobs::SoleServer),
    };
    let engine = thingkit_jobs::Jobs::open_with(
        job_store,
        thingkit_jobs::Limits::default(),
        job_lease,
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
    .map_err(|e| Failure(format!("jobs store: {e}")))?;
    let jobs: SharedJobs = Arc::new(std::sync::Mutex::new(engine));
    let streams = Arc::new(std::sync::RwLock::new(
        thingkit_firmware::stream::StreamCatalog::default(),
    ));
    crate::streams::StreamDirectory::new(&config.data_dir, streams.clone()).scan();
    let api_listener = match config.api.enabled {
        true => Some(
            tokio::net::TcpListener::bind(config.api.listen)
                .await
                .map_err(|e| Failure(format!("api.listen {}: {e}", config.api.listen)))?,
        ),
        false => None,
    };
    let api_tls = crate::api::tls_config(
        &read(&config.tls.certificate)?,
        &read(&config.tls.private_key)?,
    )?;
    let rules = rules_engine(&config)?;
    let rules_hook = Arc::new(crate::api::RulesHook::new(
        rules.clone(),
        config.rules.iter().map(|r| r.name.clone()).collect(),
    ));
    // The API's stores: opened with the API, and always in a cluster, whose rules, templates
    // and keys this server follows even when it serves no API itself.
    let mut api_stores = match config.api.enabled || control.is_some() {
        true => Some(crate::api::ApiStores::open(&config, control.as_ref())?),
        false => None,
    };
    let detector = crate::detect::detector(&config)?;
    // get_thing_shadow(...) in rules reads the shadows this server serves.
    rules.set_external_functions(shadow_service.clone());
    let registry = Arc::new(RwLock::new(registry));
    if feed.is_some() {
        follow_registry_changes(registry.clone(), changes)?;
    }
    if let (Some(_), Some(stores)) = (&control_feed, &api_stores) {
        let followed = FollowedControl {
            rules: stores.rules.clone(),
            hook: rules_hook.clone(),
            templates: templates.clone(),
            fleet: fleet.clone(),
            keys: stores.keys.clone(),
        };
        // The cluster's rules run here whether or not this server serves the API.
        followed
            .resync_rules()
            .map_err(|e| Failure(format!("[cluster] postgres (topic rules): {e}")))?;
        follow_control_changes(followed, control_changes)?;
    }
    let nats = cluster_nats(&config)?;
    let mut routes = cluster_routes(nats.as_ref()).await?;
    let mut builder = Broker::builder(registry.clone(), identity)
        .rules(rules.clone())
        .config(broker_config)
        .store(store)
        .service(shadow_service.clone())
        .service(Arc::new(JobsService::new(jobs.clone())))
        .service(Arc::new(StreamService::with_catalog(streams.clone())));
    if let Some(routes) = &routes {
        builder = builder.bridge(routes.bridge());
    }
    let handover = cluster_handover(
        nats.as_ref(),
        session_store,
        routes.as_ref(),
        Duration::from_millis(config.cluster.replay_margin_ms),
    )
    .await?;
    if let Some(handover) = &handover {
        builder = builder.handover(Arc::new(handover.clone()));
    }
    let broker = builder.serve(listener).await?;
    if let Some(handover) = &handover {
        handover
            .start(broker.publisher())
            .await
            .map_err(|e| Failure(format!("cluster.nats: {e}")))?;
    }
    if let Some(routes) = &mut routes {
        routes
            .start(broker.publisher())
            .await
            .map_err(|e| Failure(format!("cluster.nats: {e}")))?;
        tracing::info!(
            cluster = config.cluster.name,
            nats = config.cluster.nats.as_deref().unwrap_or_default(),
            "routing messages between the cluster's servers over NATS"
        );
    }
    if let Some(handover) = &handover {
        // Restarted in place: what the cluster published while this server was down.
        let handover = handover.clone();
        tokio::spawn(async move {
            match handover.recover().await {
                Ok(0) => {}
                Ok(routed) => tracing::info!(
                    routed,
                    "routed what the cluster published while this server was down"
                ),
                Err(e) => tracing::error!(
                    error = %e,
                    "what the cluster published while this server was down could not be read"
                ),
            }
        });
    }
    let jobs_clock = tokio::spawn(JobsService::drive(jobs.clone(), broker.publisher()));
    let detect_loop = tokio::spawn(crate::detect::run(
        detector.clone(),
        broker.activity(),
        broker.publisher(),
    ));
    // Firmware images under data_dir/streams, picked up while the server runs.
    let mut stream_dir = crate::streams::StreamDirectory::new(&config.data_dir, streams);
    let stream_scan = tokio::spawn(async move {
        loop {
            stream_dir = match tokio::task::spawn_blocking(move || {
                stream_dir.scan();
                stream_dir
            })
            .await
            {
                Ok(dir) => dir,
                Err(e) => {
                    tracing::error!(error = %e, "streams: the directory scan panicked");
                    return;
                }
            };
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    // The handlers are installed before the listening lines, so a supervisor that signals
    // right after reading them is never met by the default action.
    let stop = shutdown_signal().map_err(|e| Failure(format!("signal handlers: {e}")))?;
    println!(
        "mqtt listening on {} (MQTT 3.1.1 + 5.0 over mutual TLS)",
        broker.local_addr()
    );
    // The metrics endpoint outlives the broker's grace period, so /health reads 503 during it.
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = match metrics_listener {
        Some(listener) => {
            let addr = listener.local_addr().ok();
            let task = tokio::spawn(thingkit_broker::serve_metrics(
                listener,
                broker.metrics(),
                async {
                    let _ = metrics_stopped.await;
                },
            ));
            if let Some(addr) = addr {
                println!("metrics listening on http://{addr}/metrics and http://{addr}/health");
            }
            Some(task)
        }
        None => None,
    };
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut audits: Option<tokio::task::JoinHandle<()>> = None;
    let api = match api_listener {
        Some(listener) => {
            let addr = listener.local_addr().ok();
            let stores = api_stores
                .take()
                .ok_or_else(|| Failure("the API's stores were not opened".into()))?;
            let keys = stores.keys.clone();
            let plane = crate::api::control_plane(
                &config,
                stores,
                registry.clone(),
                arn.clone(),
                ca.clone(),
                (templates.clone(), fleet.clone()),
                shadow_service.clone(),
                broker.publisher(),
                broker.local_addr(),
                Some(jobs.clone()),
                Some(rules_hook.clone()),
                broker.activity(),
                Arc::new(crate::detect::ApiProfiles::new(detector.clone())),
            )?;
            plane.sync_detector();
            // Scheduled audits: checked once a minute, run on the blocking pool.
            let scheduler_plane = plane.clone();
            audits = Some(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    let plane = scheduler_plane.clone();
                    let ran = tokio::task::spawn_blocking(move || {
                        plane.run_scheduled_audits(std::time::SystemTime::now())
                    })
                    .await;
                    match ran {
                        Ok(Ok(tasks)) if !tasks.is_empty() => {
                            tracing::info!(?tasks, "scheduled audits ran");
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::error!(error = %e, "scheduled audits failed"),
                        Err(e) => tracing::error!(error = %e, "scheduled audits panicked"),
                    }
                }
            }));
            let audit = crate::api::audit_sink(config.data_dir.join(crate::api::AUDIT_FILE))?;
            // The fleet dashboard on the same listener (see `crate::dashboard`).
            let dashboard = crate::dashboard::start(
                &config,
                keys,
                crate::report::UsageLedger::open_with(&config, control.as_ref()),
                registry.clone(),
                &broker,
                &arn,
                jobs.clone(),
                Some(detector),
            )?;
            let task = tokio::spawn(thingkit_api::server::serve_with_routes(
                listener,
                api_tls,
                plane,
                audit,
                crate::dashboard::routes(dashboard),
                async {
                    let _ = api_stopped.await;
                },
            ));
            if let Some(addr) = addr {
                println!("api listening on https://{addr} (AWS IoT API, SigV4)");
            }
            Some(task)
        }
        None => None,
    };
    let signal = stop.await;
    tracing::info!(signal, "shutting down");
    let _ = stop_api.send(());
    if let Some(task) = api {
        let _ = task.await;
    }
    jobs_clock.abort();
    detect_loop.abort();
    stream_scan.abort();
    if let Some(task) = audits {
        task.abort();
    }
    // The windows still open (today's, with daily windows) go to the ledger too: lines for the
    // same window add up, so the counts of the next run join them instead of replacing them.
    let open_windows = broker.shutdown(Duration::from_secs(5)).await;
    if !open_windows.is_empty() {
        let _ = tokio::task::spawn_blocking(move || usage_sink(open_windows)).await;
    }
    if let Some(handover) = &handover {
        handover.stop();
    }
    // After the broker: the wills and lifecycle events of its last sessions still go out.
    if let Some(routes) = routes {
        routes.close(Duration::from_secs(2)).await;
    }
    let _ = stop_metrics.send(());
    if let Some(task) = metrics {
        let _ = task.await;
    }
    Ok(())
}

/// `[cluster] nats`, `name` and `server_id` as the NATS client's configuration; `None` for a
/// server alone.
fn cluster_nats(
    config: &ServeConfig,
) -> Result<Option<thingkit_cluster::nats::NatsConfig>, Failure> {
    let Some(url) = &config.cluster.nats else {
        return Ok(None);
    };
    let nats = thingkit_cluster::nats::NatsConfig::new(
        url,
        &config.cluster.name,
        &cluster_server_id(config),
    )
    .map_err(|e| Failure(format!("[cluster]: {e}")))?
    .with_durable(config.cluster.durable)
    .with_recovery_margin(Duration::from_millis(config.cluster.replay_margin_ms));
    let max_bytes = nats.stream_max_bytes;
    Ok(Some(nats.with_stream_limits(
        Duration::from_secs(config.cluster.stream_max_age_seconds.get()),
        max_bytes,
    )))
}

/// `[cluster] server_id`, or `<mqtt.listen>-<process id>` when unset.
fn cluster_server_id(config: &ServeConfig) -> String {
    config
        .cluster
        .server_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", config.mqtt.listen, std::process::id()))
}

/// `[cluster] nats`: connects this server to the cluster's NATS (before the broker starts, so
/// that its bridge is installed from the first message). `None` for a server alone.
async fn cluster_routes(
    nats: Option<&thingkit_cluster::nats::NatsConfig>,
) -> Result<Option<thingkit_cluster::nats::NatsRoutes>, Failure> {
    let Some(nats) = nats else {
        return Ok(None);
    };
    let routes = thingkit_cluster::nats::NatsRoutes::connect(nats.clone())
        .await
        .map_err(|e| Failure(format!("cluster.nats: {e}")))?;
    Ok(Some(routes))
}

/// `[cluster] nats`: a CONNECT here ends the connections with the same client ID on the other
/// servers; with `sessions` (PostgreSQL), persistent sessions move to the server their client
/// connects to. `None` for a server alone.
/// With `[cluster] durable`, a session that comes over is replayed what it missed from the
/// routes' stream.
async fn cluster_handover(
    nats: Option<&thingkit_cluster::nats::NatsConfig>,
    sessions: Option<thingkit_cluster::PgRouterStore>,
    routes: Option<&thingkit_cluster::nats::NatsRoutes>,
    replay_margin: Duration,
) -> Result<Option<thingkit_cluster::handover::NatsHandover>, Failure> {
    let Some(nats) = nats else {
        return Ok(None);
    };
    let mut handover = thingkit_cluster::handover::NatsHandover::connect(nats, sessions)
        .await
        .map_err(|e| Failure(format!("cluster.nats: {e}")))?
        .with_replay_margin(replay_margin);
    if let Some(replay) = routes.and_then(|r| r.replay()) {
        handover = handover.with_replay(replay);
    }
    Ok(Some(handover))
}

/// Creates the policies of `[policies] dir` (FILE.json is the policy FILE), or gives an
/// existing one a new default version when its file changed. Returns their names.
fn load_policies<S: thingkit_provision::RegistryStore>(
    registry: &mut Registry<S>,
    config: &ServeConfig,
    now: SystemTime,
) -> Result<Vec<String>, Failure> {
    let Some(dir) = &config.policies.dir else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Failure(format!("policies.dir {}: {e}", dir.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut names = Vec::new();
    for file in files {
        let Some(name) = file.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let text = read(&file)?;
        let changed = match registry.policy(name) {
            None => {
                registry
                    .create_policy(name, &text, now)
                    .map_err(|e| Failure(format!("{}: {e}", file.display())))?;
                false
            }
            Some(existing) => existing
                .default_version()
                .is_none_or(|v| v.document.text() != text),
        };
        if changed {
            registry
                .create_policy_version(name, &text, true, now)
                .map_err(|e| Failure(format!("{}: {e}", file.display())))?;
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// Registers each `[[device]]`: its certificate ACTIVE, its thing, the attachment, its policies.
fn register_devices<S: thingkit_provision::RegistryStore>(
    registry: &mut Registry<S>,
    config: &ServeConfig,
    policies: &[String],
    now: SystemTime,
) -> Result<(), Failure> {
    for device in &config.devices {
        let at = |e: thingkit_provision::Error| Failure(format!("device {:?}: {e}", device.thing));
        let pem = read(&device.certificate)?;
        let id = CertificateId::of_certificate(pem.as_bytes())
            .map_err(|e| Failure(format!("{}: {e}", device.certificate.display())))?;
        if registry.certificate(&id).is_none() {
            registry
                .register_certificate(pem.as_bytes(), CertificateStatus::Active, now)
                .map_err(at)?;
        }
        if registry.thing(&device.thing).is_none() {
            registry
                .create_thing(&device.thing, None, &[])
                .map_err(at)?;
        }
        if !registry.thing_principals(&device.thing).contains(&id) {
            registry
                .attach_thing_principal(&device.thing, &id, true)
                .map_err(at)?;
        }
        let wanted = device.policies.as_deref().unwrap_or(policies);
        for name in wanted {
            let attached = registry
                .certificate(&id)
                .is_some_and(|c| c.policies.iter().any(|p| &**p == name.as_str()));
            if !attached {
                registry
                    .attach_policy(name, &PolicyTarget::Certificate(id))
                    .map_err(at)?;
            }
        }
        tracing::info!(thing = %device.thing, certificate = %id, "device registered");
    }
    Ok(())
}

/// Fleet provisioning: the templates, and the claim certificates with the claim policy.
fn fleet_provisioning<S: thingkit_provision::RegistryStore>(
    registry: &mut Registry<S>,
    ca: &Arc<CertificateAuthority>,
    arn: &thingkit_policy::ArnPrefix,
    config: &ServeConfig,
    now: SystemTime,
) -> Result<FleetProvisioning, Failure> {
    let mut service = FleetProvisioning::new(ca.clone(), Fleet::default());
    let mut names = Vec::new();
    for (name, file) in &config.fleet.templates {
        let template = ProvisioningTemplate::parse(&read(file)?, &TemplateLimits::default())
            .map_err(|e| Failure(format!("{}: {e}", file.display())))?;
        service.add_template(name, template)?;
        names.push(name.as_str());
    }
    if !names.is_empty() && registry.policy("claim").is_none() {
        registry.create_policy("claim", &claim_policy(arn, &names)?, now)?;
    }
    for file in &config.fleet.claim_certificates {
        let pem = read(file)?;
        let id = CertificateId::of_certificate(pem.as_bytes())
            .map_err(|e| Failure(format!("{}: {e}", file.display())))?;
        if registry.certificate(&id).is_none() {
            registry.register_certificate(pem.as_bytes(), CertificateStatus::Active, now)?;
        }
        let attached = registry
            .certificate(&id)
            .is_some_and(|c| c.policies.iter().any(|p| &**p == "claim"));
        if !attached {
            registry.attach_policy("claim", &PolicyTarget::Certificate(id))?;
        }
    }
    Ok(service)
}

/// Applies the registry changes other servers commit (`[cluster] postgres`), on a thread of its
/// own: each key list is re-read from the store ([`Registry::refresh`]), which emits the events
/// a local change would (the broker ends the sessions of a revoked certificate, re-reads the
/// policies of its connections); after the feed reconnected, everything is re-read
/// ([`Registry::refresh_all`]). A refresh that fails is retried as a full one a second later:
/// the registry must not stay behind the store.
fn follow_registry_changes(
    registry: Arc<RwLock<Registry<ServerRegistryStore>>>,
    changes: std::sync::mpsc::Receiver<thingkit_cluster::RegistryChange>,
) -> Result<(), Failure> {
    std::thread::Builder::new()
        .name("thingkit-registry-feed".into())
        .spawn(move || {
            let mut resync = false;
            loop {
                let change = match changes.recv_timeout(Duration::from_secs(1)) {
                    Ok(change) => Some(change),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                };
                let keys = match change {
                    Some(thingkit_cluster::RegistryChange::Keys(keys)) if !resync => Some(keys),
                    // A resync, or keys while a full re-read is due: re-read everything.
                    Some(_) => None,
                    None if resync => None,
                    None => continue,
                };
                let mut r = registry.write().unwrap_or_else(|p| p.into_inner());
                let result = match &keys {
                    Some(keys) => r.refresh(keys.iter().map(String::as_str)),
                    None => r.refresh_all(),
                };
                drop(r);
                match result {
                    Ok(changed) => {
                        if keys.is_none() {
                            tracing::info!(changed, "registry re-read from PostgreSQL");
                        }
                        resync = false;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "registry refresh failed; re-reading everything in a second");
                        resync = true;
                    }
                }
            }
        })
        .map(|_| ())
        .map_err(|e| Failure(format!("registry change feed thread: {e}")))
}

/// What a server follows of the control plane's changes in PostgreSQL: the topic rules (run
/// by `hook`), the provisioning templates (served by `fleet`) and the access keys.
struct FollowedControl {
    rules: Arc<dyn thingkit_api::topic_rule::TopicRuleStore>,
    hook: Arc<crate::api::RulesHook>,
    templates: Arc<thingkit_api::templates::TemplateStore>,
    fleet: Arc<Mutex<FleetProvisioning>>,
    keys: Arc<thingkit_api::keys::KeyStore>,
}

impl FollowedControl {
    /// Brings the rules engine in line with the stored rule `name`: started (or replaced) if
    /// it is stored and enabled, stopped otherwise.
    fn apply_rule(&self, name: &str) -> Result<(), String> {
        use thingkit_api::topic_rule::TopicRuleHook as _;
        match self.rules.get(name).map_err(|e| e.to_string())? {
            Some(rule) if !rule.disabled() => {
                if let Err(why) = self.hook.upsert(name, &rule.payload) {
                    tracing::warn!(rule = %name, "the rules engine refused a topic rule made on another server: {why}");
                }
            }
            _ => self.hook.remove(name),
        }
        Ok(())
    }

    /// Every stored rule as [`FollowedControl::apply_rule`] applies one, and the API's rules
    /// running here that are no longer stored stopped.
    fn resync_rules(&self) -> Result<(), String> {
        use thingkit_api::topic_rule::TopicRuleHook as _;
        let stored = self.rules.list().map_err(|e| e.to_string())?;
        for (name, rule) in &stored {
            if rule.disabled() {
                self.hook.remove(name);
            } else if let Err(why) = self.hook.upsert(name, &rule.payload) {
                tracing::warn!(rule = %name, "the rules engine refused a stored topic rule: {why}");
            }
        }
        for name in self.hook.running_names() {
            if !stored.iter().any(|(n, _)| *n == name) {
                self.hook.remove(&name);
            }
        }
        Ok(())
    }

    /// The templates re-read, the fleet-provisioning service brought in line.
    fn reload_templates(&self) -> Result<(), String> {
        let mut fleet = self.fleet.lock().unwrap_or_else(|p| p.into_inner());
        let changed = self
            .templates
            .reload(Some(&mut fleet))
            .map_err(|e| e.to_string())?;
        if !changed.is_empty() {
            tracing::info!(?changed, "provisioning templates changed on another server");
        }
        Ok(())
    }

    fn apply(&self, change: &thingkit_cluster::ControlChange) -> Result<(), String> {
        use thingkit_cluster::ControlChange;
        match change {
            ControlChange::TopicRule(name) => self.apply_rule(name),
            ControlChange::Template(_) => self.reload_templates(),
            ControlChange::AccessKey(id) => {
                self.keys.forget(id);
                Ok(())
            }
            _ => {
                self.keys.forget_all();
                self.resync_rules()?;
                self.reload_templates()
            }
        }
    }
}

/// Applies the control-plane changes any server commits (`[cluster] postgres`) on a thread of
/// its own: a topic rule is started or stopped in this server's rules engine, the templates
/// are re-read into the fleet-provisioning service, an access key is dropped from the key
/// store's copy (its next use reads it again). A change that cannot be applied (PostgreSQL
/// away) is retried as a full resync a second later.
fn follow_control_changes(
    followed: FollowedControl,
    changes: std::sync::mpsc::Receiver<thingkit_cluster::ControlChange>,
) -> Result<(), Failure> {
    std::thread::Builder::new()
        .name("thingkit-control-feed".into())
        .spawn(move || {
            let mut resync = false;
            loop {
                let change = match changes.recv_timeout(Duration::from_secs(1)) {
                    Ok(change) if !resync => change,
                    Ok(_) => thingkit_cluster::ControlChange::Resync,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) if resync => {
                        thingkit_cluster::ControlChange::Resync
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                };
                match followed.apply(&change) {
                    Ok(()) => resync = false,
                    Err(e) => {
                        tracing::error!(error = %e, ?change, "control-plane change not applied; re-reading everything in a second");
                        resync = true;
                    }
                }
            }
        })
        .map(|_| ())
        .map_err(|e| Failure(format!("control plane change feed thread: {e}")))
}

/// Per-connection publish limits: the AWS actions (PUBACK 0x97), or a delay, with the
/// file's rates.
fn publish_limits(limits: &LimitsConfig, publishes: u64, bytes: u64) -> RateLimits {
    if !limits.enabled {
        return RateLimits::unlimited();
    }
    with_over_limit(
        limits,
        RateLimits::aws_connection()
            .with_messages(Some(Rate::per_second(publishes)))
            .with_bytes(Some(Rate::per_second(bytes))),
    )
}

/// Per-account publish limits: AWS's action (PUBACK 0x97), or a delay, with the file's rate,
/// this server's share of it when `servers` share the account (`[cluster] servers`): the rate
/// divided by `servers`, rounded up, so the cluster admits at most the rate plus one publish per
/// server and second, however the load balancer spreads the account's devices.
fn account_limits(limits: &LimitsConfig, servers: std::num::NonZeroU64) -> RateLimits {
    if !limits.enabled {
        return RateLimits::unlimited();
    }
    let share = limits
        .account_publishes_per_second
        .get()
        .div_ceil(servers.get());
    with_over_limit(
        limits,
        RateLimits::aws_account_publish().with_messages(Some(Rate::per_second(share))),
    )
}

/// `[limits] over_limit` applied to publish limits.
fn with_over_limit(limits: &LimitsConfig, rates: RateLimits) -> RateLimits {
    match limits.over_limit {
        OverLimit::Reject => rates,
        OverLimit::Delay => rates
            .with_message_action(LimitAction::Delay)
            .with_byte_action(LimitAction::Delay),
    }
}

/// Per-client-ID CONNECT limits: AWS's action (CONNACK 0x9F) with the file's rate.
fn connect_limits(per_second: u64) -> RateLimits {
    RateLimits::aws_client_connect().with_messages(Some(Rate::per_second(per_second)))
}

fn limit_classes(limits: &LimitsConfig) -> Vec<LimitClass> {
    if !limits.enabled {
        return Vec::new();
    }
    limits
        .overrides
        .iter()
        .filter_map(|o| {
            let selector = match (&o.thing_type, &o.thing_group) {
                (Some(t), _) => ThingSelector::ThingType(t.clone()),
                (None, Some(g)) => ThingSelector::ThingGroup(g.clone()),
                (None, None) => return None, // refused when the file is read
            };
            let publishes = o
                .publishes_per_second
                .unwrap_or(limits.publishes_per_second);
            let bytes = o.bytes_per_second.unwrap_or(limits.bytes_per_second);
            Some(
                LimitClass::new(
                    selector,
                    publish_limits(limits, publishes.get(), bytes.get()),
                )
                .with_connect_limits(o.connects_per_second.map(|c| connect_limits(c.get()))),
            )
        })
        .collect()
}

/// The broker's configuration from the file's.
fn broker_config(
    config: &ServeConfig,
    arn: thingkit_policy::ArnPrefix,
    fleet: Option<Arc<Mutex<FleetProvisioning>>>,
    firmware_trust: Option<TrustAnchors>,
) -> BrokerConfig {
    let (mqtt, limits) = (&config.mqtt, &config.limits);
    BrokerConfig::default()
        .with_arn(arn)
        .with_default_account(config.account.account_id.clone())
        .with_metering(config.metering.preset.policy())
        .with_connection_limits(publish_limits(
            limits,
            limits.publishes_per_second.get(),
            limits.bytes_per_second.get(),
        ))
        .with_account_limits(account_limits(limits, config.cluster.servers))
        .with_connect_limits(
            limits
                .enabled
                .then(|| connect_limits(limits.connects_per_second.get())),
        )
        .with_limit_classes(limit_classes(limits))
        .with_max_accounts(limits.max_accounts.get())
        .with_max_connect_clients(limits.max_connect_clients.get())
        .with_max_packet_size(mqtt.max_packet_size.get())
        .with_topic_alias_maximum(mqtt.topic_alias_maximum)
        .with_receive_maximum(mqtt.receive_maximum.get())
        .with_max_inflight(mqtt.max_inflight.get())
        .with_max_queued(mqtt.max_queued.get())
        .with_slow_subscriber_timeout(mqtt.slow_subscriber_timeout())
        .with_max_retained_messages(mqtt.max_retained_messages.get())
        .with_max_retained_bytes(mqtt.max_retained_bytes.get())
        .with_max_keep_alive(mqtt.max_keep_alive.get())
        .with_connect_timeout(mqtt.connect_timeout())
        .with_max_connections(mqtt.max_connections.get())
        .with_alpn_protocols(
            config
                .tls
                .alpn
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect(),
        )
        .with_fleet(fleet)
        .with_firmware_trust(firmware_trust)
}

/// The rules engine of `[rules_engine]` with the `[[rules]]` of the file installed. Sink and
/// dead-letter paths are relative to data_dir.
fn rules_engine(config: &ServeConfig) -> Result<RulesEngine, Failure> {
    let c = &config.rules_engine;
    let mut rules = RulesConfig::default();
    rules.queue_size = c.queue_size.get();
    rules.action_queue_size = c.action_queue_size.get();
    rules.retry_attempts = c.retry_attempts.get();
    rules.retry_backoff = Duration::from_millis(c.retry_backoff_ms.get());
    rules.retry_backoff_max = Duration::from_millis(c.retry_backoff_max_ms.get());
    rules.http_timeout = Duration::from_secs(c.http_timeout_seconds.get());
    rules.dead_letter_path = c.dead_letter_path.clone();
    rules.base_dir = config.data_dir.clone();
    rules.parquet_roll_rows = c.parquet_roll_rows.get();
    rules.parquet_roll_interval = Duration::from_secs(c.parquet_roll_seconds.get());
    rules.parquet_row_group_rows = c.parquet_row_group_rows.get();
    rules.window_max_groups = c.window_max_groups.get();
    if let Some(bundle) = &c.http_ca_bundle {
        let pem = std::fs::read(bundle).map_err(|e| {
            Failure(format!(
                "rules_engine.http_ca_bundle {}: {e}",
                bundle.display()
            ))
        })?;
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => {
                    rules.http_ca_certificates.push(cert.der().to_vec())
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(Failure(format!(
                        "rules_engine.http_ca_bundle {}: {e}",
                        bundle.display()
                    )));
                }
            }
        }
    }
    let engine = RulesEngine::new(rules);
    for (i, rule) in config.rules.iter().enumerate() {
        let payload = rule
            .payload()
            .map_err(|e| Failure(format!("rules[{i}] ({}): {e}", rule.name)))?;
        engine
            .upsert(&rule.name, &payload)
            .map_err(|e| Failure(format!("rules[{i}] ({}): {e}", rule.name)))?;
    }
    if !config.rules.is_empty() {
        tracing::info!(rules = config.rules.len(), "topic rules installed");
    }
    Ok(engine)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(limits: &str) -> BrokerConfig {
        let file: ServeConfig = toml::from_str(limits).expect("a valid file");
        let arn = file.account.arn_prefix().expect("the default account");
        broker_config(&file, arn, None, None)
    }

    #[test]
    fn limits_can_be_turned_off_or_made_to_delay() {
        let on = config("");
        assert_eq!(
            on.connection_limits.message_action,
            LimitAction::Reject(thingkit_meter::LimitReason::QuotaExceeded)
        );
        assert!(on.connection_limits.messages.is_some());
        assert!(on.connect_limits.is_some());

        let off = config(
            "[limits]\nenabled = false\n[[limits.override]]\nthing_type = \"t\"\npublishes_per_second = 5\n",
        );
        assert_eq!(off.connection_limits, RateLimits::unlimited());
        assert_eq!(off.account_limits, RateLimits::unlimited());
        assert!(off.connect_limits.is_none());
        assert!(off.limit_classes.is_empty());

        let delay = config("[limits]\nover_limit = \"delay\"\n");
        assert_eq!(delay.connection_limits.message_action, LimitAction::Delay);
        assert_eq!(delay.connection_limits.byte_action, LimitAction::Delay);
        assert_eq!(delay.account_limits.message_action, LimitAction::Delay);
    }

    #[test]
    fn each_of_n_servers_enforces_its_share_of_the_account_rate_rounded_up() {
        let share = |file: &str| {
            let rate = config(file).account_limits.messages.expect("limited");
            (rate.amount, rate.period_ms)
        };
        assert_eq!(share(""), (20_000, 1_000));
        assert_eq!(share("[cluster]\nservers = 3\n"), (6_667, 1_000));
        assert_eq!(
            share("[limits]\naccount_publishes_per_second = 4\n[cluster]\nservers = 3\n"),
            (2, 1_000),
            "3 servers admit at most 6 = the rate + 2: one more per server and second at most"
        );
        assert_eq!(
            share("[limits]\naccount_publishes_per_second = 1\n[cluster]\nservers = 5\n"),
            (1, 1_000)
        );
    }
}
