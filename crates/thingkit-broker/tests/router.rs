//! The router driven with injected time: no sockets, no sleeping.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use thingkit_broker::{
    Delivery, Error, GrantedSubscription, Message, Outlet, Requeued, Router, RouterLimits,
    SessionExpiry,
};
use thingkit_mqtt::{PacketProperties, Properties, QoS, ReasonCode, TopicFilter, TopicName};

/// A connection as the router sees it: a bounded queue and the reason it was kicked with.
#[derive(Clone)]
struct TestOutlet(Rc<OutletState>);

struct OutletState {
    capacity: usize,
    queue: RefCell<Vec<Delivery>>,
    kicked: RefCell<Option<ReasonCode>>,
}

impl TestOutlet {
    fn new(capacity: usize) -> Self {
        TestOutlet(Rc::new(OutletState {
            capacity,
            queue: RefCell::new(Vec::new()),
            kicked: RefCell::new(None),
        }))
    }
    fn payloads(&self) -> Vec<String> {
        self.0
            .queue
            .borrow()
            .iter()
            .map(|d| String::from_utf8_lossy(&d.message.payload).into_owned())
            .collect()
    }
    fn take(&self) -> Vec<Delivery> {
        std::mem::take(&mut *self.0.queue.borrow_mut())
    }
    fn kicked(&self) -> Option<ReasonCode> {
        *self.0.kicked.borrow()
    }
}

impl Outlet for TestOutlet {
    fn try_deliver(&self, d: Delivery) -> Result<(), Delivery> {
        let mut q = self.0.queue.borrow_mut();
        if q.len() >= self.0.capacity {
            return Err(d);
        }
        q.push(d);
        Ok(())
    }
    fn kick(&self, reason: ReasonCode) {
        *self.0.kicked.borrow_mut() = Some(reason);
    }
}

fn id(s: &str) -> Arc<str> {
    s.into()
}

fn filter(f: &str) -> TopicFilter {
    TopicFilter::new(f).unwrap()
}

fn granted(qos: QoS) -> GrantedSubscription {
    GrantedSubscription {
        qos,
        no_local: false,
        retain_as_published: false,
        id: None,
    }
}

fn msg(topic: &str, payload: &str, qos: QoS, retain: bool, at: Instant) -> Arc<Message> {
    Arc::new(Message {
        topic: TopicName::new(topic).unwrap(),
        payload: payload.to_owned().into(),
        qos,
        retain,
        properties: PacketProperties::default(),
        from: None,
        received: at,
    })
}

fn expiring(topic: &str, payload: &str, secs: u32, at: Instant) -> Arc<Message> {
    let mut m = (*msg(topic, payload, QoS::AtLeastOnce, true, at)).clone();
    m.properties = Properties {
        message_expiry_interval: Some(secs),
        ..Properties::default()
    }
    .into();
    Arc::new(m)
}

const SECOND: Duration = Duration::from_secs(1);

/// A persistent session that subscribed to `f` and disconnected at `t0`.
fn offline_session(
    router: &mut Router<TestOutlet>,
    client: &Arc<str>,
    f: &str,
    expiry: SessionExpiry,
    t0: Instant,
) {
    router.attach(client, true, expiry, 1, TestOutlet::new(100), t0);
    router.subscribe(client, &filter(f), granted(QoS::AtLeastOnce));
    router.detach(client, 1, Vec::new(), t0);
}

#[test]
fn session_expires_after_its_interval_and_not_before() {
    let t0 = Instant::now();
    let mut router = Router::default();
    let c = id("c");
    offline_session(&mut router, &c, "a", SessionExpiry::After(10 * SECOND), t0);
    assert_eq!(router.sweep(t0 + 9 * SECOND), 0);
    assert_eq!(router.session_count(), 1);
    assert_eq!(router.sweep(t0 + 10 * SECOND), 1);
    assert_eq!(router.session_count(), 0);
    assert_eq!(router.counters().sessions_expired, 1);
    // Its subscription went with it.
    assert_eq!(
        router
            .route(&msg("a", "x", QoS::AtLeastOnce, false, t0))
            .queued,
        0
    );
}

