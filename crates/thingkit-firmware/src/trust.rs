//! Trust anchors; documented on [`TrustAnchors`].

use crate::cbor::{self, CborLimits, Decoder, Value};
use crate::cose::{self, CoseSign1};
use crate::error::{Error, Result, structure};
use crate::key::{KeyId, KeyType, PublicKey, SigningKey};

/// External AAD bound into every trust-set signature (domain separation from manifests).
pub const TRUST_SET_AAD: &[u8] = b"thingkit trust-anchor set v1";

/// Most keys a trust-anchor set may hold.
pub const MAX_TRUST_KEYS: usize = 64;

const CRV_P256: i64 = 1;
const CRV_ED25519: i64 = 6;

/// A versioned set of trusted keys in two roles, with thresholds and an expiry.
///
/// * **Release keys** ([`TrustAnchors::keys`], [`TrustAnchors::threshold`]) sign firmware
///   envelopes; a [`crate::Verifier`] counts only these.
/// * **Root keys** ([`TrustAnchors::root_keys`], [`TrustAnchors::root_threshold`]) sign
///   rotations of the set and nothing else. The two roles are disjoint: a set listing one key in
///   both is refused at construction, so a root key never verifies firmware and a release key
///   never signs a trust set (TUF's separation of the root role from the targets role).
/// * **Expiry** ([`TrustAnchors::expires`], unix seconds): from that second on the set verifies
///   no firmware ([`Error::Expired`] names it: a device frozen on a stale set finds out).
///
/// A set built with [`TrustAnchors::new`] or [`TrustAnchors::single`] has release keys only: it
/// verifies firmware but cannot be rotated (the factory set of a device that never rotates).
/// Add root keys with [`TrustAnchors::with_root_keys`] and an expiry with
/// [`TrustAnchors::with_expiry`].
///
/// A rotation from version N to N+1 is a *signed trust-anchor set*:
///
/// ```text
/// Signed_Trust_Set = [ body: bstr .cbor Trust_Set, signatures: [+ COSE_Sign1_Tagged] ]
/// Trust_Set = {
///   1: version uint, 2: release threshold uint, 3: release keys [+ [curve int, key bstr]],
///   ? 4: root threshold uint, ? 5: root keys [+ [curve int, key bstr]],   ; both or neither
///   ? 6: expires uint,                                                    ; unix seconds
/// }
/// ```
///
/// where each COSE_Sign1 has a detached payload (the body bytes) and the external AAD
/// [`TRUST_SET_AAD`] (so a manifest signature can never be replayed as a rotation). A
/// [`TrustStore`] applies a rotation only if it is signed by a threshold of distinct **root** keys
/// of the *current* set **and** a threshold of distinct root keys of the *new* set (TUF's root
/// rotation rule), its version is exactly current + 1, it names root keys and an expiry, and it
/// is not expired at the caller's time. Skips, replays and rollbacks are refused, and a key
/// dropped from the set is refused from the moment the new set is applied. Curves use COSE
/// identifiers (P-256 = 1, Ed25519 = 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustAnchors {
    version: u64,
    release: KeySet,
    root: Option<KeySet>,
    expires: Option<u64>,
}

/// Keys of one role with their threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeySet {
    threshold: usize,
    keys: Vec<PublicKey>,
    /// `keys[i].key_id()`, computed once.
    ids: Vec<KeyId>,
}

