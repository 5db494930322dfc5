//! Keyed rate limiting with GCRA; documented on [`RateLimiter`].

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Number of independently locked shards in a [`RateLimiter`].
pub(crate) const SHARDS: usize = 64;

/// A point on the caller's monotonic clock, in nanoseconds from an arbitrary origin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub u64);

impl Nanos {
    /// `secs` seconds after the origin.
    pub const fn from_secs(secs: u64) -> Nanos {
        Nanos(secs.saturating_mul(1_000_000_000))
    }

    /// `ms` milliseconds after the origin.
    pub const fn from_millis(ms: u64) -> Nanos {
        Nanos(ms.saturating_mul(1_000_000))
    }

    /// This instant plus `d` (saturating).
    pub fn saturating_add(self, d: Duration) -> Nanos {
        Nanos(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }
}

/// A rate: `amount` units per `period`, allowing bursts of up to `burst` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Units per period; at least 1.
    pub amount: u64,
    /// The period in milliseconds; 1 ms to 1 year.
    pub period_ms: u64,
    /// Largest burst in units; at least 1 and at most 10¹².
    pub burst: u64,
}

impl Rate {
    /// `amount` per second with a burst of one second's worth.
    pub const fn per_second(amount: u64) -> Rate {
        Rate {
            amount,
            period_ms: 1000,
            burst: amount,
        }
    }

    fn compile(&self) -> Result<Gcra> {
        if self.amount == 0 {
            return Err(Error::Config {
                field: "rate.amount",
                reason: "must be at least 1",
            });
        }
        if self.period_ms == 0 || self.period_ms > 366 * 86_400_000 {
            return Err(Error::Config {
                field: "rate.period_ms",
                reason: "must be 1 ms to 1 year",
            });
        }
        if self.burst == 0 || self.burst > 1_000_000_000_000 {
            return Err(Error::Config {
                field: "rate.burst",
                reason: "must be 1 to 10^12",
            });
        }
        let period_ns = u128::from(self.period_ms) * 1_000_000;
        // Emission interval in 32.32 fixed-point nanoseconds, rounded up so the limit is never
        // exceeded: period_ns < 2^55, so the shift fits in u128 with room for any u32 cost (a
        // larger cost's product is checked in `Gcra::increment`).
        let interval_fp = (period_ns << 32).div_ceil(u128::from(self.amount));
        let tolerance =
            u64::try_from((u128::from(self.burst) * interval_fp) >> 32).map_err(|_| {
                Error::Config {
                    field: "rate.burst",
                    reason: "burst × interval exceeds the clock range",
                }
            })?;
        Ok(Gcra {
            interval_fp,
            unit: u64::try_from(interval_fp.div_ceil(1 << 32)).unwrap_or(u64::MAX),
            max_cost64: u64::try_from(interval_fp)
                .ok()
                .and_then(|fp| u64::MAX.checked_div(fp))
                .unwrap_or(0),
            tolerance,
        })
    }
}

/// A compiled [`Rate`]: emission interval and burst tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    interval_fp: u128,
    /// The increment of a cost of 1 (every message-count check), precomputed so the per-message
    /// path does no 128-bit arithmetic.
    unit: u64,
    /// The largest cost whose product with `interval_fp` fits in 64 bits (0 when
    /// `interval_fp` itself does not): up to it, the increment takes one 64-bit multiply.
    max_cost64: u64,
    tolerance: u64,
}

/// Outcome of one GCRA cell check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CellResult {
    /// Allowed; the increment that was (or would be) added to the TAT.
    Allowed(u64),
    /// Refused; earliest time from now when the same request would pass, `None` if never (cost
    /// larger than the burst).
    Refused(Option<u64>),
}

impl Gcra {
    #[inline]
    fn increment(&self, cost: u64) -> u64 {
        if cost == 1 {
            return self.unit;
        }
        if cost <= self.max_cost64 {
            // The same rounded-up quotient as below, in 64 bits: `interval_fp` fits in them
            // whenever `max_cost64` is not 0 (and a cost of 0 gives 0 either way).
            let product = cost * self.interval_fp as u64;
            return (product >> 32) + u64::from(product as u32 != 0);
        }
        // A product past 128 bits (a cost of more than 2^41 on the slowest rates) saturates:
        // such a request exceeds any burst and is refused, never wrapped into a small one.
        u128::from(cost)
            .checked_mul(self.interval_fp)
            .and_then(|p| u64::try_from(p.div_ceil(1 << 32)).ok())
            .unwrap_or(u64::MAX)
    }

    /// Checks (and when `consume`, applies) a request of `cost` units against `cell`.
    #[inline]
    pub(crate) fn check(&self, cell: &AtomicU64, cost: u64, now: u64, consume: bool) -> CellResult {
        let inc = self.increment(cost);
        if inc > self.tolerance {
            return CellResult::Refused(None);
        }
        let mut tat = cell.load(Ordering::Relaxed);
        loop {
            let new_tat = tat.max(now).saturating_add(inc);
            let allowed_at = new_tat.saturating_sub(self.tolerance);
            if allowed_at > now {
                return CellResult::Refused(Some(allowed_at - now));
            }
            if !consume {
                return CellResult::Allowed(inc);
            }
            match cell.compare_exchange_weak(tat, new_tat, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return CellResult::Allowed(inc),
                Err(seen) => tat = seen,
            }
        }
    }

    /// The TAT after admitting `cost` units at `now`, or when the same request would pass
    /// (`None`: never). Pure: the caller stores the new TAT (single-writer cells).
    #[inline]
    fn next_tat(&self, tat: u64, cost: u64, now: u64) -> Result<u64, Option<u64>> {
        let inc = self.increment(cost);
        if inc > self.tolerance {
            return Err(None);
        }
        let new_tat = tat.max(now).saturating_add(inc);
        let allowed_at = new_tat.saturating_sub(self.tolerance);
        if allowed_at > now {
            return Err(Some(allowed_at - now));
        }
        Ok(new_tat)
    }

