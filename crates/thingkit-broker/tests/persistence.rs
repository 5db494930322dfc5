//! The router with a store: what survives a restart (and a `kill -9`), what does not, and what
//! a failing store does to a call. Time is injected: a restart is a new router on the same store
//! with a later wall-clock time and an unrelated `Instant`.
#![cfg(feature = "redb")]

use std::cell::RefCell;
use std::num::NonZeroU32;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use thingkit_broker::{
    Blocked, Delivery, Error, GrantedSubscription, MemoryStore, Message, Outlet, RedbStore,
    Requeued, Router, RouterLimits, RouterStore, SessionExpiry, StoreError, StoreOp, StoredState,
};
use thingkit_mqtt::{
    MqttStr, PacketProperties, Properties, QoS, ReasonCode, TopicFilter, TopicName,
};

#[derive(Clone, Default)]
struct TestOutlet(Rc<RefCell<(Vec<Delivery>, Option<ReasonCode>)>>);

impl TestOutlet {
    fn payloads(&self) -> Vec<String> {
        self.0
            .borrow()
            .0
            .iter()
            .map(|d| String::from_utf8_lossy(&d.message.payload).into_owned())
            .collect()
    }
    fn kicked(&self) -> Option<ReasonCode> {
        self.0.borrow().1
    }
}

impl Outlet for TestOutlet {
    fn try_deliver(&self, d: Delivery) -> Result<(), Delivery> {
        self.0.borrow_mut().0.push(d);
        Ok(())
    }
    fn kick(&self, reason: ReasonCode) {
        self.0.borrow_mut().1 = Some(reason);
    }
}

const SECOND: Duration = Duration::from_secs(1);

fn wall0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn id(s: &str) -> Arc<str> {
    s.into()
}

fn filter(f: &str) -> TopicFilter {
    TopicFilter::new(f).unwrap()
}

fn qos1(id: Option<u32>) -> GrantedSubscription {
    GrantedSubscription {
        qos: QoS::AtLeastOnce,
        no_local: false,
        retain_as_published: true,
        id: id.and_then(NonZeroU32::new),
    }
}

fn msg(topic: &str, payload: &str, qos: QoS, retain: bool, at: Instant) -> Arc<Message> {
    Arc::new(Message {
        topic: TopicName::new(topic).unwrap(),
        payload: Bytes::from(payload.to_owned()),
        qos,
        retain,
        properties: PacketProperties::default(),
        from: Some(id("publisher")),
        received: at,
    })
}

fn with_expiry(m: &Arc<Message>, secs: u32) -> Arc<Message> {
    let mut m = (**m).clone();
    m.properties.message_expiry_interval = Some(secs);
    Arc::new(m)
}

fn redb(path: &Path) -> RedbStore {
    RedbStore::open(path).unwrap()
}

fn start(store: impl RouterStore + 'static, now: Instant, wall: SystemTime) -> Router<TestOutlet> {
    Router::with_store(RouterLimits::default(), store, now, wall).unwrap()
}

/// `client` attached, subscribed to `f` with QoS 1 and detached at `now`.
fn offline(
    router: &mut Router<TestOutlet>,
    client: &Arc<str>,
    f: &str,
    expiry: SessionExpiry,
    now: Instant,
) {
    router
        .try_attach(client, true, expiry, 1, TestOutlet::default(), now)
        .unwrap();
    router
        .try_subscribe(client, &filter(f), qos1(Some(7)))
        .unwrap();
    router.try_detach(client, 1, Vec::new(), now).unwrap();
}

#[test]
fn a_session_with_subscriptions_and_offline_messages_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.redb");
    let t0 = Instant::now();
    let c = id("sensor-1");
    {
        let mut router = start(redb(&path), t0, wall0());
        offline(
            &mut router,
            &c,
            "cmd/#",
            SessionExpiry::After(3600 * SECOND),
            t0,
        );
        let mut rich = (*msg("cmd/reboot", "first", QoS::AtLeastOnce, false, t0)).clone();
        rich.properties = Properties {
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(600),
            content_type: Some(MqttStr::new("text/plain").unwrap()),
            response_topic: Some(TopicName::new("cmd/reply").unwrap()),
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            user_properties: vec![(MqttStr::new("k").unwrap(), MqttStr::new("v").unwrap())].into(),
            ..Properties::default()
        }
        .into();
        let rich = Arc::new(rich);
        assert_eq!(router.publish(&rich).unwrap().queued, 1);
        assert_eq!(
            router
                .publish(&msg(
                    "cmd/x",
                    "second",
                    QoS::AtLeastOnce,
                    false,
                    t0 + SECOND
                ))
                .unwrap()
                .queued,
            1
        );
        // QoS 0 is never queued for an offline session, so never stored either.
        router
            .publish(&msg("cmd/x", "qos0", QoS::AtMostOnce, false, t0))
            .unwrap();
    }
    // A restart 100 s later (wall clock), on a monotonic clock with another origin.
    let t1 = t0 + 5000 * SECOND;
    let mut router = start(redb(&path), t1, wall0() + 100 * SECOND);
    assert_eq!(router.session_count(), 1);
    assert!(!router.is_attached("sensor-1"));
    assert_eq!(router.offline_len("sensor-1"), 2);
    let out = TestOutlet::default();
    let back = router
        .try_attach(
            &c,
            false,
            SessionExpiry::After(3600 * SECOND),
            2,
            out.clone(),
            t1,
        )
        .unwrap();
    assert!(back.session_present);
    let payloads: Vec<&[u8]> = back
        .backlog
        .iter()
        .map(|d| &d.message.payload[..])
        .collect();
    assert_eq!(payloads, vec![&b"first"[..], b"second"]);
    let first = &back.backlog[0];
    assert_eq!(first.qos, QoS::AtLeastOnce);
    assert_eq!(first.subscription_id, NonZeroU32::new(7));
    assert_eq!(first.message.from.as_deref(), Some("publisher"));
    assert_eq!(
        first
            .message
            .properties
            .content_type
            .as_ref()
            .map(|s| s.as_str()),
        Some("text/plain")
    );
    assert_eq!(
        first.message.properties.correlation_data.as_deref(),
        Some(&b"\x00\x01"[..])
    );
    assert_eq!(first.message.properties.user_properties.len(), 1);
    // 100 s of its 600 s have passed while the broker was down.
    assert_eq!(first.message.expiry_left(t1), Some(500));
    // The subscription was restored too.
    router
        .publish(&msg("cmd/live", "live", QoS::AtLeastOnce, false, t1))
        .unwrap();
    assert_eq!(out.payloads(), vec!["live"]);
    // The backlog was handed over: a third start has nothing queued.
    drop(router);
    let router = start(redb(&path), t1, wall0() + 200 * SECOND);
    assert_eq!(router.offline_len("sensor-1"), 0);
}

