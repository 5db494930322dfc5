//! The subscription index: a topic trie mapping filters to subscribers (MQTT 5.0 §4.7, §4.8.2).
//!
//! [`SubscriptionIndex`] answers "who receives a message published to this topic" in time that
//! depends on the topic's depth and on the wildcard branches that actually exist along it, never on
//! the number of exact filters.
//!
//! # Layout
//!
//! The index is built for millions of filters over ~10^5 distinct level values (device IDs),
//! where a match is dominated by waits for memory, not by instructions, so the layout is chosen
//! to touch few cache lines per level:
//!
//! - **Nodes are the slots of one open-addressing table** (linear probing, at most 4/5 used),
//!   placed by their *path hash*: a seeded hash of the parent's path hash and the level bytes
//!   (`+` and `#` children hash a marker instead). A node is 32 aligned bytes — half a cache
//!   line — holding the low half of its path hash, its parent, its `+` and `#` children, its
//!   subscriber slot, and its level text inline when the level is at most 10 bytes
//!   (`dev-00042`, `telemetry`, `accepted`); a longer level (a UUID device id) is stored once in
//!   one contiguous text, its offset and length in the node, so comparing it is one more load.
//!   Finding the exact child at a level is one probe that lands on the child itself, usually
//!   one cache line, instead of two hash-map lookups and a string behind a pointer. The
//!   candidate's parent and level text are compared with the wanted ones, so a hash collision
//!   can cost a probe but never a wrong match.
//! - A path hash depends only on the topic's bytes (and the `+` branches taken), not on node ids
//!   read from memory, so the processor may issue the probe for the next level while the
//!   current level's loads are still outstanding. (An explicit read-ahead of the next levels'
//!   slots was tried and measured slower: the duplicated hashing and loads cost more than the
//!   overlap gained.) The level hash reads at most two overlapping words per 16 bytes.
//! - **The table asks for huge pages** (Linux, `madvise(MADV_HUGEPAGE)` on each fresh table):
//!   at 1,000,000 distinct filters it is 80 MB read at random slots, and with 4 KiB pages nearly
//!   every level's probe would also wait for a page walk. On the CI's EPYC the median match at
//!   that size went from 912-991 to 851-922 ns. Where transparent huge pages are off the advice
//!   does nothing.
//! - **Subscribers** of a node live in a second arena, so the table holds no `S`/`V`; one
//!   direct subscriber is stored inline, several direct subscribers and shared groups behind
//!   one box (an entry is 16 bytes for a `u32` subscriber). A walk
//!   collects the matching nodes' subscriber slots and reports them at the end, so it never
//!   waits for a subscriber entry and those loads overlap.
//! - The table grows in steps of 1.2x, not 2x (a node's home slot is its tag scaled to the
//!   capacity by a multiply and shift, so any capacity works): it stays between 2/3 and 4/5
//!   full, where doubling at 3/4 left it between 3/8 and 3/4 — the slots are most of the
//!   index's memory (32 bytes, plus one byte of exact-child count, per slot). The reach byte
//!   below keeps misses short at that load.
//! - Removing a node leaves a tombstone; a rebuild (at the same size, or grown when live
//!   nodes fill more than 2/3) sweeps them once live nodes and tombstones reach 4/5, so churn
//!   does not grow the index. Node ids are renumbered by a rebuild, which only insertion can
//!   trigger.
//!
//! The hash is keyed by a per-index random seed (from `std`'s `RandomState`), so filters chosen
//! by clients cannot be aimed at one probe sequence.

use std::hash::{BuildHasher, RandomState};

use crate::topic::{TopicFilter, TopicName};

/// No node (a node id is a slot of the table, and the table is smaller than 2^32 slots).
const NONE: u32 = u32::MAX;
/// A node without subscribers.
const NO_SUBS: u32 = u32::MAX;
/// Longest level stored inline in its node.
const INLINE: usize = 10;
/// The key byte that belongs to the slot, not to the node in it: how far the nodes whose home
/// is this slot reach. 0: no node has its home here; k: all of them lie within the k slots
/// from here; [`u8::MAX`]: unknown, probe up to an empty slot. Only ever raised, until a
/// rebuild recomputes it, so a lookup that gives up after k slots never misses a node.
const REACH: usize = 11;
/// Bit 7 of a node's first key byte: the node has exact children (the walk probes for one
/// only then). The low seven bits hold the level's length or one of the markers below.
const HAS_CHILDREN: u8 = 0x80;
/// The level is in the long-level table (index in key bytes 4..8).
const KEY_LONG: u8 = 0x7F;
/// A `+` node.
const KEY_PLUS: u8 = 0x7E;
/// A `#` node.
const KEY_HASH: u8 = 0x7D;
/// The root.
const KEY_ROOT: u8 = 0x7C;
/// A slot that never held a node: ends a probe run.
const KEY_EMPTY: u8 = 0x7B;
/// A slot whose node was removed: probe runs continue past it, inserts may reuse it.
const KEY_TOMBSTONE: u8 = 0x7A;

/// One match of a topic against the index.
#[derive(Debug, PartialEq, Eq)]
pub enum Match<'a, S, V> {
    /// A non-shared subscription: deliver to this subscriber.
    Direct {
        /// The subscriber.
        subscriber: &'a S,
        /// The value stored with the subscription (for example its options).
        value: &'a V,
    },
    /// A shared subscription group (`$share/{group}/{filter}`): deliver to one member of the
    /// group, chosen by the broker (MQTT 5.0 §4.8.2).
    Shared {
        /// The share name.
        group: &'a str,
        /// The group's members with their values (never empty).
        members: &'a [(S, V)],
    },
}

/// A trie node and a slot of the table: 32 bytes, half a cache line.
///
/// `key` is the node's level: `[len, bytes.., 0 padding]` for a level of at most [`INLINE`]
/// bytes, or [`KEY_LONG`] with the level's offset in the long-level text in bytes 4..8 and its
/// length in bytes 8..10, or one of the other markers;
/// bit 7 of the first byte is [`HAS_CHILDREN`]; the last byte is the slot's [`REACH`]. `tag` is the low half of the node's path hash,
/// which places it in the table (home slot [`home_slot`]).
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
struct Node {
    tag: u32,
    parent: u32,
    plus: u32,
    hash: u32,
    subs: u32,
    key: [u8; 12],
}

const EMPTY_NODE: Node = Node {
    tag: 0,
    parent: NONE,
    plus: NONE,
    hash: NONE,
    subs: NO_SUBS,
    key: marker_key(KEY_EMPTY),
};

impl Node {
    fn kind(&self) -> u8 {
        self.key[0] & !HAS_CHILDREN
    }

