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
//!
//! Several servers can share their templates through a [`TemplateBackend`]
//! ([`TemplateStore::with_backend`]; thingkit-cluster's is PostgreSQL): the store then keeps a
//! copy of the backend's set, each change is applied to the set as the backend holds it *now*
//! and written there before it is acknowledged, and [`TemplateStore::reload`] brings the copy
//! (and a fleet-provisioning service) in line with changes other servers made.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
    /// A [`TemplateBackend`] failed (nothing was changed, or, for a write whose answer was
    /// lost, the write may have been applied).
    #[error("template store {operation}: {detail}")]
    Backend {
        /// What was being done (`load`, `save`).
        operation: &'static str,
        /// The backend's error.
        detail: String,
    },
}

/// Where a [`TemplateStore`] keeps its templates instead of a file, for templates shared by
/// several servers. Implementations are durable when a call returns `Ok`.
pub trait TemplateBackend: Send + Sync {
    /// Every stored template, by name.
    ///
    /// # Errors
    ///
    /// [`TemplateStoreError::Backend`] or [`TemplateStoreError::Corrupt`].
    fn load(&self) -> Result<BTreeMap<String, StoredTemplate>, TemplateStoreError>;

    /// Applies `changes` all or nothing: `Some` stores the template under its name
    /// (inserting or replacing it), `None` deletes the name.
    ///
    /// # Errors
    ///
    /// [`TemplateStoreError::Backend`]; nothing was applied.
    fn save(&self, changes: &[(String, Option<StoredTemplate>)]) -> Result<(), TemplateStoreError>;
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

/// The provisioning templates, by name: in memory, in a file, or in a [`TemplateBackend`].
#[derive(Default)]
pub struct TemplateStore {
    path: Option<PathBuf>,
    backend: Option<Arc<dyn TemplateBackend>>,
    templates: Mutex<BTreeMap<String, StoredTemplate>>,
    /// With a backend: the set as [`TemplateStore::reload`] last brought a fleet in line with
    /// it, plus this store's own changes (which the API brings there). `update` may take in
    /// other servers' changes to `templates` before they reach the fleet; `reload` diffs
    /// against this, so none is missed.
    served: Mutex<BTreeMap<String, StoredTemplate>>,
}

impl std::fmt::Debug for TemplateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateStore")
            .field("path", &self.path)
            .field("backend", &self.backend.is_some())
            .finish_non_exhaustive()
    }
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
            backend: None,
            templates: Mutex::new(templates),
            served: Mutex::default(),
        })
    }

    /// The store kept in `backend` (shared with other servers), with the templates it holds
    /// now.
    ///
    /// # Errors
    ///
    /// The backend cannot be read.
    pub fn with_backend(
        backend: Arc<dyn TemplateBackend>,
    ) -> Result<TemplateStore, TemplateStoreError> {
        let templates = backend.load()?;
        Ok(TemplateStore {
            path: None,
            backend: Some(backend),
            served: Mutex::new(templates.clone()),
            templates: Mutex::new(templates),
        })
    }

    /// Reads the backend's templates again (changes other servers made) and, if `fleet` is
    /// given, adds, replaces or removes the changed ones there as [`TemplateStore::install`]
    /// would have. Returns the names that changed. A store without a backend has nothing to
    /// re-read.
    ///
    /// # Errors
    ///
    /// The backend cannot be read; nothing changed.
    pub fn reload(
        &self,
        fleet: Option<&mut FleetProvisioning>,
    ) -> Result<Vec<String>, TemplateStoreError> {
        let Some(backend) = &self.backend else {
            return Ok(Vec::new());
        };
        let fresh = backend.load()?;
        let mut current = self.lock();
        let mut served = self.served.lock().unwrap_or_else(|p| p.into_inner());
        let changed = diff(&served, &fresh);
        if let Some(fleet) = fleet {
            for (name, template) in &changed {
                match template.as_ref().filter(|t| t.serves_fleet()) {
                    Some(t) => {
                        // A body that no longer parses stays stored but unserved.
                        let added = t.parse().and_then(|p| fleet.add_template(name, p));
                        if added.is_err() {
                            fleet.remove_template(name);
                        }
                    }
                    None => {
                        fleet.remove_template(name);
                    }
                }
            }
        }
        served.clone_from(&fresh);
        *current = fresh;
        Ok(changed.into_iter().map(|(name, _)| name).collect())
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
        if let Some(backend) = &self.backend {
            // Start from what the cluster holds now, not from a copy another server's change
            // may not have reached yet.
            *current = backend.load()?;
        }
        let mut next = current.clone();
        let out = change(&mut next)?;
        if let Some(path) = &self.path {
            write_atomically(path, &next)?;
        }
        if let Some(backend) = &self.backend {
            let changes = diff(&current, &next);
            if !changes.is_empty() {
                backend.save(&changes)?;
                // The caller brings the fleet in line with its own change.
                let mut served = self.served.lock().unwrap_or_else(|p| p.into_inner());
                for (name, template) in changes {
                    match template {
                        Some(t) => served.insert(name, t),
                        None => served.remove(&name),
                    };
                }
            }
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

/// The names whose template differs between `old` and `new`, with the new one (`None`: gone).
fn diff(
    old: &BTreeMap<String, StoredTemplate>,
    new: &BTreeMap<String, StoredTemplate>,
) -> Vec<(String, Option<StoredTemplate>)> {
    let mut out: Vec<(String, Option<StoredTemplate>)> = new
        .iter()
        .filter(|(name, t)| old.get(*name) != Some(*t))
        .map(|(name, t)| (name.clone(), Some(t.clone())))
        .collect();
    out.extend(
        old.keys()
            .filter(|name| !new.contains_key(*name))
            .map(|name| (name.clone(), None)),
    );
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend two stores share, as two servers share PostgreSQL.
    #[derive(Default)]
    struct Shared(Mutex<BTreeMap<String, StoredTemplate>>);

    impl TemplateBackend for Shared {
        fn load(&self) -> Result<BTreeMap<String, StoredTemplate>, TemplateStoreError> {
            Ok(self.0.lock().unwrap().clone())
        }
        fn save(
            &self,
            changes: &[(String, Option<StoredTemplate>)],
        ) -> Result<(), TemplateStoreError> {
            let mut all = self.0.lock().unwrap();
            for (name, t) in changes {
                match t {
                    Some(t) => all.insert(name.clone(), t.clone()),
                    None => all.remove(name),
                };
            }
            Ok(())
        }
    }

    fn template(name: &str) -> StoredTemplate {
        StoredTemplate {
            name: name.into(),
            description: None,
            body: "{}".into(),
            enabled: false,
            provisioning_role_arn: "arn:aws:iam::123456789012:role/p".into(),
            kind: TemplateType::FleetProvisioning,
            created_at: 1,
            modified_at: 1,
        }
    }

    #[test]
    fn stores_sharing_a_backend_see_each_others_changes_after_a_reload() {
        let backend = Arc::new(Shared::default());
        let a = TemplateStore::with_backend(backend.clone()).unwrap();
        let b = TemplateStore::with_backend(backend.clone()).unwrap();
        a.update(|all| {
            all.insert("t1".into(), template("t1"));
            Ok::<_, TemplateStoreError>(())
        })
        .unwrap();
        assert!(b.get("t1").is_none(), "b's copy is as it was");
        assert_eq!(b.reload(None).unwrap(), ["t1"]);
        assert_eq!(b.get("t1"), Some(template("t1")));
        assert!(b.reload(None).unwrap().is_empty(), "nothing changed since");
        // A change through b starts from the backend's set, even if b's copy is behind.
        a.update(|all| {
            all.insert("t2".into(), template("t2"));
            Ok::<_, TemplateStoreError>(())
        })
        .unwrap();
        b.update(|all| {
            all.remove("t1");
            Ok::<_, TemplateStoreError>(())
        })
        .unwrap();
        let names: Vec<String> = backend.0.lock().unwrap().keys().cloned().collect();
        assert_eq!(names, ["t2"]);
        assert_eq!(a.reload(None).unwrap(), ["t1"]);
        assert!(a.get("t1").is_none());
    }

    #[test]
    fn a_change_taken_in_by_an_update_still_reaches_the_next_reload() {
        let backend = Arc::new(Shared::default());
        let a = TemplateStore::with_backend(backend.clone()).unwrap();
        let b = TemplateStore::with_backend(backend.clone()).unwrap();
        b.update(|all| {
            all.insert("from-b".into(), template("from-b"));
            Ok::<_, TemplateStoreError>(())
        })
        .unwrap();
        // A changes another template before its feed told it of b's: its copy takes b's in...
        a.update(|all| {
            all.insert("from-a".into(), template("from-a"));
            Ok::<_, TemplateStoreError>(())
        })
        .unwrap();
        assert!(a.get("from-b").is_some());
        // ... and the reload the feed triggers still reports it (for the fleet), not a's own.
        assert_eq!(a.reload(None).unwrap(), ["from-b"]);
    }
}
