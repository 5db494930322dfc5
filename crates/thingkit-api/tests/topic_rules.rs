//! The topic-rule operations: created, read, listed (pages, `topic`, `ruleDisabled`),
//! replaced, enabled, disabled and deleted; each change handed to the engine hook; AWS's
//! errors (SqlParseException with line:column, UnauthorizedException for a missing rule,
//! refused actions, names and versions); the redb store across a reopen; signed HTTP requests
//! and an identity policy that denies `iot:DeleteTopicRule`.

mod common;

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use thingkit_api::ControlPlane;
use thingkit_api::keys::KeyStore;
use thingkit_api::topic_rule::{
    MemoryTopicRuleStore, RedbTopicRuleStore, TopicRuleHook, TopicRuleStore,
};
use thingkit_provision::MemoryStore;
use thingkit_rules::topic_rule::TopicRulePayload;

use common::{ACCOUNT, ApiCalls, NOW, access_key, at, signed};

/// The engine as the hook sees it: what runs, and a log of calls; refuses SQL containing
/// `refuse-me`.
#[derive(Default)]
struct Engine {
    running: Mutex<Vec<(String, TopicRulePayload)>>,
    calls: Mutex<Vec<String>>,
}

impl TopicRuleHook for Engine {
    fn upsert(&self, name: &str, payload: &TopicRulePayload) -> Result<(), String> {
        if payload.sql.contains("refuse-me") {
            return Err("the engine refuses this rule".into());
        }
        self.calls.lock().unwrap().push(format!("upsert {name}"));
        let mut running = self.running.lock().unwrap();
        running.retain(|(n, _)| n != name);
        running.push((name.to_string(), payload.clone()));
        Ok(())
    }

    fn remove(&self, name: &str) {
        self.calls.lock().unwrap().push(format!("remove {name}"));
        self.running.lock().unwrap().retain(|(n, _)| n != name);
    }
}

