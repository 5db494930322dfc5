//! Lints: documents that are valid but probably do not mean what their author intended.

use crate::action::{Action, ResourceType};
use crate::arn::split_arn;
use crate::condition::SetQualifier;
use crate::document::{Effect, PolicyDocument, Statement};
use crate::finding::{Code, Finding};
use crate::glob::glob_match;
use crate::key::ContextKey;
use crate::pattern;

/// Runs every lint over a document.
pub(crate) fn lint(doc: &PolicyDocument) -> Vec<Finding> {
    let mut out = Vec::new();
    for s in &doc.statements {
        resource_types(s, &mut out);
        mqtt_wildcards(s, &mut out);
        connect_without_is_attached(s, &mut out);
        reserved_topics(s, &mut out);
        variables_in_deny(s, &mut out);
        allow_pitfalls(s, &mut out);
        list_actions(s, &mut out);
        deny_subscribe_without_receive(s, doc, &mut out);
    }
    out
}

/// The resource type named by a resource's sixth part (`topic/...` → Topic), if literal.
fn resource_type(resource: &str) -> Option<(ResourceType, &str)> {
    let part = split_arn(resource)?[5];
    let (head, rest) = part.split_once('/')?;
    Some((ResourceType::from_prefix(head)?, rest))
}

/// Actions named explicitly (no wildcard, not via `NotAction`).
fn named_actions(s: &Statement) -> Vec<Action> {
    if s.not_action {
        return Vec::new();
    }
    s.actions
        .iter()
        .filter_map(|a| Action::from_name(&a.value))
        .collect()
}

fn resource_types(s: &Statement, out: &mut Vec<Finding>) {
    if s.not_resource || s.not_action {
        return;
    }
    let actions: Vec<Action> = s.action_set.iter().collect();
    if actions.is_empty() {
        return;
    }
    for r in &s.resources {
        let Some((t, _)) = resource_type(&r.value) else {
            continue;
        };
        if actions.iter().any(|a| a.resource_type() == t) {
            continue;
        }
        let wrong_topic = (t == ResourceType::Topic && actions.contains(&Action::Subscribe))
            || (t == ResourceType::TopicFilter
                && actions
                    .iter()
                    .any(|a| a.resource_type() == ResourceType::Topic));
        let names: Vec<&str> = actions.iter().map(|a| a.name()).collect();
        if wrong_topic {
            let hint = if t == ResourceType::Topic {
                "iot:Subscribe is checked against `topicfilter/` resources, not `topic/`"
            } else {
                "iot:Publish, iot:Receive and the retain actions are checked against `topic/` resources, not `topicfilter/`"
            };
            out.push(r.location.finding(
                Code::WrongTopicResource,
                format!("`{}` never matches: {hint}", r.value),
            ));
        } else {
            out.push(r.location.finding(
                Code::ResourceTypeMismatch,
                format!(
                    "`{}` is a `{}` resource, which none of {} is checked against",
                    r.value,
                    t.prefix(),
                    names.join(", ")
                ),
            ));
        }
    }
}

fn mqtt_wildcards(s: &Statement, out: &mut Vec<Finding>) {
    for r in &s.resources {
        if let Some((ResourceType::TopicFilter | ResourceType::Topic, rest)) =
            resource_type(&r.value)
            && rest.contains(['+', '#'])
        {
            out.push(r.location.finding(
                Code::MqttWildcardInPolicy,
                format!(
                    "`+` and `#` in `{}` are literal characters in a policy, not MQTT wildcards",
                    r.value
                ),
            ));
        }
    }
}

fn connect_without_is_attached(s: &Statement, out: &mut Vec<Finding>) {
    if s.effect != Effect::Allow || !s.action_set.contains(Action::Connect) {
        return;
    }
    let guarded = s
        .conditions
        .iter()
        .any(|c| c.key == ContextKey::ThingIsAttached);
    if guarded {
        return;
    }
    for r in &s.resources {
        let part = split_arn(&r.value).map(|p| p[5]);
        let broad = r.value == "*"
            || part == Some("client/*")
            || part.is_some_and(|p| {
                p.get(..7) == Some("client/")
                    && pattern::variables(p).is_ok_and(|v| {
                        v == [ContextKey::ClientId] && p.len() == 7 + "${iot:ClientId}".len()
                    })
            });
        if broad && !s.not_resource {
            out.push(r.location.finding(
                Code::ConnectWithoutIsAttached,
                format!(
                    "iot:Connect on `{}` lets any certificate connect as any client ID",
                    r.value
                ),
            ));
        }
    }
}

