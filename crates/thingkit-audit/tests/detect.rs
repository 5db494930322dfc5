//! Detect: security-profile parsing, every behavior kind flagged and not flagged, consecutive
//! datapoints, durationSeconds, statistical thresholds, invalidation, history, and the
//! steady-state allocation claim.
//!
//! The allocation test counts allocations process-wide (`stats_alloc`, because the workspace
//! forbids the `unsafe` a hand-written `GlobalAlloc` needs), so every test in this binary takes
//! one lock and they run one at a time (proptest's case generation runs outside it, so the
//! allocation test keeps the fewest of several periods).

use std::alloc::System;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

use proptest::prelude::*;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use thingkit_audit::Error;
use thingkit_audit::detect::{
    Cidr, ComparisonOperator, Counters, Detector, DetectorConfig, DeviceWindow, Metric,
    MetricValue, ProfileLimits, SecurityProfile, Threshold, ViolationEvent, ViolationEventType,
};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const T0: u64 = 1_764_115_200; // a multiple of 300

fn parse(json: &str) -> Result<SecurityProfile, Error> {
    SecurityProfile::parse(json.as_bytes(), &ProfileLimits::default())
}

/// A profile named `p` with one behavior `b` of `metric` and `criteria` (JSON text).
fn profile(metric: &str, criteria: &str) -> SecurityProfile {
    let json = format!(
        r#"{{"securityProfileName":"p","behaviors":[{{"name":"b","metric":"{metric}","criteria":{criteria}}}]}}"#
    );
    parse(&json).expect("test profile is valid")
}

fn detector(profile: SecurityProfile) -> Detector {
    let mut d = Detector::new(DetectorConfig::default()).expect("default config is valid");
    d.add_profile(profile).expect("profile attaches");
    d
}

fn window<'a>(thing: &'a str, end: u64, counters: Counters) -> DeviceWindow<'a> {
    DeviceWindow {
        thing,
        window_end: end,
        counters,
        source_ips: &[],
    }
}

fn run(d: &mut Detector, windows: &[DeviceWindow<'_>]) -> Vec<ViolationEvent> {
    let mut out = Vec::new();
    d.evaluate(windows, &mut out).expect("batch is valid");
    out
}

fn alarmed(events: &[ViolationEvent]) -> Vec<&str> {
    let mut things: Vec<&str> = events
        .iter()
        .filter(|e| e.violation_event_type == ViolationEventType::InAlarm)
        .map(|e| e.thing_name.as_str())
        .collect();
    things.sort_unstable();
    things
}

// ---------------------------------------------------------------------------------------------
// Parsing

const FULL: &str = r#"{
  "securityProfileName": "fleet:sensors_v2-eu",
  "securityProfileDescription": "Sensors in the EU fleet",
  "behaviors": [
    {"name": "small-messages", "metric": "aws:message-byte-size",
     "criteria": {"comparisonOperator": "less-than-equals", "value": {"count": 1024},
                  "consecutiveDatapointsToAlarm": 2, "consecutiveDatapointsToClear": 3}},
    {"name": "sent-p90", "metric": "aws:num-messages-sent",
     "criteria": {"comparisonOperator": "less-than", "statisticalThreshold": {"statistic": "p99.9"},
                  "durationSeconds": 900}},
    {"name": "home-network", "metric": "aws:source-ip-address",
     "criteria": {"comparisonOperator": "in-cidr-set", "value": {"cidrs": ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]}},
     "suppressAlerts": true}
  ],
  "alertTargets": {"SNS": {"alertTargetArn": "arn:aws:sns:eu-west-1:123456789012:alerts", "roleArn": "arn:aws:iam::123456789012:role/r"}},
  "tags": [{"Key": "team", "Value": "iot"}]
}"#;

#[test]
fn parses_a_create_security_profile_request() {
    let _s = serial();
    let p = parse(FULL).expect("valid");
    assert_eq!(p.name, "fleet:sensors_v2-eu");
    assert_eq!(p.description.as_deref(), Some("Sensors in the EU fleet"));
    assert_eq!(p.behaviors.len(), 3);
    let b = &p.behaviors[0];
    assert_eq!(b.metric, Metric::MessageByteSize);
    assert_eq!(b.criteria.operator, ComparisonOperator::LessThanEquals);
    assert_eq!(b.criteria.threshold, Threshold::Count(1024));
    assert_eq!(b.criteria.consecutive_datapoints_to_alarm, 2);
    assert_eq!(b.criteria.consecutive_datapoints_to_clear, 3);
    assert_eq!(b.criteria.duration_seconds, None);
    let b = &p.behaviors[1];
    assert_eq!(b.criteria.duration_seconds, Some(900));
    assert_eq!(b.criteria.consecutive_datapoints_to_alarm, 1, "default");
    let Threshold::Statistic(s) = b.criteria.threshold else {
        panic!("statistic expected");
    };
    assert_eq!((s.as_str(), s.per_ten_thousand()), ("p99.9", 9_990));
    let b = p.behavior("home-network").expect("present");
    assert!(b.suppress_alerts);
    let Threshold::Cidrs(cidrs) = &b.criteria.threshold else {
        panic!("cidrs expected");
    };
    assert_eq!(cidrs.len(), 3);
    assert_eq!(cidrs[2].prefix(), 32);
}

