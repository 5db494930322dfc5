//! The AWS IoT Device Shadow engine, sans-IO: classic and named shadows with AWS's merge, delta,
//! per-leaf metadata, versions and error documents, so that an unchanged AWS IoT Device SDK
//! shadow client works against it. Bytes and the time go in; the value to store and the messages
//! to publish come out ([`handle`]); [`Shadows`] drives it over a durable [`ShadowStore`].
//!
//! ```
//! use thingkit_shadow::{Limits, MemoryShadowStore, Shadows};
//!
//! let mut shadows = Shadows::new(MemoryShadowStore::new(), Limits::default());
//! let out = shadows
//!     .request(
//!         "$aws/things/lamp/shadow/update",
//!         br#"{"state":{"desired":{"color":"red"}},"clientToken":"t1"}"#,
//!         1_700_000_000,
//!     )
//!     .expect("a shadow request topic");
//! let topics: Vec<&str> = out.iter().map(|m| m.topic.as_str()).collect();
//! assert_eq!(
//!     topics,
//!     [
//!         "$aws/things/lamp/shadow/update/accepted",
//!         "$aws/things/lamp/shadow/update/documents",
//!         "$aws/things/lamp/shadow/update/delta",
//!     ]
//! );
//! assert_eq!(
//!     out[2].payload,
//!     br#"{"version":1,"timestamp":1700000000,"state":{"color":"red"},"metadata":{"color":{"timestamp":1700000000}},"clientToken":"t1"}"#
//! );
//!
//! // A get of a shadow that does not exist is rejected with AWS's 404 document.
//! let out = shadows.request("$aws/things/lamp/shadow/name/cfg/get", b"", 1_700_000_001).unwrap();
//! assert_eq!(out[0].topic, "$aws/things/lamp/shadow/name/cfg/get/rejected");
//! assert_eq!(
//!     out[0].payload,
//!     br#"{"code":404,"message":"No shadow exists with name: 'cfg'","timestamp":1700000001}"#
//! );
//!
//! // Not a request topic: not ours.
//! assert!(shadows.request("$aws/things/lamp/shadow/update/accepted", b"{}", 0).is_none());
//! ```
//!
//! # Cargo features
//!
//! | Feature | Default | What it adds |
//! |---|---|---|
//! | `redb` | yes | [`RedbShadowStore`]: shadows in one redb file, every write committed durably |
//! | `test-suite` | no | `conformance::run` and `conformance::reopen`: the tests every [`ShadowStore`] must pass |
//!
//! # Specifications implemented
//!
//! `/work/shared/specs/shadow-jobs.md` (the AWS Device Shadow digest): §A.1 names, §A.2 topics,
//! §A.3 document shapes, §A.4 rules R-01 … R-25, §A.6 error codes and messages, §A.7 limits,
//! and the readings of §F (F-S1 … F-S12) listed in the README. JSON input is read strictly by
//! `thingkit-json` (RFC 8259; duplicate keys refused).
//!
//! # What is not here
//!
//! The per-thing request rate (20/s) and in-flight (10) limits (429) belong to the broker's
//! metering; 401/403 come from the broker's policy check; REST pagination of
//! ListNamedShadowsForThing belongs to the control-plane API.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod document;
mod error;
mod request;
mod shadows;
mod store;
mod stored;
mod topic;

pub use error::{DecodeError, Error, StoreError};
pub use request::{Limits, OutMessage, Outcome, handle};
pub use shadows::Shadows;
#[cfg(feature = "redb")]
pub use store::RedbShadowStore;
#[cfg(feature = "test-suite")]
pub use store::conformance;
pub use store::{MemoryShadowStore, ShadowStore};
pub use stored::{MAX_STORED_DEPTH, StoredShadow};
pub use topic::{
    InvalidName, MAX_SHADOW_NAME, MAX_THING_NAME, Operation, ShadowKey, parse_request_topic,
    request_filters,
};
