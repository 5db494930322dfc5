//! The router: sessions, the subscription index and the retained store.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use thingkit_mqtt::{Match, QoS, ReasonCode, SubscriptionIndex, TopicFilter, TopicName};

use crate::error::{Error, StoreError};
use crate::message::{Delivery, GrantedSubscription, Message, min_qos};
use crate::retained::RetainedStore;
use crate::store::{
    RouterStore, SessionRecord, StoreOp, StoredDelivery, StoredMessage, StoredSession, StoredState,
};

/// Where the router hands a connected session's deliveries, and how it ends that connection.
///
/// The driver implements it for whatever connects the router to a connection task (a bounded
/// channel and a kick signal, in the tokio broker). Both methods are called with the router
/// borrowed mutably, so they must not block: hand the value over or refuse it.
pub trait Outlet {
    /// Queues one delivery for the connection; gives it back when the queue is full or the
    /// connection is gone. The router drops and counts a refused QoS 0 delivery and hands a
    /// refused QoS 1 delivery to the driver ([`Routed::blocked`]).
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
    /// Whether the session outlives its connection (and is stored, on a router with a store).
    pub fn persistent(self) -> bool {
        self != SessionExpiry::OnDisconnect
    }
}

/// Limits on what the router keeps in memory. Every limit that drops something counts it in
/// [`RouterCounters`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouterLimits {
    /// QoS 1 messages queued for one disconnected persistent session as they arrive (default
    /// 10,000); more are dropped and counted in [`RouterCounters::offline_dropped`]. The
    /// messages its connection had not delivered when it ended are kept on top of it (see
    /// [`Router::detach`]).
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
    /// QoS 0 deliveries a connected session's [`Outlet`] refused (queue full or connection
    /// gone). A refused QoS 1 delivery is not dropped: it is handed back in
    /// [`Routed::blocked`].
    pub outlet_refused: u64,
    /// QoS 1 deliveries handed back with [`Router::requeue`] after their session had ended (a
    /// non-persistent session whose connection closed while the delivery waited for room).
    pub ended_dropped: u64,
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
    /// Store writes that failed in calls that cannot report an error (the infallible
    /// [`Router::attach`], [`Router::detach`], [`Router::subscribe`], [`Router::unsubscribe`],
    /// [`Router::route`] and [`Router::sweep`] on a router with a store): the change was made in
    /// memory only. Use the `try_` variants to fail closed instead.
    pub store_failures: u64,
}

/// The outcome of routing one message.
#[derive(Debug, Default, Clone)]
#[non_exhaustive]
pub struct Routed {
    /// Subscribers it was handed to (connected) or queued for (offline).
    pub queued: usize,
    /// Subscribers it was dropped for: a QoS 0 delivery to a full outlet or to a disconnected
    /// session, or a QoS 1 delivery to a disconnected session whose queue is full.
    pub dropped: usize,
    /// QoS 1 deliveries to connected sessions whose outlets had no room: not dropped. The
    /// driver owns them now: it waits for room (back-pressure on the publisher, which it
    /// acknowledges only once every copy is placed) or ends the slow connection and hands them
    /// back with [`Router::requeue`], which queues them in the session it leaves behind.
    pub blocked: Vec<Blocked>,
}

/// A QoS 1 delivery a connected session's [`Outlet`] had no room for; see
/// [`Routed::blocked`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Blocked {
    /// The session it is for.
    pub client_id: Arc<str>,
    /// The connection whose outlet was full.
    pub connection: u64,
    /// The delivery.
    pub delivery: Delivery,
}

impl Blocked {
    /// A delivery for `client_id` that connection `connection` had no room for.
    pub fn new(client_id: Arc<str>, connection: u64, delivery: Delivery) -> Self {
        Blocked {
            client_id,
            connection,
            delivery,
        }
    }
}

/// What [`Router::requeue`] did with a [`Blocked`] delivery.
#[derive(Debug)]
#[non_exhaustive]
pub enum Requeued {
    /// Handed to the outlet of the session's connection.
    Delivered,
    /// Queued in the disconnected persistent session (stored first on a router with a store).
    Queued,
    /// The session's connection (the same one, or a new one that took the session over) still
    /// has no room: wait again.
    Blocked(Blocked),
    /// Dropped and counted ([`RouterCounters::ended_dropped`]): the session has ended.
    Dropped,
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
    filters: Vec<(TopicFilter, GrantedSubscription)>,
    offline: VecDeque<Delivery>,
    expiry: SessionExpiry,
    /// When a detached session with [`SessionExpiry::After`] ends.
    expires_at: Option<Instant>,
    /// Released to another server ([`Router::release`]) while connected: it leaves memory
    /// when its connection detaches.
    released: bool,
}

impl<O> Session<O> {
    fn new(expiry: SessionExpiry) -> Self {
        Session {
            attached: None,
            filters: Vec::new(),
            offline: VecDeque::new(),
            expiry,
            expires_at: None,
            released: false,
        }
    }

    fn expired(&self, now: Instant) -> bool {
        self.attached.is_none() && self.expires_at.is_some_and(|at| now >= at)
    }
}

/// Milliseconds in `d`, saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A router's store and the clock pair that converts its `Instant`s to wall-clock time.
struct Durable {
    /// Behind a mutex only so that the router stays `Sync` (as it is without a store) while
    /// stores need only be `Send`; every use is through `&mut self` (`Mutex::get_mut`), so it is
    /// never locked.
    store: std::sync::Mutex<Box<dyn RouterStore>>,
    /// The `Instant` given to [`Router::with_store`] ...
    instant: Instant,
    /// ... and the wall-clock time it was, in Unix milliseconds.
    wall_ms: u64,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("instant", &self.instant)
            .field("wall_ms", &self.wall_ms)
            .finish_non_exhaustive()
    }
}

impl Durable {
    /// `at` as Unix milliseconds.
    fn unix_ms(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.instant) {
            Some(after) => self.wall_ms.saturating_add(millis(after)),
            None => self
                .wall_ms
                .saturating_sub(millis(self.instant.saturating_duration_since(at))),
        }
    }

    fn stored_message(&self, m: &Message) -> Arc<StoredMessage> {
        Arc::new(StoredMessage {
            topic: m.topic.clone(),
            payload: m.payload.clone(),
            qos: m.qos,
            retain: m.retain,
            properties: m.properties.clone(),
            from: m.from.clone(),
            received_unix_ms: self.unix_ms(m.received),
        })
    }

    fn stored_delivery(&self, d: &Delivery, message: Arc<StoredMessage>) -> StoredDelivery {
        StoredDelivery {
            message,
            qos: d.qos,
            retain: d.retain,
            subscription_id: d.subscription_id,
        }
    }

    /// The session record for `expiry`, detached at `detached` (`None`: attached).
    fn record(&self, expiry: SessionExpiry, detached: Option<Instant>) -> SessionRecord {
        let deadline_unix_ms = match (expiry, detached) {
            (SessionExpiry::After(d), Some(at)) => Some(self.unix_ms(at).saturating_add(millis(d))),
            _ => None,
        };
        SessionRecord {
            expiry,
            deadline_unix_ms,
        }
    }
}

