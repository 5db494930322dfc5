//! `explain` and `evaluate`: what they report for each statement, resource and condition.

use thingkit_policy::{
    ArnPrefix, Context, Decision, Effect, PolicyDocument, PolicySet, StatementRef, ThingContext,
};

const POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "Connect", "Effect": "Allow", "Action": "iot:Connect",
     "Resource": "arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}",
     "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"},
                   "IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
    {"Sid": "Telemetry", "Effect": "Allow", "Action": ["iot:Publish", "iot:RetainPublish"],
     "Resource": "arn:aws:iot:us-east-1:123456789012:topic/t/${iot:ClientId}/*"},
    {"Sid": "Quiet", "Effect": "Deny", "Action": "iot:RetainPublish",
     "Resource": "arn:aws:iot:us-east-1:123456789012:topic/t/*/noisy"}
  ]
}"#;

fn set() -> PolicySet {
    let mut s = PolicySet::new();
    s.add("device", &PolicyDocument::parse(POLICY).expect("valid"))
        .expect("unique");
    s
}

fn arn() -> ArnPrefix {
    ArnPrefix::new("aws", "us-east-1", "123456789012").expect("valid prefix")
}

#[test]
fn explains_each_condition_of_a_denied_connect() {
    let ctx = Context {
        client_id: Some("d1".into()),
        source_ip: Some("192.0.2.1".into()),
        thing: Some(ThingContext {
            name: "d1".into(),
            attached: true,
            ..ThingContext::default()
        }),
        ..Context::default()
    };
    let e = set().explain(&arn().connect("d1"), &ctx);
    assert_eq!(e.evaluation.decision, Decision::ImplicitDeny);
    assert!(e.evaluation.determining.is_empty());
    let s = &e.statements[0];
    assert_eq!(s.statement.sid.as_deref(), Some("Connect"));
    assert!(s.action_matched && s.resource_matched && !s.applies);
    assert_eq!(s.conditions.len(), 2);
    let ip = s
        .conditions
        .iter()
        .find(|c| c.operator == "IpAddress")
        .expect("ip condition explained");
    assert!(!ip.satisfied);
    assert!(ip.reason.contains("192.0.2.1"), "{}", ip.reason);
    assert!(
        s.conditions
            .iter()
            .any(|c| c.key == "iot:Connection.Thing.IsAttached" && c.satisfied)
    );
    // The other statements are for other actions.
    assert!(e.statements[1..].iter().all(|s| !s.action_matched));
}

#[test]
fn reports_missing_context_and_unresolved_variables() {
    let e = set().explain(&arn().connect("d1"), &Context::default());
    assert_eq!(e.evaluation.decision, Decision::ImplicitDeny);
    assert_eq!(
        e.evaluation.missing_context,
        vec![
            "aws:SourceIp".to_string(),
            "iot:Connection.Thing.IsAttached".to_string(),
            "iot:Connection.Thing.ThingName".to_string(),
        ]
    );
    let r = &e.statements[0].resources[0];
    assert!(!r.matched);
    assert_eq!(
        r.unresolved.as_deref(),
        Some("iot:Connection.Thing.ThingName")
    );
    let missing = &e.statements[0].conditions[0];
    assert!(
        missing.reason.contains("not in the context"),
        "{}",
        missing.reason
    );
}

#[test]
fn retained_publish_is_decided_for_both_actions() {
    let ctx = Context::with_client_id("d1");
    let s = set();
    let plain = s.evaluate(&arn().publish("t/d1/noisy", false), &ctx);
    assert_eq!(plain.decision, Decision::Allow);
    let retained = s.explain(&arn().publish("t/d1/noisy", true), &ctx);
    assert_eq!(retained.evaluation.decision, Decision::ExplicitDeny);
    assert_eq!(
        retained.evaluation.determining,
        vec![StatementRef {
            policy: "device".into(),
            statement: 2,
            sid: Some("Quiet".into())
        }]
    );
    // Every statement is explained once per required action.
    assert_eq!(retained.statements.len(), 6);
    let quiet = retained
        .statements
        .iter()
        .find(|s| s.effect == Effect::Deny && s.applies)
        .expect("the deny applies");
    assert_eq!(quiet.statement.sid.as_deref(), Some("Quiet"));
    let ok = s.evaluate(&arn().publish("t/d1/state", true), &ctx);
    assert_eq!(ok.decision, Decision::Allow);
    assert_eq!(ok.determining.len(), 1);
}

#[test]
fn allow_lists_every_applicable_allow_statement_across_policies() {
    let mut s = set();
    let extra = PolicyDocument::parse(
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}"#,
    )
    .expect("valid");
    s.add("admin", &extra).expect("unique");
    assert!(
        s.add("admin", &extra).is_err(),
        "duplicate names are refused"
    );
    let e = s.evaluate(
        &arn().publish("t/d1/x", false),
        &Context::with_client_id("d1"),
    );
    assert_eq!(e.decision, Decision::Allow);
    let policies: Vec<&str> = e.determining.iter().map(|d| d.policy.as_str()).collect();
    assert_eq!(policies, vec!["device", "admin"]);
}

#[test]
fn a_variable_without_value_makes_a_deny_match_nothing() {
    let doc = PolicyDocument::parse(
        r#"{"Version": "2012-10-17", "Statement": [
          {"Effect": "Allow", "Action": "iot:Publish", "Resource": "*"},
          {"Effect": "Deny", "Action": "iot:Publish",
           "Resource": "arn:aws:iot:us-east-1:123456789012:topic/${iot:Connection.Thing.ThingName}/*"}]}"#,
    )
    .expect("valid (with a variable-in-deny warning)");
    assert!(
        doc.warnings()
            .iter()
            .any(|w| w.code.as_str() == "variable-in-deny")
    );
    let mut s = PolicySet::new();
    s.add("p", &doc).expect("unique");
    let arn = arn();
    let req = arn.publish("d1/x", false);
    let mut thing = Context {
        thing: Some(ThingContext {
            name: "d1".into(),
            attached: true,
            ..ThingContext::default()
        }),
        ..Context::default()
    };
    assert_eq!(s.decide(&req, &thing), Decision::ExplicitDeny);
    // A thing that is not attached to the certificate resolves no variable either.
    if let Some(t) = thing.thing.as_mut() {
        t.attached = false;
    }
    assert_eq!(s.decide(&req, &thing), Decision::Allow);
    // Without a thing the Deny's pattern matches nothing, exactly as in AWS IoT.
    let e = s.evaluate(&req, &Context::default());
    assert_eq!(e.decision, Decision::Allow);
    assert_eq!(
        e.missing_context,
        vec!["iot:Connection.Thing.ThingName".to_string()]
    );
}

#[test]
fn escaped_wildcards_match_only_themselves() {
    let doc = PolicyDocument::parse(
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "iot:Publish",
           "Resource": "arn:aws:iot:us-east-1:123456789012:topic/a/${*}/b${?}${$}"}}"#,
    )
    .expect("valid");
    let mut s = PolicySet::new();
    s.add("p", &doc).expect("unique");
    let ctx = Context::default();
    assert_eq!(
        s.decide(&arn().publish("a/*/b?$", false), &ctx),
        Decision::Allow
    );
    assert_eq!(
        s.decide(&arn().publish("a/x/bx$", false), &ctx),
        Decision::ImplicitDeny
    );
}
