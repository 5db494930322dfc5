//! The byte encoding of stored values, for stores that keep bytes (redb).
//!
//! A message is stored as the MQTT 5 PUBLISH packet that would carry it, so its topic, payload,
//! QoS, RETAIN flag and every property a PUBLISH may carry round-trip through thingkit-mqtt's
//! encoder and its fuzzed decoder, behind a small header (version, publisher, reception time).
//! Every value starts with a version byte; decoding is strict (unknown versions and flag bits,
//! bad UTF-8 and trailing bytes are errors) and never panics.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use thingkit_mqtt::{
    Decoder, DecoderConfig, Encoder, PROTOCOL_MAX_PACKET_SIZE, Packet, PacketId, ProtocolVersion,
    Publish, QoS,
};

use crate::error::StoreError;
use crate::message::GrantedSubscription;
use crate::router::SessionExpiry;
use crate::store::{SessionRecord, StoredDelivery, StoredMessage};

const VERSION: u8 = 1;

/// Where and why decoding stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    pub(crate) offset: usize,
    pub(crate) detail: String,
}

impl DecodeError {
    /// The typed store error for the record under `key` of `table`.
    pub(crate) fn at(self, table: &'static str, key: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            table,
            key: key.into(),
            offset: self.offset,
            detail: self.detail,
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    fn err(&self, detail: impl Into<String>) -> DecodeError {
        DecodeError {
            offset: self.pos,
            detail: detail.into(),
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| self.err(format!("truncated {what}: {n} bytes needed")))?;
        let out = self.bytes.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    fn version(&mut self) -> Result<(), DecodeError> {
        match self.u8("version")? {
            VERSION => Ok(()),
            v => Err(DecodeError {
                offset: 0,
                detail: format!("unknown encoding version {v}"),
            }),
        }
    }

    fn flags(&mut self, known: u8, what: &str) -> Result<u8, DecodeError> {
        let at = self.pos;
        let flags = self.u8(what)?;
        if flags & !known != 0 {
            return Err(DecodeError {
                offset: at,
                detail: format!("unknown {what} bits {flags:#04x}"),
            });
        }
        Ok(flags)
    }

    fn qos(&mut self) -> Result<QoS, DecodeError> {
        let at = self.pos;
        let v = self.u8("qos")?;
        QoS::from_u8(v).ok_or(DecodeError {
            offset: at,
            detail: format!("QoS {v}"),
        })
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(self.err(format!("{} trailing bytes", self.bytes.len() - self.pos)))
        }
    }
}

fn encode_error(what: &'static str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Encode {
        what,
        detail: detail.to_string(),
    }
}

