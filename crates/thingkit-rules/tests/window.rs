//! Windowed aggregation through the public API: SQL text in, outputs out.

use std::collections::BTreeMap;

use proptest::prelude::*;
use thingkit_rules::{
    Environment, Error, Limits, Message, Output, Pushed, Rule, SqlVersion, Value, WindowLimits,
    Windows,
};

struct TestEnv;

impl Environment for TestEnv {
    fn new_uuid(&self) -> String {
        "00000000-0000-4000-8000-000000000000".to_string()
    }

    fn random(&self) -> f64 {
        0.5
    }
}

fn windows(sql: &str) -> Windows {
    windows_with(sql, WindowLimits::default())
}

fn windows_with(sql: &str, limits: WindowLimits) -> Windows {
    let rule = Rule::compile(sql, SqlVersion::V2016_03_23, &Limits::default())
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    Windows::new(&rule, limits).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The error a windowed statement is refused with: already by `Rule::compile`, which runs the
/// same checks as `Windows::new` (less the limits).
fn refusal(sql: &str) -> Error {
    match Rule::compile(sql, SqlVersion::V2016_03_23, &Limits::default()) {
        Ok(_) => panic!("{sql} was accepted"),
        Err(e) => e,
    }
}

fn push(w: &mut Windows, topic: &str, payload: &str, arrival_ms: u64) -> Pushed {
    let message = Message {
        topic,
        payload: payload.as_bytes(),
        client_id: Some("client"),
        principal: None,
        timestamp_ms: arrival_ms,
    };
    w.push(&message, &TestEnv).expect("no limit is reached")
}

/// Outputs as JSON text, for readable assertions.
fn json(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .map(|output| match output {
            Output::Json(value) => text(value),
            Output::Binary(bytes) => format!("binary {bytes:?}"),
        })
        .collect()
}

fn text(value: &Value) -> String {
    value.to_json_string()
}

const HOT: &str = "SELECT topic(2) AS device_id, count(*) AS hot, window_start() AS start, \
                   window_end() AS end FROM 'telemetry/+/temperature' WHERE temperature > 25 \
                   GROUP BY topic(2), TUMBLINGWINDOW(ss, 10)";

#[test]
fn tumbling_window_counts_hot_readings_per_device_in_end_then_key_order() {
    let mut w = windows(HOT);
    let stream = [
        ("b", 30, 1_000),
        ("a", 26, 2_000),
        ("a", 20, 3_000),
        ("b", 31, 9_999),
        ("a", 27, 12_000),
        ("c", 40, 15_000),
    ];
    for (device, temperature, at) in stream {
        let topic = format!("telemetry/{device}/temperature");
        push(
            &mut w,
            &topic,
            &format!("{{\"temperature\":{temperature}}}"),
            at,
        );
    }
    assert_eq!(w.stats().filtered, 1);
    assert_eq!(
        json(&w.advance(10_000)),
        vec![
            r#"{"device_id":"a","hot":1,"start":0,"end":10000}"#,
            r#"{"device_id":"b","hot":2,"start":0,"end":10000}"#,
        ]
    );
    assert_eq!(
        json(&w.advance(20_000)),
        vec![
            r#"{"device_id":"a","hot":1,"start":10000,"end":20000}"#,
            r#"{"device_id":"c","hot":1,"start":10000,"end":20000}"#,
        ]
    );
    assert_eq!(w.stats().emitted, 4);
    assert_eq!(w.stats().open_groups, 0);
}

#[test]
fn the_documented_example_averages_per_device_with_event_time_and_lateness() {
    let sql = "SELECT topic(2) AS device_id, count(*) AS hot, avg(temperature) AS mean, \
               window_start() AS start FROM 'telemetry/+/temperature' WHERE temperature > 25 \
               GROUP BY topic(2), TUMBLINGWINDOW(mi, 5) TIMESTAMP BY timestamp * 1000 \
               LATENESS(ss, 30)";
    let mut w = windows(sql);
    let at = |s: u64| s * 1000 + 500; // arrival: half a second after the event
    let reading = |t: f64, s: u64| format!("{{\"temperature\":{t},\"timestamp\":{s}}}");
    let topic = "telemetry/d1/temperature";
    assert_eq!(
        push(&mut w, topic, &reading(26.5, 10), at(10)),
        Pushed::Accepted
    );
    assert_eq!(
        push(&mut w, topic, &reading(27.5, 200), at(200)),
        Pushed::Accepted
    );
    // Event at 310 s: window [0, 300 s) is still open (lateness 30 s).
    assert_eq!(
        push(&mut w, topic, &reading(30.0, 310), at(310)),
        Pushed::Accepted
    );
    assert_eq!(
        push(&mut w, topic, &reading(29.0, 299), at(315)),
        Pushed::Accepted
    );
    assert_eq!(w.next_deadline(), Some(330_000));
    assert!(w.advance(at(320)).is_empty());
    assert_eq!(
        json(&w.advance(330_000)),
        vec![r#"{"device_id":"d1","hot":3,"mean":27.66666666666666666666666666666667,"start":0}"#]
    );
    assert_eq!(
        push(&mut w, topic, &reading(29.0, 298), at(331)),
        Pushed::Late
    );
    assert_eq!(
        json(&w.flush()),
        vec![r#"{"device_id":"d1","hot":1,"mean":30,"start":300000}"#]
    );
}

#[test]
fn hopping_window_counts_each_event_in_size_over_hop_windows() {
    let sql = "SELECT count(*) AS n, window_start() AS start FROM 't' \
               GROUP BY HOPPINGWINDOW(ss, 10, 5)";
    let mut w = windows(sql);
    for at in [1_000, 6_000, 7_000, 12_000] {
        assert_eq!(push(&mut w, "t", "{}", at), Pushed::Accepted);
    }
    assert_eq!(w.stats().open_groups, 3); // windows starting at 0, 5 and 10 s
    assert_eq!(
        json(&w.flush()),
        vec![
            r#"{"n":3,"start":0}"#,
            r#"{"n":3,"start":5000}"#,
            r#"{"n":1,"start":10000}"#,
        ]
    );
}

#[test]
fn lateness_accepts_events_within_it_and_refuses_beyond() {
    let sql = "SELECT count(*) AS n FROM 't' GROUP BY TUMBLINGWINDOW(ss, 10) \
               TIMESTAMP BY ts LATENESS(ss, 5)";
    let mut w = windows(sql);
    let event = |ts: u64| format!("{{\"ts\":{ts}}}");
    assert_eq!(push(&mut w, "t", &event(1_000), 20_000), Pushed::Accepted);
    assert_eq!(push(&mut w, "t", &event(14_000), 20_000), Pushed::Accepted);
    // Largest event time 14 s: [0, 10 s) stays open until an event at 15 s.
    assert_eq!(push(&mut w, "t", &event(9_000), 20_000), Pushed::Accepted);
    assert_eq!(push(&mut w, "t", &event(15_000), 20_000), Pushed::Accepted);
    assert_eq!(push(&mut w, "t", &event(9_500), 20_000), Pushed::Late);
    assert_eq!(w.stats().late, 1);
    assert_eq!(json(&w.advance(0)), vec![r#"{"n":2}"#]);
}

#[test]
fn event_time_groups_by_payload_time_and_arrival_time_by_message_time() {
    let event = "SELECT count(*) AS n, window_start() AS start FROM 't' \
                 GROUP BY TUMBLINGWINDOW(ss, 10) TIMESTAMP BY ts";
    let arrival = "SELECT count(*) AS n, window_start() AS start FROM 't' \
                   GROUP BY TUMBLINGWINDOW(ss, 10)";
    let (mut by_event, mut by_arrival) = (windows(event), windows(arrival));
    // Three readings taken in the first window, delivered late in the second.
    for ts in [1_000, 2_000, 3_000] {
        let payload = format!("{{\"ts\":{ts}}}");
        push(&mut by_event, "t", &payload, 15_000);
        push(&mut by_arrival, "t", &payload, 15_000);
    }
    assert_eq!(json(&by_event.flush()), vec![r#"{"n":3,"start":0}"#]);
    assert_eq!(json(&by_arrival.flush()), vec![r#"{"n":3,"start":10000}"#]);
}

#[test]
fn a_quiet_event_time_stream_still_closes_on_arrival_time() {
    let sql = "SELECT count(*) AS n FROM 't' GROUP BY TUMBLINGWINDOW(ss, 10) \
               TIMESTAMP BY ts LATENESS(ss, 2)";
    let mut w = windows(sql);
    push(&mut w, "t", r#"{"ts":4000}"#, 4_100);
    assert_eq!(w.next_deadline(), Some(12_000));
    assert!(w.advance(11_999).is_empty());
    assert_eq!(json(&w.advance(12_000)), vec![r#"{"n":1}"#]);
    assert_eq!(w.next_deadline(), None);
}

#[test]
fn timestamp_by_that_is_not_a_number_or_far_ahead_is_dropped_and_counted() {
    let sql = "SELECT count(*) AS n FROM 't' GROUP BY TUMBLINGWINDOW(ss, 10) TIMESTAMP BY ts";
    let mut w = windows(sql);
    assert_eq!(
        push(&mut w, "t", r#"{"ts":"soon"}"#, 0),
        Pushed::NoTimestamp
    );
    assert_eq!(push(&mut w, "t", r#"{}"#, 0), Pushed::NoTimestamp);
    assert_eq!(push(&mut w, "t", r#"{"ts":-5}"#, 0), Pushed::NoTimestamp);
    assert_eq!(push(&mut w, "t", r#"{"ts":1500.75}"#, 0), Pushed::Accepted);
    assert_eq!(push(&mut w, "t", r#"{"ts":99000000}"#, 0), Pushed::Future);
    let stats = w.stats();
    assert_eq!(
        (stats.no_timestamp, stats.future, stats.accepted),
        (3, 1, 1)
    );
}

#[test]
fn flush_emits_every_open_group_and_later_events_for_them_are_late() {
    let sql = "SELECT k, sum(v) AS total FROM 't' GROUP BY k, TUMBLINGWINDOW(ss, 10)";
    let mut w = windows(sql);
    push(&mut w, "t", r#"{"k":"x","v":1}"#, 1_000);
    push(&mut w, "t", r#"{"k":"x","v":2.5}"#, 2_000);
    push(&mut w, "t", r#"{"k":"y","v":"4"}"#, 3_000);
    assert_eq!(
        json(&w.flush()),
        vec![r#"{"k":"x","total":3.5}"#, r#"{"k":"y","total":4}"#]
    );
    assert!(w.flush().is_empty());
    assert_eq!(push(&mut w, "t", r#"{"k":"x","v":1}"#, 9_000), Pushed::Late);
}

#[test]
fn max_groups_refuses_new_groups_without_evicting_and_counts_them() {
    let mut limits = WindowLimits::default();
    limits.max_groups = 2;
    let mut w = windows_with(
        "SELECT k, count(*) AS n FROM 't' GROUP BY k, TUMBLINGWINDOW(ss, 10)",
        limits,
    );
    assert_eq!(push(&mut w, "t", r#"{"k":1}"#, 0), Pushed::Accepted);
    assert_eq!(push(&mut w, "t", r#"{"k":2}"#, 0), Pushed::Accepted);
    assert_eq!(push(&mut w, "t", r#"{"k":3}"#, 0), Pushed::OverCapacity);
    assert_eq!(push(&mut w, "t", r#"{"k":1}"#, 0), Pushed::Accepted);
    assert_eq!(w.stats().over_capacity, 1);
    assert_eq!(
        json(&w.flush()),
        vec![r#"{"k":1,"n":2}"#, r#"{"k":2,"n":1}"#]
    );
}

#[test]
fn select_items_compute_from_keys_and_aggregates_and_drop_undefined() {
    let sql = "SELECT upper(k) AS key, sum(v) / count(*) AS mean, max(v) - min(v) AS range, \
               percentile(v, 0.5) AS median, count(missing) AS m, sum(missing) AS gone, \
               window_end() - window_start() AS width FROM 't' \
               GROUP BY k, TUMBLINGWINDOW(ss, 10)";
    let mut w = windows(sql);
    for v in [4, 1, 10] {
        push(&mut w, "t", &format!("{{\"k\":\"dev\",\"v\":{v}}}"), 0);
    }
    assert_eq!(
        json(&w.flush()),
        vec![r#"{"key":"DEV","mean":5,"range":9,"median":4,"m":0,"width":10000}"#]
    );
}

#[test]
fn undefined_key_forms_its_own_group_and_is_left_out_of_the_output() {
    let sql = "SELECT k, count(*) AS n FROM 't' GROUP BY k, TUMBLINGWINDOW(ss, 10)";
    let mut w = windows(sql);
    push(&mut w, "t", r#"{"k":"a"}"#, 0);
    push(&mut w, "t", r#"{}"#, 0);
    push(&mut w, "t", r#"{"other":1}"#, 0);
    assert_eq!(json(&w.flush()), vec![r#"{"n":2}"#, r#"{"k":"a","n":1}"#]);
}

#[test]
fn select_value_outputs_the_item_itself() {
    let mut w = windows("SELECT VALUE count(*) FROM 't' GROUP BY TUMBLINGWINDOW(ss, 1)");
    push(&mut w, "t", "{}", 0);
    push(&mut w, "t", "not json", 10);
    assert_eq!(w.flush(), vec![Output::Json(Value::Int(2))]);
}

#[test]
fn refusals_point_at_the_offending_expression() {
    let cases = [
        (
            "SELECT temperature FROM 't' GROUP BY topic(2), TUMBLINGWINDOW(ss, 10)",
            (1, 8),
        ),
        (
            "SELECT count(*) FROM 't'\nWHERE count(*) > 2 GROUP BY TUMBLINGWINDOW(ss, 10)",
            (2, 7),
        ),
        ("SELECT * FROM 't' GROUP BY TUMBLINGWINDOW(ss, 10)", (1, 8)),
        (
            "SELECT sum(max(v)) FROM 't' GROUP BY TUMBLINGWINDOW(ss, 10)",
            (1, 12),
        ),
        (
            "SELECT clientid() AS c, count(*) FROM 't' GROUP BY TUMBLINGWINDOW(ss, 10)",
            (1, 8),
        ),
        (
            "SELECT percentile(v, 2) FROM 't' GROUP BY TUMBLINGWINDOW(ss, 10)",
            (1, 22),
        ),
    ];
    for (sql, (line, column)) in cases {
        match refusal(sql) {
            Error::Window {
                line: l, column: c, ..
            } => assert_eq!((l, c), (line, column), "{sql}"),
            other => panic!("{sql}: {other:?}"),
        }
    }
    let rule = Rule::compile(
        "SELECT a FROM 't'",
        SqlVersion::V2016_03_23,
        &Limits::default(),
    )
    .expect("a plain rule");
    assert!(matches!(
        Windows::new(&rule, WindowLimits::default()),
        Err(Error::Window { .. })
    ));
}

#[test]
fn windows_new_refuses_a_hopping_window_over_the_overlap_limit() {
    let sql = "SELECT count(*) FROM 't' GROUP BY HOPPINGWINDOW(ss, 10, 1)";
    let rule = Rule::compile(sql, SqlVersion::V2016_03_23, &Limits::default())
        .expect("no limit at compile time");
    let mut limits = WindowLimits::default();
    limits.max_windows_per_event = 5;
    match Windows::new(&rule, limits) {
        Err(Error::Window { line, column, .. }) => assert_eq!((line, column), (1, 35)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_windowed_rule_reads_only_the_payload_members_it_needs_and_any_payload() {
    let mut w =
        windows("SELECT count(*) AS n, max(v) AS top FROM 't' GROUP BY TUMBLINGWINDOW(ss, 1)");
    push(&mut w, "t", r#"{"big":{"a":[1,2,3]},"v":7}"#, 0);
    push(&mut w, "t", "\u{1}binary", 1);
    assert_eq!(json(&w.flush()), vec![r#"{"n":2,"top":7}"#]);
}

#[test]
fn a_key_expression_repeated_in_select_is_accepted() {
    windows("SELECT topic(2), count(*) FROM 'a/+' GROUP BY topic(2), TUMBLINGWINDOW(ss, 1)");
    windows("SELECT s.id AS id FROM 'a' GROUP BY s.id, TUMBLINGWINDOW(ss, 1)");
    windows("SET @d = topic(2) SELECT @d AS d FROM 'a/+' GROUP BY @d, TUMBLINGWINDOW(ss, 1)");
}

#[test]
fn reference_job_counts_readings_above_25_per_device_like_plain_rust() {
    let sql = "SELECT topic(2) AS device_id, count(*) AS hot FROM 'devices/+/telemetry' \
               WHERE temperature > 25 GROUP BY topic(2), TUMBLINGWINDOW(dd, 1)";
    let mut w = windows(sql);
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        seed >> 33
    };
    let mut plain: BTreeMap<String, i128> = BTreeMap::new();
    let start = 1_700_006_400_000; // a midnight UTC
    for i in 0..10_000u64 {
        let device = format!("device-{}", next() % 50);
        let temperature = (next() % 400) as f64 / 10.0 - 5.0;
        if temperature > 25.0 {
            *plain.entry(device.clone()).or_default() += 1;
        }
        let topic = format!("devices/{device}/telemetry");
        let payload = format!("{{\"temperature\":{temperature},\"timestamp\":{i}}}");
        push(&mut w, &topic, &payload, start + i);
    }
    let counted: BTreeMap<String, i128> = w
        .flush()
        .into_iter()
        .filter_map(|output| match output {
            Output::Json(Value::Object(o)) => match (o.get("device_id"), o.get("hot")) {
                (Some(Value::String(d)), Some(Value::Int(n))) => Some((d.clone(), *n)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(counted, plain);
}

/// The naive model: per 10 ms window and key, the values counted (an event is late when its
/// window's end plus the lateness is at or before the largest earlier event time).
fn model(events: &[(u8, u64, i64)], lateness: u64) -> BTreeMap<(u64, u8), Vec<i64>> {
    let mut groups: BTreeMap<(u64, u8), Vec<i64>> = BTreeMap::new();
    let mut max: Option<u64> = None;
    for &(key, t, v) in events {
        let end = t / 10 * 10 + 10;
        if max.is_none_or(|m| end + lateness > m) {
            groups.entry((end, key)).or_default().push(v);
        }
        max = Some(max.map_or(t, |m| m.max(t)));
    }
    groups
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn tumbling_count_sum_min_max_avg_agree_with_a_naive_model(
        steps in proptest::collection::vec((0u8..3, 0u64..25, -500i64..500), 0..120),
        in_order in any::<bool>(),
        lateness in 0u64..15,
    ) {
        // LATENESS needs at least 1 ms; none is zero.
        let clause = if lateness == 0 { String::new() } else { format!(" LATENESS(ms, {lateness})") };
        let sql = format!(
            "SELECT k, count(*) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi, avg(v) AS a \
             FROM 't' GROUP BY k, TUMBLINGWINDOW(ms, 10) TIMESTAMP BY ts{clause}"
        );
        let mut w = windows(&sql);
        let mut latest = 0u64;
        let mut events = Vec::new();
        for (key, delta, v) in steps {
            // In order, or up to 25 ms behind the latest (within the lateness or beyond).
            let t = if in_order {
                latest += delta;
                latest
            } else {
                latest += delta / 2;
                latest.saturating_sub(delta)
            };
            events.push((key, t, v));
        }
        let mut outputs = Vec::new();
        for &(key, t, v) in &events {
            push(&mut w, "t", &format!("{{\"k\":{key},\"ts\":{t},\"v\":{v}}}"), t);
            outputs.extend(json(&w.advance(0)));
        }
        outputs.extend(json(&w.flush()));
        let expected: Vec<String> = model(&events, lateness)
            .into_iter()
            .map(|((_, key), values)| {
                let n = values.len() as i128;
                let sum: i128 = values.iter().map(|&v| i128::from(v)).sum();
                let lo = values.iter().min().copied().unwrap_or(0);
                let hi = values.iter().max().copied().unwrap_or(0);
                let avg = thingkit_rules::Decimal::from_i128(sum)
                    .div(&thingkit_rules::Decimal::from_i128(n))
                    .map(|d| {
                        let d = thingkit_rules::Decimal::from_big(d.as_big().normalized());
                        if d.is_integer() {
                            d.trunc_to_i128().map_or_else(String::new, |i| i.to_string())
                        } else {
                            d.to_string()
                        }
                    })
                    .unwrap_or_default();
                format!(r#"{{"k":{key},"n":{n},"s":{sum},"lo":{lo},"hi":{hi},"a":{avg}}}"#)
            })
            .collect();
        prop_assert_eq!(outputs, expected);
    }
}

#[test]
fn under_2015_10_08_whole_aggregates_stay_decimal() {
    let sql = "SELECT avg(v) AS a, sum(v) AS s FROM 't' GROUP BY TUMBLINGWINDOW(ss, 1)";
    let rule = Rule::compile(sql, SqlVersion::V2015_10_08, &Limits::default())
        .expect("windows under the first SQL version too");
    let mut w = Windows::new(&rule, WindowLimits::default()).expect("a windowed rule");
    push(&mut w, "t", r#"{"v":2}"#, 0);
    push(&mut w, "t", r#"{"v":4.0}"#, 0);
    let outputs = w.flush();
    let [Output::Json(Value::Object(row))] = outputs.as_slice() else {
        panic!("one output object: {outputs:?}");
    };
    assert!(matches!(row.get("a"), Some(Value::Decimal(_))), "{row:?}");
    assert_eq!(
        row.get("a").map(Value::to_json_string).as_deref(),
        Some("3")
    );
    assert_eq!(
        row.get("s").map(Value::to_json_string).as_deref(),
        Some("6.0")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the payloads and clocks, a push never panics, every message has exactly one
    /// outcome in the counters, and outputs come in window-end order.
    #[test]
    fn every_push_is_counted_once_and_outputs_are_in_end_order(
        steps in proptest::collection::vec(
            (
                prop_oneof![
                    Just("{}".to_string()),
                    Just("not json".to_string()),
                    (0u8..3, -5i64..60_000, any::<bool>()).prop_map(|(k, ts, hot)| format!(
                        "{{\"k\":{k},\"ts\":{ts},\"t\":{},\"s\":\"{}\"}}",
                        if hot { 30 } else { 20 },
                        k
                    )),
                    Just(r#"{"k":[1,{"a":null}],"ts":"x","t":"26"}"#.to_string()),
                ],
                0u64..60_000,
                any::<bool>(),
            ),
            0..80,
        ),
    ) {
        let sql = "SELECT k, count(*) AS n, sum(t) AS s, percentile(t, 0.5) AS p, \
                   max(s) AS m, window_end() AS end FROM 't' WHERE t > 25 \
                   GROUP BY k, HOPPINGWINDOW(ss, 10, 5) TIMESTAMP BY ts LATENESS(ss, 2)";
        let mut limits = WindowLimits::default();
        limits.max_groups = 4;
        limits.max_event_ahead_ms = 30_000;
        let mut w = windows_with(sql, limits);
        let mut ends = Vec::new();
        let collect = |outputs: Vec<Output>, ends: &mut Vec<i128>| {
            for output in outputs {
                if let Output::Json(Value::Object(o)) = output
                    && let Some(Value::Int(end)) = o.get("end")
                {
                    ends.push(*end);
                }
            }
        };
        for (payload, arrival, advance) in &steps {
            push(&mut w, "t", payload, *arrival);
            if *advance {
                collect(w.advance(*arrival), &mut ends);
            }
            prop_assert!(w.stats().open_groups <= 4);
        }
        collect(w.flush(), &mut ends);
        let st = w.stats();
        let outcomes = st.accepted + st.filtered + st.late + st.no_timestamp + st.over_capacity
            + st.key_too_large + st.future;
        prop_assert_eq!(outcomes, steps.len() as u64);
        let mut sorted = ends.clone();
        sorted.sort_unstable();
        prop_assert_eq!(ends, sorted);
    }
}