#[test]
fn reconnecting_after_expiry_finds_no_session() {
    let t0 = Instant::now();
    let mut router = Router::default();
    let c = id("c");
    offline_session(&mut router, &c, "a", SessionExpiry::After(5 * SECOND), t0);
    router.route(&msg("a", "queued", QoS::AtLeastOnce, false, t0));
    let back = router.attach(
        &c,
        false,
        SessionExpiry::After(5 * SECOND),
        2,
        TestOutlet::new(10),
        t0 + 6 * SECOND,
    );
    assert!(!back.session_present);
    assert!(back.backlog.is_empty());
}

#[test]
fn persistent_session_without_expiry_keeps_subscriptions_and_queue() {
    let t0 = Instant::now();
    let mut router = Router::default();
    let c = id("c");
    offline_session(&mut router, &c, "a/+", SessionExpiry::Never, t0);
    router.route(&msg("a/1", "q1", QoS::AtLeastOnce, false, t0));
    router.route(&msg("a/2", "q0", QoS::AtMostOnce, false, t0)); // QoS 0 is not kept offline
    assert_eq!(router.sweep(t0 + 1_000_000 * SECOND), 0);
    let back = router.attach(
        &c,
        false,
        SessionExpiry::Never,
        2,
        TestOutlet::new(10),
        t0 + 1_000_000 * SECOND,
    );
    assert!(back.session_present);
    assert_eq!(back.backlog.len(), 1);
    assert_eq!(back.backlog[0].message.payload, "q1");
    assert_eq!(router.counters().offline_qos0_dropped, 1);
}

#[test]
fn detach_keeps_unacked_qos1_messages_for_a_persistent_session() {
    let t0 = Instant::now();
    let mut router = Router::default();
    let c = id("c");
    let out = TestOutlet::new(10);
    router.attach(&c, true, SessionExpiry::Never, 1, out.clone(), t0);
    router.subscribe(&c, &filter("t"), granted(QoS::AtLeastOnce));
    router.route(&msg("t", "inflight", QoS::AtLeastOnce, false, t0));
    let unacked = out.take();
    router.detach(&c, 1, unacked, t0);
    let back = router.attach(&c, false, SessionExpiry::Never, 2, TestOutlet::new(10), t0);
    assert_eq!(back.backlog.len(), 1);
    assert_eq!(back.backlog[0].message.payload, "inflight");
}

#[test]
fn non_persistent_session_is_removed_on_detach() {
    let t0 = Instant::now();
    let mut router = Router::<TestOutlet>::default();
    let c = id("c");
    router.attach(
        &c,
        true,
        SessionExpiry::OnDisconnect,
        1,
        TestOutlet::new(10),
        t0,
    );
    router.subscribe(&c, &filter("t"), granted(QoS::AtLeastOnce));
    router.detach(&c, 1, Vec::new(), t0);
    assert_eq!(router.session_count(), 0);
    assert_eq!(
        router
            .route(&msg("t", "x", QoS::AtLeastOnce, false, t0))
            .queued,
        0
    );
}

#[test]
fn expired_messages_are_not_delivered_from_the_offline_queue() {
    let t0 = Instant::now();
    let mut router = Router::default();
    let c = id("c");
    offline_session(&mut router, &c, "t", SessionExpiry::Never, t0);
    router.route(&expiring("t", "short", 5, t0));
    router.route(&expiring("t", "long", 60, t0));
    router.route(&msg("t", "forever", QoS::AtLeastOnce, false, t0));
    let back = router.attach(
        &c,
        false,
        SessionExpiry::Never,
        2,
        TestOutlet::new(10),
        t0 + 5 * SECOND,
    );
    let payloads: Vec<_> = back
        .backlog
        .iter()
        .map(|d| d.message.payload.clone())
        .collect();
    assert_eq!(payloads, ["long", "forever"]);
    assert_eq!(
        back.backlog[0].message.expiry_left(t0 + 5 * SECOND),
        Some(55)
    );
    assert_eq!(router.counters().expired_dropped, 1);
}

#[test]
fn expired_retained_messages_are_not_sent_and_are_swept() {
    let t0 = Instant::now();
    let mut router = Router::<TestOutlet>::default();
    router.publish(&expiring("r/a", "short", 5, t0)).unwrap();
    router.publish(&expiring("r/b", "long", 60, t0)).unwrap();
    assert_eq!(
        router
            .retained_matching(&filter("r/#"), t0 + 4 * SECOND)
            .len(),
        2
    );
    let later = router.retained_matching(&filter("r/#"), t0 + 5 * SECOND);
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].payload, "long");
    router.sweep(t0 + 5 * SECOND);
    assert_eq!(router.retained_count(), 1);
    assert_eq!(router.counters().retained_expired, 1);
}

