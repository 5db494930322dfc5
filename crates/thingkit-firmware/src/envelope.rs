//! The SUIT envelope; documented on [`Envelope`].

use std::ops::Deref;

use crate::cbor::{self, CborLimits, Decoder, Value};
use crate::cose::{self, CoseSign1};
use crate::error::{Error, Result, structure};
use crate::key::{Algorithm, KeyId, SigningKey};
use crate::manifest::{
    self, CommandSequence, ComponentParameters, Manifest, Severable, SuitDigest, Uuid,
};
use crate::trust::TrustAnchors;

/// CBOR tag of a SUIT envelope.
pub const TAG_ENVELOPE: u64 = 107;
const ENV_AUTH: i64 = 2;
const ENV_MANIFEST: i64 = 3;

/// Limits for envelope verification, with safe defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnvelopeLimits {
    /// Largest envelope accepted, in bytes. Default 64 KiB.
    pub max_envelope_size: usize,
    /// Most authentication blocks (signatures) examined. Default 8.
    pub max_signatures: usize,
    /// Strict-CBOR limits (depth, item count, key order).
    pub cbor: CborLimits,
}

impl EnvelopeLimits {
    /// This value with [`max_envelope_size`](Self::max_envelope_size) replaced.
    pub fn with_max_envelope_size(mut self, max_envelope_size: usize) -> Self {
        self.max_envelope_size = max_envelope_size;
        self
    }

    /// This value with [`max_signatures`](Self::max_signatures) replaced.
    pub fn with_max_signatures(mut self, max_signatures: usize) -> Self {
        self.max_signatures = max_signatures;
        self
    }

    /// This value with [`cbor`](Self::cbor) replaced.
    pub fn with_cbor(mut self, cbor: CborLimits) -> Self {
        self.cbor = cbor;
        self
    }
}

impl Default for EnvelopeLimits {
    fn default() -> Self {
        EnvelopeLimits {
            max_envelope_size: 64 * 1024,
            max_signatures: 8,
            cbor: CborLimits::default(),
        }
    }
}

/// A severed manifest member carried in the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeveredElement<'a> {
    /// Envelope key: 16 payload fetch, 20 install, 23 text.
    pub key: i64,
    /// The whole bstr item as received (what its digest covers).
    pub wrapped: &'a [u8],
    /// The bstr content.
    pub content: &'a [u8],
}

/// A structurally parsed envelope, borrowing the received bytes. Nothing in it is authenticated.
///
/// The SUIT envelope (draft-ietf-suit-manifest section 8.2): parsing, signing, and the
/// authenticate-then-decode verifier that yields a [`Verified`] manifest.
///
/// ```text
/// SUIT_Envelope_Tagged = #6.107(SUIT_Envelope)
/// SUIT_Envelope = {
///   2: bstr .cbor [ bstr .cbor SUIT_Digest, + bstr .cbor COSE_Sign1_Tagged ],  ; authentication
///   3: bstr .cbor SUIT_Manifest,
///   ? 16 / 20 / 23: bstr,                                                     ; severed members
///   * tstr => bstr,                                                          ; integrated payloads
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    digest_bytes: &'a [u8],
    digest: SuitDigest,
    signatures: Vec<CoseSign1<'a>>,
    manifest_wrapped: &'a [u8],
    manifest: &'a [u8],
    severed: Vec<SeveredElement<'a>>,
    integrated: Vec<(&'a str, &'a [u8])>,
}

