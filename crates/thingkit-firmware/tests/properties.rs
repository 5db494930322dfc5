//! Property tests: build → sign → verify round-trips, single-byte mutations always fail, the
//! strict CBOR codec round-trips, and the update state machine agrees with a simple model.

use proptest::prelude::*;
use thingkit_firmware::{
    BootDecision, EnvelopeBuilder, ImageVerifier, KeyType, ManifestBuilder, SigningKey,
    TargetDevice, TrustAnchors, UpdateMachine, UpdateState, Uuid, Verifier,
};
use thingkit_firmware::{CborLimits, CborValue as Value};

fn keys() -> &'static [SigningKey] {
    use std::sync::OnceLock;
    static KEYS: OnceLock<Vec<SigningKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        vec![
            SigningKey::generate(KeyType::P256).unwrap(),
            SigningKey::generate(KeyType::Ed25519).unwrap(),
            SigningKey::generate(KeyType::P256).unwrap(),
        ]
    })
}

#[derive(Debug, Clone)]
struct Spec {
    seq: u64,
    vendor: [u8; 16],
    class: [u8; 16],
    image: Vec<u8>,
    uri: Option<String>,
    text: Option<String>,
    sever: bool,
    signers: Vec<usize>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<u64>(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        proptest::collection::vec(any::<u8>(), 0..2048),
        proptest::option::of("[a-z]{1,12}://[a-z0-9./]{0,40}"),
        proptest::option::of("\\PC{0,40}"),
        any::<bool>(),
        proptest::sample::subsequence(vec![0usize, 1, 2], 1..=3),
    )
        .prop_map(
            |(seq, vendor, class, image, uri, text, sever, signers)| Spec {
                seq,
                vendor,
                class,
                image,
                uri,
                text,
                sever,
                signers,
            },
        )
}

fn build(s: &Spec) -> Vec<u8> {
    let mut b = ManifestBuilder::new(s.seq)
        .vendor_id(Uuid(s.vendor))
        .class_id(Uuid(s.class))
        .image(&s.image);
    if let Some(u) = &s.uri {
        b = b.uri(u.clone());
    }
    if let Some(t) = &s.text {
        b = b.description(t.clone());
    }
    let signers: Vec<&SigningKey> = s.signers.iter().map(|&i| &keys()[i]).collect();
    EnvelopeBuilder::new(b.build().unwrap())
        .sever_install(s.sever)
        .sever_text(s.sever)
        .sign(&signers)
        .unwrap()
}

