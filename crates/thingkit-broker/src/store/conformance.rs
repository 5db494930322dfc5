//! The test suite every [`RouterStore`] must pass (cargo feature `test-suite`).
//!
//! ```ignore
//! #[test]
//! fn my_store_conforms() {
//!     thingkit_broker::conformance::run(|| Box::new(MyStore::new_empty()));
//! }
//! ```

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use thingkit_mqtt::{MqttStr, Properties, QoS, TopicFilter, TopicName};

use crate::message::GrantedSubscription;
use crate::router::SessionExpiry;
use crate::store::{
    RouterStore, SessionRecord, StoreOp, StoredDelivery, StoredMessage, StoredSession, StoredState,
};

/// Runs every check against fresh stores from `make` (each must start empty); panics on the
/// first store that does not behave as [`RouterStore`] documents.
pub fn run(make: impl Fn() -> Box<dyn RouterStore>) {
    starts_empty(make());
    stores_sessions_with_subscriptions_and_queues(make());
    replacing_a_session_record_keeps_its_subscriptions_and_queue(make());
    subscriptions_are_replaced_and_removed(make());
    queues_keep_order_and_clear(make());
    removing_a_session_removes_its_subscriptions_and_queue(make());
    sessions_whose_ids_share_a_prefix_stay_apart(make());
    applies_a_batch_in_order(make());
    retained_messages_are_put_replaced_and_removed(make());
    messages_round_trip_with_their_properties(make());
    orphan_subscriptions_and_queues_are_not_loaded(make());
    an_empty_batch_changes_nothing(make());
}

fn id(s: &str) -> Arc<str> {
    Arc::from(s)
}

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).expect("a valid conformance filter")
}

fn granted(qos: QoS, id: u32) -> GrantedSubscription {
    GrantedSubscription {
        qos,
        no_local: id % 2 == 1,
        retain_as_published: id % 3 == 1,
        id: NonZeroU32::new(id),
    }
}

fn record(secs: u64, deadline: Option<u64>) -> SessionRecord {
    SessionRecord {
        expiry: SessionExpiry::After(Duration::from_secs(secs)),
        deadline_unix_ms: deadline,
    }
}

fn message(topic: &str, payload: &'static [u8]) -> Arc<StoredMessage> {
    Arc::new(StoredMessage {
        topic: TopicName::new(topic).expect("a valid conformance topic"),
        payload: Bytes::from_static(payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
        from: None,
        received_unix_ms: 1_000,
    })
}

fn delivery(payload: &'static [u8]) -> StoredDelivery {
    StoredDelivery {
        message: message("q/t", payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_id: None,
    }
}

fn apply(store: &mut dyn RouterStore, ops: Vec<StoreOp>) {
    store.apply(&ops).expect("apply");
}

/// The loaded state with sessions, their subscriptions and the retained messages sorted, so
/// that stores may return them in any order.
fn load(store: &dyn RouterStore) -> StoredState {
    let mut state = store.load().expect("load");
    state.sessions.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    for s in &mut state.sessions {
        s.subscriptions.sort_by(|a, b| a.0.cmp(&b.0));
    }
    state.retained.sort_by(|a, b| a.topic.cmp(&b.topic));
    state
}

fn session<'a>(state: &'a StoredState, client: &str) -> &'a StoredSession {
    state
        .sessions
        .iter()
        .find(|s| &*s.client_id == client)
        .unwrap_or_else(|| panic!("session {client:?} was not loaded"))
}

fn payloads(s: &StoredSession) -> Vec<Bytes> {
    s.queue.iter().map(|d| d.message.payload.clone()).collect()
}

fn starts_empty(store: Box<dyn RouterStore>) {
    assert_eq!(
        load(&*store),
        StoredState::default(),
        "a new store is empty"
    );
}

