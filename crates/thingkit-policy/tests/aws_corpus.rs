//! Every policy AWS prints in the AWS IoT Core Developer Guide and the AWS IoT Device SDK v2
//! samples (`tests/aws/policies/`, sources in its README) validates without errors, and its
//! warnings are exactly the accepted ones listed here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use thingkit_policy::{PolicyDocument, PolicySet, Severity, validate};

fn corpus() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/aws/policies");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("the corpus folder exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .expect("UTF-8 file name")
                .to_owned();
            (name, std::fs::read_to_string(&p).expect("readable policy"))
        })
        .collect();
    out.sort();
    out
}

/// The warnings accepted for corpus policies, by lint code: each is a true statement about a
/// policy AWS prints (see the folder's README for why each is kept).
const ACCEPTED_WARNINGS: &[&str] = &[
    // `ForAllValues` in an Allow is true for a client without connect attributes: the
    // persistent-session examples rely on exactly that.
    "for-all-values-in-allow",
    // `iot:Connect` on `client/*` or `*` without an IsAttached condition (unregistered-device
    // and sample policies).
    "connect-without-is-attached",
    // `+`/`#` in a topicfilter resource, printed on purpose by the MQTT wildcard example.
    "mqtt-wildcard-in-policy",
    // The pub/sub page prints the undocumented `${iot:Thing.ThingName}` and the Amazon Cognito
    // variable `${cognito-identity.amazonaws.com:sub}`; neither resolves for certificate clients.
    "unknown-variable",
    // `${iot:Thing.ThingName}` in Deny resources (pub/sub page).
    "variable-in-deny",
    // The basic jobs example grants iot:Subscribe on a `topic/` resource, which never matches.
    "resource-type-mismatch",
    "wrong-topic-resource",
];

#[test]
fn every_corpus_policy_validates_without_errors() {
    let corpus = corpus();
    assert!(corpus.len() >= 60, "corpus has {} policies", corpus.len());
    let mut errors = Vec::new();
    let mut warnings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, text) in &corpus {
        for f in validate(text) {
            match f.severity {
                Severity::Error => errors.push(format!("{name}: {f}")),
                _ => warnings
                    .entry(f.code.as_str().to_owned())
                    .or_default()
                    .push(name.clone()),
            }
        }
        if let Ok(doc) = PolicyDocument::parse(text) {
            PolicySet::new()
                .add(name.clone(), &doc)
                .expect("a single policy compiles");
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let unexpected: Vec<_> = warnings
        .iter()
        .filter(|(code, _)| !ACCEPTED_WARNINGS.contains(&code.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "unaccepted warnings: {unexpected:#?}"
    );
    eprintln!("accepted warnings: {warnings:#?}");
}
