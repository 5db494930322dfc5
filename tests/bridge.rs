//! Two brokers in process joined by an in-memory [`Bridge`] (what thingkit-cluster does over
//! NATS): a message accepted on one reaches the matching subscribers of the other, with the
//! other's `iot:Receive` checks and retained store, and crosses the bridge once.

#[path = "../examples/support/client.rs"]
mod client;
#[path = "../examples/support/fleet.rs"]
mod fleet;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::{Client, Options, accepted, tls_config};
use fleet::{Device, Fleet};
use thingkit::broker::{Bridge, Broker, BrokerHandle, Message, ServerIdentity};
use thingkit::mqtt::{ProtocolVersion, QoS, ReasonCode};
use thingkit::provision::PolicyTarget;
use tokio::sync::mpsc;

/// One direction of the in-memory bridge: queues what its broker offers (never waits) and
/// counts it (all, and those that are not lifecycle events).
struct Link {
    tx: mpsc::UnboundedSender<Arc<Message>>,
    offered: AtomicUsize,
    all: AtomicUsize,
    topics: Mutex<Vec<String>>,
    interest: Mutex<Vec<(String, bool)>>,
}

impl Bridge for Link {
    fn offer(&self, message: &Arc<Message>) -> Option<thingkit::broker::Confirmation> {
        self.all.fetch_add(1, Ordering::Relaxed);
        if !message.topic.as_str().starts_with("$aws/events/") {
            self.offered.fetch_add(1, Ordering::Relaxed);
            self.topics
                .lock()
                .unwrap()
                .push(message.topic.as_str().to_string());
        }
        let _ = self.tx.send(message.clone());
        None
    }

    fn interest(&self, filter: &thingkit::mqtt::TopicFilter, subscribed: bool) {
        self.interest
            .lock()
            .unwrap()
            .push((filter.as_str().to_string(), subscribed));
    }
}

fn link() -> (Arc<Link>, mpsc::UnboundedReceiver<Arc<Message>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let link = Arc::new(Link {
        tx,
        offered: AtomicUsize::new(0),
        all: AtomicUsize::new(0),
        topics: Mutex::new(Vec::new()),
        interest: Mutex::new(Vec::new()),
    });
    (link, rx)
}

async fn start(fleet: &Fleet, bridge: Arc<Link>) -> BrokerHandle {
    Broker::builder(
        fleet.registry.clone(),
        ServerIdentity::from_pem(fleet.server_chain_pem.clone(), fleet.server_key_pem.clone()),
    )
    .bridge(bridge)
    .bind("127.0.0.1:0".parse().expect("loopback literal"))
    .await
    .expect("broker starts")
}

/// Feeds what one broker's link carries into the other broker.
fn forward(mut rx: mpsc::UnboundedReceiver<Arc<Message>>, to: &BrokerHandle) {
    let publisher = to.publisher();
    tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            publisher
                .publish_remote(message)
                .await
                .expect("the remote message is routed");
        }
    });
}

async fn connect(fleet: &Fleet, broker: &BrokerHandle, device: &Device) -> Client {
    let tls = tls_config(&fleet.ca_pem(), &device.cert_pem, &device.key_pem).expect("tls config");
    let options = Options {
        version: ProtocolVersion::V5,
        ..Options::new(&device.thing)
    };
    let client = Client::connect(broker.local_addr(), "localhost", tls, &options)
        .await
        .expect("TLS + CONNECT");
    assert!(accepted(&client.connack));
    client
}

async fn nothing_more(client: &mut Client) {
    if let Ok(got) = tokio::time::timeout(Duration::from_millis(300), client.next_publish()).await {
        panic!("an unexpected message: {got:?}");
    }
}

