//! The control plane's state on PostgreSQL against a real server: the topic-rule store passes
//! the API's `check_store`; templates, access keys and usage written through one server's
//! store are read through another's (job templates at once, without a feed); every rule,
//! template and key write reaches a `ControlFeed` within a second.
//!
//! Ignored by default; run with a server (see `.ci/postgres`):
//!
//! ```text
//! .ci/postgres start
//! THINGKIT_TEST_POSTGRES=$(.ci/postgres url) cargo test -p thingkit-cluster --test control -- --ignored
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use thingkit_api::keys::KeyStore;
use thingkit_api::templates::{StoredTemplate, TemplateStore, TemplateStoreError, TemplateType};
use thingkit_api::topic_rule::{TopicRuleStore, check_store};
use thingkit_cluster::{ControlChange, ControlFeed, PgControlStore, PgTopicRuleStore};
use thingkit_meter::{Counts, PacketKind, UsageKey};

mod common;
use common::config;

/// A schema name no other test or run uses.
fn fresh_schema() -> String {
    common::fresh_schema("tk_ctl")
}

/// A feed on `schema` and what it reports, with when.
fn feed(schema: &str) -> (ControlFeed, mpsc::Receiver<(Instant, ControlChange)>) {
    let (tx, rx) = mpsc::channel();
    let feed = ControlFeed::start(&config(schema), move |change| {
        let _ = tx.send((Instant::now(), change));
    })
    .expect("feed");
    (feed, rx)
}

/// The next change, which must come within a second of `since`; prints the delay.
fn next_change(rx: &mpsc::Receiver<(Instant, ControlChange)>, since: Instant) -> ControlChange {
    let (seen, change) = rx
        .recv_timeout(Duration::from_secs(1))
        .expect("the feed saw the commit within one second");
    println!(
        "control feed: {change:?} seen {:?} after the write was acknowledged",
        seen.saturating_duration_since(since)
    );
    change
}

#[test]
#[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
fn topic_rule_store_passes_the_store_suite_and_notifies_each_change() {
    let schema = fresh_schema();
    let (_feed, rx) = feed(&schema);
    let store = PgTopicRuleStore::open(&config(&schema)).expect("open");
    check_store(&store);
    // check_store put b, put a, put b, removed b twice (the second found nothing).
    let mut seen = Vec::new();
    while let Ok((_, change)) = rx.recv_timeout(Duration::from_secs(1)) {
        seen.push(change);
    }
    let rule = |n: &str| ControlChange::TopicRule(n.into());
    assert_eq!(seen, [rule("b"), rule("a"), rule("b"), rule("b")]);

    // Another server's store (another connection) reads what this one wrote.
    let other = PgTopicRuleStore::open(&config(&schema)).expect("open");
    let names: Vec<String> = other
        .list()
        .expect("list")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["a"]);
    let removed_at = Instant::now();
    assert!(other.remove("a").expect("remove"));
    assert_eq!(next_change(&rx, removed_at), rule("a"));
}

fn template(name: &str, enabled: bool) -> StoredTemplate {
    StoredTemplate {
        name: name.into(),
        description: Some("made on A".into()),
        body: "{}".into(),
        enabled,
        provisioning_role_arn: "arn:aws:iam::123456789012:role/provisioning".into(),
        kind: TemplateType::FleetProvisioning,
        created_at: 1_700_000_000,
        modified_at: 1_700_000_000,
    }
}

#[test]
#[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
fn job_templates_made_through_one_server_are_read_through_another_at_once() {
    use thingkit_api::job_store::{JobStore, StoredJobTemplate};
    let schema = fresh_schema();
    let a = PgControlStore::open(&config(&schema), "a").expect("open");
    let b = PgControlStore::open(&config(&schema), "b").expect("open");
    let on_a = JobStore::with_backend(Arc::new(a.job_templates()));
    let on_b = JobStore::with_backend(Arc::new(b.job_templates()));
    let template = |id: &str, description: &str| StoredJobTemplate {
        id: id.into(),
        description: description.into(),
        document: r#"{"op":"update"}"#.into(),
        rollout: Some(serde_json::json!({"maximumPerMinute": 10})),
        created_at: 1_764_900_000,
        ..StoredJobTemplate::default()
    };
    on_a.update(|r| {
        r.templates.insert("ota".into(), template("ota", "first"));
        r.templates
            .insert("reboot".into(), template("reboot", "second"));
        Ok::<_, TemplateStoreError>(())
    })
    .expect("created");
    assert_eq!(
        on_b.template("ota").expect("read"),
        Some(template("ota", "first"))
    );
    assert_eq!(on_b.snapshot().expect("read").templates.len(), 2);
    assert_eq!(on_b.template("absent").expect("read"), None);
    // A change through B (refused ones write nothing) is A's at once.
    let refused: Result<(), thingkit_api::ApiError> = on_b.update(|r| {
        r.templates.clear();
        Err(thingkit_api::ApiError::invalid_request("refused"))
    });
    assert!(refused.is_err());
    on_b.update(|r| {
        r.templates.remove("reboot");
        Ok::<_, TemplateStoreError>(())
    })
    .expect("deleted");
    let left: Vec<String> = on_a
        .snapshot()
        .expect("read")
        .templates
        .into_keys()
        .collect();
    assert_eq!(left, ["ota"]);
    assert_eq!(on_a.template("reboot").expect("read"), None);
}

