//! Property tests of the decision procedure over randomly generated policies and requests.

use proptest::prelude::*;
use thingkit_policy::{
    Action, ArnPrefix, Context, Decision, PolicyDocument, PolicySet, Request, RequestBuf,
    ResourceType, ThingContext, validate,
};

const PREFIX: &str = "arn:aws:iot:us-east-1:123456789012:";

const ACTIONS: &[&str] = &[
    "iot:Connect",
    "iot:Publish",
    "iot:Subscribe",
    "iot:Receive",
    "iot:*",
    "iot:Get*",
    "iot:RetainPublish",
];

const RESOURCES: &[&str] = &[
    "*",
    "topic/a/*",
    "topic/${iot:ClientId}/*",
    "client/${iot:ClientId}",
    "client/${iot:Connection.Thing.ThingName}",
    "topicfilter/a/?",
    "topicfilter/${iot:ClientId}/#",
    "topic/b",
    "client/c?",
    "topic/*/x",
    // Patterns that cross the boundary between the resource type and the name, or wildcard
    // the ARN's head: the borrowed request matches them on its parts.
    "t*/x",
    "topi?/b",
    "*${iot:ClientId}*",
    "topic/a:*",
    "arn:aws:iot:*:123456789012:topic/b",
    "arn:aws:iot:us-east-?:*:topic*",
];

const CONDITIONS: &[&str] = &[
    r#""StringEquals": {"iot:ClientId": "c1"}"#,
    r#""StringNotLike": {"iot:ClientId": ["x*", "+"]}"#,
    r#""ForAnyValue:StringEquals": {"iot:ConnectAttributes": "LastWill"}"#,
    r#""ForAllValues:StringEquals": {"iot:ConnectAttributes": ["LastWill", "PersistentConnect"]}"#,
    r#""Bool": {"iot:Connection.Thing.IsAttached": "true"}"#,
    r#""IpAddress": {"aws:SourceIp": "10.0.0.0/8"}"#,
    r#""NotIpAddress": {"aws:SourceIp": ["10.1.0.0/16"]}"#,
    r#""Null": {"iot:LastWillTopic": "false"}"#,
    r#""StringLikeIfExists": {"iot:LastWillTopic": "lwt/${iot:ClientId}"}"#,
];

#[derive(Debug, Clone)]
struct Stmt {
    deny: bool,
    not_resource: bool,
    actions: Vec<usize>,
    resources: Vec<usize>,
    conditions: Vec<usize>,
}

fn stmt() -> impl Strategy<Value = Stmt> {
    (
        any::<bool>(),
        prop::bool::weighted(0.15),
        prop::collection::vec(0..ACTIONS.len(), 1..3),
        prop::collection::vec(0..RESOURCES.len(), 1..3),
        prop::collection::vec(0..CONDITIONS.len(), 0..3),
    )
        .prop_map(|(deny, not_resource, actions, resources, mut conditions)| {
            conditions.sort_unstable();
            conditions.dedup();
            Stmt {
                deny,
                not_resource,
                actions,
                resources,
                conditions,
            }
        })
}

fn render(statements: &[Stmt]) -> String {
    let body: Vec<String> = statements
        .iter()
        .map(|s| {
            let actions: Vec<String> = s
                .actions
                .iter()
                .map(|a| format!("\"{}\"", ACTIONS[*a]))
                .collect();
            let resources: Vec<String> = s
                .resources
                .iter()
                .map(|r| {
                    let r = RESOURCES[*r];
                    if r == "*" || r.starts_with("arn:") {
                        format!("\"{r}\"")
                    } else {
                        format!("\"{PREFIX}{r}\"")
                    }
                })
                .collect();
            let condition = if s.conditions.is_empty() {
                String::new()
            } else {
                let c: Vec<&str> = s.conditions.iter().map(|c| CONDITIONS[*c]).collect();
                format!(", \"Condition\": {{{}}}", c.join(", "))
            };
            format!(
                r#"{{"Effect": "{}", "Action": [{}], "{}": [{}]{condition}}}"#,
                if s.deny { "Deny" } else { "Allow" },
                actions.join(", "),
                if s.not_resource {
                    "NotResource"
                } else {
                    "Resource"
                },
                resources.join(", ")
            )
        })
        .collect();
    format!(
        r#"{{"Version": "2012-10-17", "Statement": [{}]}}"#,
        body.join(", ")
    )
}

fn policy_set(policies: &[Vec<Stmt>]) -> PolicySet {
    let mut set = PolicySet::new();
    for (i, p) in policies.iter().enumerate() {
        let text = render(p);
        let limits = thingkit_policy::PolicyLimits::default().with_max_policy_chars(1 << 20);
        let doc = PolicyDocument::parse_with(&text, &limits).expect("generated policies are valid");
        set.add(format!("p{i}"), &doc).expect("unique names");
    }
    set
}

