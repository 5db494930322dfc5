//! # thingkit
//!
//! The core of a cloud IoT platform (the parts of AWS IoT Core or Azure IoT Hub that a fleet really
//! depends on) as small, embeddable, rigorously tested crates. This package is the facade: it
//! re-exports each domain crate as a module, each behind a default-on cargo feature of the same name,
//! so one dependency gives you everything and `default-features = false` gives you only what you
//! name.
//!
//! # Example: is this device allowed to publish what it just sent?
//!
//! A broker's core loop in a few lines: decode the bytes a device sent with [`mqtt`], then ask
//! [`policy`] whether the device's policies allow that PUBLISH.
//!
//! ```
//! # #[cfg(all(feature = "mqtt", feature = "policy"))] {
//! use thingkit::mqtt::bytes::BytesMut;
//! use thingkit::mqtt::{Decoder, Packet, ProtocolVersion};
//! use thingkit::policy::{ArnPrefix, Context, Decision, PolicyDocument, PolicySet};
//!
//! // A device may publish only below its own client ID.
//! let mut policies = PolicySet::default();
//! policies.add("telemetry", &PolicyDocument::parse(r#"{
//!     "Version": "2012-10-17",
//!     "Statement": {"Effect": "Allow", "Action": "iot:Publish",
//!                   "Resource": "arn:aws:iot:eu-west-1:123456789012:topic/dt/${iot:ClientId}/*"}
//! }"#)?)?;
//! let arn = ArnPrefix::new("aws", "eu-west-1", "123456789012").expect("a valid prefix");
//! let device = Context { client_id: Some("pump-17".into()), ..Context::default() };
//!
//! // Two QoS 0 PUBLISH packets as they arrive on pump-17's connection.
//! let mut buf = BytesMut::from(&b"\x30\x13\x00\x0fdt/pump-17/flow42\x30\x13\x00\x0fdt/pump-18/flow42"[..]);
//! let mut decoder = Decoder::new(ProtocolVersion::V311);
//! let mut decisions = Vec::new();
//! while let Some(Packet::Publish(publish)) = decoder.decode(&mut buf)? {
//!     let topic = publish.topic.as_ref().expect("3.1.1 PUBLISH always has a topic");
//!     decisions.push(policies.decide(&arn.publish(topic.as_str(), publish.retain), &device));
//! }
//! assert_eq!(decisions, [Decision::Allow, Decision::ImplicitDeny]);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Modules and features
//!
//! | module | crate | cargo feature (default on) |
//! |---|---|---|
//! | [`mqtt`] | `thingkit-mqtt` | `mqtt` |
//! | [`policy`] | `thingkit-policy` | `policy` |
//! | [`provision`] | `thingkit-provision` | `provision` |
//! | [`firmware`] | `thingkit-firmware` | `firmware` |
//! | [`meter`] | `thingkit-meter` | `meter` |
//! | [`shadow`] | `thingkit-shadow` (redb store by default) | `shadow` |
//! | [`jobs`] | `thingkit-jobs` (redb store by default) | `jobs` |
//! | [`rules`] | `thingkit-rules` (sans-IO; no features) | `rules` |
//! | [`audit`] | `thingkit-audit` (sans-IO; no features) | `audit` |
//! | [`broker`] | `thingkit-broker` (with its default `server` and `redb` features: tokio, rustls, axum, redb) | `broker` |
//! | [`api`] | `thingkit-api` (with its default `server` feature: axum, rustls) | `api` |
//! | [`cluster`] | `thingkit-cluster` (PostgreSQL stores; with its default `nats` feature: async-nats) | `cluster` |
//!
//! Every crate follows the same rules: no `unsafe`, every public item documented, untrusted input
//! never panics, never over-allocates and never hangs, and every limit is a named field with a safe
//! default. `ARCHITECTURE.md` at the repository root maps the crates and their boundaries; the
//! `examples/` directory has one example per crate, the quick start and the broker benchmarks;
//! `thingkit serve` (the CLI) runs the broker as a server.
//!
//! The `broker` feature brings the broker's tokio + rustls server with it. A program that wants
//! only the sans-IO core (the `Session` and `Router`, no runtime) depends on `thingkit-broker`
//! with `default-features = false` instead.

/// MQTT 3.1.1/5.0: strict zero-copy codec, topics, subscription index, topic aliases.
#[cfg(feature = "mqtt")]
pub use thingkit_mqtt as mqtt;

/// AWS-IoT-compatible policy documents: strict parsing, validation, exact evaluation, explain.
#[cfg(feature = "policy")]
pub use thingkit_policy as policy;

/// Provisioning: CA and issuance profile, certificate IDs, AWS-model registry, durable store, mTLS
/// identity, fleet provisioning by claim and just-in-time registration.
#[cfg(feature = "provision")]
pub use thingkit_provision as provision;

/// Signed firmware updates (IETF SUIT): strict CBOR, COSE_Sign1 thresholds, streaming image checks,
/// key rotation.
#[cfg(feature = "firmware")]
pub use thingkit_firmware as firmware;

/// Metering, GCRA rate limits, quotas, exact-money rating and a durable usage ledger.
#[cfg(feature = "meter")]
pub use thingkit_meter as meter;

/// AWS IoT Device Shadows, sans-IO: classic and named shadows, merge, delta, metadata,
/// versions, and a durable store.
#[cfg(feature = "shadow")]
pub use thingkit_shadow as shadow;

/// AWS IoT Jobs, sans-IO: jobs, executions and their state machine, the device MQTT API,
/// rollout, abort, timeout and retry arithmetic and pacing, and a durable store.
#[cfg(feature = "jobs")]
pub use thingkit_jobs as jobs;

/// The AWS IoT SQL rules engine, sans-IO: parser, AWS's exact value model (Undefined, 34-digit
/// decimals), the function library, substitution templates, and windowed aggregation.
#[cfg(feature = "rules")]
pub use thingkit_rules as rules;

/// Fleet security modelled on AWS IoT Device Defender, sans-IO: the 13 self-hosted audit checks
/// over a registry snapshot, suppressions, mitigation plans, detect (security profiles and
/// violations) and the fleet's key metrics.
#[cfg(feature = "audit")]
pub use thingkit_audit as audit;

/// The AWS IoT control-plane API (REST-JSON from botocore's model, SigV4, identity policies,
/// audit) over the registry, with an axum + rustls server.
#[cfg(feature = "api")]
pub use thingkit_api as api;

/// Several servers as one: the registry, shadow and job stores on PostgreSQL with a change
/// feed, and routing between servers over NATS (`docs/cluster.md`).
#[cfg(feature = "cluster")]
pub use thingkit_cluster as cluster;

/// The MQTT broker: its sans-IO core (sessions, subscriptions, retained messages, routing,
/// persistence) and its tokio + rustls server (`Broker::builder`).
#[cfg(feature = "broker")]
pub use thingkit_broker as broker;
