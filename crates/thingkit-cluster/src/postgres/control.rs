//! The control plane's state on PostgreSQL: the topic rules, provisioning templates, access keys
//! and job templates made through the API, the usage ledger, and the [`ControlFeed`] that tells
//! every server what another one changed (job templates are read from the table on every
//! call: nothing to tell).
//!
//! One [`PgControlStore`] (one connection, on its own thread) serves all five; its views
//! [`PgTopicRuleStore`], [`PgTemplateStore`], [`PgAccessKeyStore`], [`PgJobTemplateStore`] and
//! [`PgUsageLedger`] implement the API's traits. Each write of a rule, template or key is one
//! transaction that also `pg_notify`s the name it changed on the channel `<schema>.control`, so
//! a [`ControlFeed`] on every server learns of it when, and only if, it commits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use thingkit_api::ApiError;
use thingkit_api::job_store::{JobTemplateBackend, StoredJobTemplate};
use thingkit_api::keys::{AccessKey, KeyBackend};
use thingkit_api::templates::{StoredTemplate, TemplateBackend, TemplateStoreError};
use thingkit_api::topic_rule::{StoredTopicRule, TopicRuleStore, TopicRuleStoreError};
use thingkit_meter::{Counts, PacketKind, UsageKey};

use super::config::PostgresConfig;
use super::connection::{Connection, Failure};
use super::feed::Listener;
use super::migration::{self, Migrations, quote};
use crate::error::Error;

const MIGRATIONS: Migrations = Migrations {
    component: "control",
    steps: &[
        "CREATE TABLE {s}.topic_rule (
        name text COLLATE \"C\" PRIMARY KEY,
        value text NOT NULL
    );
    CREATE TABLE {s}.provisioning_template (
        name text COLLATE \"C\" PRIMARY KEY,
        value text NOT NULL
    );
    CREATE TABLE {s}.access_key (
        name text COLLATE \"C\" PRIMARY KEY,
        value text NOT NULL
    );
    CREATE TABLE {s}.usage (
        batch text NOT NULL,
        seq integer NOT NULL,
        server text NOT NULL,
        account text NOT NULL,
        device text NOT NULL,
        kind text NOT NULL,
        window_start bigint NOT NULL,
        messages bigint NOT NULL,
        units bigint NOT NULL,
        bytes bigint NOT NULL,
        minutes bigint NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (batch, seq)
    )",
        // 2: the API's job templates (they were in each server's data directory).
        "CREATE TABLE {s}.job_template (
        name text COLLATE \"C\" PRIMARY KEY,
        value text NOT NULL
    )",
    ],
};

/// The `LISTEN`/`NOTIFY` channel of `schema`'s control-plane changes.
pub(crate) fn channel(schema: &str) -> String {
    format!("{schema}.control")
}

/// The three record tables, each `(name, value)` with the value as JSON text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    TopicRule,
    Template,
    AccessKey,
    JobTemplate,
}

impl Kind {
    fn table(self) -> &'static str {
        match self {
            Kind::TopicRule => "topic_rule",
            Kind::Template => "provisioning_template",
            Kind::AccessKey => "access_key",
            Kind::JobTemplate => "job_template",
        }
    }

    /// The notification payload naming `name` (a JSON object with one member); `None` for
    /// job templates, which servers read from the table on every call (nothing to refresh).
    fn notice(self, name: &str) -> Option<String> {
        let key = match self {
            Kind::TopicRule => "topic_rule",
            Kind::Template => "template",
            Kind::AccessKey => "access_key",
            Kind::JobTemplate => return None,
        };
        Some(serde_json::json!({ key: name }).to_string())
    }
}

struct TableSql {
    get: String,
    list: String,
    put: String,
    delete: String,
}

struct Sql {
    tables: [TableSql; 4],
    usage_insert: String,
    usage_sum: String,
    schema: String,
    channel: String,
}

impl Sql {
    fn table(&self, kind: Kind) -> &TableSql {
        match kind {
            Kind::TopicRule => &self.tables[0],
            Kind::Template => &self.tables[1],
            Kind::AccessKey => &self.tables[2],
            Kind::JobTemplate => &self.tables[3],
        }
    }
}

struct Shared {
    connection: Connection,
    sql: Arc<Sql>,
    /// Who appends usage (`[cluster] server_id`).
    server: String,
    /// Numbers this store's usage batches (with `server` and the process: unique per batch).
    batches: AtomicU64,
}

