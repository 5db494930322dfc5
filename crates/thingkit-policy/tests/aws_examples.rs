//! The worked policy examples of the AWS IoT Core Developer Guide, as tables of requests and the
//! decisions the guide states for them ("grants permission to ...", "denies ...").
//!
//! Sources (AWS IoT Core Developer Guide): *Connect policy examples*, *Connect and publish policy
//! examples*, *Publish/Subscribe policy examples*, *Retained message policy examples*,
//! *Certificate policy examples*, *Thing policy examples*, *Basic AWS IoT Core policy
//! variables*, *Thing policy variables*, *X.509 certificate policy variables*.

use std::collections::BTreeMap;

use thingkit_policy::{
    Action, ArnPrefix, CertificateContext, Context, Decision, PolicyDocument, PolicySet, Request,
    SetOptions, ThingContext,
};

use Decision::{Allow, ExplicitDeny, ImplicitDeny};

fn arn() -> ArnPrefix {
    ArnPrefix::new("aws", "us-east-1", "123456789012").expect("valid prefix")
}

fn set(policies: &[&str]) -> PolicySet {
    set_with(policies, SetOptions::default())
}

fn set_with(policies: &[&str], options: SetOptions) -> PolicySet {
    let mut s = PolicySet::with_options(options);
    for (i, p) in policies.iter().enumerate() {
        let doc = PolicyDocument::parse(p).unwrap_or_else(|e| panic!("policy {i}: {e}"));
        s.add(format!("p{i}"), &doc).expect("unique names");
    }
    s
}

fn client(id: &str) -> Context {
    Context::with_client_id(id)
}

fn thing_ctx(client_id: &str, thing: &str, attached: bool) -> Context {
    Context {
        client_id: Some(client_id.into()),
        thing: Some(ThingContext {
            name: thing.into(),
            attached,
            ..ThingContext::default()
        }),
        ..Context::default()
    }
}

/// Checks every row, reporting all mismatches at once; also checks that the allocation-free
/// path, `evaluate` and `explain` agree.
fn check(name: &str, set: &PolicySet, rows: &[(&str, Request<'_>, Context, Decision)]) {
    let mut failures = Vec::new();
    for (what, req, ctx, want) in rows {
        let fast = set.decide(req, ctx);
        let slow = set.explain(req, ctx).evaluation.decision;
        if fast != *want || slow != *want {
            failures.push(format!(
                "{name}: {what}: expected {want}, decide gave {fast}, explain gave {slow}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn connect_policy_denies_listed_clients_and_allows_attached_things() {
    let p = r#"{
      "Version": "2012-10-17",
      "Statement": [
        {"Effect": "Deny", "Action": ["iot:Connect"],
         "Resource": ["arn:aws:iot:us-east-1:123456789012:client/client1",
                      "arn:aws:iot:us-east-1:123456789012:client/client2"]},
        {"Effect": "Allow", "Action": ["iot:Connect"],
         "Resource": ["arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}"],
         "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}}
      ]
    }"#;
    let a = arn();
    check(
        "connect",
        &set(&[p]),
        &[
            (
                "client1 is denied even as an attached thing",
                a.connect("client1"),
                thing_ctx("client1", "client1", true),
                ExplicitDeny,
            ),
            (
                "client2 is denied",
                a.connect("client2"),
                thing_ctx("client2", "client2", true),
                ExplicitDeny,
            ),
            (
                "attached thing connects with its name",
                a.connect("lamp-7"),
                thing_ctx("lamp-7", "lamp-7", true),
                Allow,
            ),
            (
                "thing not attached to the certificate",
                a.connect("lamp-7"),
                thing_ctx("lamp-7", "lamp-7", false),
                ImplicitDeny,
            ),
            (
                "client ID other than the thing name",
                a.connect("other"),
                thing_ctx("other", "lamp-7", true),
                ImplicitDeny,
            ),
            (
                "no thing: the variable has no value",
                a.connect("lamp-7"),
                client("lamp-7"),
                ImplicitDeny,
            ),
        ],
    );
}

#[test]
fn connect_policy_for_unregistered_device_allows_only_client1() {
    let p = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["iot:Connect"],
      "Resource": ["arn:aws:iot:us-east-1:123456789012:client/client1"]}]}"#;
    let a = arn();
    check(
        "connect-unregistered",
        &set(&[p]),
        &[
            ("client1", a.connect("client1"), client("client1"), Allow),
            (
                "client2",
                a.connect("client2"),
                client("client2"),
                ImplicitDeny,
            ),
            (
                "prefix is not enough",
                a.connect("client10"),
                client("client10"),
                ImplicitDeny,
            ),
        ],
    );
}

fn with_attrs(id: &str, attrs: &[&str]) -> Context {
    Context {
        client_id: Some(id.into()),
        connect_attributes: attrs.iter().map(|s| s.to_string()).collect(),
        ..Context::default()
    }
}

#[test]
fn persistent_session_policies_use_for_all_values_on_connect_attributes() {
    let allow_persistent = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
      "Action": ["iot:Connect"], "Resource": "arn:aws:iot:us-east-1:123456789012:client/client1",
      "Condition": {"ForAllValues:StringEquals": {"iot:ConnectAttributes": ["PersistentConnect"]}}}]}"#;
    let disallow_persistent = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
      "Action": ["iot:Connect"], "Resource": "arn:aws:iot:us-east-1:123456789012:client/client1",
      "Condition": {"ForAllValues:StringNotEquals": {"iot:ConnectAttributes": ["PersistentConnect"]}}}]}"#;
    let a = arn();
    check(
        "persistent-allowed",
        &set(&[allow_persistent]),
        &[
            (
                "persistent connect",
                a.connect("client1"),
                with_attrs("client1", &["PersistentConnect"]),
                Allow,
            ),
            (
                "no attributes: ForAllValues of nothing is true",
                a.connect("client1"),
                with_attrs("client1", &[]),
                Allow,
            ),
            (
                "a last will is not allowed",
                a.connect("client1"),
                with_attrs("client1", &["PersistentConnect", "LastWill"]),
                ImplicitDeny,
            ),
        ],
    );
    check(
        "persistent-disallowed",
        &set(&[disallow_persistent]),
        &[
            (
                "persistent connect is refused",
                a.connect("client1"),
                with_attrs("client1", &["PersistentConnect"]),
                ImplicitDeny,
            ),
            (
                "other features are allowed",
                a.connect("client1"),
                with_attrs("client1", &["LastWill"]),
                Allow,
            ),
        ],
    );
}