/// A stored message as routed again after a restart at (`now`, `wall_ms`), or `None` if its
/// Message Expiry Interval has passed. It keeps its interval and gets the `Instant` it was
/// received at on this clock; when the monotonic clock cannot go back that far, it is received
/// `now` with what is left of its interval.
fn restored_message(m: &StoredMessage, now: Instant, wall_ms: u64) -> Option<Arc<Message>> {
    let elapsed_ms = wall_ms.saturating_sub(m.received_unix_ms);
    let mut properties = m.properties.clone();
    if let Some(interval) = m.properties.message_expiry_interval
        && elapsed_ms >= u64::from(interval) * 1000
    {
        return None;
    }
    let received = match now.checked_sub(Duration::from_millis(elapsed_ms)) {
        Some(at) => at,
        None => {
            if let Some(interval) = m.properties.message_expiry_interval {
                let left = u64::from(interval).saturating_sub(elapsed_ms / 1000);
                properties.message_expiry_interval = Some(u32::try_from(left).unwrap_or(interval));
            }
            now
        }
    };
    Some(Arc::new(Message {
        topic: m.topic.clone(),
        payload: m.payload.clone(),
        qos: m.qos,
        retain: m.retain,
        properties,
        from: m.from.clone(),
        received,
    }))
}

/// What a RETAIN message does to the retained store, once the limits allowed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RetainChange {
    /// Store it (new topic or replacement).
    Put,
    /// Delete the topic's message (empty payload, a message was there).
    Delete,
    /// Nothing (empty payload, no message was there).
    None,
}

/// What a call does when the store fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnStoreError {
    /// Return the error, change nothing (the `try_` methods and [`Router::publish`]).
    Refuse,
    /// Count it in [`RouterCounters::store_failures`] and change memory anyway.
    Count,
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
///
/// ## Persistence
///
/// A router made with [`Router::with_store`] writes every change to durable state through its
/// [`RouterStore`] before the call returns, as one batch ([`RouterStore::apply`], one redb
/// transaction) per call, and only when the call changes durable state: persistent sessions
/// (attach, detach, expiry, Clean Start), their subscriptions, the QoS 1 messages queued while
/// they are offline, and retained messages. Routing to connected sessions alone writes nothing.
///
/// Store failures: [`Router::publish`], [`Router::retain`] and the `try_` methods
/// ([`Router::try_attach`], [`Router::try_subscribe`], [`Router::try_unsubscribe`],
/// [`Router::try_route`]) fail closed with [`Error::Store`] and change nothing (a PUBLISH that
/// returns it must not be acknowledged). [`Router::try_detach`] and [`Router::try_sweep`]
/// report it after changing memory, because the connection has ended or the session has expired
/// either way. The infallible methods keep their store-less signatures: on a store failure they
/// change memory, and count it in [`RouterCounters::store_failures`].
#[derive(Debug)]
pub struct Router<O> {
    index: SubscriptionIndex<Arc<str>, GrantedSubscription>,
    sessions: HashMap<Arc<str>, Session<O>>,
    retained: RetainedStore,
    share_cursor: usize,
    limits: RouterLimits,
    counters: RouterCounters,
    durable: Option<Durable>,
    interest: Interest,
}

/// Called with a filter when the sessions' interest in it begins (`true`) or ends (`false`).
pub type InterestObserver = Box<dyn FnMut(&TopicFilter, bool) + Send + Sync>;

/// Called with a shared subscription's share name and inner filter when its first member
/// subscribes here (`true`) or its last one goes (`false`); see [`Router::route_shared_through`].
pub type SharedObserver = Box<dyn FnMut(&str, &TopicFilter, bool) + Send + Sync>;

/// How many subscriptions there are to each filter (a shared subscription counts for its
/// inner filter), and who is told when a count leaves or reaches zero.
#[derive(Default)]
struct Interest {
    counts: HashMap<TopicFilter, usize>,
    observer: Option<InterestObserver>,
    /// Members per shared subscription (the whole `$share/{group}/{filter}`).
    shared: HashMap<TopicFilter, usize>,
    /// Set by [`Router::route_shared_through`]: shared subscriptions are routed by the caller.
    shared_observer: Option<SharedObserver>,
}

impl std::fmt::Debug for Interest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interest")
            .field("filters", &self.counts.len())
            .field("observed", &self.observer.is_some())
            .finish()
    }
}

impl Interest {
    /// The filter topics are matched against: a shared subscription's inner filter.
    fn key(filter: &TopicFilter) -> TopicFilter {
        if filter.is_shared() {
            // The inner filter of a valid shared subscription is a valid filter.
            TopicFilter::new(filter.inner()).unwrap_or_else(|_| filter.clone())
        } else {
            filter.clone()
        }
    }

    /// A shared subscription's share name and inner filter.
    fn shared_parts(filter: &TopicFilter) -> Option<(&str, TopicFilter)> {
        Some((
            filter.share_group()?,
            TopicFilter::new(filter.inner()).ok()?,
        ))
    }

    fn add(&mut self, filter: &TopicFilter) {
        if filter.is_shared() {
            let count = self.shared.entry(filter.clone()).or_insert(0);
            *count += 1;
            if *count == 1
                && let Some(observer) = &mut self.shared_observer
                && let Some((group, inner)) = Self::shared_parts(filter)
            {
                observer(group, &inner, true);
            }
        }
        let key = Self::key(filter);
        let count = self.counts.entry(key.clone()).or_insert(0);
        *count += 1;
        if *count == 1
            && let Some(observer) = &mut self.observer
        {
            observer(&key, true);
        }
    }

    fn remove(&mut self, filter: &TopicFilter) {
        if let Some(count) = self.shared.get_mut(filter) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.shared.remove(filter);
                if let Some(observer) = &mut self.shared_observer
                    && let Some((group, inner)) = Self::shared_parts(filter)
                {
                    observer(group, &inner, false);
                }
            }
        }
        let key = Self::key(filter);
        let Some(count) = self.counts.get_mut(&key) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.counts.remove(&key);
            if let Some(observer) = &mut self.observer {
                observer(&key, false);
            }
        }
    }
}

