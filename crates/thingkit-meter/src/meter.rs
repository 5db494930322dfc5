//! The meter and the per-connection hot path; documented on [`ConnectionTable`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use serde::{Deserialize, Serialize};

use crate::calendar::{Day, Month};
use crate::error::{Error, Result};
use crate::limiter::{Compiled, Nanos, RateDecision, RateLimits};
use crate::metering::{MeteringPolicy, PacketKind, connection_minutes};
use crate::usage::UsageEvent;

/// Length of the time windows the meter aggregates into (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// Clock hours.
    Hour,
    /// UTC days.
    Day,
    /// UTC calendar months.
    Month,
}

impl Granularity {
    /// The first second of the window containing `unix_secs`.
    pub fn window_start(self, unix_secs: u64) -> u64 {
        match self {
            Granularity::Hour => unix_secs - unix_secs % 3600,
            Granularity::Day => Day::of(unix_secs).start(),
            Granularity::Month => Month::of(unix_secs).start(),
        }
    }

    /// The first second after the window containing `unix_secs`: the window is the half-open
    /// range `window_start(unix_secs)..end`. Month windows are UTC calendar months, so their
    /// length varies (28 to 31 days).
    ///
    /// `None` when the window never ends: the month 9999-12 holds every later time too (see
    /// [`Month::of`]), and an hour or day whose end would overflow `u64` has no end either.
    pub fn window_end(self, unix_secs: u64) -> Option<u64> {
        match self {
            Granularity::Hour => self.window_start(unix_secs).checked_add(3600),
            Granularity::Day => Day::of(unix_secs).start().checked_add(86_400),
            Granularity::Month => {
                let month = Month::of(unix_secs);
                let next = month.next();
                (next != month).then(|| next.start())
            }
        }
    }
}

/// What a count is about: account, device, kind and window start (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UsageKey {
    /// The account.
    pub account: String,
    /// The device.
    pub device: String,
    /// The kind of usage.
    pub kind: PacketKind,
    /// First second of the window.
    pub window: u64,
}

/// Counters for one [`UsageKey`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Operations (messages).
    pub messages: u64,
    /// Billable units.
    pub units: u64,
    /// Counted bytes.
    pub bytes: u64,
    /// Connection minutes.
    pub minutes: u64,
}

impl Counts {
    /// Adds `other` (saturating: counters stop at `u64::MAX` instead of wrapping).
    pub fn add(&mut self, other: &Counts) {
        self.messages = self.messages.saturating_add(other.messages);
        self.units = self.units.saturating_add(other.units);
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.minutes = self.minutes.saturating_add(other.minutes);
    }

    /// Pointwise maximum with `other`.
    pub fn max(&mut self, other: &Counts) {
        self.messages = self.messages.max(other.messages);
        self.units = self.units.max(other.units);
        self.bytes = self.bytes.max(other.bytes);
        self.minutes = self.minutes.max(other.minutes);
    }
}

/// A node's aggregates: counts per [`UsageKey`], with a cap on distinct keys (`max_keys`; a
/// new key beyond it is refused with [`Error::TooManyKeys`] and its counts are lost).
///
/// # Closed windows
///
/// A key stays in the meter until it is drained. A broker that runs for longer than a few
/// windows calls [`Meter::drain_closed`] periodically (for example once per window, just after
/// it ends) and persists what it returns; that is what keeps the meter below its cap. Without
/// draining, every (account, device, kind, window) ever seen is kept, the meter fills up, and
/// from then on [`Meter::add`] refuses new keys.
#[derive(Debug)]
pub struct Meter {
    node: String,
    policy: MeteringPolicy,
    granularity: Granularity,
    max_keys: usize,
    totals: Mutex<BTreeMap<UsageKey, Counts>>,
}

impl Meter {
    /// A meter for broker node `node`, metering with `policy` into `granularity` windows, tracking
    /// at most `max_keys` distinct keys.
    pub fn new(
        node: impl Into<String>,
        policy: MeteringPolicy,
        granularity: Granularity,
        max_keys: usize,
    ) -> Result<Meter> {
        policy.validate()?;
        Ok(Meter {
            node: node.into(),
            policy,
            granularity,
            max_keys,
            totals: Mutex::new(BTreeMap::new()),
        })
    }

    /// The metering policy.
    pub fn policy(&self) -> &MeteringPolicy {
        &self.policy
    }

    /// The length of the windows the meter aggregates into.
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// Adds `counts` to the key of (`account`, `device`, `kind`) in the window of `unix_secs`.
    pub fn add(
        &self,
        account: &str,
        device: &str,
        kind: PacketKind,
        unix_secs: u64,
        counts: &Counts,
    ) -> Result<()> {
        let key = UsageKey {
            account: account.to_owned(),
            device: device.to_owned(),
            kind,
            window: self.granularity.window_start(unix_secs),
        };
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = totals.get_mut(&key) {
            c.add(counts);
            return Ok(());
        }
        if totals.len() >= self.max_keys {
            return Err(Error::TooManyKeys {
                what: "meter",
                limit: self.max_keys,
            });
        }
        totals.insert(key, *counts);
        Ok(())
    }

    /// Records one usage event (units computed with the meter's policy).
    pub fn record(&self, event: &UsageEvent) -> Result<()> {
        let counts = Counts {
            messages: u64::from(event.kind() != PacketKind::ConnectionMinutes),
            units: event.units(&self.policy),
            bytes: event.bytes(),
            minutes: event.minutes(),
        };
        self.add(
            event.account(),
            event.device(),
            event.kind(),
            event.time(),
            &counts,
        )
    }

    /// Removes and returns the counts of every window that has ended at `unix_secs`: each key
    /// whose [`Granularity::window_end`] is at or before `unix_secs` (for monthly windows, the
    /// first second of the next UTC calendar month). Keys of windows still open stay, and the
    /// removed keys no longer count against `max_keys`. Every count added to the meter is
    /// returned by exactly one drain.
    ///
    /// # Use
    ///
    /// A broker calls this periodically and persists the result before dropping it: price it
    /// with [`BillingRun::add_totals`](crate::BillingRun::add_totals), export it with
    /// [`write_totals_csv`](crate::write_totals_csv), or store it beside the ledger. Batches are
    /// deltas, to be summed, never to replace one another: counts can still arrive for a window
    /// after it was drained — [`ConnectionTable::disconnect`] attributes connection minutes to
    /// the window the connection *opened* in, and a caller may flush with an earlier time — and
    /// then the key is created afresh with only those late counts, which a later drain returns.
    /// [`BillingRun::add_totals`](crate::BillingRun::add_totals) adds on every call, so a batch
    /// that may be delivered twice needs its own idempotency (for example node name and drain
    /// time).
    ///
    /// # Why not usage events for the ledger
    ///
    /// The usage `Ledger` stores one [`UsageEvent`] per metered operation and computes units
    /// from each event's bytes when replaying and billing. A drained total (N messages, B bytes,
    /// U units) is not one operation: an event of B bytes would be priced as one message of
    /// `ceil(B / block)` units instead of N messages whose units were rounded up one by one
    /// (with minimum units and the retained-publish surcharge), and splitting it into N events
    /// cannot recover the per-message sizes. So there is no lossless conversion from drained
    /// totals to ledger events (connection-minute totals alone would convert exactly); persist
    /// them as totals.
    ///
    /// # Snapshots
    ///
    /// A drained key leaves this node's [`Meter::snapshot`]. [`NodeAggregate`]s are exact for
    /// open windows only; see its documentation for what draining means for merging.
    pub fn drain_closed(&self, unix_secs: u64) -> BTreeMap<UsageKey, Counts> {
        let granularity = self.granularity;
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        let (closed, open) = std::mem::take(&mut *totals)
            .into_iter()
            .partition(|(key, _)| {
                granularity
                    .window_end(key.window)
                    .is_some_and(|end| end <= unix_secs)
            });
        *totals = open;
        closed
    }

