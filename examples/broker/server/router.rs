//! Sessions, subscriptions and retained messages: the broker's one piece of shared mutable state,
//! behind one mutex. Subscriptions are routed by `thingkit-mqtt`'s `SubscriptionIndex`.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thingkit::mqtt::bytes::Bytes;
use thingkit::mqtt::{
    Match, PacketProperties, QoS, ReasonCode, SubscriptionIndex, TopicFilter, TopicName,
};
use tokio::sync::{mpsc, watch};

/// An application message as routed: shared by every subscriber it goes to.
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
    /// The publishing client, for No Local.
    pub from: Option<Arc<str>>,
    /// When the broker received it (for the MQTT 5 Message Expiry Interval).
    pub received: Instant,
}

impl Message {
    /// The Message Expiry Interval left, in seconds: `None` if it has none, `Some(0)` if it has
    /// expired (and must not be delivered any more [MQTT-3.3.2-5]).
    pub fn expiry_left(&self, now: Instant) -> Option<u32> {
        let interval = self.properties.message_expiry_interval?;
        let elapsed = now.saturating_duration_since(self.received).as_secs();
        Some(u32::try_from(u64::from(interval).saturating_sub(elapsed)).unwrap_or(0))
    }
}

/// One message for one subscriber.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message.
    pub message: Arc<Message>,
    /// min(publish QoS, granted QoS).
    pub qos: QoS,
    /// The RETAIN flag to send (set for retained messages sent on subscribe, or as published
    /// when Retain As Published).
    pub retain: bool,
    /// The subscription identifier of the matching subscription, if any.
    pub subscription_id: Option<NonZeroU32>,
}

/// What a connection task receives from others.
#[derive(Debug)]
pub enum Outbound {
    /// Deliver a message.
    Deliver(Delivery),
}

/// Options of one subscription, stored in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubOptions {
    /// Granted QoS.
    pub qos: QoS,
    /// MQTT 5 No Local.
    pub no_local: bool,
    /// MQTT 5 Retain As Published.
    pub retain_as_published: bool,
    /// MQTT 5 Subscription Identifier.
    pub id: Option<NonZeroU32>,
}

/// A connected session's handles.
#[derive(Debug, Clone)]
pub struct Attached {
    /// Connection number (distinguishes a takeover from the connection it replaced).
    pub connection: u64,
    /// Its delivery queue.
    pub tx: mpsc::Sender<Outbound>,
    /// Its kick signal (a reason code ends the connection).
    pub kick: watch::Sender<Option<ReasonCode>>,
}

/// A session: survives its connection when it is persistent.
#[derive(Debug, Default)]
pub struct Session {
    /// The live connection, if any.
    pub attached: Option<Attached>,
    /// The filters it subscribed to.
    pub filters: Vec<TopicFilter>,
    /// QoS 1 messages kept while it is offline (and unacknowledged ones from its last
    /// connection).
    pub offline: VecDeque<Delivery>,
    /// Whether it outlives its connection.
    pub persistent: bool,
    /// How long it outlives its connection (MQTT 5 Session Expiry Interval); `None`: for the
    /// life of the process (MQTT 3.1.1 persistent sessions, or 0xFFFFFFFF).
    pub expiry: Option<Duration>,
    /// When its last connection ended.
    pub detached_at: Option<Instant>,
}

impl Session {
    fn expired(&self, now: Instant) -> bool {
        match (self.attached.is_none(), self.detached_at, self.expiry) {
            (true, Some(at), Some(expiry)) => now.saturating_duration_since(at) >= expiry,
            _ => false,
        }
    }
}

/// Sessions, the subscription index and the retained messages.
#[derive(Default)]
pub struct Router {
    index: SubscriptionIndex<Arc<str>, SubOptions>,
    sessions: HashMap<Arc<str>, Session>,
    retained: HashMap<TopicName, Arc<Message>>,
    share_cursor: usize,
}

/// The outcome of routing one message.
#[derive(Debug, Default, Clone, Copy)]
pub struct Routed {
    /// Subscribers it was queued for.
    pub queued: usize,
    /// Subscribers whose queue was full (the message was dropped for them).
    pub dropped: usize,
}

impl Router {
    /// Attaches a connection to the session `client_id`, taking it over from a live connection
    /// (which is kicked with Session taken over). With `clean`, any previous state is discarded.
    /// Returns whether a session was present and the messages kept for it.
    pub fn attach(
        &mut self,
        client_id: &Arc<str>,
        clean: bool,
        persistent: bool,
        expiry: Option<Duration>,
        attached: Attached,
    ) -> (bool, Vec<Delivery>) {
        if self
            .sessions
            .get(client_id)
            .is_some_and(|s| s.expired(Instant::now()))
        {
            self.remove_session(client_id);
        }
        if let Some(old) = self
            .sessions
            .get_mut(client_id)
            .and_then(|s| s.attached.take())
        {
            let _ = old.kick.send(Some(ReasonCode::SESSION_TAKEN_OVER));
        }
        if clean {
            self.remove_session(client_id);
        }
        let session = self.sessions.entry(client_id.clone()).or_default();
        let present = !clean
            && (!session.filters.is_empty() || !session.offline.is_empty() || session.persistent);
        session.attached = Some(attached);
        session.persistent = persistent;
        session.expiry = expiry;
        session.detached_at = None;
        let backlog = session.offline.drain(..).collect();
        (present, backlog)
    }

