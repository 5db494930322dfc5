//! Topic aliases (MQTT 5.0 §3.3.2.3.4): the receiver's map from alias to topic and the sender's
//! map from topic to alias, each bounded by the Topic Alias Maximum the *receiver* announced.

use std::collections::HashMap;
use std::num::NonZeroU16;

use crate::Error;
use crate::packet::Publish;
use crate::topic::TopicName;

/// The receiving side: resolves the Topic Alias of incoming PUBLISH packets.
///
/// Create it with the Topic Alias Maximum *this side* announced (in CONNECT for a client, in
/// CONNACK for a server; 0 disables aliases). Aliases are per connection and per direction and
/// start empty on every new connection.
///
/// ```
/// use thingkit_mqtt::{InboundAliases, Publish, TopicName};
/// use std::num::NonZeroU16;
///
/// let mut aliases = InboundAliases::new(10);
/// let mut first = Publish::new(TopicName::new("a/b")?, "1");
/// first.properties.topic_alias = NonZeroU16::new(3);
/// aliases.resolve(&mut first)?;          // learns 3 -> a/b
/// let mut second = first.clone();
/// second.topic = None;                    // topic sent as an empty string
/// aliases.resolve(&mut second)?;
/// assert_eq!(second.topic.unwrap().as_str(), "a/b");
/// # Ok::<(), thingkit_mqtt::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct InboundAliases {
    maximum: u16,
    topics: Vec<Option<TopicName>>,
}

impl InboundAliases {
    /// A map accepting aliases `1..=maximum`.
    pub fn new(maximum: u16) -> Self {
        InboundAliases {
            maximum,
            topics: Vec::new(),
        }
    }

    /// The Topic Alias Maximum in force.
    pub fn maximum(&self) -> u16 {
        self.maximum
    }

    /// The topic currently mapped to `alias`.
    pub fn get(&self, alias: u16) -> Option<&TopicName> {
        self.topics
            .get(usize::from(alias).checked_sub(1)?)?
            .as_ref()
    }

    /// Applies the PUBLISH's alias: with a topic, (re)maps the alias to it; without one, fills the
    /// topic in from the map. Afterwards `publish.topic` is `Some` (the alias property is kept).
    ///
    /// Errors: an alias above the maximum [MQTT-3.3.2-9]/[MQTT-3.3.2-10], or an empty topic with
    /// an alias that has no mapping yet (a Protocol Error, MQTT 5.0 §3.3.2.3.4).
    pub fn resolve(&mut self, publish: &mut Publish) -> Result<(), Error> {
        let Some(alias) = publish.properties.topic_alias else {
            return match publish.topic {
                Some(_) => Ok(()),
                None => Err(Error::TopicAlias {
                    alias: 0,
                    detail: "PUBLISH has neither a topic name nor a topic alias",
                    rule: "[MQTT-5.0 §3.3.2.1]",
                }),
            };
        };
        let a = alias.get();
        if a > self.maximum {
            return Err(Error::TopicAlias {
                alias: a,
                detail: "alias is greater than the Topic Alias Maximum this side announced",
                rule: "[MQTT-3.3.2-10]",
            });
        }
        let slot = usize::from(a - 1);
        match &publish.topic {
            Some(topic) => {
                if self.topics.len() <= slot {
                    // Grows only up to `maximum` entries, never from input beyond it.
                    self.topics.resize(slot + 1, None);
                }
                self.topics[slot] = Some(topic.clone());
                Ok(())
            }
            None => match self.topics.get(slot).and_then(Option::as_ref) {
                Some(topic) => {
                    publish.topic = Some(topic.clone());
                    Ok(())
                }
                None => Err(Error::TopicAlias {
                    alias: a,
                    detail: "alias has no topic mapped yet",
                    rule: "[MQTT-5.0 §3.3.2.3.4]",
                }),
            },
        }
    }
}

/// The sending side: replaces repeated topics by aliases in outgoing PUBLISH packets.
///
/// Create it with the Topic Alias Maximum the *peer* announced. The first PUBLISH to a topic
/// carries the topic and a fresh alias; later ones carry an empty topic and the alias. When every
/// alias is taken, the least recently assigned one is reused for the new topic.
///
/// ```
/// use thingkit_mqtt::{OutboundAliases, Publish, TopicName};
///
/// let mut aliases = OutboundAliases::new(2);
/// let mut p = Publish::new(TopicName::new("a/b")?, "1");
/// aliases.apply(&mut p);
/// assert!(p.topic.is_some() && p.properties.topic_alias.is_some());
/// let mut q = Publish::new(TopicName::new("a/b")?, "2");
/// aliases.apply(&mut q);
/// assert!(q.topic.is_none() && q.properties.topic_alias == p.properties.topic_alias);
/// # Ok::<(), thingkit_mqtt::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct OutboundAliases {
    maximum: u16,
    by_topic: HashMap<TopicName, NonZeroU16>,
    by_alias: Vec<TopicName>,
    next_victim: usize,
}

