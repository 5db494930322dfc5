//! Durable storage of shadows behind [`ShadowStore`]: [`MemoryShadowStore`] for tests and
//! embedding, [`RedbShadowStore`] (feature `redb`) for the server.

use std::collections::BTreeMap;

use crate::error::StoreError;
use crate::stored::StoredShadow;
use crate::topic::ShadowKey;

#[cfg(feature = "test-suite")]
pub mod conformance;
#[cfg(all(test, not(feature = "test-suite")))]
pub(crate) mod conformance;
#[cfg(feature = "redb")]
mod redb;
#[cfg(feature = "redb")]
pub use self::redb::RedbShadowStore;

/// Where shadows are kept. Every implementation passes the same tests: `conformance::run`
/// and `conformance::reopen` (cargo feature `test-suite`).
pub trait ShadowStore: Send {
    /// The stored value of `key`, documents and tombstones alike; `None` if never stored.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend fails or the record does not decode.
    fn get(&self, key: &ShadowKey) -> Result<Option<StoredShadow>, StoreError>;

    /// Stores `value` under `key`. It is durable when this returns `Ok` (for a file-backed
    /// store: the commit is on stable storage).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend fails; then nothing was stored.
    fn put(&mut self, key: &ShadowKey, value: &StoredShadow) -> Result<(), StoreError>;

    /// The names of `thing`'s named shadows that exist (not deleted), sorted; the classic
    /// shadow is not listed (ListNamedShadowsForThing).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend fails.
    fn list_named(&self, thing: &str) -> Result<Vec<String>, StoreError>;
}

/// A boxed store is a store: a server picks its backend (embedded or shared) at start-up.
impl<T: ShadowStore + ?Sized> ShadowStore for Box<T> {
    fn get(&self, key: &ShadowKey) -> Result<Option<StoredShadow>, StoreError> {
        (**self).get(key)
    }
    fn put(&mut self, key: &ShadowKey, value: &StoredShadow) -> Result<(), StoreError> {
        (**self).put(key, value)
    }
    fn list_named(&self, thing: &str) -> Result<Vec<String>, StoreError> {
        (**self).list_named(thing)
    }
}

/// Shadows in memory: (thing, shadow name or `""` for the classic shadow) → value.
#[derive(Debug, Default, Clone)]
pub struct MemoryShadowStore {
    shadows: BTreeMap<(String, String), StoredShadow>,
}

impl MemoryShadowStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

pub(crate) fn store_key(key: &ShadowKey) -> (&str, &str) {
    (key.thing.as_str(), key.name.as_deref().unwrap_or(""))
}

impl ShadowStore for MemoryShadowStore {
    fn get(&self, key: &ShadowKey) -> Result<Option<StoredShadow>, StoreError> {
        let (thing, name) = store_key(key);
        Ok(self
            .shadows
            .get(&(thing.to_owned(), name.to_owned()))
            .cloned())
    }

    fn put(&mut self, key: &ShadowKey, value: &StoredShadow) -> Result<(), StoreError> {
        let (thing, name) = store_key(key);
        self.shadows
            .insert((thing.to_owned(), name.to_owned()), value.clone());
        Ok(())
    }

    fn list_named(&self, thing: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .shadows
            .range((thing.to_owned(), String::new())..)
            .take_while(|((t, _), _)| t == thing)
            .filter(|((_, name), value)| !name.is_empty() && !value.is_deleted())
            .map(|((_, name), _)| name.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_passes_the_conformance_suite() {
        conformance::run(|| Box::new(MemoryShadowStore::new()));
    }

    #[cfg(feature = "redb")]
    #[test]
    fn redb_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut n = 0;
        conformance::run(|| {
            n += 1;
            Box::new(RedbShadowStore::open(dir.path().join(format!("{n}.redb"))).expect("open"))
        });
        let path = dir.path().join("reopened.redb");
        conformance::reopen(|| Box::new(RedbShadowStore::open(&path).expect("open")));
    }
}