#[test]
fn connect_and_publish_policies_scope_topics_to_thing_or_client() {
    let registered = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": ["iot:Publish"],
       "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/${iot:Connection.Thing.ThingName}"]},
      {"Effect": "Allow", "Action": ["iot:Connect"],
       "Resource": ["arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}"]}]}"#;
    let unregistered = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": ["iot:Publish"],
       "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/${iot:ClientId}"]},
      {"Effect": "Allow", "Action": ["iot:Connect"],
       "Resource": ["arn:aws:iot:us-east-1:123456789012:client/client1"]}]}"#;
    let a = arn();
    let t = thing_ctx("thing1", "thing1", true);
    check(
        "connect-and-pub-registered",
        &set(&[registered]),
        &[
            (
                "connect as the thing",
                a.connect("thing1"),
                t.clone(),
                Allow,
            ),
            (
                "publish on own topic",
                a.publish("thing1", false),
                t.clone(),
                Allow,
            ),
            (
                "publish elsewhere",
                a.publish("thing2", false),
                t.clone(),
                ImplicitDeny,
            ),
            (
                "subtopic is another topic",
                a.publish("thing1/x", false),
                t,
                ImplicitDeny,
            ),
        ],
    );
    check(
        "connect-and-pub-unregistered",
        &set(&[unregistered]),
        &[
            (
                "connect as client1",
                a.connect("client1"),
                client("client1"),
                Allow,
            ),
            (
                "publish on own topic",
                a.publish("client1", false),
                client("client1"),
                Allow,
            ),
            (
                "publish on another client's topic",
                a.publish("client2", false),
                client("client1"),
                ImplicitDeny,
            ),
        ],
    );
}

#[test]
fn basic_variables_client_id_and_source_ip_condition() {
    let p = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": ["iot:Connect"], "Resource": ["arn:aws:iot:us-east-1:123456789012:client/clientid1"]},
      {"Effect": "Allow", "Action": ["iot:Publish"],
       "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/my/topic/${iot:ClientId}"],
       "Condition": {"IpAddress": {"aws:SourceIp": "123.45.167.89"}}}]}"#;
    let a = arn();
    let at = |ip: Option<&str>| Context {
        client_id: Some("clientid1".into()),
        source_ip: ip.map(str::to_owned),
        ..Context::default()
    };
    check(
        "client-id-and-source-ip",
        &set(&[p]),
        &[
            (
                "from the allowed address",
                a.publish("my/topic/clientid1", false),
                at(Some("123.45.167.89")),
                Allow,
            ),
            (
                "from another address",
                a.publish("my/topic/clientid1", false),
                at(Some("123.45.167.90")),
                ImplicitDeny,
            ),
            (
                "address unknown",
                a.publish("my/topic/clientid1", false),
                at(None),
                ImplicitDeny,
            ),
            (
                "IPv6 never matches an IPv4 address",
                a.publish("my/topic/clientid1", false),
                at(Some("::1")),
                ImplicitDeny,
            ),
        ],
    );
}

#[test]
fn client_id_plus_opens_the_documented_subscription_gap_unless_strict() {
    let p = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["iot:Subscribe"],
      "Resource": ["arn:aws:iot:us-east-1:123456789012:topicfilter/my/${iot:ClientId}/topic"]}]}"#;
    let a = arn();
    check(
        "client-id-gap-aws",
        &set(&[p]),
        &[
            (
                "client '+' subscribes to my/+/topic",
                a.subscribe("my/+/topic"),
                client("+"),
                Allow,
            ),
            (
                "normal client",
                a.subscribe("my/c1/topic"),
                client("c1"),
                Allow,
            ),
        ],
    );
    let strict = SetOptions::default().with_strict_identities(true);
    check(
        "client-id-gap-strict",
        &set_with(&[p], strict),
        &[
            (
                "client '+' is refused in strict mode",
                a.subscribe("my/+/topic"),
                client("+"),
                ImplicitDeny,
            ),
            (
                "normal client unaffected",
                a.subscribe("my/c1/topic"),
                client("c1"),
                Allow,
            ),
        ],
    );
}

