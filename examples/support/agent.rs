//! A device agent that installs signed firmware (SUIT) delivered by AWS IoT Jobs and MQTT
//! file delivery, and reports its state to the Device Shadow, in the way the AWS IoT Device
//! SDK's jobs and shadow samples and the AWS OTA agent do. `examples/device_agent.rs` runs it
//! from the command line; `tests/ota.rs` runs it against an in-process broker.
//!
//! # Flow
//!
//! 1. Connect (MQTT 5 over mutual TLS, client ID = thing name), subscribe to
//!    `$aws/things/{thing}/jobs/notify-next` and the answers the agent waits for
//!    (`$next/get`, `start-next` and `{jobId}/update`, each `/accepted` and `/rejected`;
//!    `shadow/update/accepted|rejected`), finish an update interrupted by a restart, and report
//!    the shadow `{"state":{"reported":{"firmware":{"sequence":N,"slot":"a|b"}}}}`.
//! 2. Ask for the next pending execution (`$next/get`); when there is none, wait for
//!    `/notify-next` (or poll again after a while, which also keeps the connection alive), or
//!    stop with `exit_when_idle`.
//! 3. A job document that is not a firmware job (`FirmwareJob::parse`) is answered REJECTED
//!    while QUEUED (FAILED if it was already started), with `reason`.
//! 4. A firmware job is started (`start-next` → IN_PROGRESS); then, before anything is
//!    downloaded, the envelope is authenticated against the trust anchors and checked for
//!    expiry, sequence number above the installed one (the anti-rollback floor) and vendor and
//!    class IDs. The image size is the authenticated manifest's, never the job document's.
//! 5. The image is fetched over the job's stream in blocks of [`BLOCK_SIZE`] into the inactive
//!    slot while an `ImageVerifier` hashes it; after each round of blocks the agent persists a
//!    checkpoint (resumed after a restart with `Download::resume` and `UpdateMachine::resume`,
//!    without downloading again) and reports `receive: "n/total"`.
//! 6. `UpdateMachine`: downloaded → installed (report `self_test: ready`) → "reboot" → trial
//!    boot of the new slot → self-test → `self_test: active` → confirm (the new slot becomes
//!    active, the floor rises) → SUCCEEDED with `reason: "accepted <seq>"` and `updatedBy`.
//!    Any refusal (signature, expiry, rollback, identity, size, digest of the image, a stream
//!    error) ends the job FAILED with the error as `reason`; the active slot does not change.
//! 7. After each job the shadow is reported again.
//!
//! Every wait is bounded ([`Options::timeout`]); a stalled stream fails the job after three
//! unanswered requests.
//!
//! # What is simulated
//!
//! The slots are files in the state directory (`slot-a.bin`, `slot-b.bin`); the
//! bootloader's state (`UpdateState`: phase, active slot, anti-rollback floor) and the download
//! checkpoint are `state.json` there. The reboot into the new image is a reconnect of the MQTT
//! client after [`Options::reboot_delay`]; the "bootloader" is `UpdateMachine::boot`, and the
//! self-test hashes the booted slot again against the manifest's digest.
#![allow(dead_code)] // the example and the test use different parts

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use thingkit::firmware::stream::{Download, DownloadCheckpoint, Encoding, stream_topic};
use thingkit::firmware::{
    BootDecision, ImageRequirement, ImageVerifier, Phase, Slot, TargetDevice, TrustAnchors,
    UpdateMachine, UpdateState, Uuid, Verifier,
};
use thingkit::jobs::ota::{FirmwareJob, ImageLocation, status};
use thingkit::mqtt::QoS;

use crate::client::{Client, Options as MqttOptions, accepted, tls_config};

/// Errors that stop the agent (connection, storage), as text.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The vendor ID the agent expects unless told otherwise (the one the README signs with).
pub const DEMO_VENDOR: &str = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe";
/// The class ID the agent expects unless told otherwise.
pub const DEMO_CLASS: &str = "1492af14-2569-5e48-bf42-9b2d51f2ab45";
/// Block size asked of the stream service (AWS allows 256..=131072).
pub const BLOCK_SIZE: u32 = 4096;
/// Blocks per GetStream request: a `receive` report follows each round.
pub const BLOCKS_PER_REQUEST: u32 = 8;
/// Unanswered GetStream rounds in a row before the job fails.
const MAX_STALLS: u32 = 3;
/// Longest `reason` reported (statusDetails values may have 1,024 characters).
const MAX_REASON: usize = 512;

