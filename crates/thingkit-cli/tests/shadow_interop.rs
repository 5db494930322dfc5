//! The AWS IoT Device SDK v2 for Python (PyPI `awsiotsdk`, `awsiot.iotshadow`) against a real
//! `thingkit serve` (issue #16): `tests/interop/shadow_awsiotsdk.py` gets, updates and deletes the
//! classic and a named shadow of a thing and receives the deltas, over the SDK's MQTT 3.1.1
//! connection and its MQTT 5 client. The device's policy is the AWS IoT Developer Guide's
//! shadow policy (see [`POLICY`]).
//!
//! Needs python3 and awsiotsdk, so it is ignored by `cargo test`; `.ci/run` installs the SDK and
//! runs it with `-- --ignored`. A missing python3 or SDK fails it, never skips it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

/// The thing whose shadows the script drives; also its MQTT client ID.
const THING: &str = "lamp-1";

/// The least-privilege shadow policy of the AWS IoT Developer Guide, as its Device Defender audit
/// page ("IoT policies overly permissive", awsdocs/aws-iot-docs at 0a6e6df,
/// developerguide/audit-chk-iot-policy-permissive.md) gives the compliant statements: Connect only
/// as the thing the certificate is attached to, Publish and Subscribe only on that thing's
/// `$aws/things/THING/shadow/*`. The guide's compliant Receive is `topic/$aws/things/*` (safe
/// because Subscribe is restricted); here it is narrowed to the same shadow topics. `*` in a
/// resource matches any characters, `/` included, so `shadow/*` covers the named shadows'
/// `shadow/name/NAME/update/...` too.
const POLICY: &str = r#"{
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

/// `thingkit init DIR`, the device certificate of [`THING`], [`POLICY`] and a config that
/// registers the device and listens on ephemeral ports.
fn setup(dir: &Path) {
    let out = thingkit(&["init", arg(dir)], None);
    assert!(out.status.success(), "init: {}", stderr(&out));
    std::fs::create_dir_all(dir.join("devices")).unwrap();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    let out = thingkit(
        &[
            "cert",
            "create",
            "--ca-dir",
            arg(&dir.join("ca")),
            "--common-name",
            THING,
            "--cert-out",
            arg(&dir.join(format!("devices/{THING}.pem"))),
            "--key-out",
            arg(&dir.join(format!("devices/{THING}.key"))),
        ],
        None,
    );
    assert!(out.status.success(), "cert create: {}", stderr(&out));
    std::fs::write(dir.join("policies/shadow.json"), POLICY).unwrap();
    let mut config = std::fs::read_to_string(dir.join("thingkit.toml")).unwrap();
    config = config.replace("# listen = \"127.0.0.1:8883\"", "listen = \"127.0.0.1:0\"");
    config = config.replace("# dir = \"policies\"", "dir = \"policies\"");
    config = config.replace("# listen = \"127.0.0.1:9090\"", "listen = \"127.0.0.1:0\"");
    config.push_str(&format!(
        "\n[[device]]\nthing = \"{THING}\"\ncertificate = \"devices/{THING}.pem\"\n"
    ));
    std::fs::write(dir.join("thingkit.toml"), config).unwrap();
}

/// A running `thingkit serve` (killed when dropped) and the port its listening line named.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(config: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_thingkit"))
            .args(["serve", "--config", arg(config)])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("thingkit serve runs");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Keeps reading, so the server never blocks on a full pipe.
            for line in BufReader::new(stdout).lines() {
                let _ = tx.send(line.unwrap_or_default());
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a listening line within 30 s");
        let port = line
            .strip_prefix("mqtt listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.rsplit(':').next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        Server { child, port }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs awsiotsdk; run by .ci/run with --ignored"]
#[cfg(unix)]
fn aws_iot_device_sdk_python_gets_updates_and_receives_deltas() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
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
    drop(server);
}
