//! A real MQTT 3.1.1 + 5.0 broker over mutual TLS, composed from the thingkit crates: device
//! identity from `thingkit-provision`, authorization by `thingkit-policy`, routing through
//! `thingkit-mqtt`'s subscription index, metering and rate limits by `thingkit-meter`, firmware
//! jobs checked by `thingkit-firmware`.
//!
//! ```sh
//! thingkit ca init --dir ca
//! thingkit cert create --ca-dir ca --common-name sensor-1 --cert-out sensor-1.pem --key-out sensor-1.key
//! cargo run --example broker -- --ca-dir ca --policy fleet=fleet.json --device sensor-1=sensor-1.pem
//! ```
//!
//! The README's "Running the broker with real clients" section has the full walk-through with
//! `mosquitto_pub`/`mosquitto_sub`. Stop it with Ctrl-C or SIGTERM (graceful shutdown: MQTT 5
//! clients get DISCONNECT 0x8B Server shutting down, usage is flushed into the meter).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use clap::Parser;
use thingkit::firmware::{PublicKey, TrustAnchors};
use thingkit::meter::MeteringPolicy;
use thingkit::meter::{Rate, RateLimits};
use thingkit::policy::ArnPrefix;
use thingkit::provision::CertificateAuthority;
use thingkit::provision::{CaStatus, CertificateId, CertificateStatus};
use thingkit::provision::{FleetConfig, FleetProvisioning, claim_policy};
use thingkit::provision::{PolicyTarget, Registry, RegistryLimits};
use thingkit::provision::{ProvisioningTemplate, TemplateLimits};
use thingkit::provision::{RedbStore, RegistryStore};

use thingkit::broker::{Broker, BrokerConfig, ServerIdentity};

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(about = "thingkit example MQTT broker (mutual TLS, AWS IoT policies, metering)")]
struct Flags {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8883")]
    listen: SocketAddr,
    /// Directory with the CA (ca.pem, ca.key from `thingkit ca init`). The CA is registered
    /// ACTIVE and signs the broker's own server certificate.
    #[arg(long)]
    ca_dir: PathBuf,
    /// Names the server certificate is valid for (DNS names or IP addresses).
    #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
    server_names: Vec<String>,
    /// Registry database (redb). Without it the registry lives in memory.
    #[arg(long)]
    registry: Option<PathBuf>,
    /// A policy to create: NAME=FILE (AWS IoT policy JSON). Repeatable. Every policy is attached
    /// to every --device certificate.
    #[arg(long = "policy", value_name = "NAME=FILE")]
    policies: Vec<String>,
    /// A device to register: THING=CERT.pem (certificate issued by the CA). Repeatable. The
    /// certificate is registered ACTIVE and attached to the thing (created if missing).
    #[arg(long = "device", value_name = "THING=CERT")]
    devices: Vec<String>,
    /// A fleet provisioning template: NAME=FILE (AWS template JSON). Repeatable. Enables the
    /// `$aws/certificates/...` and `$aws/provisioning-templates/NAME/provision/...` topics.
    #[arg(long = "provisioning-template", value_name = "NAME=FILE")]
    templates: Vec<String>,
    /// A claim certificate (PEM, issued by the CA): registered ACTIVE with the least-privilege
    /// claim policy for the --provisioning-template names. Repeatable.
    #[arg(long = "claim", value_name = "CERT")]
    claims: Vec<PathBuf>,
    /// AWS partition, region and account of the ARNs policies are written against.
    #[arg(long, default_value = "eu-central-1")]
    region: String,
    /// The account (12 digits); also the default billing account.
    #[arg(long, default_value = "123456789012")]
    account: String,
    /// Metering preset: aws, azure, azure-free or gcp.
    #[arg(long, default_value = "aws")]
    metering: String,
    /// Per-connection publish rate limit (messages per second); the AWS default is 100. Over
    /// it, MQTT 5 clients get PUBACK 0x97 and the message is not routed.
    #[arg(long, default_value_t = 100)]
    publish_rate: u64,
    /// CONNECTs per second per client ID (AWS: 1), with a burst of 5; over it, CONNACK 0x9F.
    #[arg(long, default_value_t = 1)]
    connect_rate: u64,
    /// Largest accepted packet in bytes (announced as Maximum Packet Size to MQTT 5 clients).
    #[arg(long, default_value_t = 256 * 1024)]
    max_packet_size: u32,
    /// Firmware release public keys (SPKI PEM: the `.pub` file of `thingkit firmware keygen`):
    /// envelopes on the firmware job topics must carry a signature by one of them. Repeatable.
    /// Without it, envelopes only have to be well-formed.
    #[arg(long = "firmware-key", value_name = "PEM")]
    firmware_keys: Vec<PathBuf>,
    /// Address for the plain-HTTP metrics endpoint (`GET /metrics` in OpenMetrics text,
    /// `GET /health`); off when not given.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, default_value = "info")]
    log_level: tracing::Level,
}

