//! Properties of the evaluator over random statements and payloads: it never panics, and an
//! output never holds Undefined (its JSON text parses with serde_json).

mod common;

use proptest::prelude::*;
use thingkit_rules::{Limits, Message, Output, Rule, SqlVersion, Value};

fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        (any::<i32>(), 0u32..1000).prop_map(|(a, b)| format!("{a}.{b}")),
        // Within f64 range, so that serde_json can check the text (AWS allows 9.999E999).
        Just("1e300".to_owned()),
        Just("-2.50E-999".to_owned()),
        Just("12345678901234567890123456789012345678".to_owned()),
        "[a-z0-9 ]{0,6}".prop_map(|s| format!("\"{s}\"")),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(
                (
                    prop_oneof![Just("a"), Just("b"), Just("c"), Just("e")],
                    inner
                ),
                0..4
            )
            .prop_map(|v| {
                let members: Vec<String> =
                    v.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec((prop_oneof![Just("a"), Just("b"), Just("c"), Just("e")], json_value()), 0..5)
            .prop_map(|v| {
                let members: Vec<String> = v.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", members.join(",")).into_bytes()
            }),
        1 => json_value().prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..16),
    ]
}

fn expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("c.a".to_owned()),
        Just("e[0]".to_owned()),
        Just("missing".to_owned()),
        Just("@v".to_owned()),
        Just("NULL".to_owned()),
        Just("true".to_owned()),
        Just("'5'".to_owned()),
        Just("'true'".to_owned()),
        Just("10.0".to_owned()),
        Just("9999999999999999999999999999999999".to_owned()),
        (-50i64..50).prop_map(|n| n.to_string()),
        Just("topic(1)".to_owned()),
    ];
    leaf.prop_recursive(4, 32, 3, |inner| {
        let op = prop_oneof![
            Just("AND"),
            Just("OR"),
            Just("="),
            Just("<>"),
            Just("<"),
            Just(">="),
            Just("+"),
            Just("-"),
            Just("*"),
            Just("/"),
            Just("%"),
            Just("IN"),
        ];
        prop_oneof![
            (inner.clone(), op, inner.clone()).prop_map(|(l, o, r)| format!("({l} {o} {r})")),
            inner.clone().prop_map(|e| format!("NOT ({e})")),
            inner.clone().prop_map(|e| format!("-({e})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("[{a}, {b}]")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{{'x': {a}, 'y': {b}}}")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(v, w, t)| format!("CASE {v} WHEN {w} THEN {t} ELSE missing END")),
            inner.clone().prop_map(|e| format!("cast({e} AS Int)")),
            inner.clone().prop_map(|e| format!("upper({e})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("concat({a}, {b})")),
            inner
                .clone()
                .prop_map(|e| format!("(SELECT VALUE {e} FROM e)")),
            inner
                .clone()
                .prop_map(|e| format!("(SELECT a AS k FROM e WHERE {e})")),
        ]
    })
}

fn statement() -> impl Strategy<Value = String> {
    (
        expr(),
        prop::collection::vec(expr(), 1..4),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(expr()),
    )
        .prop_map(|(set, items, star, value, where_)| {
            let mut list: Vec<String> = items
                .iter()
                .enumerate()
                .map(|(i, e)| format!("{e} AS k{i}"))
                .collect();
            if star {
                list.insert(0, "*".to_owned());
            }
            let select = if value {
                format!("VALUE {}", items.first().cloned().unwrap_or_default())
            } else {
                list.join(", ")
            };
            let where_ = where_.map(|w| format!(" WHERE {w}")).unwrap_or_default();
            format!("SET @v = {set} SELECT {select} FROM 't/+'{where_}")
        })
}

fn no_undefined(value: &Value) -> bool {
    match value {
        Value::Undefined => false,
        Value::Array(items) => items.iter().all(no_undefined),
        Value::Object(object) => object.iter().all(|(_, v)| no_undefined(v)),
        _ => true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn outputs_never_hold_undefined_and_always_serialize(
        sql in statement(),
        payload in payload(),
        v2 in any::<bool>(),
    ) {
        let version = if v2 { SqlVersion::V2016_03_23 } else { SqlVersion::V2015_10_08 };
        let limits = Limits::default();
        let Ok(rule) = Rule::compile(&sql, version, &limits) else {
            // Some generated statements use 2016-03-23 syntax under 2015-10-08.
            return Ok(());
        };
        let message = Message {
            topic: "t/x",
            payload: &payload,
            client_id: None,
            principal: None,
            timestamp_ms: 0,
        };
        if let Ok(Some(Output::Json(value))) = rule.evaluate(&message, &common::FixedEnv, &limits) {
            prop_assert!(no_undefined(&value), "{sql}: {value:?}");
            let text = value.to_json_string();
            prop_assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok(), "{sql}: {text}");
        }
    }
}
