//! One test per attack on the update path: each must be refused with the right error.

use thingkit_firmware::{
    EnvelopeBuilder, Error, ImageVerifier, KeyType, ManifestBuilder, PublicKey, SigningKey,
    TargetDevice, TrustAnchors, TrustStore, UpdateMachine, UpdateState, Uuid, Verifier,
};

const EXAMPLE0: &[u8] = include_bytes!("vectors/example0.suit");
const EXAMPLE2: &[u8] = include_bytes!("vectors/example2.suit");
const PUBLIC_KEY: &str = include_str!("vectors/example-key.pub.pem");

const VENDOR: Uuid = Uuid([0x11; 16]);
const CLASS: Uuid = Uuid([0x22; 16]);

fn example_verifier() -> Verifier {
    Verifier::new(TrustAnchors::single(
        PublicKey::from_spki_pem(PUBLIC_KEY).unwrap(),
    ))
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("pattern present in the vector")
}

fn flipped(bytes: &[u8], index: usize, mask: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[index] ^= mask;
    out
}

fn image() -> Vec<u8> {
    (0..50_000u32).map(|i| (i % 253) as u8).collect()
}

fn envelope(seq: u64, keys: &[&SigningKey]) -> Vec<u8> {
    let m = ManifestBuilder::new(seq)
        .vendor_id(VENDOR)
        .class_id(CLASS)
        .image(&image())
        .uri("https://fw.example/x.bin")
        .build()
        .unwrap();
    EnvelopeBuilder::new(m).sign(keys).unwrap()
}

fn trust(threshold: usize, keys: &[&SigningKey]) -> Verifier {
    Verifier::new(
        TrustAnchors::new(
            0,
            threshold,
            keys.iter().map(|k| k.public_key().clone()).collect(),
        )
        .unwrap(),
    )
}

#[test]
fn flipped_bit_in_manifest_is_refused() {
    // The last byte is the invoke directive's reporting policy, inside the manifest.
    let bad = flipped(EXAMPLE0, EXAMPLE0.len() - 1, 0x01);
    assert_eq!(
        example_verifier().verify(&bad).unwrap_err(),
        Error::ManifestDigestMismatch
    );
}

#[test]
fn flipped_bit_in_manifest_digest_is_refused() {
    let at = find(EXAMPLE0, &[0x82, 0x2f, 0x58, 0x20]) + 10;
    let bad = flipped(EXAMPLE0, at, 0x40);
    assert_eq!(
        example_verifier().verify(&bad).unwrap_err(),
        Error::ManifestDigestMismatch
    );
}

#[test]
fn flipped_bit_in_signature_is_refused() {
    let at = find(EXAMPLE0, &[0xf6, 0x58, 0x40]) + 20;
    let bad = flipped(EXAMPLE0, at, 0x01);
    assert_eq!(
        example_verifier().verify(&bad).unwrap_err(),
        Error::BelowThreshold {
            valid: 0,
            threshold: 1
        }
    );
}

#[test]
fn flipped_bit_in_protected_header_is_refused() {
    // alg -7 (0x26) becomes -9 (0x28): still a P-256 algorithm, but the protected bytes differ.
    let at = find(EXAMPLE0, &[0x43, 0xa1, 0x01, 0x26]) + 3;
    let bad = flipped(EXAMPLE0, at, 0x0e);
    assert_eq!(bad[at], 0x28);
    assert_eq!(
        example_verifier().verify(&bad).unwrap_err(),
        Error::BelowThreshold {
            valid: 0,
            threshold: 1
        }
    );
}

#[test]
fn all_four_signature_algorithms_verify() {
    for (kt, alg) in [
        (KeyType::P256, thingkit_firmware::Algorithm::Es256),
        (KeyType::P256, thingkit_firmware::Algorithm::Esp256),
        (KeyType::Ed25519, thingkit_firmware::Algorithm::EdDsa),
        (KeyType::Ed25519, thingkit_firmware::Algorithm::Ed25519),
    ] {
        let k = SigningKey::generate(kt)
            .unwrap()
            .with_algorithm(alg)
            .unwrap();
        let env = envelope(1, &[&k]);
        let info = thingkit_firmware::inspect(&env, &thingkit_firmware::EnvelopeLimits::default())
            .unwrap();
        assert_eq!(info.signatures[0].0, alg);
        trust(1, &[&k]).verify(&env).unwrap();
    }
}

