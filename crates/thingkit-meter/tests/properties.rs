//! Property tests: aggregate merging is a semilattice join, replay equals live totals, the GCRA
//! limiter agrees with a token-bucket reference model, money and units never overflow silently,
//! draining closed windows loses and repeats no count.

use std::collections::BTreeMap;

use proptest::prelude::*;
use thingkit_meter::{BillingRun, PriceTable};
use thingkit_meter::{Counts, NodeAggregate, UsageKey};
use thingkit_meter::{LimitAction, LimiterConfig, Nanos, Rate, RateLimiter, RateLimits};
use thingkit_meter::{MeteringPolicy, PacketKind};
use thingkit_meter::{UsageEvent, UsageLimits};

fn kind() -> impl Strategy<Value = PacketKind> {
    prop::sample::select(PacketKind::ALL.to_vec())
}

fn counts() -> impl Strategy<Value = Counts> {
    (0u64..1000, 0u64..1000, 0u64..100_000, 0u64..100).prop_map(|(m, u, b, min)| Counts {
        messages: m,
        units: u,
        bytes: b,
        minutes: min,
    })
}

fn key() -> impl Strategy<Value = UsageKey> {
    (0u8..3, 0u8..3, kind(), 0u64..3).prop_map(|(a, d, kind, w)| UsageKey {
        account: format!("a{a}"),
        device: format!("d{d}"),
        kind,
        window: w * 86_400,
    })
}

fn aggregate() -> impl Strategy<Value = NodeAggregate> {
    prop::collection::btree_map(
        prop::sample::select(vec!["n1".to_owned(), "n2".to_owned(), "n3".to_owned()]),
        prop::collection::btree_map(key(), counts(), 0..6),
        0..3,
    )
    .prop_map(|nodes| NodeAggregate { nodes })
}

fn merged(a: &NodeAggregate, b: &NodeAggregate) -> NodeAggregate {
    let mut out = a.clone();
    out.merge(b);
    out
}

proptest! {
    #[test]
    fn merge_is_commutative(a in aggregate(), b in aggregate()) {
        prop_assert_eq!(merged(&a, &b), merged(&b, &a));
    }

    #[test]
    fn merge_is_associative(a in aggregate(), b in aggregate(), c in aggregate()) {
        prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
    }

    #[test]
    fn merge_is_idempotent(a in aggregate(), b in aggregate()) {
        let ab = merged(&a, &b);
        prop_assert_eq!(merged(&ab, &b), ab.clone());
        prop_assert_eq!(merged(&a, &a), a);
    }

    #[test]
    fn aggregates_survive_a_json_roundtrip(a in aggregate()) {
        let json = serde_json::to_string(&a).unwrap();
        let back: NodeAggregate = serde_json::from_str(&json).unwrap();
        // A node that reported no key has no row: it round-trips as absent.
        let mut expected = a;
        expected.nodes.retain(|_, keys| !keys.is_empty());
        prop_assert_eq!(back, expected);
    }

    #[test]
    fn merging_a_later_snapshot_of_the_same_node_never_double_counts(
        base in prop::collection::btree_map(key(), counts(), 1..5),
        extra in prop::collection::btree_map(key(), counts(), 0..5),
    ) {
        // A node's later snapshot dominates its earlier one.
        let early = NodeAggregate { nodes: BTreeMap::from([("n".to_owned(), base.clone())]) };
        let mut later_map = base;
        for (k, c) in &extra {
            later_map.entry(k.clone()).or_default().add(c);
        }
        let later = NodeAggregate { nodes: BTreeMap::from([("n".to_owned(), later_map.clone())]) };
        prop_assert_eq!(merged(&early, &later).totals(), later_map);
    }

    #[test]
    fn limiter_agrees_with_a_token_bucket_model(
        amount in prop::sample::select(vec![1u64, 2, 4, 5, 8, 10, 100, 1000]),
        burst in 1u64..20,
        steps in prop::collection::vec((0u64..300_000_000, 1u64..4), 1..200),
    ) {
        // Byte-rate limit with integral emission interval so the model is exact.
        let limiter: RateLimiter<u8> = RateLimiter::new(LimiterConfig::default().with_default(RateLimits::default().with_messages(None).with_bytes(Some(Rate { amount, period_ms: 1000, burst })).with_message_action(LimitAction::Drop).with_byte_action(LimitAction::Drop))).unwrap();
        let t = 1_000_000_000 / amount; // ns per unit
        let capacity = burst * t;
        let mut credit = capacity; // token bucket in ns of credit, starts full
        let mut now = 0u64;
        let mut last = 0u64;
        for (dt, cost) in steps {
            now += dt;
            credit = (credit + (now - last)).min(capacity);
            last = now;
            let model = credit >= cost * t;
            if model {
                credit -= cost * t;
            }
            let got = limiter.check_key(&0, cost, Nanos(now)).unwrap().is_allowed();
            prop_assert_eq!(got, model, "at {} ns cost {}", now, cost);
        }
    }

    #[test]
    fn units_are_monotone_in_bytes_and_never_below_the_minimum(
        bytes in any::<u64>(), k in kind(),
    ) {
        for p in [MeteringPolicy::aws(), MeteringPolicy::azure(), MeteringPolicy::gcp()] {
            let u = p.units(k, bytes);
            prop_assert!(p.units(k, bytes.saturating_add(1)) >= u);
            if p.billable.contains(k) && k != PacketKind::ConnectionMinutes {
                prop_assert!(u >= 1);
            }
        }
    }

    #[test]
    fn billing_ignores_duplicates_and_is_order_independent(
        events in prop::collection::vec((0u8..20, 0u8..3, kind(), 0u64..20_000, 0u64..100), 0..60),
    ) {
        let limits = UsageLimits::default();
        let evs: Vec<UsageEvent> = events.iter().map(|(id, acct, k, bytes, min)| {
            UsageEvent::new(format!("id{id}"), format!("a{acct}"), "d", *k, 1_764_115_200, &limits)
                .unwrap().with_bytes(*bytes).with_minutes(*min)
        }).collect();
        // Keep the first occurrence of each id; the order of distinct events must not matter.
        let mut firsts: BTreeMap<String, UsageEvent> = BTreeMap::new();
        for e in &evs {
            firsts.entry(e.id().to_owned()).or_insert_with(|| e.clone());
        }
        let table = PriceTable::preset("aws-us-east-1").unwrap();
        let mut live = BillingRun::new(table.clone());
        for e in &evs {
            live.add(e).unwrap();
        }
        let mut reversed = BillingRun::new(table);
        for e in firsts.values().rev() {
            reversed.add(e).unwrap();
        }
        prop_assert_eq!(live.bills().unwrap(), reversed.bills().unwrap());
    }
}