/// The control plane's state on PostgreSQL, shared by every server of a cluster: tables
/// `<schema>.topic_rule`, `provisioning_template` and `access_key` (`name`, `value` = the
/// record as JSON text) and `<schema>.usage` (one row per closed meter window and server).
///
/// Cheap to clone (one connection, shared). Use its views: [`PgControlStore::topic_rules`],
/// [`PgControlStore::templates`], [`PgControlStore::access_keys`], [`PgControlStore::usage`].
/// Each write is one transaction, committed with `synchronous_commit = on` before the call
/// returns `Ok`; a rule, template or key write also notifies the name it changed on
/// `<schema>.control` ([`ControlFeed`]) inside that transaction. **The access-key table holds
/// the secrets in clear** (SigV4 needs them), as `access-keys.json` does on one server: limit
/// who may read the schema.
#[derive(Clone)]
pub struct PgControlStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PgControlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgControlStore")
            .field("schema", &self.shared.sql.schema)
            .field("server", &self.shared.server)
            .finish_non_exhaustive()
    }
}

impl PgControlStore {
    /// Connects, creates the schema and applies the control tables' migrations if needed.
    /// `server` names this server in the usage rows it appends (`[cluster] server_id`).
    ///
    /// # Errors
    ///
    /// As [`PgRegistryStore::open`](crate::PgRegistryStore::open).
    pub fn open(config: &PostgresConfig, server: &str) -> Result<Self, Error> {
        let schema = config.checked_schema()?.to_owned();
        let q = quote(&schema);
        let table = |kind: Kind| {
            let t = kind.table();
            TableSql {
                get: format!("SELECT value FROM {q}.{t} WHERE name = $1"),
                list: format!("SELECT name, value FROM {q}.{t} ORDER BY name"),
                put: format!(
                    "INSERT INTO {q}.{t} (name, value) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
                ),
                delete: format!("DELETE FROM {q}.{t} WHERE name = $1"),
            }
        };
        let sql = Arc::new(Sql {
            tables: [
                table(Kind::TopicRule),
                table(Kind::Template),
                table(Kind::AccessKey),
                table(Kind::JobTemplate),
            ],
            // One statement per batch, however many windows it holds; a batch retried after
            // a lost answer inserts nothing twice (its rows are keyed by batch and position).
            usage_insert: format!(
                "INSERT INTO {q}.usage (batch, seq, server, account, device, kind, window_start,
                     messages, units, bytes, minutes)
                 SELECT $1::text, t.* FROM unnest($2::integer[], $3::text[], $4::text[],
                     $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[],
                     $10::bigint[], $11::bigint[])
                     AS t(seq, server, account, device, kind, window_start, messages, units,
                          bytes, minutes)
                 ON CONFLICT (batch, seq) DO NOTHING"
            ),
            usage_sum: format!(
                "SELECT account, device, kind, window_start, sum(messages)::bigint,
                     sum(units)::bigint, sum(bytes)::bigint, sum(minutes)::bigint
                 FROM {q}.usage GROUP BY account, device, kind, window_start
                 ORDER BY account, device, kind, window_start"
            ),
            channel: channel(&schema),
            schema: schema.clone(),
        });
        let connection = Connection::open(
            config,
            "thingkit-pg-control",
            Box::new(move |client| migration::apply(client, &schema, &MIGRATIONS)),
        )?;
        Ok(PgControlStore {
            shared: Arc::new(Shared {
                connection,
                sql,
                server: server.to_owned(),
                batches: AtomicU64::new(0),
            }),
        })
    }

    /// The topic rules made through the API ([`TopicRuleStore`]).
    pub fn topic_rules(&self) -> PgTopicRuleStore {
        PgTopicRuleStore(self.clone())
    }

    /// The provisioning templates made through the API ([`TemplateBackend`]).
    pub fn templates(&self) -> PgTemplateStore {
        PgTemplateStore(self.clone())
    }

    /// The API's access keys ([`KeyBackend`]).
    pub fn access_keys(&self) -> PgAccessKeyStore {
        PgAccessKeyStore(self.clone())
    }

    /// The API's job templates ([`JobTemplateBackend`]).
    pub fn job_templates(&self) -> PgJobTemplateStore {
        PgJobTemplateStore(self.clone())
    }

    /// The usage ledger of every server.
    pub fn usage(&self) -> PgUsageLedger {
        PgUsageLedger(self.clone())
    }

    fn get(&self, kind: Kind, name: &str) -> Result<Option<String>, Error> {
        let sql = Arc::clone(&self.shared.sql);
        let name = name.to_owned();
        self.shared.connection.call("get", move |client| {
            Ok(match client.query_opt(&sql.table(kind).get, &[&name])? {
                Some(row) => Some(row.try_get(0)?),
                None => None,
            })
        })
    }

    fn list(&self, kind: Kind) -> Result<Vec<(String, String)>, Error> {
        let sql = Arc::clone(&self.shared.sql);
        self.shared.connection.call("list", move |client| {
            client
                .query(&sql.table(kind).list, &[])?
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect::<Result<_, Failure>>()
        })
    }

    /// Puts (`Some`) or deletes (`None`) each name, and notifies each name that changed, in
    /// one transaction. Returns how many rows changed.
    fn write(&self, kind: Kind, changes: Vec<(String, Option<String>)>) -> Result<u64, Error> {
        if changes.is_empty() {
            return Ok(0);
        }
        let sql = Arc::clone(&self.shared.sql);
        self.shared.connection.call("commit", move |client| {
            let table = sql.table(kind);
            let mut tx = client.transaction()?;
            let mut changed = 0;
            for (name, value) in &changes {
                let n = match value {
                    Some(value) => tx.execute(&table.put, &[name, value])?,
                    None => tx.execute(&table.delete, &[name])?,
                };
                if n > 0
                    && let Some(notice) = kind.notice(name)
                {
                    // Delivered to listeners only if, and when, this transaction commits.
                    tx.execute("SELECT pg_notify($1, $2)", &[&sql.channel, &notice])?;
                }
                changed += n;
            }
            tx.commit()?;
            Ok(changed)
        })
    }
}

