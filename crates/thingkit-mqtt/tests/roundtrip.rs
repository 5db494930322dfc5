//! Property tests: decode(encode(p)) == p for every packet type in both versions, byte-exact
//! re-encoding, byte-at-a-time streaming, and Packet -> JSON -> Packet (feature `serde`).

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use thingkit_mqtt::*;

fn mqtt_str() -> impl Strategy<Value = MqttStr> {
    "[a-zA-Z0-9 /é€-]{0,10}".prop_map(|s| MqttStr::new(&s).unwrap())
}

fn topic() -> impl Strategy<Value = TopicName> {
    "[a-z$]{1,4}(/[a-zé]{0,4}){0,3}".prop_map(|s| TopicName::new(&s).unwrap())
}

fn filter() -> impl Strategy<Value = TopicFilter> {
    (
        prop::collection::vec(prop_oneof!["[a-z]{0,3}", Just("+".to_string())], 1..4),
        any::<bool>(),
        prop::option::of("[a-z]{1,3}"),
    )
        .prop_map(|(levels, hash, share)| {
            let mut f = levels.join("/");
            if f.is_empty() {
                f.push('e');
            }
            if hash {
                f.push_str("/#");
            }
            if let Some(g) = share {
                f = format!("$share/{g}/{f}");
            }
            TopicFilter::new(&f).unwrap()
        })
}

fn bin() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..12).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn pid() -> impl Strategy<Value = PacketId> {
    (1u16..).prop_map(|v| PacketId::new(v).unwrap())
}

fn users() -> impl Strategy<Value = Vec<(MqttStr, MqttStr)>> {
    prop::collection::vec((mqtt_str(), mqtt_str()), 0..3)
}

fn sub_id() -> impl Strategy<Value = NonZeroU32> {
    (1u32..=MAX_VARINT).prop_map(|v| NonZeroU32::new(v).unwrap())
}

#[derive(Debug, Clone, Copy)]
enum Ctx {
    Connect,
    ConnAck,
    Publish,
    Will,
    Ack,
    Subscribe,
    Unsubscribe,
    Disconnect,
    Auth,
}

fn props(v: ProtocolVersion, ctx: Ctx) -> BoxedStrategy<PacketProperties> {
    prop_fields(v, ctx).prop_map(PacketProperties::from).boxed()
}

