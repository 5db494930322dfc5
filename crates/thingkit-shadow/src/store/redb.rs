//! [`RedbShadowStore`]: shadows in one [redb](https://docs.rs/redb) file.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, TableDefinition};

use crate::error::StoreError;
use crate::store::{ShadowStore, store_key};
use crate::stored::{StoredShadow, is_tombstone};
use crate::topic::ShadowKey;

/// (thing, shadow name or `""` for the classic shadow) → [`StoredShadow::to_bytes`].
const SHADOWS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("thingkit-shadow-v1");

fn backend<E: Into<redb::Error>>(operation: &'static str) -> impl Fn(E) -> StoreError {
    move |e| StoreError::Backend {
        operation,
        detail: e.into().to_string(),
    }
}

/// A [`ShadowStore`] in one redb database file.
///
/// Each [`put`](ShadowStore::put) is one write transaction committed with
/// [`Durability::Immediate`]: when it returns `Ok` the shadow is on stable storage, so a
/// process killed at any point reopens to the last acknowledged write. A record that does not
/// decode is reported as [`StoreError::Corrupt`] naming the shadow.
pub struct RedbShadowStore {
    db: Database,
}

impl std::fmt::Debug for RedbShadowStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbShadowStore").finish_non_exhaustive()
    }
}

impl RedbShadowStore {
    /// Opens the database at `path`, creating it (and its table) if it does not exist.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when redb cannot open or create it (for example another process
    /// holds it open).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(backend("open"))?;
        let txn = db.begin_write().map_err(backend("open"))?;
        txn.open_table(SHADOWS).map_err(backend("open"))?;
        txn.commit().map_err(backend("open"))?;
        Ok(RedbShadowStore { db })
    }

    /// Stores many shadows in one durable transaction (bulk loading, migrations).
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the backend fails; then none was stored.
    pub fn put_many<'a>(
        &mut self,
        items: impl IntoIterator<Item = (&'a ShadowKey, &'a StoredShadow)>,
    ) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(backend("put"))?;
        txn.set_durability(Durability::Immediate)
            .map_err(backend("put"))?;
        {
            let mut table = txn.open_table(SHADOWS).map_err(backend("put"))?;
            for (key, value) in items {
                table
                    .insert(store_key(key), value.to_bytes().as_slice())
                    .map_err(backend("put"))?;
            }
        }
        txn.commit().map_err(backend("put"))
    }
}

impl ShadowStore for RedbShadowStore {
    fn get(&self, key: &ShadowKey) -> Result<Option<StoredShadow>, StoreError> {
        let txn = self.db.begin_read().map_err(backend("get"))?;
        let table = txn.open_table(SHADOWS).map_err(backend("get"))?;
        let Some(guard) = table.get(store_key(key)).map_err(backend("get"))? else {
            return Ok(None);
        };
        StoredShadow::from_bytes(guard.value())
            .map(Some)
            .map_err(|source| StoreError::Corrupt {
                key: key.to_string(),
                source,
            })
    }

    fn put(&mut self, key: &ShadowKey, value: &StoredShadow) -> Result<(), StoreError> {
        self.put_many([(key, value)])
    }

    fn list_named(&self, thing: &str) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read().map_err(backend("list"))?;
        let table = txn.open_table(SHADOWS).map_err(backend("list"))?;
        let mut names = Vec::new();
        for entry in table.range((thing, "")..).map_err(backend("list"))? {
            let (k, v) = entry.map_err(backend("list"))?;
            let (t, name) = k.value();
            if t != thing {
                break;
            }
            if !name.is_empty() && !is_tombstone(v.value()) {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }
}