#[test]
fn pub_sub_specific_topic_and_prefix_policies() {
    let specific = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": ["iot:Connect"], "Resource": ["arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}"],
       "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}},
      {"Effect": "Allow", "Action": ["iot:Publish"], "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/some_specific_topic"]},
      {"Effect": "Allow", "Action": ["iot:Subscribe"], "Resource": ["arn:aws:iot:us-east-1:123456789012:topicfilter/some_specific_topic"]},
      {"Effect": "Allow", "Action": ["iot:Receive"], "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/some_specific_topic"]}]}"#;
    let prefix = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"], "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/topic_prefix*"]},
      {"Effect": "Allow", "Action": ["iot:Subscribe"], "Resource": ["arn:aws:iot:us-east-1:123456789012:topicfilter/topic_prefix*"]}]}"#;
    let a = arn();
    let t = thing_ctx("dev", "dev", true);
    check(
        "specific-topic",
        &set(&[specific]),
        &[
            (
                "publish",
                a.publish("some_specific_topic", false),
                t.clone(),
                Allow,
            ),
            (
                "subscribe",
                a.subscribe("some_specific_topic"),
                t.clone(),
                Allow,
            ),
            (
                "receive",
                a.receive("some_specific_topic"),
                t.clone(),
                Allow,
            ),
            (
                "subscribe with a wildcard filter",
                a.subscribe("some_specific_topic/#"),
                t.clone(),
                ImplicitDeny,
            ),
            (
                "publish elsewhere",
                a.publish("other_topic", false),
                t,
                ImplicitDeny,
            ),
        ],
    );
    check(
        "prefix",
        &set(&[prefix]),
        &[
            (
                "publish under the prefix",
                a.publish("topic_prefix/a/b", false),
                client("c"),
                Allow,
            ),
            (
                "publish on a longer name",
                a.publish("topic_prefix_more", false),
                client("c"),
                Allow,
            ),
            (
                "subscribe with MQTT wildcards under the prefix",
                a.subscribe("topic_prefix/#"),
                client("c"),
                Allow,
            ),
            ("receive", a.receive("topic_prefix/x"), client("c"), Allow),
            (
                "outside the prefix",
                a.publish("topic/prefix", false),
                client("c"),
                ImplicitDeny,
            ),
        ],
    );
}

#[test]
fn pub_sub_per_device_topics_and_thing_attribute_topics() {
    let per_device = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
       "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/${iot:Connection.Thing.ThingName}/*"]},
      {"Effect": "Allow", "Action": ["iot:Subscribe"],
       "Resource": ["arn:aws:iot:us-east-1:123456789012:topicfilter/${iot:Connection.Thing.ThingName}/*"]}]}"#;
    let by_attribute = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
       "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/${iot:Connection.Thing.Attributes[location]}/*"]},
      {"Effect": "Allow", "Action": ["iot:Subscribe"],
       "Resource": ["arn:aws:iot:us-east-1:123456789012:topicfilter/${iot:Connection.Thing.Attributes[location]}/*"]}]}"#;
    let a = arn();
    let t = thing_ctx("dev9", "dev9", true);
    check(
        "per-device",
        &set(&[per_device]),
        &[
            (
                "own subtree",
                a.publish("dev9/telemetry", false),
                t.clone(),
                Allow,
            ),
            ("own filter", a.subscribe("dev9/#"), t.clone(), Allow),
            (
                "another device's subtree",
                a.publish("dev8/telemetry", false),
                t.clone(),
                ImplicitDeny,
            ),
            (
                "the bare thing name is not under it",
                a.publish("dev9", false),
                t,
                ImplicitDeny,
            ),
        ],
    );
    let mut attrs = BTreeMap::new();
    attrs.insert("location".to_string(), "berlin".to_string());
    let located = Context {
        client_id: Some("dev9".into()),
        thing: Some(ThingContext {
            name: "dev9".into(),
            attributes: attrs,
            attached: true,
            ..ThingContext::default()
        }),
        ..Context::default()
    };
    check(
        "thing-attribute",
        &set(&[by_attribute]),
        &[
            (
                "own location",
                a.publish("berlin/temp", false),
                located.clone(),
                Allow,
            ),
            (
                "other location",
                a.publish("paris/temp", false),
                located,
                ImplicitDeny,
            ),
            (
                "attribute not set: matches nothing",
                a.publish("berlin/temp", false),
                thing_ctx("dev9", "dev9", true),
                ImplicitDeny,
            ),
        ],
    );
}

