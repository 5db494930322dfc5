//! thingkit-mqtt in a few steps: decode what a client sends, route a PUBLISH through the
//! subscription index, compress topics with aliases, and see a malformed packet rejected with the
//! rule it breaks. No network: the "socket" is a byte buffer.
//!
//! Run it with `cargo run --example mqtt`.

use std::num::NonZeroU16;

use thingkit::mqtt::bytes::BytesMut;
use thingkit::mqtt::{
    Connect, Decoder, Encoder, InboundAliases, Match, MqttStr, OutboundAliases, Packet, PacketId,
    Properties, ProtocolVersion, Publish, QoS, Subscribe, Subscription, SubscriptionIndex,
    SubscriptionOptions, TopicFilter, TopicName,
};

fn main() -> Result<(), thingkit::mqtt::Error> {
    // A client's first bytes: CONNECT (MQTT 5.0), SUBSCRIBE, PUBLISH, encoded by the same crate.
    let v5 = ProtocolVersion::V5;
    let enc = Encoder::new(v5);
    let mut wire = BytesMut::new();
    enc.encode(
        &Packet::Connect(Connect {
            protocol: v5,
            clean_start: true,
            keep_alive: 30,
            properties: Properties {
                topic_alias_maximum: Some(8),
                ..Default::default()
            }
            .into(),
            client_id: MqttStr::new("sensor-7")?,
            will: None,
            username: None,
            password: None,
        }),
        &mut wire,
    )?;
    enc.encode(
        &Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(1).expect("1 is not 0"),
            properties: Default::default(),
            subscriptions: vec![Subscription {
                filter: TopicFilter::new("plant/+/temperature")?,
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                },
            }],
        }),
        &mut wire,
    )?;
    enc.encode(
        &Packet::Publish(Publish::new(TopicName::new("plant/7/temperature")?, "21.5")),
        &mut wire,
    )?;
    println!("client sent {} bytes", wire.len());

    // The server side: detect the version from CONNECT, then decode packet by packet.
    let mut decoder = Decoder::detect();
    let mut index: SubscriptionIndex<&str, QoS> = SubscriptionIndex::new();
    let mut published = Vec::new();
    while let Some(packet) = decoder.decode(&mut wire)? {
        println!("decoded {}", packet.packet_type());
        match packet {
            Packet::Subscribe(s) => {
                for sub in s.subscriptions {
                    index.insert(&sub.filter, "dashboard", sub.options.qos);
                }
            }
            Packet::Publish(p) => published.push(p),
            _ => {}
        }
    }
    println!(
        "protocol detected: MQTT {}",
        decoder.version().expect("CONNECT was decoded")
    );

    // Route: who receives plant/7/temperature?
    for p in &published {
        let topic = p.topic.as_ref().expect("this client sends topics");
        for m in index.matches(topic) {
            if let Match::Direct { subscriber, value } = m {
                println!("deliver {topic} to {subscriber} at QoS {}", value.as_u8());
            }
        }
    }

    // Topic aliases: the second PUBLISH to the same topic goes out with an empty topic.
    let mut outbound = OutboundAliases::new(8);
    let mut inbound = InboundAliases::new(8);
    for _ in 0..2 {
        let mut p = published[0].clone();
        outbound.apply(&mut p);
        let mut bytes = BytesMut::new();
        let n = enc.encode(&Packet::Publish(p.clone()), &mut bytes)?;
        inbound.resolve(&mut p)?;
        println!(
            "PUBLISH with alias {:?}: {n} bytes, receiver resolves it to {}",
            p.properties.topic_alias.map(NonZeroU16::get),
            p.topic.as_ref().expect("resolved")
        );
    }

    // A malformed packet: PUBLISH with a wildcard in its topic name.
    let mut bad = BytesMut::from(&b"\x30\x06\x00\x03a/+\x00"[..]);
    let err = Decoder::new(v5).decode(&mut bad).unwrap_err();
    println!("rejected: {err}");
    Ok(())
}
