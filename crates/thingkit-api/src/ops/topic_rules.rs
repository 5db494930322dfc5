//! Topic rules: `CreateTopicRule`, `GetTopicRule`, `ListTopicRules`, `ReplaceTopicRule`,
//! `EnableTopicRule`, `DisableTopicRule`, `DeleteTopicRule`, kept in the control plane's
//! [`TopicRuleStore`](crate::topic_rule::TopicRuleStore) and handed to the running engine
//! through its [`TopicRuleHook`](crate::topic_rule::TopicRuleHook).
//!
//! Readings of AWS's documents and model, case by case:
//!
//! - A rule that does not exist is `UnauthorizedException` (401, "Access to topic rule 'NAME'
//!   was denied"), for every operation that names one: botocore's model lists no
//!   `ResourceNotFoundException` for any topic-rule operation, and that is what AWS answers.
//! - The statement is compiled when the rule is written: one that does not parse (or uses a
//!   construct its SQL version lacks) is `SqlParseException` with `line:column: reason`.
//! - `awsIotSqlVersion` absent is `2015-10-08` (AWS's default), on create and on replace alike:
//!   `ReplaceTopicRule` "replaces the rule. You must specify all parameters for the new rule",
//!   so an absent member takes its default and the old rule's version is not carried over. The
//!   same holds for `ruleDisabled` (absent: enabled), `description` and `errorAction`; only
//!   `createdAt` (and the ARN) survive a replace.
//! - thingkit performs the `republish` and `http` actions. Every other action botocore's model
//!   defines is refused with `InvalidRequestException` naming it, as are the members of those
//!   two that thingkit does not perform (republish `headers`, http `auth`, batching) and
//!   thingkit's own `file` sink, which only the server's configuration file may declare.
//! - `ListTopicRules`' `topic` (documented only as "the topic") lists the rules a message
//!   published to that topic would trigger, and those whose FROM filter is that exact text (a
//!   `topic` with a wildcard is a filter, not a topic name: only the exact text matches it).
//! - Tags (`x-amz-tagging`) are accepted and not kept, as for the other resources.

use serde_json::{Map, Value, json};
use thingkit_provision::RegistryStore;
use thingkit_rules::topic_rule::TopicRulePayload;
use thingkit_rules::{Rule, SqlVersion};

use crate::error::{ApiError, ApiResult};
use crate::model::Input;
use crate::ops::{Handler, page, with_token};
use crate::service::Ctx;
use crate::topic_rule::{StoredTopicRule, TopicRuleStoreError};

pub(crate) fn handlers<S: RegistryStore>() -> Vec<(&'static str, Handler<S>)> {
    vec![
        ("CreateTopicRule", create_topic_rule::<S>),
        ("GetTopicRule", get_topic_rule::<S>),
        ("ListTopicRules", list_topic_rules::<S>),
        ("ReplaceTopicRule", replace_topic_rule::<S>),
        ("EnableTopicRule", enable_topic_rule::<S>),
        ("DisableTopicRule", disable_topic_rule::<S>),
        ("DeleteTopicRule", delete_topic_rule::<S>),
    ]
}

/// The actions thingkit performs.
const PERFORMED: &[&str] = &["republish", "http"];

/// The members of botocore's `Action` shape that thingkit does not perform.
const NOT_PERFORMED: &[&str] = &[
    "dynamoDB",
    "dynamoDBv2",
    "lambda",
    "sns",
    "sqs",
    "kinesis",
    "s3",
    "firehose",
    "cloudwatchMetric",
    "cloudwatchAlarm",
    "cloudwatchLogs",
    "elasticsearch",
    "salesforce",
    "iotAnalytics",
    "iotEvents",
    "iotSiteWise",
    "stepFunctions",
    "timestream",
    "kafka",
    "openSearch",
    "location",
];

fn store_failure(e: TopicRuleStoreError) -> ApiError {
    ApiError::new("InternalException", 500, e.to_string())
}

/// AWS's answer for a rule that does not exist.
fn no_such_rule(name: &str) -> ApiError {
    ApiError::unauthorized(format!("Access to topic rule '{name}' was denied"))
}

fn rule_arn<S: RegistryStore>(ctx: &Ctx<'_, S>, name: &str) -> String {
    ctx.arn(&format!("rule/{name}"))
}

