//! [`PgShadowStore`]: device shadows in one PostgreSQL table.

use std::sync::Arc;

use thingkit_shadow::{ShadowKey, ShadowStore, StoreError, StoredShadow};

use super::config::PostgresConfig;
use super::connection::Connection;
use super::migration::{self, Migrations, quote};
use crate::error::Error;

const MIGRATIONS: Migrations = Migrations {
    component: "shadow",
    steps: &["CREATE TABLE {s}.shadow (
        thing text COLLATE \"C\" NOT NULL,
        name text COLLATE \"C\" NOT NULL,
        value bytea NOT NULL,
        deleted boolean NOT NULL,
        PRIMARY KEY (thing, name)
    )"],
};

struct Sql {
    put: String,
    get: String,
    list: String,
    schema: String,
}

/// A [`ShadowStore`] on PostgreSQL: table `<schema>.shadow (thing, name, value, deleted)`,
/// `name` empty for the classic shadow, `value` as [`StoredShadow::to_bytes`].
///
/// Each [`put`](ShadowStore::put) is a plain upsert (the shadow service holds the version
/// logic; a put conditional on the version it replaces is not part of the trait), durable when
/// it returns `Ok` (`synchronous_commit = on`). Names compare by their bytes (`COLLATE "C"`), so
/// listings keep the embedded store's order.
pub struct PgShadowStore {
    connection: Connection,
    sql: Arc<Sql>,
}

impl std::fmt::Debug for PgShadowStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgShadowStore")
            .field("schema", &self.sql.schema)
            .finish_non_exhaustive()
    }
}

impl PgShadowStore {
    /// Connects, creates the schema and applies the shadow table's migrations if needed.
    ///
    /// # Errors
    ///
    /// As [`PgRegistryStore::open`](crate::PgRegistryStore::open).
    pub fn open(config: &PostgresConfig) -> Result<Self, Error> {
        let schema = config.checked_schema()?.to_owned();
        let q = quote(&schema);
        let sql = Arc::new(Sql {
            put: format!(
                "INSERT INTO {q}.shadow (thing, name, value, deleted) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (thing, name) DO UPDATE
                 SET value = EXCLUDED.value, deleted = EXCLUDED.deleted"
            ),
            get: format!("SELECT value FROM {q}.shadow WHERE thing = $1 AND name = $2"),
            list: format!(
                "SELECT name FROM {q}.shadow WHERE thing = $1 AND name <> '' AND NOT deleted
                 ORDER BY name"
            ),
            schema: schema.clone(),
        });
        let connection = Connection::open(
            config,
            "thingkit-pg-shadow",
            Box::new(move |client| migration::apply(client, &schema, &MIGRATIONS)),
        )?;
        Ok(PgShadowStore { connection, sql })
    }
}

fn backend(operation: &'static str) -> impl Fn(Error) -> StoreError {
    move |e| StoreError::Backend {
        operation,
        detail: e.to_string(),
    }
}

fn parts(key: &ShadowKey) -> (String, String) {
    (key.thing.clone(), key.name.clone().unwrap_or_default())
}

impl ShadowStore for PgShadowStore {
    fn get(&self, key: &ShadowKey) -> Result<Option<StoredShadow>, StoreError> {
        let sql = Arc::clone(&self.sql);
        let (thing, name) = parts(key);
        let bytes: Option<Vec<u8>> = self
            .connection
            .call("get", move |client| {
                Ok(match client.query_opt(&sql.get, &[&thing, &name])? {
                    Some(row) => Some(row.try_get(0)?),
                    None => None,
                })
            })
            .map_err(backend("get"))?;
        match bytes {
            None => Ok(None),
            Some(bytes) => StoredShadow::from_bytes(&bytes)
                .map(Some)
                .map_err(|source| StoreError::Corrupt {
                    key: key.to_string(),
                    source,
                }),
        }
    }

    fn put(&mut self, key: &ShadowKey, value: &StoredShadow) -> Result<(), StoreError> {
        let sql = Arc::clone(&self.sql);
        let (thing, name) = parts(key);
        let bytes = value.to_bytes();
        let deleted = value.is_deleted();
        self.connection
            .call("put", move |client| {
                client.execute(&sql.put, &[&thing, &name, &bytes, &deleted])?;
                Ok(())
            })
            .map_err(backend("put"))
    }

    fn list_named(&self, thing: &str) -> Result<Vec<String>, StoreError> {
        let sql = Arc::clone(&self.sql);
        let thing = thing.to_owned();
        self.connection
            .call("list", move |client| {
                client
                    .query(&sql.list, &[&thing])?
                    .iter()
                    .map(|row| Ok(row.try_get(0)?))
                    .collect()
            })
            .map_err(backend("list"))
    }
}
