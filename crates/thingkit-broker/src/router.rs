//! The router: sessions, the subscription index and the retained store.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thingkit_mqtt::{Match, QoS, ReasonCode, SubscriptionIndex, TopicFilter, TopicName};

use crate::error::Error;
use crate::message::{Delivery, GrantedSubscription, Message, min_qos};
use crate::retained::RetainedStore;

/// Where the router hands a connected session's deliveries, and how it ends that connection.
///
/// The driver implements it for whatever connects the router to a connection task (a bounded
/// channel and a kick signal, in the tokio broker). Both methods are called with the router
/// borrowed mutably, so they must not block: hand the value over or refuse it.
pub trait Outlet {
    /// Queues one delivery for the connection; gives it back when the queue is full or the
    /// connection is gone (the router then drops it and counts it).
    fn try_deliver(&self, delivery: Delivery) -> Result<(), Delivery>;
    /// Asks the connection to end with `reason` (for example 0x8E Session taken over).
    fn kick(&self, reason: ReasonCode);
}

/// How long a session outlives its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionExpiry {
    /// It ends with its connection (MQTT 3.1.1 Clean Session, MQTT 5 Session Expiry Interval 0).
    OnDisconnect,
    /// It ends this long after its connection (MQTT 5 Session Expiry Interval).
    After(Duration),
    /// It lives as long as the router (MQTT 3.1.1 persistent sessions, MQTT 5 0xFFFFFFFF).
    Never,
}

impl SessionExpiry {
    fn persistent(self) -> bool {
        self != SessionExpiry::OnDisconnect
    }
}

/// Limits on what the router keeps in memory. Every limit that drops something counts it in
/// [`RouterCounters`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouterLimits {
    /// QoS 1 messages kept for one disconnected persistent session (default 10,000); more are
    /// dropped and counted in [`RouterCounters::offline_dropped`].
    pub max_offline_messages: usize,
    /// Topics with a retained message (default 100,000). A retained message for a new topic
    /// beyond it is refused ([`Error::RetainedQuotaExceeded`]); replacing or deleting an existing
    /// one is always possible within [`RouterLimits::max_retained_bytes`].
    pub max_retained_messages: usize,
    /// Topic and payload bytes of all retained messages (default 256 MiB).
    pub max_retained_bytes: usize,
    /// Levels of a retained message's topic (default 32). The retained store is a trie with one
    /// node per level, walked recursively: without this cap a 64 KiB topic of empty levels
    /// (`"////..."`) would cost 65,536 nodes and as deep a recursion on every matching
    /// SUBSCRIBE. Deeper retained messages are refused like any other quota
    /// ([`Error::RetainedQuotaExceeded`] naming this field); plain routing is unaffected.
    pub max_retained_topic_levels: usize,
}

impl Default for RouterLimits {
    fn default() -> Self {
        RouterLimits {
            max_offline_messages: 10_000,
            max_retained_messages: 100_000,
            max_retained_bytes: 256 * 1024 * 1024,
            max_retained_topic_levels: 32,
        }
    }
}

impl RouterLimits {
    /// Sets [`RouterLimits::max_offline_messages`].
    pub fn with_max_offline_messages(mut self, value: usize) -> Self {
        self.max_offline_messages = value;
        self
    }

    /// Sets [`RouterLimits::max_retained_topic_levels`].
    pub fn with_max_retained_topic_levels(mut self, value: usize) -> Self {
        self.max_retained_topic_levels = value;
        self
    }

    /// Sets [`RouterLimits::max_retained_messages`].
    pub fn with_max_retained_messages(mut self, value: usize) -> Self {
        self.max_retained_messages = value;
        self
    }

    /// Sets [`RouterLimits::max_retained_bytes`].
    pub fn with_max_retained_bytes(mut self, value: usize) -> Self {
        self.max_retained_bytes = value;
        self
    }
}

/// What the router dropped or removed since it was created (monotonic counters, for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouterCounters {
    /// Deliveries a connected session's [`Outlet`] refused (queue full or connection gone).
    pub outlet_refused: u64,
    /// Deliveries dropped because a disconnected session's offline queue was full.
    pub offline_dropped: u64,
    /// QoS 0 deliveries to a disconnected session (never queued).
    pub offline_qos0_dropped: u64,
    /// Queued messages dropped because their Message Expiry Interval passed [MQTT-3.3.2-5].
    pub expired_dropped: u64,
    /// Retained messages refused by [`RouterLimits::max_retained_messages`] or
    /// [`RouterLimits::max_retained_bytes`].
    pub retained_refused: u64,
    /// Retained messages removed because they expired.
    pub retained_expired: u64,
    /// Persistent sessions removed because their Session Expiry Interval passed.
    pub sessions_expired: u64,
}

