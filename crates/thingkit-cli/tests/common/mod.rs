//! Helpers shared by the `thingkit` CLI integration tests (each test file includes this module;
//! not every file uses every helper).
#![allow(dead_code)]

pub mod cluster;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the real `thingkit` binary with `args`, writing `stdin` to it (or closing its stdin at
/// once), and returns what it printed and its exit status.
pub fn thingkit(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_thingkit"));
    cmd.args(args);
    run(cmd, stdin)
}

/// Runs `cmd` with piped stdio, writing `stdin` to it (or closing its stdin at once).
fn run(mut cmd: Command, stdin: Option<&str>) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the thingkit binary runs");
    {
        let mut input = child.stdin.take().expect("stdin is piped");
        if let Some(text) = stdin {
            input
                .write_all(text.as_bytes())
                .expect("thingkit reads stdin");
        }
    }
    child.wait_with_output().expect("thingkit finishes")
}

/// `thingkit ARGS` with the access key `(id, secret)` in the environment (or no credentials at
/// all), writing `stdin` to it.
pub fn thingkit_with_key(args: &[&str], key: Option<(&str, &str)>, stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_thingkit"));
    cmd.args(args)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    if let Some((id, secret)) = key {
        cmd.env("AWS_ACCESS_KEY_ID", id)
            .env("AWS_SECRET_ACCESS_KEY", secret);
    }
    run(cmd, stdin)
}

/// The JSON a successful command printed on one line.
pub fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        stderr(out)
    );
    let text = stdout(out);
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `thingkit access-key create --config CONFIG`: (AccessKeyId, SecretAccessKey).
pub fn access_key(config: &Path) -> (String, String) {
    let key = json_of(&thingkit(
        &["access-key", "create", "--config", arg(config)],
        None,
    ));
    (
        key["AccessKeyId"].as_str().unwrap().to_string(),
        key["SecretAccessKey"].as_str().unwrap().to_string(),
    )
}

/// What the command printed on stdout.
pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

/// What the command printed on stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("stderr is UTF-8")
}

/// A path as a command-line argument.
pub fn arg(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// A running `thingkit serve`, the MQTT port and the metrics address its listening lines named.
pub struct Server {
    /// The server process.
    pub child: Child,
    /// The MQTT port.
    pub port: u16,
    /// The metrics endpoint (host:port).
    pub metrics: String,
    /// The control-plane API's address (host:port).
    pub api: String,
}

impl Server {
    /// Starts `thingkit serve --config CONFIG` and reads its three listening lines.
    pub fn start(config: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_thingkit"))
            .args(["serve", "--config", arg(config)])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("thingkit serve runs");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let _ = tx.send(line.unwrap_or_default());
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a listening line within 30 s");
        let addr = line
            .strip_prefix("mqtt listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        let port = addr.rsplit(':').next().unwrap().parse().unwrap();
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a metrics line within 30 s");
        let metrics = line
            .strip_prefix("metrics listening on http://")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("unexpected second line: {line:?}"))
            .to_string();
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("an api line within 30 s");
        let api = line
            .strip_prefix("api listening on https://")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected third line: {line:?}"))
            .to_string();
        Server {
            child,
            port,
            metrics,
            api,
        }
    }

    /// SIGTERM, then the exit status within 10 s.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Server {
    /// SIGKILL: no goodbye, no flush, nothing but what was already durable.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("the killed server is reaped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

impl Server {
    /// The control-plane API's port.
    pub fn api_port(&self) -> u16 {
        self.api
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the api line names a port")
    }
}

/// `thingkit init DIR`, a device certificate per thing in `things` (`devices/<thing>.pem`), the
/// policy `policy` (`policies/devices.json`) and a `thingkit.toml` that registers them and listens
/// on ephemeral ports (MQTT, metrics, API). Paths in the config are relative (to the file).
pub fn fleet_dir(dir: &Path, things: &[&str], policy: &str) {
    let out = thingkit(&["init", arg(dir)], None);
    assert!(out.status.success(), "init: {}", stderr(&out));
    std::fs::create_dir_all(dir.join("devices")).unwrap();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    let mut devices = String::new();
    for thing in things {
        let out = thingkit(
            &[
                "cert",
                "create",
                "--ca-dir",
                arg(&dir.join("ca")),
                "--common-name",
                thing,
                "--cert-out",
                arg(&dir.join(format!("devices/{thing}.pem"))),
                "--key-out",
                arg(&dir.join(format!("devices/{thing}.key"))),
            ],
            None,
        );
        assert!(out.status.success(), "cert create: {}", stderr(&out));
        devices.push_str(&format!(
            "\n[[device]]\nthing = \"{thing}\"\ncertificate = \"devices/{thing}.pem\"\n"
        ));
    }
    std::fs::write(dir.join("policies/devices.json"), policy).unwrap();
    let mut config = std::fs::read_to_string(dir.join("thingkit.toml")).unwrap();
    config = config.replace("# listen = \"127.0.0.1:8883\"", "listen = \"127.0.0.1:0\"");
    config = config.replace("# dir = \"policies\"", "dir = \"policies\"");
    config = config.replace("# listen = \"127.0.0.1:9090\"", "listen = \"127.0.0.1:0\"");
    config = config.replace("# listen = \"127.0.0.1:8443\"", "listen = \"127.0.0.1:0\"");
    config.push_str(&devices);
    std::fs::write(dir.join("thingkit.toml"), config).unwrap();
}

/// GET `path` from `addr` with a plain HTTP/1.1 request; the whole response.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("the metrics endpoint accepts");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// `mosquitto_pub`, `mosquitto_sub` or `mosquitto_rr` connecting as `thing` to `port`
/// with MQTT `version` ("5" or "311") and its certificate `devices/<thing>.pem|key` in `dir`.
pub fn mosquitto(program: &str, dir: &Path, thing: &str, port: u16, version: &str) -> Command {
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

/// A shadow request of `thing` through the server on `port`: publishes `body` on
/// `$aws/things/THING/shadow/OP` and returns the first `/accepted` answer (`mosquitto_rr` subscribes to it, publishes the request at
/// QoS 1 and prints the first response: one connection per request).
pub fn shadow_request(dir: &Path, thing: &str, port: u16, op: &str, body: &str) -> String {
    let out = mosquitto("mosquitto_rr", dir, thing, port, "5")
        .args([
            "-q",
            "1",
            "-t",
            &format!("$aws/things/{thing}/shadow/{op}"),
            "-e",
            &format!("$aws/things/{thing}/shadow/{op}/accepted"),
            "-m",
            body,
            "-W",
            "10",
        ])
        .output()
        .expect("mosquitto_rr is installed (apt install mosquitto-clients)");
    assert!(out.status.success(), "mosquitto_rr {op}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}
