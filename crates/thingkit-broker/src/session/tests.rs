//! The session core driven with injected time: no socket, no sleep.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use proptest::prelude::*;
use thingkit_mqtt::{
    Connect, Decoder, Disconnect, Encoder, MqttStr, Packet, PacketId, PacketProperties, Properties,
    ProtocolVersion, PubResponse, Publish, QoS, ReasonCode, RetainHandling, Subscribe,
    Subscription, SubscriptionOptions, TopicFilter, TopicName, Unsubscribe, Will,
};

use super::*;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V311;

/// Denies every topic under `secret/`.
struct NoSecrets;
impl Authorizer for NoSecrets {
    fn authorize(&mut self, action: Action<'_>) -> Result<(), String> {
        let resource = match action {
            Action::Publish { topic, .. } | Action::Receive { topic } => topic,
            Action::Subscribe { filter } => filter,
        };
        if resource.starts_with("secret/") {
            Err(format!("{resource} is secret"))
        } else {
            Ok(())
        }
    }
}

fn connect(version: ProtocolVersion, keep_alive: u16, properties: Properties) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive,
        properties: properties.into(),
        client_id: MqttStr::new("sensor-1").expect("a valid client ID"),
        will: None,
        username: None,
        password: None,
    }
}

/// A session with the default config and the `NoSecrets` authorizer, CONNACK already taken.
fn session(connect: Connect, now: Instant) -> Session {
    let config = SessionConfig::default();
    let mut s = Session::new(
        connect,
        "sensor-1".into(),
        &config,
        Box::new(NoSecrets),
        now,
    );
    s.connack(false, None, &config).expect("CONNACK encodes");
    s.transmit().clear();
    s
}

fn bytes(version: ProtocolVersion, packets: &[Packet]) -> BytesMut {
    let mut out = BytesMut::new();
    for p in packets {
        Encoder::new(version)
            .encode(p, &mut out)
            .expect("test packet encodes");
    }
    out
}

/// What the session wrote, decoded.
fn sent(s: &mut Session) -> Vec<Packet> {
    let mut buf = s.transmit().split();
    let mut decoder = Decoder::new(s.version());
    let mut packets = Vec::new();
    while let Some(p) = decoder
        .decode(&mut buf)
        .expect("the session writes valid packets")
    {
        packets.push(p);
    }
    packets
}

fn events(s: &mut Session, input: &mut BytesMut, now: Instant) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(e) = s.poll(input, now) {
        out.push(e);
    }
    out
}

fn publish(topic: &str, qos: QoS, id: u16) -> Publish {
    let mut p = Publish::new(TopicName::new(topic).expect("valid topic"), "x");
    p.qos = qos;
    p.packet_id = PacketId::new(id);
    p
}

fn message(topic: &str, qos: QoS, received: Instant) -> Arc<Message> {
    Arc::new(Message {
        topic: TopicName::new(topic).expect("valid topic"),
        payload: "payload".into(),
        qos,
        retain: false,
        properties: PacketProperties::default(),
        from: None,
        received,
    })
}

fn delivery(topic: &str, qos: QoS, now: Instant) -> Delivery {
    Delivery {
        message: message(topic, qos, now),
        qos,
        retain: false,
        subscription_id: None,
    }
}

#[test]
fn keep_alive_expires_after_one_and_a_half_periods_of_client_silence() {
    let t0 = Instant::now();
    let mut s = session(connect(V5, 10, Properties::default()), t0);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(15)));
    // Traffic from the client moves the deadline; traffic to it does not.
    s.note_input(t0 + Duration::from_secs(10));
    s.deliver(
        delivery("a", QoS::AtMostOnce, t0),
        t0 + Duration::from_secs(20),
    );
    s.handle_timeout(t0 + Duration::from_secs(24));
    assert!(events(&mut s, &mut BytesMut::new(), t0).is_empty());
    s.handle_timeout(t0 + Duration::from_secs(25));
    let e = events(&mut s, &mut BytesMut::new(), t0);
    assert!(matches!(
        e.as_slice(),
        [Event::Close(CloseReason::Server(
            ReasonCode::KEEP_ALIVE_TIMEOUT
        ))]
    ));
}