/// How to run the agent.
#[derive(Clone)]
pub struct Options {
    /// The broker's address.
    pub addr: SocketAddr,
    /// The name the broker's certificate must carry.
    pub server_name: String,
    /// CA certificate(s) to trust (PEM).
    pub ca_pem: String,
    /// The device certificate (PEM).
    pub cert_pem: String,
    /// The device key (PKCS #8 PEM).
    pub key_pem: String,
    /// The thing name, also the MQTT client ID.
    pub thing: String,
    /// The firmware release keys.
    pub trust: TrustAnchors,
    /// Slots and state live here.
    pub state_dir: PathBuf,
    /// The device's vendor ID: manifests for other vendors are refused.
    pub vendor_id: Uuid,
    /// The device's class ID.
    pub class_id: Uuid,
    /// The sequence number of the factory image, used when the state directory is new.
    pub initial_sequence: u64,
    /// The capacity of a slot: the largest image accepted.
    pub max_image_size: u64,
    /// Stop when no job is pending instead of waiting for the next one.
    pub exit_when_idle: bool,
    /// Bound on each wait for an answer.
    pub timeout: Duration,
    /// While idle, how long to wait for `/notify-next` before asking again.
    pub idle_poll: Duration,
    /// How long the simulated reboot takes (at least a second: the broker, like AWS, allows
    /// one CONNECT per second per client ID).
    pub reboot_delay: Duration,
    /// Simulation: lose power (stop with an error, without a word to the broker) once this many
    /// blocks of an image are in the slot; the next run resumes the download from the
    /// checkpoint.
    pub power_cut_after_blocks: Option<u64>,
}

impl Options {
    /// Options with the defaults: demo vendor and class IDs, factory sequence 0, 16 MiB slots,
    /// 10 s waits, 20 s idle polls, 1.1 s reboots.
    pub fn new(
        addr: SocketAddr,
        thing: &str,
        trust: TrustAnchors,
        state_dir: impl Into<PathBuf>,
    ) -> Options {
        Options {
            addr,
            server_name: "localhost".into(),
            ca_pem: String::new(),
            cert_pem: String::new(),
            key_pem: String::new(),
            thing: thing.into(),
            trust,
            state_dir: state_dir.into(),
            vendor_id: DEMO_VENDOR.parse().expect("DEMO_VENDOR is a valid UUID"),
            class_id: DEMO_CLASS.parse().expect("DEMO_CLASS is a valid UUID"),
            initial_sequence: 0,
            max_image_size: 16 << 20,
            exit_when_idle: false,
            timeout: Duration::from_secs(10),
            idle_poll: Duration::from_secs(20),
            reboot_delay: Duration::from_millis(1100),
            power_cut_after_blocks: None,
        }
    }
}

/// What the agent keeps across restarts (`state.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentState {
    /// The update machine's (bootloader's) state: phase, active slot, anti-rollback floor.
    pub update: UpdateState,
    /// The job being installed, if any.
    pub job: Option<PendingJob>,
}

/// The job an update belongs to, and its download checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingJob {
    /// The job ID.
    pub job_id: String,
    /// The stream download's checkpoint while downloading.
    pub download: Option<DownloadCheckpoint>,
}

impl AgentState {
    /// The sequence number of the running (committed) firmware.
    pub fn installed_sequence(&self) -> u64 {
        self.update.min_sequence
    }

