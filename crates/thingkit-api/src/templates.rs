//! The provisioning templates the API manages (`CreateProvisioningTemplate` and friends),
//! persisted as one JSON file in the server's data directory, or kept in memory.
//!
//! Every change is written before it is acknowledged: the whole set goes to a temporary file
//! beside the real one, which is fsynced and renamed over it (and the directory fsynced), so a
//! crash leaves either the old set or the new one, never a torn file. A refused change (a
//! failed write) leaves the in-memory set as it was.
//!
//! Enabled `FLEET_PROVISIONING` templates are served by the fleet-provisioning service:
//! [`TemplateStore::install`] adds them at start-up (the control plane does it in
//! [`ControlPlane::with_templates`](crate::ControlPlane::with_templates)), and the API
//! operations add and remove them as they change.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use thingkit_provision::{FleetProvisioning, ProvisioningTemplate, TemplateLimits};

/// An error of the template store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateStoreError {
    /// Reading or writing the file failed.
    #[error("store {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a template set this version can read.
    #[error("store {path} is not valid: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line and column.
        detail: String,
    },
}

/// The kind of a template (AWS `type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TemplateType {
    /// Fleet provisioning by claim (`RegisterThing` over MQTT).
    #[default]
    FleetProvisioning,
    /// Just-in-time provisioning (stored; thingkit runs JITP from its configuration).
    Jitp,
}

impl TemplateType {
    /// `FLEET_PROVISIONING` or `JITP`.
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateType::FleetProvisioning => "FLEET_PROVISIONING",
            TemplateType::Jitp => "JITP",
        }
    }
}

/// A provisioning template as the API describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredTemplate {
    /// The name (1 to 36 characters of `[0-9A-Za-z_-]`).
    pub name: String,
    /// A description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The template body (JSON text, validated when it was stored).
    pub body: String,
    /// Whether devices may provision with it.
    pub enabled: bool,
    /// The IAM role AWS would assume to provision (kept, not used: thingkit provisions into
    /// its own registry).
    pub provisioning_role_arn: String,
    /// Its type.
    #[serde(default)]
    pub kind: TemplateType,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub modified_at: i64,
}

impl StoredTemplate {
    /// Parses its body with the default limits.
    pub fn parse(&self) -> thingkit_provision::Result<ProvisioningTemplate> {
        ProvisioningTemplate::parse(&self.body, &TemplateLimits::default())
    }

    /// Whether the fleet-provisioning service should serve it.
    pub fn serves_fleet(&self) -> bool {
        self.enabled && self.kind == TemplateType::FleetProvisioning
    }
}

#[derive(Default, Serialize, Deserialize)]
struct File {
    templates: BTreeMap<String, StoredTemplate>,
}

/// The provisioning templates, by name.
#[derive(Debug, Default)]
pub struct TemplateStore {
    path: Option<PathBuf>,
    templates: Mutex<BTreeMap<String, StoredTemplate>>,
}

impl TemplateStore {
    /// A store that keeps its templates in memory only.
    pub fn in_memory() -> TemplateStore {
        TemplateStore::default()
    }