#[test]
fn takeover_kicks_the_old_outlet_with_session_taken_over() {
    let t0 = Instant::now();
    let mut router = Router::default();
    let c = id("c");
    let old = TestOutlet::new(10);
    let new = TestOutlet::new(10);
    router.attach(&c, false, SessionExpiry::Never, 1, old.clone(), t0);
    router.subscribe(&c, &filter("t"), granted(QoS::AtLeastOnce));
    let attached = router.attach(&c, false, SessionExpiry::Never, 2, new.clone(), t0);
    assert!(attached.session_present);
    assert_eq!(old.kicked(), Some(ReasonCode::SESSION_TAKEN_OVER));
    assert_eq!(new.kicked(), None);
    // The old connection's late detach hands its unacked messages to the new one and leaves
    // the session attached.
    router.detach(
        &c,
        1,
        vec![Delivery {
            message: msg("t", "unacked", QoS::AtLeastOnce, false, t0),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_id: None,
        }],
        t0,
    );
    assert!(router.is_attached("c"));
    assert_eq!(new.payloads(), ["unacked"]);
    router.route(&msg("t", "next", QoS::AtLeastOnce, false, t0));
    assert_eq!(new.payloads(), ["unacked", "next"]);
    assert!(old.payloads().is_empty());
}

#[test]
fn clean_start_discards_subscriptions_and_queue() {
    let t0 = Instant::now();
    let mut router = Router::default();
    let c = id("c");
    offline_session(&mut router, &c, "t", SessionExpiry::Never, t0);
    router.route(&msg("t", "queued", QoS::AtLeastOnce, false, t0));
    let out = TestOutlet::new(10);
    let attached = router.attach(&c, true, SessionExpiry::Never, 2, out.clone(), t0);
    assert!(!attached.session_present);
    assert!(attached.backlog.is_empty());
    assert_eq!(
        router
            .route(&msg("t", "after", QoS::AtLeastOnce, false, t0))
            .queued,
        0
    );
    assert!(out.payloads().is_empty());
}

#[test]
fn offline_queue_cap_drops_and_counts() {
    let t0 = Instant::now();
    let mut router = Router::new(RouterLimits::default().with_max_offline_messages(3));
    let c = id("c");
    offline_session(&mut router, &c, "t", SessionExpiry::Never, t0);
    let mut dropped = 0;
    for i in 0..5 {
        dropped += router
            .route(&msg("t", &i.to_string(), QoS::AtLeastOnce, false, t0))
            .dropped;
    }
    assert_eq!(dropped, 2);
    assert_eq!(router.offline_len("c"), 3);
    assert_eq!(router.counters().offline_dropped, 2);
    let back = router.attach(&c, false, SessionExpiry::Never, 2, TestOutlet::new(10), t0);
    let payloads: Vec<_> = back
        .backlog
        .iter()
        .map(|d| d.message.payload.clone())
        .collect();
    assert_eq!(payloads, ["0", "1", "2"]);
}

#[test]
fn unacked_messages_are_kept_beyond_the_offline_cap_and_new_ones_are_not() {
    // What the connection had accepted (and its publishers were acknowledged for) stays with
    // the session whatever the cap; the cap applies to what arrives while it is offline.
    let t0 = Instant::now();
    let mut router = Router::new(RouterLimits::default().with_max_offline_messages(1));
    let c = id("c");
    let out = TestOutlet::new(10);
    router.attach(&c, true, SessionExpiry::Never, 1, out.clone(), t0);
    router.subscribe(&c, &filter("t"), granted(QoS::AtLeastOnce));
    router.route(&msg("t", "a", QoS::AtLeastOnce, false, t0));
    router.route(&msg("t", "b", QoS::AtLeastOnce, false, t0));
    router.detach(&c, 1, out.take(), t0);
    assert_eq!(router.offline_len("c"), 2);
    assert_eq!(router.counters().offline_dropped, 0);
    assert_eq!(
        router
            .route(&msg("t", "c", QoS::AtLeastOnce, false, t0))
            .dropped,
        1
    );
    assert_eq!(router.counters().offline_dropped, 1);
}