    /// The active slot as `"a"` or `"b"`.
    pub fn slot_name(&self) -> &'static str {
        slot_name(self.update.active_slot)
    }

    fn to_json(&self) -> Result<Value, Error> {
        let job = match &self.job {
            Some(j) => json!({
                "jobId": j.job_id,
                "download": j.download.as_ref().map(serde_json::to_value).transpose()?,
            }),
            None => Value::Null,
        };
        Ok(json!({"update": serde_json::to_value(&self.update)?, "job": job}))
    }

    fn from_json(v: &Value) -> Result<AgentState, Error> {
        let update = serde_json::from_value(v.get("update").cloned().ok_or("no update")?)?;
        let job = match v.get("job") {
            Some(Value::Object(j)) => Some(PendingJob {
                job_id: j
                    .get("jobId")
                    .and_then(Value::as_str)
                    .ok_or("job.jobId must be a string")?
                    .to_owned(),
                download: match j.get("download") {
                    None | Some(Value::Null) => None,
                    Some(d) => Some(serde_json::from_value(d.clone())?),
                },
            }),
            _ => None,
        };
        Ok(AgentState { update, job })
    }
}

/// `"a"` or `"b"`.
pub fn slot_name(slot: Slot) -> &'static str {
    match slot {
        Slot::A => "a",
        Slot::B => "b",
    }
}

/// The file that holds `slot`.
pub fn slot_path(state_dir: &Path, slot: Slot) -> PathBuf {
    state_dir.join(format!("slot-{}.bin", slot_name(slot)))
}

/// Reads `state.json` from `state_dir`, or `None` when there is none yet.
pub fn load_state(state_dir: &Path) -> Result<Option<AgentState>, Error> {
    let path = state_dir.join("state.json");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let v: Value = serde_json::from_slice(&bytes)?;
            Ok(Some(
                AgentState::from_json(&v).map_err(|e| format!("{}: {e}", path.display()))?,
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display()).into()),
    }
}

/// One accepted report of a job execution's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The status sent.
    pub status: String,
    /// The statusDetails sent.
    pub details: BTreeMap<String, String>,
}

/// What happened to one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReport {
    /// The job ID.
    pub job_id: String,
    /// The terminal status reported: SUCCEEDED, FAILED or REJECTED.
    pub status: String,
    /// The `reason` reported.
    pub reason: String,
    /// Every status report the service accepted, in order.
    pub reports: Vec<Report>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The jobs handled, in order.
    pub jobs: Vec<JobReport>,
    /// The state at the end.
    pub state: AgentState,
    /// The shadow documents the service accepted, in order.
    pub shadow_reports: Vec<Value>,
}

/// Why an install stopped.
enum Failure {
    /// The job failed (the update was refused): report FAILED with this reason.
    Job(String),
    /// The agent cannot go on (connection, storage): stop, the job resumes after a restart.
    Fatal(Error),
}

