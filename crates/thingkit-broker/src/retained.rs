//! The retained store: a trie keyed by topic levels, so a subscription walks only the branches
//! its filter can match instead of scanning every retained message.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thingkit_mqtt::{TopicFilter, TopicName};

use crate::message::Message;

/// One topic level: the message retained on the topic that ends here, and the next levels.
#[derive(Debug, Default)]
struct Level {
    message: Option<Arc<Message>>,
    // Level strings come from clients: std's seeded SipHash keeps them from flooding a bucket.
    children: HashMap<Box<str>, Level>,
}

impl Level {
    fn is_empty(&self) -> bool {
        self.message.is_none() && self.children.is_empty()
    }

    /// Every message at this level and below, skipping `$` children when `root`.
    fn collect_all(&self, root: bool, now: Instant, out: &mut Vec<Arc<Message>>) {
        if let Some(m) = &self.message
            && !m.is_expired(now)
        {
            out.push(m.clone());
        }
        for (name, child) in &self.children {
            if root && name.starts_with('$') {
                continue; // [MQTT-4.7.2-1]
            }
            child.collect_all(false, now, out);
        }
    }

    fn walk(&self, filter: &[&str], root: bool, now: Instant, out: &mut Vec<Arc<Message>>) {
        let Some((first, rest)) = filter.split_first() else {
            if let Some(m) = &self.message
                && !m.is_expired(now)
            {
                out.push(m.clone());
            }
            return;
        };
        match *first {
            // `#` matches the parent level too ("a/#" matches "a"): this level and everything
            // below it.
            "#" => self.collect_all(root, now, out),
            "+" => {
                for (name, child) in &self.children {
                    if root && name.starts_with('$') {
                        continue; // [MQTT-4.7.2-1]
                    }
                    child.walk(rest, false, now, out);
                }
            }
            literal => {
                if let Some(child) = self.children.get(literal) {
                    child.walk(rest, false, now, out);
                }
            }
        }
    }

    /// Removes the message on `levels`, pruning levels left empty; returns it.
    fn remove(&mut self, levels: &[&str]) -> Option<Arc<Message>> {
        let Some((first, rest)) = levels.split_first() else {
            return self.message.take();
        };
        let child = self.children.get_mut(*first)?;
        let removed = child.remove(rest);
        if child.is_empty() {
            self.children.remove(*first);
        }
        removed
    }
}

/// Retained messages by topic, walkable by filter.
#[derive(Debug, Default)]
pub(crate) struct RetainedStore {
    root: Level,
    len: usize,
    bytes: usize,
    /// When each message with a Message Expiry Interval expires, and its topic: purging pops
    /// what is due instead of walking the whole trie. Holds exactly the stored messages that
    /// have an expiry.
    deadlines: BTreeSet<(Instant, TopicName)>,
}

/// The instant `message` expires (`is_expired` turns true), if it has an expiry that fits.
fn deadline(message: &Message) -> Option<Instant> {
    let interval = message.properties.message_expiry_interval?;
    message
        .received
        .checked_add(Duration::from_secs(u64::from(interval)))
}

impl RetainedStore {
    /// Number of retained messages.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Topic and payload bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The message retained on `topic`.
    pub(crate) fn get(&self, topic: &TopicName) -> Option<&Arc<Message>> {
        let mut level = &self.root;
        for name in topic.levels() {
            level = level.children.get(name)?;
        }
        level.message.as_ref()
    }

    /// Stores `message` on its topic; returns the message it replaced.
    pub(crate) fn insert(&mut self, message: Arc<Message>) -> Option<Arc<Message>> {
        let mut level = &mut self.root;
        for name in message.topic.levels() {
            level = level.children.entry(name.into()).or_default();
        }
        self.bytes += message.size();
        if let Some(at) = deadline(&message) {
            self.deadlines.insert((at, message.topic.clone()));
        }
        let old = level.message.replace(message);
        match &old {
            Some(old) => {
                self.bytes -= old.size();
                self.forget_deadline(old);
            }
            None => self.len += 1,
        }
        old
    }

    /// Removes the message retained on `topic`.
    pub(crate) fn remove(&mut self, topic: &TopicName) -> Option<Arc<Message>> {
        let levels: Vec<&str> = topic.levels().collect();
        let old = self.root.remove(&levels)?;
        self.len -= 1;
        self.bytes -= old.size();
        self.forget_deadline(&old);
        Some(old)
    }

    /// Drops `old`'s deadline entry, unless the message now stored on its topic has the same
    /// one (a replacement received at the same instant with the same interval).
    fn forget_deadline(&mut self, old: &Message) {
        let Some(at) = deadline(old) else {
            return;
        };
        let current = self.get(&old.topic).and_then(|m| deadline(m));
        if current != Some(at) {
            self.deadlines.remove(&(at, old.topic.clone()));
        }
    }

