//! Firmware over the air end to end (issue #17): the device agent of `examples/device_agent.rs`
//! (`examples/support/agent.rs`) against the broker in process, serving AWS IoT Jobs on a
//! memory-backed engine, MQTT file delivery from a stream catalog and device shadows. Each
//! test signs a SUIT envelope, puts the image in the catalog, creates the job on the engine
//! (publishing its notifications through the broker, as `JobsService::drive` does) and runs the
//! agent until nothing is pending; then it reads the execution from the engine and the agent's
//! state from its state directory. Certificates, registry and policies are made in process.

#[path = "../examples/support/agent.rs"]
mod agent;
#[path = "../examples/support/client.rs"]
mod client;
#[path = "../examples/support/fleet.rs"]
mod fleet;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use fleet::{Device, Fleet};
use thingkit::broker::{
    Broker, BrokerHandle, JobsService, ServerIdentity, ShadowService, SharedJobs, StreamService,
};
use thingkit::firmware::stream::{StreamCatalog, StreamSource};
use thingkit::firmware::{
    EnvelopeBuilder, KeyType, ManifestBuilder, SigningKey, Slot, TrustAnchors, Uuid,
};
use thingkit::jobs::ota::{FirmwareJob, ImageLocation};
use thingkit::jobs::{ExecutionStatus, Job, JobId, JobStore, Jobs, Limits, MemoryJobStore};
use thingkit::mqtt::{PacketProperties, QoS, TopicName};
use thingkit::provision::PolicyTarget;

