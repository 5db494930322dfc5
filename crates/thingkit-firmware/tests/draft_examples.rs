//! The signed examples from draft-ietf-suit-manifest's appendix ("Examples"), verified with the
//! public key printed there. Bytes are the "Envelope with COSE authentication object" hex of
//! examples 0 (secure boot, ES256), 1 (download and install, ES256), 2 (severed install and
//! text, ESP256), 3 (A/B images with suit-directive-try-each, ES256), 4 (load from external
//! storage: three components, suit-directive-copy, suit-parameter-source-component, ES256) and
//! 5 (two images, ES256), from the SUIT working group's manifest-spec repository
//! (`examples/example*.txt`).

use thingkit_firmware::{CborLimits, CborValue};
use thingkit_firmware::{
    Envelope, EnvelopeLimits, Error, PublicKey, Severable, SigningKey, SuitDigest, TrustAnchors,
    Uuid, Verifier,
};
use thingkit_firmware::{Manifest, command};

const EXAMPLE0: &[u8] = include_bytes!("vectors/example0.suit");
const EXAMPLE1: &[u8] = include_bytes!("vectors/example1.suit");
const EXAMPLE2: &[u8] = include_bytes!("vectors/example2.suit");
const EXAMPLE3: &[u8] = include_bytes!("vectors/example3.suit");
const EXAMPLE4: &[u8] = include_bytes!("vectors/example4.suit");
const EXAMPLE5: &[u8] = include_bytes!("vectors/example5.suit");
const ALL: [&[u8]; 6] = [EXAMPLE0, EXAMPLE1, EXAMPLE2, EXAMPLE3, EXAMPLE4, EXAMPLE5];
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

fn digest_of_hex(hex: &str) -> SuitDigest {
    let mut d = [0u8; 32];
    for (i, b) in d.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap();
    }
    SuitDigest(d)
}

#[test]
fn example3_ab_images_with_try_each_verifies() {
    let v = verifier().verify(EXAMPLE3).unwrap();
    assert_eq!(v.sequence_number, 3);
    assert_eq!(
        v.manifest_digest().to_string(),
        "f6d44a62ec906b392500c242e78e908e9cc5057f3f04104a06a8566200da2ee0"
    );
    v.check_identity(&vendor(), &class()).unwrap();
    // Both the shared sequence and install choose the slot's digest, size and URI inside
    // suit-directive-try-each; the decoder checks every branch, but parameters are not read out
    // of try-each branches (which branch applies depends on the device's slot), so there is no
    // single image requirement to report.
    let tries = |seq: &thingkit_firmware::CommandSequence| {
        seq.commands()
            .iter()
            .filter(|c| c.code == command::DIRECTIVE_TRY_EACH)
            .count()
    };
    assert_eq!(tries(v.common.shared_sequence.as_ref().unwrap()), 1);
    assert_eq!(tries(v.install().unwrap()), 1);
    assert_eq!(
        v.image_requirement(1 << 20),
        Err(Error::MissingParameter("image-digest"))
    );
}

#[test]
fn example4_load_from_external_storage_verifies() {
    let v = verifier().verify(EXAMPLE4).unwrap();
    assert_eq!(v.sequence_number, 4);
    assert_eq!(
        v.manifest_digest().to_string(),
        "5b5f6586b1e6cdf19ee479a5adabf206581000bd584b0832a9bdaf4f72cdbdd6"
    );
    v.check_identity(&vendor(), &class()).unwrap();
    assert_eq!(v.common.components.len(), 3);
    // Component 0 (installed by suit-directive-copy from component 1, which is fetched).
    let req = v.image_requirement(1 << 20).unwrap();
    assert_eq!(req.digest, image_digest());
    assert_eq!(req.size, 34768);
    assert_eq!(req.uri, None);
    let fetch = v.payload_fetch().unwrap();
    let staged = v.component_parameters(1, &[fetch]).unwrap();
    assert_eq!(staged.uri.as_deref(), Some("http://example.com/file.bin"));
    assert_eq!(staged.image_digest, Some(image_digest()));
    let copies = v
        .install()
        .unwrap()
        .commands()
        .iter()
        .chain(v.load.as_ref().unwrap().commands())
        .filter(|c| c.code == command::DIRECTIVE_COPY)
        .count();
    assert_eq!(copies, 2);
}

#[test]
fn example5_two_images_verifies_with_parameters_per_component() {
    let v = verifier().verify(EXAMPLE5).unwrap();
    assert_eq!(v.sequence_number, 5);
    assert_eq!(
        v.manifest_digest().to_string(),
        "15ce60f77657e4531dc329155f8b0ed78f94bdc6d165b2665473693dcc34f470"
    );
    v.check_identity(&vendor(), &class()).unwrap();
    assert_eq!(v.common.components.len(), 2);
    let req = v.image_requirement(1 << 20).unwrap();
    assert_eq!(req.uri.as_deref(), Some("http://example.com/file1.bin"));
    assert_eq!(req.size, 34768);
    assert_eq!(req.digest, image_digest());
    let second = v.component_parameters(1, &[v.install().unwrap()]).unwrap();
    assert_eq!(second.uri.as_deref(), Some("http://example.com/file2.bin"));
    assert_eq!(second.image_size, Some(76834));
    assert_eq!(
        second.image_digest,
        Some(digest_of_hex(
            "0123456789abcdeffedcba987654321000112233445566778899aabbccddeeff"
        ))
    );
}

#[test]
fn reencoding_the_decoded_manifests_reproduces_the_original_bytes() {
    for ex in ALL {
        let env = Envelope::parse(ex, &EnvelopeLimits::default()).unwrap();
        let m = Manifest::from_cbor(env.manifest_bytes(), &CborLimits::default()).unwrap();
        assert_eq!(m.to_cbor(), env.manifest_bytes());
        // And the whole envelope round-trips through the generic codec.
        let v = CborValue::decode(ex, &CborLimits::default()).unwrap();
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
    for ex in ALL {
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
    let env0 = Envelope::parse(EXAMPLE0, &EnvelopeLimits::default()).unwrap();
    assert_eq!(ex0.to_cbor(), env0.manifest_bytes());

    let ex1 = thingkit_firmware::ManifestBuilder::new(1)
        .vendor_id(vendor())
        .class_id(class())
        .image_digest(image_digest(), 34768)
        .uri("http://example.com/file.bin")
        .invoke(false)
        .build()
        .unwrap();
    let env1 = Envelope::parse(EXAMPLE1, &EnvelopeLimits::default()).unwrap();
    assert_eq!(ex1.to_cbor(), env1.manifest_bytes());
}

#[test]
fn envelopes_signed_with_the_drafts_private_key_carry_the_drafts_manifest_digest() {
    let key = SigningKey::from_pkcs8_pem(PRIVATE_KEY).unwrap();
    let m = Manifest::from_cbor(
        Envelope::parse(EXAMPLE1, &EnvelopeLimits::default())
            .unwrap()
            .manifest_bytes(),
        &CborLimits::default(),
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
