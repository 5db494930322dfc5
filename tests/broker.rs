//! The example broker in process, on an ephemeral loopback port, with certificates and a
//! registry made by thingkit-provision, driven by our thingkit-mqtt + rustls client. These need
//! only a Rust toolchain; `tests/interop.rs` runs the same broker against mosquitto and paho.

#[path = "../examples/broker/client.rs"]
mod client;
#[path = "../examples/broker/fleet.rs"]
mod fleet;
#[path = "../examples/broker/server/mod.rs"]
mod server;

use std::net::SocketAddr;
use std::time::Duration;

use client::{Client, Options, accepted, tls_config};
use fleet::{Device, Fleet};
use server::{Broker, BrokerConfig};
use thingkit::meter::limiter::{Action, Limits, Rate, ReasonCode as LimitCode};
use thingkit::mqtt::{Packet, ProtocolVersion, QoS, ReasonCode};
use thingkit::provision::certificate::CertificateStatus;

async fn start(fleet: &Fleet, config: BrokerConfig) -> Broker {
    Broker::start(
        "127.0.0.1:0".parse().expect("loopback literal"),
        fleet.registry.clone(),
        &fleet.server_chain_pem,
        &fleet.server_key_pem,
        config,
    )
    .await
    .expect("broker starts")
}

async fn connect(fleet: &Fleet, addr: SocketAddr, device: &Device, options: Options) -> Client {
    let tls = tls_config(&fleet.ca_pem(), &device.cert_pem, &device.key_pem).expect("tls config");
    Client::connect(addr, "localhost", tls, &options)
        .await
        .expect("TLS + CONNECT")
}

fn opts(device: &Device, version: ProtocolVersion) -> Options {
    Options {
        version,
        ..Options::new(&device.thing)
    }
}

