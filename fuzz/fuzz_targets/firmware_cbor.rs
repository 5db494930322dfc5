//! The strict CBOR decoder alone: arbitrary bytes must be refused or decoded, and whatever is
//! accepted must already be in deterministic form (re-encoding reproduces the input). The same
//! bytes are also tried as a SUIT manifest and a command sequence.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingkit_firmware::{CborLimits, CborValue};
use thingkit_firmware::{CommandSequence, Manifest};

fuzz_target!(|data: &[u8]| {
    let limits = CborLimits::default();
    if let Ok(v) = CborValue::decode(data, &limits) {
        assert_eq!(v.to_vec(), data, "accepted CBOR must be canonical");
    }
    if let Ok(m) = Manifest::from_cbor(data, &limits) {
        let _ = m.component_parameters(0, &[]);
    }
    let _ = CommandSequence::from_cbor(data, &limits);
});
