//! Interop with MQTT implementations nobody on the team wrote: `mosquitto_pub`/`mosquitto_sub`
//! (MQTT 3.1.1 and 5.0), `mosquitto_rr` (fleet provisioning by claim) and paho-mqtt (Python)
//! against the thingkit broker, and our
//! thingkit-mqtt client against the Debian `mosquitto` broker. Everything runs on loopback with
//! certificates made by thingkit-provision in a temp dir, and every wait is bounded.
//!
//! These need `mosquitto`, `mosquitto-clients` and the PyPI `paho-mqtt` package, so they are
//! ignored by `cargo test`; `.ci/run` installs the peers and runs them with
//! `cargo test --test interop -- --ignored`, where a missing peer FAILS the test.

#[path = "../examples/support/client.rs"]
mod client;
#[path = "../examples/support/fleet.rs"]
mod fleet;
#[path = "../examples/support/mosquitto.rs"]
mod mosquitto;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use client::{Client, Options, accepted, tls_config};
use fleet::{Device, Fleet};
use mosquitto::{FLEET_ACL, Mosquitto};
use thingkit::broker::{Broker, BrokerConfig, BrokerHandle, ServerIdentity};
use thingkit::mqtt::{ProtocolVersion, QoS, ReasonCode};
use thingkit::provision::CertificateStatus;

/// Runs a command to completion, killing it after `timeout`; a missing binary is an error.
async fn run(mut cmd: Command, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what} (is the peer installed?): {e}"));
        let deadline = Instant::now() + timeout;
        while child.try_wait().expect("try_wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("collect output")
    })
    .await
    .expect("blocking task")
}