#[test]
fn profile_round_trips_through_its_json() {
    let _s = serial();
    let p = parse(FULL).expect("valid");
    let json = p.to_json();
    assert!(json.contains(r#""securityProfileName":"fleet:sensors_v2-eu""#));
    assert!(json.contains(r#""comparisonOperator":"in-cidr-set""#));
    assert!(json.contains(r#""cidrs":["10.0.0.0/8","2001:db8::/32","192.0.2.7"]"#));
    assert!(!json.contains("alertTargets"));
    assert_eq!(parse(&json).expect("reparses"), p);
}

fn err(json: &str) -> Error {
    parse(json).expect_err("must be refused")
}

fn behavior_err(metric: &str, criteria: &str) -> Error {
    err(&format!(
        r#"{{"securityProfileName":"p","behaviors":[{{"name":"b","metric":"{metric}","criteria":{criteria}}}]}}"#
    ))
}

fn path_of(e: &Error) -> &str {
    match e {
        Error::Missing { path }
        | Error::Invalid { path, .. }
        | Error::Unsupported { path, .. }
        | Error::TooMany { path, .. } => path,
        other => panic!("no path in {other:?}"),
    }
}

#[test]
fn refuses_bad_names_with_their_paths() {
    let _s = serial();
    let e = err(r#"{"securityProfileName":"has space"}"#);
    assert!(matches!(&e, Error::Invalid { path, .. } if path == "securityProfileName"));
    let long = "a".repeat(129);
    let e = err(&format!(r#"{{"securityProfileName":"{long}"}}"#));
    assert_eq!(path_of(&e), "securityProfileName");
    assert!(
        parse(&format!(
            r#"{{"securityProfileName":"{}"}}"#,
            "a".repeat(128)
        ))
        .is_ok()
    );
    let e = err(r#"{"behaviors":[]}"#);
    assert!(matches!(&e, Error::Missing { path } if path == "securityProfileName"));
    let e = err(
        r#"{"securityProfileName":"p","behaviors":[{"name":"ok","metric":"aws:num-disconnects","criteria":{"comparisonOperator":"less-than","value":{"count":1},"durationSeconds":300}},{"name":"b/2"}]}"#,
    );
    assert_eq!(path_of(&e), "behaviors[1].name");
    let dup = r#"{"name":"x","metric":"aws:num-disconnects","criteria":{"comparisonOperator":"less-than","value":{"count":1},"durationSeconds":300}}"#;
    let e = err(&format!(
        r#"{{"securityProfileName":"p","behaviors":[{dup},{dup}]}}"#
    ));
    assert!(
        matches!(&e, Error::Invalid { path, reason } if path == "behaviors[1].name" && reason.contains("duplicate"))
    );
}

#[test]
fn refuses_oversized_documents_and_too_many_behaviors() {
    let _s = serial();
    let limits = ProfileLimits {
        max_json_bytes: 10,
        ..ProfileLimits::default()
    };
    let e =
        SecurityProfile::parse(br#"{"securityProfileName":"p"}"#, &limits).expect_err("too big");
    assert!(matches!(e, Error::TooLarge { limit: 10, .. }));

    let one = r#"{"name":"B","metric":"aws:num-disconnects","criteria":{"comparisonOperator":"less-than","value":{"count":1},"durationSeconds":300}}"#;
    let many: Vec<String> = (0..101)
        .map(|i| one.replace("\"B\"", &format!("\"b{i}\"")))
        .collect();
    let json = format!(
        r#"{{"securityProfileName":"p","behaviors":[{}]}}"#,
        many.join(",")
    );
    let e = SecurityProfile::parse(
        json.as_bytes(),
        &ProfileLimits {
            max_json_bytes: 1 << 20,
            ..ProfileLimits::default()
        },
    )
    .expect_err("101 behaviors");
    assert!(matches!(
        e,
        Error::TooMany {
            len: 101,
            limit: 100,
            ..
        }
    ));
}

#[test]
fn refuses_unsupported_features_saying_so() {
    let _s = serial();
    let e = behavior_err(
        "aws:all-bytes-out",
        r#"{"comparisonOperator":"less-than","value":{"count":1},"durationSeconds":300}"#,
    );
    assert!(
        matches!(&e, Error::Unsupported { path, what } if path == "behaviors[0].metric" && what.contains("not supported"))
    );
    let e = behavior_err(
        "aws:num-messages-sent",
        r#"{"mlDetectionConfig":{"confidenceLevel":"HIGH"}}"#,
    );
    assert!(
        matches!(&e, Error::Unsupported { path, .. } if path == "behaviors[0].criteria.mlDetectionConfig")
    );
    let e = err(
        r#"{"securityProfileName":"p","behaviors":[{"name":"b","metric":"aws:num-messages-sent","metricDimension":{"dimensionName":"TopicFilterForAuthMessages"},"criteria":{"comparisonOperator":"less-than","value":{"count":1},"durationSeconds":300}}]}"#,
    );
    assert!(
        matches!(&e, Error::Unsupported { path, .. } if path == "behaviors[0].metricDimension")
    );
    let e = behavior_err(
        "aws:source-ip-address",
        r#"{"comparisonOperator":"in-port-set","value":{"ports":[80]}}"#,
    );
    assert!(
        matches!(&e, Error::Unsupported { path, .. } if path == "behaviors[0].criteria.comparisonOperator")
    );
    let e = behavior_err(
        "aws:num-messages-sent",
        r#"{"comparisonOperator":"less-than","value":{"number":1.5},"durationSeconds":300}"#,
    );
    assert!(
        matches!(&e, Error::Unsupported { path, .. } if path == "behaviors[0].criteria.value.number")
    );
}

#[test]
fn refuses_invalid_criteria_with_their_paths() {
    let cases: [(&str, &str, &str); 12] = [
        (
            "aws:num-messages-sent",
            r#"{"comparisonOperator":"less-than","value":{"count":1},"durationSeconds":60}"#,
            "behaviors[0].criteria.durationSeconds",
        ),
        (
            "aws:num-messages-sent",
            r#"{"comparisonOperator":"less-than","value":{"count":1}}"#,
            "behaviors[0].criteria.durationSeconds",
        ),
        (
            "aws:message-byte-size",
            r#"{"comparisonOperator":"less-than","value":{"count":1},"durationSeconds":300}"#,
            "behaviors[0].criteria.durationSeconds",
        ),
        (
            "aws:num-disconnects",
            r#"{"comparisonOperator":"less-than","value":{"count":1},"durationSeconds":300,"consecutiveDatapointsToAlarm":0}"#,
            "behaviors[0].criteria.consecutiveDatapointsToAlarm",
        ),
        (
            "aws:num-disconnects",
            r#"{"comparisonOperator":"less-than","value":{"count":1},"durationSeconds":300,"consecutiveDatapointsToClear":11}"#,
            "behaviors[0].criteria.consecutiveDatapointsToClear",
        ),
        (
            "aws:num-disconnects",
            r#"{"comparisonOperator":"in-cidr-set","value":{"count":1},"durationSeconds":300}"#,
            "behaviors[0].criteria.comparisonOperator",
        ),
        (
            "aws:source-ip-address",
            r#"{"comparisonOperator":"less-than","value":{"count":1}}"#,
            "behaviors[0].criteria.comparisonOperator",
        ),
        (
            "aws:source-ip-address",
            r#"{"comparisonOperator":"in-cidr-set","value":{"cidrs":["10.0.0.0/33"]}}"#,
            "behaviors[0].criteria.value.cidrs[0]",
        ),
        (
            "aws:num-disconnects",
            r#"{"comparisonOperator":"less-than","durationSeconds":300}"#,
            "behaviors[0].criteria.value",
        ),
        (
            "aws:num-disconnects",
            r#"{"comparisonOperator":"less-than","value":{"count":1},"statisticalThreshold":{"statistic":"p50"},"durationSeconds":300}"#,
            "behaviors[0].criteria",
        ),
        (
            "aws:num-disconnects",
            r#"{"comparisonOperator":"less-than","statisticalThreshold":{"statistic":"p95"},"durationSeconds":300}"#,
            "behaviors[0].criteria.statisticalThreshold.statistic",
        ),
        (
            "aws:num-disconnects",
            r#"{"comparisonOperator":"sideways","value":{"count":1},"durationSeconds":300}"#,
            "behaviors[0].criteria.comparisonOperator",
        ),
    ];
    let _s = serial();
    for (metric, criteria, path) in cases {
        let e = behavior_err(metric, criteria);
        assert_eq!(path_of(&e), path, "{criteria}");
    }
}

#[test]
fn refuses_unknown_members_and_wrong_types_as_json_errors() {
    let _s = serial();
    assert!(matches!(
        err(r#"{"securityProfileName":"p","colour":"red"}"#),
        Error::Json { .. }
    ));
    assert!(matches!(
        behavior_err(
            "aws:num-disconnects",
            r#"{"comparisonOperator":"less-than","value":{"count":-1},"durationSeconds":300}"#
        ),
        Error::Json { .. }
    ));
    assert!(matches!(err("{"), Error::Json { line: 1, .. }));
}

#[test]
fn cidrs_contain_v4_v6_and_mapped_addresses() {
    let _s = serial();
    let v4 = Cidr::parse("10.1.0.0/16").expect("valid");
    let ip = |s: &str| s.parse::<IpAddr>().expect("address");
    assert!(v4.contains(ip("10.1.255.3")));
    assert!(!v4.contains(ip("10.2.0.1")));
    assert!(v4.contains(ip("::ffff:10.1.0.9")));
    assert!(!v4.contains(ip("2001:db8::1")));
    let v6 = Cidr::parse("2001:db8::/32").expect("valid");
    assert!(v6.contains(ip("2001:db8:ffff::1")));
    assert!(!v6.contains(ip("2001:db9::1")));
    assert!(
        Cidr::parse("0.0.0.0/0")
            .expect("valid")
            .contains(ip("8.8.8.8"))
    );
    assert!(Cidr::parse("1.2.3.4/").is_none());
    assert!(Cidr::parse("1.2.3.4/+8").is_none());
    assert!(Cidr::parse("::/129").is_none());
}

// ---------------------------------------------------------------------------------------------
// Every behavior kind, flagged and not flagged

fn counts(f: impl Fn(&mut Counters, u64)) -> [Counters; 2] {
    let mut ok = Counters::default();
    let mut bad = Counters::default();
    f(&mut ok, 4);
    f(&mut bad, 5);
    [ok, bad]
}

#[test]
fn every_count_metric_flags_the_violating_device_only() {
    let _s = serial();
    type Setter = fn(&mut Counters, u64);
    let metrics: [(&str, Setter); 5] = [
        ("aws:num-messages-sent", |c, n| c.messages_sent = n),
        ("aws:num-messages-received", |c, n| c.messages_received = n),
        ("aws:num-authorization-failures", |c, n| {
            c.authorization_failures = n
        }),
        ("aws:num-connection-attempts", |c, n| {
            c.connection_attempts = n
        }),
        ("aws:num-disconnects", |c, n| c.disconnects = n),
    ];
    for (metric, set) in metrics {
        let mut d = detector(profile(
            metric,
            r#"{"comparisonOperator":"less-than-equals","value":{"count":4},"durationSeconds":300}"#,
        ));
        let [ok, bad] = counts(set);
        let events = run(&mut d, &[window("ok", T0, ok), window("bad", T0, bad)]);
        assert_eq!(alarmed(&events), ["bad"], "{metric}");
        assert_eq!(events[0].metric_value, Some(MetricValue::Count(5)));
    }
}

#[test]
fn message_byte_size_compares_the_largest_or_smallest_message() {
    let _s = serial();
    let mut d = detector(profile(
        "aws:message-byte-size",
        r#"{"comparisonOperator":"less-than","value":{"count":1024}}"#,
    ));
    let sized = |n, min, max| Counters {
        messages_sent: n,
        min_message_bytes: min,
        max_message_bytes: max,
        ..Counters::default()
    };
    let events = run(
        &mut d,
        &[
            window("small", T0, sized(3, 10, 1023)),
            window("big", T0, sized(3, 10, 1024)),
            window("silent", T0, sized(0, 0, 5000)),
        ],
    );
    assert_eq!(alarmed(&events), ["big"]);
    assert_eq!(events[0].metric_value, Some(MetricValue::Count(1024)));

    let mut d = detector(profile(
        "aws:message-byte-size",
        r#"{"comparisonOperator":"greater-than-equals","value":{"count":16}}"#,
    ));
    let events = run(
        &mut d,
        &[
            window("ok", T0, sized(2, 16, 900)),
            window("tiny", T0, sized(2, 15, 900)),
        ],
    );
    assert_eq!(alarmed(&events), ["tiny"]);
    assert_eq!(events[0].metric_value, Some(MetricValue::Count(15)));
}

#[test]
fn source_ip_address_in_and_not_in_cidr_sets() {
    let _s = serial();
    let ips = |list: &[&str]| -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().expect("address")).collect()
    };
    let home = ips(&["10.0.0.5", "2001:db8::7"]);
    let away = ips(&["10.0.0.5", "203.0.113.9"]);
    let none: Vec<IpAddr> = Vec::new();
    let w = |thing, source_ips| DeviceWindow {
        thing,
        window_end: T0,
        counters: Counters::default(),
        source_ips,
    };

    let mut d = detector(profile(
        "aws:source-ip-address",
        r#"{"comparisonOperator":"in-cidr-set","value":{"cidrs":["10.0.0.0/8","2001:db8::/32"]}}"#,
    ));
    let events = run(
        &mut d,
        &[w("home", &home), w("away", &away), w("none", &none)],
    );
    assert_eq!(alarmed(&events), ["away"]);
    assert_eq!(
        events[0].metric_value,
        Some(MetricValue::SourceIp(
            "203.0.113.9".parse().expect("address")
        ))
    );
    let json = serde_json::to_string(&events[0].metric_value).expect("serialises");
    assert_eq!(json, r#"{"cidrs":["203.0.113.9/32"]}"#);

    let mut d = detector(profile(
        "aws:source-ip-address",
        r#"{"comparisonOperator":"not-in-cidr-set","value":{"cidrs":["203.0.113.0/24"]}}"#,
    ));
    let events = run(
        &mut d,
        &[w("home", &home), w("away", &away), w("none", &none)],
    );
    assert_eq!(alarmed(&events), ["away"]);

    // An empty address list conforms and clears.
    let events = run(
        &mut d,
        &[DeviceWindow {
            thing: "away",
            window_end: T0 + 300,
            counters: Counters::default(),
            source_ips: &none,
        }],
    );
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].violation_event_type,
        ViolationEventType::AlarmCleared
    );
    assert_eq!(events[0].metric_value, None);
}

// ---------------------------------------------------------------------------------------------
// Alarm state machine

fn sent(n: u64) -> Counters {
    Counters {
        messages_sent: n,
        ..Counters::default()
    }
}

#[test]
fn consecutive_datapoints_to_alarm_and_to_clear() {
    let _s = serial();
    let mut d = detector(profile(
        "aws:num-messages-sent",
        r#"{"comparisonOperator":"less-than","value":{"count":10},"durationSeconds":300,
            "consecutiveDatapointsToAlarm":3,"consecutiveDatapointsToClear":2}"#,
    ));
    // bad, bad, good (streak broken), bad, bad, bad -> alarm at the 6th window.
    let sequence = [50, 50, 1, 50, 50, 50];
    let mut kinds = Vec::new();
    for (i, n) in sequence.into_iter().enumerate() {
        let end = T0 + 300 * i as u64;
        for e in run(&mut d, &[window("t", end, sent(n))]) {
            kinds.push((i, e.violation_event_type));
        }
    }
    assert_eq!(kinds, [(5, ViolationEventType::InAlarm)]);
    let active: Vec<_> = d.active_violations().collect();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].violation_start_time, T0 + 1500);

    // Still violating: the active violation's last value moves, no new event.
    assert!(run(&mut d, &[window("t", T0 + 1800, sent(70))]).is_empty());
    let active = d.active_violations().next().expect("active");
    assert_eq!(active.last_violation_value, MetricValue::Count(70));
    assert_eq!(active.last_violation_time, T0 + 1800);
    assert_eq!(active.violation_start_time, T0 + 1500);
    let id = active.violation_id.clone();

    // good, bad (resets the clear streak), good, good -> cleared at the last.
    let mut kinds = Vec::new();
    for (i, n) in [1, 50, 1, 1].into_iter().enumerate() {
        let end = T0 + 2100 + 300 * i as u64;
        for e in run(&mut d, &[window("t", end, sent(n))]) {
            assert_eq!(e.violation_id, id);
            kinds.push((i, e.violation_event_type));
        }
    }
    assert_eq!(kinds, [(3, ViolationEventType::AlarmCleared)]);
    assert_eq!(d.active_violations().count(), 0);
    assert_eq!(d.history().len(), 2);
}

#[test]
fn duration_seconds_sums_the_last_windows() {
    let _s = serial();
    // 900 s over 300 s windows: each datapoint is the sum of the last three windows.
    let mut d = detector(profile(
        "aws:num-authorization-failures",
        r#"{"comparisonOperator":"less-than-equals","value":{"count":10},"durationSeconds":900}"#,
    ));
    let fails = |n| Counters {
        authorization_failures: n,
        ..Counters::default()
    };
    // Windows: 4, 4 (no datapoint yet: fewer than three windows), 4 -> 12 > 10: alarm.
    assert!(run(&mut d, &[window("t", T0, fails(4))]).is_empty());
    assert!(run(&mut d, &[window("t", T0 + 300, fails(4))]).is_empty());
    let events = run(&mut d, &[window("t", T0 + 600, fails(4))]);
    assert_eq!(alarmed(&events), ["t"]);
    assert_eq!(events[0].metric_value, Some(MetricValue::Count(12)));
    // 4 + 4 + 2 = 10: conforms, clears.
    let events = run(&mut d, &[window("t", T0 + 900, fails(2))]);
    assert_eq!(
        events[0].violation_event_type,
        ViolationEventType::AlarmCleared
    );
    assert_eq!(events[0].metric_value, Some(MetricValue::Count(10)));
    // The device skips two windows (they count as zero): 0 + 0 + 11 = 11: alarm.
    let events = run(&mut d, &[window("t", T0 + 1800, fails(11))]);
    assert_eq!(events[0].metric_value, Some(MetricValue::Count(11)));
    // A long gap empties the sum: 0 + 0 + 3.
    let events = run(&mut d, &[window("t", T0 + 36_000, fails(3))]);
    assert_eq!(events[0].metric_value, Some(MetricValue::Count(3)));
}

#[test]
fn statistical_threshold_against_hand_computed_percentiles() {
    let _s = serial();
    // Ten devices sent 5, 1, 9, 3, 7, 2, 8, 10, 4, 6 messages. Sorted: 1..=10.
    // Nearest rank: p90 -> rank ceil(0.9 * 10) = 9 -> 9; p50 -> rank 5 -> 5;
    // p99.9 -> rank ceil(9.99) = 10 -> 10; p0 -> rank 1 (minimum) -> 1.
    let values = [5, 1, 9, 3, 7, 2, 8, 10, 4, 6];
    let names: Vec<String> = (0..10).map(|i| format!("d{i}")).collect();
    let windows: Vec<DeviceWindow<'_>> = names
        .iter()
        .zip(values)
        .map(|(n, v)| window(n, T0, sent(v)))
        .collect();
    let case = |statistic: &str, operator: &str| {
        let mut d = detector(profile(
            "aws:num-messages-sent",
            &format!(
                r#"{{"comparisonOperator":"{operator}","statisticalThreshold":{{"statistic":"{statistic}"}},"durationSeconds":300}}"#
            ),
        ));
        let events = run(&mut d, &windows);
        alarmed(&events)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    // Expected below p90 (9): the devices with 9 and 10 (d2, d7) violate.
    assert_eq!(case("p90", "less-than"), ["d2", "d7"]);
    // Expected at most p50 (5): 6, 7, 8, 9, 10 violate (d9, d4, d6, d2, d7).
    assert_eq!(
        case("p50", "less-than-equals"),
        ["d2", "d4", "d6", "d7", "d9"]
    );
    // Expected at most p99.9 (10): nobody violates.
    assert!(case("p99.9", "less-than-equals").is_empty());
    // Expected above p0 (1): the device with 1 (d1) violates.
    assert_eq!(case("p0", "greater-than"), ["d1"]);
}

#[test]
fn alarms_are_invalidated_after_two_days_without_data() {
    let _s = serial();
    let mut d = detector(profile(
        "aws:num-disconnects",
        r#"{"comparisonOperator":"less-than","value":{"count":3},"durationSeconds":300}"#,
    ));
    let drops = Counters {
        disconnects: 9,
        ..Counters::default()
    };
    assert_eq!(alarmed(&run(&mut d, &[window("t", T0, drops)])), ["t"]);
    let mut out = Vec::new();
    d.expire(T0 + 172_800, &mut out);
    assert!(out.is_empty(), "exactly two days is not more than two days");
    d.expire(T0 + 172_801, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].violation_event_type,
        ViolationEventType::AlarmInvalidated
    );
    assert_eq!(out[0].violation_event_time, T0 + 172_801);
    assert_eq!(out[0].metric_value, None);
    assert_eq!(d.active_violations().count(), 0);
    out.clear();
    d.expire(T0 + 999_999, &mut out);
    assert!(out.is_empty(), "invalidated once");
}

#[test]
fn suppressed_alerts_are_kept_but_not_reported() {
    let _s = serial();
    let p = parse(
        r#"{"securityProfileName":"p","behaviors":[{"name":"b","metric":"aws:num-disconnects","suppressAlerts":true,
            "criteria":{"comparisonOperator":"less-than","value":{"count":3},"durationSeconds":300}}]}"#,
    )
    .expect("valid");
    let mut d = detector(p);
    let drops = Counters {
        disconnects: 9,
        ..Counters::default()
    };
    assert!(run(&mut d, &[window("t", T0, drops)]).is_empty());
    assert_eq!(d.active_violations().count(), 1);
    let h: Vec<_> = d.history().collect();
    assert_eq!(h.len(), 1);
    assert!(h[0].suppressed);
}

#[test]
fn history_is_bounded() {
    let _s = serial();
    let mut d = Detector::new(DetectorConfig {
        max_history: 3,
        ..DetectorConfig::default()
    })
    .expect("valid");
    d.add_profile(profile(
        "aws:num-disconnects",
        r#"{"comparisonOperator":"less-than","value":{"count":3},"durationSeconds":300}"#,
    ))
    .expect("attaches");
    for i in 0..10u64 {
        let n = if i % 2 == 0 { 9 } else { 0 };
        let c = Counters {
            disconnects: n,
            ..Counters::default()
        };
        run(&mut d, &[window("t", T0 + 300 * i, c)]);
    }
    let h: Vec<_> = d.history().collect();
    assert_eq!(h.len(), 3);
    assert_eq!(h[2].violation_event_time, T0 + 2700);
    assert_eq!(h[2].violation_event_type, ViolationEventType::AlarmCleared);
}

#[test]
fn violations_serialise_with_aws_member_names() {
    let _s = serial();
    let mut d = detector(profile(
        "aws:num-disconnects",
        r#"{"comparisonOperator":"less-than","value":{"count":3},"durationSeconds":300}"#,
    ));
    let drops = Counters {
        disconnects: 9,
        ..Counters::default()
    };
    let events = run(&mut d, &[window("sensor-1", T0, drops)]);
    let active = d.active_violations().next().expect("active");
    let v: serde_json::Value = serde_json::to_value(active).expect("serialises");
    assert_eq!(v["violationId"].as_str().map(str::len), Some(32));
    assert_eq!(v["thingName"], "sensor-1");
    assert_eq!(v["securityProfileName"], "p");
    assert_eq!(v["behavior"]["name"], "b");
    assert_eq!(v["behavior"]["metric"], "aws:num-disconnects");
    assert_eq!(v["behavior"]["criteria"]["comparisonOperator"], "less-than");
    assert_eq!(v["behavior"]["criteria"]["value"]["count"], 3);
    assert_eq!(v["lastViolationValue"]["count"], 9);
    assert_eq!(v["violationStartTime"], T0);
    assert_eq!(v["lastViolationTime"], T0);
    assert_eq!(v["verificationState"], "UNKNOWN");
    let e: serde_json::Value = serde_json::to_value(&events[0]).expect("serialises");
    assert_eq!(e["violationEventType"], "in-alarm");
    assert_eq!(e["metricValue"]["count"], 9);
    assert_eq!(e["violationEventTime"], T0);
    assert!(e.get("suppressed").is_none());
}

#[test]
fn refuses_inconsistent_batches_before_changing_state() {
    let _s = serial();
    let mut d = detector(profile(
        "aws:num-disconnects",
        r#"{"comparisonOperator":"less-than","value":{"count":3},"durationSeconds":300}"#,
    ));
    let c = Counters::default();
    let mut out = Vec::new();
    let e = d
        .evaluate(&[window("a", T0, c), window("b", T0 + 300, c)], &mut out)
        .expect_err("mixed ends");
    assert!(matches!(e, Error::Window { .. }));
    let e = d
        .evaluate(&[window("a", T0, c), window("a", T0, c)], &mut out)
        .expect_err("duplicate");
    assert!(matches!(e, Error::Window { .. }));
    assert_eq!(d.devices(), 0, "a refused batch registers no device");
    d.evaluate(&[window("a", T0, c)], &mut out).expect("fine");
    let e = d
        .evaluate(&[window("a", T0, c)], &mut out)
        .expect_err("not after the previous window");
    assert!(matches!(e, Error::Window { .. }));

    let mut small = Detector::new(DetectorConfig {
        max_devices: 1,
        ..DetectorConfig::default()
    })
    .expect("valid");
    assert!(matches!(
        small.evaluate(&[window("a", T0, c), window("b", T0, c)], &mut out),
        Err(Error::TooManyDevices { limit: 1 })
    ));
    assert_eq!(small.devices(), 0, "rolled back");
    small
        .evaluate(&[window("a", T0, c)], &mut out)
        .expect("fits");
    assert!(matches!(
        small.evaluate(&[window("b", T0 + 300, c)], &mut out),
        Err(Error::TooManyDevices { limit: 1 })
    ));
}

#[test]
fn refuses_durations_that_are_not_a_multiple_of_the_window() {
    let _s = serial();
    let mut d = Detector::new(DetectorConfig {
        window_seconds: 3600,
        ..DetectorConfig::default()
    })
    .expect("valid");
    let e = d
        .add_profile(profile(
            "aws:num-disconnects",
            r#"{"comparisonOperator":"less-than","value":{"count":3},"durationSeconds":900}"#,
        ))
        .expect_err("900 is not a multiple of 3600");
    assert!(
        matches!(&e, Error::Invalid { path, .. } if path == "behaviors[0].criteria.durationSeconds")
    );
    assert!(matches!(
        d.add_profile(profile(
            "aws:num-disconnects",
            r#"{"comparisonOperator":"less-than","value":{"count":3},"durationSeconds":3600}"#,
        )),
        Ok(())
    ));
    assert!(matches!(
        d.add_profile(profile(
            "aws:num-disconnects",
            r#"{"comparisonOperator":"less-than","value":{"count":3},"durationSeconds":3600}"#,
        )),
        Err(Error::DuplicateProfile { .. })
    ));
    assert!(
        Detector::new(DetectorConfig {
            window_seconds: 0,
            ..DetectorConfig::default()
        })
        .is_err()
    );
}

#[test]
fn removing_a_profile_keeps_the_others_state() {
    let _s = serial();
    let named = |name: &str, count: u64| {
        parse(&format!(
            r#"{{"securityProfileName":"{name}","behaviors":[{{"name":"b","metric":"aws:num-disconnects",
                "criteria":{{"comparisonOperator":"less-than","value":{{"count":{count}}},"durationSeconds":600}}}}]}}"#
        ))
        .expect("valid")
    };
    let mut d = Detector::new(DetectorConfig::default()).expect("valid");
    for (name, count) in [("first", 3), ("second", 5), ("third", 7)] {
        d.add_profile(named(name, count)).expect("attaches");
    }
    let drops = |n| Counters {
        disconnects: n,
        ..Counters::default()
    };
    // Two windows of 3: a sum of 6 violates `first` (< 3) and `second` (< 5), not `third`.
    run(&mut d, &[window("t", T0, drops(3))]);
    let events = run(&mut d, &[window("t", T0 + 300, drops(3))]);
    assert_eq!(events.len(), 2);
    let removed = d.remove_profile("first").expect("attached");
    assert_eq!(removed.name, "first");
    assert!(d.remove_profile("first").is_none());
    let names: Vec<&str> = d.profiles().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["second", "third"]);
    let active: Vec<&str> = d
        .active_violations()
        .map(|v| v.security_profile_name.as_str())
        .collect();
    assert_eq!(active, ["second"]);
    // `third`'s ring survived: 3 + 4 = 7 is not < 7, so it alarms now; `second` stays in alarm.
    let events = run(&mut d, &[window("t", T0 + 600, drops(4))]);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].security_profile_name, "third");
    assert_eq!(events[0].metric_value, Some(MetricValue::Count(7)));
}

