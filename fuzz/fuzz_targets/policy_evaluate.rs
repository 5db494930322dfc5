//! Arbitrary documents and requests: `<policy JSON> NUL <request JSON>`. Evaluation must never
//! panic, and the allocation-free `decide` must agree with `explain`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingkit_policy::{PolicyDocument, PolicySet, Request, SetOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some((policy, request)) = text.split_once('\0') else {
        return;
    };
    let Ok(doc) = PolicyDocument::parse(policy) else {
        return;
    };
    let Ok((req, ctx)) = Request::from_json(request) else {
        return;
    };
    for strict in [false, true] {
        let mut set = PolicySet::with_options(SetOptions {
            strict_identities: strict,
            ..SetOptions::default()
        });
        if set.add("fuzz", &doc).is_err() {
            return;
        }
        let fast = set.decide(&req, &ctx);
        let explained = set.explain(&req, &ctx);
        assert_eq!(
            fast, explained.evaluation.decision,
            "decide and explain disagree"
        );
    }
});