impl<O: Outlet> Default for Router<O> {
    fn default() -> Self {
        Router::new(RouterLimits::default())
    }
}

impl<O: Outlet> Router<O> {
    /// An empty router with `limits`, in memory only.
    pub fn new(limits: RouterLimits) -> Self {
        Router {
            index: SubscriptionIndex::new(),
            sessions: HashMap::new(),
            retained: RetainedStore::default(),
            share_cursor: 0,
            limits,
            counters: RouterCounters::default(),
            durable: None,
            interest: Interest::default(),
        }
    }

    /// Tells `observer` whenever the sessions' interest in a filter begins (`true`: the first
    /// subscription to it) or ends (`false`: the last one went, by UNSUBSCRIBE or with its
    /// session), a shared subscription counting for its inner filter. It is called at once for
    /// every filter subscribed to now. A cluster uses it to receive from the other servers only
    /// what its sessions subscribe to. It runs inside the router's calls: it must not block.
    pub fn set_interest_observer(&mut self, mut observer: InterestObserver) {
        for filter in self.interest.counts.keys() {
            observer(filter, true);
        }
        self.interest.observer = Some(observer);
    }

    /// Hands the shared subscriptions to the caller: from now on routing a message
    /// ([`Router::route`], [`Router::publish`], ...) skips every shared subscription, and
    /// `observer` is told of each shared subscription that gains its first member here or loses
    /// its last (called at once for those that have members now). The caller delivers each
    /// message to one member of a group cluster-wide, through [`Router::try_route_shared`] on
    /// the server it chose. A cluster uses it so that a shared subscription with members on
    /// several servers gets each message once, as on one server.
    pub fn route_shared_through(&mut self, mut observer: SharedObserver) {
        for filter in self.interest.shared.keys() {
            if let Some((group, inner)) = Interest::shared_parts(filter) {
                observer(group, &inner, true);
            }
        }
        self.interest.shared_observer = Some(observer);
    }

