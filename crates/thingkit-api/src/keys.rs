//! Access keys: the IDs and secrets callers sign requests with, and each key's optional IAM
//! identity policy.
//!
//! The store is one JSON file, `access-keys.json` in the server's data directory:
//!
//! ```json
//! {"keys": [{"AccessKeyId": "AKIA...", "SecretAccessKey": "...", "Policy": null, "CreatedAt": 1700000000}]}
//! ```
//!
//! **The file is a secret.** SigV4 is a MAC, not a signature: verifying one needs the secret
//! access key itself, so the server keeps every secret in clear. The file is created with mode
//! `0600` (owner only) and every write replaces it atomically (a temporary file in the same
//! directory, `fsync`, `rename`, `fsync` of the directory), so a crash leaves the old or the new
//! file, never half of one.
//!
//! A key without a policy may call every operation. A key with a policy is authorized by it
//! ([`crate::identity`]); the policy is compiled once, when the key is loaded.
//!
//! A running server sees keys created by `thingkit access-key create` without a restart: a
//! lookup of an unknown key ID checks the file's modification time and length (a `stat`) and
//! reads the file again only if they changed.
//!
//! Several servers share their keys through a [`KeyBackend`] ([`KeyStore::with_backend`];
//! thingkit-cluster's is PostgreSQL) instead of the file: a lookup of a key ID the store has
//! not seen asks the backend (so a key created anywhere signs requests everywhere), writes go
//! to the backend before they are acknowledged, and [`KeyStore::forget`] drops a key another
//! server changed or deleted from the store's copy.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use thingkit_policy::{PolicyDocument, PolicyLimits, PolicySet, SetOptions};

use crate::error::{ApiError, ApiResult};

/// The file name of the store in the server's data directory.
pub const FILE_NAME: &str = "access-keys.json";

/// The largest identity policy accepted, in characters without white space (IAM's limit for
/// a user's inline policies; AWS IoT's own policies are limited to 2048).
pub const MAX_IDENTITY_POLICY_CHARS: usize = 6144;

/// The largest key file read, in bytes.
pub const MAX_FILE_LEN: u64 = 16 * 1024 * 1024;

/// One access key as stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccessKey {
    /// `AKIA` and 16 characters of `A-Z2-7`.
    pub access_key_id: String,
    /// 40 characters of `A-Za-z0-9+/`.
    pub secret_access_key: String,
    /// The IAM identity policy (JSON text); `None` allows every operation.
    pub policy: Option<String>,
    /// When it was created, in seconds since the epoch.
    pub created_at: i64,
}

impl std::fmt::Debug for AccessKey {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("has_policy", &self.policy.is_some())
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize, Default)]
struct KeyFile {
    keys: Vec<AccessKey>,
}

/// What authorization uses of a key's policy: none (allow all), compiled, or why it would not
/// compile (every call is then refused).
#[derive(Clone, Debug)]
pub enum KeyPolicy {
    /// No policy: every operation is allowed.
    AllowAll,
    /// The compiled policy.
    Compiled(Arc<PolicySet>),
    /// The stored policy is invalid; the key may do nothing.
    Invalid(String),
}

#[derive(Debug)]
struct Entry {
    key: AccessKey,
    policy: KeyPolicy,
}

impl Entry {
    fn new(key: AccessKey) -> Entry {
        let policy = match &key.policy {
            None => KeyPolicy::AllowAll,
            Some(text) => match compile_policy(&key.access_key_id, text) {
                Ok(set) => KeyPolicy::Compiled(Arc::new(set)),
                Err(e) => KeyPolicy::Invalid(e.message),
            },
        };
        Entry { key, policy }
    }
}

/// The file's identity for change detection: modification time and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

#[derive(Debug, Default)]
struct State {
    keys: BTreeMap<String, Entry>,
    stamp: Option<Stamp>,
    /// With a backend: counts the `forget` calls, so a lookup that read a key before it was
    /// forgotten does not keep it.
    forgotten: u64,
}

