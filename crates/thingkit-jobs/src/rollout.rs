//! Rollout, abort, timeout, retry and schedule arithmetic (spec §B.4, rules J-11 … J-19).
//!
//! Everything here is a pure function over plain inputs: configuration structs validated once at
//! construction (AWS's documented ranges) and counts supplied by the caller. Nothing reads a clock:
//! every instant is a parameter in **unix seconds** (`u64`), the unit the Jobs guide uses for
//! timestamps (reading F-J1).
//!
//! Decisions taken on the flagged readings of spec §F:
//! - **F-J10** retries are budgeted *per failure type*: a `FAILED` or `TIMED_OUT` criterion counts
//!   only retries of its own type; an `ALL` criterion counts the retries of the types no specific
//!   criterion covers. The combined-10 rule is enforced (the sum of `numberOfRetries` ≤ 10).
//! - **F-J11** when both rate-increase criteria are set, the step count is the *larger* of the two
//!   (`max(notified / n, succeeded / s)`). Fractional factors are applied exactly and the result is
//!   rounded down once: `floor(base × factor^k)`, never rounded per step. `maximumPerMinute` is
//!   1–1000 (the guide's range) and defaults to 1000.
//! - **F-J12** `minNumberOfExecutedThings` counts *completed* executions (the guide), and completed
//!   means SUCCEEDED + FAILED + REJECTED + TIMED_OUT; CANCELED and REMOVED executions are not counted.
//! - **F-J13** "one year" and "two years" ahead are calendar years (same month, day and time; a
//!   29 February start maps to 28 February in a common year).
//!
//! ```
//! use thingkit_jobs::rollout::*;
//!
//! // The guide's exponential rollout: base 50, ×2 per 100 successes, at most 1000 a minute.
//! let criteria = RateIncreaseCriteria { number_of_succeeded_things: Some(100), ..Default::default() };
//! let rollout = RolloutConfig::exponential(ExponentialRate::with_factor(50, 2.0, criteria)?, Some(1000))?;
//! assert_eq!(rate_per_minute(&rollout, 0, 250), 200);
//!
//! // The guide's abort criterion: 20% FAILED once 100 executions completed.
//! let abort = AbortConfig::new(vec![AbortCriterion::new(
//!     AbortFailureType::Failed,
//!     Percentage::from_f64(20.0)?,
//!     100,
//! )?])?;
//! let counts = OutcomeCounts { succeeded: 80, failed: 20, ..Default::default() };
//! assert_eq!(should_abort(&abort, &counts), Some(0));
//! # Ok::<(), ConfigError>(())
//! ```
//!
//! Not implemented: maintenance windows (cron expressions). Doing them exactly needs an AWS cron
//! evaluator; rather than approximate one, they are left out.

use thiserror::Error;

/// Unix time in seconds, the unit of every instant in this module.
pub type UnixSeconds = u64;

/// A rollout, abort, timeout, retry or schedule configuration outside AWS's documented ranges.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A numeric field is outside its documented range (J-11 … J-18).
    #[error("{field} is {value}, outside {min}..={max} ({rule})")]
    OutOfRange {
        /// The AWS field name.
        field: &'static str,
        /// The rejected value (fractions are given in tenths or hundredths as the field says).
        value: i64,
        /// The smallest accepted value.
        min: i64,
        /// The largest accepted value.
        max: i64,
        /// The spec rule that sets the range.
        rule: &'static str,
    },
    /// A decimal has more fraction digits than the field allows.
    #[error("{field} is {value}, which has more than {digits} decimal place(s)")]
    TooPrecise {
        /// The AWS field name.
        field: &'static str,
        /// The rejected value.
        value: f64,
        /// Decimal places accepted.
        digits: u8,
    },
    /// An exponential rate needs at least one rate-increase criterion (J-12).
    #[error("rateIncreaseCriteria needs numberOfNotifiedThings or numberOfSucceededThings (J-12)")]
    NoRateIncreaseCriterion,
    /// A criteria list has the wrong number of entries.
    #[error("{field} has {len} entries, expected {min}..={max}")]
    ListLength {
        /// The AWS field name.
        field: &'static str,
        /// The number of entries given.
        len: usize,
        /// The fewest entries accepted.
        min: usize,
        /// The most entries accepted.
        max: usize,
    },
    /// Two retry criteria name the same failure type (J-18).
    #[error("retry criteria name failureType {0:?} twice (J-18)")]
    DuplicateRetryType(RetryFailureType),
    /// The retry criteria together allow more than 10 retries (J-18).
    #[error("retry criteria allow {0} retries combined; at most 10 (J-18)")]
    TooManyRetries(u32),
    /// TIMED_OUT retries are configured but the job has no in-progress timeout (J-18).
    #[error("TIMED_OUT retries need timeoutConfig.inProgressTimeoutInMinutes (J-18)")]
    TimedOutRetryWithoutTimeout,
    /// A scheduling instant violates the SchedulingConfig rules (§B.4 Scheduling).
    #[error("schedule: {0}")]
    Schedule(&'static str),
    /// A `YYYY-MM-DDTHH:MM` schedule time could not be read.
    #[error("schedule time {0:?} is not YYYY-MM-DDTHH:MM")]
    ScheduleFormat(String),
}

fn check_range(
    field: &'static str,
    value: i64,
    min: i64,
    max: i64,
    rule: &'static str,
) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            field,
            value,
            min,
            max,
            rule,
        })
    }
}

/// Reads a decimal with at most `digits` fraction digits as an integer count of `10^-digits` units.
fn fixed_point(field: &'static str, value: f64, digits: u8) -> Result<i64, ConfigError> {
    let scale = 10f64.powi(i32::from(digits));
    let scaled = value * scale;
    if !scaled.is_finite() || scaled.abs() > 1e12 {
        return Err(ConfigError::TooPrecise {
            field,
            value,
            digits,
        });
    }
    let rounded = scaled.round();
    if (scaled - rounded).abs() > 1e-6 {
        return Err(ConfigError::TooPrecise {
            field,
            value,
            digits,
        });
    }
    // In range by the check above, so the cast is exact.
    Ok(rounded as i64)
}

// ---------------------------------------------------------------------------------------------
// J-11 / J-12 rollout rate
// ---------------------------------------------------------------------------------------------