fn stores_sessions_with_subscriptions_and_queues(mut store: Box<dyn RouterStore>) {
    let c = id("c1");
    apply(
        &mut *store,
        vec![
            StoreOp::PutSession {
                client_id: c.clone(),
                record: record(60, Some(5_000)),
            },
            StoreOp::PutSubscription {
                client_id: c.clone(),
                filter: filter("a/+"),
                granted: granted(QoS::AtLeastOnce, 1),
            },
            StoreOp::PutSubscription {
                client_id: c.clone(),
                filter: filter("$share/g/b/#"),
                granted: granted(QoS::AtMostOnce, 0),
            },
            StoreOp::PushQueued {
                client_id: c.clone(),
                delivery: delivery(b"1"),
            },
        ],
    );
    let never = id("c2");
    apply(
        &mut *store,
        vec![StoreOp::PutSession {
            client_id: never.clone(),
            record: SessionRecord {
                expiry: SessionExpiry::Never,
                deadline_unix_ms: None,
            },
        }],
    );
    let state = load(&*store);
    assert_eq!(state.sessions.len(), 2);
    let s = session(&state, "c1");
    assert_eq!(s.record, record(60, Some(5_000)));
    assert_eq!(
        s.subscriptions,
        vec![
            (filter("$share/g/b/#"), granted(QoS::AtMostOnce, 0)),
            (filter("a/+"), granted(QoS::AtLeastOnce, 1)),
        ],
        "a shared subscription keeps its $share prefix"
    );
    assert_eq!(s.queue, vec![delivery(b"1")]);
    let n = session(&state, "c2");
    assert_eq!(n.record.expiry, SessionExpiry::Never);
    assert!(n.subscriptions.is_empty() && n.queue.is_empty());
}

fn replacing_a_session_record_keeps_its_subscriptions_and_queue(mut store: Box<dyn RouterStore>) {
    let c = id("c");
    apply(
        &mut *store,
        vec![
            StoreOp::PutSession {
                client_id: c.clone(),
                record: record(60, None),
            },
            StoreOp::PutSubscription {
                client_id: c.clone(),
                filter: filter("x"),
                granted: granted(QoS::AtLeastOnce, 0),
            },
            StoreOp::PushQueued {
                client_id: c.clone(),
                delivery: delivery(b"1"),
            },
        ],
    );
    apply(
        &mut *store,
        vec![StoreOp::PutSession {
            client_id: c.clone(),
            record: record(10, Some(99)),
        }],
    );
    let state = load(&*store);
    let s = session(&state, "c");
    assert_eq!(s.record, record(10, Some(99)));
    assert_eq!(s.subscriptions.len(), 1);
    assert_eq!(s.queue.len(), 1);
}

fn subscriptions_are_replaced_and_removed(mut store: Box<dyn RouterStore>) {
    let c = id("c");
    apply(
        &mut *store,
        vec![
            StoreOp::PutSession {
                client_id: c.clone(),
                record: record(60, None),
            },
            StoreOp::PutSubscription {
                client_id: c.clone(),
                filter: filter("a"),
                granted: granted(QoS::AtMostOnce, 0),
            },
            StoreOp::PutSubscription {
                client_id: c.clone(),
                filter: filter("b"),
                granted: granted(QoS::AtMostOnce, 0),
            },
        ],
    );
    apply(
        &mut *store,
        vec![
            StoreOp::PutSubscription {
                client_id: c.clone(),
                filter: filter("a"),
                granted: granted(QoS::AtLeastOnce, 7),
            },
            StoreOp::RemoveSubscription {
                client_id: c.clone(),
                filter: filter("b"),
            },
            StoreOp::RemoveSubscription {
                client_id: c.clone(),
                filter: filter("never/subscribed"),
            },
        ],
    );
    let state = load(&*store);
    assert_eq!(
        session(&state, "c").subscriptions,
        vec![(filter("a"), granted(QoS::AtLeastOnce, 7))]
    );
}

fn queues_keep_order_and_clear(mut store: Box<dyn RouterStore>) {
    let c = id("c");
    apply(
        &mut *store,
        vec![StoreOp::PutSession {
            client_id: c.clone(),
            record: record(60, None),
        }],
    );
    let bodies: [&'static [u8]; 12] = [
        b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9", b"10", b"11",
    ];
    // Pushed across batches and several per batch: order is push order.
    for chunk in bodies.chunks(5) {
        apply(
            &mut *store,
            chunk
                .iter()
                .map(|p| StoreOp::PushQueued {
                    client_id: c.clone(),
                    delivery: delivery(p),
                })
                .collect(),
        );
    }
    let want: Vec<Bytes> = bodies.iter().map(|p| Bytes::from_static(p)).collect();
    assert_eq!(payloads(session(&load(&*store), "c")), want);
    apply(
        &mut *store,
        vec![StoreOp::ClearQueue {
            client_id: c.clone(),
        }],
    );
    assert!(session(&load(&*store), "c").queue.is_empty());
    apply(
        &mut *store,
        vec![StoreOp::PushQueued {
            client_id: c.clone(),
            delivery: delivery(b"after"),
        }],
    );
    assert_eq!(
        payloads(session(&load(&*store), "c")),
        vec![Bytes::from_static(b"after")],
        "a cleared queue takes new messages"
    );
}