fn verifier(threshold: usize) -> Verifier {
    Verifier::new(
        TrustAnchors::new(
            0,
            threshold,
            keys().iter().map(|k| k.public_key().clone()).collect(),
        )
        .unwrap(),
    )
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<u64>().prop_map(Value::Unsigned),
        any::<u64>().prop_map(Value::Negative),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
        "\\PC{0,20}".prop_map(Value::Text),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec((inner.clone(), inner.clone()), 0..6).prop_map(|entries| {
                // Deduplicate keys by encoding, then sort canonically.
                let mut seen = std::collections::HashSet::new();
                let unique = entries
                    .into_iter()
                    .filter(|(k, _)| seen.insert(k.to_vec()))
                    .collect();
                Value::canonical_map(unique)
            }),
            (0u64..100_000, inner).prop_map(|(t, v)| Value::Tag(t, Box::new(v))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn built_and_signed_manifests_verify_and_report_their_contents(s in spec()) {
        let env = build(&s);
        let v = verifier(s.signers.len()).verify(&env).unwrap();
        prop_assert_eq!(v.sequence_number, s.seq);
        prop_assert_eq!(v.signers().len(), s.signers.len());
        v.check_identity(&Uuid(s.vendor), &Uuid(s.class)).unwrap();
        let req = v.image_requirement(u64::MAX).unwrap();
        prop_assert_eq!(req.size, s.image.len() as u64);
        prop_assert_eq!(req.uri, s.uri.clone());
        let mut stream = ImageVerifier::new(v.image_requirement(u64::MAX).unwrap());
        for c in s.image.chunks(97) {
            stream.update(c).unwrap();
        }
        stream.finish().unwrap();
        // One more signer than present is always below threshold.
        if s.signers.len() < 3 {
            prop_assert!(verifier(s.signers.len() + 1).verify(&env).is_err());
        }
    }

    #[test]
    fn any_single_byte_mutation_of_a_signed_envelope_fails(s in spec(), pos in any::<prop::sample::Index>(), x in 1u8..=255) {
        let mut env = build(&s);
        let i = pos.index(env.len());
        env[i] ^= x;
        // Every signature is needed (threshold = signers), so no byte is redundant.
        prop_assert!(verifier(s.signers.len()).verify(&env).is_err());
    }

    #[test]
    fn strict_cbor_round_trips_canonical_values(v in value()) {
        let bytes = v.to_vec();
        let limits = CborLimits::default().with_max_depth(64);
        let back = Value::decode(&bytes, &limits).unwrap();
        prop_assert_eq!(back.to_vec(), bytes);
        prop_assert_eq!(back, v);
    }

    #[test]
    fn strict_cbor_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(v) = Value::decode(&bytes, &CborLimits::default()) {
            // Whatever is accepted is already canonical.
            prop_assert_eq!(v.to_vec(), bytes);
        }
    }

    #[test]
    fn update_machine_floor_matches_a_model(events in proptest::collection::vec((1u64..20, any::<bool>()), 1..12)) {
        let k = &keys()[0];
        let v = Verifier::new(TrustAnchors::single(k.public_key().clone()));
        let id = TargetDevice { vendor_id: Uuid([1; 16]), class_id: Uuid([2; 16]), max_image_size: 1024 };
        let mut m = UpdateMachine::new(UpdateState::new(0), id);
        let mut model_floor = 0u64;
        for (seq, healthy) in events {
            let env = EnvelopeBuilder::new(
                ManifestBuilder::new(seq).vendor_id(Uuid([1; 16])).class_id(Uuid([2; 16])).image(b"img").build().unwrap(),
            )
            .sign(&[k])
            .unwrap();
            let verified = v.verify(&env).unwrap();
            match m.begin(&verified) {
                Err(_) => prop_assert!(seq <= model_floor),
                Ok(mut s) => {
                    prop_assert!(seq > model_floor);
                    s.update(b"img").unwrap();
                    m.downloaded(&s.finish().unwrap()).unwrap();
                    let slot = m.installed().unwrap();
                    prop_assert_eq!(m.boot(), BootDecision::Trial(slot));
                    if healthy {
                        m.confirm().unwrap();
                        model_floor = seq;
                    } else {
                        // Not confirmed: the next boot rolls back to the previous slot.
                        prop_assert_eq!(m.boot(), BootDecision::Boot(slot.other()));
                    }
                }
            }
            prop_assert_eq!(m.state().min_sequence, model_floor);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Freshness agrees with the model "valid iff now < expires", for the envelope and the
    /// trust-anchor set alike, and the expiry round-trips through the signed manifest.
    #[test]
    fn expiry_is_enforced_exactly_at_the_boundary(
        env_expires in any::<u64>(),
        set_expires in any::<u64>(),
        now in any::<u64>(),
    ) {
        let k = &keys()[0];
        let m = ManifestBuilder::new(1)
            .vendor_id(Uuid([1; 16]))
            .class_id(Uuid([2; 16]))
            .image(b"img")
            .expires(env_expires)
            .build()
            .unwrap();
        let env = EnvelopeBuilder::new(m).sign(&[k]).unwrap();
        let v = Verifier::new(
            TrustAnchors::single(k.public_key().clone()).with_expiry(set_expires),
        );
        let result = v.verify_at(&env, now);
        prop_assert_eq!(result.is_ok(), now < env_expires && now < set_expires);
        if let Ok(verified) = result {
            prop_assert_eq!(verified.expires(), Some(env_expires));
        }
    }
}