#[test]
fn retained_messages_and_their_deletion_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.redb");
    let t0 = Instant::now();
    {
        let mut router = start(redb(&path), t0, wall0());
        router
            .publish(&msg("status/a", "up", QoS::AtLeastOnce, true, t0))
            .unwrap();
        router
            .publish(&msg("status/b", "up", QoS::AtMostOnce, true, t0))
            .unwrap();
        router
            .publish(&msg("status/b", "down", QoS::AtMostOnce, true, t0))
            .unwrap();
        router
            .publish(&msg("status/c", "up", QoS::AtMostOnce, true, t0))
            .unwrap();
        // An empty payload deletes [MQTT-3.3.1-6].
        router
            .publish(&msg("status/c", "", QoS::AtMostOnce, true, t0))
            .unwrap();
    }
    let router = start(redb(&path), t0, wall0() + SECOND);
    let mut got: Vec<(String, String)> = router
        .retained_matching(&filter("status/#"), t0)
        .iter()
        .map(|m| {
            (
                m.topic.as_str().to_owned(),
                String::from_utf8_lossy(&m.payload).into_owned(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("status/a".to_owned(), "up".to_owned()),
            ("status/b".to_owned(), "down".to_owned())
        ]
    );
    assert_eq!(router.retained_count(), 2);
    assert!(
        router
            .retained(&TopicName::new("status/a").unwrap())
            .unwrap()
            .retain
    );
}

#[test]
fn expired_messages_and_sessions_are_not_restored_and_are_removed_from_the_store() {
    let store = MemoryStore::new();
    let t0 = Instant::now();
    {
        let mut router = start(store.clone(), t0, wall0());
        let c = id("c");
        offline(&mut router, &c, "a/#", SessionExpiry::Never, t0);
        let short = id("short");
        offline(
            &mut router,
            &short,
            "a/#",
            SessionExpiry::After(5 * SECOND),
            t0,
        );
        router
            .publish(&with_expiry(
                &msg("a/1", "brief", QoS::AtLeastOnce, false, t0),
                5,
            ))
            .unwrap();
        router
            .publish(&msg("a/2", "lasting", QoS::AtLeastOnce, false, t0))
            .unwrap();
        router
            .publish(&with_expiry(
                &msg("r/x", "brief", QoS::AtMostOnce, true, t0),
                5,
            ))
            .unwrap();
    }
    let t1 = t0 + 7 * SECOND;
    let mut router = start(store.clone(), t1, wall0() + 10 * SECOND);
    assert_eq!(
        router.session_count(),
        1,
        "the 5 s session expired while down"
    );
    assert_eq!(router.counters().sessions_expired, 1);
    assert_eq!(
        router.retained_count(),
        0,
        "the retained message expired too"
    );
    assert_eq!(router.offline_len("c"), 1);
    let back = router
        .try_attach(
            &id("c"),
            false,
            SessionExpiry::Never,
            2,
            TestOutlet::default(),
            t1,
        )
        .unwrap();
    assert_eq!(back.backlog.len(), 1);
    assert_eq!(&back.backlog[0].message.payload[..], b"lasting");
    // What expired was removed from the store, not just skipped.
    let state = store.load().unwrap();
    assert_eq!(state.sessions.len(), 1);
    assert!(state.retained.is_empty());
    let bounced = start(store.clone(), t1, wall0() + 11 * SECOND);
    assert!(bounced.retained(&TopicName::new("r/x").unwrap()).is_none());
}

#[test]
fn a_restored_session_expires_at_its_stored_deadline() {
    let store = MemoryStore::new();
    let t0 = Instant::now();
    {
        let mut router = start(store.clone(), t0, wall0());
        offline(
            &mut router,
            &id("c"),
            "a",
            SessionExpiry::After(10 * SECOND),
            t0,
        );
    }
    // Restarted 4 s after the disconnect: 6 s are left.
    let t1 = t0 + 1000 * SECOND;
    let mut router = start(store.clone(), t1, wall0() + 4 * SECOND);
    assert_eq!(router.try_sweep(t1 + 5 * SECOND).unwrap(), 0);
    assert_eq!(router.try_sweep(t1 + 6 * SECOND).unwrap(), 1);
    assert!(
        store.load().unwrap().sessions.is_empty(),
        "the sweep removed it from the store"
    );
}

#[test]
fn a_session_attached_at_the_crash_counts_its_expiry_from_the_restart() {
    let store = MemoryStore::new();
    let t0 = Instant::now();
    let c = id("c");
    {
        let mut router = start(store.clone(), t0, wall0());
        router
            .try_attach(
                &c,
                true,
                SessionExpiry::After(10 * SECOND),
                1,
                TestOutlet::default(),
                t0,
            )
            .unwrap();
        router.try_subscribe(&c, &filter("a"), qos1(None)).unwrap();
        // The process ends without a detach.
    }
    let t1 = t0 + 1000 * SECOND;
    let mut router = start(store.clone(), t1, wall0() + 3600 * SECOND);
    assert_eq!(router.session_count(), 1);
    assert_eq!(router.try_sweep(t1 + 9 * SECOND).unwrap(), 0);
    // That deadline was stored: a second restart 20 s later finds the session expired.
    drop(router);
    let router = start(store.clone(), t1, wall0() + 3620 * SECOND);
    assert_eq!(router.session_count(), 0);
}

#[test]
fn clean_start_and_a_non_persistent_resume_remove_the_stored_session() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.redb");
    let t0 = Instant::now();
    {
        let mut router = start(redb(&path), t0, wall0());
        offline(&mut router, &id("clean"), "a", SessionExpiry::Never, t0);
        offline(&mut router, &id("resumed"), "a", SessionExpiry::Never, t0);
        router
            .publish(&msg("a", "queued", QoS::AtLeastOnce, false, t0))
            .unwrap();
        let back = router
            .try_attach(
                &id("clean"),
                true,
                SessionExpiry::Never,
                2,
                TestOutlet::default(),
                t0,
            )
            .unwrap();
        assert!(!back.session_present && back.backlog.is_empty());
        // Resumed with Session Expiry 0: it ends with this connection, so it leaves the store.
        let back = router
            .try_attach(
                &id("resumed"),
                false,
                SessionExpiry::OnDisconnect,
                2,
                TestOutlet::default(),
                t0,
            )
            .unwrap();
        assert!(back.session_present);
    }
    let router = start(redb(&path), t0, wall0());
    assert!(router.is_stored());
    assert_eq!(
        router.session_count(),
        1,
        "only the clean session's new (persistent, empty) incarnation"
    );
    assert_eq!(router.offline_len("clean"), 0);
    let mut router = router;
    let back = router
        .try_attach(
            &id("clean"),
            false,
            SessionExpiry::Never,
            3,
            TestOutlet::default(),
            t0,
        )
        .unwrap();
    assert!(back.session_present && back.backlog.is_empty());
    // Its old subscription is gone: nothing is queued for it after it goes offline again.
    router.try_detach(&id("clean"), 3, Vec::new(), t0).unwrap();
    router
        .publish(&msg("a", "x", QoS::AtLeastOnce, false, t0))
        .unwrap();
    assert_eq!(router.offline_len("clean"), 0);
}