/// The device may use its own `$aws/things/{thing}/...` topics (jobs, streams, shadow).
const AGENT_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": "arn:aws:iot:eu-central-1:123456789012:topic/$aws/things/${iot:Connection.Thing.ThingName}/*"},
    {"Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": "arn:aws:iot:eu-central-1:123456789012:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/*"}
  ]
}"#;

struct Ota {
    fleet: Fleet,
    device: Device,
    broker: BrokerHandle,
    jobs: SharedJobs,
    catalog: Arc<RwLock<StreamCatalog>>,
    key: SigningKey,
    dir: tempfile::TempDir,
    clock: tokio::task::JoinHandle<()>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn demo_ids() -> (Uuid, Uuid) {
    (
        agent::DEMO_VENDOR.parse().expect("uuid"),
        agent::DEMO_CLASS.parse().expect("uuid"),
    )
}

/// A 10-block image (with 4 KiB blocks: two GetStream rounds of 8 and 2 blocks).
fn image(seed: u8) -> Vec<u8> {
    (0..40_000u32)
        .map(|i| (i % 251) as u8 ^ seed)
        .collect::<Vec<u8>>()
}

impl Ota {
    async fn start() -> Ota {
        let fleet = Fleet::new().expect("fleet");
        let device = fleet.add_device("pump-7", &[]).expect("device");
        {
            let mut registry = fleet.registry.write().unwrap_or_else(|p| p.into_inner());
            registry
                .create_policy("agent", AGENT_POLICY, std::time::SystemTime::now())
                .expect("policy");
            registry
                .attach_policy("agent", &PolicyTarget::Certificate(device.certificate_id))
                .expect("attach");
        }
        let jobs: SharedJobs = Arc::new(Mutex::new(Jobs::new(
            Box::new(MemoryJobStore::new()) as Box<dyn JobStore>,
            Limits::default(),
        )));
        let catalog = Arc::new(RwLock::new(StreamCatalog::default()));
        let shadows: Arc<dyn thingkit::broker::TopicService> = Arc::new(ShadowService::new(
            thingkit::shadow::MemoryShadowStore::new(),
            thingkit::shadow::Limits::default(),
        ));
        let broker = Broker::builder(
            fleet.registry.clone(),
            ServerIdentity::from_pem(fleet.server_chain_pem.clone(), fleet.server_key_pem.clone()),
        )
        .service(Arc::new(JobsService::new(jobs.clone())))
        .service(Arc::new(StreamService::with_catalog(catalog.clone())))
        .service(shadows)
        .bind("127.0.0.1:0".parse().expect("loopback literal"))
        .await
        .expect("broker starts");
        let clock = tokio::spawn(JobsService::drive(jobs.clone(), broker.publisher()));
        Ota {
            fleet,
            device,
            broker,
            jobs,
            catalog,
            key: SigningKey::generate(KeyType::P256).expect("key"),
            dir: tempfile::tempdir().expect("temp dir"),
            clock,
        }
    }

    fn envelope(&self, sequence: u64, image: &[u8]) -> Vec<u8> {
        let (vendor, class) = demo_ids();
        let manifest = ManifestBuilder::new(sequence)
            .vendor_id(vendor)
            .class_id(class)
            .image(image)
            .expires(now() + 3600)
            .build()
            .expect("manifest");
        EnvelopeBuilder::new(manifest)
            .sign(&[&self.key])
            .expect("sign")
    }

    /// Creates job `job_id` for the device and publishes the engine's notifications.
    async fn create_job(&self, job_id: &str, document: &str) {
        let thing = self.device.thing.clone();
        let job = Job::new(
            JobId::new(job_id).expect("job id"),
            document,
            vec![thing.clone()],
            now(),
        );
        let notes = {
            let mut engine = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            engine.create_job(job, &[thing], now()).expect("create job")
        };
        let publisher = self.broker.publisher();
        for n in notes {
            publisher
                .publish(
                    TopicName::new(&n.topic).expect("topic"),
                    n.payload.into(),
                    QoS::AtLeastOnce,
                    false,
                    PacketProperties::default(),
                )
                .await
                .expect("notification");
        }
    }

    /// Serves `image` as stream `stream_id` file 0 and creates a firmware job for `envelope`.
    async fn create_firmware_job(&self, job_id: &str, envelope: Vec<u8>, image: Vec<u8>) {
        let size = image.len() as u64;
        self.catalog
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job_id, StreamSource::new(1, "firmware").with_file(0, image));
        let document = FirmwareJob {
            envelope,
            image: ImageLocation::MqttStream {
                stream_id: job_id.into(),
                file_id: 0,
                size,
            },
        }
        .to_document();
        self.create_job(job_id, &document).await;
    }

    fn options(&self) -> agent::Options {
        let mut o = agent::Options::new(
            self.broker.local_addr(),
            &self.device.thing,
            TrustAnchors::single(self.key.public_key().clone()),
            self.dir.path(),
        );
        o.ca_pem = self.fleet.ca_pem();
        o.cert_pem = self.device.cert_pem.clone();
        o.key_pem = self.device.key_pem.clone();
        o.initial_sequence = 1;
        o.exit_when_idle = true;
        o.timeout = Duration::from_secs(5);
        o
    }

    async fn run_agent(&self) -> agent::Outcome {
        tokio::time::timeout(Duration::from_secs(60), agent::run(self.options()))
            .await
            .expect("the agent finishes within a minute")
            .expect("the agent runs")
    }

    fn execution(&self, job_id: &str) -> thingkit::jobs::JobExecution {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .describe_execution(&JobId::new(job_id).expect("job id"), &self.device.thing)
            .expect("execution")
    }

    async fn stop(self) {
        self.clock.abort();
        self.broker.shutdown(Duration::from_secs(1)).await;
    }
}

fn details_of(report: &agent::JobReport, key: &str) -> Vec<String> {
    report
        .reports
        .iter()
        .filter_map(|r| r.details.get(key).cloned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_image_is_installed_into_slot_b_and_committed() {
    let ota = Ota::start().await;
    let fw = image(0);
    ota.create_firmware_job("fw-2", ota.envelope(2, &fw), fw.clone())
        .await;
    let outcome = ota.run_agent().await;

    assert_eq!(outcome.jobs.len(), 1, "{:?}", outcome.jobs);
    let job = &outcome.jobs[0];
    assert_eq!(
        (job.status.as_str(), job.reason.as_str()),
        ("SUCCEEDED", "accepted 2")
    );
    assert_eq!(details_of(job, "receive"), ["8/10", "10/10"]);
    assert_eq!(details_of(job, "self_test"), ["ready", "active"]);
    let statuses: Vec<&str> = job.reports.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(
        statuses,
        [
            "IN_PROGRESS",
            "IN_PROGRESS",
            "IN_PROGRESS",
            "IN_PROGRESS",
            "IN_PROGRESS",
            "SUCCEEDED"
        ]
    );

    let execution = ota.execution("fw-2");
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    assert_eq!(execution.status_details["reason"], "accepted 2");
    assert_eq!(execution.status_details["updatedBy"], "2");

    // The state on disk: slot b active, floor 2; the slot holds the image.
    let state = agent::load_state(ota.dir.path())
        .expect("state readable")
        .expect("state written");
    assert_eq!(state.update.active_slot, Slot::B);
    assert_eq!(state.installed_sequence(), 2);
    assert_eq!(state.job, None);
    assert_eq!(state, outcome.state);
    assert_eq!(
        std::fs::read(agent::slot_path(ota.dir.path(), Slot::B)).expect("slot b"),
        fw
    );
    // The shadow holds the new firmware.
    assert_eq!(
        outcome.shadow_reports.last().expect("a shadow report")["state"]["reported"]["firmware"],
        serde_json::json!({"sequence": 2, "slot": "b"})
    );
    ota.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_image_fails_on_its_digest_and_the_slot_stays() {
    let ota = Ota::start().await;
    let fw = image(1);
    let envelope = ota.envelope(2, &fw);
    let mut tampered = fw.clone();
    tampered[20_000] ^= 0x01;
    ota.create_firmware_job("fw-2-tampered", envelope, tampered)
        .await;
    let outcome = ota.run_agent().await;

    let job = &outcome.jobs[0];
    assert_eq!(job.status, "FAILED");
    assert!(job.reason.contains("digest"), "{}", job.reason);
    // The whole image came in before the digest could be checked; nothing was installed.
    assert_eq!(
        details_of(job, "receive").last().map(String::as_str),
        Some("10/10")
    );
    assert!(details_of(job, "self_test").is_empty());
    let execution = ota.execution("fw-2-tampered");
    assert_eq!(execution.status, ExecutionStatus::Failed);
    assert!(execution.status_details["reason"].contains("digest"));
    assert_eq!(execution.status_details["updatedBy"], "1");
    assert_eq!(outcome.state.update.active_slot, Slot::A);
    assert_eq!(outcome.state.installed_sequence(), 1);
    assert_eq!(
        outcome.shadow_reports.last().expect("a shadow report")["state"]["reported"]["firmware"],
        serde_json::json!({"sequence": 1, "slot": "a"})
    );
    ota.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_fails_before_anything_is_downloaded() {
    let ota = Ota::start().await;
    let fw = image(2);
    ota.create_firmware_job("fw-1-again", ota.envelope(1, &fw), fw)
        .await;
    let outcome = ota.run_agent().await;

    let job = &outcome.jobs[0];
    assert_eq!(job.status, "FAILED");
    assert!(job.reason.contains("rollback"), "{}", job.reason);
    assert!(details_of(job, "receive").is_empty(), "{:?}", job.reports);
    assert!(!agent::slot_path(ota.dir.path(), Slot::B).exists());
    assert_eq!(ota.execution("fw-1-again").status, ExecutionStatus::Failed);
    assert_eq!(outcome.state.update.active_slot, Slot::A);
    assert_eq!(outcome.state.installed_sequence(), 1);
    ota.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_is_not_a_firmware_update_is_rejected() {
    let ota = Ota::start().await;
    ota.create_job("reboot-1", r#"{"operation":"reboot"}"#)
        .await;
    let outcome = ota.run_agent().await;

    let job = &outcome.jobs[0];
    assert_eq!(job.status, "REJECTED");
    assert!(job.reason.contains("not a firmware job"), "{}", job.reason);
    let execution = ota.execution("reboot-1");
    assert_eq!(execution.status, ExecutionStatus::Rejected);
    assert!(execution.status_details["reason"].contains("reboot"));
    ota.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_cut_by_a_power_loss_resumes_from_its_checkpoint() {
    let ota = Ota::start().await;
    let fw = image(3);
    ota.create_firmware_job("fw-2-resumed", ota.envelope(2, &fw), fw.clone())
        .await;
    let mut options = ota.options();
    options.power_cut_after_blocks = Some(8);
    let cut = tokio::time::timeout(Duration::from_secs(60), agent::run(options))
        .await
        .expect("the agent stops within a minute")
        .expect_err("the power cut stops the agent");
    assert!(cut.to_string().contains("power cut"), "{cut}");
    let state = agent::load_state(ota.dir.path())
        .expect("state readable")
        .expect("state written");
    let pending = state.job.expect("the job is remembered");
    assert_eq!(pending.job_id, "fw-2-resumed");
    assert_eq!(pending.download.expect("a checkpoint").delivered, 8);

    // Back on: the execution is IN_PROGRESS, the agent asks only for the last two blocks.
    let outcome = ota.run_agent().await;
    let job = &outcome.jobs[0];
    assert_eq!(
        (job.status.as_str(), job.reason.as_str()),
        ("SUCCEEDED", "accepted 2")
    );
    assert_eq!(details_of(job, "receive"), ["10/10"]);
    assert_eq!(details_of(job, "self_test"), ["ready", "active"]);
    assert_eq!(outcome.state.update.active_slot, Slot::B);
    assert_eq!(
        std::fs::read(agent::slot_path(ota.dir.path(), Slot::B)).expect("slot b"),
        fw
    );
    ota.stop().await;
}

/// Anyone may watch another thing's jobs topics (the watcher's policy allows it).
const WATCHER_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["iot:Receive"],
     "Resource": "arn:aws:iot:eu-central-1:123456789012:topic/$aws/things/*"},
    {"Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": "arn:aws:iot:eu-central-1:123456789012:topicfilter/$aws/things/*"}
  ]
}"#;

/// A received PUBLISH's topic (this client never uses topic aliases).
fn topic_of(p: &thingkit::mqtt::Publish) -> String {
    p.topic
        .as_ref()
        .map(|t| t.as_str().to_owned())
        .unwrap_or_default()
}

/// As on AWS, a jobs request's answer (`.../accepted`) reaches the requesting client only —
/// even one that never subscribed to it — while `/notify-next` reaches every subscriber allowed
/// to receive it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_answers_reach_the_requester_only_and_notifications_every_subscriber() {
    let ota = Ota::start().await;
    let watcher = ota.fleet.add_device("watcher", &[]).expect("device");
    {
        let mut registry = ota
            .fleet
            .registry
            .write()
            .unwrap_or_else(|p| p.into_inner());
        registry
            .create_policy("watcher", WATCHER_POLICY, std::time::SystemTime::now())
            .expect("policy");
        registry
            .attach_policy(
                "watcher",
                &PolicyTarget::Certificate(watcher.certificate_id),
            )
            .expect("attach");
    }
    let connect = |d: &Device| {
        let tls = client::tls_config(&ota.fleet.ca_pem(), &d.cert_pem, &d.key_pem).expect("tls");
        let addr = ota.broker.local_addr();
        let options = client::Options::new(&d.thing);
        async move {
            let c = client::Client::connect(addr, "localhost", tls, &options)
                .await
                .expect("connects");
            assert!(client::accepted(&c.connack), "{:?}", c.connack);
            c
        }
    };
    let mut watching = connect(&watcher).await;
    watching
        .subscribe(&[("$aws/things/pump-7/jobs/#", QoS::AtLeastOnce)])
        .await
        .expect("subscribe");
    let mut device = connect(&ota.device).await;

    ota.create_job("reboot-1", r#"{"operation":"reboot"}"#)
        .await;
    let seen = tokio::time::timeout(Duration::from_secs(5), watching.next_publish())
        .await
        .expect("the watcher hears of the job")
        .expect("read")
        .expect("a publish");
    let topic = topic_of(&seen);
    assert!(
        topic.starts_with("$aws/things/pump-7/jobs/notify"),
        "{topic}"
    );

    // The device asks without subscribing to the answer, and gets it.
    device
        .publish(
            "$aws/things/pump-7/jobs/get",
            &br#"{"clientToken":"mine"}"#[..],
            QoS::AtLeastOnce,
            false,
        )
        .await
        .expect("publish");
    let answer = tokio::time::timeout(Duration::from_secs(5), device.next_publish())
        .await
        .expect("answered")
        .expect("read")
        .expect("a publish");
    assert_eq!(topic_of(&answer), "$aws/things/pump-7/jobs/get/accepted");
    assert!(String::from_utf8_lossy(&answer.payload).contains("\"clientToken\":\"mine\""));

    // The watcher, subscribed to everything under the thing's jobs, never sees that answer.
    loop {
        match tokio::time::timeout(Duration::from_millis(500), watching.next_publish()).await {
            Err(_) => break,
            Ok(p) => {
                let p = p.expect("read").expect("a publish");
                let topic = topic_of(&p);
                assert!(
                    !topic.ends_with("/accepted"),
                    "an answer leaked to another client: {topic}"
                );
            }
        }
    }
    ota.stop().await;
}