impl KeySet {
    fn new(what: &'static str, threshold: usize, keys: Vec<PublicKey>) -> Result<KeySet> {
        if keys.is_empty() || keys.len() > MAX_TRUST_KEYS {
            return Err(Error::Limit {
                what,
                limit: MAX_TRUST_KEYS as u64,
                actual: keys.len() as u64,
            });
        }
        if threshold == 0 || threshold > keys.len() {
            return Err(structure(
                "trust-anchor set",
                format!(
                    "{what} threshold {threshold} must be between 1 and {} (the number of keys)",
                    keys.len()
                ),
            ));
        }
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].contains(k) {
                return Err(structure(
                    "trust-anchor set",
                    format!("key {} listed twice", k.key_id()),
                ));
            }
        }
        let ids = keys.iter().map(PublicKey::key_id).collect();
        Ok(KeySet {
            threshold,
            keys,
            ids,
        })
    }

    fn require(
        &self,
        signatures: &[CoseSign1<'_>],
        payload: &[u8],
        external_aad: &[u8],
    ) -> Result<Vec<KeyId>> {
        let mut signed = vec![false; self.keys.len()];
        let ids = &self.ids;
        for sig in signatures {
            // A `kid` selects the one trusted key with that id; a `kid` naming no trusted key
            // makes the signature count for nothing. Without a `kid`, every key is tried.
            let (first, end) = match sig.kid() {
                Some(kid) => match ids.iter().position(|id| id.0[..] == *kid) {
                    Some(i) => (i, i + 1),
                    None => (0, 0),
                },
                None => (0, self.keys.len()),
            };
            let pairs = signed[first..end].iter_mut().zip(&self.keys[first..end]);
            for (done, key) in pairs {
                if !*done && sig.verify(key, payload, external_aad) {
                    *done = true;
                    break;
                }
            }
        }
        let valid: Vec<KeyId> = ids
            .iter()
            .zip(&signed)
            .filter(|(_, s)| **s)
            .map(|(id, _)| *id)
            .collect();
        if valid.len() < self.threshold {
            return Err(Error::BelowThreshold {
                valid: valid.len(),
                threshold: self.threshold,
            });
        }
        Ok(valid)
    }

    fn to_value(&self) -> Value {
        Value::Array(
            self.keys
                .iter()
                .map(|k| {
                    let crv = match k.key_type() {
                        KeyType::P256 => CRV_P256,
                        KeyType::Ed25519 => CRV_ED25519,
                    };
                    Value::Array(vec![Value::int(crv), Value::Bytes(k.raw().to_vec())])
                })
                .collect(),
        )
    }
}

fn keys_from_value(keys: &[Value]) -> Result<Vec<PublicKey>> {
    const S: &str = "Trust_Set";
    if keys.len() > MAX_TRUST_KEYS {
        return Err(Error::Limit {
            what: "trust-anchor keys",
            limit: MAX_TRUST_KEYS as u64,
            actual: keys.len() as u64,
        });
    }
    keys.iter()
        .map(|entry| {
            let parts = entry
                .as_array()
                .ok_or_else(|| structure(S, "key entry must be an array"))?;
            match parts {
                [crv, raw] => {
                    let raw = raw
                        .as_bytes()
                        .ok_or_else(|| structure(S, "key must be a bstr"))?;
                    match crv.as_i64() {
                        Some(CRV_P256) => PublicKey::from_raw(KeyType::P256, raw),
                        Some(CRV_ED25519) => PublicKey::from_raw(KeyType::Ed25519, raw),
                        _ => Err(structure(S, "unsupported curve")),
                    }
                }
                _ => Err(structure(S, "key entry must be [curve, key]")),
            }
        })
        .collect()
}

impl TrustAnchors {
    /// A trust-anchor set of release keys only (no root keys: it cannot be rotated; no expiry).
    /// Fails unless `1 <= threshold <= keys.len() <= MAX_TRUST_KEYS` and the keys are distinct.
    pub fn new(version: u64, threshold: usize, keys: Vec<PublicKey>) -> Result<TrustAnchors> {
        Ok(TrustAnchors {
            version,
            release: KeySet::new("trust-anchor keys", threshold, keys)?,
            root: None,
            expires: None,
        })
    }

    /// A version-0 set with one release key, threshold 1, no root keys and no expiry.
    pub fn single(key: PublicKey) -> TrustAnchors {
        TrustAnchors {
            version: 0,
            release: KeySet {
                threshold: 1,
                ids: vec![key.key_id()],
                keys: vec![key],
            },
            root: None,
            expires: None,
        }
    }

    /// This set with root (rotation) keys: `threshold` distinct ones must sign the next set.
    /// Fails if a root key is also a release key (the roles are disjoint), or on the same rules
    /// as [`TrustAnchors::new`].
    pub fn with_root_keys(mut self, threshold: usize, keys: Vec<PublicKey>) -> Result<Self> {
        let root = KeySet::new("trust-anchor root keys", threshold, keys)?;
        if root.keys.iter().any(|k| self.release.keys.contains(k)) {
            return Err(Error::KeyRole(
                "a key is both a root (rotation) key and a release (firmware) key",
            ));
        }
        self.root = Some(root);
        Ok(self)
    }

    /// This set with an expiry (unix seconds): from `expires` on, it verifies no firmware.
    pub fn with_expiry(mut self, expires: u64) -> Self {
        self.expires = Some(expires);
        self
    }

    /// The set's version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Distinct release keys required on a firmware envelope.
    pub fn threshold(&self) -> usize {
        self.release.threshold
    }

    /// The release keys (they sign firmware).
    pub fn keys(&self) -> &[PublicKey] {
        &self.release.keys
    }

