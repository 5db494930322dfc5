//! The policy checks against the Device Defender guide's own examples (*IoT policies overly
//! permissive*, *IoT policies potentially misconfigured*): each noncompliant example flagged,
//! each compliant one not.

mod support;

use support::*;
use thingkit_audit::{AuditConfig, CheckName, Error, Policy, ReasonCode, run_audit};

const ARN: &str = "arn:aws:iot:us-east-1:123456789012";

fn policy(statements: &str) -> String {
    format!(r#"{{"Version": "2012-10-17", "Statement": [{statements}]}}"#)
}

fn allow(action: &str, resource: &str) -> String {
    format!(r#"{{"Effect": "Allow", "Action": "{action}", "Resource": "{ARN}:{resource}"}}"#)
}

fn codes(document: &str, check: CheckName) -> Vec<ReasonCode> {
    let mut s = snapshot();
    s.policies.push(Policy {
        name: "p".into(),
        default_version_id: "1".into(),
        document: document.into(),
    });
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    report
        .findings_for(check)
        .map(|f| f.reason_for_non_compliance_code)
        .collect()
}

fn permissive(document: &str) -> bool {
    let found = codes(document, CheckName::IotPolicyOverlyPermissive);
    assert!(
        found
            .iter()
            .all(|c| *c == ReasonCode::AllowsBroadAccessToIotDataPlaneActions)
    );
    !found.is_empty()
}

#[test]
fn connect_examples() {
    // "client/*" and "client/${iot:ClientId}" (without IsAttached, "equivalent to the wildcard").
    assert!(permissive(&policy(&allow("iot:Connect", "client/*"))));
    assert!(permissive(&policy(&allow(
        "iot:Connect",
        "client/${iot:ClientId}"
    ))));
    // Compliant: the thing name, with the thing required to be attached.
    let compliant = format!(
        r#"{{"Effect": "Allow", "Action": "iot:Connect",
            "Resource": "{ARN}:client/${{iot:Connection.Thing.ThingName}}",
            "Condition": {{"Bool": {{"iot:Connection.Thing.IsAttached": "true"}}}}}}"#
    );
    assert!(!permissive(&policy(&compliant)));
    // The ClientId form is fine too once IsAttached pins the client to its thing.
    let pinned = format!(
        r#"{{"Effect": "Allow", "Action": "iot:Connect",
            "Resource": "{ARN}:client/${{iot:ClientId}}",
            "Condition": {{"Bool": {{"iot:Connection.Thing.IsAttached": "true"}}}}}}"#
    );
    assert!(!permissive(&policy(&pinned)));
}

#[test]
fn publish_examples() {
    assert!(permissive(&policy(&allow(
        "iot:Publish",
        "topic/$aws/things/*/shadow/update"
    ))));
    assert!(permissive(&policy(&allow(
        "iot:Publish",
        "topic/$aws/things/*"
    ))));
    assert!(!permissive(&policy(&allow(
        "iot:Publish",
        "topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"
    ))));
}

#[test]
fn subscribe_examples() {
    for noncompliant in [
        "topicfilter/$aws/things/*",
        "topicfilter/$aws/things/#",
        "topicfilter/$aws/things/+/shadow/update",
    ] {
        assert!(
            permissive(&policy(&allow("iot:Subscribe", noncompliant))),
            "{noncompliant}"
        );
    }
    for compliant in [
        "topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*",
        "topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/jobs/*",
    ] {
        assert!(
            !permissive(&policy(&allow("iot:Subscribe", compliant))),
            "{compliant}"
        );
    }
}

#[test]
fn receive_on_every_things_topics_is_compliant() {
    assert!(!permissive(&policy(&allow(
        "iot:Receive",
        "topic/$aws/things/*"
    ))));
}

#[test]
fn shadow_and_job_api_examples() {
    let actions = [
        "iot:DeleteThingShadow",
        "iot:GetThingShadow",
        "iot:UpdateThingShadow",
        "iot:DescribeJobExecution",
        "iot:GetPendingJobExecutions",
        "iot:StartNextPendingJobExecution",
        "iot:UpdateJobExecution",
    ];
    for action in actions {
        assert!(permissive(&policy(&allow(action, "thing/*"))), "{action}");
        let named = format!(
            r#"{{"Effect": "Allow", "Action": "{action}", "Resource": ["{ARN}:thing/MyThing1", "{ARN}:thing/MyThing2"]}}"#
        );
        assert!(!permissive(&policy(&named)), "{action}");
    }
}