impl<'a> Envelope<'a> {
    /// Parses the envelope's outer structure and its authentication wrapper. The manifest is
    /// *not* decoded here.
    pub fn parse(bytes: &'a [u8], limits: &EnvelopeLimits) -> Result<Envelope<'a>> {
        const S: &str = "SUIT_Envelope";
        if bytes.len() > limits.max_envelope_size {
            return Err(Error::Limit {
                what: "envelope size",
                limit: limits.max_envelope_size as u64,
                actual: bytes.len() as u64,
            });
        }
        let mut d = Decoder::new(bytes, &limits.cbor);
        if d.peek_major()? == 6 {
            let tag = d.tag()?;
            if tag != TAG_ENVELOPE {
                return Err(structure(S, format!("tag {tag}, expected 107")));
            }
        }
        let n = d.map_len()?;
        let mut keys = Vec::new();
        let mut auth = None;
        let mut manifest = None;
        let mut severed = Vec::new();
        let mut integrated = Vec::new();
        for _ in 0..n {
            let key_start = d.position();
            if d.peek_major()? == 3 {
                let name = d.text()?;
                d.check_key(&mut keys, key_start)?;
                integrated.push((name, d.bytes()?));
                continue;
            }
            let k = d.int()?;
            d.check_key(&mut keys, key_start)?;
            match k {
                ENV_AUTH => auth = Some(d.bytes()?),
                ENV_MANIFEST => manifest = Some(d.bytes_with_raw()?),
                manifest::element::PAYLOAD_FETCH
                | manifest::element::INSTALL
                | manifest::element::TEXT => {
                    let (content, wrapped) = d.bytes_with_raw()?;
                    severed.push(SeveredElement {
                        key: k,
                        wrapped,
                        content,
                    });
                }
                other => return Err(structure(S, format!("unknown envelope element {other}"))),
            }
        }
        d.finish()?;
        let auth = auth.ok_or_else(|| structure(S, "missing authentication wrapper (2)"))?;
        let (manifest, manifest_wrapped) =
            manifest.ok_or_else(|| structure(S, "missing manifest (3)"))?;

        const A: &str = "SUIT_Authentication";
        let mut a = Decoder::new(auth, &limits.cbor);
        let count = a.array_len()?;
        if count < 2 {
            return Err(structure(
                A,
                "needs the manifest digest and at least one signature",
            ));
        }
        if count - 1 > limits.max_signatures {
            return Err(Error::Limit {
                what: "signatures",
                limit: limits.max_signatures as u64,
                actual: (count - 1) as u64,
            });
        }
        let digest_bytes = a.bytes()?;
        let digest = SuitDigest::from_cbor(digest_bytes, &limits.cbor)?;
        let mut signatures = Vec::with_capacity(count - 1);
        for _ in 1..count {
            let block = a.bytes()?;
            if !block.starts_with(&[0xd2]) {
                return Err(structure(
                    A,
                    "only COSE_Sign1_Tagged authentication blocks are supported",
                ));
            }
            signatures.push(CoseSign1::parse(block, &limits.cbor)?);
        }
        a.finish()?;
        Ok(Envelope {
            digest_bytes,
            digest,
            signatures,
            manifest_wrapped,
            manifest,
            severed,
            integrated,
        })
    }

    /// The manifest digest claimed by the authentication wrapper.
    pub fn claimed_digest(&self) -> &SuitDigest {
        &self.digest
    }

    /// The signatures (not yet verified).
    pub fn signatures(&self) -> &[CoseSign1<'a>] {
        &self.signatures
    }

    /// The received manifest bytes (content of the manifest bstr).
    pub fn manifest_bytes(&self) -> &'a [u8] {
        self.manifest
    }

    /// Severed members present in the envelope.
    pub fn severed(&self) -> &[SeveredElement<'a>] {
        &self.severed
    }

    /// Integrated payloads (`tstr => bstr`).
    pub fn integrated_payloads(&self) -> &[(&'a str, &'a [u8])] {
        &self.integrated
    }

    /// Whether the digest in the authentication wrapper matches the received bstr-wrapped
    /// manifest.
    pub fn manifest_digest_matches(&self) -> bool {
        SuitDigest::of(self.manifest_wrapped) == self.digest
    }
}

/// A value that passed authentication. It can only be created by this crate's verifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<T> {
    inner: T,
    digest: SuitDigest,
    signers: Vec<KeyId>,
    /// Severed members supplied in the envelope, decoded after their digests matched.
    severed: Resolved,
}

impl<T> Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> Verified<T> {
    /// The authenticated value.
    pub fn into_inner(self) -> T {
        self.inner
    }

    /// The manifest digest the signatures cover.
    pub fn manifest_digest(&self) -> &SuitDigest {
        &self.digest
    }

