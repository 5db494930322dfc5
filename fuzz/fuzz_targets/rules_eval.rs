//! Arbitrary `<SQL> NUL <payload bytes>`: the statement is compiled under both SQL versions and
//! run on the payload with a fixed environment (a windowed statement through `Windows`). Nothing may panic or overflow the stack, an
//! output never holds Undefined, and its JSON text reads back as JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingkit_rules::ast::SqlVersion;
use thingkit_rules::{Environment, Limits, Message, Output, Rule, Value, WindowLimits, Windows};

struct Fixed;

impl Environment for Fixed {
    fn new_uuid(&self) -> String {
        "00000000-0000-4000-8000-000000000000".to_owned()
    }
    fn random(&self) -> f64 {
        0.5
    }
}

fn no_undefined(value: &Value) -> bool {
    match value {
        Value::Undefined => false,
        Value::Array(items) => items.iter().all(no_undefined),
        Value::Object(object) => object.iter().all(|(_, v)| no_undefined(v)),
        _ => true,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(split) = data.iter().position(|&b| b == 0) else {
        return;
    };
    let (sql, payload) = data.split_at(split);
    let payload = payload.get(1..).unwrap_or_default();
    let Ok(sql) = std::str::from_utf8(sql) else {
        return;
    };
    let mut limits = Limits::default();
    // Small enough that the fuzzer finds the limits, large enough for real statements.
    limits.max_output_bytes = 64 * 1024;
    let message = Message {
        topic: "devices/d-1/telemetry",
        payload,
        client_id: Some("d-1"),
        principal: Some("abc"),
        timestamp_ms: 1_700_000_000_000,
    };
    for version in [SqlVersion::V2015_10_08, SqlVersion::V2016_03_23] {
        let Ok(rule) = Rule::compile(sql, version, &limits) else {
            continue;
        };
        if rule.is_windowed() {
            // The GROUP BY extension: the message at two arrival times a window apart, then
            // the clock and a flush; every row obeys the same output rules.
            let Ok(mut windows) = Windows::new(&rule, WindowLimits::default()) else {
                continue;
            };
            let later = Message {
                timestamp_ms: message.timestamp_ms + 3_600_000,
                ..message
            };
            let _ = windows.push(&message, &Fixed);
            let _ = windows.push(&later, &Fixed);
            let mut rows = windows.advance(later.timestamp_ms + 86_400_000);
            rows.extend(windows.flush());
            for row in rows {
                if let Output::Json(value) = row {
                    assert!(no_undefined(&value), "{sql}: {value:?}");
                }
            }
            continue;
        }
        if let Ok(Some(Output::Json(value))) = rule.evaluate(&message, &Fixed, &limits) {
            assert!(no_undefined(&value), "{sql}: {value:?}");
            let text = value.to_json_string();
            // IgnoredAny checks the syntax without turning numbers into f64 (AWS's Decimal
            // reaches 9.999E999).
            assert!(
                text.is_empty() || serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok(),
                "{sql}: {text}"
            );
        }
    }
});