// ---------------------------------------------------------------------------------------------
// Cost

#[test]
fn steady_state_evaluation_allocates_nothing() {
    let _s = serial();
    // FULL with a statistical behavior every device of a uniform fleet conforms to.
    let p = parse(&FULL.replace(
        r#""less-than", "statisticalThreshold""#,
        r#""less-than-equals", "statisticalThreshold""#,
    ))
    .expect("valid");
    let mut d = detector(p);
    d.add_profile(profile(
        "aws:num-disconnects",
        r#"{"comparisonOperator":"less-than","value":{"count":13},"durationSeconds":3600}"#,
    ))
    .expect("attaches");
    let names: Vec<String> = (0..200).map(|i| format!("thing-{i}")).collect();
    let ips: Vec<IpAddr> = vec!["10.1.2.3".parse().expect("address")];
    let counters = Counters {
        messages_sent: 3,
        max_message_bytes: 100,
        min_message_bytes: 10,
        disconnects: 1,
        ..Counters::default()
    };
    let batch = |end: u64| -> Vec<DeviceWindow<'_>> {
        names
            .iter()
            .map(|n| DeviceWindow {
                thing: n,
                window_end: end,
                counters,
                source_ips: &ips,
            })
            .collect()
    };
    let mut out = Vec::with_capacity(16);
    // Warm up: every device seen, every ring allocated and filled.
    for i in 0..13 {
        d.evaluate(&batch(T0 + 300 * i), &mut out).expect("valid");
    }
    assert!(out.is_empty(), "a conforming fleet raises nothing");
    // The count is process-wide, and proptest generates its cases outside the lock the other
    // tests take: the fewest allocations over five steady periods is the evaluation's own (an
    // allocation of `evaluate` would show in every one of them).
    let fewest = (13..18)
        .map(|i| {
            let windows = batch(T0 + 300 * i);
            let region = Region::new(GLOBAL);
            d.evaluate(&windows, &mut out).expect("valid");
            let change = region.change();
            assert!(out.is_empty());
            change.allocations + change.reallocations
        })
        .min();
    assert_eq!(
        fewest,
        Some(0),
        "200 device windows x 4 behaviors, no transition"
    );
}

