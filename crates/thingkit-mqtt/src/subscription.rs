//! The subscription index: a topic trie mapping filters to subscribers (MQTT 5.0 §4.7, §4.8.2).
//!
//! [`SubscriptionIndex`] answers "who receives a message published to this topic" in time that
//! depends on the topic's depth and on the wildcard branches that actually exist along it, never on
//! the number of exact filters: each level costs one lookup of the level string and one lookup of
//! the (node, level) edge, plus a visit of the node's `+` and `#` children when present.
//!
//! Memory is kept small for millions of filters: nodes live in one arena (`Vec`) and are 32 bytes;
//! exact children are entries of one edge table keyed by (parent node, interned level), and each
//! distinct level string is stored once. Removing the last subscription of a branch frees its
//! nodes and releases its level strings, so churn does not grow the index.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Arc;

use crate::topic::{TopicFilter, TopicName};

const NONE: u32 = 0; // the root is node 0 and is never anyone's child, so 0 means "no child"
const LEVEL_PLUS: u32 = u32::MAX;
const LEVEL_HASH: u32 = u32::MAX - 1;

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

#[derive(Debug, Clone)]
struct Node<S, V> {
    parent: u32,
    level: u32,
    plus: u32,
    hash: u32,
    exact_children: u32,
    subs: Option<Box<Subscribers<S, V>>>,
}

#[derive(Debug, Clone)]
struct Subscribers<S, V> {
    direct: Vec<(S, V)>,
    shared: Vec<SharedGroup<S, V>>,
}

/// A share name and the group's members.
type SharedGroup<S, V> = (Box<str>, Vec<(S, V)>);

/// A fast hasher for the edge table's integer keys, seeded per index so the layout is not
/// predictable from outside.
#[derive(Clone)]
struct EdgeHash {
    seed: u64,
}

impl BuildHasher for EdgeHash {
    type Hasher = EdgeHasher;
    fn build_hasher(&self) -> EdgeHasher {
        EdgeHasher(self.seed)
    }
}

struct EdgeHasher(u64);

impl Hasher for EdgeHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, k: u64) {
        let m = u128::from(k ^ self.0) * 0x9E37_79B9_7F4A_7C15_u128;
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }
}

/// A subscription trie from topic filters to subscribers `S` with per-subscription values `V`.
///
/// Matching costs one level-string lookup and one edge lookup per topic level, plus the `+`/`#`
/// branches that exist, and one step per reported match. `insert` and `remove` walk the filter's
/// levels and then scan the subscribers of that one filter (linear in their number: a filter with
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
    nodes: Vec<Node<S, V>>,
    free_nodes: Vec<u32>,
    edges: HashMap<u64, u32, EdgeHash>,
    level_ids: HashMap<Arc<[u8]>, u32, RandomState>,
    level_names: Vec<Option<(Arc<[u8]>, u32)>>,
    free_levels: Vec<u32>,
    len: usize,
}

impl<S, V> std::fmt::Debug for SubscriptionIndex<S, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionIndex")
            .field("subscriptions", &self.len)
            .field("nodes", &(self.nodes.len() - self.free_nodes.len()))
            .field("levels", &self.level_ids.len())
            .finish()
    }
}

impl<S: PartialEq, V> Default for SubscriptionIndex<S, V> {
    fn default() -> Self {
        Self::new()
    }
}

