//! A device agent for firmware updates over the air (issue #17, "OTA with SUIT"): it runs AWS
//! IoT Jobs as the AWS IoT Device SDK's jobs sample does (`$aws/things/{thing}/jobs/notify-next`,
//! `$next/get`, `start-next`, `{jobId}/update`), installs signed SUIT firmware delivered over
//! MQTT file delivery (`$aws/things/{thing}/streams/{streamId}/...`) into A/B slots with
//! `thingkit_firmware::UpdateMachine`, reports progress in the AWS OTA agent's `statusDetails`
//! (`receive`, `self_test`, `reason`, `updatedBy`) and reports the running firmware to the
//! Device Shadow (`$aws/things/{thing}/shadow/update`). The flow, the checks and what is
//! simulated (the slots are files, the reboot is a reconnect) are documented in
//! `examples/support/agent.rs`, which `tests/ota.rs` runs against an in-process broker.
//!
//! # Against `thingkit serve`
//!
//! Set up the server as the README's "Running the server with real clients" does (`thingkit
//! init demo`, a device certificate for `sensor-1`, `[[device]]` in `demo/thingkit.toml`), and
//! give the device a policy for its own `$aws/things/sensor-1/...` topics:
//!
//! ```sh
//! cat > demo/policies/agent.json <<'JSON'
//! {"Version": "2012-10-17", "Statement": [
//!   {"Effect": "Allow", "Action": "iot:Connect",
//!    "Resource": "arn:aws:iot:eu-central-1:123456789012:client/${iot:Connection.Thing.ThingName}"},
//!   {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
//!    "Resource": "arn:aws:iot:eu-central-1:123456789012:topic/$aws/things/${iot:Connection.Thing.ThingName}/*"},
//!   {"Effect": "Allow", "Action": "iot:Subscribe",
//!    "Resource": "arn:aws:iot:eu-central-1:123456789012:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/*"}]}
//! JSON
//! cargo run -q -p thingkit-cli -- serve --config demo/thingkit.toml &
//!
//! # A release key, an image and its signed envelope (sequence 2; the agent starts at 1).
//! cargo run -q -p thingkit-cli -- firmware keygen --alg es256 --out demo/release.key
//! head -c 100000 /dev/urandom > demo/fw-2.bin
//! cargo run -q -p thingkit-cli -- firmware sign --key demo/release.key --image demo/fw-2.bin \
//!   --sequence 2 --vendor-id fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe \
//!   --class-id 1492af14-2569-5e48-bf42-9b2d51f2ab45 --out demo/fw-2.suit
//!
//! # The job (the image becomes stream fw-2, file 0), with an access key of the server.
//! eval "$(cargo run -q -p thingkit-cli -- access-key create --config demo/thingkit.toml |
//!   jq -r '"export AWS_ACCESS_KEY_ID=\(.AccessKeyId) AWS_SECRET_ACCESS_KEY=\(.SecretAccessKey)"')"
//! cargo run -q -p thingkit-cli -- jobs create --config demo/thingkit.toml --job-id fw-2 \
//!   --thing sensor-1 --envelope demo/fw-2.suit --image demo/fw-2.bin
//! sleep 2   # the server picks up new images under data_dir/streams every 2 s
//!
//! # The agent: installs it into slot b, reports SUCCEEDED, stops when nothing is pending.
//! cargo run -q --example device_agent -- --host localhost --port 8883 \
//!   --ca demo/ca/ca.pem --cert demo/devices/sensor-1.pem --key demo/devices/sensor-1.key \
//!   --thing sensor-1 --trust demo/release.key.pub --state-dir demo/agent \
//!   --initial-sequence 1 --exit-when-idle
//! cat demo/agent/state.json
//! cargo run -q -p thingkit-cli -- jobs describe-execution --config demo/thingkit.toml \
//!   --job-id fw-2 --thing sensor-1
//! ```
//!
//! Without `--exit-when-idle` the agent keeps waiting for `/notify-next`. Run the same job
//! again (another job ID, same envelope) and it fails with "rollback refused"; flip a byte of
//! the image before `jobs create` and it fails with "image digest mismatch".

#[path = "support/agent.rs"]
mod agent;
#[path = "support/client.rs"]
mod client;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use thingkit::firmware::{PublicKey, TrustAnchors, Uuid};

#[derive(Debug, Parser)]
#[command(about = "a thingkit device agent: AWS IoT Jobs + SUIT firmware into A/B slots")]
struct Args {
    /// The broker's host name (also the name its certificate must carry).
    #[arg(long, default_value = "localhost")]
    host: String,
    /// The broker's MQTT port.
    #[arg(long, default_value_t = 8883)]
    port: u16,
    /// The CA certificate(s) to trust (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// The device certificate (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// The device's private key (PKCS #8 PEM).
    #[arg(long)]
    key: PathBuf,
    /// The thing name (also the client ID).
    #[arg(long)]
    thing: String,
    /// A release public key (SPKI PEM, `thingkit firmware keygen`'s FILE.pub); repeatable.
    #[arg(long = "trust", required = true)]
    trust: Vec<PathBuf>,
    /// Distinct trusted keys that must have signed.
    #[arg(long, default_value_t = 1)]
    threshold: usize,
    /// Slots (`slot-a.bin`, `slot-b.bin`) and `state.json` live here.
    #[arg(long)]
    state_dir: PathBuf,
    /// The device's vendor ID.
    #[arg(long, default_value = agent::DEMO_VENDOR)]
    vendor: String,
    /// The device's class ID.
    #[arg(long, default_value = agent::DEMO_CLASS)]
    class: String,
    /// The factory image's sequence number, for a new state directory.
    #[arg(long, default_value_t = 0)]
    initial_sequence: u64,
    /// Stop when no job is pending.
    #[arg(long)]
    exit_when_idle: bool,
    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

fn read(path: &PathBuf) -> Result<String, agent::Error> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()).into())
}

#[tokio::main]
async fn main() -> Result<(), agent::Error> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .init();
    let args = Args::parse();
    let keys = args
        .trust
        .iter()
        .map(|p| {
            PublicKey::from_spki_pem(&read(p)?)
                .map_err(|e| agent::Error::from(format!("{}: {e}", p.display())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let trust = TrustAnchors::new(0, args.threshold, keys)?;
    let addr = tokio::net::lookup_host((args.host.as_str(), args.port))
        .await?
        .next()
        .ok_or_else(|| format!("{} does not resolve", args.host))?;
    let mut options = agent::Options::new(addr, &args.thing, trust, &args.state_dir);
    options.server_name = args.host.clone();
    options.ca_pem = read(&args.ca)?;
    options.cert_pem = read(&args.cert)?;
    options.key_pem = read(&args.key)?;
    options.vendor_id = args
        .vendor
        .parse::<Uuid>()
        .map_err(|e| format!("--vendor: {e}"))?;
    options.class_id = args
        .class
        .parse::<Uuid>()
        .map_err(|e| format!("--class: {e}"))?;
    options.initial_sequence = args.initial_sequence;
    options.exit_when_idle = args.exit_when_idle;
    options.timeout = Duration::from_secs(args.timeout.max(1));
    let outcome = agent::run(options).await?;
    for job in &outcome.jobs {
        println!("{}: {} ({})", job.job_id, job.status, job.reason);
    }
    println!(
        "firmware: sequence {}, slot {}",
        outcome.state.installed_sequence(),
        outcome.state.slot_name()
    );
    Ok(())
}
