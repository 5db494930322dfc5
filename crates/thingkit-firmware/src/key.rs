//! Signing keys (PKCS#8 PEM) and public keys (SPKI PEM), generated and used with `ring`.
//!
//! Two key types are supported: ECDSA P-256 (COSE algorithms ES256 `-7` and ESP256 `-9`) and
//! Ed25519 (EdDSA `-8` and Ed25519 `-19`). A key's [`KeyId`] is the first 16 bytes of the SHA-256
//! of its DER SubjectPublicKeyInfo; it is carried in the COSE `kid` header as a hint only —
//! verification never trusts it and always checks the signature against the trusted key itself.

use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

use crate::error::{Error, Result};

/// A COSE signature algorithm this crate implements (IANA "COSE Algorithms").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Algorithm {
    /// ECDSA with SHA-256 (COSE `-7`), used with P-256 keys.
    Es256,
    /// ECDSA using P-256 and SHA-256, fully specified (COSE `-9`).
    Esp256,
    /// EdDSA (COSE `-8`), used with Ed25519 keys.
    EdDsa,
    /// Ed25519, fully specified (COSE `-19`).
    Ed25519,
}

impl Algorithm {
    /// The COSE algorithm identifier.
    pub fn cose_id(self) -> i64 {
        match self {
            Algorithm::Es256 => -7,
            Algorithm::Esp256 => -9,
            Algorithm::EdDsa => -8,
            Algorithm::Ed25519 => -19,
        }
    }

    /// The algorithm for a COSE identifier.
    pub fn from_cose_id(id: i64) -> Result<Algorithm> {
        match id {
            -7 => Ok(Algorithm::Es256),
            -9 => Ok(Algorithm::Esp256),
            -8 => Ok(Algorithm::EdDsa),
            -19 => Ok(Algorithm::Ed25519),
            _ => Err(Error::UnsupportedAlgorithm {
                kind: "signature",
                id,
            }),
        }
    }

    /// The key type this algorithm needs.
    pub fn key_type(self) -> KeyType {
        match self {
            Algorithm::Es256 | Algorithm::Esp256 => KeyType::P256,
            Algorithm::EdDsa | Algorithm::Ed25519 => KeyType::Ed25519,
        }
    }

    /// The IANA name ("ES256", "ESP256", "EdDSA", "Ed25519").
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::Esp256 => "ESP256",
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Ed25519 => "Ed25519",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kind of key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum KeyType {
    /// ECDSA over NIST P-256.
    P256,
    /// Ed25519.
    Ed25519,
}

impl KeyType {
    /// The algorithm this crate signs with for this key type (ES256 or EdDSA).
    pub fn default_algorithm(self) -> Algorithm {
        match self {
            KeyType::P256 => Algorithm::Es256,
            KeyType::Ed25519 => Algorithm::EdDsa,
        }
    }
}

/// DER prefix of a P-256 SubjectPublicKeyInfo, followed by the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// DER prefix of an Ed25519 SubjectPublicKeyInfo, followed by the 32-byte key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A key identifier: the first 16 bytes of SHA-256 over the key's DER SubjectPublicKeyInfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 16]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A public key that can verify COSE signatures.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    key_type: KeyType,
    /// Raw key: 65-byte uncompressed P-256 point, or 32-byte Ed25519 key.
    raw: Vec<u8>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({:?}, {})", self.key_type, self.key_id())
    }
}

impl PublicKey {
    /// A public key from its raw encoding (65-byte uncompressed P-256 point starting with `04`,
    /// or 32-byte Ed25519 key). The point is checked when a signature is verified.
    pub fn from_raw(key_type: KeyType, raw: &[u8]) -> Result<PublicKey> {
        let ok = match key_type {
            KeyType::P256 => raw.len() == 65 && raw.first() == Some(&0x04),
            KeyType::Ed25519 => raw.len() == 32,
        };
        if !ok {
            return Err(Error::Key(format!(
                "{key_type:?} public key has the wrong length or form ({} bytes)",
                raw.len()
            )));
        }
        Ok(PublicKey {
            key_type,
            raw: raw.to_vec(),
        })
    }

