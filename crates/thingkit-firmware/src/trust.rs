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

/// A versioned set of trusted public keys and the number of distinct keys that must sign.
///
/// Trust anchors: the set of keys a device accepts, with a threshold and a version, and signed
/// rotations of that set.
///
/// A rotation from version N to N+1 is a *signed trust-anchor set*:
///
/// ```text
/// Signed_Trust_Set = [ body: bstr .cbor Trust_Set, signatures: [+ COSE_Sign1_Tagged] ]
/// Trust_Set = { 1: version uint, 2: threshold uint, 3: [+ [curve int, key bstr]] }
/// ```
///
/// where each COSE_Sign1 has a detached payload (the body bytes) and the external AAD
/// [`TRUST_SET_AAD`] (so a manifest signature can never be replayed as a rotation). A
/// [`TrustStore`] applies a rotation only if its version is exactly current + 1 and it is signed by
/// a threshold of distinct keys of the *current* set **and** a threshold of distinct keys of the
/// *new* set. Skips, replays and rollbacks are refused, and a key dropped from the set is refused
/// from the moment the new set is applied. Curves use COSE identifiers (P-256 = 1, Ed25519 = 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustAnchors {
    version: u64,
    threshold: usize,
    keys: Vec<PublicKey>,
    /// `keys[i].key_id()`, computed once.
    ids: Vec<KeyId>,
}

impl TrustAnchors {
    /// A trust-anchor set. Fails unless `1 <= threshold <= keys.len() <= MAX_TRUST_KEYS` and the
    /// keys are distinct.
    pub fn new(version: u64, threshold: usize, keys: Vec<PublicKey>) -> Result<TrustAnchors> {
        if keys.is_empty() || keys.len() > MAX_TRUST_KEYS {
            return Err(Error::Limit {
                what: "trust-anchor keys",
                limit: MAX_TRUST_KEYS as u64,
                actual: keys.len() as u64,
            });
        }
        if threshold == 0 || threshold > keys.len() {
            return Err(structure(
                "trust-anchor set",
                format!(
                    "threshold {threshold} must be between 1 and {} (the number of keys)",
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
        Ok(TrustAnchors {
            version,
            threshold,
            keys,
            ids,
        })
    }

    /// A version-0 set with one key and threshold 1.
    pub fn single(key: PublicKey) -> TrustAnchors {
        TrustAnchors {
            version: 0,
            threshold: 1,
            ids: vec![key.key_id()],
            keys: vec![key],
        }
    }

    /// The set's version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Distinct keys required.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The trusted keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Verifies `signatures` over `payload` and returns the ids of the distinct trusted keys that
    /// signed; fails with [`Error::BelowThreshold`] if there are fewer than the threshold.
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

    /// The deterministic CBOR encoding of this set (the `Trust_Set` body).
    pub fn to_cbor(&self) -> Vec<u8> {
        let keys = self
            .keys
            .iter()
            .map(|k| {
                let crv = match k.key_type() {
                    KeyType::P256 => CRV_P256,
                    KeyType::Ed25519 => CRV_ED25519,
                };
                Value::Array(vec![Value::int(crv), Value::Bytes(k.raw().to_vec())])
            })
            .collect();
        Value::Map(vec![
            (Value::int(1), Value::Unsigned(self.version)),
            (Value::int(2), Value::Unsigned(self.threshold as u64)),
            (Value::int(3), Value::Array(keys)),
        ])
        .to_vec()
    }

    /// Decodes a `Trust_Set` body (strictly).
    pub fn from_cbor(bytes: &[u8], limits: &CborLimits) -> Result<TrustAnchors> {
        const S: &str = "Trust_Set";
        let v = cbor::decode(bytes, limits)?;
        let map = v.as_map().ok_or_else(|| structure(S, "must be a map"))?;
        let (mut version, mut threshold, mut keys) = (None, None, None);
        for (k, val) in map {
            match k.as_i64() {
                Some(1) => version = val.as_u64(),
                Some(2) => threshold = val.as_u64(),
                Some(3) => keys = val.as_array(),
                _ => return Err(structure(S, "unknown key")),
            }
        }
        let version = version.ok_or_else(|| structure(S, "missing version (1)"))?;
        let threshold = threshold.ok_or_else(|| structure(S, "missing threshold (2)"))?;
        let keys = keys.ok_or_else(|| structure(S, "missing keys (3)"))?;
        if keys.len() > MAX_TRUST_KEYS {
            return Err(Error::Limit {
                what: "trust-anchor keys",
                limit: MAX_TRUST_KEYS as u64,
                actual: keys.len() as u64,
            });
        }
        let keys = keys
            .iter()
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
            .collect::<Result<Vec<_>>>()?;
        let threshold =
            usize::try_from(threshold).map_err(|_| structure(S, "threshold too large"))?;
        TrustAnchors::new(version, threshold, keys)
    }

    /// Produces a `Signed_Trust_Set` for this (new) set, signed by `signers` — which must include
    /// a threshold of the previous set's keys and a threshold of this set's keys.
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

    /// Verifies and applies a `Signed_Trust_Set`. On any error the current set is unchanged.
    pub fn apply(&mut self, signed: &[u8]) -> Result<&TrustAnchors> {
        const S: &str = "Signed_Trust_Set";
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
        // Authenticate against the current set first; only then interpret the body.
        self.current.require(&sigs, body, TRUST_SET_AAD)?;
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
        next.require(&sigs, body, TRUST_SET_AAD)?;
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

    fn set(version: u64, threshold: usize, ks: &[&SigningKey]) -> TrustAnchors {
        TrustAnchors::new(
            version,
            threshold,
            ks.iter().map(|k| k.public_key().clone()).collect(),
        )
        .unwrap()
    }

    #[test]
    fn applies_rotation_signed_by_old_and_new_thresholds() {
        let k = keys(4);
        let mut store = TrustStore::new(set(0, 2, &[&k[0], &k[1], &k[2]]));
        let v1 = set(1, 1, &[&k[1], &k[3]]);
        let signed = v1.sign(&[&k[0], &k[1], &k[3]]).unwrap();
        assert_eq!(store.apply(&signed).unwrap().version(), 1);
        assert_eq!(store.current(), &v1);
    }

    #[test]
    fn refuses_rotation_without_new_key_signature() {
        let k = keys(3);
        let mut store = TrustStore::new(set(0, 1, &[&k[0]]));
        let v1 = set(1, 1, &[&k[1], &k[2]]);
        let signed = v1.sign(&[&k[0]]).unwrap();
        assert!(matches!(
            store.apply(&signed),
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
            store.apply(&signed),
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
            match store.apply(&signed) {
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
        store.apply(&v1.sign(&[&k[0], &k[1]]).unwrap()).unwrap();
        // k[0] was dropped: a v2 signed only by k[0] is refused.
        let v2 = set(2, 1, &[&k[0]]);
        assert!(matches!(
            store.apply(&v2.sign(&[&k[0]]).unwrap()),
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
