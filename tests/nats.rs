//! Two brokers in process joined through a real nats-server by thingkit-cluster's NATS routing.
//! Ignored by default: `.ci/nats start` runs nats-server, then
//! `THINGKIT_TEST_NATS=$(.ci/nats url) cargo test --test nats -- --ignored`. Without the
//! variable (or without a server there) the test fails, it does not skip.

#[path = "../examples/support/client.rs"]
mod client;
#[path = "../examples/support/fleet.rs"]
mod fleet;

use std::sync::atomic::Ordering;
use std::time::Duration;

use client::{Client, Options, accepted, tls_config};
use fleet::{Device, Fleet};
use thingkit::broker::{Broker, BrokerHandle, ServerIdentity};
use thingkit::mqtt::{Packet, ProtocolVersion, Publish, QoS, ReasonCode, TopicName};
use thingkit::provision::PolicyTarget;
use thingkit_cluster::nats::{NatsConfig, NatsRoutes};

fn nats_url() -> String {
    std::env::var("THINGKIT_TEST_NATS").unwrap_or_else(|_| {
        panic!(
            "THINGKIT_TEST_NATS is not set: start a server with `.ci/nats start` and set \
             THINGKIT_TEST_NATS=$(.ci/nats url) (nats://127.0.0.1:PORT)"
        )
    })
}