/// A [`TopicRuleStore`] on PostgreSQL (table `<schema>.topic_rule`): every server of a
/// cluster serves the same rules. Each `put` and `remove` commits durably and notifies the
/// rule's name to [`ControlFeed`]s ([`ControlChange::TopicRule`]), so every server can start
/// or stop it in its rules engine.
#[derive(Clone, Debug)]
pub struct PgTopicRuleStore(PgControlStore);

impl PgTopicRuleStore {
    /// Opens the control tables (see [`PgControlStore::open`]) for their topic rules.
    ///
    /// # Errors
    ///
    /// As [`PgControlStore::open`].
    pub fn open(config: &PostgresConfig) -> Result<Self, Error> {
        Ok(PgControlStore::open(config, "")?.topic_rules())
    }
}

fn rule_backend(operation: &'static str) -> impl Fn(Error) -> TopicRuleStoreError {
    move |e| TopicRuleStoreError::Backend {
        operation,
        detail: e.to_string(),
    }
}

fn decode_rule(name: &str, text: &str) -> Result<StoredTopicRule, TopicRuleStoreError> {
    serde_json::from_str(text).map_err(|e| TopicRuleStoreError::Corrupt {
        name: name.to_owned(),
        detail: e.to_string(),
    })
}

impl TopicRuleStore for PgTopicRuleStore {
    fn get(&self, name: &str) -> Result<Option<StoredTopicRule>, TopicRuleStoreError> {
        match self
            .0
            .get(Kind::TopicRule, name)
            .map_err(rule_backend("get"))?
        {
            Some(text) => decode_rule(name, &text).map(Some),
            None => Ok(None),
        }
    }

    fn list(&self) -> Result<Vec<(String, StoredTopicRule)>, TopicRuleStoreError> {
        self.0
            .list(Kind::TopicRule)
            .map_err(rule_backend("list"))?
            .into_iter()
            .map(|(name, text)| {
                let rule = decode_rule(&name, &text)?;
                Ok((name, rule))
            })
            .collect()
    }

