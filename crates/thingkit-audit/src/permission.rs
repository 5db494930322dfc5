//! The two policy checks, decided with `thingkit_policy`'s evaluator rather than by reading the
//! JSON again: a policy is compiled into a [`PolicySet`] and asked questions on behalf of a
//! probe device.
//!
//! **Overly permissive** (Device Defender guide, *IoT policies overly permissive*; AWS does not
//! publish its algorithm, so the page's examples are the oracle). The probe is device A: client
//! ID A, connected with a certificate attached to thing A. The policy is overly permissive when
//! it lets A reach resources that belong to another device B:
//!
//! | action | question asked | page's example that it reproduces |
//! |---|---|---|
//! | `iot:Connect` | may A's certificate connect as client ID B (thing B exists, not attached)? | `client/*` and `client/${iot:ClientId}` flagged; `client/${iot:Connection.Thing.ThingName}` with `IsAttached` not |
//! | `iot:Publish` | may A publish to B's shadow or job topics? | `topic/$aws/things/*` and `…/*/shadow/update` flagged; `…/${iot:Connection.Thing.ThingName}/shadow/*` not |
//! | `iot:Subscribe` | may A subscribe to B's shadow/job topics, or to a filter covering every thing's (`$aws/things/+/shadow/update`, `$aws/things/#`)? | `topicfilter/$aws/things/*`, `…/#` and `…/+/shadow/update` flagged |
//! | `iot:Receive` | not asked | `topic/$aws/things/*` for Receive is compliant: a device only receives what it may subscribe to |
//! | shadow and job APIs | may A call them on `thing/B`? | `thing/*` flagged; `thing/MyThing1` not |
//!
//! Deny statements and conditions take part as they do at run time, since the question goes
//! through the same evaluator the broker uses. A condition on a key the probe does not have
//! (source IP, certificate subject) is missing, so such Allow statements do not apply.
//!
//! **Potential misconfiguration** (Device Defender guide, *IoT policies potentially
//! misconfigured*): `POLICY_CONTAINS_MQTT_WILDCARDS_IN_DENY_STATEMENT` when a Deny statement's
//! `topic/`/`topicfilter/` resource contains `+` or `#` (literal characters in a policy, so the
//! Deny covers only that literal filter); `TOPIC_FILTERS_INTENDED_TO_DENY_ALLOWED_USING_WILDCARDS`
//! when a Deny on subscribing to a topic filter is bypassed: a topic under it may still be
//! received and some wildcard filter covering it (`#`, `a/#`, `a/+/c`, ...) may be subscribed to.

use thingkit_policy::{
    Action, ArnPrefix, CertificateContext, Context, Effect, PolicyDocument, PolicySet,
    ResourceType, ThingContext,
};

/// The probe device's client ID and thing name.
pub const PROBE_DEVICE: &str = "thingkit-audit-probe-device";
/// The other device whose resources the probe must not reach.
pub const OTHER_DEVICE: &str = "thingkit-audit-other-device";

/// The shadow and job actions checked against `thing/` (the guide's list).
const THING_ACTIONS: [&str; 7] = [
    "iot:DeleteThingShadow",
    "iot:GetThingShadow",
    "iot:UpdateThingShadow",
    "iot:DescribeJobExecution",
    "iot:GetPendingJobExecutions",
    "iot:StartNextPendingJobExecution",
    "iot:UpdateJobExecution",
];

fn thing(name: &str, attached: bool) -> ThingContext {
    ThingContext {
        name: name.to_string(),
        attached,
        ..ThingContext::default()
    }
}

fn probe_context(client_id: &str, thing_ctx: ThingContext) -> Context {
    Context {
        client_id: Some(client_id.to_string()),
        thing: Some(thing_ctx),
        certificate: Some(CertificateContext {
            id: Some("0".repeat(64)),
            ..CertificateContext::default()
        }),
        ..Context::default()
    }
}

