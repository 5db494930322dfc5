//! Arbitrary template text and parameters: parsing, validation and rendering must never panic
//! or exceed the limits, and rendering is deterministic.
//!
//! Input: the template text, then a NUL byte, then `NAME=VALUE` lines (parameters; names
//! starting with `AWS::` are passed as pseudo-parameters).
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use thingkit_provision::{ProvisioningTemplate, TEMPLATE_PSEUDO_PREFIX, TemplateLimits};

fuzz_target!(|data: &[u8]| {
    let (text, params) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let limits = TemplateLimits::default();
    let Ok(template) = ProvisioningTemplate::parse(text, &limits) else {
        return;
    };
    let mut device = BTreeMap::new();
    let mut pseudo = BTreeMap::new();
    for line in String::from_utf8_lossy(params).lines() {
        if let Some((k, v)) = line.split_once('=') {
            if k.starts_with(TEMPLATE_PSEUDO_PREFIX) {
                pseudo.insert(k.to_owned(), v.to_owned());
            } else {
                device.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    let first = template.render(&device, &pseudo);
    let second = template.render(&device, &pseudo);
    assert_eq!(
        format!("{first:?}"),
        format!("{second:?}"),
        "rendering is deterministic"
    );
    if let Ok(rendered) = first {
        let json = serde_json::to_string(&rendered).expect("rendered templates serialize");
        // Every produced string is bounded by the limit, so the output is bounded too.
        assert!(json.len() <= 64 * (limits.max_string_len + 64) * (limits.max_list_len + 8));
    }
});