#[test]
fn a_full_outlet_drops_qos0_and_hands_qos1_back_to_the_driver() {
    let t0 = Instant::now();
    let mut router = Router::default();
    let c = id("c");
    router.attach(
        &c,
        true,
        SessionExpiry::OnDisconnect,
        7,
        TestOutlet::new(1),
        t0,
    );
    router.subscribe(&c, &filter("t"), granted(QoS::AtLeastOnce));
    assert_eq!(
        router
            .route(&msg("t", "1", QoS::AtLeastOnce, false, t0))
            .queued,
        1
    );
    let routed = router.route(&msg("t", "2", QoS::AtMostOnce, false, t0));
    assert_eq!((routed.queued, routed.dropped), (0, 1));
    assert!(routed.blocked.is_empty());
    assert_eq!(router.counters().outlet_refused, 1);
    // QoS 1: not dropped, not counted: the driver owns it now.
    let routed = router.route(&msg("t", "3", QoS::AtLeastOnce, false, t0));
    assert_eq!((routed.queued, routed.dropped), (0, 0));
    assert_eq!(routed.blocked.len(), 1);
    let b = &routed.blocked[0];
    assert_eq!((&*b.client_id, b.connection), ("c", 7));
    assert_eq!(&b.delivery.message.payload[..], b"3");
    assert_eq!(router.counters().outlet_refused, 1);
}

#[test]
fn a_blocked_delivery_is_requeued_after_the_connection_it_waited_for() {
    let t0 = Instant::now();
    let mut router = Router::new(RouterLimits::default().with_max_offline_messages(1));
    let c = id("c");
    let out = TestOutlet::new(2);
    router.attach(&c, true, SessionExpiry::Never, 1, out.clone(), t0);
    router.subscribe(&c, &filter("t"), granted(QoS::AtLeastOnce));
    for p in ["1", "2"] {
        router.route(&msg("t", p, QoS::AtLeastOnce, false, t0));
    }
    let mut blocked = router
        .route(&msg("t", "3", QoS::AtLeastOnce, false, t0))
        .blocked;
    let b = blocked.pop().unwrap();
    assert_eq!(router.outlet("c").map(|(n, _)| n), Some(1));
    // Still connected and full: still blocked, for the same connection.
    let b = match router.requeue(b) {
        Requeued::Blocked(b) => b,
        other => panic!("{other:?}"),
    };
    assert_eq!(b.connection, 1);
    // The slow connection ends, handing back what it held; the blocked delivery goes after
    // those, beyond the offline cap (its publisher has not been answered yet, and the others
    // were accepted while connected).
    router.detach(&c, 1, out.take(), t0);
    assert!(router.outlet("c").is_none());
    assert!(matches!(router.requeue(b), Requeued::Queued));
    let back = router.attach(&c, false, SessionExpiry::Never, 2, TestOutlet::new(10), t0);
    let payloads: Vec<_> = back
        .backlog
        .iter()
        .map(|d| d.message.payload.clone())
        .collect();
    assert_eq!(payloads, ["1", "2", "3"]);
    assert_eq!(router.counters().offline_dropped, 0);
}

#[test]
fn a_blocked_delivery_goes_to_a_connection_that_took_the_session_over_or_is_dropped_with_a_clean_session()
 {
    let t0 = Instant::now();
    let mut router = Router::default();
    let c = id("c");
    let old = TestOutlet::new(0);
    router.attach(&c, true, SessionExpiry::Never, 1, old, t0);
    router.subscribe(&c, &filter("t"), granted(QoS::AtLeastOnce));
    let b = router
        .route(&msg("t", "1", QoS::AtLeastOnce, false, t0))
        .blocked
        .pop()
        .unwrap();
    let new = TestOutlet::new(10);
    router.attach(&c, false, SessionExpiry::Never, 2, new.clone(), t0);
    assert!(matches!(router.requeue(b), Requeued::Delivered));
    assert_eq!(new.payloads(), ["1"]);

    // A clean session ends with its connection: what waited for it is dropped and counted.
    let d = id("d");
    router.attach(
        &d,
        true,
        SessionExpiry::OnDisconnect,
        3,
        TestOutlet::new(0),
        t0,
    );
    router.subscribe(&d, &filter("u"), granted(QoS::AtLeastOnce));
    let b = router
        .route(&msg("u", "1", QoS::AtLeastOnce, false, t0))
        .blocked
        .pop()
        .unwrap();
    router.detach(&d, 3, Vec::new(), t0);
    assert!(matches!(router.requeue(b), Requeued::Dropped));
    assert_eq!(router.counters().ended_dropped, 1);
}