#[test]
fn keep_alive_zero_has_no_deadline_and_a_long_one_is_capped() {
    let t0 = Instant::now();
    let s = session(connect(V5, 0, Properties::default()), t0);
    assert_eq!(s.poll_timeout(), None);
    let config = SessionConfig::default().with_max_keep_alive(60);
    let mut s = Session::new(
        connect(V5, 600, Properties::default()),
        "sensor-1".into(),
        &config,
        Box::new(AllowAll),
        t0,
    );
    assert_eq!(s.keep_alive(), 60);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(90)));
    s.connack(false, None, &config).expect("CONNACK encodes");
    let Packet::ConnAck(ack) = &sent(&mut s)[0] else {
        panic!("CONNACK expected")
    };
    assert_eq!(ack.properties.server_keep_alive, Some(60));
}

#[test]
fn pingreq_is_answered() {
    let t0 = Instant::now();
    let mut s = session(connect(V311, 30, Properties::default()), t0);
    let mut input = bytes(V311, &[Packet::PingReq]);
    assert!(events(&mut s, &mut input, t0).is_empty());
    assert_eq!(sent(&mut s), vec![Packet::PingResp]);
}

#[test]
fn an_authorized_publish_becomes_an_event_with_the_time_it_arrived() {
    let t0 = Instant::now();
    let mut s = session(connect(V5, 30, Properties::default()), t0);
    let later = t0 + Duration::from_secs(3);
    let mut input = bytes(V5, &[Packet::Publish(publish("dt/a", QoS::AtLeastOnce, 7))]);
    let e = events(&mut s, &mut input, later);
    let [Event::Publish(p)] = e.as_slice() else {
        panic!("one publish event expected: {e:?}")
    };
    assert_eq!(p.message.topic.as_str(), "dt/a");
    assert_eq!(p.message.received, later);
    assert_eq!(p.message.from.as_deref(), Some("sensor-1"));
    assert_eq!(p.packet_id, PacketId::new(7));
    s.acknowledge(p.packet_id, ReasonCode::NO_MATCHING_SUBSCRIBERS, None);
    let Packet::PubAck(ack) = &sent(&mut s)[0] else {
        panic!("PUBACK expected")
    };
    assert_eq!(ack.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
}

#[test]
fn a_denied_publish_gets_puback_0x87_in_mqtt5_and_closes_mqtt311() {
    let t0 = Instant::now();
    let mut s = session(connect(V5, 30, Properties::default()), t0);
    let mut input = bytes(
        V5,
        &[Packet::Publish(publish("secret/x", QoS::AtLeastOnce, 1))],
    );
    let e = events(&mut s, &mut input, t0);
    assert!(matches!(e.as_slice(), [Event::Denied(d)] if d.action == "publish"));
    let Packet::PubAck(ack) = &sent(&mut s)[0] else {
        panic!("PUBACK expected")
    };
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);

    let mut s = session(connect(V311, 30, Properties::default()), t0);
    let mut input = bytes(
        V311,
        &[Packet::Publish(publish("secret/x", QoS::AtLeastOnce, 1))],
    );
    let e = events(&mut s, &mut input, t0);
    assert!(matches!(
        e.as_slice(),
        [
            Event::Denied(_),
            Event::Close(CloseReason::Server(ReasonCode::NOT_AUTHORIZED))
        ]
    ));
    assert!(sent(&mut s).is_empty());
}

#[test]
fn qos2_a_second_connect_and_auth_close_the_connection() {
    let t0 = Instant::now();
    for (packet, code) in [
        (
            Packet::Publish(publish("a", QoS::ExactlyOnce, 1)),
            ReasonCode::QOS_NOT_SUPPORTED,
        ),
        (
            Packet::Connect(connect(V5, 30, Properties::default())),
            ReasonCode::PROTOCOL_ERROR,
        ),
        (
            Packet::PubRel(PubResponse::new(PacketId::new(1).expect("non-zero"))),
            ReasonCode::PROTOCOL_ERROR,
        ),
    ] {
        let mut s = session(connect(V5, 30, Properties::default()), t0);
        let mut input = bytes(V5, &[packet, Packet::PingReq]);
        let e = events(&mut s, &mut input, t0);
        assert!(
            matches!(e.as_slice(), [Event::Close(CloseReason::Server(c))] if *c == code),
            "{e:?}"
        );
        // Nothing after the fatal packet is handled.
        assert!(sent(&mut s).is_empty());
    }
}

