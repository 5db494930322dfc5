//! Validation: every error and lint, with its code, help, JSON path, line:column and byte span.

use thingkit_policy::{
    Code, Error, Finding, PolicyDocument, PolicyLimits, Severity, validate, validate_with,
};

fn codes(findings: &[Finding]) -> Vec<&'static str> {
    findings.iter().map(|f| f.code.as_str()).collect()
}

fn statement(body: &str) -> String {
    format!(r#"{{"Version": "2012-10-17", "Statement": [{body}]}}"#)
}

fn find(findings: &[Finding], code: Code) -> &Finding {
    findings
        .iter()
        .find(|f| f.code == code)
        .unwrap_or_else(|| panic!("no {code} in {findings:#?}"))
}

#[test]
fn clean_policy_has_no_findings() {
    let text = statement(
        r#"{"Effect": "Allow", "Action": "iot:Connect",
            "Resource": "arn:aws:iot:us-east-1:1:client/${iot:Connection.Thing.ThingName}"}"#,
    );
    assert_eq!(validate(&text), vec![]);
    assert!(PolicyDocument::parse(&text).is_ok());
}

#[test]
fn reports_all_errors_in_one_pass_with_positions() {
    let text = "{\n  \"Version\": \"2012-10-18\",\n  \"Statement\": [\n    {\"Effect\": \"Permit\", \"Action\": \"iot:Pubish\", \"Resource\": \"topic/a\"},\n    {\"Effect\": \"Allow\", \"Action\": \"iot:Publish\", \"Resource\": \"*\", \"Principal\": \"*\"}\n  ],\n  \"Extra\": 1\n}";
    let f = validate(text);
    assert_eq!(
        codes(&f),
        vec![
            "invalid-version",
            "invalid-effect",
            "unknown-action",
            "invalid-resource",
            "unknown-element",
            "unknown-element"
        ],
        "{f:#?}"
    );
    let v = find(&f, Code::InvalidVersion);
    assert_eq!((v.line, v.column, v.path.as_str()), (2, 14, "$.Version"));
    let e = find(&f, Code::InvalidEffect);
    assert_eq!(
        (e.line, e.column, e.path.as_str()),
        (4, 16, "$.Statement[0].Effect")
    );
    let a = find(&f, Code::UnknownAction);
    assert_eq!(a.path, "$.Statement[0].Action");
    let p = f
        .iter()
        .find(|x| x.path == "$.Statement[1].Principal")
        .expect("principal reported");
    assert_eq!((p.line, p.column), (5, 67));
    assert!(f.iter().all(|x| x.severity == Severity::Error));
}

#[test]
fn parse_fails_with_every_finding() {
    let text = r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow"}}"#;
    let err = PolicyDocument::parse(text).unwrap_err();
    let Error::InvalidDocument { findings } = &err else {
        panic!("wrong error")
    };
    assert_eq!(findings, &validate(text));
    assert_eq!(findings.len(), 2, "{findings:#?}");
    assert!(findings.iter().all(|f| f.code == Code::MissingElement));
    assert!(findings.iter().all(|f| f.path == "$.Statement"));
    // The message lists every finding, one per line, each with its help.
    let shown = err.to_string();
    assert!(
        shown.starts_with("invalid policy document: 2 error(s)\n"),
        "{shown}"
    );
    assert_eq!(shown.lines().count(), 3, "{shown}");
    assert!(shown.contains("help: add the element"), "{shown}");
}

#[test]
fn spans_cover_the_offending_element() {
    let text = "{\n  \"Version\": \"2012-10-18\",\n  \"Statement\": [\n    {\"Effect\": \"Permit\", \"Action\": [\"iot:Pubish\"], \"Resource\": \"topic/a\", \"Principal\": {\"AWS\": \"*\"}}\n  ]\n}";
    let f = validate(text);
    let at = |code: Code| &text[find(&f, code).span.clone()];
    assert_eq!(at(Code::InvalidVersion), "\"2012-10-18\"");
    assert_eq!(at(Code::InvalidEffect), "\"Permit\"");
    assert_eq!(at(Code::InvalidResource), "\"topic/a\"");
    let action = find(&f, Code::UnknownAction);
    assert!(matches!(
        &text[action.span.clone()],
        "[\"iot:Pubish\"]" | "\"iot:Pubish\""
    ));
    // An unknown element's span is its key.
    assert_eq!(at(Code::UnknownElement), "\"Principal\"");
    // Span and line:column agree.
    for x in &f {
        let line = text[..x.span.start].matches('\n').count() + 1;
        assert_eq!(line, x.line, "{x:?}");
    }
    // A syntax error spans the character where reading stopped.
    let bad = "{\"Version\": \"2012-10-17\", \"Statement\": [,]}";
    let s = &validate(bad)[0];
    assert_eq!(s.code, Code::JsonSyntax);
    assert_eq!(&bad[s.span.clone()], ",");
}