/// Refuses an action thingkit does not perform, naming it (`at` is where it is in the
/// payload: `actions.2.member`, `errorAction`).
fn check_action(action: &Value, at: &str) -> ApiResult<()> {
    let Some(members) = action.as_object() else {
        return Err(ApiError::invalid_request(format!(
            "{at}: an action is an object naming one kind of action"
        )));
    };
    let kinds: Vec<&String> = members
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, _)| k)
        .collect();
    let kind = match kinds.as_slice() {
        [one] => one.as_str(),
        [] => {
            return Err(ApiError::invalid_request(format!(
                "{at}: the action names no kind of action (thingkit performs republish and http)"
            )));
        }
        _ => {
            let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            return Err(ApiError::invalid_request(format!(
                "{at}: an action names exactly one kind of action, not {}",
                names.join(", ")
            )));
        }
    };
    if NOT_PERFORMED.contains(&kind) {
        return Err(ApiError::invalid_request(format!(
            "the {kind} action is not supported by thingkit (it performs republish and http)"
        )));
    }
    if kind == "file" {
        return Err(ApiError::invalid_request(
            "the file action is not an AWS IoT action: thingkit's file sinks are declared in the server's configuration file",
        ));
    }
    if !PERFORMED.contains(&kind) {
        return Err(ApiError::invalid_request(format!(
            "{at}: {kind} is not an AWS IoT rule action"
        )));
    }
    let body = members.get(kind).and_then(Value::as_object);
    let given = |m: &str| body.and_then(|b| b.get(m)).is_some_and(|v| !v.is_null());
    let refused = match kind {
        "republish" if given("headers") => {
            Some("the republish action's headers (MQTT 5 properties) are")
        }
        "http" if given("auth") => Some("the http action's auth (SigV4 signing) is"),
        "http" if given("batchConfig") => Some("the http action's batchConfig is"),
        "http"
            if body
                .and_then(|b| b.get("enableBatching"))
                .and_then(Value::as_bool)
                == Some(true) =>
        {
            Some("the http action's batching is")
        }
        _ => None,
    };
    match refused {
        Some(what) => Err(ApiError::invalid_request(format!(
            "{what} not supported by thingkit"
        ))),
        None => Ok(()),
    }
}

/// Whether the MQTT topic filter `filter` is valid: non-empty, `#` only as the whole last
/// level, `+` only as a whole level.
fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len().saturating_sub(1);
    levels.iter().enumerate().all(|(i, level)| {
        (!level.contains('#') || (*level == "#" && i == last))
            && (!level.contains('+') || *level == "+")
    })
}

/// Whether a message published to `topic` matches `filter` (MQTT 3.1.1 §4.7; a filter that
/// starts with a wildcard does not match a `$` topic).
fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The payload a request gives, checked (actions, SQL version, statement, FROM filter) and
/// normalised (`awsIotSqlVersion` and `ruleDisabled` set), with its FROM filter.
fn accepted(input: &Input) -> ApiResult<(TopicRulePayload, Option<String>)> {
    let raw = input
        .get("topicRulePayload")
        .ok_or_else(|| ApiError::invalid_request("topicRulePayload is required"))?;
    if let Some(actions) = raw.get("actions").and_then(Value::as_array) {
        for (i, a) in actions.iter().enumerate() {
            check_action(a, &format!("topicRulePayload.actions.{}.member", i + 1))?;
        }
    }
    if let Some(a) = raw.get("errorAction").filter(|a| !a.is_null()) {
        check_action(a, "topicRulePayload.errorAction")?;
    }
    let mut payload: TopicRulePayload = serde_json::from_value(raw.clone())
        .map_err(|e| ApiError::invalid_request(format!("topicRulePayload: {e}")))?;
    let version_text = payload
        .aws_iot_sql_version
        .as_deref()
        .unwrap_or(SqlVersion::default().as_str());
    let version = SqlVersion::parse(version_text).ok_or_else(|| {
        ApiError::invalid_request(format!(
            "awsIotSqlVersion {version_text:?} is not an AWS IoT SQL version (2015-10-08, 2016-03-23 or beta)"
        ))
    })?;
    let rule =
        Rule::compile(&payload.sql, version, &thingkit_rules::Limits::default()).map_err(|e| {
            match e {
                thingkit_rules::Error::Parse { .. } => {
                    ApiError::new("SqlParseException", 400, e.to_string())
                }
                other => ApiError::invalid_request(other.to_string()),
            }
        })?;
    let pattern = rule.topic_filter().map(str::to_string);
    if let Some(p) = &pattern
        && !valid_filter(p)
    {
        return Err(ApiError::new(
            "SqlParseException",
            400,
            format!("FROM '{p}' is not a valid MQTT topic filter"),
        ));
    }
    payload.aws_iot_sql_version = Some(version.as_str().to_string());
    payload.rule_disabled = Some(payload.rule_disabled.unwrap_or(false));
    Ok((payload, pattern))
}