impl OutboundAliases {
    /// A map using aliases `1..=maximum` (0: aliases are never used).
    pub fn new(maximum: u16) -> Self {
        OutboundAliases {
            maximum,
            by_topic: HashMap::new(),
            by_alias: Vec::new(),
            next_victim: 0,
        }
    }

    /// The peer's Topic Alias Maximum.
    pub fn maximum(&self) -> u16 {
        self.maximum
    }

    /// Rewrites `publish` to use an alias: sets `properties.topic_alias`, and clears `topic` when
    /// the peer already knows the alias. A PUBLISH without a topic, or one that already carries an
    /// alias, is left unchanged.
    pub fn apply(&mut self, publish: &mut Publish) {
        if self.maximum == 0 || publish.properties.topic_alias.is_some() {
            return;
        }
        let Some(topic) = &publish.topic else {
            return;
        };
        if let Some(&alias) = self.by_topic.get(topic) {
            publish.topic = None;
            publish.properties.topic_alias = Some(alias);
            return;
        }
        let alias = if self.by_alias.len() < usize::from(self.maximum) {
            self.by_alias.push(topic.clone());
            self.by_alias.len()
        } else {
            let slot = self.next_victim;
            self.next_victim = (self.next_victim + 1) % usize::from(self.maximum);
            let old = std::mem::replace(&mut self.by_alias[slot], topic.clone());
            self.by_topic.remove(&old);
            slot + 1
        };
        let alias = NonZeroU16::new(u16::try_from(alias).expect("alias <= maximum <= u16::MAX"))
            .expect("aliases start at 1");
        self.by_topic.insert(topic.clone(), alias);
        publish.properties.topic_alias = Some(alias);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(topic: &str) -> Publish {
        Publish::new(TopicName::new(topic).unwrap(), "x")
    }

    #[test]
    fn rejects_alias_above_maximum() {
        let mut ix = InboundAliases::new(2);
        let mut p = publish("a");
        p.properties.topic_alias = NonZeroU16::new(3);
        let e = ix.resolve(&mut p).unwrap_err();
        assert_eq!(e.rule(), Some("[MQTT-3.3.2-10]"));
        let mut none = InboundAliases::new(0);
        p.properties.topic_alias = NonZeroU16::new(1);
        assert!(none.resolve(&mut p).is_err());
    }

    #[test]
    fn rejects_unknown_alias_without_topic() {
        let mut ix = InboundAliases::new(5);
        let mut p = publish("a");
        p.topic = None;
        p.properties.topic_alias = NonZeroU16::new(1);
        assert!(matches!(
            ix.resolve(&mut p),
            Err(Error::TopicAlias { alias: 1, .. })
        ));
        p.properties.topic_alias = None;
        assert!(ix.resolve(&mut p).is_err());
    }

    #[test]
    fn remaps_alias_to_new_topic() {
        let mut ix = InboundAliases::new(5);
        let mut p = publish("a");
        p.properties.topic_alias = NonZeroU16::new(1);
        ix.resolve(&mut p).unwrap();
        let mut q = publish("b");
        q.properties.topic_alias = NonZeroU16::new(1);
        ix.resolve(&mut q).unwrap();
        assert_eq!(ix.get(1).unwrap().as_str(), "b");
    }

    #[test]
    fn outbound_reuses_aliases_round_robin_when_full() {
        let mut out = OutboundAliases::new(2);
        let mut inbound = InboundAliases::new(2);
        for topic in ["a", "b", "c", "a", "c", "b", "b"] {
            let mut p = publish(topic);
            out.apply(&mut p);
            assert!(p.properties.topic_alias.unwrap().get() <= 2);
            // The receiver always reconstructs the original topic.
            inbound.resolve(&mut p).unwrap();
            assert_eq!(p.topic.unwrap().as_str(), topic);
        }
    }

    #[test]
    fn outbound_with_zero_maximum_never_aliases() {
        let mut out = OutboundAliases::new(0);
        let mut p = publish("a");
        out.apply(&mut p);
        assert!(p.topic.is_some() && p.properties.topic_alias.is_none());
    }
}
