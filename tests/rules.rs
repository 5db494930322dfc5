//! The rules engine in a running broker: rules run on routed messages and Basic Ingest, their
//! actions republish, POST and write files, failures reach the error action and the dead
//! letter, and nothing a slow action does holds up publishers or other actions.

#[path = "../examples/support/client.rs"]
mod client;
#[path = "../examples/support/fleet.rs"]
mod fleet;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::{Client, Options, tls_config};
use fleet::{Device, Fleet};
use thingkit::broker::rules::{RulesConfig, RulesEngine};
use thingkit::broker::{Broker, BrokerHandle, ServerIdentity, TopicService};
use thingkit::mqtt::{ProtocolVersion, QoS, ReasonCode};
use thingkit::provision::PolicyTarget;
use thingkit::rules::topic_rule::TopicRulePayload;

const WAIT: Duration = Duration::from_secs(10);

fn config(dir: &Path) -> RulesConfig {
    let mut c = RulesConfig::default();
    c.base_dir = dir.to_path_buf();
    c.retry_attempts = 2;
    c.retry_backoff = Duration::from_millis(20);
    c.http_timeout = Duration::from_secs(2);
    c
}

fn payload(json: serde_json::Value) -> TopicRulePayload {
    serde_json::from_value(json).expect("a TopicRulePayload")
}

async fn start(fleet: &Fleet, engine: &RulesEngine) -> BrokerHandle {
    start_with(fleet, engine, None).await
}

/// A broker running `engine`'s rules, with `service` (a shadow service) when given.
async fn start_with(
    fleet: &Fleet,
    engine: &RulesEngine,
    service: Option<Arc<dyn TopicService>>,
) -> BrokerHandle {
    let mut builder = Broker::builder(
        fleet.registry.clone(),
        ServerIdentity::from_pem(fleet.server_chain_pem.clone(), fleet.server_key_pem.clone()),
    )
    .rules(engine.clone());
    if let Some(service) = service {
        builder = builder.service(service);
    }
    builder
        .bind("127.0.0.1:0".parse().expect("loopback literal"))
        .await
        .expect("broker starts")
}

async fn connect(fleet: &Fleet, broker: &BrokerHandle, device: &Device) -> Client {
    let tls = tls_config(&fleet.ca_pem(), &device.cert_pem, &device.key_pem).expect("tls config");
    let options = Options {
        version: ProtocolVersion::V5,
        ..Options::new(&device.thing)
    };
    Client::connect(broker.local_addr(), "localhost", tls, &options)
        .await
        .expect("TLS + CONNECT")
}

/// The next message's (topic, payload), or `None` after `within`.
async fn next(client: &mut Client, within: Duration) -> Option<(String, Vec<u8>)> {
    match tokio::time::timeout(within, client.next_publish()).await {
        Ok(Ok(Some(p))) => Some((
            p.topic.map(|t| t.as_str().to_string()).unwrap_or_default(),
            p.payload.to_vec(),
        )),
        _ => None,
    }
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("JSON")
}

/// Waits (polling) until `done` holds, at most [`WAIT`].
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let until = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < until {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

/// Files under `dir` (recursively) whose name ends with `suffix`.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p, suffix));
        } else if p.to_string_lossy().ends_with(suffix) {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| json(l.as_bytes()))
        .collect()
}

/// One request a [`HttpServer`] received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A tiny HTTP/1.1 server: answers each request with the next scripted status (200 when the
/// script is done), or never answers when `hang`.
struct HttpServer {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

fn http_server(statuses: &[u16], hang: bool) -> HttpServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(
        statuses.iter().copied().collect::<VecDeque<_>>(),
    ));
    let log = received.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let mut headers = Vec::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.trim_end().split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    headers.push((k.trim().to_string(), v.trim().to_string()));
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            log.lock().unwrap().push(Received {
                path,
                headers,
                body,
            });
            if hang {
                held.push(stream);
                continue;
            }
            let status = script.lock().unwrap().pop_front().unwrap_or(200);
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    HttpServer { port, received }
}