#[test]
fn malformed_and_oversized_packets_close_with_their_reason_codes() {
    let t0 = Instant::now();
    let mut s = session(connect(V5, 30, Properties::default()), t0);
    let mut input = BytesMut::from(&b"\x30\x02\x00\x05"[..]); // topic length past the packet
    let e = events(&mut s, &mut input, t0);
    assert!(matches!(
        e.as_slice(),
        [Event::Close(CloseReason::Server(
            ReasonCode::MALFORMED_PACKET
        ))]
    ));

    let config = SessionConfig::default().with_max_packet_size(64);
    let mut s = Session::new(
        connect(V5, 30, Properties::default()),
        "sensor-1".into(),
        &config,
        Box::new(AllowAll),
        t0,
    );
    let mut big = publish("a", QoS::AtMostOnce, 0);
    big.payload = vec![0u8; 100].into();
    let mut input = bytes(V5, &[Packet::Publish(big)]);
    let e = events(&mut s, &mut input, t0);
    assert!(matches!(
        e.as_slice(),
        [Event::Close(CloseReason::Server(
            ReasonCode::PACKET_TOO_LARGE
        ))]
    ));
}

#[test]
fn inbound_topic_aliases_resolve_and_an_unknown_alias_closes() {
    let t0 = Instant::now();
    let mut s = session(connect(V5, 30, Properties::default()), t0);
    let mut first = publish("dt/long/topic", QoS::AtMostOnce, 0);
    first.properties.topic_alias = std::num::NonZeroU16::new(1);
    let mut second = publish("dt/x", QoS::AtMostOnce, 0);
    second.topic = None;
    second.properties.topic_alias = std::num::NonZeroU16::new(1);
    let mut input = bytes(V5, &[Packet::Publish(first), Packet::Publish(second)]);
    let topics: Vec<String> = events(&mut s, &mut input, t0)
        .into_iter()
        .map(|e| match e {
            Event::Publish(p) => {
                assert_eq!(
                    p.message.properties.topic_alias, None,
                    "alias not forwarded"
                );
                p.message.topic.as_str().to_string()
            }
            other => panic!("publish expected: {other:?}"),
        })
        .collect();
    assert_eq!(topics, ["dt/long/topic", "dt/long/topic"]);

    let mut unknown = publish("dt/x", QoS::AtMostOnce, 0);
    unknown.topic = None;
    unknown.properties.topic_alias = std::num::NonZeroU16::new(2);
    let mut input = bytes(V5, &[Packet::Publish(unknown)]);
    assert!(matches!(
        events(&mut s, &mut input, t0).as_slice(),
        [Event::Close(CloseReason::Server(
            ReasonCode::TOPIC_ALIAS_INVALID
        ))]
    ));
}

#[test]
fn the_inflight_window_holds_deliveries_until_puback() {
    let t0 = Instant::now();
    let props = Properties {
        receive_maximum: std::num::NonZeroU16::new(2),
        ..Properties::default()
    };
    let mut s = session(connect(V5, 30, props), t0);
    for topic in ["a", "b", "c"] {
        s.deliver(delivery(topic, QoS::AtLeastOnce, t0), t0);
    }
    let out = sent(&mut s);
    assert_eq!(out.len(), 2, "the client's Receive Maximum is 2");
    let first_id = match &out[0] {
        Packet::Publish(p) => p.packet_id.expect("QoS 1 has an ID"),
        other => panic!("{other:?}"),
    };
    let mut input = bytes(V5, &[Packet::PubAck(PubResponse::new(first_id))]);
    assert!(events(&mut s, &mut input, t0).is_empty());
    let out = sent(&mut s);
    assert!(
        matches!(&out[..], [Packet::Publish(p)] if p.topic.as_ref().map(TopicName::as_str) == Some("c"))
    );
    assert_eq!(s.counters().delivered, 3);
    assert_eq!(s.drain_delivered().count(), 3);
}

#[test]
fn the_pending_queue_is_capped_and_counts_what_it_drops() {
    let t0 = Instant::now();
    let config = SessionConfig::default()
        .with_max_inflight(1)
        .with_max_pending(1);
    let mut s = Session::new(
        connect(V5, 30, Properties::default()),
        "sensor-1".into(),
        &config,
        Box::new(AllowAll),
        t0,
    );
    for topic in ["a", "b", "c"] {
        s.deliver(delivery(topic, QoS::AtLeastOnce, t0), t0);
    }
    assert_eq!(s.counters().delivered, 1);
    assert_eq!(s.counters().dropped, 1);
    // QoS 0 is not held by the window.
    s.deliver(delivery("d", QoS::AtMostOnce, t0), t0);
    assert_eq!(s.counters().delivered, 2);
}