    /// A copy of the node's totals.
    pub fn totals(&self) -> BTreeMap<UsageKey, Counts> {
        self.totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// This node's totals as a mergeable aggregate.
    pub fn snapshot(&self) -> NodeAggregate {
        let mut nodes = BTreeMap::new();
        nodes.insert(self.node.clone(), self.totals());
        NodeAggregate { nodes }
    }
}

/// Aggregates from several broker nodes, mergeable without double counting. See the module docs.
///
/// In JSON it is a flat list of [`AggregateRow`]s (one per node and key), which is also what an
/// analytics engine wants; rows repeating a node and key are merged by maximum when read, and a
/// node without any key has no row.
///
/// # Draining
///
/// The merge is a G-counter because a node's count for a key only grows. That holds while the
/// key's window is open; [`Meter::drain_closed`] breaks it on purpose for closed windows: the
/// drained key leaves the node's later snapshots (a merged aggregate keeps the last value it saw
/// before the drain, which can be short of the drained total), and a key recreated by late
/// counts starts again from zero, so the per-node maximum keeps the old value and drops the late
/// counts. Hence:
///
/// - for open windows, snapshots merge exactly as described above;
/// - for closed windows, the drained totals (shipped separately, summed over drains) are the
///   final figures; an aggregate's counts for those windows are partial and must not be added
///   to them (that would count twice what the aggregate saw before the drain);
/// - a view that needs both takes drained totals for closed windows and aggregates for open
///   ones, or takes each snapshot before draining and ships the pair together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Vec<AggregateRow>", from = "Vec<AggregateRow>")]
pub struct NodeAggregate {
    /// Per node: that node's cumulative counts per key.
    pub nodes: BTreeMap<String, BTreeMap<UsageKey, Counts>>,
}

/// One node's cumulative counts for one key: the serialized form of a [`NodeAggregate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateRow {
    /// The reporting node.
    pub node: String,
    /// The key.
    #[serde(flatten)]
    pub key: UsageKey,
    /// The node's cumulative counts for the key.
    #[serde(flatten)]
    pub counts: Counts,
}

impl From<NodeAggregate> for Vec<AggregateRow> {
    fn from(a: NodeAggregate) -> Vec<AggregateRow> {
        a.nodes
            .into_iter()
            .flat_map(|(node, keys)| {
                keys.into_iter().map(move |(key, counts)| AggregateRow {
                    node: node.clone(),
                    key,
                    counts,
                })
            })
            .collect()
    }
}

impl From<Vec<AggregateRow>> for NodeAggregate {
    fn from(rows: Vec<AggregateRow>) -> NodeAggregate {
        let mut nodes: BTreeMap<String, BTreeMap<UsageKey, Counts>> = BTreeMap::new();
        for r in rows {
            nodes
                .entry(r.node)
                .or_default()
                .entry(r.key)
                .or_default()
                .max(&r.counts);
        }
        NodeAggregate { nodes }
    }
}

impl NodeAggregate {
    /// Merges `other` into `self`: per node and key, the maximum of each counter.
    pub fn merge(&mut self, other: &NodeAggregate) {
        for (node, keys) in &other.nodes {
            let mine = self.nodes.entry(node.clone()).or_default();
            for (key, counts) in keys {
                mine.entry(key.clone()).or_default().max(counts);
            }
        }
    }

    /// Fleet totals: the sum over nodes of each key's counts.
    pub fn totals(&self) -> BTreeMap<UsageKey, Counts> {
        let mut out: BTreeMap<UsageKey, Counts> = BTreeMap::new();
        for keys in self.nodes.values() {
            for (key, counts) in keys {
                out.entry(key.clone()).or_default().add(counts);
            }
        }
        out
    }
}

/// Slots per lazily allocated page of a [`ConnectionTable`].
const PAGE: usize = 4096;

/// One connection's outbound counters, in the table, written by whichever threads deliver to
/// it. Slots are packed (16 bytes, so adjacent connections can share a cache line: two threads
/// delivering to neighbouring connections at the same instant contend on it, which costs time,
/// never counts). The two 32-bit counters never lose a count: an add that wraps one moves the
/// 2³² it wrapped past into the table's spill (see [`ConnectionTable`]).
#[repr(C)]
#[derive(Debug, Default)]
struct Slot {
    out_bytes: AtomicU64,
    out_messages: AtomicU32,
    out_units: AtomicU32,
}

/// Bytes of outbound state per connection in a [`ConnectionTable`]'s slots.
pub const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

/// Bytes of a [`Connection`] handle: the connection's inbound state (both GCRA cells and the
/// unflushed publish counters) and its identity in the table (table, slot, interned account,
/// connect time). The handle holds no pointer: there is nothing on the heap behind it.
pub const CONNECTION_BYTES: usize = std::mem::size_of::<Connection>();

/// Bytes of metering and rate-limit state per connection, all included: its slot in the table
/// plus its whole [`Connection`] handle. No name is copied per connection: the account is
/// interned once per account in the table, and the device name is the broker's (passed to
/// [`ConnectionTable::flush`] and [`ConnectionTable::disconnect`]). Per-account interning
/// (the name and an index entry, shared by every connection of the account) and the spill of
/// a connection whose 32-bit counters wrapped before a flush come on top and are not
/// per-connection.
pub const STATE_BYTES: usize = SLOT_BYTES + CONNECTION_BYTES;

const _: () = assert!(STATE_BYTES <= 64);

#[derive(Debug, Default)]
struct Registry {
    /// Slots handed out so far (the high-water mark).
    allocated: u32,
    /// Slots given back by disconnects, reused first.
    free: Vec<u32>,
}

/// Account names interned once per account with live connections; a [`Connection`] holds the
/// id (index into `names`).
#[derive(Debug, Default)]
struct Accounts {
    ids: HashMap<Arc<str>, u32>,
    /// Per id: the name and the number of live connections holding it; `None` when free.
    names: Vec<Option<(Arc<str>, u32)>>,
    /// Ids whose account has no live connection left, reused first.
    free: Vec<u32>,
}

impl Accounts {
    fn intern(&mut self, account: &str) -> Result<u32> {
        if let Some(&id) = self.ids.get(account)
            && let Some(Some((_, live))) = self.names.get_mut(id as usize)
        {
            *live += 1;
            return Ok(id);
        }
        let name: Arc<str> = account.into();
        let id = match self.free.pop() {
            Some(id) => id,
            None => u32::try_from(self.names.len()).map_err(|_| Error::TooManyKeys {
                what: "connection table accounts",
                limit: u32::MAX as usize,
            })?,
        };
        match self.names.get_mut(id as usize) {
            Some(entry) => *entry = Some((name.clone(), 1)),
            None => self.names.push(Some((name.clone(), 1))),
        }
        self.ids.insert(name, id);
        Ok(id)
    }

