//! The thingkit broker in process, on an ephemeral loopback port, with certificates and a
//! registry made by thingkit-provision, driven by our thingkit-mqtt + rustls client. These need
//! only a Rust toolchain; `tests/interop.rs` runs the same broker against mosquitto and paho.

#[path = "../examples/support/client.rs"]
mod client;
#[path = "../examples/support/fleet.rs"]
mod fleet;

use std::net::SocketAddr;
use std::time::Duration;

use client::{Client, Options, accepted, tls_config};
use fleet::{Device, Fleet};
use thingkit::broker::{Broker, BrokerConfig, BrokerHandle, ServerIdentity};
use thingkit::meter::{LimitAction, LimitReason, Rate, RateLimits};
use thingkit::mqtt::{Packet, ProtocolVersion, QoS, ReasonCode};
use thingkit::provision::{CertificateStatus, PolicyTarget};

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

/// [`start`] with default configuration and `service` plugged in.
async fn start_with_service(
    fleet: &Fleet,
    service: std::sync::Arc<dyn thingkit::broker::TopicService>,
) -> BrokerHandle {
    Broker::builder(
        fleet.registry.clone(),
        ServerIdentity::from_pem(fleet.server_chain_pem.clone(), fleet.server_key_pem.clone()),
    )
    .service(service)
    .bind("127.0.0.1:0".parse().expect("loopback literal"))
    .await
    .expect("broker starts")
}

async fn connect(fleet: &Fleet, addr: SocketAddr, device: &Device, options: Options) -> Client {
    let tls = tls_config(&fleet.ca_pem(), &device.cert_pem, &device.key_pem).expect("tls config");
    Client::connect(addr, "localhost", tls, &options)
        .await
        .expect("TLS + CONNECT")
}

/// Connects `device` to `broker` with default options for `version`.
async fn connect_as(
    fleet: &Fleet,
    broker: &BrokerHandle,
    device: &Device,
    version: ProtocolVersion,
) -> Client {
    connect(fleet, broker.local_addr(), device, opts(device, version)).await
}