fn prop_fields(v: ProtocolVersion, ctx: Ctx) -> BoxedStrategy<Properties> {
    if v == ProtocolVersion::V311 {
        return Just(Properties::default()).boxed();
    }
    match ctx {
        Ctx::Publish | Ctx::Will => (
            o(any::<bool>()),
            o(any::<u32>()),
            o(mqtt_str()),
            o(topic()),
            o(bin()),
            prop::collection::vec(sub_id(), 0..3),
            o(1u16..),
            o(any::<u32>()),
            users(),
        )
            .prop_map(move |(pfi, exp, ct, rt, cd, ids, alias, delay, up)| {
                let publish = matches!(ctx, Ctx::Publish);
                Properties {
                    payload_format_indicator: pfi,
                    message_expiry_interval: exp,
                    content_type: ct,
                    response_topic: rt,
                    correlation_data: cd,
                    subscription_identifiers: if publish { ids } else { vec![] },
                    topic_alias: if publish {
                        alias.and_then(NonZeroU16::new)
                    } else {
                        None
                    },
                    will_delay_interval: if publish { None } else { delay },
                    user_properties: up.into(),
                    ..Default::default()
                }
            })
            .boxed(),
        Ctx::Connect | Ctx::ConnAck => (
            (o(any::<u32>()), o(1u16..), o(any::<u16>()), o(1u32..)),
            (o(mqtt_str()), o(bin()), o(any::<bool>()), o(any::<bool>())),
            (o(mqtt_str()), o(any::<u16>()), o(mqtt_str()), o(mqtt_str())),
            (
                o(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
                o(any::<bool>()),
                o(any::<bool>()),
                o(any::<bool>()),
            ),
            users(),
        )
            .prop_map(
                move |(
                    (sei, rm, tam, mps),
                    (am, ad, b1, b2),
                    (s1, ska, s2, s3),
                    (mq, ra, wa, sa),
                    up,
                )| {
                    let mut p = Properties {
                        session_expiry_interval: sei,
                        receive_maximum: rm.and_then(NonZeroU16::new),
                        topic_alias_maximum: tam,
                        maximum_packet_size: mps.and_then(NonZeroU32::new),
                        authentication_data: if am.is_some() { ad } else { None },
                        authentication_method: am,
                        user_properties: up.into(),
                        ..Default::default()
                    };
                    if matches!(ctx, Ctx::Connect) {
                        p.request_problem_information = b1;
                        p.request_response_information = b2;
                    } else {
                        p.assigned_client_identifier = s1;
                        p.server_keep_alive = ska;
                        p.response_information = s2;
                        p.server_reference = s3;
                        p.reason_string = s1_clone(&p.assigned_client_identifier);
                        p.maximum_qos = mq;
                        p.retain_available = ra;
                        p.wildcard_subscription_available = wa;
                        p.subscription_identifiers_available = sa;
                        p.shared_subscription_available = b1;
                    }
                    p
                },
            )
            .boxed(),
        Ctx::Ack => (o(mqtt_str()), users())
            .prop_map(|(rs, up)| Properties {
                reason_string: rs,
                user_properties: up.into(),
                ..Default::default()
            })
            .boxed(),
        Ctx::Subscribe => (o(sub_id()), users())
            .prop_map(|(id, up)| Properties {
                subscription_identifiers: id.into_iter().collect(),
                user_properties: up.into(),
                ..Default::default()
            })
            .boxed(),
        Ctx::Unsubscribe => users()
            .prop_map(|up| Properties {
                user_properties: up.into(),
                ..Default::default()
            })
            .boxed(),
        Ctx::Disconnect => (o(any::<u32>()), o(mqtt_str()), o(mqtt_str()), users())
            .prop_map(|(sei, sr, rs, up)| Properties {
                session_expiry_interval: sei,
                server_reference: sr,
                reason_string: rs,
                user_properties: up.into(),
                ..Default::default()
            })
            .boxed(),
        Ctx::Auth => (o(mqtt_str()), o(bin()), o(mqtt_str()), users())
            .prop_map(|(am, ad, rs, up)| Properties {
                authentication_data: if am.is_some() { ad } else { None },
                authentication_method: am,
                reason_string: rs,
                user_properties: up.into(),
                ..Default::default()
            })
            .boxed(),
    }
}

fn o<S: Strategy>(s: S) -> impl Strategy<Value = Option<S::Value>> {
    prop::option::of(s)
}

fn s1_clone(s: &Option<MqttStr>) -> Option<MqttStr> {
    s.clone()
}

/// A reason code valid for `ptype` under `v`.
fn reason(v: ProtocolVersion, ptype: PacketType) -> impl Strategy<Value = ReasonCode> {
    let allowed: Vec<ReasonCode> = (0..=255u8)
        .map(ReasonCode)
        .filter(|c| c.allowed_in(ptype, v))
        .collect();
    prop::sample::select(allowed)
}

fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let v5 = v == ProtocolVersion::V5;
    let publish = (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic(),
        pid(),
        props(v, Ctx::Publish),
        bin(),
        any::<bool>(),
    )
        .prop_map(
            move |(dup, qos, retain, topic, id, properties, payload, drop_topic)| {
                let q0 = qos == QoS::AtMostOnce;
                let alias = properties.topic_alias.is_some();
                Packet::Publish(Publish {
                    dup: dup && !q0,
                    qos,
                    retain,
                    topic: if drop_topic && alias {
                        None
                    } else {
                        Some(topic)
                    },
                    packet_id: if q0 { None } else { Some(id) },
                    properties,
                    payload,
                })
            },
        );
    let will = (topic(), bin(), qos(), any::<bool>(), props(v, Ctx::Will)).prop_map(
        |(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        },
    );
    let connect = (
        any::<bool>(),
        any::<u16>(),
        props(v, Ctx::Connect),
        mqtt_str(),
        prop::option::of(will),
        prop::option::of(mqtt_str()),
        prop::option::of(bin()),
    )
        .prop_map(
            move |(clean_start, keep_alive, properties, client_id, will, username, password)| {
                Packet::Connect(Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    properties,
                    client_id,
                    will: will.map(Box::new),
                    // 3.1.1 needs a user name for a password [MQTT-3.1.2-22]
                    username: if !v5 && password.is_some() && username.is_none() {
                        Some(MqttStr::from_static("u"))
                    } else {
                        username
                    },
                    password,
                })
            },
        );
    let connack = (
        any::<bool>(),
        reason(v, PacketType::ConnAck),
        props(v, Ctx::ConnAck),
    )
        .prop_map(|(sp, rc, properties)| {
            Packet::ConnAck(ConnAck {
                session_present: sp && rc.0 == 0,
                reason_code: rc,
                properties,
            })
        });
    let ack = |t: PacketType| {
        (pid(), reason(v, t), props(v, Ctx::Ack)).prop_map(
            move |(packet_id, reason_code, properties)| {
                let r = PubResponse {
                    packet_id,
                    reason_code,
                    properties,
                };
                match t {
                    PacketType::PubAck => Packet::PubAck(r),
                    PacketType::PubRec => Packet::PubRec(r),
                    PacketType::PubRel => Packet::PubRel(r),
                    _ => Packet::PubComp(r),
                }
            },
        )
    };
    let subscription = (filter(), qos(), any::<bool>(), any::<bool>(), 0u8..3).prop_map(
        move |(filter, qos, nl, rap, rh)| {
            let shared = filter.is_shared();
            Subscription {
                filter,
                options: SubscriptionOptions {
                    qos,
                    no_local: v5 && nl && !shared,
                    retain_as_published: v5 && rap,
                    retain_handling: match (v5, rh) {
                        (true, 1) => RetainHandling::SendIfNew,
                        (true, 2) => RetainHandling::DoNotSend,
                        _ => RetainHandling::SendAtSubscribe,
                    },
                },
            }
        },
    );
    let subscribe = (
        pid(),
        props(v, Ctx::Subscribe),
        prop::collection::vec(subscription, 1..4),
    )
        .prop_map(|(packet_id, properties, subscriptions)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                subscriptions,
            })
        });
    let suback = (
        pid(),
        props(v, Ctx::Ack),
        prop::collection::vec(reason(v, PacketType::SubAck), 1..4),
    )
        .prop_map(|(packet_id, properties, reason_codes)| {
            Packet::SubAck(SubAck {
                packet_id,
                properties,
                reason_codes,
            })
        });
    let unsubscribe = (
        pid(),
        props(v, Ctx::Unsubscribe),
        prop::collection::vec(filter(), 1..4),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties,
                filters,
            })
        });
    let unsuback = (
        pid(),
        props(v, Ctx::Ack),
        prop::collection::vec(reason(v, PacketType::UnsubAck), 1..4),
    )
        .prop_map(move |(packet_id, properties, codes)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                properties,
                reason_codes: if v5 { codes } else { vec![] },
            })
        });
    let disconnect = (reason(v, PacketType::Disconnect), props(v, Ctx::Disconnect)).prop_map(
        |(reason_code, properties)| {
            Packet::Disconnect(Disconnect {
                reason_code,
                properties,
            })
        },
    );
    let mut all = vec![
        publish.boxed(),
        connect.boxed(),
        connack.boxed(),
        ack(PacketType::PubAck).boxed(),
        ack(PacketType::PubRec).boxed(),
        ack(PacketType::PubRel).boxed(),
        ack(PacketType::PubComp).boxed(),
        subscribe.boxed(),
        suback.boxed(),
        unsubscribe.boxed(),
        unsuback.boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect.boxed(),
    ];
    if v5 {
        let auth = (reason(v, PacketType::Auth), props(v, Ctx::Auth)).prop_map(
            |(reason_code, properties)| {
                Packet::Auth(Auth {
                    reason_code,
                    properties,
                })
            },
        );
        all.push(auth.boxed());
    }
    prop::strategy::Union::new(all).boxed()
}

