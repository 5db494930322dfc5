//! The broker's fleet-activity records (connection log, per-device detect metrics) over real
//! mutual-TLS connections, with the fleet and client helpers `tests/broker.rs` uses.

#[path = "../examples/support/client.rs"]
mod client;
#[path = "../examples/support/fleet.rs"]
mod fleet;

use std::time::{Duration, Instant};

use client::{Client, Options, accepted, tls_config};
use fleet::{Device, Fleet};
use thingkit::broker::{
    Broker, BrokerConfig, BrokerHandle, ConnectionRecord, DisconnectReason, ServerIdentity,
};
use thingkit::mqtt::{Packet, QoS, ReasonCode};
use thingkit::provision::PolicyTarget;

async fn start(fleet: &Fleet, config: BrokerConfig) -> BrokerHandle {
    Broker::builder(
        fleet.registry.clone(),
        ServerIdentity::from_pem(fleet.server_chain_pem.clone(), fleet.server_key_pem.clone()),
    )
    .config(config)
    .bind("127.0.0.1:0".parse().expect("loopback literal"))
    .await
    .expect("broker starts")
}

/// Connects with `device`'s certificate as `client_id` (MQTT 5).
async fn connect(fleet: &Fleet, broker: &BrokerHandle, device: &Device, client_id: &str) -> Client {
    let tls = tls_config(&fleet.ca_pem(), &device.cert_pem, &device.key_pem).expect("tls config");
    Client::connect(
        broker.local_addr(),
        "localhost",
        tls,
        &Options::new(client_id),
    )
    .await
    .expect("TLS + CONNECT")
}

/// Lets `device`'s certificate connect with any client ID.
fn allow_any_client_id(fleet: &Fleet, device: &Device) {
    let mut registry = fleet.registry.write().unwrap_or_else(|p| p.into_inner());
    registry
        .create_policy(
            "any-client-id",
            r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect",
                "Resource": "arn:aws:iot:eu-central-1:123456789012:client/*"}]}"#,
            std::time::SystemTime::now(),
        )
        .unwrap();
    registry
        .attach_policy(
            "any-client-id",
            &PolicyTarget::Certificate(device.certificate_id),
        )
        .unwrap();
}