#[tokio::test]
async fn a_publish_on_one_broker_reaches_subscribers_on_the_other_once_with_their_receive_rights() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let c = fleet.add_device("sensor-c", &[]).unwrap();
    // One connection per client ID: a second one would take the first one's session over.
    let d = fleet.add_device("sensor-d", &[]).unwrap();
    let e = fleet.add_device("sensor-e", &[]).unwrap();
    let op = fleet.add_operator().unwrap();
    {
        // sensor-c may subscribe to anything, but its Receive rights stay the fleet policy's.
        let mut registry = fleet.registry.write().unwrap();
        registry
            .create_policy(
                "subscribe-all",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Subscribe","Resource":"*"}]}"#,
                std::time::SystemTime::now(),
            )
            .unwrap();
        registry
            .attach_policy(
                "subscribe-all",
                &PolicyTarget::Certificate(c.certificate_id),
            )
            .unwrap();
    }
    let (link_a, rx_a) = link();
    let (link_b, rx_b) = link();
    let broker_a = start(&fleet, link_a.clone()).await;
    let broker_b = start(&fleet, link_b.clone()).await;
    forward(rx_a, &broker_b);
    forward(rx_b, &broker_a);

    let mut on_b = connect(&fleet, &broker_b, &b).await;
    assert_eq!(
        on_b.subscribe(&[("telemetry/+/temperature", QoS::AtLeastOnce)])
            .await
            .unwrap(),
        vec![ReasonCode(1)]
    );
    let mut denied_on_b = connect(&fleet, &broker_b, &c).await;
    assert_eq!(
        denied_on_b
            .subscribe(&[("#", QoS::AtLeastOnce)])
            .await
            .unwrap(),
        vec![ReasonCode(1)]
    );

    // A command on A: sensor-c on B may subscribe to it but not receive it.
    let mut operator = connect(&fleet, &broker_a, &op).await;
    let ack = operator
        .publish_qos1("commands/sensor-c/reboot", "secret")
        .await
        .unwrap();
    // No subscriber on A, but A cannot tell whether the other servers have one: Success, never
    // 0x10 No matching subscribers (a regression: A used to answer for its own subscribers).
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    let mut publisher = connect(&fleet, &broker_a, &a).await;
    let ack = publisher
        .publish_qos1("telemetry/sensor-a/temperature", "21.5")
        .await
        .unwrap();
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);

    let got = on_b.next_publish().await.unwrap().unwrap();
    assert_eq!(
        got.topic.as_ref().map(|t| t.as_str()),
        Some("telemetry/sensor-a/temperature")
    );
    assert_eq!(&got.payload[..], b"21.5");
    assert_eq!(got.qos, QoS::AtLeastOnce);
    let got = denied_on_b.next_publish().await.unwrap().unwrap();
    assert_eq!(
        &got.payload[..],
        b"21.5",
        "the command crossed to a subscriber without iot:Receive"
    );

    // A retained status on A is kept on B too: a later subscriber on B gets it.
    publisher
        .publish("status/sensor-a", "online", QoS::AtLeastOnce, true)
        .await
        .unwrap();
    assert_eq!(
        &denied_on_b.next_publish().await.unwrap().unwrap().payload[..],
        b"online"
    );
    let mut late_on_b = connect(&fleet, &broker_b, &d).await;
    late_on_b
        .subscribe(&[("status/+", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let retained = late_on_b.next_publish().await.unwrap().unwrap();
    assert_eq!(&retained.payload[..], b"online");
    assert!(retained.retain);

    // And the reverse direction: a publish on B reaches a subscriber on A.
    let mut on_a = connect(&fleet, &broker_a, &op).await;
    on_a.subscribe(&[("telemetry/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let mut b_publisher = connect(&fleet, &broker_b, &e).await;
    b_publisher
        .publish_qos1("telemetry/sensor-e/temperature", "19.0")
        .await
        .unwrap();
    assert_eq!(
        &on_a.next_publish().await.unwrap().unwrap().payload[..],
        b"19.0"
    );
    assert_eq!(
        &on_b.next_publish().await.unwrap().unwrap().payload[..],
        b"19.0",
        "the local subscriber on B"
    );

    // Nothing travelled twice: each bridge carried what its own broker accepted, only that.
    nothing_more(&mut on_b).await;
    nothing_more(&mut on_a).await;
    assert_eq!(
        *link_a.topics.lock().unwrap(),
        [
            "commands/sensor-c/reboot",
            "telemetry/sensor-a/temperature",
            "status/sensor-a"
        ]
    );
    assert_eq!(
        *link_b.topics.lock().unwrap(),
        ["telemetry/sensor-e/temperature"]
    );
    assert_eq!(link_a.offered.load(Ordering::Relaxed), 3);
    // B's bridge was told of each filter its sessions subscribed to, once.
    assert_eq!(
        *link_b.interest.lock().unwrap(),
        [
            ("telemetry/+/temperature".to_string(), true),
            ("#".to_string(), true),
            ("status/+".to_string(), true)
        ]
    );
    // Lifecycle events cross too (they are routed messages): B took in all that A offered.
    assert_eq!(
        broker_b.stats().remote_publishes_in,
        link_a.all.load(Ordering::Relaxed) as u64
    );
    assert_eq!(
        broker_a.stats().remote_publishes_in,
        link_b.all.load(Ordering::Relaxed) as u64
    );
    broker_a.shutdown(Duration::from_secs(5)).await;
    broker_b.shutdown(Duration::from_secs(5)).await;
}

/// A bridge that holds every QoS 1 message's confirmation until told, then answers each with
/// `ok`.
struct Durable {
    held: Mutex<Vec<thingkit::broker::Confirmer>>,
}

impl Bridge for Durable {
    fn offer(&self, message: &Arc<Message>) -> Option<thingkit::broker::Confirmation> {
        if message.qos != QoS::AtLeastOnce || message.topic.as_str().starts_with("$aws/") {
            return None;
        }
        let (confirmer, confirmation) = thingkit::broker::Confirmation::new();
        self.held.lock().unwrap().push(confirmer);
        Some(confirmation)
    }
}

impl Durable {
    /// Answers every held confirmation once one is held: `ok` confirms, else fails.
    async fn answer(&self, ok: bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let held: Vec<_> = self.held.lock().unwrap().drain(..).collect();
            if !held.is_empty() {
                for c in held {
                    match ok {
                        true => c.confirm(),
                        false => c.fail("the stream is unreachable"),
                    }
                }
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nothing was offered"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A broker whose bridge holds every QoS 1 confirmation until the test answers it.
async fn start_durable(fleet: &Fleet) -> (Arc<Durable>, BrokerHandle) {
    let durable = Arc::new(Durable {
        held: Mutex::new(Vec::new()),
    });
    let broker = Broker::builder(
        fleet.registry.clone(),
        ServerIdentity::from_pem(fleet.server_chain_pem.clone(), fleet.server_key_pem.clone()),
    )
    .bridge(durable.clone())
    .bind("127.0.0.1:0".parse().expect("loopback literal"))
    .await
    .expect("broker starts");
    (durable, broker)
}

#[tokio::test]
async fn a_qos_1_publish_is_acknowledged_only_once_the_bridge_confirms_it_durable() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let (durable, broker) = start_durable(&fleet).await;
    let mut client = connect(&fleet, &broker, &a).await;

    // Confirmed: PUBACK Success, but not before.
    {
        let publish = client.publish_qos1("telemetry/sensor-a/temperature", "1");
        tokio::pin!(publish);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), &mut publish)
                .await
                .is_err(),
            "PUBACK before the bridge confirmed the message"
        );
        durable.answer(true).await;
        let ack = publish.await.unwrap();
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    }

    // Refused by the bridge: PUBACK 0x80 Unspecified error, and counted.
    let publish = client.publish_qos1("telemetry/sensor-a/temperature", "2");
    let (ack, ()) = tokio::join!(publish, durable.answer(false));
    let ack = ack.unwrap();
    assert_eq!(ack.reason_code, ReasonCode::UNSPECIFIED_ERROR);
    assert_eq!(broker.stats().bridge_refusals, 1);

    // A QoS 0 publish waits for nothing.
    client
        .publish(
            "telemetry/sensor-a/temperature",
            "3",
            QoS::AtMostOnce,
            false,
        )
        .await
        .unwrap();
    assert!(durable.held.lock().unwrap().is_empty());
}

#[tokio::test]
async fn acknowledgements_waiting_for_the_bridge_keep_their_publishes_order() {
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let (durable, broker) = start_durable(&fleet).await;
    let mut client = connect(&fleet, &broker, &a).await;
    // Three QoS 1 publishes in a row: the connection reads on while the first two wait.
    for (id, payload) in [(1u16, "one"), (2, "two"), (3, "three")] {
        let mut p = thingkit::mqtt::Publish::new(
            thingkit::mqtt::TopicName::new("telemetry/sensor-a/temperature").unwrap(),
            payload,
        );
        p.qos = QoS::AtLeastOnce;
        p.packet_id = thingkit::mqtt::PacketId::new(id);
        client
            .send(&thingkit::mqtt::Packet::Publish(p))
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while durable.held.lock().unwrap().len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the connection did not read on while acknowledgements waited"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Confirmed last to first: the PUBACKs still come first to last, once the first is.
    let mut held: Vec<_> = durable.held.lock().unwrap().drain(..).collect();
    let first = held.remove(0);
    for c in held {
        c.confirm();
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), client.recv())
            .await
            .is_err(),
        "a PUBACK overtook the first, unconfirmed one"
    );
    first.confirm();
    for id in 1..=3u16 {
        match client.recv().await.unwrap() {
            Some(thingkit::mqtt::Packet::PubAck(ack)) => {
                assert_eq!(ack.packet_id.get(), id);
                assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
            }
            other => panic!("expected PUBACK {id}, got {other:?}"),
        }
    }
}
