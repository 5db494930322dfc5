//! One audit run: every enabled check over a snapshot, with AWS's per-check summary.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};
use thingkit_policy::{ArnPrefix, PolicyDocument};

use crate::check::{AuditConfig, CheckName, ReasonCode};
use crate::error::Error;
use crate::finding::{AuditFinding, Draft, ResourceIdentifier, ResourceType};
use crate::snapshot::AuditSnapshot;
use crate::suppression::apply_suppressions;
use crate::{certificate, connection, permission};

/// How a check's run ended (`AuditCheckRunStatus`; the in-progress states do not occur in a
/// synchronous run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckRunStatus {
    /// `COMPLETED_COMPLIANT`: no non-compliant resource.
    CompletedCompliant,
    /// `COMPLETED_NON_COMPLIANT`: at least one.
    CompletedNonCompliant,
    /// `FAILED`: the check could not run (e.g. an invalid threshold).
    Failed,
}

/// One check's summary (`AuditCheckDetails`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditCheckDetails {
    /// `checkRunStatus`.
    pub check_run_status: CheckRunStatus,
    /// `checkCompliant`.
    pub check_compliant: bool,
    /// `totalResourcesCount`: resources the check looked at.
    pub total_resources_count: u64,
    /// `nonCompliantResourcesCount`: distinct resources with a finding.
    pub non_compliant_resources_count: u64,
    /// `suppressedNonCompliantResourcesCount`: of those, the ones a suppression covers.
    pub suppressed_non_compliant_resources_count: u64,
    /// `errorCode`: set when part of the check's input was refused (e.g. `CRL_NOT_TRUSTED`) or
    /// the check failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// `message`: what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The result of [`run_audit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// The task ID (`taskId`), derived from the run time.
    pub task_id: String,
    /// When the audit ran (`taskStartTime`), Unix seconds.
    pub task_start_time: i64,
    /// Every finding, grouped by check in [`CheckName::ALL`] order.
    pub findings: Vec<AuditFinding>,
    /// The summary of every enabled check.
    pub checks: BTreeMap<CheckName, AuditCheckDetails>,
    /// Inputs that were refused (unverifiable CRLs, unparseable certificates or policies) and
    /// configuration errors. A refused input is never trusted; the rest of the audit runs.
    pub errors: Vec<Error>,
}

impl AuditReport {
    /// The findings of one check.
    pub fn findings_for(&self, check: CheckName) -> impl Iterator<Item = &AuditFinding> {
        self.findings.iter().filter(move |f| f.check_name == check)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) drafts: Vec<Draft>,
    pub(crate) totals: BTreeMap<CheckName, u64>,
    pub(crate) check_errors: BTreeMap<CheckName, (String, String)>,
    pub(crate) failed: BTreeSet<CheckName>,
    pub(crate) errors: Vec<Error>,
}

impl Tally {
    pub(crate) fn push(&mut self, draft: Draft) {
        self.drafts.push(draft);
    }

    pub(crate) fn total(&mut self, check: CheckName, n: usize) {
        self.totals
            .insert(check, u64::try_from(n).unwrap_or(u64::MAX));
    }

    pub(crate) fn error(&mut self, check: CheckName, code: &str, message: String) {
        self.check_errors
            .entry(check)
            .or_insert_with(|| (code.to_string(), message));
    }
}

