//! Crash safety of the redb store: a writer process is SIGKILLed mid-batch, the registry is
//! reopened, and it must hold every acknowledged batch, completely, and no partial batch.
#![cfg(feature = "redb-store")]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use thingkit_provision::RedbStore;
use thingkit_provision::{Registry, RegistryLimits};

const CHILD_ENV: &str = "THINGKIT_PROVISION_CRASH_WRITER_DB";
const THINGS_PER_BATCH: usize = 40;

fn thing_name(batch: usize, i: usize) -> String {
    format!("b{batch}-t{i}")
}

/// Counts the complete batches, asserting that every batch is complete or absent and that the
/// complete ones form a prefix 0..n.
fn complete_batches(r: &Registry<RedbStore>) -> usize {
    let mut n = 0;
    loop {
        let present = (0..THINGS_PER_BATCH)
            .filter(|&i| r.thing(&thing_name(n, i)).is_some())
            .count();
        if present == 0 {
            break;
        }
        assert_eq!(present, THINGS_PER_BATCH, "batch {n} is partial");
        assert_eq!(
            r.thing(&thing_name(n, 0)).unwrap().groups.len(),
            1,
            "batch {n}: membership lost"
        );
        n += 1;
    }
    let total = r.thing_count();
    assert_eq!(
        total,
        n * THINGS_PER_BATCH,
        "things outside the complete prefix"
    );
    n
}

/// Not a test of its own: the body of the writer process that `registry_survives_sigkill...`
/// starts (it does nothing unless the environment variable names a database).
#[test]
fn crash_writer_process() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut r = Registry::open(RedbStore::open(&path).unwrap(), RegistryLimits::default()).unwrap();
    if r.thing_group("fleet").is_none() {
        r.create_thing_group("fleet", None).unwrap();
    }
    let mut batch = complete_batches(&r);
    loop {
        r.batch(|r| {
            for i in 0..THINGS_PER_BATCH {
                let name = thing_name(batch, i);
                r.create_thing(&name, None, &[("batch", &batch.to_string())])?;
                r.add_thing_to_group(&name, "fleet")?;
            }
            Ok(())
        })
        .unwrap();
        // The batch is acknowledged: tell the parent.
        println!("ACK {batch}");
        batch += 1;
    }
}

#[test]
fn registry_survives_sigkill_mid_batch_with_every_acknowledged_batch() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("registry.redb");
    let exe = std::env::current_exe().unwrap();
    let mut last_acked: Option<usize> = None;
    for round in 0..3 {
        let mut child = Command::new(&exe)
            .args([
                "crash_writer_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &db)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut acks = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("ACK ") {
                last_acked = Some(n.parse().unwrap());
                acks += 1;
                // Kill at a different point in each round, while the next batch is in flight.
                if acks == 15 + 7 * round {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let r = Registry::open(RedbStore::open(&db).unwrap(), RegistryLimits::default()).unwrap();
        let complete = complete_batches(&r);
        let acked = last_acked.expect("the writer acknowledged batches");
        assert!(
            complete > acked,
            "round {round}: batch {acked} was acknowledged but only {complete} batches survived"
        );
    }
}
