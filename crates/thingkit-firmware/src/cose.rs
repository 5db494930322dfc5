//! COSE_Sign1 with a detached payload (RFC 9052 sections 4.2 and 4.4), as SUIT uses it.
//!
//! A signature is always computed and checked over the `Sig_structure`
//! `["Signature1", protected, external_aad, payload]` built from the *received* protected-header
//! bytes and the *received* payload bytes; nothing is re-encoded before verification.

use crate::cbor::{self, CborLimits, Decoder};
use crate::error::{Result, structure};
use crate::key::{Algorithm, PublicKey, SigningKey};

/// CBOR tag of COSE_Sign1 (RFC 9052 section 2).
pub(crate) const TAG_COSE_SIGN1: u64 = 18;

const HDR_ALG: i64 = 1;
const HDR_CRIT: i64 = 2;
const HDR_CONTENT_TYPE: i64 = 3;
const HDR_KID: i64 = 4;

/// A structurally valid COSE_Sign1 whose payload is detached, borrowed from the received bytes.
///
/// Parsing checks the shape only; [`CoseSign1::verify`] checks the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoseSign1<'a> {
    protected: &'a [u8],
    algorithm: Algorithm,
    kid: Option<&'a [u8]>,
    signature: &'a [u8],
}

impl<'a> CoseSign1<'a> {
    /// Parses a COSE_Sign1 (tag 18 optional) with a `nil` (detached) payload.
    ///
    /// The protected header must contain the algorithm (label 1) and may contain a content type
    /// (3) and key id (4); `crit` and unknown protected labels are refused (RFC 9052 section 3.1:
    /// a recipient must not accept headers it does not understand if they are critical, and we
    /// treat every protected label as security relevant). The unprotected header may carry only
    /// `kid`; any other unprotected label is refused too, so that no byte of an authentication
    /// block can change without the block failing.
    pub fn parse(bytes: &'a [u8], limits: &CborLimits) -> Result<CoseSign1<'a>> {
        const S: &str = "COSE_Sign1";
        let mut d = Decoder::new(bytes, limits);
        if d.peek_major()? == 6 {
            let tag = d.tag()?;
            if tag != TAG_COSE_SIGN1 {
                return Err(structure(
                    S,
                    format!("tag {tag}, expected 18 (RFC 9052 section 2)"),
                ));
            }
        }
        if d.array_len()? != 4 {
            return Err(structure(S, "must be an array of 4 (RFC 9052 section 4.2)"));
        }
        let protected = d.bytes()?;
        let (algorithm, mut kid) = parse_protected(protected, limits)?;
        let n = d.map_len()?;
        let mut keys = Vec::new();
        for _ in 0..n {
            let key_start = d.position();
            let label = d.int()?;
            d.check_key(&mut keys, key_start)?;
            match label {
                HDR_KID => {
                    let k = d.bytes()?;
                    if kid.is_none() {
                        kid = Some(k);
                    }
                }
                HDR_ALG => {
                    return Err(structure(S, "algorithm must be in the protected header"));
                }
                other => {
                    return Err(structure(
                        S,
                        format!("unsupported unprotected header label {other}"),
                    ));
                }
            }
        }
        if d.peek_major()? != 7 {
            return Err(structure(
                S,
                "payload must be nil: SUIT signatures use a detached payload (draft-ietf-suit-manifest section 8.3)",
            ));
        }
        d.null()?;
        let signature = d.bytes()?;
        d.finish()?;
        // ECDSA P-256 (r || s) and Ed25519 signatures are both 64 bytes.
        let want = 64;
        if signature.len() != want {
            return Err(structure(
                S,
                format!(
                    "{} signature must be {want} bytes, found {}",
                    algorithm,
                    signature.len()
                ),
            ));
        }
        Ok(CoseSign1 {
            protected,
            algorithm,
            kid,
            signature,
        })
    }

    /// The signature algorithm from the protected header.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The key id hint (protected or unprotected), if any. Never trusted by itself.
    pub fn kid(&self) -> Option<&'a [u8]> {
        self.kid
    }

    /// The raw signature bytes.
    pub fn signature(&self) -> &'a [u8] {
        self.signature
    }

    /// The received protected-header bytes (content of the bstr).
    pub fn protected(&self) -> &'a [u8] {
        self.protected
    }

    /// Checks the signature with `key` over the detached `payload` and `external_aad`.
    pub fn verify(&self, key: &PublicKey, payload: &[u8], external_aad: &[u8]) -> bool {
        if !key.supports(self.algorithm) {
            return false;
        }
        let tbs = sig_structure(self.protected, external_aad, payload);
        key.verify(self.algorithm, &tbs, self.signature)
    }
}

