//! Integration tests of `thingkit policy validate` and `thingkit policy test`.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("temp file is writable");
    p
}

const DEVICE: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "Pub", "Effect": "Allow", "Action": "iot:Publish",
     "Resource": "arn:aws:iot:us-east-1:123456789012:topic/dev/${iot:ClientId}/*"}
  ]
}"#;

const DENY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": {"Sid": "NoAdmin", "Effect": "Deny", "Action": "iot:Publish",
    "Resource": "arn:aws:iot:us-east-1:123456789012:topic/dev/*/admin"}
}"#;

#[test]
fn validate_accepts_a_clean_policy_with_exit_zero() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "device.json", DEVICE);
    let o = thingkit(&["policy", "validate", p.to_str().unwrap()], None);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(stdout(&o), "");
}

#[test]
fn validate_reports_errors_with_file_line_column_and_exit_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "bad.json",
        "{\n  \"Version\": \"2012-10-17\",\n  \"Version\": \"2012-10-17\",\n  \"Statement\": {\"Effect\": \"Allow\", \"Action\": \"iot:Publish\", \"Resource\": \"*\"}\n}",
    );
    let o = thingkit(&["policy", "validate", p.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains(&format!("{}:3:3: error duplicate-key:", p.display())),
        "{out}"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn validate_prints_warnings_but_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "lint.json",
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Subscribe",
            "Resource": "arn:aws:iot:us-east-1:123456789012:topicfilter/a/+/b"}]}"#,
    );
    let o = thingkit(&["policy", "validate", p.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("warning mqtt-wildcard-in-policy:"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn validate_reports_every_file_before_failing() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.json", "{");
    let b = write(dir.path(), "b.json", r#"{"Statement": []}"#);
    let o = thingkit(
        &[
            "policy",
            "validate",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("a.json:1:2: error json-syntax:"), "{out}");
    assert!(out.contains("b.json:1:1: error missing-element:"), "{out}");
    assert!(out.contains("b.json:1:15: error invalid-type:"), "{out}");
    // Each finding is followed by what to do about it.
    assert!(out.contains("\n  help: add the element"), "{out}");
}

#[test]
fn validate_json_lists_every_finding_with_span_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"{"Version": "2012-10-18", "Statement": [{"Effect": "Allow", "Action": "iot:Connect",
            "Resource": "arn:aws:iot:us-east-1:123456789012:client/x"}]}"#;
    let p = write(dir.path(), "p.json", text);
    let w = write(
        dir.path(),
        "w.json",
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect",
            "Resource": "arn:aws:iot:us-east-1:123456789012:client/*"}]}"#,
    );
    let o = thingkit(
        &[
            "policy",
            "validate",
            "--json",
            p.to_str().unwrap(),
            w.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON output");
    let findings = v.as_array().expect("an array");
    assert_eq!(findings.len(), 2, "{v:#}");
    let version = &findings[0];
    assert_eq!(version["code"], "invalid-version");
    assert_eq!(version["severity"], "error");
    assert_eq!(version["path"], "$.Version");
    assert_eq!(
        (version["line"].as_u64(), version["column"].as_u64()),
        (Some(1), Some(13))
    );
    let span = &version["span"];
    let (start, end) = (
        span["start"].as_u64().unwrap() as usize,
        span["end"].as_u64().unwrap() as usize,
    );
    assert_eq!(&text[start..end], "\"2012-10-18\"");
    assert!(
        version["help"].as_str().unwrap().contains("2012-10-17"),
        "{v:#}"
    );
    let connect = &findings[1];
    assert_eq!(connect["code"], "connect-without-is-attached");
    assert_eq!(connect["severity"], "warning");
    assert!(
        connect["help"].as_str().unwrap().contains("IsAttached"),
        "{v:#}"
    );
    assert_eq!(connect["file"], w.display().to_string());
}

fn decision(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).expect("test prints JSON")
}

#[test]
fn test_allows_and_names_the_determining_statement() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "device.json", DEVICE);
    let r = write(
        dir.path(),
        "req.json",
        r#"{"action": "iot:Publish", "resource": "arn:aws:iot:us-east-1:123456789012:topic/dev/c1/temp",
            "context": {"clientId": "c1"}}"#,
    );
    let o = thingkit(
        &[
            "policy",
            "test",
            "--policy",
            p.to_str().unwrap(),
            "--request",
            r.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = decision(&o);
    assert_eq!(v["decision"], "ALLOW");
    assert_eq!(
        v["determining"],
        serde_json::json!([{"policy": "device", "statement": 0, "sid": "Pub"}])
    );
    assert_eq!(v["missing_context"], serde_json::json!([]));
    assert!(v.get("explanation").is_none());
}

#[test]
fn test_explicit_deny_wins_across_policies_reading_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "device.json", DEVICE);
    let d = write(dir.path(), "deny.json", DENY);
    let o = thingkit(
        &[
            "policy",
            "test",
            "--policy",
            p.to_str().unwrap(),
            "--policy",
            d.to_str().unwrap(),
            "--request",
            "-",
            "--explain",
        ],
        Some(
            r#"{"action": "iot:Publish", "resource": "arn:aws:iot:us-east-1:123456789012:topic/dev/c1/admin",
                "context": {"clientId": "c1"}}"#,
        ),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = decision(&o);
    assert_eq!(v["decision"], "EXPLICIT_DENY");
    assert_eq!(v["determining"][0]["policy"], "deny");
    assert_eq!(v["determining"][0]["sid"], "NoAdmin");
    let explained = v["explanation"].as_array().expect("explanation is a list");
    assert_eq!(explained.len(), 2);
    assert!(explained.iter().all(|s| s["applies"] == true));
}

