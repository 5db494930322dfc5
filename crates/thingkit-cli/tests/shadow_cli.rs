//! `thingkit shadow get|update|delete|list` against a real `thingkit serve` (no external peer):
//! `thingkit init`, an access key, the server on ephemeral ports, then the shadow commands over
//! HTTPS with SigV4, and the refusals (a deleted shadow, a wrong secret, no credentials).

use std::path::Path;
use std::process::Output;

mod common;
use common::{Server, access_key, arg, json_of, stderr, stdout, thingkit, thingkit_with_key};

/// `thingkit init DIR` with every listener on an ephemeral port of 127.0.0.1.
fn init(dir: &Path) {
    let out = thingkit(&["init", arg(dir)], None);
    assert!(out.status.success(), "init: {}", stderr(&out));
    let path = dir.join("thingkit.toml");
    let mut config = std::fs::read_to_string(&path).unwrap();
    for port in ["8883", "9090", "8443"] {
        let commented = format!("# listen = \"127.0.0.1:{port}\"");
        assert!(config.contains(&commented), "the example has {commented}");
        config = config.replace(&commented, "listen = \"127.0.0.1:0\"");
    }
    std::fs::write(path, config).unwrap();
}

/// `thingkit shadow ARGS` with the access key `(id, secret)` in the environment (or none).
fn shadow(args: &[&str], key: Option<(&str, &str)>, stdin: Option<&str>) -> Output {
    let args: Vec<&str> = std::iter::once("shadow")
        .chain(args.iter().copied())
        .collect();
    thingkit_with_key(&args, key, stdin)
}

#[test]
#[cfg(unix)]
fn shadow_commands_get_update_list_and_delete_over_the_signed_api() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let config = dir.path().join("thingkit.toml");
    let (id, secret) = access_key(&config);
    let key = Some((id.as_str(), secret.as_str()));
    let server = Server::start(&config);
    let endpoint = format!("https://localhost:{}", server.api_port());
    let ca = dir.path().join("ca/ca.pem");
    // Explicit flags, no configuration file.
    let explicit = [
        "--endpoint",
        endpoint.as_str(),
        "--ca-bundle",
        arg(&ca),
        "--region",
        "eu-central-1",
    ];
    // The configuration file for the CA bundle and the region; --endpoint for the port it
    // chose at start.
    let from_config = ["--config", arg(&config), "--endpoint", endpoint.as_str()];
    let with = |cmd: &str, flags: &[&str], more: &[&str]| -> Vec<String> {
        [cmd]
            .iter()
            .chain(flags)
            .chain(more)
            .map(|s| s.to_string())
            .collect()
    };
    let run = |args: Vec<String>, key: Option<(&str, &str)>, stdin: Option<&str>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        shadow(&args, key, stdin)
    };

    let payload = r#"{"state":{"desired":{"on":true}}}"#;
    let updated = json_of(&run(
        with(
            "update",
            &explicit,
            &["--thing", "lamp-1", "--payload", payload],
        ),
        key,
        None,
    ));
    assert_eq!(updated["state"]["desired"]["on"], true, "{updated}");
    assert_eq!(updated["version"], 1, "{updated}");

    let got = json_of(&run(
        with("get", &from_config, &["--thing", "lamp-1"]),
        key,
        None,
    ));
    assert_eq!(got["state"]["delta"]["on"], true, "{got}");
    assert_eq!(got["state"]["desired"]["on"], true, "{got}");

    // A named shadow, its document from stdin.
    let named = json_of(&run(
        with(
            "update",
            &from_config,
            &["--thing", "lamp-1", "--name", "config"],
        ),
        key,
        Some(r#"{"state":{"reported":{"interval":60}}}"#),
    ));
    assert_eq!(named["state"]["reported"]["interval"], 60, "{named}");

    let listed = json_of(&run(
        with("list", &explicit, &["--thing", "lamp-1"]),
        key,
        None,
    ));
    assert_eq!(listed, serde_json::json!({"results": ["config"]}));

    let deleted = json_of(&run(
        with("delete", &explicit, &["--thing", "lamp-1"]),
        key,
        None,
    ));
    assert!(deleted["version"].is_u64(), "{deleted}");

    let gone = run(with("get", &explicit, &["--thing", "lamp-1"]), key, None);
    assert_eq!(gone.status.code(), Some(1), "{}", stderr(&gone));
    assert!(stdout(&gone).is_empty());
    let err = stderr(&gone);
    assert!(
        err.starts_with(
            "thingkit: ResourceNotFoundException (404): No shadow exists with name: 'lamp-1'"
        ),
        "{err}"
    );
    // The named shadow is still there.
    let still = json_of(&run(
        with("get", &explicit, &["--thing", "lamp-1", "--name", "config"]),
        key,
        None,
    ));
    assert_eq!(still["state"]["reported"]["interval"], 60, "{still}");

    let wrong = run(
        with("get", &explicit, &["--thing", "lamp-1", "--name", "config"]),
        Some((id.as_str(), "not-the-secret")),
        None,
    );
    assert_eq!(wrong.status.code(), Some(1), "{}", stderr(&wrong));
    let err = stderr(&wrong);
    assert!(
        err.starts_with("thingkit: InvalidSignatureException (403): "),
        "{err}"
    );

    // A region the server does not serve is refused too.
    let region = run(
        with(
            "get",
            &["--config", arg(&config), "--endpoint", endpoint.as_str()],
            &["--thing", "lamp-1", "--region", "us-east-1"],
        ),
        key,
        None,
    );
    assert_eq!(region.status.code(), Some(1), "{}", stderr(&region));

    // A server certificate from a CA the bundle does not hold is not trusted.
    let other = tempfile::tempdir().unwrap();
    let out = thingkit(&["ca", "init", "--dir", arg(other.path())], None);
    assert!(out.status.success(), "ca init: {}", stderr(&out));
    let untrusted = run(
        with(
            "get",
            &[
                "--endpoint",
                endpoint.as_str(),
                "--ca-bundle",
                arg(&other.path().join("ca.pem")),
                "--region",
                "eu-central-1",
            ],
            &["--thing", "lamp-1"],
        ),
        key,
        None,
    );
    assert_eq!(untrusted.status.code(), Some(1), "{}", stderr(&untrusted));
    assert!(stderr(&untrusted).starts_with("thingkit: "));

    let status = server.terminate();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}