#[test]
fn retained_cap_refuses_new_topics_but_allows_replace_and_delete() {
    let t0 = Instant::now();
    let mut router =
        Router::<TestOutlet>::new(RouterLimits::default().with_max_retained_messages(2));
    router
        .publish(&msg("a", "1", QoS::AtMostOnce, true, t0))
        .unwrap();
    router
        .publish(&msg("b", "1", QoS::AtMostOnce, true, t0))
        .unwrap();
    let refused = router.publish(&msg("c", "1", QoS::AtMostOnce, true, t0));
    assert_eq!(
        refused.err(),
        Some(Error::RetainedQuotaExceeded {
            limit: "max_retained_messages",
            max: 2
        })
    );
    assert!(router.retained(&TopicName::new("c").unwrap()).is_none());
    assert_eq!(router.counters().retained_refused, 1);
    // Replacing an existing topic is allowed at the cap.
    router
        .publish(&msg("a", "2", QoS::AtMostOnce, true, t0))
        .unwrap();
    assert_eq!(
        router
            .retained(&TopicName::new("a").unwrap())
            .unwrap()
            .payload,
        "2"
    );
    // Deleting makes room.
    router
        .publish(&msg("b", "", QoS::AtMostOnce, true, t0))
        .unwrap();
    router
        .publish(&msg("c", "1", QoS::AtMostOnce, true, t0))
        .unwrap();
    assert_eq!(router.retained_count(), 2);
}

#[test]
fn retained_byte_cap_refuses_and_keeps_the_previous_message() {
    let t0 = Instant::now();
    let mut router = Router::<TestOutlet>::new(RouterLimits::default().with_max_retained_bytes(10));
    router
        .publish(&msg("a", "12345", QoS::AtMostOnce, true, t0))
        .unwrap(); // 6 bytes
    assert!(
        router
            .publish(&msg("a", "1234567890", QoS::AtMostOnce, true, t0))
            .is_err()
    );
    assert_eq!(
        router
            .retained(&TopicName::new("a").unwrap())
            .unwrap()
            .payload,
        "12345"
    );
    assert_eq!(router.retained_bytes(), 6);
}

#[test]
fn a_refused_retained_message_is_not_routed_either() {
    let t0 = Instant::now();
    let mut router = Router::new(RouterLimits::default().with_max_retained_messages(0));
    let c = id("c");
    let out = TestOutlet::new(10);
    router.attach(&c, true, SessionExpiry::OnDisconnect, 1, out.clone(), t0);
    router.subscribe(&c, &filter("t"), granted(QoS::AtLeastOnce));
    assert!(
        router
            .publish(&msg("t", "x", QoS::AtLeastOnce, true, t0))
            .is_err()
    );
    assert!(out.payloads().is_empty());
    // Without RETAIN the cap does not apply.
    assert_eq!(
        router
            .publish(&msg("t", "y", QoS::AtLeastOnce, false, t0))
            .unwrap()
            .queued,
        1
    );
}

#[test]
fn retained_wildcards_follow_the_dollar_rule() {
    let t0 = Instant::now();
    let mut router = Router::<TestOutlet>::default();
    for t in ["$SYS/load", "a", "a/b", "a/b/c", "/x", "b"] {
        router
            .publish(&msg(t, t, QoS::AtMostOnce, true, t0))
            .unwrap();
    }
    let topics = |f: &str| -> BTreeSet<String> {
        router
            .retained_matching(&filter(f), t0)
            .iter()
            .map(|m| m.topic.as_str().to_owned())
            .collect()
    };
    assert_eq!(
        topics("#"),
        ["/x", "a", "a/b", "a/b/c", "b"].map(String::from).into()
    );
    assert_eq!(topics("+"), ["a", "b"].map(String::from).into());
    assert_eq!(
        topics("a/#"),
        ["a", "a/b", "a/b/c"].map(String::from).into()
    );
    assert_eq!(topics("+/b"), ["a/b"].map(String::from).into());
    assert_eq!(topics("+/+"), ["/x", "a/b"].map(String::from).into());
    assert_eq!(topics("$SYS/#"), ["$SYS/load"].map(String::from).into());
    assert_eq!(topics("$SYS/+"), ["$SYS/load"].map(String::from).into());
    assert!(topics("$share/g/#").is_empty());
}