#[test]
fn an_expired_message_is_not_delivered_and_a_live_one_carries_the_interval_left() {
    let t0 = Instant::now();
    let mut s = session(connect(V5, 30, Properties::default()), t0);
    let mut m = (*message("a", QoS::AtMostOnce, t0)).clone();
    m.properties.message_expiry_interval = Some(10);
    let d = Delivery {
        message: Arc::new(m),
        qos: QoS::AtMostOnce,
        retain: false,
        subscription_id: NonZeroU32::new(4),
    };
    s.deliver(d.clone(), t0 + Duration::from_secs(4));
    let Packet::Publish(p) = &sent(&mut s)[0] else {
        panic!("PUBLISH expected")
    };
    assert_eq!(p.properties.message_expiry_interval, Some(6));
    assert_eq!(
        p.properties.subscription_identifiers.as_slice(),
        [NonZeroU32::new(4).expect("non-zero")]
    );
    s.deliver(d, t0 + Duration::from_secs(10));
    assert!(sent(&mut s).is_empty());
    assert_eq!(s.counters().dropped, 1);
}

#[test]
fn a_delivery_over_the_clients_maximum_packet_size_is_discarded() {
    let t0 = Instant::now();
    let props = Properties {
        maximum_packet_size: NonZeroU32::new(20),
        ..Properties::default()
    };
    let mut s = session(connect(V5, 30, props), t0);
    s.deliver(delivery("a/very/long/topic/name", QoS::AtMostOnce, t0), t0);
    assert!(sent(&mut s).is_empty());
    s.deliver(delivery("a", QoS::AtMostOnce, t0), t0);
    assert_eq!(sent(&mut s).len(), 1);
}

#[test]
fn receive_is_authorized_per_delivery() {
    let t0 = Instant::now();
    let mut s = session(connect(V5, 30, Properties::default()), t0);
    s.deliver(delivery("secret/a", QoS::AtMostOnce, t0), t0);
    assert!(sent(&mut s).is_empty());
    assert_eq!(s.counters().receive_denied, 1);
    assert!(matches!(
        events(&mut s, &mut BytesMut::new(), t0).as_slice(),
        [Event::Denied(d)] if d.action == "receive"
    ));
}

#[test]
fn outbound_topic_aliases_are_used_when_the_client_allows_them() {
    let t0 = Instant::now();
    let props = Properties {
        topic_alias_maximum: Some(4),
        ..Properties::default()
    };
    let mut s = session(connect(V5, 30, props), t0);
    s.deliver(delivery("dt/a", QoS::AtMostOnce, t0), t0);
    s.deliver(delivery("dt/a", QoS::AtMostOnce, t0), t0);
    let out = sent(&mut s);
    let Packet::Publish(second) = &out[1] else {
        panic!("PUBLISH expected")
    };
    assert_eq!(
        second.topic, None,
        "the second delivery uses the alias alone"
    );
    assert!(second.properties.topic_alias.is_some());
}

#[test]
fn subscribe_is_authorized_per_filter_and_answered_in_order() {
    let t0 = Instant::now();
    for (version, denied) in [(V5, ReasonCode::NOT_AUTHORIZED), (V311, ReasonCode(0x80))] {
        let mut s = session(connect(version, 30, Properties::default()), t0);
        let options = SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            retain_handling: match version {
                ProtocolVersion::V5 => RetainHandling::SendIfNew,
                ProtocolVersion::V311 => RetainHandling::SendAtSubscribe,
            },
            ..SubscriptionOptions::default()
        };
        let sub = |f: &str| Subscription {
            filter: TopicFilter::new(f).expect("valid filter"),
            options,
        };
        let mut input = bytes(
            version,
            &[Packet::Subscribe(Subscribe {
                packet_id: PacketId::new(9).expect("non-zero"),
                properties: PacketProperties::default(),
                subscriptions: vec![sub("dt/#"), sub("secret/#")],
            })],
        );
        let e = events(&mut s, &mut input, t0);
        let [Event::Denied(_), Event::Subscribe(request)] = e.as_slice() else {
            panic!("a denial and a subscribe request expected: {e:?}")
        };
        let granted = request.filters[0].granted.expect("dt/# is allowed");
        assert_eq!(granted.qos, QoS::AtLeastOnce, "QoS 2 is granted as 1");
        assert!(request.filters[0].sends_retained(false));
        assert_eq!(
            request.filters[0].sends_retained(true),
            version == V311,
            "Retain Handling 1 in MQTT 5"
        );
        assert!(
            !request.filters[1].sends_retained(false),
            "a refused filter sends nothing"
        );
        let retained = request.filters[0]
            .retained_delivery(message("dt/a", QoS::AtLeastOnce, t0))
            .expect("granted");
        s.complete_subscribe(request, vec![retained], t0);
        let out = sent(&mut s);
        let Packet::SubAck(ack) = &out[0] else {
            panic!("SUBACK first: {out:?}")
        };
        assert_eq!(ack.reason_codes, [ReasonCode(1), denied]);
        assert!(matches!(&out[1], Packet::Publish(p) if p.retain));
    }
}

