//! PostgreSQL restarted under load (issue #20): two `thingkit serve` on one PostgreSQL take
//! shadow updates through their APIs while PostgreSQL is crash-restarted (immediate mode, then
//! WAL recovery); the servers reconnect by themselves and every update they acknowledged is
//! there afterwards, read through the other server.
//!
//! In a test binary of its own: the restart would break any other test using the same
//! PostgreSQL at the time. Ignored by `cargo test`; `.ci/run` starts PostgreSQL
//! (`.ci/postgres start`) and runs it with `THINGKIT_TEST_POSTGRES=$(.ci/postgres url)`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::cluster::*;
use common::*;

/// `thingkit shadow ARGS` against the API of the server listening on `api_port`.
fn shadow(
    dir: &Path,
    api_port: u16,
    key: &(String, String),
    args: &[&str],
) -> std::process::Output {
    let endpoint = format!("https://localhost:{api_port}");
    let ca = dir.join("ca/ca.pem");
    let mut all = vec![
        "shadow",
        args[0],
        "--endpoint",
        &endpoint,
        "--ca-bundle",
        arg(&ca),
        "--region",
        "eu-central-1",
    ];
    all.extend_from_slice(&args[1..]);
    thingkit_with_key(&all, Some((&key.0, &key.1)), None)
}

#[test]
#[ignore = "needs PostgreSQL (THINGKIT_TEST_POSTGRES) and .ci/postgres; .ci/run runs it"]
#[cfg(unix)]
fn acknowledged_shadow_updates_survive_a_postgresql_crash_restart_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared {
        postgres: Some((postgres_url(), fresh_schema("restart"))),
        ..Shared::default()
    };
    let configs = cluster_dir(dir.path(), &["sensor-1"], &shared, 2);
    let servers = [Server::start(&configs[0]), Server::start(&configs[1])];
    let ports = [servers[0].api_port(), servers[1].api_port()];
    let keys = [access_key(&configs[0]), access_key(&configs[1])];

    // The load: shadow updates of `load-<i>`, alternating between the servers, each one
    // acknowledged (exit 0, the accepted document printed) or refused.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (dir, keys, stop) = (dir.path().to_path_buf(), keys.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut outcomes = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let thing = format!("load-{i}");
                let payload = format!(r#"{{"state":{{"reported":{{"i":{i}}}}}}}"#);
                let s = i % 2;
                let out = shadow(
                    &dir,
                    ports[s],
                    &keys[s],
                    &["update", "--thing", &thing, "--payload", &payload],
                );
                outcomes.push((i, out.status.success(), Instant::now()));
                i += 1;
            }
            outcomes
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/postgres");
    let restarted = std::process::Command::new(&script)
        .arg("restart")
        .status()
        .expect(".ci/postgres runs");
    assert!(restarted.success(), ".ci/postgres restart failed");
    let back = Instant::now();
    // Load goes on until the servers have acknowledged updates again for three seconds.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    let outcomes = load.join().expect("the load thread ends");

    let acknowledged: Vec<usize> = outcomes
        .iter()
        .filter(|(_, ok, _)| *ok)
        .map(|(i, _, _)| *i)
        .collect();
    let refused = outcomes.len() - acknowledged.len();
    assert!(
        outcomes.iter().any(|(_, ok, at)| *ok && *at > back),
        "no update was acknowledged after PostgreSQL came back: the servers did not reconnect"
    );
    // Every acknowledged update is there, read through the other server than the one that took
    // it.
    let mut lost = Vec::new();
    for &i in &acknowledged {
        let s = (i + 1) % 2;
        let out = shadow(
            dir.path(),
            ports[s],
            &keys[s],
            &["get", "--thing", &format!("load-{i}")],
        );
        let text = stdout(&out);
        if !out.status.success() || !text.contains(&format!(r#""i":{i}"#)) {
            lost.push(i);
        }
    }
    println!(
        "PostgreSQL crash-restarted under load: {} updates acknowledged, {refused} refused, {} lost",
        acknowledged.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    for server in servers {
        assert!(server.terminate().success());
    }
}
