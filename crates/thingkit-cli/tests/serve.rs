//! `thingkit serve --config DIR/thingkit.toml` as a real process: the walkthrough of
//! `thingkit init`, a device certificate, a policy and a `[[device]]`, then a graceful stop at
//! SIGTERM. The tests that need a peer — mosquitto-clients (the walkthrough, the kill -9 tests)
//! or the AWS IoT Device SDK v2 for Python (`awsiotsdk`, driving
//! `tests/interop/shadow_awsiotsdk.py`: device shadows, issue #16) — are ignored by `cargo test`;
//! `.ci/run` installs the peers and runs them with `-- --ignored` (a missing peer fails them).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

const POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect",
     "Resource": "arn:aws:iot:eu-central-1:123456789012:client/${iot:Connection.Thing.ThingName}"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": "arn:aws:iot:eu-central-1:123456789012:topic/dt/*"},
    {"Effect": "Allow", "Action": "iot:Publish",
     "Resource": "arn:aws:iot:eu-central-1:123456789012:topic/$aws/rules/readings/*"},
    {"Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": "arn:aws:iot:eu-central-1:123456789012:topicfilter/dt/*"}
  ]
}"#;

/// `thingkit init DIR`, two device certificates, a policy and a config that registers them and
/// listens on an ephemeral port.
fn walkthrough(dir: &Path) {
    fleet_dir(dir, &["sensor-1", "sensor-2"], POLICY);
}

#[test]
#[cfg(unix)]
fn serve_starts_from_an_init_directory_registers_devices_and_stops_at_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    walkthrough(dir.path());
    let server = Server::start(&dir.path().join("thingkit.toml"));
    std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("the listener accepts");
    // The health and metrics endpoint answers over plain HTTP.
    let health = http_get(&server.metrics, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let metrics = http_get(&server.metrics, "/metrics");
    assert!(metrics.contains("thingkit_connections 0"), "{metrics}");
    let status = server.terminate();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    // The registry persisted in data_dir (relative to the file), and a restart reuses it.
    assert!(dir.path().join("data/registry.redb").exists());
    let server = Server::start(&dir.path().join("thingkit.toml"));
    assert!(server.terminate().success());
}

#[test]
#[ignore = "needs mosquitto-clients; run by .ci/run with --ignored"]
#[cfg(unix)]
fn serve_runs_the_walkthrough_with_mosquitto_clients() {
    let dir = tempfile::tempdir().unwrap();
    walkthrough(dir.path());
    let server = Server::start(&dir.path().join("thingkit.toml"));
    let client =
        |program: &str, thing: &str| mosquitto(program, dir.path(), thing, server.port, "5");
    let sub = client("mosquitto_sub", "sensor-2")
        .args(["-t", "dt/#", "-q", "1", "-C", "1", "-W", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub is installed (apt install mosquitto-clients)");
    // Publish until the subscriber has what it waits for (its SUBSCRIBE races the publish).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut sub = sub;
    loop {
        let status = client("mosquitto_pub", "sensor-1")
            .args(["-t", "dt/sensor-1/temperature", "-q", "1", "-m", "21.5"])
            .status()
            .expect("mosquitto_pub is installed (apt install mosquitto-clients)");
        assert!(status.success(), "mosquitto_pub: {status:?}");
        if sub.try_wait().unwrap().is_some() || Instant::now() > deadline {
            break;
        }
        // AWS's default: one CONNECT per second per client ID ([limits] connects_per_second).
        std::thread::sleep(Duration::from_millis(1100));
    }
    let out = sub.wait_with_output().unwrap();
    assert!(out.status.success(), "mosquitto_sub: {:?}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "21.5");
    // A publish outside the policy is refused (MQTT 5: PUBACK 0x87, which mosquitto_pub
    // reports on stderr).
    std::thread::sleep(Duration::from_millis(1100));
    let denied = client("mosquitto_pub", "sensor-1")
        .args(["-t", "secret/x", "-q", "1", "-m", "x"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&denied.stderr).to_lowercase();
    assert!(
        said.contains("not authorized"),
        "mosquitto_pub said: {said}"
    );
    assert!(server.terminate().success());
}

/// `[[rules]]` in thingkit.toml run in the server: a published reading lands in the rule's
/// JSON lines and Parquet sinks under data_dir, and SIGTERM closes the Parquet file (footer
/// written, `.inprogress` renamed) before the process exits.
#[test]
#[ignore = "needs mosquitto-clients; run by .ci/run with --ignored"]
#[cfg(unix)]
fn serve_runs_config_rules_and_closes_their_parquet_files_at_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    walkthrough(dir.path());
    let mut config = std::fs::read_to_string(dir.path().join("thingkit.toml")).unwrap();
    config.push_str(
        r#"
[[rules]]
name = "readings"
sql = "SELECT temperature, topic(2) AS device FROM 'dt/+/temperature'"
actions = [
  { file = { path = "rules/readings.jsonl", format = "jsonl" } },
  { file = { path = "rules/readings", format = "parquet", columns = [{ name = "device", type = "string" }, { name = "temperature", type = "double" }] } },
]
"#,
    );
    std::fs::write(dir.path().join("thingkit.toml"), config).unwrap();
    let server = Server::start(&dir.path().join("thingkit.toml"));
    let metrics = http_get(&server.metrics, "/metrics");
    assert!(metrics.contains("thingkit_rules 1"), "{metrics}");
    let status = mosquitto("mosquitto_pub", dir.path(), "sensor-1", server.port, "5")
        .args([
            "-t",
            "dt/sensor-1/temperature",
            "-q",
            "1",
            "-m",
            "{\"temperature\": 21.5}",
        ])
        .status()
        .expect("mosquitto_pub is installed (apt install mosquitto-clients)");
    assert!(status.success(), "mosquitto_pub: {status:?}");
    // Basic Ingest: the same rule, straight from the device (topic() without the prefix).
    // (As sensor-2: the walkthrough limits how fast one thing may reconnect.)
    let status = mosquitto("mosquitto_pub", dir.path(), "sensor-2", server.port, "5")
        .args([
            "-t",
            "$aws/rules/readings/dt/sensor-2/temperature",
            "-q",
            "1",
            "-m",
            "{\"temperature\": 22}",
        ])
        .output()
        .expect("mosquitto_pub is installed (apt install mosquitto-clients)");
    assert!(
        status.status.success(),
        "mosquitto_pub (Basic Ingest): {status:?}"
    );
    let lines = dir.path().join("data/rules/readings.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&lines)
        .unwrap_or_default()
        .lines()
        .count()
        < 2
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_to_string(&lines).unwrap(),
        "{\"temperature\":21.5,\"device\":\"sensor-1\"}\n{\"temperature\":22,\"device\":\"sensor-2\"}\n"
    );
    assert!(server.terminate().success());
    let names: Vec<String> = std::fs::read_dir(dir.path().join("data/rules/readings"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(
        names[0].starts_with("part-") && names[0].ends_with(".parquet"),
        "{names:?}"
    );
}

/// Nothing acknowledged is lost: a QoS 1 message the server PUBACKed for an offline persistent
/// session is delivered after `kill -9` and a restart (the broker's store in `data_dir`).
#[test]
#[ignore = "needs mosquitto-clients; run by .ci/run with --ignored"]
#[cfg(unix)]
fn a_puback_survives_kill_9_for_an_offline_persistent_session() {
    let dir = tempfile::tempdir().unwrap();
    walkthrough(dir.path());
    let config = dir.path().join("thingkit.toml");
    let client =
        |program: &str, thing: &str, port: u16| mosquitto(program, dir.path(), thing, port, "311");
    let server = Server::start(&config);
    // sensor-2: a persistent session (Clean Session 0) subscribed at QoS 1, then gone.
    let status = client("mosquitto_sub", "sensor-2", server.port)
        .args(["-c", "-q", "1", "-t", "dt/#", "-E"])
        .status()
        .expect("mosquitto_sub is installed (apt install mosquitto-clients)");
    assert!(status.success(), "mosquitto_sub -E: {status:?}");
    // sensor-1 publishes at QoS 1; mosquitto_pub exits 0 only after the PUBACK.
    let status = client("mosquitto_pub", "sensor-1", server.port)
        .args([
            "-q",
            "1",
            "-t",
            "dt/sensor-1/t",
            "-m",
            "acknowledged-before-the-crash",
        ])
        .status()
        .unwrap();
    assert!(status.success(), "mosquitto_pub: {status:?}");
    server.kill9();

    let server = Server::start(&config);
    std::thread::sleep(Duration::from_millis(1100)); // one CONNECT per second per client ID
    let out = client("mosquitto_sub", "sensor-2", server.port)
        .args(["-c", "-q", "1", "-t", "dt/#", "-C", "1", "-W", "10"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mosquitto_sub after restart: {:?}",
        out
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "acknowledged-before-the-crash"
    );
    assert!(server.terminate().success());
}

/// The least-privilege shadow policy of the AWS IoT Developer Guide, as its Device Defender audit
/// page ("IoT policies overly permissive", awsdocs/aws-iot-docs at 0a6e6df,
/// developerguide/audit-chk-iot-policy-permissive.md) gives the compliant statements: Connect only
/// as the thing the certificate is attached to, Publish and Subscribe only on that thing's
/// `$aws/things/THING/shadow/*`. The guide's compliant Receive is `topic/$aws/things/*` (safe
/// because Subscribe is restricted); here it is narrowed to the same shadow topics. `*` in a
/// resource matches any characters, `/` included, so `shadow/*` covers the named shadows'
/// `shadow/name/NAME/update/...` too.
const SHADOW_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["iot:Connect"],
      "Resource": ["arn:aws:iot:eu-central-1:123456789012:client/${iot:Connection.Thing.ThingName}"],
      "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}
    },
    {
      "Effect": "Allow",
      "Action": ["iot:Publish"],
      "Resource": ["arn:aws:iot:eu-central-1:123456789012:topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"]
    },
    {
      "Effect": "Allow",
      "Action": ["iot:Subscribe"],
      "Resource": ["arn:aws:iot:eu-central-1:123456789012:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"]
    },
    {
      "Effect": "Allow",
      "Action": ["iot:Receive"],
      "Resource": ["arn:aws:iot:eu-central-1:123456789012:topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"]
    }
  ]
}"#;

#[test]
#[ignore = "needs mosquitto-clients; run by .ci/run with --ignored"]
#[cfg(unix)]
fn an_accepted_shadow_update_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    walkthrough(dir.path());
    std::fs::write(dir.path().join("policies/shadow.json"), SHADOW_POLICY).unwrap();
    let config = dir.path().join("thingkit.toml");
    // One connection of sensor-1 per request, as a device SDK makes them (shadow_request).
    let request =
        |port: u16, op: &str, body: &str| shadow_request(dir.path(), "sensor-1", port, op, body);
    let server = Server::start(&config);
    let accepted = request(
        server.port,
        "update",
        r#"{"state":{"reported":{"temp":21}},"clientToken":"before-the-crash"}"#,
    );
    assert!(accepted.contains(r#""version":1"#), "{accepted}");
    assert!(accepted.contains("before-the-crash"), "{accepted}");
    // `.../accepted` was sent: the update is on disk. No goodbye, no flush.
    server.kill9();

    let server = Server::start(&config);
    std::thread::sleep(Duration::from_millis(1100)); // one CONNECT per second per client ID
    let document = request(server.port, "get", "{}");
    assert!(document.contains(r#""reported":{"temp":21}"#), "{document}");
    assert!(document.contains(r#""version":1"#), "{document}");
    assert!(server.terminate().success());
}

#[test]
#[ignore = "needs awsiotsdk; run by .ci/run with --ignored"]
#[cfg(unix)]
fn aws_iot_device_sdk_python_gets_updates_and_receives_deltas() {
    const THING: &str = "sensor-1";
    let dir = tempfile::tempdir().unwrap();
    walkthrough(dir.path());
    std::fs::write(dir.path().join("policies/shadow.json"), SHADOW_POLICY).unwrap();
    let server = Server::start(&dir.path().join("thingkit.toml"));
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/shadow_awsiotsdk.py");
    let (out_path, err_path) = (dir.path().join("sdk.out"), dir.path().join("sdk.err"));
    let started = Instant::now();
    let mut sdk = Command::new("python3")
        .arg(&script)
        // The server certificate `thingkit init` writes names localhost; the SDK checks it.
        .args(["--host", "localhost", "--port", &server.port.to_string()])
        .arg("--ca")
        .arg(dir.path().join("ca/ca.pem"))
        .arg("--cert")
        .arg(dir.path().join(format!("devices/{THING}.pem")))
        .arg("--key")
        .arg(dir.path().join(format!("devices/{THING}.key")))
        .args(["--thing", THING, "--protocol", "both"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("python3 runs (apt-get install python3; python3 -m pip install awsiotsdk)");
    // Every step of the script is bounded; this bounds the whole, whatever happens.
    let deadline = started + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = sdk.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = sdk.kill();
            let _ = sdk.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = format!(
        "--- stdout\n{}--- stderr\n{}",
        std::fs::read_to_string(&out_path).unwrap_or_default(),
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    let took = started.elapsed();
    let status = status.unwrap_or_else(|| panic!("the SDK script ran over 180 s\n{output}"));
    assert!(
        status.success(),
        "the SDK script failed ({status}) after {took:.1?}\n{output}"
    );
    assert!(output.contains("shadow ok (3.1.1, 5)"), "{output}");
    eprintln!("the SDK script passed in {took:.1?}");
    assert!(server.terminate().success());
}

#[test]
#[ignore = "needs mosquitto-clients; run by .ci/run with --ignored"]
#[cfg(unix)]
fn a_refused_qos1_publish_is_answered_to_mosquitto_pub_in_both_versions() {
    // Issue #23: a refused QoS 1 publish must never be left unanswered. Here the retained store
    // holds one topic: a retained message on a second topic is refused. MQTT 5: PUBACK 0x97,
    // which mosquitto_pub reports; MQTT 3.1.1 has no negative PUBACK, so the server closes the
    // connection and mosquitto_pub fails at once instead of waiting for ever.
    let dir = tempfile::tempdir().unwrap();
    walkthrough(dir.path());
    let path = dir.path().join("thingkit.toml");
    let config = std::fs::read_to_string(&path).unwrap().replace(
        "# max_retained_messages = 100000",
        "max_retained_messages = 1",
    );
    std::fs::write(&path, config).unwrap();
    std::fs::write(
        dir.path().join("policies/retain.json"),
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:RetainPublish",
            "Resource": "arn:aws:iot:eu-central-1:123456789012:topic/dt/*"}]}"#,
    )
    .unwrap();
    let server = Server::start(&path);
    let publish = |version: &str, topic: &str| {
        std::thread::sleep(Duration::from_millis(1100)); // one CONNECT per second per client ID
        let started = Instant::now();
        let out = mosquitto(
            "mosquitto_pub",
            dir.path(),
            "sensor-1",
            server.port,
            version,
        )
        .args(["-t", topic, "-q", "1", "-r", "-m", "x"])
        .output()
        .expect("mosquitto_pub is installed (apt install mosquitto-clients)");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "mosquitto_pub waited for an answer"
        );
        out
    };
    let first = publish("311", "dt/sensor-1/a");
    assert!(
        first.status.success(),
        "the first retained topic: {first:?}"
    );
    let refused = publish("5", "dt/sensor-1/b");
    let said = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(
        said.contains("quota exceeded"),
        "mosquitto_pub -V 5 said: {said}"
    );
    let refused = publish("311", "dt/sensor-1/c");
    assert!(
        !refused.status.success(),
        "mosquitto_pub -V 311 was told its refused message was delivered: {refused:?}"
    );
    let metrics = http_get(&server.metrics, "/metrics");
    assert!(
        metrics.contains("thingkit_refusal_disconnects_total 1"),
        "{metrics}"
    );
    assert!(server.terminate().success());
}

/// Runs `script` with `args` under python3, bounded by `limit`; panics with its output unless
/// it exits 0.
fn run_python(dir: &Path, script: &str, args: &[String], limit: Duration) -> Duration {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/interop")
        .join(script);
    let (out_path, err_path) = (dir.join("py.out"), dir.join("py.err"));
    let started = Instant::now();
    let mut child = Command::new("python3")
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("python3 runs");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = format!(
        "--- stdout\n{}--- stderr\n{}",
        std::fs::read_to_string(&out_path).unwrap_or_default(),
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    let status = status.unwrap_or_else(|| panic!("{script:?} ran over {limit:?}\n{output}"));
    assert!(status.success(), "{script:?} failed\n{output}");
    eprintln!("{output}");
    started.elapsed()
}

/// A device policy for the jobs MQTT API and MQTT file delivery: the thing's own topics only.
const JOBS_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["iot:Connect"],
      "Resource": ["arn:aws:iot:eu-central-1:123456789012:client/${iot:Connection.Thing.ThingName}"]
    },
    {
      "Effect": "Allow",
      "Action": ["iot:Publish", "iot:Receive"],
      "Resource": ["arn:aws:iot:eu-central-1:123456789012:topic/$aws/things/${iot:Connection.Thing.ThingName}/jobs/*",
                   "arn:aws:iot:eu-central-1:123456789012:topic/$aws/things/${iot:Connection.Thing.ThingName}/streams/*"]
    },
    {
      "Effect": "Allow",
      "Action": ["iot:Subscribe"],
      "Resource": ["arn:aws:iot:eu-central-1:123456789012:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/jobs/*",
                   "arn:aws:iot:eu-central-1:123456789012:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/streams/*"]
    }
  ]
}"#;

/// Issue #17: boto3 creates jobs on a fresh `thingkit serve` and the AWS IoT Device SDK v2 for
/// Python (`awsiot.iotjobs`) runs them as a device does (`tests/interop/jobs_awsiotsdk.py`):
/// notified through the broker, get pending, start next, progress with expectedVersion,
/// SUCCEEDED, REJECTED, terminal states final; the SDK's MQTT connection also describes and
/// downloads a firmware image over MQTT file delivery. Then the server is killed with SIGKILL while a
/// job is IN_PROGRESS; after the restart the device finds it with its statusDetails and
/// completes it.
#[test]
#[cfg(unix)]
#[ignore = "needs boto3 and awsiotsdk (python3 -m pip install boto3 awsiotsdk); .ci/run runs it"]
fn aws_iot_device_sdk_python_runs_jobs_that_survive_kill_9() {
    const THING: &str = "sensor-1";
    let dir = tempfile::tempdir().unwrap();
    walkthrough(dir.path());
    std::fs::write(dir.path().join("policies/jobs.json"), JOBS_POLICY).unwrap();
    // A firmware image the server serves over MQTT file delivery (byte i is i % 251).
    std::fs::create_dir_all(dir.path().join("data/streams/fw-img")).unwrap();
    let image: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("data/streams/fw-img/0"), image).unwrap();
    let config = dir.path().join("thingkit.toml");
    let out = thingkit(&["access-key", "create", "--config", arg(&config)], None);
    assert!(out.status.success(), "access-key create: {}", stderr(&out));
    let key: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let args = |server: &Server, phase: &str| -> Vec<String> {
        let api_port = server.api.rsplit(':').next().unwrap().to_owned();
        let path = |p: &str| dir.path().join(p).display().to_string();
        vec![
            "--endpoint".into(),
            format!("https://localhost:{api_port}"),
            "--ca".into(),
            path("ca/ca.pem"),
            "--access-key".into(),
            key["AccessKeyId"].as_str().unwrap().into(),
            "--secret-key".into(),
            key["SecretAccessKey"].as_str().unwrap().into(),
            "--host".into(),
            "localhost".into(),
            "--mqtt-port".into(),
            server.port.to_string(),
            "--cert".into(),
            path(&format!("devices/{THING}.pem")),
            "--key".into(),
            path(&format!("devices/{THING}.key")),
            "--thing".into(),
            THING.into(),
            "--phase".into(),
            phase.into(),
        ]
    };
    let server = Server::start(&config);
    let took = run_python(
        dir.path(),
        "jobs_awsiotsdk.py",
        &args(&server, "before-crash"),
        Duration::from_secs(180),
    );
    eprintln!("jobs before the crash took {took:?}");
    // fw-3's IN_PROGRESS was acknowledged (`/update/accepted`): it must survive SIGKILL.
    server.kill9();
    let server = Server::start(&config);
    std::thread::sleep(Duration::from_millis(1100)); // one CONNECT per second per client ID
    let took = run_python(
        dir.path(),
        "jobs_awsiotsdk.py",
        &args(&server, "after-crash"),
        Duration::from_secs(120),
    );
    eprintln!("jobs after the crash took {took:?}");
    assert!(server.terminate().success());
}

/// boto3, the AWS CLI v1 and paho-mqtt drive a fresh `thingkit serve` through its HTTPS API
/// with an access key from `thingkit access-key create` (`tests/interop/api_boto3.py`: the
/// classic provisioning script, the device publishing under the policy it attached, live
/// detach and deactivation, iot-data Publish, pagination, each error class, forged requests,
/// jobs, topic rules). A rule, like the registry, survives kill -9.
#[test]
#[cfg(unix)]
#[ignore = "needs boto3, awscli and paho-mqtt (python3 -m pip install boto3 awscli paho-mqtt); .ci/run runs it"]
fn boto3_and_the_aws_cli_provision_a_device_that_then_publishes() {
    let dir = tempfile::tempdir().unwrap();
    walkthrough(dir.path());
    let config = dir.path().join("thingkit.toml");
    let out = thingkit(&["access-key", "create", "--config", arg(&config)], None);
    assert!(out.status.success(), "access-key create: {}", stderr(&out));
    let key: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    // A second key, made while the server runs (picked up without a restart), may only read.
    let server = Server::start(&config);
    std::fs::write(
        dir.path().join("reader.json"),
        r#"{"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["iot:Describe*", "iot:List*"], "Resource": "*"}]}"#,
    )
    .unwrap();
    let out = thingkit(
        &[
            "access-key",
            "create",
            "--config",
            arg(&config),
            "--policy",
            arg(&dir.path().join("reader.json")),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "access-key create --policy: {}",
        stderr(&out)
    );
    let reader: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let port = server.api.rsplit(':').next().unwrap();
    let took = run_python(
        dir.path(),
        "api_boto3.py",
        &[
            "--endpoint".into(),
            format!("https://localhost:{port}"),
            "--ca".into(),
            dir.path().join("ca/ca.pem").display().to_string(),
            "--access-key".into(),
            key["AccessKeyId"].as_str().unwrap().into(),
            "--secret-key".into(),
            key["SecretAccessKey"].as_str().unwrap().into(),
            "--mqtt-port".into(),
            server.port.to_string(),
            "--reader-key".into(),
            reader["AccessKeyId"].as_str().unwrap().into(),
            "--reader-secret".into(),
            reader["SecretAccessKey"].as_str().unwrap().into(),
        ],
        Duration::from_secs(300),
    );
    eprintln!("boto3 + AWS CLI interop took {took:?}");
    // Every request left an audit record: who, what, on what, how it ended.
    let audit = std::fs::read_to_string(dir.path().join("data/audit.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let create = records
        .iter()
        .find(|r| r["operation"] == "CreateThing" && r["status"] == 200)
        .expect("an audited CreateThing");
    assert_eq!(create["access_key_id"], key["AccessKeyId"]);
    assert!(
        records
            .iter()
            .any(|r| r["error"] == "InvalidSignatureException"),
        "the forged request is audited"
    );
    // What the API answered 200 to was committed first: it survives kill -9.
    server.kill9();
    let server = Server::start(&config);
    let check = format!(
        r#"
import boto3
iot = boto3.client("iot", endpoint_url="https://localhost:{port}", verify="{ca}",
                   region_name="eu-central-1", aws_access_key_id="{id}", aws_secret_access_key="{secret}")
assert iot.describe_thing(thingName="api-sensor-1")["attributes"] == {{"site": "lab"}}
cert = iot.list_thing_principals(thingName="api-sensor-1")["principals"][0]
assert [p["policyName"] for p in iot.list_attached_policies(target=cert)["policies"]] == ["api-device"]
assert iot.describe_thing(thingName="cli-sensor")["thingName"] == "cli-sensor"
assert len(iot.list_policy_versions(policyName="api-device")["policyVersions"]) == 5
rule = iot.get_topic_rule(ruleName="kept_rule")["rule"]
assert rule["sql"] == "SELECT * FROM 'dt/+/kept'" and rule["awsIotSqlVersion"] == "2016-03-23", rule
from datetime import datetime, timedelta, timezone
now = datetime.now(timezone.utc)
tasks = iot.list_audit_tasks(startTime=now - timedelta(hours=1), endTime=now)["tasks"]
assert tasks and all(t["taskStatus"] == "COMPLETED" for t in tasks), tasks
findings = iot.list_audit_findings(taskId=tasks[0]["taskId"],
                                   checkName="IOT_POLICY_OVERLY_PERMISSIVE_CHECK")["findings"]
assert "audit_wide_open" in [f["nonCompliantResource"]["resourceIdentifier"]["policyVersionIdentifier"]["policyName"]
                             for f in findings], findings
targets = iot.list_targets_for_security_profile(securityProfileName="kept_profile")["securityProfileTargets"]
assert [t["arn"] for t in targets] == ["arn:aws:iot:eu-central-1:123456789012:all/registered-things"], targets
print("OK after kill -9")
"#,
        port = server.api_port(),
        ca = dir.path().join("ca/ca.pem").display(),
        id = key["AccessKeyId"].as_str().unwrap(),
        secret = key["SecretAccessKey"].as_str().unwrap(),
    );
    let out = Command::new("python3")
        .args(["-c", &check])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "after kill -9: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.terminate().success());
}
