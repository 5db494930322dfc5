//! What the control plane keeps of Device Defender: audit tasks with their per-check summaries
//! and findings, the account's audit configuration, scheduled audits, finding suppressions and
//! security profiles with their targets. One JSON file in the server's data directory (or
//! memory), written as the job templates are ([`crate::job_store`]): every change is persisted
//! (temporary file, fsync, rename) before it is acknowledged, and a refused change or a failed
//! write leaves everything as it was.
//!
//! Bounded: findings are kept for the last [`AuditStore::max_tasks_with_findings`] tasks (older
//! tasks keep their summaries), and tasks for the last [`AuditStore::max_tasks`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thingkit_audit::{AuditCheckDetails, AuditConfig, AuditFinding, AuditSuppression, CheckName};

use crate::templates::{JsonRecords, TemplateStoreError};

/// One audit task (`DescribeAuditTask`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredAuditTask {
    /// `taskId`.
    pub task_id: String,
    /// `taskType`: `ON_DEMAND_AUDIT_TASK` or `SCHEDULED_AUDIT_TASK`.
    pub task_type: String,
    /// `taskStatus`: `COMPLETED` or `FAILED` (tasks run synchronously).
    pub task_status: String,
    /// `taskStartTime`, Unix seconds.
    pub task_start_time: i64,
    /// `scheduledAuditName`, for a scheduled task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_audit_name: Option<String>,
    /// `auditDetails`: each check's summary by check name.
    #[serde(default)]
    pub audit_details: BTreeMap<String, AuditCheckDetails>,
    /// The findings (empty once the task is older than the findings bound).
    #[serde(default)]
    pub findings: Vec<AuditFinding>,
}

/// One check's account configuration (`AuditCheckConfiguration`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckConfiguration {
    /// `enabled`.
    pub enabled: bool,
    /// `configuration` (e.g. `CERT_AGE_THRESHOLD_IN_DAYS`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub configuration: BTreeMap<String, String>,
}

/// The account's audit configuration (`DescribeAccountAuditConfiguration`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountAuditConfiguration {
    /// `roleArn`, kept as given (thingkit assumes no role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// `auditNotificationTargetConfigurations`, kept as given (thingkit sends no SNS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_targets: Option<Value>,
    /// Per check, as configured; a check never configured has
    /// `thingkit_audit::AuditConfig::default`'s setting.
    #[serde(default)]
    pub checks: BTreeMap<String, CheckConfiguration>,
}

impl AccountAuditConfiguration {
    /// Every check's configuration, the unconfigured ones at their defaults.
    pub fn effective(&self) -> BTreeMap<String, CheckConfiguration> {
        let defaults = AuditConfig::default();
        CheckName::ALL
            .into_iter()
            .map(|c| {
                let conf =
                    self.checks
                        .get(c.as_str())
                        .cloned()
                        .unwrap_or_else(|| CheckConfiguration {
                            enabled: defaults.is_enabled(c),
                            configuration: BTreeMap::new(),
                        });
                (c.as_str().to_string(), conf)
            })
            .collect()
    }

    /// The audit configuration of a run of `checks` (thresholds from this configuration).
    pub fn audit_config(&self, checks: &[CheckName]) -> AuditConfig {
        let mut config = AuditConfig {
            enabled_checks: checks.iter().copied().collect(),
            ..AuditConfig::default()
        };
        let threshold = |check: CheckName, key: &str| {
            self.checks
                .get(check.as_str())
                .and_then(|c| c.configuration.get(key))
                .and_then(|v| v.parse::<u32>().ok())
        };
        if let Some(days) = threshold(
            CheckName::DeviceCertificateAge,
            "CERT_AGE_THRESHOLD_IN_DAYS",
        ) {
            config.cert_age_threshold_days = days;
        }
        if let Some(days) = threshold(
            CheckName::DeviceCertificateExpiring,
            "CERT_EXPIRATION_THRESHOLD_IN_DAYS",
        ) {
            config.cert_expiration_threshold_days = days;
        }
        config
    }
}

/// A scheduled audit (`DescribeScheduledAudit`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredScheduledAudit {
    /// `scheduledAuditName`.
    pub name: String,
    /// `frequency`: `DAILY`, `WEEKLY`, `BIWEEKLY` or `MONTHLY`.
    pub frequency: String,
    /// `dayOfMonth` (`1`..`31` or `LAST`), for MONTHLY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_of_month: Option<String>,
    /// `dayOfWeek` (`SUN`..`SAT`), for WEEKLY and BIWEEKLY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_of_week: Option<String>,
    /// `targetCheckNames`.
    pub target_check_names: Vec<String>,
    /// When it was created, Unix seconds: it first runs on the first due day after this.
    pub created_at: i64,
    /// When it last ran, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<i64>,
}

/// A security profile as `DescribeSecurityProfile` describes it; the members are kept as the
/// request gave them (each version was checked by `thingkit_audit::detect::SecurityProfile`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredSecurityProfile {
    /// `securityProfileName`.
    pub name: String,
    /// `securityProfileDescription`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `behaviors`.
    #[serde(default)]
    pub behaviors: Vec<Value>,
    /// `alertTargets` (kept, not used: thingkit sends no SNS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_targets: Option<Value>,
    /// `additionalMetricsToRetainV2`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_metrics_to_retain_v2: Vec<Value>,
    /// `version`, 1 at creation, one more at each update.
    pub version: u64,
    /// `creationDate`, Unix seconds.
    pub creation_date: i64,
    /// `lastModifiedDate`, Unix seconds.
    pub last_modified_date: i64,
    /// The target ARNs it is attached to.
    #[serde(default)]
    pub targets: Vec<String>,
}