/// A port nothing listens on.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn a_rule_republishes_its_output_to_a_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let engine = RulesEngine::new(config(dir.path()));
    engine
        .upsert(
            "hot",
            &payload(serde_json::json!({
                "sql": "SELECT temperature, topic(2) AS device, principal() AS p FROM 'telemetry/+/temperature' WHERE temperature > 25",
                "actions": [{"republish": {"topic": "telemetry/alerts/${topic(2)}", "qos": 1}}],
            })),
        )
        .unwrap();
    let broker = start(&fleet, &engine).await;
    let mut sub = connect(&fleet, &broker, &b).await;
    sub.subscribe(&[("telemetry/alerts/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let mut publisher = connect(&fleet, &broker, &a).await;
    for t in [20, 30] {
        publisher
            .publish_qos1(
                "telemetry/sensor-a/temperature",
                format!("{{\"temperature\": {t}}}"),
            )
            .await
            .unwrap();
    }
    let (topic, body) = next(&mut sub, WAIT).await.expect("the republished output");
    assert_eq!(topic, "telemetry/alerts/sensor-a");
    assert_eq!(
        json(&body),
        serde_json::json!({
            "temperature": 30,
            "device": "sensor-a",
            "p": a.certificate_id.to_string(),
        })
    );
    assert_eq!(next(&mut sub, Duration::from_millis(300)).await, None);
    let stats = engine.stats();
    assert_eq!(stats.matched, 2);
    assert_eq!(stats.fired, 1);
    assert_eq!(stats.action_success[0], 1);
    assert!(
        broker
            .metrics()
            .render()
            .contains("thingkit_rules_fired_total 1")
    );
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn republish_loops_stop_at_the_rule_that_started_them_and_chains_at_eight_hops() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let engine = RulesEngine::new(config(dir.path()));
    // Into its own FROM: runs once, on the client's message only.
    engine
        .upsert(
            "echo",
            &payload(serde_json::json!({
                "sql": "SELECT * FROM 'telemetry/+/loop'",
                "actions": [{"republish": {"topic": "telemetry/echo/loop"}}],
            })),
        )
        .unwrap();
    // A chain of ten rules, hop i -> i + 1.
    for i in 0..10 {
        engine
            .upsert(
                &format!("chain_{i}"),
                &payload(serde_json::json!({
                    "sql": format!("SELECT * FROM 'telemetry/+/chain{i}'"),
                    "actions": [{"republish": {"topic": format!("telemetry/chain/chain{}", i + 1)}}],
                })),
            )
            .unwrap();
    }
    let broker = start(&fleet, &engine).await;
    let mut sub = connect(&fleet, &broker, &b).await;
    sub.subscribe(&[("telemetry/#", QoS::AtMostOnce)])
        .await
        .unwrap();
    let mut publisher = connect(&fleet, &broker, &a).await;
    publisher
        .publish_qos1("telemetry/sensor-a/loop", "{}")
        .await
        .unwrap();
    let mut loop_topics = Vec::new();
    while let Some((topic, _)) = next(&mut sub, Duration::from_millis(500)).await {
        loop_topics.push(topic);
    }
    assert_eq!(
        loop_topics,
        ["telemetry/sensor-a/loop", "telemetry/echo/loop"]
    );
    publisher
        .publish_qos1("telemetry/sensor-a/chain0", "{}")
        .await
        .unwrap();
    let mut chain = Vec::new();
    while let Some((topic, _)) = next(&mut sub, Duration::from_millis(500)).await {
        chain.push(topic);
    }
    // The client's message and eight republishes; the eighth is not offered to rules again.
    assert_eq!(chain.len(), 9, "{chain:?}");
    assert_eq!(
        chain.last().map(String::as_str),
        Some("telemetry/chain/chain8")
    );
    assert_eq!(engine.stats().hop_limited, 1);
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_http_action_posts_with_templated_url_and_headers_and_retries_a_500() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let server = http_server(&[500, 200], false);
    let engine = RulesEngine::new(config(dir.path()));
    engine
        .upsert(
            "post",
            &payload(serde_json::json!({
                "sql": "SELECT temperature FROM 'telemetry/+/temperature'",
                "actions": [{"http": {
                    "url": format!("http://127.0.0.1:{}/in/${{topic(2)}}", server.port),
                    "headers": [{"key": "x-device", "value": "${topic(2)}"}],
                }}],
            })),
        )
        .unwrap();
    let broker = start(&fleet, &engine).await;
    let mut publisher = connect(&fleet, &broker, &a).await;
    publisher
        .publish_qos1("telemetry/sensor-a/temperature", "{\"temperature\": 21}")
        .await
        .unwrap();
    assert!(eventually(|| engine.stats().action_success[1] == 1).await);
    let received = server.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "a 500 then a 200");
    for r in &received {
        assert_eq!(r.path, "/in/sensor-a");
        assert_eq!(r.header("x-device"), Some("sensor-a"));
        assert_eq!(json(&r.body), serde_json::json!({"temperature": 21}));
    }
    assert_eq!(engine.stats().action_retries[1], 1);
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_dead_endpoint_reaches_the_error_action_and_a_failing_error_action_the_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let dead = format!("http://127.0.0.1:{}/x", dead_port());
    let engine = RulesEngine::new(config(dir.path()));
    engine
        .upsert(
            "to_error_action",
            &payload(serde_json::json!({
                "sql": "SELECT * FROM 'telemetry/+/first'",
                "actions": [{"http": {"url": dead}}],
                "errorAction": {"file": {"path": "errors.jsonl", "format": "jsonl"}},
            })),
        )
        .unwrap();
    engine
        .upsert(
            "to_dead_letter",
            &payload(serde_json::json!({
                "sql": "SELECT * FROM 'telemetry/+/second'",
                "actions": [{"http": {"url": dead}}],
                "errorAction": {"http": {"url": dead}},
            })),
        )
        .unwrap();
    let broker = start(&fleet, &engine).await;
    let mut publisher = connect(&fleet, &broker, &a).await;
    publisher
        .publish_qos1("telemetry/sensor-a/first", "{\"n\": 1}")
        .await
        .unwrap();
    publisher
        .publish_qos1("telemetry/sensor-a/second", "{\"n\": 2}")
        .await
        .unwrap();
    let errors = dir.path().join("errors.jsonl");
    let dead_letter = dir.path().join("rules/dead-letter.jsonl");
    assert!(eventually(|| !lines(&errors).is_empty() && !lines(&dead_letter).is_empty()).await);
    let record = &lines(&errors)[0];
    assert_eq!(record["ruleName"], "to_error_action");
    assert_eq!(record["topic"], "telemetry/sensor-a/first");
    assert_eq!(record["clientId"], "sensor-a");
    assert_eq!(record["base64OriginalPayload"], "eyJuIjogMX0=");
    assert_eq!(record["failures"][0]["failedAction"], "HttpAction");
    assert_eq!(record["failures"][0]["failedResource"], dead.as_str());
    assert!(record["cloudwatchTraceId"].as_str().is_some());
    let letter = &lines(&dead_letter)[0];
    assert_eq!(letter["ruleName"], "to_dead_letter");
    assert_eq!(letter["failures"][0]["failedAction"], "HttpAction");
    assert_eq!(letter["errorActionFailure"]["failedAction"], "HttpAction");
    let stats = engine.stats();
    assert_eq!(stats.dead_lettered, 1);
    assert_eq!(stats.action_failure[1], 3);
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn file_sinks_write_json_lines_csv_and_parquet_partitioned_by_date() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let engine = RulesEngine::new(config(dir.path()));
    let columns = serde_json::json!([
        {"name": "device", "type": "string"},
        {"name": "n", "type": "int64"},
        {"name": "t", "type": "double"},
        {"name": "ok", "type": "boolean"},
    ]);
    engine
        .upsert(
            "sinks",
            &payload(serde_json::json!({
                "sql": "SELECT topic(2) AS device, n, t, ok FROM 'telemetry/+/sink'",
                "actions": [
                    {"file": {"path": "out/lines", "format": "jsonl", "partitionByDate": true}},
                    {"file": {"path": "out/table.csv", "format": "csv", "columns": columns}},
                    {"file": {"path": "out/parquet", "format": "parquet", "columns": columns, "partitionByDate": true}},
                ],
            })),
        )
        .unwrap();
    let broker = start(&fleet, &engine).await;
    let mut publisher = connect(&fleet, &broker, &a).await;
    let sent = [
        r#"{"n": 1, "t": 1.5, "ok": true}"#,
        r#"{"n": 2, "t": "x,y"}"#,
        r#"{"n": 3, "ok": false}"#,
    ];
    for body in sent {
        publisher
            .publish_qos1("telemetry/sensor-a/sink", body)
            .await
            .unwrap();
    }
    assert!(eventually(|| engine.stats().action_success[2] == 9).await);
    broker.shutdown(Duration::from_secs(5)).await;

    // The partition is the UTC arrival date: the one directory the JSON lines went to.
    let jsonl = files(&dir.path().join("out/lines"), ".jsonl");
    let today = jsonl[0]
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap();
    assert!(today.starts_with("date=20"), "{today}");
    assert_eq!(jsonl.len(), 1);
    let name = jsonl[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("part-00000-"), "{name}");
    let rows = lines(&jsonl[0]);
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0],
        serde_json::json!({"device": "sensor-a", "n": 1, "t": 1.5, "ok": true})
    );
    assert_eq!(
        rows[2],
        serde_json::json!({"device": "sensor-a", "n": 3, "ok": false})
    );

    let csv = std::fs::read_to_string(dir.path().join("out/table.csv")).unwrap();
    assert_eq!(
        csv,
        "device,n,t,ok\r\nsensor-a,1,1.5,true\r\nsensor-a,2,\"x,y\",\r\nsensor-a,3,,false\r\n"
    );

    let parquet_dir = dir.path().join("out/parquet").join(&today);
    assert!(files(&dir.path().join("out/parquet"), ".inprogress").is_empty());
    let parts = files(&parquet_dir, ".parquet");
    assert_eq!(parts.len(), 1, "{parts:?}");
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(&parts[0]).unwrap()).unwrap();
    let rows: Vec<String> = reader
        .get_row_iter(None)
        .unwrap()
        .map(|r| r.unwrap().to_string())
        .collect();
    assert_eq!(
        rows,
        [
            "{device: \"sensor-a\", n: 1, t: 1.5, ok: true}",
            "{device: \"sensor-a\", n: 2, t: null, ok: null}",
            "{device: \"sensor-a\", n: 3, t: null, ok: false}",
        ]
    );
}

