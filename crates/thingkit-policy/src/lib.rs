//! AWS IoT Core policy documents, parsed strictly, validated with positions, linted, and
//! evaluated with the exact semantics of AWS IoT. Policies are compiled once into a
//! [`PolicySet`] that decides requests without heap allocation and can explain every decision.
//!
//! ```
//! use thingkit_policy::{validate, PolicyDocument, Severity};
//!
//! let text = r#"{
//!   "Version": "2012-10-17",
//!   "Statement": [{
//!     "Effect": "Allow",
//!     "Action": "iot:Publish",
//!     "Resource": "arn:aws:iot:us-east-1:123456789012:topic/devices/${iot:ClientId}/*"
//!   }]
//! }"#;
//! let doc = PolicyDocument::parse(text)?;
//! assert_eq!(doc.statements().len(), 1);
//!
//! // Validation reports every finding with a stable code, a JSON path and line:column.
//! let findings = validate(r#"{"Version": "2012-10-17", "Version": "2012-10-17", "Statement": []}"#);
//! assert!(findings.iter().any(|f| f.code.as_str() == "duplicate-key" && f.severity == Severity::Error));
//! # Ok::<(), thingkit_policy::Error>(())
//! ```
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | — | — | this crate has no optional features; it does no I/O |
//!
//! # Specifications implemented
//!
//! - AWS IoT Core Developer Guide: *AWS IoT Core policies* — policy actions and action resources,
//!   policy variables (basic, thing and X.509 certificate policy variables, including the `.N` and
//!   `.List` forms and the rule that certificate values containing `* $ + ? #` or longer than 1024
//!   characters are not substituted), and the publish/subscribe, connect, retained-message,
//!   certificate and thing policy examples (table-driven tests in `tests/`).
//! - IAM User Guide, *IAM JSON policy elements reference*: `Version`, `Id`, `Statement`, `Sid`,
//!   `Effect`, `Action`/`NotAction`, `Resource`/`NotResource`, `Condition`; *condition
//!   operators* (String, Numeric, Date, Bool, Binary, IP address, ARN, `...IfExists`, `Null`);
//!   *multivalued context keys* (`ForAnyValue:`, `ForAllValues:`); *policy variables* (including
//!   `${*}`, `${?}`, `${$}`); *policy evaluation logic* (explicit deny overrides allow, default
//!   deny).
//! - RFC 8259 (JSON), read strictly: duplicate keys are an error.
//!
//! # Semantics in brief
//!
//! - Actions match case-insensitively with `*`/`?`; resources are ARNs split on the first five
//!   colons and matched part by part with IAM globs (`*` any run, `?` one character, MQTT `+`
//!   and `#` literal), in time linear in the input (no backtracking, no regex).
//! - A substituted variable value is matched literally. A variable without a usable value makes
//!   its pattern match nothing — in Deny statements too, which the `variable-in-deny` lint flags.
//! - The decision is the union over every policy: any matching Deny gives
//!   [`Decision::ExplicitDeny`], else any matching Allow gives [`Decision::Allow`], else
//!   [`Decision::ImplicitDeny`]. Statement and policy order never matter.

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
mod json;
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
pub use key::{CertPart, ContextKey, Select};
pub use policy_set::{PolicySet, SetOptions};
pub use request::{MAX_REQUEST_BYTES, Request};
