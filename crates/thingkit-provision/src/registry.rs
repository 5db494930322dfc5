//! The device registry; the user documentation is on [`Registry`].

use std::collections::{BTreeMap, HashMap};
use std::hash::RandomState;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;

use crate::authority::RevokedSerial;
use crate::certificate::{CaStatus, CertificateId, CertificateStatus};
use crate::connectivity::Connectivity;
use crate::error::{AuthFailure, Error, Result};
use crate::name::{
    check_attribute_name, check_attribute_value, check_policy_name, check_thing_name,
};
use crate::policy::{PolicyVersion, StoredPolicy};
use crate::store::{MemoryStore, RegistryStore, StoreOp};

/// The registry's maps hash with std's SipHash, keyed per map instance ([`RandomState`]).
///
/// Devices choose keys: a claim-certificate holder names things through template parameters,
/// and a holder of an auto-registration CA's key chooses JIT-registered certificates (and so,
/// by grinding, bits of their SHA-256 IDs). With an unseeded hash they could precompute keys
/// that all land in one bucket and make every insert and lookup linear. The certificate-ID maps
/// are seeded too for that reason; on the authentication path the SipHash of 32 bytes is small
/// next to the SHA-256 of the certificate that produced them.
type Map<K, V> = HashMap<K, V, RandomState>;

/// `now` as Unix seconds, the form the registry stores timestamps in.
pub(crate) fn unix_seconds(now: SystemTime) -> i64 {
    OffsetDateTime::from(now).unix_timestamp()
}

/// The AWS IoT registry limits. The defaults are AWS's.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryLimits {
    /// Attributes on a thing without a thing type. AWS: 3.
    pub max_attributes_without_type: usize,
    /// Attributes on a thing with a thing type. AWS: 50.
    pub max_attributes_with_type: usize,
    /// Static thing groups a thing may belong to. AWS: 10.
    pub max_groups_per_thing: usize,
    /// Depth of a thing group hierarchy (a root group has depth 1). AWS: 7.
    pub max_group_depth: usize,
    /// Versions of one policy. AWS: 5.
    pub max_policy_versions: usize,
    /// Policies attached to one certificate or thing group. AWS: 10.
    pub max_policies_per_target: usize,
    /// Largest certificate accepted for registration, in bytes (PEM or DER). Default 16 KiB.
    pub max_certificate_len: usize,
}

impl RegistryLimits {
    /// This value with [`max_attributes_without_type`](Self::max_attributes_without_type) replaced.
    pub fn with_max_attributes_without_type(mut self, max_attributes_without_type: usize) -> Self {
        self.max_attributes_without_type = max_attributes_without_type;
        self
    }

    /// This value with [`max_attributes_with_type`](Self::max_attributes_with_type) replaced.
    pub fn with_max_attributes_with_type(mut self, max_attributes_with_type: usize) -> Self {
        self.max_attributes_with_type = max_attributes_with_type;
        self
    }

    /// This value with [`max_groups_per_thing`](Self::max_groups_per_thing) replaced.
    pub fn with_max_groups_per_thing(mut self, max_groups_per_thing: usize) -> Self {
        self.max_groups_per_thing = max_groups_per_thing;
        self
    }

    /// This value with [`max_group_depth`](Self::max_group_depth) replaced.
    pub fn with_max_group_depth(mut self, max_group_depth: usize) -> Self {
        self.max_group_depth = max_group_depth;
        self
    }

    /// This value with [`max_policy_versions`](Self::max_policy_versions) replaced.
    pub fn with_max_policy_versions(mut self, max_policy_versions: usize) -> Self {
        self.max_policy_versions = max_policy_versions;
        self
    }

    /// This value with [`max_policies_per_target`](Self::max_policies_per_target) replaced.
    pub fn with_max_policies_per_target(mut self, max_policies_per_target: usize) -> Self {
        self.max_policies_per_target = max_policies_per_target;
        self
    }

    /// This value with [`max_certificate_len`](Self::max_certificate_len) replaced.
    pub fn with_max_certificate_len(mut self, max_certificate_len: usize) -> Self {
        self.max_certificate_len = max_certificate_len;
        self
    }
}

impl Default for RegistryLimits {
    fn default() -> Self {
        RegistryLimits {
            max_attributes_without_type: 3,
            max_attributes_with_type: 50,
            max_groups_per_thing: 10,
            max_group_depth: 7,
            max_policy_versions: 5,
            max_policies_per_target: 10,
            max_certificate_len: 16 * 1024,
        }
    }
}

/// A thing (device) in the registry. Its name is the map key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thing {
    /// The thing type, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thing_type: Option<Box<str>>,
    /// Attributes (name to value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<Box<str>, Box<str>>,
    /// The static thing groups it belongs to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Box<str>>,
    /// Incremented on every update (AWS `version`).
    pub version: u64,
}

/// A thing type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThingType {
    /// A description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Box<str>>,
    /// Deprecated types cannot be given to things; only deprecated types can be deleted.
    pub deprecated: bool,
    /// Attribute names things of this type can be searched by (AWS `searchableAttributes`), at
    /// most [`MAX_SEARCHABLE_ATTRIBUTES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub searchable_attributes: Vec<Box<str>>,
    /// When it was created, in Unix seconds (0: unknown, for records from before it was kept).
    #[serde(default)]
    pub created: i64,
    /// When it was deprecated, in Unix seconds, while it is deprecated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated_at: Option<i64>,
}

/// The most searchable attributes a thing type may name (AWS: 3).
pub const MAX_SEARCHABLE_ATTRIBUTES: usize = 3;

/// A static thing group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThingGroup {
    /// The parent group, if this is not a root group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Box<str>>,
    /// Policies attached to the group (inherited by child groups' things).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Box<str>>,
    /// A description (AWS `thingGroupDescription`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Box<str>>,
    /// Attributes (name to value), at most [`RegistryLimits::max_attributes_with_type`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<Box<str>, Box<str>>,
    /// Incremented on every update of its description or attributes (AWS `version`); 1 when
    /// created (and for records from before it was kept).
    #[serde(default = "first_version")]
    pub version: u64,
    /// When it was created, in Unix seconds (0: unknown, for records from before it was kept).
    #[serde(default)]
    pub created: i64,
}

fn first_version() -> u64 {
    1
}

/// A certificate's attachment to a thing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThingAttachment {
    /// The thing name.
    #[serde(with = "arc_str")]
    pub thing: Arc<str>,
    /// `EXCLUSIVE_THING`: the certificate may be attached to this thing only.
    #[serde(default)]
    pub exclusive: bool,
}

/// A registered device certificate (its PEM is kept in the store, not in memory).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// Its status.
    pub status: CertificateStatus,
    /// The registered CA that signed it, or `None` if registered without a CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CertificateId>,
    /// Serial number (big-endian magnitude), for CRLs.
    #[serde(with = "hex_bytes")]
    pub serial: Box<[u8]>,
    /// `notAfter` as a Unix timestamp.
    pub not_after: i64,
    /// When it was revoked, as a Unix timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    /// Things it is attached to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub things: Vec<ThingAttachment>,
    /// Policies attached to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Box<str>>,
    /// When it was registered, Unix seconds (0 in records written before this was kept).
    #[serde(default)]
    pub created_at: i64,
    /// When its status last changed (or it was registered), Unix seconds (0 in records written
    /// before this was kept).
    #[serde(default)]
    pub modified_at: i64,
}

/// A registered CA certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaCertificate {
    /// ACTIVE or INACTIVE.
    pub status: CaStatus,
    /// Whether unknown certificates it signed are registered as PENDING_ACTIVATION on first
    /// connect ([`Registry::auto_register`]).
    pub auto_registration: bool,
    /// The CA certificate's DER.
    #[serde(with = "der_as_pem")]
    pub der: Arc<[u8]>,
    /// When it was registered, Unix seconds (0 when unknown: registered through
    /// [`Registry::register_ca_certificate`], which takes no time, or before this was kept).
    #[serde(default)]
    pub created_at: i64,
    /// When its status or auto-registration flag last changed through
    /// [`Registry::update_ca_certificate_at`] (else its creation time), Unix seconds.
    #[serde(default)]
    pub modified_at: i64,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(b.len() * 2);
        for byte in b {
            out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
            out.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Box<[u8]>, D::Error> {
        let text = String::deserialize(d)?;
        let digit = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(serde::de::Error::custom("serial is not lowercase hex")),
        };
        if text.len() % 2 != 0 {
            return Err(serde::de::Error::custom("serial hex has an odd length"));
        }
        text.as_bytes()
            .chunks_exact(2)
            .map(|p| Ok(digit(p[0])? << 4 | digit(p[1])?))
            .collect()
    }
}

mod arc_str {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: &Arc<str>, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
        Ok(Arc::from(String::deserialize(d)?))
    }
}

mod der_as_pem {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(der: &Arc<[u8]>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::pem::encode("CERTIFICATE", der))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<[u8]>, D::Error> {
        let text = String::deserialize(d)?;
        let der = crate::pem::decode_if_pem(text.as_bytes(), &["CERTIFICATE"])
            .map_err(serde::de::Error::custom)?;
        Ok(der.into())
    }
}

/// Something a policy can be attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyTarget {
    /// A certificate (principal).
    Certificate(CertificateId),
    /// A static thing group (its things and those of its descendants inherit the policy).
    ThingGroup(String),
}

/// A change a broker must react to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryEvent {
    /// A certificate left ACTIVE: disconnect every session that authenticated with it.
    CertificateDeactivated {
        /// The certificate.
        certificate_id: CertificateId,
        /// Its new status.
        status: CertificateStatus,
    },
    /// A CA certificate became INACTIVE: disconnect every session whose certificate it signed,
    /// and rebuild the TLS server configuration.
    CaDeactivated {
        /// The CA certificate.
        ca_certificate_id: CertificateId,
    },
}

/// A policy in effect for a certificate: its name and its default version.
#[derive(Clone, Debug)]
pub struct EffectivePolicy {
    /// The policy name.
    pub name: Arc<str>,
    /// The default version.
    pub version: Arc<PolicyVersion>,
}

/// Who a TLS peer is: the result of [`Registry::authenticate`].
#[derive(Clone, Debug)]
pub struct DeviceIdentity {
    /// The certificate ID.
    pub certificate_id: CertificateId,
    /// The certificate status (always ACTIVE for an authenticated peer).
    pub status: CertificateStatus,
    /// The CA that signed the certificate, if it was registered with one.
    pub ca_certificate_id: Option<CertificateId>,
    /// The thing the certificate is attached to (the exclusive one, or the first), if any.
    pub thing: Option<Arc<str>>,
    /// Every thing the certificate is attached to.
    pub things: Vec<Arc<str>>,
    /// The policies in effect (certificate's, then thing groups' and their ancestors').
    pub policies: Vec<EffectivePolicy>,
}

type Listener = Box<dyn Fn(&RegistryEvent) + Send + Sync>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Thing(Box<str>),
    Type(Box<str>),
    Group(Box<str>),
    Cert(CertificateId),
    Ca(CertificateId),
    Policy(Box<str>),
}

impl Key {
    fn encode(&self) -> String {
        match self {
            Key::Thing(n) => format!("thing/{n}"),
            Key::Type(n) => format!("type/{n}"),
            Key::Group(n) => format!("group/{n}"),
            Key::Cert(id) => format!("cert/{id}"),
            Key::Ca(id) => format!("ca/{id}"),
            Key::Policy(n) => format!("policy/{n}"),
        }
    }