proptest! {
    /// Pricing a meter's aggregated totals gives exactly the bills of pricing, one by one, the
    /// events the meter recorded (AWS tiers with free allowance, Azure provisioned units).
    #[test]
    fn pricing_meter_totals_equals_pricing_the_events(
        events in prop::collection::vec(
            (0u8..3, 0u8..3, kind(), 0u64..40_000, 0u64..100, 0u64..40 * 86_400), 0..60),
        preset in prop::sample::select(vec!["aws-us-east-1", "aws-us-east-1-free-tier", "azure-s1"]),
        granularity in prop::sample::select(vec![
            thingkit_meter::Granularity::Hour,
            thingkit_meter::Granularity::Day,
        ]),
    ) {
        let table = PriceTable::preset(preset).unwrap();
        let meter = thingkit_meter::Meter::new("n", table.metering.clone(), granularity, 10_000)
            .unwrap();
        let mut per_event = BillingRun::new(table.clone());
        let limits = UsageLimits::default();
        for (i, (acct, dev, k, bytes, min, t)) in events.into_iter().enumerate() {
            let e = UsageEvent::new(format!("id{i}"), format!("a{acct}"), format!("d{dev}"), k,
                1_764_115_200 + t, &limits).unwrap().with_bytes(bytes).with_minutes(min);
            meter.record(&e).unwrap();
            per_event.add(&e).unwrap();
        }
        let mut from_totals = BillingRun::new(table);
        from_totals.add_totals(&meter.totals(), meter.policy(), meter.granularity()).unwrap();
        prop_assert_eq!(from_totals.bills().unwrap(), per_event.bills().unwrap());
    }
}

proptest! {
    /// Draining closed windows between adds loses and repeats nothing: the drained batches plus
    /// what is left sum to the totals of a meter that was never drained, every drained key had
    /// ended at its drain, every key left is open, and billing the batches one by one gives the
    /// bills of the undrained totals.
    #[test]
    fn draining_loses_and_repeats_nothing(
        ops in prop::collection::vec(
            (0u8..2, 0u8..2, kind(), 0u64..100 * 86_400, counts(), prop::bool::weighted(0.2)),
            0..80),
        granularity in prop::sample::select(vec![
            thingkit_meter::Granularity::Hour,
            thingkit_meter::Granularity::Day,
            thingkit_meter::Granularity::Month,
        ]),
    ) {
        let base = 1_735_689_600; // 2025-01-01T00:00:00Z
        let aws = MeteringPolicy::aws();
        let drained = thingkit_meter::Meter::new("n", aws.clone(), granularity, 10_000).unwrap();
        let kept = thingkit_meter::Meter::new("n", aws.clone(), granularity, 10_000).unwrap();
        let table = PriceTable::preset("aws-us-east-1").unwrap();
        let mut billed = BillingRun::new(table.clone());
        let mut sum: BTreeMap<UsageKey, Counts> = BTreeMap::new();
        let mut now = base;
        for (acct, dev, k, t, c, drain) in ops {
            // Time moves forward, adds may be late (an earlier window than the last drain).
            now = now.max(base + t);
            if drain {
                let batch = drained.drain_closed(now);
                for (key, counts) in &batch {
                    let end = granularity.window_end(key.window);
                    prop_assert!(end.is_some_and(|end| end <= now));
                    sum.entry(key.clone()).or_default().add(counts);
                }
                billed.add_totals(&batch, &aws, granularity).unwrap();
            } else {
                let (a, d) = (format!("a{acct}"), format!("d{dev}"));
                drained.add(&a, &d, k, base + t, &c).unwrap();
                kept.add(&a, &d, k, base + t, &c).unwrap();
            }
        }
        let left = drained.totals();
        for (key, counts) in &left {
            // Keys left are open, except late arrivals for windows drained already.
            sum.entry(key.clone()).or_default().add(counts);
        }
        prop_assert_eq!(&sum, &kept.totals());
        billed.add_totals(&left, &aws, granularity).unwrap();
        let mut whole = BillingRun::new(table);
        whole.add_totals(&kept.totals(), &aws, granularity).unwrap();
        prop_assert_eq!(billed.bills().unwrap(), whole.bills().unwrap());
        // A last drain at the current time leaves open windows only.
        drained.drain_closed(now);
        for key in drained.totals().keys() {
            prop_assert!(granularity.window_end(key.window).is_none_or(|end| end > now));
        }
    }
}

