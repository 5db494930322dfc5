//! N threads recording M messages each produce exact totals: no lost updates.

use std::sync::Arc;

use thingkit_meter::{ConnectionTable, Counts, Granularity, Meter};
use thingkit_meter::{LimitAction, Nanos, RateLimits};
use thingkit_meter::{MeteringPolicy, PacketKind};

const THREADS: u64 = 8;
const MESSAGES: u64 = 20_000;

fn unlimited() -> RateLimits {
    RateLimits::default()
        .with_messages(None)
        .with_bytes(None)
        .with_message_action(LimitAction::Drop)
        .with_byte_action(LimitAction::Drop)
}

#[test]
fn threads_delivering_to_one_connection_lose_no_updates() {
    // Deliveries to one subscriber come from many publishers' threads at once; the subscriber's
    // own task flushes concurrently. Every delivery must land in exactly one flush.
    let table = Arc::new(ConnectionTable::new(MeteringPolicy::aws(), &unlimited(), 16).unwrap());
    let meter = Arc::new(Meter::new("n", MeteringPolicy::aws(), Granularity::Day, 64).unwrap());
    let subscriber = Arc::new(std::sync::RwLock::new(table.connect("acme", 0).unwrap()));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (table, meter, subscriber) = (table.clone(), meter.clone(), subscriber.clone());
            std::thread::spawn(move || {
                // Each thread also owns a publishing connection of its own.
                let device = format!("pub{t}");
                let mut own = table.connect("acme", 0).unwrap();
                for i in 0..MESSAGES {
                    // 6,000 bytes = 2 AWS units.
                    let d = table
                        .record_publish(&mut own, 6000, false, Nanos(i))
                        .unwrap();
                    assert!(d.is_allowed());
                    {
                        // A read lock gives `&Connection`: deliverers run concurrently with
                        // each other (atomic adds); only the flush below excludes them.
                        let sub = subscriber.read().unwrap();
                        table.record_delivery(&sub, 6000).unwrap();
                    }
                    if i % 1000 == t {
                        let mut sub = subscriber.write().unwrap();
                        table.flush(&mut sub, "sub", &meter, 0).unwrap();
                    }
                }
                table.disconnect(own, &device, &meter, 0).unwrap();
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let mut sub = subscriber.write().unwrap();
    table.flush(&mut sub, "sub", &meter, 0).unwrap();
    let totals = meter.totals();
    let sum = |kind| {
        totals
            .iter()
            .filter(|(k, _)| k.kind == kind)
            .fold(Counts::default(), |mut acc, (_, c)| {
                acc.add(c);
                acc
            })
    };
    let n = THREADS * MESSAGES;
    assert_eq!(
        sum(PacketKind::Publish),
        Counts {
            messages: n,
            units: 2 * n,
            bytes: 6000 * n,
            minutes: 0
        }
    );
    assert_eq!(
        sum(PacketKind::Receive),
        Counts {
            messages: n,
            units: 2 * n,
            bytes: 6000 * n,
            minutes: 0
        }
    );
}

#[test]
fn threads_on_separate_connections_and_the_meter_lose_no_updates() {
    let table = Arc::new(ConnectionTable::new(MeteringPolicy::aws(), &unlimited(), 64).unwrap());
    let meter = Arc::new(Meter::new("n", MeteringPolicy::aws(), Granularity::Day, 64).unwrap());
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (table, meter) = (table.clone(), meter.clone());
            std::thread::spawn(move || {
                let device = format!("d{t}");
                let mut conn = table.connect("acme", 0).unwrap();
                for i in 0..MESSAGES {
                    table.record_publish(&mut conn, 1, false, Nanos(i)).unwrap();
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
                table.disconnect(conn, &device, &meter, 0).unwrap();
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

#[test]
fn threads_sharing_an_account_limit_through_handles_and_keys_admit_exactly_the_burst() {
    use thingkit_meter::{LimiterConfig, Rate, RateLimiter};
    // At one instant, an account's burst of 10,000 publishes is shared by every connection of
    // the account: some threads check through a handle, others by key. Exactly the burst is
    // admitted, never one more (a lost compare-and-swap would admit extra).
    const BURST: u64 = 10_000;
    let limiter = Arc::new(
        RateLimiter::new(
            LimiterConfig::default().with_default(unlimited().with_messages(Some(Rate {
                amount: 1,
                period_ms: 1000,
                burst: BURST,
            }))),
        )
        .unwrap(),
    );
    let now = Nanos::from_secs(10);
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let limiter = limiter.clone();
            std::thread::spawn(move || {
                let handle = limiter.handle(&"acme", now).unwrap();
                (0..BURST / 2)
                    .filter(|_| {
                        let d = if t % 2 == 0 {
                            limiter.check_handle(&handle, 0, now)
                        } else {
                            limiter.check_key(&"acme", 0, now)
                        };
                        d.unwrap().is_allowed()
                    })
                    .count() as u64
            })
        })
        .collect();
    let admitted: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(admitted, BURST);
}