#[test]
fn a_deny_that_removes_the_broad_grant_makes_the_policy_compliant() {
    let doc = policy(&format!(
        r#"{},
           {{"Effect": "Deny", "Action": "iot:Publish", "Resource": "{ARN}:topic/$aws/*"}}"#,
        allow("iot:Publish", "topic/*")
    ));
    assert!(!permissive(&doc));
    assert!(permissive(&policy(&allow("iot:Publish", "topic/*"))));
}

#[test]
fn policies_for_another_region_grant_nothing_here() {
    let doc = policy(
        r#"{"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:eu-west-1:123456789012:client/*"}"#,
    );
    assert!(!permissive(&doc));
}

/// Misconfiguration example 1: `#` in a Deny is literal; `building/control_room/data1` stays
/// reachable.
#[test]
fn misconfiguration_example_wildcard_in_deny() {
    let doc = policy(&format!(
        r#"{},
           {{"Effect": "Deny", "Action": "iot:Subscribe", "Resource": "{ARN}:topicfilter/building/control_room/#"}},
           {}"#,
        allow("iot:Subscribe", "topicfilter/building/*"),
        allow("iot:Receive", "topic/building/*")
    ));
    assert_eq!(
        codes(&doc, CheckName::IotPolicyPotentialMisconfiguration),
        vec![ReasonCode::PolicyContainsMqttWildcardsInDenyStatement]
    );
}

/// Misconfiguration example 2: denying the control-room filter does not stop `building/#`.
#[test]
fn misconfiguration_example_deny_bypassed_by_a_wildcard_subscription() {
    let allows = format!(
        "{}, {}",
        allow("iot:Subscribe", "topicfilter/building/*"),
        allow("iot:Receive", "topic/building/*")
    );
    let deny_subscribe = format!(
        r#"{{"Effect": "Deny", "Action": "iot:Subscribe", "Resource": "{ARN}:topicfilter/building/control_room/*"}}"#
    );
    let doc = policy(&format!("{allows}, {deny_subscribe}"));
    assert_eq!(
        codes(&doc, CheckName::IotPolicyPotentialMisconfiguration),
        vec![ReasonCode::TopicFiltersIntendedToDenyAllowedUsingWildcards]
    );
    // The guide's fix: also deny Receive on the topics.
    let fixed = policy(&format!(
        r#"{allows}, {deny_subscribe},
           {{"Effect": "Deny", "Action": "iot:Receive", "Resource": "{ARN}:topic/building/control_room/*"}}"#
    ));
    assert!(codes(&fixed, CheckName::IotPolicyPotentialMisconfiguration).is_empty());
}

#[test]
fn a_policy_without_deny_statements_is_not_misconfigured() {
    let doc = policy(&allow("iot:Subscribe", "topicfilter/building/*"));
    assert!(codes(&doc, CheckName::IotPolicyPotentialMisconfiguration).is_empty());
}

#[test]
fn an_invalid_policy_is_reported_and_skipped() {
    let mut s = snapshot();
    s.policies.push(Policy {
        name: "broken".into(),
        default_version_id: "3".into(),
        document: "{".into(),
    });
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    assert!(matches!(
        &report.errors[..],
        [Error::Policy { policy_name, .. }] if policy_name == "broken"
    ));
    assert_eq!(
        report.checks[&CheckName::IotPolicyOverlyPermissive].total_resources_count,
        1
    );
}

#[test]
fn findings_name_the_policy_version() {
    let mut s = snapshot();
    s.policies.push(Policy {
        name: "fleet".into(),
        default_version_id: "7".into(),
        document: policy(&allow("iot:Connect", "client/*")),
    });
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    let f = report
        .findings_for(CheckName::IotPolicyOverlyPermissive)
        .next()
        .unwrap();
    let v = f
        .non_compliant_resource
        .resource_identifier
        .policy_version_identifier
        .as_ref()
        .unwrap();
    assert_eq!(
        (v.policy_name.as_str(), v.policy_version_id.as_str()),
        ("fleet", "7")
    );
}