    fn name(&self, id: u32) -> Option<&Arc<str>> {
        self.names
            .get(id as usize)
            .and_then(Option::as_ref)
            .map(|(n, _)| n)
    }

    fn release(&mut self, id: u32) {
        let Some(entry) = self.names.get_mut(id as usize) else {
            return;
        };
        if let Some((name, live)) = entry {
            *live -= 1;
            if *live == 0 {
                self.ids.remove(&**name);
                *entry = None;
                self.free.push(id);
            }
        }
    }
}

/// Counts moved out of a connection's 32-bit counters when one of them was about to wrap,
/// kept until the connection's next flush.
#[derive(Debug, Default)]
struct Spilled {
    inbound: Counts,
    outbound: Counts,
}

static NEXT_TABLE_ID: AtomicU32 = AtomicU32::new(1);

/// A live connection's handle in a [`ConnectionTable`], held by the broker's connection task.
/// It carries the connection's inbound state (rate-limit cells and unflushed publish counters)
/// and its identity in the table (table, slot, interned account, connect time), 48 bytes and
/// no pointer ([`CONNECTION_BYTES`]), so the per-message call touches nothing but the handle;
/// the table keeps the outbound counters. Not `Clone`: give it back with
/// [`ConnectionTable::disconnect`], after which its slot may be reused. Two handles are equal
/// when they are the same connection (same table and slot).
#[derive(Debug)]
#[repr(C)]
pub struct Connection {
    // The fields the per-message call reads and writes come first, together (`repr(C)` keeps
    // the order): the two TATs (nanoseconds on the caller's clock, exact: the limiter is as
    // strict as with any wider state), the unflushed inbound counters, the table id.
    msg_tat: u64,
    byte_tat: u64,
    in_bytes: u64,
    in_messages: u32,
    in_units: u32,
    table: u32,
    slot: u32,
    account: u32,
    /// Unix second the connection was opened (32 bits: up to 2106-02-07T06:28:15Z).
    since: u32,
}

impl PartialEq for Connection {
    fn eq(&self, other: &Self) -> bool {
        (self.table, self.slot) == (other.table, other.slot)
    }
}

impl Eq for Connection {}

impl std::hash::Hash for Connection {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.table, self.slot).hash(state);
    }
}

impl Connection {
    /// The slot index (stable while connected; useful as a compact connection id).
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// Unix second the connection was opened.
    pub fn connected_at(&self) -> u64 {
        u64::from(self.since)
    }
}

/// Per-connection rate limits and counters for the message hot path. See the module docs.
///
/// The meter: counts per (account, device, kind, time window), per-connection hot-path counters,
/// and mergeable per-node aggregates.
///
/// Three layers, from hot to cold:
///
/// 1. [`ConnectionTable`] and its [`Connection`] handles: 64 bytes of state per live
///    connection, all included ([`STATE_BYTES`]). The handle — GCRA state (messages and
///    bytes), the unflushed publish counters (messages, units, bytes) and the connection's
///    identity (table, slot, account id, connect time), 48 bytes, no heap — is owned by the
///    broker's connection task; the outbound half — delivery counters, 16 bytes, written by any
///    thread — lives in the table's slot for the connection. Account names are interned once
///    per account in the table; the device name is not copied at all: the broker holds it (as
///    the client id) and passes it to [`ConnectionTable::flush`] and
///    [`ConnectionTable::disconnect`], the only calls that need it.
///    [`ConnectionTable::record_publish`] is the per-message call: a rate-limit check and three
///    counter updates on the handle's own fields — no lock, no atomic, no allocation, no
///    hashing, no clock read (the caller passes `now`, read once per batch of messages), and no
///    memory touched but the handle (already in cache when the broker has just read that
///    connection's socket) and the table's shared, read-only limits.
/// 2. [`Meter`]: the node's aggregates keyed by [`UsageKey`]; connections are
///    [flushed](ConnectionTable::flush) into it periodically and on disconnect.
///    Closed windows are [drained](Meter::drain_closed) out of it periodically and persisted,
///    which frees their keys.
/// 3. [`NodeAggregate`]: a snapshot of several nodes' meters. While a window is open, each
///    node's counters for it only grow, so merging takes the per-node maximum of every counter
///    (a G-counter CRDT): merging is commutative, associative and idempotent, and a node's
///    snapshot can be delivered twice or out of order without double counting. The fleet total
///    is the sum over nodes. Drained (closed) windows are final elsewhere; see
///    [`NodeAggregate`].
///
/// # Counters that never lose a count
///
/// Message and unit counters are 32 bits wide (bytes are 64). An update that would wrap one —
/// more than 4,294,967,295 messages or units between two flushes of one connection — moves the
/// counts into a table-side spill for that connection (a rare, locked path), which the next
/// flush adds back: every count reaches the meter exactly once, as with 64-bit counters.
///
/// # Concurrency
///
/// Both tables take `&self` and are `Sync`: share them with `Arc` across the broker's threads.
/// A [`Connection`] handle is not `Clone`; the inbound side of a connection (its rate-limit state
/// and publish counters) is part of the handle and written only through `&mut Connection`
/// ([`ConnectionTable::record_publish`], [`ConnectionTable::flush`]), so the borrow checker
/// guarantees a single writer and the hot path needs no atomic at all. The outbound
/// counters ([`ConnectionTable::record_delivery`], `&Connection`) are written by whichever
/// threads deliver to the connection, with atomic adds; a flush swaps them to zero, so every
/// delivery lands in exactly one flush. Connect, disconnect and flush take a mutex; recording
/// does not. The per-node [`Meter`] is a mutex-guarded map, written on flush, not per message.
#[derive(Debug)]
pub struct ConnectionTable {
    id: u32,
    policy: MeteringPolicy,
    limits: Compiled,
    pages: Box<[OnceLock<Box<[Slot]>>]>,
    registry: Mutex<Registry>,
    accounts: RwLock<Accounts>,
    /// Counts of connections whose 32-bit counters would have wrapped, by slot.
    spill: Mutex<HashMap<u32, Spilled>>,
    /// Entries in `spill`, so a flush takes its lock only when there is something to take.
    spilled: AtomicUsize,
    max_connections: usize,
    /// The units of the common PUBLISH, precomputed from `policy`.
    one_block: OneBlock,
}

/// The units of a PUBLISH of 1 to `bytes` counted bytes (one message block), which are the same
/// for every size in that range: the per-message path looks them up instead of applying the
/// policy's rule.
#[derive(Debug, Clone, Copy)]
struct OneBlock {
    /// The block size; 0 when the units do not fit the handle's 32-bit counter (never taken).
    bytes: u64,
    /// Units of a plain PUBLISH of 1 to `bytes` bytes.
    plain: u32,
    /// Units of a retained PUBLISH of 1 to `bytes` bytes.
    retained: u32,
}