/// What a policy grants that it should not: one sentence per problem found.
pub fn overly_permissive(doc: &PolicyDocument, arn: &ArnPrefix) -> Vec<String> {
    let mut set = PolicySet::new();
    if set.add("audited", doc).is_err() {
        return Vec::new();
    }
    let own = probe_context(PROBE_DEVICE, thing(PROBE_DEVICE, true));
    let impostor = probe_context(OTHER_DEVICE, thing(OTHER_DEVICE, false));
    let mut out = Vec::new();

    if set
        .decide(&arn.connect(OTHER_DEVICE), &impostor)
        .is_allowed()
    {
        out.push(
            "iot:Connect lets a certificate connect with any client ID, including one of a thing it is not attached to".to_string(),
        );
    }
    let other_topics = [
        format!("$aws/things/{OTHER_DEVICE}/shadow/update"),
        format!("$aws/things/{OTHER_DEVICE}/shadow/name/main/update"),
        format!("$aws/things/{OTHER_DEVICE}/jobs/start-next"),
    ];
    if let Some(t) = other_topics
        .iter()
        .find(|t| set.decide(&arn.publish(t, false), &own).is_allowed())
    {
        out.push(format!(
            "iot:Publish reaches other devices' reserved topics (e.g. `{t}`)"
        ));
    }
    let broad_filters = [
        format!("$aws/things/{OTHER_DEVICE}/shadow/update/accepted"),
        format!("$aws/things/{OTHER_DEVICE}/jobs/notify"),
        "$aws/things/+/shadow/update".to_string(),
        "$aws/things/+/shadow/#".to_string(),
        "$aws/things/#".to_string(),
    ];
    if let Some(f) = broad_filters
        .iter()
        .find(|f| set.decide(&arn.subscribe(f), &own).is_allowed())
    {
        out.push(format!(
            "iot:Subscribe reaches other devices' reserved topics (e.g. the filter `{f}`)"
        ));
    }
    for name in THING_ACTIONS {
        let Some(action) = Action::from_name(name) else {
            continue;
        };
        if set
            .decide(&arn.thing(action, OTHER_DEVICE), &own)
            .is_allowed()
        {
            out.push(format!("{name} is allowed on other things"));
        }
    }
    out
}

/// The resource part of an ARN (after the fifth colon), if it is one.
fn resource_part(resource: &str) -> Option<&str> {
    let mut parts = resource.splitn(6, ':');
    (parts.next() == Some("arn")).then_some(())?;
    parts.nth(4)
}

/// `POLICY_CONTAINS_MQTT_WILDCARDS_IN_DENY_STATEMENT`: the Deny resources with `+` or `#`.
pub fn wildcards_in_deny(doc: &PolicyDocument) -> Vec<String> {
    let mut out = Vec::new();
    for s in doc
        .statements()
        .iter()
        .filter(|s| s.effect() == Effect::Deny)
    {
        for r in s.resources() {
            let Some(part) = resource_part(&r.value) else {
                continue;
            };
            let is_topic = part
                .split_once('/')
                .and_then(|(head, _)| ResourceType::from_prefix(head))
                .is_some_and(|t| matches!(t, ResourceType::Topic | ResourceType::TopicFilter));
            if is_topic && part.contains(['+', '#']) {
                out.push(r.value.clone());
            }
        }
    }
    out
}

/// The wildcard filters that match `topic` (other than itself): `#`, each `prefix/#`, and the
/// topic with one level replaced by `+`.
fn covering_filters(topic: &str) -> Vec<String> {
    let levels: Vec<&str> = topic.split('/').collect();
    let mut out = vec!["#".to_string()];
    for i in 1..levels.len() {
        out.push(format!("{}/#", levels[..i].join("/")));
    }
    for i in 0..levels.len() {
        let mut l = levels.clone();
        l[i] = "+";
        out.push(l.join("/"));
    }
    out
}

/// `TOPIC_FILTERS_INTENDED_TO_DENY_ALLOWED_USING_WILDCARDS`: each denied topic filter that a
/// wildcard subscription still reaches, with the wildcard filter that reaches it.
pub fn deny_bypassed_by_wildcards(doc: &PolicyDocument, arn: &ArnPrefix) -> Vec<(String, String)> {
    let mut set = PolicySet::new();
    if set.add("audited", doc).is_err() {
        return Vec::new();
    }
    let own = probe_context(PROBE_DEVICE, thing(PROBE_DEVICE, true));
    let mut out = Vec::new();
    for s in doc.statements() {
        if s.effect() != Effect::Deny || s.is_not_resource() || !s.applies_to(Action::Subscribe) {
            continue;
        }
        for r in s.resources() {
            let Some(filter) = resource_part(&r.value).and_then(|p| p.strip_prefix("topicfilter/"))
            else {
                continue;
            };
            if filter.contains(['+', '#']) || filter.contains("${") || filter.is_empty() {
                continue;
            }
            // A concrete topic the Deny means to keep away: its globs filled in.
            let topic: String = filter
                .chars()
                .map(|c| if matches!(c, '*' | '?') { 'x' } else { c })
                .collect();
            if !set.decide(&arn.receive(&topic), &own).is_allowed() {
                continue;
            }
            if let Some(w) = covering_filters(&topic)
                .into_iter()
                .find(|f| set.decide(&arn.subscribe(f), &own).is_allowed())
            {
                out.push((r.value.clone(), w));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_filters_of_a_three_level_topic() {
        assert_eq!(
            covering_filters("a/b/c"),
            vec!["#", "a/#", "a/b/#", "+/b/c", "a/+/c", "a/b/+"]
        );
    }

    #[test]
    fn resource_part_splits_after_the_fifth_colon() {
        assert_eq!(
            resource_part("arn:aws:iot:us-east-1:1:topic/a:b"),
            Some("topic/a:b")
        );
        assert_eq!(resource_part("*"), None);
    }
}