#[test]
fn unsubscribe_and_resubscribe_persist() {
    let store = MemoryStore::new();
    let t0 = Instant::now();
    let c = id("c");
    {
        let mut router = start(store.clone(), t0, wall0());
        router
            .try_attach(&c, true, SessionExpiry::Never, 1, TestOutlet::default(), t0)
            .unwrap();
        router.try_subscribe(&c, &filter("a"), qos1(None)).unwrap();
        router.try_subscribe(&c, &filter("b"), qos1(None)).unwrap();
        // Replaced options persist.
        assert!(
            router
                .try_subscribe(&c, &filter("b"), qos1(Some(9)))
                .unwrap()
        );
        assert!(router.try_unsubscribe(&c, &filter("a")).unwrap());
        router.try_detach(&c, 1, Vec::new(), t0).unwrap();
    }
    let mut router = start(store, t0, wall0());
    router
        .publish(&msg("a", "1", QoS::AtLeastOnce, false, t0))
        .unwrap();
    router
        .publish(&msg("b", "2", QoS::AtLeastOnce, false, t0))
        .unwrap();
    let back = router
        .try_attach(
            &c,
            false,
            SessionExpiry::Never,
            2,
            TestOutlet::default(),
            t0,
        )
        .unwrap();
    assert_eq!(back.backlog.len(), 1);
    assert_eq!(&back.backlog[0].message.payload[..], b"2");
    assert_eq!(back.backlog[0].subscription_id, NonZeroU32::new(9));
}

#[test]
fn unacked_messages_handed_back_at_detach_are_stored() {
    let store = MemoryStore::new();
    let t0 = Instant::now();
    let c = id("c");
    {
        let mut router = start(store.clone(), t0, wall0());
        let out = TestOutlet::default();
        router
            .try_attach(&c, true, SessionExpiry::Never, 1, out.clone(), t0)
            .unwrap();
        router.try_subscribe(&c, &filter("a"), qos1(None)).unwrap();
        router
            .publish(&msg("a", "in flight", QoS::AtLeastOnce, false, t0))
            .unwrap();
        let unacked = out.0.borrow_mut().0.drain(..).collect();
        router.try_detach(&c, 1, unacked, t0).unwrap();
    }
    let mut router = start(store, t0, wall0());
    let back = router
        .try_attach(
            &c,
            false,
            SessionExpiry::Never,
            2,
            TestOutlet::default(),
            t0,
        )
        .unwrap();
    assert_eq!(back.backlog.len(), 1);
    assert_eq!(&back.backlog[0].message.payload[..], b"in flight");
}

/// A store that fails on demand and counts its batches.
#[derive(Clone, Default)]
struct Flaky {
    inner: MemoryStore,
    fail: Arc<AtomicBool>,
    batches: Arc<AtomicUsize>,
    last: Arc<Mutex<Vec<StoreOp>>>,
}

impl RouterStore for Flaky {
    fn load(&self) -> Result<StoredState, StoreError> {
        self.inner.load()
    }
    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        *self.last.lock().unwrap() = ops.to_vec();
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Backend {
                operation: "commit",
                detail: "disk full".into(),
            });
        }
        self.inner.apply(ops)
    }
}

