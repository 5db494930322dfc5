//! The fleet dashboard of a real `thingkit serve`, read by Debian's headless Chromium: three
//! registered things, two of them connected with mosquitto_sub, and an `iot:*` policy the audit
//! flags. The page must show "2 of 3" connected and the open findings count of
//! `/dashboard.json`, and Chromium's console must log no error. Without credentials the page
//! is 401; with a key whose policy does not allow `iot:DescribeAuditTask`, 403.
//!
//! Needs `/usr/bin/chromium` and mosquitto-clients (`.ci/run` installs both); the test fails,
//! never skips, when either is missing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

const POLICY: &str = r#"{"Version": "2012-10-17",
  "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}"#;

const THINGS: [&str; 3] = ["sensor-1", "sensor-2", "sensor-3"];

fn fleet(dir: &Path) {
    fleet_dir(dir, &THINGS, POLICY);
}

/// A mosquitto_sub that stays connected as `thing`.
fn subscriber(dir: &Path, thing: &str, port: u16) -> Child {
    Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", "5"])
        .arg("--cafile")
        .arg(dir.join("ca/ca.pem"))
        .arg("--cert")
        .arg(dir.join(format!("devices/{thing}.pem")))
        .arg("--key")
        .arg(dir.join(format!("devices/{thing}.key")))
        .args(["-i", thing, "-t", "dt/#"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub is installed (apt install mosquitto-clients)")
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Chromium's `--dump-dom` of `url`: (DOM, stderr).
fn chromium(profile: &Path, url: &str, dump: &str) -> (String, String) {
    let out = Command::new("/usr/bin/chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--ignore-certificate-errors",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(dump)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("chromium is installed at /usr/bin/chromium (apt install chromium)");
    assert!(out.status.success(), "chromium: {:?}", out.status);
    (stdout(&out), stderr(&out))
}

fn console_errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            (l.contains("CONSOLE") && (l.contains("ERROR") || l.contains(":ERROR:")))
                || l.contains("Uncaught")
        })
        .collect()
}

#[test]
#[cfg(unix)]
#[ignore = "needs chromium and mosquitto-clients; run by .ci/run with --ignored"]
fn chromium_shows_the_fleet_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path());
    let config = dir.path().join("thingkit.toml");
    let (id, secret) = access_key(&config);
    let limited = dir.path().join("limited.json");
    std::fs::write(
        &limited,
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:ListThings", "Resource": "*"}]}"#,
    )
    .unwrap();
    let key = json_of(&thingkit(
        &[
            "access-key",
            "create",
            "--config",
            arg(&config),
            "--policy",
            arg(&limited),
        ],
        None,
    ));
    let (limited_id, limited_secret) = (
        key["AccessKeyId"].as_str().unwrap().to_string(),
        key["SecretAccessKey"].as_str().unwrap().to_string(),
    );

    let server = Server::start(&config);
    let mut subs = vec![
        subscriber(dir.path(), "sensor-1", server.port),
        subscriber(dir.path(), "sensor-2", server.port),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if http_get(&server.metrics, "/metrics").contains("thingkit_connections 2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "two devices connected within 20 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let port = server.api_port();
    let profile = tempfile::tempdir().unwrap();
    let url = |user: &str, password: &str, path: &str| {
        format!(
            "https://{}:{}@localhost:{port}{path}",
            percent(user),
            percent(password)
        )
    };
    let (json, _) = chromium(
        profile.path(),
        &url(&id, &secret, "/dashboard.json"),
        "--dump-dom",
    );
    let start = json.find('{').expect("JSON in the page");
    let end = json.rfind('}').expect("JSON in the page");
    let report: serde_json::Value =
        serde_json::from_str(&html_unescape(&json[start..=end])).expect("the report is JSON");
    assert_eq!(report["things_registered"], 3, "{report}");
    assert_eq!(report["things_connected"], 2, "{report}");
    assert_eq!(
        report["metrics"]["maintenance_cost_nano_usd"], 0,
        "no jobs, no firmware"
    );
    let findings = report["findings"].as_array().unwrap().len();
    assert!(findings >= 1, "the iot:* policy is flagged: {report}");

    let (page, log) = chromium(
        profile.path(),
        &url(&id, &secret, "/dashboard"),
        "--dump-dom",
    );
    assert!(page.contains("<b id=\"connected\">2 of 3</b>"), "{page}");
    assert!(
        page.contains(&format!("<b id=\"findings-count\">{findings}</b>")),
        "{page}"
    );
    assert!(
        page.contains("IOT_POLICY_OVERLY_PERMISSIVE_CHECK"),
        "{page}"
    );
    assert!(console_errors(&log).is_empty(), "console errors: {log}");

    // Refusals, read with a plain HTTPS client trusting the server's CA.
    let ca = std::fs::read_to_string(dir.path().join("ca/ca.pem")).unwrap();
    let status = |auth: Option<(&str, &str)>| https_status(&ca, port, "/dashboard", auth);
    assert_eq!(status(None), 401);
    assert_eq!(status(Some((&id, "wrong-secret"))), 401);
    assert_eq!(status(Some(("AKIANOSUCHKEY", &secret))), 401);
    assert_eq!(status(Some((&limited_id, &limited_secret))), 403);
    assert_eq!(status(Some((&id, &secret))), 200);
    for sub in &mut subs {
        let _ = sub.kill();
        let _ = sub.wait();
    }
    assert!(server.terminate().success());
}

/// Undoes the escaping Chromium's DOM dump applies to a text document shown as HTML.
fn html_unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The status of `GET path` over HTTPS to localhost:`port` (trusting `ca_pem`), with Basic
/// credentials when given.
fn https_status(ca_pem: &str, port: u16, path: &str, auth: Option<(&str, &str)>) -> u16 {
    use base64::Engine as _;
    use std::io::{Read, Write};
    use std::sync::Arc;
    let mut roots = rustls::RootCertStore::empty();
    for (_, der) in thingkit_provision::decode_pem_blocks(ca_pem).unwrap() {
        roots.add(der.into()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let authorization = auth
        .map(|(u, p)| {
            format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        })
        .unwrap_or_default();
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{authorization}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"))
}