    fn is_live(&self) -> bool {
        !matches!(self.kind(), KEY_EMPTY | KEY_TOMBSTONE)
    }

    fn has_children(&self) -> bool {
        self.key[0] & HAS_CHILDREN != 0
    }

    /// Whether the node's key equals `key` (an inline level key), ignoring [`HAS_CHILDREN`]
    /// and the slot's [`REACH`] byte.
    #[inline]
    fn key_is(&self, key: &[u8; 12]) -> bool {
        (self.key[0] & !HAS_CHILDREN) == key[0] && self.key[1..REACH] == key[1..REACH]
    }
}

/// The inline key of a level, or `None` when it is longer than [`INLINE`] bytes.
fn inline_key(level: &[u8]) -> Option<[u8; 12]> {
    if level.len() > INLINE {
        return None;
    }
    let mut key = [0u8; 12];
    key[0] = level.len() as u8; // at most 11
    key[1..=level.len()].copy_from_slice(level);
    Some(key)
}

const fn marker_key(marker: u8) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[0] = marker;
    key
}

fn long_key(offset: u32, len: u16) -> [u8; 12] {
    let mut key = marker_key(KEY_LONG);
    key[4..8].copy_from_slice(&offset.to_le_bytes());
    key[8..10].copy_from_slice(&len.to_le_bytes());
    key
}

/// The byte range of a long level's text in the long-level text.
fn long_range(key: &[u8; 12]) -> std::ops::Range<usize> {
    let offset = u32::from_le_bytes([key[4], key[5], key[6], key[7]]) as usize;
    offset..offset + usize::from(u16::from_le_bytes([key[8], key[9]]))
}

/// The subscribers of one node: none, one direct subscriber inline, or several direct
/// subscribers and/or shared groups behind one box. For `S = u32, V = ()` an entry is 16 bytes
/// (was 32 with a vector and a separate shared-group box inline): most filters of a fleet have
/// one subscriber.
#[derive(Debug, Clone)]
enum Subscribers<S, V> {
    Empty,
    One((S, V)),
    Many(Box<Several<S, V>>),
}

/// Subscribers of a node that has more than one direct subscriber or any shared group.
#[derive(Debug, Clone)]
struct Several<S, V> {
    direct: Vec<(S, V)>,
    shared: Vec<SharedGroup<S, V>>,
}

impl<S, V> Subscribers<S, V> {
    const EMPTY: Self = Subscribers::Empty;

    fn is_empty(&self) -> bool {
        matches!(self, Subscribers::Empty)
    }

    fn direct(&self) -> &[(S, V)] {
        match self {
            Subscribers::Empty => &[],
            Subscribers::One(one) => std::slice::from_ref(one),
            Subscribers::Many(several) => &several.direct,
        }
    }

    fn direct_mut(&mut self) -> &mut [(S, V)] {
        match self {
            Subscribers::Empty => &mut [],
            Subscribers::One(one) => std::slice::from_mut(one),
            Subscribers::Many(several) => &mut several.direct,
        }
    }

    fn groups(&self) -> &[SharedGroup<S, V>] {
        match self {
            Subscribers::Many(several) => &several.shared,
            _ => &[],
        }
    }

    /// The boxed form, converting `Empty` or `One` into it.
    fn several(&mut self) -> &mut Several<S, V> {
        if !matches!(self, Subscribers::Many(_)) {
            let direct = match std::mem::replace(self, Subscribers::Empty) {
                Subscribers::One(one) => vec![one],
                _ => Vec::new(),
            };
            *self = Subscribers::Many(Box::new(Several {
                direct,
                shared: Vec::new(),
            }));
        }
        match self {
            Subscribers::Many(several) => several,
            _ => unreachable!("converted to Many above"),
        }
    }

    fn push_direct(&mut self, entry: (S, V)) {
        match self {
            Subscribers::Empty => *self = Subscribers::One(entry),
            _ => self.several().direct.push(entry),
        }
    }

    /// Back to the smallest form after a removal.
    fn shrink(&mut self) {
        if let Subscribers::Many(several) = self
            && several.shared.is_empty()
            && several.direct.len() <= 1
        {
            *self = match several.direct.pop() {
                Some(one) => Subscribers::One(one),
                None => Subscribers::Empty,
            };
        }
    }

    fn swap_remove_direct(&mut self, i: usize) -> V {
        let removed = match std::mem::replace(self, Subscribers::Empty) {
            Subscribers::Empty => unreachable!("swap_remove on an empty list is never called"),
            Subscribers::One(one) => one,
            Subscribers::Many(mut several) => {
                let removed = several.direct.swap_remove(i);
                *self = Subscribers::Many(several);
                self.shrink();
                removed
            }
        };
        removed.1
    }
}

/// A share name and the group's members.
type SharedGroup<S, V> = (Box<str>, Vec<(S, V)>);

/// A slot of the child table: the low 32 bits of the child's path hash and the child's node id
/// ([`NONE`]: empty). The home slot of an entry is `hash & mask`, so the table can be resized
#[derive(Debug, Clone, Copy)]
struct PathHasher {
    k: [u64; 4],
    /// Tests only: every path hashes alike, so every lookup goes through collisions.
    #[cfg(test)]
    collide: bool,
}

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

/// Up to 16 bytes as two words, without a copy loop: 8-16 bytes as the first and the last
/// eight (overlapping), 4-7 as the first and last four, 1-3 as the first, middle and last byte.
/// Together with the length (which the caller mixes in) the words determine the bytes.
#[inline]
fn words(bytes: &[u8]) -> (u64, u64) {
    let n = bytes.len();
    if let (Some(a), Some(b)) = (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
        (u64::from_le_bytes(*a), u64::from_le_bytes(*b))
    } else if let (Some(a), Some(b)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
        (
            u64::from(u32::from_le_bytes(*a)),
            u64::from(u32::from_le_bytes(*b)),
        )
    } else if let (Some(&a), Some(&b), Some(&c)) = (bytes.first(), bytes.get(n / 2), bytes.last()) {
        (u64::from(a) | (u64::from(b) << 8) | (u64::from(c) << 16), 0)
    } else {
        (0, 0)
    }
}

impl PathHasher {
    fn new() -> Self {
        let state = RandomState::new();
        let mut k = [0u64; 4];
        for (i, k) in k.iter_mut().enumerate() {
            // Odd multipliers, so no key zeroes a product.
            *k = state.hash_one(0x7468_696e_676b_6974_u64 ^ i as u64) | 1;
        }
        PathHasher {
            k,
            #[cfg(test)]
            collide: false,
        }
    }

