//! Several `thingkit serve` processes as one cluster (issue #20), as real processes: two servers
//! with their own data directories and ports share one PostgreSQL (`[cluster] postgres`), so a
//! shadow written through one is read through the other, a certificate revoked through one
//! is refused by the other within a second, and the control plane's state is the cluster's: an
//! access key made for one signs on the other (and a deleted one stops signing), a topic rule
//! or provisioning template made through one server's API acts on the other within a second,
//! and `thingkit report` sums the usage of both.
//!
//! Two servers joined through a real nats-server (`[cluster] nats`) route messages: one that
//! `mosquitto_pub` (MQTT 3.1.1) publishes on one server reaches `mosquitto_sub` (MQTT 5) on the
//! other, in both directions; a CONNECT on one ends the connection with the same client ID on
//! the other (0x8E Session taken over). With both PostgreSQL and NATS, a persistent session
//! moves to the server its device reconnects to, also after `kill -9` of its server. A job
//! rollout created through one server is paced by that server alone (it holds the job's lease),
//! counts what devices report through the other, and is taken over by the other after
//! `kill -9`, with no duplicate executions. What a server's API acknowledged (a thing, a
//! policy, a topic rule, a provisioning template, a job, a job template) survives `kill -9` of
//! that server the moment the last 200 came back, and the other server serves all of it. A
//! shared subscription with a member on each of two servers gets each message once, and its
//! only member loses no acknowledged message when its server is killed and it reconnects to
//! another.
//!
//! Ignored by `cargo test`: they need a PostgreSQL server, named by `THINGKIT_TEST_POSTGRES`
//! (`.ci/postgres start; export THINGKIT_TEST_POSTGRES=$(.ci/postgres url)`), a nats-server,
//! named by `THINGKIT_TEST_NATS` (`.ci/nats start; export THINGKIT_TEST_NATS=$(.ci/nats url)`),
//! mosquitto-clients and the AWS CLI. `.ci/run` starts PostgreSQL and runs them with
//! `-- --ignored`; a missing peer fails them, never skips them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::cluster::*;
use common::*;

