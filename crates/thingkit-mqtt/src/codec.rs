//! `tokio_util::codec` integration (feature `tokio-codec`).
//!
//! [`MqttCodec`] wraps a [`Decoder`] and an [`Encoder`] so a `Framed<TcpStream, MqttCodec>` yields
//! [`Packet`]s. `Ok(None)` from `decode` means "need more bytes" and nothing else; a malformed
//! frame is an error that ends the stream, never a silently dropped frame.

use bytes::BytesMut;

use crate::{Decoder, Encoder, Error, Packet, ProtocolVersion};

/// A tokio-util codec for MQTT packets.
///
/// ```
/// use bytes::BytesMut;
/// use thingkit_mqtt::{MqttCodec, Packet};
/// use tokio_util::codec::{Decoder as _, Encoder as _};
///
/// let mut codec = MqttCodec::server(); // detects 3.1.1 or 5.0 from CONNECT
/// let mut buf = BytesMut::from(&b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"[..]);
/// assert!(matches!(codec.decode(&mut buf)?, Some(Packet::Connect(_))));
/// codec.encode(Packet::PingResp, &mut buf)?;
/// assert_eq!(&buf[..], b"\xd0\x00");
/// # Ok::<(), thingkit_mqtt::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MqttCodec {
    decoder: Decoder,
    encoder: Option<Encoder>,
}

impl MqttCodec {
    /// A codec for a connection of known version.
    pub fn new(version: ProtocolVersion) -> Self {
        MqttCodec {
            decoder: Decoder::new(version),
            encoder: Some(Encoder::new(version)),
        }
    }

    /// A server-side codec that learns the version from the client's CONNECT; encoding before
    /// that uses MQTT 5.0.
    pub fn server() -> Self {
        MqttCodec {
            decoder: Decoder::detect(),
            encoder: None,
        }
    }

    /// The decoder (to adjust limits).
    pub fn decoder_mut(&mut self) -> &mut Decoder {
        &mut self.decoder
    }

    /// Replaces the encoder (for example to apply the peer's Maximum Packet Size).
    pub fn set_encoder(&mut self, encoder: Encoder) {
        self.encoder = Some(encoder);
    }

    fn encoder(&self) -> Encoder {
        self.encoder
            .unwrap_or_else(|| Encoder::new(self.decoder.version().unwrap_or(ProtocolVersion::V5)))
    }
}

impl tokio_util::codec::Decoder for MqttCodec {
    type Item = Packet;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, Error> {
        self.decoder.decode(src)
    }
}

impl tokio_util::codec::Encoder<Packet> for MqttCodec {
    type Error = Error;

    fn encode(&mut self, item: Packet, dst: &mut BytesMut) -> Result<(), Error> {
        self.encoder().encode(&item, dst).map(|_| ())
    }
}

impl tokio_util::codec::Encoder<&Packet> for MqttCodec {
    type Error = Error;

    fn encode(&mut self, item: &Packet, dst: &mut BytesMut) -> Result<(), Error> {
        self.encoder().encode(item, dst).map(|_| ())
    }
}
