//! # thingkit
//!
//! The core of a cloud IoT platform (the parts of AWS IoT Core or Azure IoT Hub that a fleet really
//! depends on) as small, embeddable, rigorously tested crates. This package is the facade: it
//! re-exports each domain crate as a module, each behind a default-on cargo feature of the same name,
//! so one dependency gives you everything and `default-features = false` gives you only what you
//! name.
//!
//! | module | crate | cargo feature |
//! |---|---|---|
// FACADE-TABLE (one row per domain crate)
//! | [`firmware`] | `thingkit-firmware` | `firmware` |
//! | [`meter`] | `thingkit-meter` | `meter` |
//! | [`provision`] | `thingkit-provision` | `provision` |
//! | [`mqtt`] | `thingkit-mqtt` | `mqtt` |
//! | [`policy`] | `thingkit-policy` | `policy` |
//!
//! Every crate follows the same rules: no `unsafe`, every public item documented, untrusted input
//! never panics, never over-allocates and never hangs, and every limit is a named field with a safe
//! default. `ARCHITECTURE.md` at the repository root maps the crates and their boundaries.

// FACADE-REEXPORTS (one `pub use` per domain crate, behind its feature)
/// Signed firmware updates (IETF SUIT): strict CBOR, COSE_Sign1 thresholds, streaming image checks, key rotation.
#[cfg(feature = "firmware")]
pub use thingkit_firmware as firmware;
/// Metering, GCRA rate limits, quotas, exact-money rating and a durable usage ledger.
#[cfg(feature = "meter")]
pub use thingkit_meter as meter;
/// MQTT 3.1.1/5.0: strict zero-copy codec, topics, subscription index, topic aliases.
#[cfg(feature = "mqtt")]
pub use thingkit_mqtt as mqtt;
/// AWS-IoT-compatible policy documents: strict parsing, validation, exact evaluation, explain.
#[cfg(feature = "policy")]
pub use thingkit_policy as policy;
/// Provisioning: CA and issuance profile, certificate IDs, AWS-model registry, durable store, mTLS identity.
#[cfg(feature = "provision")]
pub use thingkit_provision as provision;
