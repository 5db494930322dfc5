//! Topic rules as the control plane keeps them (`CreateTopicRule` and its siblings): a
//! [`TopicRuleStore`] (name → payload, creation time, ARN), in memory or in one redb file
//! ([`RedbTopicRuleStore`], feature `redb`), and the [`TopicRuleHook`] through which the API
//! tells the running rules engine what changed. The API depends on no broker: the server
//! implements the hook on its engine.
//!
//! Every change is stored before it is acknowledged: a `200` for a create, replace, enable,
//! disable or delete is on stable storage when the answer leaves (the redb store commits each
//! write with [`redb::Durability::Immediate`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use thingkit_rules::topic_rule::TopicRulePayload;

/// A stored topic rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredTopicRule {
    /// The payload as accepted, with `awsIotSqlVersion` and `ruleDisabled` always set (the
    /// version the statement was compiled for; whether the rule is disabled).
    pub payload: TopicRulePayload,
    /// Creation time, Unix seconds (kept by `ReplaceTopicRule`).
    pub created_at: i64,
    /// `arn:aws:iot:REGION:ACCOUNT:rule/NAME`.
    pub arn: String,
    /// The FROM clause's topic filter (`ListTopicRules`' `topicPattern`), if the statement
    /// has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_pattern: Option<String>,
}

impl StoredTopicRule {
    /// Whether the rule is disabled.
    pub fn disabled(&self) -> bool {
        self.payload.rule_disabled.unwrap_or(false)
    }
}

/// Why the topic-rule store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopicRuleStoreError {
    /// The storage backend failed (open, read, write, commit).
    #[error("topic rule store {operation}: {detail}")]
    Backend {
        /// What was being done.
        operation: &'static str,
        /// The backend's error.
        detail: String,
    },
    /// A stored record does not decode.
    #[error("topic rule store: the record of {name} is not valid: {detail}")]
    Corrupt {
        /// The rule's name.
        name: String,
        /// What is wrong.
        detail: String,
    },
}

/// Where topic rules are kept. Implementations must be durable on return of a write (the
/// redb one is) or say they are not (the memory one). [`check_store`] is the behaviour every
/// implementation must show.
pub trait TopicRuleStore: Send + Sync {
    /// The rule named `name`.
    ///
    /// # Errors
    ///
    /// The backend failed or the record does not decode.
    fn get(&self, name: &str) -> Result<Option<StoredTopicRule>, TopicRuleStoreError>;

    /// Every rule, by name in ascending order.
    ///
    /// # Errors
    ///
    /// The backend failed or a record does not decode.
    fn list(&self) -> Result<Vec<(String, StoredTopicRule)>, TopicRuleStoreError>;

    /// Stores `rule` as `name` (inserting or replacing it).
    ///
    /// # Errors
    ///
    /// The backend failed; nothing changed.
    fn put(&self, name: &str, rule: &StoredTopicRule) -> Result<(), TopicRuleStoreError>;

    /// Removes `name`; whether it existed.
    ///
    /// # Errors
    ///
    /// The backend failed; nothing changed.
    fn remove(&self, name: &str) -> Result<bool, TopicRuleStoreError>;
}

/// The running rules engine, as the API sees it. The server implements it on the broker's
/// engine; the API calls it after validating a change and around storing it.
pub trait TopicRuleHook: Send + Sync {
    /// Starts (or replaces) the rule `name` with `payload`. An `Err` refuses the change: the
    /// API answers `InvalidRequestException` with the message and stores nothing.
    ///
    /// # Errors
    ///
    /// The engine cannot run this rule; the message says why.
    fn upsert(&self, name: &str, payload: &TopicRulePayload) -> Result<(), String>;

    /// Stops the rule `name` (nothing if it does not run).
    fn remove(&self, name: &str);
}

/// A [`TopicRuleStore`] in memory: nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryTopicRuleStore {
    rules: Mutex<BTreeMap<String, StoredTopicRule>>,
}

