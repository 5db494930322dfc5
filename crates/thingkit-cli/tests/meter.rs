//! `thingkit meter` end to end: the real binary on real files and stdin.

use std::process::Output;

mod common;
use common::*;

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON value")
}

#[test]
fn units_prints_two_aws_units_for_8_kb() {
    let out = thingkit(
        &["meter", "units", "--preset", "aws", "--bytes", "8192"],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let v = json(&out);
    assert_eq!(v["units"], 2);
    assert_eq!(v["kind"], "publish");
}

#[test]
fn units_follow_each_preset_and_kind() {
    for (preset, bytes, kind, units) in [
        ("aws", "5120", "publish", 1),
        ("aws", "5121", "publish", 2),
        ("aws", "1025", "shadow", 2),
        ("aws", "10", "ping", 0),
        ("azure", "4097", "publish", 2),
        ("azure-free", "513", "publish", 2),
        ("gcp", "10", "publish", 1024),
    ] {
        let out = thingkit(
            &[
                "meter", "units", "--preset", preset, "--bytes", bytes, "--kind", kind,
            ],
            None,
        );
        assert!(out.status.success(), "{preset} {bytes} {kind}: {out:?}");
        assert_eq!(json(&out)["units"], units, "{preset} {bytes} {kind}");
    }
}

#[test]
fn units_rejects_unknown_preset_with_exit_1() {
    let out = thingkit(
        &["meter", "units", "--preset", "oracle", "--bytes", "1"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown preset `oracle`"), "{err}");
}

#[test]
fn units_without_bytes_is_a_usage_error() {
    let out = thingkit(&["meter", "units", "--preset", "aws"], None);
    assert_eq!(out.status.code(), Some(2));
}

const USAGE: &str = r#"{"id":"1","account":"acme","device":"d1","kind":"publish","bytes":8192,"time":1764115200}
{"id":"2","account":"acme","device":"d1","kind":"connection_minutes","minutes":1000000,"time":1764115260}
{"id":"1","account":"acme","device":"d1","kind":"publish","bytes":8192,"time":1764115200}

{"id":"3","account":"beta","device":"d9","kind":"receive","bytes":10,"time":1764115300}
"#;

#[test]
fn bill_from_stdin_ignores_repeated_ids_and_prints_one_bill_per_account() {
    let out = thingkit(
        &["meter", "bill", "--preset", "aws-us-east-1", "--usage", "-"],
        Some(USAGE),
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let bills: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(bills.len(), 2);
    let acme = &bills[0];
    assert_eq!(acme["account"], "acme");
    assert_eq!(acme["period"], "2025-11");
    let items = acme["line_items"].as_array().unwrap();
    assert_eq!(items[0]["dimension"], "messaging");
    assert_eq!(items[0]["quantity"], 1, "the repeated id is ignored");
    assert_eq!(items[0]["billable_units"], 2);
    assert_eq!(items[0]["unit_price"]["amount"], "1.00");
    assert_eq!(items[0]["unit_price"]["per"], 1_000_000);
    assert_eq!(items[0]["amount"], "0.000002");
    assert_eq!(items[1]["dimension"], "connectivity");
    assert_eq!(items[1]["amount"], "0.08");
    assert_eq!(acme["total"], "0.080002");
    assert_eq!(bills[1]["account"], "beta");
}

#[test]
fn bill_reports_malformed_lines_with_numbers_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.jsonl");
    let input = format!(
        "{}\nnot json\n{}\n{{\"id\":\"x\",\"account\":\"a\",\"device\":\"d\",\"kind\":\"warp\",\"time\":1}}\n",
        USAGE.lines().next().unwrap(),
        "x".repeat(10_000)
    );
    std::fs::write(&path, input).unwrap();
    let out = thingkit(&["meter", "bill", "--usage", path.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "no partial bill is printed");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("usage.jsonl:2: malformed usage event"),
        "{err}"
    );
    assert!(
        err.contains("usage.jsonl:3: usage line over the limit"),
        "{err}"
    );
    assert!(err.contains("usage.jsonl:4:"), "{err}");
    assert!(!err.contains("usage.jsonl:1:"), "{err}");
    assert!(err.contains("3 malformed usage lines"), "{err}");
}

#[test]
fn bill_writes_csv_for_analytics() {
    let out = thingkit(
        &["meter", "bill", "--usage", "-", "--format", "csv"],
        Some(USAGE),
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("account,period,price_table")
    );
    assert_eq!(lines.count(), 3);
}

#[test]
fn bill_with_a_custom_price_table_file() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("prices.json");
    std::fs::write(
        &table,
        r#"{"name":"flat","version":"1","currency":"EUR",
            "metering":{"name":"m","counted_bytes":"topic_and_payload",
              "messages":{"block_bytes":1024,"min_units":1},
              "shadow":{"block_bytes":1024,"min_units":1},
              "registry":{"block_bytes":1024,"min_units":1},
              "billable":["publish","receive"],"retained_counts_twice":false},
            "dimensions":[{"name":"all","kinds":["publish","receive"],
              "tiers":[{"up_to":null,"price":{"amount":"0.01","per":1}}]}]}"#,
    )
    .unwrap();
    let out = thingkit(
        &[
            "meter",
            "bill",
            "--price-table",
            table.to_str().unwrap(),
            "--usage",
            "-",
        ],
        Some(USAGE),
    );
    assert!(out.status.success(), "{out:?}");
    let first: serde_json::Value = serde_json::from_str(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["currency"], "EUR");
    assert_eq!(first["total"], "0.08", "8 KB in 1 KB blocks at 0.01");
}

#[test]
fn bill_rejects_an_invalid_price_table_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("prices.json");
    std::fs::write(&table, r#"{"name":"x"}"#).unwrap();
    let out = thingkit(
        &[
            "meter",
            "bill",
            "--price-table",
            table.to_str().unwrap(),
            "--usage",
            "-",
        ],
        Some(""),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("prices.json"));
}
