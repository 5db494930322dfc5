//! What the control plane keeps about jobs beside the jobs engine: the job templates
//! (`CreateJobTemplate` and friends; jobs themselves, with what `UpdateJob` and
//! `AssociateTargetsWithJob` change, are the engine's). One JSON file in the server's data directory (or memory), written as the provisioning templates
//! are ([`crate::templates`]): every change is persisted (temporary file, fsync, rename)
//! before it is acknowledged, and a refused change leaves the set as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

/// The job templates, persisted or in memory.
#[derive(Debug, Default)]
pub struct JobStore(JsonRecords<JobRecords>);

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
        JsonRecords::open(path.into()).map(JobStore)
    }

    /// The file it persists to (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.0.path()
    }

    /// A copy of everything.
    pub fn snapshot(&self) -> JobRecords {
        self.0.read(JobRecords::clone)
    }

    /// A job template by ID.
    pub fn template(&self, id: &str) -> Option<StoredJobTemplate> {
        self.0.read(|r| r.templates.get(id).cloned())
    }

    /// Applies `change` to a copy of the records, persists the copy, then keeps it. `change`
    /// refusing (returning `Err`) or the write failing leaves the records unchanged.
    ///
    /// # Errors
    ///
    /// What `change` returned, or the write's failure.
    pub fn update<T, E: From<TemplateStoreError>>(
        &self,
        change: impl FnOnce(&mut JobRecords) -> Result<T, E>,
    ) -> Result<T, E> {
        self.0.update(change)
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
        assert_eq!(reopened.template("t1").unwrap().description, "d");
    }
}