    /// The root keys (they sign rotations); empty for a set that cannot be rotated.
    pub fn root_keys(&self) -> &[PublicKey] {
        self.root.as_ref().map_or(&[], |r| &r.keys)
    }

    /// Distinct root keys required on a rotation; `None` for a set that cannot be rotated.
    pub fn root_threshold(&self) -> Option<usize> {
        self.root.as_ref().map(|r| r.threshold)
    }

    /// The set's expiry, unix seconds.
    pub fn expires(&self) -> Option<u64> {
        self.expires
    }

    /// Fails with [`Error::Expired`] if the set carries an expiry and `now >= expires`.
    pub fn check_expiry(&self, now: u64) -> Result<()> {
        crate::envelope::check_expiry("trust-anchor set", self.expires, now)
    }

    /// Verifies `signatures` over `payload` against the **release** keys and returns the ids of
    /// the distinct release keys that signed; fails with [`Error::BelowThreshold`] if there are
    /// fewer than the threshold.
    ///
    /// Several signatures by the same key count once. A `kid` header selects the trusted key to
    /// try (a `kid` that names no trusted key counts for nothing); the signature itself is always
    /// checked, so a `kid` never makes an untrusted key count.
    pub fn require(
        &self,
        signatures: &[CoseSign1<'_>],
        payload: &[u8],
        external_aad: &[u8],
    ) -> Result<Vec<KeyId>> {
        self.release.require(signatures, payload, external_aad)
    }

    /// The deterministic CBOR encoding of this set (the `Trust_Set` body).
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut entries = vec![
            (Value::int(1), Value::Unsigned(self.version)),
            (
                Value::int(2),
                Value::Unsigned(self.release.threshold as u64),
            ),
            (Value::int(3), self.release.to_value()),
        ];
        if let Some(root) = &self.root {
            entries.push((Value::int(4), Value::Unsigned(root.threshold as u64)));
            entries.push((Value::int(5), root.to_value()));
        }
        if let Some(expires) = self.expires {
            entries.push((Value::int(6), Value::Unsigned(expires)));
        }
        Value::Map(entries).to_vec()
    }

    /// Decodes a `Trust_Set` body (strictly).
    pub fn from_cbor(bytes: &[u8], limits: &CborLimits) -> Result<TrustAnchors> {
        const S: &str = "Trust_Set";
        let v = cbor::decode(bytes, limits)?;
        let map = v.as_map().ok_or_else(|| structure(S, "must be a map"))?;
        let (mut version, mut threshold, mut keys) = (None, None, None);
        let (mut root_threshold, mut root_keys, mut expires) = (None, None, None);
        let uint = |val: &Value, what: &str| {
            val.as_u64()
                .ok_or_else(|| structure(S, format!("{what} must be an unsigned integer")))
        };
        let array = |val: &'_ Value, what: &str| -> Result<Vec<PublicKey>> {
            keys_from_value(
                val.as_array()
                    .ok_or_else(|| structure(S, format!("{what} must be an array")))?,
            )
        };
        for (k, val) in map {
            match k.as_i64() {
                Some(1) => version = Some(uint(val, "version")?),
                Some(2) => threshold = Some(uint(val, "threshold")?),
                Some(3) => keys = Some(array(val, "keys")?),
                Some(4) => root_threshold = Some(uint(val, "root threshold")?),
                Some(5) => root_keys = Some(array(val, "root keys")?),
                Some(6) => expires = Some(uint(val, "expires")?),
                _ => return Err(structure(S, "unknown key")),
            }
        }
        let version = version.ok_or_else(|| structure(S, "missing version (1)"))?;
        let threshold = threshold.ok_or_else(|| structure(S, "missing threshold (2)"))?;
        let keys = keys.ok_or_else(|| structure(S, "missing keys (3)"))?;
        let to_usize = |t: u64| usize::try_from(t).map_err(|_| structure(S, "threshold too large"));
        let mut set = TrustAnchors::new(version, to_usize(threshold)?, keys)?;
        match (root_threshold, root_keys) {
            (Some(t), Some(k)) => set = set.with_root_keys(to_usize(t)?, k)?,
            (None, None) => {}
            _ => {
                return Err(structure(
                    S,
                    "root threshold (4) and root keys (5) go together",
                ));
            }
        }
        set.expires = expires;
        Ok(set)
    }

    /// Produces a `Signed_Trust_Set` for this (new) set, signed by `signers` — which must include
    /// a threshold of the previous set's root keys and a threshold of this set's root keys.
    pub fn sign(&self, signers: &[&SigningKey]) -> Result<Vec<u8>> {
        let body = self.to_cbor();
        let mut out = Vec::new();
        cbor::write_head(&mut out, 4, 2);
        cbor::write_bytes(&mut out, &body);
        cbor::write_head(&mut out, 4, signers.len() as u64);
        for key in signers {
            out.extend_from_slice(&cose::sign_detached(key, &body, TRUST_SET_AAD)?);
        }
        Ok(out)
    }
}