    /// Gives back an increment taken by [`Gcra::check`] (used when a second limit refuses).
    #[inline]
    pub(crate) fn refund(cell: &AtomicU64, inc: u64) {
        let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
            Some(t.saturating_sub(inc))
        });
    }
}

/// MQTT 5 reason codes a limit can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitReason {
    /// 0x96 Message rate too high (MQTT 5.0 §3.14.2.1, DISCONNECT).
    MessageRateTooHigh,
    /// 0x97 Quota exceeded (MQTT 5.0 §3.4.2.1 PUBACK, §3.14.2.1 DISCONNECT).
    QuotaExceeded,
    /// 0x9F Connection rate exceeded (MQTT 5.0 §3.2.2.2 CONNACK, §3.14.2.1 DISCONNECT).
    ConnectionRateExceeded,
}

impl LimitReason {
    /// The reason code byte.
    pub fn code(self) -> u8 {
        match self {
            LimitReason::MessageRateTooHigh => 0x96,
            LimitReason::QuotaExceeded => 0x97,
            LimitReason::ConnectionRateExceeded => 0x9F,
        }
    }
}

/// What the broker should do with a request that exceeded a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitAction {
    /// Discard the message silently (QoS 0 semantics).
    Drop,
    /// Hold the request for `retry_after` and check again.
    Delay,
    /// Refuse it with this MQTT 5 reason code in the PUBACK or CONNACK: 0x97 Quota exceeded
    /// (valid in both) or 0x9F Connection rate exceeded (CONNACK). 0x96 Message rate too high
    /// exists only in DISCONNECT (MQTT 5.0 §3.4.2.1, §3.14.2.1), so limits that would reject with
    /// it are refused when the limiter is built; use `Disconnect` for it.
    Reject(LimitReason),
    /// Close the connection (DISCONNECT with the reason code).
    Disconnect(LimitReason),
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// The request-count limit.
    Messages,
    /// The byte-rate limit.
    Bytes,
}

/// The answer of a rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Within limits (and consumed, unless this came from a peek).
    Allow,
    /// A limit refused the request; nothing was consumed.
    Limited {
        /// The limit that refused.
        limit: LimitKind,
        /// The configured action for that limit.
        action: LimitAction,
        /// When the same request would pass; `None` if it never can (cost above the burst).
        retry_after: Option<Duration>,
    },
}

impl RateDecision {
    /// Whether the request was allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, RateDecision::Allow)
    }
}

/// The limits applied to one key: optional message and byte rates and their actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimits {
    /// Requests per period (cost 1 each), if limited.
    pub messages: Option<Rate>,
    /// Bytes per period (cost = request bytes), if limited.
    pub bytes: Option<Rate>,
    /// What to do when the message rate is exceeded.
    pub message_action: LimitAction,
    /// What to do when the byte rate is exceeded.
    pub byte_action: LimitAction,
}

impl RateLimits {
    /// This value with [`messages`](Self::messages) replaced.
    pub fn with_messages(mut self, messages: Option<Rate>) -> Self {
        self.messages = messages;
        self
    }

    /// This value with [`bytes`](Self::bytes) replaced.
    pub fn with_bytes(mut self, bytes: Option<Rate>) -> Self {
        self.bytes = bytes;
        self
    }

    /// This value with [`message_action`](Self::message_action) replaced.
    pub fn with_message_action(mut self, message_action: LimitAction) -> Self {
        self.message_action = message_action;
        self
    }

    /// This value with [`byte_action`](Self::byte_action) replaced.
    pub fn with_byte_action(mut self, byte_action: LimitAction) -> Self {
        self.byte_action = byte_action;
        self
    }
}

impl Default for RateLimits {
    /// [`RateLimits::unlimited`].
    fn default() -> Self {
        RateLimits::unlimited()
    }
}

impl RateLimits {
    /// No message or byte limit (the actions, `Drop`, never apply). The default.
    pub const fn unlimited() -> RateLimits {
        RateLimits {
            messages: None,
            bytes: None,
            message_action: LimitAction::Drop,
            byte_action: LimitAction::Drop,
        }
    }

    /// AWS IoT Core per-connection publish limits: 100 publishes/s and 512 KiB/s, answered with
    /// PUBACK 0x97 Quota exceeded (0x96 Message rate too high is not a PUBACK code in MQTT 5).
    pub const fn aws_connection() -> RateLimits {
        RateLimits {
            messages: Some(Rate::per_second(100)),
            bytes: Some(Rate::per_second(512 * 1024)),
            message_action: LimitAction::Reject(LimitReason::QuotaExceeded),
            byte_action: LimitAction::Reject(LimitReason::QuotaExceeded),
        }
    }

    /// AWS IoT Core: 1 CONNECT per second per client ID, answered with CONNACK 0x9F.
    pub const fn aws_client_connect() -> RateLimits {
        RateLimits {
            messages: Some(Rate::per_second(1)),
            bytes: None,
            message_action: LimitAction::Reject(LimitReason::ConnectionRateExceeded),
            byte_action: LimitAction::Drop,
        }
    }

    /// AWS IoT Core (us-east-1): 500 CONNECTs per second per account.
    pub const fn aws_account_connect() -> RateLimits {
        RateLimits {
            messages: Some(Rate::per_second(500)),
            bytes: None,
            message_action: LimitAction::Reject(LimitReason::ConnectionRateExceeded),
            byte_action: LimitAction::Drop,
        }
    }