    fn decode(s: &str) -> Result<Key> {
        let bad = || Error::store(format!("unknown record key {s:?}"));
        let (prefix, rest) = s.split_once('/').ok_or_else(bad)?;
        Ok(match prefix {
            "thing" => Key::Thing(rest.into()),
            "type" => Key::Type(rest.into()),
            "group" => Key::Group(rest.into()),
            "cert" => Key::Cert(rest.parse()?),
            "ca" => Key::Ca(rest.parse()?),
            "policy" => Key::Policy(rest.into()),
            _ => return Err(bad()),
        })
    }
}

#[derive(Clone, Debug)]
enum Value {
    Thing(Thing),
    Type(ThingType),
    Group(ThingGroup),
    Cert(Certificate),
    Ca(CaCertificate),
    Policy(StoredPolicy),
}

impl Value {
    fn encode(&self) -> Result<Vec<u8>> {
        let r = match self {
            Value::Thing(v) => serde_json::to_vec(v),
            Value::Type(v) => serde_json::to_vec(v),
            Value::Group(v) => serde_json::to_vec(v),
            // Certificates are encoded by `Registry::encode_certificate` (they carry the DER).
            Value::Cert(v) => serde_json::to_vec(v),
            Value::Ca(v) => serde_json::to_vec(v),
            Value::Policy(v) => serde_json::to_vec(v),
        };
        r.map_err(|e| Error::Store(Box::new(e)))
    }

    fn decode(key: &Key, bytes: &[u8]) -> Result<Value> {
        fn json<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T> {
            serde_json::from_slice(b).map_err(|e| Error::Store(Box::new(e)))
        }
        Ok(match key {
            Key::Thing(_) => Value::Thing(json(bytes)?),
            Key::Type(_) => Value::Type(json(bytes)?),
            Key::Group(_) => Value::Group(json(bytes)?),
            Key::Cert(_) => Value::Cert(json(split_certificate_record(bytes).0)?),
            Key::Ca(_) => Value::Ca(json(bytes)?),
            Key::Policy(_) => Value::Policy(StoredPolicy::revalidate(json(bytes)?)?),
        })
    }
}

#[derive(Default)]
struct Txn {
    ops: Vec<StoreOp>,
    undo: Vec<(Key, Option<Value>)>,
    events: Vec<RegistryEvent>,
    /// DER of certificates registered in this batch (not yet in the store).
    pending_der: Map<CertificateId, Vec<u8>>,
    /// Things deleted in this batch: their connectivity records go when it commits.
    deleted_things: Vec<Box<str>>,
}

/// The device registry: things, thing types, thing groups, certificates, CA certificates, policies
/// and their attachments, with the AWS IoT Core rules and limits.
///
/// The working state lives in memory (hash maps keyed by name or [`CertificateId`]), so
/// [`Registry::authenticate`] and [`Registry::effective_policies`] are a digest and a few lookups.
/// Every change is written through the [`RegistryStore`] before it is acknowledged: a mutating
/// method returns `Ok` only after the store committed it. [`Registry::batch`] groups many changes
/// into one atomic commit; if the closure or the commit fails, the in-memory state is rolled back
/// and nothing is written.
///
/// Every mutation validates first and writes second, so a refused operation changes nothing.
///
/// Each thing's [`Connectivity`] ([`Registry::set_connected`], [`Registry::set_disconnected`],
/// [`Registry::connectivity`]) is the exception: it is kept in memory only, never written to
/// the store, so a connect or disconnect costs no durable commit (a redb commit is an fsync)
/// and a restart cannot leave a thing reading as connected over a connection that no longer
/// exists. After [`Registry::open`] every thing reads as disconnected with no timestamp and no
/// reason until its next connect.
pub struct Registry<S: RegistryStore = MemoryStore> {
    store: S,
    limits: RegistryLimits,
    things: Map<Box<str>, Thing>,
    types: Map<Box<str>, ThingType>,
    groups: Map<Box<str>, ThingGroup>,
    certificates: Map<CertificateId, Certificate>,
    cas: Map<CertificateId, CaCertificate>,
    policies: Map<Box<str>, StoredPolicy>,
    // Derived indexes, maintained by `apply`.
    thing_principals: Map<Box<str>, Vec<CertificateId>>,
    policy_targets: Map<Box<str>, usize>,
    group_members: Map<Box<str>, usize>,
    type_members: Map<Box<str>, usize>,
    certificates_per_ca: Map<CertificateId, usize>,
    // In memory only, at most one per thing; see the type's documentation.
    connectivity: Map<Box<str>, Connectivity>,
    txn: Option<Txn>,
    listeners: Vec<Listener>,
    /// Bumped after every committed change; see [`Registry::generation`].
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl<S: RegistryStore> std::fmt::Debug for Registry<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("things", &self.things.len())
            .field("certificates", &self.certificates.len())
            .field("ca_certificates", &self.cas.len())
            .field("policies", &self.policies.len())
            .finish_non_exhaustive()
    }
}

impl Registry<MemoryStore> {
    /// An empty registry on a fresh [`MemoryStore`] with the AWS limits.
    pub fn in_memory() -> Self {
        // An empty memory store cannot fail to load.
        Registry::empty(MemoryStore::new(), RegistryLimits::default())
    }
}

impl<S: RegistryStore> Registry<S> {
    fn empty(store: S, limits: RegistryLimits) -> Self {
        Registry {
            store,
            limits,
            things: Map::default(),
            types: Map::default(),
            groups: Map::default(),
            certificates: Map::default(),
            cas: Map::default(),
            policies: Map::default(),
            thing_principals: Map::default(),
            policy_targets: Map::default(),
            group_members: Map::default(),
            type_members: Map::default(),
            certificates_per_ca: Map::default(),
            connectivity: Map::default(),
            txn: None,
            listeners: Vec::new(),
            generation: Arc::default(),
        }
    }

    /// Opens a registry on `store`, loading every record it holds.
    pub fn open(store: S, limits: RegistryLimits) -> Result<Self> {
        let mut registry = Registry::empty(store, limits);
        let mut loaded = Vec::new();
        registry.store.for_each(&mut |k, v| {
            let key = Key::decode(k)?;
            let value = Value::decode(&key, v)?;
            loaded.push((key, value));
            Ok(())
        })?;
        for (key, value) in loaded {
            registry.apply(&key, Some(value));
        }
        Ok(registry)
    }