/// The outcome of routing one message.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Routed {
    /// Subscribers it was handed to (connected) or queued for (offline).
    pub queued: usize,
    /// Subscribers it was dropped for (full queue, closed connection, QoS 0 while offline).
    pub dropped: usize,
}

/// The outcome of [`Router::attach`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Attached {
    /// Whether a session was present (CONNACK Session Present).
    pub session_present: bool,
    /// The messages kept for the session while it was offline, oldest first, expired ones
    /// removed: deliver them before anything else.
    pub backlog: Vec<Delivery>,
}

/// A connected session's outlet and connection number.
#[derive(Debug)]
struct Connected<O> {
    connection: u64,
    outlet: O,
}

/// A session: survives its connection when it is persistent.
#[derive(Debug)]
struct Session<O> {
    attached: Option<Connected<O>>,
    filters: Vec<TopicFilter>,
    offline: VecDeque<Delivery>,
    expiry: SessionExpiry,
    detached_at: Option<Instant>,
}

impl<O> Session<O> {
    fn new(expiry: SessionExpiry) -> Self {
        Session {
            attached: None,
            filters: Vec::new(),
            offline: VecDeque::new(),
            expiry,
            detached_at: None,
        }
    }

    fn expired(&self, now: Instant) -> bool {
        match (self.attached.is_none(), self.detached_at, self.expiry) {
            (true, Some(at), SessionExpiry::After(expiry)) => {
                now.saturating_duration_since(at) >= expiry
            }
            _ => false,
        }
    }
}

/// Sessions, subscriptions and retained messages of an MQTT broker, sans IO.
///
/// The router owns every routing decision and no I/O: deliveries go to each connected session's
/// [`Outlet`], and every operation that depends on time takes `now`. A broker keeps one router
/// behind one lock and never holds it across a wait (an outlet refuses rather than blocks).
///
/// - Sessions: [`Router::attach`] (takeover kicks the previous connection with 0x8E; Clean
///   Start discards the old session), [`Router::detach`] (a persistent session keeps its
///   subscriptions and unacknowledged QoS 1 messages), [`Router::sweep`] (session expiry).
/// - Subscriptions through thingkit-mqtt's `SubscriptionIndex`: shared subscriptions
///   (`$share/{group}/{filter}`, round-robin within a group), No Local, Retain As Published,
///   subscription identifiers.
/// - Retained messages in a trie keyed by topic level ([`Router::retained_matching`] walks only
///   the branches a filter can match), capped by [`RouterLimits`].
/// - Routing ([`Router::publish`], [`Router::route`]) with per-session offline queue limits.
#[derive(Debug)]
pub struct Router<O> {
    index: SubscriptionIndex<Arc<str>, GrantedSubscription>,
    sessions: HashMap<Arc<str>, Session<O>>,
    retained: RetainedStore,
    share_cursor: usize,
    limits: RouterLimits,
    counters: RouterCounters,
    /// Messages in every offline queue (a running total, for [`Router::offline_total`]).
    offline_total: usize,
}

impl<O: Outlet> Default for Router<O> {
    fn default() -> Self {
        Router::new(RouterLimits::default())
    }
}

impl<O: Outlet> Router<O> {
    /// An empty router with `limits`.
    pub fn new(limits: RouterLimits) -> Self {
        Router {
            index: SubscriptionIndex::new(),
            sessions: HashMap::new(),
            retained: RetainedStore::default(),
            share_cursor: 0,
            limits,
            counters: RouterCounters::default(),
            offline_total: 0,
        }
    }

    /// The limits it was created with.
    pub fn limits(&self) -> &RouterLimits {
        &self.limits
    }

    /// What it dropped or removed so far.
    pub fn counters(&self) -> RouterCounters {
        self.counters
    }

