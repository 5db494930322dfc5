//! [`Job`]: a job document sent to target things, with its optional rollout, abort, timeout and
//! retry configuration as plain data (CreateJob's shapes, digest B.1 and B.4). The arithmetic
//! over these configurations lives in `rollout` and `schedule`.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Longest job id (IOT-BOTO `JobId`).
pub const MAX_JOB_ID: usize = 64;
/// Longest job document in characters (IOT-BOTO `JobDocument`).
pub const MAX_JOB_DOCUMENT_CHARS: usize = 32_768;
/// Longest job description in characters (IOT-BOTO `JobDescription`).
pub const MAX_DESCRIPTION_CHARS: usize = 2028;
/// Longest cancel comment in characters (CancelJob `comment`).
pub const MAX_COMMENT_CHARS: usize = 2028;
/// Longest cancel reason code (CancelJob `reasonCode`).
pub const MAX_REASON_CODE: usize = 128;

/// A validated job id: 1–64 characters of `[a-zA-Z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    /// Checks `id` against AWS's pattern.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] when `id` is empty, longer than [`MAX_JOB_ID`] or has a
    /// character outside `[a-zA-Z0-9_-]`.
    pub fn new(id: &str) -> Result<Self, Error> {
        if id.is_empty() || id.len() > MAX_JOB_ID {
            return Err(Error::request(format!(
                "jobId must be 1 to {MAX_JOB_ID} characters"
            )));
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(Error::request("jobId must match [a-zA-Z0-9_-]+"));
        }
        Ok(JobId(id.to_owned()))
    }

    /// The smallest possible id (a range-scan bound for stores).
    pub(crate) fn min() -> Self {
        JobId(String::new())
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        JobId::new(&s)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.0
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// SNAPSHOT (done when every original target is done) or CONTINUOUS (also runs on things that
/// join a target group later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetSelection {
    /// The default.
    #[default]
    Snapshot,
    /// Keeps running on new group members.
    Continuous,
}

/// A job's status (B.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Executions are being rolled out or run.
    InProgress,
    /// Canceled by CancelJob or an abort.
    Canceled,
    /// A snapshot job whose executions are all terminal.
    Completed,
    /// DeleteJob is removing it.
    DeletionInProgress,
    /// Waiting for its scheduled start.
    Scheduled,
}

impl JobStatus {
    /// AWS's name, e.g. `IN_PROGRESS`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::InProgress => "IN_PROGRESS",
            JobStatus::Canceled => "CANCELED",
            JobStatus::Completed => "COMPLETED",
            JobStatus::DeletionInProgress => "DELETION_IN_PROGRESS",
            JobStatus::Scheduled => "SCHEDULED",
        }
    }
}

/// `jobExecutionsRolloutConfig` (J-11, J-12).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutConfig {
    /// Most executions notified per minute, 1–1000.
    pub maximum_per_minute: Option<u32>,
    /// Rate that grows as thresholds are met.
    pub exponential_rate: Option<ExponentialRate>,
}

/// `exponentialRate` (J-12).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExponentialRate {
    /// Starting rate, 1–1000 per minute.
    pub base_rate_per_minute: u32,
    /// Multiplier per threshold met, 1.1–5 with one decimal.
    pub increment_factor: f64,
    /// When the rate grows.
    pub rate_increase_criteria: RateIncreaseCriteria,
}

/// `rateIncreaseCriteria`: exactly one of the two counts, each ≥ 1.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateIncreaseCriteria {
    /// Grow after this many more things were notified.
    pub number_of_notified_things: Option<u32>,
    /// Grow after this many more things succeeded.
    pub number_of_succeeded_things: Option<u32>,
}

/// Which terminal status a criterion counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureType {
    /// FAILED executions.
    Failed,
    /// REJECTED executions (abort criteria only).
    Rejected,
    /// TIMED_OUT executions.
    TimedOut,
    /// All of them.
    All,
}

/// `abortConfig` (J-13).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortConfig {
    /// At least one criterion, checked in order.
    pub criteria_list: Vec<AbortCriteria>,
}

/// One abort criterion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortCriteria {
    /// What counts as a failure.
    pub failure_type: FailureType,
    /// Always `CANCEL`.
    pub action: AbortAction,
    /// Failure share that aborts, 0–100 with at most two decimals.
    pub threshold_percentage: f64,
    /// Completions needed before the criterion is checked, ≥ 1.
    pub min_number_of_executed_things: u32,
}

