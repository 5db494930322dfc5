//! The PostgreSQL stores against a real server: each passes its crate's conformance suite.
//!
//! Ignored by default; run with a server (see `.ci/postgres`):
//!
//! ```text
//! .ci/postgres start
//! THINGKIT_TEST_POSTGRES=$(.ci/postgres url) cargo test -p thingkit-cluster --test postgres -- --ignored
//! ```
//!
//! Each store gets a fresh random schema, so runs never see each other's records.

#[cfg(feature = "sessions")]
use thingkit_cluster::PgRouterStore;
use thingkit_cluster::{Error, PgJobStore, PgRegistryStore, PgShadowStore, PostgresConfig};
use thingkit_provision::{RegistryStore, StoreOp};

mod common;
use common::{config, url};

/// A schema name no other test or run uses.
fn fresh_schema() -> String {
    common::fresh_schema("tk_test")
}

#[test]
#[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
fn registry_store_passes_the_conformance_suite() {
    thingkit_provision::conformance::run(|| {
        Box::new(PgRegistryStore::open(&config(&fresh_schema())).expect("open"))
    });
    let schema = fresh_schema();
    thingkit_provision::conformance::reopen(|| {
        Box::new(PgRegistryStore::open(&config(&schema)).expect("open"))
    });
}

#[test]
#[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
fn shadow_store_passes_the_conformance_suite() {
    thingkit_shadow::conformance::run(|| {
        Box::new(PgShadowStore::open(&config(&fresh_schema())).expect("open"))
    });
    let schema = fresh_schema();
    thingkit_shadow::conformance::reopen(|| {
        Box::new(PgShadowStore::open(&config(&schema)).expect("open"))
    });
}

#[test]
#[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
fn job_store_passes_the_conformance_suite() {
    thingkit_jobs::conformance::run(|| {
        Box::new(PgJobStore::open(&config(&fresh_schema())).expect("open"))
    });
    let schema = fresh_schema();
    thingkit_jobs::conformance::reopen(|| {
        Box::new(PgJobStore::open(&config(&schema)).expect("open"))
    });
}

#[test]
#[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
fn the_three_stores_share_one_schema() {
    let schema = fresh_schema();
    let mut registry = PgRegistryStore::open(&config(&schema)).expect("open");
    let _shadows = PgShadowStore::open(&config(&schema)).expect("open");
    let _jobs = PgJobStore::open(&config(&schema)).expect("open");
    registry
        .commit(&[StoreOp::Put {
            key: "thing/a".into(),
            value: b"1".to_vec(),
        }])
        .expect("commit");
    // Opening again re-runs the migrations: a no-op.
    let again = PgRegistryStore::open(&config(&schema)).expect("reopen");
    assert_eq!(again.get("thing/a").expect("get"), Some(b"1".to_vec()));
}

#[test]
#[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
fn a_schema_migrated_by_a_newer_build_is_refused() {
    let schema = fresh_schema();
    drop(PgRegistryStore::open(&config(&schema)).expect("open"));
    let mut client = postgres::Client::connect(&url(), postgres::NoTls).expect("connect");
    client
        .execute(
            &format!(
                "INSERT INTO {schema}.schema_version (component, version) VALUES ('registry', 99)"
            ),
            &[],
        )
        .expect("insert");
    match PgRegistryStore::open(&config(&schema)) {
        Err(Error::SchemaTooNew {
            component: "registry",
            found: 99,
            known: 1,
        }) => {}
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    // Other components in the schema are not affected.
    PgShadowStore::open(&config(&schema)).expect("the shadow tables are at a known version");
}

#[test]
#[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
fn a_refused_batch_reports_postgresqls_message_and_changes_nothing() {
    let mut store = PgRegistryStore::open(&config(&fresh_schema())).expect("open");
    let err = store
        .commit(&[
            StoreOp::Put {
                key: "a".into(),
                value: b"1".to_vec(),
            },
            StoreOp::Put {
                key: "nul\0".into(),
                value: b"2".to_vec(),
            },
        ])
        .expect_err("PostgreSQL text cannot hold NUL");
    let message = err.to_string();
    assert!(message.contains("PostgreSQL commit"), "{message}");
    assert_eq!(store.get("a").expect("get"), None);
}

#[test]
#[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
fn the_stores_work_when_called_inside_a_tokio_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let schema = fresh_schema();
    let cfg = config(&schema);
    runtime.block_on(async move {
        tokio::spawn(async move {
            // Blocking calls on a runtime thread: fine for this test, the point is that the
            // client (which runs a runtime of its own) does not panic here.
            let mut store = PgRegistryStore::open(&cfg).expect("open inside a runtime");
            store
                .commit(&[StoreOp::Put {
                    key: "k".into(),
                    value: b"v".to_vec(),
                }])
                .expect("commit inside a runtime");
            assert_eq!(store.get("k").expect("get"), Some(b"v".to_vec()));
        })
        .await
        .expect("task");
    });
}