fn split_pair(s: &str) -> Result<(&str, &str), String> {
    s.split_once('=')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))
}

/// Registers the CA, the policies and the devices given on the command line (idempotently, so
/// a persistent registry can be reused).
fn populate<S: RegistryStore>(
    registry: &mut Registry<S>,
    ca: &CertificateAuthority,
    flags: &Flags,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if registry.ca_certificate(&ca.id()).is_none() {
        registry.register_ca_certificate(ca.certificate_der(), CaStatus::Active, false)?;
    }
    let mut names = Vec::new();
    for p in &flags.policies {
        let (name, file) = split_pair(p)?;
        let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
        if registry.policy(name).is_none() {
            registry.create_policy(name, &text, std::time::SystemTime::now())?;
        }
        names.push(name.to_string());
    }
    for d in &flags.devices {
        let (thing, file) = split_pair(d)?;
        let pem = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
        let id = CertificateId::of_certificate(&pem)?;
        if registry.certificate(&id).is_none() {
            registry.register_certificate(
                &pem,
                CertificateStatus::Active,
                std::time::SystemTime::now(),
            )?;
        }
        if registry.thing(thing).is_none() {
            registry.create_thing(thing, None, &[])?;
        }
        if !registry.thing_principals(thing).contains(&id) {
            registry.attach_thing_principal(thing, &id, true)?;
        }
        for name in &names {
            let attached = registry
                .certificate(&id)
                .is_some_and(|c| c.policies.iter().any(|p| &**p == name.as_str()));
            if !attached {
                registry.attach_policy(name, &PolicyTarget::Certificate(id))?;
            }
        }
        tracing::info!(thing, certificate = %id, "device registered");
    }
    Ok(())
}

/// Fleet provisioning: the templates, and the claim certificates with the claim policy.
fn fleet_provisioning<S: RegistryStore>(
    registry: &mut Registry<S>,
    ca: Arc<CertificateAuthority>,
    arn: &ArnPrefix,
    flags: &Flags,
) -> Result<FleetProvisioning, Box<dyn std::error::Error + Send + Sync>> {
    let mut service = FleetProvisioning::new(ca, FleetConfig::default());
    let mut names = Vec::new();
    for t in &flags.templates {
        let (name, file) = split_pair(t)?;
        let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
        service.add_template(
            name,
            ProvisioningTemplate::parse(&text, &TemplateLimits::default())?,
        )?;
        names.push(name);
    }
    let policy = claim_policy(arn, &names)?;
    if registry.policy("claim").is_none() {
        registry.create_policy("claim", &policy, std::time::SystemTime::now())?;
    }
    for file in &flags.claims {
        let pem = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let id = CertificateId::of_certificate(&pem)?;
        if registry.certificate(&id).is_none() {
            registry.register_certificate(
                &pem,
                CertificateStatus::Active,
                std::time::SystemTime::now(),
            )?;
        }
        let attached = registry
            .certificate(&id)
            .is_some_and(|c| c.policies.iter().any(|p| &**p == "claim"));
        if !attached {
            registry.attach_policy("claim", &PolicyTarget::Certificate(id))?;
        }
        tracing::info!(certificate = %id, templates = ?names, "claim certificate registered");
    }
    Ok(service)
}