/// `exponentialRate.rateIncreaseCriteria`: the thresholds that step the rate up (J-12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateIncreaseCriteria {
    /// `numberOfNotifiedThings` (≥ 1): step up per this many notified things.
    pub number_of_notified_things: Option<u32>,
    /// `numberOfSucceededThings` (≥ 1): step up per this many succeeded things.
    pub number_of_succeeded_things: Option<u32>,
}

/// `exponentialRate` (J-12): validated base rate, factor (in tenths) and criteria.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExponentialRate {
    base_rate_per_minute: u32,
    increment_factor_tenths: u32,
    criteria: RateIncreaseCriteria,
}

impl ExponentialRate {
    /// Validates `baseRatePerMinute` 1–1000, `incrementFactor` 1.1–5.0 given in tenths (11–50) and
    /// at least one criterion, each ≥ 1.
    pub fn new(
        base_rate_per_minute: u32,
        increment_factor_tenths: u32,
        criteria: RateIncreaseCriteria,
    ) -> Result<Self, ConfigError> {
        check_range(
            "baseRatePerMinute",
            i64::from(base_rate_per_minute),
            1,
            1000,
            "J-12",
        )?;
        check_range(
            "incrementFactor (tenths)",
            i64::from(increment_factor_tenths),
            11,
            50,
            "J-12",
        )?;
        if criteria.number_of_notified_things.is_none()
            && criteria.number_of_succeeded_things.is_none()
        {
            return Err(ConfigError::NoRateIncreaseCriterion);
        }
        for (field, value) in [
            ("numberOfNotifiedThings", criteria.number_of_notified_things),
            (
                "numberOfSucceededThings",
                criteria.number_of_succeeded_things,
            ),
        ] {
            if let Some(v) = value {
                check_range(field, i64::from(v), 1, i64::from(u32::MAX), "J-12")?;
            }
        }
        Ok(Self {
            base_rate_per_minute,
            increment_factor_tenths,
            criteria,
        })
    }

    /// As [`ExponentialRate::new`] with `incrementFactor` as the JSON number AWS sends (one decimal).
    pub fn with_factor(
        base_rate_per_minute: u32,
        increment_factor: f64,
        criteria: RateIncreaseCriteria,
    ) -> Result<Self, ConfigError> {
        let tenths = fixed_point("incrementFactor", increment_factor, 1)?;
        let tenths = u32::try_from(tenths).map_err(|_| ConfigError::OutOfRange {
            field: "incrementFactor (tenths)",
            value: tenths,
            min: 11,
            max: 50,
            rule: "J-12",
        })?;
        Self::new(base_rate_per_minute, tenths, criteria)
    }

    /// `baseRatePerMinute`.
    pub fn base_rate_per_minute(&self) -> u32 {
        self.base_rate_per_minute
    }

    /// `incrementFactor` in tenths (20 is a factor of 2.0).
    pub fn increment_factor_tenths(&self) -> u32 {
        self.increment_factor_tenths
    }

    /// The rate-increase criteria.
    pub fn criteria(&self) -> RateIncreaseCriteria {
        self.criteria
    }

    /// The number of rate increases earned: the larger of the two criteria's step counts (F-J11).
    pub fn step(&self, notified: u64, succeeded: u64) -> u64 {
        let by_notified = self
            .criteria
            .number_of_notified_things
            .map_or(0, |n| notified / u64::from(n));
        let by_succeeded = self
            .criteria
            .number_of_succeeded_things
            .map_or(0, |n| succeeded / u64::from(n));
        by_notified.max(by_succeeded)
    }
}

/// `jobExecutionsRolloutConfig` (J-11, J-12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutConfig {
    maximum_per_minute: u32,
    exponential: Option<ExponentialRate>,
}

/// AWS's default and largest `maximumPerMinute` (J-11).
pub const MAX_RATE_PER_MINUTE: u32 = 1000;

impl Default for RolloutConfig {
    /// A constant 1000 per minute, AWS's default.
    fn default() -> Self {
        Self {
            maximum_per_minute: MAX_RATE_PER_MINUTE,
            exponential: None,
        }
    }
}

impl RolloutConfig {
    /// A constant rate: `maximumPerMinute` 1–1000 (J-11).
    pub fn constant(maximum_per_minute: u32) -> Result<Self, ConfigError> {
        check_range(
            "maximumPerMinute",
            i64::from(maximum_per_minute),
            1,
            i64::from(MAX_RATE_PER_MINUTE),
            "J-11",
        )?;
        Ok(Self {
            maximum_per_minute,
            exponential: None,
        })
    }

    /// An exponential rate capped by `maximumPerMinute` (1–1000; `None` means the default 1000).
    pub fn exponential(
        rate: ExponentialRate,
        maximum_per_minute: Option<u32>,
    ) -> Result<Self, ConfigError> {
        let mut config = Self::constant(maximum_per_minute.unwrap_or(MAX_RATE_PER_MINUTE))?;
        config.exponential = Some(rate);
        Ok(config)
    }

    /// `maximumPerMinute`.
    pub fn maximum_per_minute(&self) -> u32 {
        self.maximum_per_minute
    }

    /// The exponential rate, if any.
    pub fn exponential_rate(&self) -> Option<&ExponentialRate> {
        self.exponential.as_ref()
    }

    /// The rate after `step` increases: `min(max, floor(base × factor^step))`, exact.
    pub fn rate_at_step(&self, step: u64) -> u32 {
        let Some(exp) = &self.exponential else {
            return self.maximum_per_minute;
        };
        let max = self.maximum_per_minute;
        // base × f^k / 10^k kept as exact decimal digits (little-endian); dividing by 10^k is
        // dropping k digits. The factor is ≥ 1.1, so the loop ends within ~75 steps for max ≤ 1000.
        let mut digits: Vec<u8> = Vec::new();
        let mut n = exp.base_rate_per_minute;
        while n > 0 {
            digits.push((n % 10) as u8);
            n /= 10;
        }
        let mut k: u64 = 0;
        loop {
            let value = integer_part(&digits, k, max);
            if value >= max {
                return max;
            }
            if k == step {
                return value;
            }
            let mut carry = 0u32;
            for d in digits.iter_mut() {
                let p = u32::from(*d) * exp.increment_factor_tenths + carry;
                *d = (p % 10) as u8;
                carry = p / 10;
            }
            while carry > 0 {
                digits.push((carry % 10) as u8);
                carry /= 10;
            }
            k += 1;
        }
    }
}