    /// Parses a DER SubjectPublicKeyInfo (P-256 or Ed25519 only).
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey> {
        if let Some(rest) = der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            return PublicKey::from_raw(KeyType::P256, rest);
        }
        if let Some(rest) = der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
            return PublicKey::from_raw(KeyType::Ed25519, rest);
        }
        Err(Error::Key(
            "SubjectPublicKeyInfo is neither a P-256 nor an Ed25519 key".into(),
        ))
    }

    /// Parses a `-----BEGIN PUBLIC KEY-----` PEM document.
    pub fn from_spki_pem(pem: &str) -> Result<PublicKey> {
        PublicKey::from_spki_der(&pem::decode(pem, "PUBLIC KEY")?)
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn to_spki_der(&self) -> Vec<u8> {
        let prefix: &[u8] = match self.key_type {
            KeyType::P256 => &P256_SPKI_PREFIX,
            KeyType::Ed25519 => &ED25519_SPKI_PREFIX,
        };
        [prefix, &self.raw].concat()
    }

    /// The SPKI PEM document.
    pub fn to_spki_pem(&self) -> String {
        pem::encode("PUBLIC KEY", &self.to_spki_der())
    }

    /// The key type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The raw key bytes.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// This key's identifier.
    pub fn key_id(&self) -> KeyId {
        let d = ring::digest::digest(&ring::digest::SHA256, &self.to_spki_der());
        let mut id = [0u8; 16];
        id.copy_from_slice(&d.as_ref()[..16]);
        KeyId(id)
    }

    /// Whether this key can verify signatures made with `alg`.
    pub fn supports(&self, alg: Algorithm) -> bool {
        alg.key_type() == self.key_type
    }

    /// Verifies `sig` over `message` with `alg`; `false` for a wrong key type or a bad signature.
    pub fn verify(&self, alg: Algorithm, message: &[u8], sig: &[u8]) -> bool {
        if !self.supports(alg) {
            return false;
        }
        let ring_alg: &dyn signature::VerificationAlgorithm = match self.key_type {
            KeyType::P256 => &signature::ECDSA_P256_SHA256_FIXED,
            KeyType::Ed25519 => &signature::ED25519,
        };
        signature::UnparsedPublicKey::new(ring_alg, &self.raw)
            .verify(message, sig)
            .is_ok()
    }
}