async fn run<S: RegistryStore + Send + Sync + 'static>(
    mut registry: Registry<S>,
    flags: Flags,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let read = |name: &str| {
        let path = flags.ca_dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let ca = Arc::new(CertificateAuthority::from_pem(
        &read("ca.pem")?,
        &read("ca.key")?,
    )?);
    populate(&mut registry, &ca, &flags)?;
    let names: Vec<&str> = flags.server_names.iter().map(String::as_str).collect();
    let server = ca.create_server_certificate(&names, std::time::SystemTime::now())?;
    let chain = format!("{}{}", server.certificate.pem(), ca.certificate_pem());

    let mut firmware_keys = Vec::new();
    for path in &flags.firmware_keys {
        let pem = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        firmware_keys.push(PublicKey::from_spki_pem(&pem)?);
    }
    let firmware_trust = match firmware_keys.len() {
        0 => None,
        _ => Some(TrustAnchors::new(0, 1, firmware_keys)?),
    };
    let fleet = if flags.templates.is_empty() {
        None
    } else {
        let arn =
            ArnPrefix::new("aws", &flags.region, &flags.account).ok_or("bad region or account")?;
        Some(Arc::new(Mutex::new(fleet_provisioning(
            &mut registry,
            Arc::clone(&ca),
            &arn,
            &flags,
        )?)))
    };
    let config = BrokerConfig::default()
        .with_firmware_trust(firmware_trust)
        .with_fleet(fleet)
        .with_arn(
            ArnPrefix::new("aws", &flags.region, &flags.account).ok_or("bad region or account")?,
        )
        .with_default_account(flags.account.clone())
        .with_metering(MeteringPolicy::preset(&flags.metering)?)
        .with_connection_limits(
            RateLimits::aws_connection().with_messages(Some(Rate::per_second(flags.publish_rate))),
        )
        .with_connect_limits(Some(RateLimits::aws_client_connect().with_messages(Some(
            Rate {
                amount: flags.connect_rate,
                period_ms: 1000,
                burst: 5,
            },
        ))))
        .with_max_packet_size(flags.max_packet_size);
    let broker = Broker::builder(
        Arc::new(RwLock::new(registry)),
        ServerIdentity::from_pem(chain.clone(), server.private_key_pem.clone()),
    )
    .config(config)
    .bind(flags.listen)
    .await?;
    // The metrics endpoint outlives the broker's grace period, so /health reads 503 during it.
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = match flags.metrics {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            let addr = listener.local_addr()?;
            let server = tokio::spawn(thingkit::broker::serve_metrics(
                listener,
                broker.metrics(),
                async move {
                    let _ = metrics_stopped.await;
                },
            ));
            Some((addr, server))
        }
        None => None,
    };
    // Listen for the signals before announcing the address, so a supervisor that reads the
    // line and signals at once is never met by the default action (termination).
    let stop = thingkit::broker::shutdown_signal()?;
    println!(
        "listening on {} (Ctrl-C or SIGTERM stops)",
        broker.local_addr()
    );
    if let Some((addr, _)) = &metrics {
        // After the "listening on" line, which supervisors and tests read first.
        println!("metrics on http://{addr}/metrics and http://{addr}/health");
    }
    let signal = stop.await;
    tracing::info!(signal, "shutting down");
    broker.shutdown(Duration::from_secs(5)).await;
    let _ = stop_metrics.send(());
    if let Some((_, server)) = metrics {
        server.await??;
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let flags = Flags::parse();
    tracing_subscriber::fmt()
        .with_max_level(flags.log_level)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match &flags.registry {
        Some(path) => match RedbStore::open(path)
            .and_then(|store| Registry::open(store, RegistryLimits::default()))
        {
            Ok(registry) => run(registry, flags).await,
            Err(e) => Err(e.into()),
        },
        None => run(Registry::in_memory(), flags).await,
    };
    if let Err(e) = result {
        eprintln!("broker: {e}");
        std::process::exit(1);
    }
}