/// `CreateTopicRule`: checked, handed to the engine if enabled, stored. A name in use is
/// `ResourceAlreadyExistsException`.
fn create_topic_rule<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("ruleName")?;
    let (payload, pattern) = accepted(input)?;
    let rules = &ctx.plane.topic_rules;
    let _changing = rules.lock();
    if rules.store.get(name).map_err(store_failure)?.is_some() {
        let arn = rule_arn(ctx, name);
        return Err(
            ApiError::already_exists(format!("Rule {name} already exists"))
                .with("resourceId", name)
                .with("resourceArn", arn),
        );
    }
    let count = rules.store.list().map_err(store_failure)?.len();
    if count >= ctx.plane.limits.max_topic_rules {
        return Err(ApiError::invalid_request(format!(
            "this server keeps at most {} topic rules",
            ctx.plane.limits.max_topic_rules
        )));
    }
    let stored = StoredTopicRule {
        payload,
        created_at: ctx.epoch(),
        arn: rule_arn(ctx, name),
        topic_pattern: pattern,
    };
    let enabled = !stored.disabled();
    if enabled && let Some(hook) = &rules.hook {
        hook.upsert(name, &stored.payload)
            .map_err(ApiError::invalid_request)?;
    }
    if let Err(e) = rules.store.put(name, &stored) {
        if let Some(hook) = &rules.hook {
            hook.remove(name);
        }
        return Err(store_failure(e));
    }
    Ok(json!({}))
}

/// The stored rule `name`, or AWS's answer for a missing one.
fn existing<S: RegistryStore>(ctx: &Ctx<'_, S>, name: &str) -> ApiResult<StoredTopicRule> {
    ctx.plane
        .topic_rules
        .store
        .get(name)
        .map_err(store_failure)?
        .ok_or_else(|| no_such_rule(name))
}

fn get_topic_rule<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("ruleName")?;
    let stored = existing(ctx, name)?;
    let mut rule = match serde_json::to_value(&stored.payload) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    rule.insert("ruleName".into(), json!(name));
    rule.insert("createdAt".into(), json!(stored.created_at));
    rule.insert("ruleDisabled".into(), json!(stored.disabled()));
    Ok(json!({ "ruleArn": stored.arn, "rule": Value::Object(rule) }))
}

/// `ListTopicRules`, by name; `topic` and `ruleDisabled` filter.
fn list_topic_rules<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let topic = input.str("topic");
    let disabled = input.bool("ruleDisabled");
    let all = ctx.plane.topic_rules.store.list().map_err(store_failure)?;
    let items = all
        .into_iter()
        .filter(|(_, r)| disabled.is_none_or(|d| r.disabled() == d))
        .filter(|(_, r)| {
            topic.is_none_or(|t| {
                r.topic_pattern
                    .as_deref()
                    .is_some_and(|p| p == t || (!t.contains(['+', '#']) && filter_matches(p, t)))
            })
        })
        .map(|(name, r)| {
            let mut item = Map::new();
            item.insert("ruleArn".into(), json!(r.arn));
            item.insert("ruleName".into(), json!(name));
            if let Some(p) = &r.topic_pattern {
                item.insert("topicPattern".into(), json!(p));
            }
            item.insert("createdAt".into(), json!(r.created_at));
            item.insert("ruleDisabled".into(), json!(r.disabled()));
            (name, Value::Object(item))
        });
    let (list, next) = page(items, input.str("nextToken"), ctx.page_size(input))?;
    Ok(with_token(json!({ "rules": list }), next))
}

