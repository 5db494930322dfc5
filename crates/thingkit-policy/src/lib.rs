//! AWS IoT Core policy documents, parsed strictly, validated with positions, linted, and
//! evaluated with the exact semantics of AWS IoT. Policies are compiled once into a
//! [`PolicySet`] that decides requests without heap allocation and can [explain](PolicySet::explain)
//! every decision.
//!
//! ```
//! use thingkit_policy::{validate, ArnPrefix, Context, Decision, PolicyDocument, PolicySet};
//!
//! let text = r#"{
//!   "Version": "2012-10-17",
//!   "Statement": [
//!     {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
//!      "Resource": "arn:aws:iot:us-east-1:123456789012:topic/devices/${iot:ClientId}/*"},
//!     {"Sid": "NoAdmin", "Effect": "Deny", "Action": "iot:Publish",
//!      "Resource": "arn:aws:iot:us-east-1:123456789012:topic/devices/*/admin"}
//!   ]
//! }"#;
//! // Validation reports every finding (errors and lints) with a stable code, a JSON path and
//! // line:column; this document is clean.
//! assert!(validate(text).is_empty());
//!
//! let mut set = PolicySet::new();
//! set.add("device", &PolicyDocument::parse(text)?)?;
//! let arn = ArnPrefix::new("aws", "us-east-1", "123456789012").expect("valid prefix");
//! let ctx = Context::with_client_id("sensor-1");
//!
//! assert_eq!(set.decide(&arn.publish("devices/sensor-1/temp", false), &ctx), Decision::Allow);
//! assert_eq!(set.decide(&arn.publish("devices/sensor-2/temp", false), &ctx), Decision::ImplicitDeny);
//! let why = set.evaluate(&arn.publish("devices/sensor-1/admin", false), &ctx);
//! assert_eq!(why.decision, Decision::ExplicitDeny);
//! assert_eq!(why.determining[0].sid.as_deref(), Some("NoAdmin"));
//! # Ok::<(), thingkit_policy::Error>(())
//! ```
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | — | — | none: the crate has no optional parts and does no I/O |
//!
//! # Specifications implemented
//!
//! - AWS IoT Core Developer Guide, *Authorization → AWS IoT Core policies*: *AWS IoT Core policy
//!   actions* and *action resources* ([`Action`], [`ResourceType`]); *AWS IoT Core policy
//!   variables* — *basic*, *thing* and *X.509 certificate policy variables*, including the `.N`
//!   and `.List` forms and the rule that certificate values containing `* $ + ? #` or longer than
//!   1024 characters are not substituted ([`ContextKey`]); the *connect*, *publish/subscribe*,
//!   *connect and publish*, *retained message*, *certificate*, *thing* and *basic job* policy
//!   examples (table-driven tests in `tests/aws_examples.rs`).
//! - IAM User Guide, *IAM JSON policy elements reference*: `Version`, `Id`, `Statement`, `Sid`,
//!   `Effect`, `Action`/`NotAction`, `Resource`/`NotResource`, `Condition`; *condition operators*
//!   (String, Numeric, Date, Bool, Binary, IP address, ARN, `...IfExists`, `Null`);
//!   *multivalued context keys* (`ForAnyValue:`, `ForAllValues:`); *policy variables*
//!   (`${*}`, `${?}`, `${$}`); *policy evaluation logic* (explicit deny overrides allow; default
//!   deny); IAM JSON policy grammar and the 2048-character AWS IoT policy size quota.
//! - RFC 8259 (JSON) §2–§8, read strictly: §4's "names SHOULD be unique" is enforced (duplicate
//!   keys are errors), §7 escapes and §8.2 surrogate pairs are checked.
//! - RFC 4632 §3.1 / RFC 4291 §2.3 CIDR prefixes for `IpAddress`; RFC 3339 §5.6 date-times (plus
//!   epoch seconds) for `Date*` operators.
//!
//! # Semantics
//!
//! - **Actions** match case-insensitively, with `*`/`?` wildcards (`iot:*`, `iot:Get*`); names of
//!   other services are accepted with a warning and never match an IoT request.
//! - **Resources** are `*` or ARNs split on the first five colons only (MQTT topics may contain
//!   `:`); each part is an IAM glob: `*` any run of characters including `/`, `?` exactly one
//!   character, MQTT `+` and `#` literal. Matching takes time linear in the input (no regex, no
//!   backtracking over stars).
//! - **Variables** are substituted literally (a `*` in a client ID is not a wildcard). A variable
//!   without a usable value makes its pattern match nothing — in Deny statements too, which the
//!   `variable-in-deny` lint flags. [`SetOptions::strict_identities`] additionally refuses client
//!   IDs and thing values containing `+ # * ?` (the documented `${iot:ClientId}` = `+` gap).
//! - **Conditions**: AND across operators and keys, OR across the values of one key (AND, i.e.
//!   "matches none", for negated operators). A missing key makes ordinary operators false and
//!   negated ones true; `IfExists` makes it true; `ForAnyValue` on a missing or empty key is
//!   false, `ForAllValues` true. Condition key names match case-insensitively. Policy variables
//!   are substituted in String and Arn condition values only (elsewhere they are an error).
//!   `...IgnoreCase` folds ASCII letters only.
//! - **Decision**: the union of every policy in the set. Any applicable Deny gives
//!   [`Decision::ExplicitDeny`]; otherwise any applicable Allow gives [`Decision::Allow`];
//!   otherwise [`Decision::ImplicitDeny`]. Statement and policy order never matter. A retained
//!   publish ([`ArnPrefix::publish`] with `retain`) needs both `iot:Publish` and
//!   `iot:RetainPublish`.
//!
//! # Not supported
//!
//! `Principal`/`NotPrincipal` (an IoT policy's principal is the certificate it is attached to:
//! they are errors), IAM policy-variable defaults (`${var, 'default'}`: an undocumented variable),
//! control-plane actions, and string operators on `aws:CurrentTime` (it is a time: use `Date*`).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod action;
mod arn;
mod condition;
mod context;
mod date;
mod decision;
mod document;
mod error;
mod finding;
mod glob;
mod index;
mod key;
mod lint;
mod pattern;
mod policy_set;
mod request;

pub use action::{Action, ActionSet, ResourceType};
pub use arn::{ArnPrefix, split_arn};
pub use condition::{Operator, OperatorKind, SetQualifier};
pub use context::{Certificate, Context, Thing};
pub use date::parse_timestamp;
pub use decision::{
    ConditionExplanation, Decision, Evaluation, Explanation, ResourceExplanation,
    StatementExplanation, StatementRef,
};
pub use document::{
    ConditionEntry, Effect, Limits, Located, POLICY_VERSION, PolicyDocument, Statement, validate,
    validate_with,
};
pub use error::Error;
pub use finding::{Code, Finding, Location, Severity};
pub use glob::glob_match;
pub use key::{CertPart, ContextKey, MAX_CERTIFICATE_VALUE_CHARS, MAX_CERTIFICATE_VALUES, Select};
pub use policy_set::{PolicySet, SetOptions};
pub use request::{MAX_REQUEST_BYTES, Request};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