/// Appends `message` to `out`.
pub(crate) fn put_message(message: &StoredMessage, out: &mut Vec<u8>) -> Result<(), StoreError> {
    out.push(VERSION);
    out.push(u8::from(message.from.is_some()));
    out.extend_from_slice(&message.received_unix_ms.to_be_bytes());
    if let Some(from) = &message.from {
        let len = u16::try_from(from.len())
            .map_err(|_| encode_error("client id", "longer than 65,535 bytes"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(from.as_bytes());
    }
    let publish = Publish {
        dup: false,
        qos: message.qos,
        retain: message.retain,
        topic: Some(message.topic.clone()),
        packet_id: (message.qos != QoS::AtMostOnce)
            .then(|| PacketId::new(1))
            .flatten(),
        properties: message.properties.clone(),
        payload: message.payload.clone(),
    };
    let mut packet = BytesMut::new();
    Encoder::new(ProtocolVersion::V5)
        .with_max_packet_size(PROTOCOL_MAX_PACKET_SIZE)
        .encode_publish(&publish, &mut packet)
        .map_err(|e| encode_error("message", e))?;
    let len = u32::try_from(packet.len()).map_err(|_| encode_error("message", "too large"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&packet);
    Ok(())
}

fn read_message(r: &mut Reader<'_>) -> Result<StoredMessage, DecodeError> {
    r.version()?;
    let flags = r.flags(0b1, "message flags")?;
    let received_unix_ms = r.u64("reception time")?;
    let from = if flags & 1 != 0 {
        let len = r.u16("client id length")?;
        let at = r.pos;
        let raw = r.take(usize::from(len), "client id")?;
        let id = std::str::from_utf8(raw).map_err(|e| DecodeError {
            offset: at,
            detail: format!("client id is not UTF-8: {e}"),
        })?;
        Some(Arc::<str>::from(id))
    } else {
        None
    };
    let len = r.u32("packet length")?;
    let at = r.pos;
    let raw = r.take(len as usize, "packet")?;
    let mut bytes = Bytes::copy_from_slice(raw);
    let bad = |detail: String| DecodeError { offset: at, detail };
    let packet = Decoder::new(ProtocolVersion::V5)
        .with_config(DecoderConfig::default().with_max_packet_size(PROTOCOL_MAX_PACKET_SIZE))
        .decode_bytes(&mut bytes)
        .map_err(|e| bad(format!("stored PUBLISH: {e}")))?;
    let Some(Packet::Publish(publish)) = packet else {
        return Err(bad("not a complete PUBLISH packet".into()));
    };
    if !bytes.is_empty() {
        return Err(bad("bytes after the PUBLISH packet".into()));
    }
    let Some(topic) = publish.topic else {
        return Err(bad("PUBLISH without a topic".into()));
    };
    Ok(StoredMessage {
        topic,
        payload: publish.payload,
        qos: publish.qos,
        retain: publish.retain,
        properties: publish.properties,
        from,
        received_unix_ms,
    })
}

/// Decodes a message stored with [`put_message`].
pub(crate) fn message(bytes: &[u8]) -> Result<StoredMessage, DecodeError> {
    let mut r = Reader::new(bytes);
    let m = read_message(&mut r)?;
    r.end()?;
    Ok(m)
}

/// Encodes a queued delivery with its message inline (the tests' way to check that a message
/// embedded in a larger value decodes strictly).
#[cfg(test)]
pub(crate) fn put_delivery(d: &StoredDelivery, out: &mut Vec<u8>) -> Result<(), StoreError> {
    out.push(VERSION);
    out.push(d.qos.as_u8());
    out.push(u8::from(d.retain));
    out.extend_from_slice(&d.subscription_id.map_or(0, NonZeroU32::get).to_be_bytes());
    put_message(&d.message, out)
}

/// Decodes a delivery stored with [`put_delivery`].
#[cfg(test)]
pub(crate) fn delivery(bytes: &[u8]) -> Result<StoredDelivery, DecodeError> {
    let mut r = Reader::new(bytes);
    r.version()?;
    let qos = r.qos()?;
    let retain = r.flags(1, "retain flag")? != 0;
    let subscription_id = NonZeroU32::new(r.u32("subscription id")?);
    let message = Arc::new(read_message(&mut r)?);
    r.end()?;
    Ok(StoredDelivery {
        message,
        qos,
        retain,
        subscription_id,
    })
}

/// Encodes a queue entry: a delivery's own fields and the id of its message, stored once per
/// batch however many queues it goes to.
pub(crate) fn put_queued(d: &StoredDelivery, message_id: u64, out: &mut Vec<u8>) {
    out.push(VERSION);
    out.push(d.qos.as_u8());
    out.push(u8::from(d.retain));
    out.extend_from_slice(&d.subscription_id.map_or(0, NonZeroU32::get).to_be_bytes());
    out.extend_from_slice(&message_id.to_be_bytes());
}

/// A queue entry stored with [`put_queued`]: (QoS, RETAIN, subscription id, message id).
pub(crate) type Queued = (QoS, bool, Option<NonZeroU32>, u64);

/// Decodes a queue entry stored with [`put_queued`].
pub(crate) fn queued(bytes: &[u8]) -> Result<Queued, DecodeError> {
    let mut r = Reader::new(bytes);
    r.version()?;
    let qos = r.qos()?;
    let retain = r.flags(1, "retain flag")? != 0;
    let subscription_id = NonZeroU32::new(r.u32("subscription id")?);
    let message_id = r.u64("message id")?;
    r.end()?;
    Ok((qos, retain, subscription_id, message_id))
}

const EXPIRY_AFTER: u8 = 1;
const EXPIRY_NEVER: u8 = 2;

/// Encodes a session record.
pub(crate) fn put_session(record: &SessionRecord, out: &mut Vec<u8>) -> Result<(), StoreError> {
    out.push(VERSION);
    match record.expiry {
        SessionExpiry::After(d) => {
            out.push(EXPIRY_AFTER);
            out.extend_from_slice(&d.as_secs().to_be_bytes());
            out.extend_from_slice(&d.subsec_nanos().to_be_bytes());
        }
        SessionExpiry::Never => out.push(EXPIRY_NEVER),
        SessionExpiry::OnDisconnect => {
            return Err(encode_error(
                "session",
                "a session that ends with its connection is not stored",
            ));
        }
    }
    match record.deadline_unix_ms {
        Some(at) => {
            out.push(1);
            out.extend_from_slice(&at.to_be_bytes());
        }
        None => out.push(0),
    }
    Ok(())
}

/// Decodes a session record stored with [`put_session`].
pub(crate) fn session(bytes: &[u8]) -> Result<SessionRecord, DecodeError> {
    let mut r = Reader::new(bytes);
    r.version()?;
    let at = r.pos;
    let expiry = match r.u8("expiry kind")? {
        EXPIRY_AFTER => {
            let secs = r.u64("expiry seconds")?;
            let nanos_at = r.pos;
            let nanos = r.u32("expiry nanoseconds")?;
            if nanos >= 1_000_000_000 {
                return Err(DecodeError {
                    offset: nanos_at,
                    detail: format!("{nanos} nanoseconds"),
                });
            }
            SessionExpiry::After(Duration::new(secs, nanos))
        }
        EXPIRY_NEVER => SessionExpiry::Never,
        k => {
            return Err(DecodeError {
                offset: at,
                detail: format!("unknown expiry kind {k}"),
            });
        }
    };
    let deadline_unix_ms = match r.flags(1, "deadline flag")? {
        0 => None,
        _ => Some(r.u64("deadline")?),
    };
    r.end()?;
    Ok(SessionRecord {
        expiry,
        deadline_unix_ms,
    })
}

/// Encodes subscription options.
pub(crate) fn put_granted(g: &GrantedSubscription, out: &mut Vec<u8>) {
    out.push(VERSION);
    out.push(g.qos.as_u8());
    out.push(u8::from(g.no_local) | (u8::from(g.retain_as_published) << 1));
    out.extend_from_slice(&g.id.map_or(0, NonZeroU32::get).to_be_bytes());
}

/// Decodes subscription options stored with [`put_granted`].
pub(crate) fn granted(bytes: &[u8]) -> Result<GrantedSubscription, DecodeError> {
    let mut r = Reader::new(bytes);
    r.version()?;
    let qos = r.qos()?;
    let flags = r.flags(0b11, "subscription options")?;
    let id = NonZeroU32::new(r.u32("subscription id")?);
    r.end()?;
    Ok(GrantedSubscription {
        qos,
        no_local: flags & 1 != 0,
        retain_as_published: flags & 2 != 0,
        id,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use thingkit_mqtt::{MqttStr, Properties, TopicName};

    use super::*;

    fn sample() -> StoredMessage {
        StoredMessage {
            topic: TopicName::new("a/b").unwrap(),
            payload: Bytes::from_static(b"\x00\xffpayload"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties {
                payload_format_indicator: Some(true),
                message_expiry_interval: Some(30),
                content_type: Some(MqttStr::new("text/plain").unwrap()),
                response_topic: Some(TopicName::new("reply/here").unwrap()),
                correlation_data: Some(Bytes::from_static(b"\x01\x02")),
                user_properties: vec![
                    (MqttStr::new("k").unwrap(), MqttStr::new("v").unwrap()),
                    (MqttStr::new("k").unwrap(), MqttStr::new("w").unwrap()),
                ]
                .into(),
                ..Properties::default()
            }
            .into(),
            from: Some("sensor-1".into()),
            received_unix_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn a_message_round_trips_with_its_forwarded_properties() {
        let m = sample();
        let mut out = Vec::new();
        put_message(&m, &mut out).unwrap();
        assert_eq!(message(&out).unwrap(), m);
        let plain = StoredMessage {
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
            from: None,
            payload: Bytes::new(),
            ..m
        };
        out.clear();
        put_message(&plain, &mut out).unwrap();
        assert_eq!(message(&out).unwrap(), plain);
    }

    #[test]
    fn a_delivery_a_session_and_options_round_trip() {
        let d = StoredDelivery {
            message: Arc::new(sample()),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_id: NonZeroU32::new(7),
        };
        let mut out = Vec::new();
        put_delivery(&d, &mut out).unwrap();
        assert_eq!(delivery(&out).unwrap(), d);
        for record in [
            SessionRecord {
                expiry: SessionExpiry::After(Duration::new(3600, 5)),
                deadline_unix_ms: Some(42),
            },
            SessionRecord {
                expiry: SessionExpiry::Never,
                deadline_unix_ms: None,
            },
        ] {
            out.clear();
            put_session(&record, &mut out).unwrap();
            assert_eq!(session(&out).unwrap(), record);
        }
        let g = GrantedSubscription {
            qos: QoS::AtLeastOnce,
            no_local: true,
            retain_as_published: true,
            id: NonZeroU32::new(9),
        };
        out.clear();
        put_granted(&g, &mut out);
        assert_eq!(granted(&out).unwrap(), g);
    }

    #[test]
    fn rejects_trailing_bytes_unknown_versions_and_flags() {
        let mut out = Vec::new();
        put_message(&sample(), &mut out).unwrap();
        let mut longer = out.clone();
        longer.push(0);
        assert!(message(&longer).unwrap_err().detail.contains("trailing"));
        let mut v2 = out.clone();
        v2[0] = 2;
        assert!(message(&v2).unwrap_err().detail.contains("version"));
        let mut flags = out.clone();
        flags[1] = 0x80;
        assert_eq!(message(&flags).unwrap_err().offset, 1);
        assert!(granted(&[1, 3, 0, 0, 0, 0, 0]).is_err(), "QoS 3");
    }

    #[test]
    fn a_queue_entry_round_trips() {
        let d = StoredDelivery {
            message: Arc::new(sample()),
            qos: QoS::AtLeastOnce,
            retain: true,
            subscription_id: NonZeroU32::new(12),
        };
        let mut out = Vec::new();
        put_queued(&d, u64::MAX - 1, &mut out);
        assert_eq!(
            queued(&out).unwrap(),
            (QoS::AtLeastOnce, true, NonZeroU32::new(12), u64::MAX - 1)
        );
        assert!(queued(&out[..out.len() - 1]).is_err());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = message(&bytes);
            let _ = delivery(&bytes);
            let _ = session(&bytes);
            let _ = granted(&bytes);
            let _ = queued(&bytes);
        }

        #[test]
        fn every_truncation_of_a_stored_delivery_is_an_error(cut in 0usize..200) {
            let d = StoredDelivery {
                message: Arc::new(sample()),
                qos: QoS::AtLeastOnce,
                retain: true,
                subscription_id: None,
            };
            let mut out = Vec::new();
            put_delivery(&d, &mut out).unwrap();
            let cut = cut.min(out.len() - 1);
            prop_assert!(delivery(&out[..cut]).is_err());
        }

        #[test]
        fn flipping_a_byte_of_a_stored_delivery_never_panics(at in 0usize..200, bit in 0u8..8) {
            let d = StoredDelivery {
                message: Arc::new(sample()),
                qos: QoS::AtLeastOnce,
                retain: true,
                subscription_id: NonZeroU32::new(3),
            };
            let mut out = Vec::new();
            put_delivery(&d, &mut out).unwrap();
            let at = at % out.len();
            out[at] ^= 1 << bit;
            let _ = delivery(&out);
        }
    }
}