impl From<thingkit::firmware::Error> for Failure {
    fn from(e: thingkit::firmware::Error) -> Failure {
        Failure::Job(e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Fatal(e.into())
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Fatal(e)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A statusDetails value: no control characters, bounded length.
fn detail_value(text: &str) -> String {
    let mut s: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON)
        .collect();
    if s.trim().is_empty() {
        s = "unknown".into();
    }
    s
}

/// Runs the agent until it is idle (with `exit_when_idle`) or an error stops it.
pub async fn run(options: Options) -> Result<Outcome, Error> {
    std::fs::create_dir_all(&options.state_dir)?;
    let state = match load_state(&options.state_dir)? {
        Some(s) => s,
        None => AgentState {
            update: UpdateState::new(options.initial_sequence),
            job: None,
        },
    };
    let tls = tls_config(&options.ca_pem, &options.cert_pem, &options.key_pem)?;
    let client = connect(&options, &tls).await?;
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let mut agent = Agent {
        options,
        tls,
        client: Some(client),
        state,
        token_prefix: format!("{started:x}"),
        next_token: 0,
        notified: false,
        outcome_jobs: Vec::new(),
        shadow_reports: Vec::new(),
    };
    agent.save()?;
    agent.subscribe().await?;
    agent.recover().await?;
    agent.report_shadow().await;
    loop {
        match agent.describe_next().await? {
            Some(execution) => {
                if let Some(report) = agent.process(&execution).await? {
                    tracing::info!(
                        job = report.job_id,
                        status = report.status,
                        reason = report.reason,
                        "job done"
                    );
                    agent.outcome_jobs.push(report);
                    agent.report_shadow().await;
                }
            }
            None if agent.options.exit_when_idle => break,
            None => agent.wait_for_notification().await?,
        }
    }
    if let Some(client) = agent.client.take() {
        client.disconnect().await?;
    }
    Ok(Outcome {
        jobs: agent.outcome_jobs,
        state: agent.state,
        shadow_reports: agent.shadow_reports,
    })
}

/// Connects, retrying a refused CONNECT a few times (a reboot may come back within the
/// broker's one-connect-per-second window).
async fn connect(options: &Options, tls: &Arc<rustls::ClientConfig>) -> Result<Client, Error> {
    let mut mqtt = MqttOptions::new(&options.thing);
    mqtt.keep_alive = 60;
    // The client's own bound on a read; the agent bounds each wait itself, shorter.
    mqtt.timeout = options.timeout.max(options.idle_poll) + Duration::from_secs(5);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error: Error =
            match Client::connect(options.addr, &options.server_name, tls.clone(), &mqtt).await {
                Ok(client) if accepted(&client.connack) => return Ok(client),
                Ok(client) => {
                    format!("CONNECT refused: 0x{:02x}", client.connack.reason_code.0).into()
                }
                Err(e) => e,
            };
        if attempt >= 5 {
            return Err(error);
        }
        tracing::warn!(%error, attempt, "connecting again in a second");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

struct Agent {
    options: Options,
    tls: Arc<rustls::ClientConfig>,
    client: Option<Client>,
    state: AgentState,
    token_prefix: String,
    next_token: u64,
    /// A `/notify-next` arrived while the agent was busy.
    notified: bool,
    outcome_jobs: Vec<JobReport>,
    shadow_reports: Vec<Value>,
}

impl Agent {
    fn client(&mut self) -> Result<&mut Client, Error> {
        self.client.as_mut().ok_or_else(|| "not connected".into())
    }

    fn jobs_topic(&self, rest: &str) -> String {
        format!("$aws/things/{}/jobs/{rest}", self.options.thing)
    }

    fn shadow_topic(&self, rest: &str) -> String {
        format!("$aws/things/{}/shadow/{rest}", self.options.thing)
    }

    fn token(&mut self) -> String {
        self.next_token += 1;
        format!("{}-{}", self.token_prefix, self.next_token)
    }

    fn identity(&self) -> TargetDevice {
        TargetDevice {
            vendor_id: self.options.vendor_id,
            class_id: self.options.class_id,
            max_image_size: self.options.max_image_size,
        }
    }

    fn slot_path(&self, slot: Slot) -> PathBuf {
        slot_path(&self.options.state_dir, slot)
    }

    /// Writes `state.json` atomically (temporary file, fsync, rename).
    fn save(&self) -> Result<(), Error> {
        let path = self.options.state_dir.join("state.json");
        let tmp = self.options.state_dir.join("state.json.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(serde_json::to_string_pretty(&self.state.to_json()?)?.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    async fn subscribe(&mut self) -> Result<(), Error> {
        let filters: Vec<String> = [
            self.jobs_topic("notify-next"),
            self.jobs_topic("$next/get/accepted"),
            self.jobs_topic("$next/get/rejected"),
            self.jobs_topic("start-next/accepted"),
            self.jobs_topic("start-next/rejected"),
            self.jobs_topic("+/update/accepted"),
            self.jobs_topic("+/update/rejected"),
            self.shadow_topic("update/accepted"),
            self.shadow_topic("update/rejected"),
        ]
        .into();
        self.subscribe_to(&filters).await
    }

    async fn subscribe_to(&mut self, filters: &[String]) -> Result<(), Error> {
        let list: Vec<(&str, QoS)> = filters
            .iter()
            .map(|f| (f.as_str(), QoS::AtLeastOnce))
            .collect();
        let codes = self.client()?.subscribe(&list).await?;
        for (f, code) in filters.iter().zip(codes) {
            if code.0 >= 0x80 {
                return Err(format!("SUBSCRIBE {f} refused: 0x{:02x}", code.0).into());
            }
        }
        Ok(())
    }

    /// The next PUBLISH before `deadline` (`None`: the deadline passed). Notes `/notify-next`.
    async fn next_message(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Result<Option<(String, Vec<u8>)>, Error> {
        let notify = self.jobs_topic("notify-next");
        let client = self.client()?;
        match tokio::time::timeout_at(deadline, client.next_publish()).await {
            Err(_) => Ok(None),
            Ok(Ok(Some(p))) => {
                // No topic alias maximum is announced, so every PUBLISH names its topic.
                let topic = p
                    .topic
                    .as_ref()
                    .map(|t| t.as_str().to_owned())
                    .unwrap_or_default();
                if topic == notify {
                    self.notified = true;
                }
                Ok(Some((topic, p.payload.to_vec())))
            }
            Ok(Ok(None)) => Err("the broker closed the connection".into()),
            Ok(Err(e)) => Err(e),
        }
    }

    /// Publishes `payload` (an object; a clientToken is added) on `topic` and waits for the
    /// answer with that token on `topic/accepted` (`Ok`) or `topic/rejected` (`Err`).
    async fn request(
        &mut self,
        topic: &str,
        mut payload: Value,
    ) -> Result<Result<Value, Value>, Error> {
        let token = self.token();
        if let Value::Object(m) = &mut payload {
            m.insert("clientToken".into(), Value::String(token.clone()));
        }
        let accepted_topic = format!("{topic}/accepted");
        let rejected_topic = format!("{topic}/rejected");
        self.client()?
            .publish(
                topic,
                payload.to_string().into_bytes(),
                QoS::AtLeastOnce,
                false,
            )
            .await?;
        let deadline = tokio::time::Instant::now() + self.options.timeout;
        loop {
            let Some((t, body)) = self.next_message(deadline).await? else {
                return Err(
                    format!("no answer to {topic} within {:?}", self.options.timeout).into(),
                );
            };
            if t != accepted_topic && t != rejected_topic {
                continue;
            }
            let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                continue;
            };
            if v.get("clientToken").and_then(Value::as_str) != Some(token.as_str()) {
                continue; // an answer to someone else's (or an earlier) request
            }
            return Ok(if t == accepted_topic { Ok(v) } else { Err(v) });
        }
    }

    /// `$next/get`: the next pending execution with its document, or `None`.
    async fn describe_next(&mut self) -> Result<Option<Value>, Error> {
        self.notified = false;
        let topic = self.jobs_topic("$next/get");
        match self
            .request(&topic, json!({"includeJobDocument": true}))
            .await?
        {
            Ok(v) => Ok(v.get("execution").cloned()),
            Err(e) if e.get("code").and_then(Value::as_str) == Some("ResourceNotFound") => Ok(None),
            Err(e) => Err(format!("{topic} rejected: {e}").into()),
        }
    }

    /// Waits for `/notify-next` (at most `idle_poll`).
    async fn wait_for_notification(&mut self) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + self.options.idle_poll;
        while !self.notified {
            if self.next_message(deadline).await?.is_none() {
                break;
            }
        }
        Ok(())
    }

    /// `start-next`: the execution it started, or `None`.
    async fn start_next(&mut self) -> Result<Option<Value>, Error> {
        let topic = self.jobs_topic("start-next");
        match self.request(&topic, json!({})).await? {
            Ok(v) => Ok(v.get("execution").cloned()),
            Err(e) => Err(format!("{topic} rejected: {e}").into()),
        }
    }

    /// `{jobId}/update` with `status` and `details`; records the accepted report.
    async fn update(
        &mut self,
        report: &mut JobReport,
        status: &str,
        details: &[(&str, String)],
    ) -> Result<(), Error> {
        let details: BTreeMap<String, String> = details
            .iter()
            .map(|(k, v)| ((*k).to_owned(), detail_value(v)))
            .collect();
        let topic = self.jobs_topic(&format!("{}/update", report.job_id));
        match self
            .request(&topic, json!({"status": status, "statusDetails": details}))
            .await?
        {
            Ok(_) => {
                report.reports.push(Report {
                    status: status.to_owned(),
                    details,
                });
                Ok(())
            }
            Err(e) => Err(format!("{topic} ({status}) rejected: {e}").into()),
        }
    }

    /// Reports the running firmware to the shadow; a failure is logged, not fatal (the
    /// broker may serve no shadows).
    async fn report_shadow(&mut self) {
        let doc = json!({"state": {"reported": {"firmware": {
            "sequence": self.state.installed_sequence(),
            "slot": self.state.slot_name(),
        }}}});
        let topic = self.shadow_topic("update");
        match self.request(&topic, doc.clone()).await {
            Ok(Ok(_)) => self.shadow_reports.push(doc),
            Ok(Err(e)) => tracing::warn!(%e, "shadow update rejected"),
            Err(e) => tracing::warn!(%e, "shadow update failed"),
        }
    }

    /// Handles one execution; `None` when it changed under the agent (asked again).
    async fn process(&mut self, execution: &Value) -> Result<Option<JobReport>, Error> {
        let job_id = execution
            .get("jobId")
            .and_then(Value::as_str)
            .ok_or("an execution without jobId")?
            .to_owned();
        let status = execution
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let document = execution
            .get("jobDocument")
            .map(Value::to_string)
            .unwrap_or_default();
        let mut report = JobReport {
            job_id: job_id.clone(),
            status: String::new(),
            reason: String::new(),
            reports: Vec::new(),
        };
        let job = match FirmwareJob::parse(&document) {
            Ok(job) => job,
            Err(e) => {
                // REJECTED is a device's answer only while QUEUED (J-05).
                let terminal = if status == "QUEUED" {
                    "REJECTED"
                } else {
                    "FAILED"
                };
                return self.finish(report, terminal, e.to_string()).await.map(Some);
            }
        };
        if status == "QUEUED" {
            match self.start_next().await? {
                Some(e) if e.get("jobId").and_then(Value::as_str) == Some(&job_id) => {
                    report.reports.push(Report {
                        status: "IN_PROGRESS".into(),
                        details: BTreeMap::new(),
                    });
                }
                _ => return Ok(None),
            }
        }
        match self.install(&job_id, &job, &mut report).await {
            Ok(seq) => {
                let report = self
                    .finish(report, "SUCCEEDED", format!("accepted {seq}"))
                    .await?;
                self.state.job = None;
                self.save()?;
                Ok(Some(report))
            }
            Err(Failure::Job(reason)) => {
                self.abandon()?;
                self.finish(report, "FAILED", reason).await.map(Some)
            }
            Err(Failure::Fatal(e)) => Err(e),
        }
    }

    /// Reports the terminal `status` with `reason` and `updatedBy`.
    async fn finish(
        &mut self,
        mut report: JobReport,
        status: &str,
        reason: String,
    ) -> Result<JobReport, Error> {
        let reason = detail_value(&reason);
        let by = self.state.installed_sequence().to_string();
        self.update(
            &mut report,
            status,
            &[(status::REASON, reason.clone()), (status::UPDATED_BY, by)],
        )
        .await?;
        report.status = status.to_owned();
        report.reason = reason;
        Ok(report)
    }

    /// Puts the update machine back at rest after a refused update; the active slot stays.
    fn abandon(&mut self) -> Result<(), Error> {
        if matches!(
            self.state.update.phase,
            Phase::Downloading { .. } | Phase::Verified { .. }
        ) {
            let mut machine = UpdateMachine::new(self.state.update.clone(), self.identity());
            machine.abort()?;
            self.state.update = machine.state().clone();
        }
        self.state.job = None;
        self.save()
    }

    /// Verifies, downloads, installs, "reboots", self-tests and commits; the new sequence.
    async fn install(
        &mut self,
        job_id: &str,
        job: &FirmwareJob,
        report: &mut JobReport,
    ) -> Result<u64, Failure> {
        let ImageLocation::MqttStream {
            stream_id,
            file_id,
            size,
        } = &job.image
        else {
            return Err(Failure::Job("unsupported image location".into()));
        };
        // Authenticate first; nothing of the document is used before.
        let now = unix_now();
        let verified = Verifier::new(self.options.trust.clone()).verify_at(&job.envelope, now)?;
        verified.check_sequence(self.state.installed_sequence())?;
        verified.check_identity(&self.options.vendor_id, &self.options.class_id)?;
        let requirement = verified.image_requirement(self.options.max_image_size)?;
        if *size != requirement.size {
            return Err(Failure::Job(format!(
                "the job document's image size {size} is not the manifest's {}",
                requirement.size
            )));
        }
        let target = self.state.update.active_slot.other();
        let path = self.slot_path(target);
        let mut machine = UpdateMachine::new(self.state.update.clone(), self.identity());
        let resumable = match (&self.state.job, &self.state.update.phase) {
            (Some(p), Phase::Downloading { checkpoint })
                if p.job_id == job_id && checkpoint.requirement == requirement =>
            {
                p.download.clone()
            }
            _ => None,
        };
        let (mut verifier, download) = match resumable {
            Some(cp) => {
                // The slot holds the delivered prefix (perhaps more, if the agent stopped
                // between writing blocks and saving the checkpoint): cut it to the checkpoint.
                let prefix = (cp.delivered * u64::from(cp.block_size)).min(cp.size);
                let file = OpenOptions::new().write(true).open(&path)?;
                file.set_len(prefix)?;
                let verifier = machine.resume(File::open(&path)?.take(prefix))?;
                tracing::info!(job = job_id, bytes = prefix, "resuming the download");
                (verifier, Download::resume(cp)?)
            }
            None => {
                if !matches!(
                    machine.state().phase,
                    Phase::Idle | Phase::Committed { .. } | Phase::RolledBack { .. }
                ) {
                    machine.abort()?;
                }
                let verifier = machine.begin_at(&verified, now)?;
                File::create(&path)?.sync_all()?;
                (
                    verifier,
                    Download::new(*file_id, requirement.size, BLOCK_SIZE)?,
                )
            }
        };
        let mut download = download.with_max_blocks_per_request(BLOCKS_PER_REQUEST);
        self.state.update = machine.state().clone();
        self.state.job = Some(PendingJob {
            job_id: job_id.to_owned(),
            download: Some(download.checkpoint().clone()),
        });
        self.save()?;

        self.fetch(
            stream_id,
            &path,
            &mut machine,
            &mut verifier,
            &mut download,
            report,
        )
        .await?;
        let image = verifier.finish()?;
        machine.downloaded(&image)?;
        let slot = machine.installed()?;
        self.state.update = machine.state().clone();
        if let Some(p) = &mut self.state.job {
            p.download = None;
        }
        self.save()?;
        let running = self.state.installed_sequence().to_string();
        self.update(
            report,
            "IN_PROGRESS",
            &[
                (status::SELF_TEST, "ready".into()),
                (status::UPDATED_BY, running),
            ],
        )
        .await?;

        self.reboot().await?;
        let booted = machine.boot();
        self.state.update = machine.state().clone();
        self.save()?;
        if booted != BootDecision::Trial(slot) {
            return Err(Failure::Job(format!(
                "the bootloader did not try the new image: {booted:?}"
            )));
        }
        if let Err(e) = self_test(&self.slot_path(slot), &requirement) {
            machine.health_failed()?;
            self.state.update = machine.state().clone();
            self.save()?;
            return Err(Failure::Job(format!("self-test failed: {e}")));
        }
        self.update(
            report,
            "IN_PROGRESS",
            &[
                (status::SELF_TEST, "active".into()),
                (status::UPDATED_BY, requirement.sequence_number.to_string()),
            ],
        )
        .await?;
        machine.confirm()?;
        self.state.update = machine.state().clone();
        self.save()?;
        Ok(requirement.sequence_number)
    }

    /// Fetches the rest of the image over stream `stream_id` into the slot at `path`.
    async fn fetch(
        &mut self,
        stream_id: &str,
        path: &Path,
        machine: &mut UpdateMachine,
        verifier: &mut ImageVerifier,
        download: &mut Download,
        report: &mut JobReport,
    ) -> Result<(), Failure> {
        let thing = self.options.thing.clone();
        let data = stream_topic(&thing, stream_id, "data", Encoding::Json);
        let rejected = stream_topic(&thing, stream_id, "rejected", Encoding::Json);
        self.subscribe_to(&[data.clone(), rejected.clone()]).await?;
        let mut slot = OpenOptions::new().append(true).open(path)?;
        let mut stalls = 0;
        while let Some(request) = download.next_request() {
            let before = download.checkpoint().delivered;
            self.client()?
                .publish(
                    &request.topic(&thing, stream_id, Encoding::Json),
                    request.encode(Encoding::Json),
                    QoS::AtLeastOnce,
                    false,
                )
                .await?;
            let deadline = tokio::time::Instant::now() + self.options.timeout;
            let mut answered = 0;
            while answered < request.number_of_blocks {
                let Some((topic, payload)) = self.next_message(deadline).await? else {
                    break;
                };
                if topic != data && topic != rejected {
                    continue;
                }
                answered += 1;
                let mut bytes = Vec::new();
                download.accept_message(&topic, &payload, |chunk| {
                    verifier.update(chunk)?;
                    bytes.extend_from_slice(chunk);
                    Ok(())
                })?;
                slot.write_all(&bytes)?;
            }
            slot.sync_data()?;
            machine.progress(verifier)?;
            self.state.update = machine.state().clone();
            if let Some(p) = &mut self.state.job {
                p.download = Some(download.checkpoint().clone());
            }
            self.save()?;
            if let Some(n) = self.options.power_cut_after_blocks
                && download.checkpoint().delivered >= n
                && !download.is_complete()
            {
                self.client = None; // the socket just closes
                return Err(Failure::Fatal(
                    format!(
                        "simulated power cut after {} blocks",
                        download.checkpoint().delivered
                    )
                    .into(),
                ));
            }
            if download.checkpoint().delivered == before {
                stalls += 1;
                if stalls >= MAX_STALLS {
                    return Err(Failure::Job(format!(
                        "stream {stream_id}: no blocks after {MAX_STALLS} requests"
                    )));
                }
                continue;
            }
            stalls = 0;
            let running = self.state.installed_sequence().to_string();
            self.update(
                report,
                "IN_PROGRESS",
                &[
                    (status::RECEIVE, download.status_receive()),
                    (status::UPDATED_BY, running),
                ],
            )
            .await?;
        }
        Ok(())
    }

    /// The simulated reboot: drop the connection, wait, connect and subscribe again.
    async fn reboot(&mut self) -> Result<(), Error> {
        if let Some(client) = self.client.take() {
            client.disconnect().await?;
        }
        tokio::time::sleep(self.options.reboot_delay).await;
        self.client = Some(connect(&self.options, &self.tls).await?);
        self.subscribe().await
    }

    /// After a restart: an installed image not yet confirmed boots on trial and is
    /// self-tested; a committed or rolled-back update whose job was not answered is answered.
    async fn recover(&mut self) -> Result<(), Error> {
        let Some(pending) = self.state.job.clone() else {
            return Ok(());
        };
        let mut machine = UpdateMachine::new(self.state.update.clone(), self.identity());
        if let Phase::Installed { target, .. } = &self.state.update.phase {
            let target: ImageRequirement = target.clone();
            let booted = machine.boot();
            if let BootDecision::Trial(slot) = booted {
                match self_test(&self.slot_path(slot), &target) {
                    Ok(()) => machine.confirm()?,
                    Err(_) => {
                        machine.health_failed()?;
                    }
                }
            }
            self.state.update = machine.state().clone();
            self.save()?;
        }
        let mut report = JobReport {
            job_id: pending.job_id.clone(),
            status: String::new(),
            reason: String::new(),
            reports: Vec::new(),
        };
        let answer = match self.state.update.phase.clone() {
            Phase::Committed { sequence_number } => {
                Some(("SUCCEEDED", format!("accepted {sequence_number}")))
            }
            Phase::RolledBack { sequence_number } => Some((
                "FAILED",
                format!("sequence {sequence_number} failed its trial boot and was rolled back"),
            )),
            // Downloading: resumed when the job comes back from `$next/get`.
            _ => None,
        };
        if let Some((status, reason)) = answer {
            match self.finish(report.clone(), status, reason).await {
                Ok(r) => report = r,
                Err(e) => tracing::warn!(%e, job = pending.job_id, "could not answer the job"),
            }
            if !report.status.is_empty() {
                self.outcome_jobs.push(report);
            }
            self.state.job = None;
            self.save()?;
        }
        Ok(())
    }
}

/// Hashes the image in the slot at `path` against `requirement` again.
fn self_test(path: &Path, requirement: &ImageRequirement) -> Result<(), Error> {
    let mut verifier = ImageVerifier::new(requirement.clone());
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        verifier.update(&buf[..n])?;
    }
    verifier.finish()?;
    Ok(())
}