    /// The distinct trusted keys whose signatures verified.
    pub fn signers(&self) -> &[KeyId] {
        &self.signers
    }
}

/// What a device must check the image against, from a verified manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageRequirement {
    /// The manifest's sequence number.
    pub sequence_number: u64,
    /// Expected SHA-256 of the image.
    pub digest: SuitDigest,
    /// Exact image size in bytes.
    pub size: u64,
    /// Where to fetch it, if the manifest says.
    pub uri: Option<String>,
}

/// The device-side facts an update is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceProfile {
    /// The device's vendor identifier.
    pub vendor_id: Uuid,
    /// The device's class identifier.
    pub class_id: Uuid,
    /// The sequence number of the installed (committed) manifest.
    pub installed_sequence: u64,
    /// Largest image the device can store, in bytes.
    pub max_image_size: u64,
}

impl Verified<Manifest> {
    /// The install sequence, inline or from the (digest-checked) envelope.
    pub fn install(&self) -> Option<&CommandSequence> {
        inline_or(&self.inner.install, &self.severed.install)
    }

    /// The payload-fetch sequence, inline or from the (digest-checked) envelope.
    pub fn payload_fetch(&self) -> Option<&CommandSequence> {
        inline_or(&self.inner.payload_fetch, &self.severed.payload_fetch)
    }

    /// The text map, inline or from the (digest-checked) envelope.
    pub fn text(&self) -> Option<&Value> {
        inline_or(&self.inner.text, &self.severed.text)
    }

    /// Parameters of component 0 after the shared, payload-fetch and install sequences.
    pub fn parameters(&self) -> Result<ComponentParameters> {
        let extra: Vec<&CommandSequence> = self
            .payload_fetch()
            .into_iter()
            .chain(self.install())
            .collect();
        self.inner.component_parameters(0, &extra)
    }

    /// Anti-rollback: the sequence number must be strictly greater than `installed`.
    pub fn check_sequence(&self, installed: u64) -> Result<()> {
        if self.inner.sequence_number <= installed {
            return Err(Error::Rollback {
                offered: self.inner.sequence_number,
                installed,
            });
        }
        Ok(())
    }

    /// The manifest's vendor and class IDs must equal the device's.
    pub fn check_identity(&self, vendor_id: &Uuid, class_id: &Uuid) -> Result<()> {
        let p = self.parameters()?;
        for (which, found, expected) in [
            ("vendor", p.vendor_id, vendor_id),
            ("class", p.class_id, class_id),
        ] {
            if found.as_ref() != Some(expected) {
                return Err(Error::Incompatible {
                    which,
                    found: found.map_or_else(|| "absent".to_owned(), |u| u.to_string()),
                    expected: expected.to_string(),
                });
            }
        }
        Ok(())
    }

    /// The manifest's expiry (thingkit-expires, unix seconds), if it carries one.
    pub fn expires(&self) -> Option<u64> {
        self.inner.expires
    }

    /// Freshness: fails with [`Error::Expired`] if the manifest carries an expiry and
    /// `now >= expires` (unix seconds, supplied by the caller). A manifest without expiry passes.
    pub fn check_expiry(&self, now: u64) -> Result<()> {
        check_expiry("envelope", self.inner.expires, now)
    }

    /// The image digest and size (and URI), refusing a declared size above `max_image_size`.
    pub fn image_requirement(&self, max_image_size: u64) -> Result<ImageRequirement> {
        let p = self.parameters()?;
        let digest = p
            .image_digest
            .ok_or(Error::MissingParameter("image-digest"))?;
        let size = p.image_size.ok_or(Error::MissingParameter("image-size"))?;
        if size > max_image_size {
            return Err(Error::Limit {
                what: "declared image size",
                limit: max_image_size,
                actual: size,
            });
        }
        Ok(ImageRequirement {
            sequence_number: self.inner.sequence_number,
            digest,
            size,
            uri: p.uri,
        })
    }