#[test]
fn every_code_has_help_distinct_from_the_message() {
    for code in Code::ALL {
        assert!(!code.help().is_empty(), "{code}");
    }
    let text = statement(
        r#"{"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:us-east-1:1:client/*"},
           {"Effect": "Deny", "Action": "iot:Subscribe", "Resource": "arn:aws:iot:us-east-1:1:topicfilter/a/b"}"#,
    );
    let f = validate(&text);
    let connect = find(&f, Code::ConnectWithoutIsAttached);
    assert!(connect.help.contains("IsAttached"), "{connect:?}");
    assert!(!connect.message.contains("IsAttached"), "{connect:?}");
    let deny = find(&f, Code::DenySubscribeWithoutReceive);
    assert!(deny.help.contains("topic/a/b"), "{deny:?}");
}

#[test]
fn duplicate_keys_are_errors_at_every_level() {
    let text = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Effect": "Deny",
        "Action": "iot:Connect", "Resource": "*",
        "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true", "iot:Connection.Thing.IsAttached": "false"}}}]}"#;
    let f = validate(text);
    let dups: Vec<_> = f.iter().filter(|x| x.code == Code::DuplicateKey).collect();
    assert_eq!(dups.len(), 2, "{f:#?}");
    assert!(
        dups[0].message.contains("first at 1:42"),
        "{}",
        dups[0].message
    );
}