    fn put(&self, name: &str, rule: &StoredTopicRule) -> Result<(), TopicRuleStoreError> {
        let text = serde_json::to_string(rule).map_err(|e| TopicRuleStoreError::Backend {
            operation: "put",
            detail: e.to_string(),
        })?;
        self.0
            .write(Kind::TopicRule, vec![(name.to_owned(), Some(text))])
            .map_err(rule_backend("put"))?;
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<bool, TopicRuleStoreError> {
        let n = self
            .0
            .write(Kind::TopicRule, vec![(name.to_owned(), None)])
            .map_err(rule_backend("remove"))?;
        Ok(n > 0)
    }
}

/// The provisioning templates on PostgreSQL (table `<schema>.provisioning_template`), as a
/// [`TemplateBackend`] for [`thingkit_api::templates::TemplateStore::with_backend`]. Each save
/// is one transaction that notifies every name it changed ([`ControlChange::Template`]).
#[derive(Clone, Debug)]
pub struct PgTemplateStore(PgControlStore);

fn template_backend(operation: &'static str) -> impl Fn(Error) -> TemplateStoreError {
    move |e| TemplateStoreError::Backend {
        operation,
        detail: e.to_string(),
    }
}

impl TemplateBackend for PgTemplateStore {
    fn load(&self) -> Result<BTreeMap<String, StoredTemplate>, TemplateStoreError> {
        self.0.load_records(Kind::Template, "template")
    }

    fn save(&self, changes: &[(String, Option<StoredTemplate>)]) -> Result<(), TemplateStoreError> {
        self.0.save_records(Kind::Template, changes)
    }
}

impl PgControlStore {
    /// Every record of `kind` (`what` names it in errors), parsed from its JSON.
    fn load_records<T: serde::de::DeserializeOwned>(
        &self,
        kind: Kind,
        what: &str,
    ) -> Result<BTreeMap<String, T>, TemplateStoreError> {
        self.list(kind)
            .map_err(template_backend("load"))?
            .into_iter()
            .map(|(name, text)| {
                let record = parse_record(what, &name, &text)?;
                Ok((name, record))
            })
            .collect()
    }

    /// The record `name` of `kind`, if any (one row read), parsed from its JSON.
    fn load_record<T: serde::de::DeserializeOwned>(
        &self,
        kind: Kind,
        what: &str,
        name: &str,
    ) -> Result<Option<T>, TemplateStoreError> {
        match self.get(kind, name).map_err(template_backend("get"))? {
            Some(text) => parse_record(what, name, &text).map(Some),
            None => Ok(None),
        }
    }

    /// Puts (`Some`) or deletes (`None`) each record of `kind`, as JSON, in one transaction.
    fn save_records<T: serde::Serialize>(
        &self,
        kind: Kind,
        changes: &[(String, Option<T>)],
    ) -> Result<(), TemplateStoreError> {
        let mut rows = Vec::with_capacity(changes.len());
        for (name, record) in changes {
            let text = record
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| TemplateStoreError::Backend {
                    operation: "save",
                    detail: e.to_string(),
                })?;
            rows.push((name.clone(), text));
        }
        self.write(kind, rows).map_err(template_backend("save"))?;
        Ok(())
    }
}

/// A stored record's JSON (`what` and `name` name it in the error).
fn parse_record<T: serde::de::DeserializeOwned>(
    what: &str,
    name: &str,
    text: &str,
) -> Result<T, TemplateStoreError> {
    serde_json::from_str(text).map_err(|e| TemplateStoreError::Backend {
        operation: "load",
        detail: format!("the record of {what} {name} is not valid: {e}"),
    })
}

/// The API's job templates on PostgreSQL (table `<schema>.job_template`), as a
/// [`JobTemplateBackend`] for [`thingkit_api::job_store::JobStore::with_backend`]: every server
/// reads them from the table on each call, so none keeps a copy to refresh.
#[derive(Clone, Debug)]
pub struct PgJobTemplateStore(PgControlStore);

impl JobTemplateBackend for PgJobTemplateStore {
    fn load(&self) -> Result<BTreeMap<String, StoredJobTemplate>, TemplateStoreError> {
        self.0.load_records(Kind::JobTemplate, "job template")
    }

    fn get(&self, id: &str) -> Result<Option<StoredJobTemplate>, TemplateStoreError> {
        self.0.load_record(Kind::JobTemplate, "job template", id)
    }

    fn save(
        &self,
        changes: &[(String, Option<StoredJobTemplate>)],
    ) -> Result<(), TemplateStoreError> {
        self.0.save_records(Kind::JobTemplate, changes)
    }
}

/// The API's access keys on PostgreSQL (table `<schema>.access_key`, secrets in clear), as a
/// [`KeyBackend`] for [`thingkit_api::keys::KeyStore::with_backend`]. A put or delete notifies
/// the key's ID ([`ControlChange::AccessKey`]).
#[derive(Clone, Debug)]
pub struct PgAccessKeyStore(PgControlStore);

fn key_error(e: Error) -> ApiError {
    ApiError::internal(format!("access keys: {e}"))
}

