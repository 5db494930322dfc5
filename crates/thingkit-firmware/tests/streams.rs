//! Property tests for MQTT-based file delivery: a `Download` fed the service's answers in any
//! order, with duplicates and drops, and restored from checkpoints, reconstructs the exact file.

use proptest::prelude::*;
use thingkit_firmware::stream::{
    Download, DownloadCheckpoint, Encoding, StreamCatalog, StreamLimits, StreamSource,
    handle_request,
};
use thingkit_firmware::{ImageVerifier, ManifestBuilder, Uuid};

/// A small deterministic generator, seeded by proptest.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Debug, Clone)]
struct Case {
    size: usize,
    block_size: u32,
    per_request: u32,
    max_pending: usize,
    encoding: Encoding,
    seed: u64,
    checkpoint_every: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        0usize..6000,
        1u32..700,
        1u32..12,
        0usize..6,
        any::<bool>(),
        1u64..u64::MAX,
        1u64..6,
    )
        .prop_map(
            |(size, block_size, per_request, max_pending, json, seed, every)| Case {
                size,
                block_size,
                per_request,
                max_pending,
                encoding: if json { Encoding::Json } else { Encoding::Cbor },
                seed,
                checkpoint_every: every,
            },
        )
}

/// Runs the download against the service; returns what the sink received.
fn run(c: &Case, data: &[u8]) -> Vec<u8> {
    let mut catalog = StreamCatalog::default();
    catalog.insert("s", StreamSource::new(1, "").with_file(2, data.to_vec()));
    let limits = StreamLimits::default().with_block_size_range(1, 4096);
    let mut rng = Rng(c.seed);
    let mut download = Download::new(2, data.len() as u64, c.block_size)
        .unwrap()
        .with_stream_version(1)
        .with_client_token("tok")
        .with_max_pending(c.max_pending)
        .with_max_blocks_per_request(c.per_request);
    let mut sink = Vec::new();
    let mut rounds = 0u64;
    while let Some(req) = download.next_request() {
        rounds += 1;
        assert!(rounds < 100_000, "no progress");
        let topic = req.topic("thing", "s", c.encoding);
        let mut replies = handle_request(
            Some("thing"),
            &topic,
            &req.encode(c.encoding),
            &catalog,
            &limits,
        )
        .unwrap();
        // Shuffle, drop about a quarter, duplicate about a quarter.
        for i in (1..replies.len()).rev() {
            replies.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut delivered = Vec::new();
        for r in replies {
            match rng.below(4) {
                0 => {}
                1 => {
                    delivered.push(r.clone());
                    delivered.push(r);
                }
                _ => delivered.push(r),
            }
        }
        for r in delivered {
            download
                .accept_message(&r.topic, &r.payload, |b| {
                    sink.extend_from_slice(b);
                    Ok(())
                })
                .unwrap();
        }
        // A reboot: only the checkpoint (and the sink's stored prefix) survive.
        if rounds.is_multiple_of(c.checkpoint_every) {
            let saved: DownloadCheckpoint =
                serde_json::from_str(&serde_json::to_string(download.checkpoint()).unwrap())
                    .unwrap();
            assert_eq!(
                saved.delivered * u64::from(c.block_size),
                (sink.len() as u64).next_multiple_of(u64::from(c.block_size))
            );
            download = Download::resume(saved)
                .unwrap()
                .with_client_token("tok")
                .with_max_pending(c.max_pending)
                .with_max_blocks_per_request(c.per_request);
        }
    }
    assert!(download.is_complete());
    assert_eq!(
        download.status_receive(),
        format!("{0}/{0}", download.total())
    );
    sink
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn download_reconstructs_the_exact_file_despite_reordering_drops_duplicates_and_reboots(
        c in case()
    ) {
        let data: Vec<u8> = (0..c.size).map(|i| (i * 31 % 251) as u8).collect();
        prop_assert_eq!(run(&c, &data), data);
    }

    #[test]
    fn service_never_panics_on_arbitrary_requests(
        payload in proptest::collection::vec(any::<u8>(), 0..128),
        op in prop::sample::select(vec!["get", "describe", "data"]),
        enc in prop::sample::select(vec!["json", "cbor"]),
    ) {
        let mut catalog = StreamCatalog::default();
        catalog.insert("s", StreamSource::new(1, "d").with_file(0, vec![1u8; 1000]));
        let topic = format!("$aws/things/t/streams/s/{op}/{enc}");
        let out = handle_request(None, &topic, &payload, &catalog, &StreamLimits::default());
        prop_assert_eq!(out.is_some(), op != "data");
        let mut d = Download::new(0, 1000, 256).unwrap();
        let data_topic = format!("$aws/things/t/streams/s/data/{enc}");
        let _ = d.accept_message(&data_topic, &payload, |_| Ok(()));
    }
}

#[test]
fn streamed_blocks_feed_an_image_verifier() {
    let image: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
    let manifest = ManifestBuilder::new(1)
        .vendor_id(Uuid([1; 16]))
        .class_id(Uuid([2; 16]))
        .image(&image)
        .build()
        .unwrap();
    let key = thingkit_firmware::SigningKey::generate(thingkit_firmware::KeyType::P256).unwrap();
    let envelope = thingkit_firmware::EnvelopeBuilder::new(manifest)
        .sign(&[&key])
        .unwrap();
    let verified = thingkit_firmware::Verifier::new(thingkit_firmware::TrustAnchors::single(
        key.public_key().clone(),
    ))
    .verify(&envelope)
    .unwrap();
    let mut verifier = ImageVerifier::new(verified.image_requirement(1 << 20).unwrap());

    let mut catalog = StreamCatalog::default();
    catalog.insert("fw", StreamSource::new(1, "fw").with_file(0, image.clone()));
    let mut d = Download::new(0, image.len() as u64, 4096).unwrap();
    while let Some(req) = d.next_request() {
        let out = handle_request(
            None,
            &req.topic("dev", "fw", Encoding::Json),
            &req.encode(Encoding::Json),
            &catalog,
            &StreamLimits::default(),
        )
        .unwrap();
        for m in out.into_iter().rev() {
            d.accept_message(&m.topic, &m.payload, |b| verifier.update(b))
                .unwrap();
        }
    }
    assert_eq!(verifier.finish().unwrap().size, 70_000);
}

#[test]
fn a_rejected_response_surfaces_as_a_typed_error() {
    let catalog = StreamCatalog::default();
    let mut d = Download::new(0, 1000, 256).unwrap();
    let req = d.next_request().unwrap();
    let out = handle_request(
        None,
        &req.topic("dev", "missing", Encoding::Cbor),
        &req.encode(Encoding::Cbor),
        &catalog,
        &StreamLimits::default(),
    )
    .unwrap();
    match d.accept_message(&out[0].topic, &out[0].payload, |_| Ok(())) {
        Err(thingkit_firmware::Error::StreamRejected { code, .. }) => {
            assert_eq!(code, "ResourceNotFound")
        }
        other => panic!("{other:?}"),
    }
}