#[test]
fn signature_by_untrusted_key_is_refused() {
    let trusted = SigningKey::generate(KeyType::P256).unwrap();
    let attacker = SigningKey::generate(KeyType::P256).unwrap();
    let env = envelope(1, &[&attacker]);
    assert_eq!(
        trust(1, &[&trusted]).verify(&env).unwrap_err(),
        Error::BelowThreshold {
            valid: 0,
            threshold: 1
        }
    );
}

#[test]
fn signatures_below_threshold_are_refused() {
    let k: Vec<SigningKey> = (0..3)
        .map(|_| SigningKey::generate(KeyType::Ed25519).unwrap())
        .collect();
    let v = trust(2, &[&k[0], &k[1], &k[2]]);
    assert_eq!(
        v.verify(&envelope(1, &[&k[0]])).unwrap_err(),
        Error::BelowThreshold {
            valid: 1,
            threshold: 2
        }
    );
    let ok = v.verify(&envelope(1, &[&k[2], &k[0]])).unwrap();
    assert_eq!(ok.signers().len(), 2);
}

#[test]
fn duplicate_signatures_by_one_key_count_once() {
    let k: Vec<SigningKey> = (0..2)
        .map(|_| SigningKey::generate(KeyType::P256).unwrap())
        .collect();
    let v = trust(2, &[&k[0], &k[1]]);
    assert_eq!(
        v.verify(&envelope(1, &[&k[0], &k[0], &k[0]])).unwrap_err(),
        Error::BelowThreshold {
            valid: 1,
            threshold: 2
        }
    );
}

#[test]
fn lower_or_equal_sequence_number_is_refused() {
    let k = SigningKey::generate(KeyType::P256).unwrap();
    let v = trust(1, &[&k]).verify(&envelope(5, &[&k])).unwrap();
    assert_eq!(
        v.check_sequence(5),
        Err(Error::Rollback {
            offered: 5,
            installed: 5
        })
    );
    assert_eq!(
        v.check_sequence(9),
        Err(Error::Rollback {
            offered: 5,
            installed: 9
        })
    );
    v.check_sequence(4).unwrap();
}

#[test]
fn wrong_vendor_or_class_is_refused() {
    let k = SigningKey::generate(KeyType::P256).unwrap();
    let v = trust(1, &[&k]).verify(&envelope(1, &[&k])).unwrap();
    assert!(matches!(
        v.check_identity(&Uuid([0x99; 16]), &CLASS),
        Err(Error::Incompatible {
            which: "vendor",
            ..
        })
    ));
    assert!(matches!(
        v.check_identity(&VENDOR, &Uuid([0x99; 16])),
        Err(Error::Incompatible { which: "class", .. })
    ));
    v.check_identity(&VENDOR, &CLASS).unwrap();
}

#[test]
fn declared_size_above_device_limit_is_refused() {
    let k = SigningKey::generate(KeyType::P256).unwrap();
    let v = trust(1, &[&k]).verify(&envelope(1, &[&k])).unwrap();
    assert!(matches!(
        v.image_requirement(49_999),
        Err(Error::Limit {
            what: "declared image size",
            limit: 49_999,
            actual: 50_000
        })
    ));
}

#[test]
fn image_longer_shorter_or_different_than_declared_is_refused() {
    let k = SigningKey::generate(KeyType::P256).unwrap();
    let v = trust(1, &[&k]).verify(&envelope(1, &[&k])).unwrap();
    let req = v.image_requirement(1 << 20).unwrap();
    let img = image();

    let mut longer = ImageVerifier::new(req.clone());
    longer.update(&img).unwrap();
    assert!(matches!(
        longer.update(&[0]),
        Err(Error::ImageTooLong {
            declared: 50_000,
            ..
        })
    ));

    let mut shorter = ImageVerifier::new(req.clone());
    shorter.update(&img[..49_999]).unwrap();
    assert!(matches!(
        shorter.finish(),
        Err(Error::ImageTooShort {
            received: 49_999,
            ..
        })
    ));

    let mut different = ImageVerifier::new(req);
    different.update(&flipped(&img, 777, 0x04)).unwrap();
    assert_eq!(different.finish().unwrap_err(), Error::ImageDigestMismatch);
}

#[test]
fn severed_element_with_wrong_digest_is_refused() {
    // Example 2's severed install sequence (envelope key 20) carries the URI; change one letter.
    let at = find(EXAMPLE2, b"http://example.com/very") + 7;
    let bad = flipped(EXAMPLE2, at, 0x01);
    assert_eq!(
        example_verifier().verify(&bad).unwrap_err(),
        Error::SeverableDigestMismatch { key: 20 }
    );
    // The same for the severed text (key 23).
    let at = find(EXAMPLE2, b"This component") + 2;
    let bad = flipped(EXAMPLE2, at, 0x01);
    assert_eq!(
        example_verifier().verify(&bad).unwrap_err(),
        Error::SeverableDigestMismatch { key: 23 }
    );
}

