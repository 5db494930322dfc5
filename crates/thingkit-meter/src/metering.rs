//! Metering policy; documented on [`MeteringPolicy`].

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One kilobyte as used by all presets: 1,024 bytes.
pub const KB: u32 = 1024;

/// What a usage event or message counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PacketKind {
    /// A PUBLISH received from a device (inbound).
    Publish,
    /// A PUBLISH delivered to a subscriber (outbound).
    Receive,
    /// A CONNECT.
    Connect,
    /// A SUBSCRIBE.
    Subscribe,
    /// A PUBACK sent by a device.
    Puback,
    /// A PINGREQ.
    Ping,
    /// A PUBLISH with the retain flag set.
    Retained,
    /// Minutes of connection time.
    ConnectionMinutes,
    /// A device shadow (twin) operation.
    Shadow,
    /// A registry operation.
    Registry,
}

impl PacketKind {
    /// Every kind, in declaration order.
    pub const ALL: [PacketKind; 10] = [
        PacketKind::Publish,
        PacketKind::Receive,
        PacketKind::Connect,
        PacketKind::Subscribe,
        PacketKind::Puback,
        PacketKind::Ping,
        PacketKind::Retained,
        PacketKind::ConnectionMinutes,
        PacketKind::Shadow,
        PacketKind::Registry,
    ];

    /// The name used in JSON, CSV and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            PacketKind::Publish => "publish",
            PacketKind::Receive => "receive",
            PacketKind::Connect => "connect",
            PacketKind::Subscribe => "subscribe",
            PacketKind::Puback => "puback",
            PacketKind::Ping => "ping",
            PacketKind::Retained => "retained",
            PacketKind::ConnectionMinutes => "connection_minutes",
            PacketKind::Shadow => "shadow",
            PacketKind::Registry => "registry",
        }
    }

    /// Parses the name used in JSON (`publish`, `connection_minutes`, ...).
    pub fn parse(name: &str) -> Option<PacketKind> {
        PacketKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl std::fmt::Display for PacketKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which bytes of a packet count toward its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountedBytes {
    /// Topic name plus payload (AWS, Azure).
    TopicAndPayload,
    /// Topic name, payload and MQTT 5 properties.
    TopicPayloadAndProperties,
    /// The whole packet as sent on the wire, fixed header included (GCP).
    WholePacket,
}

/// The sizes of one packet's parts, as the broker measured them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketSize {
    /// Bytes of the topic name.
    pub topic: u32,
    /// Bytes of the payload.
    pub payload: u32,
    /// Bytes of the MQTT 5 properties.
    pub properties: u32,
    /// Bytes of the whole packet on the wire.
    pub whole: u32,
}

/// `units = max(min_units, ceil(bytes / block_bytes))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRule {
    /// Bytes per unit; at least 1.
    pub block_bytes: u32,
    /// The fewest units any billable operation costs (a zero-byte message still costs this).
    pub min_units: u64,
}

impl BlockRule {
    /// Units for `bytes` counted bytes.
    #[inline]
    pub fn units(&self, bytes: u64) -> u64 {
        let block = u64::from(self.block_bytes.max(1));
        // Most messages fit in one block: no division for them (it is on the per-message path).
        let blocks = if bytes <= block {
            u64::from(bytes > 0)
        } else {
            bytes.div_ceil(block)
        };
        blocks.max(self.min_units)
    }
}

/// A set of [`PacketKind`]s, stored as a bit mask, written in JSON as a list of names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "Vec<PacketKind>", into = "Vec<PacketKind>")]
pub struct KindSet(u16);

impl KindSet {
    /// The empty set.
    pub const EMPTY: KindSet = KindSet(0);

    /// The set of these kinds.
    pub fn of(kinds: &[PacketKind]) -> KindSet {
        KindSet(kinds.iter().fold(0, |m, k| m | k.bit()))
    }

    /// Whether `kind` is in the set.
    #[inline]
    pub fn contains(self, kind: PacketKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// The kinds in the set, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = PacketKind> {
        PacketKind::ALL
            .into_iter()
            .filter(move |k| self.contains(*k))
    }
}

impl From<Vec<PacketKind>> for KindSet {
    fn from(v: Vec<PacketKind>) -> KindSet {
        KindSet::of(&v)
    }
}

impl From<KindSet> for Vec<PacketKind> {
    fn from(s: KindSet) -> Vec<PacketKind> {
        s.iter().collect()
    }
}

