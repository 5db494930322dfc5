//! PostgreSQL crashes under load: no acknowledged registry batch is lost, and the store and a
//! registry feed reconnect by themselves (the feed then reports a resync).
//!
//! Ignored by default. It restarts the server with `.ci/postgres restart` (an immediate-mode
//! stop: no checkpoint, backends killed, WAL recovery at start), so the server in
//! `THINGKIT_TEST_POSTGRES` must be the one `.ci/postgres` runs:
//!
//! ```text
//! .ci/postgres start
//! THINGKIT_TEST_POSTGRES=$(.ci/postgres url) cargo test -p thingkit-cluster --test crash -- --ignored --nocapture
//! ```

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use thingkit_cluster::{PgRegistryStore, PostgresConfig, RegistryChange, RegistryFeed};
use thingkit_provision::{RegistryStore, StoreOp};

const ENV: &str = "THINGKIT_TEST_POSTGRES";

fn url() -> String {
    match std::env::var(ENV) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{ENV} is not set: this test needs the PostgreSQL of `.ci/postgres start`; run \
             `{ENV}=$(.ci/postgres url) cargo test -p thingkit-cluster --test crash -- --ignored`"
        ),
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.ci/postgres")
}

fn batch(i: usize) -> Vec<StoreOp> {
    let value = format!("batch {i}").into_bytes();
    vec![
        StoreOp::Put {
            key: format!("batch/{i:08}/a"),
            value: value.clone(),
        },
        StoreOp::Put {
            key: format!("batch/{i:08}/b"),
            value,
        },
    ]
}

#[test]
#[ignore = "needs the PostgreSQL of .ci/postgres: THINGKIT_TEST_POSTGRES"]
fn acknowledged_batches_survive_a_postgresql_crash_restart() {
    let schema = format!(
        "tk_crash_{}_{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let config = PostgresConfig::new(url()).with_schema(&schema);
    let mut store = PgRegistryStore::open(&config).expect("open");
    let (feed_tx, feed_rx) = std::sync::mpsc::channel();
    let feed = RegistryFeed::start(&config, move |change| {
        let _ = feed_tx.send(change);
    })
    .expect("feed");

    let restarted = Arc::new(AtomicBool::new(false));
    let acked_after_restart = Arc::new(AtomicUsize::new(0));
    let writer = {
        let restarted = Arc::clone(&restarted);
        let acked_after_restart = Arc::clone(&acked_after_restart);
        std::thread::spawn(move || {
            let mut acknowledged = Vec::new();
            let mut refused = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut i = 0;
            // Write until the restart is over and 200 batches were acknowledged after it.
            while acked_after_restart.load(Ordering::SeqCst) < 200 && Instant::now() < deadline {
                let after = restarted.load(Ordering::SeqCst);
                match store.commit(&batch(i)) {
                    Ok(()) => {
                        acknowledged.push(i);
                        if after {
                            acked_after_restart.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Err(_) => {
                        refused.push(i);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                i += 1;
            }
            (acknowledged, refused)
        })
    };

    std::thread::sleep(Duration::from_secs(1));
    let status = Command::new("bash")
        .arg(script())
        .arg("restart")
        .status()
        .expect("run .ci/postgres restart");
    assert!(status.success(), ".ci/postgres restart failed");
    restarted.store(true, Ordering::SeqCst);

    let (acknowledged, refused) = writer.join().expect("writer thread");
    assert!(
        acked_after_restart.load(Ordering::SeqCst) >= 200,
        "the store did not recover after the restart: {} batches acknowledged after it, {} refused in all",
        acked_after_restart.load(Ordering::SeqCst),
        refused.len()
    );

    let reader = PgRegistryStore::open(&config).expect("reopen");
    let mut present = std::collections::BTreeSet::new();
    reader
        .for_each(&mut |key, _| {
            if let Some(i) = key
                .strip_prefix("batch/")
                .and_then(|rest| rest.get(..8))
                .and_then(|n| n.parse::<usize>().ok())
            {
                present.insert((i, key.ends_with("/a")));
            }
            Ok(())
        })
        .expect("for_each");
    let lost: Vec<usize> = acknowledged
        .iter()
        .copied()
        .filter(|i| !present.contains(&(*i, true)) || !present.contains(&(*i, false)))
        .collect();
    let refused_but_applied = refused
        .iter()
        .filter(|i| present.contains(&(**i, true)))
        .count();
    let torn = refused
        .iter()
        .filter(|i| present.contains(&(**i, true)) != present.contains(&(**i, false)))
        .count();
    println!(
        "postgres crash restart: acknowledged {}, refused {} (of which applied anyway {}), lost {}",
        acknowledged.len(),
        refused.len(),
        refused_but_applied,
        lost.len()
    );
    // The feed reconnected by itself and said it may have missed commits.
    let mut resync = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !resync && Instant::now() < deadline {
        resync = matches!(
            feed_rx.recv_timeout(Duration::from_millis(500)),
            Ok(RegistryChange::Resync)
        );
    }
    drop(feed);
    assert!(resync, "the feed did not report a resync after the restart");
    assert!(
        !refused.is_empty(),
        "no batch was refused: the restart did not happen under load"
    );
    assert_eq!(lost, Vec::<usize>::new(), "acknowledged batches were lost");
    assert_eq!(torn, 0, "a batch was applied in part");
}