fn policy_checks(snapshot: &AuditSnapshot, config: &AuditConfig, tally: &mut Tally) {
    let permissive = config.is_enabled(CheckName::IotPolicyOverlyPermissive);
    let misconfig = config.is_enabled(CheckName::IotPolicyPotentialMisconfiguration);
    if !(permissive || misconfig) {
        return;
    }
    for check in [
        CheckName::IotPolicyOverlyPermissive,
        CheckName::IotPolicyPotentialMisconfiguration,
    ] {
        tally.total(check, snapshot.policies.len());
    }
    let Some(arn) = ArnPrefix::new("aws", &snapshot.region, &snapshot.account) else {
        let message = "the snapshot's region and account must be non-empty and contain no `:`";
        for check in [
            CheckName::IotPolicyOverlyPermissive,
            CheckName::IotPolicyPotentialMisconfiguration,
        ] {
            tally.failed.insert(check);
            tally.error(check, "INVALID_SNAPSHOT", message.to_string());
        }
        return;
    };
    for p in &snapshot.policies {
        let doc = match PolicyDocument::parse(&p.document) {
            Ok(doc) => doc,
            Err(e) => {
                tally.errors.push(Error::Policy {
                    policy_name: p.name.clone(),
                    policy_version_id: p.default_version_id.clone(),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let resource = || ResourceIdentifier::policy_version(&p.name, &p.default_version_id);
        if permissive {
            let problems = permission::overly_permissive(&doc, &arn);
            if !problems.is_empty() {
                tally.push(Draft::new(
                    CheckName::IotPolicyOverlyPermissive,
                    ResourceType::IotPolicy,
                    resource(),
                    ReasonCode::AllowsBroadAccessToIotDataPlaneActions,
                    format!("Policy allows broad access: {}", problems.join("; ")),
                ));
            }
        }
        if misconfig {
            let wildcards = permission::wildcards_in_deny(&doc);
            if !wildcards.is_empty() {
                tally.push(Draft::new(
                    CheckName::IotPolicyPotentialMisconfiguration,
                    ResourceType::IotPolicy,
                    resource(),
                    ReasonCode::PolicyContainsMqttWildcardsInDenyStatement,
                    format!(
                        "Deny statement resources {} contain MQTT wildcards, which are literal characters in a policy",
                        wildcards.join(", ")
                    ),
                ));
            }
            let bypassed = permission::deny_bypassed_by_wildcards(&doc, &arn);
            if !bypassed.is_empty() {
                let list: Vec<String> = bypassed
                    .iter()
                    .map(|(denied, via)| format!("{denied} (reachable by subscribing to `{via}`)"))
                    .collect();
                tally.push(Draft::new(
                    CheckName::IotPolicyPotentialMisconfiguration,
                    ResourceType::IotPolicy,
                    resource(),
                    ReasonCode::TopicFiltersIntendedToDenyAllowedUsingWildcards,
                    format!(
                        "Denied topic filters are still received through wildcard subscriptions: {}",
                        list.join(", ")
                    ),
                ));
            }
        }
    }
}

/// Where `check` stands in [`CheckName::ALL`] (the order of a report's findings).
fn check_order(check: CheckName) -> usize {
    CheckName::ALL
        .iter()
        .position(|c| *c == check)
        .unwrap_or(usize::MAX)
}

/// Runs every enabled check of `config` over `snapshot` at time `now` (Unix seconds) and
/// applies the configured suppressions. Pure: the same inputs give the same report.
pub fn run_audit(snapshot: &AuditSnapshot, config: &AuditConfig, now: i64) -> AuditReport {
    let mut tally = Tally::default();
    let mut config = config.clone();
    if let Err(e) = config.validate() {
        // Only the age threshold and expiry threshold can be invalid; fail the checks that
        // read them and run the rest.
        let failed: &[CheckName] = match &e {
            Error::InvalidConfig {
                field: "cert_age_threshold_days",
                ..
            } => &[CheckName::DeviceCertificateAge],
            _ => &[
                CheckName::DeviceCertificateExpiring,
                CheckName::CaCertificateExpiring,
            ],
        };
        for &check in failed {
            if config.enabled_checks.remove(&check) {
                tally.failed.insert(check);
                tally.error(check, "INVALID_CONFIGURATION", e.to_string());
            }
        }
        tally.errors.push(e);
    }

    certificate::run(snapshot, &config, now, &mut tally);
    connection::run(
        &snapshot.connections,
        config.connection_window.bounds(now),
        config.is_enabled(CheckName::DeviceCertificateShared),
        config.is_enabled(CheckName::ConflictingClientIds),
        &mut tally,
    );
    policy_checks(snapshot, &config, &mut tally);
    if config.is_enabled(CheckName::LoggingDisabled) {
        tally.total(CheckName::LoggingDisabled, 1);
        if !snapshot.logging_enabled {
            tally.push(Draft::new(
                CheckName::LoggingDisabled,
                ResourceType::AccountSettings,
                ResourceIdentifier::account(&snapshot.account),
                ReasonCode::LoggingDisabled,
                "Logging is disabled for the account".to_string(),
            ));
        }
    }

    let task_id = format!("audit-{now}");
    let mut findings: Vec<AuditFinding> = tally
        .drafts
        .into_iter()
        .map(|d| d.finish(&task_id, now))
        .collect();
    findings.sort_by_key(|f| check_order(f.check_name));
    apply_suppressions(&mut findings, &config.suppressions, now);

    // The findings are sorted by check: each check's are one run. Distinct resources are
    // counted with hash sets (a million findings made ordered sets compare identifiers field
    // by field).
    let mut checks = BTreeMap::new();
    for check in CheckName::ALL {
        let failed = tally.failed.contains(&check);
        if !failed && !config.is_enabled(check) {
            continue;
        }
        let mut resources = HashSet::new();
        let mut suppressed = HashSet::new();
        let first = findings.partition_point(|f| check_order(f.check_name) < check_order(check));
        let run = findings[first..]
            .iter()
            .take_while(|f| f.check_name == check);
        for f in run {
            let id = &f.non_compliant_resource.resource_identifier;
            resources.insert(id);
            if f.is_suppressed {
                suppressed.insert(id);
            }
        }
        let non_compliant = u64::try_from(resources.len()).unwrap_or(u64::MAX);
        let (error_code, message) = match tally.check_errors.get(&check) {
            Some((c, m)) => (Some(c.clone()), Some(m.clone())),
            None => (None, None),
        };
        let status = if failed {
            CheckRunStatus::Failed
        } else if non_compliant == 0 {
            CheckRunStatus::CompletedCompliant
        } else {
            CheckRunStatus::CompletedNonCompliant
        };
        checks.insert(
            check,
            AuditCheckDetails {
                check_run_status: status,
                check_compliant: status == CheckRunStatus::CompletedCompliant,
                total_resources_count: tally.totals.get(&check).copied().unwrap_or(0),
                non_compliant_resources_count: non_compliant,
                suppressed_non_compliant_resources_count: u64::try_from(suppressed.len())
                    .unwrap_or(u64::MAX),
                error_code,
                message,
            },
        );
    }

    AuditReport {
        task_id,
        task_start_time: now,
        findings,
        checks,
        errors: tally.errors,
    }
}