fn removing_a_session_removes_its_subscriptions_and_queue(mut store: Box<dyn RouterStore>) {
    let c = id("c");
    let put = vec![
        StoreOp::PutSession {
            client_id: c.clone(),
            record: record(60, None),
        },
        StoreOp::PutSubscription {
            client_id: c.clone(),
            filter: filter("a/#"),
            granted: granted(QoS::AtLeastOnce, 0),
        },
        StoreOp::PushQueued {
            client_id: c.clone(),
            delivery: delivery(b"old"),
        },
    ];
    apply(&mut *store, put);
    apply(
        &mut *store,
        vec![
            StoreOp::RemoveSession {
                client_id: c.clone(),
            },
            StoreOp::RemoveSession {
                client_id: id("absent"),
            },
        ],
    );
    assert_eq!(load(&*store), StoredState::default());
    // A new session under the same id starts clean.
    apply(
        &mut *store,
        vec![StoreOp::PutSession {
            client_id: c.clone(),
            record: record(60, None),
        }],
    );
    let state = load(&*store);
    let s = session(&state, "c");
    assert!(s.subscriptions.is_empty() && s.queue.is_empty());
}

fn sessions_whose_ids_share_a_prefix_stay_apart(mut store: Box<dyn RouterStore>) {
    let ids = ["a", "a/b", "ab", "a\u{1}", "\u{10FFFF}", "a b"];
    for (n, c) in ids.iter().enumerate() {
        let c = id(c);
        apply(
            &mut *store,
            vec![
                StoreOp::PutSession {
                    client_id: c.clone(),
                    record: record(60, None),
                },
                StoreOp::PutSubscription {
                    client_id: c.clone(),
                    filter: filter(&format!("t/{n}")),
                    granted: granted(QoS::AtLeastOnce, 0),
                },
                StoreOp::PushQueued {
                    client_id: c.clone(),
                    delivery: delivery(b"m"),
                },
            ],
        );
    }
    apply(
        &mut *store,
        vec![StoreOp::RemoveSession { client_id: id("a") }],
    );
    let state = load(&*store);
    assert_eq!(state.sessions.len(), ids.len() - 1);
    for (n, c) in ids.iter().enumerate().skip(1) {
        let s = session(&state, c);
        assert_eq!(s.subscriptions.len(), 1, "{c:?} keeps its own subscription");
        assert_eq!(s.subscriptions[0].0, filter(&format!("t/{n}")));
        assert_eq!(s.queue.len(), 1, "{c:?} keeps its own queue");
    }
}

fn applies_a_batch_in_order(mut store: Box<dyn RouterStore>) {
    let c = id("c");
    apply(
        &mut *store,
        vec![
            StoreOp::PutSession {
                client_id: c.clone(),
                record: record(60, None),
            },
            StoreOp::PushQueued {
                client_id: c.clone(),
                delivery: delivery(b"gone"),
            },
            StoreOp::PutSubscription {
                client_id: c.clone(),
                filter: filter("gone"),
                granted: granted(QoS::AtLeastOnce, 0),
            },
            // Clean Start: remove, then a new session in the same batch.
            StoreOp::RemoveSession {
                client_id: c.clone(),
            },
            StoreOp::PutSession {
                client_id: c.clone(),
                record: record(30, None),
            },
            StoreOp::PushQueued {
                client_id: c.clone(),
                delivery: delivery(b"x"),
            },
            StoreOp::ClearQueue {
                client_id: c.clone(),
            },
            StoreOp::PushQueued {
                client_id: c.clone(),
                delivery: delivery(b"kept"),
            },
            StoreOp::PutRetained {
                message: message("r", b"1"),
            },
            StoreOp::RemoveRetained {
                topic: TopicName::new("r").expect("valid"),
            },
        ],
    );
    let state = load(&*store);
    let s = session(&state, "c");
    assert_eq!(s.record, record(30, None));
    assert!(s.subscriptions.is_empty());
    assert_eq!(payloads(s), vec![Bytes::from_static(b"kept")]);
    assert!(state.retained.is_empty());
}