    /// All device checks: sequence, vendor, class, size. Returns what the image must match.
    pub fn check(&self, device: &DeviceProfile) -> Result<ImageRequirement> {
        self.check_sequence(device.installed_sequence)?;
        self.check_identity(&device.vendor_id, &device.class_id)?;
        self.image_requirement(device.max_image_size)
    }
}

/// `Err(Expired)` if `expires` is set and `now >= expires`.
pub(crate) fn check_expiry(what: &'static str, expires: Option<u64>, now: u64) -> Result<()> {
    match expires {
        Some(expires) if now >= expires => Err(Error::Expired { what, expires, now }),
        _ => Ok(()),
    }
}

/// Verifies envelopes against a trust-anchor set.
///
/// Only the set's *release* keys ([`TrustAnchors::keys`]) count for firmware; its root keys
/// (which sign rotations) never do.
///
/// **Freshness.** [`Verifier::verify_at`] takes the current time (unix seconds) from the caller
/// and refuses, with [`Error::Expired`], an envelope whose manifest carries a thingkit-expires
/// member at or before `now`, and *every* envelope while the trust-anchor set itself is expired
/// (a device frozen on a stale set sees the expiry named, not a silent "no update").
/// An envelope without expiry is accepted unless [`Verifier::with_require_expiry`] is set.
/// [`Verifier::verify`] has no time: it accepts only envelopes and trust sets that carry no expiry
/// and refuses the others with [`Error::TimeRequired`] (fail closed).
#[derive(Debug, Clone)]
pub struct Verifier {
    trust: TrustAnchors,
    limits: EnvelopeLimits,
    require_expiry: bool,
}

impl Verifier {
    /// A verifier with default [`EnvelopeLimits`], accepting envelopes without expiry.
    pub fn new(trust: TrustAnchors) -> Verifier {
        Verifier {
            trust,
            limits: EnvelopeLimits::default(),
            require_expiry: false,
        }
    }

    /// Policy: with `true`, an envelope whose manifest carries no thingkit-expires member is
    /// refused with [`Error::MissingExpiry`]. Default `false` (such envelopes never expire).
    pub fn with_require_expiry(mut self, require_expiry: bool) -> Verifier {
        self.require_expiry = require_expiry;
        self
    }

    /// Whether envelopes must carry an expiry.
    pub fn requires_expiry(&self) -> bool {
        self.require_expiry
    }

    /// Replaces the limits.
    pub fn with_limits(mut self, limits: EnvelopeLimits) -> Verifier {
        self.limits = limits;
        self
    }

    /// The trust anchors in use.
    pub fn trust(&self) -> &TrustAnchors {
        &self.trust
    }

    /// Authenticates an envelope, then decodes its manifest.
    ///
    /// Order (a security property):
    /// 1. parse the envelope and authentication wrapper structurally (the manifest stays bytes);
    /// 2. check the SHA-256 of the *received* bstr-wrapped manifest against the wrapper's digest;
    /// 3. verify the COSE_Sign1 signatures over the *received* digest bytes and require the
    ///    threshold of distinct trusted keys;
    /// 4. only then decode the manifest, and check each severed member present in the envelope
    ///    against the digest the manifest holds for it.
    ///
    /// There is no time here: an expiring trust-anchor set or manifest is refused with
    /// [`Error::TimeRequired`], and with [`Verifier::with_require_expiry`] every envelope is
    /// refused. Devices with a clock use [`Verifier::verify_at`].
    pub fn verify(&self, envelope: &[u8]) -> Result<Verified<Manifest>> {
        if self.trust.expires().is_some() {
            return Err(Error::TimeRequired {
                what: "trust-anchor set",
            });
        }
        let verified = self.authenticate(envelope)?;
        match verified.inner.expires {
            Some(_) => Err(Error::TimeRequired { what: "envelope" }),
            None if self.require_expiry => Err(Error::MissingExpiry { what: "envelope" }),
            None => Ok(verified),
        }
    }

