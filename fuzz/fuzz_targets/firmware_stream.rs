//! MQTT-based file delivery: arbitrary topics and payloads to the stream service
//! (`handle_request`), and arbitrary data responses to a device `Download`. Neither may panic,
//! hang or over-allocate; every block a download delivers must lie inside the file.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use thingkit_firmware::stream::{
    Download, StreamCatalog, StreamLimits, StreamSource, handle_request,
};

fn catalog() -> &'static StreamCatalog {
    static C: OnceLock<StreamCatalog> = OnceLock::new();
    C.get_or_init(|| {
        let mut c = StreamCatalog::default();
        c.insert(
            "s",
            StreamSource::new(1, "fuzz")
                .with_file(0, vec![0x5a; 3000])
                .with_file(1, Vec::new()),
        );
        c
    })
}

fuzz_target!(|data: &[u8]| {
    // First byte: where the topic ends (topic bytes, then payload).
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(split).min(rest.len());
    let (topic, payload) = rest.split_at(split);
    let topic = String::from_utf8_lossy(topic);
    let limits = StreamLimits::default().with_block_size_range(1, 4096);
    for t in [
        topic.as_ref(),
        "$aws/things/t/streams/s/get/json",
        "$aws/things/t/streams/s/get/cbor",
        "$aws/things/t/streams/s/describe/cbor",
    ] {
        if let Some(out) = handle_request(Some("t"), t, payload, catalog(), &limits) {
            assert!(!out.is_empty());
            assert!(out.len() <= limits.max_blocks_per_request as usize);
        }
    }
    let mut download = Download::new(0, 3000, 256)
        .expect("valid download")
        .with_max_pending(4);
    let mut delivered = 0usize;
    for t in [
        "$aws/things/t/streams/s/data/json",
        "$aws/things/t/streams/s/data/cbor",
        topic.as_ref(),
    ] {
        let _ = download.accept_message(t, payload, |b| {
            delivered += b.len();
            Ok(())
        });
    }
    assert!(delivered <= 3000);
    assert!(download.received() <= download.total());
});