enum Pair {
    P256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private signing key (held as its PKCS#8 document, which is what gets persisted).
pub struct SigningKey {
    pair: Pair,
    pkcs8: Vec<u8>,
    public: PublicKey,
    algorithm: Algorithm,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({:?})", self.public)
    }
}

impl SigningKey {
    /// Generates a fresh key pair with the system's secure random generator.
    pub fn generate(key_type: KeyType) -> Result<SigningKey> {
        let rng = SystemRandom::new();
        let doc = match key_type {
            KeyType::P256 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            }
            KeyType::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng),
        }
        .map_err(|_| Error::Key("key generation failed".into()))?;
        SigningKey::from_pkcs8_der(doc.as_ref())
    }

    /// Loads a PKCS#8 DER private key (P-256 or Ed25519).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<SigningKey> {
        let rng = SystemRandom::new();
        if let Ok(pair) =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
        {
            let public = PublicKey::from_raw(KeyType::P256, pair.public_key().as_ref())?;
            return Ok(SigningKey {
                pair: Pair::P256(pair),
                pkcs8: der.to_vec(),
                public,
                algorithm: Algorithm::Es256,
            });
        }
        if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            let public = PublicKey::from_raw(KeyType::Ed25519, pair.public_key().as_ref())?;
            return Ok(SigningKey {
                pair: Pair::Ed25519(pair),
                pkcs8: der.to_vec(),
                public,
                algorithm: Algorithm::EdDsa,
            });
        }
        Err(Error::Key(
            "not a PKCS#8 P-256 or Ed25519 private key".into(),
        ))
    }

    /// Loads a `-----BEGIN PRIVATE KEY-----` PEM document.
    pub fn from_pkcs8_pem(pem: &str) -> Result<SigningKey> {
        SigningKey::from_pkcs8_der(&pem::decode(pem, "PRIVATE KEY")?)
    }

    /// The PKCS#8 PEM document (keep it secret: write it with mode 0600).
    pub fn to_pkcs8_pem(&self) -> String {
        pem::encode("PRIVATE KEY", &self.pkcs8)
    }

    /// The matching public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key type.
    pub fn key_type(&self) -> KeyType {
        self.public.key_type
    }

    /// The COSE algorithm this key signs with: ES256 or EdDSA unless changed with
    /// [`SigningKey::with_algorithm`].
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Signs with another algorithm of the same key type (ESP256 for P-256, Ed25519 for Ed25519
    /// keys); fails for an algorithm of the other key type.
    pub fn with_algorithm(mut self, algorithm: Algorithm) -> Result<SigningKey> {
        if algorithm.key_type() != self.public.key_type {
            return Err(Error::Key(format!(
                "{algorithm} needs a {:?} key, this is a {:?} key",
                algorithm.key_type(),
                self.public.key_type
            )));
        }
        self.algorithm = algorithm;
        Ok(self)
    }

    /// Signs `message`, returning the COSE signature bytes (`r || s` for ECDSA, 64 bytes).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        match &self.pair {
            Pair::P256(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| Error::Key("ECDSA signing failed".into())),
            Pair::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

/// PEM armour (RFC 7468) with a strict base64 codec.
pub(crate) mod pem {
    use crate::error::{Error, Result};

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;

    /// Encodes `der` as a PEM document with the given label, 64 characters per line.
    pub(crate) fn encode(label: &str, der: &[u8]) -> String {
        let b64 = BASE64.encode(der);
        let mut out = format!("-----BEGIN {label}-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).expect("base64 output is ASCII"));
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
        out
    }

    /// Decodes the first PEM block with `label`, ignoring text around it.
    pub(crate) fn decode(text: &str, label: &str) -> Result<Vec<u8>> {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        let start = text
            .find(&begin)
            .ok_or_else(|| Error::Key(format!("no {begin} line")))?
            + begin.len();
        let stop = text[start..]
            .find(&end)
            .ok_or_else(|| Error::Key(format!("no {end} line")))?
            + start;
        let body: String = text[start..stop]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        BASE64
            .decode(body)
            .map_err(|e| Error::Key(format!("invalid base64 in {label}: {e}")))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn pem_round_trips_every_length() {
            for len in 0..40 {
                let data: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
                assert_eq!(decode(&encode("X", &data), "X").unwrap(), data);
            }
            assert_eq!(
                encode("X", b"foobar"),
                "-----BEGIN X-----\nZm9vYmFy\n-----END X-----\n"
            );
        }

        #[test]
        fn pem_rejects_bad_padding_and_alphabet() {
            for body in ["Zm8", "Z===", "Zm8=Zm8=", "Zm!=", "Zm9="] {
                let text = format!("-----BEGIN X-----\n{body}\n-----END X-----\n");
                assert!(decode(&text, "X").is_err(), "{body}");
            }
            assert!(decode("-----BEGIN X-----\nZm8=\n", "X").is_err());
            assert!(decode("-----BEGIN Y-----\nZm8=\n-----END Y-----\n", "X").is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_through_pem_and_sign() {
        for kt in [KeyType::P256, KeyType::Ed25519] {
            let key = SigningKey::generate(kt).unwrap();
            let again = SigningKey::from_pkcs8_pem(&key.to_pkcs8_pem()).unwrap();
            assert_eq!(again.public_key(), key.public_key());
            let public = PublicKey::from_spki_pem(&key.public_key().to_spki_pem()).unwrap();
            let sig = again.sign(b"message").unwrap();
            assert!(public.verify(key.algorithm(), b"message", &sig));
            assert!(!public.verify(key.algorithm(), b"messagf", &sig));
        }
    }

    #[test]
    fn p256_key_does_not_verify_eddsa() {
        let key = SigningKey::generate(KeyType::P256).unwrap();
        let sig = key.sign(b"m").unwrap();
        assert!(!key.public_key().verify(Algorithm::EdDsa, b"m", &sig));
        assert!(key.public_key().verify(Algorithm::Esp256, b"m", &sig));
    }

    #[test]
    fn fully_specified_algorithms_need_the_matching_key_type() {
        let p = SigningKey::generate(KeyType::P256).unwrap();
        assert!(
            SigningKey::generate(KeyType::P256)
                .unwrap()
                .with_algorithm(Algorithm::Ed25519)
                .is_err()
        );
        assert_eq!(
            p.with_algorithm(Algorithm::Esp256).unwrap().algorithm(),
            Algorithm::Esp256
        );
        let e = SigningKey::generate(KeyType::Ed25519).unwrap();
        assert_eq!(
            e.with_algorithm(Algorithm::Ed25519)
                .unwrap()
                .algorithm()
                .cose_id(),
            -19
        );
    }

    #[test]
    fn rejects_spki_of_other_key_types() {
        assert!(PublicKey::from_spki_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
    }
}