/// `aws iot ARGS` against the API of `server`, signed with `key`; the JSON answer.
fn aws_iot(dir: &Path, server: &Server, key: &(String, String), args: &[&str]) -> String {
    let out = Command::new("aws")
        .arg("iot")
        .args(args)
        .args(["--endpoint-url", &format!("https://{}", server.api)])
        .arg("--ca-bundle")
        .arg(dir.join("ca/ca.pem"))
        .args(["--output", "json"])
        .env("AWS_ACCESS_KEY_ID", &key.0)
        .env("AWS_SECRET_ACCESS_KEY", &key.1)
        .env("AWS_DEFAULT_REGION", "eu-central-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("the AWS CLI is installed (python3 -m pip install awscli)");
    assert!(
        out.status.success(),
        "aws iot {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `mosquitto_sub` (MQTT `sub_version`) as `sub_thing` on `sub_port` waits for one message on
/// `dt/#` while `mosquitto_pub` (MQTT `pub_version`) as `pub_thing` publishes `payload` on
/// `pub_port` once a second (the subscription races the first publish; AWS allows one CONNECT per
/// second per client ID).
fn crosses(
    dir: &Path,
    (pub_thing, pub_port, pub_version): (&str, u16, &str),
    (sub_thing, sub_port, sub_version): (&str, u16, &str),
    payload: &str,
) {
    let mut sub = mosquitto("mosquitto_sub", dir, sub_thing, sub_port, sub_version)
        .args(["-t", "dt/#", "-q", "1", "-C", "1", "-W", "20", "-v"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub is installed (apt install mosquitto-clients)");
    let deadline = Instant::now() + Duration::from_secs(15);
    let topic = format!("dt/{pub_thing}/temperature");
    loop {
        let status = mosquitto("mosquitto_pub", dir, pub_thing, pub_port, pub_version)
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

/// `aws iot ARGS` against the API of `server`, signed with `key`: whether the call succeeded.
fn aws_iot_succeeds(dir: &Path, server: &Server, key: &(String, String), args: &[&str]) -> bool {
    Command::new("aws")
        .arg("iot")
        .args(args)
        .args(["--endpoint-url", &format!("https://{}", server.api)])
        .arg("--ca-bundle")
        .arg(dir.join("ca/ca.pem"))
        .args(["--output", "json"])
        .env("AWS_ACCESS_KEY_ID", &key.0)
        .env("AWS_SECRET_ACCESS_KEY", &key.1)
        .env("AWS_DEFAULT_REGION", "eu-central-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .expect("the AWS CLI is installed (python3 -m pip install awscli)")
        .status
        .success()
}

/// sensor-1 publishes on B over one MQTT 5 connection (`mosquitto_pub -l -d`, one line per
/// publish, its PUBACKs' reason codes read from the debug output) while the `devices` policy
/// changes through A's API; then its certificate is deactivated through A.
fn policy_changes_through_a_reach_b(dir: &Path, a: &Server, b: &Server, key: &(String, String)) {
    use std::io::{BufRead, BufReader, Write};
    // Its debug lines line-buffered (stdout is a pipe), so each PUBACK is seen when it comes.
    let pub_args = mosquitto("mosquitto_pub", dir, "sensor-1", b.port, "5")
        .get_args()
        .map(|a| a.to_os_string())
        .collect::<Vec<_>>();
    let mut publisher = Command::new("stdbuf")
        .args(["-oL", "mosquitto_pub"])
        .args(pub_args)
        .args(["-q", "1", "-t", "dt/sensor-1/policy", "-l", "-d"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub is installed");
    let mut lines = publisher.stdin.take().unwrap();
    let out = publisher.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The PUBACK's reason code of one more publish; `None` when the connection ended.
    let mut publish = |n: usize| -> Option<u8> {
        writeln!(lines, "{n}").ok()?;
        loop {
            let line = rx.recv_timeout(Duration::from_secs(5)).ok()?;
            if let Some(rest) = line.split("received PUBACK").nth(1) {
                let code = rest
                    .split("RC:")
                    .nth(1)
                    .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                return Some(code);
            }
        }
    };
    // Accepted: 0 or 16 (No matching subscribers: nobody subscribes, and these servers have no
    // NATS); refused by policy: 135 (Not authorized).
    let accepted = |code: Option<u8>| matches!(code, Some(0 | 16));
    assert!(
        accepted(publish(1)),
        "sensor-1 may publish on dt/* at first"
    );

    let mut narrower: serde_json::Value = serde_json::from_str(POLICY).unwrap();
    narrower["Statement"][1]["Resource"] = serde_json::json!([
        "arn:aws:iot:eu-central-1:123456789012:topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"
    ]);
    aws_iot(
        dir,
        a,
        key,
        &[
            "create-policy-version",
            "--policy-name",
            "devices",
            "--policy-document",
            &narrower.to_string(),
            "--set-as-default",
        ],
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        publish(2),
        Some(135),
        "B still allows a publish a second after a narrower default version through A"
    );
    aws_iot(
        dir,
        a,
        key,
        &[
            "set-default-policy-version",
            "--policy-name",
            "devices",
            "--policy-version-id",
            "1",
        ],
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        accepted(publish(3)),
        "B still refuses a second after the first version was made default again through A"
    );

    let certificate_id = {
        let out = thingkit(
            &["cert", "id", arg(&dir.join("devices/sensor-1.pem"))],
            None,
        );
        assert!(out.status.success(), "cert id: {}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    let certificate_arn = format!("arn:aws:iot:eu-central-1:123456789012:cert/{certificate_id}");
    aws_iot(
        dir,
        a,
        key,
        &[
            "detach-policy",
            "--policy-name",
            "devices",
            "--target",
            &certificate_arn,
        ],
    );
    std::thread::sleep(Duration::from_secs(1));
    let after_detach = publish(4);
    assert!(
        matches!(after_detach, Some(135) | None),
        "B still allows a publish a second after the policy was detached through A: {after_detach:?}"
    );
    let _ = publisher.kill();
    let _ = publisher.wait();

    // Attached again, then the certificate deactivated through A: B refuses its next CONNECT.
    aws_iot(
        dir,
        a,
        key,
        &[
            "attach-policy",
            "--policy-name",
            "devices",
            "--target",
            &certificate_arn,
        ],
    );
    aws_iot(
        dir,
        a,
        key,
        &[
            "update-certificate",
            "--certificate-id",
            &certificate_id,
            "--new-status",
            "INACTIVE",
        ],
    );
    std::thread::sleep(Duration::from_secs(1));
    let status = mosquitto("mosquitto_pub", dir, "sensor-1", b.port, "5")
        .args(["-q", "1", "-t", "dt/sensor-1/policy", "-m", "5"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(
        !status.success(),
        "B accepts a certificate deactivated through A a second ago"
    );
}

/// The claim certificate's policy, as a file of `[policies] dir` (both servers attach it to the
/// claim certificate, registered as a `[[device]]`: `[fleet] claim_certificates` needs a
/// template in the file): the provisioning topics of every template, so templates made through
/// the API can be used with it.
const CLAIM_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": ["arn:aws:iot:eu-central-1:123456789012:topic/$aws/certificates/create/*",
                  "arn:aws:iot:eu-central-1:123456789012:topic/$aws/provisioning-templates/*"]},
    {"Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": ["arn:aws:iot:eu-central-1:123456789012:topicfilter/$aws/certificates/create/*",
                  "arn:aws:iot:eu-central-1:123456789012:topicfilter/$aws/provisioning-templates/*"]}
  ]
}"#;

#[test]
#[ignore = "needs PostgreSQL (THINGKIT_TEST_POSTGRES), mosquitto-clients and the AWS CLI; .ci/run runs it"]
#[cfg(unix)]
fn two_servers_on_one_postgresql_share_their_state_and_a_change_through_one_reaches_both() {
    let dir = tempfile::tempdir().unwrap();
    let schema = fresh_schema("share");
    let shared = Shared {
        postgres: Some((postgres_url(), schema.clone())),
        ..Shared::default()
    };
    let configs = cluster_dir(dir.path(), &["sensor-1", "sensor-2"], &shared, 2);
    // A claim certificate on both servers, with no template in their files: the template is
    // made through A's API.
    std::fs::write(dir.path().join("policies/claim.json"), CLAIM_POLICY).unwrap();
    let out = thingkit(
        &[
            "cert",
            "create",
            "--ca-dir",
            arg(&dir.path().join("ca")),
            "--common-name",
            "claim",
            "--cert-out",
            arg(&dir.path().join("devices/claim.pem")),
            "--key-out",
            arg(&dir.path().join("devices/claim.key")),
        ],
        None,
    );
    assert!(out.status.success(), "cert create: {}", stderr(&out));
    for config in &configs {
        let mut text = std::fs::read_to_string(config).unwrap();
        text.push_str(
            "\n[[device]]\nthing = \"claim\"\ncertificate = \"devices/claim.pem\"\npolicies = [\"claim\"]\n",
        );
        std::fs::write(config, text).unwrap();
    }
    let a = Server::start(&configs[0]);
    let b = Server::start(&configs[1]);

    // A shadow update accepted through A is the document B serves.
    let accepted = shadow_request(
        dir.path(),
        "sensor-1",
        a.port,
        "update",
        r#"{"state":{"reported":{"temp":21}},"clientToken":"through-a"}"#,
    );
    assert!(accepted.contains(r#""version":1"#), "{accepted}");
    std::thread::sleep(Duration::from_millis(1100)); // one CONNECT per second per client ID
    let document = shadow_request(dir.path(), "sensor-1", b.port, "get", "{}");
    assert!(document.contains(r#""reported":{"temp":21}"#), "{document}");
    assert!(document.contains(r#""version":1"#), "{document}");

    // One access key, made with A's configuration file (into PostgreSQL), signs on both. A
    // thing created through A's API is described through B's.
    let key = access_key(&configs[0]);
    aws_iot(
        dir.path(),
        &a,
        &key,
        &["create-thing", "--thing-name", "made-on-a"],
    );
    let described = aws_iot(
        dir.path(),
        &b,
        &key,
        &["describe-thing", "--thing-name", "made-on-a"],
    );
    assert!(
        described.contains("\"thingName\": \"made-on-a\""),
        "{described}"
    );

    // A topic rule created through A's API acts on a message published on B a second later.
    let rule = serde_json::json!({
        "sql": "SELECT * FROM 'dt/sensor-1/temperature'",
        "actions": [{"republish": {
            "topic": "dt/republished/by-rule",
            "qos": 1,
            "roleArn": "arn:aws:iam::123456789012:role/republish",
        }}],
    })
    .to_string();
    aws_iot(
        dir.path(),
        &a,
        &key,
        &[
            "create-topic-rule",
            "--rule-name",
            "republish_on_every_server",
            "--topic-rule-payload",
            &rule,
        ],
    );
    // sensor-2 listens on B for what the rule republishes while sensor-1 publishes `payload`
    // there a second after `since`; what it heard within `wait` seconds.
    let republished = |since: Instant, payload: &str, wait: &str| -> String {
        let listener = mosquitto("mosquitto_sub", dir.path(), "sensor-2", b.port, "5")
            .args([
                "-q",
                "1",
                "-t",
                "dt/republished/#",
                "-C",
                "1",
                "-W",
                wait,
                "-v",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("mosquitto_sub is installed (apt install mosquitto-clients)");
        std::thread::sleep(Duration::from_secs(1).saturating_sub(since.elapsed()));
        let published = mosquitto("mosquitto_pub", dir.path(), "sensor-1", b.port, "5")
            .args(["-q", "1", "-t", "dt/sensor-1/temperature", "-m", payload])
            .status()
            .expect("mosquitto_pub is installed");
        assert!(published.success(), "mosquitto_pub: {published:?}");
        let out = listener.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        republished(Instant::now(), "22.5", "10"),
        "dt/republished/by-rule 22.5",
        "B ran the rule made through A on a message published {:?} after its creation",
        Duration::from_secs(1)
    );
    // Deleted through A, it stops on B: a message published on B a second later is not
    // republished.
    aws_iot(
        dir.path(),
        &a,
        &key,
        &[
            "delete-topic-rule",
            "--rule-name",
            "republish_on_every_server",
        ],
    );
    assert_eq!(
        republished(Instant::now(), "23.0", "3"),
        "",
        "B still runs a rule deleted through A a second ago"
    );

    // A provisioning template created through A's API provisions a device by claim through B.
    aws_iot(
        dir.path(),
        &a,
        &key,
        &[
            "create-provisioning-template",
            "--template-name",
            "sensor",
            "--template-body",
            TEMPLATE,
            "--provisioning-role-arn",
            "arn:aws:iam::123456789012:role/provisioning",
            "--enabled",
        ],
    );
    std::thread::sleep(Duration::from_secs(1));
    let thing = provision_by_claim(dir.path(), b.port, b.port, "7");
    assert_eq!(thing, "sensor-7");
    std::thread::sleep(Duration::from_millis(1100));
    let described = aws_iot(
        dir.path(),
        &a,
        &key,
        &["describe-thing", "--thing-name", "sensor-7"],
    );
    assert!(
        described.contains("\"thingName\": \"sensor-7\""),
        "{described}"
    );

    // A key deleted with B's configuration file is refused by A within a second.
    let doomed = access_key(&configs[1]);
    assert!(aws_iot_succeeds(
        dir.path(),
        &a,
        &doomed,
        &["describe-thing", "--thing-name", "made-on-a"]
    ));
    let out = thingkit(
        &[
            "access-key",
            "delete",
            "--config",
            arg(&configs[1]),
            &doomed.0,
        ],
        None,
    );
    assert!(out.status.success(), "access-key delete: {}", stderr(&out));
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !aws_iot_succeeds(
            dir.path(),
            &a,
            &doomed,
            &["describe-thing", "--thing-name", "made-on-a"]
        ),
        "A still accepts a key deleted a second ago"
    );

    // Policy changes through A decide sensor-1's next publish on B within a second: a new
    // default version without `dt/*`, the first version back as default, the policy detached.
    policy_changes_through_a_reach_b(dir.path(), &a, &b, &key);

    // sensor-2 is subscribed on B; its certificate is revoked through A. B ends the connection.
    let mut subscriber = mosquitto("mosquitto_sub", dir.path(), "sensor-2", b.port, "5")
        .args(["-q", "1", "-t", "dt/sensor-2/#", "-W", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub is installed");
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        subscriber.try_wait().unwrap().is_none(),
        "sensor-2 stays connected to B before the revocation"
    );
    let certificate_id = {
        let out = thingkit(
            &["cert", "id", arg(&dir.path().join("devices/sensor-2.pem"))],
            None,
        );
        assert!(out.status.success(), "cert id: {}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    let revoked_at = Instant::now();
    aws_iot(
        dir.path(),
        &a,
        &key,
        &[
            "update-certificate",
            "--certificate-id",
            &certificate_id,
            "--new-status",
            "REVOKED",
        ],
    );
    let deadline = revoked_at + Duration::from_secs(5);
    let ended = loop {
        if http_get(&b.metrics, "/metrics").contains("thingkit_revocation_disconnects_total 1") {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "B still serves sensor-2 five seconds after its certificate was revoked through A"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Printed, not asserted (timings are never asserted): the issue asks for under a second.
    println!(
        "B ended the revoked device's connection within {:?} of starting the AWS CLI that revoked it through A (its start-up included; the servers' logs give the gap after the commit)",
        ended - revoked_at
    );
    let _ = subscriber.kill();
    let _ = subscriber.wait();
    std::thread::sleep(Duration::from_millis(1100)); // one CONNECT per second per client ID
    let again = mosquitto("mosquitto_sub", dir.path(), "sensor-2", b.port, "5")
        .args(["-q", "1", "-t", "dt/sensor-2/#", "-W", "3"])
        .output()
        .unwrap();
    assert!(
        !again.status.success(),
        "B accepted a revoked certificate: {again:?}"
    );

    assert!(a.terminate().success());
    assert!(b.terminate().success());

    // Both servers wrote their usage to the cluster's ledger (at shutdown: the day's window is
    // still open), and `thingkit report` with either file sums them.
    let mut db = postgres::Client::connect(&postgres_url(), postgres::NoTls).expect("connect");
    let per_server: Vec<(String, i64)> = db
        .query(
            &format!(
                "SELECT server, sum(messages)::bigint FROM \"{schema}\".usage GROUP BY server ORDER BY server"
            ),
            &[],
        )
        .expect("the usage ledger")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let servers: Vec<&str> = per_server.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(servers, ["server-0", "server-1"], "{per_server:?}");
    assert!(per_server.iter().all(|(_, n)| *n > 0), "{per_server:?}");
    let total: i64 = per_server.iter().map(|(_, n)| n).sum();
    for config in &configs {
        let report = json_of_report(config);
        let messages: u64 = report["usage"]
            .as_array()
            .expect("usage per account")
            .iter()
            .map(|u| u["messages"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(messages, total as u64, "{}", report["usage"]);
    }
}

/// `thingkit report --config CONFIG --format json`.
fn json_of_report(config: &Path) -> serde_json::Value {
    let out = thingkit(
        &["report", "--config", arg(config), "--format", "json"],
        None,
    );
    assert!(out.status.success(), "report: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

#[test]
#[ignore = "needs nats-server (THINGKIT_TEST_NATS) and mosquitto-clients; run by .ci/run"]
#[cfg(unix)]
fn two_servers_route_messages_through_nats_in_both_directions_and_protocol_versions() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared {
        nats: Some((nats_url(), format!("cli{}", std::process::id()))),
        ..Shared::default()
    };
    let configs = cluster_dir(dir.path(), &["sensor-1", "sensor-2"], &shared, 2);
    let a = Server::start(&configs[0]);
    let b = Server::start(&configs[1]);
    crosses(
        dir.path(),
        ("sensor-1", a.port, "311"),
        ("sensor-2", b.port, "5"),
        "21.5",
    );
    // The other way; sensor-2 and sensor-1 connected more than a second ago.
    crosses(
        dir.path(),
        ("sensor-2", b.port, "311"),
        ("sensor-1", a.port, "5"),
        "19.0",
    );
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

/// A provisioning template: the thing `sensor-<SerialNumber>`, the new certificate (active,
/// attached to it) and the `devices` policy.
const TEMPLATE: &str = r#"{
  "Parameters": {"SerialNumber": {"Type": "String"}},
  "Resources": {
    "thing": {"Type": "AWS::IoT::Thing", "Properties": {
      "ThingName": {"Fn::Join": ["-", ["sensor", {"Ref": "SerialNumber"}]]}}},
    "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
      "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}},
    "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "devices"}}
  }
}"#;

/// Fleet provisioning by claim through the server on `port` with `mosquitto_rr` (one
/// connection per request, as the claim certificate `claim`): CreateKeysAndCertificate, then
/// RegisterThing with `serial`. Writes the new device's `devices/<thing>.pem|key`; returns the
/// thing name.
/// Fleet provisioning by claim as two `mosquitto_rr` connections: CreateKeysAndCertificate
/// through the server on `create_port`, RegisterThing through the one on `register_port` (the
/// ownership token is the cluster's). Returns the new thing's name.
fn provision_by_claim(dir: &Path, create_port: u16, register_port: u16, serial: &str) -> String {
    let request = |port: u16, topic: &str, body: &str| -> serde_json::Value {
        let out = mosquitto("mosquitto_rr", dir, "claim", port, "5")
            .args([
                "-q",
                "1",
                "-t",
                topic,
                "-e",
                &format!("{topic}/accepted"),
                "-m",
                body,
                "-W",
                "10",
            ])
            .output()
            .expect("mosquitto_rr is installed (apt install mosquitto-clients)");
        assert!(out.status.success(), "mosquitto_rr {topic}: {out:?}");
        serde_json::from_slice(&out.stdout).expect("a JSON answer")
    };
    let created = request(create_port, "$aws/certificates/create/json", "{}");
    std::thread::sleep(Duration::from_millis(1100)); // one CONNECT per second per client ID
    let registered = request(
        register_port,
        "$aws/provisioning-templates/sensor/provision/json",
        &serde_json::json!({
            "certificateOwnershipToken": created["certificateOwnershipToken"],
            "parameters": {"SerialNumber": serial},
        })
        .to_string(),
    );
    let thing = registered["thingName"]
        .as_str()
        .expect("thingName")
        .to_string();
    std::fs::write(
        dir.join(format!("devices/{thing}.pem")),
        created["certificatePem"].as_str().expect("certificatePem"),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("devices/{thing}.key")),
        created["privateKey"].as_str().expect("privateKey"),
    )
    .unwrap();
    thing
}

#[test]
#[ignore = "needs PostgreSQL (THINGKIT_TEST_POSTGRES), nats-server (THINGKIT_TEST_NATS) and mosquitto-clients; .ci/run runs it"]
#[cfg(unix)]
fn three_servers_on_postgresql_and_nats_act_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared {
        postgres: Some((postgres_url(), fresh_schema("three"))),
        nats: Some((nats_url(), format!("three{}", std::process::id()))),
    };
    let configs = cluster_dir(dir.path(), &["sensor-1", "sensor-2"], &shared, 3);
    // Fleet provisioning by claim on every server: one template, one claim certificate.
    std::fs::write(dir.path().join("sensor-template.json"), TEMPLATE).unwrap();
    let out = thingkit(
        &[
            "cert",
            "create",
            "--ca-dir",
            arg(&dir.path().join("ca")),
            "--common-name",
            "claim",
            "--cert-out",
            arg(&dir.path().join("devices/claim.pem")),
            "--key-out",
            arg(&dir.path().join("devices/claim.key")),
        ],
        None,
    );
    assert!(out.status.success(), "cert create: {}", stderr(&out));
    for config in &configs {
        let text = std::fs::read_to_string(config).unwrap();
        let text = text
            .replace(
                "# templates = { }",
                "templates = { sensor = \"sensor-template.json\" }",
            )
            .replace(
                "# claim_certificates = []",
                "claim_certificates = [\"devices/claim.pem\"]",
            );
        assert!(
            text.contains("\ntemplates = "),
            "the [fleet] example lines moved"
        );
        std::fs::write(config, text).unwrap();
    }
    let servers: Vec<Server> = configs.iter().map(|c| Server::start(c)).collect();

    // Devices on different servers exchange messages, in both protocol versions.
    crosses(
        dir.path(),
        ("sensor-1", servers[0].port, "311"),
        ("sensor-2", servers[2].port, "5"),
        "21.5",
    );
    crosses(
        dir.path(),
        ("sensor-2", servers[1].port, "5"),
        ("sensor-1", servers[2].port, "311"),
        "19.0",
    );

    // A device provisioned by claim through servers 0 (its keys and certificate) and 1 (its
    // thing, with the ownership token server 0 issued) connects through server 2 and its
    // message reaches a subscriber on server 1.
    let thing = provision_by_claim(dir.path(), servers[0].port, servers[1].port, "42");
    assert_eq!(thing, "sensor-42");
    std::thread::sleep(Duration::from_millis(1100));
    crosses(
        dir.path(),
        ("sensor-42", servers[2].port, "5"),
        ("sensor-1", servers[1].port, "5"),
        "provisioned",
    );

    // A shadow updated through server 1 is read through server 2.
    let accepted = shadow_request(
        dir.path(),
        "sensor-2",
        servers[1].port,
        "update",
        r#"{"state":{"reported":{"fw":"1.2"}}}"#,
    );
    assert!(accepted.contains(r#""version":1"#), "{accepted}");
    std::thread::sleep(Duration::from_millis(1100));
    let document = shadow_request(dir.path(), "sensor-2", servers[2].port, "get", "{}");
    assert!(
        document.contains(r#""reported":{"fw":"1.2"}"#),
        "{document}"
    );

    for server in servers {
        assert!(server.terminate().success());
    }
}

/// Whether `child` exits within `wait`.
fn ended_within(child: &mut std::process::Child, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
#[ignore = "needs nats-server (THINGKIT_TEST_NATS) and mosquitto-clients; run by .ci/run"]
#[cfg(unix)]
fn a_connect_on_one_server_takes_the_client_id_over_from_another() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared {
        nats: Some((nats_url(), format!("tko{}", std::process::id()))),
        ..Shared::default()
    };
    let configs = cluster_dir(dir.path(), &["sensor-1", "sensor-2"], &shared, 2);
    let a = Server::start(&configs[0]);
    let b = Server::start(&configs[1]);
    // sensor-1 (MQTT 5) and sensor-2 (3.1.1) connected to A ...
    let mut on_a: Vec<_> = [("sensor-1", "5"), ("sensor-2", "311")]
        .into_iter()
        .map(|(thing, version)| {
            mosquitto("mosquitto_sub", dir.path(), thing, a.port, version)
                .args(["-q", "1", "-t", "dt/#", "-W", "30", "-d"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("mosquitto_sub is installed (apt install mosquitto-clients)")
        })
        .collect();
    // (one CONNECT per second per client ID)
    std::thread::sleep(Duration::from_millis(1100));
    for child in &mut on_a {
        assert!(child.try_wait().unwrap().is_none(), "connected to A");
    }
    // ... then the same client IDs connect to B: A ends both connections.
    for (mut child, (thing, version)) in on_a
        .into_iter()
        .zip([("sensor-1", "5"), ("sensor-2", "311")])
    {
        let status = mosquitto("mosquitto_pub", dir.path(), thing, b.port, version)
            .args(["-q", "1", "-t", &format!("dt/{thing}/x"), "-m", "on b"])
            .status()
            .unwrap();
        assert!(status.success(), "{thing} connects to B: {status:?}");
        if version == "5" {
            // mosquitto_sub exits on a DISCONNECT from the server, and -d logs its reason
            // code: 0x8E (142) Session taken over.
            assert!(
                ended_within(&mut child, Duration::from_secs(5)),
                "A still serves {thing} five seconds after it connected to B"
            );
            let out = child.wait_with_output().unwrap();
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(said.contains("DISCONNECT (142)"), "{said}");
        } else {
            // 3.1.1 has no DISCONNECT from the server: A closes the connection, and
            // mosquitto_sub (which reconnects after a lost connection) sends a second CONNECT.
            std::thread::sleep(Duration::from_millis(1500));
            // SIGTERM: mosquitto_sub exits cleanly and flushes what -d logged.
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let out = child.wait_with_output().unwrap();
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(
                said.matches("sending CONNECT").count() >= 2,
                "A did not close {thing}'s connection: {said}"
            );
        }
    }
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

/// `mosquitto_pub` as `thing` on `port`: one QoS 1 message (returns after the PUBACK).
fn publish_qos1(dir: &Path, thing: &str, port: u16, topic: &str, payload: &str) {
    let status = mosquitto("mosquitto_pub", dir, thing, port, "311")
        .args(["-q", "1", "-t", topic, "-m", payload])
        .status()
        .expect("mosquitto_pub is installed (apt install mosquitto-clients)");
    assert!(status.success(), "mosquitto_pub {payload}: {status:?}");
}

/// `mosquitto_sub -V 5 -c -x 3600` as `thing` on `port`, subscribed to `filter` (QoS 1): the
/// first `count` messages it receives within 20 s (a loaded machine's margin: it returns as
/// soon as it has them), as `topic payload` lines.
fn resume(dir: &Path, thing: &str, port: u16, filter: &str, count: usize) -> Vec<String> {
    let out = mosquitto("mosquitto_sub", dir, thing, port, "5")
        .args([
            "-c", "-x", "3600", "-q", "1", "-t", filter, "-v", "-W", "20",
        ])
        .args(["-C", &count.to_string()])
        .output()
        .expect("mosquitto_sub is installed (apt install mosquitto-clients)");
    assert!(out.status.success(), "mosquitto_sub: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "needs PostgreSQL (THINGKIT_TEST_POSTGRES), nats-server (THINGKIT_TEST_NATS) and mosquitto-clients; run by .ci/run"]
#[cfg(unix)]
fn a_persistent_session_moves_to_the_server_its_device_reconnects_to_even_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared {
        postgres: Some((postgres_url(), fresh_schema("move"))),
        nats: Some((nats_url(), format!("mv{}", std::process::id()))),
    };
    let configs = cluster_dir(dir.path(), &["sensor-1", "sensor-2"], &shared, 2);
    let a = Server::start(&configs[0]);
    let b = Server::start(&configs[1]);
    let topic = "dt/sensor-1/temperature";

    // sensor-2 subscribes (QoS 1, persistent session) on A, and leaves.
    let status = mosquitto("mosquitto_sub", dir.path(), "sensor-2", a.port, "5")
        .args(["-c", "-x", "3600", "-q", "1", "-t", "dt/sensor-1/#", "-E"])
        .status()
        .unwrap();
    assert!(status.success(), "sensor-2 subscribes on A: {status:?}");
    // Published on B while sensor-2 is away: routed to A, queued in sensor-2's session.
    publish_qos1(dir.path(), "sensor-1", b.port, topic, "m1");
    std::thread::sleep(Duration::from_millis(1100));
    publish_qos1(dir.path(), "sensor-1", b.port, topic, "m2");
    std::thread::sleep(Duration::from_millis(500));

    // sensor-2 reconnects to B, subscribing to nothing that matches: what it receives comes
    // from the session it had on A (its queue, then its subscription).
    let got = resume(dir.path(), "sensor-2", b.port, "dt/unrelated", 2);
    assert_eq!(got, [format!("{topic} m1"), format!("{topic} m2")]);

    // Now B owns the session, and sensor-2 is connected to B when it connects to A: B ends
    // that connection (0x8E), stores what it had in flight and releases the session, and A
    // adopts it while the device's new connection waits for its CONNACK.
    std::thread::sleep(Duration::from_millis(1100));
    let mut on_b = live_session(dir.path(), b.port, &["-d"]);
    std::thread::sleep(Duration::from_millis(1100));
    let on_a = live_session(dir.path(), a.port, &["-v", "-C", "1"]);
    assert!(
        ended_within(&mut on_b, Duration::from_secs(5)),
        "B still serves sensor-2 after it connected to A"
    );
    let said = on_b.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&said.stdout).contains("DISCONNECT (142)"),
        "{said:?}"
    );
    // Published on B after the move: routed to A, where the subscription now is.
    publish_qos1(dir.path(), "sensor-1", b.port, topic, "m3");
    let out = on_a.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{topic} m3")
    );

    // Messages queued for sensor-2 on A (one published on A, one on B and routed to A), then
    // A dies without a goodbye.
    std::thread::sleep(Duration::from_millis(1100));
    publish_qos1(dir.path(), "sensor-1", a.port, topic, "m4");
    std::thread::sleep(Duration::from_millis(1100));
    publish_qos1(dir.path(), "sensor-1", b.port, topic, "m5");
    std::thread::sleep(Duration::from_millis(500));
    a.kill9();

    // sensor-2 reconnects to B, which takes the dead server's session over (nobody answers
    // the release) and delivers what A had queued and acknowledged.
    let started = Instant::now();
    let got = resume(dir.path(), "sensor-2", b.port, "dt/unrelated", 2);
    assert_eq!(got, [format!("{topic} m4"), format!("{topic} m5")]);
    println!(
        "sensor-2 got its session back from the killed server within {:?}",
        started.elapsed()
    );
    // And its subscription lives on B: a new message reaches it. (B replayed, from the
    // cluster's stream, what was published from shortly before A's last heartbeat: m3, which
    // sensor-2 had already received from A, may come once more first; QoS 1 allows it.)
    std::thread::sleep(Duration::from_millis(1100));
    let sub = live_session(dir.path(), b.port, &["-v", "-C", "2"]);
    std::thread::sleep(Duration::from_millis(1100));
    publish_qos1(dir.path(), "sensor-1", b.port, topic, "m6");
    std::thread::sleep(Duration::from_millis(1100));
    publish_qos1(dir.path(), "sensor-1", b.port, topic, "m7");
    let out = sub.wait_with_output().unwrap();
    let got = String::from_utf8_lossy(&out.stdout);
    let got: Vec<&str> = got.lines().collect();
    assert!(
        got == [format!("{topic} m3"), format!("{topic} m6")]
            || got == [format!("{topic} m6"), format!("{topic} m7")],
        "{got:?}"
    );
    assert!(b.terminate().success());
}

/// sensor-2 resuming its persistent session on `port` (MQTT 5, subscribed to a filter that
/// matches nothing), running for up to 20 s, with `extra` arguments, stdout piped.
fn live_session(dir: &Path, port: u16, extra: &[&str]) -> std::process::Child {
    mosquitto("mosquitto_sub", dir, "sensor-2", port, "5")
        .args([
            "-c",
            "-x",
            "3600",
            "-q",
            "1",
            "-t",
            "dt/unrelated",
            "-W",
            "20",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub is installed (apt install mosquitto-clients)")
}

/// Three servers on PostgreSQL and NATS (JetStream). `subscriber` (MQTT 5, a persistent
/// session, QoS 1) subscribes to `filter` on A; sensor-1 publishes m1..m150 at QoS 1 through B,
/// one every 40 ms. A is killed a second in, the subscriber with it; two seconds later the
/// subscriber comes back on C (which adopts its session after the release timeout, and
/// replays from the stream) while sensor-1 keeps publishing. Asserts that every message the
/// cluster acknowledged (mosquitto_pub's PUBACKs) reached the subscriber, reading until all
/// arrived or 30 s passed since the last publish, so that a loaded machine's pace does not
/// matter.
fn kill_9_of_the_subscriber_s_server_loses_nothing_acknowledged(
    test: &str,
    subscriber: &str,
    filter: &str,
    policy: Option<&str>,
) {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared {
        postgres: Some((postgres_url(), fresh_schema(test))),
        nats: Some((nats_url(), format!("{test}{}", std::process::id()))),
    };
    let configs = cluster_dir(dir.path(), &["sensor-1", subscriber], &shared, 3);
    if let Some(policy) = policy {
        std::fs::write(dir.path().join("policies/devices.json"), policy).unwrap();
    }
    let a = Server::start(&configs[0]);
    let b = Server::start(&configs[1]);
    let c = Server::start(&configs[2]);
    let topic = "dt/sensor-1/temperature";
    let session = |port: u16, filter: &str| {
        mosquitto("mosquitto_sub", dir.path(), subscriber, port, "5")
            .args(["-c", "-x", "3600", "-q", "1", "-t", filter, "-v"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("mosquitto_sub is installed (apt install mosquitto-clients)")
    };
    let mut on_a = session(a.port, filter);
    let (received, reader) = collect_lines(&mut on_a);
    std::thread::sleep(Duration::from_millis(1500));

    // One connection, one line every 40 ms; `-d` prints each PUBACK.
    const N: usize = 150;
    let mut publisher = mosquitto("mosquitto_pub", dir.path(), "sensor-1", b.port, "311")
        .args(["-q", "1", "-t", topic, "-l", "-d"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = publisher.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        for i in 1..=N {
            writeln!(lines, "m{i}").unwrap();
            std::thread::sleep(Duration::from_millis(40));
        }
    });

    std::thread::sleep(Duration::from_millis(1000));
    a.kill9();
    let _ = on_a.kill();
    let _ = on_a.wait();
    reader.join().unwrap();
    let before: Vec<String> = received.lock().unwrap().clone();
    std::thread::sleep(Duration::from_millis(2000));
    // Back on C with a filter that matches nothing: what arrives is the adopted session's.
    let mut on_c = session(c.port, "dt/unrelated");
    let (after, after_reader) = collect_lines(&mut on_c);
    feeder.join().unwrap();
    let published = publisher.wait_with_output().unwrap();
    assert!(published.status.success(), "mosquitto_pub: {published:?}");

    // Which messages were acknowledged: mosquitto_pub numbers its messages (Mid) from 1, in
    // the order of its lines.
    let log = String::from_utf8_lossy(&published.stdout);
    let acked: Vec<usize> = log
        .lines()
        .filter_map(|l| l.split("received PUBACK (Mid: ").nth(1))
        .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .filter_map(|mid| mid.parse().ok())
        .collect();
    assert_eq!(acked.len(), N, "every message was acknowledged: {log}");
    let received = || -> std::collections::BTreeMap<String, usize> {
        before
            .iter()
            .chain(after.lock().unwrap().iter())
            .fold(Default::default(), |mut m, l| {
                *m.entry(l.clone()).or_default() += 1;
                m
            })
    };
    let missing = |got: &std::collections::BTreeMap<String, usize>| -> Vec<usize> {
        acked
            .iter()
            .copied()
            .filter(|i| !got.contains_key(&format!("{topic} m{i}")))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !missing(&received()).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = on_c.kill();
    let _ = on_c.wait();
    after_reader.join().unwrap();
    let after_lines = after.lock().unwrap().clone();
    let got = received();
    let lost = missing(&got);
    let duplicates: usize = got.values().map(|n| n - 1).sum();
    println!(
        "{subscriber} ({filter}): {} received on A before kill -9, {} on C after; {} duplicates",
        before.len(),
        after_lines.len(),
        duplicates
    );
    assert!(
        before.len() > 5 && before.len() < N / 2,
        "A was killed while messages flowed: {}",
        before.len()
    );
    assert!(
        lost.is_empty(),
        "acknowledged but never delivered: {lost:?}"
    );
    assert!(b.terminate().success());
    assert!(c.terminate().success());
}

#[test]
#[ignore = "needs PostgreSQL (THINGKIT_TEST_POSTGRES), nats-server with JetStream (THINGKIT_TEST_NATS) and mosquitto-clients; run by .ci/run"]
#[cfg(unix)]
fn kill_9_of_a_subscriber_s_server_loses_no_qos_1_message_the_cluster_acknowledged() {
    kill_9_of_the_subscriber_s_server_loses_nothing_acknowledged(
        "kill",
        "sensor-2",
        "dt/sensor-1/#",
        None,
    );
}

#[test]
#[ignore = "needs PostgreSQL (THINGKIT_TEST_POSTGRES), nats-server with JetStream (THINGKIT_TEST_NATS) and mosquitto-clients; run by .ci/run"]
#[cfg(unix)]
fn a_server_restarted_in_place_gets_what_the_cluster_published_while_it_was_down() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared {
        postgres: Some((postgres_url(), fresh_schema("restart"))),
        nats: Some((nats_url(), format!("r{}", std::process::id()))),
    };
    let configs = cluster_dir(dir.path(), &["sensor-1", "sensor-2"], &shared, 2);
    let a = Server::start(&configs[0]);
    let b = Server::start(&configs[1]);
    let topic = "dt/sensor-1/temperature";
    // sensor-2's persistent session (QoS 1) lives on A; the device is away.
    let status = mosquitto("mosquitto_sub", dir.path(), "sensor-2", a.port, "5")
        .args(["-c", "-x", "3600", "-q", "1", "-t", "dt/sensor-1/#", "-E"])
        .status()
        .unwrap();
    assert!(status.success(), "sensor-2 subscribes on A: {status:?}");
    std::thread::sleep(Duration::from_millis(1500));

    // A dies; B acknowledges two messages for sensor-2 while nobody holds its session.
    a.kill9();
    publish_qos1(dir.path(), "sensor-1", b.port, topic, "while-down-1");
    std::thread::sleep(Duration::from_millis(1100));
    publish_qos1(dir.path(), "sensor-1", b.port, topic, "while-down-2");

    // A comes back with the same server id and its sessions, and replays what it missed;
    // sensor-2 reconnects to it.
    let a = Server::start(&configs[0]);
    std::thread::sleep(Duration::from_millis(1500));
    let got = resume(dir.path(), "sensor-2", a.port, "dt/unrelated", 2);
    assert_eq!(
        got,
        [
            format!("{topic} while-down-1"),
            format!("{topic} while-down-2")
        ]
    );
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

/// [`POLICY`] and the jobs device API: devices publish their jobs requests and receive
/// (subscribe to) their jobs topics.
const JOBS_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect",
     "Resource": "arn:aws:iot:eu-central-1:123456789012:client/${iot:Connection.Thing.ThingName}"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": ["arn:aws:iot:eu-central-1:123456789012:topic/$aws/things/${iot:Connection.Thing.ThingName}/jobs/*"]},
    {"Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": ["arn:aws:iot:eu-central-1:123456789012:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/jobs/*"]}
  ]
}"#;

/// A jobs request of `thing` through the server on `port`: publishes `body` on
/// `$aws/things/THING/jobs/OP` and returns the `/accepted` answer (`mosquitto_rr`).
fn jobs_request(dir: &Path, thing: &str, port: u16, op: &str, body: &str) -> String {
    let out = mosquitto("mosquitto_rr", dir, thing, port, "5")
        .args([
            "-q",
            "1",
            "-t",
            &format!("$aws/things/{thing}/jobs/{op}"),
            "-e",
            &format!("$aws/things/{thing}/jobs/{op}/accepted"),
            "-m",
            body,
            "-W",
            "10",
        ])
        .output()
        .expect("mosquitto_rr is installed (apt install mosquitto-clients)");
    assert!(out.status.success(), "mosquitto_rr jobs/{op}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// `mosquitto_sub` as `thing` on `port`, waiting (at most `seconds`) for one message on its
/// `$aws/things/THING/jobs/notify-next`.
fn await_notify_next(dir: &Path, thing: &str, port: u16, seconds: u64) -> std::process::Child {
    let child = mosquitto("mosquitto_sub", dir, thing, port, "5")
        .args([
            "-q",
            "1",
            "-t",
            &format!("$aws/things/{thing}/jobs/notify-next"),
            "-C",
            "1",
            "-W",
            &seconds.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub is installed");
    // The subscription must be in place (and known across the cluster) before the publish.
    std::thread::sleep(Duration::from_millis(1500));
    child
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
#[ignore = "needs PostgreSQL (THINGKIT_TEST_POSTGRES), nats-server (THINGKIT_TEST_NATS), mosquitto-clients and the AWS CLI; .ci/run runs it"]
#[cfg(unix)]
fn a_rollout_created_through_one_server_is_paced_once_and_taken_over_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared {
        postgres: Some((postgres_url(), fresh_schema("jobs"))),
        nats: Some((nats_url(), format!("jobs{}", std::process::id()))),
    };
    let configs = cluster_dir(dir.path(), &["dev-1", "dev-2"], &shared, 2);
    std::fs::write(dir.path().join("policies/devices.json"), JOBS_POLICY).unwrap();
    let a = Server::start(&configs[0]);
    let b = Server::start(&configs[1]);
    let key_a = access_key(&configs[0]);
    let key_b = access_key(&configs[1]);

    // A job of two things, one per minute, created through A; dev-1 waits for it on B.
    let waiting = await_notify_next(dir.path(), "dev-1", b.port, 30);
    aws_iot(
        dir.path(),
        &a,
        &key_a,
        &[
            "create-job",
            "--job-id",
            "ota",
            "--targets",
            "arn:aws:iot:eu-central-1:123456789012:thing/dev-1",
            "arn:aws:iot:eu-central-1:123456789012:thing/dev-2",
            "--document",
            r#"{"op":"update"}"#,
            "--job-executions-rollout-config",
            "maximumPerMinute=1",
        ],
    );
    let out = waiting.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "dev-1 got no notify-next on B: {out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(r#""jobId":"ota""#),
        "{out:?}"
    );

    // dev-1 starts and completes its execution through B.
    let started = json(&jobs_request(
        dir.path(),
        "dev-1",
        b.port,
        "start-next",
        "{}",
    ));
    assert_eq!(started["execution"]["jobId"], "ota", "{started}");
    assert_eq!(started["execution"]["status"], "IN_PROGRESS", "{started}");
    std::thread::sleep(Duration::from_millis(1100)); // one CONNECT per second per client ID
    jobs_request(
        dir.path(),
        "dev-1",
        b.port,
        "ota/update",
        r#"{"status":"SUCCEEDED","expectedVersion":2}"#,
    );

    // Read through A, the job's progress counts what B stored; dev-2 waits for its turn.
    let job = json(&aws_iot(
        dir.path(),
        &a,
        &key_a,
        &["describe-job", "--job-id", "ota"],
    ));
    let details = &job["job"]["jobProcessDetails"];
    assert_eq!(job["job"]["status"], "IN_PROGRESS", "{job}");
    assert_eq!(details["numberOfSucceededThings"], 1, "{job}");
    assert_eq!(details["numberOfQueuedThings"], 0, "{job}");
    assert!(details["processingTargets"].is_array(), "{job}");

    // A dies mid-rollout. B takes the job over once A's lease expired and notifies dev-2 when
    // the rate allows (the minute after it took over, since dev-1 was notified in the minute
    // before): within the lease (15 s), a renewal (5 s) and a minute.
    let waiting = await_notify_next(dir.path(), "dev-2", b.port, 120);
    let killed_at = Instant::now();
    a.kill9();
    let out = waiting.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "B did not take the rollout over: no notify-next for dev-2 {:?} after A was killed",
        killed_at.elapsed()
    );
    println!(
        "B notified dev-2 {:?} after A was killed (lease 15 s, renewed every 5 s, rate 1/min)",
        killed_at.elapsed()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#""jobId":"ota""#));

    // No duplicate executions: one per thing, each the first.
    let executions = json(&aws_iot(
        dir.path(),
        &b,
        &key_b,
        &["list-job-executions-for-job", "--job-id", "ota"],
    ));
    let summaries = executions["executionSummaries"].as_array().unwrap();
    assert_eq!(summaries.len(), 2, "{executions}");
    for s in summaries {
        assert_eq!(
            s["jobExecutionSummary"]["executionNumber"], 1,
            "{executions}"
        );
    }

    // dev-2 finishes through B, which now paces the job and completes it.
    jobs_request(
        dir.path(),
        "dev-2",
        b.port,
        "ota/update",
        r#"{"status":"SUCCEEDED"}"#,
    );
    let job = json(&aws_iot(
        dir.path(),
        &b,
        &key_b,
        &["describe-job", "--job-id", "ota"],
    ));
    assert_eq!(job["job"]["status"], "COMPLETED", "{job}");
    assert_eq!(
        job["job"]["jobProcessDetails"]["numberOfSucceededThings"], 2,
        "{job}"
    );
    assert!(b.terminate().success());
}

/// The cluster policy with shared subscriptions allowed: `$share/<any group>/dt/...`.
const SHARED_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect",
     "Resource": "arn:aws:iot:eu-central-1:123456789012:client/${iot:Connection.Thing.ThingName}"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": "arn:aws:iot:eu-central-1:123456789012:topic/dt/*"},
    {"Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": ["arn:aws:iot:eu-central-1:123456789012:topicfilter/dt/*",
                  "arn:aws:iot:eu-central-1:123456789012:topicfilter/$share/*"]}
  ]
}"#;

/// Reads `child`'s stdout lines into a shared list on a thread of its own.
fn collect_lines(
    child: &mut std::process::Child,
) -> (
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    std::thread::JoinHandle<()>,
) {
    use std::io::{BufRead, BufReader};
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stdout = child.stdout.take().expect("stdout is piped");
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        })
    };
    (lines, reader)
}

#[test]
#[ignore = "needs nats-server with JetStream (THINGKIT_TEST_NATS) and mosquitto-clients; run by .ci/run"]
#[cfg(unix)]
fn a_shared_subscription_with_members_on_two_servers_gets_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared {
        nats: Some((nats_url(), format!("share{}", std::process::id()))),
        ..Shared::default()
    };
    let configs = cluster_dir(
        dir.path(),
        &["sensor-1", "worker-a", "worker-b"],
        &shared,
        2,
    );
    std::fs::write(dir.path().join("policies/devices.json"), SHARED_POLICY).unwrap();
    let a = Server::start(&configs[0]);
    let b = Server::start(&configs[1]);

    // One group, `workers`: a member on A and a member on B (mosquitto_sub, MQTT 5, QoS 1).
    let member = |thing: &str, port: u16| {
        mosquitto("mosquitto_sub", dir.path(), thing, port, "5")
            .args(["-q", "1", "-t", "$share/workers/dt/#", "-v"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("mosquitto_sub is installed (apt install mosquitto-clients)")
    };
    let mut on_a = member("worker-a", a.port);
    let mut on_b = member("worker-b", b.port);
    let (got_a, reader_a) = collect_lines(&mut on_a);
    let (got_b, reader_b) = collect_lines(&mut on_b);
    std::thread::sleep(Duration::from_millis(1500));

    // sensor-1 publishes m1..m{N} at QoS 1 on A (MQTT 3.1.1, one connection, one per line).
    const N: usize = 200;
    let lines: String = (1..=N).map(|i| format!("m{i}\n")).collect();
    let input = dir.path().join("lines.txt");
    std::fs::write(&input, lines).unwrap();
    let published = mosquitto("mosquitto_pub", dir.path(), "sensor-1", a.port, "311")
        .args(["-q", "1", "-t", "dt/sensor-1/temperature", "-l"])
        .stdin(std::fs::File::open(&input).unwrap())
        .status()
        .expect("mosquitto_pub is installed");
    assert!(published.success(), "mosquitto_pub: {published:?}");

    let total = || got_a.lock().unwrap().len() + got_b.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(20);
    while total() < N && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // A little longer: a duplicate would arrive after the last original.
    std::thread::sleep(Duration::from_millis(500));
    for child in [&mut on_a, &mut on_b] {
        let _ = child.kill();
        let _ = child.wait();
    }
    reader_a.join().unwrap();
    reader_b.join().unwrap();
    let (got_a, got_b) = (got_a.lock().unwrap().clone(), got_b.lock().unwrap().clone());
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for line in got_a.iter().chain(&got_b) {
        *seen.entry(line.clone()).or_default() += 1;
    }
    println!(
        "member on A: {}, member on B: {}, distinct {}",
        got_a.len(),
        got_b.len(),
        seen.len()
    );
    let missing: Vec<usize> = (1..=N)
        .filter(|i| !seen.contains_key(&format!("dt/sensor-1/temperature m{i}")))
        .collect();
    assert!(
        missing.is_empty(),
        "never delivered to the group: {missing:?}"
    );
    let twice: Vec<&String> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(l, _)| l)
        .collect();
    assert!(
        twice.is_empty(),
        "delivered to the group more than once: {twice:?}"
    );
    assert_eq!(seen.len(), N, "nothing else was delivered: {seen:?}");
    // Both members take a share: the group spans the servers (with 200 messages, one member
    // getting all of them by chance has a probability of 2^-199).
    assert!(
        !got_a.is_empty() && !got_b.is_empty(),
        "one member got everything: A {}, B {}",
        got_a.len(),
        got_b.len()
    );
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

#[test]
#[ignore = "needs PostgreSQL (THINGKIT_TEST_POSTGRES) and the AWS CLI; run by .ci/run"]
#[cfg(unix)]
fn control_plane_writes_a_server_acknowledged_survive_its_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared {
        postgres: Some((postgres_url(), fresh_schema("ctl_kill"))),
        ..Shared::default()
    };
    let configs = cluster_dir(dir.path(), &["sensor-1", "sensor-2"], &shared, 2);
    let a = Server::start(&configs[0]);
    let b = Server::start(&configs[1]);
    let key = access_key(&configs[0]);

    // Through A, back to back: a thing, a policy, a topic rule, a provisioning template, a job
    // and a job template; A is killed the moment the last 200 arrives.
    let rule = serde_json::json!({
        "sql": "SELECT * FROM 'dt/+/temperature'",
        "actions": [{"republish": {
            "topic": "dt/republished/kept",
            "roleArn": "arn:aws:iam::123456789012:role/republish",
        }}],
    })
    .to_string();
    let template = TEMPLATE.to_string();
    let writes: Vec<Vec<&str>> = vec![
        vec!["create-thing", "--thing-name", "made-before-kill"],
        vec![
            "create-policy",
            "--policy-name",
            "made-before-kill",
            "--policy-document",
            POLICY,
        ],
        vec![
            "create-topic-rule",
            "--rule-name",
            "made_before_kill",
            "--topic-rule-payload",
            &rule,
        ],
        vec![
            "create-provisioning-template",
            "--template-name",
            "made-before-kill",
            "--provisioning-role-arn",
            "arn:aws:iam::123456789012:role/provisioning",
            "--template-body",
            &template,
        ],
        vec![
            "create-job",
            "--job-id",
            "made-before-kill",
            "--targets",
            "arn:aws:iot:eu-central-1:123456789012:thing/sensor-1",
            "--document",
            r#"{"op":"reboot"}"#,
        ],
        vec![
            "create-job-template",
            "--job-template-id",
            "made-before-kill",
            "--description",
            "a job template",
            "--document",
            r#"{"op":"update"}"#,
        ],
    ];
    for args in &writes {
        aws_iot(dir.path(), &a, &key, args);
    }
    a.kill9();

    // Every one of them is there, through B and through A restarted on its own data.
    let reads: [&[&str]; 6] = [
        &["describe-thing", "--thing-name", "made-before-kill"],
        &["get-policy", "--policy-name", "made-before-kill"],
        &["get-topic-rule", "--rule-name", "made_before_kill"],
        &[
            "describe-provisioning-template",
            "--template-name",
            "made-before-kill",
        ],
        &["describe-job", "--job-id", "made-before-kill"],
        &[
            "describe-job-template",
            "--job-template-id",
            "made-before-kill",
        ],
    ];
    let restarted = Server::start(&configs[0]);
    for server in [&b, &restarted] {
        for args in reads {
            let answer = aws_iot(dir.path(), server, &key, args);
            assert!(
                answer.contains("made-before-kill") || answer.contains("made_before_kill"),
                "aws iot {}: {answer}",
                args.join(" ")
            );
        }
    }
    assert!(b.terminate().success());
    assert!(restarted.terminate().success());
}

#[test]
#[ignore = "needs PostgreSQL (THINGKIT_TEST_POSTGRES), nats-server with JetStream (THINGKIT_TEST_NATS) and mosquitto-clients; run by .ci/run"]
#[cfg(unix)]
fn kill_9_of_a_shared_member_s_server_loses_no_qos_1_message_the_cluster_acknowledged() {
    // The group `workers` has one member, worker-a. While A is dead and worker-a not yet
    // back, the group has no member anywhere and NATS hands its messages to no server: only
    // the stream has them, and C's replay brings them (without it, about 100 of 150 were lost).
    kill_9_of_the_subscriber_s_server_loses_nothing_acknowledged(
        "share_kill",
        "worker-a",
        "$share/workers/dt/#",
        Some(SHARED_POLICY),
    );
}