    /// The unexpired messages whose topics `filter` matches (no shared-subscription handling:
    /// the caller passes an ordinary filter).
    pub(crate) fn matching(&self, filter: &TopicFilter, now: Instant) -> Vec<Arc<Message>> {
        let levels: Vec<&str> = filter.inner().split('/').collect();
        let mut out = Vec::new();
        self.root.walk(&levels, true, now, &mut out);
        out
    }

    /// Removes every expired message; returns how many. Costs what expires (plus a logarithmic
    /// lookup), not the size of the store.
    #[cfg(test)]
    pub(crate) fn purge_expired(&mut self, now: Instant) -> usize {
        self.purge_expired_with(now, |_| {})
    }

    /// [`RetainedStore::purge_expired`], calling `removed` with each removed message's topic.
    pub(crate) fn purge_expired_with(
        &mut self,
        now: Instant,
        mut removed: impl FnMut(&TopicName),
    ) -> usize {
        let mut purged = 0;
        while let Some((at, _)) = self.deadlines.first()
            && *at <= now
        {
            let Some((_, topic)) = self.deadlines.pop_first() else {
                break;
            };
            if self.remove(&topic).is_some() {
                removed(&topic);
                purged += 1;
            }
        }
        purged
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use thingkit_mqtt::{PacketProperties, Properties, QoS};

    use super::*;

    fn message(
        topic: &str,
        payload: &'static str,
        expiry: Option<u32>,
        at: Instant,
    ) -> Arc<Message> {
        let properties: PacketProperties = match expiry {
            Some(secs) => Properties {
                message_expiry_interval: Some(secs),
                ..Properties::default()
            }
            .into(),
            None => PacketProperties::default(),
        };
        Arc::new(Message {
            topic: TopicName::new(topic).expect("a valid test topic"),
            payload: payload.into(),
            qos: QoS::AtMostOnce,
            retain: true,
            properties,
            from: None,
            received: at,
        })
    }

    #[test]
    fn removing_the_last_message_of_a_branch_prunes_its_levels() {
        let now = Instant::now();
        let mut store = RetainedStore::default();
        store.insert(message("a/b/c", "1", None, now));
        store.insert(message("a/b", "2", None, now));
        store.remove(&TopicName::new("a/b/c").unwrap());
        assert_eq!(store.len(), 1);
        assert!(store.root.children["a"].children["b"].children.is_empty());
        store.remove(&TopicName::new("a/b").unwrap());
        assert!(store.root.is_empty());
        assert_eq!((store.len(), store.bytes()), (0, 0));
        assert!(store.remove(&TopicName::new("a/b").unwrap()).is_none());
    }

    #[test]
    fn purging_expired_messages_prunes_and_keeps_the_counts() {
        let t0 = Instant::now();
        let mut store = RetainedStore::default();
        store.insert(message("x/old", "1", Some(1), t0));
        store.insert(message("x/new", "22", Some(100), t0));
        store.insert(message("y/old", "333", Some(1), t0));
        assert_eq!(store.purge_expired(t0 + Duration::from_secs(1)), 2);
        assert_eq!((store.len(), store.bytes()), (1, "x/new".len() + 2));
        assert!(!store.root.children.contains_key("y"));
    }

    #[test]
    fn purging_costs_what_expires_and_follows_replacements() {
        let t0 = Instant::now();
        let mut store = RetainedStore::default();
        for i in 0..1000 {
            store.insert(message(&format!("keep/{i}"), "k", None, t0));
        }
        store.insert(message("a", "1", Some(5), t0));
        // Replaced by a message without expiry: its old deadline must not delete the new one.
        store.insert(message("a", "2", None, t0));
        // Replaced by one expiring later: only the later deadline counts.
        store.insert(message("b", "1", Some(5), t0));
        store.insert(message("b", "2", Some(50), t0));
        // Deleted: nothing left to purge for it.
        store.insert(message("c", "1", Some(5), t0));
        store.remove(&TopicName::new("c").unwrap());
        assert_eq!(
            store.deadlines.len(),
            1,
            "only b's current deadline is indexed"
        );
        assert_eq!(store.purge_expired(t0 + Duration::from_secs(10)), 0);
        assert_eq!(store.len(), 1002);
        assert_eq!(store.purge_expired(t0 + Duration::from_secs(50)), 1);
        assert!(store.get(&TopicName::new("b").unwrap()).is_none());
        assert_eq!(
            store.get(&TopicName::new("a").unwrap()).unwrap().payload,
            "2"
        );
        assert!(store.deadlines.is_empty());
    }

    #[test]
    fn replacing_a_message_updates_the_byte_count() {
        let now = Instant::now();
        let mut store = RetainedStore::default();
        store.insert(message("t", "1", None, now));
        store.insert(message("t", "12345", None, now));
        assert_eq!((store.len(), store.bytes()), (1, 6));
    }
}