    /// Detaches connection `connection` from its session; keeps the session (with `unacked`
    /// messages) when it is persistent, removes it otherwise. A session already taken over by a
    /// newer connection is left alone.
    pub fn detach(&mut self, client_id: &Arc<str>, connection: u64, unacked: Vec<Delivery>) {
        let Some(session) = self.sessions.get_mut(client_id) else {
            return;
        };
        if session.attached.as_ref().map(|a| a.connection) != Some(connection) {
            // Taken over: a persistent session's new connection gets the unacknowledged
            // messages; a clean one started without them.
            if session.persistent
                && let Some(a) = &session.attached
            {
                for d in unacked {
                    let _ = a.tx.try_send(Outbound::Deliver(d));
                }
            }
            return;
        }
        session.attached = None;
        session.detached_at = Some(Instant::now());
        if session.persistent {
            session.offline.extend(unacked);
        } else {
            self.remove_session(client_id);
        }
    }

    fn remove_session(&mut self, client_id: &Arc<str>) {
        if let Some(session) = self.sessions.remove(client_id) {
            for f in &session.filters {
                self.index.remove(f, client_id);
            }
        }
    }

    /// Adds or replaces a subscription. Returns whether it existed before.
    pub fn subscribe(
        &mut self,
        client_id: &Arc<str>,
        filter: &TopicFilter,
        options: SubOptions,
    ) -> bool {
        let existed = self
            .index
            .insert(filter, client_id.clone(), options)
            .is_some();
        if let Some(session) = self.sessions.get_mut(client_id)
            && !existed
        {
            session.filters.push(filter.clone());
        }
        existed
    }

    /// Removes a subscription. Returns whether it existed.
    pub fn unsubscribe(&mut self, client_id: &Arc<str>, filter: &TopicFilter) -> bool {
        let existed = self.index.remove(filter, client_id).is_some();
        if let Some(session) = self.sessions.get_mut(client_id) {
            session.filters.retain(|f| f != filter);
        }
        existed
    }

    /// Updates the retained store for a PUBLISH with RETAIN: an empty payload deletes.
    pub fn retain(&mut self, message: &Arc<Message>) {
        if message.payload.is_empty() {
            self.retained.remove(&message.topic);
        } else {
            self.retained.insert(message.topic.clone(), message.clone());
        }
    }

    /// The retained messages matching `filter`.
    pub fn retained_matching(&self, filter: &TopicFilter) -> Vec<Arc<Message>> {
        let inner = match filter.share_group() {
            Some(_) => return Vec::new(), // no retained messages for shared subscriptions
            None => filter,
        };
        let now = Instant::now();
        self.retained
            .values()
            .filter(|m| m.topic.matches(inner) && m.expiry_left(now) != Some(0))
            .cloned()
            .collect()
    }

    /// The retained message on `topic`, if any.
    pub fn retained(&self, topic: &TopicName) -> Option<Arc<Message>> {
        self.retained.get(topic).cloned()
    }

    /// Queues `message` for every matching subscriber (one member per shared group).
    pub fn route(&mut self, message: &Arc<Message>, max_queued: usize) -> Routed {
        let mut routed = Routed::default();
        let mut targets: Vec<(Arc<str>, SubOptions)> = Vec::new();
        let cursor = self.share_cursor;
        self.index.for_each_match(&message.topic, |m| match m {
            Match::Direct { subscriber, value } => {
                if !(value.no_local && message.from.as_ref() == Some(subscriber)) {
                    targets.push((subscriber.clone(), *value));
                }
            }
            Match::Shared { members, .. } => {
                if let Some((s, v)) = members.get(cursor % members.len().max(1)) {
                    targets.push((s.clone(), *v));
                }
            }
        });
        self.share_cursor = self.share_cursor.wrapping_add(1);
        for (client, options) in targets {
            let Some(session) = self.sessions.get_mut(&client) else {
                continue;
            };
            let qos = if options.qos.as_u8() < message.qos.as_u8() {
                options.qos
            } else {
                message.qos
            };
            let delivery = Delivery {
                message: message.clone(),
                qos,
                retain: options.retain_as_published && message.retain,
                subscription_id: options.id,
            };
            match &session.attached {
                Some(a) => match a.tx.try_send(Outbound::Deliver(delivery)) {
                    Ok(()) => routed.queued += 1,
                    Err(_) => routed.dropped += 1,
                },
                None if qos != QoS::AtMostOnce && session.offline.len() < max_queued => {
                    session.offline.push_back(delivery);
                    routed.queued += 1;
                }
                None => routed.dropped += 1,
            }
        }
        routed
    }

    /// Removes the persistent sessions whose Session Expiry Interval has passed since their
    /// connection ended; returns how many.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let expired: Vec<Arc<str>> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.expired(now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.remove_session(id);
        }
        expired.len()
    }

    /// Whether `client_id`'s session has a live connection.
    pub fn is_attached(&self, client_id: &Arc<str>) -> bool {
        self.sessions
            .get(client_id)
            .is_some_and(|s| s.attached.is_some())
    }

    /// Number of sessions (connected or persistent).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }
}