#[test]
fn shared_subscription_round_robins_within_the_group() {
    let t0 = Instant::now();
    let mut router = Router::default();
    let (a, b, solo) = (id("a"), id("b"), id("solo"));
    let (oa, ob, os) = (
        TestOutlet::new(100),
        TestOutlet::new(100),
        TestOutlet::new(100),
    );
    for (c, o) in [(&a, &oa), (&b, &ob), (&solo, &os)] {
        router.attach(c, true, SessionExpiry::OnDisconnect, 1, o.clone(), t0);
    }
    router.subscribe(&a, &filter("$share/g/jobs/+"), granted(QoS::AtLeastOnce));
    router.subscribe(&b, &filter("$share/g/jobs/+"), granted(QoS::AtLeastOnce));
    router.subscribe(&solo, &filter("jobs/#"), granted(QoS::AtLeastOnce));
    for i in 0..10 {
        let routed = router.route(&msg("jobs/x", &i.to_string(), QoS::AtLeastOnce, false, t0));
        assert_eq!(routed.queued, 2); // one group member + the direct subscriber
    }
    assert_eq!(oa.payloads().len(), 5);
    assert_eq!(ob.payloads().len(), 5);
    assert_eq!(os.payloads().len(), 10);
}

/// A shared group delivers to a connected member while one is connected: an offline member's
/// persistent session is skipped, not handed every other message to queue; with no member
/// connected, the messages are queued round-robin as before.
#[test]
fn shared_subscription_skips_members_that_are_not_connected() {
    let t0 = Instant::now();
    let mut router = Router::default();
    let (a, b) = (id("a"), id("b"));
    let (oa, ob) = (TestOutlet::new(100), TestOutlet::new(100));
    router.attach(&a, true, SessionExpiry::Never, 1, oa.clone(), t0);
    router.attach(&b, true, SessionExpiry::Never, 2, ob.clone(), t0);
    router.subscribe(&a, &filter("$share/g/jobs/+"), granted(QoS::AtLeastOnce));
    router.subscribe(&b, &filter("$share/g/jobs/+"), granted(QoS::AtLeastOnce));
    router.detach(&b, 2, Vec::new(), t0);
    for i in 0..6 {
        router.route(&msg("jobs/x", &i.to_string(), QoS::AtLeastOnce, false, t0));
    }
    assert_eq!(
        oa.payloads().len(),
        6,
        "every message to the connected member"
    );
    let back = router.attach(&b, false, SessionExpiry::Never, 3, ob.clone(), t0);
    assert!(
        back.backlog.is_empty(),
        "nothing queued for the offline member"
    );

    // Nobody connected: queued round-robin, none lost.
    router.detach(&a, 1, Vec::new(), t0);
    router.detach(&b, 3, Vec::new(), t0);
    for i in 0..4 {
        router.route(&msg("jobs/y", &i.to_string(), QoS::AtLeastOnce, false, t0));
    }
    let qa = router
        .attach(&a, false, SessionExpiry::Never, 4, oa.clone(), t0)
        .backlog
        .len();
    let qb = router
        .attach(&b, false, SessionExpiry::Never, 5, ob.clone(), t0)
        .backlog
        .len();
    assert_eq!((qa, qb), (2, 2));
}

#[test]
fn no_local_skips_the_publisher_only() {
    let t0 = Instant::now();
    let mut router = Router::default();
    let (me, other) = (id("me"), id("other"));
    let (om, oo) = (TestOutlet::new(10), TestOutlet::new(10));
    router.attach(&me, true, SessionExpiry::OnDisconnect, 1, om.clone(), t0);
    router.attach(&other, true, SessionExpiry::OnDisconnect, 2, oo.clone(), t0);
    let no_local = GrantedSubscription {
        no_local: true,
        ..granted(QoS::AtLeastOnce)
    };
    router.subscribe(&me, &filter("chat"), no_local);
    router.subscribe(&other, &filter("chat"), no_local);
    let mut m = (*msg("chat", "hi", QoS::AtLeastOnce, false, t0)).clone();
    m.from = Some(me.clone());
    assert_eq!(router.route(&Arc::new(m)).queued, 1);
    assert!(om.payloads().is_empty());
    assert_eq!(oo.payloads(), ["hi"]);
}