/// The abort action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AbortAction {
    /// Cancel the job.
    Cancel,
}

/// `timeoutConfig` (J-15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeoutConfig {
    /// Minutes an execution may stay IN_PROGRESS, 1–10080.
    pub in_progress_timeout_in_minutes: u32,
}

/// `jobExecutionsRetryConfig` (J-18).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryConfig {
    /// One or two criteria.
    pub criteria_list: Vec<RetryCriteria>,
}

/// One retry criterion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryCriteria {
    /// FAILED, TIMED_OUT or ALL (never REJECTED).
    pub failure_type: FailureType,
    /// 0–10.
    pub number_of_retries: u32,
}

/// A job (B.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// The id.
    pub job_id: JobId,
    /// The job document: JSON text of an object, at most [`MAX_JOB_DOCUMENT_CHARS`].
    pub document: String,
    /// Free text.
    pub description: Option<String>,
    /// Target thing and thing-group names (or ARNs) as given; resolving groups is the caller's.
    pub targets: Vec<String>,
    /// SNAPSHOT or CONTINUOUS.
    pub target_selection: TargetSelection,
    /// The status.
    pub status: JobStatus,
    /// Whether the cancel was forced.
    pub force_canceled: bool,
    /// The cancel comment.
    pub comment: Option<String>,
    /// The cancel reason code.
    pub reason_code: Option<String>,
    /// Creation time (Unix seconds).
    pub created_at: u64,
    /// Last change (Unix seconds).
    pub last_updated_at: u64,
    /// When it became COMPLETED or CANCELED (Unix seconds).
    pub completed_at: Option<u64>,
    /// Rollout pacing.
    pub rollout: Option<RolloutConfig>,
    /// Abort criteria.
    pub abort: Option<AbortConfig>,
    /// Execution timeout.
    pub timeout: Option<TimeoutConfig>,
    /// Retry criteria.
    pub retry: Option<RetryConfig>,
    /// The job template the job was created from (CreateJob `jobTemplateArn`), echoed by
    /// DescribeJob.
    #[serde(default)]
    pub job_template_arn: Option<String>,
    /// CreateJob's `presignedUrlConfig` as given (raw JSON, echoed by DescribeJob; no
    /// presigned-URL substitution is done).
    #[serde(default)]
    pub presigned_url_config: Option<serde_json::Value>,
    /// `schedulingConfig`: when the rollout starts and ends, and what its end does.
    #[serde(default)]
    pub scheduling: Option<JobScheduling>,
}

/// `schedulingConfig` as CreateJob receives it (times `YYYY-MM-DDTHH:MM`, UTC). Maintenance
/// windows are not supported (they need AWS's cron dialect evaluated exactly): a non-empty
/// list is refused.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobScheduling {
    /// When the rollout starts (at least 30 minutes, at most a year, from creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When the rollout ends (at least 30 minutes after the start, at most two years).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// `STOP_ROLLOUT` (default), `CANCEL` or `FORCE_CANCEL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_behavior: Option<String>,
    /// `maintenanceWindows`: refused unless empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintenance_windows: Vec<serde_json::Value>,
}

impl JobScheduling {
    /// The stored times and end behavior, read without the creation-time range checks (for a
    /// restart, when the start may be past); unreadable parts are `None`.
    pub fn stored(&self) -> crate::rollout::SchedulingConfig {
        use crate::rollout::{EndBehavior, SchedulingConfig, parse_schedule_time};
        let time = |t: &Option<String>| t.as_deref().and_then(|t| parse_schedule_time(t).ok());
        SchedulingConfig {
            start: time(&self.start_time),
            end: time(&self.end_time),
            end_behavior: self
                .end_behavior
                .as_deref()
                .and_then(EndBehavior::from_wire),
        }
    }