#[tokio::test]
async fn devices_publish_and_receive_over_mtls_in_both_protocol_versions() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let broker = start(&fleet, BrokerConfig::default()).await;
    let addr = broker.local_addr();
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let mut sub = connect(&fleet, addr, &b, opts(&b, version)).await;
        assert!(accepted(&sub.connack));
        assert_eq!(
            sub.subscribe(&[("telemetry/+/temperature", QoS::AtLeastOnce)])
                .await
                .unwrap(),
            vec![ReasonCode(1)]
        );
        let mut publisher = connect(&fleet, addr, &a, opts(&a, version)).await;
        publisher
            .publish(
                "telemetry/sensor-a/temperature",
                "21.5",
                QoS::AtMostOnce,
                false,
            )
            .await
            .unwrap();
        let code = publisher
            .publish(
                "telemetry/sensor-a/temperature",
                "22.0",
                QoS::AtLeastOnce,
                false,
            )
            .await
            .unwrap();
        assert_eq!(code, Some(ReasonCode::SUCCESS));
        let first = sub.next_publish().await.unwrap().unwrap();
        assert_eq!(&first.payload[..], b"21.5");
        assert_eq!(first.qos, QoS::AtMostOnce);
        let second = sub.next_publish().await.unwrap().unwrap();
        assert_eq!(&second.payload[..], b"22.0");
        assert_eq!(second.qos, QoS::AtLeastOnce);
        publisher.disconnect().await.unwrap();
        sub.disconnect().await.unwrap();
    }
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn policy_denials_follow_aws_behaviour_per_protocol_version() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let broker = start(&fleet, BrokerConfig::default()).await;
    let addr = broker.local_addr();

    // MQTT 5: PUBACK 0x87 with the explanation as reason string; the connection stays up.
    let mut c5 = connect(&fleet, addr, &a, opts(&a, ProtocolVersion::V5)).await;
    let ack = c5
        .publish_qos1("commands/sensor-a/reboot", "now")
        .await
        .unwrap();
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
    let why = ack
        .properties
        .reason_string
        .as_ref()
        .unwrap()
        .as_str()
        .to_string();
    assert!(
        why.contains("EXPLICIT_DENY") && why.contains("NoCommands"),
        "{why}"
    );
    let ack = c5
        .publish_qos1("telemetry/sensor-b/temperature", "1")
        .await
        .unwrap();
    assert_eq!(
        ack.reason_code,
        ReasonCode::NOT_AUTHORIZED,
        "another thing's topic"
    );
    // SUBSCRIBE per filter: one allowed, one denied.
    let codes = c5
        .subscribe(&[
            ("telemetry/#", QoS::AtMostOnce),
            ("commands/#", QoS::AtMostOnce),
        ])
        .await
        .unwrap();
    assert_eq!(codes, vec![ReasonCode(0), ReasonCode::NOT_AUTHORIZED]);
    c5.disconnect().await.unwrap();

    // MQTT 3.1.1: SUBACK failure 0x80; an unauthorized PUBLISH closes the connection.
    let mut c3 = connect(&fleet, addr, &a, opts(&a, ProtocolVersion::V311)).await;
    let codes = c3
        .subscribe(&[("commands/#", QoS::AtMostOnce)])
        .await
        .unwrap();
    assert_eq!(codes, vec![ReasonCode(0x80)]);
    let err = c3
        .publish("commands/sensor-a/reboot", "x", QoS::AtLeastOnce, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");

    // CONNECT with a client ID that is not the thing name: CONNACK Not authorized.
    let other = Options {
        client_id: "impostor".into(),
        ..opts(&a, ProtocolVersion::V5)
    };
    let refused = connect(&fleet, addr, &a, other).await;
    assert_eq!(refused.connack.reason_code, ReasonCode::NOT_AUTHORIZED);
    let other = Options {
        client_id: "impostor".into(),
        ..opts(&a, ProtocolVersion::V311)
    };
    let refused = connect(&fleet, addr, &a, other).await;
    assert_eq!(refused.connack.reason_code, ReasonCode(5));
    assert!(broker.stats().denied >= 5);
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn unknown_inactive_and_revoked_certificates_are_refused_at_connect() {
    let fleet = Fleet::new().unwrap();
    let stranger = fleet.unregistered_device("sensor-x").unwrap();
    let inactive = fleet.add_device("sensor-i", &[]).unwrap();
    let revoked = fleet.add_device("sensor-r", &[]).unwrap();
    fleet
        .set_status(&inactive.certificate_id, CertificateStatus::Inactive)
        .unwrap();
    fleet
        .set_status(&revoked.certificate_id, CertificateStatus::Revoked)
        .unwrap();
    let broker = start(&fleet, BrokerConfig::default()).await;
    for device in [&stranger, &inactive, &revoked] {
        for version in [ProtocolVersion::V5, ProtocolVersion::V311] {
            let c = connect(&fleet, broker.local_addr(), device, opts(device, version)).await;
            let expected = match version {
                ProtocolVersion::V5 => ReasonCode::NOT_AUTHORIZED,
                ProtocolVersion::V311 => ReasonCode(5),
            };
            assert_eq!(
                c.connack.reason_code, expected,
                "{} {version}",
                device.thing
            );
        }
    }
    assert_eq!(broker.stats().connects_accepted, 0);
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn revoking_a_connected_certificate_disconnects_its_device() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let broker = start(&fleet, BrokerConfig::default()).await;
    let mut c = connect(
        &fleet,
        broker.local_addr(),
        &a,
        opts(&a, ProtocolVersion::V5),
    )
    .await;
    assert!(accepted(&c.connack));
    fleet
        .set_status(&a.certificate_id, CertificateStatus::Revoked)
        .unwrap();
    match c.recv().await.unwrap() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::ADMINISTRATIVE_ACTION),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    assert!(
        c.recv().await.unwrap().is_none(),
        "then the connection closes"
    );
    let again = connect(
        &fleet,
        broker.local_addr(),
        &a,
        opts(&a, ProtocolVersion::V5),
    )
    .await;
    assert_eq!(again.connack.reason_code, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(broker.stats().revocation_disconnects, 1);
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_operator_revokes_a_device_through_the_admin_topic() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let op = fleet.add_operator().unwrap();
    let broker = start(&fleet, BrokerConfig::default()).await;
    let mut device = connect(
        &fleet,
        broker.local_addr(),
        &a,
        opts(&a, ProtocolVersion::V311),
    )
    .await;
    let mut operator = connect(
        &fleet,
        broker.local_addr(),
        &op,
        opts(&op, ProtocolVersion::V5),
    )
    .await;
    // A device cannot revoke anyone: its policy does not allow the admin topic.
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let mut other = connect(
        &fleet,
        broker.local_addr(),
        &b,
        opts(&b, ProtocolVersion::V5),
    )
    .await;
    let ack = other
        .publish_qos1(server::REVOKE_TOPIC, a.certificate_id.to_string())
        .await
        .unwrap();
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
    let ack = operator
        .publish_qos1(server::REVOKE_TOPIC, a.certificate_id.to_string())
        .await
        .unwrap();
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    // MQTT 3.1.1 has no DISCONNECT from the server: the connection just closes.
    assert!(device.recv().await.unwrap().is_none());
    let ack = operator
        .publish_qos1(server::REVOKE_TOPIC, "not-an-id")
        .await
        .unwrap();
    assert_eq!(ack.reason_code, ReasonCode::PAYLOAD_FORMAT_INVALID);
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn retained_messages_wills_and_persistent_sessions() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let broker = start(&fleet, BrokerConfig::default()).await;
    let addr = broker.local_addr();

    // Retained: a later subscriber gets it with RETAIN set.
    let mut pa = connect(&fleet, addr, &a, opts(&a, ProtocolVersion::V5)).await;
    pa.publish("status/sensor-a", "online", QoS::AtLeastOnce, true)
        .await
        .unwrap();
    let mut sb = connect(&fleet, addr, &b, opts(&b, ProtocolVersion::V311)).await;
    sb.subscribe(&[("status/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let r = sb.next_publish().await.unwrap().unwrap();
    assert!(r.retain);
    assert_eq!(&r.payload[..], b"online");

    // Will: published when the connection drops without DISCONNECT.
    pa.disconnect().await.unwrap();
    let with_will = Options {
        will: Some((
            "status/sensor-a".into(),
            b"offline".to_vec(),
            QoS::AtLeastOnce,
            true,
        )),
        ..opts(&a, ProtocolVersion::V5)
    };
    let pa = connect(&fleet, addr, &a, with_will).await;
    pa.drop_connection().await;
    let w = sb.next_publish().await.unwrap().unwrap();
    assert_eq!(&w.payload[..], b"offline");
    sb.disconnect().await.unwrap();

    // Persistent session: QoS 1 messages published while offline arrive on reconnect.
    let persistent = Options {
        clean_start: false,
        session_expiry: Some(300),
        ..opts(&b, ProtocolVersion::V5)
    };
    let mut sb = connect(&fleet, addr, &b, persistent.clone()).await;
    sb.subscribe(&[("telemetry/sensor-a/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    sb.disconnect().await.unwrap();
    let mut pa = connect(&fleet, addr, &a, opts(&a, ProtocolVersion::V5)).await;
    pa.publish(
        "telemetry/sensor-a/temperature",
        "19.0",
        QoS::AtLeastOnce,
        false,
    )
    .await
    .unwrap();
    let mut sb = connect(&fleet, addr, &b, persistent).await;
    assert!(sb.connack.session_present);
    let m = sb.next_publish().await.unwrap().unwrap();
    assert_eq!(&m.payload[..], b"19.0");
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_device_over_its_publish_rate_is_throttled_with_the_configured_action() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let config = BrokerConfig {
        connection_limits: Limits {
            messages: Some(Rate {
                amount: 1,
                period_ms: 60_000,
                burst: 3,
            }),
            bytes: None,
            message_action: Action::Reject(LimitCode::MessageRateTooHigh),
            byte_action: Action::Drop,
        },
        ..BrokerConfig::default()
    };
    let broker = start(&fleet, config).await;
    let mut c = connect(
        &fleet,
        broker.local_addr(),
        &a,
        opts(&a, ProtocolVersion::V5),
    )
    .await;
    let mut codes = Vec::new();
    for i in 0..5 {
        let ack = c
            .publish_qos1("telemetry/sensor-a/temperature", format!("{i}"))
            .await
            .unwrap();
        codes.push(ack.reason_code);
    }
    assert!(codes[..3].iter().all(|c| c.is_success()), "{codes:?}");
    // 0x96 is not a PUBACK code in MQTT 5 (§3.4.2.1): the broker answers 0x97.
    assert_eq!(&codes[3..], &[ReasonCode::QUOTA_EXCEEDED; 2]);
    assert_eq!(broker.stats().throttled, 2);
    c.disconnect().await.unwrap();
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn oversized_packets_and_bad_topic_aliases_end_the_connection() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let config = BrokerConfig {
        max_packet_size: 1024,
        ..BrokerConfig::default()
    };
    let broker = start(&fleet, config).await;
    let mut c = connect(
        &fleet,
        broker.local_addr(),
        &a,
        opts(&a, ProtocolVersion::V5),
    )
    .await;
    assert_eq!(
        c.connack.properties.maximum_packet_size.map(|m| m.get()),
        Some(1024)
    );
    let _ = c
        .publish(
            "telemetry/sensor-a/blob",
            vec![0u8; 4096],
            QoS::AtMostOnce,
            false,
        )
        .await;
    match c.recv().await.unwrap() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::PACKET_TOO_LARGE),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn shutdown_disconnects_mqtt5_clients_with_server_shutting_down() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let broker = start(&fleet, BrokerConfig::default()).await;
    let mut c = connect(
        &fleet,
        broker.local_addr(),
        &a,
        opts(&a, ProtocolVersion::V5),
    )
    .await;
    let stop = tokio::spawn(broker.shutdown(Duration::from_secs(5)));
    match c.recv().await.unwrap() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::SERVER_SHUTTING_DOWN),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    stop.await.unwrap();
}
