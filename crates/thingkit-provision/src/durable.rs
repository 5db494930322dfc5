//! The durable store on [redb](https://docs.rs/redb): copy-on-write B-trees, one fsync'd
//! transaction per batch, crash-safe by construction.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::{Error, Result};
use crate::store::{RegistryStore, StoreOp};

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("thingkit-registry-v1");

/// A [`RegistryStore`] in one redb database file.
///
/// Each [`commit`](RegistryStore::commit) is one redb write transaction with
/// [`Durability::Immediate`]: when it returns `Ok`, the batch is on stable storage, and a process
/// killed at any point reopens to the state of the last acknowledged batch.
pub struct RedbStore {
    db: Database,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

fn op_key(op: &StoreOp) -> &str {
    match op {
        StoreOp::Put { key, .. } | StoreOp::Delete { key } => key,
    }
}

fn store_err(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Store(Box::new(e))
}

impl RedbStore {
    /// Opens the database at `path`, creating it if it does not exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let db = Database::create(path).map_err(store_err)?;
        let txn = db.begin_write().map_err(store_err)?;
        txn.open_table(RECORDS).map_err(store_err)?;
        txn.commit().map_err(store_err)?;
        Ok(RedbStore { db })
    }
}

impl RegistryStore for RedbStore {
    fn for_each(&self, f: &mut dyn FnMut(&str, &[u8]) -> Result<()>) -> Result<()> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(RECORDS).map_err(store_err)?;
        for entry in table.iter().map_err(store_err)? {
            let (k, v) = entry.map_err(store_err)?;
            f(k.value(), v.value())?;
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(RECORDS).map_err(store_err)?;
        Ok(table
            .get(key)
            .map_err(store_err)?
            .map(|v| v.value().to_vec()))
    }

    fn commit(&mut self, ops: &[StoreOp]) -> Result<()> {
        let mut txn = self.db.begin_write().map_err(store_err)?;
        txn.set_durability(Durability::Immediate)
            .map_err(store_err)?;
        {
            let mut table = txn.open_table(RECORDS).map_err(store_err)?;
            // Applying in key order touches each B-tree page once per batch, in order. The
            // registry never sends two operations for one key in a batch (it coalesces them),
            // so the order of independent keys does not change the result.
            let mut sorted: Vec<&StoreOp> = ops.iter().collect();
            sorted.sort_by(|a, b| op_key(a).cmp(op_key(b)));
            for op in sorted {
                match op {
                    StoreOp::Put { key, value } => {
                        table
                            .insert(key.as_str(), value.as_slice())
                            .map_err(store_err)?;
                    }
                    StoreOp::Delete { key } => {
                        table.remove(key.as_str()).map_err(store_err)?;
                    }
                }
            }
        }
        txn.commit().map_err(store_err)
    }
}