    /// Attaches connection `connection` (a number unique per connection, which tells a
    /// takeover from the connection it replaced) to the session `client_id`. A live connection
    /// of that session is kicked with 0x8E Session taken over; with `clean_start` any previous
    /// state is discarded; an expired session is removed first.
    pub fn attach(
        &mut self,
        client_id: &Arc<str>,
        clean_start: bool,
        expiry: SessionExpiry,
        connection: u64,
        outlet: O,
        now: Instant,
    ) -> Attached {
        if self.sessions.get(client_id).is_some_and(|s| s.expired(now)) {
            self.remove_session(client_id);
            self.counters.sessions_expired += 1;
        }
        if let Some(old) = self
            .sessions
            .get_mut(client_id)
            .and_then(|s| s.attached.take())
        {
            old.outlet.kick(ReasonCode::SESSION_TAKEN_OVER);
        }
        if clean_start {
            self.remove_session(client_id);
        }
        let session = self
            .sessions
            .entry(client_id.clone())
            .or_insert_with(|| Session::new(SessionExpiry::OnDisconnect));
        let session_present = !clean_start
            && (!session.filters.is_empty()
                || !session.offline.is_empty()
                || session.expiry.persistent());
        session.attached = Some(Connected { connection, outlet });
        session.expiry = expiry;
        session.detached_at = None;
        let mut backlog = Vec::with_capacity(session.offline.len());
        self.offline_total -= session.offline.len();
        for d in session.offline.drain(..) {
            if d.message.is_expired(now) {
                self.counters.expired_dropped += 1;
            } else {
                backlog.push(d);
            }
        }
        Attached {
            session_present,
            backlog,
        }
    }

    /// Detaches connection `connection` from the session `client_id` at `now`. A persistent
    /// session keeps its subscriptions and the `unacked` QoS 1 messages (within
    /// [`RouterLimits::max_offline_messages`]); any other session is removed. When a newer
    /// connection has taken the session over, a persistent session's `unacked` messages go to
    /// that connection and nothing else changes.
    pub fn detach(
        &mut self,
        client_id: &Arc<str>,
        connection: u64,
        unacked: Vec<Delivery>,
        now: Instant,
    ) {
        let Some(session) = self.sessions.get_mut(client_id) else {
            return;
        };
        if session.attached.as_ref().map(|a| a.connection) != Some(connection) {
            // Taken over: a persistent session's new connection gets the unacknowledged
            // messages; a clean one started without them.
            if session.expiry.persistent()
                && let Some(a) = &session.attached
            {
                for d in unacked {
                    if a.outlet.try_deliver(d).is_err() {
                        self.counters.outlet_refused += 1;
                    }
                }
            }
            return;
        }
        session.attached = None;
        session.detached_at = Some(now);
        if session.expiry.persistent() {
            for d in unacked {
                if d.qos == QoS::AtMostOnce {
                    continue;
                }
                if session.offline.len() < self.limits.max_offline_messages {
                    session.offline.push_back(d);
                    self.offline_total += 1;
                } else {
                    self.counters.offline_dropped += 1;
                }
            }
        } else {
            self.remove_session(client_id);
        }
    }

    fn remove_session(&mut self, client_id: &Arc<str>) {
        if let Some(session) = self.sessions.remove(client_id) {
            self.offline_total -= session.offline.len();
            for f in &session.filters {
                self.index.remove(f, client_id);
            }
        }
    }

    /// Adds or replaces `client_id`'s subscription to `filter`. Returns whether it existed
    /// before (for Retain Handling 1, send retained messages only for a new subscription).
    pub fn subscribe(
        &mut self,
        client_id: &Arc<str>,
        filter: &TopicFilter,
        granted: GrantedSubscription,
    ) -> bool {
        let existed = self
            .index
            .insert(filter, client_id.clone(), granted)
            .is_some();
        if let Some(session) = self.sessions.get_mut(client_id)
            && !existed
        {
            session.filters.push(filter.clone());
        }
        existed
    }

    /// Removes `client_id`'s subscription to `filter`. Returns whether it existed.
    pub fn unsubscribe(&mut self, client_id: &Arc<str>, filter: &TopicFilter) -> bool {
        let existed = self.index.remove(filter, client_id).is_some();
        if let Some(session) = self.sessions.get_mut(client_id) {
            session.filters.retain(|f| f != filter);
        }
        existed
    }

    /// Updates the retained store for a message published with RETAIN: an empty payload deletes
    /// the topic's retained message [MQTT-3.3.1-6]; anything else replaces it.
    ///
    /// # Errors
    ///
    /// [`Error::RetainedQuotaExceeded`] when storing it would exceed
    /// [`RouterLimits::max_retained_messages`] (a new topic),
    /// [`RouterLimits::max_retained_bytes`] or [`RouterLimits::max_retained_topic_levels`]; the store is unchanged (the previous retained
    /// message on the topic, if any, stays) and the refusal is counted.
    pub fn retain(&mut self, message: &Arc<Message>) -> Result<(), Error> {
        if message.payload.is_empty() {
            self.retained.remove(&message.topic);
            return Ok(());
        }
        let max_levels = self.limits.max_retained_topic_levels;
        if message.topic.levels().nth(max_levels).is_some() {
            self.counters.retained_refused += 1;
            return Err(Error::RetainedQuotaExceeded {
                limit: "max_retained_topic_levels",
                max: max_levels,
            });
        }
        let old = self.retained.get(&message.topic).map(|m| m.size());
        if old.is_none() && self.retained.len() >= self.limits.max_retained_messages {
            self.counters.retained_refused += 1;
            return Err(Error::RetainedQuotaExceeded {
                limit: "max_retained_messages",
                max: self.limits.max_retained_messages,
            });
        }
        let bytes = self.retained.bytes() - old.unwrap_or(0) + message.size();
        if bytes > self.limits.max_retained_bytes {
            self.counters.retained_refused += 1;
            return Err(Error::RetainedQuotaExceeded {
                limit: "max_retained_bytes",
                max: self.limits.max_retained_bytes,
            });
        }
        self.retained.insert(message.clone());
        Ok(())
    }