#[test]
fn an_unreachable_server_is_an_error_not_a_hang() {
    let cfg = PostgresConfig {
        connect_timeout: std::time::Duration::from_secs(2),
        ..PostgresConfig::new("postgres://postgres@127.0.0.1:9/thingkit")
    };
    match PgRegistryStore::open(&cfg) {
        Err(Error::Postgres { operation, .. }) => assert_eq!(operation, "connect"),
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[test]
fn a_bad_schema_name_is_refused_before_connecting() {
    let cfg = PostgresConfig::new("postgres://postgres@127.0.0.1:9/thingkit")
        .with_schema("x; DROP TABLE y");
    assert!(matches!(PgRegistryStore::open(&cfg), Err(Error::Config(_))));
}

#[test]
#[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
fn a_commit_through_one_store_reaches_the_other_servers_feed_within_a_second() {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};
    use thingkit_cluster::{RegistryChange, RegistryFeed};

    let schema = fresh_schema();
    let mut one = PgRegistryStore::open(&config(&schema)).expect("open");
    let two = PgRegistryStore::open(&config(&schema)).expect("open");
    let (tx, rx) = mpsc::channel();
    let _feed = RegistryFeed::start(&config(&schema), move |change| {
        let _ = tx.send((Instant::now(), change));
    })
    .expect("feed");
    // Another schema's commits are not seen.
    let mut elsewhere = PgRegistryStore::open(&config(&fresh_schema())).expect("open");
    elsewhere
        .commit(&[StoreOp::Put {
            key: "thing/elsewhere".into(),
            value: b"x".to_vec(),
        }])
        .expect("commit");

    let committed = Instant::now();
    one.commit(&[
        StoreOp::Put {
            key: "thing/b".into(),
            value: b"1".to_vec(),
        },
        StoreOp::Delete {
            key: "cert/a".into(),
        },
    ])
    .expect("commit");
    let (seen, change) = rx
        .recv_timeout(Duration::from_secs(1))
        .expect("the feed saw the commit within one second");
    assert_eq!(
        change,
        RegistryChange::Keys(vec!["cert/a".into(), "thing/b".into()])
    );
    println!(
        "registry feed: a commit was seen {:?} after it was acknowledged",
        seen.saturating_duration_since(committed)
    );
    assert_eq!(two.get("thing/b").expect("get"), Some(b"1".to_vec()));

    // A refused batch notifies nothing.
    one.commit(&[
        StoreOp::Put {
            key: "thing/c".into(),
            value: b"1".to_vec(),
        },
        StoreOp::Put {
            key: "nul\0".into(),
            value: b"2".to_vec(),
        },
    ])
    .expect_err("refused");
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "nothing is notified for a refused batch"
    );
}

#[test]
#[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
fn a_store_that_does_not_notify_is_not_seen_by_feeds() {
    use std::sync::mpsc;
    use std::time::Duration;
    use thingkit_cluster::RegistryFeed;

    let schema = fresh_schema();
    let quiet = PostgresConfig {
        registry_notify: false,
        ..config(&schema)
    };
    let mut store = PgRegistryStore::open(&quiet).expect("open");
    let (tx, rx) = mpsc::channel();
    let _feed = RegistryFeed::start(&config(&schema), move |change| {
        let _ = tx.send(change);
    })
    .expect("feed");
    store
        .commit(&[StoreOp::Put {
            key: "thing/a".into(),
            value: b"1".to_vec(),
        }])
        .expect("commit");
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
}

/// The cluster error inside a registry error.
fn cluster_error(e: &thingkit_provision::Error) -> &Error {
    match e {
        thingkit_provision::Error::Store(source) => source
            .downcast_ref::<Error>()
            .expect("a thingkit-cluster error inside"),
        other => panic!("expected a store error, got {other:?}"),
    }
}

