//! The AWS IoT control-plane API over the thingkit registry: the REST-JSON protocol of the
//! `iot` service (and `iot-data`'s `Publish`) exactly as botocore's service model describes
//! it, so boto3, the AWS CLI and every AWS SDK manage a thingkit server by pointing their
//! endpoint URL at it.
//!
//! [`ControlPlane::handle`] takes one HTTP request (method, raw path and query, headers, body,
//! the time) and gives the response and an [`AuditRecord`]; it opens no socket. In order:
//! AWS Signature Version 4 is verified against the server's access keys ([`sigv4`],
//! [`keys`]) before anything of the request is interpreted; the method and path name the
//! operation and its input is bound from path, query, headers and body and validated against
//! the model ([`model`]: required members, lengths, ranges, patterns, enums — refused with
//! AWS's own `InvalidRequestException` wording); `iot:<Operation>` on the operation's resource
//! ARN is authorized by the key's IAM-style identity policy, evaluated by `thingkit-policy`
//! (default deny, explicit deny wins; [`identity`]); then the operation runs against the
//! [`thingkit_provision::Registry`] the broker shares (and, for jobs, the jobs engine it
//! shares), so every change takes effect on live
//! connections (a detached policy decides the next publish; an INACTIVE or REVOKED certificate's
//! sessions are disconnected). A refusal at any step changes nothing. Errors are rendered as AWS
//! renders them — status, `x-amzn-ErrorType`, `{"message": ...}` — so boto3 raises the
//! exception classes a user's code already catches.
//!
//! ```
//! use std::sync::{Arc, RwLock};
//! use std::time::SystemTime;
//! use serde_json::json;
//! use thingkit_api::{ControlPlane, Input, keys::KeyStore};
//! use thingkit_policy::ArnPrefix;
//! use thingkit_provision::Registry;
//!
//! let registry = Arc::new(RwLock::new(Registry::in_memory()));
//! let arn = ArnPrefix::new("aws", "eu-central-1", "123456789012").expect("a valid prefix");
//! let plane = ControlPlane::new(registry.clone(), arn, Arc::new(KeyStore::in_memory()));
//! let now = SystemTime::now();
//!
//! // In process (tests, embedding): the same validation and handlers as over HTTPS.
//! let created = plane.call("CreateThing", Input::from_json(json!({"thingName": "sensor-1"})), now)?;
//! assert_eq!(created["thingArn"], "arn:aws:iot:eu-central-1:123456789012:thing/sensor-1");
//! assert!(registry.read().unwrap().thing("sensor-1").is_some());
//!
//! // Refused as AWS refuses it, with AWS's message.
//! let bad = plane.call("CreateThing", Input::from_json(json!({"thingName": "bad name"})), now);
//! let e = bad.unwrap_err();
//! assert_eq!((e.code, e.status), ("InvalidRequestException", 400));
//! assert!(e.message.ends_with("Member must satisfy regular expression pattern: [a-zA-Z0-9:_-]+"));
//! # Ok::<(), thingkit_api::ApiError>(())
//! ```
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `server` | yes | [`server::serve`]: HTTPS with axum on tokio, TLS by rustls (ring), handlers on the blocking pool |
//!
//! # Specifications implemented
//!
//! - botocore's service models `iot/2015-05-28` and `iot-data/2015-05-28` (the cut we serve is
//!   `model/iot.json`, written by `model/extract.py`; its botocore version is in the file):
//!   the REST-JSON protocol — `requestUri` templates with `{label}` and `{label+}`, members
//!   bound by `location` (`uri`, `querystring`, `header`, `jsonvalue` headers, body, blob
//!   `payload`), `responseCode`, error shapes with their `httpStatusCode`.
//! - AWS General Reference, *Signature Version 4 signing process*: canonical request, string to
//!   sign, signing key derivation, `Authorization` header form (see [`sigv4`]).
//! - IAM User Guide, *policy evaluation logic* for identity policies, and the AWS IoT service
//!   authorization reference's action names (`iot:CreateThing`, ...) and resource ARNs
//!   (`thing/`, `thinggroup/`, `thingtype/`, `cert/`, `cacert/`, `policy/`,
//!   `provisioningtemplate/`, `topic/`, `job/`, `jobtemplate/`).
//! - AWS IoT Jobs (`/work/shared/specs/shadow-jobs.md` §B, the control plane of §B.4): the job,
//!   job execution and job template operations, over the `thingkit-jobs` engine
//!   ([`ControlPlane::with_jobs`]); job templates in [`job_store`].
//! - AWS IoT rules (`/work/shared/specs/rules-audit.md` §A): `CreateTopicRule`,
//!   `GetTopicRule`, `ListTopicRules`, `ReplaceTopicRule`, `EnableTopicRule`,
//!   `DisableTopicRule`, `DeleteTopicRule`; statements compiled by `thingkit-rules`, rules kept
//!   in a [`topic_rule::TopicRuleStore`] and handed to the running engine through a
//!   [`topic_rule::TopicRuleHook`] ([`ControlPlane::with_topic_rules`]).
//! - AWS IoT Device Defender (`/work/shared/specs/rules-audit.md` §C): the audit operations
//!   (on-demand and scheduled audit tasks, findings, the account's audit configuration,
//!   suppressions) and the Detect operations (security profiles, their targets, violations),
//!   run by `thingkit-audit` over a registry snapshot and kept in an
//!   [`audit_store::AuditStore`]; the server gives the broker's connection log through
//!   [`audit::AuditSources`] and its detector through [`audit::DetectHook`]
//!   ([`ControlPlane::with_audit`]; [`ControlPlane::run_scheduled_audits`] once a minute).
//! - AWS IoT API Reference for each operation's semantics (attribute merge, `expectedVersion`,
//!   certificate states, five policy versions, deletion conflicts); see the README's table.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod audit;
pub mod audit_store;
pub mod error;
pub mod identity;
pub mod job_store;
pub mod keys;
pub mod model;
mod ops;
#[cfg(feature = "server")]
pub mod server;
pub mod service;
pub mod sigv4;
pub mod templates;
pub mod topic_rule;

pub use error::{ApiError, ApiResult};
pub use model::{Input, Model, Service};
pub use service::{
    ApiLimits, ApiRequest, ApiResponse, Audit, AuditRecord, Caller, ControlPlane, Ctx,
    DataProperties, DataPublish, Endpoints, Publisher, ShadowBackend,
};