#[test]
fn severed_element_added_to_an_inline_member_is_refused() {
    let k = SigningKey::generate(KeyType::P256).unwrap();
    let mut env = envelope(1, &[&k]);
    // Append a key-20 bstr to the envelope map (map of 2 becomes map of 3).
    let map_at = 2;
    assert_eq!(env[map_at], 0xa2);
    env[map_at] = 0xa3;
    env.extend_from_slice(&[0x14, 0x41, 0x80]);
    assert_eq!(
        trust(1, &[&k]).verify(&env).unwrap_err(),
        Error::SeverableDigestMismatch { key: 20 }
    );
}

const NOW: u64 = 1_700_000_000;

fn keys(n: usize) -> Vec<SigningKey> {
    (0..n)
        .map(|_| SigningKey::generate(KeyType::P256).unwrap())
        .collect()
}

fn pks(ks: &[&SigningKey]) -> Vec<PublicKey> {
    ks.iter().map(|k| k.public_key().clone()).collect()
}

/// A rotatable set: release keys `release` (threshold 1), root keys `root` (threshold 1).
fn rotatable(
    version: u64,
    release: &[&SigningKey],
    root: &[&SigningKey],
    expires: u64,
) -> TrustAnchors {
    TrustAnchors::new(version, 1, pks(release))
        .unwrap()
        .with_root_keys(1, pks(root))
        .unwrap()
        .with_expiry(expires)
}

fn expiring_envelope(seq: u64, expires: u64, keys: &[&SigningKey]) -> Vec<u8> {
    let m = ManifestBuilder::new(seq)
        .vendor_id(VENDOR)
        .class_id(CLASS)
        .image(&image())
        .expires(expires)
        .build()
        .unwrap();
    EnvelopeBuilder::new(m).sign(keys).unwrap()
}

#[test]
fn trust_set_skip_and_rollback_are_refused() {
    let k = keys(2);
    let set = |v: u64| rotatable(v, &[&k[0]], &[&k[1]], NOW + 60);
    let mut store = TrustStore::new(set(3));
    let skip = set(5).sign(&[&k[1]]).unwrap();
    assert!(matches!(
        store.apply(&skip, NOW),
        Err(Error::TrustSetOrder {
            reason: "skip",
            offered: 5,
            current: 3
        })
    ));
    let rollback = set(2).sign(&[&k[1]]).unwrap();
    assert!(matches!(
        store.apply(&rollback, NOW),
        Err(Error::TrustSetOrder {
            reason: "rollback",
            ..
        })
    ));
    let next = set(4).sign(&[&k[1]]).unwrap();
    store.apply(&next, NOW).unwrap();
    assert!(matches!(
        store.apply(&next, NOW),
        Err(Error::TrustSetOrder {
            reason: "replay",
            ..
        })
    ));
    assert_eq!(store.current().version(), 4);
}

#[test]
fn manifests_signed_by_a_revoked_key_fail_once_the_rotation_is_applied() {
    let k = keys(3);
    let root = &k[2];
    let mut store = TrustStore::new(rotatable(0, &[&k[0], &k[1]], &[root], NOW + 60));
    let by_old = envelope(1, &[&k[0]]);
    store.verifier().verify_at(&by_old, NOW).unwrap();
    let v1 = rotatable(1, &[&k[1]], &[root], NOW + 60);
    store.apply(&v1.sign(&[root]).unwrap(), NOW).unwrap();
    assert_eq!(
        store.verifier().verify_at(&by_old, NOW).unwrap_err(),
        Error::BelowThreshold {
            valid: 0,
            threshold: 1
        }
    );
    store
        .verifier()
        .verify_at(&envelope(2, &[&k[1]]), NOW)
        .unwrap();
}

#[test]
fn manifest_signature_cannot_be_replayed_as_a_trust_set() {
    let k = keys(2);
    let mut store = TrustStore::new(rotatable(0, &[&k[0]], &[&k[1]], NOW + 60));
    let env = envelope(1, &[&k[1]]);
    assert!(store.apply(&env, NOW).is_err());
    assert_eq!(store.current().version(), 0);
}