impl OneBlock {
    fn of(policy: &MeteringPolicy) -> OneBlock {
        let bytes = u64::from(policy.messages.block_bytes.max(1));
        match (
            u32::try_from(policy.units(PacketKind::Publish, 1)),
            u32::try_from(policy.units(PacketKind::Retained, 1)),
        ) {
            (Ok(plain), Ok(retained)) => OneBlock {
                bytes,
                plain,
                retained,
            },
            _ => OneBlock {
                bytes: 0,
                plain: 0,
                retained: 0,
            },
        }
    }
}

impl ConnectionTable {
    /// A table for at most `max_connections` simultaneous connections, each limited by `limits`
    /// and metered with `policy`. Memory is allocated in pages of 4,096 slots as connections
    /// arrive.
    pub fn new(
        policy: MeteringPolicy,
        limits: &RateLimits,
        max_connections: usize,
    ) -> Result<ConnectionTable> {
        policy.validate()?;
        if max_connections > u32::MAX as usize {
            return Err(Error::Config {
                field: "max_connections",
                reason: "at most 2^32 - 1",
            });
        }
        let limits = Compiled::new(limits)?;
        let id = NEXT_TABLE_ID
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |id| id.checked_add(1))
            .map_err(|_| Error::Config {
                field: "connection table",
                reason: "2^32 - 1 tables per process: no table id left",
            })?;
        let pages = max_connections.div_ceil(PAGE);
        Ok(ConnectionTable {
            id,
            one_block: OneBlock::of(&policy),
            policy,
            limits,
            pages: (0..pages).map(|_| OnceLock::new()).collect(),
            registry: Mutex::new(Registry::default()),
            accounts: RwLock::new(Accounts::default()),
            spill: Mutex::new(HashMap::new()),
            spilled: AtomicUsize::new(0),
            max_connections,
        })
    }

    /// Refuses a handle of another table.
    #[inline]
    fn own(&self, conn: &Connection) -> Result<()> {
        if conn.table != self.id {
            return Err(Error::Config {
                field: "connection",
                reason: "handle belongs to another connection table",
            });
        }
        Ok(())
    }

    #[inline]
    fn slot(&self, conn: &Connection) -> Result<&Slot> {
        let i = conn.slot as usize;
        self.own(conn)?;
        self.pages
            .get(i / PAGE)
            .and_then(OnceLock::get)
            .and_then(|p| p.get(i % PAGE))
            .ok_or(Error::Config {
                field: "connection",
                reason: "slot not allocated",
            })
    }

    /// Registers a new connection in `account`, opened at `unix_secs`. Its limits start fully
    /// replenished. The device is not stored: pass its name to [`ConnectionTable::flush`] and
    /// [`ConnectionTable::disconnect`].
    ///
    /// Connect times are kept in 32 bits: a `unix_secs` after 2106-02-07T06:28:15Z is refused.
    pub fn connect(&self, account: &str, unix_secs: u64) -> Result<Connection> {
        let since = u32::try_from(unix_secs).map_err(|_| Error::Config {
            field: "unix_secs",
            reason: "connect times are kept in 32 bits: at most 2106-02-07T06:28:15Z",
        })?;
        let mut reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let slot = match reg.free.pop() {
            Some(s) => s,
            None => {
                if reg.allocated as usize >= self.max_connections {
                    return Err(Error::TooManyKeys {
                        what: "connection table",
                        limit: self.max_connections,
                    });
                }
                reg.allocated += 1;
                reg.allocated - 1
            }
        };
        let i = slot as usize;
        let Some(page) = self.pages.get(i / PAGE) else {
            reg.free.push(slot);
            return Err(Error::TooManyKeys {
                what: "connection table",
                limit: self.max_connections,
            });
        };
        let account = match self
            .accounts
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .intern(account)
        {
            Ok(id) => id,
            Err(e) => {
                reg.free.push(slot);
                return Err(e);
            }
        };
        // A reused slot's counters were drained by the last disconnect's flush; the inbound
        // state starts fresh in the new handle.
        page.get_or_init(|| (0..PAGE).map(|_| Slot::default()).collect());
        Ok(Connection {
            msg_tat: 0,
            byte_tat: 0,
            in_bytes: 0,
            in_messages: 0,
            in_units: 0,
            table: self.id,
            slot,
            account,
            since,
        })
    }

    /// The account the connection belongs to (interned once per account in the table).
    pub fn account(&self, conn: &Connection) -> Result<Arc<str>> {
        self.own(conn)?;
        self.accounts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .name(conn.account)
            .cloned()
            .ok_or(Error::Config {
                field: "connection",
                reason: "account not interned",
            })
    }

    /// The per-message call: checks the connection's rate limits for one inbound PUBLISH of
    /// `bytes` counted bytes at `now`, and if allowed, counts it (`retained` publishes are
    /// metered as [`PacketKind::Retained`]). A refused message is not counted.
    ///
    /// `now` is the caller's monotonic clock; a broker reads it once per socket read and passes
    /// the same value for every message of the batch (an earlier `now` only makes the limits
    /// stricter, never looser).
    #[inline]
    pub fn record_publish(
        &self,
        conn: &mut Connection,
        bytes: u64,
        retained: bool,
        now: Nanos,
    ) -> Result<RateDecision> {
        self.own(conn)?;
        let decision =
            self.limits
                .check_local(&mut conn.msg_tat, &mut conn.byte_tat, bytes, now.0, true);
        if decision.is_allowed() {
            // `bytes - 1 < block` (wrapping: 0 bytes is not in the range).
            let units = if bytes.wrapping_sub(1) < self.one_block.bytes {
                u64::from(if retained {
                    self.one_block.retained
                } else {
                    self.one_block.plain
                })
            } else {
                self.publish_units(retained, bytes)
            };
            match (
                conn.in_messages.checked_add(1),
                u32::try_from(units)
                    .ok()
                    .and_then(|u| conn.in_units.checked_add(u)),
            ) {
                (Some(messages), Some(total_units)) => {
                    conn.in_messages = messages;
                    conn.in_units = total_units;
                }
                _ => self.spill_inbound(conn, units),
            }
            conn.in_bytes = conn.in_bytes.saturating_add(bytes);
        }
        Ok(decision)
    }

    /// The units of a PUBLISH outside [`OneBlock`]'s range, by the policy's rule.
    #[cold]
    fn publish_units(&self, retained: bool, bytes: u64) -> u64 {
        let kind = if retained {
            PacketKind::Retained
        } else {
            PacketKind::Publish
        };
        self.policy.units(kind, bytes)
    }

    /// Moves the handle's message and unit counters, plus one message of `units`, into the
    /// spill: the 32-bit counters would have wrapped.
    #[cold]
    fn spill_inbound(&self, conn: &mut Connection, units: u64) {
        let counts = Counts {
            messages: u64::from(std::mem::take(&mut conn.in_messages)) + 1,
            units: u64::from(std::mem::take(&mut conn.in_units)).saturating_add(units),
            bytes: 0,
            minutes: 0,
        };
        self.spill_entry(conn.slot, |s| s.inbound.add(&counts));
    }

    fn spill_entry(&self, slot: u32, f: impl FnOnce(&mut Spilled)) {
        let mut spill = self.spill.lock().unwrap_or_else(|p| p.into_inner());
        let entry = spill.entry(slot).or_insert_with(|| {
            self.spilled.fetch_add(1, Ordering::Relaxed);
            Spilled::default()
        });
        f(entry);
    }

    /// Adds `n` to a 32-bit outbound counter without losing a count: an add that wraps it moves
    /// the 2³² it wrapped past into the spill (each wrap is seen by exactly one add).
    #[inline]
    fn add_out(&self, counter: &AtomicU32, n: u64, slot: u32, which: fn(&mut Counts) -> &mut u64) {
        let spill = match u32::try_from(n) {
            Ok(n32) => {
                let before = counter.fetch_add(n32, Ordering::Relaxed);
                if before.checked_add(n32).is_some() {
                    return;
                }
                1u64 << 32
            }
            Err(_) => n,
        };
        self.spill_entry(slot, |s| {
            let c = which(&mut s.outbound);
            *c = c.saturating_add(spill);
        });
    }

    /// Answers what [`ConnectionTable::record_publish`] would, consuming and counting nothing.
    pub fn peek_publish(&self, conn: &Connection, bytes: u64, now: Nanos) -> Result<RateDecision> {
        self.own(conn)?;
        let (mut msg_tat, mut byte_tat) = (conn.msg_tat, conn.byte_tat);
        Ok(self
            .limits
            .check_local(&mut msg_tat, &mut byte_tat, bytes, now.0, false))
    }

    /// Counts one outbound delivery of `bytes` counted bytes to this connection (not limited).
    #[inline]
    pub fn record_delivery(&self, conn: &Connection, bytes: u64) -> Result<()> {
        let s = self.slot(conn)?;
        s.out_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.add_out(&s.out_messages, 1, conn.slot, |c| &mut c.messages);
        self.add_out(
            &s.out_units,
            self.policy.units(PacketKind::Receive, bytes),
            conn.slot,
            |c| &mut c.units,
        );
        Ok(())
    }

    /// Moves the connection's counters into `meter`, in the window of `unix_secs`, as usage of
    /// `device` (the connection's device name, which the table does not keep: the broker holds
    /// it, as the MQTT client id).
    pub fn flush(
        &self,
        conn: &mut Connection,
        device: &str,
        meter: &Meter,
        unix_secs: u64,
    ) -> Result<()> {
        let s = self.slot(conn)?;
        let account = self.account(conn)?;
        let mut inbound = Counts {
            messages: u64::from(std::mem::take(&mut conn.in_messages)),
            units: u64::from(std::mem::take(&mut conn.in_units)),
            bytes: std::mem::take(&mut conn.in_bytes),
            minutes: 0,
        };
        let mut outbound = Counts {
            messages: u64::from(s.out_messages.swap(0, Ordering::Relaxed)),
            units: u64::from(s.out_units.swap(0, Ordering::Relaxed)),
            bytes: s.out_bytes.swap(0, Ordering::Relaxed),
            minutes: 0,
        };
        // No delivery to this connection runs now (`&mut Connection`), so nothing can spill
        // for this slot between the swaps above and this take.
        if self.spilled.load(Ordering::Relaxed) > 0 {
            let mut spill = self.spill.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(spilled) = spill.remove(&conn.slot) {
                self.spilled.fetch_sub(1, Ordering::Relaxed);
                inbound.add(&spilled.inbound);
                outbound.add(&spilled.outbound);
            }
        }
        // Retained and plain publishes share the inbound counters; they are reported as
        // `publish` (their units already include the retained surcharge). Both adds are tried:
        // a refused publish key must not cost the delivery counts too.
        let mut result = Ok(());
        if inbound != Counts::default() {
            result = meter.add(&account, device, PacketKind::Publish, unix_secs, &inbound);
        }
        if outbound != Counts::default() {
            let added = meter.add(&account, device, PacketKind::Receive, unix_secs, &outbound);
            result = result.and(added);
        }
        result
    }

    /// Flushes and closes the connection of `device` at `unix_secs`, recording its connection
    /// minutes (rounded up per connection, see [`connection_minutes`], attributed to the window
    /// in which the connection opened; a zero-second connection records nothing); its slot is
    /// reused by a later connect.
    ///
    /// The slot is freed even when the meter refuses counts (for example
    /// [`Error::TooManyKeys`] from a full [`Meter`]): the flush and the connection minutes are
    /// both attempted, the counts the meter refused are lost, and the first error is returned.
    /// A handle of another table is refused and frees nothing.
    pub fn disconnect(
        &self,
        mut conn: Connection,
        device: &str,
        meter: &Meter,
        unix_secs: u64,
    ) -> Result<()> {
        self.own(&conn)?;
        // The flush zeroes the slot's outbound counters whether or not the meter takes them, so
        // the slot can be reused even after an error.
        let flushed = self.flush(&mut conn, device, meter, unix_secs);
        let account = self.account(&conn);
        self.accounts
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .release(conn.account);
        self.registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .free
            .push(conn.slot);
        let since = u64::from(conn.since);
        let minutes = connection_minutes(unix_secs.saturating_sub(since));
        let recorded = if minutes > 0 {
            let counts = Counts {
                messages: 0,
                units: meter.policy().units(PacketKind::ConnectionMinutes, minutes),
                bytes: 0,
                minutes,
            };
            account.and_then(|account| {
                meter.add(
                    &account,
                    device,
                    PacketKind::ConnectionMinutes,
                    since,
                    &counts,
                )
            })
        } else {
            Ok(())
        };
        flushed.and(recorded)
    }

    /// Number of live connections.
    pub fn len(&self) -> usize {
        let reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        reg.allocated as usize - reg.free.len()
    }

    /// Whether there is no live connection.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::{LimitAction, Rate};

    fn unlimited() -> RateLimits {
        RateLimits {
            messages: None,
            bytes: None,
            message_action: LimitAction::Drop,
            byte_action: LimitAction::Drop,
        }
    }

    fn meter() -> Meter {
        Meter::new("n1", MeteringPolicy::aws(), Granularity::Day, 1000).unwrap()
    }

    #[test]
    fn state_per_connection_is_at_most_64_bytes_all_included() {
        assert_eq!(SLOT_BYTES, 16);
        assert_eq!(CONNECTION_BYTES, 48);
        assert_eq!(STATE_BYTES, SLOT_BYTES + CONNECTION_BYTES);
        assert_eq!(STATE_BYTES, 64);
    }

    #[test]
    fn accounts_are_interned_once_and_freed_with_their_last_connection() {
        let t = ConnectionTable::new(MeteringPolicy::aws(), &unlimited(), 10).unwrap();
        let a1 = t.connect("acme", 0).unwrap();
        let a2 = t.connect("acme", 0).unwrap();
        let b = t.connect("globex", 0).unwrap();
        assert_eq!(a1.account, a2.account);
        assert_ne!(a1.account, b.account);
        assert_eq!(&*t.account(&a2).unwrap(), "acme");
        let m = meter();
        let acme = a1.account;
        t.disconnect(a1, "d1", &m, 0).unwrap();
        assert_eq!(&*t.account(&a2).unwrap(), "acme");
        t.disconnect(a2, "d2", &m, 0).unwrap();
        // The id is free again and is reused for the next new account.
        let c = t.connect("initech", 0).unwrap();
        assert_eq!(c.account, acme);
        assert_eq!(&*t.account(&c).unwrap(), "initech");
        assert_eq!(&*t.account(&b).unwrap(), "globex");
        assert_eq!(t.accounts.read().unwrap().ids.len(), 2);
    }

    #[test]
    fn counts_past_32_bits_are_spilled_and_flushed_exactly() {
        let t = ConnectionTable::new(MeteringPolicy::aws(), &unlimited(), 2).unwrap();
        let m = meter();
        let mut c = t.connect("a", 0).unwrap();
        let near = u32::MAX - 1;
        c.in_messages = near;
        c.in_units = near;
        for _ in 0..3 {
            t.record_publish(&mut c, 10, false, Nanos(0)).unwrap();
        }
        let s = t.slot(&c).unwrap();
        s.out_messages.store(near, Ordering::Relaxed);
        s.out_units.store(near, Ordering::Relaxed);
        for _ in 0..3 {
            t.record_delivery(&c, 10).unwrap();
        }
        // A single delivery whose units alone exceed 32 bits.
        t.record_delivery(&c, 5 * 1024 * (1 << 33)).unwrap();
        t.flush(&mut c, "d", &m, 0).unwrap();
        let totals = m.totals();
        let counts = |kind| {
            *totals
                .iter()
                .find(|(k, _)| k.kind == kind)
                .map(|(_, c)| c)
                .unwrap()
        };
        let inbound = counts(PacketKind::Publish);
        assert_eq!(
            (inbound.messages, inbound.units, inbound.bytes),
            (u64::from(near) + 3, u64::from(near) + 3, 30)
        );
        let outbound = counts(PacketKind::Receive);
        assert_eq!(outbound.messages, u64::from(near) + 4);
        assert_eq!(outbound.units, u64::from(near) + 3 + (1 << 33));
        // Nothing is left behind for the next flush.
        assert_eq!(t.spilled.load(Ordering::Relaxed), 0);
        let again = meter();
        t.flush(&mut c, "d", &again, 0).unwrap();
        assert!(again.totals().is_empty());
    }

    #[test]
    fn refuses_connect_times_beyond_32_bits() {
        let t = ConnectionTable::new(MeteringPolicy::aws(), &unlimited(), 2).unwrap();
        assert!(t.connect("a", u64::from(u32::MAX)).is_ok());
        assert!(matches!(
            t.connect("a", u64::from(u32::MAX) + 1),
            Err(Error::Config {
                field: "unix_secs",
                ..
            })
        ));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn records_and_flushes_publishes_and_deliveries() {
        let t = ConnectionTable::new(MeteringPolicy::aws(), &unlimited(), 10).unwrap();
        let m = meter();
        let mut c = t.connect("acme", 0).unwrap();
        let now = Nanos::from_secs(1);
        t.record_publish(&mut c, 8192, false, now).unwrap();
        t.record_publish(&mut c, 10, true, now).unwrap();
        t.record_delivery(&c, 6000).unwrap();
        t.flush(&mut c, "d1", &m, 86_400 * 3 + 5).unwrap();
        let totals = m.totals();
        let key = |kind| UsageKey {
            account: "acme".into(),
            device: "d1".into(),
            kind,
            window: 86_400 * 3,
        };
        assert_eq!(
            totals[&key(PacketKind::Publish)],
            Counts {
                messages: 2,
                units: 4,
                bytes: 8202,
                minutes: 0
            }
        );
        assert_eq!(totals[&key(PacketKind::Receive)].units, 2);
        // A second flush adds nothing.
        t.flush(&mut c, "d1", &m, 86_400 * 3 + 5).unwrap();
        assert_eq!(m.totals(), totals);
    }

    /// The per-message path looks the units of a one-block PUBLISH up instead of applying the
    /// policy's rule: the two agree for every size around the block boundary, plain and
    /// retained, under policies with other blocks, minimums, surcharges and billable kinds.
    #[test]
    fn publish_units_equal_the_policys_rule_on_both_sides_of_the_block() {
        use crate::metering::{BlockRule, KindSet};
        let mut policies = vec![
            MeteringPolicy::aws(),
            MeteringPolicy::preset("azure").unwrap(),
            MeteringPolicy::preset("gcp").unwrap(),
        ];
        let mut custom = MeteringPolicy::aws();
        custom.messages = BlockRule {
            block_bytes: 1,
            min_units: 3,
        };
        custom.retained_counts_twice = true;
        policies.push(custom);
        let mut huge = MeteringPolicy::aws();
        huge.messages.min_units = u64::from(u32::MAX) + 1;
        policies.push(huge);
        let mut unbilled = MeteringPolicy::aws();
        unbilled.billable = KindSet::of(&[PacketKind::Receive]);
        policies.push(unbilled);
        for policy in policies {
            let block = u64::from(policy.messages.block_bytes.max(1));
            let sizes = [
                0,
                1,
                2,
                block - 1,
                block,
                block + 1,
                2 * block,
                2 * block + 1,
            ];
            for bytes in sizes {
                for retained in [false, true] {
                    let t = ConnectionTable::new(policy.clone(), &unlimited(), 1).unwrap();
                    let m = meter();
                    let mut c = t.connect("acme", 0).unwrap();
                    t.record_publish(&mut c, bytes, retained, Nanos(0)).unwrap();
                    t.flush(&mut c, "d", &m, 0).unwrap();
                    let kind = if retained {
                        PacketKind::Retained
                    } else {
                        PacketKind::Publish
                    };
                    let units = m.totals().values().map(|c| c.units).sum::<u64>();
                    assert_eq!(
                        units,
                        policy.units(kind, bytes),
                        "{} policy, {bytes} bytes, retained {retained}",
                        policy.name
                    );
                }
            }
        }
    }

    #[test]
    fn refused_publishes_are_not_counted() {
        let limits = RateLimits {
            messages: Some(Rate::per_second(2)),
            ..unlimited()
        };
        let t = ConnectionTable::new(MeteringPolicy::aws(), &limits, 10).unwrap();
        let m = meter();
        let mut c = t.connect("a", 0).unwrap();
        let allowed = (0..5)
            .filter(|_| {
                t.record_publish(&mut c, 1, false, Nanos(0))
                    .unwrap()
                    .is_allowed()
            })
            .count();
        assert_eq!(allowed, 2);
        assert!(!t.peek_publish(&c, 1, Nanos(0)).unwrap().is_allowed());
        t.disconnect(c, "d", &m, 0).unwrap();
        assert_eq!(m.totals().values().next().unwrap().messages, 2);
    }

    #[test]
    fn connection_cap_and_slot_reuse_start_fresh() {
        let limits = RateLimits {
            messages: Some(Rate::per_second(1)),
            ..unlimited()
        };
        let t = ConnectionTable::new(MeteringPolicy::aws(), &limits, 1).unwrap();
        let m = meter();
        let mut c = t.connect("a", 0).unwrap();
        assert!(matches!(
            t.connect("a", 0),
            Err(Error::TooManyKeys { limit: 1, .. })
        ));
        t.record_publish(&mut c, 1, false, Nanos(0)).unwrap();
        t.disconnect(c, "d", &m, 0).unwrap();
        let mut c2 = t.connect("a", 0).unwrap();
        assert!(
            t.record_publish(&mut c2, 1, false, Nanos(0))
                .unwrap()
                .is_allowed()
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn disconnect_records_connection_minutes_rounded_up() {
        let t = ConnectionTable::new(MeteringPolicy::aws(), &unlimited(), 4).unwrap();
        let m = meter();
        let c = t.connect("a", 1_000).unwrap();
        t.disconnect(c, "d", &m, 1_061).unwrap();
        let totals = m.totals();
        let (key, counts) = totals.iter().next().unwrap();
        assert_eq!(key.kind, PacketKind::ConnectionMinutes);
        assert_eq!((counts.minutes, counts.units, counts.messages), (2, 2, 0));
    }

    #[test]
    fn peek_consumes_nothing_and_a_byte_refusal_leaves_the_message_limit_untouched() {
        let limits = RateLimits {
            messages: Some(Rate::per_second(2)),
            bytes: Some(Rate::per_second(100)),
            ..unlimited()
        };
        let t = ConnectionTable::new(MeteringPolicy::aws(), &limits, 2).unwrap();
        let m = meter();
        let mut c = t.connect("a", 0).unwrap();
        for _ in 0..10 {
            assert!(t.peek_publish(&c, 10, Nanos(0)).unwrap().is_allowed());
        }
        // Over the byte budget: refused, and the message cell is not charged for it.
        assert!(
            !t.record_publish(&mut c, 1_000, false, Nanos(0))
                .unwrap()
                .is_allowed()
        );
        for _ in 0..2 {
            assert!(
                t.record_publish(&mut c, 10, false, Nanos(0))
                    .unwrap()
                    .is_allowed()
            );
        }
        assert!(
            !t.record_publish(&mut c, 10, false, Nanos(0))
                .unwrap()
                .is_allowed()
        );
        t.flush(&mut c, "d", &m, 0).unwrap();
        let counts = m.totals().into_values().next().unwrap();
        assert_eq!((counts.messages, counts.bytes), (2, 20));
    }

    #[test]
    fn a_reused_slot_carries_no_deliveries_of_the_previous_connection() {
        let t = ConnectionTable::new(MeteringPolicy::aws(), &unlimited(), 1).unwrap();
        let m = meter();
        let c = t.connect("a", 0).unwrap();
        t.record_delivery(&c, 100).unwrap();
        t.disconnect(c, "old", &m, 0).unwrap();
        let mut c2 = t.connect("a", 0).unwrap();
        let m2 = meter();
        t.flush(&mut c2, "new", &m2, 0).unwrap();
        assert!(m2.totals().is_empty());
        assert_eq!(m.totals().len(), 1);
    }

    #[test]
    fn rejects_a_handle_from_another_table() {
        let a = ConnectionTable::new(MeteringPolicy::aws(), &unlimited(), 4).unwrap();
        let b = ConnectionTable::new(MeteringPolicy::aws(), &unlimited(), 4).unwrap();
        let mut c = a.connect("x", 0).unwrap();
        assert!(b.record_publish(&mut c, 1, false, Nanos(0)).is_err());
        assert!(b.peek_publish(&c, 1, Nanos(0)).is_err());
        assert!(b.record_delivery(&c, 1).is_err());
    }

    #[test]
    fn disconnect_frees_the_slot_even_when_the_meter_is_full() {
        let t = ConnectionTable::new(MeteringPolicy::aws(), &unlimited(), 2).unwrap();
        let m = Meter::new("n", MeteringPolicy::aws(), Granularity::Day, 1).unwrap();
        m.add("other", "x", PacketKind::Publish, 0, &Counts::default())
            .unwrap();
        for i in 0..20 {
            let mut c = t.connect("a", i).unwrap();
            t.record_publish(&mut c, 10, false, Nanos(0)).unwrap();
            t.record_delivery(&c, 10).unwrap();
            assert!(matches!(
                t.disconnect(c, "d", &m, i + 61),
                Err(Error::TooManyKeys { what: "meter", .. })
            ));
            assert!(t.is_empty());
        }
        // The refused counts are gone with the connection: a reused slot starts at zero.
        let mut c = t.connect("a", 0).unwrap();
        let fresh = Meter::new("n", MeteringPolicy::aws(), Granularity::Day, 10).unwrap();
        t.flush(&mut c, "d", &fresh, 0).unwrap();
        assert!(fresh.totals().is_empty());
    }

    #[test]
    fn connection_minutes_are_recorded_when_the_flush_is_refused() {
        let t = ConnectionTable::new(MeteringPolicy::aws(), &unlimited(), 1).unwrap();
        let m = Meter::new("n", MeteringPolicy::aws(), Granularity::Day, 1).unwrap();
        let zero = Counts::default();
        m.add("a", "d", PacketKind::ConnectionMinutes, 0, &zero)
            .unwrap();
        let mut c = t.connect("a", 0).unwrap();
        t.record_publish(&mut c, 10, false, Nanos(0)).unwrap();
        // Day 1's flush cannot get a key; the minutes go to day 0's existing key.
        assert!(t.disconnect(c, "d", &m, 86_400 + 30).is_err());
        let totals = m.totals();
        assert_eq!(totals.len(), 1);
        let (key, counts) = totals.iter().next().unwrap();
        assert_eq!((key.kind, key.window), (PacketKind::ConnectionMinutes, 0));
        assert_eq!(counts.minutes, 1441);
        assert!(t.connect("a", 0).is_ok());
    }

    #[test]
    fn disconnect_of_another_tables_handle_frees_nothing() {
        let a = ConnectionTable::new(MeteringPolicy::aws(), &unlimited(), 1).unwrap();
        let b = ConnectionTable::new(MeteringPolicy::aws(), &unlimited(), 1).unwrap();
        let m = meter();
        let c = a.connect("x", 0).unwrap();
        let other = b.connect("x", 0).unwrap();
        assert!(matches!(
            b.disconnect(c, "y", &m, 60),
            Err(Error::Config {
                field: "connection",
                ..
            })
        ));
        assert!(m.totals().is_empty());
        assert_eq!((a.len(), b.len()), (1, 1));
        // b's one slot is still taken by `other`, not doubled by a foreign slot number.
        assert!(b.connect("x", 0).is_err());
        b.disconnect(other, "z", &m, 0).unwrap();
        assert!(b.connect("x", 0).is_ok());
    }

    #[test]
    fn meter_refuses_keys_beyond_its_cap() {
        let m = Meter::new("n", MeteringPolicy::aws(), Granularity::Hour, 1).unwrap();
        let c = Counts::default();
        m.add("a", "d", PacketKind::Publish, 0, &c).unwrap();
        m.add("a", "d", PacketKind::Publish, 10, &c).unwrap();
        assert!(m.add("a", "d", PacketKind::Publish, 3600, &c).is_err());
    }

    fn one() -> Counts {
        Counts {
            messages: 1,
            units: 2,
            bytes: 3,
            minutes: 0,
        }
    }

    fn windows(totals: &BTreeMap<UsageKey, Counts>) -> Vec<u64> {
        totals.keys().map(|k| k.window).collect()
    }

    #[test]
    fn window_end_is_the_start_of_the_next_window() {
        assert_eq!(Granularity::Hour.window_end(0), Some(3600));
        assert_eq!(Granularity::Hour.window_end(3599), Some(3600));
        assert_eq!(Granularity::Hour.window_end(3600), Some(7200));
        assert_eq!(Granularity::Day.window_end(86_399), Some(86_400));
        let feb_2024 = Month::new(2024, 2).unwrap().start();
        assert_eq!(feb_2024, 1_706_745_600); // 2024-02-01T00:00:00Z
        // A leap February is 29 days long.
        assert_eq!(
            Granularity::Month.window_end(feb_2024),
            Some(feb_2024 + 29 * 86_400)
        );
        // The last month the calendar holds never ends, nor does an hour past u64's range.
        assert_eq!(Granularity::Month.window_end(u64::MAX), None);
        assert_eq!(Granularity::Hour.window_end(u64::MAX), None);
    }

    #[test]
    fn drain_returns_closed_windows_once_and_keeps_open_ones() {
        let m = Meter::new("n", MeteringPolicy::aws(), Granularity::Hour, 100).unwrap();
        for t in [10, 3_700, 7_300, 7_301] {
            m.add("a", "d", PacketKind::Publish, t, &one()).unwrap();
        }
        m.add("b", "e", PacketKind::Receive, 20, &one()).unwrap();
        // At 7,199 only hour 0 has ended.
        assert_eq!(windows(&m.drain_closed(7_199)), [0, 0]);
        // At 7,200 hour 1 has ended too; hour 2 is open and stays.
        let closed = m.drain_closed(7_200);
        assert_eq!(windows(&closed), [3600]);
        assert_eq!(closed.values().next(), Some(&one()));
        assert!(m.drain_closed(7_200).is_empty());
        let open = m.totals();
        assert_eq!(windows(&open), [7200]);
        assert_eq!(open.values().next().unwrap().messages, 2);
        assert_eq!(windows(&m.snapshot().totals()), [7200]);
    }

    #[test]
    fn drain_frees_room_for_keys_the_cap_refused() {
        let m = Meter::new("n", MeteringPolicy::aws(), Granularity::Day, 1).unwrap();
        m.add("a", "d", PacketKind::Publish, 5, &one()).unwrap();
        assert!(matches!(
            m.add("a", "d", PacketKind::Publish, 86_405, &one()),
            Err(Error::TooManyKeys { what: "meter", .. })
        ));
        assert_eq!(windows(&m.drain_closed(86_405)), [0]);
        m.add("a", "d", PacketKind::Publish, 86_405, &one())
            .unwrap();
        assert_eq!(windows(&m.totals()), [86_400]);
    }

    #[test]
    fn monthly_windows_close_at_the_calendar_month_boundary() {
        let m = Meter::new("n", MeteringPolicy::aws(), Granularity::Month, 10).unwrap();
        let feb = Month::new(2024, 2).unwrap();
        let (mar, dec) = (feb.next(), Month::new(2025, 12).unwrap());
        let jan = dec.next();
        assert_eq!(jan.start(), 1_767_225_600); // 2026-01-01T00:00:00Z
        m.add(
            "a",
            "d",
            PacketKind::Publish,
            feb.start() + 28 * 86_400,
            &one(),
        )
        .unwrap(); // Feb 29th
        m.add(
            "a",
            "d",
            PacketKind::Publish,
            dec.start() + 30 * 86_400,
            &one(),
        )
        .unwrap(); // Dec 31st
        assert!(m.drain_closed(mar.start() - 1).is_empty());
        assert_eq!(windows(&m.drain_closed(mar.start())), [feb.start()]);
        assert!(m.drain_closed(jan.start() - 1).is_empty());
        assert_eq!(windows(&m.drain_closed(jan.start())), [dec.start()]);
        assert!(m.totals().is_empty());
    }

    #[test]
    fn the_last_calendar_month_is_never_drained() {
        let m = Meter::new("n", MeteringPolicy::aws(), Granularity::Month, 10).unwrap();
        m.add("a", "d", PacketKind::Publish, u64::MAX - 5, &one())
            .unwrap();
        assert!(m.drain_closed(u64::MAX).is_empty());
        assert_eq!(m.totals().len(), 1);
    }

    #[test]
    fn late_counts_for_a_drained_window_come_back_as_a_delta() {
        let t = ConnectionTable::new(MeteringPolicy::aws(), &unlimited(), 4).unwrap();
        let m = meter();
        let short = t.connect("a", 0).unwrap();
        let long = t.connect("a", 0).unwrap();
        t.disconnect(short, "short", &m, 60).unwrap();
        let first = m.drain_closed(86_400);
        assert_eq!(first.values().map(|c| c.minutes).collect::<Vec<_>>(), [1]);
        // The long connection's minutes belong to day 0, which was already drained.
        t.disconnect(long, "long", &m, 86_400 + 60).unwrap();
        let second = m.drain_closed(86_400 + 60);
        assert_eq!(windows(&second), [0]);
        let (key, counts) = second.iter().next().unwrap();
        assert_eq!((key.device.as_str(), counts.minutes), ("long", 1441));
        assert!(m.totals().is_empty());
    }

    #[test]
    fn node_aggregates_roundtrip_through_json_rows() {
        let n1 = Meter::new("n1", MeteringPolicy::aws(), Granularity::Day, 10).unwrap();
        let c = Counts {
            messages: 3,
            units: 4,
            bytes: 5,
            minutes: 6,
        };
        n1.add("a", "d", PacketKind::Shadow, 86_401, &c).unwrap();
        let snap = n1.snapshot();
        let json = serde_json::to_string(&snap).unwrap();
        assert_eq!(
            json,
            r#"[{"node":"n1","account":"a","device":"d","kind":"shadow","window":86400,"messages":3,"units":4,"bytes":5,"minutes":6}]"#
        );
        let back: NodeAggregate = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snap);
    }

    #[test]
    fn snapshots_from_two_nodes_merge_without_double_counting() {
        let n1 = Meter::new("n1", MeteringPolicy::aws(), Granularity::Month, 10).unwrap();
        let n2 = Meter::new("n2", MeteringPolicy::aws(), Granularity::Month, 10).unwrap();
        let one = Counts {
            messages: 1,
            units: 1,
            bytes: 5,
            minutes: 0,
        };
        n1.add("a", "d", PacketKind::Publish, 0, &one).unwrap();
        let early = n1.snapshot();
        n1.add("a", "d", PacketKind::Publish, 0, &one).unwrap();
        n2.add("a", "d", PacketKind::Publish, 0, &one).unwrap();
        let mut fleet = NodeAggregate::default();
        fleet.merge(&n1.snapshot());
        fleet.merge(&early); // stale, out of order
        fleet.merge(&n2.snapshot());
        fleet.merge(&n2.snapshot()); // duplicate delivery
        let total = fleet.totals().into_values().next().unwrap();
        assert_eq!(total.messages, 3);
    }
}
