//! Named policies with versions (AWS `CreatePolicy` / `CreatePolicyVersion`), each version's
//! document validated when it is created and again when it is loaded from a store.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A policy document validated by `thingkit-policy`, with its exact text.
#[derive(Clone, Debug)]
pub struct StoredPolicyDocument {
    text: Arc<str>,
    parsed: Arc<thingkit_policy::PolicyDocument>,
}

impl StoredPolicyDocument {
    /// Validates `text` with [`thingkit_policy::PolicyDocument::parse`] (AWS IoT policy grammar
    /// and limits, including the 2048-character size limit).
    pub fn parse(name: &str, text: &str) -> Result<Self> {
        let parsed = thingkit_policy::PolicyDocument::parse(text).map_err(|e| Error::Policy {
            name: name.into(),
            detail: e.to_string(),
        })?;
        Ok(StoredPolicyDocument {
            text: text.into(),
            parsed: Arc::new(parsed),
        })
    }

    /// The document text, exactly as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The parsed document, ready to add to a [`thingkit_policy::PolicySet`].
    pub fn parsed(&self) -> &Arc<thingkit_policy::PolicyDocument> {
        &self.parsed
    }
}

/// One version of a policy.
#[derive(Clone, Debug)]
pub struct PolicyVersion {
    /// The version ID (1, 2, ... never reused).
    pub version_id: u32,
    /// The validated document.
    pub document: StoredPolicyDocument,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// A named policy: up to five versions, one of them the default.
#[derive(Clone, Debug)]
pub struct StoredPolicy {
    /// The policy name.
    pub name: Arc<str>,
    /// The versions, oldest first.
    pub versions: Vec<Arc<PolicyVersion>>,
    /// The default version's ID.
    pub default_version_id: u32,
    next_version_id: u32,
}

/// The stored form of a policy.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PolicyRecord {
    name: String,
    versions: Vec<VersionRecord>,
    default_version_id: u32,
    next_version_id: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct VersionRecord {
    version_id: u32,
    document: String,
    created_at: i64,
}

impl StoredPolicy {
    pub(crate) fn new(name: &str, document: &str, created_at: i64) -> Result<Self> {
        let document = StoredPolicyDocument::parse(name, document)?;
        Ok(StoredPolicy {
            name: name.into(),
            versions: vec![Arc::new(PolicyVersion {
                version_id: 1,
                document,
                created_at,
            })],
            default_version_id: 1,
            next_version_id: 2,
        })
    }

    /// The default version.
    pub fn default_version(&self) -> Option<&Arc<PolicyVersion>> {
        self.versions
            .iter()
            .find(|v| v.version_id == self.default_version_id)
    }

    /// A version by ID.
    pub fn version(&self, version_id: u32) -> Option<&Arc<PolicyVersion>> {
        self.versions.iter().find(|v| v.version_id == version_id)
    }

    pub(crate) fn add_version(
        &mut self,
        name: &str,
        document: &str,
        set_as_default: bool,
        created_at: i64,
    ) -> Result<u32> {
        let document = StoredPolicyDocument::parse(name, document)?;
        let version_id = self.next_version_id;
        self.next_version_id = self
            .next_version_id
            .checked_add(1)
            .ok_or_else(|| Error::conflict("policy", name, "policy version IDs exhausted"))?;
        self.versions.push(Arc::new(PolicyVersion {
            version_id,
            document,
            created_at,
        }));
        if set_as_default {
            self.default_version_id = version_id;
        }
        Ok(version_id)
    }

    pub(crate) fn set_default(&mut self, version_id: u32) -> Result<()> {
        if self.version(version_id).is_none() {
            return Err(Error::NotFound {
                kind: "policy version",
                id: version_id.to_string(),
            });
        }
        self.default_version_id = version_id;
        Ok(())
    }

    pub(crate) fn delete_version(&mut self, version_id: u32) -> Result<()> {
        if version_id == self.default_version_id {
            return Err(Error::conflict(
                "policy version",
                version_id.to_string(),
                "the default policy version cannot be deleted",
            ));
        }
        let pos = self
            .versions
            .iter()
            .position(|v| v.version_id == version_id)
            .ok_or_else(|| Error::NotFound {
                kind: "policy version",
                id: version_id.to_string(),
            })?;
        self.versions.remove(pos);
        Ok(())
    }

    pub(crate) fn to_record(&self) -> PolicyRecord {
        PolicyRecord {
            name: self.name.to_string(),
            versions: self
                .versions
                .iter()
                .map(|v| VersionRecord {
                    version_id: v.version_id,
                    document: v.document.text().to_owned(),
                    created_at: v.created_at,
                })
                .collect(),
            default_version_id: self.default_version_id,
            next_version_id: self.next_version_id,
        }
    }

    /// Rebuilds a policy from its stored form, validating every document again.
    pub(crate) fn revalidate(record: PolicyRecord) -> Result<Self> {
        let versions = record
            .versions
            .into_iter()
            .map(|v| {
                Ok(Arc::new(PolicyVersion {
                    version_id: v.version_id,
                    document: StoredPolicyDocument::parse(&record.name, &v.document)?,
                    created_at: v.created_at,
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(StoredPolicy {
            name: record.name.into(),
            versions,
            default_version_id: record.default_version_id,
            next_version_id: record.next_version_id,
        })
    }
}

impl Serialize for StoredPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_record().serialize(s)
    }
}