    /// AWS IoT Core (us-east-1): 20,000 inbound publishes per second per account, answered with
    /// PUBACK 0x97.
    pub const fn aws_account_publish() -> RateLimits {
        RateLimits {
            messages: Some(Rate::per_second(20_000)),
            bytes: None,
            message_action: LimitAction::Reject(LimitReason::QuotaExceeded),
            byte_action: LimitAction::Drop,
        }
    }

    fn compile(&self) -> Result<Compiled> {
        const ONLY_IN_DISCONNECT: &str = "0x96 message_rate_too_high is valid only in DISCONNECT \
             (MQTT 5.0 §3.4.2.1, §3.14.2.1): reject with quota_exceeded or disconnect instead";
        if self.message_action == LimitAction::Reject(LimitReason::MessageRateTooHigh) {
            return Err(Error::Config {
                field: "limits.message_action",
                reason: ONLY_IN_DISCONNECT,
            });
        }
        if self.byte_action == LimitAction::Reject(LimitReason::MessageRateTooHigh) {
            return Err(Error::Config {
                field: "limits.byte_action",
                reason: ONLY_IN_DISCONNECT,
            });
        }
        Ok(Compiled {
            messages: self.messages.as_ref().map(Rate::compile).transpose()?,
            bytes: self.bytes.as_ref().map(Rate::compile).transpose()?,
            message_action: self.message_action,
            byte_action: self.byte_action,
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Compiled {
    messages: Option<Gcra>,
    bytes: Option<Gcra>,
    message_action: LimitAction,
    byte_action: LimitAction,
}

fn refused(limit: LimitKind, action: LimitAction, after: Option<u64>) -> RateDecision {
    RateDecision::Limited {
        limit,
        action,
        retry_after: after.map(Duration::from_nanos),
    }
}

impl Compiled {
    pub(crate) fn new(limits: &RateLimits) -> Result<Compiled> {
        limits.compile()
    }

    /// Single-writer form of [`Compiled::check`], over state the caller owns exclusively (a
    /// connection handle's fields): plain loads and stores, no atomics, and both limits are
    /// checked before either is consumed.
    #[inline]
    pub(crate) fn check_local(
        &self,
        msg_tat: &mut u64,
        byte_tat: &mut u64,
        bytes: u64,
        now: u64,
        consume: bool,
    ) -> RateDecision {
        let mut new_msg = None;
        if let Some(g) = &self.messages {
            match g.next_tat(*msg_tat, 1, now) {
                Ok(t) => new_msg = Some(t),
                Err(after) => return refused(LimitKind::Messages, self.message_action, after),
            }
        }
        let mut new_byte = None;
        if let Some(g) = &self.bytes {
            match g.next_tat(*byte_tat, bytes, now) {
                Ok(t) => new_byte = Some(t),
                Err(after) => return refused(LimitKind::Bytes, self.byte_action, after),
            }
        }
        if consume {
            if let Some(t) = new_msg {
                *msg_tat = t;
            }
            if let Some(t) = new_byte {
                *byte_tat = t;
            }
        }
        RateDecision::Allow
    }

    /// Checks a request of one message and `bytes` bytes against the two cells.
    #[inline]
    pub(crate) fn check(
        &self,
        msg_cell: &AtomicU64,
        byte_cell: &AtomicU64,
        bytes: u64,
        now: u64,
        consume: bool,
    ) -> RateDecision {
        let mut taken = 0;
        if let Some(g) = &self.messages {
            match g.check(msg_cell, 1, now, consume) {
                CellResult::Allowed(inc) => taken = inc,
                CellResult::Refused(after) => {
                    return refused(LimitKind::Messages, self.message_action, after);
                }
            }
        }
        if let Some(g) = &self.bytes
            && let CellResult::Refused(after) = g.check(byte_cell, bytes, now, consume)
        {
            if consume && taken > 0 {
                Gcra::refund(msg_cell, taken);
            }
            return refused(LimitKind::Bytes, self.byte_action, after);
        }
        RateDecision::Allow
    }
}

/// Configuration of a [`RateLimiter`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimiterConfig {
    /// Limits for keys without an override.
    pub default: RateLimits,
    /// Hard cap on tracked keys (default 1,048,576); a new key beyond it is refused with
    /// [`Error::TooManyKeys`] (after an attempt to evict idle keys in its shard).
    pub max_keys: usize,
    /// A key idle this long (its allowance fully replenished) may be evicted (default 60 s).
    pub idle_after: Duration,
}

impl LimiterConfig {
    /// This value with `default`, the limits of keys without an override, replaced.
    pub fn with_default(mut self, default: RateLimits) -> Self {
        self.default = default;
        self
    }

    /// This value with [`max_keys`](Self::max_keys) replaced.
    pub fn with_max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// This value with [`idle_after`](Self::idle_after) replaced.
    pub fn with_idle_after(mut self, idle_after: Duration) -> Self {
        self.idle_after = idle_after;
        self
    }
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            default: RateLimits::aws_connection(),
            max_keys: 1 << 20,
            idle_after: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Default)]
struct Entry {
    msg_tat: AtomicU64,
    byte_tat: AtomicU64,
}

impl Entry {
    fn idle_since(&self) -> u64 {
        self.msg_tat
            .load(Ordering::Relaxed)
            .max(self.byte_tat.load(Ordering::Relaxed))
    }
}

/// A key's state in the map: inline, or shared with [`KeyHandle`]s once one was asked for (8
/// bytes more per key than inline state alone; the allocation only for keys with handles).
#[derive(Debug)]
enum Slot {
    Inline(Entry),
    Shared(Arc<Entry>),
}

impl Slot {
    fn entry(&self) -> &Entry {
        match self {
            Slot::Inline(e) => e,
            Slot::Shared(e) => e,
        }
    }

    /// Whether a [`KeyHandle`] still refers to this state (then it is never evicted).
    fn held(&self) -> bool {
        matches!(self, Slot::Shared(e) if Arc::strong_count(e) > 1)
    }
}

static NEXT_LIMITER_ID: AtomicU64 = AtomicU64::new(1);

/// One key's limiter state, resolved once — for example the account's, when its device
/// connects — and then checked with [`RateLimiter::check_handle`] without hashing the key or
/// taking a lock: an account-wide limit checked on every message costs one or two atomic
/// compare-and-swaps. It shares the state [`RateLimiter::check_key`] uses for the same key, and
/// a key with a live handle is never evicted (it still counts towards the key cap).
#[derive(Debug, Clone)]
pub struct KeyHandle {
    limiter: u64,
    /// The key's compiled limits, copied (a limiter's limits never change after it is built), so
    /// a check reads them beside the handle instead of indexing the limiter's table.
    limits: Compiled,
    entry: Arc<Entry>,
}

/// A keyed GCRA rate limiter with per-key limits, idle eviction and a hard key cap. The algorithm
/// and the concurrency model follow.
///
/// Keyed rate limiting with GCRA (the generic cell rate algorithm).
///
/// Each limit is a [`Rate`]: `amount` units per `period`, with a burst of `burst` units. GCRA keeps
/// one number per key and limit, the *theoretical arrival time* (TAT): a request of cost `c` is
/// allowed when `max(TAT, now) + c·T - now ≤ burst·T` (T = period / amount, the emission interval),
/// and then TAT becomes `max(TAT, now) + c·T`. A key whose TAT is in the past is
/// indistinguishable from a new key, which makes idle eviction exact: dropping it changes no future
/// decision.
///
/// Time is a caller-supplied monotonic [`Nanos`] (sans-IO): the limiter never reads a clock.
///
/// # Concurrency
///
/// All methods take `&self`; share a limiter across threads with `Arc`. Each TAT is an
/// `AtomicU64` updated with a compare-and-swap loop, so concurrent checks of the same key are
/// linearizable per limit and never lose an update. Keys live in 64 (`SHARDS`) independently locked
/// maps: checking a known key takes one shard's read lock; only the first sighting of a key (and
/// eviction) takes a write lock. A request checked against two limits (messages and bytes) consumes
/// the message limit first and gives it back if the byte limit refuses; under contention on the
/// *same* key a concurrent request may observe the message allowance briefly consumed.
///
/// A key checked on every message (an account-wide limit) can be resolved once into a
/// [`KeyHandle`] with [`RateLimiter::handle`]; [`RateLimiter::check_handle`] then updates the
/// same cells without hashing the key or taking a shard lock.
#[derive(Debug)]
pub struct RateLimiter<K> {
    id: u64,
    hasher: RandomState,
    shards: Box<[RwLock<HashMap<K, Slot>>]>,
    /// Compiled limits: index 0 is the default, the others per-key overrides.
    limits: Vec<Compiled>,
    overrides: HashMap<K, u32>,
    len: AtomicUsize,
    max_keys: usize,
    idle_after: u64,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter with `config` and no per-key overrides.
    pub fn new(config: LimiterConfig) -> Result<Self> {
        Self::with_overrides(config, Vec::new())
    }

    /// A limiter whose listed keys use their own limits (per-client or per-account quotas).
    pub fn with_overrides(config: LimiterConfig, overrides: Vec<(K, RateLimits)>) -> Result<Self> {
        let mut limits = vec![config.default.compile()?];
        let mut map = HashMap::with_capacity(overrides.len());
        for (key, l) in overrides {
            let idx = u32::try_from(limits.len()).map_err(|_| Error::Config {
                field: "overrides",
                reason: "more than 2^32 overrides",
            })?;
            limits.push(l.compile()?);
            map.insert(key, idx);
        }
        Ok(RateLimiter {
            id: NEXT_LIMITER_ID.fetch_add(1, Ordering::Relaxed),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            limits,
            overrides: map,
            len: AtomicUsize::new(0),
            max_keys: config.max_keys,
            idle_after: u64::try_from(config.idle_after.as_nanos()).unwrap_or(u64::MAX),
        })
    }

    #[inline]
    fn shard(&self, key: &K) -> &RwLock<HashMap<K, Slot>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        &self.shards[i]
    }

    /// Checks and consumes one request of `bytes` bytes for `key` at `now`.
    #[inline]
    pub fn check_key(&self, key: &K, bytes: u64, now: Nanos) -> Result<RateDecision> {
        self.decide(key, bytes, now, true)
    }

    /// Answers what [`RateLimiter::check_key`] would, without consuming anything (and without
    /// starting to track an unknown key).
    pub fn peek(&self, key: &K, bytes: u64, now: Nanos) -> RateDecision {
        let shard = self.shard(key).read().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = shard.get(key) {
            let e = slot.entry();
            return self
                .limits_for(key)
                .check(&e.msg_tat, &e.byte_tat, bytes, now.0, false);
        }
        let fresh = AtomicU64::new(0);
        let fresh_bytes = AtomicU64::new(0);
        self.limits_for(key)
            .check(&fresh, &fresh_bytes, bytes, now.0, false)
    }

    /// Index of `key`'s compiled limits in `self.limits`.
    #[inline]
    fn limits_index(&self, key: &K) -> u32 {
        if self.overrides.is_empty() {
            0
        } else {
            self.overrides.get(key).copied().unwrap_or(0)
        }
    }

    /// The compiled limits of `key`. Entries do not store their limits (16 bytes per key instead
    /// of 24); with overrides configured this costs one more hash lookup per check.
    #[inline]
    fn limits_for(&self, key: &K) -> &Compiled {
        &self.limits[self.limits_index(key) as usize]
    }

    fn decide(&self, key: &K, bytes: u64, now: Nanos, consume: bool) -> Result<RateDecision> {
        let lock = self.shard(key);
        {
            let shard = lock.read().unwrap_or_else(|p| p.into_inner());
            if let Some(slot) = shard.get(key) {
                let e = slot.entry();
                let limits = self.limits_for(key);
                return Ok(limits.check(&e.msg_tat, &e.byte_tat, bytes, now.0, consume));
            }
        }
        let mut shard = lock.write().unwrap_or_else(|p| p.into_inner());
        let slot = self.get_or_insert(&mut shard, key, now)?;
        let e = slot.entry();
        let limits = self.limits_for(key);
        Ok(limits.check(&e.msg_tat, &e.byte_tat, bytes, now.0, consume))
    }

    /// `key`'s slot in its (write-locked) shard, inserted if new: refused beyond the key cap
    /// after trying to evict idle keys of the shard.
    fn get_or_insert<'s>(
        &self,
        shard: &'s mut HashMap<K, Slot>,
        key: &K,
        now: Nanos,
    ) -> Result<&'s mut Slot> {
        if !shard.contains_key(key) {
            if self.len.load(Ordering::Relaxed) >= self.max_keys {
                let evicted = self.evict_shard(shard, now.0);
                self.len.fetch_sub(evicted, Ordering::Relaxed);
                if self.len.load(Ordering::Relaxed) >= self.max_keys {
                    return Err(Error::TooManyKeys {
                        what: "rate limiter",
                        limit: self.max_keys,
                    });
                }
            }
            self.len.fetch_add(1, Ordering::Relaxed);
            shard.insert(key.clone(), Slot::Inline(Entry::default()));
        }
        shard.get_mut(key).ok_or(Error::Config {
            field: "rate limiter",
            reason: "key vanished under the write lock",
        })
    }

    /// A handle on `key`'s state (tracking the key from `now` if it is new, within the key
    /// cap), for checks without hashing or locking; see [`KeyHandle`].
    ///
    /// ```
    /// use thingkit_meter::{LimiterConfig, RateLimits, Nanos, RateLimiter};
    ///
    /// let accounts =
    ///     RateLimiter::new(LimiterConfig::default().with_default(RateLimits::aws_account_publish()))?;
    /// // When a device of account "acme" connects:
    /// let acme = accounts.handle(&"acme", Nanos(0))?;
    /// // On each of its messages:
    /// assert!(accounts.check_handle(&acme, 200, Nanos(1_000))?.is_allowed());
    /// # Ok::<(), thingkit_meter::Error>(())
    /// ```
    pub fn handle(&self, key: &K, now: Nanos) -> Result<KeyHandle> {
        let lock = self.shard(key);
        let mut shard = lock.write().unwrap_or_else(|p| p.into_inner());
        let slot = self.get_or_insert(&mut shard, key, now)?;
        let entry = match slot {
            Slot::Shared(e) => Arc::clone(e),
            Slot::Inline(e) => {
                let shared = Arc::new(std::mem::take(e));
                *slot = Slot::Shared(Arc::clone(&shared));
                shared
            }
        };
        Ok(KeyHandle {
            limiter: self.id,
            limits: self.limits[self.limits_index(key) as usize],
            entry,
        })
    }

    /// Checks and consumes one request of `bytes` bytes through a handle from
    /// [`RateLimiter::handle`]: the same decision as [`RateLimiter::check_key`] on its key.
    /// A handle of another limiter is an error.
    #[inline]
    pub fn check_handle(&self, handle: &KeyHandle, bytes: u64, now: Nanos) -> Result<RateDecision> {
        self.decide_handle(handle, bytes, now, true)
    }

    /// Answers what [`RateLimiter::check_handle`] would, consuming nothing.
    pub fn peek_handle(&self, handle: &KeyHandle, bytes: u64, now: Nanos) -> Result<RateDecision> {
        self.decide_handle(handle, bytes, now, false)
    }

    #[inline]
    fn decide_handle(
        &self,
        handle: &KeyHandle,
        bytes: u64,
        now: Nanos,
        consume: bool,
    ) -> Result<RateDecision> {
        if handle.limiter != self.id {
            return Err(Error::Config {
                field: "handle",
                reason: "handle belongs to another rate limiter",
            });
        }
        let e = &handle.entry;
        Ok(handle
            .limits
            .check(&e.msg_tat, &e.byte_tat, bytes, now.0, consume))
    }

    fn evict_shard(&self, shard: &mut HashMap<K, Slot>, now: u64) -> usize {
        let before = shard.len();
        let cutoff = now.saturating_sub(self.idle_after);
        shard.retain(|_, slot| slot.held() || slot.entry().idle_since() > cutoff);
        before - shard.len()
    }

    /// Forgets every key whose allowance has been fully replenished for at least `idle_after`
    /// and that no [`KeyHandle`] refers to.
    /// Returns how many keys were evicted. Evicting an idle key never changes a decision.
    pub fn evict_idle(&self, now: Nanos) -> usize {
        let mut total = 0;
        for lock in self.shards.iter() {
            let mut shard = lock.write().unwrap_or_else(|p| p.into_inner());
            total += self.evict_shard(&mut shard, now.0);
        }
        self.len.fetch_sub(total, Ordering::Relaxed);
        total
    }

    /// Number of tracked keys.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The default AWS IoT Core-style limits, bundled: per connection, per client-ID connect, per