#[test]
fn deliveries_carry_granted_qos_retain_as_published_and_subscription_id() {
    let t0 = Instant::now();
    let mut router = Router::default();
    let c = id("c");
    let out = TestOutlet::new(10);
    router.attach(&c, true, SessionExpiry::OnDisconnect, 1, out.clone(), t0);
    let sub_id = NonZeroU32::new(7);
    router.subscribe(
        &c,
        &filter("rap"),
        GrantedSubscription {
            qos: QoS::AtMostOnce,
            no_local: false,
            retain_as_published: true,
            id: sub_id,
        },
    );
    router.subscribe(&c, &filter("plain"), granted(QoS::AtLeastOnce));
    router
        .publish(&msg("rap", "1", QoS::AtLeastOnce, true, t0))
        .unwrap();
    router
        .publish(&msg("plain", "2", QoS::AtLeastOnce, true, t0))
        .unwrap();
    let d = out.take();
    assert_eq!(
        (d[0].qos, d[0].retain, d[0].subscription_id),
        (QoS::AtMostOnce, true, sub_id)
    );
    assert_eq!(
        (d[1].qos, d[1].retain, d[1].subscription_id),
        (QoS::AtLeastOnce, false, None)
    );
}

#[test]
fn subscribe_reports_whether_it_existed_and_unsubscribe_removes() {
    let t0 = Instant::now();
    let mut router = Router::<TestOutlet>::default();
    let c = id("c");
    router.attach(
        &c,
        true,
        SessionExpiry::OnDisconnect,
        1,
        TestOutlet::new(10),
        t0,
    );
    assert!(!router.subscribe(&c, &filter("t"), granted(QoS::AtMostOnce)));
    assert!(router.subscribe(&c, &filter("t"), granted(QoS::AtLeastOnce)));
    assert!(router.unsubscribe(&c, &filter("t")));
    assert!(!router.unsubscribe(&c, &filter("t")));
}

// Retained matching agrees with a linear scan using thingkit-mqtt's topic matching.

fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just(String::new()),
        Just("$s".to_string()),
        Just("c$".to_string()),
    ]
}

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..5)
        .prop_map(|l| l.join("/"))
        .prop_filter("a topic name is not empty", |t| !t.is_empty())
}

fn filter_text() -> impl Strategy<Value = String> {
    let part = prop_oneof![level(), Just("+".to_string())];
    (prop::collection::vec(part, 1..5), any::<bool>())
        .prop_map(|(mut l, hash)| {
            if hash {
                l.push("#".to_string());
            }
            l.join("/")
        })
        .prop_filter("a filter is not empty", |f| !f.is_empty())
}

proptest! {
    #[test]
    fn retained_matching_agrees_with_a_linear_scan(
        topics in prop::collection::vec(topic(), 0..40),
        deleted in prop::collection::vec(topic(), 0..10),
        filters in prop::collection::vec(prop_oneof![filter_text(), Just("#".to_string())], 1..10),
    ) {
        let t0 = Instant::now();
        let mut router = Router::<TestOutlet>::default();
        let mut reference = std::collections::HashMap::new();
        for t in &topics {
            let m = msg(t, t, QoS::AtMostOnce, true, t0);
            router.publish(&m).unwrap();
            reference.insert(t.clone(), m);
        }
        for t in &deleted {
            router.publish(&msg(t, "", QoS::AtMostOnce, true, t0)).unwrap();
            reference.remove(t);
        }
        prop_assert_eq!(router.retained_count(), reference.len());
        prop_assert_eq!(
            router.retained_bytes(),
            reference.values().map(|m| m.size()).sum::<usize>()
        );
        for f in &filters {
            let f = filter(f);
            let got: Vec<String> = {
                let mut v: Vec<String> = router
                    .retained_matching(&f, t0)
                    .iter()
                    .map(|m| m.topic.as_str().to_owned())
                    .collect();
                v.sort();
                v
            };
            let mut want: Vec<String> = reference
                .values()
                .filter(|m| m.topic.matches(&f))
                .map(|m| m.topic.as_str().to_owned())
                .collect();
            want.sort();
            prop_assert_eq!(got, want, "filter {}", f);
        }
    }
}

