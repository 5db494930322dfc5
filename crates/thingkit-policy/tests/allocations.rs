//! Building a request from an [`ArnPrefix`] and deciding it allocates nothing.
//!
//! This file is a test binary of its own without libtest's harness (`harness = false`): one
//! thread, so nothing else allocates while it counts. `stats_alloc` wraps the system allocator and
//! counts every allocation in an atomic.
//! (The workspace forbids `unsafe`, which a hand-written `GlobalAlloc` would need.)

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use thingkit_policy::{
    Action, ArnPrefix, Context, Decision, PolicyDocument, PolicySet, Request, ThingContext,
};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations (and reallocations) made while `f` runs.
fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let region = Region::new(GLOBAL);
    let r = f();
    let change = region.change();
    (r, change.allocations + change.reallocations)
}

const POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect",
     "Resource": "arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}",
     "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive", "iot:RetainPublish"],
     "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/dt/${iot:ClientId}/*",
                  "arn:aws:iot:*:123456789012:topic/shared/?/*"]},
    {"Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": "arn:aws:iot:us-east-1:123456789012:topicfilter/dt/${iot:ClientId}/*"},
    {"Effect": "Deny", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": "arn:aws:iot:us-east-1:123456789012:topic/dt/*/admin*"},
    {"Effect": "Allow", "Action": "iot:Receive",
     "Resource": "arn:aws:iot:us-east-1:123456789012:t*/broadcast"}
  ]
}"#;

/// Builds a request from the prefix (each case's way).
type Build = fn(&ArnPrefix) -> Request<'_>;

fn building_and_deciding_requests_with_an_arn_prefix_allocates_nothing() {
    let mut set = PolicySet::new();
    set.add("device", &PolicyDocument::parse(POLICY).expect("valid"))
        .expect("fits");
    let arn = ArnPrefix::new("aws", "us-east-1", "123456789012").expect("valid prefix");
    let ctx = Context {
        thing: Some(ThingContext {
            name: "d1".into(),
            attached: true,
            ..ThingContext::default()
        }),
        ..Context::with_client_id("d1")
    };
    // Warm up anything lazily initialised (thread locals, the test harness's output capture).
    let _ = set.decide(&arn.publish("dt/d1/x", false), &ctx);

    let cases: [(&str, Build, Decision); 10] = [
        (
            "publish",
            |a| a.publish("dt/d1/temp", false),
            Decision::Allow,
        ),
        (
            "retained publish",
            |a| a.publish("dt/d1/temp", true),
            Decision::Allow,
        ),
        (
            "publish denied",
            |a| a.publish("dt/d1/admin", false),
            Decision::ExplicitDeny,
        ),
        (
            "publish elsewhere",
            |a| a.publish("dt/d2/temp", false),
            Decision::ImplicitDeny,
        ),
        (
            "publish shared",
            |a| a.publish("shared/x/y", false),
            Decision::Allow,
        ),
        ("receive", |a| a.receive("dt/d1/cmd"), Decision::Allow),
        (
            "receive broadcast",
            |a| a.receive("broadcast"),
            Decision::Allow,
        ),
        ("subscribe", |a| a.subscribe("dt/d1/#"), Decision::Allow),
        ("connect", |a| a.connect("d1"), Decision::Allow),
        ("connect other", |a| a.connect("d2"), Decision::ImplicitDeny),
    ];
    for (name, build, want) in cases {
        let (decision, count) = allocations(|| set.decide(&build(&arn), &ctx));
        assert_eq!(decision, want, "{name}");
        assert_eq!(
            count, 0,
            "{name}: building and deciding allocated {count} time(s)"
        );
    }
    // A request from a full ARN string is split once, in place: no allocation either.
    let text = "arn:aws:iot:us-east-1:123456789012:topic/dt/d1/temp";
    let (decision, count) = allocations(|| set.decide(&Request::new(Action::Publish, text), &ctx));
    assert_eq!(decision, Decision::Allow);
    assert_eq!(count, 0, "string ARN: {count} allocation(s)");

    // The counter does see allocations (so the zeros above mean something): explaining
    // allocates.
    let (_, count) = allocations(|| set.explain(&arn.publish("dt/d1/temp", false), &ctx));
    assert!(count > 0);
}

fn main() {
    building_and_deciding_requests_with_an_arn_prefix_allocates_nothing();
    println!("test building_and_deciding_requests_with_an_arn_prefix_allocates_nothing ... ok");
}