fn decode_key(id: &str, text: &str) -> Result<AccessKey, ApiError> {
    serde_json::from_str(text)
        .map_err(|e| ApiError::internal(format!("the record of access key {id} is not valid: {e}")))
}

impl KeyBackend for PgAccessKeyStore {
    fn get(&self, id: &str) -> thingkit_api::ApiResult<Option<AccessKey>> {
        match self.0.get(Kind::AccessKey, id).map_err(key_error)? {
            Some(text) => decode_key(id, &text).map(Some),
            None => Ok(None),
        }
    }

    fn list(&self) -> thingkit_api::ApiResult<Vec<AccessKey>> {
        self.0
            .list(Kind::AccessKey)
            .map_err(key_error)?
            .into_iter()
            .map(|(id, text)| decode_key(&id, &text))
            .collect()
    }

    fn put(&self, key: &AccessKey) -> thingkit_api::ApiResult<()> {
        let text = serde_json::to_string(key)
            .map_err(|e| ApiError::internal(format!("cannot encode the key: {e}")))?;
        self.0
            .write(
                Kind::AccessKey,
                vec![(key.access_key_id.clone(), Some(text))],
            )
            .map_err(key_error)?;
        Ok(())
    }

    fn delete(&self, id: &str) -> thingkit_api::ApiResult<bool> {
        let n = self
            .0
            .write(Kind::AccessKey, vec![(id.to_owned(), None)])
            .map_err(key_error)?;
        Ok(n > 0)
    }
}

/// The usage ledger of every server on PostgreSQL (table `<schema>.usage`): each server
/// appends its closed meter windows, and [`PgUsageLedger::totals`] sums them over the cluster.
#[derive(Clone, Debug)]
pub struct PgUsageLedger(PgControlStore);

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl PgUsageLedger {
    /// Appends `closed` (one row per window, marked with this server's name) in one multi-row
    /// `INSERT`, committed before it returns `Ok`. Retried after a lost answer, a batch is
    /// not counted twice.
    ///
    /// # Errors
    ///
    /// PostgreSQL failed: the batch was not acknowledged (it may have been stored).
    pub fn append(&self, closed: &BTreeMap<UsageKey, Counts>) -> Result<(), Error> {
        if closed.is_empty() {
            return Ok(());
        }
        let shared = &self.0.shared;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let batch = format!(
            "{}/{}/{nanos}/{}",
            shared.server,
            std::process::id(),
            shared.batches.fetch_add(1, Ordering::Relaxed)
        );
        let n = closed.len();
        let (mut seq, mut account, mut device, mut kind, mut window) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut messages, mut units, mut bytes, mut minutes) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (i, (key, counts)) in closed.iter().enumerate() {
            seq.push(i32::try_from(i).unwrap_or(i32::MAX));
            account.push(key.account.clone());
            device.push(key.device.clone());
            kind.push(kind_text(key.kind));
            window.push(to_i64(key.window));
            messages.push(to_i64(counts.messages));
            units.push(to_i64(counts.units));
            bytes.push(to_i64(counts.bytes));
            minutes.push(to_i64(counts.minutes));
        }
        let servers = vec![shared.server.clone(); n];
        let sql = Arc::clone(&shared.sql);
        shared.connection.call("append", move |client| {
            client.execute(
                &sql.usage_insert,
                &[
                    &batch, &seq, &servers, &account, &device, &kind, &window, &messages, &units,
                    &bytes, &minutes,
                ],
            )?;
            Ok(())
        })
    }

    /// The counts of every window, summed over the servers that appended them (and over the
    /// batches of one server: late counts for a closed window come as another row).
    ///
    /// # Errors
    ///
    /// PostgreSQL failed, or a row names a usage kind this build does not know
    /// ([`Error::Corrupt`]).
    pub fn totals(&self) -> Result<BTreeMap<UsageKey, Counts>, Error> {
        let sql = Arc::clone(&self.0.shared.sql);
        type Row = (String, String, String, i64, i64, i64, i64, i64);
        let rows: Vec<Row> = self.0.shared.connection.call("usage", move |client| {
            client
                .query(&sql.usage_sum, &[])?
                .iter()
                .map(|r| {
                    Ok((
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                        r.try_get(5)?,
                        r.try_get(6)?,
                        r.try_get(7)?,
                    ))
                })
                .collect::<Result<_, Failure>>()
        })?;
        let mut out = BTreeMap::new();
        for (account, device, kind, window, messages, units, bytes, minutes) in rows {
            let kind =
                serde_json::from_value::<PacketKind>(serde_json::Value::String(kind.clone()))
                    .map_err(|e| Error::Corrupt {
                        what: format!("usage of {account}/{device}"),
                        detail: format!("kind {kind:?}: {e}"),
                    })?;
            let counts = Counts {
                messages: to_u64(messages),
                units: to_u64(units),
                bytes: to_u64(bytes),
                minutes: to_u64(minutes),
            };
            let key = UsageKey {
                account,
                device,
                kind,
                window: to_u64(window),
            };
            out.entry(key).or_insert_with(Counts::default).add(&counts);
        }
        Ok(out)
    }
}

