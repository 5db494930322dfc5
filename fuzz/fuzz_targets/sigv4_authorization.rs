//! Arbitrary bytes as the `Authorization` header, the `x-amz-date` header and the other
//! headers of a request: SigV4 verification must never panic, and must refuse (no key's secret
//! is the fuzzer's to guess).
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use thingkit_api::sigv4::{SignedRequest, verify};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Pieces separated by NUL: authorization, date, then name/value pairs.
    let mut pieces = text.split('\0');
    let mut headers = vec![
        (
            "host".to_string(),
            "iot.us-east-1.amazonaws.com".to_string(),
        ),
        (
            "authorization".to_string(),
            pieces.next().unwrap_or_default().to_string(),
        ),
    ];
    if let Some(date) = pieces.next() {
        headers.push(("x-amz-date".to_string(), date.to_string()));
    }
    while let (Some(name), Some(value)) = (pieces.next(), pieces.next()) {
        headers.push((name.to_ascii_lowercase(), value.to_string()));
    }
    let request = SignedRequest {
        method: "GET",
        path: "/things/a%3Ab/../c",
        query: "maxResults=1&nextToken=%zz",
        headers: &headers,
        body: data,
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
    let result = verify(
        &request,
        |_| Some("secret".to_string()),
        now,
        Duration::from_secs(300),
    );
    assert!(result.is_err(), "an arbitrary signature verified");
});