/// Reads the next packet and checks that it is a DISCONNECT with `code`.
async fn expect_disconnect(client: &mut Client, code: ReasonCode) {
    match client.recv().await.unwrap() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, code),
        other => panic!("expected DISCONNECT {code:?}, got {other:?}"),
    }
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
    let mut c = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    assert!(accepted(&c.connack));
    fleet
        .set_status(&a.certificate_id, CertificateStatus::Revoked)
        .unwrap();
    expect_disconnect(&mut c, ReasonCode::ADMINISTRATIVE_ACTION).await;
    assert!(
        c.recv().await.unwrap().is_none(),
        "then the connection closes"
    );
    let again = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
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
    let mut device = connect_as(&fleet, &broker, &a, ProtocolVersion::V311).await;
    let mut operator = connect_as(&fleet, &broker, &op, ProtocolVersion::V5).await;
    // A device cannot revoke anyone: its policy does not allow the admin topic.
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let mut other = connect_as(&fleet, &broker, &b, ProtocolVersion::V5).await;
    let ack = other
        .publish_qos1(thingkit::broker::REVOKE_TOPIC, a.certificate_id.to_string())
        .await
        .unwrap();
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
    let ack = operator
        .publish_qos1(thingkit::broker::REVOKE_TOPIC, a.certificate_id.to_string())
        .await
        .unwrap();
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    // MQTT 3.1.1 has no DISCONNECT from the server: the connection just closes.
    assert!(device.recv().await.unwrap().is_none());
    let ack = operator
        .publish_qos1(thingkit::broker::REVOKE_TOPIC, "not-an-id")
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
    let config = BrokerConfig::default().with_connection_limits(
        RateLimits::default()
            .with_messages(Some(Rate {
                amount: 1,
                period_ms: 60_000,
                burst: 3,
            }))
            .with_bytes(None)
            .with_message_action(LimitAction::Reject(LimitReason::QuotaExceeded))
            .with_byte_action(LimitAction::Drop),
    );
    let broker = start(&fleet, config).await;
    let mut c = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    let mut codes = Vec::new();
    for i in 0..5 {
        let ack = c
            .publish_qos1("telemetry/sensor-a/temperature", format!("{i}"))
            .await
            .unwrap();
        codes.push(ack.reason_code);
    }
    assert!(codes[..3].iter().all(|c| c.is_success()), "{codes:?}");
    assert_eq!(&codes[3..], &[ReasonCode::QUOTA_EXCEEDED; 2]);
    assert_eq!(broker.stats().throttled, 2);
    c.disconnect().await.unwrap();
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_retained_message_beyond_the_retained_cap_is_refused_with_quota_exceeded() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let config = BrokerConfig::default().with_max_retained_messages(1);
    let broker = start(&fleet, config).await;
    let mut sb = connect_as(&fleet, &broker, &b, ProtocolVersion::V5).await;
    sb.subscribe(&[("telemetry/sensor-a/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let mut pa = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    let first = pa.publish("telemetry/sensor-a/1", "online", QoS::AtLeastOnce, true);
    assert!(first.await.unwrap().unwrap().is_success());
    // Replacing the topic's message is fine at the cap; a second topic is not.
    let replaced = pa.publish("telemetry/sensor-a/1", "busy", QoS::AtLeastOnce, true);
    assert!(replaced.await.unwrap().unwrap().is_success());
    let refused = pa.publish("telemetry/sensor-a/2", "x", QoS::AtLeastOnce, true);
    assert_eq!(refused.await.unwrap(), Some(ReasonCode::QUOTA_EXCEEDED));
    // The refused message was not routed either: the subscriber sees the accepted ones only.
    pa.publish("telemetry/sensor-a/1", "", QoS::AtLeastOnce, true)
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(sb.next_publish().await.unwrap().unwrap().payload);
    }
    assert_eq!(got, ["online", "busy", ""]);
    assert_eq!(broker.router_counters().retained_refused, 1);
    pa.disconnect().await.unwrap();
    sb.disconnect().await.unwrap();
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn oversized_packets_and_bad_topic_aliases_end_the_connection() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let config = BrokerConfig::default().with_max_packet_size(1024);
    let broker = start(&fleet, config).await;
    let mut c = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
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
    expect_disconnect(&mut c, ReasonCode::PACKET_TOO_LARGE).await;
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn shutdown_disconnects_mqtt5_clients_with_server_shutting_down() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let broker = start(&fleet, BrokerConfig::default()).await;
    let mut c = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    let stop = tokio::spawn(broker.shutdown(Duration::from_secs(5)));
    expect_disconnect(&mut c, ReasonCode::SERVER_SHUTTING_DOWN).await;
    stop.await.unwrap();
}

#[tokio::test]
async fn topic_aliases_are_resolved_inbound_and_used_outbound() {
    use std::num::NonZeroU16;
    use thingkit::mqtt::{Publish, TopicName};
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let broker = start(&fleet, BrokerConfig::default()).await;
    let addr = broker.local_addr();
    let mut sub = connect(
        &fleet,
        addr,
        &b,
        Options {
            topic_alias_maximum: Some(4),
            ..opts(&b, ProtocolVersion::V5)
        },
    )
    .await;
    sub.subscribe(&[("telemetry/#", QoS::AtMostOnce)])
        .await
        .unwrap();
    let mut publ = connect(&fleet, addr, &a, opts(&a, ProtocolVersion::V5)).await;
    assert_eq!(publ.connack.properties.topic_alias_maximum, Some(32));
    // First PUBLISH sets alias 3, the second uses it with an empty topic.
    let mut first = Publish::new(TopicName::new("telemetry/sensor-a/t").unwrap(), "1");
    first.properties.topic_alias = NonZeroU16::new(3);
    publ.send(&Packet::Publish(first)).await.unwrap();
    let mut second = Publish::new(TopicName::new("telemetry/sensor-a/t").unwrap(), "2");
    second.topic = None;
    second.properties.topic_alias = NonZeroU16::new(3);
    publ.send(&Packet::Publish(second)).await.unwrap();
    // The subscriber announced 4 aliases: the broker sends the topic once, then the alias only.
    let got: Vec<_> = [sub.recv().await.unwrap(), sub.recv().await.unwrap()]
        .into_iter()
        .map(|p| match p {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        })
        .collect();
    assert_eq!(
        got[0].topic.as_ref().map(|t| t.as_str()),
        Some("telemetry/sensor-a/t")
    );
    assert!(got[0].properties.topic_alias.is_some());
    assert_eq!(got[1].topic, None);
    assert_eq!(got[1].properties.topic_alias, got[0].properties.topic_alias);
    assert_eq!(&got[1].payload[..], b"2");
    // An alias above the announced maximum ends the connection with 0x94.
    let mut bad = Publish::new(TopicName::new("telemetry/sensor-a/t").unwrap(), "3");
    bad.properties.topic_alias = NonZeroU16::new(33);
    publ.send(&Packet::Publish(bad)).await.unwrap();
    expect_disconnect(&mut publ, ReasonCode::TOPIC_ALIAS_INVALID).await;
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn receive_is_authorized_for_each_delivery() {
    use thingkit::provision::PolicyTarget;
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let op = fleet.add_operator().unwrap();
    {
        // sensor-a may subscribe to anything, but its Receive rights stay the fleet policy's.
        let mut registry = fleet.registry.write().unwrap();
        registry
            .create_policy(
                "subscribe-all",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Subscribe","Resource":"*"}]}"#, std::time::SystemTime::now(),
            )
            .unwrap();
        registry
            .attach_policy(
                "subscribe-all",
                &PolicyTarget::Certificate(a.certificate_id),
            )
            .unwrap();
    }
    let broker = start(&fleet, BrokerConfig::default()).await;
    let mut device = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    assert_eq!(
        device.subscribe(&[("#", QoS::AtLeastOnce)]).await.unwrap(),
        vec![ReasonCode(1)]
    );
    let mut operator = connect_as(&fleet, &broker, &op, ProtocolVersion::V5).await;
    operator
        .publish_qos1("commands/sensor-b/reboot", "secret")
        .await
        .unwrap();
    device
        .publish_qos1("telemetry/sensor-a/temperature", "20.0")
        .await
        .unwrap();
    let m = device.next_publish().await.unwrap().unwrap();
    assert_eq!(
        &m.payload[..],
        b"20.0",
        "the command was not delivered: no iot:Receive"
    );
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn qos2_is_refused_and_a_second_connection_takes_the_session_over() {
    use thingkit::mqtt::{PacketId, Publish, TopicName};
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let broker = start(&fleet, BrokerConfig::default()).await;
    let addr = broker.local_addr();
    let mut first = connect(&fleet, addr, &a, opts(&a, ProtocolVersion::V5)).await;
    assert_eq!(first.connack.properties.maximum_qos, Some(QoS::AtLeastOnce));
    let mut second = connect(&fleet, addr, &a, opts(&a, ProtocolVersion::V5)).await;
    assert!(accepted(&second.connack));
    expect_disconnect(&mut first, ReasonCode::SESSION_TAKEN_OVER).await;
    let mut p = Publish::new(TopicName::new("telemetry/sensor-a/t").unwrap(), "x");
    p.qos = QoS::ExactlyOnce;
    p.packet_id = PacketId::new(1);
    second.send(&Packet::Publish(p)).await.unwrap();
    expect_disconnect(&mut second, ReasonCode::QOS_NOT_SUPPORTED).await;
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_silent_client_is_disconnected_after_one_and_a_half_keep_alives() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let broker = start(&fleet, BrokerConfig::default()).await;
    let mut c = connect(
        &fleet,
        broker.local_addr(),
        &b,
        Options {
            keep_alive: 1,
            ..opts(&b, ProtocolVersion::V5)
        },
    )
    .await;
    c.subscribe(&[("telemetry/#", QoS::AtMostOnce)])
        .await
        .unwrap();
    // Messages *to* the silent client do not keep it alive; only what it sends does.
    let mut publisher = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    let feeder = tokio::spawn(async move {
        for _ in 0..20 {
            if publisher
                .publish("telemetry/sensor-a/t", "1", QoS::AtMostOnce, false)
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut received = 0;
    loop {
        match c.recv().await.unwrap() {
            Some(Packet::Publish(_)) => received += 1,
            Some(Packet::Disconnect(d)) => {
                assert_eq!(d.reason_code, ReasonCode::KEEP_ALIVE_TIMEOUT);
                break;
            }
            other => panic!("expected PUBLISH or DISCONNECT, got {other:?}"),
        }
    }
    assert!(received > 0);
    feeder.abort();
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn firmware_jobs_are_checked_and_kept_for_the_device() {
    use thingkit::firmware::{EnvelopeBuilder, KeyType, ManifestBuilder, SigningKey, TrustAnchors};
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let op = fleet.add_operator().unwrap();
    let key = SigningKey::generate(KeyType::P256).unwrap();
    let stranger = SigningKey::generate(KeyType::P256).unwrap();
    let config = BrokerConfig::default()
        .with_firmware_trust(Some(TrustAnchors::single(key.public_key().clone())));
    let broker = start(&fleet, config).await;
    let image = vec![7u8; 10_000];
    let envelope = |k: &SigningKey| {
        let m = ManifestBuilder::new(5)
            .vendor_id("fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe".parse().unwrap())
            .class_id("1492af14-2569-5e48-bf42-9b2d51f2ab45".parse().unwrap())
            .image(&image)
            .build()
            .unwrap();
        EnvelopeBuilder::new(m).sign(&[k]).unwrap()
    };
    let topic = format!(
        "{}sensor-a{}",
        thingkit::broker::FIRMWARE_TOPIC_PREFIX,
        thingkit::broker::FIRMWARE_TOPIC_SUFFIX
    );
    let mut operator = connect_as(&fleet, &broker, &op, ProtocolVersion::V5).await;
    let ack = operator
        .publish_qos1(&topic, envelope(&stranger))
        .await
        .unwrap();
    assert_eq!(
        ack.reason_code,
        ReasonCode::PAYLOAD_FORMAT_INVALID,
        "signed by an untrusted key"
    );
    let ack = operator.publish_qos1(&topic, envelope(&key)).await.unwrap();
    assert!(ack.reason_code.is_success());
    // The device connects later and still gets its job (kept retained by the broker).
    let mut device = connect_as(&fleet, &broker, &a, ProtocolVersion::V311).await;
    device
        .subscribe(&[(&topic, QoS::AtLeastOnce)])
        .await
        .unwrap();
    let job = device.next_publish().await.unwrap().unwrap();
    assert!(job.retain);
    let verified =
        thingkit::firmware::Verifier::new(TrustAnchors::single(key.public_key().clone()))
            .verify(&job.payload)
            .unwrap();
    assert_eq!(verified.sequence_number, 5);
    // A device cannot publish firmware jobs, not even for itself.
    let mut d5 = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    let ack = d5.publish_qos1(&topic, envelope(&key)).await.unwrap();
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_claim_certificate_provisions_a_device_over_mqtt() {
    let fleet = Fleet::new().unwrap();
    let (service, claim) = fleet.enable_provisioning().unwrap();
    let config = BrokerConfig::default().with_fleet(Some(service));
    let broker = start(&fleet, config).await;
    let addr = broker.local_addr();
    let claim_options = Options {
        client_id: "factory-line-3".into(),
        ..opts(&claim, ProtocolVersion::V5)
    };
    let mut c = connect(&fleet, addr, &claim, claim_options).await;
    assert!(accepted(&c.connack));
    // The claim certificate may not publish telemetry.
    let ack = c
        .publish_qos1("telemetry/x/temperature", "1")
        .await
        .unwrap();
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
    // CreateKeysAndCertificate, then RegisterThing with the ownership token.
    c.subscribe(&[("$aws/certificates/create/json/+", QoS::AtLeastOnce)])
        .await
        .unwrap();
    c.publish_qos1("$aws/certificates/create/json", "{}")
        .await
        .unwrap();
    let reply = c.next_publish().await.unwrap().unwrap();
    assert_eq!(
        reply.topic.as_ref().unwrap().as_str(),
        "$aws/certificates/create/json/accepted"
    );
    let created: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    let token = created["certificateOwnershipToken"].as_str().unwrap();
    c.subscribe(&[(
        "$aws/provisioning-templates/sensor/provision/json/+",
        QoS::AtLeastOnce,
    )])
    .await
    .unwrap();
    // A wrong token is rejected.
    c.publish_qos1(
        "$aws/provisioning-templates/sensor/provision/json",
        r#"{"certificateOwnershipToken":"00","parameters":{"SerialNumber":"77"}}"#,
    )
    .await
    .unwrap();
    let rejected = c.next_publish().await.unwrap().unwrap();
    assert!(
        rejected
            .topic
            .as_ref()
            .unwrap()
            .as_str()
            .ends_with("/rejected")
    );
    let request = serde_json::json!({
        "certificateOwnershipToken": token,
        "parameters": {"SerialNumber": "77"}
    });
    c.publish_qos1(
        "$aws/provisioning-templates/sensor/provision/json",
        request.to_string(),
    )
    .await
    .unwrap();
    let reply = c.next_publish().await.unwrap().unwrap();
    assert!(
        reply
            .topic
            .as_ref()
            .unwrap()
            .as_str()
            .ends_with("/accepted")
    );
    let registered: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(registered["thingName"], "sensor-77");
    c.disconnect().await.unwrap();

    // The new device connects with its new certificate as its thing, under the fleet policy.
    let device = Device {
        thing: "sensor-77".into(),
        certificate_id: created["certificateId"].as_str().unwrap().parse().unwrap(),
        cert_pem: created["certificatePem"].as_str().unwrap().into(),
        key_pem: created["privateKey"].as_str().unwrap().into(),
    };
    let mut d = connect(&fleet, addr, &device, opts(&device, ProtocolVersion::V311)).await;
    assert!(accepted(&d.connack));
    let code = d
        .publish(
            "telemetry/sensor-77/temperature",
            "21.0",
            QoS::AtLeastOnce,
            false,
        )
        .await
        .unwrap();
    assert_eq!(code, Some(ReasonCode::SUCCESS));
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_account_over_its_publish_rate_is_refused_across_its_devices() {
    let fleet = Fleet::new().unwrap();
    let a = fleet
        .add_device("sensor-a", &[("account", "acme")])
        .unwrap();
    let b = fleet
        .add_device("sensor-b", &[("account", "acme")])
        .unwrap();
    let c = fleet
        .add_device("sensor-c", &[("account", "globex")])
        .unwrap();
    let config = BrokerConfig::default().with_account_limits(
        RateLimits::aws_account_publish().with_messages(Some(Rate {
            amount: 1,
            period_ms: 60_000,
            burst: 3,
        })),
    );
    let broker = start(&fleet, config).await;
    let mut codes = Vec::new();
    for d in [&a, &b, &c] {
        let mut client =
            connect(&fleet, broker.local_addr(), d, opts(d, ProtocolVersion::V5)).await;
        for _ in 0..2 {
            let topic = format!("telemetry/{}/temperature", d.thing);
            codes.push(client.publish_qos1(&topic, "1").await.unwrap().reason_code);
        }
        client.disconnect().await.unwrap();
    }
    let ok = ReasonCode::NO_MATCHING_SUBSCRIBERS; // accepted; nobody subscribed
    assert_eq!(
        codes,
        [ok, ok, ok, ReasonCode::QUOTA_EXCEEDED, ok, ok],
        "acme's 4th publish is over its account rate; globex has its own"
    );
    // Refused publishes are not metered.
    let totals = broker.shutdown(Duration::from_secs(5)).await;
    let acme: u64 = totals
        .iter()
        .filter(|(k, _)| k.account == "acme" && k.kind == thingkit::meter::PacketKind::Publish)
        .map(|(_, c)| c.messages)
        .sum();
    assert_eq!(acme, 3);
}

#[tokio::test]
async fn a_shared_subscription_delivers_each_message_to_one_member() {
    use thingkit::provision::PolicyTarget;
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let w1 = fleet.add_device("worker-1", &[]).unwrap();
    let w2 = fleet.add_device("worker-2", &[]).unwrap();
    {
        let mut registry = fleet.registry.write().unwrap();
        registry
            .create_policy(
                "workers",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Subscribe",
                "Resource":"arn:aws:iot:eu-central-1:123456789012:topicfilter/$share/workers/telemetry/*"}]}"#, std::time::SystemTime::now(),
            )
            .unwrap();
        for w in [&w1, &w2] {
            registry
                .attach_policy("workers", &PolicyTarget::Certificate(w.certificate_id))
                .unwrap();
        }
    }
    let broker = start(&fleet, BrokerConfig::default()).await;
    let addr = broker.local_addr();
    let mut workers = Vec::new();
    for w in [&w1, &w2] {
        let mut c = connect(&fleet, addr, w, opts(w, ProtocolVersion::V5)).await;
        let codes = c
            .subscribe(&[("$share/workers/telemetry/#", QoS::AtLeastOnce)])
            .await
            .unwrap();
        assert_eq!(codes, vec![ReasonCode(1)]);
        workers.push(c);
    }
    let mut publ = connect(&fleet, addr, &a, opts(&a, ProtocolVersion::V5)).await;
    for i in 0..6 {
        publ.publish_qos1("telemetry/sensor-a/t", format!("{i}"))
            .await
            .unwrap();
    }
    publ.disconnect().await.unwrap();
    // Each message reaches exactly one worker; both workers get some (round robin).
    let mut got = Vec::new();
    for c in &mut workers {
        let mut mine = Vec::new();
        while let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(500), c.next_publish())
            .await
            .unwrap_or(Ok(None))
        {
            mine.push(String::from_utf8_lossy(&p.payload).to_string());
        }
        assert!(!mine.is_empty());
        got.extend(mine);
    }
    got.sort();
    assert_eq!(got, ["0", "1", "2", "3", "4", "5"]);
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_mqtt5_session_ends_when_its_expiry_interval_has_passed() {
    let fleet = Fleet::new().unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let broker = start(&fleet, BrokerConfig::default()).await;
    let addr = broker.local_addr();
    let with_expiry = |secs| Options {
        clean_start: false,
        session_expiry: Some(secs),
        ..opts(&b, ProtocolVersion::V5)
    };
    let mut c = connect(&fleet, addr, &b, with_expiry(2)).await;
    c.subscribe(&[("telemetry/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    let c = connect(&fleet, addr, &b, with_expiry(2)).await;
    assert!(c.connack.session_present, "reconnected within the interval");
    c.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let c = connect(&fleet, addr, &b, with_expiry(2)).await;
    assert!(!c.connack.session_present, "the interval has passed");
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_delayed_will_is_dropped_when_the_client_returns_in_time_and_sent_otherwise() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let broker = start(&fleet, BrokerConfig::default()).await;
    let addr = broker.local_addr();
    let mut watcher = connect(&fleet, addr, &b, opts(&b, ProtocolVersion::V5)).await;
    watcher
        .subscribe(&[("status/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let with_will = Options {
        clean_start: false,
        session_expiry: Some(60),
        will: Some((
            "status/sensor-a".into(),
            b"gone".to_vec(),
            QoS::AtLeastOnce,
            false,
        )),
        will_delay: Some(1),
        ..opts(&a, ProtocolVersion::V5)
    };
    // Drops, and is back within the delay: no will.
    connect(&fleet, addr, &a, with_will.clone())
        .await
        .drop_connection()
        .await;
    let back = connect(&fleet, addr, &a, with_will.clone()).await;
    assert!(back.connack.session_present);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Now it drops for good: the will arrives after the delay.
    back.drop_connection().await;
    let w = watcher.next_publish().await.unwrap().unwrap();
    assert_eq!(&w.payload[..], b"gone");
    let more = tokio::time::timeout(Duration::from_millis(1500), watcher.recv()).await;
    assert!(
        more.is_err(),
        "exactly one will (the first one was dropped): {more:?}"
    );
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_expired_retained_message_is_not_delivered() {
    use thingkit::mqtt::{Publish, TopicName};
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let broker = start(&fleet, BrokerConfig::default()).await;
    let addr = broker.local_addr();
    let mut publ = connect(&fleet, addr, &a, opts(&a, ProtocolVersion::V5)).await;
    let mut p = Publish::new(TopicName::new("status/sensor-a").unwrap(), "short-lived");
    p.retain = true;
    p.properties.message_expiry_interval = Some(2);
    publ.send(&Packet::Publish(p)).await.unwrap();
    publ.publish("status/sensor-a", "", QoS::AtMostOnce, false)
        .await
        .unwrap(); // a barrier
    let mut early = connect(&fleet, addr, &b, opts(&b, ProtocolVersion::V5)).await;
    early
        .subscribe(&[("status/#", QoS::AtMostOnce)])
        .await
        .unwrap();
    let m = early.next_publish().await.unwrap().unwrap();
    assert!(m.retain);
    assert!(m.properties.message_expiry_interval.is_some_and(|s| s <= 2));
    early.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut late = connect(&fleet, addr, &b, opts(&b, ProtocolVersion::V5)).await;
    late.subscribe(&[("status/#", QoS::AtMostOnce)])
        .await
        .unwrap();
    let more = tokio::time::timeout(Duration::from_millis(500), late.recv()).await;
    assert!(more.is_err(), "expired: {more:?}");
    broker.shutdown(Duration::from_secs(5)).await;
}

/// Creates policy `name` from `document` and attaches it to `device`'s certificate.
fn attach_certificate_policy(fleet: &Fleet, device: &Device, name: &str, document: &str) {
    let mut registry = fleet.registry.write().unwrap_or_else(|p| p.into_inner());
    registry
        .create_policy(name, document, std::time::SystemTime::now())
        .unwrap();
    registry
        .attach_policy(name, &PolicyTarget::Certificate(device.certificate_id))
        .unwrap();
}

#[tokio::test]
async fn certificate_policy_variables_resolve_from_the_client_certificate() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    attach_certificate_policy(
        &fleet,
        &a,
        "by-common-name",
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Publish",
            "Resource": "arn:aws:iot:eu-central-1:123456789012:topic/cn/${iot:Certificate.Subject.CommonName}/*"}]}"#,
    );
    let broker = start(&fleet, BrokerConfig::default()).await;
    let mut c = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    assert!(accepted(&c.connack));
    // The certificate's subject CN is `sensor-a` (create_keys_and_certificate's common name).
    let own = c.publish_qos1("cn/sensor-a/status", "ok").await.unwrap();
    assert_eq!(own.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    let other = c.publish_qos1("cn/sensor-b/status", "ok").await.unwrap();
    assert_eq!(other.reason_code, ReasonCode::NOT_AUTHORIZED);
    c.disconnect().await.unwrap();
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_policy_attached_or_detached_decides_the_next_publish_of_a_live_connection() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let broker = start(&fleet, BrokerConfig::default()).await;
    let mut c = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    assert!(accepted(&c.connack));
    let before = c.publish_qos1("ops/sensor-a/x", "1").await.unwrap();
    assert_eq!(before.reason_code, ReasonCode::NOT_AUTHORIZED);

    // Attached while connected: the next publish is allowed, without reconnecting.
    attach_certificate_policy(
        &fleet,
        &a,
        "ops",
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Publish",
            "Resource": "arn:aws:iot:eu-central-1:123456789012:topic/ops/*"}]}"#,
    );
    let allowed = c.publish_qos1("ops/sensor-a/x", "2").await.unwrap();
    assert_eq!(allowed.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS);

    // A new default version that allows less takes effect at once too.
    {
        let mut registry = fleet.registry.write().unwrap_or_else(|p| p.into_inner());
        registry
            .create_policy_version(
                "ops",
                r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Publish",
                    "Resource": "arn:aws:iot:eu-central-1:123456789012:topic/ops/other/*"}]}"#,
                true,
                std::time::SystemTime::now(),
            )
            .unwrap();
    }
    let narrowed = c.publish_qos1("ops/sensor-a/x", "3").await.unwrap();
    assert_eq!(narrowed.reason_code, ReasonCode::NOT_AUTHORIZED);
    let still = c.publish_qos1("ops/other/x", "3").await.unwrap();
    assert_eq!(still.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS);

    // Detached: denied again on the same connection.
    fleet
        .registry
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .detach_policy("ops", &PolicyTarget::Certificate(a.certificate_id))
        .unwrap();
    let after = c.publish_qos1("ops/other/x", "4").await.unwrap();
    assert_eq!(after.reason_code, ReasonCode::NOT_AUTHORIZED);
    c.disconnect().await.unwrap();
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn thing_policy_variables_resolve_only_when_the_client_id_is_an_attached_thing() {
    let fleet = Fleet::new().unwrap();
    let a = fleet
        .add_device("sensor-a", &[("room", "kitchen")])
        .unwrap();
    // Any client ID may connect with this certificate; thing topics use the thing variables.
    attach_certificate_policy(
        &fleet,
        &a,
        "any-client",
        r#"{"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"},
            {"Effect": "Allow", "Action": "iot:Publish",
             "Resource": "arn:aws:iot:eu-central-1:123456789012:topic/things/${iot:Connection.Thing.ThingName}/${iot:Connection.Thing.Attributes[room]}"},
            {"Effect": "Allow", "Action": "iot:Publish",
             "Resource": "arn:aws:iot:eu-central-1:123456789012:topic/unattached/*",
             "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "false"}}}]}"#,
    );
    let broker = start(&fleet, BrokerConfig::default()).await;

    // Client ID = the attached thing's name: name and attributes resolve; IsAttached is true.
    let mut own = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    assert!(accepted(&own.connack));
    let ack = own
        .publish_qos1("things/sensor-a/kitchen", "1")
        .await
        .unwrap();
    assert_eq!(ack.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    let ack = own.publish_qos1("unattached/x", "1").await.unwrap();
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
    own.disconnect().await.unwrap();

    // Another client ID with the same certificate: the thing variables do not resolve (not even
    // to the certificate's own thing), and IsAttached is false.
    let options = Options {
        client_id: "someone-else".into(),
        ..opts(&a, ProtocolVersion::V5)
    };
    let mut other = connect(&fleet, broker.local_addr(), &a, options).await;
    assert!(accepted(&other.connack));
    for topic in ["things/sensor-a/kitchen", "things/someone-else/kitchen"] {
        let ack = other.publish_qos1(topic, "1").await.unwrap();
        assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED, "{topic}");
    }
    let ack = other.publish_qos1("unattached/x", "1").await.unwrap();
    assert_eq!(ack.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    other.disconnect().await.unwrap();
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn aws_devices_negotiate_alpn_x_amzn_mqtt_ca_and_clients_without_alpn_still_connect() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let broker = start(&fleet, BrokerConfig::default()).await;
    let with_alpn = |protocols: &[&[u8]]| {
        let tls = tls_config(&fleet.ca_pem(), &a.cert_pem, &a.key_pem).expect("tls config");
        let mut tls = (*tls).clone();
        tls.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        std::sync::Arc::new(tls)
    };
    let options = opts(&a, ProtocolVersion::V311);

    // An AWS IoT device on port 443: ALPN x-amzn-mqtt-ca is chosen, CONNACK follows.
    let tls = with_alpn(&[b"x-amzn-mqtt-ca"]);
    let aws = Client::connect(broker.local_addr(), "localhost", tls, &options)
        .await
        .expect("TLS + CONNECT with ALPN");
    assert!(accepted(&aws.connack));
    assert_eq!(aws.alpn_protocol(), Some(&b"x-amzn-mqtt-ca"[..]));
    aws.disconnect().await.unwrap();

    // No ALPN offered: no protocol negotiated, the connection is accepted as before.
    let plain = connect(&fleet, broker.local_addr(), &a, options.clone()).await;
    assert!(accepted(&plain.connack));
    assert_eq!(plain.alpn_protocol(), None);
    plain.disconnect().await.unwrap();

    // Only protocols this server does not speak: the handshake fails (no_application_protocol).
    let tls = with_alpn(&[b"x-amzn-http-ca", b"h2"]);
    assert!(
        Client::connect(broker.local_addr(), "localhost", tls, &options)
            .await
            .is_err()
    );
    for _ in 0..50 {
        if broker.stats().tls_failures > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(broker.stats().tls_failures, 1);
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_publish_the_account_limiter_cannot_track_is_refused_not_admitted() {
    let fleet = Fleet::new().unwrap();
    let a = fleet
        .add_device("sensor-a", &[("account", "acme")])
        .unwrap();
    let b = fleet
        .add_device("sensor-b", &[("account", "globex")])
        .unwrap();
    let watcher = fleet
        .add_device("sensor-w", &[("account", "acme")])
        .unwrap();
    // Room for one account: acme's devices take it, globex cannot be tracked.
    let config = BrokerConfig::default().with_max_accounts(1);
    let broker = start(&fleet, config).await;
    let mut sub = connect_as(&fleet, &broker, &watcher, ProtocolVersion::V5).await;
    sub.subscribe(&[("telemetry/#", QoS::AtMostOnce)])
        .await
        .unwrap();
    let mut ca = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    let ack = ca
        .publish_qos1("telemetry/sensor-a/temperature", "a")
        .await
        .unwrap();
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);

    // MQTT 5: PUBACK 0x80 Unspecified error, and the message is not routed.
    let mut cb = connect_as(&fleet, &broker, &b, ProtocolVersion::V5).await;
    assert!(
        accepted(&cb.connack),
        "the device connects; its publishes cannot be metered"
    );
    let ack = cb
        .publish_qos1("telemetry/sensor-b/temperature", "b")
        .await
        .unwrap();
    assert_eq!(ack.reason_code, ReasonCode::UNSPECIFIED_ERROR);
    cb.disconnect().await.unwrap();
    // MQTT 3.1.1: dropped without a PUBACK (as a rate-limit rejection).
    let mut cb = connect_as(&fleet, &broker, &b, ProtocolVersion::V311).await;
    cb.publish(
        "telemetry/sensor-b/temperature",
        "b3",
        QoS::AtMostOnce,
        false,
    )
    .await
    .unwrap();
    // Wait until the broker has handled (and refused) it: no PUBACK tells us.
    for _ in 0..50 {
        if broker.stats().meter_refusals == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Acme still publishes; the watcher gets its two messages and nothing of globex's.
    ca.publish(
        "telemetry/sensor-a/temperature",
        "a2",
        QoS::AtMostOnce,
        false,
    )
    .await
    .unwrap();
    for expected in [&b"a"[..], b"a2"] {
        let m = sub.next_publish().await.unwrap().unwrap();
        assert_eq!(&m.payload[..], expected);
    }
    let stats = broker.stats();
    assert_eq!(stats.meter_refusals, 2);
    assert_eq!(stats.publishes_in, 2);
    let totals = broker.shutdown(Duration::from_secs(5)).await;
    let globex_published: u64 = totals
        .iter()
        .filter(|(k, _)| k.account == "globex" && k.kind == thingkit::meter::PacketKind::Publish)
        .map(|(_, c)| c.messages)
        .sum();
    assert_eq!(globex_published, 0, "refused publishes are not metered");
}

#[tokio::test]
async fn a_connect_the_connection_rate_limiter_cannot_track_is_refused_not_admitted() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    // Room for one client ID: sensor-a takes it (and is not idle long enough to be evicted).
    let config = BrokerConfig::default()
        .with_connect_limits(Some(RateLimits::aws_client_connect()))
        .with_max_connect_clients(1);
    let broker = start(&fleet, config).await;
    let ca = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    assert!(accepted(&ca.connack));
    let cb = connect_as(&fleet, &broker, &b, ProtocolVersion::V5).await;
    assert_eq!(cb.connack.reason_code, ReasonCode::SERVER_BUSY);
    let cb = connect_as(&fleet, &broker, &b, ProtocolVersion::V311).await;
    assert_eq!(
        cb.connack.reason_code,
        ReasonCode(3),
        "3.1.1: Server unavailable"
    );
    assert_eq!(broker.stats().connects_refused, 2);
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_delayed_publish_is_decided_again_after_the_delay() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let limits = |period_ms| {
        RateLimits::default()
            .with_messages(Some(Rate {
                amount: 1,
                period_ms,
                burst: 1,
            }))
            .with_bytes(None)
            .with_message_action(LimitAction::Delay)
    };
    // One message a minute: the delay (at most 1 s) is not enough, the second is refused.
    let config = BrokerConfig::default().with_connection_limits(limits(60_000));
    let broker = start(&fleet, config).await;
    let mut c = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    let topic = "telemetry/sensor-a/temperature";
    let first = c.publish_qos1(topic, "1").await.unwrap();
    assert!(first.reason_code.is_success());
    let second = c.publish_qos1(topic, "2").await.unwrap();
    assert_eq!(second.reason_code, ReasonCode::QUOTA_EXCEEDED);
    let stats = broker.stats();
    assert_eq!((stats.publishes_in, stats.throttled), (1, 1));
    c.disconnect().await.unwrap();
    broker.shutdown(Duration::from_secs(5)).await;

    // Five a second: the delay is enough, the second is admitted after it and counted.
    let config = BrokerConfig::default().with_connection_limits(limits(200));
    let broker = start(&fleet, config).await;
    let mut c = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    for payload in ["1", "2"] {
        let ack = c.publish_qos1(topic, payload).await.unwrap();
        assert!(ack.reason_code.is_success(), "{payload}: {ack:?}");
    }
    let stats = broker.stats();
    assert_eq!((stats.publishes_in, stats.throttled), (2, 1));
    c.disconnect().await.unwrap();
    let totals = broker.shutdown(Duration::from_secs(5)).await;
    let published: u64 = totals
        .iter()
        .filter(|(k, _)| k.kind == thingkit::meter::PacketKind::Publish)
        .map(|(_, c)| c.messages)
        .sum();
    assert_eq!(published, 2);
}

/// The registry for everything but provisioning, whose task panics.
struct PanickingProvisioning(thingkit::broker::RegistryDirectory<thingkit::provision::MemoryStore>);

impl thingkit::broker::Directory for PanickingProvisioning {
    fn authenticate(
        &self,
        chain: &[Vec<u8>],
        client_id: &str,
    ) -> Result<thingkit::broker::Authenticated, String> {
        self.0.authenticate(chain, client_id)
    }
    fn revoke(&self, id: &thingkit::provision::CertificateId) -> Result<(), String> {
        self.0.revoke(id)
    }
    fn provision(
        &self,
        _: &thingkit::provision::CertificateId,
        topic: &str,
        _: &[u8],
    ) -> Option<Vec<thingkit::provision::Reply>> {
        panic!("provisioning failed on {topic} (test)");
    }
}

#[tokio::test]
async fn a_failed_provisioning_task_is_answered_with_an_error_and_never_routed() {
    let fleet = Fleet::new().unwrap();
    let (service, claim) = fleet.enable_provisioning().unwrap();
    let operator = fleet.add_operator().unwrap();
    let directory = std::sync::Arc::new(PanickingProvisioning(
        thingkit::broker::RegistryDirectory::new(fleet.registry.clone(), Some(service)),
    ));
    let broker = Broker::builder(
        fleet.registry.clone(),
        ServerIdentity::from_pem(fleet.server_chain_pem.clone(), fleet.server_key_pem.clone()),
    )
    .directory(directory)
    .config(BrokerConfig::default().with_lifecycle_events(false))
    .bind("127.0.0.1:0".parse().expect("loopback literal"))
    .await
    .expect("broker starts");
    // The operator reads every topic, so a request routed as telemetry would reach it.
    let mut watcher = connect_as(&fleet, &broker, &operator, ProtocolVersion::V5).await;
    watcher
        .subscribe(&[("$aws/#", QoS::AtMostOnce), ("commands/#", QoS::AtMostOnce)])
        .await
        .unwrap();
    let claim_options = Options {
        client_id: "factory-line-3".into(),
        ..opts(&claim, ProtocolVersion::V5)
    };
    let mut c = connect(&fleet, broker.local_addr(), &claim, claim_options).await;
    assert!(accepted(&c.connack));
    let ack = c
        .publish_qos1("$aws/certificates/create/json", "{}")
        .await
        .unwrap();
    assert_eq!(ack.reason_code, ReasonCode::UNSPECIFIED_ERROR);
    // And it is told on `.../rejected`, in AWS's error shape, as a device SDK waits for.
    let rejected = tokio::time::timeout(Duration::from_secs(5), c.next_publish())
        .await
        .expect("a rejected reply in time")
        .unwrap()
        .unwrap();
    assert_eq!(
        rejected.topic.as_ref().unwrap().as_str(),
        "$aws/certificates/create/json/rejected"
    );
    let body: serde_json::Value = serde_json::from_slice(&rejected.payload).unwrap();
    assert_eq!(body["statusCode"], 500);
    assert_eq!(body["errorCode"], "InternalFailure");
    c.disconnect().await.unwrap();
    // The next message the watcher sees is its own marker, not the request.
    watcher
        .publish("commands/marker", "m", QoS::AtMostOnce, false)
        .await
        .unwrap();
    let m = watcher.next_publish().await.unwrap().unwrap();
    assert_eq!(m.topic.as_ref().unwrap().as_str(), "commands/marker");
    let stats = broker.stats();
    assert_eq!(stats.provisioning_failures, 1);
    broker.shutdown(Duration::from_secs(5)).await;
}

/// Regression: a connection that ended right after CONNECT (the client reset before reading
/// CONNACK, so the first write or the backlog delivery failed) returned early and skipped the
/// cleanup, leaking its meter slot, its certificate index entry and its session attachment;
/// with `max_connections` slots leaked, every CONNECT was refused with "server busy". The
/// cleanup now runs in the connection's `Drop`, on every exit path.
#[tokio::test]
async fn connections_reset_right_after_connect_release_their_slots() {
    use thingkit::mqtt::{Connect, Encoder, MqttStr, PacketProperties};
    use tokio::io::AsyncWriteExt;
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let broker = start(&fleet, BrokerConfig::default().with_max_connections(2)).await;
    let tls = tls_config(&fleet.ca_pem(), &a.cert_pem, &a.key_pem).expect("tls config");
    for round in 0..20 {
        let tcp = tokio::net::TcpStream::connect(broker.local_addr())
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .unwrap();
        let mut buf = thingkit::mqtt::bytes::BytesMut::new();
        Encoder::new(ProtocolVersion::V5)
            .encode(
                &Packet::Connect(Connect {
                    protocol: ProtocolVersion::V5,
                    clean_start: round % 2 == 0,
                    keep_alive: 30,
                    properties: PacketProperties::default(),
                    client_id: MqttStr::new("sensor-a").unwrap(),
                    will: None,
                    username: None,
                    password: None,
                }),
                &mut buf,
            )
            .unwrap();
        stream.write_all(&buf).await.unwrap();
        stream.flush().await.unwrap();
        // Reset: SO_LINGER 0 makes the close an RST, so the broker's writes fail.
        let (tcp, _) = stream.into_inner();
        tcp.set_zero_linger().unwrap();
        drop(tcp);
    }
    // Every slot comes back...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while broker.connections() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} connection slots leaked",
            broker.connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...and a device still connects.
    let c = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    assert!(accepted(&c.connack));
}

/// AWS IoT lifecycle events: connected, subscribed, unsubscribed and disconnected (with its
/// `disconnectReason`) reach a subscriber of `$aws/events/#` with AWS's element names, and the
/// registry keeps the thing's connectivity status.
#[tokio::test]
async fn lifecycle_events_are_published_and_the_registry_keeps_connectivity() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let op = fleet.add_operator().unwrap();
    let broker = start(&fleet, BrokerConfig::default()).await;
    let mut operator = connect_as(&fleet, &broker, &op, ProtocolVersion::V5).await;
    operator
        .subscribe(&[("$aws/events/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let mut next_event = async || {
        let p = tokio::time::timeout(Duration::from_secs(5), operator.next_publish())
            .await
            .expect("an event in time")
            .unwrap()
            .unwrap();
        let topic = p.topic.as_ref().unwrap().as_str().to_string();
        let json: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
        (topic, json)
    };

    // The operator's own subscription is the first event it sees.
    let (topic, _) = next_event().await;
    assert_eq!(topic, "$aws/events/subscriptions/subscribed/operator");
    let mut device = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    let (topic, connected) = next_event().await;
    assert_eq!(topic, "$aws/events/presence/connected/sensor-a");
    assert_eq!(connected["clientId"], "sensor-a");
    assert_eq!(connected["eventType"], "connected");
    assert_eq!(connected["ipAddress"], "127.0.0.1");
    assert_eq!(
        connected["principalIdentifier"],
        a.certificate_id.to_string()
    );
    let version = connected["versionNumber"].as_u64().unwrap();
    let connectivity = fleet
        .registry
        .read()
        .unwrap()
        .connectivity("sensor-a")
        .unwrap();
    assert!(connectivity.connected);

    device
        .subscribe(&[("telemetry/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let (topic, subscribed) = next_event().await;
    assert_eq!(topic, "$aws/events/subscriptions/subscribed/sensor-a");
    assert_eq!(subscribed["topics"], serde_json::json!(["telemetry/#"]));
    assert_eq!(
        subscribed["sessionIdentifier"],
        connected["sessionIdentifier"]
    );

    device.disconnect().await.unwrap();
    let (topic, disconnected) = next_event().await;
    assert_eq!(topic, "$aws/events/presence/disconnected/sensor-a");
    assert_eq!(
        disconnected["disconnectReason"],
        "CLIENT_INITIATED_DISCONNECT"
    );
    assert_eq!(disconnected["clientInitiatedDisconnect"], true);
    assert_eq!(disconnected["versionNumber"].as_u64(), Some(version));
    let connectivity = fleet
        .registry
        .read()
        .unwrap()
        .connectivity("sensor-a")
        .unwrap();
    assert!(!connectivity.connected);
    assert_eq!(
        connectivity.disconnect_reason.as_deref(),
        Some("CLIENT_INITIATED_DISCONNECT")
    );

    // A revoked device's connection ends by the server: SERVER_INITIATED_DISCONNECT.
    let _device = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    let (_, connected) = next_event().await;
    assert!(connected["versionNumber"].as_u64().unwrap() > version);
    assert_eq!(broker.disconnect_certificate(&a.certificate_id), 1);
    let (_, disconnected) = next_event().await;
    assert_eq!(
        disconnected["disconnectReason"],
        "SERVER_INITIATED_DISCONNECT"
    );
    assert_eq!(disconnected["clientInitiatedDisconnect"], false);
}

/// Limits per thing group: a device in the group gets the class's publish limit, another
/// device keeps the default one.
#[tokio::test]
async fn limit_classes_apply_per_thing_group() {
    use thingkit::broker::{LimitClass, ThingSelector};
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    {
        let mut registry = fleet.registry.write().unwrap();
        registry.create_thing_group("chatty", None).unwrap();
        registry.add_thing_to_group("sensor-a", "chatty").unwrap();
    }
    let strict = RateLimits::default()
        .with_messages(Some(Rate {
            amount: 1,
            period_ms: 60_000,
            burst: 2,
        }))
        .with_bytes(None)
        .with_message_action(LimitAction::Reject(LimitReason::QuotaExceeded));
    let config = BrokerConfig::default().with_limit_classes(vec![LimitClass::new(
        ThingSelector::ThingGroup("chatty".into()),
        strict,
    )]);
    let broker = start(&fleet, config).await;
    for (device, limited) in [(&a, true), (&b, false)] {
        let mut c = connect_as(&fleet, &broker, device, ProtocolVersion::V5).await;
        let mut codes = Vec::new();
        for i in 0..4 {
            let topic = format!("telemetry/{}/t", device.thing);
            codes.push(
                c.publish_qos1(&topic, format!("{i}"))
                    .await
                    .unwrap()
                    .reason_code,
            );
        }
        let refused = codes
            .iter()
            .filter(|c| **c == ReasonCode::QUOTA_EXCEEDED)
            .count();
        assert_eq!(
            refused,
            if limited { 2 } else { 0 },
            "{}: {codes:?}",
            device.thing
        );
        c.disconnect().await.unwrap();
    }
    broker.shutdown(Duration::from_secs(5)).await;
}

/// A topic service plugged in through the builder: it claims its filters, answers the
/// requester alone, and what it consumes is never routed to subscribers.
#[tokio::test]
async fn a_custom_topic_service_answers_the_requester_and_consumes_the_request() {
    use thingkit::broker::{ServiceReply, ServiceRequest, ServiceResponse, TopicService};
    use thingkit::mqtt::TopicFilter;
    struct Echo;
    impl TopicService for Echo {
        fn name(&self) -> &'static str {
            "echo"
        }
        fn filters(&self) -> Vec<TopicFilter> {
            vec![TopicFilter::new("telemetry/+/echo").unwrap()]
        }
        fn handle(&self, request: &ServiceRequest<'_>) -> ServiceResponse {
            ServiceResponse::consumed(vec![ServiceReply {
                topic: format!("{}/reply", request.message.topic.as_str()),
                payload: request.message.payload.to_vec(),
            }])
        }
    }
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let broker = start_with_service(&fleet, std::sync::Arc::new(Echo)).await;
    let mut watcher = connect_as(&fleet, &broker, &b, ProtocolVersion::V5).await;
    watcher
        .subscribe(&[("telemetry/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let mut c = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    let ack = c
        .publish_qos1("telemetry/sensor-a/echo", "ping")
        .await
        .unwrap();
    assert!(ack.reason_code.is_success());
    let reply = c.next_publish().await.unwrap().unwrap();
    assert_eq!(
        reply.topic.as_ref().unwrap().as_str(),
        "telemetry/sensor-a/echo/reply"
    );
    assert_eq!(&reply.payload[..], b"ping");
    // The watcher sees the next ordinary message, not the request or the reply.
    c.publish_qos1("telemetry/sensor-a/t", "after")
        .await
        .unwrap();
    let next = watcher.next_publish().await.unwrap().unwrap();
    assert_eq!(
        next.topic.as_ref().unwrap().as_str(),
        "telemetry/sensor-a/t"
    );
    broker.shutdown(Duration::from_secs(5)).await;
}

/// GETs `path` from `addr` over HTTP/1.1 on a plain TCP stream; returns the status code, the
/// Content-Type and the body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    (status, content_type, body.to_string())
}

/// Parses OpenMetrics text line by line, strictly for what the broker writes: each family has
/// one `# HELP` and one `# TYPE` (counter, gauge or info) before its samples, a counter's
/// samples are named `{family}_total`, an info's `{family}_info` (value 1) and a gauge's
/// `{family}`, values are numbers, and `# EOF` ends it.
/// Returns the samples by name with their labels (`name{label="value"}`).
fn parse_openmetrics(text: &str) -> std::collections::BTreeMap<String, f64> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut samples = BTreeMap::new();
    let mut families = BTreeSet::new();
    let mut family: Option<(String, String)> = None; // (name, type)
    let mut lines = text.lines().peekable();
    let mut eof = false;
    while let Some(line) = lines.next() {
        assert!(!eof, "a line after # EOF: {line:?}");
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("# HELP name text");
            assert!(!help.is_empty(), "empty help for {name}");
            assert!(families.insert(name.to_string()), "{name} described twice");
            let next = lines.next().expect("# TYPE after # HELP");
            let (type_name, kind) = next
                .strip_prefix("# TYPE ")
                .and_then(|t| t.split_once(' '))
                .expect("# TYPE name type");
            assert_eq!(type_name, name, "# TYPE follows its # HELP");
            assert!(matches!(kind, "counter" | "gauge" | "info"), "{kind}");
            family = Some((name.to_string(), kind.to_string()));
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("a sample: name value");
        let name = series.split('{').next().unwrap();
        let (family, kind) = family.as_ref().expect("a sample after its # TYPE");
        let expected = match kind.as_str() {
            "counter" => format!("{family}_total"),
            "info" => format!("{family}_info"),
            _ => family.clone(),
        };
        assert_eq!(name, expected, "sample {line:?} of family {family}");
        assert!(name.starts_with("thingkit_"), "{name}");
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line:?}"
            );
        }
        let value: f64 = value.parse().expect("a numeric value");
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "{series} twice"
        );
    }
    assert!(eof, "the exposition ends with # EOF");
    samples
}

#[tokio::test]
async fn metrics_count_connections_messages_and_denials_and_health_follows_shutdown() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let broker = start(&fleet, BrokerConfig::default()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(thingkit::broker::serve_metrics(
        listener,
        broker.metrics(),
        async move {
            let _ = stopped.await;
        },
    ));

    assert_eq!(http_get(http, "/health").await.0, 200);
    assert_eq!(http_get(http, "/health").await.2, "ok\n");
    assert_eq!(http_get(http, "/nothing-here").await.0, 404);

    // One connection, one accepted publish it receives back, one publish denied by policy.
    let mut c = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    c.subscribe(&[("telemetry/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let ack = c
        .publish_qos1("telemetry/sensor-a/temperature", "21")
        .await
        .unwrap();
    assert_eq!(ack.reason_code, ReasonCode(0));
    let ack = c
        .publish_qos1("commands/sensor-a/reboot", "now")
        .await
        .unwrap();
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);

    // Deliveries are counted when the subscriber's task has written them: scrape until then.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let (status, content_type, body) = http_get(http, "/metrics").await;
        assert_eq!(status, 200);
        assert_eq!(content_type, thingkit::broker::METRICS_CONTENT_TYPE);
        let metrics = parse_openmetrics(&body);
        if metrics["thingkit_messages_out_total"] >= 1.0 {
            break metrics;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let version = format!(
        "thingkit_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    for (sample, value) in [
        (version.as_str(), 1.0),
        ("thingkit_connections", 1.0),
        ("thingkit_sessions", 1.0),
        ("thingkit_connects_accepted_total", 1.0),
        ("thingkit_connects_refused_total", 0.0),
        ("thingkit_messages_in_total", 1.0),
        ("thingkit_denied_total{action=\"publish\"}", 1.0),
        ("thingkit_denied_total{action=\"connect\"}", 0.0),
        ("thingkit_denied_total{action=\"subscribe\"}", 0.0),
        ("thingkit_denied_total{action=\"receive\"}", 0.0),
        ("thingkit_tls_handshake_failures_total", 0.0),
        ("thingkit_offline_queued_messages", 0.0),
        ("thingkit_retained_messages", 0.0),
        ("thingkit_router_retained_refused_total", 0.0),
        ("thingkit_backpressure_waits_total", 0.0),
        ("thingkit_slow_subscriber_disconnects_total", 0.0),
        ("thingkit_refusal_disconnects_total", 0.0),
        ("thingkit_router_ended_dropped_total", 0.0),
    ] {
        assert_eq!(metrics.get(sample), Some(&value), "{sample}");
    }
    assert_eq!(broker.stats().denied, 1, "the snapshot keeps the total");

    // Shutdown has begun once the client is told so: health turns 503 while HTTP still serves.
    let stop = tokio::spawn(broker.shutdown(Duration::from_secs(5)));
    loop {
        match c.recv().await.unwrap() {
            Some(Packet::Disconnect(d)) => {
                assert_eq!(d.reason_code, ReasonCode::SERVER_SHUTTING_DOWN);
                break;
            }
            Some(_) => continue, // the echoed telemetry, if not read yet
            None => panic!("closed without DISCONNECT"),
        }
    }
    let (status, _, body) = http_get(http, "/health").await;
    assert_eq!((status, body.as_str()), (503, "shutting down\n"));
    stop.await.unwrap();
    stop_http.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// Regression: the policy context's current time was taken once at CONNECT, so a policy that
/// allows something only until a date kept allowing it on a connection opened before then.
/// Date conditions are now decided with the time of each request.
#[tokio::test]
async fn a_date_condition_is_decided_at_the_time_of_each_request() {
    use thingkit::provision::PolicyTarget;
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let trial = format!(
        r#"{{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Action": "iot:Publish",
            "Resource": "arn:aws:iot:eu-central-1:123456789012:topic/trial/*",
            "Condition": {{"DateLessThan": {{"aws:CurrentTime": "{until}"}}}}}}]}}"#
    );
    {
        let mut registry = fleet.registry.write().unwrap();
        registry
            .create_policy("trial", &trial, std::time::SystemTime::now())
            .unwrap();
        registry
            .attach_policy("trial", &PolicyTarget::Certificate(a.certificate_id))
            .unwrap();
    }
    let broker = start(&fleet, BrokerConfig::default()).await;
    let mut c = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    let before = c.publish_qos1("trial/sensor-a", "1").await.unwrap();
    assert!(before.reason_code.is_success(), "{:?}", before.reason_code);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = c.publish_qos1("trial/sensor-a", "2").await.unwrap();
    assert_eq!(after.reason_code, ReasonCode::NOT_AUTHORIZED);
    broker.shutdown(Duration::from_secs(5)).await;
}

/// Limits off, tiny queues: a subscriber's connection holds `inflight` deliveries in flight,
/// `queued` waiting for the window and `queued` more in its connection queue.
fn pressure_config(queued: usize, inflight: u16, slow: Duration) -> BrokerConfig {
    BrokerConfig::default()
        .with_connection_limits(RateLimits::unlimited())
        .with_account_limits(RateLimits::unlimited())
        .with_max_queued(queued)
        .with_max_inflight(inflight)
        .with_slow_subscriber_timeout(slow)
}

#[tokio::test]
async fn a_slow_subscriber_slows_its_publisher_down_and_loses_nothing() {
    // Issue #23: a subscriber whose queue was full lost QoS 1 messages its publisher had been
    // acknowledged for. Now the publisher waits for room (it is not read meanwhile).
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let broker = start(&fleet, pressure_config(4, 2, Duration::from_secs(30))).await;
    let mut sub = connect_as(&fleet, &broker, &b, ProtocolVersion::V311).await;
    sub.subscribe(&[("telemetry/sensor-a/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let mut publisher = connect_as(&fleet, &broker, &a, ProtocolVersion::V311).await;
    const N: usize = 200;
    let publishing = tokio::spawn(async move {
        let mut codes = Vec::new();
        for i in 0..N {
            codes.push(
                publisher
                    .publish(
                        "telemetry/sensor-a/t",
                        i.to_string(),
                        QoS::AtLeastOnce,
                        false,
                    )
                    .await
                    .unwrap(),
            );
        }
        (publisher, codes)
    });
    // The subscriber reads nothing for a while (the publisher fills its queues and waits),
    // then reads slowly.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got = Vec::new();
    while got.len() < N {
        let p = sub.next_publish().await.unwrap().expect("still connected");
        got.push(String::from_utf8(p.payload.to_vec()).unwrap());
        if got.len() % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let (publisher, codes) = publishing.await.unwrap();
    assert!(codes.iter().all(|c| *c == Some(ReasonCode::SUCCESS)));
    let want: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(got, want, "every acknowledged message, once, in order");
    let stats = broker.stats();
    assert!(stats.backpressure_waits > 0, "{stats:?}");
    assert_eq!(stats.queue_drops, 0, "{stats:?}");
    assert_eq!(stats.slow_subscriber_disconnects, 0, "{stats:?}");
    publisher.disconnect().await.unwrap();
    sub.disconnect().await.unwrap();
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_disconnected_and_its_session_keeps_what_was_acknowledged()
 {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let broker = start(&fleet, pressure_config(4, 2, Duration::from_millis(300))).await;
    let persistent = Options {
        clean_start: false,
        session_expiry: Some(300),
        ..opts(&b, ProtocolVersion::V5)
    };
    let mut sub = connect(&fleet, broker.local_addr(), &b, persistent.clone()).await;
    sub.subscribe(&[("telemetry/sensor-a/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    // The subscriber now reads nothing. Its connection holds 2 in flight + 4 + 4 queued; the
    // 11th message waits 300 ms for room, then the subscriber is disconnected and the message
    // queued in its session, after the ten it had not acknowledged.
    let mut publisher = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    const N: usize = 11;
    for i in 0..N {
        let ack = publisher
            .publish_qos1("telemetry/sensor-a/t", i.to_string())
            .await
            .unwrap();
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "message {i}");
    }
    assert_eq!(broker.stats().slow_subscriber_disconnects, 1);
    assert_eq!(broker.stats().backpressure_waits, 1);
    // What reached the subscriber before it was told to go, then DISCONNECT 0x97.
    let mut got = std::collections::BTreeSet::new();
    loop {
        match sub.recv().await.unwrap() {
            Some(Packet::Publish(p)) => {
                got.insert(String::from_utf8(p.payload.to_vec()).unwrap());
            }
            Some(Packet::Disconnect(d)) => {
                assert_eq!(d.reason_code, ReasonCode::QUOTA_EXCEEDED);
                break;
            }
            other => panic!("expected PUBLISH or DISCONNECT, got {other:?}"),
        }
    }
    drop(sub);
    // Back with its session: everything it had not acknowledged, in order.
    let mut sub = connect(&fleet, broker.local_addr(), &b, persistent).await;
    assert!(sub.connack.session_present);
    let mut again = Vec::new();
    while again.len() < N {
        let p = sub.next_publish().await.unwrap().expect("connected");
        again.push(String::from_utf8(p.payload.to_vec()).unwrap());
    }
    let want: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(
        again, want,
        "nothing acknowledged to the publisher was lost"
    );
    assert!(got.iter().all(|p| want.contains(p)));
    assert_eq!(broker.stats().queue_drops, 0);
    sub.disconnect().await.unwrap();
    publisher.disconnect().await.unwrap();
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_client_that_publishes_to_itself_without_reading_is_disconnected_not_hung() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let broker = start(&fleet, pressure_config(4, 2, Duration::from_secs(30))).await;
    let mut c = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    c.subscribe(&[("telemetry/sensor-a/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    // publish_qos1 keeps the PUBLISHes it reads for later and never acknowledges them.
    let mut acked = 0;
    let end = loop {
        match c.publish_qos1("telemetry/sensor-a/t", "x").await {
            Ok(ack) => {
                assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
                acked += 1;
                assert!(acked < 100, "never disconnected");
            }
            Err(e) => break e.to_string(),
        }
    };
    assert!(end.contains("DISCONNECT 0x97"), "{end}");
    assert_eq!(broker.stats().slow_subscriber_disconnects, 1);
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_mqtt311_qos1_publish_over_the_limit_is_delayed_then_closes_the_connection() {
    // MQTT 3.1.1 has no negative PUBACK. Issue #23: a refused QoS 1 publish got no answer at
    // all and the client's packet ID stayed in flight for ever. Now it is held back first
    // (a burst is slowed down), and one still over the limit closes the connection.
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let config = BrokerConfig::default().with_connection_limits(
        RateLimits::default()
            .with_messages(Some(Rate {
                amount: 1,
                period_ms: 60_000,
                burst: 2,
            }))
            .with_message_action(LimitAction::Reject(LimitReason::QuotaExceeded)),
    );
    let broker = start(&fleet, config).await;
    let mut c = connect_as(&fleet, &broker, &a, ProtocolVersion::V311).await;
    for i in 0..2 {
        let code = c
            .publish(
                "telemetry/sensor-a/t",
                i.to_string(),
                QoS::AtLeastOnce,
                false,
            )
            .await
            .unwrap();
        assert_eq!(code, Some(ReasonCode::SUCCESS));
    }
    // QoS 0 over the limit: dropped, nothing to answer, still connected.
    c.publish("telemetry/sensor-a/t", "q0", QoS::AtMostOnce, false)
        .await
        .unwrap();
    let refused = c
        .publish("telemetry/sensor-a/t", "2", QoS::AtLeastOnce, false)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("closed"), "{refused}");
    let stats = broker.stats();
    assert_eq!(stats.refusal_disconnects, 1, "{stats:?}");
    assert_eq!(stats.throttled, 2, "{stats:?}");
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn what_a_client_sent_before_closing_without_tls_close_notify_is_acted_on() {
    // Found by the rumqttc load test (issue #23): rumqttc sends DISCONNECT and closes the
    // socket without a TLS close_notify. The read that met that end dropped the bytes it had
    // read with it: the tail of a QoS 0 stream was lost, and the DISCONNECT too (so the will
    // was published).
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let broker = start(&fleet, pressure_config(100_000, 64, Duration::from_secs(5))).await;
    let mut sub = connect_as(&fleet, &broker, &b, ProtocolVersion::V311).await;
    sub.subscribe(&[
        ("telemetry/sensor-a/#", QoS::AtMostOnce),
        ("status/#", QoS::AtMostOnce),
    ])
    .await
    .unwrap();
    let with_will = Options {
        will: Some((
            "status/sensor-a".into(),
            b"gone".to_vec(),
            QoS::AtMostOnce,
            false,
        )),
        ..opts(&a, ProtocolVersion::V311)
    };
    let mut publisher = connect(&fleet, broker.local_addr(), &a, with_will).await;
    const N: usize = 2_000;
    for i in 0..N {
        publisher
            .publish(
                "telemetry/sensor-a/t",
                i.to_string(),
                QoS::AtMostOnce,
                false,
            )
            .await
            .unwrap();
    }
    publisher.close_without_close_notify(true).await.unwrap();
    let mut got = 0;
    while got < N {
        let p = sub.next_publish().await.unwrap().expect("connected");
        assert_ne!(
            &p.payload[..],
            b"gone",
            "the will was published after a DISCONNECT"
        );
        got += 1;
    }
    // Nothing after the stream: no will.
    let mut marker = connect_as(&fleet, &broker, &a, ProtocolVersion::V311).await;
    marker
        .publish("telemetry/sensor-a/t", "end", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let p = sub.next_publish().await.unwrap().expect("connected");
    assert_eq!(
        &p.payload[..],
        b"end",
        "the will was published after a DISCONNECT"
    );
    marker.disconnect().await.unwrap();
    // Without DISCONNECT: the messages, then the connection ends as lost (the read after the
    // bytes meets the unclean end) and the will is published.
    let with_will = Options {
        will: Some((
            "status/sensor-a".into(),
            b"gone".to_vec(),
            QoS::AtMostOnce,
            false,
        )),
        ..opts(&a, ProtocolVersion::V311)
    };
    let mut publisher = connect(&fleet, broker.local_addr(), &a, with_will).await;
    publisher
        .publish("telemetry/sensor-a/t", "last", QoS::AtMostOnce, false)
        .await
        .unwrap();
    publisher.close_without_close_notify(false).await.unwrap();
    let p = sub.next_publish().await.unwrap().expect("connected");
    assert_eq!(&p.payload[..], b"last");
    let p = sub.next_publish().await.unwrap().expect("connected");
    assert_eq!(&p.payload[..], b"gone");
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_service_publishes_its_answers_to_every_subscriber_allowed_to_receive_them() {
    // How AWS services answer (a shadow's `.../update/accepted`): published to the topic, so
    // the requester gets it if subscribed, and so does any other allowed subscriber.
    use thingkit::broker::{ServiceReply, ServiceRequest, ServiceResponse, TopicService};
    use thingkit::mqtt::TopicFilter;
    struct Answer;
    impl TopicService for Answer {
        fn name(&self) -> &'static str {
            "answer"
        }
        fn filters(&self) -> Vec<TopicFilter> {
            vec![TopicFilter::new("telemetry/+/ask").unwrap()]
        }
        fn handle(&self, request: &ServiceRequest<'_>) -> ServiceResponse {
            ServiceResponse::published(vec![ServiceReply {
                topic: format!("{}/accepted", request.message.topic.as_str()),
                payload: request.message.payload.to_vec(),
            }])
        }
    }
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let broker = start_with_service(&fleet, std::sync::Arc::new(Answer)).await;
    let mut watcher = connect_as(&fleet, &broker, &b, ProtocolVersion::V311).await;
    watcher
        .subscribe(&[("telemetry/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let mut c = connect_as(&fleet, &broker, &a, ProtocolVersion::V5).await;
    c.subscribe(&[("telemetry/sensor-a/ask/accepted", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let ack = c
        .publish_qos1("telemetry/sensor-a/ask", "42")
        .await
        .unwrap();
    assert!(ack.reason_code.is_success());
    for client in [&mut c, &mut watcher] {
        let answer = client.next_publish().await.unwrap().unwrap();
        assert_eq!(
            answer.topic.as_ref().unwrap().as_str(),
            "telemetry/sensor-a/ask/accepted"
        );
        assert_eq!(answer.qos, QoS::AtLeastOnce);
        assert_eq!(&answer.payload[..], b"42");
    }
    broker.shutdown(Duration::from_secs(5)).await;
}
