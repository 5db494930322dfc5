//! The fleet's key metrics against a hand-computed fleet, and the percentile against a
//! sort-based reference.

use proptest::prelude::*;
use thingkit_audit::metrics::{
    Attachments, ConnectAttempt, Finding, FindingResource, LifecycleEvent, LifecycleEventType,
    MaintenanceRates, MaintenanceUsage, Ratio, Severity, ThingFirmware, connect_success_rate,
    connection_rate, finding_vulnerability_rate, firmware_vulnerability_rate, maintenance_cost,
    percentile, processing_time,
};

const THINGS: [&str; 6] = ["t1", "t2", "t3", "t4", "t5", "t1"]; // t1 listed twice

fn ratio(numerator: u64, denominator: u64) -> Ratio {
    Ratio {
        numerator,
        denominator,
    }
}

#[test]
fn connection_rate_of_a_hand_computed_fleet() {
    use LifecycleEventType::{Connected as C, Disconnected as D};
    // All within one minute (so versionNumber decides), except where a test says otherwise.
    const T: u64 = 1_764_115_200_000;
    let ev = |client_id, event_type, version_number| LifecycleEvent {
        client_id,
        event_type,
        version_number,
        timestamp: T + version_number * 1_000,
    };
    let events = [
        // t1: reconnected (v2 is the latest connection) -> connected.
        ev("t1", C, 1),
        ev("t1", D, 1),
        ev("t1", C, 2),
        // t2: disconnect delivered before its connect -> disconnected.
        ev("t2", D, 3),
        ev("t2", C, 3),
        // t3: a duplicated connect at v5 and a stale disconnect at v4 -> connected.
        ev("t3", C, 5),
        ev("t3", C, 5),
        ev("t3", D, 4),
        // t4: no events -> disconnected.
        // t5: connect and disconnect of one connection, disconnect first -> disconnected.
        ev("t5", D, 7),
        ev("t5", C, 7),
        // Not a registered thing: ignored.
        ev("ghost", C, 1),
    ];
    // Connected: t1, t3 of 5 distinct things.
    let r = connection_rate(THINGS, &events);
    assert_eq!(r, ratio(2, 5));
    assert_eq!(r.value(), Some(0.4));
    // Event order does not matter.
    let mut reversed = events;
    reversed.reverse();
    assert_eq!(connection_rate(THINGS, &reversed), ratio(2, 5));
    // Version resets after an hour disconnected: the old disconnect at v7 is two hours older
    // than the new connection at v0, so the connection wins; a connect at v0 two hours after a
    // disconnect at v0 is a new connection, not the same one.
    let at = |client_id, event_type, version_number, timestamp| LifecycleEvent {
        client_id,
        event_type,
        version_number,
        timestamp,
    };
    let hours = |h: u64| T + h * 3_600_000;
    let reset = [
        at("t4", C, 7, hours(0)),
        at("t4", D, 7, hours(1)),
        at("t4", C, 0, hours(3)),
        at("t5", D, 0, hours(0)),
        at("t5", C, 0, hours(2)),
        // t2: a five-day connection ends (same version, later timestamp): disconnected.
        at("t2", C, 3, hours(0)),
        at("t2", D, 3, hours(120)),
        // t3: the disconnect's clock runs a minute ahead of the next connect's: versions decide.
        at("t3", D, 8, hours(1) + 60_000),
        at("t3", C, 9, hours(1)),
    ];
    // Connected: t3, t4, t5 of 5.
    assert_eq!(connection_rate(THINGS, &reset), ratio(3, 5));
    // No things: no rate.
    let empty = connection_rate([], &events);
    assert_eq!(empty, ratio(0, 0));
    assert_eq!(empty.value(), None);
}

#[test]
fn connect_success_rate_over_a_window() {
    let at = |time, successful| ConnectAttempt { time, successful };
    let attempts = [
        at(999, true), // before the window
        at(1000, true),
        at(1500, false),
        at(1999, true),
        at(2000, false), // the window is half-open
    ];
    assert_eq!(connect_success_rate(&attempts, 1000, 2000), ratio(2, 3));
    assert_eq!(connect_success_rate(&attempts, 3000, 4000), ratio(0, 0));
    assert_eq!(connect_success_rate(&attempts, 2000, 1000), ratio(0, 0));
}

#[test]
fn firmware_vulnerability_rate_of_a_hand_computed_fleet() {
    let fw = |thing, version| ThingFirmware { thing, version };
    let things = [
        fw("t1", Some("1.0")), // vulnerable
        fw("t2", Some("1.1")),
        fw("t3", None),        // never reported: counted, not vulnerable
        fw("t4", Some("0.9")), // vulnerable
        fw("t5", Some("1.1")),
        fw("t1", Some("1.1")), // repeated name: the first entry counts
    ];
    let r = firmware_vulnerability_rate(&things, &["1.0", "0.9"]);
    assert_eq!(r, ratio(2, 5));
    assert_eq!(firmware_vulnerability_rate(&things, &[]), ratio(0, 5));
    assert_eq!(firmware_vulnerability_rate(&[], &["1.0"]), ratio(0, 0));
}