#[test]
#[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
fn a_blocked_call_ends_at_the_call_timeout_and_a_blocked_statement_at_the_statement_timeout() {
    use std::time::{Duration, Instant};

    let schema = fresh_schema();
    let mut store = PgRegistryStore::open(&PostgresConfig {
        call_timeout: Duration::from_millis(300),
        statement_timeout: Duration::from_secs(2),
        ..config(&schema)
    })
    .expect("open");
    store
        .commit(&[StoreOp::Put {
            key: "k".into(),
            value: b"v".to_vec(),
        }])
        .expect("commit");
    let mut locker = postgres::Client::connect(&url(), postgres::NoTls).expect("connect");
    let mut tx = locker.transaction().expect("begin");
    tx.batch_execute(&format!(
        "LOCK TABLE {schema}.registry IN ACCESS EXCLUSIVE MODE"
    ))
    .expect("lock");

    let started = Instant::now();
    let err = store.get("k").expect_err("blocked by the lock");
    assert!(
        matches!(
            cluster_error(&err),
            Error::Timeout {
                operation: "get",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // The server cancels the blocked statement after statement_timeout: with the lock still
    // held, a store with a longer call timeout gets PostgreSQL's error, not a hang.
    let patient = PgRegistryStore::open(&PostgresConfig {
        call_timeout: Duration::from_secs(10),
        statement_timeout: Duration::from_millis(300),
        ..config(&schema)
    })
    .expect("open");
    let err = patient
        .get("k")
        .expect_err("cancelled by statement_timeout");
    match cluster_error(&err) {
        Error::Postgres { code, .. } => assert_eq!(code.as_deref(), Some("57014"), "{err}"),
        other => panic!("expected PostgreSQL's query_canceled, got {other}"),
    }

    tx.rollback().expect("unlock");
    // The queued call behind the timed-out one runs; the store is usable again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match store.get("k") {
            Ok(v) => {
                assert_eq!(v, Some(b"v".to_vec()));
                break;
            }
            Err(e) if Instant::now() < deadline => {
                assert!(matches!(cluster_error(&e), Error::Timeout { .. }), "{e}");
            }
            Err(e) => panic!("the store did not recover after the lock: {e}"),
        }
    }
}

#[cfg(feature = "sessions")]
#[test]
#[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
fn router_store_passes_the_conformance_suite() {
    thingkit_broker::conformance::run(|| {
        Box::new(PgRouterStore::open(&config(&fresh_schema()), "server-a").expect("open"))
    });
}

#[cfg(feature = "sessions")]
mod sessions {
    use std::num::NonZeroU32;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use thingkit_broker::{
        GrantedSubscription, RouterStore, SessionExpiry, SessionRecord, StoreOp, StoredDelivery,
        StoredMessage,
    };
    use thingkit_cluster::PgRouterStore;
    use thingkit_mqtt::{QoS, TopicFilter, TopicName};

    use super::{config, fresh_schema};

    fn put(id: &str, payload: &'static [u8]) -> Vec<StoreOp> {
        let client_id: Arc<str> = id.into();
        vec![
            StoreOp::PutSession {
                client_id: client_id.clone(),
                record: SessionRecord {
                    expiry: SessionExpiry::After(Duration::from_secs(3600)),
                    deadline_unix_ms: Some(5_000),
                },
            },
            StoreOp::PutSubscription {
                client_id: client_id.clone(),
                filter: TopicFilter::new("q/#").unwrap(),
                granted: GrantedSubscription {
                    qos: QoS::AtLeastOnce,
                    no_local: false,
                    retain_as_published: true,
                    id: NonZeroU32::new(9),
                },
            },
            StoreOp::PushQueued {
                client_id,
                delivery: StoredDelivery {
                    message: Arc::new(StoredMessage {
                        topic: TopicName::new("q/1").unwrap(),
                        payload: Bytes::from_static(payload),
                        qos: QoS::AtLeastOnce,
                        retain: false,
                        properties: Default::default(),
                        from: None,
                        received_unix_ms: 1_000,
                    }),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    subscription_id: NonZeroU32::new(9),
                },
            },
            StoreOp::PutRetained {
                message: Arc::new(StoredMessage {
                    topic: TopicName::new(&format!("r/{id}")).unwrap(),
                    payload: Bytes::from_static(b"kept"),
                    qos: QoS::AtMostOnce,
                    retain: true,
                    properties: Default::default(),
                    from: None,
                    received_unix_ms: 1_000,
                }),
            },
        ]
    }

    #[test]
    #[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
    fn each_server_loads_its_own_sessions_and_every_retained_message() {
        let schema = fresh_schema();
        let mut a = PgRouterStore::open(&config(&schema), "a").expect("open");
        let mut b = PgRouterStore::open(&config(&schema), "b").expect("open");
        a.apply(&put("sensor-a", b"for a")).expect("apply");
        b.apply(&put("sensor-b", b"for b")).expect("apply");
        let on_a = a.load().expect("load");
        assert_eq!(on_a.sessions.len(), 1);
        assert_eq!(&*on_a.sessions[0].client_id, "sensor-a");
        assert_eq!(on_a.retained.len(), 2);
        assert_eq!(b.owner_of("sensor-a").unwrap().as_deref(), Some("a"));
        assert_eq!(b.owner_of("nobody").unwrap(), None);
    }

    #[test]
    #[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
    fn a_claimed_session_moves_with_its_subscriptions_and_queue() {
        let schema = fresh_schema();
        let mut a = PgRouterStore::open(&config(&schema), "a").expect("open");
        let b = PgRouterStore::open(&config(&schema), "b").expect("open");
        a.apply(&put("sensor-2", b"queued on a")).expect("apply");
        let claimed = b.claim("sensor-2").expect("claim").expect("a session");
        assert_eq!(claimed.subscriptions.len(), 1);
        assert_eq!(claimed.subscriptions[0].1.id, NonZeroU32::new(9));
        assert_eq!(claimed.queue.len(), 1);
        assert_eq!(&claimed.queue[0].message.payload[..], b"queued on a");
        assert_eq!(claimed.record.deadline_unix_ms, Some(5_000));
        assert_eq!(b.owner_of("sensor-2").unwrap().as_deref(), Some("b"));
        assert!(a.load().expect("load").sessions.is_empty());
        assert_eq!(b.load().expect("load").sessions.len(), 1);
        assert!(b.claim("nobody").expect("claim").is_none());
    }
}