    /// The times as unix seconds and the end behavior, checked against creation time `now`
    /// (§B.4: start in [now + 30 min, now + 1 year], end in [now + 30 min, now + 2 years] and
    /// [start + 30 min, start + 2 years]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] naming the rule.
    pub fn resolve(&self, now: u64) -> Result<crate::rollout::SchedulingConfig, Error> {
        use crate::rollout::{EndBehavior, SchedulingConfig, parse_schedule_time};
        if !self.maintenance_windows.is_empty() {
            return Err(Error::request(
                "schedulingConfig.maintenanceWindows is not supported by thingkit",
            ));
        }
        let time = |t: &Option<String>| {
            t.as_deref()
                .map(parse_schedule_time)
                .transpose()
                .map_err(|e| Error::request(e.to_string()))
        };
        let end_behavior = match self.end_behavior.as_deref() {
            None => None,
            Some(b) => Some(EndBehavior::from_wire(b).ok_or_else(|| {
                Error::request(format!(
                    "schedulingConfig.endBehavior {b:?} is not STOP_ROLLOUT, CANCEL or FORCE_CANCEL"
                ))
            })?),
        };
        let config = SchedulingConfig {
            start: time(&self.start_time)?,
            end: time(&self.end_time)?,
            end_behavior,
        };
        config
            .validate(now)
            .map_err(|e| Error::request(e.to_string()))?;
        Ok(config)
    }
}

impl Job {
    /// A new IN_PROGRESS snapshot job created at `now`, without configurations. The document is
    /// checked by [`Job::validate`] when the job is created through [`crate::Jobs`].
    pub fn new(job_id: JobId, document: impl Into<String>, targets: Vec<String>, now: u64) -> Self {
        Job {
            job_id,
            document: document.into(),
            description: None,
            targets,
            target_selection: TargetSelection::Snapshot,
            status: JobStatus::InProgress,
            force_canceled: false,
            comment: None,
            reason_code: None,
            created_at: now,
            last_updated_at: now,
            completed_at: None,
            rollout: None,
            abort: None,
            timeout: None,
            retry: None,
            job_template_arn: None,
            presigned_url_config: None,
            scheduling: None,
        }
    }

    /// Checks everything CreateJob checks: the document (length before parsing, then strict JSON
    /// object, duplicate keys refused), the description, at least one target, and every
    /// configuration's ranges.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] naming the field and the rule.
    pub fn validate(&self) -> Result<(), Error> {
        check_document(&self.document)?;
        if let Some(d) = &self.description
            && d.chars().count() > MAX_DESCRIPTION_CHARS
        {
            return Err(Error::request(format!(
                "description is longer than {MAX_DESCRIPTION_CHARS} characters"
            )));
        }
        if self.targets.is_empty() {
            return Err(Error::request("targets must have at least one member"));
        }
        crate::service::plan_of(self).map(drop)
    }
}

/// Checks a job document: at most [`MAX_JOB_DOCUMENT_CHARS`] characters (counted before
/// parsing), strict JSON, an object, no duplicate keys.
///
/// # Errors
///
/// [`Error::InvalidRequest`] saying which rule failed.
pub fn check_document(document: &str) -> Result<(), Error> {
    // A byte count bounds the char count from above: only count chars when needed.
    if document.len() > MAX_JOB_DOCUMENT_CHARS && document.chars().count() > MAX_JOB_DOCUMENT_CHARS
    {
        return Err(Error::request(format!(
            "document is longer than {MAX_JOB_DOCUMENT_CHARS} characters"
        )));
    }
    let parsed = thingkit_json::parse(document, thingkit_json::Limits::default())
        .map_err(|e| Error::request(format!("document is not valid JSON: {e}")))?;
    if let Some(d) = parsed.duplicates.first() {
        return Err(Error::request(format!(
            "document has duplicate key \"{}\" at byte {}",
            d.key, d.offset
        )));
    }
    if !matches!(parsed.root.kind, thingkit_json::Kind::Object(_)) {
        return Err(Error::request("document must be a JSON object"));
    }
    Ok(())
}

/// A `rollout` configuration error as the InvalidRequest AWS answers with.
fn invalid(e: crate::rollout::ConfigError) -> Error {
    Error::request(e.to_string())
}

// The wire shapes below are checked by converting them to the validated types of
// `crate::rollout`: one set of rules (J-11 … J-18) for the API, the engine and the pacer.

