//! The signed examples from draft-ietf-suit-manifest's appendix ("Examples"), verified with the
//! public key printed there. Bytes are the "Envelope with COSE authentication object" hex of
//! examples 0 (secure boot, ES256), 1 (download and install, ES256) and 2 (severed install and
//! text, ESP256), from the SUIT working group's manifest-spec repository.

use thingkit_firmware::cbor::{self, DecodeLimits};
use thingkit_firmware::manifest::Manifest;
use thingkit_firmware::{
    Envelope, Error, Limits, PublicKey, Severable, SigningKey, SuitDigest, TrustAnchors, Uuid,
    Verifier,
};

const EXAMPLE0: &[u8] = include_bytes!("vectors/example0.suit");
const EXAMPLE1: &[u8] = include_bytes!("vectors/example1.suit");
const EXAMPLE2: &[u8] = include_bytes!("vectors/example2.suit");
const PUBLIC_KEY: &str = include_str!("vectors/example-key.pub.pem");
const PRIVATE_KEY: &str = include_str!("vectors/example-key.pem");

fn verifier() -> Verifier {
    Verifier::new(TrustAnchors::single(
        PublicKey::from_spki_pem(PUBLIC_KEY).unwrap(),
    ))
}

fn vendor() -> Uuid {
    "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe".parse().unwrap()
}

fn class() -> Uuid {
    "1492af14-2569-5e48-bf42-9b2d51f2ab45".parse().unwrap()
}

fn image_digest() -> SuitDigest {
    let mut d = [0u8; 32];
    d.copy_from_slice(
        &(0..32)
            .map(|i| {
                u8::from_str_radix(
                    &"00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210"
                        [i * 2..i * 2 + 2],
                    16,
                )
                .unwrap()
            })
            .collect::<Vec<u8>>(),
    );
    SuitDigest(d)
}

#[test]
fn example0_secure_boot_verifies_with_the_drafts_public_key() {
    let v = verifier().verify(EXAMPLE0).unwrap();
    assert_eq!(v.sequence_number, 0);
    assert_eq!(
        v.manifest_digest().to_string(),
        "6658ea560262696dd1f13b782239a064da7c6c5cbaf52fded428a6fc83c7e5af"
    );
    v.check_identity(&vendor(), &class()).unwrap();
    let req = v.image_requirement(1 << 20).unwrap();
    assert_eq!(req.size, 34768);
    assert_eq!(req.digest, image_digest());
    assert_eq!(req.uri, None);
}

#[test]
fn example1_download_verifies_and_yields_the_uri() {
    let v = verifier().verify(EXAMPLE1).unwrap();
    assert_eq!(v.sequence_number, 1);
    let req = v.image_requirement(1 << 20).unwrap();
    assert_eq!(req.uri.as_deref(), Some("http://example.com/file.bin"));
    assert_eq!(req.size, 34768);
}

#[test]
fn example2_esp256_with_severed_install_and_text_verifies() {
    let v = verifier().verify(EXAMPLE2).unwrap();
    assert_eq!(v.sequence_number, 2);
    assert!(matches!(v.install, Some(Severable::Digest(_))));
    assert!(matches!(v.text, Some(Severable::Digest(_))));
    // The severed install sequence came from the envelope and was checked against its digest.
    let req = v.image_requirement(1 << 20).unwrap();
    assert_eq!(
        req.uri.as_deref(),
        Some("http://example.com/very/long/path/to/file/file.bin")
    );
    assert!(v.text().is_some());
    assert_eq!(v.reference_uri.as_deref(), Some("https://git.io/JJYoj"));
}

#[test]
fn reencoding_the_decoded_manifests_reproduces_the_original_bytes() {
    for ex in [EXAMPLE0, EXAMPLE1, EXAMPLE2] {
        let env = Envelope::parse(ex, &Limits::default()).unwrap();
        let m = Manifest::from_cbor(env.manifest_bytes(), &DecodeLimits::default()).unwrap();
        assert_eq!(m.to_cbor(), env.manifest_bytes());
        // And the whole envelope round-trips through the generic codec.
        let v = cbor::decode(ex, &DecodeLimits::default()).unwrap();
        assert_eq!(v.to_vec(), ex);
    }
}

#[test]
fn the_drafts_private_key_matches_its_public_key() {
    let key = SigningKey::from_pkcs8_pem(PRIVATE_KEY).unwrap();
    assert_eq!(
        key.public_key(),
        &PublicKey::from_spki_pem(PUBLIC_KEY).unwrap()
    );
}

#[test]
fn examples_are_refused_under_a_different_key() {
    let other = SigningKey::generate(thingkit_firmware::KeyType::P256).unwrap();
    let v = Verifier::new(TrustAnchors::single(other.public_key().clone()));
    for ex in [EXAMPLE0, EXAMPLE1, EXAMPLE2] {
        assert_eq!(
            v.verify(ex).unwrap_err(),
            Error::BelowThreshold {
                valid: 0,
                threshold: 1
            }
        );
    }
}

#[test]
fn example_sequence_numbers_obey_anti_rollback() {
    let v = verifier().verify(EXAMPLE2).unwrap();
    v.check_sequence(1).unwrap();
    assert_eq!(
        v.check_sequence(2),
        Err(Error::Rollback {
            offered: 2,
            installed: 2
        })
    );
}

#[test]
fn builder_reproduces_the_manifests_of_examples_0_and_1_byte_for_byte() {
    let base = || {
        thingkit_firmware::ManifestBuilder::new(0)
            .vendor_id(vendor())
            .class_id(class())
            .image_digest(image_digest(), 34768)
    };
    let ex0 = base().build().unwrap();
    let env0 = Envelope::parse(EXAMPLE0, &Limits::default()).unwrap();
    assert_eq!(ex0.to_cbor(), env0.manifest_bytes());

    let ex1 = thingkit_firmware::ManifestBuilder::new(1)
        .vendor_id(vendor())
        .class_id(class())
        .image_digest(image_digest(), 34768)
        .uri("http://example.com/file.bin")
        .invoke(false)
        .build()
        .unwrap();
    let env1 = Envelope::parse(EXAMPLE1, &Limits::default()).unwrap();
    assert_eq!(ex1.to_cbor(), env1.manifest_bytes());
}

#[test]
fn envelopes_signed_with_the_drafts_private_key_carry_the_drafts_manifest_digest() {
    let key = SigningKey::from_pkcs8_pem(PRIVATE_KEY).unwrap();
    let m = Manifest::from_cbor(
        Envelope::parse(EXAMPLE1, &Limits::default())
            .unwrap()
            .manifest_bytes(),
        &DecodeLimits::default(),
    )
    .unwrap();
    let ours = thingkit_firmware::EnvelopeBuilder::new(m)
        .sign(&[&key])
        .unwrap();
    let v = verifier().verify(&ours).unwrap();
    assert_eq!(
        v.manifest_digest().to_string(),
        "1f2e7acca0dc2786f2fe4eb947f50873a6a3cfaa98866c5b02e621f42074daf2"
    );
}