#[test]
fn unsubscribe_codes_are_mqtt5_only() {
    let t0 = Instant::now();
    for version in [V5, V311] {
        let mut s = session(connect(version, 30, Properties::default()), t0);
        let mut input = bytes(
            version,
            &[Packet::Unsubscribe(Unsubscribe {
                packet_id: PacketId::new(3).expect("non-zero"),
                properties: PacketProperties::default(),
                filters: vec![
                    TopicFilter::new("a").expect("valid"),
                    TopicFilter::new("b").expect("valid"),
                ],
            })],
        );
        let e = events(&mut s, &mut input, t0);
        let [Event::Unsubscribe(u)] = e.as_slice() else {
            panic!("{e:?}")
        };
        s.complete_unsubscribe(u.packet_id, &[Ok(true), Ok(false)]);
        let Packet::UnsubAck(ack) = &sent(&mut s)[0] else {
            panic!("UNSUBACK expected")
        };
        let expected: &[ReasonCode] = match version {
            ProtocolVersion::V5 => &[ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
            ProtocolVersion::V311 => &[],
        };
        assert_eq!(ack.reason_codes, expected);
    }
}

fn with_will(version: ProtocolVersion, session_expiry: u32, will_delay: Option<u32>) -> Connect {
    let mut c = connect(
        version,
        30,
        Properties {
            session_expiry_interval: Some(session_expiry).filter(|s| *s > 0),
            ..Properties::default()
        },
    );
    c.clean_start = false;
    c.will = Some(Box::new(Will {
        topic: TopicName::new("status/sensor-1").expect("valid"),
        payload: "offline".into(),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: Properties {
            will_delay_interval: will_delay,
            ..Properties::default()
        }
        .into(),
    }));
    c
}

#[test]
fn the_will_is_published_unless_the_client_disconnects_normally() {
    let t0 = Instant::now();
    let mut s = session(with_will(V5, 0, None), t0);
    let mut input = bytes(
        V5,
        &[Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::SUCCESS,
            properties: PacketProperties::default(),
        })],
    );
    let e = events(&mut s, &mut input, t0);
    let [Event::Close(reason)] = e.as_slice() else {
        panic!("{e:?}")
    };
    assert!(s.close(reason, t0).will.is_none());

    let mut s = session(with_will(V5, 0, None), t0);
    let mut input = bytes(
        V5,
        &[Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
            properties: PacketProperties::default(),
        })],
    );
    let e = events(&mut s, &mut input, t0);
    let [Event::Close(reason)] = e.as_slice() else {
        panic!("{e:?}")
    };
    let (will, delay) = s.close(reason, t0).will.expect("0x04 publishes the will");
    assert_eq!(will.qos, QoS::AtLeastOnce, "QoS 2 wills go out at QoS 1");
    assert!(will.retain);
    assert_eq!(delay, None);

    let mut s = session(with_will(V311, 0, None), t0);
    let closed = s.close(&CloseReason::Lost("reset".into()), t0);
    assert!(
        closed.will.is_some(),
        "a lost connection publishes the will"
    );
}