impl RolloutConfig {
    /// The validated rollout: `maximumPerMinute` 1–1000 (default 1000), and for an
    /// exponential rate `baseRatePerMinute` 1–1000, `incrementFactor` 1.1–5 with one decimal,
    /// at least one rate-increase criterion ≥ 1 (both given: the larger step count wins, F-J11).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] naming the field and the rule.
    pub fn to_rollout(&self) -> Result<crate::rollout::RolloutConfig, Error> {
        use crate::rollout;
        let max = self.maximum_per_minute;
        match &self.exponential_rate {
            None => rollout::RolloutConfig::constant(max.unwrap_or(rollout::MAX_RATE_PER_MINUTE))
                .map_err(invalid),
            Some(e) => {
                let criteria = rollout::RateIncreaseCriteria {
                    number_of_notified_things: e.rate_increase_criteria.number_of_notified_things,
                    number_of_succeeded_things: e.rate_increase_criteria.number_of_succeeded_things,
                };
                let rate = rollout::ExponentialRate::with_factor(
                    e.base_rate_per_minute,
                    e.increment_factor,
                    criteria,
                )
                .map_err(invalid)?;
                rollout::RolloutConfig::exponential(rate, max).map_err(invalid)
            }
        }
    }

    /// Checks the ranges of [`RolloutConfig::to_rollout`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] naming the field.
    pub fn validate(&self) -> Result<(), Error> {
        self.to_rollout().map(drop)
    }
}

impl AbortConfig {
    /// The validated abort criteria (J-13): at least one; `thresholdPercentage` 0–100 with at
    /// most two decimals; `minNumberOfExecutedThings` ≥ 1.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] naming the field.
    pub fn to_abort(&self) -> Result<crate::rollout::AbortConfig, Error> {
        use crate::rollout;
        let mut criteria = Vec::with_capacity(self.criteria_list.len());
        for c in &self.criteria_list {
            let ty = match c.failure_type {
                FailureType::Failed => rollout::AbortFailureType::Failed,
                FailureType::Rejected => rollout::AbortFailureType::Rejected,
                FailureType::TimedOut => rollout::AbortFailureType::TimedOut,
                FailureType::All => rollout::AbortFailureType::All,
            };
            let threshold =
                rollout::Percentage::from_f64(c.threshold_percentage).map_err(invalid)?;
            criteria.push(
                rollout::AbortCriterion::new(ty, threshold, c.min_number_of_executed_things)
                    .map_err(invalid)?,
            );
        }
        rollout::AbortConfig::new(criteria).map_err(invalid)
    }

    /// Checks the rules of [`AbortConfig::to_abort`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] naming the field.
    pub fn validate(&self) -> Result<(), Error> {
        self.to_abort().map(drop)
    }
}

impl TimeoutConfig {
    /// The validated timeout (J-15): 1–10080 minutes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`].
    pub fn to_timeout(&self) -> Result<crate::rollout::TimeoutConfig, Error> {
        crate::rollout::TimeoutConfig::new(Some(self.in_progress_timeout_in_minutes))
            .map_err(invalid)
    }

    /// Checks the range of [`TimeoutConfig::to_timeout`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`].
    pub fn validate(&self) -> Result<(), Error> {
        self.to_timeout().map(drop)
    }
}

impl RetryConfig {
    /// The validated retry criteria (J-18) for a job whose in-progress timeout is `timeout`:
    /// 1–2 criteria, no REJECTED, 0–10 each, at most 10 combined, no failure type twice, and
    /// TIMED_OUT retries only with an in-progress timeout.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`].
    pub fn to_retry(
        &self,
        timeout: &crate::rollout::TimeoutConfig,
    ) -> Result<crate::rollout::RetryConfig, Error> {
        use crate::rollout;
        let mut criteria = Vec::with_capacity(self.criteria_list.len());
        for c in &self.criteria_list {
            let failure_type = match c.failure_type {
                FailureType::Failed => rollout::RetryFailureType::Failed,
                FailureType::TimedOut => rollout::RetryFailureType::TimedOut,
                FailureType::All => rollout::RetryFailureType::All,
                FailureType::Rejected => {
                    return Err(Error::request("REJECTED executions are never retried"));
                }
            };
            criteria.push(rollout::RetryCriterion {
                failure_type,
                number_of_retries: c.number_of_retries,
            });
        }
        rollout::RetryConfig::new(criteria, timeout).map_err(invalid)
    }