#[tokio::test]
async fn a_stuck_action_delays_neither_publishers_nor_the_rule_s_other_actions() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let stuck = http_server(&[], true);
    let mut c = config(dir.path());
    c.action_queue_size = 4;
    c.http_timeout = Duration::from_secs(30);
    let engine = RulesEngine::new(c);
    engine
        .upsert(
            "fan_out",
            &payload(serde_json::json!({
                "sql": "SELECT * FROM 'telemetry/+/busy'",
                "actions": [
                    {"http": {"url": format!("http://127.0.0.1:{}/", stuck.port)}},
                    {"republish": {"topic": "telemetry/out/busy"}},
                ],
            })),
        )
        .unwrap();
    let broker = start(&fleet, &engine).await;
    let mut sub = connect(&fleet, &broker, &b).await;
    sub.subscribe(&[("telemetry/out/#", QoS::AtMostOnce)])
        .await
        .unwrap();
    let mut publisher = connect(&fleet, &broker, &a).await;
    // Each output reaches the subscriber through the republish action while the HTTP action
    // sits on its first request and its queue (4) overflows into the dead letter.
    let all = tokio::time::timeout(WAIT, async {
        for i in 0..40 {
            let ack = publisher
                .publish_qos1("telemetry/sensor-a/busy", format!("{{\"i\": {i}}}"))
                .await
                .unwrap();
            // Accepted (0x10 No matching subscribers: only the rule reads the topic).
            assert!(ack.reason_code.0 < 0x80, "{:?}", ack.reason_code);
            let (_, body) = next(&mut sub, WAIT).await.expect("the republished output");
            assert_eq!(json(&body)["i"], i);
        }
    })
    .await;
    assert!(
        all.is_ok(),
        "publishers and the republish action were held up"
    );
    assert!(engine.stats().action_queue_dropped > 0);
    assert!(!stuck.received.lock().unwrap().is_empty());
    drop(publisher);
    drop(sub);
    // The stuck request times out at shutdown (30 s would be long): abandon the broker.
    std::mem::forget(broker);
}