#[test]
fn deny_publishing_and_receiving_on_subtopics() {
    let deny_publish = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": ["iot:Publish"], "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/department/*"]},
      {"Effect": "Deny", "Action": ["iot:Publish"], "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/department/admin/*"]}]}"#;
    let deny_receive = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": ["iot:Subscribe"], "Resource": ["arn:aws:iot:us-east-1:123456789012:topicfilter/topic_1/*"]},
      {"Effect": "Allow", "Action": ["iot:Receive"], "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/topic_1/*"]},
      {"Effect": "Deny", "Action": ["iot:Receive"], "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/topic_1/restricted"]}]}"#;
    let a = arn();
    check(
        "deny-publish",
        &set(&[deny_publish]),
        &[
            (
                "department topic",
                a.publish("department/finance", false),
                client("c"),
                Allow,
            ),
            (
                "admin subtopic",
                a.publish("department/admin/users", false),
                client("c"),
                ExplicitDeny,
            ),
        ],
    );
    check(
        "deny-receive",
        &set(&[deny_receive]),
        &[
            (
                "subscribe to everything under topic_1",
                a.subscribe("topic_1/#"),
                client("c"),
                Allow,
            ),
            (
                "receive an ordinary message",
                a.receive("topic_1/open"),
                client("c"),
                Allow,
            ),
            (
                "receive the restricted topic",
                a.receive("topic_1/restricted"),
                client("c"),
                ExplicitDeny,
            ),
        ],
    );
}

#[test]
fn mqtt_wildcards_are_literal_in_policies() {
    let p = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": ["iot:Connect"], "Resource": ["*"]},
      {"Effect": "Allow", "Action": ["iot:Subscribe"], "Resource": ["arn:aws:iot:us-east-1:123456789012:topicfilter/foo/+/bar"]}]}"#;
    let everything = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["iot:*"], "Resource": ["*"]}]}"#;
    let a = arn();
    check(
        "literal-plus",
        &set(&[p]),
        &[
            (
                "exactly the filter foo/+/bar",
                a.subscribe("foo/+/bar"),
                client("c"),
                Allow,
            ),
            (
                "foo/baz/bar is not matched by '+'",
                a.subscribe("foo/baz/bar"),
                client("c"),
                ImplicitDeny,
            ),
            (
                "foo/goo/bar is not matched by '+'",
                a.subscribe("foo/goo/bar"),
                client("c"),
                ImplicitDeny,
            ),
        ],
    );
    check(
        "iot-star",
        &set(&[everything]),
        &[
            (
                "publish anywhere",
                a.publish("a/b", true),
                client("c"),
                Allow,
            ),
            ("subscribe anything", a.subscribe("#"), client("c"), Allow),
            (
                "shadow",
                a.thing(Action::UpdateThingShadow, "x"),
                client("c"),
                Allow,
            ),
        ],
    );
}

#[test]
fn retained_message_policies() {
    let publish_retained = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": ["iot:Connect"], "Resource": ["arn:aws:iot:us-east-1:123456789012:client/device1"]},
      {"Effect": "Allow", "Action": ["iot:Publish", "iot:RetainPublish"],
       "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/device/sample/configuration"]}]}"#;
    let publish_only = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": ["iot:Publish"],
       "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/device/sample/configuration"]}]}"#;
    let will = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": ["iot:Connect"], "Resource": ["arn:aws:iot:us-east-1:123456789012:client/device1"],
       "Condition": {"ForAllValues:StringEquals": {"iot:ConnectAttributes": ["LastWill"]}}},
      {"Effect": "Allow", "Action": ["iot:Publish", "iot:RetainPublish"], "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/will"]}]}"#;
    let list_get = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": ["iot:GetRetainedMessage"], "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/device/sample/configuration"]},
      {"Effect": "Allow", "Action": ["iot:ListRetainedMessages"], "Resource": ["*"]}]}"#;
    let a = arn();
    let d1 = client("device1");
    check(
        "retain-publish",
        &set(&[publish_retained]),
        &[
            ("connect", a.connect("device1"), d1.clone(), Allow),
            (
                "retained publish",
                a.publish("device/sample/configuration", true),
                d1.clone(),
                Allow,
            ),
            (
                "plain publish",
                a.publish("device/sample/configuration", false),
                d1.clone(),
                Allow,
            ),
        ],
    );
    check(
        "publish-without-retain",
        &set(&[publish_only]),
        &[
            (
                "plain publish",
                a.publish("device/sample/configuration", false),
                d1.clone(),
                Allow,
            ),
            (
                "retained publish needs iot:RetainPublish",
                a.publish("device/sample/configuration", true),
                d1.clone(),
                ImplicitDeny,
            ),
        ],
    );
    check(
        "retained-will",
        &set(&[will]),
        &[
            (
                "connect with a will",
                a.connect("device1"),
                with_attrs("device1", &["LastWill"]),
                Allow,
            ),
            (
                "connect persistently",
                a.connect("device1"),
                with_attrs("device1", &["PersistentConnect"]),
                ImplicitDeny,
            ),
            (
                "retained will publish",
                a.publish("will", true),
                d1.clone(),
                Allow,
            ),
        ],
    );
    check(
        "list-and-get",
        &set(&[list_get]),
        &[
            (
                "get",
                a.get_retained_message("device/sample/configuration"),
                d1.clone(),
                Allow,
            ),
            (
                "get another topic",
                a.get_retained_message("device/other"),
                d1.clone(),
                ImplicitDeny,
            ),
            ("list", a.list_retained_messages(), d1, Allow),
        ],
    );
}

fn cert_ctx(client_id: &str, id: &str, cn: &[&str]) -> Context {
    let mut subject = BTreeMap::new();
    subject.insert(
        "CommonName".to_string(),
        cn.iter().map(|s| s.to_string()).collect(),
    );
    Context {
        client_id: Some(client_id.into()),
        certificate: Some(CertificateContext {
            id: Some(id.into()),
            subject,
            ..CertificateContext::default()
        }),
        ..Context::default()
    }
}

#[test]
fn certificate_policy_examples() {
    let by_cert_id = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": ["iot:Publish"], "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/${iot:CertificateId}"]},
      {"Effect": "Allow", "Action": ["iot:Connect"], "Resource": ["arn:aws:iot:us-east-1:123456789012:client/client1",
        "arn:aws:iot:us-east-1:123456789012:client/client2", "arn:aws:iot:us-east-1:123456789012:client/client3"]}]}"#;
    let by_common_name = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": ["iot:Publish"], "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/${iot:Certificate.Subject.CommonName}"]},
      {"Effect": "Allow", "Action": ["iot:Connect"], "Resource": ["arn:aws:iot:us-east-1:123456789012:client/client1"]}]}"#;
    let a = arn();
    let c = cert_ctx("client2", "a1b2c3", &["lamp-1"]);
    check(
        "certificate-id",
        &set(&[by_cert_id]),
        &[
            ("connect as client2", a.connect("client2"), c.clone(), Allow),
            (
                "connect as client4",
                a.connect("client4"),
                c.clone(),
                ImplicitDeny,
            ),
            (
                "publish to the certificate ID",
                a.publish("a1b2c3", false),
                c.clone(),
                Allow,
            ),
            (
                "publish to another ID",
                a.publish("ffff", false),
                c.clone(),
                ImplicitDeny,
            ),
        ],
    );
    check(
        "common-name",
        &set(&[by_common_name]),
        &[
            (
                "publish to the common name",
                a.publish("lamp-1", false),
                c.clone(),
                Allow,
            ),
            (
                "the first of several common names is used",
                a.publish("first", false),
                cert_ctx("client1", "x", &["first", "second"]),
                Allow,
            ),
            (
                "a common name with '*' is not substituted",
                a.publish("*", false),
                cert_ctx("client1", "x", &["*"]),
                ImplicitDeny,
            ),
            (
                "a common name with '*' cannot act as a wildcard either",
                a.publish("anything", false),
                cert_ctx("client1", "x", &["*"]),
                ImplicitDeny,
            ),
        ],
    );
}

#[test]
fn certificate_list_variables_with_for_any_value() {
    let p = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": ["iot:Connect"], "Resource": ["arn:aws:iot:us-east-1:123456789012:client/${iot:ClientId}"],
       "Condition": {"ForAnyValue:StringEquals": {"iot:Certificate.Subject.Organization.List": ["Example Corp", "AnyCompany"]},
                     "Bool": {"iot:Connection.Thing.IsAttached": "true"}}},
      {"Effect": "Allow", "Action": ["iot:Publish"], "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/org/${iot:Certificate.Subject.Organization.1}/*"]}]}"#;
    let a = arn();
    let orgs = |list: &[&str]| {
        let mut subject = BTreeMap::new();
        subject.insert(
            "Organization".to_string(),
            list.iter().map(|s| s.to_string()).collect(),
        );
        Context {
            client_id: Some("dev".into()),
            thing: Some(ThingContext {
                name: "dev".into(),
                attached: true,
                ..ThingContext::default()
            }),
            certificate: Some(CertificateContext {
                subject,
                ..CertificateContext::default()
            }),
            ..Context::default()
        }
    };
    check(
        "certificate-list",
        &set(&[p]),
        &[
            (
                "one organization listed",
                a.connect("dev"),
                orgs(&["Other", "AnyCompany"]),
                Allow,
            ),
            (
                "no organization listed",
                a.connect("dev"),
                orgs(&["Other"]),
                ImplicitDeny,
            ),
            (
                "second organization as a variable: `.1` is the second value",
                a.publish("org/AnyCompany/x", false),
                orgs(&["Other", "AnyCompany"]),
                Allow,
            ),
            (
                "only one organization: `.1` is missing",
                a.publish("org/Other/x", false),
                orgs(&["Other"]),
                ImplicitDeny,
            ),
        ],
    );
}

#[test]
fn thing_policy_examples() {
    let p = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": ["iot:Connect"], "Resource": ["arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}"],
       "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}},
      {"Effect": "Allow", "Action": ["iot:Publish"], "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/update"]},
      {"Effect": "Allow", "Action": ["iot:Subscribe"], "Resource": ["arn:aws:iot:us-east-1:123456789012:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"]},
      {"Effect": "Allow", "Action": ["iot:UpdateThingShadow", "iot:GetThingShadow"], "Resource": ["arn:aws:iot:us-east-1:123456789012:thing/${iot:Connection.Thing.ThingName}"]},
      {"Effect": "Allow", "Action": ["iot:Publish"], "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/types/${iot:Connection.Thing.ThingTypeName}"]}]}"#;
    let a = arn();
    let typed = Context {
        client_id: Some("bulb1".into()),
        thing: Some(ThingContext {
            name: "bulb1".into(),
            thing_type: Some("LightBulb".into()),
            attached: true,
            ..ThingContext::default()
        }),
        ..Context::default()
    };
    check(
        "thing",
        &set(&[p]),
        &[
            (
                "connect as the attached thing",
                a.connect("bulb1"),
                typed.clone(),
                Allow,
            ),
            (
                "update own shadow topic",
                a.publish("$aws/things/bulb1/shadow/update", false),
                typed.clone(),
                Allow,
            ),
            (
                "update another shadow topic",
                a.publish("$aws/things/bulb2/shadow/update", false),
                typed.clone(),
                ImplicitDeny,
            ),
            (
                "subscribe to own shadow",
                a.subscribe("$aws/things/bulb1/shadow/update/accepted"),
                typed.clone(),
                Allow,
            ),
            (
                "shadow API on own thing",
                a.thing(Action::GetThingShadow, "bulb1"),
                typed.clone(),
                Allow,
            ),
            (
                "shadow API on another thing",
                a.thing(Action::GetThingShadow, "bulb2"),
                typed.clone(),
                ImplicitDeny,
            ),
            (
                "delete is not granted",
                a.thing(Action::DeleteThingShadow, "bulb1"),
                typed.clone(),
                ImplicitDeny,
            ),
            (
                "thing type topic",
                a.publish("types/LightBulb", false),
                typed,
                Allow,
            ),
            (
                "no type: the type topic matches nothing",
                a.publish("types/LightBulb", false),
                thing_ctx("bulb1", "bulb1", true),
                ImplicitDeny,
            ),
        ],
    );
}

#[test]
fn basic_job_policy_example() {
    let p = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": ["iot:Connect"], "Resource": ["arn:aws:iot:us-west-2:123456789012:client/uniqueThingName"]},
      {"Effect": "Allow", "Action": ["iot:Publish"], "Resource": [
        "arn:aws:iot:us-west-2:123456789012:topic/test/dc/pubtopic",
        "arn:aws:iot:us-west-2:123456789012:topic/$aws/events/job/*",
        "arn:aws:iot:us-west-2:123456789012:topic/$aws/events/jobExecution/*",
        "arn:aws:iot:us-west-2:123456789012:topic/$aws/things/uniqueThingName/jobs/*"]},
      {"Effect": "Allow", "Action": ["iot:Subscribe"], "Resource": [
        "arn:aws:iot:us-west-2:123456789012:topicfilter/test/dc/subtopic",
        "arn:aws:iot:us-west-2:123456789012:topicfilter/$aws/events/jobExecution/*",
        "arn:aws:iot:us-west-2:123456789012:topicfilter/$aws/things/uniqueThingName/jobs/*"]},
      {"Effect": "Allow", "Action": ["iot:Receive"], "Resource": [
        "arn:aws:iot:us-west-2:123456789012:topic/test/dc/subtopic",
        "arn:aws:iot:us-west-2:123456789012:topic/$aws/things/uniqueThingName/jobs/*"]},
      {"Effect": "Allow", "Action": ["iot:DescribeJobExecution", "iot:GetPendingJobExecutions",
        "iot:StartNextPendingJobExecution", "iot:UpdateJobExecution"],
       "Resource": ["arn:aws:iot:us-west-2:123456789012:thing/uniqueThingName"]}]}"#;
    let a = ArnPrefix::new("aws", "us-west-2", "123456789012").expect("valid prefix");
    let other_region = arn();
    let c = client("uniqueThingName");
    check(
        "jobs",
        &set(&[p]),
        &[
            ("connect", a.connect("uniqueThingName"), c.clone(), Allow),
            (
                "publish job update",
                a.publish("$aws/things/uniqueThingName/jobs/j1/update", false),
                c.clone(),
                Allow,
            ),
            (
                "subscribe job notifications",
                a.subscribe("$aws/things/uniqueThingName/jobs/notify"),
                c.clone(),
                Allow,
            ),
            (
                "receive job notifications",
                a.receive("$aws/things/uniqueThingName/jobs/notify"),
                c.clone(),
                Allow,
            ),
            (
                "jobs API",
                a.thing(Action::UpdateJobExecution, "uniqueThingName"),
                c.clone(),
                Allow,
            ),
            (
                "same request in another region",
                other_region.connect("uniqueThingName"),
                c,
                ImplicitDeny,
            ),
        ],
    );
}

#[test]
fn certificate_issuer_and_alternative_name_variables() {
    let p = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": ["iot:Connect"], "Resource": ["arn:aws:iot:us-east-1:123456789012:client/${iot:ClientId}"],
       "Condition": {"StringEquals": {"iot:Certificate.Issuer.CommonName": "IoT Devices Primary CA"},
                     "ForAnyValue:StringLike": {"iot:Certificate.Subject.AlternativeName.DNSName.List": ["*.devices.example"]}}},
      {"Effect": "Allow", "Action": ["iot:Publish"],
       "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/san/${iot:Certificate.Subject.AlternativeName.DNSName}",
                    "arn:aws:iot:us-east-1:123456789012:topic/serial/${iot:Certificate.SerialNumber}"]}]}"#;
    let a = arn();
    let cert = |issuer_cn: &str, dns: &[&str], serial: &str| {
        let mut c = CertificateContext {
            serial_number: Some(serial.into()),
            ..CertificateContext::default()
        };
        c.issuer
            .insert("CommonName".into(), vec![issuer_cn.to_string()]);
        c.subject_alternative_name.insert(
            "DNSName".into(),
            dns.iter().map(|s| s.to_string()).collect(),
        );
        Context {
            client_id: Some("bulb".into()),
            certificate: Some(c),
            ..Context::default()
        }
    };
    let good = cert(
        "IoT Devices Primary CA",
        &["bulb.devices.example", "alt.example"],
        "10525622389124227206",
    );
    check(
        "issuer-and-san",
        &set(&[p]),
        &[
            (
                "issuer and DNS name match",
                a.connect("bulb"),
                good.clone(),
                Allow,
            ),
            (
                "another issuer",
                a.connect("bulb"),
                cert("Other CA", &["bulb.devices.example"], "1"),
                ImplicitDeny,
            ),
            (
                "no DNS name under the domain",
                a.connect("bulb"),
                cert("IoT Devices Primary CA", &["bulb.other.example"], "1"),
                ImplicitDeny,
            ),
            (
                "first DNS name as a topic",
                a.publish("san/bulb.devices.example", false),
                good.clone(),
                Allow,
            ),
            (
                "second DNS name is not the plain variable",
                a.publish("san/alt.example", false),
                good.clone(),
                ImplicitDeny,
            ),
            (
                "serial number as a topic",
                a.publish("serial/10525622389124227206", false),
                good,
                Allow,
            ),
        ],
    );
}

/// A policy of the AWS corpus (`tests/aws/policies/`, sources in its README).
fn corpus(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/aws/policies")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn corpus_set(name: &str) -> PolicySet {
    set(&[&corpus(name)])
}

#[test]
fn connect_attribute_policies_with_empty_lists() {
    let a = arn();
    // Connect policy examples: "The following policy only allows connect using default
    // features" — `ForAllValues:StringEquals` with an empty list.
    check(
        "default-features-only",
        &corpus_set("guide-connect-policy-08.json"),
        &[
            (
                "no connect attributes",
                a.connect("c"),
                with_attrs("c", &[]),
                Allow,
            ),
            (
                "persistent connect is a non-default feature",
                a.connect("c"),
                with_attrs("c", &["PersistentConnect"]),
                ImplicitDeny,
            ),
            (
                "a last will too",
                a.connect("c"),
                with_attrs("c", &["LastWill"]),
                ImplicitDeny,
            ),
        ],
    );
    // "The following policy states the connect must have both PersistentConnect and LastWill
    // usage, no new feature is allowed" — its last Deny uses an empty list.
    check(
        "both-required",
        &corpus_set("guide-connect-policy-10.json"),
        &[
            (
                "both",
                a.connect("c"),
                with_attrs("c", &["PersistentConnect", "LastWill"]),
                Allow,
            ),
            (
                "only persistent",
                a.connect("c"),
                with_attrs("c", &["PersistentConnect"]),
                ExplicitDeny,
            ),
            (
                "only last will",
                a.connect("c"),
                with_attrs("c", &["LastWill"]),
                ExplicitDeny,
            ),
            (
                "neither: the empty-list Deny applies",
                a.connect("c"),
                with_attrs("c", &[]),
                ExplicitDeny,
            ),
            (
                "a new feature is not allowed",
                a.connect("c"),
                with_attrs("c", &["PersistentConnect", "LastWill", "NewFeature"]),
                ImplicitDeny,
            ),
        ],
    );
}

fn org_ctx(thing: &str, attached: bool, orgs: Option<&[&str]>) -> Context {
    let mut c = CertificateContext::default();
    if let Some(orgs) = orgs {
        c.subject.insert(
            "Organization".into(),
            orgs.iter().map(|s| s.to_string()).collect(),
        );
    }
    Context {
        certificate: Some(c),
        ..thing_ctx(thing, thing, attached)
    }
}

#[test]
fn organization_list_policy_follows_iam_for_all_values() {
    // X.509 certificate policy variables, "Registered devices (2)": publishing is restricted
    // "to those clients with certificates whose Certificate.Subject.Organization attribute is
    // set to "Example Corp" or "AnyCompany"". The policy uses ForAllValues, so every
    // organization of the certificate must be one of the two (the page's "must include one of
    // the values listed" would be ForAnyValue) and a certificate without an organization
    // passes: IAM semantics, which AWS IoT documents for ForAllValues.
    let a = arn();
    check(
        "organization-list",
        &corpus_set("guide-cert-policy-variables-01.json"),
        &[
            (
                "connect as the attached thing",
                a.connect("lamp"),
                org_ctx("lamp", true, Some(&["Example Corp"])),
                Allow,
            ),
            (
                "publish with one listed organization",
                a.publish("my/topic/lamp", false),
                org_ctx("lamp", true, Some(&["Example Corp"])),
                Allow,
            ),
            (
                "publish with both listed organizations",
                a.publish("my/topic/lamp", false),
                org_ctx("lamp", true, Some(&["AnyCompany", "Example Corp"])),
                Allow,
            ),
            (
                "an unlisted organization besides a listed one",
                a.publish("my/topic/lamp", false),
                org_ctx("lamp", true, Some(&["Example Corp", "Other"])),
                ImplicitDeny,
            ),
            (
                "no organization: ForAllValues of nothing is true",
                a.publish("my/topic/lamp", false),
                org_ctx("lamp", true, None),
                Allow,
            ),
            (
                "an organization with a wildcard is left unreplaced: the Allow does not apply",
                a.publish("my/topic/lamp", false),
                org_ctx("lamp", true, Some(&["Example Corp", "Any*"])),
                ImplicitDeny,
            ),
            (
                "the thing is not attached: its name does not resolve",
                a.publish("my/topic/lamp", false),
                org_ctx("lamp", false, Some(&["Example Corp"])),
                ImplicitDeny,
            ),
        ],
    );
}

#[test]
fn an_unattached_things_name_grants_nothing() {
    // Connect and publish policy examples: the thing name comes from the registry thing
    // attached to the certificate. A device whose certificate is not attached to `victim` must
    // not publish to `victim`'s topic by connecting with client ID `victim`.
    let a = arn();
    check(
        "unattached-thing",
        &corpus_set("guide-connect-and-pub-01.json"),
        &[
            (
                "attached: connect as the thing",
                a.connect("victim"),
                thing_ctx("victim", "victim", true),
                Allow,
            ),
            (
                "attached: publish to its topic",
                a.publish("victim", false),
                thing_ctx("victim", "victim", true),
                Allow,
            ),
            (
                "unattached: connect as the thing",
                a.connect("victim"),
                thing_ctx("victim", "victim", false),
                ImplicitDeny,
            ),
            (
                "unattached: publish to the thing's topic",
                a.publish("victim", false),
                thing_ctx("victim", "victim", false),
                ImplicitDeny,
            ),
        ],
    );
}

#[test]
fn serial_number_and_null_certificate_policies() {
    // Using X.509 certificate policy variables: "allows connections with client ID that matches
    // the certificate serial number" — in decimal — "and publishing to the topic that matches
    // the pattern ${iot:Certificate.Subject.Organization}/device-stats/${iot:ClientId}/*".
    let a = arn();
    let ctx = |client: &str, serial: Option<&str>, org: Option<&str>, cn: Option<&str>| {
        let mut c = CertificateContext {
            serial_number: serial.map(str::to_string),
            ..CertificateContext::default()
        };
        if let Some(org) = org {
            c.subject.insert("Organization".into(), vec![org.into()]);
        }
        if let Some(cn) = cn {
            c.subject.insert("CommonName".into(), vec![cn.into()]);
        }
        Context {
            client_id: Some(client.into()),
            certificate: Some(c),
            ..Context::default()
        }
    };
    let serial = "10525622389124227206";
    check(
        "serial-and-organization",
        &corpus_set("guide-use-policy-variables-01.json"),
        &[
            (
                "client ID is the decimal serial",
                a.connect(serial),
                ctx(serial, Some(serial), Some("IoT Devices"), None),
                Allow,
            ),
            (
                "client ID is the hex serial",
                a.connect("92:12:85:cb:b7:a5:e0:86"),
                ctx("92:12:85:cb:b7:a5:e0:86", Some(serial), None, None),
                ImplicitDeny,
            ),
            (
                "device stats under the organization",
                a.publish(&format!("IoT Devices/device-stats/{serial}/cpu"), false),
                ctx(serial, Some(serial), Some("IoT Devices"), None),
                Allow,
            ),
            (
                "no organization: the variable is not populated",
                a.publish(&format!("IoT Devices/device-stats/{serial}/cpu"), false),
                ctx(serial, Some(serial), None, None),
                ImplicitDeny,
            ),
        ],
    );
    // "allows iot:Connect with certificates only when the Certificate Serial Number and
    // Certificate Subject Common name attributes are present."
    check(
        "null-serial-and-cn",
        &corpus_set("guide-use-policy-variables-02.json"),
        &[
            (
                "both present",
                a.connect("c"),
                ctx("c", Some(serial), None, Some("LightBulb Device Cert")),
                Allow,
            ),
            (
                "no common name",
                a.connect("c"),
                ctx("c", Some(serial), None, None),
                ImplicitDeny,
            ),
            (
                "no serial",
                a.connect("c"),
                ctx("c", None, None, Some("LightBulb Device Cert")),
                ImplicitDeny,
            ),
        ],
    );
}

#[test]
fn alternative_name_conditions_and_index_variables() {
    // X.509 certificate policy variables: the documented `Subject.AlternativeName` and
    // `Issuer.AlternativeName` keys, as condition keys and variables, and `.1` as "the second"
    // value.
    let p = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:us-east-1:123456789012:client/*",
       "Condition": {"StringEquals": {"iot:Certificate.Subject.AlternativeName.DNSName": "example.com",
                                      "iot:Certificate.Issuer.AlternativeName.IPAddress": "5.6.7.8"},
                     "Bool": {"iot:Connection.Thing.IsAttached": "true"}}},
      {"Effect": "Allow", "Action": "iot:Publish",
       "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/country/${iot:Certificate.Subject.Country.1}",
                    "arn:aws:iot:us-east-1:123456789012:topic/uri/${iot:Certificate.Subject.AlternativeName.UniformResourceIdentifier}"]},
      {"Effect": "Deny", "Action": "iot:Publish", "Resource": "*",
       "Condition": {"ForAnyValue:StringLike": {"iot:Certificate.SubjectAltName.DNSName.List": ["*"]}}}]}"#;
    let a = arn();
    let ctx = |dns: &str, ian_ip: &str| {
        let mut c = CertificateContext::default();
        c.subject
            .insert("Country".into(), vec!["US".into(), "DE".into()]);
        c.subject_alternative_name
            .insert("DNSName".into(), vec![dns.into()]);
        c.subject_alternative_name.insert(
            "UniformResourceIdentifier".into(),
            vec!["ResourceIdentifier001".into()],
        );
        c.issuer_alternative_name
            .insert("IPAddress".into(), vec![ian_ip.into()]);
        Context {
            certificate: Some(c),
            ..thing_ctx("bulb", "bulb", true)
        }
    };
    check(
        "alternative-names",
        &set(&[p]),
        &[
            (
                "DNS name and issuer IP match",
                a.connect("bulb"),
                ctx("example.com", "5.6.7.8"),
                Allow,
            ),
            (
                "another DNS name",
                a.connect("bulb"),
                ctx("other.example", "5.6.7.8"),
                ImplicitDeny,
            ),
            (
                "another issuer IP",
                a.connect("bulb"),
                ctx("example.com", "1.1.1.1"),
                ImplicitDeny,
            ),
            (
                "`.1` is the second country",
                a.publish("country/DE", false),
                ctx("example.com", "5.6.7.8"),
                Allow,
            ),
            (
                "`.1` is not the first country",
                a.publish("country/US", false),
                ctx("example.com", "5.6.7.8"),
                ImplicitDeny,
            ),
            (
                "the URI as a variable (the undocumented SubjectAltName Deny never applies)",
                a.publish("uri/ResourceIdentifier001", false),
                ctx("example.com", "5.6.7.8"),
                Allow,
            ),
        ],
    );
}

/// Attack: a certificate field AWS IoT leaves unreplaced (here a `#` in the common name) must
/// neither slip past a Deny nor satisfy a negated Allow. The condition fails closed.
#[test]
fn unreplaced_certificate_values_fail_closed_in_both_effects() {
    let a = arn();
    let deny_blocked = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": "iot:Publish", "Resource": "*"},
      {"Effect": "Deny", "Action": "iot:Publish", "Resource": "*",
       "Condition": {"StringLike": {"iot:Certificate.Subject.CommonName": "blocked*"}}}]}"#;
    let allow_unless_blocked = r#"{"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": "iot:Publish", "Resource": "*",
       "Condition": {"StringNotLike": {"iot:Certificate.Subject.CommonName": "blocked*"}}}]}"#;
    let with_cn = |cn: &str| {
        let mut cert = CertificateContext::default();
        cert.subject.insert("CommonName".into(), vec![cn.into()]);
        Context {
            client_id: Some("c".into()),
            certificate: Some(cert),
            ..Context::default()
        }
    };
    let publish = || a.publish("t", false);
    check(
        "deny on a common-name pattern",
        &set(&[deny_blocked]),
        &[
            ("an ordinary name", publish(), with_cn("sensor-1"), Allow),
            (
                "a blocked name",
                publish(),
                with_cn("blocked-7"),
                ExplicitDeny,
            ),
            (
                "a blocked name with `#`",
                publish(),
                with_cn("blocked#7"),
                ExplicitDeny,
            ),
            (
                "an ordinary name with `#`",
                publish(),
                with_cn("sensor#1"),
                ExplicitDeny,
            ),
        ],
    );
    check(
        "allow unless the common name matches",
        &set(&[allow_unless_blocked]),
        &[
            ("an ordinary name", publish(), with_cn("sensor-1"), Allow),
            (
                "a blocked name",
                publish(),
                with_cn("blocked-7"),
                ImplicitDeny,
            ),
            (
                "a blocked name with `#`",
                publish(),
                with_cn("blocked#7"),
                ImplicitDeny,
            ),
            (
                "a name over 1024 characters",
                publish(),
                with_cn(&"s".repeat(1025)),
                ImplicitDeny,
            ),
        ],
    );
}