fn split_level(rest: &[u8]) -> (&[u8], Option<&[u8]>) {
    match rest.iter().position(|&b| b == b'/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    }
}

impl<S: PartialEq, V> SubscriptionIndex<S, V> {
    /// An empty index.
    pub fn new() -> Self {
        let root = Node {
            parent: NONE,
            level: NONE,
            plus: NONE,
            hash: NONE,
            exact_children: 0,
            subs: None,
        };
        SubscriptionIndex {
            nodes: vec![root],
            free_nodes: Vec::new(),
            edges: HashMap::with_hasher(EdgeHash {
                seed: RandomState::new().hash_one(0x7468_696e_676b_6974_u64),
            }),
            level_ids: HashMap::default(),
            level_names: Vec::new(),
            free_levels: Vec::new(),
            len: 0,
        }
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
        self.nodes.len() - self.free_nodes.len()
    }

    fn edge_key(parent: u32, level: u32) -> u64 {
        (u64::from(parent) << 32) | u64::from(level)
    }

    fn new_node(&mut self, parent: u32, level: u32) -> u32 {
        let node = Node {
            parent,
            level,
            plus: NONE,
            hash: NONE,
            exact_children: 0,
            subs: None,
        };
        if let Some(id) = self.free_nodes.pop() {
            self.nodes[id as usize] = node;
            id
        } else {
            self.nodes.push(node);
            u32::try_from(self.nodes.len() - 1).expect("the index holds fewer than 2^32 - 2 nodes")
        }
    }

    fn intern(&mut self, level: &[u8]) -> u32 {
        if let Some(&id) = self.level_ids.get(level) {
            if let Some(Some((_, refs))) = self.level_names.get_mut(id as usize) {
                *refs += 1;
            }
            return id;
        }
        let name: Arc<[u8]> = Arc::from(level);
        let id = if let Some(id) = self.free_levels.pop() {
            self.level_names[id as usize] = Some((name.clone(), 1));
            id
        } else {
            self.level_names.push(Some((name.clone(), 1)));
            u32::try_from(self.level_names.len() - 1).expect("fewer than 2^32 - 2 distinct levels")
        };
        self.level_ids.insert(name, id);
        id
    }

    fn release_level(&mut self, id: u32) {
        let slot = &mut self.level_names[id as usize];
        if let Some((name, refs)) = slot {
            *refs -= 1;
            if *refs == 0 {
                self.level_ids.remove(&**name);
                *slot = None;
                self.free_levels.push(id);
            }
        }
    }

    fn child(&self, node: u32, level: &[u8]) -> Option<u32> {
        match level {
            b"+" => Some(self.nodes[node as usize].plus).filter(|&c| c != NONE),
            b"#" => Some(self.nodes[node as usize].hash).filter(|&c| c != NONE),
            _ => {
                let id = *self.level_ids.get(level)?;
                self.edges.get(&Self::edge_key(node, id)).copied()
            }
        }
    }

    fn child_or_insert(&mut self, node: u32, level: &[u8]) -> u32 {
        if let Some(c) = self.child(node, level) {
            return c;
        }
        match level {
            b"+" => {
                let c = self.new_node(node, LEVEL_PLUS);
                self.nodes[node as usize].plus = c;
                c
            }
            b"#" => {
                let c = self.new_node(node, LEVEL_HASH);
                self.nodes[node as usize].hash = c;
                c
            }
            _ => {
                let id = self.intern(level);
                let c = self.new_node(node, id);
                self.edges.insert(Self::edge_key(node, id), c);
                self.nodes[node as usize].exact_children += 1;
                c
            }
        }
    }

    /// Adds `subscriber` to `filter` with `value`. If the subscriber already has this exact
    /// filter (in the same share group, for a shared subscription) its value is replaced and the
    /// old value returned, as MQTT requires for a repeated SUBSCRIBE [MQTT-3.8.4-3].
    pub fn insert(&mut self, filter: &TopicFilter, subscriber: S, value: V) -> Option<V> {
        let mut node = 0u32;
        let mut rest = Some(filter.inner().as_bytes());
        while let Some(r) = rest {
            let (level, next) = split_level(r);
            node = self.child_or_insert(node, level);
            rest = next;
        }
        let subs = self.nodes[node as usize].subs.get_or_insert_with(|| {
            Box::new(Subscribers {
                direct: Vec::new(),
                shared: Vec::new(),
            })
        });
        let list = match filter.share_group() {
            None => &mut subs.direct,
            Some(group) => match subs.shared.iter().position(|(g, _)| &**g == group) {
                Some(i) => &mut subs.shared[i].1,
                None => {
                    subs.shared.push((group.into(), Vec::new()));
                    &mut subs.shared.last_mut().expect("just pushed").1
                }
            },
        };
        if let Some(slot) = list.iter_mut().find(|(s, _)| *s == subscriber) {
            return Some(std::mem::replace(&mut slot.1, value));
        }
        list.push((subscriber, value));
        self.len += 1;
        None
    }

    /// Removes `subscriber` from `filter`; returns its value if it was subscribed. Branches left
    /// without subscriptions are freed.
    pub fn remove(&mut self, filter: &TopicFilter, subscriber: &S) -> Option<V> {
        let mut node = 0u32;
        let mut rest = Some(filter.inner().as_bytes());
        while let Some(r) = rest {
            let (level, next) = split_level(r);
            node = self.child(node, level)?;
            rest = next;
        }
        let subs = self.nodes[node as usize].subs.as_mut()?;
        let removed = match filter.share_group() {
            None => {
                let i = subs.direct.iter().position(|(s, _)| s == subscriber)?;
                subs.direct.swap_remove(i).1
            }
            Some(group) => {
                let gi = subs.shared.iter().position(|(g, _)| &**g == group)?;
                let members = &mut subs.shared[gi].1;
                let i = members.iter().position(|(s, _)| s == subscriber)?;
                let v = members.swap_remove(i).1;
                if members.is_empty() {
                    subs.shared.swap_remove(gi);
                }
                v
            }
        };
        if subs.direct.is_empty() && subs.shared.is_empty() {
            self.nodes[node as usize].subs = None;
        }
        self.len -= 1;
        self.prune(node);
        Some(removed)
    }

    fn prune(&mut self, mut node: u32) {
        while node != 0 {
            let n = &self.nodes[node as usize];
            if n.subs.is_some() || n.plus != NONE || n.hash != NONE || n.exact_children != 0 {
                return;
            }
            let (parent, level) = (n.parent, n.level);
            match level {
                LEVEL_PLUS => self.nodes[parent as usize].plus = NONE,
                LEVEL_HASH => self.nodes[parent as usize].hash = NONE,
                id => {
                    self.edges.remove(&Self::edge_key(parent, id));
                    self.nodes[parent as usize].exact_children -= 1;
                    self.release_level(id);
                }
            }
            self.free_nodes.push(node);
            node = parent;
        }
    }

    /// Every subscription whose filter matches `topic`, shared groups reported once per group.
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

    fn emit<'a>(&'a self, node: u32, f: &mut impl FnMut(Match<'a, S, V>)) {
        if let Some(subs) = &self.nodes[node as usize].subs {
            for (subscriber, value) in &subs.direct {
                f(Match::Direct { subscriber, value });
            }
            for (group, members) in &subs.shared {
                f(Match::Shared { group, members });
            }
        }
    }

    /// Depth-first walk of the trie along `topic`, with an explicit stack: a topic of 64 KiB
    /// has up to 32,768 levels, and a recursion that deep would overflow a thread's stack. The
    /// first [`INLINE_PENDING`] pending nodes live on the stack, so ordinary topics allocate
    /// nothing; deeper walks spill into a vector.
    fn walk<'a>(&'a self, topic: &[u8], dollar: bool, f: &mut impl FnMut(Match<'a, S, V>)) {
        let mut pending = Pending::new((0, Some(topic)));
        while let Some((node, rest)) = pending.pop() {
            let n = &self.nodes[node as usize];
            let Some(rest) = rest else {
                self.emit(node, f);
                // "sport/#" also matches "sport" (MQTT 5.0 §4.7.1.2).
                if n.hash != NONE {
                    self.emit(n.hash, f);
                }
                continue;
            };
            // The exact child is pushed first so the `+` branch is walked first, as before.
            if n.exact_children != 0 {
                let (level, next) = split_level(rest);
                if let Some(&id) = self.level_ids.get(level)
                    && let Some(&child) = self.edges.get(&Self::edge_key(node, id))
                {
                    pending.push((child, next));
                }
            }
            // [MQTT-4.7.2-1]: wildcards at the first level do not match topics starting with '$'.
            if !(node == 0 && dollar) {
                if n.hash != NONE {
                    self.emit(n.hash, f);
                }
                if n.plus != NONE {
                    let (_, next) = split_level(rest);
                    pending.push((n.plus, next));
                }
            }
        }
    }
}

/// Pending nodes kept on the stack before a walk spills into a vector.
const INLINE_PENDING: usize = 16;

/// A node still to visit and the rest of the topic after its level (`None`: the topic ended).
type Visit<'t> = (u32, Option<&'t [u8]>);

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
        let mut inline = [(0, None); INLINE_PENDING];
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
        assert!(ix.level_ids.is_empty());
        assert!(ix.edges.is_empty());
        assert!(ix.is_empty());
        // Freed slots are reused: the arena does not grow.
        let arena = ix.nodes.len();
        ix.insert(&f("q/r"), 4, ());
        assert_eq!(direct(&ix, "q/r"), [4]);
        assert_eq!(ix.nodes.len(), arena);
    }
}
