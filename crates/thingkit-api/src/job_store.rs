//! What the control plane keeps about jobs beside the jobs engine: the job templates
//! (`CreateJobTemplate` and friends; jobs themselves, with what `UpdateJob` and
//! `AssociateTargetsWithJob` change, are the engine's). One JSON file in the server's data
//! directory (or memory), written as the provisioning templates are ([`crate::templates`]):
//! every change is persisted (temporary file, fsync, rename) before it is acknowledged, and a
//! refused change leaves the set as it was. Servers that share their job templates keep them
//! in a [`JobTemplateBackend`] instead ([`JobStore::with_backend`]), read on every call.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::templates::{JsonRecords, TemplateStoreError};

/// A job template as `DescribeJobTemplate` describes it. The configurations are kept as the
/// JSON the request gave (each was checked by the jobs engine's rules when stored).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredJobTemplate {
    /// The ID (1 to 64 characters of `[a-zA-Z0-9_-]`).
    pub id: String,
    /// The description (required by the API).
    pub description: String,
    /// The job document (JSON text of an object).
    pub document: String,
    /// `presignedUrlConfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presigned_url_config: Option<Value>,
    /// `jobExecutionsRolloutConfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Value>,
    /// `abortConfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<Value>,
    /// `timeoutConfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Value>,
    /// `jobExecutionsRetryConfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Value>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// Everything the store holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecords {
    /// Job templates by ID.
    #[serde(default)]
    pub templates: BTreeMap<String, StoredJobTemplate>,
}

/// Where a [`JobStore`] keeps its job templates instead of a file, for templates shared by
/// several servers. Implementations are durable when a call returns `Ok`.
pub trait JobTemplateBackend: Send + Sync {
    /// Every stored job template, by ID.
    ///
    /// # Errors
    ///
    /// [`TemplateStoreError::Backend`] or [`TemplateStoreError::Corrupt`].
    fn load(&self) -> Result<BTreeMap<String, StoredJobTemplate>, TemplateStoreError>;

    /// The stored job template `id`, if any. The provided method loads every template; a
    /// backend that can read one record alone should override it.
    ///
    /// # Errors
    ///
    /// [`TemplateStoreError::Backend`] or [`TemplateStoreError::Corrupt`].
    fn get(&self, id: &str) -> Result<Option<StoredJobTemplate>, TemplateStoreError> {
        Ok(self.load()?.remove(id))
    }

    /// Applies `changes` all or nothing: `Some` stores the template under its ID (inserting
    /// or replacing it), `None` deletes the ID.
    ///
    /// # Errors
    ///
    /// [`TemplateStoreError::Backend`]; nothing was applied.
    fn save(
        &self,
        changes: &[(String, Option<StoredJobTemplate>)],
    ) -> Result<(), TemplateStoreError>;
}

/// The job templates: in memory, in a file, or in a [`JobTemplateBackend`].
#[derive(Default)]
pub struct JobStore {
    local: JsonRecords<JobRecords>,
    backend: Option<Arc<dyn JobTemplateBackend>>,
}

impl std::fmt::Debug for JobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobStore")
            .field("path", &self.path())
            .field("backend", &self.backend.is_some())
            .finish()
    }
}

impl JobStore {
    /// A store that keeps everything in memory only.
    pub fn in_memory() -> JobStore {
        JobStore::default()
    }

    /// Opens the store persisted at `path` (created on the first change if it does not
    /// exist).
    ///
    /// # Errors
    ///
    /// The file cannot be read, or is not a record set this version can read.
    pub fn open(path: impl Into<PathBuf>) -> Result<JobStore, TemplateStoreError> {
        JsonRecords::open(path.into()).map(|local| JobStore {
            local,
            backend: None,
        })
    }

    /// A store whose templates are `backend`'s, read on every call: what another server
    /// stored there is seen at once (no cache to refresh).
    pub fn with_backend(backend: Arc<dyn JobTemplateBackend>) -> JobStore {
        JobStore {
            local: JsonRecords::default(),
            backend: Some(backend),
        }
    }

    /// The file it persists to (`None` in memory or with a backend).
    pub fn path(&self) -> Option<&Path> {
        self.local.path()
    }

    /// A copy of everything.
    ///
    /// # Errors
    ///
    /// The backend cannot be read.
    pub fn snapshot(&self) -> Result<JobRecords, TemplateStoreError> {
        match &self.backend {
            Some(backend) => Ok(JobRecords {
                templates: backend.load()?,
            }),
            None => Ok(self.local.read(JobRecords::clone)),
        }
    }

