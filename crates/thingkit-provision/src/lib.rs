//! Device provisioning with the AWS IoT Core model: a certificate authority with a strict
//! issuance profile, AWS certificate IDs, a registry of things, certificates, CA certificates and
//! policies with the AWS state machine and limits, durable storage, and mTLS identity.
//! An operator's mental model, IDs and state machine carry over from AWS IoT unchanged.
//!
//! The crate is sans-IO: it never reads the clock. Every operation that dates something (issuing,
//! revoking, creating a policy version) or checks a date (authentication, ownership tokens) takes
//! `now: SystemTime`, so tests and simulations drive time explicitly.
//!
//! ```
//! use std::time::SystemTime;
//! use thingkit_provision::authority::{CaOptions, CertificateAuthority, KeyType};
//! use thingkit_provision::certificate::{CaStatus, CertificateStatus};
//! use thingkit_provision::registry::{PolicyTarget, Registry};
//!
//! # fn main() -> thingkit_provision::Result<()> {
//! // A CA, and a device key + certificate made in one step (AWS CreateKeysAndCertificate).
//! let now = SystemTime::now();
//! let ca = CertificateAuthority::create_root(&CaOptions::default(), now)?;
//! let device = ca.create_keys_and_certificate("sensor-1", KeyType::P256, now)?;
//!
//! // Register the CA, the certificate, a thing and a policy, then attach them.
//! let mut registry = Registry::in_memory();
//! registry.register_ca_certificate(ca.certificate_der(), CaStatus::Active, false)?;
//! let id = registry.register_certificate(&device.certificate.der, CertificateStatus::Active, now)?;
//! registry.create_thing("sensor-1", None, &[("site", "berlin")])?;
//! registry.attach_thing_principal("sensor-1", &id, true)?;
//! registry.create_policy("telemetry", r#"{"Version":"2012-10-17","Statement":[
//!     {"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}"#, now)?;
//! registry.attach_policy("telemetry", &PolicyTarget::Certificate(id))?;
//!
//! // What a broker does after the TLS handshake with the device's certificate.
//! let identity = registry.authenticate(&[&device.certificate.der], now)?;
//! assert_eq!(identity.thing.as_deref(), Some("sensor-1"));
//! assert_eq!(&*identity.policies[0].name, "telemetry");
//!
//! // Revoking it ends its ACTIVE state: authentication now fails.
//! registry.update_certificate(&id, CertificateStatus::Revoked, now)?;
//! assert!(registry.authenticate(&[&device.certificate.der], now).is_err());
//! # Ok(()) }
//! ```
//!
//! # Modules
//!
//! - [`authority`]: create or load a CA, issue device certificates from CSRs, create keys and
//!   certificates, sign CRLs.
//! - [`request`]: CSR parsing with limits, key-type checks and proof of possession.
//! - [`certificate`]: [`CertificateId`](certificate::CertificateId), the six AWS statuses, and
//!   [`policy_certificate`], the `iot:Certificate.*` policy context of an X.509 certificate.
//! - [`registry`]: things, thing types, groups, certificates, CAs, policies, attachments,
//!   events and [`authenticate`](registry::Registry::authenticate).
//! - [`store`]: the [`RegistryStore`](store::RegistryStore) trait, the in-memory store and (with
//!   `redb-store`) the durable [`RedbStore`](store::RedbStore).
//! - [`identity`]: the rustls `ServerConfig` builder for device mTLS.
//! - [`template`]: provisioning templates (parameters, mappings, resources, override settings
//!   of things and certificates, policy documents as JSON objects or escaped strings, `Ref`,
//!   `Fn::Join`, `Fn::Select`, `Fn::Split`, `Fn::FindInMap`, `Fn::Sub`), strict validation
//!   with line:column and JSON paths, rendering; every template AWS prints is a test fixture.
//! - [`fleet`]: fleet provisioning by claim — the sans-IO AWS device provisioning MQTT API
//!   ([`FleetProvisioning::handle`](fleet::FleetProvisioning::handle), or `prepare` → hook →
//!   `commit` so the hook runs without the registry; JSON and CBOR),
//!   certificate ownership tokens, all-or-nothing template application, and
//!   [`claim_policy`](fleet::claim_policy), the least-privilege policy for claim certificates.
//! - [`hook`]: the pre-provisioning hook trait, run on a thread with a fail-closed timeout.
//! - [`jit`]: just-in-time registration (JITR) and provisioning (JITP) for the first connection
//!   of an unknown certificate signed by an auto-registration CA.
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `redb-store` | yes | [`store::RedbStore`], a crash-safe store on the pure-Rust `redb` database |
//!
//! # Specifications
//!
//! - RFC 2986 (PKCS #10) §3 and §4: CSR structure and proof-of-possession signature.
//! - RFC 5280 §4.1.2.2 (serial number), §4.1.2.5 (validity), §4.2.1.1 (authority key
//!   identifier), §4.2.1.2 (subject key identifier), §4.2.1.3 (key usage), §4.2.1.9 (basic
//!   constraints), §4.2.1.12 (extended key usage), §5 (CRLs).
//! - RFC 5480 §2.1.1 (named curves) and RFC 5758 §3.2 (ECDSA with SHA-2 signatures).
//! - RFC 7468: PEM encoding.
//! - RFC 8446 §4.4.2 / RFC 5246 §7.4.6: client certificate authentication (through rustls).
//! - AWS IoT Core: certificate IDs, certificate and CA statuses (`UpdateCertificate`,
//!   `UpdateCACertificate`, transfers), registry limits (thing names, attributes, thing groups),
//!   policy versions, `AttachThingPrincipal` with `EXCLUSIVE_THING`, just-in-time registration.
//! - AWS IoT Core Developer Guide, *Device provisioning*: *Device provisioning MQTT API*
//!   (`CreateKeysAndCertificate`, `CreateCertificateFromCsr`, `RegisterThing`, their topics, JSON
//!   and CBOR payloads and error bodies), *Provisioning templates* (sections, intrinsic
//!   functions, `OverrideSettings`, the 10 240-byte template limit), *Pre-provisioning hooks*,
//!   *Provisioning by claim* (claim certificate policy, ownership tokens), *Just-in-time
//!   provisioning* and *Just-in-time registration* (the `certificates/registered` event).
//! - AWS IoT Core Developer Guide, *X.509 certificate policy variables* and *Using X.509
//!   certificate policy variables* (attribute names, the decimal serial number, the five-value
//!   limit, the `DirectoryName` form), with RFC 5280 §4.1.2.4/§4.1.2.6 (names), §4.2.1.6 and
//!   §4.2.1.7 (alternative names) and RFC 4514 §2 (directory name strings):
//!   [`policy_certificate`].
//! - RFC 8949 (CBOR) §3 and §5.1: the CBOR payload format, one data item per payload.
//!
//! # What is not supported, and why
//!
//! - Device keys other than P-256, P-384 and RSA 2048-8192 (Ed25519 device certificates are
//!   not accepted by AWS IoT either; a CA may use Ed25519).
//! - Dynamic thing groups, fleet indexing and jobs: out of scope for provisioning.
//! - Template conditions (`Conditions`, `Fn::If`, `Fn::Equals`, ...): CloudFormation features
//!   that AWS does not document for provisioning templates. Billing groups: a template's
//!   `BillingGroup` is rendered but not stored. Provisioning templates stored in the registry:
//!   templates are operator configuration, given to [`fleet::FleetProvisioning`] at start-up.
//! - Certificates registered without a CA cannot pass the mTLS handshake built here, because
//!   the TLS layer needs a trust anchor; they can still be authenticated by an endpoint that
//!   verifies them another way.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod authority;
pub mod certificate;
#[cfg(feature = "redb-store")]
mod durable;
pub mod error;
pub mod fleet;
pub mod hook;
pub mod identity;
pub mod jit;
pub mod name;
pub mod pem;
pub mod policy;
pub mod registry;
pub mod request;
pub mod store;
pub mod template;

pub use certificate::policy_certificate;
pub use error::{AuthFailure, Error, Result};