/// How messages become billable units. Serializable configuration; see the module docs for the
/// presets.
///
/// Metering policy: how one message or operation becomes billable units.
///
/// `units = max(min_units, ceil(counted_bytes / block_bytes))` for every billable kind, where
/// the counted bytes are chosen by [`CountedBytes`]. A kilobyte (KB) is **1,024 bytes** throughout
/// this crate, as in the providers' own metering ("messages are metered in 5 KB increments": a
/// 5,120-byte message is one unit, 5,121 bytes are two).
///
/// | preset | messages | shadow / twin | registry | connection minutes | not billed |
/// |---|---|---|---|---|---|
/// | `aws` | 5 KB blocks, retained publishes count twice | 1 KB blocks | 1 KB blocks | 1 unit per minute | CONNECT, SUBSCRIBE, PUBACK, PINGREQ |
/// | `azure` | 4 KB chunks | 4 KB chunks | not billed | not billed | CONNECT, SUBSCRIBE, PUBACK, PINGREQ |
/// | `azure-free` | 0.5 KB chunks | 0.5 KB chunks | not billed | not billed | as `azure` |
/// | `gcp` | bytes, at least 1,024 per operation | bytes, ≥ 1,024 | bytes, ≥ 1,024 | not billed | nothing else |
///
/// Azure bills provisioned units with a daily message quota per unit; see
/// [`ProvisionedPlan`](crate::ProvisionedPlan) and [`Quotas`](crate::Quotas).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeteringPolicy {
    /// Preset or user-chosen name.
    pub name: String,
    /// Which bytes of a packet count.
    pub counted_bytes: CountedBytes,
    /// Rule for messages: publish, receive, retained, connect, subscribe, puback, ping.
    pub messages: BlockRule,
    /// Rule for shadow (twin) operations.
    pub shadow: BlockRule,
    /// Rule for registry operations.
    pub registry: BlockRule,
    /// The kinds that are billable at all; others always meter zero units.
    pub billable: KindSet,
    /// Whether a retained publish costs twice the units of a plain publish.
    pub retained_counts_twice: bool,
}

/// Names accepted by [`MeteringPolicy::preset`].
pub const METERING_PRESETS: &str = "aws, azure, azure-free, gcp";

impl MeteringPolicy {
    /// AWS IoT Core: 5 KB message blocks, 1 KB shadow and registry blocks, connection minutes.
    pub fn aws() -> MeteringPolicy {
        use PacketKind::*;
        MeteringPolicy {
            name: "aws".into(),
            counted_bytes: CountedBytes::TopicAndPayload,
            messages: BlockRule {
                block_bytes: 5 * KB,
                min_units: 1,
            },
            shadow: BlockRule {
                block_bytes: KB,
                min_units: 1,
            },
            registry: BlockRule {
                block_bytes: KB,
                min_units: 1,
            },
            billable: KindSet::of(&[
                Publish,
                Receive,
                Retained,
                ConnectionMinutes,
                Shadow,
                Registry,
            ]),
            retained_counts_twice: true,
        }
    }

    /// Azure IoT Hub standard tiers: messages and twin operations in 4 KB chunks.
    pub fn azure() -> MeteringPolicy {
        Self::azure_with_chunk("azure", 4 * KB)
    }

    /// Azure IoT Hub free tier: 0.5 KB chunks.
    pub fn azure_free() -> MeteringPolicy {
        Self::azure_with_chunk("azure-free", KB / 2)
    }

    fn azure_with_chunk(name: &str, chunk: u32) -> MeteringPolicy {
        use PacketKind::*;
        let rule = BlockRule {
            block_bytes: chunk,
            min_units: 1,
        };
        MeteringPolicy {
            name: name.into(),
            counted_bytes: CountedBytes::TopicAndPayload,
            messages: rule,
            shadow: rule,
            registry: rule,
            billable: KindSet::of(&[Publish, Receive, Retained, Shadow]),
            retained_counts_twice: false,
        }
    }

    /// GCP-style: whole-packet bytes with a 1,024-byte minimum per operation.
    pub fn gcp() -> MeteringPolicy {
        use PacketKind::*;
        let rule = BlockRule {
            block_bytes: 1,
            min_units: u64::from(KB),
        };
        MeteringPolicy {
            name: "gcp".into(),
            counted_bytes: CountedBytes::WholePacket,
            messages: rule,
            shadow: rule,
            registry: rule,
            billable: KindSet::of(&[
                Publish, Receive, Connect, Subscribe, Puback, Ping, Retained, Shadow, Registry,
            ]),
            retained_counts_twice: false,
        }
    }

    /// The preset with this name (see [`METERING_PRESETS`]).
    pub fn preset(name: &str) -> Result<MeteringPolicy> {
        match name {
            "aws" => Ok(Self::aws()),
            "azure" => Ok(Self::azure()),
            "azure-free" => Ok(Self::azure_free()),
            "gcp" => Ok(Self::gcp()),
            _ => Err(Error::UnknownPreset {
                name: name.chars().take(64).collect(),
                known: METERING_PRESETS,
            }),
        }
    }

    /// Checks that every block size is at least one byte.
    pub fn validate(&self) -> Result<()> {
        for (field, rule) in [
            ("messages.block_bytes", self.messages),
            ("shadow.block_bytes", self.shadow),
            ("registry.block_bytes", self.registry),
        ] {
            if rule.block_bytes == 0 {
                return Err(Error::field(field, "must be at least 1"));
            }
        }
        Ok(())
    }

    /// The counted bytes of a packet under this policy.
    #[inline]
    pub fn counted(&self, size: &PacketSize) -> u64 {
        match self.counted_bytes {
            CountedBytes::TopicAndPayload => u64::from(size.topic) + u64::from(size.payload),
            CountedBytes::TopicPayloadAndProperties => {
                u64::from(size.topic) + u64::from(size.payload) + u64::from(size.properties)
            }
            CountedBytes::WholePacket => u64::from(size.whole),
        }
    }

