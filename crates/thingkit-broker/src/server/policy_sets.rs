//! Compiled policy sets shared by the connections whose identities have the same effective
//! policies.
//!
//! A [`PolicySet`] compiled from a fleet policy takes about 11 KiB; compiled once per
//! connection, it was the largest part of an idle connection's memory. Every device of a fleet
//! usually has the same effective policies (attached to its thing group), so connections share
//! one `Arc<PolicySet>` per list of (policy name, default version). The compilation depends on
//! nothing else (the broker's `SetOptions` are fixed), so sharing changes no decision.
//!
//! The key is the identity of the registry's `Arc`s of each policy name and version, which the
//! entry holds (so an address cannot be reused while its entry exists). A new default version
//! is a new `Arc`, hence a new key: connections made after a policy change compile the new
//! version, as before. Entries hold the set weakly; those no connection uses any more are
//! pruned as the map grows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use thingkit_policy::{PolicySet, SetOptions};
use thingkit_provision::EffectivePolicy;

/// Compiled policy sets by effective policies.
#[derive(Default)]
pub(crate) struct PolicySets {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Vec<(usize, usize)>, Entry>,
    /// Prune dead entries when the map reaches this size.
    prune_at: usize,
}

struct Entry {
    /// Keeps the key's addresses valid.
    _policies: Vec<EffectivePolicy>,
    set: Weak<PolicySet>,
}

fn key(policies: &[EffectivePolicy]) -> Vec<(usize, usize)> {
    policies
        .iter()
        .map(|p| {
            (
                Arc::as_ptr(&p.name).cast::<u8>() as usize,
                Arc::as_ptr(&p.version) as usize,
            )
        })
        .collect()
}

impl PolicySets {
    /// The compiled set of `policies`: shared with other connections when one is alive,
    /// otherwise compiled now (outside the lock) and remembered.
    pub(crate) fn get(
        &self,
        policies: &[EffectivePolicy],
        options: SetOptions,
    ) -> Result<Arc<PolicySet>, thingkit_policy::Error> {
        let key = key(policies);
        if let Some(set) = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .get(&key)
            .and_then(|e| e.set.upgrade())
        {
            return Ok(set);
        }
        let set = Arc::new(PolicySet::from_documents(
            policies
                .iter()
                .map(|p| (p.name.to_string(), &**p.version.document.parsed())),
            options,
        )?);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.map.len() >= inner.prune_at {
            inner.map.retain(|_, e| e.set.strong_count() > 0);
            inner.prune_at = (inner.map.len() * 2).max(64);
        }
        inner.map.insert(
            key,
            Entry {
                _policies: policies.to_vec(),
                set: Arc::downgrade(&set),
            },
        );
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thingkit_provision::{PolicyVersion, StoredPolicyDocument};

    const ALLOW_CONNECT: &str = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "iot:Connect", "Resource": "*"}]}"#;

    fn policy(name: &str, version_id: u32) -> EffectivePolicy {
        EffectivePolicy {
            name: name.into(),
            version: Arc::new(PolicyVersion {
                version_id,
                document: StoredPolicyDocument::parse(name, ALLOW_CONNECT)
                    .expect("a valid test policy"),
                created_at: 0,
            }),
        }
    }

    #[test]
    fn connections_with_the_same_policies_share_one_compiled_set() {
        let sets = PolicySets::default();
        let fleet = vec![policy("fleet", 1)];
        let a = sets.get(&fleet, SetOptions::default()).expect("compiles");
        let b = sets
            .get(&fleet.clone(), SetOptions::default())
            .expect("compiles");
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn a_new_default_version_compiles_a_new_set() {
        let sets = PolicySets::default();
        let v1 = sets
            .get(&[policy("fleet", 1)], SetOptions::default())
            .expect("compiles");
        let v2 = sets
            .get(&[policy("fleet", 2)], SetOptions::default())
            .expect("compiles");
        assert!(!Arc::ptr_eq(&v1, &v2));
    }

    #[test]
    fn unused_sets_are_released_and_pruned() {
        let sets = PolicySets::default();
        let fleet = vec![policy("fleet", 1)];
        let weak = Arc::downgrade(&sets.get(&fleet, SetOptions::default()).expect("compiles"));
        assert!(weak.upgrade().is_none(), "the cache holds sets weakly");
        for i in 0..200 {
            drop(sets.get(&[policy(&format!("p{i}"), 1)], SetOptions::default()));
        }
        let len = sets.inner.lock().expect("not poisoned").map.len();
        assert!(
            len < 128,
            "dead entries are pruned as the map grows ({len} left)"
        );
    }
}