fn encode(v: ProtocolVersion, p: &Packet) -> BytesMut {
    let mut buf = BytesMut::new();
    let n = Encoder::new(v)
        .encode(p, &mut buf)
        .expect("generated packets are valid");
    assert_eq!(n, buf.len());
    assert_eq!(Encoder::new(v).encoded_len(p).unwrap(), n);
    // `encode` has a PUBLISH fast path; `encode_to` always takes the general path.
    let mut general: Vec<u8> = Vec::new();
    Encoder::new(v).encode_to(p, &mut general).unwrap();
    assert_eq!(&buf[..], &general[..], "fast and general encoders differ");
    buf
}

fn check_roundtrip(v: ProtocolVersion, p: Packet) -> Result<(), TestCaseError> {
    let wire = encode(v, &p);
    let mut buf = wire.clone();
    let decoded = Decoder::new(v).decode(&mut buf);
    prop_assert!(buf.is_empty());
    let decoded =
        decoded.map_err(|e| TestCaseError::fail(format!("{e} for {:02x?}", &wire[..])))?;
    prop_assert_eq!(decoded.as_ref(), Some(&p));
    // Encoding is canonical: re-encoding the decoded packet gives the same bytes.
    prop_assert_eq!(encode(v, &decoded.unwrap()), wire);
    Ok(())
}