    /// Routes `message` to one member here of the shared subscription `$share/{group}/{filter}`
    /// (a connected one first, round-robin), as routing would (QoS downgraded to the member's
    /// subscription, Retain As Published, its subscription identifier; a copy for a detached
    /// persistent member is stored before it is queued). Nothing when `filter` does not match
    /// the message's topic or the group has no member here.
    ///
    /// # Errors
    ///
    /// [`Error::Store`]: the copy for a detached member could not be stored.
    pub fn try_route_shared(
        &mut self,
        group: &str,
        filter: &TopicFilter,
        message: &Arc<Message>,
    ) -> Result<Routed, Error> {
        if !filter.matches(&message.topic) {
            return Ok(Routed::default());
        }
        // A member's own subscription to this shared subscription (a group may share other
        // filters that match the topic too).
        let is_this =
            |f: &TopicFilter| f.share_group() == Some(group) && f.inner() == filter.as_str();
        let mut members: Vec<(Arc<str>, GrantedSubscription)> = Vec::new();
        let sessions = &self.sessions;
        self.index.for_each_match(&message.topic, |m| {
            if let Match::Shared {
                group: g,
                members: ms,
            } = m
                && g == group
            {
                for (member, value) in ms {
                    let subscribed = sessions
                        .get(member)
                        .is_some_and(|s| s.filters.iter().any(|(f, _)| is_this(f)));
                    if subscribed && !members.iter().any(|(m, _)| m == member) {
                        members.push((member.clone(), *value));
                    }
                }
            }
        });
        if members.is_empty() {
            return Ok(Routed::default());
        }
        let n = members.len();
        let start = self.share_cursor % n;
        self.share_cursor = self.share_cursor.wrapping_add(1);
        let connected = |s: &Arc<str>| sessions.get(s).is_some_and(|s| s.attached.is_some());
        let chosen = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| connected(&members[i].0))
            .unwrap_or(start);
        let targets = vec![members.swap_remove(chosen)];
        let mut ops = Vec::new();
        self.queue_ops(message, &targets, &mut ops);
        self.commit(&ops, OnStoreError::Refuse)?;
        Ok(self.deliver(message, targets))
    }

    /// The filters subscribed to now, with how many subscriptions each has (a shared
    /// subscription counts for its inner filter).
    pub fn interest(&self) -> impl Iterator<Item = (&TopicFilter, usize)> + '_ {
        self.interest.counts.iter().map(|(f, n)| (f, *n))
    }

    /// A router that keeps its durable state in `store`, restored from it: persistent sessions
    /// (detached, with their subscriptions and offline queues) and retained messages.
    ///
    /// `now` and `wall` are the same moment on the monotonic clock the router is driven with and
    /// on the wall clock (`Instant::now()` and `SystemTime::now()`); the router converts its
    /// `Instant`s to Unix milliseconds with them, for what outlives the process:
    ///
    /// - a message's reception time: a message whose Message Expiry Interval has passed by
    ///   `wall` is not restored (and is deleted from the store); the others expire when they
    ///   would have;
    /// - a detached session's expiry deadline: a session past it is not restored (and is
    ///   deleted); a session that was attached when the process ended counts its Session Expiry
    ///   Interval from `now` (and that deadline is stored).
    ///
    /// Offline queues and retained messages beyond `limits` are cut to fit (oldest queued
    /// messages kept), counted like any other drop. A wall clock set back between two runs makes
    /// stored times look younger (nothing expires early); one set forward expires them early.
    ///
    /// Stores are read whole: a corrupt record stops the start instead of being skipped, so a
    /// damaged file is noticed rather than silently losing the sessions in it.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store cannot be read (a corrupt record:
    /// [`StoreError::Corrupt`]) or the clean-up of what expired cannot be written.
    pub fn with_store(
        limits: RouterLimits,
        store: impl RouterStore + 'static,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Self, Error> {
        let state = store.load()?;
        let wall_ms = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, millis);
        let mut router = Router::new(limits);
        router.durable = Some(Durable {
            store: std::sync::Mutex::new(Box::new(store)),
            instant: now,
            wall_ms,
        });
        let ops = router.restore(state, now, wall_ms);
        router.write(&ops)?;
        Ok(router)
    }

    /// Rebuilds memory from `state`; returns the ops that remove what expired or no longer fits.
    fn restore(&mut self, state: StoredState, now: Instant, wall_ms: u64) -> Vec<StoreOp> {
        let mut ops = Vec::new();
        for stored in state.sessions {
            let id = stored.client_id;
            let expires_at = match (stored.record.expiry, stored.record.deadline_unix_ms) {
                (SessionExpiry::OnDisconnect, _) => {
                    ops.push(StoreOp::RemoveSession { client_id: id });
                    continue;
                }
                (SessionExpiry::After(_), Some(deadline)) if deadline <= wall_ms => {
                    ops.push(StoreOp::RemoveSession { client_id: id });
                    self.counters.sessions_expired += 1;
                    continue;
                }
                (SessionExpiry::After(_), Some(deadline)) => {
                    now.checked_add(Duration::from_millis(deadline - wall_ms))
                }
                (SessionExpiry::After(d), None) => {
                    ops.push(StoreOp::PutSession {
                        client_id: id.clone(),
                        record: SessionRecord {
                            expiry: stored.record.expiry,
                            deadline_unix_ms: Some(wall_ms.saturating_add(millis(d))),
                        },
                    });
                    now.checked_add(d)
                }
                (SessionExpiry::Never, _) => None,
            };
            let mut session = Session::new(stored.record.expiry);
            session.expires_at = expires_at;
            for (filter, granted) in stored.subscriptions {
                if self.index.insert(&filter, id.clone(), granted).is_none() {
                    self.interest.add(&filter);
                }
                session.filters.push((filter, granted));
            }
            let mut kept = Vec::new();
            for d in &stored.queue {
                let Some(message) = restored_message(&d.message, now, wall_ms) else {
                    self.counters.expired_dropped += 1;
                    continue;
                };
                // No cap here: what was stored was accepted (see `detach`).
                session.offline.push_back(Delivery {
                    message,
                    qos: d.qos,
                    retain: d.retain,
                    subscription_id: d.subscription_id,
                });
                kept.push(d);
            }
            if kept.len() < stored.queue.len() {
                ops.push(StoreOp::ClearQueue {
                    client_id: id.clone(),
                });
                ops.extend(kept.into_iter().map(|d| StoreOp::PushQueued {
                    client_id: id.clone(),
                    delivery: d.clone(),
                }));
            }
            self.sessions.insert(id, session);
        }
        for stored in state.retained {
            let topic = stored.topic.clone();
            let Some(message) = restored_message(&stored, now, wall_ms) else {
                self.counters.retained_expired += 1;
                ops.push(StoreOp::RemoveRetained { topic });
                continue;
            };
            match self.check_retain(&message) {
                Ok(RetainChange::Put) => {
                    self.retained.insert(message);
                }
                _ => ops.push(StoreOp::RemoveRetained { topic }),
            }
        }
        ops
    }

    /// Whether the router writes through a [`RouterStore`] ([`Router::with_store`]).
    pub fn is_stored(&self) -> bool {
        self.durable.is_some()
    }

    /// Writes `ops` through the store in one batch (nothing to do without a store or ops).
    fn write(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        match &mut self.durable {
            Some(d) if !ops.is_empty() => d
                .store
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .apply(ops),
            _ => Ok(()),
        }
    }

    /// [`Router::write`], then what `policy` says to do with a failure.
    fn commit(&mut self, ops: &[StoreOp], policy: OnStoreError) -> Result<(), Error> {
        match (self.write(ops), policy) {
            (Ok(()), _) => Ok(()),
            (Err(e), OnStoreError::Refuse) => Err(e.into()),
            (Err(_), OnStoreError::Count) => {
                self.counters.store_failures += 1;
                Ok(())
            }
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

    /// Messages waiting in every offline queue. It counts as it goes (one step per session),
    /// so call it at a metrics scrape, not per message.
    pub fn offline_total(&self) -> usize {
        self.sessions.values().map(|s| s.offline.len()).sum()
    }

    /// Attaches connection `connection` (a number unique per connection, which tells a
    /// takeover from the connection it replaced) to the session `client_id`. A live connection
    /// of that session is kicked with 0x8E Session taken over; with `clean_start` any previous
    /// state is discarded; an expired session is removed first.
    ///
    /// On a router with a store, a store failure is counted and the session attached anyway
    /// ([`Router::try_attach`] refuses instead).
    pub fn attach(
        &mut self,
        client_id: &Arc<str>,
        clean_start: bool,
        expiry: SessionExpiry,
        connection: u64,
        outlet: O,
        now: Instant,
    ) -> Attached {
        let ops = self.attach_ops(client_id, clean_start, expiry, now);
        let _ = self.commit(&ops, OnStoreError::Count);
        self.attach_in_memory(client_id, clean_start, expiry, connection, outlet, now)
    }

    /// [`Router::attach`] that fails closed: the store first records the session (its expiry,
    /// and for a session that was not stored before, its subscriptions), removes what Clean
    /// Start or expiry discards, and empties the offline queue handed over as the backlog.
    ///
    /// # Errors
    ///
    /// [`Error::Store`]: nothing changed (the previous connection was not kicked); refuse the
    /// CONNECT (MQTT 5 CONNACK 0x80 Unspecified error, 3.1.1 0x03 Server unavailable).
    pub fn try_attach(
        &mut self,
        client_id: &Arc<str>,
        clean_start: bool,
        expiry: SessionExpiry,
        connection: u64,
        outlet: O,
        now: Instant,
    ) -> Result<Attached, Error> {
        let ops = self.attach_ops(client_id, clean_start, expiry, now);
        self.commit(&ops, OnStoreError::Refuse)?;
        Ok(self.attach_in_memory(client_id, clean_start, expiry, connection, outlet, now))
    }

    fn attach_ops(
        &self,
        client_id: &Arc<str>,
        clean_start: bool,
        expiry: SessionExpiry,
        now: Instant,
    ) -> Vec<StoreOp> {
        let mut ops = Vec::new();
        let Some(durable) = &self.durable else {
            return ops;
        };
        let mut live = self.sessions.get(client_id);
        let mut stored = live.is_some_and(|s| s.expiry.persistent());
        if clean_start || live.is_some_and(|s| s.expired(now)) {
            if stored {
                ops.push(StoreOp::RemoveSession {
                    client_id: client_id.clone(),
                });
            }
            live = None;
            stored = false;
        }
        if expiry.persistent() {
            // The stored record of an attached session is (expiry, no deadline), and a detached
            // `Never` session has no deadline either: rewriting an unchanged record would cost
            // a commit on every reconnect of an MQTT 3.1.1 persistent session.
            let unchanged = stored
                && live.is_some_and(|s| {
                    s.expiry == expiry && (expiry == SessionExpiry::Never || s.attached.is_some())
                });
            if !unchanged {
                ops.push(StoreOp::PutSession {
                    client_id: client_id.clone(),
                    record: durable.record(expiry, None),
                });
            }
            if let Some(s) = live {
                if !stored {
                    ops.extend(s.filters.iter().map(|(f, g)| StoreOp::PutSubscription {
                        client_id: client_id.clone(),
                        filter: f.clone(),
                        granted: *g,
                    }));
                } else if !s.offline.is_empty() {
                    ops.push(StoreOp::ClearQueue {
                        client_id: client_id.clone(),
                    });
                }
            }
        } else if stored {
            // Resumed, but to end with this connection: a restart must not bring it back.
            ops.push(StoreOp::RemoveSession {
                client_id: client_id.clone(),
            });
        }
        ops
    }

    fn attach_in_memory(
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
        session.expires_at = None;
        session.released = false;
        let mut backlog = Vec::with_capacity(session.offline.len());
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
    /// session keeps its subscriptions and all the `unacked` QoS 1 messages, even beyond
    /// [`RouterLimits::max_offline_messages`]: they were accepted for the session while it was
    /// connected (within the connection's own bounds), and their publishers acknowledged, so
    /// the cap applies only to messages that arrive while it is disconnected. Any other
    /// session is removed. When a newer
    /// connection has taken the session over, a persistent session's `unacked` messages go to
    /// that connection and nothing else changes.
    ///
    /// On a router with a store, a store failure is counted ([`Router::try_detach`] reports it).
    pub fn detach(
        &mut self,
        client_id: &Arc<str>,
        connection: u64,
        unacked: Vec<Delivery>,
        now: Instant,
    ) {
        let ops = self.detach_ops(client_id, connection, &unacked, now);
        let _ = self.commit(&ops, OnStoreError::Count);
        self.detach_in_memory(client_id, connection, unacked, now);
    }

    /// [`Router::detach`] that reports a store failure. The store records the session's expiry
    /// deadline (wall-clock time) and appends the `unacked` QoS 1 messages to its queue.
    ///
    /// # Errors
    ///
    /// [`Error::Store`]: the session is detached in memory all the same (its connection has
    /// ended), but the store missed the deadline and the `unacked` messages: they are kept
    /// until this process ends, and after a restart the session counts its expiry from then.
    pub fn try_detach(
        &mut self,
        client_id: &Arc<str>,
        connection: u64,
        unacked: Vec<Delivery>,
        now: Instant,
    ) -> Result<(), Error> {
        let ops = self.detach_ops(client_id, connection, &unacked, now);
        let written = self.write(&ops);
        self.detach_in_memory(client_id, connection, unacked, now);
        Ok(written?)
    }

    fn detach_ops(
        &self,
        client_id: &Arc<str>,
        connection: u64,
        unacked: &[Delivery],
        now: Instant,
    ) -> Vec<StoreOp> {
        let mut ops = Vec::new();
        let (Some(durable), Some(session)) = (&self.durable, self.sessions.get(client_id)) else {
            return ops;
        };
        if session.attached.as_ref().map(|a| a.connection) != Some(connection)
            || !session.expiry.persistent()
        {
            return ops;
        }
        if let SessionExpiry::After(_) = session.expiry {
            // Its deadline starts now. (A `Never` session's record is unchanged.)
            ops.push(StoreOp::PutSession {
                client_id: client_id.clone(),
                record: durable.record(session.expiry, Some(now)),
            });
        }
        for d in unacked.iter().filter(|d| d.qos != QoS::AtMostOnce) {
            ops.push(StoreOp::PushQueued {
                client_id: client_id.clone(),
                delivery: durable.stored_delivery(d, durable.stored_message(&d.message)),
            });
        }
        ops
    }

    fn detach_in_memory(
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
        session.expires_at = match session.expiry {
            SessionExpiry::After(d) => now.checked_add(d),
            _ => None,
        };
        if session.expiry.persistent() && !session.released {
            session
                .offline
                .extend(unacked.into_iter().filter(|d| d.qos != QoS::AtMostOnce));
        } else {
            // Not persistent, or released to another server (which finds the `unacked`
            // messages in the store: `detach_ops` wrote them).
            self.remove_session(client_id);
        }
    }

    fn remove_session(&mut self, client_id: &Arc<str>) {
        if let Some(session) = self.sessions.remove(client_id) {
            for (f, _) in &session.filters {
                if self.index.remove(f, client_id).is_some() {
                    self.interest.remove(f);
                }
            }
        }
    }

    /// Whether `client_id` has a session that is (or is to be) stored.
    fn stored_session(&self, client_id: &str) -> bool {
        self.durable.is_some()
            && self
                .sessions
                .get(client_id)
                .is_some_and(|s| s.expiry.persistent())
    }

    /// Adds or replaces `client_id`'s subscription to `filter`. Returns whether it existed
    /// before (for Retain Handling 1, send retained messages only for a new subscription).
    ///
    /// On a router with a store, a store failure is counted and the subscription made anyway
    /// ([`Router::try_subscribe`] refuses instead).
    pub fn subscribe(
        &mut self,
        client_id: &Arc<str>,
        filter: &TopicFilter,
        granted: GrantedSubscription,
    ) -> bool {
        let ops = self.subscribe_ops(client_id, filter, granted);
        let _ = self.commit(&ops, OnStoreError::Count);
        self.subscribe_in_memory(client_id, filter, granted)
    }

    /// [`Router::subscribe`] that fails closed: a persistent session's subscription is stored
    /// first.
    ///
    /// # Errors
    ///
    /// [`Error::Store`]: no subscription was made or changed; answer the SUBACK entry with a
    /// failure (MQTT 5 0x80 Unspecified error, 3.1.1 0x80 Failure).
    pub fn try_subscribe(
        &mut self,
        client_id: &Arc<str>,
        filter: &TopicFilter,
        granted: GrantedSubscription,
    ) -> Result<bool, Error> {
        let ops = self.subscribe_ops(client_id, filter, granted);
        self.commit(&ops, OnStoreError::Refuse)?;
        Ok(self.subscribe_in_memory(client_id, filter, granted))
    }

    fn subscribe_ops(
        &self,
        client_id: &Arc<str>,
        filter: &TopicFilter,
        granted: GrantedSubscription,
    ) -> Vec<StoreOp> {
        if !self.stored_session(client_id) {
            return Vec::new();
        }
        vec![StoreOp::PutSubscription {
            client_id: client_id.clone(),
            filter: filter.clone(),
            granted,
        }]
    }

    fn subscribe_in_memory(
        &mut self,
        client_id: &Arc<str>,
        filter: &TopicFilter,
        granted: GrantedSubscription,
    ) -> bool {
        let existed = self
            .index
            .insert(filter, client_id.clone(), granted)
            .is_some();
        if !existed {
            self.interest.add(filter);
        }
        if let Some(session) = self.sessions.get_mut(client_id) {
            match session.filters.iter_mut().find(|(f, _)| f == filter) {
                Some((_, g)) => *g = granted,
                None => session.filters.push((filter.clone(), granted)),
            }
        }
        existed
    }

    /// Removes `client_id`'s subscription to `filter`. Returns whether it existed.
    ///
    /// On a router with a store, a store failure is counted and the subscription removed anyway
    /// ([`Router::try_unsubscribe`] refuses instead).
    pub fn unsubscribe(&mut self, client_id: &Arc<str>, filter: &TopicFilter) -> bool {
        let ops = self.unsubscribe_ops(client_id, filter);
        let _ = self.commit(&ops, OnStoreError::Count);
        self.unsubscribe_in_memory(client_id, filter)
    }

    /// [`Router::unsubscribe`] that fails closed: a persistent session's subscription is
    /// removed from the store first.
    ///
    /// # Errors
    ///
    /// [`Error::Store`]: the subscription is unchanged; answer the UNSUBACK entry with a failure
    /// (MQTT 5 0x80 Unspecified error).
    pub fn try_unsubscribe(
        &mut self,
        client_id: &Arc<str>,
        filter: &TopicFilter,
    ) -> Result<bool, Error> {
        let ops = self.unsubscribe_ops(client_id, filter);
        self.commit(&ops, OnStoreError::Refuse)?;
        Ok(self.unsubscribe_in_memory(client_id, filter))
    }

    fn unsubscribe_ops(&self, client_id: &Arc<str>, filter: &TopicFilter) -> Vec<StoreOp> {
        let subscribed = self
            .sessions
            .get(client_id)
            .is_some_and(|s| s.filters.iter().any(|(f, _)| f == filter));
        if !subscribed || !self.stored_session(client_id) {
            return Vec::new();
        }
        vec![StoreOp::RemoveSubscription {
            client_id: client_id.clone(),
            filter: filter.clone(),
        }]
    }

    fn unsubscribe_in_memory(&mut self, client_id: &Arc<str>, filter: &TopicFilter) -> bool {
        let existed = self.index.remove(filter, client_id).is_some();
        if existed {
            self.interest.remove(filter);
        }
        if let Some(session) = self.sessions.get_mut(client_id) {
            session.filters.retain(|(f, _)| f != filter);
        }
        existed
    }

    /// Updates the retained store for a message published with RETAIN: an empty payload deletes
    /// the topic's retained message [MQTT-3.3.1-6]; anything else replaces it. On a router with a
    /// store, the change is stored first.
    ///
    /// # Errors
    ///
    /// [`Error::RetainedQuotaExceeded`] when storing it would exceed
    /// [`RouterLimits::max_retained_messages`] (a new topic),
    /// [`RouterLimits::max_retained_bytes`] or [`RouterLimits::max_retained_topic_levels`]; the store is unchanged (the previous retained
    /// message on the topic, if any, stays) and the refusal is counted.
    /// [`Error::Store`] when the store failed: nothing changed.
    pub fn retain(&mut self, message: &Arc<Message>) -> Result<(), Error> {
        let change = self.check_retain(message)?;
        let mut ops = Vec::new();
        self.retain_ops(message, change, &mut ops);
        self.commit(&ops, OnStoreError::Refuse)?;
        self.apply_retain(message, change);
        Ok(())
    }

    /// What RETAIN `message` does to the retained store, if the limits allow it.
    fn check_retain(&mut self, message: &Arc<Message>) -> Result<RetainChange, Error> {
        if message.payload.is_empty() {
            return Ok(match self.retained.get(&message.topic) {
                Some(_) => RetainChange::Delete,
                None => RetainChange::None,
            });
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
        Ok(RetainChange::Put)
    }

    fn retain_ops(&self, message: &Arc<Message>, change: RetainChange, ops: &mut Vec<StoreOp>) {
        let Some(durable) = &self.durable else {
            return;
        };
        match change {
            RetainChange::Put => ops.push(StoreOp::PutRetained {
                message: durable.stored_message(message),
            }),
            RetainChange::Delete => ops.push(StoreOp::RemoveRetained {
                topic: message.topic.clone(),
            }),
            RetainChange::None => {}
        }
    }

    fn apply_retain(&mut self, message: &Arc<Message>, change: RetainChange) {
        match change {
            RetainChange::Put => {
                self.retained.insert(message.clone());
            }
            RetainChange::Delete => {
                self.retained.remove(&message.topic);
            }
            RetainChange::None => {}
        }
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
    /// routes it ([`Router::route`]). On a router with a store, the retained change and the
    /// copies queued for offline persistent sessions are stored in one batch before anything
    /// is delivered: when it returns `Ok`, the message is durable wherever it has to be, and
    /// the broker may acknowledge it (PUBACK).
    ///
    /// # Errors
    ///
    /// [`Error::RetainedQuotaExceeded`]: the message is refused as a whole, neither stored nor
    /// routed, so that the publisher's answer (MQTT 5 PUBACK 0x97 Quota exceeded) is true.
    /// [`Error::Store`]: the store failed; the message was neither stored, queued nor delivered
    /// to anyone. Do not acknowledge it (MQTT 5 PUBACK 0x80 Unspecified error, or no PUBACK so
    /// that the client sends it again).
    pub fn publish(&mut self, message: &Arc<Message>) -> Result<Routed, Error> {
        let change = if message.retain {
            Some(self.check_retain(message)?)
        } else {
            None
        };
        self.route_with(message, change, OnStoreError::Refuse)
    }

    /// Hands `message` to every matching subscriber: one member per shared group (round-robin),
    /// not to its publisher where No Local is set; a disconnected persistent session queues QoS 1
    /// messages up to [`RouterLimits::max_offline_messages`].
    ///
    /// On a router with a store, a store failure is counted and the message routed anyway
    /// ([`Router::try_route`] refuses instead).
    pub fn route(&mut self, message: &Arc<Message>) -> Routed {
        self.route_with(message, None, OnStoreError::Count)
            .unwrap_or_default()
    }

    /// [`Router::route`] that fails closed: the copies queued for offline persistent sessions
    /// are stored first.
    ///
    /// # Errors
    ///
    /// [`Error::Store`]: the message was neither queued nor delivered to anyone.
    pub fn try_route(&mut self, message: &Arc<Message>) -> Result<Routed, Error> {
        self.route_with(message, None, OnStoreError::Refuse)
    }

    fn route_with(
        &mut self,
        message: &Arc<Message>,
        retain: Option<RetainChange>,
        policy: OnStoreError,
    ) -> Result<Routed, Error> {
        let cursor = self.share_cursor;
        let targets = self.targets(message);
        let mut ops = Vec::new();
        if let Some(change) = retain {
            self.retain_ops(message, change, &mut ops);
        }
        self.queue_ops(message, &targets, &mut ops);
        if let Err(e) = self.commit(&ops, policy) {
            self.share_cursor = cursor;
            return Err(e);
        }
        if let Some(change) = retain {
            self.apply_retain(message, change);
        }
        Ok(self.deliver(message, targets))
    }

    /// Routes `message` to `client_id`'s session alone, by its own subscriptions, as
    /// [`Router::try_route`] would for that session: No Local, QoS downgraded to the
    /// subscription's, Retain As Published, subscription identifiers; a copy for a detached
    /// persistent session is stored before it is queued. Retained messages are not stored
    /// again. A cluster replays through this what a session that moved here missed.
    ///
    /// The session's shared subscriptions count too, as if the group had chosen it: a replay
    /// cannot know which member the group chose the first time (the message may have died with
    /// a server), so a member that moved gets the group's messages of the replayed interval
    /// again — at least once, as QoS 1 promises; another member may have had some of them.
    ///
    /// # Errors
    ///
    /// [`Error::Store`]: the copies for a detached session could not be stored; none was
    /// queued.
    pub fn try_route_to(
        &mut self,
        client_id: &str,
        message: &Arc<Message>,
    ) -> Result<Routed, Error> {
        let mut targets: Vec<(Arc<str>, GrantedSubscription)> = Vec::new();
        self.index.for_each_match(&message.topic, |m| match m {
            Match::Direct { subscriber, value } => {
                if &**subscriber == client_id
                    && !(value.no_local && message.from.as_ref() == Some(subscriber))
                {
                    targets.push((subscriber.clone(), *value));
                }
            }
            // (A shared subscription has no No Local [MQTT-3.8.3-4].)
            Match::Shared { members, .. } => {
                if let Some((s, v)) = members.iter().find(|(s, _)| &**s == client_id) {
                    targets.push((s.clone(), *v));
                }
            }
        });
        let mut ops = Vec::new();
        self.queue_ops(message, &targets, &mut ops);
        self.commit(&ops, OnStoreError::Refuse)?;
        Ok(self.deliver(message, targets))
    }

    /// The subscribers `message` goes to, with their subscription options.
    fn targets(&mut self, message: &Arc<Message>) -> Vec<(Arc<str>, GrantedSubscription)> {
        let mut targets: Vec<(Arc<str>, GrantedSubscription)> = Vec::new();
        let cursor = self.share_cursor;
        let sessions = &self.sessions;
        let connected = |s: &Arc<str>| sessions.get(s).is_some_and(|s| s.attached.is_some());
        let shared_elsewhere = self.interest.shared_observer.is_some();
        self.index.for_each_match(&message.topic, |m| match m {
            Match::Direct { subscriber, value } => {
                if !(value.no_local && message.from.as_ref() == Some(subscriber)) {
                    targets.push((subscriber.clone(), *value));
                }
            }
            Match::Shared { .. } if shared_elsewhere => {}
            Match::Shared { members, .. } => {
                // Round-robin over the group, skipping members that are not connected (their
                // persistent sessions would only queue what a connected member can take now);
                // when none is connected, the member at the cursor queues it.
                let n = members.len();
                let start = cursor % n.max(1);
                let chosen = (0..n)
                    .map(|i| (start + i) % n)
                    .find(|&i| members.get(i).is_some_and(|(s, _)| connected(s)))
                    .unwrap_or(start);
                if let Some((s, v)) = members.get(chosen) {
                    targets.push((s.clone(), *v));
                }
            }
        });
        self.share_cursor = self.share_cursor.wrapping_add(1);
        targets
    }

    /// The store ops for the copies of `message` that [`Router::deliver`] will queue for
    /// offline sessions: one stored message shared by all of them.
    fn queue_ops(
        &self,
        message: &Arc<Message>,
        targets: &[(Arc<str>, GrantedSubscription)],
        ops: &mut Vec<StoreOp>,
    ) {
        let Some(durable) = &self.durable else {
            return;
        };
        let mut stored: Option<Arc<StoredMessage>> = None;
        let mut pushed: HashMap<&str, usize> = HashMap::new();
        for (client, granted) in targets {
            let Some(session) = self.sessions.get(client) else {
                continue;
            };
            let qos = min_qos(granted.qos, message.qos);
            if session.attached.is_some() || qos == QoS::AtMostOnce {
                continue;
            }
            let queued = pushed.entry(client).or_default();
            if session.offline.len() + *queued >= self.limits.max_offline_messages {
                continue;
            }
            *queued += 1;
            let stored = stored
                .get_or_insert_with(|| durable.stored_message(message))
                .clone();
            ops.push(StoreOp::PushQueued {
                client_id: client.clone(),
                delivery: StoredDelivery {
                    message: stored,
                    qos,
                    retain: granted.retain_as_published && message.retain,
                    subscription_id: granted.id,
                },
            });
        }
    }

    fn deliver(
        &mut self,
        message: &Arc<Message>,
        targets: Vec<(Arc<str>, GrantedSubscription)>,
    ) -> Routed {
        let mut routed = Routed::default();
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
                    Err(delivery) if delivery.qos == QoS::AtLeastOnce => {
                        routed.blocked.push(Blocked {
                            client_id: client,
                            connection: a.connection,
                            delivery,
                        });
                    }
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

    /// The outlet of `client_id`'s connected session, with its connection number: a driver
    /// holding a [`Blocked`] delivery takes it (cloned) to wait for room without the router.
    pub fn outlet(&self, client_id: &str) -> Option<(u64, &O)> {
        let a = self.sessions.get(client_id)?.attached.as_ref()?;
        Some((a.connection, &a.outlet))
    }

    /// Hands back a [`Blocked`] delivery its driver could not place: to the session's
    /// connection if it has room now, else (the session disconnected) to the persistent
    /// session's queue, beyond [`RouterLimits::max_offline_messages`] if need be (see
    /// [`Router::detach`]). A driver that ended a
    /// slow connection calls this after that connection's [`Router::detach`], so the messages
    /// the connection had not acknowledged come first.
    ///
    /// On a router with a store, a store failure is counted and the delivery queued in memory
    /// ([`Router::try_requeue`] refuses instead).
    pub fn requeue(&mut self, blocked: Blocked) -> Requeued {
        self.requeue_with(blocked, OnStoreError::Count)
            .unwrap_or(Requeued::Dropped)
    }

    /// [`Router::requeue`] that fails closed: a copy for a disconnected persistent session is
    /// stored before it is queued.
    ///
    /// # Errors
    ///
    /// [`Error::Store`]: the delivery was not queued.
    pub fn try_requeue(&mut self, blocked: Blocked) -> Result<Requeued, Error> {
        self.requeue_with(blocked, OnStoreError::Refuse)
    }

    fn requeue_with(&mut self, blocked: Blocked, policy: OnStoreError) -> Result<Requeued, Error> {
        let Blocked {
            client_id,
            delivery,
            ..
        } = blocked;
        let Some(session) = self.sessions.get(&client_id) else {
            self.counters.ended_dropped += 1;
            return Ok(Requeued::Dropped);
        };
        if let Some(a) = &session.attached {
            let connection = a.connection;
            return Ok(match a.outlet.try_deliver(delivery) {
                Ok(()) => Requeued::Delivered,
                Err(delivery) => Requeued::Blocked(Blocked {
                    client_id,
                    connection,
                    delivery,
                }),
            });
        }
        if !session.expiry.persistent() {
            self.counters.ended_dropped += 1;
            return Ok(Requeued::Dropped);
        }
        // Not capped by `max_offline_messages`: like the messages its connection handed back
        // at detach, this one was accepted for the session while it was connected (there is
        // at most one per waiting publisher).
        if let Some(durable) = &self.durable {
            let ops = [StoreOp::PushQueued {
                client_id: client_id.clone(),
                delivery: durable
                    .stored_delivery(&delivery, durable.stored_message(&delivery.message)),
            }];
            self.commit(&ops, policy)?;
        }
        if let Some(session) = self.sessions.get_mut(&client_id) {
            session.offline.push_back(delivery);
        }
        Ok(Requeued::Queued)
    }

    /// Removes the persistent sessions whose Session Expiry Interval has passed at `now` since
    /// their connection ended, and the retained messages that expired; returns how many
    /// sessions. Expired retained messages are found through a deadline index, so that part
    /// costs what expires; sessions are still checked one by one.
    ///
    /// On a router with a store, a store failure is counted ([`Router::try_sweep`] reports it).
    pub fn sweep(&mut self, now: Instant) -> usize {
        let (expired, ops) = self.sweep_in_memory(now);
        let _ = self.commit(&ops, OnStoreError::Count);
        expired
    }

    /// [`Router::sweep`] that reports a store failure. The store removes the expired sessions
    /// and retained messages in one batch.
    ///
    /// # Errors
    ///
    /// [`Error::Store`]: memory was swept all the same; the store still holds what expired,
    /// which is not restored after a restart either (its deadlines are stored) and is removed
    /// then.
    pub fn try_sweep(&mut self, now: Instant) -> Result<usize, Error> {
        let (expired, ops) = self.sweep_in_memory(now);
        self.write(&ops)?;
        Ok(expired)
    }

    fn sweep_in_memory(&mut self, now: Instant) -> (usize, Vec<StoreOp>) {
        let expired: Vec<Arc<str>> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.expired(now))
            .map(|(id, _)| id.clone())
            .collect();
        let stored = self.durable.is_some();
        let mut ops = Vec::new();
        for id in &expired {
            self.remove_session(id);
            if stored {
                ops.push(StoreOp::RemoveSession {
                    client_id: id.clone(),
                });
            }
        }
        self.counters.sessions_expired += expired.len() as u64;
        let purged = self.retained.purge_expired_with(now, |topic| {
            if stored {
                ops.push(StoreOp::RemoveRetained {
                    topic: topic.clone(),
                });
            }
        });
        self.counters.retained_expired += purged as u64;
        (expired.len(), ops)
    }

    /// Whether the router holds a session for `client_id` (connected, or persistent and
    /// detached).
    pub fn has_session(&self, client_id: &str) -> bool {
        self.sessions.contains_key(client_id)
    }

    /// Lets another server of a cluster take the session `client_id` over: the session leaves
    /// this router's memory (subscriptions, offline queue) **without** being removed from the
    /// store, where the other server finds it ([`Router::adopt`] there). Returns whether there
    /// was a session.
    ///
    /// A detached session leaves at once. A connected one is kicked with 0x8E Session taken
    /// over and leaves when its connection detaches: [`Router::detach`] stores the QoS 1
    /// messages the connection had not seen acknowledged (as for any persistent session), then
    /// drops the session from memory. Wait for [`Router::has_session`] to turn false before
    /// telling the other server that the session is free.
    pub fn release(&mut self, client_id: &Arc<str>) -> bool {
        let Some(session) = self.sessions.get_mut(client_id) else {
            return false;
        };
        match &session.attached {
            Some(attached) => {
                attached.outlet.kick(ReasonCode::SESSION_TAKEN_OVER);
                if session.expiry.persistent() {
                    session.released = true;
                }
            }
            None => self.remove_session(client_id),
        }
        true
    }

    /// Asks the live connection of `client_id`'s session, if any, to end with `reason` (its
    /// connection task then detaches as usual). Returns whether there was one.
    pub fn kick(&self, client_id: &str, reason: ReasonCode) -> bool {
        match self
            .sessions
            .get(client_id)
            .and_then(|s| s.attached.as_ref())
        {
            Some(attached) => {
                attached.outlet.kick(reason);
                true
            }
            None => false,
        }
    }

    /// Takes over a persistent session that another server kept in the shared store (after
    /// that server [`released`](Router::release) it, or died): its subscriptions and offline
    /// queue join this router, detached, as [`Router::with_store`] restores sessions at start
    /// (an expired session or expired messages are dropped and removed from the store). A
    /// session this router already holds under that client ID is replaced. Attach a
    /// connection to it next ([`Router::try_attach`]).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the clean-up of what expired cannot be written (the session is
    /// adopted all the same).
    pub fn adopt(&mut self, session: StoredSession, now: Instant) -> Result<(), Error> {
        let wall_ms = match &self.durable {
            Some(d) => d.unix_ms(now),
            None => SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, millis),
        };
        if let Some(old) = self.sessions.get(&session.client_id)
            && let Some(attached) = &old.attached
        {
            attached.outlet.kick(ReasonCode::SESSION_TAKEN_OVER);
        }
        self.remove_session(&session.client_id);
        let state = StoredState {
            sessions: vec![session],
            retained: Vec::new(),
        };
        let ops = self.restore(state, now, wall_ms);
        Ok(self.write(&ops)?)
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

    /// Messages queued for `client_id`'s disconnected session (0 if none).
    pub fn offline_len(&self, client_id: &str) -> usize {
        self.sessions.get(client_id).map_or(0, |s| s.offline.len())
    }
}