#[test]
fn a_failing_store_makes_publish_fail_closed_with_no_half_state() {
    let store = Flaky::default();
    let t0 = Instant::now();
    let mut router = start(store.clone(), t0, wall0());
    offline(&mut router, &id("offline"), "a/#", SessionExpiry::Never, t0);
    let live = TestOutlet::default();
    router
        .try_attach(
            &id("live"),
            true,
            SessionExpiry::OnDisconnect,
            1,
            live.clone(),
            t0,
        )
        .unwrap();
    router
        .try_subscribe(&id("live"), &filter("a/#"), qos1(None))
        .unwrap();
    router
        .publish(&msg("a/r", "old", QoS::AtLeastOnce, true, t0))
        .unwrap();
    let before = store.inner.load().unwrap();
    let delivered = live.payloads().len();

    store.fail.store(true, Ordering::SeqCst);
    let err = router
        .publish(&msg("a/r", "new", QoS::AtLeastOnce, true, t0))
        .unwrap_err();
    assert!(
        matches!(err, Error::Store(StoreError::Backend { .. })),
        "{err}"
    );
    assert_eq!(
        err.reason_code(),
        ReasonCode::UNSPECIFIED_ERROR,
        "not 0x97: the broker failed, not the client"
    );
    // Nothing happened: not retained, not queued, not delivered, not stored.
    assert_eq!(
        &router
            .retained(&TopicName::new("a/r").unwrap())
            .unwrap()
            .payload[..],
        b"old"
    );
    assert_eq!(router.offline_len("offline"), 1, "only the earlier message");
    assert_eq!(live.payloads().len(), delivered);
    assert_eq!(store.inner.load().unwrap(), before);
    // The other fail-closed calls.
    assert!(
        router
            .try_subscribe(&id("offline"), &filter("b"), qos1(None))
            .is_err()
    );
    assert!(
        router
            .try_unsubscribe(&id("offline"), &filter("a/#"))
            .is_err()
    );
    let newer = TestOutlet::default();
    assert!(
        router
            .try_attach(&id("offline"), false, SessionExpiry::Never, 9, newer, t0)
            .is_err()
    );
    assert_eq!(
        router.offline_len("offline"),
        1,
        "the backlog was not handed over"
    );
    assert_eq!(store.inner.load().unwrap(), before);
    assert_eq!(router.counters().store_failures, 0);

    // The store recovers: the publisher's retry goes through.
    store.fail.store(false, Ordering::SeqCst);
    router
        .publish(&msg("a/r", "new", QoS::AtLeastOnce, true, t0))
        .unwrap();
    assert_eq!(router.offline_len("offline"), 2);
}

#[test]
fn infallible_calls_on_a_failing_store_change_memory_and_count_the_failure() {
    let store = Flaky::default();
    let t0 = Instant::now();
    let mut router = start(store.clone(), t0, wall0());
    let c = id("c");
    let old = TestOutlet::default();
    router.attach(&c, true, SessionExpiry::Never, 1, old.clone(), t0);
    store.fail.store(true, Ordering::SeqCst);
    assert!(!router.subscribe(&c, &filter("a"), qos1(None)));
    // A takeover that changes the session's expiry (so the record must be rewritten).
    router.attach(
        &c,
        false,
        SessionExpiry::After(60 * SECOND),
        2,
        TestOutlet::default(),
        t0,
    );
    assert_eq!(old.kicked(), Some(ReasonCode::SESSION_TAKEN_OVER));
    assert_eq!(router.counters().store_failures, 2);
}

#[test]
fn one_batch_per_call_and_none_when_nothing_durable_changes() {
    let store = Flaky::default();
    let t0 = Instant::now();
    let mut router = start(store.clone(), t0, wall0());
    let batches = || store.batches.load(Ordering::SeqCst);
    // A clean session, and routing to connected sessions only: nothing to store.
    let live = TestOutlet::default();
    router
        .try_attach(
            &id("live"),
            true,
            SessionExpiry::OnDisconnect,
            1,
            live.clone(),
            t0,
        )
        .unwrap();
    router
        .try_subscribe(&id("live"), &filter("t/#"), qos1(None))
        .unwrap();
    router
        .publish(&msg("t/1", "x", QoS::AtLeastOnce, false, t0))
        .unwrap();
    router.try_detach(&id("live"), 1, Vec::new(), t0).unwrap();
    assert_eq!(batches(), 0);
    // A persistent session connected: its messages are not stored either.
    router
        .try_attach(
            &id("p"),
            true,
            SessionExpiry::Never,
            2,
            TestOutlet::default(),
            t0,
        )
        .unwrap();
    router
        .try_subscribe(&id("p"), &filter("t/#"), qos1(None))
        .unwrap();
    let n = batches();
    router
        .publish(&msg("t/1", "x", QoS::AtLeastOnce, false, t0))
        .unwrap();
    assert_eq!(batches(), n);
    // Two offline sessions and RETAIN: one batch of three ops.
    router.try_detach(&id("p"), 2, Vec::new(), t0).unwrap();
    offline(&mut router, &id("q"), "t/#", SessionExpiry::Never, t0);
    let n = batches();
    router
        .publish(&msg("t/1", "x", QoS::AtLeastOnce, true, t0))
        .unwrap();
    assert_eq!(batches(), n + 1);
    assert_eq!(store.last.lock().unwrap().len(), 3);
}

const CRASH_DB: &str = "THINGKIT_BROKER_CRASH_DB";

/// Runs only as the child process of
/// `a_message_acknowledged_for_an_offline_session_survives_kill_9`.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CRASH_DB) else {
        return;
    };
    let now = Instant::now();
    let mut router = start(redb(Path::new(&path)), now, SystemTime::now());
    let c = id("device");
    offline(&mut router, &c, "cmd/#", SessionExpiry::Never, now);
    router
        .publish(&msg("cmd/1", "acked", QoS::AtLeastOnce, false, now))
        .unwrap();
    // `publish` returned Ok: this is where the broker sends PUBACK.
    println!("PUBACK");
    let _ = std::process::Command::new("kill")
        .args(["-9", &std::process::id().to_string()])
        .status();
    std::process::abort();
}

#[test]
fn a_message_acknowledged_for_an_offline_session_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.redb");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CRASH_DB, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("PUBACK"),
        "the child acknowledged: {stdout}"
    );
    assert!(!out.status.success(), "the child was killed");
    let now = Instant::now();
    let mut router = start(redb(&path), now, SystemTime::now());
    let back = router
        .try_attach(
            &id("device"),
            false,
            SessionExpiry::Never,
            1,
            TestOutlet::default(),
            now,
        )
        .unwrap();
    assert!(back.session_present);
    assert_eq!(back.backlog.len(), 1);
    assert_eq!(&back.backlog[0].message.payload[..], b"acked");
}