    /// A job template by ID.
    ///
    /// # Errors
    ///
    /// The backend cannot be read.
    pub fn template(&self, id: &str) -> Result<Option<StoredJobTemplate>, TemplateStoreError> {
        match &self.backend {
            Some(backend) => backend.get(id),
            None => Ok(self.local.read(|r| r.templates.get(id).cloned())),
        }
    }

    /// Applies `change` to a copy of the records, persists the copy, then keeps it. `change`
    /// refusing (returning `Err`) or the write failing leaves the records unchanged. With a
    /// backend, the copy is the backend's records of this moment and only the templates that
    /// changed are written (two servers changing one template at once: the last write wins).
    ///
    /// # Errors
    ///
    /// What `change` returned, or the write's failure.
    pub fn update<T, E: From<TemplateStoreError>>(
        &self,
        change: impl FnOnce(&mut JobRecords) -> Result<T, E>,
    ) -> Result<T, E> {
        let Some(backend) = &self.backend else {
            return self.local.update(change);
        };
        let before = backend.load()?;
        let mut records = JobRecords {
            templates: before.clone(),
        };
        let out = change(&mut records)?;
        let mut changes: Vec<(String, Option<StoredJobTemplate>)> = Vec::new();
        for (id, old) in &before {
            match records.templates.get(id) {
                None => changes.push((id.clone(), None)),
                Some(new) if new != old => changes.push((id.clone(), Some(new.clone()))),
                Some(_) => {}
            }
        }
        for (id, new) in &records.templates {
            if !before.contains_key(id) {
                changes.push((id.clone(), Some(new.clone())));
            }
        }
        if !changes.is_empty() {
            backend.save(&changes)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_reopen_and_a_refused_change_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs-api.json");
        let store = JobStore::open(&path).unwrap();
        store
            .update(|r| {
                r.templates.insert(
                    "t1".into(),
                    StoredJobTemplate {
                        id: "t1".into(),
                        description: "d".into(),
                        document: "{}".into(),
                        ..StoredJobTemplate::default()
                    },
                );
                Ok::<_, TemplateStoreError>(())
            })
            .unwrap();
        let refused: Result<(), crate::ApiError> = store.update(|r| {
            r.templates.clear();
            Err(crate::ApiError::invalid_request("no"))
        });
        assert!(refused.is_err());
        let reopened = JobStore::open(&path).unwrap();
        assert_eq!(reopened.template("t1").unwrap().unwrap().description, "d");
    }

    /// A backend in memory that counts its saves.
    #[derive(Default)]
    struct Shared(std::sync::Mutex<(BTreeMap<String, StoredJobTemplate>, usize)>);

    impl JobTemplateBackend for Shared {
        fn load(&self) -> Result<BTreeMap<String, StoredJobTemplate>, TemplateStoreError> {
            Ok(self.0.lock().unwrap().0.clone())
        }
        fn save(
            &self,
            changes: &[(String, Option<StoredJobTemplate>)],
        ) -> Result<(), TemplateStoreError> {
            let mut state = self.0.lock().unwrap();
            for (id, t) in changes {
                match t {
                    Some(t) => state.0.insert(id.clone(), t.clone()),
                    None => state.0.remove(id),
                };
            }
            state.1 += 1;
            Ok(())
        }
    }

    #[test]
    fn stores_on_one_backend_see_each_other_s_changes_at_once() {
        let backend = Arc::new(Shared::default());
        let (a, b) = (
            JobStore::with_backend(backend.clone()),
            JobStore::with_backend(backend.clone()),
        );
        let template = |id: &str| StoredJobTemplate {
            id: id.into(),
            description: "d".into(),
            document: "{}".into(),
            ..StoredJobTemplate::default()
        };
        a.update(|r| {
            r.templates.insert("t1".into(), template("t1"));
            Ok::<_, TemplateStoreError>(())
        })
        .unwrap();
        assert_eq!(b.template("t1").unwrap(), Some(template("t1")));
        // A refused change writes nothing; one that changes nothing writes nothing.
        let refused: Result<(), crate::ApiError> = b.update(|r| {
            r.templates.clear();
            Err(crate::ApiError::invalid_request("no"))
        });
        assert!(refused.is_err());
        b.update(|_| Ok::<_, TemplateStoreError>(())).unwrap();
        assert_eq!(backend.0.lock().unwrap().1, 1);
        b.update(|r| {
            r.templates.remove("t1");
            Ok::<_, TemplateStoreError>(())
        })
        .unwrap();
        assert_eq!(a.snapshot().unwrap().templates.len(), 0);
    }
}