/// A request as parts; [`Spec::borrowed`] and [`Spec::from_arn`] are its two forms.
#[derive(Debug, Clone)]
struct Spec {
    action: Action,
    kind: ResourceType,
    name: String,
    retain: bool,
}

fn prefix() -> ArnPrefix {
    ArnPrefix::new("aws", "us-east-1", "123456789012").expect("valid prefix")
}

impl Spec {
    /// The allocation-free form: built from an [`ArnPrefix`] and borrowed parts.
    fn borrowed<'a>(&'a self, arn: &'a ArnPrefix) -> Request<'a> {
        if self.action == Action::Publish {
            arn.publish(&self.name, self.retain)
        } else {
            arn.request(self.action, self.kind, &self.name)
        }
    }

    /// The full ARN string, for [`Request::new`] (split once) and [`RequestBuf`].
    fn arn(&self) -> String {
        format!("{PREFIX}{}{}", self.kind.prefix(), self.name)
    }
}

fn request() -> impl Strategy<Value = Spec> {
    let actions = prop::sample::select(vec![
        Action::Connect,
        Action::Publish,
        Action::Subscribe,
        Action::Receive,
        Action::GetRetainedMessage,
    ]);
    let resources = prop::sample::select(vec![
        "client/c1",
        "client/c2",
        "client/+",
        "topic/a/x",
        "topic/c1/y",
        "topic/b",
        "topic/q/x",
        "topic/a:b",
        "topicfilter/a/1",
        "topicfilter/c1/#",
        "topicfilter/+/#",
    ]);
    let kinds = prop::sample::select(vec![
        ResourceType::Client,
        ResourceType::Topic,
        ResourceType::TopicFilter,
        ResourceType::Thing,
    ]);
    let random = (kinds, "[abc1/:*?+#$x]{0,6}");
    let resource = prop_oneof![
        3 => resources.prop_map(|r| {
            let (kind, name) = r.split_once('/').expect("kind/name");
            let kind = match kind {
                "client" => ResourceType::Client,
                "topic" => ResourceType::Topic,
                _ => ResourceType::TopicFilter,
            };
            (kind, name.to_owned())
        }),
        1 => random,
    ];
    (actions, resource, any::<bool>()).prop_map(|(action, (kind, name), retain)| {
        // `publish` always uses `topic/`: keep the string form the same.
        let kind = if action == Action::Publish {
            ResourceType::Topic
        } else {
            kind
        };
        Spec {
            action,
            kind,
            name,
            retain: retain && action == Action::Publish,
        }
    })
}

fn context() -> impl Strategy<Value = Context> {
    (
        prop::option::of(prop::sample::select(vec!["c1", "c2", "+", "*", "x1"])),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::sample::select(vec![
            "10.1.2.3",
            "10.2.0.1",
            "192.0.2.1",
            "::1",
        ])),
        prop::collection::vec(
            prop::sample::select(vec!["LastWill", "PersistentConnect", "CleanSession"]),
            0..3,
        ),
        prop::option::of(prop::sample::select(vec!["lwt/c1", "other"])),
    )
        .prop_map(|(client, attached, ip, attrs, lwt)| Context {
            client_id: client.map(str::to_owned),
            thing: attached.map(|attached| ThingContext {
                name: client.unwrap_or("c1").to_owned(),
                attached,
                ..ThingContext::default()
            }),
            source_ip: ip.map(str::to_owned),
            connect_attributes: attrs.into_iter().map(str::to_owned).collect(),
            last_will_topic: lwt.map(str::to_owned),
            ..Context::default()
        })
}