fn reserved_topics(s: &Statement, out: &mut Vec<Finding>) {
    if s.effect != Effect::Allow {
        return;
    }
    for r in &s.resources {
        if let Some((ResourceType::Topic | ResourceType::TopicFilter, rest)) =
            resource_type(&r.value)
            && (rest.starts_with("$aws/things/*") || rest.starts_with("$aws/*") || rest == "*")
            && rest != "*"
        {
            out.push(r.location.finding(
                Code::BroadReservedTopicAccess,
                format!(
                    "`{}` grants access to the reserved topics (shadows, jobs) of every thing",
                    r.value
                ),
            ));
        }
    }
}

fn variables_in_deny(s: &Statement, out: &mut Vec<Finding>) {
    if s.effect != Effect::Deny {
        return;
    }
    for r in &s.resources {
        if pattern::variables(&r.value).is_ok_and(|v| !v.is_empty()) {
            out.push(r.location.finding(
                Code::VariableInDeny,
                format!(
                    "`{}` uses a policy variable in a Deny: when the variable has no value the Deny matches nothing and the request may be allowed",
                    r.value
                ),
            ));
        }
    }
}

fn allow_pitfalls(s: &Statement, out: &mut Vec<Finding>) {
    if s.effect != Effect::Allow {
        return;
    }
    for c in &s.conditions {
        if c.operator.qualifier == Some(SetQualifier::ForAllValues) {
            out.push(c.location.finding(
                Code::ForAllValuesInAllow,
                format!(
                    "`{}` in an Allow is true when `{}` is missing or empty",
                    c.operator, c.key_name
                ),
            ));
        }
    }
    if s.not_resource {
        out.push(s.location.finding(
            Code::NegatedElementInAllow,
            "`NotResource` in an Allow grants every resource not listed, including ones created later",
        ));
    }
    if s.not_action {
        out.push(s.location.finding(
            Code::NegatedElementInAllow,
            "`NotAction` in an Allow grants every action not listed, including ones added later",
        ));
    }
}

/// Actions checked against resource `*` (`iot:ListRetainedMessages`, `iot:ListThings`, ...)
/// named with a specific resource.
fn list_actions(s: &Statement, out: &mut Vec<Finding>) {
    for a in named_actions(s) {
        if a.resource_type() != ResourceType::Any {
            continue;
        }
        for r in &s.resources {
            if r.value != "*" {
                out.push(r.location.finding(
                    Code::ListActionResource,
                    format!(
                        "{a} is checked against resource `*`, so `{}` never grants it",
                        r.value
                    ),
                ));
            }
        }
    }
}

fn deny_subscribe_without_receive(s: &Statement, doc: &PolicyDocument, out: &mut Vec<Finding>) {
    if s.effect != Effect::Deny || s.not_resource || !s.action_set.contains(Action::Subscribe) {
        return;
    }
    for r in &s.resources {
        let Some((ResourceType::TopicFilter, rest)) = resource_type(&r.value) else {
            continue;
        };
        let prefix_len = r.value.len() - rest.len() - "topicfilter/".len();
        let as_topic = format!(
            "{}topic/{rest}",
            r.value.get(..prefix_len).unwrap_or_default()
        );
        let covered = doc.statements.iter().any(|d| {
            d.effect == Effect::Deny
                && d.action_set.contains(Action::Receive)
                && !d.not_resource
                && d.resources
                    .iter()
                    .any(|dr| glob_match(&dr.value, &as_topic))
        });
        if !covered {
            out.push(r.location.finding(
                Code::DenySubscribeWithoutReceive,
                format!(
                    "denying iot:Subscribe on `{}` does not stop delivery through a broader subscription",
                    r.value
                ),
            ).with_help(format!("also deny iot:Receive on `{as_topic}`")));
        }
    }
}