#[tokio::test]
async fn basic_ingest_reaches_the_named_rule_and_no_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let watcher = fleet.add_operator().unwrap();
    {
        let mut registry = fleet.registry.write().unwrap();
        registry
            .create_policy(
                "ingest",
                r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                    "Action": "iot:Publish",
                    "Resource": "arn:aws:iot:eu-central-1:123456789012:topic/$aws/rules/*"}]}"#,
                std::time::SystemTime::now(),
            )
            .unwrap();
        registry
            .attach_policy("ingest", &PolicyTarget::Certificate(a.certificate_id))
            .unwrap();
    }
    let engine = RulesEngine::new(config(dir.path()));
    engine
        .upsert(
            "ingested",
            &payload(serde_json::json!({
                "sql": "SELECT *, topic() AS t, clientid() AS c, principal() AS p FROM 'never/published'",
                "actions": [{"file": {"path": "ingest.jsonl", "format": "jsonl"}}],
            })),
        )
        .unwrap();
    let broker = start(&fleet, &engine).await;
    let mut sub = connect(&fleet, &broker, &watcher).await;
    sub.subscribe(&[("$aws/rules/#", QoS::AtMostOnce), ("#", QoS::AtMostOnce)])
        .await
        .unwrap();
    let mut publisher = connect(&fleet, &broker, &a).await;
    let ack = publisher
        .publish_qos1("$aws/rules/ingested/plant/line1", "{\"v\": 7}")
        .await
        .unwrap();
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    let unknown = publisher
        .publish_qos1("$aws/rules/no_such_rule/x", "{}")
        .await
        .unwrap();
    assert_eq!(unknown.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    let mut disabled = engine.get("ingested").unwrap();
    disabled.rule_disabled = Some(true);
    engine.upsert("off", &disabled).unwrap();
    let off = publisher
        .publish_qos1("$aws/rules/off/x", "{}")
        .await
        .unwrap();
    assert_eq!(off.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    let out = dir.path().join("ingest.jsonl");
    assert!(eventually(|| !lines(&out).is_empty()).await);
    let row = &lines(&out)[0];
    assert_eq!(row["v"], 7);
    assert_eq!(row["c"], "sensor-a");
    assert_eq!(row["p"], a.certificate_id.to_string());
    // topic() without the $aws/rules/<rule>/ prefix, as AWS documents.
    assert_eq!(row["t"], "plant/line1");
    assert_eq!(next(&mut sub, Duration::from_millis(300)).await, None);
    assert_eq!(engine.stats().rule_not_found, 2);
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn rules_are_replaced_and_removed_while_the_broker_runs() {
    let dir = tempfile::tempdir().unwrap();
    let engine = RulesEngine::new(config(dir.path()));
    let p = payload(serde_json::json!({"sql": "SELECT * FROM 'a/b'"}));
    assert!(engine.upsert("bad-name", &p).is_err());
    assert!(engine.upsert(&"x".repeat(129), &p).is_err());
    let shared = payload(serde_json::json!({"sql": "SELECT * FROM '$share/g/a'"}));
    assert!(engine.upsert("shared", &shared).is_err());
    engine.upsert("r", &p).unwrap();
    assert_eq!(engine.get("r"), Some(p.clone()));
    assert_eq!(engine.names(), ["r"]);
    let bad_qos = payload(serde_json::json!({
        "sql": "SELECT * FROM 'a/b'",
        "actions": [{"republish": {"topic": "c", "qos": 2}}],
    }));
    assert!(engine.upsert("r", &bad_qos).is_err());
    assert_eq!(
        engine.get("r"),
        Some(p),
        "a refused replacement changes nothing"
    );
    assert!(engine.remove("r"));
    assert!(!engine.remove("r"));
    assert!(engine.names().is_empty());
    engine.shutdown_blocking();
}

#[tokio::test]
async fn windowed_rules_emit_when_their_window_closes_and_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let engine = RulesEngine::new(config(dir.path()));
    for (name, window, file) in [
        ("per_second", "TUMBLINGWINDOW(ss, 1)", "seconds.jsonl"),
        ("per_hour", "TUMBLINGWINDOW(hh, 1)", "hours.jsonl"),
    ] {
        engine
            .upsert(
                name,
                &payload(serde_json::json!({
                    "sql": format!(
                        "SELECT topic(2) AS device, count(*) AS n, sum(v) AS total \
                         FROM 'telemetry/+/w' GROUP BY topic(2), {window}"
                    ),
                    "actions": [{"file": {"path": file, "format": "jsonl"}}],
                })),
            )
            .unwrap();
    }
    let broker = start(&fleet, &engine).await;
    let mut publisher = connect(&fleet, &broker, &a).await;
    for v in [1, 2, 3] {
        publisher
            .publish_qos1("telemetry/sensor-a/w", format!("{{\"v\": {v}}}"))
            .await
            .unwrap();
    }
    let count =
        |rows: &[serde_json::Value]| rows.iter().map(|r| r["n"].as_i64().unwrap()).sum::<i64>();
    let seconds = dir.path().join("seconds.jsonl");
    // The one-second windows close while the broker runs (the three messages may straddle a
    // second boundary: then two rows).
    assert!(eventually(|| count(&lines(&seconds)) == 3).await);
    assert!(lines(&seconds).iter().all(|r| r["device"] == "sensor-a"));
    let hours = dir.path().join("hours.jsonl");
    assert!(lines(&hours).is_empty() || count(&lines(&hours)) < 3);
    broker.shutdown(Duration::from_secs(5)).await;
    // The hour's window is open: flushed at shutdown.
    let rows = lines(&hours);
    assert_eq!(count(&rows), 3);
    assert_eq!(
        rows.iter()
            .map(|r| r["total"].as_i64().unwrap())
            .sum::<i64>(),
        6
    );
}

#[tokio::test]
async fn a_parquet_sink_rolls_a_new_file_every_n_rows() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let mut c = config(dir.path());
    c.parquet_roll_rows = 2;
    let engine = RulesEngine::new(c);
    engine
        .upsert(
            "rolling",
            &payload(serde_json::json!({
                "sql": "SELECT n FROM 'telemetry/+/roll'",
                "actions": [{"file": {"path": "rolled", "format": "parquet",
                                      "columns": [{"name": "n", "type": "int64"}]}}],
            })),
        )
        .unwrap();
    let broker = start(&fleet, &engine).await;
    let mut publisher = connect(&fleet, &broker, &a).await;
    for n in 0..5 {
        publisher
            .publish_qos1("telemetry/sensor-a/roll", format!("{{\"n\": {n}}}"))
            .await
            .unwrap();
    }
    assert!(eventually(|| engine.stats().action_success[2] == 5).await);
    broker.shutdown(Duration::from_secs(5)).await;
    let parts = files(&dir.path().join("rolled"), ".parquet");
    assert_eq!(parts.len(), 3, "2 + 2 + 1 rows: {parts:?}");
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let rows: usize = parts
        .iter()
        .map(|p| {
            SerializedFileReader::new(std::fs::File::open(p).unwrap())
                .unwrap()
                .metadata()
                .file_metadata()
                .num_rows() as usize
        })
        .sum();
    assert_eq!(rows, 5);
}