fn retained_messages_are_put_replaced_and_removed(mut store: Box<dyn RouterStore>) {
    apply(
        &mut *store,
        vec![
            StoreOp::PutRetained {
                message: message("a/b", b"1"),
            },
            StoreOp::PutRetained {
                message: message("$SYS/x", b"2"),
            },
            StoreOp::PutRetained {
                message: message("c", b"3"),
            },
        ],
    );
    apply(
        &mut *store,
        vec![
            StoreOp::PutRetained {
                message: message("a/b", b"new"),
            },
            StoreOp::RemoveRetained {
                topic: TopicName::new("c").expect("valid"),
            },
            StoreOp::RemoveRetained {
                topic: TopicName::new("absent").expect("valid"),
            },
        ],
    );
    let state = load(&*store);
    let got: Vec<(&str, &[u8])> = state
        .retained
        .iter()
        .map(|m| (m.topic.as_str(), &m.payload[..]))
        .collect();
    assert_eq!(got, vec![("$SYS/x", &b"2"[..]), ("a/b", &b"new"[..])]);
}

fn messages_round_trip_with_their_properties(mut store: Box<dyn RouterStore>) {
    let rich = Arc::new(StoredMessage {
        topic: TopicName::new("dev/1/telemetry").expect("valid"),
        payload: Bytes::from([0u8, 255, 1, 2, 3].repeat(1000)),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Properties {
            payload_format_indicator: Some(false),
            message_expiry_interval: Some(3600),
            content_type: Some(MqttStr::new("application/cbor").expect("valid")),
            response_topic: Some(TopicName::new("dev/1/reply").expect("valid")),
            correlation_data: Some(Bytes::from_static(b"\x00corr")),
            user_properties: vec![
                (
                    MqttStr::new("region").expect("valid"),
                    MqttStr::new("eu").expect("valid"),
                ),
                (
                    MqttStr::new("region").expect("valid"),
                    MqttStr::new("\u{e9}t\u{e9}").expect("valid"),
                ),
            ]
            .into(),
            ..Properties::default()
        }
        .into(),
        from: Some(id("publisher-\u{e9}")),
        received_unix_ms: 1_764_800_000_123,
    });
    let zero = Arc::new(StoredMessage {
        qos: QoS::AtMostOnce,
        retain: false,
        payload: Bytes::new(),
        properties: Default::default(),
        from: None,
        received_unix_ms: 0,
        ..(*rich).clone()
    });
    let c = id("c");
    let queued = StoredDelivery {
        message: rich.clone(),
        qos: QoS::AtLeastOnce,
        retain: true,
        subscription_id: NonZeroU32::new(268_435_455),
    };
    let plain = StoredDelivery {
        message: zero.clone(),
        qos: QoS::AtMostOnce,
        retain: false,
        subscription_id: None,
    };
    apply(
        &mut *store,
        vec![
            StoreOp::PutSession {
                client_id: c.clone(),
                record: record(60, None),
            },
            StoreOp::PushQueued {
                client_id: c.clone(),
                delivery: queued.clone(),
            },
            StoreOp::PushQueued {
                client_id: c.clone(),
                delivery: plain.clone(),
            },
            StoreOp::PutRetained {
                message: rich.clone(),
            },
        ],
    );
    let state = load(&*store);
    assert_eq!(session(&state, "c").queue, vec![queued, plain]);
    assert_eq!(state.retained, vec![rich]);
}

fn orphan_subscriptions_and_queues_are_not_loaded(mut store: Box<dyn RouterStore>) {
    let c = id("orphan");
    apply(
        &mut *store,
        vec![
            StoreOp::PutSubscription {
                client_id: c.clone(),
                filter: filter("a"),
                granted: granted(QoS::AtLeastOnce, 0),
            },
            StoreOp::PushQueued {
                client_id: c.clone(),
                delivery: delivery(b"1"),
            },
        ],
    );
    assert!(load(&*store).sessions.is_empty());
    apply(
        &mut *store,
        vec![StoreOp::RemoveSession {
            client_id: c.clone(),
        }],
    );
    apply(
        &mut *store,
        vec![StoreOp::PutSession {
            client_id: c.clone(),
            record: record(60, None),
        }],
    );
    let state = load(&*store);
    let s = session(&state, "orphan");
    assert!(
        s.subscriptions.is_empty() && s.queue.is_empty(),
        "RemoveSession removes orphans too"
    );
}

fn an_empty_batch_changes_nothing(mut store: Box<dyn RouterStore>) {
    apply(&mut *store, Vec::new());
    assert_eq!(load(&*store), StoredState::default());
}
