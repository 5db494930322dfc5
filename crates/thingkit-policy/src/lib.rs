//! AWS IoT Core policy documents, parsed strictly, validated with positions, linted, and
//! evaluated with the exact semantics of AWS IoT. Policies are compiled once into a
//! [`PolicySet`] that decides requests without heap allocation and can [explain](PolicySet::explain)
//! every decision.
//!
//! A [`Request`] borrows its parts: build the [`ArnPrefix`] (partition, region, account) once,
//! then each PUBLISH, delivery, SUBSCRIBE or CONNECT becomes a request that refers to the prefix
//! and to the topic, filter or client ID where they already are. Building and deciding one
//! allocates nothing and parses no ARN (`tests/allocations.rs` counts). A full ARN string (the
//! CLI's `policy test`) is split once by [`Request::new`]; [`RequestBuf`] owns one.
//!
//! ```
//! use thingkit_policy::{
//!     validate, Action, ArnPrefix, Context, Decision, Error, PolicyDocument, PolicySet, Request,
//! };
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
//! // Validation reports every finding (errors and lints) with a stable code, a help text, a JSON
//! // path, line:column and a byte span; this document is clean.
//! assert!(validate(text).is_empty());
//!
//! let mut set = PolicySet::new();
//! set.add("device", &PolicyDocument::parse(text)?)?;
//! // Once per broker: the prefix every request refers to.
//! let arn = ArnPrefix::new("aws", "us-east-1", "123456789012").expect("valid prefix");
//! let ctx = Context::with_client_id("sensor-1");
//!
//! // Per PUBLISH: a request borrowing the prefix and the topic; no allocation, no ARN parsing.
//! let topic = "devices/sensor-1/temp";
//! assert_eq!(set.decide(&arn.publish(topic, false), &ctx), Decision::Allow);
//! assert_eq!(set.decide(&arn.receive("devices/sensor-2/temp"), &ctx), Decision::ImplicitDeny);
//! let why = set.evaluate(&arn.publish("devices/sensor-1/admin", false), &ctx);
//! assert_eq!(why.decision, Decision::ExplicitDeny);
//! assert_eq!(why.determining[0].sid.as_deref(), Some("NoAdmin"));
//!
//! // The same question from a full ARN string (split once, here) decides the same.
//! let arn_text = "arn:aws:iot:us-east-1:123456789012:topic/devices/sensor-1/admin";
//! assert_eq!(set.decide(&Request::new(Action::Publish, arn_text), &ctx), Decision::ExplicitDeny);
//!
//! // An invalid document is rejected with every finding, not just the first.
//! let bad = r#"{"Version": "2012-10-18", "Statement": {"Effect": "Permit", "Action": "iot:Connect", "Resource": "*"}}"#;
//! let Err(Error::InvalidDocument { findings }) = PolicyDocument::parse(bad) else { unreachable!() };
//! assert_eq!(findings.len(), 2);
//! assert_eq!(&bad[findings[0].span.clone()], r#""2012-10-18""#);
//! assert_eq!(findings[1].help, r#"use "Allow" or "Deny" (case-sensitive)"#);
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
//!   variables* — *basic*, *thing* and *X.509 certificate policy variables* and *Using X.509
//!   certificate policy variables* (the thirteen distinguished-name attributes, the
//!   `Subject.AlternativeName`/`Issuer.AlternativeName` keys, `.N` and `.List`, the decimal
//!   `iot:Certificate.SerialNumber`, and the limitations: five values per attribute, values with
//!   `* $ + ? #` or over 1024 characters not substituted) ([`ContextKey`], [`CertificateContext`]); the
//!   thing variables' rule that they resolve only for a thing attached to the certificate
//!   ([`ThingContext`]); the *connect* (including the `connectAttributes` examples), *publish/subscribe*,
//!   *connect and publish*, *retained message*, *certificate*, *thing* and *basic job* policy
//!   examples. Every policy those pages and the AWS IoT Device SDK v2 samples print is in
//!   `tests/aws/policies/` (sources in its README) and validates without errors; the pages'
//!   stated decisions are table-driven tests in `tests/aws_examples.rs`.
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
//!   "matches none", for negated operators). Condition key names match case-insensitively.
//!   Policy variables are substituted in String and Arn condition values only (elsewhere they
//!   are an error). `...IgnoreCase` folds ASCII letters only.
//! - **Missing, empty and set-qualified keys** (IAM User Guide, *Condition operators* and
//!   *Multivalued context keys*; AWS IoT's `connectAttributes` examples). A request key is
//!   *missing* when the context has no value for it; a multivalued key with no values
//!   (`iot:ConnectAttributes` empty, a certificate attribute with no values) is treated exactly
//!   like a missing one, as IAM does ("null dataset"). A policy value list may be empty
//!   (`"ForAllValues:StringEquals": {"iot:ConnectAttributes": []}` is the guide's "only allows
//!   connect using default features"). With R the request values and P the policy values, a
//!   positive operator tests "some p in P matches v", a negated one "no p in P matches v":
//!
//!   | operator | key missing or empty | R non-empty, P = `[]` | R non-empty, P non-empty |
//!   |---|---|---|---|
//!   | positive (`StringEquals`, ...) | false | false | some v in R matches some p |
//!   | negated (`StringNotEquals`, ...) | true | true | no v in R matches any p |
//!   | `ForAnyValue:` positive | false | false | some v matches some p |
//!   | `ForAnyValue:` negated | false | true | some v matches no p |
//!   | `ForAllValues:` positive | true | false | every v matches some p |
//!   | `ForAllValues:` negated | true | true | every v matches no p |
//!   | any `...IfExists` | true | as without `IfExists` | as without `IfExists` |
//!   | `Null` `["true"]` / `["false"]` / `[]` | true / false / false | false / true / false | false / true / false |
//!
//!   Every cell is a unit test in `condition.rs`.
//! - **Certificate values AWS leaves unreplaced**: a certificate value containing `* $ + ? #` or
//!   longer than 1024 characters is not substituted as a variable (the pattern matches nothing).
//!   As a condition key it is *present* (so `Null: false` holds) but the condition cannot be
//!   decided, and it **fails closed**: such a condition makes an Allow statement not apply and a
//!   Deny statement apply, whatever the operator. The guide says only that the variable "is not
//!   replaced" and that this "might cause authorization failure"; comparing the raw value would
//!   let a `#` in a certificate field slip past a `StringLike` Deny, and treating it as equal to
//!   no value would let it satisfy a `StringNotLike` Allow. For `.List` one such value among the
//!   first five makes the whole list undecidable; dropping only that value would let
//!   `ForAllValues` pass on the rest.
//! - **Multi-valued certificate attributes**: the plain name is the first value and `.N` the
//!   value at 0-based position N, so `.1` is the *second* value and `.0` the first. This follows
//!   the worked example of *X.509 certificate policy variables*: "`iot:Certificate.Subject.Country.1`
//!   is replaced by the second country name". Only the first five values exist for policies
//!   ("Certificate attributes that contain arrays are limited to five items. Additional items
//!   are ignored."): `.5` and above never resolve and `.List` holds at most five values.
//! - **Thing keys** (`iot:Connection.Thing.ThingName`, `ThingTypeName`, `Attributes[...]`)
//!   resolve only when the thing is attached to the certificate the client connected with
//!   (*Thing policy variables*: otherwise the variable is not resolved and access is denied);
//!   `IsAttached` reads the flag in either case. A device whose certificate is not attached to a
//!   thing never gets that thing's permissions by using its name as client ID.
//! - **Undocumented names**: `iot:Certificate.SubjectAltName.*`/`IssuerAltName.*` (an older
//!   spelling), `iot:Thing.ThingName` and any other undocumented key are unknown: they never
//!   have a value, and validation warns (`unknown-variable`).
//!
//! # Where the AWS documents contradict themselves, and the reading chosen
//!
//! - *X.509 certificate policy variables* calls `.N` "a one-based index" and, in the next
//!   sentence, says `.1` "is replaced by the second country name" (0-based). The worked example
//!   is implemented: `.1` is the second value.
//! - The same page's `Organization.List` example says the condition requires the attribute to
//!   "include one of the values listed", but the policy uses `ForAllValues:StringEquals`, which
//!   by IAM's definition requires *every* organization to be listed and is true for a
//!   certificate without one. IAM's definition is implemented (`tests/aws_examples.rs` shows
//!   both cases); write `ForAnyValue` for "includes one of".
//! - *Using X.509 certificate policy variables* prints `iot:Certificate.Issuer.initials`
//!   (lower case) while the list says `Initials`; key names are case-insensitive, so both work.
//!   Its subject table leaves out the `OU=LightBulb` the example certificate has; the attribute
//!   is exposed like every listed one.
//! - Its *Special Characters* limitation says `, " \ + = < > ;` "must be prefixed with a
//!   backslash when used in a policy variable" without saying which values; the escaping is
//!   applied where the guide's example shows a DN string: `DirectoryName` values (RFC 4514),
//!   not single attribute values.
//! - *Publish/Subscribe policy examples* use `${iot:Thing.ThingName}`, which no variables page
//!   documents (they document `iot:Connection.Thing.ThingName`): unknown, with a warning.
//! - *Thing policy variables* says the thing is the one "for which the policy is being evaluated"
//!   and that the client ID "must exactly match the thing name"; whether an unattached thing's
//!   values resolve is settled by the later sentence that they are not resolved: they do not.
//! - Five printed policies are not valid JSON (a missing `}`, a trailing comma, a misplaced `{`,
//!   non-breaking spaces): the corpus stores them minimally repaired, as its README notes.
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
pub use arn::ArnPrefix;
pub use condition::{Operator, OperatorKind, SetQualifier};
pub use context::{CertificateContext, Context, ThingContext};
pub use decision::{
    ConditionExplanation, Decision, Evaluation, Explanation, ResourceExplanation,
    StatementExplanation, StatementRef,
};
pub use document::{
    ConditionEntry, Effect, Located, POLICY_VERSION, PolicyDocument, PolicyLimits, Statement,
    validate, validate_with,
};
pub use error::Error;
pub use finding::{Code, Finding, Location, Severity};
pub use key::{CertPart, ContextKey, MAX_CERTIFICATE_VALUE_CHARS, MAX_CERTIFICATE_VALUES, Select};
pub use policy_set::{PolicySet, SetOptions};
pub use request::{MAX_REQUEST_BYTES, Request, RequestBuf, Resource};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
