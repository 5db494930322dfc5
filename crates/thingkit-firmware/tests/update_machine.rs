//! The update state machine through restarts, refusals and rollbacks, with persisted state
//! round-tripped through JSON at every step as a device would store it.

use thingkit_firmware::Manifest;
use thingkit_firmware::{
    BootDecision, EnvelopeBuilder, EnvelopeLimits, Error, KeyType, ManifestBuilder, Phase,
    SigningKey, Slot, TargetDevice, TrustAnchors, UpdateMachine, UpdateState, Uuid, Verified,
    Verifier,
};

const ID: TargetDevice = TargetDevice {
    vendor_id: Uuid([7; 16]),
    class_id: Uuid([8; 16]),
    max_image_size: 1 << 20,
};

fn image() -> Vec<u8> {
    (0..120_000u32).map(|i| (i * 7 % 256) as u8).collect()
}

fn verified(seq: u64) -> (Verified<Manifest>, Vec<u8>) {
    let key = SigningKey::generate(KeyType::Ed25519).unwrap();
    let img = image();
    let m = ManifestBuilder::new(seq)
        .vendor_id(ID.vendor_id)
        .class_id(ID.class_id)
        .image(&img)
        .build()
        .unwrap();
    let env = EnvelopeBuilder::new(m).sign(&[&key]).unwrap();
    let v = Verifier::new(TrustAnchors::single(key.public_key().clone()))
        .verify(&env)
        .unwrap();
    (v, img)
}

/// Persist and reload, as across a power cycle.
fn reboot(m: &UpdateMachine) -> UpdateMachine {
    let json = serde_json::to_string(m.state()).unwrap();
    UpdateMachine::new(serde_json::from_str(&json).unwrap(), ID)
}

#[test]
fn download_survives_a_restart_and_resumes_from_the_slot() {
    let (v, img) = verified(3);
    let mut m = UpdateMachine::new(UpdateState::new(2), ID);
    let mut stream = m.begin(&v).unwrap();
    stream.update(&img[..70_000]).unwrap();
    m.progress(&stream).unwrap();
    let slot_contents = img[..70_000].to_vec();

    let mut m = reboot(&m);
    assert!(matches!(m.state().phase, Phase::Downloading { .. }));
    let mut stream = m.resume(&slot_contents[..]).unwrap();
    assert_eq!(stream.received(), 70_000);
    stream.update(&img[70_000..]).unwrap();
    m.downloaded(&stream.finish().unwrap()).unwrap();
    assert_eq!(m.installed().unwrap(), Slot::B);

    let mut m = reboot(&m);
    assert_eq!(m.boot(), BootDecision::Trial(Slot::B));
    m.confirm().unwrap();
    let m = reboot(&m);
    assert_eq!(m.state().active_slot, Slot::B);
    assert_eq!(m.state().min_sequence, 3);
    assert_eq!(m.state().phase, Phase::Committed { sequence_number: 3 });
}

#[test]
fn unconfirmed_image_is_rolled_back_on_the_next_boot() {
    let (v, img) = verified(5);
    let mut m = UpdateMachine::new(UpdateState::new(4), ID);
    let mut s = m.begin(&v).unwrap();
    s.update(&img).unwrap();
    m.downloaded(&s.finish().unwrap()).unwrap();
    m.installed().unwrap();
    assert_eq!(m.boot(), BootDecision::Trial(Slot::B));
    // The trial image crashed before confirming: the next boot returns to slot A.
    let mut m = reboot(&m);
    assert_eq!(m.boot(), BootDecision::Boot(Slot::A));
    assert_eq!(m.state().phase, Phase::RolledBack { sequence_number: 5 });
    assert_eq!(m.state().min_sequence, 4, "the floor rises only on commit");
    assert!(
        m.confirm().is_err(),
        "a rolled-back image can no longer be confirmed"
    );
}

#[test]
fn more_trial_boots_are_allowed_when_configured() {
    let (v, img) = verified(1);
    let mut state = UpdateState::new(0);
    state.max_boot_attempts = 2;
    let mut m = UpdateMachine::new(state, ID);
    let mut s = m.begin(&v).unwrap();
    s.update(&img).unwrap();
    m.downloaded(&s.finish().unwrap()).unwrap();
    m.installed().unwrap();
    assert_eq!(m.boot(), BootDecision::Trial(Slot::B));
    assert_eq!(m.boot(), BootDecision::Trial(Slot::B));
    assert_eq!(m.boot(), BootDecision::Boot(Slot::A));
}