#[test]
fn pricing_totals_refuses_another_policy_or_monthly_windows_with_provisioned_units() {
    use thingkit_meter::Granularity;
    let totals = BTreeMap::from([(
        UsageKey {
            account: "a".into(),
            device: "d".into(),
            kind: PacketKind::Publish,
            window: 1_764_115_200,
        },
        Counts {
            messages: 1,
            units: 1,
            bytes: 10,
            minutes: 0,
        },
    )]);
    let aws = PriceTable::preset("aws-us-east-1").unwrap();
    let mut run = BillingRun::new(aws.clone());
    assert!(
        run.add_totals(&totals, &MeteringPolicy::gcp(), Granularity::Day)
            .is_err()
    );
    assert!(
        run.bills().unwrap().is_empty(),
        "a refused call counts nothing"
    );
    run.add_totals(&totals, &aws.metering, Granularity::Month)
        .unwrap();
    assert_eq!(run.bills().unwrap().len(), 1);
    let azure = PriceTable::preset("azure-s1").unwrap();
    let mut run = BillingRun::new(azure.clone());
    assert!(
        run.add_totals(&totals, &azure.metering, Granularity::Month)
            .is_err()
    );
    run.add_totals(&totals, &azure.metering, Granularity::Day)
        .unwrap();
    assert_eq!(run.bills().unwrap().len(), 1);
}

#[cfg(feature = "ledger-redb")]
mod ledger {
    use super::*;
    use thingkit_meter::Added;
    use thingkit_meter::{Appended, Ledger, LedgerConfig};
    use thingkit_meter::{Granularity, Meter};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn replaying_the_ledger_equals_live_totals_and_bills(
            events in prop::collection::vec(
                (0u8..30, 0u8..3, kind(), 0u64..20_000, 0u64..100, 0u64..5 * 86_400), 1..40),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let ledger = Ledger::open(dir.path().join("l.redb"), LedgerConfig::default()).unwrap();
            let live = Meter::new("n", MeteringPolicy::aws(), Granularity::Day, 10_000).unwrap();
            let table = PriceTable::preset("aws-us-east-1").unwrap();
            let mut live_bills = BillingRun::new(table.clone());
            let limits = UsageLimits::default();
            for (id, acct, k, bytes, min, t) in events {
                let e = UsageEvent::new(format!("id{id}"), format!("a{acct}"), "d", k,
                    1_764_115_200 + t, &limits).unwrap().with_bytes(bytes).with_minutes(min);
                // The live path counts what the ledger acknowledged as new; late events are
                // refused by both.
                match ledger.append(&e) {
                    Ok(Appended::New(_)) => {
                        live.record(&e).unwrap();
                        prop_assert_eq!(live_bills.add(&e).unwrap(), Added::Counted);
                    }
                    Ok(Appended::Duplicate(_)) => {
                        prop_assert_eq!(live_bills.add(&e).unwrap(), Added::Duplicate);
                    }
                    Err(thingkit_meter::Error::LateEvent { .. }) => {}
                    Err(other) => return Err(TestCaseError::fail(other.to_string())),
                }
            }
            let replayed = Meter::new("n", MeteringPolicy::aws(), Granularity::Day, 10_000).unwrap();
            ledger.replay_into(&replayed).unwrap();
            prop_assert_eq!(replayed.totals(), live.totals());
            let mut replay_bills = BillingRun::new(table);
            ledger.bill_into(&mut replay_bills).unwrap();
            prop_assert_eq!(replay_bills.bills().unwrap(), live_bills.bills().unwrap());
        }
    }
}
