//! `serde` support (feature `serde`): the impls that derive cannot write, and the helpers the
//! derived impls in `packet` and `property` refer to.
//!
//! The shape is documented on the crate (`# Serde`). Deserializing goes through the same checked
//! constructors as decoding, so a deserialized [`TopicName`] has no wildcard and an [`MqttStr`] no
//! U+0000; what needs the whole packet and the protocol version (reason codes per packet type,
//! properties per packet type, packet identifier present exactly with QoS > 0, ...) is checked by
//! the [`Encoder`](crate::Encoder), as for packets built in code.

use std::fmt;
use std::marker::PhantomData;

use ::serde::de::{self, Deserializer, Visitor};
use ::serde::{Deserialize, Serialize, Serializer};
use bytes::Bytes;

use crate::Error;
use crate::packet::{
    PacketId, PacketType, ProtocolVersion, QoS, RetainHandling, Subscription, SubscriptionOptions,
};
use crate::property::{PacketProperties, Properties, UserProperties};
use crate::topic::{MqttStr, TopicFilter, TopicName};

/// The Clean Start of a CONNECT whose JSON leaves it out.
pub(crate) fn default_clean_start() -> bool {
    true
}

/// The Keep Alive of a CONNECT whose JSON leaves it out, in seconds.
pub(crate) fn default_keep_alive() -> u16 {
    60
}

/// Binary data (`Bytes`) as a hex string (either case on input).
pub(crate) mod hex_bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        d.deserialize_str(HexVisitor)
    }

    struct HexVisitor;

    impl Visitor<'_> for HexVisitor {
        type Value = Bytes;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("binary data as a string of hex digits")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
            hex::decode(v)
                .map(Bytes::from)
                .map_err(|e| E::custom(format_args!("invalid hex: {e}")))
        }
    }
}

/// Optional binary data as a hex string; `None` is left out by `skip_serializing_if` and comes
/// back from a missing field through `default` (a JSON `null` is accepted as `None` too).
pub(crate) mod option_hex_bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(b: &Option<Bytes>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => super::hex_bytes::serialize(b, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Bytes>, D::Error> {
        #[derive(Deserialize)]
        struct Hex(#[serde(with = "crate::serde::hex_bytes")] Bytes);
        Ok(Option::<Hex>::deserialize(d)?.map(|Hex(b)| b))
    }
}

/// A string validated by a checked constructor: `visit_string` keeps the deserializer's
/// allocation (the types are `Bytes`-backed), `visit_str` copies once.
struct Checked<T>(fn(String) -> Result<T, Error>, &'static str, PhantomData<T>);

impl<T> Visitor<'_> for Checked<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        self.visit_string(v.to_owned())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<T, E> {
        (self.0)(v).map_err(E::custom)
    }
}

macro_rules! validated_string {
    ($ty:ty, $what:literal) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_string(Checked(
                    <$ty as TryFrom<String>>::try_from,
                    $what,
                    PhantomData,
                ))
            }
        }
    };
}

validated_string!(TopicName, "an MQTT topic name (no wildcards)");
validated_string!(TopicFilter, "an MQTT topic filter");
validated_string!(MqttStr, "an MQTT UTF-8 string");

/// A small unsigned integer mapped to an enum (QoS, Retain Handling).
struct Small<T>(fn(u64) -> Option<T>, &'static str);

impl<T> Visitor<'_> for Small<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        (self.0)(v).ok_or_else(|| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
        }
    }
}

impl Serialize for QoS {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.as_u8())
    }
}

impl<'de> Deserialize<'de> for QoS {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_u8(Small(
            |v| u8::try_from(v).ok().and_then(QoS::from_u8),
            "QoS 0, 1 or 2 [MQTT-3.3.1-4]",
        ))
    }
}

impl Serialize for RetainHandling {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(*self as u8)
    }
}

impl<'de> Deserialize<'de> for RetainHandling {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_u8(Small(
            |v| match v {
                0 => Some(RetainHandling::SendAtSubscribe),
                1 => Some(RetainHandling::SendIfNew),
                2 => Some(RetainHandling::DoNotSend),
                _ => None,
            },
            "Retain Handling 0, 1 or 2 (3 is reserved) [MQTT-5.0 §3.8.3.1]",
        ))
    }
}

impl Serialize for PacketId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.get())
    }
}

impl<'de> Deserialize<'de> for PacketId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_u16(Small(
            |v| u16::try_from(v).ok().and_then(PacketId::new),
            "a packet identifier 1..=65535 [MQTT-2.2.1-3]",
        ))
    }
}

/// A string naming one of a few values (protocol version, packet type).
struct Named<T>(fn(&str) -> Option<T>, &'static str);

impl<T> Visitor<'_> for Named<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

impl Serialize for ProtocolVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ProtocolVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(Named(
            |v| match v {
                "3.1.1" => Some(ProtocolVersion::V311),
                "5.0" => Some(ProtocolVersion::V5),
                _ => None,
            },
            "\"3.1.1\" or \"5.0\"",
        ))
    }
}

impl Serialize for PacketType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for PacketType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(Named(
            PacketType::from_name,
            "an upper-case packet type name (\"PUBLISH\", \"CONNACK\", ...)",
        ))
    }
}

impl Serialize for PacketProperties {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Properties::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for PacketProperties {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `From<Properties>` keeps an empty block unallocated, so `{}` equals no properties.
        Properties::deserialize(d).map(PacketProperties::from)
    }
}

/// A subscription as one flat object: the filter next to its options, as in the SUBSCRIBE
/// payload (`{"filter": "a/+", "qos": 1, "no_local": false, ...}`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlatSubscription {
    filter: TopicFilter,
    #[serde(default)]
    qos: QoS,
    #[serde(default)]
    no_local: bool,
    #[serde(default)]
    retain_as_published: bool,
    #[serde(default)]
    retain_handling: RetainHandling,
}

impl Serialize for Subscription {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let SubscriptionOptions {
            qos,
            no_local,
            retain_as_published,
            retain_handling,
        } = self.options;
        FlatSubscription {
            filter: self.filter.clone(),
            qos,
            no_local,
            retain_as_published,
            retain_handling,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Subscription {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = FlatSubscription::deserialize(d)?;
        Ok(Subscription {
            filter: f.filter,
            options: SubscriptionOptions {
                qos: f.qos,
                no_local: f.no_local,
                retain_as_published: f.retain_as_published,
                retain_handling: f.retain_handling,
            },
        })
    }
}

/// `[[name, value], ...]`, in order.
impl Serialize for UserProperties {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for UserProperties {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<(MqttStr, MqttStr)>::deserialize(d).map(UserProperties::from)
    }
}