    /// [`Verifier::verify`] at time `now` (unix seconds, from the caller; the crate reads no
    /// clock): first the trust-anchor set must not be expired, then the envelope is
    /// authenticated, then its expiry (if any, or required by policy) must be after `now`.
    /// Expired means `now >= expires`.
    pub fn verify_at(&self, envelope: &[u8], now: u64) -> Result<Verified<Manifest>> {
        self.trust.check_expiry(now)?;
        let verified = self.authenticate(envelope)?;
        if verified.inner.expires.is_none() && self.require_expiry {
            return Err(Error::MissingExpiry { what: "envelope" });
        }
        verified.check_expiry(now)?;
        Ok(verified)
    }

    fn authenticate(&self, envelope: &[u8]) -> Result<Verified<Manifest>> {
        let env = Envelope::parse(envelope, &self.limits)?;
        if !env.manifest_digest_matches() {
            return Err(Error::ManifestDigestMismatch);
        }
        let signers = self.trust.require(&env.signatures, env.digest_bytes, &[])?;
        let manifest = Manifest::from_cbor(env.manifest, &self.limits.cbor)?;
        let severed = resolve_severed(&manifest, &env, &self.limits.cbor)?;
        Ok(Verified {
            inner: manifest,
            digest: env.digest,
            signers,
            severed,
        })
    }
}

/// Severed members decoded from the envelope (inline members stay in the manifest).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Resolved {
    payload_fetch: Option<CommandSequence>,
    install: Option<CommandSequence>,
    text: Option<Value>,
}

fn inline_or<'a, T>(member: &'a Option<Severable<T>>, severed: &'a Option<T>) -> Option<&'a T> {
    match member {
        Some(Severable::Inline(v)) => Some(v),
        _ => severed.as_ref(),
    }
}

fn resolve_severed(
    manifest: &Manifest,
    env: &Envelope<'_>,
    limits: &CborLimits,
) -> Result<Resolved> {
    let find = |key: i64| env.severed.iter().find(|e| e.key == key);
    let check = |key: i64, digest: Option<&SuitDigest>| -> Result<Option<&[u8]>> {
        match (find(key), digest) {
            (Some(e), Some(d)) if SuitDigest::of(e.wrapped) == *d => Ok(Some(e.content)),
            (Some(_), _) => Err(Error::SeverableDigestMismatch { key }),
            (None, _) => Ok(None),
        }
    };
    let seq = |key: i64,
               member: &Option<Severable<CommandSequence>>|
     -> Result<Option<CommandSequence>> {
        match member {
            Some(Severable::Inline(_)) => {
                if find(key).is_some() {
                    return Err(Error::SeverableDigestMismatch { key });
                }
                Ok(None)
            }
            Some(Severable::Digest(d)) => check(key, Some(d))?
                .map(|b| CommandSequence::from_cbor(b, limits))
                .transpose(),
            None => check(key, None).map(|_| None),
        }
    };
    let payload_fetch = seq(manifest::element::PAYLOAD_FETCH, &manifest.payload_fetch)?;
    let install = seq(manifest::element::INSTALL, &manifest.install)?;
    let text = match &manifest.text {
        Some(Severable::Inline(_)) => {
            if find(manifest::element::TEXT).is_some() {
                return Err(Error::SeverableDigestMismatch {
                    key: manifest::element::TEXT,
                });
            }
            None
        }
        Some(Severable::Digest(d)) => check(manifest::element::TEXT, Some(d))?
            .map(|b| cbor::decode(b, limits))
            .transpose()?,
        None => {
            check(manifest::element::TEXT, None)?;
            None
        }
    };
    Ok(Resolved {
        payload_fetch,
        install,
        text,
    })
}

/// Signs manifests into envelopes.
#[derive(Debug, Clone)]
pub struct EnvelopeBuilder {
    manifest: Manifest,
    sever_install: bool,
    sever_text: bool,
}

impl EnvelopeBuilder {
    /// An envelope for `manifest`.
    pub fn new(manifest: Manifest) -> EnvelopeBuilder {
        EnvelopeBuilder {
            manifest,
            sever_install: false,
            sever_text: false,
        }
    }

    /// Moves the install sequence out of the manifest into the envelope, leaving its digest.
    pub fn sever_install(mut self, yes: bool) -> Self {
        self.sever_install = yes;
        self
    }