impl Engine {
    fn running(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .running
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

struct Fixture {
    plane: ControlPlane<MemoryStore>,
    engine: Arc<Engine>,
    keys: Arc<KeyStore>,
}

fn fixture_with(store: Arc<dyn TopicRuleStore>) -> Fixture {
    let engine = Arc::new(Engine::default());
    let (plane, keys) = common::control_plane();
    let plane = plane.with_topic_rules(store, Some(engine.clone()));
    Fixture {
        plane,
        engine,
        keys,
    }
}

fn fixture() -> Fixture {
    fixture_with(Arc::new(MemoryTopicRuleStore::new()))
}

fn republish(topic: &str) -> Value {
    json!({"republish": {"topic": topic, "roleArn": format!("arn:aws:iam::{ACCOUNT}:role/r")}})
}

fn payload(sql: &str) -> Value {
    json!({"sql": sql, "actions": [republish("out/${topic()}")]})
}

impl ApiCalls for Fixture {
    fn plane(&self) -> &ControlPlane<MemoryStore> {
        &self.plane
    }
}

impl Fixture {
    fn create(&self, name: &str, payload: Value) {
        self.ok(
            "CreateTopicRule",
            json!({"ruleName": name, "topicRulePayload": payload}),
        );
    }

    fn listed(&self, query: Value) -> Vec<String> {
        self.ok("ListTopicRules", query)["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["ruleName"].as_str().unwrap().to_string())
            .collect()
    }
}

#[test]
fn a_rule_is_created_read_replaced_disabled_enabled_and_deleted_and_the_engine_follows() {
    let f = fixture();
    f.create(
        "hot",
        json!({"sql": "SELECT * FROM 'devices/+/telemetry' WHERE temperature > 25",
               "description": "hot readings", "awsIotSqlVersion": "2016-03-23",
               "actions": [republish("alerts/${topic(2)}"),
                           {"http": {"url": "https://example.com/hook",
                                     "headers": [{"key": "x-k", "value": "v"}]}}],
               "errorAction": republish("errors")}),
    );
    assert_eq!(f.engine.take_calls(), ["upsert hot"]);
    let got = f.ok("GetTopicRule", json!({"ruleName": "hot"}));
    assert_eq!(
        got["ruleArn"],
        "arn:aws:iot:eu-central-1:123456789012:rule/hot"
    );
    let rule = &got["rule"];
    assert_eq!(rule["ruleName"], "hot");
    assert_eq!(
        rule["sql"],
        "SELECT * FROM 'devices/+/telemetry' WHERE temperature > 25"
    );
    assert_eq!(rule["description"], "hot readings");
    assert_eq!(rule["createdAt"], NOW);
    assert_eq!(rule["ruleDisabled"], false);
    assert_eq!(rule["awsIotSqlVersion"], "2016-03-23");
    assert_eq!(
        rule["actions"][0]["republish"]["topic"],
        "alerts/${topic(2)}"
    );
    assert_eq!(rule["actions"][1]["http"]["headers"][0]["key"], "x-k");
    assert_eq!(rule["errorAction"]["republish"]["topic"], "errors");

    // Replace: every member comes from the new payload; an absent version is 2015-10-08.
    f.ok(
        "ReplaceTopicRule",
        json!({"ruleName": "hot", "topicRulePayload": payload("SELECT temperature FROM 'devices/#'")}),
    );
    assert_eq!(f.engine.take_calls(), ["upsert hot"]);
    let rule = &f.ok("GetTopicRule", json!({"ruleName": "hot"}))["rule"];
    assert_eq!(rule["sql"], "SELECT temperature FROM 'devices/#'");
    assert_eq!(rule["awsIotSqlVersion"], "2015-10-08");
    assert!(rule.get("description").is_none() && rule.get("errorAction").is_none());
    assert_eq!(rule["createdAt"], NOW);

    f.ok("DisableTopicRule", json!({"ruleName": "hot"}));
    assert_eq!(f.engine.take_calls(), ["remove hot"]);
    assert!(f.engine.running().is_empty());
    assert_eq!(
        f.ok("GetTopicRule", json!({"ruleName": "hot"}))["rule"]["ruleDisabled"],
        true
    );
    // Disabling a disabled rule changes nothing.
    f.ok("DisableTopicRule", json!({"ruleName": "hot"}));
    assert!(f.engine.take_calls().is_empty());
    f.ok("EnableTopicRule", json!({"ruleName": "hot"}));
    assert_eq!(f.engine.take_calls(), ["upsert hot"]);
    assert_eq!(f.engine.running(), ["hot"]);

    f.ok("DeleteTopicRule", json!({"ruleName": "hot"}));
    assert_eq!(f.engine.take_calls(), ["remove hot"]);
    assert!(f.engine.running().is_empty());
    assert!(f.listed(json!({})).is_empty());
}

#[test]
fn a_missing_rule_is_unauthorized_as_aws_answers_it() {
    let f = fixture();
    for op in [
        "GetTopicRule",
        "EnableTopicRule",
        "DisableTopicRule",
        "DeleteTopicRule",
    ] {
        let e = f.err(op, json!({"ruleName": "nope"}));
        assert_eq!((e.code, e.status), ("UnauthorizedException", 401), "{op}");
        assert_eq!(e.message, "Access to topic rule 'nope' was denied");
    }
    let e = f.err(
        "ReplaceTopicRule",
        json!({"ruleName": "nope", "topicRulePayload": payload("SELECT * FROM 'a'")}),
    );
    assert_eq!(e.code, "UnauthorizedException");
    assert!(f.engine.take_calls().is_empty());
}

#[test]
fn a_second_rule_of_the_same_name_already_exists() {
    let f = fixture();
    f.create("r", payload("SELECT * FROM 'a'"));
    let e = f.err(
        "CreateTopicRule",
        json!({"ruleName": "r", "topicRulePayload": payload("SELECT * FROM 'b'")}),
    );
    assert_eq!((e.code, e.status), ("ResourceAlreadyExistsException", 409));
    assert_eq!(
        e.extra["resourceArn"],
        "arn:aws:iot:eu-central-1:123456789012:rule/r"
    );
    let rule = &f.ok("GetTopicRule", json!({"ruleName": "r"}))["rule"];
    assert_eq!(rule["sql"], "SELECT * FROM 'a'");
}

#[test]
fn a_statement_that_does_not_parse_is_a_sql_parse_exception_with_line_and_column() {
    let f = fixture();
    let e = f.err(
        "CreateTopicRule",
        json!({"ruleName": "bad", "topicRulePayload": payload("SELEC * FROM 'a'")}),
    );
    assert_eq!((e.code, e.status), ("SqlParseException", 400));
    let (line, rest) = e.message.split_once(':').unwrap();
    let (column, reason) = rest.split_once(": ").unwrap();
    assert!(
        line.parse::<u32>().is_ok() && column.parse::<u32>().is_ok() && !reason.is_empty(),
        "{}",
        e.message
    );
    // Nothing was stored or started.
    assert!(f.listed(json!({})).is_empty());
    assert!(f.engine.take_calls().is_empty());
    // A replace that does not parse leaves the rule as it was.
    f.create("good", payload("SELECT * FROM 'a'"));
    let e = f.err(
        "ReplaceTopicRule",
        json!({"ruleName": "good", "topicRulePayload": payload("SELECT * FROM 'a' WHERE")}),
    );
    assert_eq!(e.code, "SqlParseException", "{e}");
    assert_eq!(
        f.ok("GetTopicRule", json!({"ruleName": "good"}))["rule"]["sql"],
        "SELECT * FROM 'a'"
    );
}

#[test]
fn actions_thingkit_does_not_perform_are_refused_naming_the_action() {
    let f = fixture();
    let e = f.err(
        "CreateTopicRule",
        json!({"ruleName": "d", "topicRulePayload": {"sql": "SELECT * FROM 'a'",
               "actions": [{"dynamoDB": {"tableName": "t", "roleArn": "arn:aws:iam::1:role/r",
                            "hashKeyField": "k", "hashKeyValue": "v"}}]}}),
    );
    assert_eq!((e.code, e.status), ("InvalidRequestException", 400));
    assert!(
        e.message
            .starts_with("the dynamoDB action is not supported by thingkit"),
        "{}",
        e.message
    );
    let e = f.err(
        "CreateTopicRule",
        json!({"ruleName": "d", "topicRulePayload": {"sql": "SELECT * FROM 'a'", "actions": [],
               "errorAction": {"lambda": {"functionArn": "arn:aws:lambda:x"}}}}),
    );
    assert!(e.message.starts_with("the lambda action"), "{}", e.message);
    let e = f.err(
        "CreateTopicRule",
        json!({"ruleName": "d", "topicRulePayload": {"sql": "SELECT * FROM 'a'",
               "actions": [{"file": {"path": "/etc/x", "format": "jsonl"}}]}}),
    );
    assert!(e.message.contains("configuration file"), "{}", e.message);
    assert!(f.listed(json!({})).is_empty());
}

#[test]
fn names_action_counts_and_sql_versions_are_checked_as_aws_checks_them() {
    let f = fixture();
    let e = f.err(
        "CreateTopicRule",
        json!({"ruleName": "bad-name", "topicRulePayload": payload("SELECT * FROM 'a'")}),
    );
    assert_eq!(e.code, "InvalidRequestException");
    assert!(
        e.message
            .ends_with("Member must satisfy regular expression pattern: ^[a-zA-Z0-9_]+$"),
        "{}",
        e.message
    );
    let long = "r".repeat(129);
    assert_eq!(
        f.err(
            "CreateTopicRule",
            json!({"ruleName": long, "topicRulePayload": payload("SELECT * FROM 'a'")})
        )
        .code,
        "InvalidRequestException"
    );
    let eleven: Vec<Value> = (0..11).map(|i| republish(&format!("o/{i}"))).collect();
    let e = f.err(
        "CreateTopicRule",
        json!({"ruleName": "many", "topicRulePayload": {"sql": "SELECT * FROM 'a'", "actions": eleven}}),
    );
    assert_eq!(e.code, "InvalidRequestException");
    assert!(
        e.message
            .contains("Member must have length less than or equal to 10"),
        "{}",
        e.message
    );
    let e = f.err(
        "CreateTopicRule",
        json!({"ruleName": "v", "topicRulePayload": {"sql": "SELECT * FROM 'a'", "actions": [],
               "awsIotSqlVersion": "2017-01-01"}}),
    );
    assert_eq!(e.code, "InvalidRequestException");
    assert!(e.message.contains("2017-01-01"), "{}", e.message);
    // Republish's roleArn is required by the model, as on AWS.
    let e = f.err(
        "CreateTopicRule",
        json!({"ruleName": "norole", "topicRulePayload": {"sql": "SELECT * FROM 'a'",
               "actions": [{"republish": {"topic": "x"}}]}}),
    );
    assert!(e.message.contains("roleArn"), "{}", e.message);
}

#[test]
fn a_rule_the_engine_refuses_is_not_stored() {
    let f = fixture();
    let e = f.err(
        "CreateTopicRule",
        json!({"ruleName": "r", "topicRulePayload": payload("SELECT 'refuse-me' AS x FROM 'a'")}),
    );
    assert_eq!(e.code, "InvalidRequestException");
    assert_eq!(e.message, "the engine refuses this rule");
    assert!(f.listed(json!({})).is_empty());
    // Disabled, it is stored without the engine; enabling it is then refused.
    f.create(
        "r",
        json!({"sql": "SELECT 'refuse-me' AS x FROM 'a'", "actions": [], "ruleDisabled": true}),
    );
    assert!(f.engine.take_calls().is_empty());
    assert_eq!(
        f.err("EnableTopicRule", json!({"ruleName": "r"})).code,
        "InvalidRequestException"
    );
    assert_eq!(
        f.ok("GetTopicRule", json!({"ruleName": "r"}))["rule"]["ruleDisabled"],
        true
    );
}

#[test]
fn rules_list_in_pages_and_filter_by_topic_and_by_disabled() {
    let f = fixture();
    for i in 0..7 {
        f.create(
            &format!("r{i}"),
            payload(&format!("SELECT * FROM 'dev/{i}/+'")),
        );
    }
    f.create("all_devices", payload("SELECT * FROM 'dev/#'"));
    f.create(
        "off",
        json!({"sql": "SELECT * FROM 'dev/1/+'", "actions": [], "ruleDisabled": true}),
    );
    let (names, pages) = f.list_all("ListTopicRules", 4, "rules", "ruleName");
    assert_eq!(pages, 3);
    assert_eq!(
        names,
        [
            "all_devices",
            "off",
            "r0",
            "r1",
            "r2",
            "r3",
            "r4",
            "r5",
            "r6"
        ]
    );
    let first = &f.ok("ListTopicRules", json!({"maxResults": 1}))["rules"][0];
    assert_eq!(
        first["ruleArn"],
        "arn:aws:iot:eu-central-1:123456789012:rule/all_devices"
    );
    assert_eq!(first["topicPattern"], "dev/#");
    assert_eq!(first["createdAt"], NOW);
    assert_eq!(first["ruleDisabled"], false);

    // `topic`: the rules a message on it would trigger, and an exact pattern.
    assert_eq!(
        f.listed(json!({"topic": "dev/1/temp"})),
        ["all_devices", "off", "r1"]
    );
    assert_eq!(f.listed(json!({"topic": "dev/1/+"})), ["off", "r1"]);
    assert_eq!(
        f.listed(json!({"topic": "dev/1/temp", "ruleDisabled": false})),
        ["all_devices", "r1"]
    );
    assert_eq!(f.listed(json!({"ruleDisabled": true})), ["off"]);
    assert!(f.listed(json!({"topic": "other"})).is_empty());
}

#[test]
fn rules_in_the_redb_store_survive_a_reopen_and_are_installed_into_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.redb");
    {
        let f = fixture_with(Arc::new(RedbTopicRuleStore::open(&path).unwrap()));
        f.create("kept", payload("SELECT * FROM 'a/#'"));
        f.create(
            "resting",
            json!({"sql": "SELECT * FROM 'b'", "actions": [], "ruleDisabled": true}),
        );
        f.create("gone", payload("SELECT * FROM 'c'"));
        f.ok("DeleteTopicRule", json!({"ruleName": "gone"}));
    }
    let f = fixture_with(Arc::new(RedbTopicRuleStore::open(&path).unwrap()));
    assert_eq!(f.listed(json!({})), ["kept", "resting"]);
    let kept = &f.ok("GetTopicRule", json!({"ruleName": "kept"}))["rule"];
    assert_eq!(kept["sql"], "SELECT * FROM 'a/#'");
    assert_eq!(kept["actions"][0]["republish"]["topic"], "out/${topic()}");
    // At startup every stored enabled rule goes to the engine.
    assert!(f.plane.topic_rules.install().unwrap().is_empty());
    assert_eq!(f.engine.running(), ["kept"]);
}

fn body(response: &thingkit_api::ApiResponse) -> Value {
    if response.body.is_empty() {
        return json!({});
    }
    serde_json::from_slice(&response.body).unwrap()
}

#[test]
fn signed_rule_requests_round_trip_and_a_policy_can_deny_delete_topic_rule() {
    let f = fixture();
    let admin = access_key(&f.keys, None);
    let operator = access_key(
        &f.keys,
        Some(
            r#"{"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": "iot:*", "Resource": "*"},
                    {"Effect": "Deny", "Action": "iot:DeleteTopicRule",
                     "Resource": "arn:aws:iot:eu-central-1:123456789012:rule/*"}]}"#,
        ),
    );
    let send = |method: &str, path: &str, query: &str, body: &str, key: &(String, String)| {
        f.plane
            .handle(&signed(method, path, query, body, key), at(NOW))
            .0
    };