/// A cluster name of its own, `<prefix><process id><nanoseconds>`, so that runs sharing the
/// NATS server do not meet.
fn unique_cluster(prefix: &str) -> String {
    format!(
        "{prefix}{}{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    )
}

/// Lets `devices` subscribe to any filter (policy `subscribe-all`); what they may receive stays
/// the fleet policy's.
fn allow_subscribe_all(fleet: &Fleet, devices: &[&Device]) {
    let mut registry = fleet.registry.write().unwrap();
    registry
        .create_policy(
            "subscribe-all",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Subscribe","Resource":"*"}]}"#,
            std::time::SystemTime::now(),
        )
        .unwrap();
    for device in devices {
        registry
            .attach_policy(
                "subscribe-all",
                &PolicyTarget::Certificate(device.certificate_id),
            )
            .unwrap();
    }
}

/// A broker of cluster `cluster` named `server`, routed through NATS (per local filter if
/// `interest`, else the whole cluster).
async fn start(
    fleet: &Fleet,
    url: &str,
    cluster: &str,
    server: &str,
    interest: bool,
) -> (BrokerHandle, NatsRoutes) {
    let config = NatsConfig::new(url, cluster, server)
        .expect("a valid NATS configuration")
        .with_interest(interest);
    start_with(fleet, config).await
}

/// A broker routed through NATS as `config` says.
async fn start_with(fleet: &Fleet, config: NatsConfig) -> (BrokerHandle, NatsRoutes) {
    let url = config.url.clone();
    let mut routes = NatsRoutes::connect(config)
        .await
        .unwrap_or_else(|e| panic!("no NATS server (with JetStream) at {url}: {e}"));
    let broker = Broker::builder(
        fleet.registry.clone(),
        ServerIdentity::from_pem(fleet.server_chain_pem.clone(), fleet.server_key_pem.clone()),
    )
    .bridge(routes.bridge())
    .bind("127.0.0.1:0".parse().expect("loopback literal"))
    .await
    .expect("broker starts");
    routes
        .start(broker.publisher())
        .await
        .expect("subscribed to the cluster");
    (broker, routes)
}

async fn connect(
    fleet: &Fleet,
    broker: &BrokerHandle,
    device: &Device,
    version: ProtocolVersion,
) -> Client {
    let tls = tls_config(&fleet.ca_pem(), &device.cert_pem, &device.key_pem).expect("tls config");
    let options = Options {
        version,
        ..Options::new(&device.thing)
    };
    let client = Client::connect(broker.local_addr(), "localhost", tls, &options)
        .await
        .expect("TLS + CONNECT");
    assert!(accepted(&client.connack));
    client
}

async fn next(client: &mut Client) -> Publish {
    tokio::time::timeout(Duration::from_secs(5), client.next_publish())
        .await
        .expect("a message within 5 s")
        .expect("the connection is open")
        .expect("a PUBLISH")
}

/// Waits until `routes` has applied `n` changes of interest to its NATS subscriptions (the
/// broker tells it of each filter's first subscription).
async fn interest_applied(routes: &NatsRoutes, n: u64) {
    if !routes.interest() {
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while routes.counters().interest_changes.load(Ordering::Relaxed) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the NATS subscriptions did not follow the broker's interest within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn nothing_more(client: &mut Client) {
    if let Ok(got) = tokio::time::timeout(Duration::from_millis(300), client.next_publish()).await {
        panic!("an unexpected message: {got:?}");
    }
}

#[tokio::test]
#[ignore = "needs nats-server: THINGKIT_TEST_NATS=$(.ci/nats url)"]
async fn two_brokers_exchange_messages_through_nats_subscribing_per_local_filter() {
    two_brokers(true).await;
}

#[tokio::test]
#[ignore = "needs nats-server: THINGKIT_TEST_NATS=$(.ci/nats url)"]
async fn two_brokers_exchange_messages_through_nats_subscribing_to_the_whole_cluster() {
    two_brokers(false).await;
}

/// On B, a subscriber gets what is published on A, with B's Receive checks, MQTT 5 properties
/// and retained messages; the reverse direction; nothing arrives twice.
async fn two_brokers(interest: bool) {
    let url = nats_url();
    let cluster = unique_cluster(&format!("test{}", u8::from(interest)));
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let c = fleet.add_device("sensor-c", &[]).unwrap();
    let d = fleet.add_device("sensor-d", &[]).unwrap();
    let op = fleet.add_operator().unwrap();
    // sensor-c may subscribe to anything, but its Receive rights stay the fleet policy's.
    allow_subscribe_all(&fleet, &[&c]);
    let (broker_a, routes_a) = start(&fleet, &url, &cluster, "a", interest).await;
    let (broker_b, routes_b) = start(&fleet, &url, &cluster, "b", interest).await;

    // On B: an MQTT 3.1.1 subscriber, and an MQTT 5 one that may subscribe to all but receive
    // only the fleet's telemetry and status.
    let mut on_b = connect(&fleet, &broker_b, &b, ProtocolVersion::V311).await;
    assert_eq!(
        on_b.subscribe(&[("telemetry/+/temperature", QoS::AtLeastOnce)])
            .await
            .unwrap(),
        vec![ReasonCode(1)]
    );
    let mut denied_on_b = connect(&fleet, &broker_b, &c, ProtocolVersion::V5).await;
    denied_on_b
        .subscribe(&[("#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    // B now receives from NATS on `telemetry.*.temperature` and `>` (which overlap).
    interest_applied(&routes_b, 2).await;

    // On A: a command (which sensor-c must not receive), then telemetry with MQTT 5
    // properties.
    let mut operator = connect(&fleet, &broker_a, &op, ProtocolVersion::V5).await;
    operator
        .publish_qos1("commands/sensor-c/reboot", "secret")
        .await
        .unwrap();
    let mut on_a = connect(&fleet, &broker_a, &a, ProtocolVersion::V5).await;
    let mut telemetry = Publish::new(
        TopicName::new("telemetry/sensor-a/temperature").unwrap(),
        "21.5",
    );
    telemetry.qos = QoS::AtLeastOnce;
    telemetry.packet_id = thingkit::mqtt::PacketId::new(7);
    telemetry.properties.content_type = Some(thingkit::mqtt::MqttStr::new("text/plain").unwrap());
    on_a.send(&Packet::Publish(telemetry)).await.unwrap();

    let got = next(&mut on_b).await;
    assert_eq!(
        got.topic.as_ref().map(|t| t.as_str()),
        Some("telemetry/sensor-a/temperature")
    );
    assert_eq!(&got.payload[..], b"21.5");
    assert_eq!(got.qos, QoS::AtLeastOnce);
    let got = next(&mut denied_on_b).await;
    assert_eq!(
        &got.payload[..],
        b"21.5",
        "the command crossed to a subscriber without iot:Receive"
    );
    assert_eq!(
        got.properties.content_type.as_ref().map(|c| c.as_str()),
        Some("text/plain"),
        "MQTT 5 properties cross"
    );

    // A retained status on A: a later subscriber on B gets it.
    on_a.publish("status/sensor-a", "online", QoS::AtLeastOnce, true)
        .await
        .unwrap();
    assert_eq!(&next(&mut denied_on_b).await.payload[..], b"online");
    let mut late_on_b = connect(&fleet, &broker_b, &d, ProtocolVersion::V5).await;
    late_on_b
        .subscribe(&[("status/+", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let retained = next(&mut late_on_b).await;
    assert_eq!(&retained.payload[..], b"online");
    assert!(retained.retain);

    // The reverse direction: from B (MQTT 3.1.1) to A.
    operator
        .subscribe(&[("telemetry/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    interest_applied(&routes_a, 1).await;
    on_b.publish(
        "telemetry/sensor-b/temperature",
        "19.0",
        QoS::AtLeastOnce,
        false,
    )
    .await
    .unwrap();
    assert_eq!(&next(&mut operator).await.payload[..], b"19.0");
    // on_b subscribed to it too (MQTT 3.1.1 has no No Local): once, locally.
    assert_eq!(&next(&mut on_b).await.payload[..], b"19.0");

    // Nothing twice: no copy came back, and the telemetry that B's two overlapping NATS
    // subscriptions both matched was routed once (the duplicate filter).
    nothing_more(&mut on_b).await;
    // sensor-c (`#` on B) got B's telemetry too, locally, once.
    assert_eq!(&next(&mut denied_on_b).await.payload[..], b"19.0");
    nothing_more(&mut denied_on_b).await;
    nothing_more(&mut operator).await;
    let (ca, cb) = (routes_a.counters(), routes_b.counters());
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    assert_eq!(load(&ca.dropped), 0);
    assert_eq!(load(&ca.rejected), 0);
    assert_eq!(load(&cb.rejected), 0);
    if interest {
        assert!(load(&cb.duplicates) >= 1, "B's subscriptions overlap");
    } else {
        assert_eq!(load(&cb.duplicates), 0);
    }
    // B's `#` covers all that A sent ($ topics too: NATS knows no $ rule, B's matcher does).
    assert_eq!(load(&cb.received), load(&ca.published));
    assert_eq!(broker_b.stats().remote_publishes_in, load(&ca.published));
    // Per filter, A subscribes to telemetry only: of what B sent (its lifecycle events too),
    // only the telemetry reached it. Subscribed to the whole cluster, A got everything.
    if interest {
        assert_eq!(load(&ca.received), 1);
        assert!(load(&cb.published) > 1);
    } else {
        assert_eq!(load(&ca.received), load(&cb.published));
    }
    routes_a.close(Duration::from_secs(2)).await;
    routes_b.close(Duration::from_secs(2)).await;
    broker_a.shutdown(Duration::from_secs(5)).await;
    broker_b.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
#[ignore = "needs nats-server with JetStream: THINGKIT_TEST_NATS=$(.ci/nats url)"]
async fn durable_routes_acknowledge_qos_1_once_the_stream_has_it_and_replay_it() {
    let url = nats_url();
    let cluster = unique_cluster("durable");
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let config = NatsConfig::new(&url, &cluster, "a")
        .unwrap()
        .with_durable(true);
    let (broker, routes) = start_with(&fleet, config).await;
    let since = std::time::SystemTime::now() - Duration::from_secs(1);

    let mut client = connect(&fleet, &broker, &a, ProtocolVersion::V5).await;
    // (Its lifecycle event, `$aws/events/presence/connected/sensor-a`, is QoS 1 too.)
    tokio::time::sleep(Duration::from_millis(200)).await;
    let acks = routes.counters().durable_acks.load(Ordering::Relaxed);
    let ack = client
        .publish_qos1("telemetry/sensor-a/temperature", "one")
        .await
        .unwrap();
    // No subscriber anywhere: still Success (other servers may have some), once the stream has
    // it.
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert_eq!(
        routes.counters().durable_acks.load(Ordering::Relaxed),
        acks + 1
    );
    client
        .publish(
            "telemetry/sensor-a/temperature",
            "zero",
            QoS::AtMostOnce,
            false,
        )
        .await
        .unwrap();
    client
        .publish_qos1("telemetry/sensor-a/humidity", "other")
        .await
        .unwrap();
    let mut retained = Publish::new(
        TopicName::new("telemetry/sensor-a/temperature").unwrap(),
        "kept",
    );
    retained.qos = QoS::AtLeastOnce;
    retained.retain = true;
    retained.packet_id = thingkit::mqtt::PacketId::new(9);
    client.send(&Packet::Publish(retained)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // What a session subscribed to `telemetry/+/temperature` missed since then: the QoS 1
    // messages on matching topics (the retained one too), in order; not the QoS 0 one, not
    // the humidity.
    let replay = routes.replay().expect("durable routes replay");
    let filter = thingkit::mqtt::TopicFilter::new("telemetry/+/temperature").unwrap();
    let missed = replay
        .missed(since, std::slice::from_ref(&filter))
        .await
        .unwrap();
    let payloads: Vec<&[u8]> = missed.iter().map(|m| &m.payload[..]).collect();
    assert_eq!(payloads, [&b"one"[..], &b"kept"[..]]);
    assert!(missed[1].retain);
    // Nothing before `since`'s successor.
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    assert!(replay.missed(later, &[filter]).await.unwrap().is_empty());
    routes.close(Duration::from_secs(1)).await;
}

/// A TCP proxy in front of the NATS server whose connections can be cut and restored: a
/// server cut off from NATS while the others are not.
struct Proxy {
    url: String,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    epoch: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Proxy {
    async fn start(nats: &str) -> Proxy {
        let target = nats
            .trim_start_matches("nats://")
            .split(',')
            .next()
            .unwrap()
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("nats://{}", listener.local_addr().unwrap());
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let epoch = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (c, e) = (cut.clone(), epoch.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: refused while cut
                }
                let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let (e, mine) = (e.clone(), e.load(Ordering::SeqCst));
                tokio::spawn(async move {
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    let cut = async {
                        while e.load(Ordering::SeqCst) == mine {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    };
                    tokio::select! {
                        _ = copy => {}
                        _ = cut => {}
                    }
                });
            }
        });
        Proxy { url, cut, epoch }
    }

    /// Ends every connection through the proxy and refuses new ones.
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Accepts connections again.
    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

#[tokio::test]
#[ignore = "needs nats-server with JetStream: THINGKIT_TEST_NATS=$(.ci/nats url)"]
async fn a_server_cut_off_from_nats_gets_what_it_missed_when_it_is_back() {
    let url = nats_url();
    let cluster = unique_cluster("cut");
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let proxy = Proxy::start(&url).await;
    let durable = |url: &str, server: &str| {
        NatsConfig::new(url, &cluster, server)
            .unwrap()
            .with_durable(true)
            .with_recovery_margin(Duration::from_millis(500))
    };
    let (broker_a, _routes_a) = start_with(&fleet, durable(&url, "a")).await;
    let (broker_b, routes_b) = start_with(&fleet, durable(&proxy.url, "b")).await;

    let mut on_b = connect(&fleet, &broker_b, &b, ProtocolVersion::V311).await;
    on_b.subscribe(&[("telemetry/+/temperature", QoS::AtLeastOnce)])
        .await
        .unwrap();
    interest_applied(&routes_b, 1).await;
    let mut on_a = connect(&fleet, &broker_a, &a, ProtocolVersion::V5).await;
    let topic = "telemetry/sensor-a/temperature";
    on_a.publish_qos1(topic, "before").await.unwrap();
    assert_eq!(&next(&mut on_b).await.payload[..], b"before");

    // B is cut off from NATS (a second later: its recovery starts half a second before the
    // break, and "before" is not to come again); A publishes, and the stream acknowledges.
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for payload in ["during-1", "during-2"] {
        let ack = on_a.publish_qos1(topic, payload).await.unwrap();
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.restore();

    // B reconnects by itself and routes what it missed to its subscriber.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while routes_b.counters().recoveries.load(Ordering::Relaxed) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B did not recover within 20 s of NATS coming back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(String::from_utf8_lossy(&next(&mut on_b).await.payload).into_owned());
    }
    assert_eq!(got, ["during-1", "during-2"]);
    // And live routing works again.
    on_a.publish_qos1(topic, "after").await.unwrap();
    assert_eq!(&next(&mut on_b).await.payload[..], b"after");
}

#[tokio::test]
#[ignore = "needs nats-server: THINGKIT_TEST_NATS=$(.ci/nats url)"]
async fn a_shared_subscription_with_members_on_two_servers_gets_each_message_once() {
    let url = nats_url();
    let cluster = unique_cluster("share");
    let fleet = Fleet::new().unwrap();
    let a = fleet.add_device("sensor-a", &[]).unwrap();
    let b = fleet.add_device("sensor-b", &[]).unwrap();
    let c = fleet.add_device("sensor-c", &[]).unwrap();
    let d = fleet.add_device("sensor-d", &[]).unwrap();
    let e = fleet.add_device("sensor-e", &[]).unwrap();
    // The members may subscribe to the shared filter; receiving stays the fleet policy's.
    allow_subscribe_all(&fleet, &[&a, &b]);
    let (broker_a, routes_a) = start(&fleet, &url, &cluster, "a", true).await;
    let (broker_b, routes_b) = start(&fleet, &url, &cluster, "b", true).await;

    // One shared subscription, a member on each server; a plain subscriber on B.
    let mut member_a = connect(&fleet, &broker_a, &a, ProtocolVersion::V5).await;
    let mut member_b = connect(&fleet, &broker_b, &b, ProtocolVersion::V5).await;
    let mut plain_b = connect(&fleet, &broker_b, &c, ProtocolVersion::V5).await;
    for client in [&mut member_a, &mut member_b] {
        assert_eq!(
            client
                .subscribe(&[("$share/workers/telemetry/#", QoS::AtLeastOnce)])
                .await
                .unwrap(),
            vec![ReasonCode(1)]
        );
    }
    plain_b
        .subscribe(&[("telemetry/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    interest_applied(&routes_a, 1).await;
    interest_applied(&routes_b, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the queue groups' round trips

    // 40 messages, published through both servers.
    let mut pub_a = connect(&fleet, &broker_a, &d, ProtocolVersion::V5).await;
    let mut pub_b = connect(&fleet, &broker_b, &e, ProtocolVersion::V5).await;
    const N: usize = 40;
    for i in 0..N {
        let (publisher, topic) = match i % 2 {
            0 => (&mut pub_a, "telemetry/sensor-d/temperature"),
            _ => (&mut pub_b, "telemetry/sensor-e/temperature"),
        };
        publisher.publish_qos1(topic, format!("{i}")).await.unwrap();
    }
    let mut got = Vec::new();
    let mut per_member = [0usize; 2];
    for (k, member) in [&mut member_a, &mut member_b].into_iter().enumerate() {
        while let Ok(Ok(Some(p))) =
            tokio::time::timeout(Duration::from_millis(700), member.next_publish()).await
        {
            got.push(String::from_utf8_lossy(&p.payload).into_owned());
            per_member[k] += 1;
        }
    }
    got.sort_by_key(|p| p.parse::<usize>().unwrap_or(usize::MAX));
    let expected: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(
        got, expected,
        "each message once to the group, cluster-wide"
    );
    assert!(
        per_member.iter().all(|&n| n > 0),
        "both servers' members share the work: {per_member:?}"
    );
    // The plain subscriber still gets every message.
    for _ in 0..N {
        next(&mut plain_b).await;
    }
    nothing_more(&mut plain_b).await;
    let _ = routes_a;
}
