//! Arbitrary bytes as a policy document: validation and parsing must never panic, and must agree
//! (a document parses exactly when validation reports no error).
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingkit_policy::{PolicyDocument, Severity, validate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let findings = validate(text);
    let has_error = findings.iter().any(|f| f.severity == Severity::Error);
    let parsed = PolicyDocument::parse(text);
    assert_eq!(parsed.is_ok(), !has_error, "parse and validate disagree");
    for f in &findings {
        assert!(f.line >= 1 && f.column >= 1);
    }
});