    /// Billable units for one operation of `kind` with `bytes` counted bytes. For
    /// [`PacketKind::ConnectionMinutes`] pass the minutes as `bytes`: one unit per minute.
    #[inline]
    pub fn units(&self, kind: PacketKind, bytes: u64) -> u64 {
        if !self.billable.contains(kind) {
            return 0;
        }
        match kind {
            PacketKind::ConnectionMinutes => bytes,
            PacketKind::Shadow => self.shadow.units(bytes),
            PacketKind::Registry => self.registry.units(bytes),
            PacketKind::Retained if self.retained_counts_twice => {
                self.messages.units(bytes).saturating_mul(2)
            }
            _ => self.messages.units(bytes),
        }
    }
}

/// Billed connection minutes for one connection that lasted `secs` seconds: rounded **up** to
/// whole minutes (a 61-second connection is 2 minutes; a zero-second connection is 0).
pub fn connection_minutes(secs: u64) -> u64 {
    secs.div_ceil(60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use PacketKind::*;

    #[test]
    fn block_units_without_division_match_the_rounded_up_quotient() {
        for (block_bytes, min_units) in [(1, 0), (1, 1), (5120, 1), (5120, 0), (4096, 3)] {
            let rule = BlockRule {
                block_bytes,
                min_units,
            };
            let b = u64::from(block_bytes);
            for bytes in [0, 1, b - 1, b, b + 1, 2 * b, 2 * b + 1, u64::MAX] {
                assert_eq!(
                    rule.units(bytes),
                    bytes.div_ceil(b).max(min_units),
                    "{bytes} bytes, block {block_bytes}"
                );
            }
        }
    }

    #[test]
    fn aws_meters_8_kb_as_two_units() {
        assert_eq!(MeteringPolicy::aws().units(Publish, 8 * 1024), 2);
    }

    #[test]
    fn aws_5120_bytes_is_one_unit_and_5121_is_two() {
        let aws = MeteringPolicy::aws();
        assert_eq!(aws.units(Publish, 5120), 1);
        assert_eq!(aws.units(Publish, 5121), 2);
        assert_eq!(aws.units(Publish, 0), 1, "empty message still costs a unit");
    }

    #[test]
    fn aws_shadow_and_registry_use_1_kb_blocks_and_retained_counts_twice() {
        let aws = MeteringPolicy::aws();
        assert_eq!(aws.units(Shadow, 1025), 2);
        assert_eq!(aws.units(Registry, 1024), 1);
        assert_eq!(aws.units(Retained, 5121), 4);
        assert_eq!(aws.units(Connect, 100), 0);
        assert_eq!(aws.units(Ping, 0), 0);
        assert_eq!(aws.units(ConnectionMinutes, 7), 7);
    }

    #[test]
    fn azure_meters_4_kb_chunks_and_free_tier_half_kb() {
        let azure = MeteringPolicy::azure();
        assert_eq!(azure.units(Publish, 4096), 1);
        assert_eq!(azure.units(Publish, 4097), 2);
        assert_eq!(azure.units(Publish, 12 * 1024), 3);
        let free = MeteringPolicy::azure_free();
        assert_eq!(free.units(Publish, 512), 1);
        assert_eq!(free.units(Publish, 513), 2);
        assert_eq!(azure.units(Registry, 10), 0);
    }

    #[test]
    fn gcp_bills_bytes_with_a_1024_byte_floor() {
        let gcp = MeteringPolicy::gcp();
        assert_eq!(gcp.units(Publish, 10), 1024);
        assert_eq!(gcp.units(Ping, 2), 1024);
        assert_eq!(gcp.units(Publish, 1024), 1024);
        assert_eq!(gcp.units(Publish, 1025), 1025);
    }

    #[test]
    fn counted_bytes_choose_the_parts() {
        let size = PacketSize {
            topic: 10,
            payload: 100,
            properties: 5,
            whole: 130,
        };
        let mut p = MeteringPolicy::aws();
        assert_eq!(p.counted(&size), 110);
        p.counted_bytes = CountedBytes::TopicPayloadAndProperties;
        assert_eq!(p.counted(&size), 115);
        assert_eq!(MeteringPolicy::gcp().counted(&size), 130);
    }

    #[test]
    fn connection_minutes_round_up() {
        assert_eq!(connection_minutes(0), 0);
        assert_eq!(connection_minutes(1), 1);
        assert_eq!(connection_minutes(60), 1);
        assert_eq!(connection_minutes(61), 2);
    }

    #[test]
    fn policy_roundtrips_through_json_and_rejects_zero_blocks() {
        let aws = MeteringPolicy::aws();
        let json = serde_json::to_string(&aws).unwrap();
        let back: MeteringPolicy = serde_json::from_str(&json).unwrap();
        assert_eq!(back, aws);
        let mut bad = aws;
        bad.messages.block_bytes = 0;
        assert!(bad.validate().is_err());
        assert!(MeteringPolicy::preset("oracle").is_err());
    }
}
