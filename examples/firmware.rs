//! A firmware release end to end with `thingkit::firmware`: the operator signs a SUIT envelope
//! with two keys (2-of-3 threshold), the device authenticates it, refuses a replay, streams the
//! image in 16 KiB chunks through an interruption and a resume, installs it to the B slot and
//! commits it after a healthy trial boot. Then the trust anchors rotate and a revoked key stops
//! counting.
//!
//! Run with `cargo run --example firmware`.

use thingkit::firmware::{
    BootDecision, EnvelopeBuilder, KeyType, ManifestBuilder, SigningKey, TargetDevice,
    TrustAnchors, TrustStore, UpdateMachine, UpdateState, Uuid, Verifier,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let vendor: Uuid = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe".parse()?;
    let class: Uuid = "1492af14-2569-5e48-bf42-9b2d51f2ab45".parse()?;
    let image: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();

    // Operator side: three release keys, any two must sign.
    let keys = [
        SigningKey::generate(KeyType::P256)?,
        SigningKey::generate(KeyType::Ed25519)?,
        SigningKey::generate(KeyType::P256)?,
    ];
    // A separate root key signs rotations of the trust-anchor set (never firmware); the set
    // expires in a year, so a device frozen on it finds out.
    let root = SigningKey::generate(KeyType::Ed25519)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let anchors = TrustAnchors::new(0, 2, keys.iter().map(|k| k.public_key().clone()).collect())?
        .with_root_keys(1, vec![root.public_key().clone()])?
        .with_expiry(now + 365 * 24 * 3600);
    let manifest = ManifestBuilder::new(42)
        .vendor_id(vendor)
        .class_id(class)
        .image(&image)
        .uri("https://updates.example/fw-42.bin")
        .description("release 42")
        .build()?;
    let envelope = EnvelopeBuilder::new(manifest)
        .sever_text(true)
        .sign(&[&keys[0], &keys[1]])?;
    println!("envelope: {} bytes, signed by 2 of 3 keys", envelope.len());

    // Device side: authenticate first, then run the update state machine.
    let verified = Verifier::new(anchors.clone()).verify_at(&envelope, now)?;
    println!(
        "verified manifest {} (sequence {}), signers {:?}",
        verified.manifest_digest(),
        verified.sequence_number,
        verified
            .signers()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    let identity = TargetDevice {
        vendor_id: vendor,
        class_id: class,
        max_image_size: 1 << 20,
    };
    let mut device = UpdateMachine::new(UpdateState::new(41), identity);
    let mut stream = device.begin(&verified)?;

    // Download half, persist a checkpoint, "reboot", resume from the bytes already in the slot.
    let mut slot_b = Vec::new();
    for chunk in image[..100_000].chunks(16 * 1024) {
        stream.update(chunk)?;
        slot_b.extend_from_slice(chunk);
    }
    device.progress(&stream)?;
    let persisted = device.state().clone();
    drop(stream);
    let mut device = UpdateMachine::new(persisted, identity);
    let mut stream = device.resume(&slot_b[..])?;
    println!(
        "resumed at byte {} without downloading again",
        stream.received()
    );
    for chunk in image[100_000..].chunks(16 * 1024) {
        stream.update(chunk)?;
    }
    device.downloaded(&stream.finish()?)?;
    let slot = device.installed()?;
    assert_eq!(device.boot(), BootDecision::Trial(slot));
    device.confirm()?;
    println!(
        "committed to slot {:?}; anti-rollback floor is now {}",
        device.state().active_slot,
        device.state().min_sequence
    );
    match device.begin(&verified) {
        Err(e) => println!("replay refused: {e}"),
        Ok(_) => unreachable!("a replayed manifest must be refused"),
    }

    // Rotate the trust anchors: drop key 0, keep keys 1 and 2 (threshold 1), signed by the root.
    let mut store = TrustStore::new(anchors);
    let next = TrustAnchors::new(
        1,
        1,
        vec![keys[1].public_key().clone(), keys[2].public_key().clone()],
    )?
    .with_root_keys(1, vec![root.public_key().clone()])?
    .with_expiry(now + 365 * 24 * 3600);
    store.apply(&next.sign(&[&root])?, now)?;
    let after = Verifier::new(store.current().clone());
    let by_revoked = EnvelopeBuilder::new(
        ManifestBuilder::new(43)
            .vendor_id(vendor)
            .class_id(class)
            .image(&image)
            .build()?,
    )
    .sign(&[&keys[0]])?;
    match after.verify_at(&by_revoked, now) {
        Err(e) => println!(
            "trust set v{}: revoked key refused: {e}",
            store.current().version()
        ),
        Ok(_) => unreachable!("a revoked key must not count"),
    }
    Ok(())
}
