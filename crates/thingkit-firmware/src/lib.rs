//! # thingkit-firmware
//!
//! Signed firmware updates in the IETF SUIT format: an operator builds and signs a manifest
//! (a SUIT envelope with COSE_Sign1 signatures), and a device verifies it — signatures first,
//! then anti-rollback, vendor/class and size — and streams the image through a constant-memory,
//! resumable digest check. Trust anchors rotate by signed, versioned sets, and a sans-IO state
//! machine takes an update from download to a committed (or rolled-back) slot.
//!
//! ```
//! use thingkit_firmware::{
//!     EnvelopeBuilder, ImageVerifier, KeyType, ManifestBuilder, SigningKey, TrustAnchors, Uuid,
//!     Verifier,
//! };
//!
//! # fn main() -> Result<(), thingkit_firmware::Error> {
//! let vendor: Uuid = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe".parse()?;
//! let class: Uuid = "1492af14-2569-5e48-bf42-9b2d51f2ab45".parse()?;
//! let image = vec![0x5a; 100_000];
//!
//! // Operator: build and sign.
//! let key = SigningKey::generate(KeyType::P256)?;
//! let manifest = ManifestBuilder::new(2)
//!     .vendor_id(vendor)
//!     .class_id(class)
//!     .image(&image)
//!     .uri("https://updates.example/fw-2.bin")
//!     .build()?;
//! let envelope = EnvelopeBuilder::new(manifest).sign(&[&key])?;
//!
//! // Device: authenticate, then check applicability, then stream the image.
//! let verifier = Verifier::new(TrustAnchors::single(key.public_key().clone()));
//! let verified = verifier.verify(&envelope)?;
//! verified.check_sequence(1)?;
//! verified.check_identity(&vendor, &class)?;
//! let requirement = verified.image_requirement(1 << 20)?;
//! let mut stream = ImageVerifier::new(requirement);
//! for chunk in image.chunks(4096) {
//!     stream.update(chunk)?;
//! }
//! assert_eq!(stream.finish()?.size, 100_000);
//!
//! // A replay of the same manifest is refused once sequence 2 is installed.
//! assert!(verified.check_sequence(2).is_err());
//! # Ok(())
//! # }
//! ```
//!
//! ## Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | *(none)* | — | everything above; the crate has no optional parts |
//!
//! ## Specifications
//!
//! - draft-ietf-suit-manifest (-33): canonical map ordering (section 8.1), envelope (8.2),
//!   authentication wrapper with detached COSE payload (8.3), manifest (8.4: version 8.4.1,
//!   sequence number 8.4.2, reference URI 8.4.3, text 8.4.4, common 8.4.5; severable members are
//!   either a bstr or the SUIT_Digest of one), command sequences (8.4.6), parameters (8.4.8),
//!   SUIT_Digest (10); appendix examples 0 to 5 are test vectors (they verify with the draft's
//!   key and re-encode to the same bytes). The argument of suit-directive-try-each is checked
//!   (two or more bstr-wrapped command sequences, optional trailing nil, nested at most
//!   [`MAX_TRY_EACH_DEPTH`] deep), as are the component-slot and source-component
//!   parameters (unsigned integers). Vendor IDs are accepted as 16-byte UUIDs only (the PEN
//!   form of 8.4.8 is refused).
//! - RFC 9019 (SUIT architecture: the update and secure-boot flow, A/B slots) and RFC 9124 (SUIT
//!   information model: REQ.SEC.SEQUENCE, REQ.SEC.COMPATIBLE, REQ.SEC.AUTHENTIC,
//!   REQ.SEC.AUTH.EXEC).
//! - RFC 9052 sections 4.2 and 4.4 (COSE_Sign1, `Sig_structure`, detached payload); algorithms
//!   ES256 (-7), ESP256 (-9), EdDSA (-8), Ed25519 (-19); SHA-256 (-16, RFC 9054).
//! - RFC 8949 sections 4.2.1 (core deterministic encoding) and 5.6 (duplicate keys), enforced by
//!   the crate's strict CBOR codec ([`CborValue::decode`], [`CborLimits`]).
//!
//! ## Security properties
//!
//! - **Authenticate, then decode.** [`Verifier::verify`] hashes and checks signatures over the
//!   exact received bytes before it decodes the manifest; a [`Verified`] value exists only after
//!   that, with the distinct signer keys that met the threshold.
//! - **Strict input.** Every decoder takes limits ([`EnvelopeLimits`], [`CborLimits`]), never
//!   panics, allocates only after checking declared lengths against the input, and is fuzzed.
//! - **No rollback.** Sequence numbers must strictly increase; trust-anchor sets must advance by
//!   exactly one version, signed by thresholds of both the old and the new *root* keys.
//! - **No freeze.** A manifest may carry an expiry (the thingkit-expires member, key
//!   [`element::THINGKIT_EXPIRES`] = -257, in the Private Use range of the SUIT Manifest Elements
//!   registry; the draft has no expiry member). It sits *inside the manifest*, so the manifest
//!   digest and every signature cover it; an unprotected envelope field could be stripped, and a
//!   COSE header would be per-signer (two signers could disagree). A trust-anchor set carries one
//!   too. [`Verifier::verify_at`] takes the time from the caller (the crate reads no clock) and
//!   refuses an expired envelope, or any envelope under an expired set, with [`Error::Expired`];
//!   expired means `now >= expires`. [`Verifier::with_require_expiry`] refuses envelopes without
//!   expiry; [`Verifier::verify`], which has no time, refuses everything that expires.
//! - **Separate roles.** Root (rotation) keys and release (firmware) keys are disjoint sets in a
//!   [`TrustAnchors`]: a root key never verifies firmware, a release key never signs a rotation.
//!
//! Not supported (refused with an error): COSE_Sign / COSE_Mac authentication blocks, digest
//! algorithms other than SHA-256, manifest elements outside the draft's core registry, and
//! evaluation of try-each branches when reading parameters.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cbor;
mod cose;
mod envelope;
mod error;
mod image;
mod key;
mod manifest;
pub mod stream;
mod trust;
mod update;

pub use cbor::{CborLimits, Value as CborValue};
pub use cose::{CoseSign1, sig_structure as cose_sig_structure};
pub use envelope::{
    DeviceProfile, Envelope, EnvelopeBuilder, EnvelopeLimits, ImageRequirement, Inspection,
    SeveredElement, TAG_ENVELOPE, Verified, Verifier, inspect,
};
pub use error::{CborError, Error, Result};
pub use image::{ImageCheckpoint, ImageVerifier, VerifiedImage};
pub use key::{Algorithm, KeyId, KeyType, PublicKey, SigningKey};
pub use manifest::{
    Command, CommandSequence, Common, ComponentId, ComponentParameters, MAX_TRY_EACH_DEPTH,
    Manifest, ManifestBuilder, Parameters, REPORT_ALL, REPORT_ON_FAILURE,
    SHA256 as COSE_ALG_SHA256, Severable, SuitDigest, Uuid, command, element, parameter,
};
pub use trust::{MAX_TRUST_KEYS, TRUST_SET_AAD, TrustAnchors, TrustStore};
pub use update::{BootDecision, Phase, Slot, TargetDevice, UpdateMachine, UpdateState};

#[cfg(test)]
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("test hex is valid")
}