#[test]
fn finding_vulnerability_rate_of_a_hand_computed_fleet() {
    let things = ["t1", "t2", "t3", "t4", "t5"];
    let thing_certificates = [
        ("t1", "c1"),
        ("t2", "c2"),
        ("t3", "c3"),
        ("t4", "c4"),
        ("t5", "c4"), // shared certificate
        ("ghost", "c9"),
    ];
    let certificate_policies = [("c1", "pA"), ("c2", "pB"), ("c3", "pB"), ("c4", "pC")];
    let fleet = Attachments {
        things: &things,
        thing_certificates: &thing_certificates,
        certificate_policies: &certificate_policies,
    };
    let f = |severity, resource| Finding { severity, resource };
    let findings = [
        // HIGH on policy pB reaches c2 and c3, so t2 and t3.
        f(Severity::High, FindingResource::Policy("pB")),
        // CRITICAL on client id t5 reaches t5.
        f(Severity::Critical, FindingResource::ClientId("t5")),
        // MEDIUM and LOW are not counted.
        f(Severity::Medium, FindingResource::Certificate("c1")),
        f(Severity::Low, FindingResource::Policy("pC")),
        // Reaches only an unregistered thing.
        f(Severity::High, FindingResource::Certificate("c9")),
    ];
    // Reached: t2, t3, t5 of 5.
    assert_eq!(finding_vulnerability_rate(&fleet, &findings), ratio(3, 5));
    // A HIGH finding on the shared certificate reaches both t4 and t5.
    let shared = [f(Severity::High, FindingResource::Certificate("c4"))];
    assert_eq!(finding_vulnerability_rate(&fleet, &shared), ratio(2, 5));
    assert_eq!(finding_vulnerability_rate(&fleet, &[]), ratio(0, 5));
    assert_eq!(
        finding_vulnerability_rate(&Attachments::default(), &findings),
        ratio(0, 0)
    );
}

#[test]
fn processing_time_p50_and_p99_by_nearest_rank() {
    // Sorted: 1 3 4 5 6 7 8 9 12 100. p50: rank ceil(0.5 * 10) = 5 -> 6.
    // p99: rank ceil(0.99 * 10) = 10 -> 100.
    let mut sample = [12, 3, 7, 100, 5, 9, 1, 4, 8, 6];
    let t = processing_time(&mut sample).expect("non-empty");
    assert_eq!((t.count, t.p50, t.p99), (10, 6, 100));
    // 1..=200: p50 rank 100 -> 100; p99 rank 198 -> 198.
    let mut sample: Vec<u64> = (1..=200).rev().collect();
    let t = processing_time(&mut sample).expect("non-empty");
    assert_eq!((t.count, t.p50, t.p99), (200, 100, 198));
    let mut one = [42];
    let t = processing_time(&mut one).expect("non-empty");
    assert_eq!((t.p50, t.p99), (42, 42));
    assert_eq!(processing_time(&mut []), None);
}

#[test]
fn maintenance_cost_prices_bytes_and_messages() {
    // 1.5 GB at $0.09/GB = $0.135; 2.5 M job messages at $1.00/M = $2.50.
    let usage = MaintenanceUsage {
        firmware_bytes: 1_500_000_000,
        job_messages: 2_500_000,
    };
    let rates = MaintenanceRates {
        per_million_messages: 1_000_000_000,
        per_gigabyte: 90_000_000,
    };
    let c = maintenance_cost(usage, rates);
    assert_eq!(c.firmware, 135_000_000);
    assert_eq!(c.messages, 2_500_000_000);
    assert_eq!(c.total, 2_635_000_000);
    // Rounded down once per term: one byte costs 0.09 nano-units -> 0; one message 1,000.
    let c = maintenance_cost(
        MaintenanceUsage {
            firmware_bytes: 1,
            job_messages: 1,
        },
        rates,
    );
    assert_eq!((c.firmware, c.messages, c.total), (0, 1_000, 1_000));
    let zero = maintenance_cost(MaintenanceUsage::default(), rates);
    assert_eq!(zero.total, 0);
    let huge = maintenance_cost(
        MaintenanceUsage {
            firmware_bytes: u64::MAX,
            job_messages: u64::MAX,
        },
        MaintenanceRates {
            per_million_messages: u64::MAX,
            per_gigabyte: u64::MAX,
        },
    );
    assert_eq!(huge.total, u64::MAX);
}

/// The definition, by sorting: the smallest value `v` such that at least `q / 10,000` of the
/// values are `≤ v`.
fn reference(values: &[u64], q: u16) -> Option<u64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len() as u128;
    let q = u128::from(q.min(10_000));
    sorted
        .iter()
        .enumerate()
        .find(|(i, _)| (*i as u128 + 1) * 10_000 >= q * n)
        .map(|(_, v)| *v)
}

proptest! {
    #[test]
    fn percentile_agrees_with_a_sort_based_reference(
        values in proptest::collection::vec(prop_oneof![0u64..10, any::<u64>()], 0..200),
        q in prop_oneof![Just(0u16), Just(1), Just(10), Just(100), Just(1_000), Just(5_000),
                         Just(9_000), Just(9_900), Just(9_990), Just(9_999), Just(10_000), any::<u16>()],
    ) {
        let mut scratch = values.clone();
        prop_assert_eq!(percentile(&mut scratch, q), reference(&values, q));
    }
}