#[test]
fn shadow_without_credentials_exits_1_naming_the_variables() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "").unwrap();
    let out = shadow(
        &[
            "get",
            "--thing",
            "lamp-1",
            "--endpoint",
            "https://localhost:1",
            "--ca-bundle",
            arg(&ca),
            "--region",
            "eu-central-1",
        ],
        None,
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(
            "thingkit: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ),
        "{err}"
    );
}

#[test]
fn shadow_without_config_or_endpoint_is_a_usage_error() {
    let out = shadow(
        &["get", "--thing", "lamp-1"],
        Some(("AKID", "secret")),
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--endpoint"), "{}", stderr(&out));
}

/// A shadow update the API answered 200 is in the store before the answer: it survives
/// `kill -9` of the server, with its version.
#[test]
#[cfg(unix)]
fn an_update_answered_over_https_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let config = dir.path().join("thingkit.toml");
    let (id, secret) = access_key(&config);
    let key = Some((id.as_str(), secret.as_str()));
    let ca = dir.path().join("ca/ca.pem");
    let flags = |server: &Server| -> Vec<String> {
        vec![
            "--endpoint".into(),
            format!("https://localhost:{}", server.api_port()),
            "--ca-bundle".into(),
            arg(&ca).to_string(),
            "--region".into(),
            "eu-central-1".into(),
            "--thing".into(),
            "lamp-9".into(),
        ]
    };
    let server = Server::start(&config);
    let mut args = vec!["update".to_string()];
    args.extend(flags(&server));
    args.extend([
        "--payload".into(),
        r#"{"state":{"reported":{"on":true}}}"#.into(),
    ]);
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let updated = json_of(&shadow(&args_ref, key, None));
    assert_eq!(updated["version"], 1);
    server.kill9();

    let server = Server::start(&config);
    let mut args = vec!["get".to_string()];
    args.extend(flags(&server));
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let got = json_of(&shadow(&args_ref, key, None));
    assert_eq!(got["state"]["reported"]["on"], true);
    assert_eq!(got["version"], 1);
    assert!(server.terminate().success());
}