/// Where a [`KeyStore`] keeps its keys instead of a file, for keys shared by several
/// servers. Implementations are durable when a write returns `Ok`, and hold the secrets in
/// clear, as the file does: protect them as the file is protected.
pub trait KeyBackend: Send + Sync {
    /// The key `id`, if it exists.
    ///
    /// # Errors
    ///
    /// The backend failed (an internal error).
    fn get(&self, id: &str) -> ApiResult<Option<AccessKey>>;

    /// Every key, in ID order.
    ///
    /// # Errors
    ///
    /// The backend failed.
    fn list(&self) -> ApiResult<Vec<AccessKey>>;

    /// Stores `key` (inserting or replacing the key with its ID).
    ///
    /// # Errors
    ///
    /// The backend failed; nothing changed.
    fn put(&self, key: &AccessKey) -> ApiResult<()>;

    /// Deletes the key `id`; whether it existed.
    ///
    /// # Errors
    ///
    /// The backend failed; nothing changed.
    fn delete(&self, id: &str) -> ApiResult<bool>;
}

/// The access keys: in a file (see the module docs), in a [`KeyBackend`], or in memory.
#[derive(Default)]
pub struct KeyStore {
    path: Option<PathBuf>,
    backend: Option<Arc<dyn KeyBackend>>,
    state: RwLock<State>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("path", &self.path)
            .field("backend", &self.backend.is_some())
            .finish_non_exhaustive()
    }
}