/// Packet -> JSON -> Packet is the identity (feature `serde`, enabled for this crate's tests), and
/// the JSON is canonical: serializing the result again gives the same text.
fn check_json_roundtrip(p: Packet) -> Result<(), TestCaseError> {
    let json = serde_json::to_string(&p).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: Packet =
        serde_json::from_str(&json).map_err(|e| TestCaseError::fail(format!("{e} for {json}")))?;
    prop_assert_eq!(&back, &p, "{}", json);
    prop_assert_eq!(serde_json::to_string(&back).unwrap(), json);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_v311_packet_round_trips(p in packet(ProtocolVersion::V311)) {
        check_roundtrip(ProtocolVersion::V311, p)?;
    }

    #[test]
    fn every_v5_packet_round_trips(p in packet(ProtocolVersion::V5)) {
        check_roundtrip(ProtocolVersion::V5, p)?;
    }

    #[test]
    fn every_v311_packet_round_trips_through_json(p in packet(ProtocolVersion::V311)) {
        check_json_roundtrip(p)?;
    }

    #[test]
    fn every_v5_packet_round_trips_through_json(p in packet(ProtocolVersion::V5)) {
        check_json_roundtrip(p)?;
    }

    #[test]
    fn streams_decode_identically_byte_by_byte(ps in prop::collection::vec(packet(ProtocolVersion::V5), 1..6)) {
        let mut wire = BytesMut::new();
        for p in &ps {
            Encoder::new(ProtocolVersion::V5).encode(p, &mut wire).unwrap();
        }
        let mut d = Decoder::new(ProtocolVersion::V5);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in wire.iter() {
            buf.extend_from_slice(&[*b]);
            while let Some(p) = d.decode(&mut buf).unwrap() {
                out.push(p);
            }
        }
        prop_assert_eq!(out, ps);
    }

    #[test]
    fn publish_fast_path_agrees_with_general_path(
        p in packet(ProtocolVersion::V5),
        v5 in any::<bool>(),
        flip in any::<(usize, u8)>(),
    ) {
        // `decode` (BytesMut) has a fast path for PUBLISH; `decode_bytes` always takes the general
        // path. Both must decide and decode alike, also after a byte is corrupted.
        let v = if v5 { ProtocolVersion::V5 } else { ProtocolVersion::V311 };
        let mut wire = BytesMut::new();
        if Encoder::new(v).encode(&p, &mut wire).is_ok() {
            let at = flip.0 % wire.len();
            let mut bad = wire.clone();
            bad[at] ^= flip.1;
            for input in [wire, bad] {
                let a = Decoder::new(v).decode(&mut input.clone());
                let b = Decoder::new(v).decode_bytes(&mut input.clone().freeze());
                match (a, b) {
                    (Ok(x), Ok(y)) => prop_assert_eq!(x, y),
                    (Err(x), Err(y)) => prop_assert_eq!(x.to_string(), y.to_string()),
                    (x, y) => prop_assert!(false, "fast {:?} vs general {:?}", x, y),
                }
            }
        }
    }

    #[test]
    fn borrowed_views_agree_with_owned_decoding(
        ps in prop::collection::vec(packet(ProtocolVersion::V5), 1..6),
        v5 in any::<bool>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let v = if v5 { ProtocolVersion::V5 } else { ProtocolVersion::V311 };
        let mut wire = BytesMut::new();
        for p in &ps {
            let _ = Encoder::new(v).encode(p, &mut wire);
        }
        // Also try a corrupted copy: both decoders must fail at the same packet with the same error.
        let mut bad = wire.clone();
        if !bad.is_empty() {
            let i = cut.index(bad.len());
            bad[i] = bad[i].wrapping_add(0x41);
        }
        for input in [wire, bad] {
            let mut owned = Decoder::new(v);
            let mut viewer = Decoder::new(v);
            let mut buf = input.clone();
            let mut off = 0;
            loop {
                let a = owned.decode(&mut buf);
                let b = viewer.decode_view(&input[off..]);
                match (a, b) {
                    (Ok(None), Ok(None)) => break,
                    (Err(x), Err(y)) => {
                        prop_assert_eq!(x.to_string(), y.to_string());
                        break;
                    }
                    (Ok(Some(Packet::Publish(p))), Ok(Some((PacketView::Publish(w), n)))) => {
                        prop_assert_eq!(w.topic, p.topic.as_ref().map_or("", |t| t.as_str()));
                        prop_assert_eq!(w.payload, &p.payload[..]);
                        prop_assert_eq!((w.dup, w.qos, w.retain, w.packet_id), (p.dup, p.qos, p.retain, p.packet_id));
                        prop_assert_eq!(w.properties.is_empty(), p.properties.is_empty());
                        prop_assert_eq!(&w.to_properties(), &*p.properties);
                        prop_assert!(w.user_properties().eq(p.properties.user_properties.iter()));
                        prop_assert_eq!(w.topic_alias(), p.properties.topic_alias);
                        prop_assert_eq!(w.message_expiry_interval(), p.properties.message_expiry_interval);
                        prop_assert_eq!(w.payload_format_indicator(), p.properties.payload_format_indicator);
                        prop_assert_eq!(w.content_type(), p.properties.content_type.as_ref().map(|s| s.as_str()));
                        prop_assert_eq!(w.response_topic(), p.properties.response_topic.as_ref().map(|s| s.as_str()));
                        prop_assert_eq!(w.correlation_data(), p.properties.correlation_data.as_deref());
                        off += n;
                    }
                    (Ok(Some(p)), Ok(Some((PacketView::Other(q), n)))) => {
                        prop_assert_eq!(p, q);
                        off += n;
                    }
                    (x, y) => prop_assert!(false, "owned {:?} vs view {:?}", x, y),
                }
            }
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics_and_reencodes_stably(data in prop::collection::vec(any::<u8>(), 0..64), v5 in any::<bool>()) {
        let v = if v5 { ProtocolVersion::V5 } else { ProtocolVersion::V311 };
        let mut buf = BytesMut::from(&data[..]);
        if let Ok(Some(p)) = Decoder::new(v).decode(&mut buf) {
            let wire = encode(v, &p);
            let again = Decoder::new(v).decode(&mut wire.clone()).unwrap().unwrap();
            prop_assert_eq!(again, p);
        }
    }
}

/// A v5 PUBLISH carrying every PUBLISH property (two user properties, two subscription
/// identifiers) and its topic or only an alias, with each byte in turn replaced by each of a
/// set of values: `decode` (fast paths), `decode_bytes` (general path only) and `decode_view`
/// accept and reject alike, with the same error and the same packet.
#[test]
fn publish_property_fast_paths_agree_with_general_path_on_every_corrupted_byte() {
    let s = |x: &str| MqttStr::new(x).unwrap();
    for alias_only in [false, true] {
        let mut p = Publish::new(TopicName::new("fleet/site-1/dev-7/temp").unwrap(), "21.5");
        p.qos = QoS::AtLeastOnce;
        p.packet_id = PacketId::new(9);
        if alias_only {
            p.topic = None;
        }
        p.properties = Properties {
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(3600),
            content_type: Some(s("text/plain")),
            response_topic: Some(TopicName::new("r/1").unwrap()),
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            subscription_identifiers: if alias_only {
                vec![]
            } else {
                vec![NonZeroU32::new(200).unwrap()]
            },
            topic_alias: NonZeroU16::new(4),
            user_properties: vec![(s("k"), s("v")), (s("trace"), s("é"))].into(),
            ..Default::default()
        }
        .into();
        let wire = encode(ProtocolVersion::V5, &Packet::Publish(p));
        for at in 0..wire.len() {
            for value in [
                0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x26, 0x2B, 0x7F, 0x80, 0xC3, 0xFF,
            ] {
                let mut bad = wire.clone();
                bad[at] = value;
                let v = ProtocolVersion::V5;
                let a = Decoder::new(v).decode(&mut bad.clone());
                let b = Decoder::new(v).decode_bytes(&mut bad.clone().freeze());
                let c = Decoder::new(v).decode_view(&bad);
                match (&a, &b) {
                    (Ok(x), Ok(y)) => assert_eq!(x, y, "byte {at} = {value:#04x}"),
                    (Err(x), Err(y)) => {
                        assert_eq!(x.to_string(), y.to_string(), "byte {at} = {value:#04x}")
                    }
                    (x, y) => panic!("byte {at} = {value:#04x}: fast {x:?} vs general {y:?}"),
                }
                match (&a, &c) {
                    (Ok(None), Ok(None)) => {}
                    (Ok(Some(Packet::Publish(p))), Ok(Some((PacketView::Publish(w), _)))) => {
                        assert_eq!(w.topic, p.topic.as_ref().map_or("", |t| t.as_str()));
                        assert_eq!(
                            &w.to_properties(),
                            &*p.properties,
                            "byte {at} = {value:#04x}"
                        );
                    }
                    (Ok(Some(p)), Ok(Some((PacketView::Other(q), _)))) => assert_eq!(p, q),
                    (Err(x), Err(y)) => {
                        assert_eq!(x.to_string(), y.to_string(), "byte {at} = {value:#04x}")
                    }
                    (x, y) => panic!("byte {at} = {value:#04x}: owned {x:?} vs view {y:?}"),
                }
            }
        }
    }
}

#[test]
fn encoder_refuses_binary_over_65535_bytes_instead_of_truncating() {
    let mut c = Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 0,
        properties: PacketProperties::new(),
        client_id: MqttStr::default(),
        will: None,
        username: None,
        password: Some(Bytes::from(vec![0u8; 65_536])),
    };
    let e =
        Encoder::new(ProtocolVersion::V5).encode(&Packet::Connect(c.clone()), &mut BytesMut::new());
    assert_eq!(e.unwrap_err().rule(), Some("[MQTT-1.5.6]"));
    c.password = Some(Bytes::from(vec![0u8; 65_535]));
    assert!(
        Encoder::new(ProtocolVersion::V5)
            .encode(&Packet::Connect(c), &mut BytesMut::new())
            .is_ok()
    );
}

#[test]
fn encoder_refuses_v5_only_fields_on_v311() {
    let mut p = Publish::new(TopicName::new("a").unwrap(), "x");
    p.properties.message_expiry_interval = Some(1);
    let e = Encoder::new(ProtocolVersion::V311).encode(&Packet::Publish(p), &mut BytesMut::new());
    assert!(e.is_err());
    let e = Encoder::new(ProtocolVersion::V311)
        .encode(&Packet::Auth(Auth::default()), &mut BytesMut::new());
    assert!(e.is_err());
    let ack = PubResponse {
        reason_code: ReasonCode::NO_MATCHING_SUBSCRIBERS,
        ..PubResponse::new(PacketId::new(1).unwrap())
    };
    assert!(
        Encoder::new(ProtocolVersion::V311)
            .encode(&Packet::PubAck(ack.clone()), &mut BytesMut::new())
            .is_err()
    );
    assert!(
        Encoder::new(ProtocolVersion::V5)
            .encode(&Packet::PubAck(ack), &mut BytesMut::new())
            .is_ok()
    );
}

#[test]
fn encoder_refuses_properties_not_allowed_on_the_packet() {
    let mut p = Publish::new(TopicName::new("a").unwrap(), "x");
    p.properties.session_expiry_interval = Some(1);
    let e = Encoder::new(ProtocolVersion::V5)
        .encode(&Packet::Publish(p), &mut BytesMut::new())
        .unwrap_err();
    assert_eq!(e.rule(), Some("[MQTT-5.0 §2.2.2.2]"));
}

#[test]
fn encoder_enforces_max_packet_size() {
    let p = Packet::Publish(Publish::new(TopicName::new("a/b").unwrap(), vec![0u8; 100]));
    let enc = Encoder::new(ProtocolVersion::V5).with_max_packet_size(50);
    assert_eq!(
        enc.encode(&p, &mut BytesMut::new()).unwrap_err().rule(),
        Some("[MQTT-3.1.2-24]")
    );
}

#[test]
fn encoder_refuses_inconsistent_publish_flags() {
    let mut p = Publish::new(TopicName::new("a").unwrap(), "x");
    p.dup = true;
    let e =
        Encoder::new(ProtocolVersion::V5).encode(&Packet::Publish(p.clone()), &mut BytesMut::new());
    assert_eq!(e.unwrap_err().rule(), Some("[MQTT-3.3.1-2]"));
    p.dup = false;
    p.topic = None;
    let e = Encoder::new(ProtocolVersion::V5).encode(&Packet::Publish(p), &mut BytesMut::new());
    assert_eq!(e.unwrap_err().rule(), Some("[MQTT-5.0 §3.3.2.1]"));
}