#[test]
fn expired_envelope_is_refused_from_the_second_of_expiry() {
    let k = keys(1);
    let v = trust(1, &[&k[0]]);
    let env = expiring_envelope(1, NOW, &[&k[0]]);
    assert_eq!(v.verify_at(&env, NOW - 1).unwrap().expires(), Some(NOW));
    for now in [NOW, NOW + 1, u64::MAX] {
        assert_eq!(
            v.verify_at(&env, now).unwrap_err(),
            Error::Expired {
                what: "envelope",
                expires: NOW,
                now
            }
        );
    }
}

#[test]
fn expiring_envelope_is_refused_without_a_time() {
    let k = keys(1);
    let env = expiring_envelope(1, NOW, &[&k[0]]);
    assert_eq!(
        trust(1, &[&k[0]]).verify(&env).unwrap_err(),
        Error::TimeRequired { what: "envelope" }
    );
}

#[test]
fn envelope_without_expiry_is_refused_when_the_policy_requires_one() {
    let k = keys(1);
    let env = envelope(1, &[&k[0]]);
    trust(1, &[&k[0]]).verify_at(&env, NOW).unwrap();
    let strict = trust(1, &[&k[0]]).with_require_expiry(true);
    for result in [strict.verify_at(&env, NOW), strict.verify(&env)] {
        assert_eq!(
            result.unwrap_err(),
            Error::MissingExpiry { what: "envelope" }
        );
    }
    strict
        .verify_at(&expiring_envelope(1, NOW + 1, &[&k[0]]), NOW)
        .unwrap();
}

#[test]
fn expiry_cannot_be_stripped_or_extended_without_breaking_the_signature() {
    let k = keys(1);
    let env = expiring_envelope(1, NOW, &[&k[0]]);
    // NOW = 0x6553f100 encoded as 1a 65 53 f1 00 after the key -257 (39 01 00).
    let at = find(&env, &[0x39, 0x01, 0x00, 0x1a]) + 4;
    let later = flipped(&env, at, 0x10);
    assert_eq!(
        trust(1, &[&k[0]]).verify_at(&later, NOW).unwrap_err(),
        Error::ManifestDigestMismatch
    );
}

#[test]
fn expired_trust_set_refuses_all_firmware() {
    let k = keys(2);
    let v = Verifier::new(rotatable(0, &[&k[0]], &[&k[1]], NOW));
    let env = envelope(1, &[&k[0]]);
    v.verify_at(&env, NOW - 1).unwrap();
    assert_eq!(
        v.verify_at(&env, NOW).unwrap_err(),
        Error::Expired {
            what: "trust-anchor set",
            expires: NOW,
            now: NOW
        }
    );
    assert_eq!(
        v.verify(&env).unwrap_err(),
        Error::TimeRequired {
            what: "trust-anchor set"
        }
    );
}

#[test]
fn expired_trust_set_is_not_applied_but_a_frozen_device_can_recover() {
    let k = keys(2);
    let mut store = TrustStore::new(rotatable(0, &[&k[0]], &[&k[1]], NOW));
    let stale = rotatable(1, &[&k[0]], &[&k[1]], NOW + 10)
        .sign(&[&k[1]])
        .unwrap();
    assert_eq!(
        store.apply(&stale, NOW + 10).unwrap_err(),
        Error::Expired {
            what: "trust-anchor set",
            expires: NOW + 10,
            now: NOW + 10
        }
    );
    // The current set has expired (NOW + 5 >= NOW), yet a fresh rotation is applied.
    store.apply(&stale, NOW + 5).unwrap();
    assert_eq!(store.current().version(), 1);
}

#[test]
fn rotated_set_without_expiry_or_root_keys_is_refused() {
    let k = keys(2);
    let mut store = TrustStore::new(rotatable(0, &[&k[0]], &[&k[1]], NOW + 60));
    let no_expiry = TrustAnchors::new(1, 1, pks(&[&k[0]]))
        .unwrap()
        .with_root_keys(1, pks(&[&k[1]]))
        .unwrap();
    assert_eq!(
        store
            .apply(&no_expiry.sign(&[&k[1]]).unwrap(), NOW)
            .unwrap_err(),
        Error::MissingExpiry {
            what: "trust-anchor set"
        }
    );
    let no_root = TrustAnchors::new(1, 1, pks(&[&k[0]]))
        .unwrap()
        .with_expiry(NOW + 60);
    assert!(matches!(
        store.apply(&no_root.sign(&[&k[1]]).unwrap(), NOW),
        Err(Error::KeyRole(_))
    ));
}