/// Not a test of speed (timings are never asserted): prints what one durable publish costs.
/// `cargo test -p thingkit-broker --release --test persistence -- --ignored --nocapture`
#[test]
#[ignore]
fn measure_a_durable_publish() {
    let dir =
        tempfile::tempdir_in(std::env::var("MEASURE_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let path = dir.path().join("router.redb");
    let t0 = Instant::now();
    let mut router = start(redb(&path), t0, wall0());
    offline(&mut router, &id("c"), "t", SessionExpiry::Never, t0);
    let n = 200;
    let started = Instant::now();
    for i in 0..n {
        router
            .publish(&msg(
                "t",
                &format!("payload {i:>64}"),
                QoS::AtLeastOnce,
                false,
                t0,
            ))
            .unwrap();
    }
    let per = started.elapsed() / n;
    println!(
        "durable publish to one offline session (one redb commit): {per:?} each over {n} in {}",
        dir.path().display()
    );
    // Fan-out: one publish queued for 1,000 offline sessions is one commit of 1,000 copies.
    for i in 0..1000 {
        offline(
            &mut router,
            &id(&format!("fleet-{i}")),
            "fleet/all",
            SessionExpiry::Never,
            t0,
        );
    }
    let payload = "x".repeat(1024);
    let started = Instant::now();
    router
        .publish(&msg("fleet/all", &payload, QoS::AtLeastOnce, false, t0))
        .unwrap();
    println!(
        "one 1 KiB publish queued for 1,000 offline sessions: {:?}",
        started.elapsed()
    );
    drop(router);
    println!(
        "file size: {} KiB",
        std::fs::metadata(&path).unwrap().len() / 1024
    );
    let started = Instant::now();
    let _ = start(redb(&path), t0, wall0());
    println!(
        "restart with 1,001 sessions and {} queued messages: {:?}",
        n + 1000,
        started.elapsed()
    );
}

#[test]
fn reconnecting_a_never_expiring_session_with_nothing_queued_writes_nothing() {
    let store = Flaky::default();
    let t0 = Instant::now();
    let mut router = start(store.clone(), t0, wall0());
    let c = id("mqtt311");
    offline(&mut router, &c, "a", SessionExpiry::Never, t0);
    let n = store.batches.load(Ordering::SeqCst);
    for connection in 2..5 {
        router
            .try_attach(
                &c,
                false,
                SessionExpiry::Never,
                connection,
                TestOutlet::default(),
                t0,
            )
            .unwrap();
        router.try_detach(&c, connection, Vec::new(), t0).unwrap();
    }
    assert_eq!(store.batches.load(Ordering::SeqCst), n);
    // An expiry change is written.
    router
        .try_attach(
            &c,
            false,
            SessionExpiry::After(SECOND),
            9,
            TestOutlet::default(),
            t0,
        )
        .unwrap();
    assert_eq!(store.batches.load(Ordering::SeqCst), n + 1);
}

mod model {
    //! A router restarted from its store behaves like the router that wrote it, after every
    //! connection of that router ended (what a crash does): same sessions, backlogs,
    //! subscriptions and retained messages.

    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    const CLIENTS: [&str; 3] = ["c0", "c1", "c2"];
    const FILTERS: [&str; 4] = ["a/#", "a/b", "+/b", "#"];
    const TOPICS: [&str; 3] = ["a/b", "a/c", "x/b"];

    #[derive(Debug, Clone)]
    enum Step {
        Attach {
            client: usize,
            clean: bool,
            expiry: u8,
        },
        Detach {
            client: usize,
        },
        Subscribe {
            client: usize,
            filter: usize,
            id: u32,
        },
        Unsubscribe {
            client: usize,
            filter: usize,
        },
        Publish {
            topic: usize,
            qos1: bool,
            retain: bool,
            empty: bool,
            expiring: bool,
        },
        Wait {
            secs: u64,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..3usize, any::<bool>(), 0..3u8).prop_map(|(client, clean, expiry)| Step::Attach {
                client,
                clean,
                expiry
            }),
            (0..3usize).prop_map(|client| Step::Detach { client }),
            (0..3usize, 0..4usize, 0..3u32).prop_map(|(client, filter, id)| Step::Subscribe {
                client,
                filter,
                id
            }),
            (0..3usize, 0..4usize)
                .prop_map(|(client, filter)| Step::Unsubscribe { client, filter }),
            (
                0..3usize,
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                any::<bool>()
            )
                .prop_map(|(topic, qos1, retain, empty, expiring)| Step::Publish {
                    topic,
                    qos1,
                    retain,
                    empty,
                    expiring
                }),
            (1..4u64).prop_map(|secs| Step::Wait { secs }),
        ]
    }

    fn expiry(n: u8) -> SessionExpiry {
        match n {
            0 => SessionExpiry::OnDisconnect,
            1 => SessionExpiry::Never,
            _ => SessionExpiry::After(6 * SECOND),
        }
    }

    type Seen = Vec<(String, QoS, bool, Option<NonZeroU32>, Option<u32>)>;

    fn seen(deliveries: &[Delivery], now: Instant) -> Seen {
        deliveries
            .iter()
            .map(|d| {
                (
                    String::from_utf8_lossy(&d.message.payload).into_owned(),
                    d.qos,
                    d.retain,
                    d.subscription_id,
                    d.message.expiry_left(now),
                )
            })
            .collect()
    }

    fn retained(router: &Router<TestOutlet>, now: Instant) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = router
            .retained_matching(&filter("#"), now)
            .iter()
            .map(|m| {
                (
                    m.topic.as_str().to_owned(),
                    String::from_utf8_lossy(&m.payload).into_owned(),
                )
            })
            .collect();
        all.sort();
        all
    }

    /// Runs `steps` on a router writing to `store`, then compares it with a router started on
    /// `reopen()` (the same store as it is after the crash).
    fn run_model(
        steps: Vec<Step>,
        down: u64,
        store: Box<dyn RouterStore>,
        reopen: impl FnOnce() -> Box<dyn RouterStore>,
    ) -> Result<(), TestCaseError> {
        let t0 = Instant::now();
        let limits = RouterLimits::default().with_max_offline_messages(3);
        let mut live: Router<TestOutlet> =
            Router::with_store(limits.clone(), store, t0, wall0()).unwrap();
        let mut now = t0;
        let mut next_connection = 1u64;
        let mut connected: HashMap<usize, u64> = HashMap::new();
        let mut n = 0u32;
        for step in steps {
            match step {
                Step::Attach {
                    client,
                    clean,
                    expiry: e,
                } => {
                    live.try_attach(
                        &id(CLIENTS[client]),
                        clean,
                        expiry(e),
                        next_connection,
                        TestOutlet::default(),
                        now,
                    )
                    .unwrap();
                    connected.insert(client, next_connection);
                    next_connection += 1;
                }
                Step::Detach { client } => {
                    if let Some(c) = connected.remove(&client) {
                        live.try_detach(&id(CLIENTS[client]), c, Vec::new(), now)
                            .unwrap();
                    }
                }
                Step::Subscribe {
                    client,
                    filter: f,
                    id: sub,
                } => {
                    // A broker subscribes connected sessions only.
                    if connected.contains_key(&client) {
                        live.try_subscribe(
                            &id(CLIENTS[client]),
                            &filter(FILTERS[f]),
                            qos1(Some(sub)),
                        )
                        .unwrap();
                    }
                }
                Step::Unsubscribe { client, filter: f } => {
                    if connected.contains_key(&client) {
                        live.try_unsubscribe(&id(CLIENTS[client]), &filter(FILTERS[f]))
                            .unwrap();
                    }
                }
                Step::Publish {
                    topic,
                    qos1,
                    retain,
                    empty,
                    expiring,
                } => {
                    n += 1;
                    let payload = if empty {
                        String::new()
                    } else {
                        format!("m{n}")
                    };
                    let qos = if qos1 {
                        QoS::AtLeastOnce
                    } else {
                        QoS::AtMostOnce
                    };
                    let mut m = msg(TOPICS[topic], &payload, qos, retain, now);
                    if expiring {
                        m = with_expiry(&m, 4);
                    }
                    live.publish(&m).unwrap();
                }
                Step::Wait { secs } => {
                    now += Duration::from_secs(secs);
                    live.try_sweep(now).unwrap();
                }
            }
        }
        // The crash: every connection ends without handing anything back.
        for (client, c) in connected.drain() {
            live.try_detach(&id(CLIENTS[client]), c, Vec::new(), now)
                .unwrap();
        }
        // The broker stays down for `down` seconds; the live router is asked then too.
        now += Duration::from_secs(down);
        let elapsed = now - t0;
        let restart = t0 + 10_000 * SECOND;
        let mut restarted: Router<TestOutlet> =
            Router::with_store(limits, reopen(), restart, wall0() + elapsed).unwrap();
        prop_assert_eq!(retained(&live, now), retained(&restarted, restart));
        let mut outlets = Vec::new();
        for client in CLIENTS {
            let a = live
                .try_attach(
                    &id(client),
                    false,
                    SessionExpiry::Never,
                    1_000,
                    TestOutlet::default(),
                    now,
                )
                .unwrap();
            let b = restarted
                .try_attach(
                    &id(client),
                    false,
                    SessionExpiry::Never,
                    1_000,
                    TestOutlet::default(),
                    restart,
                )
                .unwrap();
            prop_assert_eq!(a.session_present, b.session_present, "{}", client);
            prop_assert_eq!(
                seen(&a.backlog, now),
                seen(&b.backlog, restart),
                "{}",
                client
            );
        }
        for client in CLIENTS {
            let (x, y) = (TestOutlet::default(), TestOutlet::default());
            live.try_attach(
                &id(client),
                false,
                SessionExpiry::Never,
                2_000,
                x.clone(),
                now,
            )
            .unwrap();
            restarted
                .try_attach(
                    &id(client),
                    false,
                    SessionExpiry::Never,
                    2_000,
                    y.clone(),
                    restart,
                )
                .unwrap();
            outlets.push((client, x, y));
        }
        for topic in TOPICS {
            live.publish(&msg(topic, topic, QoS::AtLeastOnce, false, now))
                .unwrap();
            restarted
                .publish(&msg(topic, topic, QoS::AtLeastOnce, false, restart))
                .unwrap();
        }
        for (client, x, y) in outlets {
            prop_assert_eq!(
                seen(&x.0.borrow().0, now),
                seen(&y.0.borrow().0, restart),
                "{} is subscribed to the same filters",
                client
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn a_restarted_router_matches_the_one_that_wrote_the_store(
            steps in proptest::collection::vec(step(), 1..40),
            down in 0..8u64,
        ) {
            let store = MemoryStore::new();
            let reopened = store.clone();
            run_model(steps, down, Box::new(store), move || Box::new(reopened))?;
        }
    }

    proptest! {
        // Every call that writes is an fsync'd redb commit: fewer cases.
        #![proptest_config(ProptestConfig::with_cases(12))]

        #[test]
        fn a_router_restarted_from_a_redb_file_matches_the_one_that_wrote_it(
            steps in proptest::collection::vec(step(), 1..40),
            down in 0..8u64,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (path, copy) = (dir.path().join("live.redb"), dir.path().join("copy.redb"));
            let store = redb(&path);
            // The live router keeps its file open (redb allows one opener): the restart opens a
            // copy of it, taken after the crash, which is what a restarted process would find.
            run_model(steps, down, Box::new(store), || {
                std::fs::copy(&path, &copy).unwrap();
                Box::new(redb(&copy))
            })?;
        }
    }
}

#[test]
fn a_message_received_before_the_monotonic_clock_began_keeps_its_expiry() {
    // Ten years before the restart: `Instant` cannot usually go back that far (it counts from
    // boot), so the router receives it "now" with what is left of its interval.
    let years = 10 * 365 * 24 * 3600;
    let mut store = MemoryStore::new();
    let wall = wall0();
    let received = wall0()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - years * 1000;
    let mut properties = PacketProperties::default();
    properties.message_expiry_interval = Some(u32::MAX);
    store
        .apply(&[StoreOp::PutRetained {
            message: Arc::new(thingkit_broker::StoredMessage {
                topic: TopicName::new("old").unwrap(),
                payload: Bytes::from_static(b"x"),
                qos: QoS::AtMostOnce,
                retain: true,
                properties,
                from: None,
                received_unix_ms: received,
            }),
        }])
        .unwrap();
    let now = Instant::now();
    let router = start(store, now, wall);
    let m = router.retained(&TopicName::new("old").unwrap()).unwrap();
    assert_eq!(m.expiry_left(now), Some(u32::MAX - years as u32));
}

#[test]
fn a_stored_router_is_send_and_sync_like_one_without_a_store() {
    #[derive(Debug)]
    struct SyncOutlet;
    impl Outlet for SyncOutlet {
        fn try_deliver(&self, d: Delivery) -> Result<(), Delivery> {
            Err(d)
        }
        fn kick(&self, _reason: ReasonCode) {}
    }
    fn send_sync<T: Send + Sync>(_: &T) {}
    let router: Router<SyncOutlet> = Router::with_store(
        RouterLimits::default(),
        MemoryStore::new(),
        Instant::now(),
        wall0(),
    )
    .unwrap();
    send_sync(&router);
}

#[test]
fn a_requeued_delivery_is_stored_before_it_is_queued_and_not_queued_when_the_store_fails() {
    let store = Flaky::default();
    let t0 = Instant::now();
    let c = id("c");
    let delivery = |payload: &str| Delivery {
        message: msg("a", payload, QoS::AtLeastOnce, false, t0),
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_id: None,
    };
    {
        let mut router = start(store.clone(), t0, wall0());
        offline(&mut router, &c, "a", SessionExpiry::Never, t0);
        // A publisher waited for c's connection, which ended: its delivery is handed back.
        let queued = router
            .try_requeue(Blocked::new(c.clone(), 1, delivery("waited")))
            .unwrap();
        assert!(matches!(queued, Requeued::Queued));
        store.fail.store(true, Ordering::SeqCst);
        assert!(matches!(
            router.try_requeue(Blocked::new(c.clone(), 1, delivery("lost"))),
            Err(Error::Store(_))
        ));
        assert_eq!(router.offline_len("c"), 1, "not queued when not stored");
        store.fail.store(false, Ordering::SeqCst);
    }
    let mut router = start(store, t0, wall0());
    let back = router
        .try_attach(
            &c,
            false,
            SessionExpiry::Never,
            2,
            TestOutlet::default(),
            t0,
        )
        .unwrap();
    let payloads: Vec<_> = back
        .backlog
        .iter()
        .map(|d| d.message.payload.clone())
        .collect();
    assert_eq!(payloads, ["waited"]);
}

#[test]
fn a_released_session_moves_to_another_router_with_its_queue() {
    // Two servers sharing one store (as a cluster shares PostgreSQL).
    let store = MemoryStore::new();
    let t0 = Instant::now();
    let c = id("sensor-2");
    let mut a = start(store.clone(), t0, wall0());
    let mut b = start(store.clone(), t0, wall0());
    let on_a = TestOutlet::default();
    a.try_attach(&c, true, SessionExpiry::Never, 1, on_a.clone(), t0)
        .unwrap();
    a.try_subscribe(&c, &filter("q/#"), qos1(Some(3))).unwrap();
    a.try_detach(&c, 1, Vec::new(), t0).unwrap();
    a.publish(&msg("q/1", "one", QoS::AtLeastOnce, false, t0))
        .unwrap();
    assert!(!b.has_session(&c));

    // Released on A: gone from its memory, still in the store.
    assert!(a.release(&c));
    assert!(!a.has_session(&c));
    assert_eq!(
        a.publish(&msg("q/2", "not for a", QoS::AtLeastOnce, false, t0))
            .unwrap()
            .queued,
        0
    );
    let stored = store.load().unwrap();
    let session = stored
        .sessions
        .into_iter()
        .find(|s| s.client_id == c)
        .expect("release keeps the stored session");
    assert_eq!(session.queue.len(), 1);

    // Adopted by B: subscriptions and queue, Session Present.
    b.adopt(session, t0).unwrap();
    let on_b = TestOutlet::default();
    let attached = b
        .try_attach(&c, false, SessionExpiry::Never, 7, on_b.clone(), t0)
        .unwrap();
    assert!(attached.session_present);
    let backlog: Vec<_> = attached
        .backlog
        .iter()
        .map(|d| String::from_utf8_lossy(&d.message.payload).into_owned())
        .collect();
    assert_eq!(backlog, ["one"]);
    b.publish(&msg("q/3", "three", QoS::AtLeastOnce, false, t0))
        .unwrap();
    assert_eq!(on_b.payloads(), ["three"]);
}

#[test]
fn release_kicks_a_live_connection_with_session_taken_over() {
    let store = MemoryStore::new();
    let t0 = Instant::now();
    let c = id("sensor-1");
    let mut a = start(store.clone(), t0, wall0());
    let on_a = TestOutlet::default();
    a.try_attach(&c, false, SessionExpiry::Never, 1, on_a.clone(), t0)
        .unwrap();
    a.try_subscribe(&c, &filter("q/#"), qos1(None)).unwrap();
    assert!(a.release(&c));
    assert_eq!(on_a.kicked(), Some(ReasonCode::SESSION_TAKEN_OVER));
    // The session leaves memory when its connection detaches, storing the QoS 1 message the
    // connection had in flight, for the server that adopts the session.
    assert!(a.has_session(&c));
    let in_flight = Delivery {
        message: msg("q/1", "in flight", QoS::AtLeastOnce, false, t0),
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_id: None,
    };
    a.try_detach(&c, 1, vec![in_flight], t0).unwrap();
    assert!(!a.has_session(&c));
    let stored = store.load().unwrap();
    assert_eq!(stored.sessions.len(), 1);
    assert_eq!(
        &stored.sessions[0].queue[0].message.payload[..],
        b"in flight"
    );
    assert!(!a.release(&c));
}

/// Persistent sessions for `clients`, each subscribed to `f` with `granted`, then detached.
fn detached_subscribers(
    b: &mut Router<TestOutlet>,
    clients: &[&Arc<str>],
    f: &str,
    granted: GrantedSubscription,
    t0: Instant,
) {
    for c in clients {
        b.try_attach(c, true, SessionExpiry::Never, 1, TestOutlet::default(), t0)
            .unwrap();
        b.try_subscribe(c, &filter(f), granted).unwrap();
        b.try_detach(c, 1, Vec::new(), t0).unwrap();
    }
}

#[test]
fn route_to_queues_a_replayed_message_for_one_session_alone_and_stores_it() {
    let store = MemoryStore::new();
    let t0 = Instant::now();
    let (moved, other) = (id("sensor-2"), id("sensor-3"));
    let mut b = start(store.clone(), t0, wall0());
    detached_subscribers(&mut b, &[&moved, &other], "q/#", qos1(Some(4)), t0);
    let routed = b
        .try_route_to(&moved, &msg("q/1", "missed", QoS::AtLeastOnce, false, t0))
        .unwrap();
    assert_eq!(routed.queued, 1);
    // Not routed by topic to everyone: only the named session has it, durably.
    assert_eq!(b.offline_len(&moved), 1);
    assert_eq!(b.offline_len(&other), 0);
    let stored = store.load().unwrap();
    let queued: Vec<_> = stored
        .sessions
        .iter()
        .map(|s| (s.client_id.to_string(), s.queue.len()))
        .collect();
    assert!(queued.contains(&("sensor-2".into(), 1)) && queued.contains(&("sensor-3".into(), 0)));
    let delivery = &stored
        .sessions
        .iter()
        .find(|s| s.client_id == moved)
        .unwrap()
        .queue[0];
    assert_eq!(delivery.subscription_id.map(|i| i.get()), Some(4));
    // A topic the session does not subscribe to is not queued.
    let routed = b
        .try_route_to(&moved, &msg("r/1", "other", QoS::AtLeastOnce, false, t0))
        .unwrap();
    assert_eq!(routed.queued, 0);
    assert_eq!(b.offline_len(&moved), 1);
}

#[test]
fn route_to_replays_a_shared_group_s_message_to_the_member_that_moved() {
    let store = MemoryStore::new();
    let t0 = Instant::now();
    let (moved, other) = (id("worker-a"), id("worker-b"));
    let mut b = start(store.clone(), t0, wall0());
    detached_subscribers(
        &mut b,
        &[&moved, &other],
        "$share/workers/q/#",
        qos1(None),
        t0,
    );
    // The group's choice is not replayed: the member named gets it, whichever member the group
    // chose the first time (at least once, as QoS 1 allows).
    let routed = b
        .try_route_to(&moved, &msg("q/1", "missed", QoS::AtLeastOnce, false, t0))
        .unwrap();
    assert_eq!(routed.queued, 1);
    assert_eq!(b.offline_len(&moved), 1);
    assert_eq!(b.offline_len(&other), 0);
    // Another group's topic is not queued.
    let routed = b
        .try_route_to(&moved, &msg("r/1", "other", QoS::AtLeastOnce, false, t0))
        .unwrap();
    assert_eq!(routed.queued, 0);
}

#[test]
fn shared_subscriptions_handed_to_the_caller_are_routed_only_through_it() {
    let t0 = Instant::now();
    let mut r = start(MemoryStore::new(), t0, wall0());
    let (w1, w2, plain) = (id("w1"), id("w2"), id("plain"));
    let outlets: Vec<TestOutlet> = (0..3).map(|_| TestOutlet::default()).collect();
    for (i, c) in [&w1, &w2, &plain].into_iter().enumerate() {
        r.try_attach(
            c,
            true,
            SessionExpiry::OnDisconnect,
            i as u64 + 1,
            outlets[i].clone(),
            t0,
        )
        .unwrap();
    }
    r.try_subscribe(&w1, &filter("$share/g/q/#"), qos1(None))
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::<(String, String, bool)>::new()));
    let log = seen.clone();
    r.route_shared_through(Box::new(move |group, f, subscribed| {
        log.lock()
            .unwrap()
            .push((group.to_owned(), f.as_str().to_owned(), subscribed));
    }));
    // Told at once of the group with a member, then of changes only (w2 joins: no news).
    r.try_subscribe(&w2, &filter("$share/g/q/#"), qos1(None))
        .unwrap();
    r.try_subscribe(&plain, &filter("q/#"), qos1(None)).unwrap();
    assert_eq!(*seen.lock().unwrap(), [("g".into(), "q/#".into(), true)]);

    // Routing skips the group; the plain subscriber gets it.
    r.publish(&msg("q/1", "one", QoS::AtLeastOnce, false, t0))
        .unwrap();
    assert_eq!(outlets[2].payloads(), ["one"]);
    assert!(outlets[0].payloads().is_empty() && outlets[1].payloads().is_empty());

    // Through the caller: one member of the group, round-robin; another group or a filter
    // the topic does not match gets nothing.
    for n in 0..4 {
        let routed = r
            .try_route_shared(
                "g",
                &filter("q/#"),
                &msg("q/2", &format!("s{n}"), QoS::AtLeastOnce, false, t0),
            )
            .unwrap();
        assert_eq!(routed.queued, 1);
    }
    assert_eq!(outlets[0].payloads().len() + outlets[1].payloads().len(), 4);
    assert!(!outlets[0].payloads().is_empty() && !outlets[1].payloads().is_empty());
    let other = msg("q/3", "x", QoS::AtLeastOnce, false, t0);
    assert_eq!(
        r.try_route_shared("h", &filter("q/#"), &other)
            .unwrap()
            .queued,
        0
    );
    assert_eq!(
        r.try_route_shared("g", &filter("r/#"), &other)
            .unwrap()
            .queued,
        0
    );

    // The last member leaving is news.
    r.try_unsubscribe(&w1, &filter("$share/g/q/#")).unwrap();
    r.try_unsubscribe(&w2, &filter("$share/g/q/#")).unwrap();
    assert_eq!(
        seen.lock().unwrap().last().cloned(),
        Some(("g".into(), "q/#".into(), false))
    );
}