    /// Moves the text out of the manifest into the envelope, leaving its digest.
    pub fn sever_text(mut self, yes: bool) -> Self {
        self.sever_text = yes;
        self
    }

    /// Produces the tagged envelope signed by every key in `keys` (one COSE_Sign1 each).
    pub fn sign(self, keys: &[&SigningKey]) -> Result<Vec<u8>> {
        if keys.is_empty() {
            return Err(Error::Key("at least one signing key is needed".into()));
        }
        let mut manifest = self.manifest;
        let mut severed: Vec<(i64, Vec<u8>)> = Vec::new();
        if self.sever_install
            && let Some(Severable::Inline(s)) = &manifest.install
        {
            let wrapped = Value::Bytes(s.to_cbor()).to_vec();
            manifest.install = Some(Severable::Digest(SuitDigest::of(&wrapped)));
            severed.push((manifest::element::INSTALL, wrapped));
        }
        if self.sever_text
            && let Some(Severable::Inline(t)) = &manifest.text
        {
            let wrapped = Value::Bytes(t.to_vec()).to_vec();
            manifest.text = Some(Severable::Digest(SuitDigest::of(&wrapped)));
            severed.push((manifest::element::TEXT, wrapped));
        }
        let manifest_wrapped = Value::Bytes(manifest.to_cbor()).to_vec();
        let digest_cbor = SuitDigest::of(&manifest_wrapped).to_cbor();
        let mut auth = Vec::new();
        cbor::write_head(&mut auth, 4, 1 + keys.len() as u64);
        cbor::write_bytes(&mut auth, &digest_cbor);
        for key in keys {
            cbor::write_bytes(&mut auth, &cose::sign_detached(key, &digest_cbor, &[])?);
        }
        let mut out = Vec::new();
        cbor::write_head(&mut out, 6, TAG_ENVELOPE);
        cbor::write_head(&mut out, 5, 2 + severed.len() as u64);
        Value::int(ENV_AUTH).encode(&mut out);
        cbor::write_bytes(&mut out, &auth);
        Value::int(ENV_MANIFEST).encode(&mut out);
        out.extend_from_slice(&manifest_wrapped);
        for (k, wrapped) in severed {
            Value::int(k).encode(&mut out);
            out.extend_from_slice(&wrapped);
        }
        Ok(out)
    }
}

/// An unauthenticated summary of an envelope, for display (`thingkit firmware inspect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The manifest's sequence number.
    pub sequence_number: u64,
    /// The digest the authentication wrapper claims.
    pub manifest_digest: SuitDigest,
    /// Whether that digest matches the manifest bytes.
    pub manifest_digest_matches: bool,
    /// The component identifiers.
    pub components: Vec<String>,
    /// Component 0's parameters.
    pub parameters: ComponentParameters,
    /// (algorithm, key id) of each signature.
    pub signatures: Vec<(Algorithm, Option<Vec<u8>>)>,
}

/// Decodes an envelope for display without authenticating it. Never base a decision on this.
pub fn inspect(envelope: &[u8], limits: &EnvelopeLimits) -> Result<Inspection> {
    let env = Envelope::parse(envelope, limits)?;
    let manifest = Manifest::from_cbor(env.manifest, &limits.cbor)?;
    let severed = resolve_severed(&manifest, &env, &limits.cbor)?;
    let extra: Vec<&CommandSequence> = inline_or(&manifest.payload_fetch, &severed.payload_fetch)
        .into_iter()
        .chain(inline_or(&manifest.install, &severed.install))
        .collect();
    Ok(Inspection {
        sequence_number: manifest.sequence_number,
        manifest_digest: env.digest,
        manifest_digest_matches: env.manifest_digest_matches(),
        components: manifest
            .common
            .components
            .iter()
            .map(ToString::to_string)
            .collect(),
        parameters: manifest.component_parameters(0, &extra)?,
        signatures: env
            .signatures
            .iter()
            .map(|s| (s.algorithm(), s.kid().map(<[u8]>::to_vec)))
            .collect(),
    })
}