struct Setup {
    fleet: Fleet,
    dir: tempfile::TempDir,
    a: Device,
    b: Device,
    ca: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let fleet = Fleet::new().expect("fleet");
        let dir = tempfile::tempdir().expect("temp dir");
        let a = fleet.add_device("sensor-a", &[]).expect("device a");
        let b = fleet.add_device("sensor-b", &[]).expect("device b");
        a.write(dir.path()).expect("write a");
        b.write(dir.path()).expect("write b");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, fleet.ca_pem()).expect("write CA");
        Setup {
            fleet,
            dir,
            a,
            b,
            ca,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    async fn broker(&self) -> BrokerHandle {
        Broker::builder(
            self.fleet.registry.clone(),
            ServerIdentity::from_pem(
                self.fleet.server_chain_pem.clone(),
                self.fleet.server_key_pem.clone(),
            ),
        )
        .config(BrokerConfig::default())
        .bind("127.0.0.1:0".parse().expect("loopback"))
        .await
        .expect("broker starts")
    }

    /// `mosquitto_pub`/`mosquitto_sub` with TLS flags for `device`.
    fn mosquitto_cmd(&self, program: &str, port: u16, device: &Device, version: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", version])
            .arg("--cafile")
            .arg(&self.ca)
            .arg("--cert")
            .arg(self.path().join(format!("{}.pem", device.thing)))
            .arg("--key")
            .arg(self.path().join(format!("{}.key", device.thing)))
            .args(["-i", &device.thing]);
        cmd
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs mosquitto, mosquitto-clients, paho-mqtt; run by .ci/run"]
async fn mosquitto_clients_publish_and_receive_through_the_broker_in_both_versions() {
    let s = Setup::new();
    let broker = s.broker().await;
    let port = broker.local_addr().port();
    for version in ["mqttv311", "mqttv5"] {
        let mut sub = s.mosquitto_cmd("mosquitto_sub", port, &s.b, version);
        sub.args([
            "-t",
            "telemetry/sensor-a/temperature",
            "-q",
            "1",
            "-C",
            "1",
            "-W",
            "15",
        ]);
        let sub = tokio::spawn(run(sub, Duration::from_secs(20)));
        // Publish until the subscriber has what it waits for (its SUBSCRIBE races the first
        // PUBLISH), at most 50 times.
        let mut published = 0;
        while !sub.is_finished() && published < 50 {
            let mut publ = s.mosquitto_cmd("mosquitto_pub", port, &s.a, version);
            publ.args([
                "-t",
                "telemetry/sensor-a/temperature",
                "-q",
                "1",
                "-m",
                "21.5",
            ]);
            let out = run(publ, Duration::from_secs(10)).await;
            assert!(
                out.status.success(),
                "{version} mosquitto_pub: {}",
                text(&out)
            );
            published += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let out = sub.await.expect("subscriber task");
        assert!(
            out.status.success(),
            "{version} mosquitto_sub: {}",
            text(&out)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "21.5",
            "{version}"
        );
    }
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs mosquitto, mosquitto-clients, paho-mqtt; run by .ci/run"]
async fn mosquitto_clients_are_refused_a_policy_denied_topic() {
    let s = Setup::new();
    let broker = s.broker().await;
    let port = broker.local_addr().port();
    for version in ["mqttv311", "mqttv5"] {
        // SUBSCRIBE to a filter the policy does not grant: SUBACK failure, mosquitto_sub gives up.
        let mut sub = s.mosquitto_cmd("mosquitto_sub", port, &s.a, version);
        sub.args(["-t", "commands/#", "-C", "1", "-W", "5"]);
        let out = run(sub, Duration::from_secs(10)).await;
        // mosquitto_sub 2.0 reports the SUBACK failure and exits (with status 0).
        assert!(out.stdout.is_empty(), "{version}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("All subscription requests were denied"),
            "{version}: {}",
            text(&out)
        );
    }
    // PUBLISH to an explicitly denied topic: MQTT 5 gets PUBACK 0x87 (mosquitto_pub reports it),
    // MQTT 3.1.1 is disconnected. Either way nothing reaches a subscriber.
    let mut publ = s.mosquitto_cmd("mosquitto_pub", port, &s.a, "mqttv5");
    publ.args(["-t", "commands/sensor-a/reboot", "-q", "1", "-m", "now"]);
    let out = run(publ, Duration::from_secs(10)).await;
    let all = text(&out);
    assert!(
        all.contains("Not authorized") || all.contains("not authorised"),
        "{all}"
    );
    assert!(broker.stats().denied >= 3);
    assert_eq!(broker.stats().deliveries, 0);
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs mosquitto, mosquitto-clients, paho-mqtt; run by .ci/run"]
async fn a_revoked_certificate_cannot_connect_with_mosquitto_pub() {
    let s = Setup::new();
    s.fleet
        .set_status(&s.a.certificate_id, CertificateStatus::Revoked)
        .expect("revoke");
    let broker = s.broker().await;
    let port = broker.local_addr().port();
    for version in ["mqttv311", "mqttv5"] {
        let mut publ = s.mosquitto_cmd("mosquitto_pub", port, &s.a, version);
        publ.args(["-t", "telemetry/sensor-a/temperature", "-m", "1"]);
        let out = run(publ, Duration::from_secs(10)).await;
        assert!(!out.status.success(), "{version}: {}", text(&out));
        let all = text(&out).to_lowercase();
        assert!(all.contains("not authori"), "{version}: {all}");
    }
    assert_eq!(broker.stats().connects_accepted, 0);
    assert_eq!(broker.stats().connects_refused, 2);
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs mosquitto, mosquitto-clients, paho-mqtt; run by .ci/run"]
async fn paho_python_exercises_qos1_retained_and_will_in_both_versions() {
    let s = Setup::new();
    let broker = s.broker().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/paho_client.py");
    for protocol in ["3.1.1", "5"] {
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .arg("127.0.0.1")
            .arg(broker.local_addr().port().to_string())
            .arg(&s.ca)
            .arg(s.path())
            .arg(protocol);
        let out = run(cmd, Duration::from_secs(60)).await;
        assert!(out.status.success(), "paho {protocol}: {}", text(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("paho ok"));
    }
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs mosquitto, mosquitto-clients, paho-mqtt; run by .ci/run"]
async fn our_client_talks_to_a_real_mosquitto_broker_over_mtls() {
    let s = Setup::new();
    let mosquitto = Mosquitto::start(
        &s.path().join("mosquitto"),
        &s.fleet.ca_pem(),
        &s.fleet.server_chain_pem,
        &s.fleet.server_key_pem,
        FLEET_ACL,
    )
    .expect("mosquitto starts (apt-get install mosquitto)");
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let connect = |d: &Device| {
            let tls = tls_config(&s.fleet.ca_pem(), &d.cert_pem, &d.key_pem).expect("tls");
            let options = Options {
                version,
                ..Options::new(&d.thing)
            };
            async move {
                Client::connect(mosquitto.addr, "localhost", tls, &options)
                    .await
                    .expect("connect")
            }
        };
        let mut sub = connect(&s.b).await;
        assert!(accepted(&sub.connack), "{version}: {:?}", sub.connack);
        let codes = sub
            .subscribe(&[("telemetry/#", QoS::AtLeastOnce)])
            .await
            .expect("subscribe");
        assert_eq!(codes, vec![ReasonCode(1)], "{version}");
        let mut publ = connect(&s.a).await;
        let code = publ
            .publish(
                "telemetry/sensor-a/temperature",
                "24.0",
                QoS::AtLeastOnce,
                false,
            )
            .await
            .expect("publish");
        assert!(code.is_some_and(|c| c.is_success()), "{version}: {code:?}");
        let m = sub.next_publish().await.expect("receive").expect("message");
        assert_eq!(&m.payload[..], b"24.0");
        assert_eq!(m.qos, QoS::AtLeastOnce);
        assert_eq!(
            m.topic.as_ref().map(|t| t.as_str()),
            Some("telemetry/sensor-a/temperature")
        );
        publ.disconnect().await.expect("disconnect");
        sub.disconnect().await.expect("disconnect");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs mosquitto, mosquitto-clients, paho-mqtt; run by .ci/run"]
async fn mosquitto_rr_provisions_a_device_with_a_claim_certificate() {
    let s = Setup::new();
    let (service, claim) = s.fleet.enable_provisioning().expect("fleet provisioning");
    claim.write(s.path()).expect("write claim");
    let broker = Broker::builder(
        s.fleet.registry.clone(),
        ServerIdentity::from_pem(
            s.fleet.server_chain_pem.clone(),
            s.fleet.server_key_pem.clone(),
        ),
    )
    .config(BrokerConfig::default().with_fleet(Some(service)))
    .bind("127.0.0.1:0".parse().expect("loopback"))
    .await
    .expect("broker starts");
    let port = broker.local_addr().port();
    // mosquitto_rr subscribes to the reply topic, publishes the request and prints the reply.
    let request = |topic: &str, reply: &str, body: &str| {
        let mut rr = s.mosquitto_cmd("mosquitto_rr", port, &claim, "mqttv5");
        rr.args(["-t", topic, "-e", reply, "-m", body, "-W", "10", "-q", "1"]);
        rr
    };
    let out = run(
        request(
            "$aws/certificates/create/json",
            "$aws/certificates/create/json/accepted",
            "{}",
        ),
        Duration::from_secs(20),
    )
    .await;
    assert!(
        out.status.success(),
        "CreateKeysAndCertificate: {}",
        text(&out)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON reply");
    let token = created["certificateOwnershipToken"]
        .as_str()
        .expect("token");
    let body = serde_json::json!({
        "certificateOwnershipToken": token,
        "parameters": {"SerialNumber": "42"}
    })
    .to_string();
    let out = run(
        request(
            "$aws/provisioning-templates/sensor/provision/json",
            "$aws/provisioning-templates/sensor/provision/json/accepted",
            &body,
        ),
        Duration::from_secs(20),
    )
    .await;
    assert!(out.status.success(), "RegisterThing: {}", text(&out));
    let registered: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON reply");
    assert_eq!(registered["thingName"], "sensor-42");

    // The new certificate now publishes as sensor-42 with mosquitto_pub.
    let device = Device {
        thing: "sensor-42".into(),
        certificate_id: created["certificateId"]
            .as_str()
            .expect("id")
            .parse()
            .expect("certificate ID"),
        cert_pem: created["certificatePem"].as_str().expect("pem").into(),
        key_pem: created["privateKey"].as_str().expect("key").into(),
    };
    device.write(s.path()).expect("write device");
    let mut publ = s.mosquitto_cmd("mosquitto_pub", port, &device, "mqttv311");
    publ.args([
        "-t",
        "telemetry/sensor-42/temperature",
        "-q",
        "1",
        "-m",
        "20.5",
    ]);
    let out = run(publ, Duration::from_secs(10)).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(broker.stats().publishes_in, 3);
    broker.shutdown(Duration::from_secs(5)).await;
}
