//! The values the router moves: messages, deliveries and subscription options.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use thingkit_mqtt::{PacketProperties, QoS, TopicName};

/// An application message as routed: shared (behind an `Arc`) by every subscriber it goes to.
#[derive(Debug, Clone)]
pub struct Message {
    /// The topic.
    pub topic: TopicName,
    /// The payload.
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    /// Properties forwarded to subscribers (MQTT 5: payload format, expiry, content type,
    /// response topic, correlation data, user properties).
    pub properties: PacketProperties,
    /// The publishing client, for No Local; `None` for messages the broker itself publishes.
    pub from: Option<Arc<str>>,
    /// When the broker received it (the start of its MQTT 5 Message Expiry Interval).
    pub received: Instant,
}

impl Message {
    /// The Message Expiry Interval left at `now`, in seconds: `None` if the message has none,
    /// `Some(0)` if it has expired (and must not be delivered any more [MQTT-3.3.2-5]).
    pub fn expiry_left(&self, now: Instant) -> Option<u32> {
        let interval = self.properties.message_expiry_interval?;
        let elapsed = now.saturating_duration_since(self.received).as_secs();
        Some(u32::try_from(u64::from(interval).saturating_sub(elapsed)).unwrap_or(0))
    }

    /// Whether the message has expired at `now` [MQTT-3.3.2-5].
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expiry_left(now) == Some(0)
    }

    /// The bytes the message holds (topic and payload), as the retained store counts them.
    pub fn size(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}

/// One message for one subscriber.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message.
    pub message: Arc<Message>,
    /// min(publish QoS, granted QoS).
    pub qos: QoS,
    /// The RETAIN flag to send: set for retained messages sent on subscribe, or as published
    /// when the subscription has Retain As Published.
    pub retain: bool,
    /// The subscription identifier of the matching subscription, if any.
    pub subscription_id: Option<NonZeroU32>,
}

/// What the router stores for one subscription: the options the broker granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantedSubscription {
    /// Granted QoS (deliveries get min(publish QoS, this)).
    pub qos: QoS,
    /// MQTT 5 No Local: messages this client published are not sent back to it.
    pub no_local: bool,
    /// MQTT 5 Retain As Published: forwarded messages keep their RETAIN flag.
    pub retain_as_published: bool,
    /// MQTT 5 Subscription Identifier, sent with every matching delivery.
    pub id: Option<NonZeroU32>,
}

/// The smaller of two QoS levels.
pub(crate) fn min_qos(a: QoS, b: QoS) -> QoS {
    if a.as_u8() < b.as_u8() { a } else { b }
}
