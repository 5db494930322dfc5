//! `thingkit jobs ...` against a real `thingkit serve`: `thingkit init`, one registered device
//! (`[[device]]`), an access key, then a job created for it from a document on stdin,
//! described, listed, its execution listed and described, its document read back, canceled
//! and force-deleted over HTTPS with SigV4; and a refusal (an unknown thing) as the AWS error.

use std::path::Path;

mod common;
use common::{Server, access_key, arg, json_of, stderr, thingkit, thingkit_with_key};

/// `thingkit init DIR`, every listener on an ephemeral port, and the device `lamp-1`.
fn init(dir: &Path) {
    let out = thingkit(&["init", arg(dir)], None);
    assert!(out.status.success(), "init: {}", stderr(&out));
    std::fs::create_dir_all(dir.join("devices")).unwrap();
    let out = thingkit(
        &[
            "cert",
            "create",
            "--ca-dir",
            arg(&dir.join("ca")),
            "--common-name",
            "lamp-1",
            "--cert-out",
            arg(&dir.join("devices/lamp-1.pem")),
            "--key-out",
            arg(&dir.join("devices/lamp-1.key")),
        ],
        None,
    );
    assert!(out.status.success(), "cert create: {}", stderr(&out));
    let path = dir.join("thingkit.toml");
    let mut config = std::fs::read_to_string(&path).unwrap();
    for port in ["8883", "9090", "8443"] {
        config = config.replace(
            &format!("# listen = \"127.0.0.1:{port}\""),
            "listen = \"127.0.0.1:0\"",
        );
    }
    config.push_str("\n[[device]]\nthing = \"lamp-1\"\ncertificate = \"devices/lamp-1.pem\"\n");
    std::fs::write(path, config).unwrap();
}

#[test]
#[cfg(unix)]
fn jobs_commands_create_describe_list_cancel_and_delete_over_the_signed_api() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let config = dir.path().join("thingkit.toml");
    let key = access_key(&config);
    let key = (key.0.as_str(), key.1.as_str());
    let server = Server::start(&config);
    let endpoint = format!("https://localhost:{}", server.api_port());
    // The configuration file for the CA bundle, region and account; --endpoint for the port.
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut all: Vec<&str> = vec!["jobs"];
        all.extend(args);
        all.extend(["--config", arg(&config), "--endpoint", endpoint.as_str()]);
        thingkit_with_key(&all, Some(key), stdin)
    };

    let document = r#"{"operation":"reboot"}"#;
    let created = json_of(&run(
        &[
            "create",
            "--job-id",
            "reboot-1",
            "--thing",
            "lamp-1",
            "--document",
            "-",
        ],
        Some(document),
    ));
    assert_eq!(
        created["jobArn"], "arn:aws:iot:eu-central-1:123456789012:job/reboot-1",
        "{created}"
    );
    let described = json_of(&run(&["describe", "--job-id", "reboot-1"], None));
    assert_eq!(described["job"]["status"], "IN_PROGRESS", "{described}");
    assert_eq!(
        described["job"]["targets"][0],
        "arn:aws:iot:eu-central-1:123456789012:thing/lamp-1"
    );
    let listed = json_of(&run(&["list", "--status", "IN_PROGRESS"], None));
    assert_eq!(listed["jobs"][0]["jobId"], "reboot-1", "{listed}");
    let executions = json_of(&run(&["list-executions", "--thing", "lamp-1"], None));
    assert_eq!(
        executions["executionSummaries"][0]["jobId"], "reboot-1",
        "{executions}"
    );
    let execution = json_of(&run(
        &[
            "describe-execution",
            "--job-id",
            "reboot-1",
            "--thing",
            "lamp-1",
        ],
        None,
    ));
    assert_eq!(execution["execution"]["status"], "QUEUED", "{execution}");
    let doc = json_of(&run(&["get-document", "--job-id", "reboot-1"], None));
    assert_eq!(doc["document"], document);

    // A firmware job: the image goes to the server's streams, the envelope into the document.
    std::fs::write(dir.path().join("fw.suit"), [0xd8, 0x6b, 0xa1, 0x01]).unwrap();
    std::fs::write(dir.path().join("fw.bin"), vec![0x5a; 10_000]).unwrap();
    let envelope = dir.path().join("fw.suit");
    let image = dir.path().join("fw.bin");
    json_of(&run(
        &[
            "create",
            "--job-id",
            "fw-2",
            "--thing",
            "lamp-1",
            "--envelope",
            arg(&envelope),
            "--image",
            arg(&image),
        ],
        None,
    ));
    let doc = json_of(&run(&["get-document", "--job-id", "fw-2"], None));
    let text = doc["document"].as_str().unwrap();
    let firmware: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(firmware["operation"], "thingkit-firmware-update", "{text}");
    assert_eq!(firmware["suit"]["envelope"], "2GuhAQ==", "{text}");
    assert_eq!(firmware["suit"]["image"]["streamId"], "fw-2", "{text}");
    assert_eq!(firmware["suit"]["image"]["size"], 10_000, "{text}");
    let served = std::fs::read(dir.path().join("data/streams/fw-2/0")).unwrap();
    assert_eq!(served, vec![0x5a; 10_000]);
    json_of(&run(&["delete", "--job-id", "fw-2", "--force"], None));
    json_of(&run(
        &[
            "cancel",
            "--job-id",
            "reboot-1",
            "--reason-code",
            "OPERATOR",
        ],
        None,
    ));
    let canceled = json_of(&run(&["describe", "--job-id", "reboot-1"], None));
    assert_eq!(canceled["job"]["status"], "CANCELED", "{canceled}");
    assert_eq!(
        json_of(&run(&["delete", "--job-id", "reboot-1", "--force"], None)),
        serde_json::json!({})
    );

    let refused = run(
        &[
            "create",
            "--job-id",
            "reboot-2",
            "--thing",
            "ghost",
            "--document",
            "-",
        ],
        Some(document),
    );
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).starts_with("thingkit: ResourceNotFoundException (404): "),
        "{}",
        stderr(&refused)
    );
    assert!(server.terminate().success());
}

#[test]
fn jobs_create_needs_a_target_and_a_document() {
    let out = thingkit(
        &[
            "jobs",
            "create",
            "--job-id",
            "j",
            "--document",
            "-",
            "--endpoint",
            "https://localhost:1",
            "--ca-bundle",
            "/nonexistent",
            "--region",
            "eu-central-1",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("a job needs a target"),
        "{}",
        stderr(&out)
    );
}