fn parse_protected<'a>(
    protected: &'a [u8],
    limits: &CborLimits,
) -> Result<(Algorithm, Option<&'a [u8]>)> {
    const S: &str = "COSE protected header";
    if protected.is_empty() {
        return Err(structure(S, "empty; the algorithm must be protected"));
    }
    let mut d = Decoder::new(protected, limits);
    let n = d.map_len()?;
    let mut keys = Vec::new();
    let mut alg = None;
    let mut kid = None;
    for _ in 0..n {
        let key_start = d.position();
        let label = d.int()?;
        d.check_key(&mut keys, key_start)?;
        match label {
            HDR_ALG => alg = Some(Algorithm::from_cose_id(d.int()?)?),
            HDR_KID => kid = Some(d.bytes()?),
            HDR_CONTENT_TYPE => {
                d.raw_value()?;
            }
            HDR_CRIT => return Err(structure(S, "crit (label 2) is not supported")),
            other => return Err(structure(S, format!("unknown label {other}"))),
        }
    }
    d.finish()?;
    let alg = alg.ok_or_else(|| structure(S, "no algorithm (label 1)"))?;
    Ok((alg, kid))
}

/// The COSE `Sig_structure` for COSE_Sign1 (RFC 9052 section 4.4).
pub fn sig_structure(protected: &[u8], external_aad: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + protected.len() + external_aad.len() + payload.len());
    cbor::write_head(&mut out, 4, 4);
    cbor::write_head(&mut out, 3, 10);
    out.extend_from_slice(b"Signature1");
    cbor::write_bytes(&mut out, protected);
    cbor::write_bytes(&mut out, external_aad);
    cbor::write_bytes(&mut out, payload);
    out
}

/// Produces a tagged COSE_Sign1 with a detached payload: protected `{1: alg}`, unprotected
/// `{4: kid}`.
pub(crate) fn sign_detached(
    key: &SigningKey,
    payload: &[u8],
    external_aad: &[u8],
) -> Result<Vec<u8>> {
    let alg = key.algorithm();
    let mut protected = Vec::new();
    cbor::write_head(&mut protected, 5, 1);
    cbor::Value::int(HDR_ALG).encode(&mut protected);
    cbor::Value::int(alg.cose_id()).encode(&mut protected);
    let sig = key.sign(&sig_structure(&protected, external_aad, payload))?;
    let mut out = Vec::new();
    cbor::write_head(&mut out, 6, TAG_COSE_SIGN1);
    cbor::write_head(&mut out, 4, 4);
    cbor::write_bytes(&mut out, &protected);
    cbor::write_head(&mut out, 5, 1);
    cbor::Value::int(HDR_KID).encode(&mut out);
    cbor::write_bytes(&mut out, &key.public_key().key_id().0);
    out.push(0xf6);
    cbor::write_bytes(&mut out, &sig);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyType;

    #[test]
    fn signs_and_verifies_detached_payload() {
        let key = SigningKey::generate(KeyType::P256).unwrap();
        let s = sign_detached(&key, b"payload", b"").unwrap();
        let p = CoseSign1::parse(&s, &CborLimits::default()).unwrap();
        assert_eq!(p.algorithm(), Algorithm::Es256);
        assert_eq!(p.kid(), Some(&key.public_key().key_id().0[..]));
        assert!(p.verify(key.public_key(), b"payload", b""));
        assert!(!p.verify(key.public_key(), b"payloae", b""));
        assert!(!p.verify(key.public_key(), b"payload", b"aad"));
    }

    #[test]
    fn rejects_attached_payload_and_unprotected_alg() {
        let lim = CborLimits::default();
        // [h'a10126', {}, h'00', h'']
        let attached = crate::unhex("8443a10126a04100582000");
        assert!(CoseSign1::parse(&attached, &lim).is_err());
        // [h'a10126', {1: -7}, nil, sig]
        let mut unprot = crate::unhex("8443a10126a10126f65840");
        unprot.extend_from_slice(&[0u8; 64]);
        assert!(CoseSign1::parse(&unprot, &lim).is_err());
    }

    #[test]
    fn rejects_crit_and_unknown_protected_labels() {
        let lim = CborLimits::default();
        assert!(parse_protected(&crate::unhex("a201260281182a"), &lim).is_err());
        assert!(parse_protected(&crate::unhex("a20126182a00"), &lim).is_err());
        assert!(parse_protected(&[], &lim).is_err());
    }
}
