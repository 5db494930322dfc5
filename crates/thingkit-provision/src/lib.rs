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
//! use thingkit_provision::{CaOptions, CertificateAuthority, CaKeyType};
//! use thingkit_provision::{CaStatus, CertificateStatus};
//! use thingkit_provision::{PolicyTarget, Registry};
//!
//! # fn main() -> thingkit_provision::Result<()> {
//! // A CA, and a device key + certificate made in one step (AWS CreateKeysAndCertificate).
//! let now = SystemTime::now();
//! let ca = CertificateAuthority::create_root(&CaOptions::default(), now)?;
//! let device = ca.create_keys_and_certificate("sensor-1", CaKeyType::P256, now)?;
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
//! # What is in the crate
//!
//! Every item is at the crate root; the modules behind them are private.
//!
//! - Certificate authority: [`CertificateAuthority`] (create or load a CA, issue device
//!   certificates from CSRs, create keys and certificates, sign CRLs), [`CaOptions`],
//!   [`IssuanceProfile`], [`IssueOptions`], [`CaKeyType`].
//! - CSRs: [`VerifiedCsr`] (parsing with [`CsrLimits`], key-type checks, proof of possession).
//! - Certificates: [`CertificateId`], the six AWS statuses ([`CertificateStatus`], [`CaStatus`])
//!   and [`policy_certificate`], the `iot:Certificate.*` policy context of an X.509 certificate;
//!   [`decode_pem_blocks`] and [`encode_pem`] for the strict PEM framing the crate reads and
//!   writes.
//! - Registry: [`Registry`] (things, thing types, groups, certificates, CAs, policies,
//!   attachments, [`RegistryEvent`]s and [`Registry::authenticate`] → [`DeviceIdentity`]),
//!   [`RegistryLimits`], the name checks ([`check_thing_name`], ...). Each thing's
//!   [`Connectivity`] (connected, since when, last disconnect reason, as AWS fleet indexing's
//!   `connectivity.*` fields): [`Registry::set_connected`], [`Registry::set_disconnected`],
//!   [`Registry::connectivity`]; kept in memory only (see [`Registry`]).
//! - Storage: the [`RegistryStore`] trait, [`MemoryStore`] and (with `redb-store`) the durable
//!   `RedbStore`.
//! - mTLS: [`ServerConfigBuilder`] and [`ReloadableServerConfig`] build the rustls
//!   `ServerConfig` for devices.
//! - Templates: [`ProvisioningTemplate`] (parameters, mappings, resources, override settings
//!   of things and certificates, policy documents as JSON objects or escaped strings, `Ref`,
//!   `Fn::Join`, `Fn::Select`, `Fn::Split`, `Fn::FindInMap`, `Fn::Sub`), strict validation
//!   with line:column and JSON paths, rendering to a [`RenderedTemplate`] and
//!   [`apply_template`]; every template AWS prints is a test fixture.
//! - Fleet provisioning by claim: [`FleetProvisioning`] — the sans-IO AWS device provisioning
//!   MQTT API ([`FleetProvisioning::handle`], or `prepare` → hook → `commit` so the hook runs
//!   without the registry; JSON and CBOR), certificate ownership tokens, all-or-nothing template
//!   application, and [`claim_policy`], the least-privilege policy for claim certificates.
//! - Hooks: the [`PreProvisioningHook`] trait, [`run_hook`] on a thread with a fail-closed
//!   timeout ([`HookConfig`]).
//! - Just-in-time registration (JITR) and provisioning (JITP) for the first connection of an
//!   unknown certificate signed by an auto-registration CA: [`JitOutcome`].
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `redb-store` | yes | `RedbStore`, a crash-safe store on the pure-Rust `redb` database |
//! | `test-suite` | no | `conformance::run` and `conformance::reopen`: the tests every [`RegistryStore`] must pass |
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
//!   templates are operator configuration, given to [`FleetProvisioning`] at start-up.
//! - Certificates registered without a CA cannot pass the mTLS handshake built here, because
//!   the TLS layer needs a trust anchor; they can still be authenticated by an endpoint that
//!   verifies them another way.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod authority;
mod certificate;
mod connectivity;
#[cfg(feature = "redb-store")]
mod durable;
mod error;
mod fleet;
mod hook;
mod identity;
mod jit;
mod name;
mod pem;
mod policy;
mod registry;
mod request;
mod store;
mod template;

pub use authority::{
    CaKeyType, CaOptions, CertificateAuthority, IssuanceProfile, IssueOptions, IssuedCertificate,
    KeysAndCertificate, RevokedSerial,
};
pub use certificate::{
    CaStatus, CertificateId, CertificateStatus, MAX_SERIAL_BYTES, policy_certificate,
};
pub use connectivity::Connectivity;
pub use error::{AuthFailure, Error, Result};
pub use fleet::{
    CERTIFICATES_PREFIX, DEFAULT_COMMON_NAME, FleetConfig, FleetProvisioning, HookOutcome,
    Operation, PayloadFormat, PendingRegistration, Prepared, Provisioned, Rejection, Reply,
    TEMPLATES_PREFIX, apply as apply_template, check_template_name, claim_policy,
    inline_policy_name, is_provisioning_topic, parse_topic as parse_provisioning_topic,
};
pub use hook::{HookConfig, HookRequest, HookResponse, PreProvisioningHook, run_hook};
pub use identity::{ReloadableServerConfig, ServerConfigBuilder};
pub use jit::{JitOutcome, REGISTERED_EVENT_PREFIX};
pub use name::{
    MAX_ATTRIBUTE_NAME_LEN, MAX_ATTRIBUTE_VALUE_LEN, MAX_NAME_LEN, check_attribute_name,
    check_attribute_value, check_policy_name, check_thing_name,
};
pub use pem::{decode_blocks as decode_pem_blocks, encode as encode_pem};
pub use policy::{PolicyVersion, StoredPolicy, StoredPolicyDocument};
pub use registry::{
    CaCertificate, Certificate, DeviceIdentity, EffectivePolicy, MAX_SEARCHABLE_ATTRIBUTES,
    PolicyTarget, Registry, RegistryEvent, RegistryLimits, Thing, ThingAttachment, ThingGroup,
    ThingType,
};
pub use request::{CsrLimits, DeviceKeyType, DevicePublicKey, VerifiedCsr};
#[cfg(feature = "redb-store")]
pub use store::RedbStore;
#[cfg(feature = "test-suite")]
pub use store::conformance;
pub use store::{MemoryStore, RegistryStore, StoreOp};
pub use template::{
    CERTIFICATE_ID as TEMPLATE_CERTIFICATE_ID, CERTIFICATE_PEM as TEMPLATE_CERTIFICATE_PEM,
    CertificateOverrideSettings, CertificateSource, Override, OverrideSettings,
    PSEUDO_PREFIX as TEMPLATE_PSEUDO_PREFIX, Parameter, ParameterType, ProvisioningTemplate,
    RESOURCE_TYPES as TEMPLATE_RESOURCE_TYPES, RenderedCertificate, RenderedPolicy,
    RenderedTemplate, RenderedThing, TemplateLimits,
};
