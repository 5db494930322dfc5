//! thingkit-policy vs cedar-policy 4.x: one request against 10 compiled policies of about 2 KB
//! each (policy variables and conditions included), the same rule set expressed in Cedar.
//!
//! Reports the median time per request (criterion), heap allocations per evaluation (counting
//! allocator) and compile time. Both engines run in the same process, one after the other, so
//! machine noise affects both alike.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use thingkit_bench_support::{CountingAlloc, count_allocations};
use thingkit_policy::{
    ArnPrefix, Context, Decision, PolicyDocument, PolicySet, Request, ThingContext,
};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const POLICIES: usize = 10;
const ARN: &str = "arn:aws:iot:us-east-1:123456789012";

/// One AWS IoT policy of about 2 KB: connect, publish, subscribe, receive, retain, shadow, with
/// variables, an IP condition, a thing-type condition, a connect-attribute condition and a Deny.
fn iot_policy(i: usize) -> String {
    format!(
        r#"{{
  "Version": "2012-10-17",
  "Statement": [
    {{"Sid": "Connect", "Effect": "Allow", "Action": "iot:Connect",
      "Resource": "{ARN}:client/${{iot:Connection.Thing.ThingName}}",
      "Condition": {{"Bool": {{"iot:Connection.Thing.IsAttached": "true"}}}}}},
    {{"Sid": "Publish", "Effect": "Allow", "Action": "iot:Publish",
      "Resource": ["{ARN}:topic/fleet{i}/${{iot:ClientId}}/*", "{ARN}:topic/fleet{i}/shared/*",
                   "{ARN}:topic/$aws/things/${{iot:Connection.Thing.ThingName}}/shadow/update"],
      "Condition": {{"IpAddress": {{"aws:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]}}}}}},
    {{"Sid": "Sub", "Effect": "Allow", "Action": "iot:Subscribe",
      "Resource": ["{ARN}:topicfilter/fleet{i}/${{iot:ClientId}}/*", "{ARN}:topicfilter/fleet{i}/broadcast/*",
                   "{ARN}:topicfilter/$aws/things/${{iot:Connection.Thing.ThingName}}/shadow/*"]}},
    {{"Sid": "Receive", "Effect": "Allow", "Action": "iot:Receive",
      "Resource": ["{ARN}:topic/fleet{i}/${{iot:ClientId}}/*", "{ARN}:topic/fleet{i}/broadcast/*",
                   "{ARN}:topic/$aws/things/${{iot:Connection.Thing.ThingName}}/shadow/*"]}},
    {{"Sid": "Locked", "Effect": "Deny", "Action": "iot:Publish",
      "Resource": ["{ARN}:topic/fleet{i}/*/admin/*", "{ARN}:topic/fleet{i}/shared/locked/*"]}},
    {{"Sid": "Retain", "Effect": "Allow", "Action": "iot:RetainPublish",
      "Resource": "{ARN}:topic/fleet{i}/${{iot:ClientId}}/state",
      "Condition": {{"StringEquals": {{"iot:Connection.Thing.ThingTypeName": "sensor"}}}}}},
    {{"Sid": "Shadow", "Effect": "Allow", "Action": ["iot:GetThingShadow", "iot:UpdateThingShadow"],
      "Resource": "{ARN}:thing/${{iot:Connection.Thing.ThingName}}"}},
    {{"Sid": "Events", "Effect": "Allow", "Action": "iot:Publish",
      "Resource": "{ARN}:topic/fleet{i}/events/*",
      "Condition": {{"ForAnyValue:StringLike": {{"iot:ConnectAttributes": ["Persistent*"]}}}}}}
  ]
}}"#
    )
}

/// The same rules in Cedar. The broker hands Cedar the topic and its levels in the context
/// (Cedar has no string concatenation, so `fleet{i}/${iot:ClientId}/*` becomes a `like` on the
/// topic plus an equality on its second level).
fn cedar_policy(i: usize) -> String {
    format!(
        r#"
permit(principal, action == Action::"Connect", resource)
  when {{ context.clientId == context.thingName && context.attached }};
permit(principal, action == Action::"Publish", resource)
  when {{ ((context.topic like "fleet{i}/*" && context.level2 == context.clientId)
          || context.topic like "fleet{i}/shared/*"
          || (context.topic like "$aws/things/*/shadow/update" && context.level3 == context.thingName))
        && (context.sourceIp.isInRange(ip("10.0.0.0/8")) || context.sourceIp.isInRange(ip("192.168.0.0/16"))) }};
permit(principal, action == Action::"Subscribe", resource)
  when {{ (context.topic like "fleet{i}/*" && context.level2 == context.clientId)
        || context.topic like "fleet{i}/broadcast/*"
        || (context.topic like "$aws/things/*/shadow/*" && context.level3 == context.thingName) }};
permit(principal, action == Action::"Receive", resource)
  when {{ (context.topic like "fleet{i}/*" && context.level2 == context.clientId)
        || context.topic like "fleet{i}/broadcast/*"
        || (context.topic like "$aws/things/*/shadow/*" && context.level3 == context.thingName) }};
forbid(principal, action == Action::"Publish", resource)
  when {{ context.topic like "fleet{i}/*/admin/*" || context.topic like "fleet{i}/shared/locked/*" }};
permit(principal, action == Action::"RetainPublish", resource)
  when {{ context.topic like "fleet{i}/*/state" && context.level2 == context.clientId && context.thingType == "sensor" }};
permit(principal, action in [Action::"GetThingShadow", Action::"UpdateThingShadow"], resource)
  when {{ context.thingName == context.resourceThing }};
permit(principal, action == Action::"Publish", resource)
  when {{ context.topic like "fleet{i}/events/*" && context.connectAttributes.contains("PersistentConnect") }};
"#
    )
}

struct Scenario {
    name: &'static str,
    topic: &'static str,
    want: Decision,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "allow_last_policy",
        topic: "fleet9/dev42/telemetry",
        want: Decision::Allow,
    },
    Scenario {
        name: "implicit_deny",
        topic: "elsewhere/dev42/telemetry",
        want: Decision::ImplicitDeny,
    },
    Scenario {
        name: "explicit_deny",
        topic: "fleet3/dev42/admin/reboot",
        want: Decision::ExplicitDeny,
    },
];

fn thingkit_set() -> PolicySet {
    let mut set = PolicySet::new();
    for i in 0..POLICIES {
        let doc = PolicyDocument::parse(&iot_policy(i)).expect("bench policy is valid");
        set.add(format!("fleet{i}"), &doc).expect("unique");
    }
    set
}

fn thingkit_context() -> Context {
    Context {
        client_id: Some("dev42".into()),
        source_ip: Some("10.1.2.3".into()),
        thing: Some(ThingContext {
            name: "dev42".into(),
            thing_type: Some("sensor".into()),
            attached: true,
            ..ThingContext::default()
        }),
        connect_attributes: vec!["PersistentConnect".into()],
        ..Context::default()
    }
}

fn cedar_set() -> cedar_policy::PolicySet {
    let text: String = (0..POLICIES).map(cedar_policy).collect();
    text.parse().expect("cedar policies parse")
}

fn cedar_request(topic: &str) -> cedar_policy::Request {
    let levels: Vec<&str> = topic.split('/').collect();
    let ctx = serde_json::json!({
        "clientId": "dev42",
        "thingName": "dev42",
        "thingType": "sensor",
        "attached": true,
        "sourceIp": {"__extn": {"fn": "ip", "arg": "10.1.2.3"}},
        "connectAttributes": ["PersistentConnect"],
        "topic": topic,
        "level2": levels.get(1).copied().unwrap_or(""),
        "level3": levels.get(2).copied().unwrap_or(""),
        "resourceThing": "",
    });
    let context = cedar_policy::Context::from_json_value(ctx, None).expect("context");
    cedar_policy::Request::new(
        r#"Device::"dev42""#.parse().expect("principal"),
        r#"Action::"Publish""#.parse().expect("action"),
        format!("Topic::{topic:?}").parse().expect("resource"),
        context,
        None,
    )
    .expect("request")
}

fn report_sizes_and_allocations() {
    let sizes: Vec<usize> = (0..POLICIES)
        .map(|i| iot_policy(i).chars().filter(|c| !c.is_whitespace()).count())
        .collect();
    println!("policy sizes (chars without whitespace): {sizes:?}");
    let set = thingkit_set();
    let ctx = thingkit_context();
    let arn = ArnPrefix::new("aws", "us-east-1", "123456789012").expect("prefix");
    let cedar = cedar_set();
    let authorizer = cedar_policy::Authorizer::new();
    let entities = cedar_policy::Entities::empty();
    for s in SCENARIOS {
        let req: Request = arn.publish(s.topic, false);
        assert_eq!(set.decide(&req, &ctx), s.want, "{}", s.name);
        let creq = cedar_request(s.topic);
        let cedar_decision = authorizer
            .is_authorized(&creq, &cedar, &entities)
            .decision();
        let cedar_allows = cedar_decision == cedar_policy::Decision::Allow;
        assert_eq!(cedar_allows, s.want == Decision::Allow, "cedar {}", s.name);
        const N: u64 = 1000;
        let (_, ours) = count_allocations(|| {
            for _ in 0..N {
                black_box(set.decide(black_box(&req), black_box(&ctx)));
            }
        });
        let (_, theirs) = count_allocations(|| {
            for _ in 0..N {
                black_box(authorizer.is_authorized(black_box(&creq), &cedar, &entities));
            }
        });
        // Building the request from the `ArnPrefix` and the topic is part of every broker
        // check: count it too.
        let (_, built) = count_allocations(|| {
            for _ in 0..N {
                let req = arn.publish(black_box(s.topic), false);
                black_box(set.decide(black_box(&req), black_box(&ctx)));
            }
        });
        println!(
            "{}: allocations per evaluation: thingkit {:.1} (with building the request {:.1}), cedar {:.1}",
            s.name,
            ours.allocations as f64 / N as f64,
            built.allocations as f64 / N as f64,
            theirs.allocations as f64 / N as f64
        );
        // Best of R interleaved rounds: the machine is shared, so the minimum per-round mean is
        // the least disturbed estimate, and interleaving exposes both engines to the same load.
        const R: usize = 30;
        const ITER_OURS: u32 = 20_000;
        const ITER_CEDAR: u32 = 200;
        let mut best_ours = f64::MAX;
        let mut best_cedar = f64::MAX;
        for _ in 0..R {
            let t = Instant::now();
            for _ in 0..ITER_OURS {
                black_box(set.decide(black_box(&req), black_box(&ctx)));
            }
            best_ours = best_ours.min(t.elapsed().as_secs_f64() / f64::from(ITER_OURS));
            let t = Instant::now();
            for _ in 0..ITER_CEDAR {
                black_box(authorizer.is_authorized(black_box(&creq), &cedar, &entities));
            }
            best_cedar = best_cedar.min(t.elapsed().as_secs_f64() / f64::from(ITER_CEDAR));
        }
        // The broker's whole check: build the request from the prefix and the topic, decide.
        let mut best_built = f64::MAX;
        for _ in 0..R {
            let t = Instant::now();
            for _ in 0..ITER_OURS {
                let req = arn.publish(black_box(s.topic), false);
                black_box(set.decide(black_box(&req), black_box(&ctx)));
            }
            best_built = best_built.min(t.elapsed().as_secs_f64() / f64::from(ITER_OURS));
        }
        println!(
            "{}: best-of-{R}: thingkit build request + decide {:.0} ns",
            s.name,
            best_built * 1e9
        );
        println!(
            "{}: best-of-{R} interleaved: thingkit {:.0} ns, cedar {:.1} us, ratio {:.0}x",
            s.name,
            best_ours * 1e9,
            best_cedar * 1e6,
            best_cedar / best_ours
        );
    }
    let texts: Vec<String> = (0..POLICIES).map(iot_policy).collect();
    let cedar_text: String = (0..POLICIES).map(cedar_policy).collect();
    let mut best_ours = f64::MAX;
    let mut best_cedar = f64::MAX;
    for _ in 0..10 {
        let t = Instant::now();
        let mut set = PolicySet::new();
        for (i, text) in texts.iter().enumerate() {
            let doc = PolicyDocument::parse(black_box(text)).expect("valid");
            set.add(format!("p{i}"), &doc).expect("unique");
        }
        black_box(set);
        best_ours = best_ours.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        black_box(
            cedar_text
                .parse::<cedar_policy::PolicySet>()
                .expect("valid"),
        );
        best_cedar = best_cedar.min(t.elapsed().as_secs_f64());
    }
    println!(
        "compile 10 policies: best-of-10: thingkit {:.0} us, cedar {:.0} us",
        best_ours * 1e6,
        best_cedar * 1e6
    );
}

fn bench(c: &mut Criterion) {
    report_sizes_and_allocations();
    let set = thingkit_set();
    let ctx = thingkit_context();
    let arn = ArnPrefix::new("aws", "us-east-1", "123456789012").expect("prefix");
    let cedar = cedar_set();
    let authorizer = cedar_policy::Authorizer::new();
    let entities = cedar_policy::Entities::empty();

    let mut g = c.benchmark_group("policy/decide");
    for s in SCENARIOS {
        let req = arn.publish(s.topic, false);
        g.bench_function(format!("thingkit/{}", s.name), |b| {
            b.iter(|| set.decide(black_box(&req), black_box(&ctx)))
        });
        let creq = cedar_request(s.topic);
        g.bench_function(format!("cedar/{}", s.name), |b| {
            b.iter(|| authorizer.is_authorized(black_box(&creq), &cedar, &entities))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("policy/explain");
    let req = arn.publish(SCENARIOS[0].topic, false);
    g.bench_function("thingkit/allow_last_policy", |b| {
        b.iter(|| set.explain(black_box(&req), black_box(&ctx)))
    });
    g.finish();

    let texts: Vec<String> = (0..POLICIES).map(iot_policy).collect();
    let cedar_text: String = (0..POLICIES).map(cedar_policy).collect();
    let mut g = c.benchmark_group("policy/compile_10");
    g.bench_function("thingkit", |b| {
        b.iter(|| {
            let mut set = PolicySet::new();
            for (i, t) in texts.iter().enumerate() {
                let doc = PolicyDocument::parse(black_box(t)).expect("valid");
                set.add(format!("p{i}"), &doc).expect("unique");
            }
            set
        })
    });
    g.bench_function("cedar", |b| {
        b.iter(|| {
            black_box(&cedar_text)
                .parse::<cedar_policy::PolicySet>()
                .expect("valid")
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