// ---------------------------------------------------------------------------------------------
// Properties

fn arb_counters() -> impl Strategy<Value = Counters> {
    let n = prop_oneof![0u64..20, any::<u64>()];
    (
        n.clone(),
        n.clone(),
        n.clone(),
        n.clone(),
        n.clone(),
        n.clone(),
        n,
    )
        .prop_map(|(a, b, c, d, e, f, g)| Counters {
            messages_sent: a,
            messages_received: b,
            max_message_bytes: c,
            min_message_bytes: c.min(d),
            authorization_failures: e,
            connection_attempts: f,
            disconnects: g,
            ..Counters::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn detector_never_panics_on_random_windows(
        periods in proptest::collection::vec(
            (0u64..4_000, proptest::collection::vec((0usize..6, arb_counters(), proptest::collection::vec(any::<[u8; 4]>(), 0..3)), 0..8)),
            0..12,
        ),
        expire_at in any::<u64>(),
    ) {
        let _s = serial();
        let mut d = Detector::new(DetectorConfig { max_history: 100_000, ..DetectorConfig::default() }).expect("valid");
        d.add_profile(parse(FULL).expect("valid")).expect("attaches");
        d.add_profile(profile(
            "aws:num-connection-attempts",
            r#"{"comparisonOperator":"greater-than","statisticalThreshold":{"statistic":"p10"},"durationSeconds":600,"consecutiveDatapointsToClear":2}"#,
        )).expect("attaches");
        let names: Vec<String> = (0..6).map(|i| format!("t{i}")).collect();
        let mut end = T0;
        let mut out = Vec::new();
        for (step, devices) in periods {
            end = end.saturating_add(step);
            let ips: Vec<Vec<IpAddr>> = devices.iter().map(|(_, _, a)| a.iter().map(|b| IpAddr::from(*b)).collect()).collect();
            let windows: Vec<DeviceWindow<'_>> = devices.iter().zip(&ips).map(|((i, c, _), ips)| DeviceWindow {
                thing: &names[*i], window_end: end, counters: *c, source_ips: ips,
            }).collect();
            let _ = d.evaluate(&windows, &mut out);
            prop_assert!(d.history().len() <= DetectorConfig::default().max_history);
        }
        d.expire(expire_at, &mut out);
        for e in &out {
            let _ = serde_json::to_string(e).expect("serialises");
        }
        // Every alarm raised is active until cleared or invalidated, exactly once.
        let count = |kind| d.history().filter(|e| e.violation_event_type == kind).count();
        prop_assert!(d.history().len() < DetectorConfig::default().max_history);
        prop_assert_eq!(
            d.active_violations().count() + count(ViolationEventType::AlarmCleared)
                + count(ViolationEventType::AlarmInvalidated),
            count(ViolationEventType::InAlarm)
        );
        let mut ids: Vec<&str> = d
            .history()
            .filter(|e| e.violation_event_type == ViolationEventType::InAlarm)
            .map(|e| e.violation_id.as_str())
            .collect();
        let raised = ids.len();
        ids.sort_unstable();
        ids.dedup();
        prop_assert_eq!(ids.len(), raised, "violation ids are unique");
    }

    #[test]
    fn generated_profiles_round_trip_through_json(
        behaviors in proptest::collection::vec(
            (0usize..7, 0usize..4, prop_oneof![any::<u64>().prop_map(Some), Just(None)], 0usize..11,
             0usize..5, 1u8..=10, 1u8..=10, any::<bool>(), proptest::collection::vec(any::<[u8; 4]>(), 1..4), 0u8..=32),
            0..10,
        ),
    ) {
        let _s = serial();
        const STATS: [&str; 11] = ["p0", "p0.01", "p0.1", "p1", "p10", "p50", "p90", "p99", "p99.9", "p99.99", "p100"];
        const OPS: [&str; 4] = ["less-than", "less-than-equals", "greater-than", "greater-than-equals"];
        let mut parts = Vec::new();
        for (i, (metric, op, count, stat, duration, alarm, clear, suppress, nets, prefix)) in behaviors.into_iter().enumerate() {
            let metric = Metric::ALL[metric];
            let criteria = if metric == Metric::SourceIpAddress {
                let cidrs: Vec<String> = nets.iter().map(|n| format!("\"{}/{prefix}\"", IpAddr::from(*n))).collect();
                let op = if op % 2 == 0 { "in-cidr-set" } else { "not-in-cidr-set" };
                format!(r#"{{"comparisonOperator":"{op}","value":{{"cidrs":[{}]}}}}"#, cidrs.join(","))
            } else {
                let threshold = match count {
                    Some(n) => format!(r#""value":{{"count":{n}}}"#),
                    None => format!(r#""statisticalThreshold":{{"statistic":"{}"}}"#, STATS[stat]),
                };
                let duration = if metric.has_duration() {
                    format!(r#","durationSeconds":{}"#, [300, 600, 900, 1800, 3600][duration])
                } else {
                    String::new()
                };
                format!(
                    r#"{{"comparisonOperator":"{}",{threshold}{duration},"consecutiveDatapointsToAlarm":{alarm},"consecutiveDatapointsToClear":{clear}}}"#,
                    OPS[op]
                )
            };
            parts.push(format!(
                r#"{{"name":"b-{i}","metric":"{metric}","criteria":{criteria},"suppressAlerts":{suppress}}}"#
            ));
        }
        let json = format!(r#"{{"securityProfileName":"gen","behaviors":[{}]}}"#, parts.join(","));
        let p = parse(&json).expect("generated profile is valid");
        let again = parse(&p.to_json()).expect("serialised profile parses");
        prop_assert_eq!(again, p);
    }
}
