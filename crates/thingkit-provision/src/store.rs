//! Persistence for the registry: the [`RegistryStore`] trait and the in-memory store.
//!
//! The registry keeps its working state in memory and writes every change through a store as a
//! batch of [`StoreOp`]s. A store must apply a batch atomically (all or nothing) and, when
//! [`RegistryStore::commit`] returns `Ok`, the batch is *acknowledged*: a durable store must have
//! it on stable storage by then. Keys are UTF-8 strings such as `thing/sensor-1`; values are the
//! registry's own encoding of one record.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};

#[cfg(feature = "test-suite")]
pub mod conformance;
#[cfg(all(test, not(feature = "test-suite")))]
pub(crate) mod conformance;

/// One change in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// Insert or replace the record under `key`.
    Put {
        /// The record key.
        key: String,
        /// The encoded record.
        value: Vec<u8>,
    },
    /// Remove the record under `key` (no error if absent).
    Delete {
        /// The record key.
        key: String,
    },
}

/// Where a [`Registry`](crate::registry::Registry) keeps its records.
pub trait RegistryStore: Send + Sync {
    /// Calls `f` with every stored record, in key order. Used once, when a registry opens.
    fn for_each(&self, f: &mut dyn FnMut(&str, &[u8]) -> Result<()>) -> Result<()>;

    /// Reads one record.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Applies `ops` in order, atomically. When this returns `Ok` the batch is acknowledged; a
    /// durable store must not lose it afterwards, even if the process is killed.
    fn commit(&mut self, ops: &[StoreOp]) -> Result<()>;
}

/// A boxed store is a store: a server picks its backend (embedded or shared) at start-up.
impl<T: RegistryStore + ?Sized> RegistryStore for Box<T> {
    fn for_each(&self, f: &mut dyn FnMut(&str, &[u8]) -> Result<()>) -> Result<()> {
        (**self).for_each(f)
    }
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        (**self).get(key)
    }
    fn commit(&mut self, ops: &[StoreOp]) -> Result<()> {
        (**self).commit(ops)
    }
}

/// A store that keeps records in memory: fast, and gone when the last clone is dropped.
///
/// Clones share the same records, so a test can drop a registry and open a new one on a clone of
/// its store to see exactly what was acknowledged.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    records: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// The number of stored records.
    pub fn len(&self) -> usize {
        self.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Whether the store holds no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> Result<MutexGuard<'_, BTreeMap<String, Vec<u8>>>> {
        self.records
            .lock()
            .map_err(|_| Error::store("memory store lock poisoned"))
    }
}

impl RegistryStore for MemoryStore {
    fn for_each(&self, f: &mut dyn FnMut(&str, &[u8]) -> Result<()>) -> Result<()> {
        let records = self.lock()?;
        for (k, v) in records.iter() {
            f(k, v)?;
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.lock()?.get(key).cloned())
    }

    fn commit(&mut self, ops: &[StoreOp]) -> Result<()> {
        let mut records = self.lock()?;
        for op in ops {
            match op {
                StoreOp::Put { key, value } => {
                    records.insert(key.clone(), value.clone());
                }
                StoreOp::Delete { key } => {
                    records.remove(key);
                }
            }
        }
        Ok(())
    }
}

#[cfg(feature = "redb-store")]
pub use crate::durable::RedbStore;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_passes_the_conformance_suite() {
        conformance::run(|| Box::new(MemoryStore::new()));
        let shared = MemoryStore::new();
        conformance::reopen(|| Box::new(shared.clone()));
    }

    #[cfg(feature = "redb-store")]
    #[test]
    fn redb_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut n = 0;
        conformance::run(|| {
            n += 1;
            Box::new(RedbStore::open(dir.path().join(format!("{n}.redb"))).expect("open"))
        });
        let path = dir.path().join("reopened.redb");
        conformance::reopen(|| Box::new(RedbStore::open(&path).expect("open")));
    }
}