    let create = payload("SELECT * FROM 'dt/+/temp'").to_string();
    let created = send("POST", "/rules/temps", "", &create, &operator);
    assert_eq!(
        created.status,
        200,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let got = send("GET", "/rules/temps", "", "", &operator);
    assert_eq!(got.status, 200);
    assert_eq!(body(&got)["rule"]["sql"], "SELECT * FROM 'dt/+/temp'");
    let listed = send(
        "GET",
        "/rules",
        "maxResults=5&topic=dt%2Fs1%2Ftemp",
        "",
        &operator,
    );
    assert_eq!(listed.status, 200);
    assert_eq!(body(&listed)["rules"][0]["topicPattern"], "dt/+/temp");

    let bad = send(
        "PATCH",
        "/rules/temps",
        "",
        &payload("SELECT * FORM 'x'").to_string(),
        &operator,
    );
    assert_eq!(bad.status, 400);
    assert!(
        bad.headers
            .iter()
            .any(|(k, v)| *k == "x-amzn-ErrorType" && v == "SqlParseException")
    );
    let replaced = send(
        "PATCH",
        "/rules/temps",
        "",
        &payload("SELECT * FROM 'dt/#'").to_string(),
        &operator,
    );
    assert_eq!(
        replaced.status,
        200,
        "{}",
        String::from_utf8_lossy(&replaced.body)
    );
    assert_eq!(
        send("POST", "/rules/temps/disable", "", "", &operator).status,
        200
    );
    let disabled = send("GET", "/rules", "ruleDisabled=true", "", &operator);
    assert_eq!(body(&disabled)["rules"][0]["ruleName"], "temps");
    assert_eq!(
        send("POST", "/rules/temps/enable", "", "", &operator).status,
        200
    );
    assert_eq!(f.engine.running(), ["temps"]);

    let denied = send("DELETE", "/rules/temps", "", "", &operator);
    assert_eq!(denied.status, 403);
    let message = body(&denied)["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(
            "iot:DeleteTopicRule on resource: arn:aws:iot:eu-central-1:123456789012:rule/temps with an explicit deny"
        ),
        "{message}"
    );
    assert_eq!(send("DELETE", "/rules/temps", "", "", &admin).status, 200);
    let missing = send("GET", "/rules/temps", "", "", &admin);
    assert_eq!(missing.status, 401);
    assert!(f.engine.running().is_empty());
}