#[test]
fn the_will_delay_applies_to_persistent_sessions_and_is_capped_by_the_session_expiry() {
    let t0 = Instant::now();
    let lost = CloseReason::Lost("reset".into());
    let delay = |c: Connect| {
        let mut s = session(c, t0);
        s.close(&lost, t0).will.expect("a will").1
    };
    assert_eq!(
        delay(with_will(V5, 60, Some(30))),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        delay(with_will(V5, 10, Some(30))),
        Some(Duration::from_secs(10))
    );
    assert_eq!(
        delay(with_will(V5, 0, Some(30))),
        None,
        "not persistent: at once"
    );
    assert_eq!(
        delay(with_will(V5, u32::MAX, Some(30))),
        Some(Duration::from_secs(30))
    );
}

#[test]
fn session_expiry_follows_the_protocol_version() {
    let mut c = connect(V311, 30, Properties::default());
    assert_eq!(session_expiry(&c), SessionExpiry::OnDisconnect);
    c.clean_start = false;
    assert_eq!(session_expiry(&c), SessionExpiry::Never);
    let with = |secs| {
        connect(
            V5,
            30,
            Properties {
                session_expiry_interval: Some(secs),
                ..Properties::default()
            },
        )
    };
    assert_eq!(session_expiry(&with(0)), SessionExpiry::OnDisconnect);
    assert_eq!(
        session_expiry(&with(300)),
        SessionExpiry::After(Duration::from_secs(300))
    );
    assert_eq!(session_expiry(&with(u32::MAX)), SessionExpiry::Never);
}

#[test]
fn close_returns_unacknowledged_deliveries_oldest_first_and_disconnects_mqtt5() {
    let t0 = Instant::now();
    let config = SessionConfig::default().with_max_inflight(2);
    let mut s = Session::new(
        connect(V5, 30, Properties::default()),
        "sensor-1".into(),
        &config,
        Box::new(AllowAll),
        t0,
    );
    for topic in ["a", "b", "c"] {
        s.deliver(delivery(topic, QoS::AtLeastOnce, t0), t0);
    }
    sent(&mut s);
    let closed = s.close(&CloseReason::Server(ReasonCode::SESSION_TAKEN_OVER), t0);
    let topics: Vec<&str> = closed
        .unacked
        .iter()
        .map(|d| d.message.topic.as_str())
        .collect();
    assert_eq!(topics, ["a", "b", "c"]);
    assert!(matches!(
        sent(&mut s).as_slice(),
        [Packet::Disconnect(d)] if d.reason_code == ReasonCode::SESSION_TAKEN_OVER
    ));
    // Nothing more is decoded after close.
    let mut input = bytes(V5, &[Packet::PingReq]);
    assert!(events(&mut s, &mut input, t0).is_empty());
}

#[test]
fn refusals_map_to_mqtt311_return_codes() {
    let decode = |version, code| {
        let mut buf = encode_refusal(version, code, "why").expect("encodes");
        match Decoder::new(version).decode(&mut buf).expect("decodes") {
            Some(Packet::ConnAck(a)) => a.reason_code,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        decode(V5, ReasonCode::NOT_AUTHORIZED),
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(decode(V311, ReasonCode::NOT_AUTHORIZED), ReasonCode(5));
    assert_eq!(decode(V311, ReasonCode::SERVER_BUSY), ReasonCode(3));
    assert_eq!(
        decode(V311, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
        ReasonCode(2)
    );
}

proptest! {
    /// Whatever a client sends, the session neither panics nor loops: every poll consumes
    /// input or returns, and after a Close nothing more is decoded.
    #[test]
    fn arbitrary_input_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16), v5 in any::<bool>()) {
        let t0 = Instant::now();
        let version = if v5 { V5 } else { V311 };
        let mut s = session(connect(version, 30, Properties::default()), t0);
        let mut input = BytesMut::new();
        let mut closed = false;
        for chunk in chunks {
            input.extend_from_slice(&chunk);
            while let Some(e) = s.poll(&mut input, t0) {
                match e {
                    Event::Close(_) => closed = true,
                    Event::Publish(p) => s.acknowledge(p.packet_id, ReasonCode::SUCCESS, None),
                    Event::Subscribe(r) => s.complete_subscribe(&r, Vec::new(), t0),
                    Event::Unsubscribe(u) => s.complete_unsubscribe(u.packet_id, &vec![Ok(false); u.filters.len()]),
                    Event::Denied(_) => {}
                }
            }
            if closed {
                prop_assert!(s.poll(&mut input, t0).is_none());
            }
        }
    }
}