#[tokio::test]
async fn lifecycle_events_reach_only_rules_that_name_dollar_aws_events() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let engine = RulesEngine::new(config(dir.path()));
    for (name, filter, file) in [
        ("everything", "#", "all.jsonl"),
        (
            "presence",
            "$aws/events/presence/connected/+",
            "presence.jsonl",
        ),
    ] {
        engine
            .upsert(
                name,
                &payload(serde_json::json!({
                    "sql": format!("SELECT *, topic() AS t FROM '{filter}'"),
                    "actions": [{"file": {"path": file, "format": "jsonl"}}],
                })),
            )
            .unwrap();
    }
    let broker = start(&fleet, &engine).await;
    let mut publisher = connect(&fleet, &broker, &a).await;
    publisher
        .publish_qos1("telemetry/sensor-a/temperature", "{\"v\": 1}")
        .await
        .unwrap();
    let all = dir.path().join("all.jsonl");
    let presence = dir.path().join("presence.jsonl");
    assert!(eventually(|| !lines(&all).is_empty() && !lines(&presence).is_empty()).await);
    broker.shutdown(Duration::from_secs(5)).await;
    // `#` does not match `$` topics (MQTT): only the telemetry reached it.
    let rows = lines(&all);
    assert!(
        rows.iter()
            .all(|r| r["t"] == "telemetry/sensor-a/temperature"),
        "{rows:?}"
    );
    let events = lines(&presence);
    assert_eq!(events[0]["clientId"], "sensor-a");
    assert_eq!(events[0]["eventType"], "connected");
    assert_eq!(events[0]["t"], "$aws/events/presence/connected/sensor-a");
}

