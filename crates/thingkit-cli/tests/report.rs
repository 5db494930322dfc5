//! `thingkit report` and `thingkit audit run|findings`, offline on the data directory a real
//! `thingkit serve` left: `thingkit init`, two devices and an overly permissive policy, one
//! start and stop of the server, then the offline commands.

use std::path::Path;

mod common;
use common::*;

/// `iot:*` on `*`: the audit's IOT_POLICY_OVERLY_PERMISSIVE_CHECK flags it.
const POLICY: &str = r#"{"Version": "2012-10-17",
  "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}"#;

fn fleet(dir: &Path) {
    fleet_dir(dir, &["sensor-1", "sensor-2"], POLICY);
    let server = Server::start(&dir.join("thingkit.toml"));
    assert!(server.terminate().success());
}

#[test]
#[cfg(unix)]
fn report_and_audit_run_offline_on_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("thingkit.toml");
    // Before the server ever ran there is no registry: a one-line refusal.
    let out = thingkit(&["init", arg(&dir.path().join("empty"))], None);
    assert!(out.status.success());
    let out = thingkit(
        &[
            "audit",
            "run",
            "--config",
            arg(&dir.path().join("empty/thingkit.toml")),
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no registry"), "{}", stderr(&out));

    fleet(dir.path());

    let out = thingkit(
        &["report", "--config", arg(&config), "--format", "json"],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["things_registered"], 2, "{report}");
    assert_eq!(report["things_connected"], 0);
    assert_eq!(report["certificates"]["ACTIVE"], 2);
    assert_eq!(report["firmware_versions"]["unknown"], 2);
    assert_eq!(report["rollout"], serde_json::json!([]), "no jobs yet");
    assert!(
        report["metrics"]["maintenance_cost_nano_usd"].is_null(),
        "live only"
    );
    let open = report["findings"].as_array().unwrap().len();
    assert!(open >= 1, "the iot:* policy is flagged: {report}");

    let html = dir.path().join("report.html");
    let out = thingkit(
        &["report", "--config", arg(&config), "--out", arg(&html)],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("<b id=\"connected\">0 of 2</b>"), "{page}");
    assert!(page.contains(&format!("<b id=\"findings-count\">{open}</b>")));

    let out = thingkit(&["audit", "run", "--config", arg(&config)], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.starts_with("SEVERITY"), "{table}");
    assert!(
        table.contains("IOT_POLICY_OVERLY_PERMISSIVE_CHECK"),
        "{table}"
    );
    assert!(table.contains(&format!("{open} open finding")), "{table}");

    let out = thingkit(
        &["audit", "findings", "--config", arg(&config), "--json"],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let run: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(run["taskId"].is_string());
    assert_eq!(run["findings"].as_array().unwrap().len(), open);
    assert_eq!(
        run["findings"][0]["checkName"].as_str().map(str::is_empty),
        Some(false)
    );
}