#[test]
fn test_reports_missing_context_on_implicit_deny() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "device.json", DEVICE);
    let o = thingkit(
        &[
            "policy",
            "test",
            "--policy",
            p.to_str().unwrap(),
            "--request",
            "-",
        ],
        Some(
            r#"{"action": "iot:Publish", "resource": "arn:aws:iot:us-east-1:123456789012:topic/dev/c1/x"}"#,
        ),
    );
    assert_eq!(o.status.code(), Some(0));
    let v = decision(&o);
    assert_eq!(v["decision"], "IMPLICIT_DENY");
    assert_eq!(v["determining"], serde_json::json!([]));
    assert_eq!(v["missing_context"], serde_json::json!(["iot:ClientId"]));
}

#[test]
fn test_rejects_an_invalid_policy_with_one_line_and_exit_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "bad.json",
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "allow", "Action": "iot:Connect", "Resource": "*"}]}"#,
    );
    let r = write(
        dir.path(),
        "req.json",
        r#"{"action": "iot:Connect", "resource": "*"}"#,
    );
    let o = thingkit(
        &[
            "policy",
            "test",
            "--policy",
            p.to_str().unwrap(),
            "--request",
            r.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("bad.json:1:52: error invalid-effect"), "{err}");
}

#[test]
fn test_rejects_a_malformed_request() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "device.json", DEVICE);
    let o = thingkit(
        &[
            "policy",
            "test",
            "--policy",
            p.to_str().unwrap(),
            "--request",
            "-",
        ],
        Some(r#"{"action": "iot:Teleport", "resource": "*"}"#),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("iot:Teleport"));
}

#[test]
fn missing_arguments_are_usage_errors() {
    let o = thingkit(&["policy", "test", "--request", "-"], None);
    assert_eq!(o.status.code(), Some(2));
}

/// Validates `policy` (exit 0 expected), then tests `request` against it; returns the decision.
fn validate_and_decide(policy: &str, request: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "aws.json", policy);
    let r = write(dir.path(), "req.json", request);
    let v = thingkit(&["policy", "validate", arg(&p)], None);
    assert_eq!(v.status.code(), Some(0), "{}{}", stdout(&v), stderr(&v));
    assert!(!stdout(&v).contains(" error "), "{}", stdout(&v));
    let o = thingkit(
        &["policy", "test", "--policy", arg(&p), "--request", arg(&r)],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    decision(&o)["decision"]
        .as_str()
        .expect("a decision string")
        .to_owned()
}

#[test]
fn test_decides_a_subject_alternative_name_condition() {
    let policy = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect",
      "Resource": "arn:aws:iot:us-east-1:123456789012:client/${iot:ClientId}",
      "Condition": {"StringEquals": {"iot:Certificate.Subject.AlternativeName.DNSName": "example.com",
                                     "iot:Certificate.Issuer.AlternativeName.IPAddress": "5.6.7.8"}}}]}"#;
    let request = |dns: &str| {
        format!(
            r#"{{"action": "iot:Connect", "resource": "arn:aws:iot:us-east-1:123456789012:client/bulb",
                "context": {{"clientId": "bulb", "certificate": {{
                  "subjectAlternativeName": {{"DNSName": ["{dns}"]}},
                  "issuerAlternativeName": {{"IPAddress": ["5.6.7.8"]}}}}}}}}"#
        )
    };
    assert_eq!(
        validate_and_decide(policy, &request("example.com")),
        "ALLOW"
    );
    assert_eq!(
        validate_and_decide(policy, &request("other.example")),
        "IMPLICIT_DENY"
    );
}

#[test]
fn test_decides_the_guides_empty_list_connect_attributes_policy() {
    // AWS IoT Core Developer Guide, Connect policy examples: "The following policy only allows
    // connect using default features".
    let policy = r#"{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "iot:Connect"
            ],
            "Resource": "*",
            "Condition": {
                "ForAllValues:StringEquals": {
                    "iot:ConnectAttributes": [
                    ]
                }
            }
        }
    ]
}"#;
    let request = |attrs: &str| {
        format!(
            r#"{{"action": "iot:Connect", "resource": "arn:aws:iot:us-east-1:123456789012:client/c",
                "context": {{"clientId": "c", "connectAttributes": [{attrs}]}}}}"#
        )
    };
    assert_eq!(validate_and_decide(policy, &request("")), "ALLOW");
    assert_eq!(
        validate_and_decide(policy, &request(r#""PersistentConnect""#)),
        "IMPLICIT_DENY"
    );
}

#[test]
fn test_an_unattached_thing_does_not_resolve_thing_variables() {
    let policy = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Publish",
      "Resource": "arn:aws:iot:us-east-1:123456789012:topic/${iot:Connection.Thing.ThingName}"}]}"#;
    let request = |attached: bool| {
        format!(
            r#"{{"action": "iot:Publish", "resource": "arn:aws:iot:us-east-1:123456789012:topic/victim",
                "context": {{"clientId": "victim", "thing": {{"name": "victim", "attached": {attached}}}}}}}"#
        )
    };
    assert_eq!(validate_and_decide(policy, &request(true)), "ALLOW");
    assert_eq!(
        validate_and_decide(policy, &request(false)),
        "IMPLICIT_DENY"
    );
}