/// account connect and per account publish. Every field is configurable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdmissionLimits {
    /// Per connection: 100 publishes/s and 512 KiB/s.
    pub per_connection: RateLimits,
    /// Per client ID: 1 CONNECT/s.
    pub per_client_connect: RateLimits,
    /// Per account: 500 CONNECTs/s.
    pub per_account_connect: RateLimits,
    /// Per account: 20,000 inbound publishes/s.
    pub per_account_publish: RateLimits,
}

impl AdmissionLimits {
    /// This value with [`per_connection`](Self::per_connection) replaced.
    pub fn with_per_connection(mut self, per_connection: RateLimits) -> Self {
        self.per_connection = per_connection;
        self
    }

    /// This value with [`per_client_connect`](Self::per_client_connect) replaced.
    pub fn with_per_client_connect(mut self, per_client_connect: RateLimits) -> Self {
        self.per_client_connect = per_client_connect;
        self
    }

    /// This value with [`per_account_connect`](Self::per_account_connect) replaced.
    pub fn with_per_account_connect(mut self, per_account_connect: RateLimits) -> Self {
        self.per_account_connect = per_account_connect;
        self
    }

    /// This value with [`per_account_publish`](Self::per_account_publish) replaced.
    pub fn with_per_account_publish(mut self, per_account_publish: RateLimits) -> Self {
        self.per_account_publish = per_account_publish;
        self
    }
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            per_connection: RateLimits::aws_connection(),
            per_client_connect: RateLimits::aws_client_connect(),
            per_account_connect: RateLimits::aws_account_connect(),
            per_account_publish: RateLimits::aws_account_publish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(limits: RateLimits) -> RateLimiter<&'static str> {
        RateLimiter::new(LimiterConfig {
            default: limits,
            ..LimiterConfig::default()
        })
        .unwrap()
    }

    fn msgs(per_sec: u64, burst: u64) -> RateLimits {
        RateLimits {
            messages: Some(Rate {
                amount: per_sec,
                period_ms: 1000,
                burst,
            }),
            bytes: None,
            message_action: LimitAction::Reject(LimitReason::QuotaExceeded),
            byte_action: LimitAction::Drop,
        }
    }

    /// The exact increment, ceil(cost × interval / 2^32) saturated to `u64::MAX`, computed
    /// without overflow for any cost: the interval split at bit 32 (its high part is below 2^55).
    fn increment_u128(g: &Gcra, cost: u64) -> u64 {
        let (hi, lo) = (g.interval_fp >> 32, g.interval_fp & 0xFFFF_FFFF);
        let exact = u128::from(cost) * hi + (u128::from(cost) * lo).div_ceil(1 << 32);
        u64::try_from(exact).unwrap_or(u64::MAX)
    }

    /// The 64-bit shortcut gives the 128-bit rule's increment, at its boundary and for rates
    /// whose interval does not fit 64 bits (where it is never taken). Regression: on the
    /// slowest rates a cost past 2^41 overflowed the 128-bit product (a panic in debug builds, a
    /// wrapped, too small increment in release); it now saturates and is refused.
    #[test]
    fn the_64_bit_increment_equals_the_128_bit_rule() {
        let rates = [
            Rate::per_second(1),
            Rate::per_second(100),
            Rate::per_second(512 * 1024),
            Rate::per_second(1_000_000_000_000),
            Rate {
                amount: 7,
                period_ms: 366 * 86_400_000,
                burst: 1,
            },
            Rate {
                amount: 3,
                period_ms: 1,
                burst: 1_000_000_000_000,
            },
        ];
        for rate in rates {
            let g = rate.compile().unwrap();
            let m = g.max_cost64;
            for cost in [
                0,
                1,
                2,
                3,
                200,
                5 * 1024,
                m.saturating_sub(1),
                m,
                m + 1,
                u64::MAX,
            ] {
                assert_eq!(
                    g.increment(cost),
                    increment_u128(&g, cost),
                    "{rate:?}, cost {cost}"
                );
            }
        }
    }

    #[test]
    fn a_cost_past_the_128_bit_product_is_refused_not_wrapped() {
        let l = limiter(RateLimits {
            messages: None,
            bytes: Some(Rate {
                amount: 1,
                period_ms: 366 * 86_400_000,
                burst: 1,
            }),
            message_action: LimitAction::Drop,
            byte_action: LimitAction::Reject(LimitReason::QuotaExceeded),
        });
        for cost in [1 << 42, 1 << 50, u64::MAX] {
            assert!(
                !l.check_key(&"a", cost, Nanos::from_secs(1))
                    .unwrap()
                    .is_allowed(),
                "cost {cost}"
            );
        }
        assert!(
            l.check_key(&"a", 1, Nanos::from_secs(1))
                .unwrap()
                .is_allowed()
        );
    }

    proptest::proptest! {
        #[test]
        fn the_64_bit_increment_agrees_for_any_rate_and_cost(
            amount in 1u64..=1 << 40,
            period_ms in 1u64..=366 * 86_400_000,
            burst in 1u64..=1_000_000_000_000,
            cost in proptest::prop_oneof![0u64..=1 << 24, proptest::num::u64::ANY],
        ) {
            if let Ok(g) = (Rate { amount, period_ms, burst }).compile() {
                proptest::prop_assert_eq!(g.increment(cost), increment_u128(&g, cost));
            }
        }
    }

    #[test]
    fn allows_the_burst_then_refuses_with_retry_after() {
        let l = limiter(msgs(10, 3));
        let t = Nanos::from_secs(100);
        for _ in 0..3 {
            assert!(l.check_key(&"a", 0, t).unwrap().is_allowed());
        }
        match l.check_key(&"a", 0, t).unwrap() {
            RateDecision::Limited {
                limit: LimitKind::Messages,
                action: LimitAction::Reject(code),
                retry_after: Some(after),
            } => {
                assert_eq!(code.code(), 0x97);
                assert_eq!(after, Duration::from_millis(100));
            }
            other => panic!("{other:?}"),
        }
        // 100 ms later one more fits.
        let later = t.saturating_add(Duration::from_millis(100));
        assert!(l.check_key(&"a", 0, later).unwrap().is_allowed());
        assert!(!l.check_key(&"a", 0, later).unwrap().is_allowed());
    }

    #[test]
    fn sustained_rate_is_exact_over_many_periods() {
        let l = limiter(msgs(100, 100));
        let mut allowed = 0;
        // Offer 1,000 requests/s for 10 s, one every millisecond.
        for ms in 0..10_000 {
            if l.check_key(&"k", 0, Nanos::from_millis(ms))
                .unwrap()
                .is_allowed()
            {
                allowed += 1;
            }
        }
        // Burst of 100 plus 100/s for the remaining time (the last period is partial).
        assert!((1099..=1100).contains(&allowed), "{allowed}");
    }

    #[test]
    fn keys_are_independent() {
        let l = limiter(msgs(1, 1));
        let t = Nanos::from_secs(5);
        assert!(l.check_key(&"a", 0, t).unwrap().is_allowed());
        assert!(!l.check_key(&"a", 0, t).unwrap().is_allowed());
        assert!(l.check_key(&"b", 0, t).unwrap().is_allowed());
    }

    #[test]
    fn byte_limit_weights_by_size_and_refunds_the_message() {
        let l = limiter(RateLimits {
            messages: Some(Rate::per_second(100)),
            bytes: Some(Rate::per_second(1000)),
            message_action: LimitAction::Drop,
            byte_action: LimitAction::Delay,
        });
        let t = Nanos::from_secs(1);
        assert!(l.check_key(&"a", 600, t).unwrap().is_allowed());
        let d = l.check_key(&"a", 600, t).unwrap();
        assert!(
            matches!(
                d,
                RateDecision::Limited { limit: LimitKind::Bytes, action: LimitAction::Delay, retry_after: Some(r) }
                    if r == Duration::from_millis(200)
            ),
            "{d:?}"
        );
        // The refused request did not use up a message: 99 more 1-byte-ish messages still fit
        // in the 400 remaining bytes... 400 of them at 1 byte each, capped by 99 messages.
        let mut ok = 0;
        while l.check_key(&"a", 1, t).unwrap().is_allowed() {
            ok += 1;
        }
        assert_eq!(ok, 99);
    }

    #[test]
    fn cost_above_the_burst_is_never_allowed() {
        let l = limiter(RateLimits {
            messages: None,
            bytes: Some(Rate::per_second(1000)),
            message_action: LimitAction::Drop,
            byte_action: LimitAction::Disconnect(LimitReason::QuotaExceeded),
        });
        let d = l.check_key(&"a", 1001, Nanos::from_secs(1)).unwrap();
        assert!(matches!(
            d,
            RateDecision::Limited {
                retry_after: None,
                ..
            }
        ));
    }

    #[test]
    fn peek_does_not_consume_or_track() {
        let l = limiter(msgs(1, 1));
        let t = Nanos::from_secs(1);
        assert!(l.peek(&"a", 0, t).is_allowed());
        assert!(l.is_empty());
        assert!(l.check_key(&"a", 0, t).unwrap().is_allowed());
        assert!(!l.peek(&"a", 0, t).is_allowed());
        assert!(!l.peek(&"a", 0, t).is_allowed());
        assert!(l.peek(&"a", 0, Nanos::from_secs(2)).is_allowed());
    }

    #[test]
    fn per_key_overrides_apply() {
        let l = RateLimiter::with_overrides(
            LimiterConfig {
                default: msgs(1, 1),
                ..LimiterConfig::default()
            },
            vec![("vip", msgs(1, 5))],
        )
        .unwrap();
        let t = Nanos::from_secs(1);
        let vip = (0..10)
            .filter(|_| l.check_key(&"vip", 0, t).unwrap().is_allowed())
            .count();
        let std = (0..10)
            .filter(|_| l.check_key(&"std", 0, t).unwrap().is_allowed())
            .count();
        assert_eq!((vip, std), (5, 1));
    }

    #[test]
    fn hard_cap_refuses_new_keys_until_idle_ones_can_be_evicted() {
        let l: RateLimiter<u32> = RateLimiter::new(LimiterConfig {
            default: msgs(1, 1),
            max_keys: 10,
            idle_after: Duration::from_secs(10),
        })
        .unwrap();
        let t = Nanos::from_secs(100);
        for k in 0..10 {
            l.check_key(&k, 0, t).unwrap();
        }
        assert!(matches!(
            l.check_key(&99, 0, t),
            Err(Error::TooManyKeys { limit: 10, .. })
        ));
        // Known keys still work at the cap.
        assert!(!l.check_key(&3, 0, t).unwrap().is_allowed());
        // Long after, idle keys go and new ones fit.
        let evicted = l.evict_idle(Nanos::from_secs(200));
        assert_eq!(evicted, 10);
        assert!(
            l.check_key(&99, 0, Nanos::from_secs(200))
                .unwrap()
                .is_allowed()
        );
    }

    #[test]
    fn eviction_keeps_keys_that_are_still_limited() {
        let l = limiter(msgs(1, 1));
        l.check_key(&"busy", 0, Nanos::from_secs(1000)).unwrap();
        assert_eq!(l.evict_idle(Nanos::from_secs(1000)), 0);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn checks_near_the_clock_origin_do_not_underflow() {
        // Regression: `new_tat - tolerance` underflowed when the first requests arrived before
        // one full burst interval had elapsed on the caller's clock.
        let l = limiter(msgs(1, 5));
        let allowed = (0..10)
            .filter(|_| l.check_key(&"a", 0, Nanos(0)).unwrap().is_allowed())
            .count();
        assert_eq!(allowed, 5);
        assert!(matches!(
            l.peek(&"a", 0, Nanos(1)),
            RateDecision::Limited {
                retry_after: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn rejects_zero_rates() {
        assert!(
            RateLimiter::<u8>::new(LimiterConfig {
                default: msgs(0, 1),
                ..LimiterConfig::default()
            })
            .is_err()
        );
        assert!(
            RateLimiter::<u8>::new(LimiterConfig {
                default: msgs(1, 0),
                ..LimiterConfig::default()
            })
            .is_err()
        );
    }

    #[test]
    fn limits_are_json_configuration() {
        let l = RateLimits::aws_connection();
        let json = serde_json::to_string(&l).unwrap();
        assert!(
            json.contains(r#""message_action":{"reject":"quota_exceeded"}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<RateLimits>(&json).unwrap(), l);
    }

    /// Regression: the AWS preset used to reject publishes with 0x96, which no PUBACK may carry
    /// (MQTT 5.0 §3.4.2.1); a broker that sent it as told produced an unencodable packet.
    #[test]
    fn refuses_to_reject_with_a_disconnect_only_code() {
        for limits in [
            RateLimits {
                message_action: LimitAction::Reject(LimitReason::MessageRateTooHigh),
                ..msgs(10, 10)
            },
            RateLimits {
                bytes: Some(Rate::per_second(1024)),
                byte_action: LimitAction::Reject(LimitReason::MessageRateTooHigh),
                ..msgs(10, 10)
            },
        ] {
            let built = RateLimiter::<&str>::new(LimiterConfig {
                default: limits,
                ..LimiterConfig::default()
            });
            assert!(matches!(built, Err(Error::Config { .. })), "{built:?}");
        }
        let disconnect = RateLimits {
            message_action: LimitAction::Disconnect(LimitReason::MessageRateTooHigh),
            ..msgs(10, 10)
        };
        assert!(
            RateLimiter::<&str>::new(LimiterConfig {
                default: disconnect,
                ..LimiterConfig::default()
            })
            .is_ok()
        );
        assert_eq!(
            RateLimits::aws_connection().message_action,
            LimitAction::Reject(LimitReason::QuotaExceeded)
        );
    }

    #[test]
    fn reason_codes_match_mqtt5() {
        assert_eq!(LimitReason::MessageRateTooHigh.code(), 0x96);
        assert_eq!(LimitReason::QuotaExceeded.code(), 0x97);
        assert_eq!(LimitReason::ConnectionRateExceeded.code(), 0x9F);
    }

    #[test]
    fn concurrent_checks_never_exceed_the_burst() {
        let l = std::sync::Arc::new(limiter(msgs(1, 1000)));
        let t = Nanos::from_secs(1);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|_| l.check_key(&"x", 0, t).unwrap().is_allowed())
                        .count()
                })
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 1000);
    }

    #[test]
    fn a_handle_shares_the_keys_state_with_check_key() {
        let l = limiter(msgs(10, 3));
        let t = Nanos::from_secs(100);
        let h = l.handle(&"acct", t).unwrap();
        assert_eq!(l.len(), 1);
        for _ in 0..2 {
            assert!(l.check_handle(&h, 0, t).unwrap().is_allowed());
        }
        assert!(l.check_key(&"acct", 0, t).unwrap().is_allowed());
        // The burst of 3 is spent, whichever way it was taken.
        assert!(!l.check_handle(&h, 0, t).unwrap().is_allowed());
        assert!(!l.check_key(&"acct", 0, t).unwrap().is_allowed());
        assert!(!l.peek_handle(&h, 0, t).unwrap().is_allowed());
        // A second handle on the same key is the same state; other keys are untouched.
        let h2 = l.handle(&"acct", t).unwrap();
        assert!(!l.check_handle(&h2, 0, t).unwrap().is_allowed());
        assert!(l.check_key(&"other", 0, t).unwrap().is_allowed());
    }

    #[test]
    fn a_handle_on_a_key_already_tracked_keeps_its_state() {
        let l = limiter(msgs(10, 2));
        let t = Nanos::from_secs(5);
        for _ in 0..2 {
            assert!(l.check_key(&"k", 0, t).unwrap().is_allowed());
        }
        let h = l.handle(&"k", t).unwrap();
        assert!(!l.check_handle(&h, 0, t).unwrap().is_allowed());
    }

    #[test]
    fn a_held_key_is_never_evicted_and_is_once_released() {
        let l = RateLimiter::new(LimiterConfig {
            default: msgs(10, 1),
            max_keys: 100,
            idle_after: Duration::from_secs(1),
        })
        .unwrap();
        let h = l.handle(&"held", Nanos::from_secs(1)).unwrap();
        l.check_key(&"free", 0, Nanos::from_secs(1)).unwrap();
        assert_eq!(l.evict_idle(Nanos::from_secs(100)), 1);
        assert_eq!(l.len(), 1);
        // Still the same state after the eviction pass.
        assert!(
            l.check_handle(&h, 0, Nanos::from_secs(100))
                .unwrap()
                .is_allowed()
        );
        assert!(
            !l.check_key(&"held", 0, Nanos::from_secs(100))
                .unwrap()
                .is_allowed()
        );
        drop(h);
        assert_eq!(l.evict_idle(Nanos::from_secs(1000)), 1);
        assert!(l.is_empty());
    }

    #[test]
    fn handles_respect_the_key_cap_overrides_and_their_limiter() {
        let l = RateLimiter::with_overrides(
            LimiterConfig {
                default: msgs(10, 1),
                max_keys: 1,
                idle_after: Duration::from_secs(60),
            },
            vec![("vip", msgs(10, 5))],
        )
        .unwrap();
        let t = Nanos::from_secs(1);
        let vip = l.handle(&"vip", t).unwrap();
        assert!(matches!(
            l.handle(&"second", t),
            Err(Error::TooManyKeys { limit: 1, .. })
        ));
        // The override's burst of 5 applies through the handle.
        let allowed = (0..10)
            .filter(|_| l.check_handle(&vip, 0, t).unwrap().is_allowed())
            .count();
        assert_eq!(allowed, 5);
        let other = limiter(msgs(10, 1));
        assert!(other.check_handle(&vip, 0, t).is_err());
        assert!(other.peek_handle(&vip, 0, t).is_err());
    }
}
