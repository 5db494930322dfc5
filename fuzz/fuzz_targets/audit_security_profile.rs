//! Arbitrary bytes as a `CreateSecurityProfile` body: parsing must never panic, and a parsed
//! profile must serialise to JSON that parses back to an equal profile.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingkit_audit::detect::{ProfileLimits, SecurityProfile};

fuzz_target!(|data: &[u8]| {
    let limits = ProfileLimits::default();
    let Ok(profile) = SecurityProfile::parse(data, &limits) else {
        return;
    };
    let json = profile.to_json();
    let again = SecurityProfile::parse(
        json.as_bytes(),
        &ProfileLimits {
            // Serialising adds explicit defaults, so the round trip may be somewhat longer.
            max_json_bytes: usize::MAX,
            ..limits
        },
    )
    .expect("a parsed profile's JSON parses");
    assert_eq!(again, profile, "round trip changed the profile");
});