#[test]
fn root_key_cannot_sign_firmware() {
    let k = keys(2);
    let v = Verifier::new(rotatable(0, &[&k[0]], &[&k[1]], NOW + 60));
    assert_eq!(
        v.verify_at(&envelope(1, &[&k[1]]), NOW).unwrap_err(),
        Error::BelowThreshold {
            valid: 0,
            threshold: 1
        }
    );
}

#[test]
fn release_key_cannot_sign_a_trust_set() {
    let k = keys(2);
    let mut store = TrustStore::new(rotatable(0, &[&k[0]], &[&k[1]], NOW + 60));
    // Signed by the release key only, even though it names itself as the new root.
    let forged = rotatable(1, &[&k[1]], &[&k[0]], NOW + 60)
        .sign(&[&k[0]])
        .unwrap();
    assert_eq!(
        store.apply(&forged, NOW).unwrap_err(),
        Error::BelowThreshold {
            valid: 0,
            threshold: 1
        }
    );
    assert_eq!(store.current().version(), 0);
}

#[test]
fn update_machine_refuses_a_manifest_that_expired_after_verification() {
    let k = keys(1);
    let verified = trust(1, &[&k[0]])
        .verify_at(&expiring_envelope(1, NOW + 10, &[&k[0]]), NOW)
        .unwrap();
    let mut m = UpdateMachine::new(
        UpdateState::new(0),
        TargetDevice {
            vendor_id: VENDOR,
            class_id: CLASS,
            max_image_size: 1 << 20,
        },
    );
    assert!(matches!(
        m.begin_at(&verified, NOW + 10),
        Err(Error::Expired { .. })
    ));
    m.begin_at(&verified, NOW + 9).unwrap();
}

#[test]
fn every_single_byte_change_to_a_signed_envelope_is_refused() {
    let k = SigningKey::generate(KeyType::P256).unwrap();
    let m = ManifestBuilder::new(3)
        .vendor_id(VENDOR)
        .class_id(CLASS)
        .image(b"tiny image")
        .uri("https://fw.example/x")
        .description("release 3")
        .build()
        .unwrap();
    let env = EnvelopeBuilder::new(m)
        .sever_install(true)
        .sever_text(true)
        .sign(&[&k])
        .unwrap();
    let v = trust(1, &[&k]);
    v.verify(&env).unwrap();
    for i in 0..env.len() {
        for mask in [0x01, 0x80, 0xff] {
            assert!(
                v.verify(&flipped(&env, i, mask)).is_err(),
                "byte {i} ^ {mask:#x} was accepted"
            );
        }
    }
    for ex in [EXAMPLE0, EXAMPLE2] {
        for i in 0..ex.len() {
            assert!(
                example_verifier().verify(&flipped(ex, i, 0x01)).is_err(),
                "byte {i} accepted"
            );
        }
    }
}

#[test]
fn update_machine_raises_floor_only_on_commit_and_rolls_back_unhealthy_images() {
    let k = SigningKey::generate(KeyType::P256).unwrap();
    let v = trust(1, &[&k]);
    let id = TargetDevice {
        vendor_id: VENDOR,
        class_id: CLASS,
        max_image_size: 1 << 20,
    };
    let mut m = UpdateMachine::new(UpdateState::new(0), id);

    // Update to 1, fail health: floor stays 0, slot A stays active.
    let verified = v.verify(&envelope(1, &[&k])).unwrap();
    let mut s = m.begin(&verified).unwrap();
    s.update(&image()).unwrap();
    m.downloaded(&s.finish().unwrap()).unwrap();
    assert_eq!(m.installed().unwrap(), thingkit_firmware::Slot::B);
    assert_eq!(
        m.boot(),
        thingkit_firmware::BootDecision::Trial(thingkit_firmware::Slot::B)
    );
    assert_eq!(m.health_failed().unwrap(), thingkit_firmware::Slot::A);
    assert_eq!(m.state().min_sequence, 0);
    assert_eq!(m.state().active_slot, thingkit_firmware::Slot::A);

    // Update to 2, confirm: floor 2, slot B active; replaying 2 is refused.
    let verified = v.verify(&envelope(2, &[&k])).unwrap();
    let mut s = m.begin(&verified).unwrap();
    s.update(&image()).unwrap();
    m.downloaded(&s.finish().unwrap()).unwrap();
    m.installed().unwrap();
    m.boot();
    m.confirm().unwrap();
    assert_eq!(m.state().min_sequence, 2);
    assert_eq!(m.state().active_slot, thingkit_firmware::Slot::B);
    assert!(matches!(
        m.begin(&verified),
        Err(Error::Rollback {
            offered: 2,
            installed: 2
        })
    ));
}