#[test]
fn json_syntax_errors_have_positions() {
    let f = validate("{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [,]\n}");
    assert_eq!(codes(&f), vec!["json-syntax"]);
    assert_eq!((f[0].line, f[0].column), (3, 17));
    for bad in [
        "",
        "[]",
        "null",
        "{\"Version\": \"2012-10-17\"} x",
        "{\"a\": 01}",
    ] {
        let f = validate(bad);
        assert!(
            f.iter().any(|x| x.severity == Severity::Error),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn size_limit_counts_characters_without_whitespace() {
    let resource = format!("arn:aws:iot:us-east-1:1:topic/{}", "a".repeat(1900));
    let text = statement(&format!(
        r#"{{"Effect": "Allow", "Action": "iot:Publish", "Resource": "{resource}"}}"#
    ));
    let padded = text.replace(", ", ",                                        ");
    assert!(validate(&padded).is_empty(), "whitespace must not count");
    let big = statement(&format!(
        r#"{{"Effect": "Allow", "Action": "iot:Publish", "Resource": "{resource}{}"}}"#,
        "b".repeat(100)
    ));
    let f = validate(&big);
    assert_eq!(codes(&f), vec!["limit-exceeded"], "{f:#?}");
    assert!(f[0].message.contains("max_policy_chars"));
    let roomy = PolicyLimits::default().with_max_policy_chars(4096);
    assert!(validate_with(&big, &roomy).is_empty());
}

#[test]
fn raw_input_and_depth_limits_refuse_early() {
    let huge = " ".repeat(70_000);
    assert_eq!(codes(&validate(&huge)), vec!["limit-exceeded"]);
    let deep = format!(
        r#"{{"Version": "2012-10-17", "Statement": {}{}}}"#,
        "[".repeat(40),
        "]".repeat(40)
    );
    let f = validate(&deep);
    assert_eq!(codes(&f), vec!["limit-exceeded"]);
    assert!(f[0].message.contains("max_depth"));
}

#[test]
fn structural_errors() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}"#,
            "missing-element",
        ),
        (r#"{"Version": "2012-10-17"}"#, "missing-element"),
        (
            r#"{"Version": "2012-10-17", "Statement": []}"#,
            "invalid-type",
        ),
        (
            r#"{"Version": "2012-10-17", "Statement": "x"}"#,
            "invalid-type",
        ),
        (
            r#"{"Version": 2012, "Statement": {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}}"#,
            "invalid-type",
        ),
        (
            &statement(r#"{"Effect": "Allow", "Action": [], "Resource": "*"}"#),
            "invalid-type",
        ),
        (
            &statement(r#"{"Effect": "Allow", "Action": [1], "Resource": "*"}"#),
            "invalid-type",
        ),
        (
            &statement(
                r#"{"Effect": "Allow", "Action": "iot:Connect", "NotAction": "iot:Publish", "Resource": "*"}"#,
            ),
            "conflicting-elements",
        ),
        (
            &statement(
                r#"{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*", "NotResource": "*"}"#,
            ),
            "conflicting-elements",
        ),
        (
            &statement(r#"{"Effect": "Allow", "Action": "iot:Connect"}"#),
            "missing-element",
        ),
        (
            &statement(r#"{"Effect": "Allow", "Resource": "*"}"#),
            "missing-element",
        ),
        (
            &statement(r#"{"Action": "iot:Connect", "Resource": "*"}"#),
            "missing-element",
        ),
        (
            &statement(r#"{"Effect": "Allow", "Action": "Connect", "Resource": "*"}"#),
            "unknown-action",
        ),
        (
            &statement(
                r#"{"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:*"}"#,
            ),
            "invalid-resource",
        ),
        (
            &statement(
                r#"{"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:r:1:client/${iot:ClientId"}"#,
            ),
            "invalid-variable",
        ),
        (
            &statement(
                r#"{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*", "Condition": {"StringMatches": {"iot:ClientId": "a"}}}"#,
            ),
            "unknown-operator",
        ),
        (
            &statement(
                r#"{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*", "Condition": {"NumericLessThan": {"iot:ClientId": "ten"}}}"#,
            ),
            "invalid-condition-value",
        ),
        (
            &statement(
                r#"{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*", "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/40"}}}"#,
            ),
            "invalid-condition-value",
        ),
        (
            &statement(
                r#"{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*", "Condition": {"DateLessThan": {"aws:CurrentTime": "tomorrow"}}}"#,
            ),
            "invalid-condition-value",
        ),
        (
            &statement(
                r#"{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*", "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "yes"}}}"#,
            ),
            "invalid-condition-value",
        ),
        (
            &statement(
                r#"{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*", "Condition": {"StringEquals": {"iot:ClientId": {}}}}"#,
            ),
            "invalid-type",
        ),
        (
            &statement(
                r#"{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*", "Condition": {"StringEquals": {"iot:ClientId": [["a"]]}}}"#,
            ),
            "invalid-type",
        ),
        (
            &statement(
                r#"{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*", "Condition": {"StringEquals": "x"}}"#,
            ),
            "invalid-type",
        ),
        (
            &statement(
                r#"{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*", "Condition": {"NullIfExists": {"iot:ClientId": "true"}}}"#,
            ),
            "unknown-operator",
        ),
    ];
    for (text, code) in cases {
        let f = validate(text);
        assert!(
            f.iter()
                .any(|x| x.code.as_str() == *code && x.severity == Severity::Error),
            "{text}: expected {code}, got {f:#?}"
        );
        assert!(PolicyDocument::parse(text).is_err(), "{text} parsed");
    }
}

/// Lints: the document parses, and the warning is reported.
fn lint(body: &str, code: Code) -> Finding {
    let text = statement(body);
    let doc = PolicyDocument::parse(&text).unwrap_or_else(|e| panic!("{body}: {e}"));
    assert!(
        doc.warnings().iter().any(|w| w.code == code),
        "{body}: expected {code}, got {:#?}",
        doc.warnings()
    );
    let f = validate(&text);
    find(&f, code).clone()
}

fn no_lint(body: &str, code: Code) {
    let f = validate(&statement(body));
    assert!(
        !f.iter().any(|x| x.code == code),
        "{body}: unexpected {code}: {f:#?}"
    );
}

#[test]
fn lints_subscribe_on_topic_and_publish_on_topicfilter() {
    let f = lint(
        r#"{"Effect": "Allow", "Action": "iot:Subscribe", "Resource": "arn:aws:iot:r:1:topic/a"}"#,
        Code::WrongTopicResource,
    );
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.path, "$.Statement[0].Resource");
    lint(
        r#"{"Effect": "Allow", "Action": "iot:Publish", "Resource": "arn:aws:iot:r:1:topicfilter/a"}"#,
        Code::WrongTopicResource,
    );
    no_lint(
        r#"{"Effect": "Allow", "Action": ["iot:Subscribe", "iot:Receive"],
            "Resource": ["arn:aws:iot:r:1:topic/a", "arn:aws:iot:r:1:topicfilter/a"]}"#,
        Code::WrongTopicResource,
    );
    lint(
        r#"{"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:r:1:thing/a"}"#,
        Code::ResourceTypeMismatch,
    );
}

#[test]
fn lints_literal_mqtt_wildcards() {
    lint(
        r#"{"Effect": "Allow", "Action": "iot:Subscribe", "Resource": "arn:aws:iot:r:1:topicfilter/a/#"}"#,
        Code::MqttWildcardInPolicy,
    );
    no_lint(
        r#"{"Effect": "Allow", "Action": "iot:Subscribe", "Resource": "arn:aws:iot:r:1:topicfilter/a/*"}"#,
        Code::MqttWildcardInPolicy,
    );
}

#[test]
fn lints_deny_subscribe_without_receive() {
    lint(
        r#"{"Effect": "Deny", "Action": "iot:Subscribe", "Resource": "arn:aws:iot:r:1:topicfilter/secret/*"}"#,
        Code::DenySubscribeWithoutReceive,
    );
    no_lint(
        r#"{"Effect": "Deny", "Action": "iot:Subscribe", "Resource": "arn:aws:iot:r:1:topicfilter/secret/*"},
           {"Effect": "Deny", "Action": "iot:Receive", "Resource": "arn:aws:iot:r:1:topic/secret/*"}"#,
        Code::DenySubscribeWithoutReceive,
    );
}

#[test]
fn lints_connect_without_is_attached() {
    lint(
        r#"{"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:r:1:client/*"}"#,
        Code::ConnectWithoutIsAttached,
    );
    lint(
        r#"{"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:r:1:client/${iot:ClientId}"}"#,
        Code::ConnectWithoutIsAttached,
    );
    no_lint(
        r#"{"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:r:1:client/*",
            "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}}"#,
        Code::ConnectWithoutIsAttached,
    );
    no_lint(
        r#"{"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:r:1:client/${iot:Connection.Thing.ThingName}"}"#,
        Code::ConnectWithoutIsAttached,
    );
}

#[test]
fn lints_broad_reserved_topic_access() {
    lint(
        r#"{"Effect": "Allow", "Action": "iot:Publish", "Resource": "arn:aws:iot:r:1:topic/$aws/things/*"}"#,
        Code::BroadReservedTopicAccess,
    );
    no_lint(
        r#"{"Effect": "Allow", "Action": "iot:Publish",
            "Resource": "arn:aws:iot:r:1:topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"}"#,
        Code::BroadReservedTopicAccess,
    );
}

#[test]
fn lints_variables_in_deny_and_undocumented_variables() {
    lint(
        r#"{"Effect": "Deny", "Action": "iot:Publish", "Resource": "arn:aws:iot:r:1:topic/${iot:ClientId}/admin"}"#,
        Code::VariableInDeny,
    );
    let f = lint(
        r#"{"Effect": "Allow", "Action": "iot:Publish", "Resource": "arn:aws:iot:r:1:topic/${iot:Thing.ThingName}"}"#,
        Code::UnknownVariable,
    );
    assert!(f.message.contains("iot:Thing.ThingName"));
    lint(
        r#"{"Effect": "Allow", "Action": "iot:Publish", "Resource": "*",
            "Condition": {"StringEquals": {"iot:Thing.ThingName": "a"}}}"#,
        Code::UnknownVariable,
    );
}

#[test]
fn lints_for_all_values_and_negated_elements_in_allow() {
    lint(
        r#"{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*",
            "Condition": {"ForAllValues:StringEquals": {"iot:ConnectAttributes": "LastWill"}}}"#,
        Code::ForAllValuesInAllow,
    );
    lint(
        r#"{"Effect": "Allow", "Action": "iot:Publish", "NotResource": "arn:aws:iot:r:1:topic/admin"}"#,
        Code::NegatedElementInAllow,
    );
    lint(
        r#"{"Effect": "Allow", "NotAction": "iot:Connect", "Resource": "*"}"#,
        Code::NegatedElementInAllow,
    );
    no_lint(
        r#"{"Effect": "Deny", "Action": "iot:Publish", "NotResource": "arn:aws:iot:r:1:topic/ok"}"#,
        Code::NegatedElementInAllow,
    );
}

#[test]
fn lints_list_actions_with_specific_resources() {
    lint(
        r#"{"Effect": "Allow", "Action": "iot:ListRetainedMessages", "Resource": "arn:aws:iot:r:1:topic/a"}"#,
        Code::ListActionResource,
    );
    no_lint(
        r#"{"Effect": "Allow", "Action": "iot:ListRetainedMessages", "Resource": "*"}"#,
        Code::ListActionResource,
    );
}

#[test]
fn foreign_actions_are_warnings() {
    lint(
        r#"{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}"#,
        Code::ForeignAction,
    );
}

#[test]
fn every_code_has_a_unique_kebab_name() {
    let mut names: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    assert!(
        names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
    );
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len());
}