    /// Checks the rules of [`RetryConfig::to_retry`] that hold whatever the job's timeout
    /// ([`Job::validate`] checks the TIMED_OUT rule against the job's own timeout).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`].
    pub fn validate(&self) -> Result<(), Error> {
        let any_timeout = crate::rollout::TimeoutConfig::new(Some(1)).map_err(invalid)?;
        self.to_retry(&any_timeout).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_id_accepts_aws_pattern_and_rejects_others() {
        assert!(JobId::new("job-1_A").is_ok());
        assert!(JobId::new(&"a".repeat(64)).is_ok());
        assert!(JobId::new(&"a".repeat(65)).is_err());
        assert!(JobId::new("").is_err());
        assert!(JobId::new("a/b").is_err());
        assert!(JobId::new("$next").is_err());
    }

    #[test]
    fn document_limit_is_checked_before_parsing() {
        let long = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_JOB_DOCUMENT_CHARS));
        let e = check_document(&long).unwrap_err();
        assert!(e.to_string().contains("longer"), "{e}");
        // Multi-byte characters count once.
        let wide = format!("{{\"a\":\"{}\"}}", "é".repeat(20_000));
        assert!(check_document(&wide).is_ok());
    }

    #[test]
    fn document_must_be_a_strict_json_object() {
        assert!(check_document("{\"a\":1,\"a\":2}").is_err());
        assert!(check_document("[1]").is_err());
        assert!(check_document("{\"a\":1,}").is_err());
        assert!(check_document("{\"op\":\"reboot\"}").is_ok());
    }

    #[test]
    fn configs_enforce_aws_ranges() {
        let ok = RolloutConfig {
            maximum_per_minute: Some(1000),
            exponential_rate: Some(ExponentialRate {
                base_rate_per_minute: 50,
                increment_factor: 2.0,
                rate_increase_criteria: RateIncreaseCriteria {
                    number_of_notified_things: Some(1000),
                    number_of_succeeded_things: None,
                },
            }),
        };
        assert!(ok.validate().is_ok());
        let mut bad = ok.clone();
        bad.maximum_per_minute = Some(1001);
        assert!(bad.validate().is_err());
        // Both criteria: accepted, the larger step count wins (F-J11), as the pacer reads it.
        let mut both = ok.clone();
        if let Some(e) = both.exponential_rate.as_mut() {
            e.rate_increase_criteria.number_of_succeeded_things = Some(10);
        }
        assert!(both.validate().is_ok());
        let mut none = ok.clone();
        if let Some(e) = none.exponential_rate.as_mut() {
            e.rate_increase_criteria.number_of_notified_things = None;
        }
        assert!(none.validate().is_err());
        // TIMED_OUT retries need the job's in-progress timeout (J-18).
        let mut job = Job::new(JobId::new("j").expect("id"), "{}", vec!["t".into()], 0);
        job.retry = Some(RetryConfig {
            criteria_list: vec![RetryCriteria {
                failure_type: FailureType::TimedOut,
                number_of_retries: 1,
            }],
        });
        assert!(job.validate().is_err());
        job.timeout = Some(TimeoutConfig {
            in_progress_timeout_in_minutes: 5,
        });
        assert!(job.validate().is_ok());
        let mut bad = ok.clone();
        if let Some(e) = bad.exponential_rate.as_mut() {
            e.increment_factor = 1.15;
        }
        assert!(bad.validate().is_err());
        assert!(
            TimeoutConfig {
                in_progress_timeout_in_minutes: 10_081
            }
            .validate()
            .is_err()
        );
        assert!(
            TimeoutConfig {
                in_progress_timeout_in_minutes: 1
            }
            .validate()
            .is_ok()
        );
        let retry = |n: &[(FailureType, u32)]| RetryConfig {
            criteria_list: n
                .iter()
                .map(|&(failure_type, number_of_retries)| RetryCriteria {
                    failure_type,
                    number_of_retries,
                })
                .collect(),
        };
        assert!(
            retry(&[(FailureType::Failed, 5), (FailureType::TimedOut, 5)])
                .validate()
                .is_ok()
        );
        assert!(
            retry(&[(FailureType::Failed, 6), (FailureType::TimedOut, 5)])
                .validate()
                .is_err()
        );
        assert!(retry(&[(FailureType::Rejected, 1)]).validate().is_err());
        let abort = |p: f64, min: u32| AbortConfig {
            criteria_list: vec![AbortCriteria {
                failure_type: FailureType::Failed,
                action: AbortAction::Cancel,
                threshold_percentage: p,
                min_number_of_executed_things: min,
            }],
        };
        assert!(abort(20.25, 100).validate().is_ok());
        assert!(abort(20.255, 100).validate().is_err());
        assert!(abort(101.0, 100).validate().is_err());
        assert!(abort(20.0, 0).validate().is_err());
    }
}