    /// The path hash of the root.
    fn root(&self) -> u64 {
        self.k[3]
    }

    /// The path hash of the child at `level` of a node whose path hash is `parent`.
    #[inline]
    fn child(&self, parent: u64, level: &[u8]) -> u64 {
        #[cfg(test)]
        if self.collide {
            return 0x5EED;
        }
        let [k0, k1, k2, _] = self.k;
        let mut h = parent ^ (level.len() as u64).wrapping_mul(k2);
        let mut rest = level;
        while let (Some(block), Some(tail)) = (rest.first_chunk::<16>(), rest.get(16..)) {
            if tail.is_empty() {
                break;
            }
            let (a, b) = words(block);
            h = fold(h ^ a ^ k0, b ^ k1);
            rest = tail;
        }
        let (a, b) = words(rest);
        let h = fold(h ^ a ^ k0, b ^ k1);
        fold(h ^ k2, k0 ^ (h >> 29))
    }

    /// The path hash of a node's `+` child.
    #[inline]
    fn plus(&self, parent: u64) -> u64 {
        let [k0, k1, k2, _] = self.k;
        fold(parent ^ k1 ^ u64::from(b'+'), k0 ^ k2)
    }

    /// The path hash of a node's `#` child.
    fn hash_child(&self, parent: u64) -> u64 {
        let [k0, k1, k2, _] = self.k;
        fold(parent ^ k1 ^ u64::from(b'#'), k0 ^ k2)
    }
}

/// A subscription trie from topic filters to subscribers `S` with per-subscription values `V`.
///
/// Matching costs one hash of the level bytes and one probe of the node table (usually one
/// cache line) per topic level, plus the `+`/`#` branches that exist, and one step per
/// reported match (see the module documentation for the layout). `insert` and `remove` walk
/// the filter's levels and then scan the subscribers of that one filter (linear in their number: a filter with
/// very many subscribers, such as a fleet-wide broadcast topic, makes its own updates slower, not
/// anyone's matches).
///
/// ```
/// use thingkit_mqtt::{Match, SubscriptionIndex, TopicFilter, TopicName};
///
/// let mut index = SubscriptionIndex::new();
/// index.insert(&TopicFilter::new("sensors/+/temperature")?, "dashboard", 1);
/// index.insert(&TopicFilter::new("sensors/#")?, "archiver", 2);
/// index.insert(&TopicFilter::new("$share/workers/sensors/#")?, "worker-1", 0);
/// index.insert(&TopicFilter::new("$share/workers/sensors/#")?, "worker-2", 0);
///
/// let topic = TopicName::new("sensors/42/temperature")?;
/// let mut direct: Vec<_> = index
///     .matches(&topic)
///     .into_iter()
///     .filter_map(|m| match m { Match::Direct { subscriber, .. } => Some(*subscriber), _ => None })
///     .collect();
/// direct.sort();
/// assert_eq!(direct, ["archiver", "dashboard"]);
/// assert!(index.matches(&topic).iter().any(|m| matches!(m, Match::Shared { group: "workers", members } if members.len() == 2)));
/// # Ok::<(), thingkit_mqtt::Error>(())
/// ```
#[derive(Clone)]
pub struct SubscriptionIndex<S, V> {
    /// The trie's nodes, stored in an open-addressing table (linear probing) by path hash:
    /// a node's id is its slot. At most 4/5 used (live nodes and tombstones).
    nodes: Vec<Node>,
    /// Number of exact children of each slot's node (read on insert and remove only).
    exact_children: ChildCounts,
    /// The root's slot.
    root: u32,
    /// Live nodes, the root included.
    live: usize,
    tombstones: usize,
    /// The text of levels longer than [`INLINE`] bytes, one after the other (a node holds its
    /// level's offset and length): comparing a long level reads one place, not a pointer and
    /// then the text, and costs no allocation per level.
    long_text: Vec<u8>,
    /// Bytes of `long_text` whose node was removed, reclaimed by [`Self::compact_long_text`].
    long_garbage: usize,
    subscribers: Vec<Subscribers<S, V>>,
    free_subscribers: Vec<u32>,
    hasher: PathHasher,
    len: usize,
}

impl<S, V> std::fmt::Debug for SubscriptionIndex<S, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionIndex")
            .field("subscriptions", &self.len)
            .field("nodes", &self.live)
            .field("capacity", &self.nodes.len())
            .finish()
    }
}

impl<S: PartialEq, V> Default for SubscriptionIndex<S, V> {
    fn default() -> Self {
        Self::new()
    }
}

/// The number of exact children of each slot's node: one byte per slot, the counts of 255 and
/// more (a fleet's `$aws/things`, a site with many devices) in a side map. Read and written on
/// insert and remove only.
#[derive(Debug, Clone)]
struct ChildCounts {
    small: Vec<u8>,
    /// Counts of slots whose byte is [`u8::MAX`].
    large: std::collections::HashMap<u32, u32>,
}

impl ChildCounts {
    fn new(capacity: usize) -> Self {
        ChildCounts {
            small: vec![0; capacity],
            large: std::collections::HashMap::new(),
        }
    }

    fn get(&self, i: usize) -> u32 {
        match self.small[i] {
            u8::MAX => self.large.get(&(i as u32)).copied().unwrap_or(0),
            n => u32::from(n),
        }
    }

    fn set(&mut self, i: usize, n: u32) {
        if self.small[i] == u8::MAX {
            self.large.remove(&(i as u32));
        }
        match u8::try_from(n) {
            Ok(n) if n < u8::MAX => self.small[i] = n,
            _ => {
                self.small[i] = u8::MAX;
                self.large.insert(i as u32, n);
            }
        }
    }

    fn increment(&mut self, i: usize) {
        self.set(i, self.get(i) + 1);
    }

    /// Decrements slot `i`'s count (which is positive) and returns the new count.
    fn decrement(&mut self, i: usize) -> u32 {
        let n = self.get(i) - 1;
        self.set(i, n);
        n
    }
}

/// The home slot of a node with path-hash tag `tag` in a table of `capacity` slots: the tag
/// scaled to the table (multiply and shift), so the capacity need not be a power of two and
/// the table can grow in steps of 1.2x instead of 2x.
#[inline]
fn home_slot(tag: u32, capacity: usize) -> usize {
    ((u64::from(tag) * capacity as u64) >> 32) as usize
}

/// The slot after `i` in a probe run (wrapping at the end of the table).
#[inline]
fn next_slot(i: usize, capacity: usize) -> usize {
    if i + 1 == capacity { 0 } else { i + 1 }
}