    /// Re-reads the records under `keys` from the store and applies what is there now, for a
    /// registry that shares its store with other writers (several servers on one database):
    /// another writer committed those keys, and this registry's memory must follow. A key
    /// whose record is gone is removed. Returns how many records changed.
    ///
    /// A refresh has the effects of a local change: a certificate that was ACTIVE and no longer
    /// is (or is gone) emits [`RegistryEvent::CertificateDeactivated`], a CA certificate that
    /// was ACTIVE and no longer is emits [`RegistryEvent::CaDeactivated`] (so a broker ends
    /// those sessions), and the [`generation`](Self::generation) moves (so a changed policy or
    /// attachment decides the next publish). Nothing is written to the store.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when a key is not a registry key, a record does not decode or the store
    /// fails; the records before it are applied, those after it are not (call again, or
    /// [`refresh_all`](Self::refresh_all)). Refused inside [`batch`](Self::batch).
    ///
    /// ```
    /// use thingkit_provision::{MemoryStore, Registry, RegistryLimits};
    /// let store = MemoryStore::new();
    /// let mut here = Registry::open(store.clone(), RegistryLimits::default())?;
    /// let mut there = Registry::open(store, RegistryLimits::default())?;
    /// there.create_thing("sensor-1", None, &[])?;
    /// assert!(here.thing("sensor-1").is_none());
    /// assert_eq!(here.refresh(["thing/sensor-1"])?, 1);
    /// assert!(here.thing("sensor-1").is_some());
    /// # Ok::<(), thingkit_provision::Error>(())
    /// ```
    pub fn refresh<'k>(&mut self, keys: impl IntoIterator<Item = &'k str>) -> Result<usize> {
        if self.txn.is_some() {
            return Err(Error::store("refresh inside a batch"));
        }
        let mut events = Vec::new();
        let mut changed = 0;
        let mut result = Ok(());
        for k in keys {
            match self.refresh_one(k, &mut events) {
                Ok(true) => changed += 1,
                Ok(false) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.finish_refresh(changed, &events);
        result.map(|()| changed)
    }

    /// Re-reads every record from the store and makes the memory equal to it, for a registry
    /// that may have missed changes by other writers (its change feed reconnected). Records
    /// not in the store any more are removed. The effects are those of
    /// [`refresh`](Self::refresh); returns how many records changed.
    ///
    /// # Errors
    ///
    /// As [`refresh`](Self::refresh); on an error the memory holds what was applied so far.
    pub fn refresh_all(&mut self) -> Result<usize> {
        if self.txn.is_some() {
            return Err(Error::store("refresh inside a batch"));
        }
        let mut stored = Vec::new();
        self.store.for_each(&mut |k, v| {
            let key = Key::decode(k)?;
            let value = Value::decode(&key, v)?;
            stored.push((key, value));
            Ok(())
        })?;
        let present: std::collections::HashSet<&Key> = stored.iter().map(|(k, _)| k).collect();
        let mut gone: Vec<Key> = Vec::new();
        gone.extend(self.things.keys().map(|n| Key::Thing(n.clone())));
        gone.extend(self.types.keys().map(|n| Key::Type(n.clone())));
        gone.extend(self.groups.keys().map(|n| Key::Group(n.clone())));
        gone.extend(self.certificates.keys().map(|id| Key::Cert(*id)));
        gone.extend(self.cas.keys().map(|id| Key::Ca(*id)));
        gone.extend(self.policies.keys().map(|n| Key::Policy(n.clone())));
        gone.retain(|k| !present.contains(k));
        let mut events = Vec::new();
        let mut changed = 0;
        for key in gone {
            changed += usize::from(self.replace(&key, None, &mut events));
        }
        for (key, value) in stored {
            changed += usize::from(self.replace(&key, Some(value), &mut events));
        }
        self.finish_refresh(changed, &events);
        Ok(changed)
    }

    fn refresh_one(&mut self, k: &str, events: &mut Vec<RegistryEvent>) -> Result<bool> {
        let key = Key::decode(k)?;
        let value = match self.store.get(k)? {
            Some(bytes) => Some(Value::decode(&key, &bytes)?),
            None => None,
        };
        Ok(self.replace(&key, value, events))
    }

    /// Applies a record another writer committed; records the events a local change would have
    /// emitted. Returns whether the record changed (by its encoding).
    fn replace(
        &mut self,
        key: &Key,
        value: Option<Value>,
        events: &mut Vec<RegistryEvent>,
    ) -> bool {
        let new_encoding = value.as_ref().map(Value::encode).and_then(|r| r.ok());
        let new_cert_status = match &value {
            Some(Value::Cert(c)) => Some(c.status),
            _ => None,
        };
        let new_ca_status = match &value {
            Some(Value::Ca(c)) => Some(c.status),
            _ => None,
        };
        let old = self.apply(key, value);
        let old_encoding = old.as_ref().map(Value::encode).and_then(|r| r.ok());
        match (key, &old) {
            (Key::Cert(id), Some(Value::Cert(c)))
                if c.status == CertificateStatus::Active
                    && new_cert_status != Some(CertificateStatus::Active) =>
            {
                events.push(RegistryEvent::CertificateDeactivated {
                    certificate_id: *id,
                    // A certificate deleted elsewhere is as unusable as a revoked one.
                    status: new_cert_status.unwrap_or(CertificateStatus::Revoked),
                });
            }
            (Key::Ca(id), Some(Value::Ca(c)))
                if c.status == CaStatus::Active && new_ca_status != Some(CaStatus::Active) =>
            {
                events.push(RegistryEvent::CaDeactivated {
                    ca_certificate_id: *id,
                });
            }
            (Key::Thing(name), Some(_)) if !self.things.contains_key(name) => {
                self.connectivity.remove(name);
            }
            _ => {}
        }
        old.is_some() != new_encoding.is_some() || old_encoding != new_encoding
    }

    fn finish_refresh(&mut self, changed: usize, events: &[RegistryEvent]) {
        if changed > 0 {
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        for event in events {
            for listener in &self.listeners {
                listener(event);
            }
        }
    }

    /// A counter bumped after every committed change (connectivity status excepted), shared so
    /// a reader can tell without the registry's lock that something changed since it last
    /// looked: the broker re-reads a connection's effective policies when it moved, so a
    /// policy detached or a default version changed decides the next publish.
    pub fn generation(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.generation.clone()
    }

    /// The limits in force.
    pub fn limits(&self) -> &RegistryLimits {
        &self.limits
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Calls `listener` for every [`RegistryEvent`], after the change that caused it was
    /// committed. Forward events into a channel (e.g. `tokio::sync::broadcast`) to disconnect
    /// devices.
    pub fn subscribe(&mut self, listener: impl Fn(&RegistryEvent) + Send + Sync + 'static) {
        self.listeners.push(Box::new(listener));
    }

    /// Runs `f` as one atomic batch: all of its changes are committed to the store together, or,
    /// if `f` or the commit fails, none are and the registry is rolled back.
    pub fn batch<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let outer = self.txn.is_none();
        if outer {
            self.txn = Some(Txn::default());
        }
        let result = f(self);
        if !outer {
            return result;
        }
        let mut txn = self.txn.take().unwrap_or_default();
        let ops = std::mem::take(&mut txn.ops);
        let changed = !ops.is_empty();
        let result = match result {
            Ok(v) => match self.store.commit(&coalesce(ops)) {
                Ok(()) => Ok(v),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(v) => {
                if changed {
                    self.generation
                        .fetch_add(1, std::sync::atomic::Ordering::Release);
                }
                for name in &txn.deleted_things {
                    self.connectivity.remove(name);
                }
                for event in &txn.events {
                    for listener in &self.listeners {
                        listener(event);
                    }
                }
                Ok(v)
            }
            Err(e) => {
                let things: Vec<Box<str>> = txn
                    .undo
                    .iter()
                    .filter_map(|(key, _)| match key {
                        Key::Thing(name) => Some(name.clone()),
                        _ => None,
                    })
                    .collect();
                for (key, old) in txn.undo.into_iter().rev() {
                    self.apply(&key, old);
                }
                // A thing whose creation was rolled back takes its connectivity record with it.
                for name in things {
                    if !self.things.contains_key(&name) {
                        self.connectivity.remove(&name);
                    }
                }
                Err(e)
            }
        }
    }

    fn set(&mut self, key: Key, value: Option<Value>) -> Result<()> {
        let op = match &value {
            Some(Value::Cert(c)) => StoreOp::Put {
                key: key.encode(),
                value: self.encode_certificate(&key, c)?,
            },
            Some(v) => StoreOp::Put {
                key: key.encode(),
                value: v.encode()?,
            },
            None => StoreOp::Delete { key: key.encode() },
        };
        let old = self.apply(&key, value);
        let txn = self
            .txn
            .as_mut()
            .ok_or_else(|| Error::store("write outside a batch"))?;
        txn.ops.push(op);
        txn.undo.push((key, old));
        Ok(())
    }

    /// A certificate record is its JSON metadata, a NUL byte (never present in JSON), and the
    /// certificate's DER: one record per certificate keeps registration to one random-key
    /// insert. The DER comes from the current batch or from the stored record.
    fn encode_certificate(&self, key: &Key, cert: &Certificate) -> Result<Vec<u8>> {
        let Key::Cert(id) = key else {
            return Err(Error::store(
                "certificate value under a non-certificate key",
            ));
        };
        let mut out = serde_json::to_vec(cert).map_err(|e| Error::Store(Box::new(e)))?;
        out.push(0);
        match self.txn.as_ref().and_then(|t| t.pending_der.get(id)) {
            Some(der) => out.extend_from_slice(der),
            None => {
                let stored = self
                    .store
                    .get(&key.encode())?
                    .ok_or_else(|| Error::store(format!("DER of certificate {id} is missing")))?;
                out.extend_from_slice(split_certificate_record(&stored).1);
            }
        }
        Ok(out)
    }

    fn emit(&mut self, event: RegistryEvent) {
        if let Some(txn) = self.txn.as_mut() {
            txn.events.push(event);
        }
    }

    /// Applies one record to the in-memory state and its indexes; returns the previous value.
    fn apply(&mut self, key: &Key, value: Option<Value>) -> Option<Value> {
        match key {
            Key::Thing(name) => {
                let new = match value {
                    Some(Value::Thing(t)) => Some(t),
                    _ => None,
                };
                if let Some(t) = &new {
                    for g in &t.groups {
                        *self.group_members.entry(g.clone()).or_default() += 1;
                    }
                    if let Some(ty) = &t.thing_type {
                        *self.type_members.entry(ty.clone()).or_default() += 1;
                    }
                }
                let old = match new {
                    Some(t) => self.things.insert(name.clone(), t),
                    None => self.things.remove(name),
                };
                if let Some(t) = &old {
                    for g in &t.groups {
                        decrement(&mut self.group_members, g);
                    }
                    if let Some(ty) = &t.thing_type {
                        decrement(&mut self.type_members, ty);
                    }
                }
                old.map(Value::Thing)
            }
            Key::Type(name) => {
                let old = match value {
                    Some(Value::Type(t)) => self.types.insert(name.clone(), t),
                    _ => self.types.remove(name),
                };
                old.map(Value::Type)
            }
            Key::Group(name) => {
                let new = match value {
                    Some(Value::Group(g)) => Some(g),
                    _ => None,
                };
                if let Some(g) = &new {
                    for p in &g.policies {
                        *self.policy_targets.entry(p.clone()).or_default() += 1;
                    }
                }
                let old = match new {
                    Some(g) => self.groups.insert(name.clone(), g),
                    None => self.groups.remove(name),
                };
                if let Some(g) = &old {
                    for p in &g.policies {
                        decrement(&mut self.policy_targets, p);
                    }
                }
                old.map(Value::Group)
            }
            Key::Cert(id) => {
                let new = match value {
                    Some(Value::Cert(c)) => Some(c),
                    _ => None,
                };
                if let Some(c) = &new {
                    for p in &c.policies {
                        *self.policy_targets.entry(p.clone()).or_default() += 1;
                    }
                    for a in &c.things {
                        self.thing_principals
                            .entry(Box::from(&*a.thing))
                            .or_default()
                            .push(*id);
                    }
                    if let Some(ca) = c.ca {
                        *self.certificates_per_ca.entry(ca).or_default() += 1;
                    }
                }
                let old = match new {
                    Some(c) => self.certificates.insert(*id, c),
                    None => self.certificates.remove(id),
                };
                if let Some(c) = &old {
                    for p in &c.policies {
                        decrement(&mut self.policy_targets, p);
                    }
                    for a in &c.things {
                        if let Some(list) = self.thing_principals.get_mut(&*a.thing) {
                            if let Some(pos) = list.iter().position(|x| x == id) {
                                list.swap_remove(pos);
                            }
                            if list.is_empty() {
                                self.thing_principals.remove(&*a.thing);
                            }
                        }
                    }
                    if let Some(ca) = c.ca
                        && let Some(n) = self.certificates_per_ca.get_mut(&ca)
                    {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            self.certificates_per_ca.remove(&ca);
                        }
                    }
                }
                old.map(Value::Cert)
            }
            Key::Ca(id) => {
                let old = match value {
                    Some(Value::Ca(c)) => self.cas.insert(*id, c),
                    _ => self.cas.remove(id),
                };
                old.map(Value::Ca)
            }
            Key::Policy(name) => {
                let old = match value {
                    Some(Value::Policy(p)) => self.policies.insert(name.clone(), p),
                    _ => self.policies.remove(name),
                };
                old.map(Value::Policy)
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // Thing types

    /// Creates a thing type (AWS `CreateThingType`).
    pub fn create_thing_type(&mut self, name: &str, description: Option<&str>) -> Result<()> {
        check_thing_name("thing type", name)?;
        if self.types.contains_key(name) {
            return Err(already("thing type", name));
        }
        let value = ThingType {
            description: description.map(Into::into),
            ..ThingType::default()
        };
        self.batch(|r| r.set(Key::Type(name.into()), Some(Value::Type(value))))
    }

    /// Deprecates a thing type, or undoes that (AWS `DeprecateThingType`).
    pub fn deprecate_thing_type(&mut self, name: &str, undo: bool) -> Result<()> {
        let mut value = self
            .types
            .get(name)
            .cloned()
            .ok_or_else(|| not_found("thing type", name))?;
        value.deprecated = !undo;
        if undo {
            value.deprecated_at = None;
        }
        self.batch(|r| r.set(Key::Type(name.into()), Some(Value::Type(value))))
    }

    /// Deletes a thing type (AWS `DeleteThingType`): it must be deprecated and no thing may have it.
    pub fn delete_thing_type(&mut self, name: &str) -> Result<()> {
        let ty = self
            .types
            .get(name)
            .ok_or_else(|| not_found("thing type", name))?;
        if !ty.deprecated {
            return Err(Error::conflict(
                "thing type",
                name,
                "it must be deprecated before it is deleted",
            ));
        }
        if self.type_members.get(name).copied().unwrap_or(0) > 0 {
            return Err(Error::conflict(
                "thing type",
                name,
                "it is still used by things",
            ));
        }
        self.batch(|r| r.set(Key::Type(name.into()), None))
    }

    /// A thing type.
    pub fn thing_type(&self, name: &str) -> Option<&ThingType> {
        self.types.get(name)
    }

    // ------------------------------------------------------------------------------------------
    // Things

    /// Creates a thing (AWS `CreateThing`). Creating an identical thing again is a no-op.
    pub fn create_thing(
        &mut self,
        name: &str,
        thing_type: Option<&str>,
        attributes: &[(&str, &str)],
    ) -> Result<()> {
        check_thing_name("thing", name)?;
        let mut thing = Thing {
            thing_type: thing_type.map(Into::into),
            attributes: BTreeMap::new(),
            groups: Vec::new(),
            version: 1,
        };
        for (k, v) in attributes {
            check_attribute_name(k)?;
            check_attribute_value(v)?;
            thing.attributes.insert((*k).into(), (*v).into());
        }
        self.check_thing_type_and_attributes(&thing)?;
        if let Some(existing) = self.things.get(name) {
            if existing.thing_type == thing.thing_type && existing.attributes == thing.attributes {
                return Ok(());
            }
            return Err(already("thing", name));
        }
        self.batch(|r| r.set(Key::Thing(name.into()), Some(Value::Thing(thing))))
    }

    fn check_thing_type_and_attributes(&self, thing: &Thing) -> Result<()> {
        let limit = match &thing.thing_type {
            Some(ty) => {
                let t = self
                    .types
                    .get(ty)
                    .ok_or_else(|| not_found("thing type", ty))?;
                if t.deprecated {
                    return Err(Error::conflict(
                        "thing type",
                        &**ty,
                        "it is deprecated and cannot be given to things",
                    ));
                }
                self.limits.max_attributes_with_type
            }
            None => self.limits.max_attributes_without_type,
        };
        if thing.attributes.len() > limit {
            return Err(Error::LimitExceeded {
                what: if thing.thing_type.is_some() {
                    "attributes on a thing with a thing type"
                } else {
                    "attributes on a thing without a thing type"
                },
                limit,
            });
        }
        Ok(())
    }

    /// Updates a thing (AWS `UpdateThing`): `attributes` are merged (`None` removes one);
    /// `thing_type` is `None` to keep it, `Some(None)` to remove it, `Some(Some(t))` to set it.
    pub fn update_thing(
        &mut self,
        name: &str,
        thing_type: Option<Option<&str>>,
        attributes: &[(&str, Option<&str>)],
    ) -> Result<()> {
        let mut thing = self
            .things
            .get(name)
            .cloned()
            .ok_or_else(|| not_found("thing", name))?;
        if let Some(ty) = thing_type {
            thing.thing_type = ty.map(Into::into);
        }
        apply_attribute_changes(&mut thing.attributes, attributes)?;
        self.check_thing_type_and_attributes(&thing)?;
        thing.version += 1;
        self.batch(|r| r.set(Key::Thing(name.into()), Some(Value::Thing(thing))))
    }

    /// Deletes a thing (AWS `DeleteThing`). Refused while certificates are attached to it. Its
    /// [`Connectivity`] record goes with it once the deletion commits.
    pub fn delete_thing(&mut self, name: &str) -> Result<()> {
        if !self.things.contains_key(name) {
            return Err(not_found("thing", name));
        }
        if self.thing_principals.contains_key(name) {
            return Err(Error::conflict(
                "thing",
                name,
                "principals are still attached; detach them first",
            ));
        }
        self.batch(|r| {
            r.set(Key::Thing(name.into()), None)?;
            if let Some(txn) = r.txn.as_mut() {
                txn.deleted_things.push(name.into());
            }
            Ok(())
        })
    }

    /// A thing.
    pub fn thing(&self, name: &str) -> Option<&Thing> {
        self.things.get(name)
    }

    /// The number of things.
    pub fn thing_count(&self) -> usize {
        self.things.len()
    }

    /// The certificates attached to a thing (AWS `ListThingPrincipals`).
    pub fn thing_principals(&self, name: &str) -> &[CertificateId] {
        self.thing_principals
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    // ------------------------------------------------------------------------------------------
    // Connectivity

    /// Records that `thing` connected at `at_ms` (Unix milliseconds) over the connection with
    /// lifecycle version `version` (the connect event's `versionNumber`). Returns whether the
    /// record changed: a duplicate, or a connect that arrives after its own disconnect, is
    /// ignored (see [`Connectivity`]). Calls must come in the order the broker observed the
    /// events; the version only sorts out the takeover, where a replaced connection's
    /// disconnect comes after its successor's connect.
    ///
    /// [`Error::NotFound`] if `thing` is not a registered thing (a client whose ID names no
    /// thing has no connectivity status, as in AWS); a broker may ignore that error.
    ///
    /// In memory only: nothing is written to the store (see [`Registry`]).
    pub fn set_connected(&mut self, thing: &str, at_ms: u64, version: u64) -> Result<bool> {
        Ok(self.connectivity_entry(thing)?.connect(at_ms, version))
    }

    /// Records that `thing`'s connection with lifecycle version `version` ended at `at_ms`
    /// (Unix milliseconds) for `reason`, AWS's `disconnectReason` string (such as
    /// `"MQTT_KEEP_ALIVE_TIMEOUT"`; thingkit-broker's `DisconnectReason::as_str`). Returns
    /// whether the record changed: only the connection the record shows as connected can
    /// disconnect, so the late disconnect of a replaced connection and duplicates are ignored.
    ///
    /// [`Error::NotFound`] if `thing` is not a registered thing. In memory only.
    pub fn set_disconnected(
        &mut self,
        thing: &str,
        at_ms: u64,
        version: u64,
        reason: &str,
    ) -> Result<bool> {
        Ok(self
            .connectivity_entry(thing)?
            .disconnect(at_ms, version, reason))
    }

    /// `thing`'s connectivity status (AWS `GetThingConnectivityData`), or `None` if it is not a
    /// registered thing. A thing with no connect or disconnect recorded since the registry
    /// opened reads as [`Connectivity::default`]: disconnected, timestamp and reason unknown.
    pub fn connectivity(&self, thing: &str) -> Option<Connectivity> {
        if !self.things.contains_key(thing) {
            return None;
        }
        Some(self.connectivity.get(thing).cloned().unwrap_or_default())
    }

    fn connectivity_entry(&mut self, thing: &str) -> Result<&mut Connectivity> {
        if !self.things.contains_key(thing) {
            return Err(not_found("thing", thing));
        }
        Ok(self.connectivity.entry(thing.into()).or_default())
    }

    // ------------------------------------------------------------------------------------------
    // Thing groups

    /// Creates a static thing group (AWS `CreateThingGroup`), optionally under a parent. The
    /// hierarchy may be at most [`RegistryLimits::max_group_depth`] deep.
    pub fn create_thing_group(&mut self, name: &str, parent: Option<&str>) -> Result<()> {
        check_thing_name("thing group", name)?;
        if self.groups.contains_key(name) {
            return Err(already("thing group", name));
        }
        if let Some(p) = parent {
            let depth = self.group_depth(p)?;
            if depth + 1 > self.limits.max_group_depth {
                return Err(Error::LimitExceeded {
                    what: "thing group hierarchy depth",
                    limit: self.limits.max_group_depth,
                });
            }
        }
        let group = ThingGroup {
            parent: parent.map(Into::into),
            version: 1,
            ..ThingGroup::default()
        };
        self.batch(|r| r.set(Key::Group(name.into()), Some(Value::Group(group))))
    }

    /// The depth of a group: 1 for a root group.
    pub fn group_depth(&self, name: &str) -> Result<usize> {
        let mut depth = 0;
        let mut current = Some(name);
        while let Some(n) = current {
            let g = self
                .groups
                .get(n)
                .ok_or_else(|| not_found("thing group", n))?;
            depth += 1;
            if depth > self.limits.max_group_depth + 1 {
                return Err(Error::store("thing group hierarchy has a cycle"));
            }
            current = g.parent.as_deref();
        }
        Ok(depth)
    }

    /// Deletes a thing group (AWS `DeleteThingGroup`). Refused while it has child groups or
    /// member things (remove them first).
    pub fn delete_thing_group(&mut self, name: &str) -> Result<()> {
        if !self.groups.contains_key(name) {
            return Err(not_found("thing group", name));
        }
        if self
            .groups
            .values()
            .any(|g| g.parent.as_deref() == Some(name))
        {
            return Err(Error::conflict("thing group", name, "it has child groups"));
        }
        if self.group_members.get(name).copied().unwrap_or(0) > 0 {
            return Err(Error::conflict(
                "thing group",
                name,
                "it still has member things",
            ));
        }
        self.batch(|r| r.set(Key::Group(name.into()), None))
    }

    /// A thing group.
    pub fn thing_group(&self, name: &str) -> Option<&ThingGroup> {
        self.groups.get(name)
    }

    /// Adds a thing to a static group (AWS `AddThingToThingGroup`); at most
    /// [`RegistryLimits::max_groups_per_thing`] groups per thing. Adding twice is a no-op.
    pub fn add_thing_to_group(&mut self, thing: &str, group: &str) -> Result<()> {
        if !self.groups.contains_key(group) {
            return Err(not_found("thing group", group));
        }
        let mut t = self
            .things
            .get(thing)
            .cloned()
            .ok_or_else(|| not_found("thing", thing))?;
        if t.groups.iter().any(|g| &**g == group) {
            return Ok(());
        }
        if t.groups.len() >= self.limits.max_groups_per_thing {
            return Err(Error::LimitExceeded {
                what: "thing groups per thing",
                limit: self.limits.max_groups_per_thing,
            });
        }
        t.groups.push(group.into());
        t.version += 1;
        self.batch(|r| r.set(Key::Thing(thing.into()), Some(Value::Thing(t))))
    }

    /// Removes a thing from a static group (AWS `RemoveThingFromThingGroup`).
    pub fn remove_thing_from_group(&mut self, thing: &str, group: &str) -> Result<()> {
        let mut t = self
            .things
            .get(thing)
            .cloned()
            .ok_or_else(|| not_found("thing", thing))?;
        let Some(pos) = t.groups.iter().position(|g| &**g == group) else {
            return Err(not_found("thing group membership", group));
        };
        t.groups.remove(pos);
        t.version += 1;
        self.batch(|r| r.set(Key::Thing(thing.into()), Some(Value::Thing(t))))
    }

    // ------------------------------------------------------------------------------------------
    // Listing and metadata of things, thing types and thing groups (the control-plane API)

    /// Every thing with its name, in no particular order (AWS `ListThings` sorts them).
    pub fn things(&self) -> impl Iterator<Item = (&str, &Thing)> {
        self.things.iter().map(|(name, thing)| (&**name, thing))
    }

    /// Every thing type with its name, in no particular order.
    pub fn thing_types(&self) -> impl Iterator<Item = (&str, &ThingType)> {
        self.types.iter().map(|(name, ty)| (&**name, ty))
    }

    /// Every thing group with its name, in no particular order.
    pub fn thing_groups(&self) -> impl Iterator<Item = (&str, &ThingGroup)> {
        self.groups.iter().map(|(name, group)| (&**name, group))
    }

    /// Creates a thing type with its properties, created at `now` (AWS `CreateThingType`): at
    /// most [`MAX_SEARCHABLE_ATTRIBUTES`] searchable attribute names, each a valid attribute name.
    pub fn create_thing_type_at(
        &mut self,
        name: &str,
        description: Option<&str>,
        searchable_attributes: &[&str],
        now: SystemTime,
    ) -> Result<()> {
        check_thing_name("thing type", name)?;
        if searchable_attributes.len() > MAX_SEARCHABLE_ATTRIBUTES {
            return Err(Error::LimitExceeded {
                what: "searchable attributes of a thing type",
                limit: MAX_SEARCHABLE_ATTRIBUTES,
            });
        }
        for a in searchable_attributes {
            check_attribute_name(a)?;
        }
        if self.types.contains_key(name) {
            return Err(already("thing type", name));
        }
        let value = ThingType {
            description: description.map(Into::into),
            deprecated: false,
            searchable_attributes: searchable_attributes.iter().map(|a| (*a).into()).collect(),
            created: unix_seconds(now),
            deprecated_at: None,
        };
        self.batch(|r| r.set(Key::Type(name.into()), Some(Value::Type(value))))
    }

    /// Deprecates a thing type at `now`, or undoes that (AWS `DeprecateThingType`). Deprecating
    /// a deprecated type keeps its first deprecation date; undoing clears it.
    pub fn deprecate_thing_type_at(
        &mut self,
        name: &str,
        undo: bool,
        now: SystemTime,
    ) -> Result<()> {
        let mut value = self
            .types
            .get(name)
            .cloned()
            .ok_or_else(|| not_found("thing type", name))?;
        if undo {
            value.deprecated = false;
            value.deprecated_at = None;
        } else if !value.deprecated {
            value.deprecated = true;
            value.deprecated_at = Some(unix_seconds(now));
        }
        self.batch(|r| r.set(Key::Type(name.into()), Some(Value::Type(value))))
    }

    /// Creates a static thing group with its properties, created at `now` (AWS
    /// `CreateThingGroup`). As in AWS, creating a group that exists with the same parent,
    /// description and attributes again succeeds and changes nothing; with different ones it
    /// is [`Error::AlreadyExists`]. The hierarchy may be at most
    /// [`RegistryLimits::max_group_depth`] deep.
    pub fn create_thing_group_at(
        &mut self,
        name: &str,
        parent: Option<&str>,
        description: Option<&str>,
        attributes: &[(&str, &str)],
        now: SystemTime,
    ) -> Result<()> {
        check_thing_name("thing group", name)?;
        let mut group = ThingGroup {
            parent: parent.map(Into::into),
            description: description.map(Into::into),
            version: 1,
            created: unix_seconds(now),
            ..ThingGroup::default()
        };
        for (k, v) in attributes {
            check_attribute_name(k)?;
            check_attribute_value(v)?;
            group.attributes.insert((*k).into(), (*v).into());
        }
        self.check_group_attributes(&group)?;
        if let Some(existing) = self.groups.get(name) {
            if existing.parent == group.parent
                && existing.description == group.description
                && existing.attributes == group.attributes
            {
                return Ok(());
            }
            return Err(already("thing group", name));
        }
        if let Some(p) = parent {
            let depth = self.group_depth(p)?;
            if depth + 1 > self.limits.max_group_depth {
                return Err(Error::LimitExceeded {
                    what: "thing group hierarchy depth",
                    limit: self.limits.max_group_depth,
                });
            }
        }
        self.batch(|r| r.set(Key::Group(name.into()), Some(Value::Group(group))))
    }

    /// Updates a thing group's properties (AWS `UpdateThingGroup`) and returns its new version:
    /// `description` is `None` to keep it, `Some(None)` to remove it, `Some(Some(d))` to set it;
    /// `attributes` are merged (`None` removes one).
    pub fn update_thing_group(
        &mut self,
        name: &str,
        description: Option<Option<&str>>,
        attributes: &[(&str, Option<&str>)],
    ) -> Result<u64> {
        let mut group = self
            .groups
            .get(name)
            .cloned()
            .ok_or_else(|| not_found("thing group", name))?;
        if let Some(d) = description {
            group.description = d.map(Into::into);
        }
        apply_attribute_changes(&mut group.attributes, attributes)?;
        self.check_group_attributes(&group)?;
        group.version += 1;
        let version = group.version;
        self.batch(|r| r.set(Key::Group(name.into()), Some(Value::Group(group))))?;
        Ok(version)
    }

    fn check_group_attributes(&self, group: &ThingGroup) -> Result<()> {
        let limit = self.limits.max_attributes_with_type;
        if group.attributes.len() > limit {
            return Err(Error::LimitExceeded {
                what: "attributes on a thing group",
                limit,
            });
        }
        Ok(())
    }

    // ------------------------------------------------------------------------------------------
    // CA certificates

    /// Registers a CA certificate (AWS `RegisterCACertificate`). Returns its ID.
    pub fn register_ca_certificate(
        &mut self,
        certificate: &[u8],
        status: CaStatus,
        auto_registration: bool,
    ) -> Result<CertificateId> {
        self.register_ca(certificate, status, auto_registration, 0)
    }

    /// [`Registry::register_ca_certificate`], recording `now` as its creation time (what
    /// `DescribeCACertificate` reports).
    pub fn register_ca_certificate_at(
        &mut self,
        certificate: &[u8],
        status: CaStatus,
        auto_registration: bool,
        now: SystemTime,
    ) -> Result<CertificateId> {
        self.register_ca(certificate, status, auto_registration, unix_seconds(now))
    }

    fn register_ca(
        &mut self,
        certificate: &[u8],
        status: CaStatus,
        auto_registration: bool,
        created_at: i64,
    ) -> Result<CertificateId> {
        let der = self.certificate_der_input(certificate)?;
        let (_, cert) = parse_certificate(&der)?;
        let is_ca = cert
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(Error::BadCa(
                "the certificate is not a CA (CA:TRUE missing)".into(),
            ));
        }
        let id = CertificateId::of_der(&der);
        if self.cas.contains_key(&id) {
            return Err(already("CA certificate", &id.to_string()));
        }
        let value = CaCertificate {
            status,
            auto_registration,
            der: der.into(),
            created_at,
            modified_at: created_at,
        };
        self.batch(|r| r.set(Key::Ca(id), Some(Value::Ca(value))))?;
        Ok(id)
    }

    /// Changes a CA certificate's status and auto-registration flag (AWS
    /// `UpdateCACertificate`). ACTIVE to INACTIVE emits [`RegistryEvent::CaDeactivated`].
    pub fn update_ca_certificate(
        &mut self,
        id: &CertificateId,
        status: CaStatus,
        auto_registration: bool,
    ) -> Result<()> {
        self.update_ca(id, status, auto_registration, None)
    }

    /// [`Registry::update_ca_certificate`], recording `now` as its last modification time.
    pub fn update_ca_certificate_at(
        &mut self,
        id: &CertificateId,
        status: CaStatus,
        auto_registration: bool,
        now: SystemTime,
    ) -> Result<()> {
        self.update_ca(id, status, auto_registration, Some(unix_seconds(now)))
    }

    fn update_ca(
        &mut self,
        id: &CertificateId,
        status: CaStatus,
        auto_registration: bool,
        now: Option<i64>,
    ) -> Result<()> {
        let mut ca = self
            .cas
            .get(id)
            .cloned()
            .ok_or_else(|| not_found("CA certificate", &id.to_string()))?;
        let deactivated = ca.status == CaStatus::Active && status == CaStatus::Inactive;
        ca.status = status;
        ca.auto_registration = auto_registration;
        if let Some(now) = now {
            ca.modified_at = now;
        }
        self.batch(|r| {
            r.set(Key::Ca(*id), Some(Value::Ca(ca)))?;
            if deactivated {
                r.emit(RegistryEvent::CaDeactivated {
                    ca_certificate_id: *id,
                });
            }
            Ok(())
        })
    }

    /// Deletes a CA certificate (AWS `DeleteCACertificate`): it must be INACTIVE and no
    /// registered certificate may refer to it.
    pub fn delete_ca_certificate(&mut self, id: &CertificateId) -> Result<()> {
        let ca = self
            .cas
            .get(id)
            .ok_or_else(|| not_found("CA certificate", &id.to_string()))?;
        if ca.status != CaStatus::Inactive {
            return Err(Error::conflict(
                "CA certificate",
                id.to_string(),
                "a CA certificate must be INACTIVE before it is deleted",
            ));
        }
        if self.certificates_per_ca.get(id).copied().unwrap_or(0) > 0 {
            return Err(Error::conflict(
                "CA certificate",
                id.to_string(),
                "certificates signed by this CA are still registered",
            ));
        }
        self.batch(|r| r.set(Key::Ca(*id), None))
    }

    /// A registered CA certificate.
    pub fn ca_certificate(&self, id: &CertificateId) -> Option<&CaCertificate> {
        self.cas.get(id)
    }

    /// Every registered CA certificate.
    pub fn ca_certificates(&self) -> impl Iterator<Item = (&CertificateId, &CaCertificate)> {
        self.cas.iter()
    }

    /// A registered CA certificate's validity (`notBefore`, `notAfter`) in Unix seconds.
    pub fn ca_certificate_validity(&self, id: &CertificateId) -> Result<(i64, i64)> {
        let ca = self
            .cas
            .get(id)
            .ok_or_else(|| not_found("CA certificate", &id.to_string()))?;
        validity_of(&ca.der)
    }

    // ------------------------------------------------------------------------------------------
    // Certificates

    fn certificate_der_input(&self, input: &[u8]) -> Result<Vec<u8>> {
        if input.len() > self.limits.max_certificate_len {
            return Err(Error::TooLarge {
                what: "certificate",
                actual: input.len(),
                limit: self.limits.max_certificate_len,
            });
        }
        crate::pem::decode_if_pem(input, &["CERTIFICATE"])
    }

    /// Registers a device certificate signed by a registered CA (AWS `RegisterCertificate`).
    ///
    /// The signing CA is found among the registered CAs by verifying the signature. `status` may
    /// be anything but PENDING_TRANSFER. Returns the certificate ID.
    pub fn register_certificate(
        &mut self,
        certificate: &[u8],
        status: CertificateStatus,
        now: SystemTime,
    ) -> Result<CertificateId> {
        let der = self.certificate_der_input(certificate)?;
        let ca = self.find_issuing_ca(&der)?.ok_or_else(|| Error::NotFound {
            kind: "registered CA that signed the certificate",
            id: String::new(),
        })?;
        self.register(&der, status, Some(ca), now)
    }

    /// Registers a device certificate without a CA (AWS `RegisterCertificateWithoutCA`).
    pub fn register_certificate_without_ca(
        &mut self,
        certificate: &[u8],
        status: CertificateStatus,
        now: SystemTime,
    ) -> Result<CertificateId> {
        let der = self.certificate_der_input(certificate)?;
        self.register(&der, status, None, now)
    }

    /// Registers an unknown certificate presented in a TLS handshake as PENDING_ACTIVATION if the
    /// registered CA that signed it is ACTIVE and has auto-registration enabled (AWS just-in-time
    /// registration). The connection itself should still be refused; the operator (or an
    /// automated rule) activates the certificate with [`Registry::update_certificate`].
    pub fn auto_register(
        &mut self,
        peer_certificates: &[impl AsRef<[u8]>],
        now: SystemTime,
    ) -> Result<CertificateId> {
        let der = peer_certificates
            .first()
            .ok_or_else(|| Error::Unauthenticated(AuthFailure::NoCertificate))?
            .as_ref();
        let id = CertificateId::of_der(der);
        if self.certificates.contains_key(&id) {
            return Err(already("certificate", &id.to_string()));
        }
        let der = self.certificate_der_input(der)?;
        let ca_id = self
            .find_issuing_ca(&der)?
            .ok_or(Error::Unauthenticated(AuthFailure::UnknownIssuer { id }))?;
        let ca = self
            .cas
            .get(&ca_id)
            .ok_or_else(|| not_found("CA certificate", &ca_id.to_string()))?;
        if ca.status != CaStatus::Active || !ca.auto_registration {
            return Err(Error::Unauthenticated(
                AuthFailure::AutoRegistrationDisabled { id, ca: ca_id },
            ));
        }
        self.register(&der, CertificateStatus::PendingActivation, Some(ca_id), now)
    }

    fn find_issuing_ca(&self, der: &[u8]) -> Result<Option<CertificateId>> {
        let (_, cert) = parse_certificate(der)?;
        for (id, ca) in &self.cas {
            let Ok((_, ca_cert)) = x509_parser::certificate::X509Certificate::from_der(&ca.der)
            else {
                continue;
            };
            if ca_cert.subject().as_raw() != cert.issuer().as_raw() {
                continue;
            }
            if cert.verify_signature(Some(ca_cert.public_key())).is_ok() {
                return Ok(Some(*id));
            }
        }
        Ok(None)
    }

    fn register(
        &mut self,
        der: &[u8],
        status: CertificateStatus,
        ca: Option<CertificateId>,
        now: SystemTime,
    ) -> Result<CertificateId> {
        if status == CertificateStatus::PendingTransfer {
            return Err(Error::conflict(
                "certificate",
                CertificateId::of_der(der).to_string(),
                "a certificate cannot be registered as PENDING_TRANSFER",
            ));
        }
        let (_, cert) = parse_certificate(der)?;
        let is_ca = cert
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca);
        if is_ca {
            return Err(Error::conflict(
                "certificate",
                CertificateId::of_der(der).to_string(),
                "a CA certificate cannot be registered as a device certificate",
            ));
        }
        let id = CertificateId::of_der(der);
        if self.certificates.contains_key(&id) {
            return Err(already("certificate", &id.to_string()));
        }
        let now = unix_seconds(now);
        let entry = Certificate {
            status,
            ca,
            serial: cert.raw_serial().into(),
            not_after: cert.validity().not_after.timestamp(),
            revoked_at: (status == CertificateStatus::Revoked).then_some(now),
            things: Vec::new(),
            policies: Vec::new(),
            created_at: now,
            modified_at: now,
        };
        self.batch(|r| {
            if let Some(txn) = r.txn.as_mut() {
                txn.pending_der.insert(id, der.to_vec());
            }
            r.set(Key::Cert(id), Some(Value::Cert(entry)))
        })?;
        Ok(id)
    }

    /// A registered certificate.
    pub fn certificate(&self, id: &CertificateId) -> Option<&Certificate> {
        self.certificates.get(id)
    }

    /// The number of registered certificates.
    pub fn certificate_count(&self) -> usize {
        self.certificates.len()
    }

    /// Every registered certificate, in no particular order.
    pub fn certificates(&self) -> impl Iterator<Item = (&CertificateId, &Certificate)> {
        self.certificates.iter()
    }

    /// The registered CA whose key signed `certificate` (PEM or DER), if any, whatever its
    /// status: what [`Registry::register_certificate`] would register it under.
    pub fn issuing_ca(&self, certificate: &[u8]) -> Result<Option<CertificateId>> {
        let der = self.certificate_der_input(certificate)?;
        self.find_issuing_ca(&der)
    }

    /// A registered certificate's validity (`notBefore`, `notAfter`) in Unix seconds, read
    /// from its DER in the store.
    pub fn certificate_validity(&self, id: &CertificateId) -> Result<(i64, i64)> {
        if !self.certificates.contains_key(id) {
            return Err(not_found("certificate", &id.to_string()));
        }
        let bytes = self
            .store
            .get(&Key::Cert(*id).encode())?
            .ok_or_else(|| Error::store(format!("certificate {id} is missing from the store")))?;
        validity_of(split_certificate_record(&bytes).1)
    }

    /// A registered certificate's PEM, read from the store.
    pub fn certificate_pem(&self, id: &CertificateId) -> Result<String> {
        Ok(crate::pem::encode(
            "CERTIFICATE",
            &self.certificate_der(id)?,
        ))
    }

    /// A registered certificate's DER, read from the store (what
    /// [`certificate_pem`](Self::certificate_pem) encodes; a fleet audit reads a million of
    /// them and needs no PEM round trip).
    pub fn certificate_der(&self, id: &CertificateId) -> Result<Vec<u8>> {
        if !self.certificates.contains_key(id) {
            return Err(not_found("certificate", &id.to_string()));
        }
        let bytes = self
            .store
            .get(&Key::Cert(*id).encode())?
            .ok_or_else(|| Error::store(format!("certificate {id} is missing from the store")))?;
        Ok(split_certificate_record(&bytes).1.to_vec())
    }

    /// Changes a certificate's status (AWS `UpdateCertificate`) following
    /// [`CertificateStatus::user_transition_allowed`]. Leaving ACTIVE emits
    /// [`RegistryEvent::CertificateDeactivated`].
    pub fn update_certificate(
        &mut self,
        id: &CertificateId,
        status: CertificateStatus,
        now: SystemTime,
    ) -> Result<()> {
        let current = self
            .certificates
            .get(id)
            .ok_or_else(|| not_found("certificate", &id.to_string()))?
            .status;
        if !current.user_transition_allowed(status) {
            return Err(Error::InvalidTransition {
                from: current,
                to: status,
            });
        }
        self.transition(id, status, Some(unix_seconds(now)))
    }

    /// Moves a certificate to `status`. `revoked_at` (Unix seconds, the time of the change) is
    /// recorded when `status` is REVOKED, and as the modification time whenever it is given;
    /// only [`Registry::update_certificate`] can revoke, and it always passes it.
    fn transition(
        &mut self,
        id: &CertificateId,
        status: CertificateStatus,
        revoked_at: Option<i64>,
    ) -> Result<()> {
        let mut cert = self
            .certificates
            .get(id)
            .cloned()
            .ok_or_else(|| not_found("certificate", &id.to_string()))?;
        let from = cert.status;
        if from == status {
            return Ok(());
        }
        cert.status = status;
        if status == CertificateStatus::Revoked {
            cert.revoked_at = revoked_at.or(cert.revoked_at);
        }
        if let Some(at) = revoked_at {
            cert.modified_at = at;
        }
        self.batch(|r| {
            r.set(Key::Cert(*id), Some(Value::Cert(cert)))?;
            if from == CertificateStatus::Active {
                r.emit(RegistryEvent::CertificateDeactivated {
                    certificate_id: *id,
                    status,
                });
            }
            Ok(())
        })
    }

    /// Starts a transfer (AWS `TransferCertificate`): the certificate must be INACTIVE and have
    /// no policies or things attached; it becomes PENDING_TRANSFER.
    pub fn transfer_certificate(&mut self, id: &CertificateId) -> Result<()> {
        let cert = self
            .certificates
            .get(id)
            .ok_or_else(|| not_found("certificate", &id.to_string()))?;
        if cert.status != CertificateStatus::Inactive {
            return Err(Error::InvalidTransition {
                from: cert.status,
                to: CertificateStatus::PendingTransfer,
            });
        }
        if !cert.policies.is_empty() || !cert.things.is_empty() {
            return Err(Error::conflict(
                "certificate",
                id.to_string(),
                "a certificate with policies or things attached cannot be transferred",
            ));
        }
        self.transition(id, CertificateStatus::PendingTransfer, None)
    }

    /// Accepts a pending transfer (AWS `AcceptCertificateTransfer`): PENDING_TRANSFER becomes
    /// ACTIVE if `set_as_active`, else INACTIVE.
    pub fn accept_certificate_transfer(
        &mut self,
        id: &CertificateId,
        set_as_active: bool,
    ) -> Result<()> {
        let to = if set_as_active {
            CertificateStatus::Active
        } else {
            CertificateStatus::Inactive
        };
        self.leave_pending_transfer(id, to)
    }

    /// Rejects a pending transfer (AWS `RejectCertificateTransfer`): back to INACTIVE.
    pub fn reject_certificate_transfer(&mut self, id: &CertificateId) -> Result<()> {
        self.leave_pending_transfer(id, CertificateStatus::Inactive)
    }

    /// Cancels a pending transfer (AWS `CancelCertificateTransfer`): back to INACTIVE.
    pub fn cancel_certificate_transfer(&mut self, id: &CertificateId) -> Result<()> {
        self.leave_pending_transfer(id, CertificateStatus::Inactive)
    }

    fn leave_pending_transfer(&mut self, id: &CertificateId, to: CertificateStatus) -> Result<()> {
        let from = self
            .certificates
            .get(id)
            .ok_or_else(|| not_found("certificate", &id.to_string()))?
            .status;
        if from != CertificateStatus::PendingTransfer {
            return Err(Error::InvalidTransition { from, to });
        }
        self.transition(id, to, None)
    }

    /// Deletes a certificate (AWS `DeleteCertificate`): it must not be ACTIVE or
    /// PENDING_TRANSFER, and no policy or thing may be attached.
    pub fn delete_certificate(&mut self, id: &CertificateId) -> Result<()> {
        let cert = self.deletable_certificate(id)?;
        if !cert.policies.is_empty() || !cert.things.is_empty() {
            return Err(Error::conflict(
                "certificate",
                id.to_string(),
                "detach every policy and thing from the certificate before deleting it",
            ));
        }
        self.batch(|r| r.set(Key::Cert(*id), None))
    }

    /// Deletes a certificate with its policy attachments (AWS `DeleteCertificate` with
    /// `forceDelete`): it must not be ACTIVE or PENDING_TRANSFER and no thing may be attached;
    /// the policies attached to it are detached in the same commit.
    pub fn force_delete_certificate(&mut self, id: &CertificateId) -> Result<()> {
        let cert = self.deletable_certificate(id)?;
        if !cert.things.is_empty() {
            return Err(Error::conflict(
                "certificate",
                id.to_string(),
                "detach every thing from the certificate before deleting it",
            ));
        }
        // The record goes with its policy list: `apply` drops the policies' target counts.
        self.batch(|r| r.set(Key::Cert(*id), None))
    }

    /// The certificate `id` if its status lets it be deleted (not ACTIVE, not
    /// PENDING_TRANSFER).
    fn deletable_certificate(&self, id: &CertificateId) -> Result<&Certificate> {
        let cert = self
            .certificates
            .get(id)
            .ok_or_else(|| not_found("certificate", &id.to_string()))?;
        if !cert.status.deletable() {
            return Err(Error::conflict(
                "certificate",
                id.to_string(),
                format!(
                    "a certificate in status {} cannot be deleted; make it INACTIVE first",
                    cert.status
                ),
            ));
        }
        Ok(cert)
    }

    /// Attaches a certificate to a thing (AWS `AttachThingPrincipal`). With `exclusive`
    /// (`EXCLUSIVE_THING`) the certificate may not be attached to any other thing. Attaching
    /// twice with the same flag is a no-op.
    pub fn attach_thing_principal(
        &mut self,
        thing: &str,
        id: &CertificateId,
        exclusive: bool,
    ) -> Result<()> {
        if !self.things.contains_key(thing) {
            return Err(not_found("thing", thing));
        }
        let mut cert = self
            .certificates
            .get(id)
            .cloned()
            .ok_or_else(|| not_found("certificate", &id.to_string()))?;
        if let Some(existing) = cert.things.iter().find(|a| &*a.thing == thing) {
            if existing.exclusive == exclusive {
                return Ok(());
            }
            return Err(Error::conflict(
                "certificate",
                id.to_string(),
                format!("already attached to thing {thing:?} with another exclusivity"),
            ));
        }
        if cert.things.iter().any(|a| a.exclusive) {
            return Err(Error::conflict(
                "certificate",
                id.to_string(),
                "the certificate is exclusively attached to another thing",
            ));
        }
        if exclusive && !cert.things.is_empty() {
            return Err(Error::conflict(
                "certificate",
                id.to_string(),
                "the certificate is attached to other things; it cannot be attached exclusively",
            ));
        }
        cert.things.push(ThingAttachment {
            thing: thing.into(),
            exclusive,
        });
        self.batch(|r| r.set(Key::Cert(*id), Some(Value::Cert(cert))))
    }

    /// Detaches a certificate from a thing (AWS `DetachThingPrincipal`).
    pub fn detach_thing_principal(&mut self, thing: &str, id: &CertificateId) -> Result<()> {
        let mut cert = self
            .certificates
            .get(id)
            .cloned()
            .ok_or_else(|| not_found("certificate", &id.to_string()))?;
        let Some(pos) = cert.things.iter().position(|a| &*a.thing == thing) else {
            return Err(not_found("thing attachment", thing));
        };
        cert.things.remove(pos);
        self.batch(|r| r.set(Key::Cert(*id), Some(Value::Cert(cert))))
    }

    /// The serials of revoked certificates signed by `ca`, for
    /// [`CertificateAuthority::crl`](crate::authority::CertificateAuthority::crl).
    pub fn revoked_serials(&self, ca: &CertificateId) -> Vec<RevokedSerial> {
        self.certificates
            .values()
            .filter(|c| c.status == CertificateStatus::Revoked && c.ca.as_ref() == Some(ca))
            .map(|c| RevokedSerial {
                serial: c.serial.to_vec(),
                revoked_at: c
                    .revoked_at
                    .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            })
            .collect()
    }

    // ------------------------------------------------------------------------------------------
    // Policies

    /// Creates a policy with version 1 as its default (AWS `CreatePolicy`). The document is
    /// validated with `thingkit-policy`.
    pub fn create_policy(&mut self, name: &str, document: &str, now: SystemTime) -> Result<()> {
        check_policy_name(name)?;
        if self.policies.contains_key(name) {
            return Err(already("policy", name));
        }
        let policy = StoredPolicy::new(name, document, unix_seconds(now))?;
        self.batch(|r| r.set(Key::Policy(name.into()), Some(Value::Policy(policy))))
    }

    /// Adds a version (AWS `CreatePolicyVersion`); at most
    /// [`RegistryLimits::max_policy_versions`] versions exist at a time. Returns the version ID.
    pub fn create_policy_version(
        &mut self,
        name: &str,
        document: &str,
        set_as_default: bool,
        now: SystemTime,
    ) -> Result<u32> {
        let mut policy = self
            .policies
            .get(name)
            .cloned()
            .ok_or_else(|| not_found("policy", name))?;
        if policy.versions.len() >= self.limits.max_policy_versions {
            return Err(Error::LimitExceeded {
                what: "versions of a policy (delete one first)",
                limit: self.limits.max_policy_versions,
            });
        }
        let version = policy.add_version(name, document, set_as_default, unix_seconds(now))?;
        self.batch(|r| r.set(Key::Policy(name.into()), Some(Value::Policy(policy))))?;
        Ok(version)
    }

    /// Makes a version the default (AWS `SetDefaultPolicyVersion`).
    pub fn set_default_policy_version(&mut self, name: &str, version: u32) -> Result<()> {
        let mut policy = self
            .policies
            .get(name)
            .cloned()
            .ok_or_else(|| not_found("policy", name))?;
        policy.set_default(version)?;
        self.batch(|r| r.set(Key::Policy(name.into()), Some(Value::Policy(policy))))
    }

    /// Deletes a non-default version (AWS `DeletePolicyVersion`).
    pub fn delete_policy_version(&mut self, name: &str, version: u32) -> Result<()> {
        let mut policy = self
            .policies
            .get(name)
            .cloned()
            .ok_or_else(|| not_found("policy", name))?;
        policy.delete_version(version)?;
        self.batch(|r| r.set(Key::Policy(name.into()), Some(Value::Policy(policy))))
    }

    /// Deletes a policy (AWS `DeletePolicy`): it must be detached from every target and have
    /// only its default version left.
    pub fn delete_policy(&mut self, name: &str) -> Result<()> {
        let policy = self
            .policies
            .get(name)
            .ok_or_else(|| not_found("policy", name))?;
        if self.policy_targets.get(name).copied().unwrap_or(0) > 0 {
            return Err(Error::conflict(
                "policy",
                name,
                "it is still attached to a target",
            ));
        }
        if policy.versions.len() > 1 {
            return Err(Error::conflict(
                "policy",
                name,
                "it has non-default versions; delete them first",
            ));
        }
        self.batch(|r| r.set(Key::Policy(name.into()), None))
    }

    /// A policy.
    pub fn policy(&self, name: &str) -> Option<&StoredPolicy> {
        self.policies.get(name)
    }

    /// Every policy, in no particular order.
    pub fn policies(&self) -> impl Iterator<Item = &StoredPolicy> {
        self.policies.values()
    }

    /// What a policy is attached to: certificates (by ID), then thing groups (by name), each
    /// sorted (AWS `ListTargetsForPolicy`). Empty for an unknown or unattached policy.
    pub fn policy_targets(&self, name: &str) -> Vec<PolicyTarget> {
        if self.policy_targets.get(name).copied().unwrap_or(0) == 0 {
            return Vec::new();
        }
        let mut certificates: Vec<CertificateId> = self
            .certificates
            .iter()
            .filter(|(_, c)| c.policies.iter().any(|p| &**p == name))
            .map(|(id, _)| *id)
            .collect();
        certificates.sort_unstable_by_key(|id| *id.as_bytes());
        let mut groups: Vec<&str> = self
            .groups
            .iter()
            .filter(|(_, g)| g.policies.iter().any(|p| &**p == name))
            .map(|(n, _)| &**n)
            .collect();
        groups.sort_unstable();
        certificates
            .into_iter()
            .map(PolicyTarget::Certificate)
            .chain(
                groups
                    .into_iter()
                    .map(|g| PolicyTarget::ThingGroup(g.to_owned())),
            )
            .collect()
    }

    /// Attaches a policy to a certificate or thing group (AWS `AttachPolicy`). Attaching twice
    /// is a no-op; at most [`RegistryLimits::max_policies_per_target`] per target.
    pub fn attach_policy(&mut self, policy: &str, target: &PolicyTarget) -> Result<()> {
        if !self.policies.contains_key(policy) {
            return Err(not_found("policy", policy));
        }
        let limit = self.limits.max_policies_per_target;
        let attach = |list: &mut Vec<Box<str>>| -> Result<bool> {
            if list.iter().any(|p| &**p == policy) {
                return Ok(false);
            }
            if list.len() >= limit {
                return Err(Error::LimitExceeded {
                    what: "policies attached to one target",
                    limit,
                });
            }
            list.push(policy.into());
            Ok(true)
        };
        match target {
            PolicyTarget::Certificate(id) => {
                let mut cert = self
                    .certificates
                    .get(id)
                    .cloned()
                    .ok_or_else(|| not_found("certificate", &id.to_string()))?;
                if attach(&mut cert.policies)? {
                    self.batch(|r| r.set(Key::Cert(*id), Some(Value::Cert(cert))))?;
                }
            }
            PolicyTarget::ThingGroup(name) => {
                let mut group = self
                    .groups
                    .get(name.as_str())
                    .cloned()
                    .ok_or_else(|| not_found("thing group", name))?;
                if attach(&mut group.policies)? {
                    self.batch(|r| {
                        r.set(Key::Group(name.as_str().into()), Some(Value::Group(group)))
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Detaches a policy (AWS `DetachPolicy`).
    pub fn detach_policy(&mut self, policy: &str, target: &PolicyTarget) -> Result<()> {
        let detach = |list: &mut Vec<Box<str>>| -> Result<()> {
            let pos = list
                .iter()
                .position(|p| &**p == policy)
                .ok_or_else(|| not_found("policy attachment", policy))?;
            list.remove(pos);
            Ok(())
        };
        match target {
            PolicyTarget::Certificate(id) => {
                let mut cert = self
                    .certificates
                    .get(id)
                    .cloned()
                    .ok_or_else(|| not_found("certificate", &id.to_string()))?;
                detach(&mut cert.policies)?;
                self.batch(|r| r.set(Key::Cert(*id), Some(Value::Cert(cert))))
            }
            PolicyTarget::ThingGroup(name) => {
                let mut group = self
                    .groups
                    .get(name.as_str())
                    .cloned()
                    .ok_or_else(|| not_found("thing group", name))?;
                detach(&mut group.policies)?;
                self.batch(|r| r.set(Key::Group(name.as_str().into()), Some(Value::Group(group))))
            }
        }
    }

    /// The policies in effect for a certificate: those attached to it, then those of every
    /// static group of every thing it is attached to, and of those groups' ancestors, each once,
    /// in that order (AWS `GetEffectivePolicies` for a principal).
    pub fn effective_policies(&self, id: &CertificateId) -> Result<Vec<EffectivePolicy>> {
        let cert = self
            .certificates
            .get(id)
            .ok_or_else(|| not_found("certificate", &id.to_string()))?;
        Ok(self.effective_policies_of(cert))
    }

    fn effective_policies_of(&self, cert: &Certificate) -> Vec<EffectivePolicy> {
        let mut out: Vec<EffectivePolicy> = Vec::with_capacity(cert.policies.len() + 4);
        let push = |name: &str, out: &mut Vec<EffectivePolicy>| {
            if out.iter().any(|p| &*p.name == name) {
                return;
            }
            if let Some(policy) = self.policies.get(name)
                && let Some(version) = policy.default_version()
            {
                out.push(EffectivePolicy {
                    name: policy.name.clone(),
                    version: version.clone(),
                });
            }
        };
        for p in &cert.policies {
            push(p, &mut out);
        }
        for attachment in &cert.things {
            let Some(thing) = self.things.get(&*attachment.thing) else {
                continue;
            };
            for group in &thing.groups {
                let mut current = Some(&**group);
                let mut hops = 0;
                while let Some(g) = current {
                    let Some(entry) = self.groups.get(g) else {
                        break;
                    };
                    for p in &entry.policies {
                        push(p, &mut out);
                    }
                    hops += 1;
                    if hops > self.limits.max_group_depth {
                        break;
                    }
                    current = entry.parent.as_deref();
                }
            }
        }
        out
    }

    // ------------------------------------------------------------------------------------------
    // Authentication

    /// Identifies a TLS peer from its certificate chain (end-entity first, as
    /// `rustls::ServerConnection::peer_certificates` returns it).
    ///
    /// Refused: no certificate, an unknown certificate, a certificate that is not ACTIVE, one
    /// whose registered CA is INACTIVE or no longer registered, and an expired one. The chain
    /// itself must already have been verified by the TLS layer (see
    /// [`crate::identity::ServerConfigBuilder`]).
    pub fn authenticate(
        &self,
        peer_certificates: &[impl AsRef<[u8]>],
        now: SystemTime,
    ) -> Result<DeviceIdentity> {
        let der = peer_certificates
            .first()
            .ok_or_else(|| Error::Unauthenticated(AuthFailure::NoCertificate))?
            .as_ref();
        let id = CertificateId::of_der(der);
        let cert = self.certificates.get(&id).ok_or(Error::Unauthenticated(
            AuthFailure::UnknownCertificate { id },
        ))?;
        if cert.status != CertificateStatus::Active {
            return Err(Error::Unauthenticated(AuthFailure::CertificateNotActive {
                id,
                status: cert.status,
            }));
        }
        if let Some(ca_id) = &cert.ca {
            match self.cas.get(ca_id) {
                Some(ca) if ca.status == CaStatus::Active => {}
                Some(_) => {
                    return Err(Error::Unauthenticated(AuthFailure::CaInactive {
                        id,
                        ca: *ca_id,
                    }));
                }
                None => {
                    return Err(Error::Unauthenticated(AuthFailure::CaNotRegistered {
                        id,
                        ca: *ca_id,
                    }));
                }
            }
        }
        if cert.not_after < unix_seconds(now) {
            return Err(Error::Unauthenticated(AuthFailure::CertificateExpired {
                id,
                not_after: cert.not_after,
            }));
        }
        let things: Vec<Arc<str>> = cert.things.iter().map(|a| a.thing.clone()).collect();
        let thing = cert
            .things
            .iter()
            .position(|a| a.exclusive)
            .and_then(|i| things.get(i))
            .or_else(|| things.first())
            .cloned();
        Ok(DeviceIdentity {
            certificate_id: id,
            status: cert.status,
            ca_certificate_id: cert.ca,
            thing,
            things,
            policies: self.effective_policies_of(cert),
        })
    }
}

/// Keeps only the last operation per key (a batch often writes a record twice, e.g. a certificate
/// registered and then attached), in the order of those last operations.
fn coalesce(ops: Vec<StoreOp>) -> Vec<StoreOp> {
    fn key(op: &StoreOp) -> &str {
        match op {
            StoreOp::Put { key, .. } | StoreOp::Delete { key } => key,
        }
    }
    let mut last: Map<&str, usize> = Map::default();
    for (i, op) in ops.iter().enumerate() {
        last.insert(key(op), i);
    }
    if last.len() == ops.len() {
        return ops;
    }
    let keep: Vec<bool> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| last.get(key(op)) == Some(&i))
        .collect();
    drop(last);
    ops.into_iter()
        .zip(keep)
        .filter_map(|(op, keep)| keep.then_some(op))
        .collect()
}

/// Splits a stored certificate record into its JSON metadata and its DER.
fn split_certificate_record(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&b| b == 0) {
        Some(i) => (&bytes[..i], bytes.get(i + 1..).unwrap_or_default()),
        None => (bytes, &[]),
    }
}

/// Sets (`Some`) or removes (`None`) attributes, each name and value checked first.
fn apply_attribute_changes(
    attributes: &mut BTreeMap<Box<str>, Box<str>>,
    changes: &[(&str, Option<&str>)],
) -> Result<()> {
    for (k, v) in changes {
        check_attribute_name(k)?;
        match v {
            Some(v) => {
                check_attribute_value(v)?;
                attributes.insert((*k).into(), (*v).into());
            }
            None => {
                attributes.remove(*k);
            }
        }
    }
    Ok(())
}

fn decrement(map: &mut Map<Box<str>, usize>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

fn not_found(kind: &'static str, id: &str) -> Error {
    Error::NotFound {
        kind,
        id: id.into(),
    }
}

fn already(kind: &'static str, id: &str) -> Error {
    Error::AlreadyExists {
        kind,
        id: id.into(),
    }
}

/// A certificate's (`notBefore`, `notAfter`) in Unix seconds.
fn validity_of(der: &[u8]) -> Result<(i64, i64)> {
    let (_, cert) = parse_certificate(der)?;
    let validity = cert.validity();
    Ok((
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}

fn parse_certificate(der: &[u8]) -> Result<(&[u8], x509_parser::certificate::X509Certificate<'_>)> {
    let (rest, cert) =
        x509_parser::certificate::X509Certificate::from_der(der).map_err(|e| Error::Malformed {
            what: "certificate",
            detail: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(Error::Malformed {
            what: "certificate",
            detail: format!("{} trailing bytes", rest.len()),
        });
    }
    Ok((rest, cert))
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, Hasher};

    use super::*;

    /// The hash the registry used before it was seeded: rustc's multiply-rotate "FxHash", with
    /// a fixed (zero) initial state, exactly as `Hash for str` drives it (the bytes, then 0xff).
    fn old_fast_hash(key: &str) -> u64 {
        fn add(hash: u64, word: u64) -> u64 {
            (hash.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
        }
        let mut hash = 0u64;
        let mut chunks = key.as_bytes().chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            hash = add(hash, u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            hash = add(hash, u64::from_le_bytes(word));
        }
        add(hash, 0xff)
    }

    /// The largest number of `keys` that share a bucket of a table with `buckets` (a power of
    /// two) buckets, when the table indexes by the low bits of `hash` (as hashbrown does).
    fn worst_bucket(keys: &[String], buckets: u64, hash: impl Fn(&str) -> u64) -> usize {
        let mut counts = HashMap::new();
        for k in keys {
            *counts.entry(hash(k) & (buckets - 1)).or_insert(0usize) += 1;
        }
        counts.into_values().max().unwrap_or(0)
    }

    /// Hash flooding, measured as bucket occupancy (the probe length of every insert and
    /// lookup), never as time. Thing names a device could send as template parameters are
    /// ground until they all fall into bucket 0 of a 1024-bucket table under the old unseeded
    /// hash: every operation on them would probe all of them. Under the registry's map hasher
    /// the same names spread like random ones do. The seed is per map: two registries hash the
    /// same name differently, so the attacker cannot precompute against one instance either.
    #[test]
    fn device_chosen_thing_names_cannot_flood_one_bucket() {
        const BUCKETS: u64 = 1024;
        const N: usize = 256;
        let flood: Vec<String> = (0u64..)
            .map(|i| format!("sensor-{i}"))
            .filter(|k| old_fast_hash(k) & (BUCKETS - 1) == 0)
            .take(N)
            .collect();
        let random: Vec<String> = (0..N).map(|i| format!("device-{i:04}")).collect();
        assert_eq!(worst_bucket(&flood, BUCKETS, old_fast_hash), N);

        let registry = Registry::in_memory();
        let seeded = |k: &str| registry.things.hasher().hash_one(k);
        let flooded = worst_bucket(&flood, BUCKETS, seeded);
        let baseline = worst_bucket(&random, BUCKETS, seeded);
        // 256 keys in 1024 buckets: the fullest bucket of a random hash holds about 3 or 4; 12
        // is past any plausible outcome (probability far below 1e-9) yet 20 times below N.
        assert!(
            flooded <= 12,
            "{flooded} of {N} crafted names in one bucket"
        );
        assert!(
            baseline <= 12,
            "{baseline} of {N} plain names in one bucket"
        );

        let other = Registry::in_memory();
        let name = flood.first().expect("ground keys");
        let mut a = registry.things.hasher().build_hasher();
        let mut b = other.things.hasher().build_hasher();
        a.write(name.as_bytes());
        b.write(name.as_bytes());
        assert_ne!(a.finish(), b.finish(), "two registries share a hash seed");
    }

    /// Certificate IDs are keyed the same way: a JIT-registered certificate's ID is chosen (by
    /// grinding) by whoever holds the auto-registration CA's key.
    #[test]
    fn certificate_id_maps_are_seeded_per_registry() {
        let id = CertificateId::of_der(b"any certificate");
        let a = Registry::in_memory();
        let b = Registry::in_memory();
        assert_ne!(
            a.certificates.hasher().hash_one(id),
            b.certificates.hasher().hash_one(id)
        );
    }

    fn connected_since(timestamp: u64, version: u64) -> Connectivity {
        Connectivity {
            connected: true,
            timestamp: Some(timestamp),
            disconnect_reason: None,
            version: Some(version),
        }
    }

    #[test]
    fn connectivity_of_an_unknown_thing_is_not_found_and_changes_nothing() {
        let mut registry = Registry::in_memory();
        assert!(matches!(
            registry.set_connected("ghost", 1_000, 0),
            Err(Error::NotFound { kind: "thing", .. })
        ));
        assert!(matches!(
            registry.set_disconnected("ghost", 2_000, 0, "CONNECTION_LOST"),
            Err(Error::NotFound { kind: "thing", .. })
        ));
        assert_eq!(registry.connectivity("ghost"), None);
        assert!(registry.connectivity.is_empty());
    }

    /// The values of the fleet indexing example in AWS's "Managing thing indexing" page:
    /// `mything1` disconnected at 1556649874716 with `CONNECTION_LOST`, `mything2` connected
    /// at 1556649855046.
    #[test]
    fn connectivity_follows_connects_and_disconnects_as_in_aws_example() {
        let mut registry = Registry::in_memory();
        registry.create_thing("mything1", None, &[]).unwrap();
        registry.create_thing("mything2", None, &[]).unwrap();
        // Never seen: disconnected, nothing known.
        assert_eq!(
            registry.connectivity("mything1"),
            Some(Connectivity::default())
        );

        assert!(
            registry
                .set_connected("mything1", 1556649800000, 0)
                .unwrap()
        );
        assert!(
            registry
                .set_connected("mything2", 1556649855046, 0)
                .unwrap()
        );
        assert!(
            registry
                .set_disconnected("mything1", 1556649874716, 0, "CONNECTION_LOST")
                .unwrap()
        );
        assert_eq!(
            registry.connectivity("mything1"),
            Some(Connectivity {
                connected: false,
                timestamp: Some(1556649874716),
                disconnect_reason: Some("CONNECTION_LOST".into()),
                version: Some(0),
            })
        );
        assert_eq!(
            registry.connectivity("mything2"),
            Some(connected_since(1556649855046, 0))
        );
        // A reconnect clears the reason.
        assert!(
            registry
                .set_connected("mything1", 1556649900000, 1)
                .unwrap()
        );
        assert_eq!(
            registry.connectivity("mything1"),
            Some(connected_since(1556649900000, 1))
        );
    }

    #[test]
    fn takeover_keeps_the_thing_connected() {
        let mut registry = Registry::in_memory();
        registry.create_thing("sensor-1", None, &[]).unwrap();
        registry.set_connected("sensor-1", 1_000, 4).unwrap();
        registry.set_connected("sensor-1", 2_000, 5).unwrap();
        // The replaced connection's disconnect arrives after the new connect.
        assert!(
            !registry
                .set_disconnected("sensor-1", 2_001, 4, "DUPLICATE_CLIENTID")
                .unwrap()
        );
        assert_eq!(
            registry.connectivity("sensor-1"),
            Some(connected_since(2_000, 5))
        );
    }

    #[test]
    fn deleting_a_thing_deletes_its_connectivity() {
        let mut registry = Registry::in_memory();
        registry.create_thing("sensor-1", None, &[]).unwrap();
        registry.set_connected("sensor-1", 1_000, 0).unwrap();
        registry.delete_thing("sensor-1").unwrap();
        assert_eq!(registry.connectivity("sensor-1"), None);
        assert!(registry.connectivity.is_empty());
        // A new thing of the same name starts unknown.
        registry.create_thing("sensor-1", None, &[]).unwrap();
        assert_eq!(
            registry.connectivity("sensor-1"),
            Some(Connectivity::default())
        );
    }

    #[test]
    fn a_rolled_back_delete_keeps_connectivity_and_a_rolled_back_create_drops_it() {
        let mut registry = Registry::in_memory();
        registry.create_thing("kept", None, &[]).unwrap();
        registry.set_connected("kept", 1_000, 0).unwrap();
        let aborted = registry.batch(|r| {
            r.delete_thing("kept")?;
            r.create_thing("fleeting", None, &[])?;
            r.set_connected("fleeting", 1_500, 0)?;
            Err::<(), _>(Error::store("abort"))
        });
        assert!(aborted.is_err());
        assert_eq!(
            registry.connectivity("kept"),
            Some(connected_since(1_000, 0))
        );
        assert_eq!(registry.connectivity("fleeting"), None);
        assert_eq!(registry.connectivity.len(), 1);
    }

    #[test]
    fn connectivity_is_not_stored_and_reads_unknown_after_reopening() {
        let store = MemoryStore::new();
        let mut registry = Registry::open(store.clone(), RegistryLimits::default()).unwrap();
        registry.create_thing("sensor-1", None, &[]).unwrap();
        let records = store.len();
        registry.set_connected("sensor-1", 1_000, 0).unwrap();
        registry
            .set_disconnected("sensor-1", 2_000, 0, "SERVER_INITIATED_DISCONNECT")
            .unwrap();
        assert_eq!(
            store.len(),
            records,
            "a connectivity change wrote to the store"
        );
        drop(registry);
        let reopened = Registry::open(store, RegistryLimits::default()).unwrap();
        assert_eq!(
            reopened.connectivity("sensor-1"),
            Some(Connectivity::default())
        );
    }

    #[test]
    fn connectivity_records_are_at_most_one_per_thing() {
        let mut registry = Registry::in_memory();
        for i in 0..10 {
            registry.create_thing(&format!("t{i}"), None, &[]).unwrap();
        }
        for round in 0..5u64 {
            for i in 0..10 {
                let name = format!("t{i}");
                registry.set_connected(&name, round * 10, round).unwrap();
                registry
                    .set_disconnected(&name, round * 10 + 1, round, "CONNECTION_LOST")
                    .unwrap();
            }
            let _ = registry.set_connected(&format!("not-a-thing-{round}"), 0, 0);
        }
        assert_eq!(registry.connectivity.len(), registry.thing_count());
    }
}
