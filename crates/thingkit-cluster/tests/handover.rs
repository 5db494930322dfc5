//! [`NatsHandover`] against a real PostgreSQL and nats-server, without a broker: what a server
//! does when a client connects whose session another server owns.
//!
//! Ignored by default; `.ci/run` runs them (`cargo test -p thingkit-cluster -- --ignored`):
//!
//! ```text
//! .ci/postgres start; .ci/nats start
//! THINGKIT_TEST_POSTGRES=$(.ci/postgres url) THINGKIT_TEST_NATS=$(.ci/nats url) \
//!     cargo test -p thingkit-cluster --test handover -- --ignored
//! ```
#![cfg(feature = "nats")]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use thingkit_broker::{
    Acquire, GrantedSubscription, Handover, RouterStore, SessionExpiry, SessionRecord, StoreOp,
};
use thingkit_cluster::handover::NatsHandover;
use thingkit_cluster::nats::NatsConfig;
use thingkit_cluster::{PgRouterStore, PostgresConfig};
use thingkit_mqtt::{QoS, TopicFilter};

fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: these tests need PostgreSQL and nats-server. Run `.ci/postgres \
             start; .ci/nats start` and set THINGKIT_TEST_POSTGRES=$(.ci/postgres url) \
             THINGKIT_TEST_NATS=$(.ci/nats url)"
        ),
    }
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// A persistent session of `client_id` owned by `owner`, subscribed to `q/#`.
fn owned_session(pg: &PostgresConfig, owner: &str, client_id: &str) {
    let mut store = PgRouterStore::open(pg, owner).expect("open");
    let id: Arc<str> = client_id.into();
    store
        .apply(&[
            StoreOp::PutSession {
                client_id: id.clone(),
                record: SessionRecord {
                    expiry: SessionExpiry::Never,
                    deadline_unix_ms: None,
                },
            },
            StoreOp::PutSubscription {
                client_id: id,
                filter: TopicFilter::new("q/#").unwrap(),
                granted: GrantedSubscription {
                    qos: QoS::AtLeastOnce,
                    no_local: false,
                    retain_as_published: false,
                    id: None,
                },
            },
        ])
        .expect("apply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (THINGKIT_TEST_POSTGRES) and nats-server (THINGKIT_TEST_NATS)"]
async fn a_silent_owner_is_waited_for_then_its_session_is_claimed() {
    let pg = PostgresConfig::new(env("THINGKIT_TEST_POSTGRES")).with_schema(unique("tk_hand"));
    let cluster = unique("ho");
    owned_session(&pg, "server-a", "sensor-9");
    // server-a is connected to NATS and hears the takeover, but never answers (hung).
    let url = env("THINGKIT_TEST_NATS");
    let silent = async_nats::connect(url.as_str()).await.expect("nats");
    let mut heard = silent
        .subscribe(format!("thingkit-ctl.{cluster}.takeover"))
        .await
        .expect("subscribe");
    silent.flush().await.unwrap();

    let config = NatsConfig::new(&url, &cluster, "server-b").unwrap();
    let store = PgRouterStore::open(&pg, "server-b").expect("open");
    let handover = NatsHandover::connect(&config, Some(store.clone()))
        .await
        .expect("connect")
        .with_release_timeout(Duration::from_millis(700));
    let started = Instant::now();
    let claimed = handover
        .acquire(Acquire::new("sensor-9".into(), false, false))
        .await
        .expect("acquire")
        .expect("the session moved");
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert_eq!(claimed.subscriptions.len(), 1);
    assert_eq!(
        store.owner_of("sensor-9").unwrap().as_deref(),
        Some("server-b")
    );
    // What server-a heard: a release of sensor-9 addressed to it, from server-b.
    let message = tokio::time::timeout(Duration::from_secs(1), heard.next())
        .await
        .expect("the takeover reached server-a")
        .expect("a message");
    let takeover: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(takeover["client_id"], "sensor-9");
    assert_eq!(takeover["server"], "server-b");
    assert_eq!(takeover["release"], true);
    assert_eq!(takeover["owner"], "server-a");
    assert!(message.reply.is_some(), "a release asks for an answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (THINGKIT_TEST_POSTGRES) and nats-server (THINGKIT_TEST_NATS)"]
async fn a_client_without_a_stored_session_only_announces_its_connect() {
    let pg = PostgresConfig::new(env("THINGKIT_TEST_POSTGRES")).with_schema(unique("tk_hand"));
    let cluster = unique("ho");
    let url = env("THINGKIT_TEST_NATS");
    let other = async_nats::connect(url.as_str()).await.expect("nats");
    let mut heard = other
        .subscribe(format!("thingkit-ctl.{cluster}.takeover"))
        .await
        .expect("subscribe");
    other.flush().await.unwrap();
    let config = NatsConfig::new(&url, &cluster, "server-b").unwrap();
    let store = PgRouterStore::open(&pg, "server-b").expect("open");
    let handover = NatsHandover::connect(&config, Some(store))
        .await
        .expect("connect");
    let claimed = handover
        .acquire(Acquire::new("new-device".into(), true, false))
        .await
        .expect("acquire");
    assert!(claimed.is_none());
    let message = tokio::time::timeout(Duration::from_secs(1), heard.next())
        .await
        .expect("the takeover reached the other server")
        .expect("a message");
    let takeover: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(takeover["client_id"], "new-device");
    assert_eq!(takeover["owner"], serde_json::Value::Null);
    assert!(message.reply.is_none());
}