fn split_level(rest: &[u8]) -> (&[u8], Option<&[u8]>) {
    match rest.iter().position(|&b| b == b'/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    }
}

impl<S, V> SubscriptionIndex<S, V> {
    /// Whether `node` is the child of `parent` at `level` (whose inline key is `key`).
    #[inline]
    fn is_child(&self, node: &Node, parent: u32, level: &[u8], key: Option<&[u8; 12]>) -> bool {
        if node.parent != parent {
            return false;
        }
        match key {
            Some(key) => node.key_is(key),
            None => {
                node.kind() == KEY_LONG && self.long_text.get(long_range(&node.key)) == Some(level)
            }
        }
    }

    /// The exact child of `parent` at `level`, given the child's path hash `hash`, or [`NONE`].
    /// One probe usually: the node is in the slot the probe reads.
    #[inline]
    fn exact_child(&self, parent: u32, hash: u64, level: &[u8], key: Option<&[u8; 12]>) -> u32 {
        let capacity = self.nodes.len();
        let tag = hash as u32;
        let mut i = home_slot(tag, capacity);
        // A miss usually ends at the home slot (nothing has its home there) or after the few
        // slots its nodes reach, instead of at the next empty slot.
        let reach = self.nodes[i].key[REACH];
        let mut left = reach;
        while left != 0 {
            let n = &self.nodes[i];
            if n.tag == tag && self.is_child(n, parent, level, key) {
                return i as u32;
            }
            if n.kind() == KEY_EMPTY {
                return NONE;
            }
            if reach != u8::MAX {
                left -= 1;
            }
            i = next_slot(i, capacity);
        }
        NONE
    }

    /// Writes `node` into slot `i`, which lies `distance` slots past `home`, keeping the slot's
    /// [`REACH`] byte and raising the home's.
    fn put(&mut self, i: usize, home: usize, distance: usize, mut node: Node) {
        node.key[REACH] = self.nodes[i].key[REACH];
        self.nodes[i] = node;
        let reach = u8::try_from(distance + 1).unwrap_or(u8::MAX);
        let home_reach = &mut self.nodes[home].key[REACH];
        *home_reach = (*home_reach).max(reach);
    }

    /// Makes room for `extra` more nodes without a rebuild in between: node ids stay valid
    /// until the next call. Rebuilds the table (dropping tombstones), at the same size or
    /// grown in steps of 1.2x until live nodes fill at most 2/3 of it, when live nodes and
    /// tombstones would fill more than 4/5 of it.
    fn reserve(&mut self, extra: usize) {
        let capacity = self.nodes.len();
        if (self.live + self.tombstones + extra) * 5 <= capacity * 4 {
            return;
        }
        // Same size when live nodes fill at most 2/3 (the rest were tombstones), else grown in
        // 1.2x steps (the table then sits between 2/3 and 4/5 full, where doubling at 3/4 left
        // it between 3/8 and 3/4): either way at least 2/15 of the table is free again, so
        // rebuilds are amortised.
        let mut new_capacity = capacity.max(8);
        while (self.live + extra) * 3 > new_capacity * 2 {
            new_capacity += new_capacity / 5;
        }
        assert!(
            new_capacity <= 1 << 31,
            "the subscription index holds fewer than 2^30 nodes"
        );
        self.rebuild(new_capacity);
    }

    /// Copies the long levels of live nodes into a fresh text, dropping removed ones, and
    /// points the nodes at their new offsets (node ids do not change).
    fn compact_long_text(&mut self) {
        let mut text = Vec::with_capacity(self.long_text.len() - self.long_garbage);
        for node in self.nodes.iter_mut().filter(|n| n.kind() == KEY_LONG) {
            let range = long_range(&node.key);
            let offset = u32::try_from(text.len()).expect("compaction only shrinks the text");
            text.extend_from_slice(&self.long_text[range.clone()]);
            node.key[4..8].copy_from_slice(&offset.to_le_bytes());
        }
        self.long_text = text;
        self.long_garbage = 0;
    }

    /// Moves every live node into a fresh table of `capacity` slots and renumbers the links.
    fn rebuild(&mut self, capacity: usize) {
        // Advised before the first write, so the kernel can back it with huge pages as it
        // faults in: a match reads one random slot per level (`cpu::advise_huge_pages`).
        let mut fresh = Vec::with_capacity(capacity);
        crate::cpu::advise_huge_pages(fresh.spare_capacity_mut());
        fresh.resize(capacity, EMPTY_NODE);
        let old = std::mem::replace(&mut self.nodes, fresh);
        let old_children = std::mem::replace(&mut self.exact_children, ChildCounts::new(capacity));
        let mut moved = vec![NONE; old.len()];
        for (id, node) in old.iter().enumerate().filter(|(_, n)| n.is_live()) {
            let home = home_slot(node.tag, capacity);
            let (mut i, mut distance) = (home, 0);
            while self.nodes[i].kind() != KEY_EMPTY {
                i = next_slot(i, capacity);
                distance += 1;
            }
            self.put(i, home, distance, *node);
            self.exact_children.set(i, old_children.get(id));
            moved[id] = i as u32;
        }
        let relink = |id: u32| if id == NONE { NONE } else { moved[id as usize] };
        for node in self.nodes.iter_mut().filter(|n| n.is_live()) {
            node.parent = relink(node.parent);
            node.plus = relink(node.plus);
            node.hash = relink(node.hash);
        }
        self.root = relink(self.root);
        self.tombstones = 0;
        if self.long_garbage > 0 {
            self.compact_long_text();
        }
    }

    /// Puts a new node with path hash `hash` into the first free slot of its probe run (room
    /// was reserved) and returns its id.
    fn place(&mut self, hash: u64, parent: u32, key: [u8; 12]) -> u32 {
        let capacity = self.nodes.len();
        let home = home_slot(hash as u32, capacity);
        let (mut i, mut distance) = (home, 0);
        while self.nodes[i].is_live() {
            i = next_slot(i, capacity);
            distance += 1;
        }
        if self.nodes[i].kind() == KEY_TOMBSTONE {
            self.tombstones -= 1;
        }
        let node = Node {
            tag: hash as u32,
            parent,
            key,
            ..EMPTY_NODE
        };
        self.put(i, home, distance, node);
        self.exact_children.set(i, 0);
        self.live += 1;
        i as u32
    }
}

impl<S: PartialEq, V> SubscriptionIndex<S, V> {
    /// An empty index.
    pub fn new() -> Self {
        let hasher = PathHasher::new();
        let mut index = SubscriptionIndex {
            nodes: vec![EMPTY_NODE; 8],
            exact_children: ChildCounts::new(8),
            root: NONE,
            live: 0,
            tombstones: 0,
            long_text: Vec::new(),
            long_garbage: 0,
            subscribers: Vec::new(),
            free_subscribers: Vec::new(),
            hasher,
            len: 0,
        };
        index.root = index.place(hasher.root(), NONE, marker_key(KEY_ROOT));
        index
    }

    /// Number of (filter, subscriber) subscriptions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the index holds no subscription.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of trie nodes in use (for capacity planning).
    pub fn node_count(&self) -> usize {
        self.live
    }

    /// The child of `node` (path hash `hash`) at filter level `level` and the child's path
    /// hash, if it exists.
    fn child(&self, node: u32, hash: u64, level: &[u8]) -> Option<(u32, u64)> {
        let n = &self.nodes[node as usize];
        let (c, h) = match level {
            b"+" => (n.plus, self.hasher.plus(hash)),
            b"#" => (n.hash, self.hasher.hash_child(hash)),
            _ => {
                let h = self.hasher.child(hash, level);
                (
                    self.exact_child(node, h, level, inline_key(level).as_ref()),
                    h,
                )
            }
        };
        (c != NONE).then_some((c, h))
    }

    /// Like [`Self::child`], creating the child if needed (room must have been reserved).
    fn child_or_insert(&mut self, node: u32, hash: u64, level: &[u8]) -> (u32, u64) {
        if let Some(found) = self.child(node, hash, level) {
            return found;
        }
        match level {
            b"+" => {
                let h = self.hasher.plus(hash);
                let c = self.place(h, node, marker_key(KEY_PLUS));
                self.nodes[node as usize].plus = c;
                (c, h)
            }
            b"#" => {
                let h = self.hasher.hash_child(hash);
                let c = self.place(h, node, marker_key(KEY_HASH));
                self.nodes[node as usize].hash = c;
                (c, h)
            }
            _ => {
                let key = match inline_key(level) {
                    Some(key) => key,
                    None => {
                        let offset = u32::try_from(self.long_text.len())
                            .expect("less than 4 GiB of long level text");
                        let len = u16::try_from(level.len())
                            .expect("a level of a valid filter is shorter than 64 KiB");
                        self.long_text.extend_from_slice(level);
                        long_key(offset, len)
                    }
                };
                let h = self.hasher.child(hash, level);
                let c = self.place(h, node, key);
                self.exact_children.increment(node as usize);
                self.nodes[node as usize].key[0] |= HAS_CHILDREN;
                (c, h)
            }
        }
    }

    /// Adds `subscriber` to `filter` with `value`. If the subscriber already has this exact
    /// filter (in the same share group, for a shared subscription) its value is replaced and the
    /// old value returned, as MQTT requires for a repeated SUBSCRIBE [MQTT-3.8.4-3].
    pub fn insert(&mut self, filter: &TopicFilter, subscriber: S, value: V) -> Option<V> {
        let path = filter.inner().as_bytes();
        self.reserve(path.iter().filter(|&&b| b == b'/').count() + 1);
        let mut node = self.root;
        let mut hash = self.hasher.root();
        let mut rest = Some(path);
        while let Some(r) = rest {
            let (level, next) = split_level(r);
            (node, hash) = self.child_or_insert(node, hash, level);
            rest = next;
        }
        let mut slot = self.nodes[node as usize].subs;
        if slot == NO_SUBS {
            slot = if let Some(free) = self.free_subscribers.pop() {
                free
            } else {
                self.subscribers.push(Subscribers::EMPTY);
                u32::try_from(self.subscribers.len() - 1)
                    .expect("fewer than 2^32 - 1 subscribed filters")
            };
            self.nodes[node as usize].subs = slot;
        }
        let subs = &mut self.subscribers[slot as usize];
        match filter.share_group() {
            None => {
                if let Some(entry) = subs.direct_mut().iter_mut().find(|(s, _)| *s == subscriber) {
                    return Some(std::mem::replace(&mut entry.1, value));
                }
                subs.push_direct((subscriber, value));
            }
            Some(group) => {
                let groups = &mut subs.several().shared;
                let members = match groups.iter().position(|(g, _)| &**g == group) {
                    Some(i) => &mut groups[i].1,
                    None => {
                        groups.push((group.into(), Vec::new()));
                        &mut groups.last_mut().expect("just pushed").1
                    }
                };
                if let Some(entry) = members.iter_mut().find(|(s, _)| *s == subscriber) {
                    return Some(std::mem::replace(&mut entry.1, value));
                }
                members.push((subscriber, value));
            }
        }
        self.len += 1;
        None
    }

    /// Removes `subscriber` from `filter`; returns its value if it was subscribed. Branches left
    /// without subscriptions are freed.
    pub fn remove(&mut self, filter: &TopicFilter, subscriber: &S) -> Option<V> {
        // The nodes from the root down (ids stay valid: nothing is inserted meanwhile).
        let mut path: Vec<u32> = Vec::new();
        let mut node = self.root;
        let mut hash = self.hasher.root();
        let mut rest = Some(filter.inner().as_bytes());
        while let Some(r) = rest {
            let (level, next) = split_level(r);
            (node, hash) = self.child(node, hash, level)?;
            path.push(node);
            rest = next;
        }
        let slot = self.nodes[node as usize].subs;
        let subs = self.subscribers.get_mut(slot as usize)?;
        let removed = match filter.share_group() {
            None => {
                let i = subs.direct().iter().position(|(s, _)| s == subscriber)?;
                subs.swap_remove_direct(i)
            }
            Some(group) => {
                let gi = subs.groups().iter().position(|(g, _)| &**g == group)?;
                let i = subs.groups()[gi]
                    .1
                    .iter()
                    .position(|(s, _)| s == subscriber)?;
                let groups = &mut subs.several().shared;
                let members = &mut groups[gi].1;
                let v = members.swap_remove(i).1;
                if members.is_empty() {
                    groups.swap_remove(gi);
                }
                subs.shrink();
                v
            }
        };
        if subs.is_empty() {
            self.nodes[node as usize].subs = NO_SUBS;
            self.free_subscribers.push(slot);
        }
        self.len -= 1;
        self.prune(&path);
        Some(removed)
    }

    /// Frees the nodes at the end of `path` (below the root) that no longer lead anywhere,
    /// leaving tombstones in their slots.
    fn prune(&mut self, path: &[u32]) {
        for &node in path.iter().rev() {
            let n = self.nodes[node as usize];
            let unused = n.subs == NO_SUBS
                && n.plus == NONE
                && n.hash == NONE
                && self.exact_children.get(node as usize) == 0;
            if !unused {
                return;
            }
            let parent = n.parent as usize;
            match n.kind() {
                KEY_PLUS => self.nodes[parent].plus = NONE,
                KEY_HASH => self.nodes[parent].hash = NONE,
                kind => {
                    if self.exact_children.decrement(parent) == 0 {
                        self.nodes[parent].key[0] &= !HAS_CHILDREN;
                    }
                    if kind == KEY_LONG {
                        self.long_garbage += long_range(&n.key).len();
                        if self.long_garbage == self.long_text.len() {
                            self.long_text.clear();
                            self.long_garbage = 0;
                        } else if self.long_garbage
                            > (self.long_text.len() / 2).max(self.nodes.len())
                        {
                            // The scan of the table is paid for by at least as many bytes freed.
                            self.compact_long_text();
                        }
                    }
                }
            }
            let reach = n.key[REACH];
            self.nodes[node as usize] = Node {
                key: marker_key(KEY_TOMBSTONE),
                ..EMPTY_NODE
            };
            self.nodes[node as usize].key[REACH] = reach;
            self.live -= 1;
            self.tombstones += 1;
        }
    }

    /// A subscriber with several overlapping filters appears once per filter (MQTT 5.0 §4.7 lets
    /// the broker deliver once per subscription or merge them).
    pub fn matches(&self, topic: &TopicName) -> Vec<Match<'_, S, V>> {
        let mut out = Vec::new();
        self.for_each_match(topic, |m| out.push(m));
        out
    }

    /// Calls `f` for every match of `topic` (no allocation).
    pub fn for_each_match<'a>(&'a self, topic: &TopicName, mut f: impl FnMut(Match<'a, S, V>)) {
        self.walk(topic.as_bytes(), topic.is_dollar(), &mut f);
    }

    /// Whether any subscription matches `topic`.
    pub fn has_match(&self, topic: &TopicName) -> bool {
        let mut any = false;
        self.for_each_match(topic, |_| any = true);
        any
    }

    fn emit<'a>(&'a self, subs: u32, f: &mut impl FnMut(Match<'a, S, V>)) {
        if let Some(subs) = self.subscribers.get(subs as usize) {
            for (subscriber, value) in subs.direct() {
                f(Match::Direct { subscriber, value });
            }
            for (group, members) in subs.groups() {
                f(Match::Shared { group, members });
            }
        }
    }

    /// Depth-first walk of the trie along `topic`, with an explicit stack: a topic of 64 KiB
    /// has up to 32,768 levels, and a recursion that deep would overflow a thread's stack. The
    /// first [`INLINE_PENDING`] pending nodes live on the stack, so ordinary topics allocate
    /// nothing; deeper walks spill into a vector.
    ///
    /// Matching nodes' subscriber slots are collected first and reported after the walk (or
    /// when [`FOUND`] of them are waiting): the walk then never waits for a subscriber entry to
    /// arrive from memory, and the entries' loads overlap each other.
    fn walk<'a>(&'a self, topic: &[u8], dollar: bool, f: &mut impl FnMut(Match<'a, S, V>)) {
        let mut found = [NO_SUBS; FOUND];
        let mut n_found = 0;
        let mut collect = |subs: u32| {
            if subs != NO_SUBS {
                if n_found == FOUND {
                    for &s in &found {
                        self.emit(s, f);
                    }
                    n_found = 0;
                }
                found[n_found] = subs;
                n_found += 1;
            }
        };
        let mut pending = Pending::new((self.root, self.hasher.root(), Some(topic)));
        while let Some((node, hash, rest)) = pending.pop() {
            let n = &self.nodes[node as usize];
            let Some(rest) = rest else {
                collect(n.subs);
                // "sport/#" also matches "sport" (MQTT 5.0 §4.7.1.2).
                if n.hash != NONE {
                    collect(self.nodes[n.hash as usize].subs);
                }
                continue;
            };
            let (level, next) = split_level(rest);
            // The exact child is pushed first so the `+` branch is walked first.
            if n.has_children() {
                let h = self.hasher.child(hash, level);
                let child = self.exact_child(node, h, level, inline_key(level).as_ref());
                if child != NONE {
                    pending.push((child, h, next));
                }
            }
            // [MQTT-4.7.2-1]: wildcards at the first level do not match topics starting with '$'.
            if !(node == self.root && dollar) {
                if n.hash != NONE {
                    collect(self.nodes[n.hash as usize].subs);
                }
                if n.plus != NONE {
                    pending.push((n.plus, self.hasher.plus(hash), next));
                }
            }
        }
        for &s in &found[..n_found] {
            self.emit(s, f);
        }
    }
}