#[test]
#[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
fn templates_made_through_one_server_reach_another() {
    let schema = fresh_schema();
    let (_feed, rx) = feed(&schema);
    let a = PgControlStore::open(&config(&schema), "a").expect("open");
    let b = PgControlStore::open(&config(&schema), "b").expect("open");
    let on_a = TemplateStore::with_backend(Arc::new(a.templates())).expect("a's templates");
    let on_b = TemplateStore::with_backend(Arc::new(b.templates())).expect("b's templates");

    let created = Instant::now();
    on_a.update(|all| {
        all.insert("t1".into(), template("t1", true));
        all.insert("t2".into(), template("t2", false));
        Ok::<_, TemplateStoreError>(())
    })
    .expect("created");
    let mut names = vec![next_change(&rx, created), next_change(&rx, created)];
    names.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        names,
        [
            ControlChange::Template("t1".into()),
            ControlChange::Template("t2".into())
        ]
    );
    let mut changed = on_b.reload(None).expect("reload");
    changed.sort();
    assert_eq!(changed, ["t1", "t2"]);
    assert_eq!(on_b.get("t1"), Some(template("t1", true)));

    // B deletes t1 although A's copy still has it; A catches up on reload.
    let deleted = Instant::now();
    on_b.update(|all| {
        all.remove("t1");
        Ok::<_, TemplateStoreError>(())
    })
    .expect("deleted");
    assert_eq!(
        next_change(&rx, deleted),
        ControlChange::Template("t1".into())
    );
    assert_eq!(on_a.reload(None).expect("reload"), ["t1"]);
    assert!(on_a.get("t1").is_none());
    let reopened = TemplateStore::with_backend(Arc::new(
        PgControlStore::open(&config(&schema), "c")
            .expect("open")
            .templates(),
    ))
    .expect("reopened");
    assert_eq!(reopened.list(), [template("t2", false)]);
}

#[test]
#[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
fn an_access_key_made_through_one_server_signs_on_another_until_it_is_deleted() {
    let schema = fresh_schema();
    let (_feed, rx) = feed(&schema);
    let a = PgControlStore::open(&config(&schema), "a").expect("open");
    let b = PgControlStore::open(&config(&schema), "b").expect("open");
    let keys_a = KeyStore::with_backend(Arc::new(a.access_keys())).expect("a's keys");
    let keys_b = KeyStore::with_backend(Arc::new(b.access_keys())).expect("b's keys");

    let created = Instant::now();
    let key = keys_a.create(None, SystemTime::now()).expect("created");
    assert_eq!(
        next_change(&rx, created),
        ControlChange::AccessKey(key.access_key_id.clone())
    );
    // B had never seen it: the lookup reads it from PostgreSQL.
    assert_eq!(
        keys_b.secret(&key.access_key_id),
        Some(key.secret_access_key.clone())
    );
    assert_eq!(keys_b.list(), std::slice::from_ref(&key));

    let deleted = Instant::now();
    assert!(keys_a.delete(&key.access_key_id).expect("deleted"));
    let change = next_change(&rx, deleted);
    assert_eq!(change, ControlChange::AccessKey(key.access_key_id.clone()));
    // What serve does with the change: B forgets its copy, and the key no longer signs.
    keys_b.forget(&key.access_key_id);
    assert!(keys_b.secret(&key.access_key_id).is_none());
    assert!(!keys_a.delete(&key.access_key_id).expect("a second delete"));
}

fn usage(account: &str, device: &str, kind: PacketKind, messages: u64) -> (UsageKey, Counts) {
    (
        UsageKey {
            account: account.into(),
            device: device.into(),
            kind,
            window: 1_764_115_200,
        },
        Counts {
            messages,
            units: messages,
            bytes: messages * 10,
            minutes: 0,
        },
    )
}

#[test]
#[ignore = "needs PostgreSQL: THINGKIT_TEST_POSTGRES"]
fn the_usage_ledger_sums_the_windows_of_every_server() {
    let schema = fresh_schema();
    let a = PgControlStore::open(&config(&schema), "a")
        .expect("open")
        .usage();
    let b = PgControlStore::open(&config(&schema), "b")
        .expect("open")
        .usage();
    assert!(a.totals().expect("totals").is_empty());
    a.append(&BTreeMap::from([
        usage("acme", "d1", PacketKind::Publish, 2),
        usage("acme", "d2", PacketKind::Receive, 1),
    ]))
    .expect("a appends");
    b.append(&BTreeMap::from([usage(
        "acme",
        "d1",
        PacketKind::Publish,
        3,
    )]))
    .expect("b appends");
    // A late count for a window a closed before: another row, added up.
    a.append(&BTreeMap::from([usage(
        "zeta",
        "d9",
        PacketKind::Shadow,
        1,
    )]))
    .expect("a appends again");
    a.append(&BTreeMap::new()).expect("nothing to append");

    let totals = b.totals().expect("totals");
    assert_eq!(
        totals,
        BTreeMap::from([
            usage("acme", "d1", PacketKind::Publish, 5),
            usage("acme", "d2", PacketKind::Receive, 1),
            usage("zeta", "d9", PacketKind::Shadow, 1),
        ])
    );
}