/// A usage kind as its serde name (`publish`, `receive`, ...).
fn kind_text(kind: PacketKind) -> String {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{kind:?}"),
    }
}

/// What a [`ControlFeed`] tells its callback: the name of a record that a committed write
/// changed (through any server, this one included), or that changes may have been missed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlChange {
    /// The topic rule of this name was put or removed: read it again.
    TopicRule(String),
    /// The provisioning template of this name was put or deleted.
    Template(String),
    /// The access key of this ID was put or deleted.
    AccessKey(String),
    /// Notifications may have been missed (the feed's connection was re-established, or a
    /// payload did not parse): read everything again.
    Resync,
}

fn parse_control(payload: &str) -> ControlChange {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(payload)
    else {
        return ControlChange::Resync;
    };
    let mut members = map.into_iter();
    match (members.next(), members.next()) {
        (Some((kind, serde_json::Value::String(name))), None) => match kind.as_str() {
            "topic_rule" => ControlChange::TopicRule(name),
            "template" => ControlChange::Template(name),
            "access_key" => ControlChange::AccessKey(name),
            _ => ControlChange::Resync,
        },
        _ => ControlChange::Resync,
    }
}

/// Listens for control-plane changes on a schema (channel `<schema>.control`) and calls back
/// with each: a server uses it to start and stop the topic rules, serve the templates and
/// forget the access keys another server changed, within a second of the commit.
///
/// As [`RegistryFeed`](crate::RegistryFeed): the callback runs on the feed's own thread, in
/// commit order; after a reconnect it gets [`ControlChange::Resync`]; dropping the feed stops
/// it.
pub struct ControlFeed {
    listener: Listener,
}

impl std::fmt::Debug for ControlFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlFeed")
            .field("channel", &self.listener.channel)
            .finish_non_exhaustive()
    }
}

impl ControlFeed {
    /// Connects and `LISTEN`s before returning, so every commit after this returns is seen.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a bad URL or schema, [`Error::Postgres`] when the first connection
    /// or `LISTEN` fails.
    pub fn start(
        config: &PostgresConfig,
        mut on_change: impl FnMut(ControlChange) + Send + 'static,
    ) -> Result<Self, Error> {
        let schema = config.checked_schema()?.to_owned();
        let listener = Listener::start(
            config,
            channel(&schema),
            "thingkit-pg-control-feed",
            move |payload| {
                on_change(match payload {
                    Some(p) => parse_control(p),
                    None => ControlChange::Resync,
                })
            },
        )?;
        Ok(ControlFeed { listener })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_name_the_record_and_parse_back() {
        for (kind, change) in [
            (Kind::TopicRule, ControlChange::TopicRule("r \"1\"".into())),
            (Kind::Template, ControlChange::Template("r \"1\"".into())),
            (Kind::AccessKey, ControlChange::AccessKey("r \"1\"".into())),
        ] {
            assert_eq!(parse_control(&kind.notice("r \"1\"").unwrap()), change);
        }
        for bad in ["", "null", "[]", r#"{"other":"x"}"#, r#"{"template":1}"#] {
            assert_eq!(parse_control(bad), ControlChange::Resync, "{bad}");
        }
        assert_eq!(
            parse_control(r#"{"template":"a","topic_rule":"b"}"#),
            ControlChange::Resync
        );
    }

    #[test]
    fn usage_kinds_are_stored_by_their_serde_names() {
        for kind in PacketKind::ALL {
            let text = kind_text(kind);
            let back: PacketKind =
                serde_json::from_value(serde_json::Value::String(text.clone())).unwrap();
            assert_eq!(back, kind, "{text}");
        }
        assert_eq!(kind_text(PacketKind::Publish), "publish");
    }
}
