//! Two `thingkit serve` processes joined through a real nats-server (`[cluster] nats`): a
//! message that `mosquitto_pub` (MQTT 3.1.1) publishes on one server reaches `mosquitto_sub`
//! (MQTT 5) on the other, in both directions. The two servers share the init directory's CA,
//! devices and policies, each with a data directory of its own.
//!
//! Ignored by `cargo test`: `.ci/run` starts nats-server (`.ci/nats start`) and runs it with
//! `THINGKIT_TEST_NATS=$(.ci/nats url) cargo test -p thingkit-cli --test cluster -- --ignored`.
//! Without the variable, nats-server or mosquitto-clients the test fails, it does not skip.

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
    {"Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": "arn:aws:iot:eu-central-1:123456789012:topicfilter/dt/*"}
  ]
}"#;

/// `mosquitto_pub` or `mosquitto_sub` connecting as `thing` to `port` with MQTT `version`.
fn mosquitto(program: &str, dir: &Path, thing: &str, port: u16, version: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", version])
        .arg("--cafile")
        .arg(dir.join("ca/ca.pem"))
        .arg("--cert")
        .arg(dir.join(format!("devices/{thing}.pem")))
        .arg("--key")
        .arg(dir.join(format!("devices/{thing}.key")))
        .args(["-i", thing]);
    cmd
}

/// A copy of the init directory's config for one server of cluster `cluster` at `nats`, with
/// the data directory `data_dir`.
fn server_config(
    dir: &Path,
    name: &str,
    data_dir: &str,
    nats: &str,
    cluster: &str,
) -> std::path::PathBuf {
    let config = std::fs::read_to_string(dir.join("thingkit.toml")).unwrap();
    let config = config
        .replace(
            "# data_dir = \"data\"",
            &format!("data_dir = \"{data_dir}\""),
        )
        .replace(
            "# nats = \"nats://127.0.0.1:4222\"",
            &format!("nats = \"{nats}\"\nname = \"{cluster}\"\nserver_id = \"{name}\""),
        );
    assert!(config.contains("server_id = "), "the example has [cluster]");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).unwrap();
    path
}

/// `mosquitto_sub -V 5` as `sub_thing` on `sub_port` waits for one message on `dt/#` while
/// `mosquitto_pub -V 311` as `pub_thing` publishes `payload` on `pub_port` once a second (the
/// subscription races the first publish; AWS allows one CONNECT per second per client ID).
fn crosses(
    dir: &Path,
    (pub_thing, pub_port): (&str, u16),
    (sub_thing, sub_port): (&str, u16),
    payload: &str,
) {
    let mut sub = mosquitto("mosquitto_sub", dir, sub_thing, sub_port, "5")
        .args(["-t", "dt/#", "-q", "1", "-C", "1", "-W", "20", "-v"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub is installed (apt install mosquitto-clients)");
    let deadline = Instant::now() + Duration::from_secs(15);
    let topic = format!("dt/{pub_thing}/temperature");
    loop {
        let status = mosquitto("mosquitto_pub", dir, pub_thing, pub_port, "311")
            .args(["-t", &topic, "-q", "1", "-m", payload])
            .status()
            .expect("mosquitto_pub is installed (apt install mosquitto-clients)");
        assert!(status.success(), "mosquitto_pub: {status:?}");
        std::thread::sleep(Duration::from_millis(1100));
        if sub.try_wait().unwrap().is_some() || Instant::now() > deadline {
            break;
        }
    }
    let out = sub.wait_with_output().unwrap();
    assert!(out.status.success(), "mosquitto_sub: {:?}", out.status);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{topic} {payload}")
    );
}

#[test]
#[ignore = "needs nats-server (THINGKIT_TEST_NATS) and mosquitto-clients; run by .ci/run"]
#[cfg(unix)]
fn two_servers_route_messages_through_nats_in_both_directions_and_protocol_versions() {
    let nats = std::env::var("THINGKIT_TEST_NATS").unwrap_or_else(|_| {
        panic!(
            "THINGKIT_TEST_NATS is not set: start a server with `.ci/nats start` and set \
             THINGKIT_TEST_NATS=$(.ci/nats url) (nats://127.0.0.1:PORT)"
        )
    });
    let cluster = format!("cli{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    fleet_dir(dir.path(), &["sensor-1", "sensor-2"], POLICY);
    let a = Server::start(&server_config(dir.path(), "a", "data-a", &nats, &cluster));
    let b = Server::start(&server_config(dir.path(), "b", "data-b", &nats, &cluster));
    crosses(
        dir.path(),
        ("sensor-1", a.port),
        ("sensor-2", b.port),
        "21.5",
    );
    // The other way; sensor-2 and sensor-1 connected more than a second ago.
    crosses(
        dir.path(),
        ("sensor-2", b.port),
        ("sensor-1", a.port),
        "19.0",
    );
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}
