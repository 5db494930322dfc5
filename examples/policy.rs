//! AWS IoT policies with `thingkit::policy`: validate a fleet policy (and see the lints a risky
//! one triggers), compile the policies attached to a device into a `PolicySet`, decide the
//! broker's requests for a connection, and explain a denial.
//!
//! Run with `cargo run --example policy`.

use std::collections::BTreeMap;

use thingkit::policy::{
    ArnPrefix, Context, Decision, PolicyDocument, PolicySet, SetOptions, ThingContext, validate,
};

const FLEET: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "ConnectAsThing", "Effect": "Allow", "Action": "iot:Connect",
     "Resource": "arn:aws:iot:eu-west-1:123456789012:client/${iot:Connection.Thing.ThingName}",
     "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}},
    {"Sid": "OwnTopics", "Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": "arn:aws:iot:eu-west-1:123456789012:topic/site/${iot:Connection.Thing.Attributes[site]}/${iot:Connection.Thing.ThingName}/*"},
    {"Sid": "OwnFilters", "Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": "arn:aws:iot:eu-west-1:123456789012:topicfilter/site/${iot:Connection.Thing.Attributes[site]}/${iot:Connection.Thing.ThingName}/*"}
  ]
}"#;

const GUARDRAIL: &str = r#"{
  "Version": "2012-10-17",
  "Statement": {"Sid": "NoFirmwareTopics", "Effect": "Deny", "Action": "iot:Publish",
                "Resource": "arn:aws:iot:eu-west-1:123456789012:topic/site/*/firmware/*"}
}"#;

const RISKY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:eu-west-1:123456789012:client/*"},
    {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": "arn:aws:iot:eu-west-1:123456789012:topic/site/+/alerts"}
  ]
}"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. Validation reports every finding with a stable code and a position.
    println!("lints for a risky policy:");
    for f in validate(RISKY) {
        println!(
            "  risky.json:{}:{}: {} {}: {}",
            f.line, f.column, f.severity, f.code, f.message
        );
    }

    // 2. Compile the policies attached to the device's certificate once.
    let mut set = PolicySet::with_options(SetOptions::default().with_strict_identities(true));
    set.add("fleet", &PolicyDocument::parse(FLEET)?)?;
    set.add("guardrail", &PolicyDocument::parse(GUARDRAIL)?)?;

    // 3. The connection as the broker knows it after the TLS handshake and CONNECT.
    let mut attributes = BTreeMap::new();
    attributes.insert("site".to_string(), "berlin".to_string());
    let ctx = Context {
        client_id: Some("pump-17".into()),
        source_ip: Some("198.51.100.23".into()),
        thing: Some(ThingContext {
            name: "pump-17".into(),
            thing_type: Some("pump".into()),
            attributes,
            attached: true,
        }),
        ..Context::default()
    };
    let arn = ArnPrefix::new("aws", "eu-west-1", "123456789012").ok_or("bad ARN prefix")?;

    // 4. Decide each broker event (allocation-free).
    let events = [
        ("CONNECT pump-17", arn.connect("pump-17")),
        ("CONNECT pump-18", arn.connect("pump-18")),
        (
            "PUBLISH site/berlin/pump-17/flow",
            arn.publish("site/berlin/pump-17/flow", false),
        ),
        (
            "PUBLISH site/berlin/pump-17/firmware/x",
            arn.publish("site/berlin/pump-17/firmware/x", false),
        ),
        (
            "SUBSCRIBE site/berlin/pump-17/#",
            arn.subscribe("site/berlin/pump-17/#"),
        ),
        (
            "SUBSCRIBE site/+/pump-17/#",
            arn.subscribe("site/+/pump-17/#"),
        ),
    ];
    for (what, request) in &events {
        println!("{what:45} -> {}", set.decide(request, &ctx));
    }

    // 5. Explain a denial: which statement decided it, and why the others did not apply.
    let request = arn.publish("site/berlin/pump-17/firmware/x", false);
    let explanation = set.explain(&request, &ctx);
    assert_eq!(explanation.evaluation.decision, Decision::ExplicitDeny);
    for s in &explanation.evaluation.determining {
        println!(
            "denied by {} statement {} ({:?})",
            s.policy, s.statement, s.sid
        );
    }
    for s in explanation.statements.iter().filter(|s| s.action_matched) {
        let resources: Vec<String> = s
            .resources
            .iter()
            .map(|r| format!("{} matched={}", r.pattern, r.matched))
            .collect();
        println!(
            "  {}#{} {}: applies={} [{}]",
            s.statement.policy,
            s.statement.statement,
            s.effect,
            s.applies,
            resources.join("; ")
        );
    }
    Ok(())
}