#[test]
fn events_out_of_order_are_refused() {
    let (v, img) = verified(1);
    let mut m = UpdateMachine::new(UpdateState::new(0), ID);
    assert!(matches!(
        m.installed(),
        Err(Error::InvalidTransition {
            event: "installed",
            state: "idle"
        })
    ));
    assert!(matches!(m.confirm(), Err(Error::InvalidTransition { .. })));
    assert!(matches!(
        m.resume(&[][..]),
        Err(Error::InvalidTransition { .. })
    ));
    let mut s = m.begin(&v).unwrap();
    assert!(matches!(
        m.begin(&v),
        Err(Error::InvalidTransition {
            event: "begin",
            state: "downloading"
        })
    ));
    s.update(&img).unwrap();
    let done = s.finish().unwrap();
    m.abort().unwrap();
    assert!(matches!(
        m.downloaded(&done),
        Err(Error::InvalidTransition { .. })
    ));
    assert_eq!(m.state().phase, Phase::Idle);
}

#[test]
fn an_image_verified_for_another_manifest_cannot_complete_the_download() {
    let (v, img) = verified(1);
    let mut m = UpdateMachine::new(UpdateState::new(0), ID);
    let _stream = m.begin(&v).unwrap();
    // A different image, verified against a different (also genuine) manifest.
    let mut other_img = img.clone();
    other_img[0] ^= 1;
    let key = SigningKey::generate(KeyType::P256).unwrap();
    let other = ManifestBuilder::new(9)
        .vendor_id(ID.vendor_id)
        .class_id(ID.class_id)
        .image(&other_img)
        .build()
        .unwrap();
    let other = Verifier::new(TrustAnchors::single(key.public_key().clone()))
        .verify(&EnvelopeBuilder::new(other).sign(&[&key]).unwrap())
        .unwrap();
    let mut s = thingkit_firmware::ImageVerifier::new(other.image_requirement(1 << 20).unwrap());
    s.update(&other_img).unwrap();
    let done = s.finish().unwrap();
    assert!(matches!(
        m.downloaded(&done),
        Err(Error::InvalidTransition {
            event: "downloaded",
            ..
        })
    ));
    assert!(matches!(m.state().phase, Phase::Downloading { .. }));
}

#[test]
fn wrong_device_or_oversized_image_never_starts_a_download() {
    let (v, _) = verified(1);
    let other = TargetDevice {
        class_id: Uuid([9; 16]),
        ..ID
    };
    let mut m = UpdateMachine::new(UpdateState::new(0), other);
    assert!(matches!(
        m.begin(&v),
        Err(Error::Incompatible { which: "class", .. })
    ));
    let small = TargetDevice {
        max_image_size: 1000,
        ..ID
    };
    let mut m = UpdateMachine::new(UpdateState::new(0), small);
    assert!(matches!(m.begin(&v), Err(Error::Limit { .. })));
    assert_eq!(m.state().phase, Phase::Idle);
}

#[test]
fn envelope_size_and_signature_count_limits_apply() {
    let keys: Vec<SigningKey> = (0..3)
        .map(|_| SigningKey::generate(KeyType::P256).unwrap())
        .collect();
    let m = ManifestBuilder::new(1)
        .vendor_id(ID.vendor_id)
        .class_id(ID.class_id)
        .image(b"x")
        .build()
        .unwrap();
    let env = EnvelopeBuilder::new(m)
        .sign(&[&keys[0], &keys[1], &keys[2]])
        .unwrap();
    let trust =
        TrustAnchors::new(0, 1, keys.iter().map(|k| k.public_key().clone()).collect()).unwrap();
    let strict = EnvelopeLimits::default().with_max_signatures(2);
    assert!(matches!(
        Verifier::new(trust.clone())
            .with_limits(strict)
            .verify(&env),
        Err(Error::Limit {
            what: "signatures",
            limit: 2,
            actual: 3
        })
    ));
    let tiny = EnvelopeLimits::default().with_max_envelope_size(100);
    assert!(matches!(
        Verifier::new(trust).with_limits(tiny).verify(&env),
        Err(Error::Limit {
            what: "envelope size",
            ..
        })
    ));
}