/// `floor(digits / 10^drop)`, saturating at `cap`.
fn integer_part(digits: &[u8], drop: u64, cap: u32) -> u32 {
    let drop = usize::try_from(drop).unwrap_or(usize::MAX);
    let mut value: u32 = 0;
    for &d in digits.iter().skip(drop).rev() {
        value = value.saturating_mul(10).saturating_add(u32::from(d));
        if value >= cap {
            return cap;
        }
    }
    value
}

/// Notifications allowed per minute after `notified` things were notified and `succeeded` succeeded
/// (J-11, J-12): `min(max, base × factor^floor(count / threshold))`, step count per F-J11.
pub fn rate_per_minute(config: &RolloutConfig, notified: u64, succeeded: u64) -> u32 {
    let step = config
        .exponential
        .as_ref()
        .map_or(0, |e| e.step(notified, succeeded));
    config.rate_at_step(step)
}

// ---------------------------------------------------------------------------------------------
// J-13 abort
// ---------------------------------------------------------------------------------------------

/// `abortCriteriaList[].failureType` (J-13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbortFailureType {
    /// `FAILED`.
    Failed,
    /// `REJECTED`.
    Rejected,
    /// `TIMED_OUT`.
    TimedOut,
    /// `ALL`: FAILED + REJECTED + TIMED_OUT.
    All,
}

impl AbortFailureType {
    /// Reads the wire name (`FAILED`, `REJECTED`, `TIMED_OUT`, `ALL`).
    pub fn from_wire(name: &str) -> Option<Self> {
        match name {
            "FAILED" => Some(Self::Failed),
            "REJECTED" => Some(Self::Rejected),
            "TIMED_OUT" => Some(Self::TimedOut),
            "ALL" => Some(Self::All),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_wire(self) -> &'static str {
        match self {
            Self::Failed => "FAILED",
            Self::Rejected => "REJECTED",
            Self::TimedOut => "TIMED_OUT",
            Self::All => "ALL",
        }
    }
}

/// A percentage with two decimals, held as integer hundredths (0–10000), compared exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percentage(u32);

impl Percentage {
    /// From hundredths of a percent: 2000 is 20.00 %. At most 10000 (J-13).
    pub fn from_hundredths(hundredths: u32) -> Result<Self, ConfigError> {
        check_range(
            "thresholdPercentage (hundredths)",
            i64::from(hundredths),
            0,
            10_000,
            "J-13",
        )?;
        Ok(Self(hundredths))
    }

    /// From the JSON number AWS sends; more than two decimals is an error.
    pub fn from_f64(percent: f64) -> Result<Self, ConfigError> {
        let hundredths = fixed_point("thresholdPercentage", percent, 2)?;
        check_range(
            "thresholdPercentage (hundredths)",
            hundredths,
            0,
            10_000,
            "J-13",
        )?;
        // 0..=10000 by the check above.
        Ok(Self(hundredths as u32))
    }

    /// The value in hundredths of a percent.
    pub fn hundredths(self) -> u32 {
        self.0
    }
}

/// One entry of `abortConfig.criteriaList` (the action is always `CANCEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortCriterion {
    failure_type: AbortFailureType,
    threshold: Percentage,
    min_number_of_executed_things: u32,
}

impl AbortCriterion {
    /// Validates `minNumberOfExecutedThings` ≥ 1 (J-13).
    pub fn new(
        failure_type: AbortFailureType,
        threshold: Percentage,
        min_number_of_executed_things: u32,
    ) -> Result<Self, ConfigError> {
        check_range(
            "minNumberOfExecutedThings",
            i64::from(min_number_of_executed_things),
            1,
            i64::from(u32::MAX),
            "J-13",
        )?;
        Ok(Self {
            failure_type,
            threshold,
            min_number_of_executed_things,
        })
    }

    /// `failureType`.
    pub fn failure_type(&self) -> AbortFailureType {
        self.failure_type
    }

    /// `thresholdPercentage`.
    pub fn threshold(&self) -> Percentage {
        self.threshold
    }

    /// `minNumberOfExecutedThings`.
    pub fn min_number_of_executed_things(&self) -> u32 {
        self.min_number_of_executed_things
    }

    /// Whether this criterion fires on `counts`:
    /// `completed >= min && failed_of_type × 100 >= threshold × completed`.
    pub fn fires(&self, counts: &OutcomeCounts) -> bool {
        let completed = counts.completed();
        if completed < u64::from(self.min_number_of_executed_things) {
            return false;
        }
        let failed = match self.failure_type {
            AbortFailureType::Failed => counts.failed,
            AbortFailureType::Rejected => counts.rejected,
            AbortFailureType::TimedOut => counts.timed_out,
            AbortFailureType::All => counts.failed + counts.rejected + counts.timed_out,
        };
        // Threshold in hundredths: failed × 100 × 100 >= hundredths × completed.
        u128::from(failed) * 10_000 >= u128::from(self.threshold.0) * u128::from(completed)
    }
}

/// `abortConfig.criteriaList`: at least one criterion, checked in order (J-13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbortConfig {
    criteria: Vec<AbortCriterion>,
}

impl AbortConfig {
    /// Validates that the list is not empty.
    pub fn new(criteria: Vec<AbortCriterion>) -> Result<Self, ConfigError> {
        if criteria.is_empty() {
            return Err(ConfigError::ListLength {
                field: "abortConfig.criteriaList",
                len: 0,
                min: 1,
                max: usize::MAX,
            });
        }
        Ok(Self { criteria })
    }

    /// The criteria, in order.
    pub fn criteria(&self) -> &[AbortCriterion] {
        &self.criteria
    }
}

/// Terminal outcomes of a job's executions so far (the inputs of J-12 and J-13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutcomeCounts {
    /// SUCCEEDED executions.
    pub succeeded: u64,
    /// FAILED executions.
    pub failed: u64,
    /// REJECTED executions.
    pub rejected: u64,
    /// TIMED_OUT executions.
    pub timed_out: u64,
}

