//! [`PgRegistryStore`]: the registry's records in one PostgreSQL table.

use std::sync::Arc;

use thingkit_provision::{RegistryStore, StoreOp};

use super::config::PostgresConfig;
use super::connection::{Connection, Failure};
use super::feed;
use super::migration::{self, Migrations, quote};
use crate::error::Error;

/// Rows fetched per round trip by [`RegistryStore::for_each`].
const PAGE: i64 = 1000;

const MIGRATIONS: Migrations = Migrations {
    component: "registry",
    steps: &["CREATE TABLE {s}.registry (
        key text COLLATE \"C\" PRIMARY KEY,
        value bytea NOT NULL
    )"],
};

struct Sql {
    put: String,
    delete: String,
    get: String,
    first_page: String,
    next_page: String,
    schema: String,
    /// The `pg_notify` channel, when commits notify.
    channel: Option<String>,
}

/// A [`RegistryStore`] on PostgreSQL: table `<schema>.registry (key text COLLATE "C", value
/// bytea)`.
///
/// [`commit`](RegistryStore::commit) is one transaction, committed with
/// `synchronous_commit = on`: when it returns `Ok` the batch is in PostgreSQL's write-ahead log
/// on disk, and a batch that fails changes nothing. Keys compare by their bytes
/// (`COLLATE "C"`), so [`for_each`](RegistryStore::for_each) visits them in the same order as
/// the embedded redb store. `for_each` reads pages of 1,000 records in key order (not one
/// snapshot: records committed by another server meanwhile may or may not be seen). PostgreSQL
/// `text` cannot hold the NUL character: a batch with such a key is refused whole. With
/// [`PostgresConfig::registry_notify`] each commit also notifies the keys it changed to
/// [`RegistryFeed`](crate::RegistryFeed)s, inside its transaction.
pub struct PgRegistryStore {
    connection: Connection,
    sql: Arc<Sql>,
}

impl std::fmt::Debug for PgRegistryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRegistryStore")
            .field("schema", &self.sql.schema)
            .finish_non_exhaustive()
    }
}

impl PgRegistryStore {
    /// Connects, creates the schema and applies the registry's migrations if needed.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a bad URL or schema name, [`Error::Postgres`] when PostgreSQL
    /// cannot be reached or refuses, [`Error::SchemaTooNew`] when the database was migrated
    /// by a newer build.
    pub fn open(config: &PostgresConfig) -> Result<Self, Error> {
        let schema = config.checked_schema()?.to_owned();
        let q = quote(&schema);
        let sql = Arc::new(Sql {
            // One statement for every put and one for every delete of a batch: two round trips
            // per commit however large it is (one statement per record made 1,000
            // registrations per commit 2-4x slower than redb).
            put: format!(
                "INSERT INTO {q}.registry (key, value)
                 SELECT * FROM unnest($1::text[], $2::bytea[])
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
            ),
            delete: format!("DELETE FROM {q}.registry WHERE key = ANY($1::text[])"),
            get: format!("SELECT value FROM {q}.registry WHERE key = $1"),
            first_page: format!("SELECT key, value FROM {q}.registry ORDER BY key LIMIT $1"),
            next_page: format!(
                "SELECT key, value FROM {q}.registry WHERE key > $2 ORDER BY key LIMIT $1"
            ),
            schema: schema.clone(),
            channel: config.registry_notify.then(|| feed::channel(&schema)),
        });
        let connection = Connection::open(
            config,
            "thingkit-pg-registry",
            Box::new(move |client| migration::apply(client, &schema, &MIGRATIONS)),
        )?;
        Ok(PgRegistryStore { connection, sql })
    }

    /// The schema this store's table is in.
    pub fn schema(&self) -> &str {
        &self.sql.schema
    }
}

fn store_error(e: Error) -> thingkit_provision::Error {
    thingkit_provision::Error::Store(Box::new(e))
}

impl RegistryStore for PgRegistryStore {
    fn for_each(
        &self,
        f: &mut dyn FnMut(&str, &[u8]) -> thingkit_provision::Result<()>,
    ) -> thingkit_provision::Result<()> {
        let mut after: Option<String> = None;
        loop {
            let sql = Arc::clone(&self.sql);
            let from = after.clone();
            let page: Vec<(String, Vec<u8>)> = self
                .connection
                .call("list", move |client| {
                    let rows = match &from {
                        None => client.query(&sql.first_page, &[&PAGE])?,
                        Some(key) => client.query(&sql.next_page, &[&PAGE, key])?,
                    };
                    rows.iter()
                        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                        .collect::<Result<_, Failure>>()
                })
                .map_err(store_error)?;
            let full = page.len() as i64 == PAGE;
            for (key, value) in &page {
                f(key, value)?;
            }
            match page.into_iter().next_back() {
                Some((last, _)) if full => after = Some(last),
                _ => return Ok(()),
            }
        }
    }

    fn get(&self, key: &str) -> thingkit_provision::Result<Option<Vec<u8>>> {
        let sql = Arc::clone(&self.sql);
        let key = key.to_owned();
        self.connection
            .call("get", move |client| {
                let row = client.query_opt(&sql.get, &[&key])?;
                Ok(match row {
                    Some(row) => Some(row.try_get(0)?),
                    None => None,
                })
            })
            .map_err(store_error)
    }

    fn commit(&mut self, ops: &[StoreOp]) -> thingkit_provision::Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let sql = Arc::clone(&self.sql);
        let notices = match &sql.channel {
            Some(_) => feed::payloads(ops.iter().map(|op| match op {
                StoreOp::Put { key, .. } | StoreOp::Delete { key } => key.as_str(),
            })),
            None => Vec::new(),
        };
        // The batch's effect: the last operation on each key (applied in order, a put then a
        // delete of one key deletes it), as one multi-row upsert and one multi-row delete.
        let mut last: std::collections::BTreeMap<&str, Option<&[u8]>> =
            std::collections::BTreeMap::new();
        for op in ops {
            match op {
                StoreOp::Put { key, value } => last.insert(key, Some(value)),
                StoreOp::Delete { key } => last.insert(key, None),
            };
        }
        let (mut put_keys, mut put_values, mut deleted) = (Vec::new(), Vec::new(), Vec::new());
        for (key, value) in last {
            match value {
                Some(value) => {
                    put_keys.push(key.to_owned());
                    put_values.push(value.to_vec());
                }
                None => deleted.push(key.to_owned()),
            }
        }
        self.connection
            .call("commit", move |client| {
                let mut tx = client.transaction()?;
                if !put_keys.is_empty() {
                    tx.execute(&sql.put, &[&put_keys, &put_values])?;
                }
                if !deleted.is_empty() {
                    tx.execute(&sql.delete, &[&deleted])?;
                }
                if let Some(channel) = &sql.channel {
                    // Delivered to listeners only if, and when, this transaction commits.
                    for payload in &notices {
                        tx.execute("SELECT pg_notify($1, $2)", &[channel, payload])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .map_err(store_error)
    }
}