/// Parses and compiles an identity policy (up to [`MAX_IDENTITY_POLICY_CHARS`]).
pub fn compile_policy(name: &str, text: &str) -> ApiResult<PolicySet> {
    let limits = PolicyLimits::default().with_max_policy_chars(MAX_IDENTITY_POLICY_CHARS);
    let doc = PolicyDocument::parse_with(text, &limits)
        .map_err(|e| ApiError::malformed_policy(e.to_string()))?;
    PolicySet::from_documents([(name, &doc)], SetOptions::default())
        .map_err(|e| ApiError::malformed_policy(e.to_string()))
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> ApiError {
    ApiError::internal(format!("cannot {what} {}: {e}", path.display()))
}

fn random_chars(rng: &SystemRandom, alphabet: &[u8], n: usize) -> ApiResult<String> {
    let mut bytes = vec![0u8; n];
    rng.fill(&mut bytes)
        .map_err(|_| ApiError::internal("the system random generator failed"))?;
    // Unbiased: the alphabets have 32 or 64 characters, which divide 256.
    Ok(bytes
        .iter()
        .filter_map(|b| alphabet.get(usize::from(*b) % alphabet.len()))
        .map(|c| char::from(*c))
        .collect())
}

impl KeyStore {
    /// A store that lives only in memory (tests, embedders).
    pub fn in_memory() -> KeyStore {
        KeyStore::default()
    }

    /// The store in the file at `path` (normally `<data_dir>/access-keys.json`). A missing file
    /// is an empty store; it is created on the first write.
    pub fn open(path: impl Into<PathBuf>) -> ApiResult<KeyStore> {
        let store = KeyStore {
            path: Some(path.into()),
            backend: None,
            state: RwLock::new(State::default()),
        };
        store.reload(true)?;
        Ok(store)
    }

    /// The store kept in `backend` (shared with other servers), with the keys it holds now.
    ///
    /// # Errors
    ///
    /// The backend cannot be read.
    pub fn with_backend(backend: Arc<dyn KeyBackend>) -> ApiResult<KeyStore> {
        let keys = backend
            .list()?
            .into_iter()
            .map(|k| (k.access_key_id.clone(), Entry::new(k)))
            .collect();
        Ok(KeyStore {
            path: None,
            backend: Some(backend),
            state: RwLock::new(State {
                keys,
                stamp: None,
                forgotten: 0,
            }),
        })
    }

    /// Drops the key `id` from the store's copy (another server changed or deleted it): the
    /// next lookup asks the backend again. Without a backend this does nothing (the file is
    /// watched instead).
    pub fn forget(&self, id: &str) {
        if self.backend.is_some() {
            let mut state = self.write_state();
            state.keys.remove(id);
            state.forgotten += 1;
        }
    }

    /// Drops every key from the store's copy (changes may have been missed): each is asked
    /// from the backend again at its next use. Without a backend this does nothing.
    pub fn forget_all(&self) {
        if self.backend.is_some() {
            let mut state = self.write_state();
            state.keys.clear();
            state.forgotten += 1;
        }
    }

    /// The file the store lives in, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn stamp(path: &Path) -> ApiResult<Option<Stamp>> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(Stamp {
                modified: m.modified().ok(),
                len: m.len(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(path, "inspect", e)),
        }
    }

    fn read_file(path: &Path) -> ApiResult<KeyFile> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(KeyFile::default()),
            Err(e) => return Err(io_error(path, "open", e)),
        };
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_FILE_LEN + 1), &mut text)
            .map_err(|e| io_error(path, "read", e))?;
        if text.len() as u64 > MAX_FILE_LEN {
            return Err(ApiError::internal(format!(
                "{} is larger than {MAX_FILE_LEN} bytes",
                path.display()
            )));
        }
        serde_json::from_str(&text)
            .map_err(|e| ApiError::internal(format!("{} is malformed: {e}", path.display())))
    }

    /// Reads the file again if `force` or its stamp changed since the last read.
    fn reload(&self, force: bool) -> ApiResult<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let stamp = Self::stamp(path)?;
        if !force && self.read_state().stamp == stamp {
            return Ok(());
        }
        let file = Self::read_file(path)?;
        let mut state = self.write_state();
        state.keys = file
            .keys
            .into_iter()
            .map(|k| (k.access_key_id.clone(), Entry::new(k)))
            .collect();
        state.stamp = stamp;
        Ok(())
    }

    /// Looks `id` up, reading the file again first if `id` is unknown and the file changed.
    fn lookup<T>(&self, id: &str, f: impl Fn(&Entry) -> T) -> Option<T> {
        if let Some(v) = self.read_state().keys.get(id).map(&f) {
            return Some(v);
        }
        if let Some(backend) = &self.backend {
            // An unknown ID costs one query; a key found is kept until it is forgotten (unless
            // it was forgotten while it was being read: the answer may predate the change).
            let before = self.read_state().forgotten;
            let key = backend.get(id).ok()??;
            let entry = Entry::new(key);
            let out = f(&entry);
            let mut state = self.write_state();
            if state.forgotten == before {
                state.keys.insert(id.to_string(), entry);
            }
            return Some(out);
        }
        // An unknown ID costs one `stat`; the file is read only if it changed.
        self.reload(false).ok()?;
        self.read_state().keys.get(id).map(f)
    }

    /// The secret of the access key `id`, if it exists.
    pub fn secret(&self, id: &str) -> Option<String> {
        self.lookup(id, |e| e.key.secret_access_key.clone())
    }

    /// The policy of the access key `id`, if it exists.
    pub fn policy(&self, id: &str) -> Option<KeyPolicy> {
        self.lookup(id, |e| e.policy.clone())
    }

    /// Every key, in ID order (with secrets: print [`AccessKey::access_key_id`] only).
    pub fn list(&self) -> Vec<AccessKey> {
        if let Some(backend) = &self.backend {
            // The backend's list is the truth; on failure, the keys seen so far.
            if let Ok(keys) = backend.list() {
                return keys;
            }
        }
        let _ = self.reload(false);
        self.read_state()
            .keys
            .values()
            .map(|e| e.key.clone())
            .collect()
    }

    /// Adds `key` (replacing a key with the same ID) and saves the store.
    pub fn insert(&self, key: AccessKey) -> ApiResult<()> {
        if let Some(text) = &key.policy {
            compile_policy(&key.access_key_id, text)?;
        }
        if let Some(backend) = &self.backend {
            backend.put(&key)?;
            self.write_state()
                .keys
                .insert(key.access_key_id.clone(), Entry::new(key));
            return Ok(());
        }
        self.change(|keys| {
            keys.insert(key.access_key_id.clone(), Entry::new(key));
            Ok(())
        })
    }

    /// Creates a key with `policy` (checked before anything is written), saves it and returns it:
    /// the only time its secret is shown.
    pub fn create(&self, policy: Option<String>, now: SystemTime) -> ApiResult<AccessKey> {
        if let Some(text) = &policy {
            compile_policy("new-key", text)?;
        }
        let rng = SystemRandom::new();
        let created_at = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let key = AccessKey {
            access_key_id: format!(
                "AKIA{}",
                random_chars(&rng, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)?
            ),
            secret_access_key: random_chars(
                &rng,
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
                40,
            )?,
            policy,
            created_at,
        };
        self.insert(key.clone())?;
        Ok(key)
    }

    /// Deletes the key `id`; `false` if there was none.
    pub fn delete(&self, id: &str) -> ApiResult<bool> {
        if let Some(backend) = &self.backend {
            let found = backend.delete(id)?;
            self.write_state().keys.remove(id);
            return Ok(found);
        }
        let mut found = false;
        self.change(|keys| {
            found = keys.remove(id).is_some();
            Ok(())
        })?;
        Ok(found)
    }

    /// Applies `f` to the keys as they are in the file now, then saves them.
    fn change(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, Entry>) -> ApiResult<()>,
    ) -> ApiResult<()> {
        // Other processes (the CLI) write the file too: start from what it holds now.
        self.reload(false)?;
        let mut state = self.write_state();
        f(&mut state.keys)?;
        if let Some(path) = &self.path {
            let file = KeyFile {
                keys: state.keys.values().map(|e| e.key.clone()).collect(),
            };
            let text = serde_json::to_vec_pretty(&file)
                .map_err(|e| ApiError::internal(format!("cannot encode the keys: {e}")))?;
            write_atomically(path, &text)?;
            state.stamp = Self::stamp(path)?;
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically, owner-only: a temporary file in the same directory,
/// `fsync`, `rename`, `fsync` of the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> ApiResult<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| FILE_NAME.to_string());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options
            .open(&tmp)
            .map_err(|e| io_error(&tmp, "create", e))?;
        // The mode applies only to a new file: make sure an old leftover is owner-only too.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io_error(&tmp, "restrict", e))?;
        }
        file.write_all(bytes)
            .map_err(|e| io_error(&tmp, "write", e))?;
        file.sync_all().map_err(|e| io_error(&tmp, "sync", e))?;
        std::fs::rename(&tmp, path).map_err(|e| io_error(path, "replace", e))?;
        let d = std::fs::File::open(&dir).map_err(|e| io_error(&dir, "open", e))?;
        d.sync_all().map_err(|e| io_error(&dir, "sync", e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOW_DESCRIBE: &str = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "iot:DescribeThing", "Resource": "arn:aws:iot:us-east-1:123456789012:thing/sensor-*"}]}"#;

    #[test]
    fn creates_keys_shaped_like_aws_keys() {
        let store = KeyStore::in_memory();
        let k = store.create(None, SystemTime::UNIX_EPOCH).expect("created");
        assert_eq!(k.access_key_id.len(), 20);
        assert!(k.access_key_id.starts_with("AKIA"));
        assert!(
            k.access_key_id[4..]
                .bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        );
        assert_eq!(k.secret_access_key.len(), 40);
        assert_eq!(
            store.secret(&k.access_key_id),
            Some(k.secret_access_key.clone())
        );
        assert!(matches!(
            store.policy(&k.access_key_id),
            Some(KeyPolicy::AllowAll)
        ));
        assert!(!format!("{k:?}").contains(&k.secret_access_key));
    }

    #[test]
    fn refuses_an_invalid_policy_before_writing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        let store = KeyStore::open(&path).expect("opens");
        let e = store
            .create(
                Some(r#"{"Version": "2012-10-17"}"#.into()),
                SystemTime::UNIX_EPOCH,
            )
            .expect_err("invalid");
        assert_eq!(e.code, "MalformedPolicyException");
        assert!(!path.exists());
    }

    #[test]
    fn saves_owner_only_and_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        let store = KeyStore::open(&path).expect("opens");
        let k = store
            .create(Some(ALLOW_DESCRIBE.into()), SystemTime::UNIX_EPOCH)
            .expect("created");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = KeyStore::open(&path).expect("reopens");
        assert_eq!(again.list(), vec![k.clone()]);
        assert!(matches!(
            again.policy(&k.access_key_id),
            Some(KeyPolicy::Compiled(_))
        ));
        assert!(again.delete(&k.access_key_id).expect("deleted"));
        assert!(!again.delete(&k.access_key_id).expect("deleted"));
        assert!(again.secret(&k.access_key_id).is_none());
    }

    #[test]
    fn a_running_store_sees_keys_another_process_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        let server = KeyStore::open(&path).expect("opens");
        assert!(server.secret("AKIAUNKNOWN").is_none());
        let cli = KeyStore::open(&path).expect("opens");
        let k = cli.create(None, SystemTime::UNIX_EPOCH).expect("created");
        assert_eq!(server.secret(&k.access_key_id), Some(k.secret_access_key));
    }

    #[test]
    fn accepts_identity_policies_longer_than_iot_policies() {
        let resources: Vec<String> = (0..90)
            .map(|i| format!("\"arn:aws:iot:us-east-1:123456789012:thing/sensor-{i}\""))
            .collect();
        let text = format!(
            r#"{{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Action": "iot:DescribeThing", "Resource": [{}]}}]}}"#,
            resources.join(",")
        );
        assert!(text.len() > 2048 && text.len() < MAX_IDENTITY_POLICY_CHARS);
        assert!(compile_policy("k", &text).is_ok());
    }

    /// A backend two stores share, as two servers share PostgreSQL.
    #[derive(Default)]
    struct SharedKeys(std::sync::Mutex<BTreeMap<String, AccessKey>>);

    impl KeyBackend for SharedKeys {
        fn get(&self, id: &str) -> ApiResult<Option<AccessKey>> {
            Ok(self.0.lock().unwrap().get(id).cloned())
        }
        fn list(&self) -> ApiResult<Vec<AccessKey>> {
            Ok(self.0.lock().unwrap().values().cloned().collect())
        }
        fn put(&self, key: &AccessKey) -> ApiResult<()> {
            self.0
                .lock()
                .unwrap()
                .insert(key.access_key_id.clone(), key.clone());
            Ok(())
        }
        fn delete(&self, id: &str) -> ApiResult<bool> {
            Ok(self.0.lock().unwrap().remove(id).is_some())
        }
    }

    #[test]
    fn a_key_created_through_one_store_signs_on_another_sharing_its_backend() {
        let backend = Arc::new(SharedKeys::default());
        let a = KeyStore::with_backend(backend.clone()).expect("a");
        let b = KeyStore::with_backend(backend.clone()).expect("b");
        let k = a.create(None, SystemTime::UNIX_EPOCH).expect("created");
        assert_eq!(
            b.secret(&k.access_key_id),
            Some(k.secret_access_key.clone())
        );
        assert_eq!(b.list(), vec![k.clone()]);
        assert!(a.delete(&k.access_key_id).expect("deleted"));
        // b still holds its copy until it is told to forget it (the cluster's notification).
        assert!(b.secret(&k.access_key_id).is_some());
        b.forget(&k.access_key_id);
        assert!(b.secret(&k.access_key_id).is_none());
        assert!(a.path().is_none());
    }
}