/// Regression: the retained trie has a node per topic level and is walked recursively, so a
/// retained topic of 65,535 empty levels once meant 65,536 nodes and a recursion as deep on
/// every matching SUBSCRIBE. Such a topic is now refused as a quota, and matching with a filter
/// as deep stays shallow.
#[test]
fn retained_topics_deeper_than_the_level_cap_are_refused_and_deep_filters_stay_shallow() {
    let t0 = Instant::now();
    let mut router = Router::<TestOutlet>::default();
    let deep = "/".repeat(65_534);
    let refused = router.publish(&msg(&deep, "x", QoS::AtMostOnce, true, t0));
    assert_eq!(
        refused.err(),
        Some(Error::RetainedQuotaExceeded {
            limit: "max_retained_topic_levels",
            max: 32
        })
    );
    assert_eq!(router.retained_count(), 0);
    assert_eq!(router.counters().retained_refused, 1);

    // 32 levels is the cap and is stored; a filter of 32,768 `+` levels walks no deeper than it.
    let at_cap = vec!["a"; 32].join("/");
    router
        .publish(&msg(&at_cap, "x", QoS::AtMostOnce, true, t0))
        .unwrap();
    let pluses = vec!["+"; 32_768].join("/");
    assert!(router.retained_matching(&filter(&pluses), t0).is_empty());
    assert_eq!(router.retained_matching(&filter("#"), t0).len(), 1);
    let exact = vec!["+"; 32].join("/");
    assert_eq!(router.retained_matching(&filter(&exact), t0).len(), 1);
}

#[test]
fn offline_total_follows_every_queue_through_route_attach_detach_and_expiry() {
    let t0 = Instant::now();
    let mut router: Router<TestOutlet> = Router::new(RouterLimits::default());
    let (a, b) = (id("a"), id("b"));
    offline_session(&mut router, &a, "t/#", SessionExpiry::Never, t0);
    offline_session(&mut router, &b, "t/#", SessionExpiry::After(SECOND), t0);
    for i in 0..3 {
        router.route(&msg("t/x", &i.to_string(), QoS::AtLeastOnce, false, t0));
    }
    assert_eq!(router.offline_total(), 6);
    // Reconnecting hands a's backlog out; its queue no longer counts.
    let outlet = TestOutlet::new(100);
    let attached = router.attach(&a, false, SessionExpiry::Never, 2, outlet, t0);
    assert_eq!(attached.backlog.len(), 3);
    assert_eq!(router.offline_total(), 3);
    // Detaching with two unacknowledged QoS 1 messages queues them again.
    router.detach(&a, 2, attached.backlog.into_iter().take(2).collect(), t0);
    assert_eq!(router.offline_total(), 5);
    // b's session expires with its queue.
    assert_eq!(router.sweep(t0 + 2 * SECOND), 1);
    assert_eq!(router.offline_total(), 2);
    assert_eq!(
        router.offline_total(),
        router.offline_len("a") + router.offline_len("b")
    );
}

#[test]
fn interest_observer_hears_when_the_first_subscription_to_a_filter_begins_and_the_last_ends() {
    let t0 = Instant::now();
    let mut router: Router<TestOutlet> = Router::new(RouterLimits::default());
    let (a, b) = (id("a"), id("b"));
    router.attach(
        &a,
        true,
        SessionExpiry::OnDisconnect,
        1,
        TestOutlet::new(8),
        t0,
    );
    router.attach(
        &b,
        true,
        SessionExpiry::OnDisconnect,
        2,
        TestOutlet::new(8),
        t0,
    );
    router.subscribe(&a, &filter("x/+"), granted(QoS::AtMostOnce));
    let heard = Arc::new(std::sync::Mutex::new(Vec::<(String, bool)>::new()));
    let log = heard.clone();
    router.set_interest_observer(Box::new(move |f, on| {
        log.lock().unwrap().push((f.as_str().to_string(), on));
    }));
    let take = || std::mem::take(&mut *heard.lock().unwrap());
    assert_eq!(
        take(),
        [("x/+".to_string(), true)],
        "replayed at installation"
    );
    // A second subscription to the same filter, even shared, changes nothing.
    router.subscribe(&b, &filter("$share/g/x/+"), granted(QoS::AtMostOnce));
    router.subscribe(&a, &filter("x/+"), granted(QoS::AtLeastOnce));
    router.subscribe(&b, &filter("y/#"), granted(QoS::AtMostOnce));
    assert_eq!(take(), [("y/#".to_string(), true)]);
    assert_eq!(router.interest().map(|(_, n)| n).sum::<usize>(), 3);
    router.unsubscribe(&a, &filter("x/+"));
    assert_eq!(take(), []);
    // b's session ends with its connection: its filters go with it.
    router.detach(&b, 2, Vec::new(), t0);
    let mut ended = take();
    ended.sort();
    assert_eq!(
        ended,
        [("x/+".to_string(), false), ("y/#".to_string(), false)]
    );
    assert_eq!(router.interest().count(), 0);
}