    /// The unexpired retained messages matching `filter` at `now` (none for a shared
    /// subscription: MQTT 5.0 §4.8.2 sends no retained messages to them). Walks only the trie branches `filter` can match; wildcards in the first
    /// level do not match `$` topics [MQTT-4.7.2-1].
    pub fn retained_matching(&self, filter: &TopicFilter, now: Instant) -> Vec<Arc<Message>> {
        if filter.is_shared() {
            return Vec::new();
        }
        self.retained.matching(filter, now)
    }

    /// The retained message on `topic`, if any (expired or not).
    pub fn retained(&self, topic: &TopicName) -> Option<Arc<Message>> {
        self.retained.get(topic).cloned()
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// Topic and payload bytes of the retained messages.
    pub fn retained_bytes(&self) -> usize {
        self.retained.bytes()
    }

    /// Handles an application message: stores it if it has RETAIN ([`Router::retain`]) and
    /// routes it ([`Router::route`]).
    ///
    /// # Errors
    ///
    /// [`Error::RetainedQuotaExceeded`]: the message is refused as a whole, neither stored nor
    /// routed, so that the publisher's answer (MQTT 5 PUBACK 0x97 Quota exceeded) is true.
    pub fn publish(&mut self, message: &Arc<Message>) -> Result<Routed, Error> {
        if message.retain {
            self.retain(message)?;
        }
        Ok(self.route(message))
    }

    /// Hands `message` to every matching subscriber: one member per shared group (round-robin),
    /// not to its publisher where No Local is set; a disconnected persistent session queues QoS 1
    /// messages up to [`RouterLimits::max_offline_messages`].
    pub fn route(&mut self, message: &Arc<Message>) -> Routed {
        let mut routed = Routed::default();
        let mut targets: Vec<(Arc<str>, GrantedSubscription)> = Vec::new();
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
        for (client, granted) in targets {
            let Some(session) = self.sessions.get_mut(&client) else {
                continue;
            };
            let qos = min_qos(granted.qos, message.qos);
            let delivery = Delivery {
                message: message.clone(),
                qos,
                retain: granted.retain_as_published && message.retain,
                subscription_id: granted.id,
            };
            match &session.attached {
                Some(a) => match a.outlet.try_deliver(delivery) {
                    Ok(()) => routed.queued += 1,
                    Err(_) => {
                        routed.dropped += 1;
                        self.counters.outlet_refused += 1;
                    }
                },
                None if qos == QoS::AtMostOnce => {
                    routed.dropped += 1;
                    self.counters.offline_qos0_dropped += 1;
                }
                None if session.offline.len() < self.limits.max_offline_messages => {
                    session.offline.push_back(delivery);
                    self.offline_total += 1;
                    routed.queued += 1;
                }
                None => {
                    routed.dropped += 1;
                    self.counters.offline_dropped += 1;
                }
            }
        }
        routed
    }

    /// Removes the persistent sessions whose Session Expiry Interval has passed at `now` since
    /// their connection ended, and the retained messages that expired; returns how many
    /// sessions. Expired retained messages are found through a deadline index, so that part
    /// costs what expires; sessions are still checked one by one.
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
        self.counters.sessions_expired += expired.len() as u64;
        self.counters.retained_expired += self.retained.purge_expired(now) as u64;
        expired.len()
    }

    /// Whether `client_id`'s session has a live connection.
    pub fn is_attached(&self, client_id: &str) -> bool {
        self.sessions
            .get(client_id)
            .is_some_and(|s| s.attached.is_some())
    }

    /// Number of sessions (connected or persistent).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Messages queued for all disconnected sessions together (a running total, O(1)).
    pub fn offline_total(&self) -> usize {
        self.offline_total
    }

    /// Messages queued for `client_id`'s disconnected session (0 if none).
    pub fn offline_len(&self, client_id: &str) -> usize {
        self.sessions.get(client_id).map_or(0, |s| s.offline.len())
    }
}