#[tokio::test]
async fn get_thing_shadow_in_a_rule_reads_the_shadows_the_broker_serves() {
    use thingkit::broker::ShadowService;
    use thingkit::shadow::{Limits, MemoryShadowStore};

    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let shadows = Arc::new(ShadowService::new(
        MemoryShadowStore::new(),
        Limits::default(),
    ));
    for (topic, body) in [
        (
            "$aws/things/sensor-a/shadow/update",
            r#"{"state":{"reported":{"mode":"eco"}}}"#,
        ),
        (
            "$aws/things/sensor-a/shadow/name/config/update",
            r#"{"state":{"desired":{"limit":30}}}"#,
        ),
    ] {
        shadows
            .shadows()
            .request(topic, body.as_bytes(), 1_764_115_200)
            .expect("a shadow request topic");
    }
    let engine = RulesEngine::new(config(dir.path()));
    engine.set_external_functions(shadows.clone());
    engine
        .upsert(
            "enrich",
            &payload(serde_json::json!({
                "sql": "SELECT temperature, get_thing_shadow(topic(2), 'arn:aws:iam::123456789012:role/r').state.reported.mode AS mode, \
                        get_thing_shadow(topic(2), 'config', 'arn:aws:iam::123456789012:role/r').state.desired.limit AS lim, \
                        get_thing_shadow('nobody', 'arn:aws:iam::123456789012:role/r') AS missing \
                        FROM 'telemetry/+/temperature'",
                "awsIotSqlVersion": "2016-03-23",
                "actions": [{"file": {"path": "enriched.jsonl", "format": "jsonl"}}],
            })),
        )
        .unwrap();
    let broker = start(&fleet, &engine).await;
    let mut publisher = connect(&fleet, &broker, &a).await;
    publisher
        .publish_qos1("telemetry/sensor-a/temperature", "{\"temperature\": 21}")
        .await
        .unwrap();
    let file = dir.path().join("enriched.jsonl");
    assert!(eventually(|| !lines(&file).is_empty()).await);
    // The shadow documents' members, and Undefined (left out) for a thing without a shadow.
    assert_eq!(
        lines(&file),
        [serde_json::json!({"temperature": 21, "mode": "eco", "lim": 30})]
    );
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_republish_to_a_shadow_update_topic_updates_the_shadow_and_one_to_a_jobs_topic_fails() {
    use thingkit::broker::ShadowService;
    use thingkit::shadow::{Limits, MemoryShadowStore, ShadowKey};

    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let shadows = Arc::new(ShadowService::new(
        MemoryShadowStore::new(),
        Limits::default(),
    ));
    let engine = RulesEngine::new(config(dir.path()));
    engine
        .upsert(
            "to_shadow",
            &payload(serde_json::json!({
                "sql": "SELECT VALUE {'state': {'reported': {'t': temperature}}} FROM 'telemetry/+/temperature'",
                "awsIotSqlVersion": "2016-03-23",
                "actions": [{"republish": {"topic": "$$aws/things/${topic(2)}/shadow/update", "qos": 1}}],
            })),
        )
        .unwrap();
    engine
        .upsert(
            "to_jobs",
            &payload(serde_json::json!({
                "sql": "SELECT * FROM 'telemetry/+/temperature'",
                "actions": [{"republish": {"topic": "$$aws/things/${topic(2)}/jobs/get"}}],
                "errorAction": {"file": {"path": "errors.jsonl", "format": "jsonl"}},
            })),
        )
        .unwrap();
    let broker = start_with(&fleet, &engine, Some(shadows.clone())).await;
    let mut publisher = connect(&fleet, &broker, &a).await;
    publisher
        .publish_qos1("telemetry/sensor-a/temperature", "{\"temperature\": 27}")
        .await
        .unwrap();
    let key = ShadowKey::classic("sensor-a").unwrap();
    let document = || {
        shadows
            .shadows()
            .get_document(&key, 0)
            .unwrap()
            .map(|d| json(&d))
    };
    assert!(eventually(|| document().is_some()).await);
    assert_eq!(document().unwrap()["state"]["reported"]["t"], 27);
    let errors = dir.path().join("errors.jsonl");
    assert!(eventually(|| !lines(&errors).is_empty()).await);
    let record = &lines(&errors)[0];
    assert_eq!(record["ruleName"], "to_jobs");
    assert_eq!(record["failures"][0]["failedAction"], "RepublishAction");
    assert!(
        record["failures"][0]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("not supported"),
        "{record}"
    );
    broker.shutdown(Duration::from_secs(5)).await;
}