    /// Opens the store persisted at `path` (created on the first change if it does not
    /// exist).
    pub fn open(path: impl Into<PathBuf>) -> Result<TemplateStore, TemplateStoreError> {
        let path = path.into();
        let templates = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: File =
                    serde_json::from_slice(&bytes).map_err(|e| TemplateStoreError::Corrupt {
                        path: path.clone(),
                        detail: e.to_string(),
                    })?;
                file.templates
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(TemplateStoreError::Io { path, source }),
        };
        Ok(TemplateStore {
            path: Some(path),
            templates: Mutex::new(templates),
        })
    }

    /// The file it persists to (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, StoredTemplate>> {
        self.templates.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A template by name.
    pub fn get(&self, name: &str) -> Option<StoredTemplate> {
        self.lock().get(name).cloned()
    }

    /// Every template, in name order.
    pub fn list(&self) -> Vec<StoredTemplate> {
        self.lock().values().cloned().collect()
    }

    /// Applies `change` to a copy of the set, persists the copy, then keeps it. `change`
    /// refusing (returning `Err`) or the write failing leaves the set unchanged.
    pub fn update<T, E: From<TemplateStoreError>>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, StoredTemplate>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut current = self.lock();
        let mut next = current.clone();
        let out = change(&mut next)?;
        if let Some(path) = &self.path {
            write_atomically(path, &next)?;
        }
        *current = next;
        Ok(out)
    }

    /// Adds every enabled fleet-provisioning template to `fleet`. Returns the names of those
    /// it could not add (a body that no longer parses under the current limits), which stay
    /// stored but unserved.
    pub fn install(&self, fleet: &mut FleetProvisioning) -> Vec<String> {
        let mut skipped = Vec::new();
        for t in self.lock().values().filter(|t| t.serves_fleet()) {
            let added = t
                .parse()
                .and_then(|parsed| fleet.add_template(&t.name, parsed));
            if added.is_err() {
                skipped.push(t.name.clone());
            }
        }
        skipped
    }
}

fn write_atomically(
    path: &Path,
    templates: &BTreeMap<String, StoredTemplate>,
) -> Result<(), TemplateStoreError> {
    let file = File {
        templates: templates.clone(),
    };
    write_json_atomically(path, &file)
}

/// A set of records kept as one JSON file (or in memory only), shared by the job and Device
/// Defender stores: a change is applied to a copy, persisted atomically, then kept, so a refused
/// change or a failed write leaves the records as they were.
#[derive(Debug, Default)]
pub(crate) struct JsonRecords<R> {
    path: Option<PathBuf>,
    records: Mutex<R>,
}

impl<R: Clone + PartialEq + Default + Serialize + serde::de::DeserializeOwned> JsonRecords<R> {
    /// The records persisted at `path` (none yet if the file does not exist).
    pub(crate) fn open(path: PathBuf) -> Result<JsonRecords<R>, TemplateStoreError> {
        let records = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| TemplateStoreError::Corrupt {
                    path: path.clone(),
                    detail: e.to_string(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => R::default(),
            Err(source) => return Err(TemplateStoreError::Io { path, source }),
        };
        Ok(JsonRecords {
            path: Some(path),
            records: Mutex::new(records),
        })
    }

    /// The file (`None` in memory).
    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Reads the records.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&R) -> T) -> T {
        f(&self.records.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Applies `change` to a copy, persists the copy if it differs, then keeps it.
    pub(crate) fn update<T, E: From<TemplateStoreError>>(
        &self,
        change: impl FnOnce(&mut R) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut current = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = current.clone();
        let out = change(&mut next)?;
        if next != *current {
            if let Some(path) = &self.path {
                write_json_atomically(path, &next)?;
            }
            *current = next;
        }
        Ok(out)
    }
}

/// Writes `value` as pretty JSON to `path` atomically: a temporary file beside it, fsynced
/// and renamed over it, then the directory fsynced (shared with the job store).
pub(crate) fn write_json_atomically<T: Serialize>(
    path: &Path,
    value: &T,
) -> Result<(), TemplateStoreError> {
    let io = |source| TemplateStoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| TemplateStoreError::Corrupt {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let mut temp_name = path.as_os_str().to_owned();
    temp_name.push(".tmp");
    let temp = PathBuf::from(temp_name);
    let mut out = std::fs::File::create(&temp).map_err(io)?;
    out.write_all(&bytes).map_err(io)?;
    out.sync_all().map_err(io)?;
    drop(out);
    std::fs::rename(&temp, path).map_err(io)?;
    // The rename is durable once the directory is (where directories can be opened).
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(dir)
    {
        d.sync_all().map_err(io)?;
    }
    Ok(())
}

impl From<TemplateStoreError> for crate::error::ApiError {
    /// A store failure is an internal failure (and nothing changed).
    fn from(e: TemplateStoreError) -> Self {
        crate::error::ApiError::internal(e.to_string())
    }
}