/// The device side of key rotation: the currently applied trust-anchor set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustStore {
    current: TrustAnchors,
    limits: CborLimits,
}

impl TrustStore {
    /// A store holding the provisioned (factory) set.
    pub fn new(initial: TrustAnchors) -> TrustStore {
        TrustStore {
            current: initial,
            limits: CborLimits::default(),
        }
    }

    /// The set in force.
    pub fn current(&self) -> &TrustAnchors {
        &self.current
    }

    /// A manifest verifier over the set in force. Build a new one after every
    /// [`TrustStore::apply`]: keys dropped by the rotation no longer count from then on.
    pub fn verifier(&self) -> crate::Verifier {
        crate::Verifier::new(self.current.clone())
    }

    /// Verifies and applies a `Signed_Trust_Set` at time `now` (unix seconds, from the caller).
    /// On any error the current set is unchanged.
    ///
    /// Checks, in order: the signatures meet the threshold of the *current* root keys (a current
    /// set without root keys cannot be rotated: [`Error::KeyRole`]); the body decodes; its
    /// version is exactly current + 1 ([`Error::TrustSetOrder`]); it names root keys and an
    /// expiry; it is not expired at `now` ([`Error::Expired`]); the signatures meet the threshold
    /// of its *new* root keys. An expired current set can still be rotated: that is how a device
    /// frozen past the expiry recovers.
    pub fn apply(&mut self, signed: &[u8], now: u64) -> Result<&TrustAnchors> {
        const S: &str = "Signed_Trust_Set";
        let current_root = self
            .current
            .root
            .as_ref()
            .ok_or(Error::KeyRole("the current set names no root keys"))?;
        let mut d = Decoder::new(signed, &self.limits);
        if d.array_len()? != 2 {
            return Err(structure(S, "must be [body, signatures]"));
        }
        let body = d.bytes()?;
        let n = d.array_len()?;
        if n > MAX_TRUST_KEYS * 2 {
            return Err(Error::Limit {
                what: "trust-set signatures",
                limit: (MAX_TRUST_KEYS * 2) as u64,
                actual: n as u64,
            });
        }
        let mut sigs = Vec::with_capacity(n);
        for _ in 0..n {
            let raw = d.raw_value()?;
            sigs.push(CoseSign1::parse(raw, &self.limits)?);
        }
        d.finish()?;
        // Authenticate against the current root keys first; only then interpret the body.
        current_root.require(&sigs, body, TRUST_SET_AAD)?;
        let next = TrustAnchors::from_cbor(body, &self.limits)?;
        let current = self.current.version;
        let reason = if next.version == current {
            Some("replay")
        } else if next.version < current {
            Some("rollback")
        } else if next.version != current.saturating_add(1) {
            Some("skip")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(Error::TrustSetOrder {
                offered: next.version,
                current,
                reason,
            });
        }
        let Some(next_root) = &next.root else {
            return Err(Error::KeyRole("a rotated set must name root keys"));
        };
        if next.expires.is_none() {
            return Err(Error::MissingExpiry {
                what: "trust-anchor set",
            });
        }
        next.check_expiry(now)?;
        next_root.require(&sigs, body, TRUST_SET_AAD)?;
        self.current = next;
        Ok(&self.current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<SigningKey> {
        (0..n)
            .map(|i| {
                SigningKey::generate(if i % 2 == 0 {
                    KeyType::P256
                } else {
                    KeyType::Ed25519
                })
                .unwrap()
            })
            .collect()
    }

    const NOW: u64 = 1_700_000_000;

    fn pks(ks: &[&SigningKey]) -> Vec<PublicKey> {
        ks.iter().map(|k| k.public_key().clone()).collect()
    }

    /// A set whose root keys are `ks` (with `threshold`) and whose one release key is fresh.
    fn set(version: u64, threshold: usize, ks: &[&SigningKey]) -> TrustAnchors {
        let release = SigningKey::generate(KeyType::Ed25519).unwrap();
        TrustAnchors::new(version, 1, vec![release.public_key().clone()])
            .unwrap()
            .with_root_keys(threshold, pks(ks))
            .unwrap()
            .with_expiry(NOW + 3600)
    }

    #[test]
    fn applies_rotation_signed_by_old_and_new_thresholds() {
        let k = keys(4);
        let mut store = TrustStore::new(set(0, 2, &[&k[0], &k[1], &k[2]]));
        let v1 = set(1, 1, &[&k[1], &k[3]]);
        let signed = v1.sign(&[&k[0], &k[1], &k[3]]).unwrap();
        assert_eq!(store.apply(&signed, NOW).unwrap().version(), 1);
        assert_eq!(store.current(), &v1);
    }

    #[test]
    fn refuses_rotation_without_new_key_signature() {
        let k = keys(3);
        let mut store = TrustStore::new(set(0, 1, &[&k[0]]));
        let v1 = set(1, 1, &[&k[1], &k[2]]);
        let signed = v1.sign(&[&k[0]]).unwrap();
        assert!(matches!(
            store.apply(&signed, NOW),
            Err(Error::BelowThreshold {
                valid: 0,
                threshold: 1
            })
        ));
        assert_eq!(store.current().version(), 0);
    }

    #[test]
    fn refuses_rotation_below_old_threshold() {
        let k = keys(3);
        let mut store = TrustStore::new(set(0, 2, &[&k[0], &k[1]]));
        let v1 = set(1, 1, &[&k[2]]);
        let signed = v1.sign(&[&k[0], &k[0], &k[2]]).unwrap();
        assert!(matches!(
            store.apply(&signed, NOW),
            Err(Error::BelowThreshold {
                valid: 1,
                threshold: 2
            })
        ));
    }

    #[test]
    fn refuses_skip_replay_and_rollback() {
        let k = keys(2);
        let mut store = TrustStore::new(set(5, 1, &[&k[0]]));
        for (v, reason) in [(7, "skip"), (5, "replay"), (4, "rollback")] {
            let signed = set(v, 1, &[&k[0], &k[1]]).sign(&[&k[0], &k[1]]).unwrap();
            match store.apply(&signed, NOW) {
                Err(Error::TrustSetOrder { reason: r, .. }) => assert_eq!(r, reason),
                other => panic!("expected {reason}, got {other:?}"),
            }
        }
        assert_eq!(store.current().version(), 5);
    }

    #[test]
    fn revoked_key_is_refused_after_rotation() {
        let k = keys(2);
        let mut store = TrustStore::new(set(0, 1, &[&k[0], &k[1]]));
        let v1 = set(1, 1, &[&k[1]]);
        store
            .apply(&v1.sign(&[&k[0], &k[1]]).unwrap(), NOW)
            .unwrap();
        // k[0] was dropped: a v2 signed only by k[0] is refused.
        let v2 = set(2, 1, &[&k[0]]);
        assert!(matches!(
            store.apply(&v2.sign(&[&k[0]]).unwrap(), NOW),
            Err(Error::BelowThreshold { .. })
        ));
    }

    #[test]
    fn trust_set_cbor_round_trips() {
        let k = keys(3);
        let s = set(9, 2, &[&k[0], &k[1], &k[2]]);
        assert_eq!(
            TrustAnchors::from_cbor(&s.to_cbor(), &CborLimits::default()).unwrap(),
            s
        );
        let plain = TrustAnchors::new(3, 1, pks(&[&k[0]])).unwrap();
        assert_eq!(
            TrustAnchors::from_cbor(&plain.to_cbor(), &CborLimits::default()).unwrap(),
            plain
        );
    }

    #[test]
    fn refuses_a_key_in_both_roles() {
        let k = keys(2);
        let err = TrustAnchors::new(0, 1, pks(&[&k[0], &k[1]]))
            .unwrap()
            .with_root_keys(1, pks(&[&k[1]]))
            .unwrap_err();
        assert!(matches!(err, Error::KeyRole(_)));
    }

    #[test]
    fn a_set_without_root_keys_cannot_be_rotated() {
        let k = keys(1);
        let mut store = TrustStore::new(TrustAnchors::single(k[0].public_key().clone()));
        let signed = set(1, 1, &[&k[0]]).sign(&[&k[0]]).unwrap();
        assert!(matches!(store.apply(&signed, NOW), Err(Error::KeyRole(_))));
    }

    #[test]
    fn rejects_invalid_thresholds_and_duplicate_keys() {
        let k = keys(1);
        let pk = k[0].public_key().clone();
        assert!(TrustAnchors::new(0, 0, vec![pk.clone()]).is_err());
        assert!(TrustAnchors::new(0, 2, vec![pk.clone()]).is_err());
        assert!(TrustAnchors::new(0, 1, vec![pk.clone(), pk]).is_err());
    }
}