impl OutcomeCounts {
    /// Completed executions: SUCCEEDED + FAILED + REJECTED + TIMED_OUT (F-J12).
    pub fn completed(&self) -> u64 {
        self.succeeded + self.failed + self.rejected + self.timed_out
    }
}

/// The index of the first criterion (in list order) that fires on `counts`, if any (J-13).
pub fn should_abort(config: &AbortConfig, counts: &OutcomeCounts) -> Option<usize> {
    config.criteria.iter().position(|c| c.fires(counts))
}

// ---------------------------------------------------------------------------------------------
// J-15 … J-17 timeouts
// ---------------------------------------------------------------------------------------------

/// Largest `inProgressTimeoutInMinutes` and `stepTimeoutInMinutes` (7 days).
pub const MAX_TIMEOUT_MINUTES: u32 = 10_080;

/// `timeoutConfig` (J-15): the in-progress timer, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeoutConfig {
    in_progress_timeout_minutes: Option<u32>,
}

impl TimeoutConfig {
    /// Validates `inProgressTimeoutInMinutes` 1–10080; `None` means no in-progress timer.
    pub fn new(in_progress_timeout_minutes: Option<u32>) -> Result<Self, ConfigError> {
        if let Some(m) = in_progress_timeout_minutes {
            check_range(
                "inProgressTimeoutInMinutes",
                i64::from(m),
                1,
                i64::from(MAX_TIMEOUT_MINUTES),
                "J-15",
            )?;
        }
        Ok(Self {
            in_progress_timeout_minutes,
        })
    }

    /// `inProgressTimeoutInMinutes`.
    pub fn in_progress_timeout_minutes(&self) -> Option<u32> {
        self.in_progress_timeout_minutes
    }
}

/// `stepTimeoutInMinutes` on an update (J-17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StepTimeout {
    /// Not given: the current step timer stays.
    #[default]
    Keep,
    /// `-1`: discard the current step timer.
    Discard,
    /// `1..=10080`: a new step timer replacing the current one.
    Minutes(u32),
}

impl StepTimeout {
    /// Reads the wire value: `None` keeps, `-1` discards, 1–10080 sets; anything else is an error.
    pub fn from_wire(value: Option<i64>) -> Result<Self, ConfigError> {
        match value {
            None => Ok(Self::Keep),
            Some(-1) => Ok(Self::Discard),
            Some(m) => {
                check_range(
                    "stepTimeoutInMinutes",
                    m,
                    1,
                    i64::from(MAX_TIMEOUT_MINUTES),
                    "J-17",
                )?;
                // 1..=10080 by the check above.
                Ok(Self::Minutes(m as u32))
            }
        }
    }
}

/// The timers of one IN_PROGRESS execution (J-15 … J-17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutionTimer {
    in_progress_deadline: Option<UnixSeconds>,
    step_deadline: Option<UnixSeconds>,
}

impl ExecutionTimer {
    /// Starts the timers when the execution becomes IN_PROGRESS at `now` (J-15): the in-progress
    /// timer from the job's config (fixed from now on), and a step timer if `step` sets one.
    pub fn start(config: &TimeoutConfig, now: UnixSeconds, step: StepTimeout) -> Self {
        let mut timer = Self {
            in_progress_deadline: config
                .in_progress_timeout_minutes
                .map(|m| now.saturating_add(u64::from(m) * 60)),
            step_deadline: None,
        };
        timer.update_step(now, step);
        timer
    }

    /// The timers of an execution already IN_PROGRESS, from its stored in-progress bound and
    /// the step deadline it runs (`None` when no step timer runs or it equals the bound).
    pub fn resume(
        in_progress_deadline: Option<UnixSeconds>,
        step_deadline: Option<UnixSeconds>,
    ) -> Self {
        Self {
            in_progress_deadline,
            step_deadline,
        }
    }

    /// Applies `stepTimeoutInMinutes` from an update at `now` (J-17): a new step timer replaces the
    /// old one, `Discard` drops it, and no step timer runs past the in-progress bound.
    pub fn update_step(&mut self, now: UnixSeconds, step: StepTimeout) {
        match step {
            StepTimeout::Keep => {}
            StepTimeout::Discard => self.step_deadline = None,
            StepTimeout::Minutes(m) => {
                let deadline = now.saturating_add(u64::from(m) * 60);
                self.step_deadline = Some(match self.in_progress_deadline {
                    Some(bound) => deadline.min(bound),
                    None => deadline,
                });
            }
        }
    }

    /// The absolute in-progress bound, if the job has one.
    pub fn in_progress_deadline(&self) -> Option<UnixSeconds> {
        self.in_progress_deadline
    }

    /// The step timer's deadline, if one is running.
    pub fn step_deadline(&self) -> Option<UnixSeconds> {
        self.step_deadline
    }

    /// The instant the execution times out: the earlier of the two timers, if any runs.
    pub fn deadline(&self) -> Option<UnixSeconds> {
        match (self.in_progress_deadline, self.step_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the execution has timed out at `now` (J-16).
    pub fn is_expired(&self, now: UnixSeconds) -> bool {
        self.deadline().is_some_and(|d| now >= d)
    }

    /// `approximateSecondsBeforeTimedOut` at `now` (J-16); 0 once due, `None` without timers.
    pub fn approximate_seconds_before_timed_out(&self, now: UnixSeconds) -> Option<u64> {
        self.deadline().map(|d| d.saturating_sub(now))
    }
}

// ---------------------------------------------------------------------------------------------
// J-18 / J-19 retries
// ---------------------------------------------------------------------------------------------

/// `jobExecutionsRetryConfig.criteriaList[].failureType` (J-18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryFailureType {
    /// `FAILED`.
    Failed,
    /// `TIMED_OUT`.
    TimedOut,
    /// `ALL`: FAILED and TIMED_OUT.
    All,
}

impl RetryFailureType {
    /// Reads the wire name (`FAILED`, `TIMED_OUT`, `ALL`; REJECTED is not retryable, J-19).
    pub fn from_wire(name: &str) -> Option<Self> {
        match name {
            "FAILED" => Some(Self::Failed),
            "TIMED_OUT" => Some(Self::TimedOut),
            "ALL" => Some(Self::All),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_wire(self) -> &'static str {
        match self {
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMED_OUT",
            Self::All => "ALL",
        }
    }
}

/// One retry criterion: `numberOfRetries` 0–10 for a failure type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryCriterion {
    /// `failureType`.
    pub failure_type: RetryFailureType,
    /// `numberOfRetries`.
    pub number_of_retries: u32,
}

/// `jobExecutionsRetryConfig` (J-18), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    criteria: Vec<RetryCriterion>,
}

