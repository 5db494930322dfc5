//! MQTT 3.1.1 decoding of arbitrary bytes: never panics, never allocates beyond the input, and
//! every decoded packet re-encodes to bytes that decode to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingkit_mqtt::ProtocolVersion;

#[path = "mqtt_decode_common.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::decode_stream(ProtocolVersion::V311, data));
