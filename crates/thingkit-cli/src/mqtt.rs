//! `thingkit mqtt`: decode MQTT bytes (hex) to JSON lines and encode JSON back to bytes.
//!
//! The JSON shape is thingkit-mqtt's `serde` feature (documented there): `"type"` is the
//! upper-case packet name; fields are snake_case (`topic`, `qos`, `retain`, `dup`, `packet_id`,
//! `payload_hex`, `reason_code`, `properties`, ...). Binary fields end in `_hex`. `properties` is
//! present only when non-empty; its keys are the snake_case property names of MQTT 5.0 §2.2.2.2
//! (`topic_alias`, `user_properties` as `[[name, value], ...]`, `correlation_data_hex`, ...).
//! The one addition here: a CONNECT given to `encode` without `protocol` gets `--protocol`'s.

use std::io::Read;

use bytes::BytesMut;
use serde_json::Value;
use thingkit_mqtt::{Decoder, DecoderConfig, Encoder, Packet, ProtocolVersion};

use crate::Failure;

/// The protocol version argument.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Protocol {
    /// MQTT 3.1.1.
    #[value(name = "3.1.1")]
    V311,
    /// MQTT 5.0.
    #[value(name = "5.0")]
    V5,
}

impl From<Protocol> for ProtocolVersion {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::V311 => ProtocolVersion::V311,
            Protocol::V5 => ProtocolVersion::V5,
        }
    }
}

/// MQTT subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Decode hex-encoded MQTT packets (argument or standard input; whitespace is ignored) and
    /// print one JSON object per packet. Exits 1 on a malformed or incomplete packet.
    Decode {
        /// Protocol version of the stream.
        #[arg(long, value_enum)]
        protocol: Protocol,
        /// Largest accepted packet in bytes (whole packet, fixed header included).
        #[arg(long, default_value_t = thingkit_mqtt::DEFAULT_MAX_PACKET_SIZE)]
        max_packet_size: u32,
        /// The bytes as hex; read from standard input when absent.
        hex: Option<String>,
    },
    /// Encode packets given as JSON (one object, or several as JSON lines; argument or standard
    /// input) and print each as one line of hex.
    Encode {
        /// Protocol version to encode for.
        #[arg(long, value_enum)]
        protocol: Protocol,
        /// The packet(s) as JSON; read from standard input when absent.
        json: Option<String>,
    },
}

/// Runs an MQTT subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    match args {
        Args::Decode {
            protocol,
            max_packet_size,
            hex,
        } => decode(protocol.into(), max_packet_size, input(hex)?),
        Args::Encode { protocol, json } => encode(protocol.into(), &input(json)?),
    }
}

fn input(arg: Option<String>) -> Result<String, Failure> {
    match arg {
        Some(s) => Ok(s),
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| Failure(format!("reading standard input: {e}")))?;
            Ok(s)
        }
    }
}

/// Hex digits in either case; whitespace between them (line breaks, spaced bytes) is ignored.
fn parse_hex(text: &str) -> Result<Vec<u8>, Failure> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(&digits).map_err(|e| match e {
        hex::FromHexError::InvalidHexCharacter { c, index } => {
            Failure(format!("invalid hex digit {c:?} at digit {index}"))
        }
        hex::FromHexError::OddLength => Failure("hex input has an odd number of digits".into()),
        other => Failure(format!("invalid hex: {other}")),
    })
}

fn decode(version: ProtocolVersion, max_packet_size: u32, text: String) -> Result<(), Failure> {
    let bytes = parse_hex(&text)?;
    let mut buf = BytesMut::from(&bytes[..]);
    let mut decoder = Decoder::new(version)
        .with_config(DecoderConfig::default().with_max_packet_size(max_packet_size));
    let mut out = std::io::stdout().lock();
    loop {
        match decoder.decode(&mut buf)? {
            Some(packet) => {
                use std::io::Write;
                let line = serde_json::to_string(&packet)
                    .map_err(|e| Failure(format!("packet to JSON: {e}")))?;
                writeln!(out, "{line}").map_err(|e| Failure(format!("writing output: {e}")))?;
            }
            None if buf.is_empty() => return Ok(()),
            None => {
                return Err(Failure(format!(
                    "incomplete packet at byte {}: the input ends after {} bytes of it",
                    decoder.position(),
                    buf.len()
                )));
            }
        }
    }
}

fn encode(version: ProtocolVersion, text: &str) -> Result<(), Failure> {
    let encoder = Encoder::new(version);
    let mut any = false;
    for (i, value) in serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .enumerate()
    {
        let value = value.map_err(|e| Failure(format!("invalid JSON: {e}")))?;
        let packet =
            packet_from_json(value, version).map_err(|e| Failure(format!("packet {i}: {e}")))?;
        let mut buf = BytesMut::new();
        encoder
            .encode(&packet, &mut buf)
            .map_err(|e| Failure(format!("packet {i}: {e}")))?;
        println!("{}", hex::encode(&buf));
        any = true;
    }
    if !any {
        return Err(Failure("no JSON packet in the input".into()));
    }
    Ok(())
}

/// The packet a JSON value describes (the `serde` shape of thingkit-mqtt). A CONNECT may leave
/// out `protocol`: it is the `--protocol` being encoded for.
fn packet_from_json(mut value: Value, version: ProtocolVersion) -> Result<Packet, String> {
    if let Value::Object(m) = &mut value
        && m.get("type").and_then(Value::as_str) == Some("CONNECT")
        && !m.contains_key("protocol")
    {
        m.insert("protocol".into(), Value::String(version.to_string()));
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}