impl RetryConfig {
    /// Validates 1–2 criteria, 0–10 retries each, distinct types, ≤ 10 combined (F-J10), and that
    /// a `TIMED_OUT` criterion with retries comes with an in-progress timeout. `ALL` is accepted
    /// without one: its FAILED retries are meaningful alone, and step timers can still time out.
    pub fn new(
        criteria: Vec<RetryCriterion>,
        timeout: &TimeoutConfig,
    ) -> Result<Self, ConfigError> {
        if !(1..=2).contains(&criteria.len()) {
            return Err(ConfigError::ListLength {
                field: "jobExecutionsRetryConfig.criteriaList",
                len: criteria.len(),
                min: 1,
                max: 2,
            });
        }
        let mut total = 0u32;
        for (i, c) in criteria.iter().enumerate() {
            check_range(
                "numberOfRetries",
                i64::from(c.number_of_retries),
                0,
                10,
                "J-18",
            )?;
            total += c.number_of_retries;
            if criteria[..i]
                .iter()
                .any(|o| o.failure_type == c.failure_type)
            {
                return Err(ConfigError::DuplicateRetryType(c.failure_type));
            }
            if c.failure_type == RetryFailureType::TimedOut
                && c.number_of_retries > 0
                && timeout.in_progress_timeout_minutes.is_none()
            {
                return Err(ConfigError::TimedOutRetryWithoutTimeout);
            }
        }
        if total > 10 {
            return Err(ConfigError::TooManyRetries(total));
        }
        Ok(Self { criteria })
    }

    /// The criteria.
    pub fn criteria(&self) -> &[RetryCriterion] {
        &self.criteria
    }

    fn budget(&self, ty: RetryFailureType) -> Option<u32> {
        self.criteria
            .iter()
            .find(|c| c.failure_type == ty)
            .map(|c| c.number_of_retries)
    }
}

/// How an execution attempt ended, as far as retries care (J-19).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExecutionFailure {
    /// The device reported FAILED.
    Failed,
    /// A timer expired.
    TimedOut,
    /// The device reported REJECTED: never retried.
    Rejected,
}

/// Retries already made for one execution, by the failure that caused each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryAttempts {
    /// Retries made after FAILED.
    pub after_failed: u32,
    /// Retries made after TIMED_OUT.
    pub after_timed_out: u32,
}

/// Whether an execution that just ended with `failure` may be retried (J-19, F-J10).
///
/// A specific criterion (`FAILED` / `TIMED_OUT`) budgets its own type's retries; `ALL` budgets the
/// retries of every type without a specific criterion. REJECTED is never retried.
pub fn retry_allowed(
    config: &RetryConfig,
    failure: ExecutionFailure,
    attempts: &RetryAttempts,
) -> bool {
    let ty = match failure {
        ExecutionFailure::Rejected => return false,
        ExecutionFailure::Failed => RetryFailureType::Failed,
        ExecutionFailure::TimedOut => RetryFailureType::TimedOut,
    };
    if let Some(budget) = config.budget(ty) {
        let used = match ty {
            RetryFailureType::TimedOut => attempts.after_timed_out,
            _ => attempts.after_failed,
        };
        return used < budget;
    }
    let Some(budget) = config.budget(RetryFailureType::All) else {
        return false;
    };
    let mut used = 0;
    if config.budget(RetryFailureType::Failed).is_none() {
        used += attempts.after_failed;
    }
    if config.budget(RetryFailureType::TimedOut).is_none() {
        used += attempts.after_timed_out;
    }
    used < budget
}

// ---------------------------------------------------------------------------------------------
// Scheduling
// ---------------------------------------------------------------------------------------------

/// `schedulingConfig.endBehavior`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EndBehavior {
    /// `STOP_ROLLOUT`: stop notifying; executions already created stay.
    #[default]
    StopRollout,
    /// `CANCEL`: cancel the job; QUEUED executions are canceled.
    Cancel,
    /// `FORCE_CANCEL`: cancel the job and its IN_PROGRESS executions too.
    ForceCancel,
}

impl EndBehavior {
    /// The wire name.
    pub fn as_wire(self) -> &'static str {
        match self {
            Self::StopRollout => "STOP_ROLLOUT",
            Self::Cancel => "CANCEL",
            Self::ForceCancel => "FORCE_CANCEL",
        }
    }

    /// Reads the wire name.
    pub fn from_wire(name: &str) -> Option<Self> {
        match name {
            "STOP_ROLLOUT" => Some(Self::StopRollout),
            "CANCEL" => Some(Self::Cancel),
            "FORCE_CANCEL" => Some(Self::ForceCancel),
            _ => None,
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// `t` plus `years` calendar years (F-J13); 29 February becomes 28 February in a common year.
pub fn add_calendar_years(t: UnixSeconds, years: u32) -> UnixSeconds {
    let t = i64::try_from(t).unwrap_or(i64::MAX / 2);
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let ny = y + i64::from(years);
    let nd = if m == 2 && d == 29 && !is_leap(ny) {
        28
    } else {
        d
    };
    let out = days_from_civil(ny, m, nd) * 86_400 + secs;
    u64::try_from(out).unwrap_or(0)
}

/// Reads a SchedulingConfig time `YYYY-MM-DDTHH:MM` (UTC) as unix seconds.
pub fn parse_schedule_time(text: &str) -> Result<UnixSeconds, ConfigError> {
    let bad = || ConfigError::ScheduleFormat(text.to_owned());
    let b = text.as_bytes();
    if b.len() != 16 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return Err(bad());
    }
    let num = |range: std::ops::Range<usize>| -> Result<u32, ConfigError> {
        let part = text.get(range).ok_or_else(bad)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse().map_err(|_| bad())
    };
    let (year, month, day, hour, minute) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
    );
    let year = i64::from(year);
    let month_len = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if year < 1970 || day == 0 || day > month_len || hour > 23 || minute > 59 {
        return Err(bad());
    }
    let secs = days_from_civil(year, month, day) * 86_400
        + i64::from(hour) * 3600
        + i64::from(minute) * 60;
    u64::try_from(secs).map_err(|_| bad())
}