/// `ReplaceTopicRule`: the whole payload is replaced (see the module docs); `createdAt` is
/// kept. The engine gets the new rule (or loses it, if the new payload is disabled); if the
/// store then fails, the engine is put back as it was.
fn replace_topic_rule<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("ruleName")?;
    let (payload, pattern) = accepted(input)?;
    let rules = &ctx.plane.topic_rules;
    let _changing = rules.lock();
    let old = existing(ctx, name)?;
    let new = StoredTopicRule {
        payload,
        created_at: old.created_at,
        arn: old.arn.clone(),
        topic_pattern: pattern,
    };
    apply(ctx, name, &old, &new)?;
    Ok(json!({}))
}

/// Moves the engine from `old` to `new`, then stores `new`; puts the engine back if the store
/// fails.
fn apply<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    name: &str,
    old: &StoredTopicRule,
    new: &StoredTopicRule,
) -> ApiResult<()> {
    let rules = &ctx.plane.topic_rules;
    if let Some(hook) = &rules.hook {
        if new.disabled() {
            hook.remove(name);
        } else {
            hook.upsert(name, &new.payload)
                .map_err(ApiError::invalid_request)?;
        }
    }
    if let Err(e) = rules.store.put(name, new) {
        if let Some(hook) = &rules.hook {
            if old.disabled() {
                hook.remove(name);
            } else {
                // It ran before this change; it runs again (a refusal now cannot be answered).
                let _ = hook.upsert(name, &old.payload);
            }
        }
        return Err(store_failure(e));
    }
    Ok(())
}

fn set_disabled<S: RegistryStore>(
    ctx: &Ctx<'_, S>,
    input: &Input,
    disabled: bool,
) -> ApiResult<Value> {
    let name = input.required("ruleName")?;
    let _changing = ctx.plane.topic_rules.lock();
    let old = existing(ctx, name)?;
    if old.disabled() == disabled {
        return Ok(json!({}));
    }
    let mut new = old.clone();
    new.payload.rule_disabled = Some(disabled);
    apply(ctx, name, &old, &new)?;
    Ok(json!({}))
}

/// `EnableTopicRule`: the engine starts the rule (it may refuse it: `InvalidRequestException`).
/// Enabling an enabled rule changes nothing.
fn enable_topic_rule<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    set_disabled(ctx, input, false)
}

/// `DisableTopicRule`: the engine stops the rule; it stays stored.
fn disable_topic_rule<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    set_disabled(ctx, input, true)
}

/// `DeleteTopicRule`: removed from the store, then from the engine.
fn delete_topic_rule<S: RegistryStore>(ctx: &Ctx<'_, S>, input: &Input) -> ApiResult<Value> {
    let name = input.required("ruleName")?;
    let rules = &ctx.plane.topic_rules;
    let _changing = rules.lock();
    if !rules.store.remove(name).map_err(store_failure)? {
        return Err(no_such_rule(name));
    }
    if let Some(hook) = &rules.hook {
        hook.remove(name);
    }
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_and_matched_as_mqtt_filters() {
        assert!(valid_filter("a/+/c") && valid_filter("#") && valid_filter("a/#"));
        assert!(!valid_filter("a/#/c") && !valid_filter("a+/b") && !valid_filter(""));
        assert!(filter_matches("a/+/c", "a/b/c") && filter_matches("a/#", "a"));
        assert!(!filter_matches("a/+", "a/b/c") && !filter_matches("#", "$aws/x"));
    }

    #[test]
    fn actions_thingkit_does_not_perform_are_refused_by_name() {
        let e = check_action(&json!({"dynamoDB": {"tableName": "t"}}), "a").unwrap_err();
        assert_eq!(
            e.message,
            "the dynamoDB action is not supported by thingkit (it performs republish and http)"
        );
        assert!(check_action(&json!({"republish": {"topic": "x", "roleArn": "r"}}), "a").is_ok());
        assert!(check_action(&json!({"http": {"url": "https://x", "auth": {}}}), "a").is_err());
        assert!(check_action(&json!({"republish": {}, "http": {}}), "a").is_err());
        assert!(check_action(&json!({"file": {}}), "a").is_err());
        assert!(check_action(&json!({}), "a").is_err());
    }
}