/// Matching subscriber slots a walk collects before reporting them.
const FOUND: usize = 16;

/// Pending nodes kept on the stack before a walk spills into a vector.
const INLINE_PENDING: usize = 16;

/// A node still to visit, its path hash and the rest of the topic after its level (`None`: the
/// topic ended).
type Visit<'t> = (u32, u64, Option<&'t [u8]>);

/// A LIFO stack of visits: the first [`INLINE_PENDING`] in an array, the rest in a vector that
/// is only allocated for topics deeper than that. Invariant: `spill` is non-empty only while
/// `inline` is full, so popping `spill` first keeps the order last-in, first-out.
struct Pending<'t> {
    inline: [Visit<'t>; INLINE_PENDING],
    len: usize,
    spill: Vec<Visit<'t>>,
}

impl<'t> Pending<'t> {
    fn new(first: Visit<'t>) -> Self {
        let mut inline = [(NONE, 0, None); INLINE_PENDING];
        inline[0] = first;
        Pending {
            inline,
            len: 1,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, visit: Visit<'t>) {
        if let Some(slot) = self.inline.get_mut(self.len) {
            *slot = visit;
            self.len += 1;
        } else {
            self.spill.push(visit);
        }
    }

    fn pop(&mut self) -> Option<Visit<'t>> {
        if let Some(visit) = self.spill.pop() {
            return Some(visit);
        }
        self.len = self.len.checked_sub(1)?;
        Some(self.inline[self.len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> TopicFilter {
        TopicFilter::new(s).unwrap()
    }
    fn t(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }
    fn direct(index: &SubscriptionIndex<u32, ()>, topic: &str) -> Vec<u32> {
        let mut v: Vec<u32> = index
            .matches(&t(topic))
            .into_iter()
            .filter_map(|m| match m {
                Match::Direct { subscriber, .. } => Some(*subscriber),
                Match::Shared { .. } => None,
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn matches_exact_plus_and_hash_filters() {
        let mut ix = SubscriptionIndex::new();
        ix.insert(&f("a/b/c"), 1, ());
        ix.insert(&f("a/+/c"), 2, ());
        ix.insert(&f("a/#"), 3, ());
        ix.insert(&f("#"), 4, ());
        ix.insert(&f("+/+/+"), 5, ());
        ix.insert(&f("a/b"), 6, ());
        assert_eq!(direct(&ix, "a/b/c"), [1, 2, 3, 4, 5]);
        assert_eq!(direct(&ix, "a/x/c"), [2, 3, 4, 5]);
        assert_eq!(direct(&ix, "a"), [3, 4]);
        assert_eq!(direct(&ix, "a/b"), [3, 4, 6]);
        assert_eq!(direct(&ix, "b/b/c"), [4, 5]);
        assert_eq!(direct(&ix, "a//c"), [2, 3, 4, 5]);
    }

    #[test]
    fn dollar_topics_skip_leading_wildcards() {
        let mut ix = SubscriptionIndex::new();
        ix.insert(&f("#"), 1, ());
        ix.insert(&f("+/uptime"), 2, ());
        ix.insert(&f("$SYS/#"), 3, ());
        ix.insert(&f("$SYS/+"), 4, ());
        assert_eq!(direct(&ix, "$SYS/uptime"), [3, 4]);
        assert_eq!(direct(&ix, "x/uptime"), [1, 2]);
    }

    #[test]
    fn reports_shared_groups_once_with_all_members() {
        let mut ix = SubscriptionIndex::new();
        ix.insert(&f("$share/g/a/+"), 1, ());
        ix.insert(&f("$share/g/a/+"), 2, ());
        ix.insert(&f("$share/h/a/+"), 3, ());
        ix.insert(&f("a/+"), 4, ());
        let m = ix.matches(&t("a/b"));
        assert_eq!(m.len(), 3);
        assert!(
            m.iter()
                .any(|m| matches!(m, Match::Shared { group: "g", members } if members.len() == 2))
        );
        assert!(
            m.iter()
                .any(|m| matches!(m, Match::Shared { group: "h", members } if members.len() == 1))
        );
        assert_eq!(ix.remove(&f("$share/g/a/+"), &1), Some(()));
        assert_eq!(ix.remove(&f("$share/g/a/+"), &1), None);
        assert_eq!(ix.len(), 3);
    }

    #[test]
    fn insert_replaces_value_of_same_subscriber_and_filter() {
        let mut ix = SubscriptionIndex::new();
        assert_eq!(ix.insert(&f("a/b"), 1u32, 10u8), None);
        assert_eq!(ix.insert(&f("a/b"), 1, 11), Some(10));
        assert_eq!(ix.len(), 1);
        assert!(matches!(
            ix.matches(&t("a/b"))[..],
            [Match::Direct { value: 11, .. }]
        ));
    }

    /// Regression: a filter and a topic of 32,768 levels each (both fit in one 64 KiB string)
    /// once made `matches` recurse once per level and overflow the stack.
    #[test]
    fn matching_a_topic_with_tens_of_thousands_of_levels_does_not_overflow_the_stack() {
        let mut index = SubscriptionIndex::new();
        let deep_filter = vec!["+"; 32_768].join("/");
        index.insert(&f(&deep_filter), 1u32, ());
        let deep_exact = vec!["a"; 32_768].join("/");
        index.insert(&f(&deep_exact), 2u32, ());
        index.insert(&f(&format!("{}/#", vec!["+"; 32_000].join("/"))), 3u32, ());
        let mut hits = direct(&index, &deep_exact);
        hits.sort_unstable();
        assert_eq!(hits, vec![1, 2, 3]);
        assert!(direct(&index, &vec!["b"; 40].join("/")).is_empty());
        // Removing the deep filters frees their nodes without recursing either.
        index.remove(&f(&deep_filter), &1);
        index.remove(&f(&deep_exact), &2);
        assert_eq!(direct(&index, &deep_exact), vec![3]);
    }

    #[test]
    fn a_node_with_more_than_255_exact_children_is_pruned_after_the_last_one_goes() {
        let mut ix: SubscriptionIndex<u32, ()> = SubscriptionIndex::new();
        let filters: Vec<TopicFilter> = (0..600).map(|i| f(&format!("things/dev-{i}"))).collect();
        for (i, filter) in filters.iter().enumerate() {
            ix.insert(filter, i as u32, ());
        }
        for (i, filter) in filters.iter().enumerate().skip(1) {
            assert_eq!(ix.remove(filter, &(i as u32)), Some(()));
        }
        assert_eq!(direct(&ix, "things/dev-0"), vec![0]);
        assert_eq!(ix.node_count(), 3, "root, things, dev-0");
        assert_eq!(ix.remove(&filters[0], &0), Some(()));
        assert_eq!(ix.node_count(), 1);
        assert!(ix.exact_children.large.is_empty());
        assert!(ix.is_empty());
    }

    #[test]
    fn shared_and_direct_subscribers_of_one_filter_come_and_go_independently() {
        let mut ix: SubscriptionIndex<u32, ()> = SubscriptionIndex::new();
        ix.insert(&f("a/b"), 1, ());
        ix.insert(&f("$share/g/a/b"), 2, ());
        ix.insert(&f("a/b"), 3, ());
        assert_eq!(ix.remove(&f("a/b"), &1), Some(()));
        assert_eq!(ix.remove(&f("a/b"), &3), Some(()));
        assert!(direct(&ix, "a/b").is_empty());
        assert!(ix.has_match(&TopicName::new("a/b").unwrap()));
        ix.insert(&f("a/b"), 4, ());
        assert_eq!(ix.remove(&f("$share/g/a/b"), &2), Some(()));
        assert_eq!(direct(&ix, "a/b"), vec![4]);
        assert_eq!(ix.remove(&f("a/b"), &4), Some(()));
        assert!(ix.is_empty());
        assert_eq!(ix.node_count(), 1);
    }

    #[test]
    fn long_levels_still_match_after_removed_ones_are_compacted_away() {
        let mut ix: SubscriptionIndex<u32, ()> = SubscriptionIndex::new();
        let filters: Vec<TopicFilter> = (0..4000)
            .map(|i| f(&format!("things/3f2a9c1e-{i:04}-4b7d-9e21-c0ffee{i:06}/+")))
            .collect();
        for (i, filter) in filters.iter().enumerate() {
            ix.insert(filter, i as u32, ());
        }
        let full = ix.long_text.len();
        for (i, filter) in filters.iter().enumerate().filter(|(i, _)| i % 4 != 0) {
            assert_eq!(ix.remove(filter, &(i as u32)), Some(()));
        }
        assert!(ix.long_text.len() < full, "removed levels were reclaimed");
        for i in 0..4000u32 {
            let topic = format!("things/3f2a9c1e-{i:04}-4b7d-9e21-c0ffee{i:06}/x");
            let want = if i % 4 == 0 { vec![i] } else { vec![] };
            assert_eq!(direct(&ix, &topic), want, "{topic}");
        }
    }

    #[test]
    fn remove_frees_nodes_and_levels() {
        let mut ix: SubscriptionIndex<u32, ()> = SubscriptionIndex::new();
        ix.insert(&f("a/b/c/d"), 1, ());
        ix.insert(&f("a/+/#"), 2, ());
        ix.insert(&f("x/y"), 3, ());
        assert_eq!(ix.remove(&f("a/b/c/d"), &1), Some(()));
        assert_eq!(ix.remove(&f("a/+/#"), &2), Some(()));
        assert_eq!(ix.remove(&f("x/y"), &3), Some(()));
        assert_eq!(ix.remove(&f("x/y"), &3), None);
        assert_eq!(ix.node_count(), 1);
        assert_eq!(ix.live, 1);
        assert!(ix.long_text.is_empty());
        assert_eq!(ix.free_subscribers.len(), ix.subscribers.len());
        assert!(ix.is_empty());
        // Freed slots are reused: the arena does not grow.
        let arena = ix.nodes.len();
        ix.insert(&f("q/r"), 4, ());
        assert_eq!(direct(&ix, "q/r"), [4]);
        assert_eq!(ix.nodes.len(), arena);
    }

    /// With every path hash equal, each lookup walks one long probe run: matches must still
    /// come only from the verified parent and level text, and removals must keep the run intact.
    #[test]
    fn colliding_path_hashes_never_produce_wrong_matches() {
        let mut ix: SubscriptionIndex<u32, ()> = SubscriptionIndex::new();
        ix.hasher.collide = true;
        let long = "a-level-longer-than-eleven-bytes";
        let filters = [
            "a/b/c".to_string(),
            "a/c/b".to_string(),
            "b/a/c".to_string(),
            "a/+/c".to_string(),
            format!("{long}/x"),
            format!("{long}x/x"),
            format!("a/{long}"),
            "a/b".to_string(),
            "a".to_string(),
            "c/#".to_string(),
        ];
        let topics = [
            "a/b/c".to_string(),
            "a/c/b".to_string(),
            "b/a/c".to_string(),
            "a/x/c".to_string(),
            format!("{long}/x"),
            format!("{long}x/x"),
            format!("a/{long}"),
            format!("a/{long}/c"),
            "a/b".to_string(),
            "a".to_string(),
            "c/a/b".to_string(),
            "b/b/c".to_string(),
        ];
        let check = |ix: &SubscriptionIndex<u32, ()>, live: &[bool]| {
            for topic in &topics {
                let expected: Vec<u32> = (0..filters.len() as u32)
                    .filter(|&i| live[i as usize] && f(&filters[i as usize]).matches(&t(topic)))
                    .collect();
                assert_eq!(direct(ix, topic), expected, "topic {topic}");
            }
        };
        let mut live = vec![false; filters.len()];
        for (i, filter) in filters.iter().enumerate() {
            ix.insert(&f(filter), i as u32, ());
            live[i] = true;
            check(&ix, &live);
        }
        // Remove in an order that leaves holes in the middle of the probe run.
        for i in [3, 0, 6, 9, 1, 4, 8, 2, 7, 5] {
            assert_eq!(ix.remove(&f(&filters[i]), &(i as u32)), Some(()));
            live[i] = false;
            check(&ix, &live);
        }
        assert!(ix.is_empty());
        assert_eq!(ix.node_count(), 1);
        assert_eq!(ix.nodes.iter().filter(|n| n.is_live()).count(), 1);
        assert!(!ix.nodes[ix.root as usize].has_children());
    }

    #[test]
    fn a_node_is_half_a_cache_line() {
        assert_eq!(std::mem::size_of::<Node>(), 32);
        assert_eq!(std::mem::align_of::<Node>(), 32);
    }

    #[test]
    fn reports_every_match_when_more_match_than_the_walk_collects_at_once() {
        // Every filter that matches "a/b/c/d": each level literal or `+`, optionally cut short
        // by `#` (32 filters, so 32 subscriber slots, twice what a walk collects at once).
        let levels = ["a", "b", "c", "d"];
        let mut filters = Vec::new();
        for depth in 0..=4 {
            for mask in 0..(1u32 << depth) {
                let mut parts: Vec<&str> = (0..depth)
                    .map(|l| if mask & (1 << l) != 0 { "+" } else { levels[l] })
                    .collect();
                if depth < 4 {
                    parts.push("#");
                    filters.push(parts.join("/"));
                } else {
                    filters.push(parts.join("/"));
                }
            }
        }
        filters.push("a/b/c/d/#".to_string());
        assert!(filters.len() >= 2 * FOUND);
        let mut ix: SubscriptionIndex<u32, ()> = SubscriptionIndex::new();
        for (i, filter) in filters.iter().enumerate() {
            ix.insert(&f(filter), i as u32, ());
            ix.insert(&f(&format!("$share/g/{filter}")), i as u32, ());
        }
        let expected: Vec<u32> = (0..filters.len() as u32).collect();
        assert_eq!(direct(&ix, "a/b/c/d"), expected);
        let shared = ix
            .matches(&t("a/b/c/d"))
            .into_iter()
            .filter(|m| matches!(m, Match::Shared { .. }))
            .count();
        assert_eq!(shared, filters.len());
    }

    #[test]
    fn churn_reuses_the_table_instead_of_growing_it() {
        let mut ix: SubscriptionIndex<u32, ()> = SubscriptionIndex::new();
        let mut capacity = None;
        for round in 0..6u32 {
            for i in 0..2_000u32 {
                ix.insert(&f(&format!("fleet/site-{}/dev-{i}/r{round}", i % 7)), i, ());
            }
            assert_eq!(direct(&ix, &format!("fleet/site-3/dev-10/r{round}")), [10]);
            for i in 0..2_000u32 {
                let filter = f(&format!("fleet/site-{}/dev-{i}/r{round}", i % 7));
                assert_eq!(ix.remove(&filter, &i), Some(()));
            }
            assert_eq!(ix.node_count(), 1);
            assert!(direct(&ix, &format!("fleet/site-3/dev-10/r{round}")).is_empty());
            let now = ix.nodes.len();
            assert!(
                capacity.is_none_or(|c| now <= c),
                "table grew from {capacity:?} to {now}"
            );
            capacity = Some(now);
        }
    }
}