/// Everything the store holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecords {
    /// Audit tasks by ID.
    #[serde(default)]
    pub tasks: BTreeMap<String, StoredAuditTask>,
    /// The account's audit configuration.
    #[serde(default)]
    pub configuration: AccountAuditConfiguration,
    /// Scheduled audits by name.
    #[serde(default)]
    pub scheduled_audits: BTreeMap<String, StoredScheduledAudit>,
    /// Finding suppressions.
    #[serde(default)]
    pub suppressions: Vec<AuditSuppression>,
    /// Security profiles by name.
    #[serde(default)]
    pub security_profiles: BTreeMap<String, StoredSecurityProfile>,
}

impl AuditRecords {
    /// Adds `task`, then drops the findings of tasks beyond the newest `with_findings` and the
    /// tasks beyond the newest `max_tasks`.
    pub fn add_task(&mut self, task: StoredAuditTask, with_findings: usize, max_tasks: usize) {
        self.tasks.insert(task.task_id.clone(), task);
        let mut by_age: Vec<(i64, String)> = self
            .tasks
            .values()
            .map(|t| (t.task_start_time, t.task_id.clone()))
            .collect();
        by_age.sort_by(|a, b| b.cmp(a));
        for (i, (_, id)) in by_age.iter().enumerate() {
            if i >= max_tasks {
                self.tasks.remove(id);
            } else if i >= with_findings
                && let Some(t) = self.tasks.get_mut(id)
            {
                t.findings.clear();
            }
        }
    }
}

/// The Device Defender records, persisted or in memory.
#[derive(Debug)]
pub struct AuditStore {
    records: JsonRecords<AuditRecords>,
    /// Findings are kept for this many of the newest tasks (default 100).
    pub max_tasks_with_findings: usize,
    /// Tasks are kept for this many of the newest (default 1,000).
    pub max_tasks: usize,
}

impl Default for AuditStore {
    fn default() -> Self {
        AuditStore {
            records: JsonRecords::default(),
            max_tasks_with_findings: 100,
            max_tasks: 1000,
        }
    }
}

impl AuditStore {
    /// A store that keeps everything in memory only.
    pub fn in_memory() -> AuditStore {
        AuditStore::default()
    }

    /// Opens the store persisted at `path` (created on the first change if it does not
    /// exist).
    ///
    /// # Errors
    ///
    /// The file cannot be read, or is not a record set this version can read.
    pub fn open(path: impl Into<PathBuf>) -> Result<AuditStore, TemplateStoreError> {
        Ok(AuditStore {
            records: JsonRecords::open(path.into())?,
            ..AuditStore::default()
        })
    }

    /// Sets the bounds: findings for the newest `with_findings` tasks, at most `max_tasks`
    /// tasks.
    pub fn with_bounds(mut self, with_findings: usize, max_tasks: usize) -> AuditStore {
        self.max_tasks_with_findings = with_findings;
        self.max_tasks = max_tasks.max(1);
        self
    }

    /// The file it persists to (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.records.path()
    }

    /// A copy of everything.
    pub fn snapshot(&self) -> AuditRecords {
        self.records.read(AuditRecords::clone)
    }

    /// Reads the records.
    pub fn read<T>(&self, f: impl FnOnce(&AuditRecords) -> T) -> T {
        self.records.read(f)
    }

    /// Applies `change` to a copy of the records, persists the copy, then keeps it. `change`
    /// refusing (returning `Err`) or the write failing leaves the records unchanged.
    ///
    /// # Errors
    ///
    /// What `change` returned, or the write's failure.
    pub fn update<T, E: From<TemplateStoreError>>(
        &self,
        change: impl FnOnce(&mut AuditRecords) -> Result<T, E>,
    ) -> Result<T, E> {
        self.records.update(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, at: i64) -> StoredAuditTask {
        StoredAuditTask {
            task_id: id.into(),
            task_type: "ON_DEMAND_AUDIT_TASK".into(),
            task_status: "COMPLETED".into(),
            task_start_time: at,
            scheduled_audit_name: None,
            audit_details: BTreeMap::new(),
            findings: Vec::new(),
        }
    }

    #[test]
    fn tasks_are_bounded_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.json");
        let store = AuditStore::open(&path).unwrap().with_bounds(1, 2);
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            store
                .update(|r| {
                    r.add_task(task(id, i64::try_from(i).unwrap()), 1, 2);
                    Ok::<_, TemplateStoreError>(())
                })
                .unwrap();
        }
        let refused: Result<(), crate::ApiError> = store.update(|r| {
            r.tasks.clear();
            Err(crate::ApiError::invalid_request("no"))
        });
        assert!(refused.is_err());
        let reopened = AuditStore::open(&path).unwrap();
        let ids: Vec<String> = reopened.read(|r| r.tasks.keys().cloned().collect());
        assert_eq!(ids, ["b", "c"]);
    }
}
