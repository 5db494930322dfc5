//! Arbitrary documents and requests: `<policy JSON> NUL <request JSON>`. Evaluation must never
//! panic, the allocation-free `decide` must agree with `explain`, and a request built from an
//! `ArnPrefix` and parts must decide like the same request given as a full ARN string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingkit_policy::{ArnPrefix, PolicyDocument, PolicySet, RequestBuf, ResourceType, SetOptions};

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
    let Ok((buf, ctx)) = RequestBuf::from_json(request) else {
        return;
    };
    let req = buf.as_request();
    // The same request in parts, when the ARN has the shape the broker builds.
    let parts = buf.resource().splitn(6, ':').collect::<Vec<_>>();
    let prefix = match parts.as_slice() {
        ["arn", partition, "iot", region, account, _] => ArnPrefix::new(partition, region, account),
        _ => None,
    };
    let kinds = [
        ResourceType::Client,
        ResourceType::Topic,
        ResourceType::TopicFilter,
        ResourceType::Thing,
        ResourceType::RoleAlias,
    ];
    let borrowed = prefix.as_ref().and_then(|prefix| {
        let resource = buf.resource().get(prefix.as_str().len()..)?;
        let kind = kinds
            .into_iter()
            .find(|k| resource.starts_with(k.prefix()))?;
        let name = resource.get(kind.prefix().len()..)?;
        Some(prefix.request(buf.action(), kind, name))
    });
    for strict in [false, true] {
        let mut set = PolicySet::with_options(SetOptions::default().with_strict_identities(strict));
        if set.add("fuzz", &doc).is_err() {
            return;
        }
        let fast = set.decide(&req, &ctx);
        let explained = set.explain(&req, &ctx);
        assert_eq!(
            fast, explained.evaluation.decision,
            "decide and explain disagree"
        );
        if let Some(b) = &borrowed {
            assert_eq!(
                set.decide(b, &ctx),
                fast,
                "borrowed and string requests disagree"
            );
            assert_eq!(
                set.explain(b, &ctx),
                explained,
                "borrowed and string explain disagree"
            );
        }
    }
});