impl MemoryTopicRuleStore {
    /// An empty store.
    pub fn new() -> MemoryTopicRuleStore {
        MemoryTopicRuleStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, StoredTopicRule>> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl TopicRuleStore for MemoryTopicRuleStore {
    fn get(&self, name: &str) -> Result<Option<StoredTopicRule>, TopicRuleStoreError> {
        Ok(self.lock().get(name).cloned())
    }

    fn list(&self) -> Result<Vec<(String, StoredTopicRule)>, TopicRuleStoreError> {
        Ok(self
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn put(&self, name: &str, rule: &StoredTopicRule) -> Result<(), TopicRuleStoreError> {
        self.lock().insert(name.to_string(), rule.clone());
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<bool, TopicRuleStoreError> {
        Ok(self.lock().remove(name).is_some())
    }
}

#[cfg(feature = "redb")]
pub use self::redb_store::RedbTopicRuleStore;

#[cfg(feature = "redb")]
mod redb_store {
    use std::path::Path;

    use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

    use super::{StoredTopicRule, TopicRuleStore, TopicRuleStoreError};

    /// rule name → the stored rule as JSON.
    const RULES: TableDefinition<&str, &[u8]> = TableDefinition::new("thingkit-api-topic-rule-v1");

    fn backend<E: Into<redb::Error>>(operation: &'static str) -> impl Fn(E) -> TopicRuleStoreError {
        move |e| TopicRuleStoreError::Backend {
            operation,
            detail: e.into().to_string(),
        }
    }

    fn decode(name: &str, bytes: &[u8]) -> Result<StoredTopicRule, TopicRuleStoreError> {
        serde_json::from_slice(bytes).map_err(|e| TopicRuleStoreError::Corrupt {
            name: name.to_string(),
            detail: e.to_string(),
        })
    }

    /// A [`TopicRuleStore`] in one redb file (`data_dir/rules.redb` in `thingkit serve`). Each
    /// write is one transaction committed with [`Durability::Immediate`]: when it returns `Ok`
    /// the change is on stable storage.
    pub struct RedbTopicRuleStore {
        db: Database,
    }

    impl std::fmt::Debug for RedbTopicRuleStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("RedbTopicRuleStore").finish_non_exhaustive()
        }
    }

    impl RedbTopicRuleStore {
        /// Opens the database at `path`, creating it and its table if needed.
        ///
        /// # Errors
        ///
        /// redb cannot open or create it.
        pub fn open(path: impl AsRef<Path>) -> Result<RedbTopicRuleStore, TopicRuleStoreError> {
            let db = Database::create(path).map_err(backend("open"))?;
            let txn = db.begin_write().map_err(backend("open"))?;
            txn.open_table(RULES).map_err(backend("open"))?;
            txn.commit().map_err(backend("open"))?;
            Ok(RedbTopicRuleStore { db })
        }

        fn write(
            &self,
            operation: &'static str,
            f: impl FnOnce(
                &mut redb::Table<'_, &'static str, &'static [u8]>,
            ) -> Result<bool, redb::StorageError>,
        ) -> Result<bool, TopicRuleStoreError> {
            let mut txn = self.db.begin_write().map_err(backend(operation))?;
            txn.set_durability(Durability::Immediate)
                .map_err(backend(operation))?;
            let out = {
                let mut table = txn.open_table(RULES).map_err(backend(operation))?;
                f(&mut table).map_err(backend(operation))?
            };
            txn.commit().map_err(backend(operation))?;
            Ok(out)
        }
    }

    impl TopicRuleStore for RedbTopicRuleStore {
        fn get(&self, name: &str) -> Result<Option<StoredTopicRule>, TopicRuleStoreError> {
            let txn = self.db.begin_read().map_err(backend("get"))?;
            let table = txn.open_table(RULES).map_err(backend("get"))?;
            match table.get(name).map_err(backend("get"))? {
                Some(v) => Ok(Some(decode(name, v.value())?)),
                None => Ok(None),
            }
        }

        fn list(&self) -> Result<Vec<(String, StoredTopicRule)>, TopicRuleStoreError> {
            let txn = self.db.begin_read().map_err(backend("list"))?;
            let table = txn.open_table(RULES).map_err(backend("list"))?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(backend("list"))? {
                let (k, v) = entry.map_err(backend("list"))?;
                let name = k.value().to_string();
                let rule = decode(&name, v.value())?;
                out.push((name, rule));
            }
            Ok(out)
        }

        fn put(&self, name: &str, rule: &StoredTopicRule) -> Result<(), TopicRuleStoreError> {
            let bytes = serde_json::to_vec(rule).map_err(|e| TopicRuleStoreError::Backend {
                operation: "put",
                detail: e.to_string(),
            })?;
            self.write("put", |t| {
                t.insert(name, bytes.as_slice())?;
                Ok(true)
            })?;
            Ok(())
        }

        fn remove(&self, name: &str) -> Result<bool, TopicRuleStoreError> {
            self.write("remove", |t| Ok(t.remove(name)?.is_some()))
        }
    }
}

/// The topic rules of a control plane: where they are stored, the engine they drive, and the
/// lock that makes each change (check, engine, store) one step.
pub struct TopicRules {
    /// The store.
    pub store: Arc<dyn TopicRuleStore>,
    /// The running engine (`None`: rules are only stored).
    pub hook: Option<Arc<dyn TopicRuleHook>>,
    pub(crate) changing: Mutex<()>,
}

impl std::fmt::Debug for TopicRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicRules")
            .field("hook", &self.hook.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for TopicRules {
    fn default() -> TopicRules {
        TopicRules::new(Arc::new(MemoryTopicRuleStore::new()), None)
    }
}

impl TopicRules {
    /// Rules kept in `store`, driving `hook`.
    pub fn new(store: Arc<dyn TopicRuleStore>, hook: Option<Arc<dyn TopicRuleHook>>) -> Self {
        TopicRules {
            store,
            hook,
            changing: Mutex::new(()),
        }
    }

    /// Hands every stored enabled rule to the hook (what a server does at startup): the rules
    /// the engine refused, with its reason (they stay stored, as `GetTopicRule` shows them).
    ///
    /// # Errors
    ///
    /// The store cannot be read.
    pub fn install(&self) -> Result<Vec<(String, String)>, TopicRuleStoreError> {
        let Some(hook) = &self.hook else {
            return Ok(Vec::new());
        };
        let mut refused = Vec::new();
        for (name, rule) in self.store.list()? {
            if !rule.disabled()
                && let Err(why) = hook.upsert(&name, &rule.payload)
            {
                refused.push((name, why));
            }
        }
        Ok(refused)
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.changing.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The behaviour every [`TopicRuleStore`] must show (a test suite for implementations: the
/// memory and redb stores run it; a PostgreSQL one must too). Panics on the first difference.
pub fn check_store(store: &dyn TopicRuleStore) {
    let rule = |sql: &str, created_at: i64| StoredTopicRule {
        payload: TopicRulePayload {
            sql: sql.to_string(),
            description: None,
            actions: Vec::new(),
            rule_disabled: Some(false),
            aws_iot_sql_version: Some("2016-03-23".into()),
            error_action: None,
        },
        created_at,
        arn: "arn:aws:iot:eu-central-1:123456789012:rule/r".into(),
        topic_pattern: Some("a/#".into()),
    };
    assert_eq!(
        store.get("b").ok(),
        Some(None),
        "an empty store has no rule"
    );
    assert!(store.put("b", &rule("SELECT * FROM 'a/#'", 1)).is_ok());
    assert!(store.put("a", &rule("SELECT 1 FROM 'a/#'", 2)).is_ok());
    assert_eq!(
        store.get("b").ok().flatten(),
        Some(rule("SELECT * FROM 'a/#'", 1)),
        "a rule reads back as stored"
    );
    let names: Vec<String> = store
        .list()
        .unwrap_or_default()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["a", "b"], "list is by name, ascending");
    assert!(store.put("b", &rule("SELECT 2 FROM 'a/#'", 1)).is_ok());
    assert_eq!(
        store.get("b").ok().flatten().map(|r| r.payload.sql),
        Some("SELECT 2 FROM 'a/#'".to_string()),
        "put replaces"
    );
    assert_eq!(store.remove("b").ok(), Some(true));
    assert_eq!(
        store.remove("b").ok(),
        Some(false),
        "a second remove finds nothing"
    );
    assert_eq!(store.get("b").ok(), Some(None));
    assert_eq!(store.list().map(|l| l.len()).ok(), Some(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_store_passes_the_store_suite() {
        check_store(&MemoryTopicRuleStore::new());
    }

    #[cfg(feature = "redb")]
    #[test]
    fn the_redb_store_passes_the_store_suite_and_keeps_rules_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.redb");
        {
            let store = RedbTopicRuleStore::open(&path).unwrap();
            check_store(&store);
        }
        let reopened = RedbTopicRuleStore::open(&path).unwrap();
        let names: Vec<String> = reopened
            .list()
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["a"]);
    }
}