fn policies() -> impl Strategy<Value = Vec<Vec<Stmt>>> {
    prop::collection::vec(prop::collection::vec(stmt(), 1..5), 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decide_agrees_with_explain(ps in policies(), spec in request(), ctx in context()) {
        let set = policy_set(&ps);
        let arn = prefix();
        let req = spec.borrowed(&arn);
        let e = set.explain(&req, &ctx);
        prop_assert_eq!(set.decide(&req, &ctx), e.evaluation.decision);
        prop_assert_eq!(set.evaluate(&req, &ctx), e.evaluation.clone());
        // Determining statements are exactly the applying statements of the deciding effect.
        match e.evaluation.decision {
            Decision::ImplicitDeny => prop_assert!(e.evaluation.determining.is_empty()),
            _ => prop_assert!(!e.evaluation.determining.is_empty()),
        }
    }

    #[test]
    fn shuffling_statements_and_policies_never_changes_the_decision(
        (ps, shuffled) in policies().prop_flat_map(|ps| {
            let inner: Vec<_> = ps.iter().cloned().map(|p| Just(p).prop_shuffle()).collect();
            (Just(ps), inner.prop_flat_map(|v| Just(v).prop_shuffle()))
        }),
        spec in request(),
        ctx in context(),
    ) {
        let arn = prefix();
        let req = spec.borrowed(&arn);
        let a = policy_set(&ps);
        let b = policy_set(&shuffled);
        prop_assert_eq!(a.decide(&req, &ctx), b.decide(&req, &ctx));
    }

    #[test]
    fn adding_a_matching_deny_always_gives_explicit_deny(ps in policies(), spec in request(), ctx in context()) {
        let arn = prefix();
        let req = spec.borrowed(&arn);
        let mut set = policy_set(&ps);
        let escaped = req.resource().to_string().replace('$', "${$}").replace('*', "${*}").replace('?', "${?}");
        let deny = format!(
            r#"{{"Version": "2012-10-17", "Statement": {{"Effect": "Deny", "Action": "{}", "Resource": "{}"}}}}"#,
            req.action().name(),
            escaped
        );
        let doc = PolicyDocument::parse(&deny).expect("deny is valid");
        set.add("deny", &doc).expect("unique");
        prop_assert_eq!(set.decide(&req, &ctx), Decision::ExplicitDeny);
        let e = set.evaluate(&req, &ctx);
        prop_assert!(e.determining.iter().any(|s| s.policy == "deny"));
    }

    #[test]
    fn removing_every_allow_gives_no_allow(ps in policies(), spec in request(), ctx in context()) {
        let arn = prefix();
        let req = spec.borrowed(&arn);
        let only_denies: Vec<Vec<Stmt>> = ps
            .iter()
            .map(|p| p.iter().filter(|s| s.deny).cloned().collect::<Vec<_>>())
            .filter(|p| !p.is_empty())
            .collect();
        if !only_denies.is_empty() {
            let set = policy_set(&only_denies);
            prop_assert_ne!(set.decide(&req, &ctx), Decision::Allow);
        }
    }

    #[test]
    fn evaluation_never_panics_on_arbitrary_requests(
        ps in policies(),
        resource in ".{0,80}",
        client in prop::option::of(".{0,20}"),
        ip in prop::option::of(".{0,20}"),
    ) {
        let set = policy_set(&ps);
        let ctx = Context { client_id: client, source_ip: ip, ..Context::default() };
        for a in Action::ALL {
            let req = Request::new(*a, &resource);
            let _ = set.decide(&req, &ctx);
            let _ = set.explain(&req, &ctx);
        }
    }

    #[test]
    fn borrowed_requests_decide_and_explain_like_full_arn_strings(
        ps in policies(),
        spec in request(),
        ctx in context(),
    ) {
        let set = policy_set(&ps);
        let arn = prefix();
        let borrowed = spec.borrowed(&arn);
        let text = spec.arn();
        prop_assert_eq!(borrowed.resource().to_string(), text.clone());
        let split = Request::new(spec.action, &text);
        if spec.retain {
            // The string form has no retain flag: decide iot:Publish and iot:RetainPublish on
            // the same ARN and combine them as a retained publish must.
            let retain = set.decide(&Request::new(Action::RetainPublish, &text), &ctx);
            let publish = set.decide(&split, &ctx);
            let combined = if publish == Decision::ExplicitDeny || retain == Decision::ExplicitDeny {
                Decision::ExplicitDeny
            } else if publish == Decision::Allow && retain == Decision::Allow {
                Decision::Allow
            } else {
                Decision::ImplicitDeny
            };
            prop_assert_eq!(set.decide(&borrowed, &ctx), combined);
        } else {
            prop_assert_eq!(set.decide(&borrowed, &ctx), set.decide(&split, &ctx));
            let explained = set.explain(&borrowed, &ctx);
            prop_assert_eq!(&explained, &set.explain(&split, &ctx));
            let owned = RequestBuf::new(spec.action, text.clone());
            prop_assert_eq!(&explained, &set.explain(&owned.as_request(), &ctx));
        }
    }

    #[test]
    fn validation_never_panics_on_arbitrary_text(text in ".{0,300}") {
        let _ = validate(&text);
    }

    #[test]
    fn validation_never_panics_on_mutated_policies(ps in policies(), cut in 0usize..2000, insert in ".{0,3}") {
        let text = render(&ps[0]);
        let mut at = cut.min(text.len());
        while !text.is_char_boundary(at) { at -= 1; }
        let mutated = format!("{}{insert}{}", &text[..at], &text[at..]);
        let truncated = &text[..at];
        for t in [mutated.as_str(), truncated] {
            for f in validate(t) {
                // Every span is a slice of the text, on character boundaries.
                prop_assert!(f.span.start <= f.span.end, "{:?}", f);
                prop_assert!(t.get(f.span.clone()).is_some(), "{:?} in {:?}", f, t);
            }
        }
    }
}