/// Thirty minutes, the smallest lead and the shortest scheduled window.
pub const MIN_SCHEDULE_LEAD_SECONDS: u64 = 30 * 60;

/// `schedulingConfig` (times only; maintenance windows are not supported, see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedulingConfig {
    /// `startTime` as unix seconds.
    pub start: Option<UnixSeconds>,
    /// `endTime` as unix seconds.
    pub end: Option<UnixSeconds>,
    /// `endBehavior`.
    pub end_behavior: Option<EndBehavior>,
}

impl SchedulingConfig {
    /// Checks the §B.4 rules at job creation time `now`: start in [now + 30 min, now + 1 year];
    /// end in [now + 30 min, now + 2 years]; end − start in [30 min, 2 years] (calendar, F-J13).
    pub fn validate(&self, now: UnixSeconds) -> Result<(), ConfigError> {
        let lead = now.saturating_add(MIN_SCHEDULE_LEAD_SECONDS);
        if let Some(start) = self.start {
            if start < lead {
                return Err(ConfigError::Schedule(
                    "startTime must be at least 30 minutes from now",
                ));
            }
            if start > add_calendar_years(now, 1) {
                return Err(ConfigError::Schedule(
                    "startTime must be at most one year from now",
                ));
            }
        }
        if let Some(end) = self.end {
            if end < lead {
                return Err(ConfigError::Schedule(
                    "endTime must be at least 30 minutes from now",
                ));
            }
            if end > add_calendar_years(now, 2) {
                return Err(ConfigError::Schedule(
                    "endTime must be at most two years from now",
                ));
            }
            if let Some(start) = self.start {
                if end < start.saturating_add(MIN_SCHEDULE_LEAD_SECONDS) {
                    return Err(ConfigError::Schedule(
                        "endTime must be at least 30 minutes after startTime",
                    ));
                }
                if end > add_calendar_years(start, 2) {
                    return Err(ConfigError::Schedule(
                        "endTime must be at most two years after startTime",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(
        base: u32,
        tenths: u32,
        notified: Option<u32>,
        succeeded: Option<u32>,
    ) -> ExponentialRate {
        ExponentialRate::new(
            base,
            tenths,
            RateIncreaseCriteria {
                number_of_notified_things: notified,
                number_of_succeeded_things: succeeded,
            },
        )
        .expect("valid test config")
    }

    #[test]
    fn constant_rate_is_maximum_per_minute_and_defaults_to_1000() {
        let c = RolloutConfig::constant(250).unwrap();
        assert_eq!(rate_per_minute(&c, 0, 0), 250);
        assert_eq!(rate_per_minute(&c, 1_000_000, 5), 250);
        assert_eq!(rate_per_minute(&RolloutConfig::default(), 0, 0), 1000);
    }

    #[test]
    fn rejects_maximum_per_minute_outside_1_to_1000() {
        assert!(RolloutConfig::constant(0).is_err());
        assert!(RolloutConfig::constant(1001).is_err());
        assert!(RolloutConfig::constant(1).is_ok());
    }

    #[test]
    fn exponential_rate_follows_the_guide_notified_table() {
        let c = RolloutConfig::exponential(exp(50, 20, Some(1000), None), None).unwrap();
        for (notified, rate) in [
            (0, 50),
            (999, 50),
            (1000, 100),
            (2000, 200),
            (3000, 400),
            (3999, 400),
        ] {
            assert_eq!(
                rate_per_minute(&c, notified, 0),
                rate,
                "notified {notified}"
            );
        }
    }

    #[test]
    fn exponential_rate_follows_the_guide_succeeded_example_capped_at_max() {
        let c = RolloutConfig::exponential(exp(50, 20, None, Some(100)), Some(1000)).unwrap();
        for (succeeded, rate) in [
            (0, 50),
            (99, 50),
            (100, 100),
            (199, 100),
            (200, 200),
            (300, 400),
            (400, 800),
            (499, 800),
            (500, 1000),
            (10_000_000, 1000),
        ] {
            assert_eq!(
                rate_per_minute(&c, 0, succeeded),
                rate,
                "succeeded {succeeded}"
            );
        }
    }

    #[test]
    fn combined_criteria_take_the_larger_step_count() {
        let c = RolloutConfig::exponential(exp(10, 20, Some(100), Some(10)), None).unwrap();
        assert_eq!(rate_per_minute(&c, 250, 5), 40); // notified: 2 steps
        assert_eq!(rate_per_minute(&c, 50, 30), 80); // succeeded: 3 steps
    }

    #[test]
    fn fractional_factor_is_applied_exactly_then_floored_once() {
        // 10 × 1.5^3 = 33.75 → 33 (per-step flooring would give 10, 15, 22, 33 — same here);
        // 7 × 1.1^2 = 8.47 → 8, where per-step flooring gives 7 → 7 → 7.
        let c = RolloutConfig::exponential(exp(10, 15, Some(1), None), None).unwrap();
        assert_eq!(rate_per_minute(&c, 3, 0), 33);
        let c = RolloutConfig::exponential(exp(7, 11, Some(1), None), None).unwrap();
        assert_eq!(rate_per_minute(&c, 1, 0), 7);
        assert_eq!(rate_per_minute(&c, 2, 0), 8);
        // 1 × 1.1^k first reaches 1000 at k = 73.
        let c = RolloutConfig::exponential(exp(1, 11, Some(1), None), None).unwrap();
        assert_eq!(rate_per_minute(&c, 72, 0), 955);
        assert_eq!(rate_per_minute(&c, 73, 0), 1000);
        assert_eq!(rate_per_minute(&c, u64::MAX, 0), 1000);
    }

    #[test]
    fn rejects_exponential_configs_outside_aws_ranges() {
        let crit = RateIncreaseCriteria {
            number_of_notified_things: Some(1),
            number_of_succeeded_things: None,
        };
        assert!(ExponentialRate::new(0, 20, crit).is_err());
        assert!(ExponentialRate::new(1001, 20, crit).is_err());
        assert!(ExponentialRate::new(10, 10, crit).is_err());
        assert!(ExponentialRate::new(10, 51, crit).is_err());
        assert!(ExponentialRate::with_factor(10, 1.15, crit).is_err());
        assert_eq!(
            ExponentialRate::with_factor(10, 1.1, crit)
                .unwrap()
                .increment_factor_tenths(),
            11
        );
        assert_eq!(
            ExponentialRate::new(10, 20, RateIncreaseCriteria::default()),
            Err(ConfigError::NoRateIncreaseCriterion)
        );
        let zero = RateIncreaseCriteria {
            number_of_notified_things: Some(0),
            number_of_succeeded_things: None,
        };
        assert!(ExponentialRate::new(10, 20, zero).is_err());
    }

    fn guide_abort() -> AbortConfig {
        AbortConfig::new(vec![
            AbortCriterion::new(
                AbortFailureType::Failed,
                Percentage::from_f64(20.0).unwrap(),
                100,
            )
            .unwrap(),
            AbortCriterion::new(
                AbortFailureType::TimedOut,
                Percentage::from_f64(50.0).unwrap(),
                200,
            )
            .unwrap(),
        ])
        .unwrap()
    }

    #[test]
    fn abort_fires_on_the_guide_examples() {
        let c = guide_abort();
        let counts = |succeeded, failed, timed_out| OutcomeCounts {
            succeeded,
            failed,
            rejected: 0,
            timed_out,
        };
        assert_eq!(should_abort(&c, &counts(80, 20, 0)), Some(0));
        assert_eq!(should_abort(&c, &counts(81, 19, 0)), None);
        assert_eq!(should_abort(&c, &counts(60, 0, 90)), None);
        assert_eq!(should_abort(&c, &counts(90, 10, 100)), Some(1));
    }

    #[test]
    fn abort_waits_for_min_completed_executions() {
        let c = guide_abort();
        let all_failed = OutcomeCounts {
            failed: 99,
            ..OutcomeCounts::default()
        };
        assert_eq!(should_abort(&c, &all_failed), None);
    }

    #[test]
    fn abort_threshold_with_two_decimals_compares_exactly() {
        let c = AbortConfig::new(vec![
            AbortCriterion::new(
                AbortFailureType::All,
                Percentage::from_f64(33.33).unwrap(),
                1,
            )
            .unwrap(),
        ])
        .unwrap();
        // 3333 / 10000 = 33.33 % exactly: fires; 3332 does not.
        let at = |failed: u64| OutcomeCounts {
            succeeded: 10_000 - failed,
            failed: failed - 1,
            rejected: 1,
            timed_out: 0,
        };
        assert_eq!(should_abort(&c, &at(3333)), Some(0));
        assert_eq!(should_abort(&c, &at(3332)), None);
        assert!(Percentage::from_f64(20.001).is_err());
        assert!(Percentage::from_f64(100.01).is_err());
        assert!(AbortConfig::new(vec![]).is_err());
        assert!(
            AbortCriterion::new(
                AbortFailureType::All,
                Percentage::from_hundredths(1).unwrap(),
                0
            )
            .is_err()
        );
    }

    fn at(h: u64, m: u64) -> UnixSeconds {
        h * 3600 + m * 60
    }

    #[test]
    fn step_timers_follow_the_guide_example() {
        let cfg = TimeoutConfig::new(Some(20)).unwrap();
        let mut t = ExecutionTimer::start(&cfg, at(12, 0), StepTimeout::Keep);
        assert_eq!(t.deadline(), Some(at(12, 20)));
        t.update_step(at(12, 5), StepTimeout::Minutes(7));
        assert_eq!(t.deadline(), Some(at(12, 12)));
        t.update_step(at(12, 10), StepTimeout::Minutes(5));
        assert_eq!(t.deadline(), Some(at(12, 15)));
        t.update_step(at(12, 13), StepTimeout::Minutes(9));
        assert_eq!(t.deadline(), Some(at(12, 20)));
        assert_eq!(
            t.approximate_seconds_before_timed_out(at(12, 13)),
            Some(420)
        );
        assert!(!t.is_expired(at(12, 20) - 1));
        assert!(t.is_expired(at(12, 20)));
    }

    #[test]
    fn discarding_a_step_timer_leaves_the_in_progress_bound() {
        let cfg = TimeoutConfig::new(Some(20)).unwrap();
        let mut t = ExecutionTimer::start(&cfg, at(12, 0), StepTimeout::Minutes(3));
        assert_eq!(t.deadline(), Some(at(12, 3)));
        t.update_step(at(12, 1), StepTimeout::from_wire(Some(-1)).unwrap());
        assert_eq!(t.deadline(), Some(at(12, 20)));
        let none = ExecutionTimer::start(&TimeoutConfig::default(), 0, StepTimeout::Keep);
        assert_eq!(none.approximate_seconds_before_timed_out(0), None);
        assert!(!none.is_expired(u64::MAX));
    }

    #[test]
    fn rejects_timeouts_outside_1_to_10080_minutes() {
        assert!(TimeoutConfig::new(Some(0)).is_err());
        assert!(TimeoutConfig::new(Some(10_081)).is_err());
        assert!(StepTimeout::from_wire(Some(0)).is_err());
        assert!(StepTimeout::from_wire(Some(-2)).is_err());
        assert_eq!(
            StepTimeout::from_wire(Some(10_080)),
            Ok(StepTimeout::Minutes(10_080))
        );
        assert_eq!(StepTimeout::from_wire(None), Ok(StepTimeout::Keep));
    }

    fn retry(criteria: &[(RetryFailureType, u32)]) -> Result<RetryConfig, ConfigError> {
        let timeout = TimeoutConfig::new(Some(10)).unwrap();
        RetryConfig::new(
            criteria
                .iter()
                .map(|&(failure_type, number_of_retries)| RetryCriterion {
                    failure_type,
                    number_of_retries,
                })
                .collect(),
            &timeout,
        )
    }

    #[test]
    fn retry_budgets_are_per_failure_type_and_rejected_is_never_retried() {
        use ExecutionFailure::*;
        use RetryFailureType as T;
        let c = retry(&[(T::Failed, 2), (T::TimedOut, 1)]).unwrap();
        let a = |after_failed, after_timed_out| RetryAttempts {
            after_failed,
            after_timed_out,
        };
        assert!(retry_allowed(&c, Failed, &a(1, 1)));
        assert!(!retry_allowed(&c, Failed, &a(2, 0)));
        assert!(retry_allowed(&c, TimedOut, &a(2, 0)));
        assert!(!retry_allowed(&c, TimedOut, &a(0, 1)));
        assert!(!retry_allowed(&c, Rejected, &a(0, 0)));
        let only_failed = retry(&[(T::Failed, 3)]).unwrap();
        assert!(!retry_allowed(&only_failed, TimedOut, &a(0, 0)));
    }

    #[test]
    fn all_criterion_budgets_the_types_without_their_own_criterion() {
        use ExecutionFailure::*;
        use RetryFailureType as T;
        let all = retry(&[(T::All, 3)]).unwrap();
        let a = |after_failed, after_timed_out| RetryAttempts {
            after_failed,
            after_timed_out,
        };
        assert!(retry_allowed(&all, TimedOut, &a(1, 1)));
        assert!(!retry_allowed(&all, Failed, &a(2, 1)));
        let mixed = retry(&[(T::Failed, 1), (T::All, 2)]).unwrap();
        assert!(retry_allowed(&mixed, TimedOut, &a(1, 1)));
        assert!(!retry_allowed(&mixed, TimedOut, &a(0, 2)));
        assert!(!retry_allowed(&mixed, Failed, &a(1, 0)));
    }

    #[test]
    fn rejects_retry_configs_outside_j18() {
        use RetryFailureType as T;
        assert!(matches!(retry(&[]), Err(ConfigError::ListLength { .. })));
        assert!(retry(&[(T::Failed, 1), (T::TimedOut, 1), (T::All, 1)]).is_err());
        assert!(retry(&[(T::Failed, 11)]).is_err());
        assert_eq!(
            retry(&[(T::Failed, 6), (T::TimedOut, 5)]),
            Err(ConfigError::TooManyRetries(11))
        );
        assert_eq!(
            retry(&[(T::Failed, 1), (T::Failed, 1)]),
            Err(ConfigError::DuplicateRetryType(T::Failed))
        );
        assert!(retry(&[(T::Failed, 6), (T::TimedOut, 4)]).is_ok());
        let no_timeout = RetryConfig::new(
            vec![RetryCriterion {
                failure_type: T::TimedOut,
                number_of_retries: 1,
            }],
            &TimeoutConfig::default(),
        );
        assert_eq!(no_timeout, Err(ConfigError::TimedOutRetryWithoutTimeout));
        let all_without_timeout = RetryConfig::new(
            vec![RetryCriterion {
                failure_type: T::All,
                number_of_retries: 2,
            }],
            &TimeoutConfig::default(),
        );
        assert!(all_without_timeout.is_ok());
    }

    #[test]
    fn parses_schedule_times_and_rejects_malformed_ones() {
        assert_eq!(parse_schedule_time("1970-01-01T00:01"), Ok(60));
        assert_eq!(parse_schedule_time("2024-02-29T12:30"), Ok(1_709_209_800));
        for bad in [
            "2023-02-29T12:30",
            "2024-13-01T00:00",
            "2024-01-01T24:00",
            "2024-01-01 00:00",
            "2024-1-01T00:00",
            "",
            "2024-01-01T00:0é",
        ] {
            assert!(parse_schedule_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn schedule_years_are_calendar_years() {
        let t = parse_schedule_time("2024-02-29T12:30").unwrap();
        assert_eq!(
            add_calendar_years(t, 1),
            parse_schedule_time("2025-02-28T12:30").unwrap()
        );
        assert_eq!(
            add_calendar_years(t, 4),
            parse_schedule_time("2028-02-29T12:30").unwrap()
        );
        let t = parse_schedule_time("2023-03-01T00:00").unwrap();
        assert_eq!(
            add_calendar_years(t, 1),
            parse_schedule_time("2024-03-01T00:00").unwrap()
        );
    }

    #[test]
    fn schedule_validation_applies_lead_and_span_rules() {
        let now = parse_schedule_time("2025-06-01T12:00").unwrap();
        let p = |s: &str| parse_schedule_time(s).unwrap();
        let cfg = |start: Option<&str>, end: Option<&str>| SchedulingConfig {
            start: start.map(p),
            end: end.map(p),
            end_behavior: None,
        };
        assert!(
            cfg(Some("2025-06-01T12:30"), Some("2025-06-01T13:00"))
                .validate(now)
                .is_ok()
        );
        assert!(cfg(Some("2025-06-01T12:29"), None).validate(now).is_err());
        assert!(cfg(Some("2026-06-01T12:00"), None).validate(now).is_ok());
        assert!(cfg(Some("2026-06-01T12:01"), None).validate(now).is_err());
        assert!(cfg(None, Some("2027-06-01T12:00")).validate(now).is_ok());
        assert!(cfg(None, Some("2027-06-01T12:01")).validate(now).is_err());
        assert!(
            cfg(Some("2025-06-01T13:00"), Some("2025-06-01T13:29"))
                .validate(now)
                .is_err()
        );
        assert!(
            cfg(Some("2025-07-01T12:00"), Some("2027-06-01T12:00"))
                .validate(now)
                .is_ok()
        );
        assert_eq!(
            EndBehavior::from_wire("FORCE_CANCEL"),
            Some(EndBehavior::ForceCancel)
        );
        assert_eq!(EndBehavior::from_wire("force_cancel"), None);
        for b in [
            EndBehavior::StopRollout,
            EndBehavior::Cancel,
            EndBehavior::ForceCancel,
        ] {
            assert_eq!(EndBehavior::from_wire(b.as_wire()), Some(b));
        }
    }

    #[test]
    fn failure_type_wire_names_round_trip_and_rejected_is_not_retryable() {
        use AbortFailureType as A;
        for t in [A::Failed, A::Rejected, A::TimedOut, A::All] {
            assert_eq!(A::from_wire(t.as_wire()), Some(t));
        }
        use RetryFailureType as R;
        for t in [R::Failed, R::TimedOut, R::All] {
            assert_eq!(R::from_wire(t.as_wire()), Some(t));
        }
        assert_eq!(R::from_wire("REJECTED"), None);
        assert_eq!(A::from_wire("failed"), None);
    }
}
