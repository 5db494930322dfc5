//! N threads recording M messages each produce exact totals: no lost updates.

use std::sync::Arc;

use thingkit_meter::limiter::{Action, Limits, Nanos};
use thingkit_meter::meter::{ConnectionTable, Counts, Granularity, Meter};
use thingkit_meter::policy::{MeteringPolicy, PacketKind};

const THREADS: u64 = 8;
const MESSAGES: u64 = 20_000;

fn unlimited() -> Limits {
    Limits {
        messages: None,
        bytes: None,
        message_action: Action::Drop,
        byte_action: Action::Drop,
    }
}

#[test]
fn threads_sharing_one_connection_lose_no_updates() {
    let table = Arc::new(ConnectionTable::new(MeteringPolicy::aws(), &unlimited(), 16).unwrap());
    let meter = Arc::new(Meter::new("n", MeteringPolicy::aws(), Granularity::Day, 64).unwrap());
    let conn = Arc::new(table.connect("acme", "d", 0).unwrap());
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (table, meter, conn) = (table.clone(), meter.clone(), conn.clone());
            std::thread::spawn(move || {
                for i in 0..MESSAGES {
                    // 6,000 bytes = 2 AWS units.
                    assert!(
                        table
                            .record_publish(&conn, 6000, false, Nanos(i))
                            .unwrap()
                            .is_allowed()
                    );
                    table.record_delivery(&conn, 10).unwrap();
                    // Flush concurrently with recording: every count lands in exactly one flush.
                    if i % 1000 == t {
                        table.flush(&conn, &meter, 0).unwrap();
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    table.flush(&conn, &meter, 0).unwrap();
    let totals = meter.totals();
    let get = |kind| {
        *totals
            .iter()
            .find(|(k, _)| k.kind == kind)
            .map(|(_, c)| c)
            .unwrap()
    };
    let n = THREADS * MESSAGES;
    assert_eq!(
        get(PacketKind::Publish),
        Counts {
            messages: n,
            units: 2 * n,
            bytes: 6000 * n,
            minutes: 0
        }
    );
    assert_eq!(get(PacketKind::Receive).messages, n);
    assert_eq!(get(PacketKind::Receive).units, n);
}

#[test]
fn threads_on_separate_connections_and_the_meter_lose_no_updates() {
    let table = Arc::new(ConnectionTable::new(MeteringPolicy::aws(), &unlimited(), 64).unwrap());
    let meter = Arc::new(Meter::new("n", MeteringPolicy::aws(), Granularity::Day, 64).unwrap());
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (table, meter) = (table.clone(), meter.clone());
            std::thread::spawn(move || {
                let conn = table.connect("acme", &format!("d{t}"), 0).unwrap();
                for i in 0..MESSAGES {
                    table.record_publish(&conn, 1, false, Nanos(i)).unwrap();
                    // Also hit the shared meter directly with a rare kind.
                    if i % 100 == 0 {
                        let one = Counts {
                            messages: 1,
                            units: 1,
                            ..Counts::default()
                        };
                        meter
                            .add("acme", "shared", PacketKind::Shadow, 0, &one)
                            .unwrap();
                    }
                }
                table.disconnect(conn, &meter, 0).unwrap();
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let totals = meter.totals();
    let publishes: u64 = totals
        .iter()
        .filter(|(k, _)| k.kind == PacketKind::Publish)
        .map(|(_, c)| c.messages)
        .sum();
    assert_eq!(publishes, THREADS * MESSAGES);
    let shadow: u64 = totals
        .iter()
        .filter(|(k, _)| k.kind == PacketKind::Shadow)
        .map(|(_, c)| c.messages)
        .sum();
    assert_eq!(shadow, THREADS * MESSAGES / 100);
    assert!(table.is_empty());
}
