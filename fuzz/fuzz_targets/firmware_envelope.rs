//! Arbitrary bytes as a SUIT envelope, verified against a fixed trusted key (the key from
//! draft-ietf-suit-manifest's examples), then inspected (which decodes the manifest without
//! authentication, reaching the manifest decoder too). Neither may panic, hang or over-allocate.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use thingkit_firmware::{EnvelopeLimits, PublicKey, TrustAnchors, Verifier, inspect};

const KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEhJaBGq4LqqvSYVcYnuzaJr6qi/Eb
bz/m4rVlnIXbwK07HypLbAmBMcCjbazR14vTgdzfsJwFLbM5kdtzOLSolg==
-----END PUBLIC KEY-----
";

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let key = PublicKey::from_spki_pem(KEY).expect("the fixed key parses");
        Verifier::new(TrustAnchors::single(key))
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = verifier().verify(data) {
        // Anything that verifies must also be self-consistent.
        let _ = v.parameters();
        let _ = v.image_requirement(u64::MAX);
    }
    let _ = inspect(data, &EnvelopeLimits::default());
});
