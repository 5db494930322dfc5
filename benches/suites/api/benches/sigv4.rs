//! thingkit-api: SigV4 verification of a typical boto3 call against the physical floor.
//!
//! - `sigv4/verify_describe_thing`: `sigv4::verify` of `GET /things/sensor-0042` as boto3 signs
//!   it (host, x-amz-date, user-agent headers; empty body): parse the header, build the canonical
//!   request, hash it, derive the key, compare.
//! - `sigv4/floor_ring`: what any verifier must compute with ring: SHA-256 of the canonical
//!   request (and of the empty body) and five HMAC-SHA256 (four to derive the signing key, one
//!   for the signature).
//!
//! Run: cargo bench --manifest-path benches/Cargo.toml -p thingkit-bench-api

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::Criterion;
use thingkit_api::sigv4::{SignedRequest, floor, sign, verify};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn bench(c: &mut Criterion) {
    let mut headers = vec![
        ("host".to_string(), "iot.us-east-1.amazonaws.com".to_string()),
        ("x-amz-date".to_string(), "20150830T123600Z".to_string()),
        (
            "user-agent".to_string(),
            "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux#6.1 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.0".to_string(),
        ),
    ];
    let request = |h: &[(String, String)]| -> String {
        sign(
            &SignedRequest {
                method: "GET",
                path: "/things/sensor-0042",
                query: "",
                headers: h,
                body: b"",
            },
            "AKIDEXAMPLE",
            SECRET,
            "us-east-1",
            "iot",
        )
        .expect("signs")
    };
    let auth = request(&headers);
    headers.push(("authorization".to_string(), auth));
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
    let req = SignedRequest {
        method: "GET",
        path: "/things/sensor-0042",
        query: "",
        headers: &headers,
        body: b"",
    };
    assert!(
        verify(
            &req,
            |_| Some(SECRET.to_string()),
            now,
            Duration::from_secs(300)
        )
        .is_ok()
    );

    // The canonical request verify builds for this call, byte for byte in length and shape.
    let canonical = format!(
        "GET\n/things/sensor-0042\n\nhost:iot.us-east-1.amazonaws.com\nuser-agent:{}\nx-amz-date:20150830T123600Z\n\nhost;user-agent;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        headers[2].1
    );

    let mut g = c.benchmark_group("sigv4");
    g.bench_function("verify_describe_thing", |b| {
        b.iter(|| {
            verify(
                black_box(&req),
                |_| Some(SECRET.to_string()),
                now,
                Duration::from_secs(300),
            )
        })
    });
    g.bench_function("floor_ring", |b| {
        b.iter(|| {
            let body = thingkit_api::sigv4::floor_body_hash(black_box(b""));
            (floor(black_box(SECRET), black_box(&canonical)), body)
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
}