/// Waits (at most 5 s) until `done` holds for the connection log.
async fn log_until(
    broker: &BrokerHandle,
    done: impl Fn(&[ConnectionRecord]) -> bool,
) -> Vec<ConnectionRecord> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = broker.connection_log(0);
        if done(&log) || Instant::now() > deadline {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (at most 5 s) until no connection holds a meter slot: their activity is folded.
async fn all_closed(broker: &BrokerHandle) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while broker.connections() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(broker.connections(), 0, "connections did not close");
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn one_certificate_on_overlapping_connections_and_a_client_id_taken_over_are_logged() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    allow_any_client_id(&fleet, &a);
    let broker = start(&fleet, BrokerConfig::default()).await;

    let mut first = connect(&fleet, &broker, &a, "shared-1").await;
    assert!(accepted(&first.connack));
    let second = connect(&fleet, &broker, &a, "shared-2").await;
    assert!(accepted(&second.connack));

    let log = broker.connection_log(0);
    assert_eq!(log.len(), 2, "{log:?}");
    let principal = a.certificate_id.to_string();
    for (record, client_id) in log.iter().zip(["shared-1", "shared-2"]) {
        assert_eq!(record.client_id, client_id);
        assert_eq!(record.principal, principal, "the same certificate");
        assert_eq!(record.thing_name, None, "the client IDs name no thing");
        assert_eq!(record.source_ip, std::net::IpAddr::from([127, 0, 0, 1]));
        assert_eq!(record.disconnected_at, None, "both open at once");
        assert_eq!(record.disconnect_reason, None);
    }
    assert_ne!(log[0].session_identifier, log[1].session_identifier);
    assert!(log[0].connected_at <= log[1].connected_at);

    // A third connection with the first one's client ID takes its session over.
    let third = connect(&fleet, &broker, &a, "shared-1").await;
    assert!(accepted(&third.connack));
    match first.recv().await.unwrap() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::SESSION_TAKEN_OVER),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    let log = log_until(&broker, |log| {
        log.first().is_some_and(|r| r.disconnect_reason.is_some())
    })
    .await;
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].client_id, "shared-1");
    assert_eq!(
        log[0].disconnect_reason,
        Some(DisconnectReason::DuplicateClientId)
    );
    let ended = log[0].disconnected_at.expect("closed");
    assert!(ended >= log[0].connected_at);
    assert_eq!(log[2].client_id, "shared-1");
    assert_eq!(log[2].disconnected_at, None);
    // The overlap the audit's DEVICE_CERTIFICATE_SHARED_CHECK looks for: shared-2 was open
    // while shared-1 was.
    assert!(log[1].connected_at <= ended && log[1].disconnected_at.is_none());

    // A connection closed by its client says so.
    second.disconnect().await.unwrap();
    let log = log_until(&broker, |log| {
        log.get(1).is_some_and(|r| r.disconnect_reason.is_some())
    })
    .await;
    assert_eq!(
        log[1].disconnect_reason,
        Some(DisconnectReason::ClientInitiatedDisconnect)
    );
    // Records that closed before `since` are left out; open ones never are.
    let later = broker.connection_log(unix_now() + 10);
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].session_identifier, log[2].session_identifier);
    third.disconnect().await.unwrap();
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_devices_messages_denials_and_attempts_are_counted_and_drained() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let broker = start(&fleet, BrokerConfig::default()).await;
    let started = unix_now();

    let mut c = connect(&fleet, &broker, &a, "sensor-a").await;
    assert!(accepted(&c.connack));
    let topic = "telemetry/sensor-a/temperature";
    let payloads = ["1", "22.5", "a longer reading", "0", "-3"];
    for p in payloads {
        let ack = c.publish_qos1(topic, p).await.unwrap();
        assert_eq!(ack.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    }
    let denied = c
        .publish_qos1("commands/sensor-a/reboot", "now")
        .await
        .unwrap();
    assert_eq!(denied.reason_code, ReasonCode::NOT_AUTHORIZED);
    // A CONNECT its policies refuse (the client ID is not its thing) counts for that ID.
    let refused = connect(&fleet, &broker, &a, "impostor").await;
    assert_eq!(refused.connack.reason_code, ReasonCode::NOT_AUTHORIZED);
    c.disconnect().await.unwrap();
    all_closed(&broker).await;

    let now = unix_now();
    let window = broker.take_activity(now);
    assert!(window.start >= started.saturating_sub(1) && window.start <= now);
    assert_eq!(window.end, now);
    assert_eq!(window.overflow, 0);
    let device = window
        .devices
        .iter()
        .find(|d| d.device == "sensor-a")
        .expect("sensor-a has activity");
    assert!(device.thing, "sensor-a is an attached thing");
    assert_eq!(device.messages_sent, payloads.len() as u64);
    let sizes: Vec<u64> = payloads
        .iter()
        .map(|p| (topic.len() + p.len()) as u64)
        .collect();
    assert_eq!(device.bytes_sent, sizes.iter().sum::<u64>());
    assert_eq!(device.largest_message, *sizes.iter().max().unwrap());
    assert_eq!(device.authorization_failures, 1);
    assert_eq!(device.connection_attempts, 1);
    assert_eq!(device.refused_connection_attempts, 0);
    assert_eq!(device.disconnects, 1);
    assert_eq!(
        device.source_ips,
        vec![std::net::IpAddr::from([127, 0, 0, 1])]
    );
    let impostor = window
        .devices
        .iter()
        .find(|d| d.device == "impostor")
        .expect("the refused client ID is counted");
    assert!(!impostor.thing);
    assert_eq!(
        (
            impostor.connection_attempts,
            impostor.refused_connection_attempts,
            impostor.authorization_failures,
            impostor.disconnects,
        ),
        (1, 1, 1, 0)
    );
    // Refused CONNECTs are not connections.
    let log = broker.connection_log(0);
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].thing_name.as_deref(), Some("sensor-a"));

    // Drained: the next window starts where this one ended and holds nothing.
    let next = broker.take_activity(now + 60);
    assert_eq!((next.start, next.end), (now, now + 60));
    assert!(next.devices.is_empty(), "{:?}", next.devices);
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_live_connection_folds_its_counts_within_the_fold_interval() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let broker = start(&fleet, BrokerConfig::default()).await;
    let mut sub = connect(&fleet, &broker, &b, "sensor-b").await;
    sub.subscribe(&[("telemetry/+/temperature", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let mut c = connect(&fleet, &broker, &a, "sensor-a").await;
    c.publish_qos1("telemetry/sensor-a/temperature", "21")
        .await
        .unwrap();
    let got = sub.next_publish().await.unwrap().unwrap();
    assert_eq!(&got.payload[..], b"21");
    // Both stay connected: the counts arrive with the next fold, within FOLD_INTERVAL.
    let deadline = Instant::now() + thingkit::broker::FOLD_INTERVAL * 5;
    let mut sent = 0;
    let mut received = 0;
    while (sent, received) != (1, 1) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for d in broker.take_activity(unix_now()).devices {
            match d.device.as_str() {
                "sensor-a" => sent += d.messages_sent,
                "sensor-b" => received += d.messages_received,
                _ => {}
            }
        }
    }
    assert_eq!((sent, received), (1, 1));
    c.disconnect().await.unwrap();
    sub.disconnect().await.unwrap();
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_connection_log_drops_its_oldest_record_at_the_cap_and_counts_it() {
    let fleet = Fleet::new().unwrap();
    let devices: Vec<Device> = (1..=4)
        .map(|i| fleet.add_device(&format!("sensor-{i}"), &[]).unwrap())
        .collect();
    let broker = start(
        &fleet,
        BrokerConfig::default().with_max_connection_records(3),
    )
    .await;
    for d in &devices {
        let c = connect(&fleet, &broker, d, &d.thing).await;
        assert!(accepted(&c.connack));
        c.disconnect().await.unwrap();
        all_closed(&broker).await;
    }
    let log = broker.connection_log(0);
    let ids: Vec<&str> = log.iter().map(|r| r.client_id.as_str()).collect();
    assert_eq!(ids, ["sensor-2", "sensor-3", "sensor-4"]);
    // The same through a reader that outlives the handle's move into shutdown.
    let reader = broker.activity();
    broker.shutdown(Duration::from_secs(5)).await;
    let counters = reader.activity_counters();
    assert_eq!(counters.connection_records, 3);
    assert_eq!(counters.connection_records_dropped, 1);
    assert_eq!(reader.connection_log(0), log);
}

#[tokio::test]
async fn job_messages_and_firmware_stream_bytes_are_counted_for_maintenance() {
    use std::sync::{Arc, Mutex, RwLock};
    use thingkit::broker::{JobsService, SharedJobs, StreamService};
    use thingkit::firmware::stream::{Download, Encoding, StreamCatalog, StreamSource};
    use thingkit::jobs::{JobStore, Jobs, Limits, MemoryJobStore};

    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    {
        let mut registry = fleet.registry.write().unwrap_or_else(|p| p.into_inner());
        registry
            .create_policy(
                "own-reserved-topics",
                r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                    "Action": ["iot:Publish", "iot:Subscribe", "iot:Receive"],
                    "Resource": ["arn:aws:iot:eu-central-1:123456789012:topic/$aws/things/sensor-a/*",
                                 "arn:aws:iot:eu-central-1:123456789012:topicfilter/$aws/things/sensor-a/*"]}]}"#,
                std::time::SystemTime::now(),
            )
            .unwrap();
        registry
            .attach_policy(
                "own-reserved-topics",
                &PolicyTarget::Certificate(a.certificate_id),
            )
            .unwrap();
    }
    let jobs: SharedJobs = Arc::new(Mutex::new(Jobs::new(
        Box::new(MemoryJobStore::new()) as Box<dyn JobStore>,
        Limits::default(),
    )));
    let catalog = Arc::new(RwLock::new(StreamCatalog::default()));
    let image: Vec<u8> = (0..5000u32).map(|i| (i % 241) as u8).collect();
    catalog.write().unwrap().insert(
        "fw-1",
        StreamSource::new(1, "fw").with_file(0, image.clone()),
    );
    let broker = Broker::builder(
        fleet.registry.clone(),
        ServerIdentity::from_pem(fleet.server_chain_pem.clone(), fleet.server_key_pem.clone()),
    )
    .service(Arc::new(JobsService::new(jobs)))
    .service(Arc::new(StreamService::with_catalog(catalog)))
    .bind("127.0.0.1:0".parse().expect("loopback literal"))
    .await
    .expect("broker starts");
    let mut c = connect(&fleet, &broker, &a, "sensor-a").await;
    assert!(accepted(&c.connack));

    // A Jobs request and its answer.
    let ack = c
        .publish_qos1("$aws/things/sensor-a/jobs/get", "{}")
        .await
        .unwrap();
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    let answer = c.next_publish().await.unwrap().unwrap();
    assert_eq!(
        answer.topic.as_ref().map(|t| t.as_str()),
        Some("$aws/things/sensor-a/jobs/get/accepted")
    );

    // A firmware image over MQTT-based file delivery: one request, five data blocks.
    let mut download = Download::new(0, image.len() as u64, 1024).unwrap();
    let request = download.next_request().expect("a first request");
    c.publish_qos1(
        &request.topic("sensor-a", "fw-1", Encoding::Json),
        request.encode(Encoding::Json),
    )
    .await
    .unwrap();
    let (mut blocks, mut bytes, mut got) = (0u64, 0u64, Vec::new());
    while !download.is_complete() {
        let p = c.next_publish().await.unwrap().expect("a data block");
        let topic = p.topic.as_ref().map(|t| t.as_str()).unwrap_or_default();
        assert!(topic.contains("/data/"), "{topic}");
        blocks += 1;
        bytes += p.payload.len() as u64;
        download
            .accept_message(topic, &p.payload, |b| {
                got.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
    }
    assert_eq!(got, image);
    let m = broker.maintenance_counters();
    assert_eq!((m.job_messages_in, m.job_messages_out), (1, 1));
    assert_eq!((m.stream_messages_out, m.stream_bytes_out), (blocks, bytes));
    assert_eq!(blocks, 5);
    c.disconnect().await.unwrap();
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_rules_engine_records_publish_to_action_latencies() {
    use thingkit::broker::rules::{RulesConfig, RulesEngine};

    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let mut config = RulesConfig::default();
    config.base_dir = dir.path().to_path_buf();
    let engine = RulesEngine::new(config);
    engine
        .upsert(
            "copy",
            &serde_json::from_value(serde_json::json!({
                "sql": "SELECT * FROM 'telemetry/+/temperature'",
                "actions": [{"republish": {"topic": "telemetry/copies/out"}}],
            }))
            .unwrap(),
        )
        .unwrap();
    let broker = Broker::builder(
        fleet.registry.clone(),
        ServerIdentity::from_pem(fleet.server_chain_pem.clone(), fleet.server_key_pem.clone()),
    )
    .rules(engine)
    .bind("127.0.0.1:0".parse().expect("loopback literal"))
    .await
    .expect("broker starts");
    assert!(broker.rules_latencies().is_empty());
    let mut c = connect(&fleet, &broker, &a, "sensor-a").await;
    for t in 0..3 {
        c.publish_qos1("telemetry/sensor-a/temperature", format!("{{\"t\": {t}}}"))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while broker.rules_latencies().len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One sample per successful action delivery; the republished copies match no rule.
    assert_eq!(broker.rules_latencies().len(), 3);
    c.disconnect().await.unwrap();
    broker.shutdown(Duration::from_secs(5)).await;
}
