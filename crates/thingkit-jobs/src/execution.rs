//! [`JobExecution`]: a job on one thing, and the exact state machine of digest B.2 (rules J-01 …
//! J-06) in [`check_transition`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::job::JobId;
use crate::rollout::{ExecutionTimer, StepTimeout, TimeoutConfig};

/// Most statusDetails pairs (F-J7: CancelJobExecution's "at most 10").
pub const MAX_STATUS_DETAILS: usize = 10;
/// Longest statusDetails key.
pub const MAX_STATUS_DETAILS_KEY: usize = 128;
/// Longest statusDetails value in characters.
pub const MAX_STATUS_DETAILS_VALUE: usize = 1024;
/// Longest step timeout in minutes (the in-progress bound's maximum).
pub const MAX_STEP_TIMEOUT_MINUTES: i64 = crate::rollout::MAX_TIMEOUT_MINUTES as i64;

/// The eight execution states (JLC23).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    /// Waiting for the device.
    Queued,
    /// The device is working on it.
    InProgress,
    /// Done (device; terminal).
    Succeeded,
    /// Failed (device; terminal, retryable).
    Failed,
    /// A timer expired (service; terminal, retryable).
    TimedOut,
    /// The device refused it before starting (device; terminal).
    Rejected,
    /// The thing left the target group (service; terminal).
    Removed,
    /// Canceled (service; terminal).
    Canceled,
}

impl ExecutionStatus {
    /// All eight, in declaration order.
    pub const ALL: [ExecutionStatus; 8] = [
        ExecutionStatus::Queued,
        ExecutionStatus::InProgress,
        ExecutionStatus::Succeeded,
        ExecutionStatus::Failed,
        ExecutionStatus::TimedOut,
        ExecutionStatus::Rejected,
        ExecutionStatus::Removed,
        ExecutionStatus::Canceled,
    ];

    /// AWS's name, e.g. `IN_PROGRESS`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Queued => "QUEUED",
            ExecutionStatus::InProgress => "IN_PROGRESS",
            ExecutionStatus::Succeeded => "SUCCEEDED",
            ExecutionStatus::Failed => "FAILED",
            ExecutionStatus::TimedOut => "TIMED_OUT",
            ExecutionStatus::Rejected => "REJECTED",
            ExecutionStatus::Removed => "REMOVED",
            ExecutionStatus::Canceled => "CANCELED",
        }
    }

    /// Reads AWS's name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Everything but QUEUED and IN_PROGRESS.
    pub fn is_terminal(self) -> bool {
        !matches!(self, ExecutionStatus::Queued | ExecutionStatus::InProgress)
    }

    /// Whether a device may request this status (J-03).
    pub fn is_device_settable(self) -> bool {
        matches!(
            self,
            ExecutionStatus::InProgress
                | ExecutionStatus::Succeeded
                | ExecutionStatus::Failed
                | ExecutionStatus::Rejected
        )
    }
}

/// Who asks for a status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The device, over MQTT (UpdateJobExecution, StartNextPendingJobExecution).
    Device,
    /// The service: cancel, removal from the group, timers.
    Service {
        /// CancelJob / CancelJobExecution with `force=true`.
        force: bool,
    },
}

/// Whether `actor` may move an execution from `from` to `to` (J-01 … J-06):
///
/// - a device may request only IN_PROGRESS, SUCCEEDED, FAILED, REJECTED (J-03; anything else is
///   `InvalidRequest`, F-J5);
/// - terminal states are final (J-02);
/// - QUEUED → IN_PROGRESS, SUCCEEDED, FAILED, REJECTED (J-01, F-J4, J-05);
///   IN_PROGRESS → IN_PROGRESS, SUCCEEDED, FAILED (J-04); REJECTED only from QUEUED (J-05);
/// - the service: QUEUED → CANCELED or REMOVED; IN_PROGRESS → CANCELED only when forced;
///   IN_PROGRESS → TIMED_OUT (J-06). Nothing else.
///
/// # Errors
///
/// [`Error::InvalidRequest`] for a status a device may not set, otherwise
/// [`Error::InvalidStateTransition`].
pub fn check_transition(
    from: ExecutionStatus,
    to: ExecutionStatus,
    actor: Actor,
) -> Result<(), Error> {
    use ExecutionStatus::*;
    let allowed = match actor {
        Actor::Device => {
            if !to.is_device_settable() {
                return Err(Error::request(format!(
                    "status {} cannot be set by a device",
                    to.as_str()
                )));
            }
            matches!(
                (from, to),
                (Queued, InProgress | Succeeded | Failed | Rejected)
                    | (InProgress, InProgress | Succeeded | Failed)
            )
        }
        Actor::Service { force } => {
            matches!(
                (from, to),
                (Queued, Canceled | Removed) | (InProgress, TimedOut)
            ) || (force && from == InProgress && to == Canceled)
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(Error::InvalidStateTransition {
            from: from.as_str(),
            to: to.as_str(),
        })
    }
}

/// Checks statusDetails (F-J7): at most 10 pairs, keys 1–128 of `[a-zA-Z0-9:_-]`, values
/// 1–1024 characters without control characters.
///
/// # Errors
///
/// [`Error::InvalidRequest`] naming the rule.
pub fn check_status_details(details: &BTreeMap<String, String>) -> Result<(), Error> {
    if details.len() > MAX_STATUS_DETAILS {
        return Err(Error::request(format!(
            "statusDetails may have at most {MAX_STATUS_DETAILS} pairs"
        )));
    }
    for (k, v) in details {
        if k.is_empty()
            || k.len() > MAX_STATUS_DETAILS_KEY
            || !k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
        {
            return Err(Error::request(format!(
                "statusDetails key \"{k}\" must be 1 to {MAX_STATUS_DETAILS_KEY} characters of [a-zA-Z0-9:_-]"
            )));
        }
        if v.is_empty()
            || v.chars().count() > MAX_STATUS_DETAILS_VALUE
            || v.chars().any(char::is_control)
        {
            return Err(Error::request(format!(
                "statusDetails value of \"{k}\" must be 1 to {MAX_STATUS_DETAILS_VALUE} characters without control characters"
            )));
        }
    }
    Ok(())
}

/// A job on one thing (JMH23 JobExecution).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecution {
    /// The job.
    pub job_id: JobId,
    /// The thing.
    pub thing_name: String,
    /// The status.
    pub status: ExecutionStatus,
    /// Name/value pairs set by the device.
    pub status_details: BTreeMap<String, String>,
    /// When it was queued (Unix seconds).
    pub queued_at: u64,
    /// When it first became IN_PROGRESS.
    pub started_at: Option<u64>,
    /// Last change.
    pub last_updated_at: u64,
    /// 1 when queued (F-J2), +1 per accepted change.
    pub version_number: u64,
    /// Identifies this execution of the job on the thing.
    pub execution_number: u64,
    /// The job's `inProgressTimeoutInMinutes`, copied when queued.
    pub in_progress_timeout_minutes: Option<u32>,
    /// Absolute bound of the in-progress timer, set when it starts (J-15).
    pub in_progress_deadline: Option<u64>,
    /// When the execution times out: the step timer or the in-progress bound, whichever is
    /// earlier (J-17); `None` without timers or once terminal.
    pub timeout_at: Option<u64>,
    /// Retries already made after FAILED attempts (J-19); carried into the next attempt.
    #[serde(default)]
    pub retries_after_failed: u32,
    /// Retries already made after TIMED_OUT attempts (J-19).
    #[serde(default)]
    pub retries_after_timed_out: u32,
}

/// A device's requested change (UpdateJobExecution, or StartNext with status IN_PROGRESS).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceUpdate {
    /// The requested status.
    pub status: Option<ExecutionStatus>,
    /// Replaces the statusDetails when present (F-J6).
    pub status_details: Option<BTreeMap<String, String>>,
    /// Must equal `versionNumber` when present.
    pub expected_version: Option<u64>,
    /// Must equal `executionNumber` when present.
    pub execution_number: Option<u64>,
    /// New step timer in minutes; `-1` discards it (J-17).
    pub step_timeout_minutes: Option<i64>,
}

impl JobExecution {
    /// A QUEUED execution of `job_id` on `thing`, version 1 (F-J2).
    pub fn queued(
        job_id: JobId,
        thing: impl Into<String>,
        execution_number: u64,
        in_progress_timeout_minutes: Option<u32>,
        now: u64,
    ) -> Self {
        JobExecution {
            job_id,
            thing_name: thing.into(),
            status: ExecutionStatus::Queued,
            status_details: BTreeMap::new(),
            queued_at: now,
            started_at: None,
            last_updated_at: now,
            version_number: 1,
            execution_number,
            in_progress_timeout_minutes,
            in_progress_deadline: None,
            timeout_at: None,
            retries_after_failed: 0,
            retries_after_timed_out: 0,
        }
    }

    /// Seconds until the timeout at `now` (`approximateSecondsBeforeTimedOut`), when a timer runs.
    pub fn seconds_before_timed_out(&self, now: u64) -> Option<u64> {
        self.timeout_at.map(|t| t.saturating_sub(now))
    }

    /// The execution after a device's update at `now`, or why it is refused. Checks, in order:
    /// the status is present and device-settable, statusDetails and step timeout are valid,
    /// `executionNumber` matches, `expectedVersion` matches (VersionMismatch), the transition
    /// is allowed. On success the version grows by one.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`], [`Error::VersionMismatch`],
    /// [`Error::InvalidStateTransition`].
    pub fn apply_device_update(&self, update: &DeviceUpdate, now: u64) -> Result<Self, Error> {
        let to = update
            .status
            .ok_or_else(|| Error::request("status is required"))?;
        if let Some(d) = &update.status_details {
            check_status_details(d)?;
        }
        let step = StepTimeout::from_wire(update.step_timeout_minutes)
            .map_err(|e| Error::request(e.to_string()))?;
        if let Some(n) = update.execution_number
            && n != self.execution_number
        {
            return Err(Error::ResourceNotFound {
                detail: format!(
                    "Job execution {n} of job {} not found for thing {}",
                    self.job_id, self.thing_name
                ),
            });
        }
        if let Some(expected) = update.expected_version
            && expected != self.version_number
        {
            return Err(Error::VersionMismatch {
                expected,
                current: self.version_number,
            });
        }
        check_transition(self.status, to, Actor::Device)?;
        let mut next = self.clone();
        next.status = to;
        if let Some(d) = &update.status_details {
            next.status_details = d.clone();
        }
        next.version_number += 1;
        next.last_updated_at = now;
        if to == ExecutionStatus::InProgress {
            // The timer arithmetic (J-15, J-17) is `rollout::ExecutionTimer`'s; the execution
            // stores its in-progress bound and the deadline it gives.
            let timer = if self.status == ExecutionStatus::Queued {
                next.started_at = Some(now);
                let config = TimeoutConfig::new(self.in_progress_timeout_minutes)
                    .map_err(|e| Error::request(e.to_string()))?;
                ExecutionTimer::start(&config, now, step)
            } else {
                let step_deadline = self
                    .timeout_at
                    .filter(|t| Some(*t) != self.in_progress_deadline);
                let mut timer = ExecutionTimer::resume(self.in_progress_deadline, step_deadline);
                timer.update_step(now, step);
                timer
            };
            next.in_progress_deadline = timer.in_progress_deadline();
            next.timeout_at = timer.deadline();
        } else {
            next.timeout_at = None;
        }
        Ok(next)
    }

    /// The execution after the service moves it to `to` at `now` (cancel, removal, timeout).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidStateTransition`] when J-06 does not allow it.
    pub fn apply_service(&self, to: ExecutionStatus, force: bool, now: u64) -> Result<Self, Error> {
        check_transition(self.status, to, Actor::Service { force })?;
        let mut next = self.clone();
        next.status = to;
        next.version_number += 1;
        next.last_updated_at = now;
        next.timeout_at = None;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::ExecutionStatus::*;
    use super::*;

    /// The expected outcome of every (from, to, actor) pair: `Ok`, `Req` (InvalidRequest) or
    /// `Bad` (InvalidStateTransition).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Want {
        Ok,
        Req,
        Bad,
    }

    fn expected(from: ExecutionStatus, to: ExecutionStatus, actor: Actor) -> Want {
        match actor {
            Actor::Device => match to {
                Queued | TimedOut | Removed | Canceled => Want::Req,
                _ => match (from, to) {
                    (Queued, _) => Want::Ok,
                    (InProgress, Rejected) => Want::Bad,
                    (InProgress, _) => Want::Ok,
                    _ => Want::Bad,
                },
            },
            Actor::Service { force } => match (from, to) {
                (Queued, Canceled | Removed) | (InProgress, TimedOut) => Want::Ok,
                (InProgress, Canceled) if force => Want::Ok,
                _ => Want::Bad,
            },
        }
    }

    #[test]
    fn every_transition_for_every_actor_follows_j01_to_j06() {
        let table: &[(ExecutionStatus, ExecutionStatus, Actor, Want)] = &[
            // Device from QUEUED (J-01, F-J4, J-05, F-J5).
            (Queued, Queued, Actor::Device, Want::Req),
            (Queued, InProgress, Actor::Device, Want::Ok),
            (Queued, Succeeded, Actor::Device, Want::Ok),
            (Queued, Failed, Actor::Device, Want::Ok),
            (Queued, TimedOut, Actor::Device, Want::Req),
            (Queued, Rejected, Actor::Device, Want::Ok),
            (Queued, Removed, Actor::Device, Want::Req),
            (Queued, Canceled, Actor::Device, Want::Req),
            // Device from IN_PROGRESS (J-04, J-05).
            (InProgress, Queued, Actor::Device, Want::Req),
            (InProgress, InProgress, Actor::Device, Want::Ok),
            (InProgress, Succeeded, Actor::Device, Want::Ok),
            (InProgress, Failed, Actor::Device, Want::Ok),
            (InProgress, TimedOut, Actor::Device, Want::Req),
            (InProgress, Rejected, Actor::Device, Want::Bad),
            (InProgress, Removed, Actor::Device, Want::Req),
            (InProgress, Canceled, Actor::Device, Want::Req),
            // Device from a terminal state (J-02).
            (Succeeded, InProgress, Actor::Device, Want::Bad),
            (Failed, Succeeded, Actor::Device, Want::Bad),
            (Rejected, InProgress, Actor::Device, Want::Bad),
            (Canceled, Failed, Actor::Device, Want::Bad),
            // Service (J-06).
            (Queued, Canceled, Actor::Service { force: false }, Want::Ok),
            (Queued, Removed, Actor::Service { force: false }, Want::Ok),
            (Queued, TimedOut, Actor::Service { force: false }, Want::Bad),
            (
                InProgress,
                Canceled,
                Actor::Service { force: false },
                Want::Bad,
            ),
            (
                InProgress,
                Canceled,
                Actor::Service { force: true },
                Want::Ok,
            ),
            (
                InProgress,
                TimedOut,
                Actor::Service { force: false },
                Want::Ok,
            ),
            (
                InProgress,
                Removed,
                Actor::Service { force: true },
                Want::Bad,
            ),
            (
                Succeeded,
                Canceled,
                Actor::Service { force: true },
                Want::Bad,
            ),
        ];
        for &(from, to, actor, want) in table {
            assert_eq!(
                expected(from, to, actor),
                want,
                "table row {from:?}->{to:?} {actor:?}"
            );
        }
        // Every one of the 8 × 8 × 3 pairs.
        let actors = [
            Actor::Device,
            Actor::Service { force: false },
            Actor::Service { force: true },
        ];
        let mut checked = 0;
        for from in ExecutionStatus::ALL {
            for to in ExecutionStatus::ALL {
                for actor in actors {
                    let got = match check_transition(from, to, actor) {
                        Ok(()) => Want::Ok,
                        Err(Error::InvalidRequest { .. }) => Want::Req,
                        Err(Error::InvalidStateTransition { .. }) => Want::Bad,
                        Err(e) => panic!("unexpected {e:?}"),
                    };
                    assert_eq!(got, expected(from, to, actor), "{from:?}->{to:?} {actor:?}");
                    if from.is_terminal() {
                        assert_ne!(got, Want::Ok, "terminal {from:?} left");
                    }
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 192);
    }

    fn exec() -> JobExecution {
        JobExecution::queued(JobId::new("j").expect("valid"), "t", 1, Some(20), 1000)
    }

    #[test]
    fn status_details_are_replaced_not_merged() {
        let mut d = BTreeMap::new();
        d.insert("a".to_owned(), "1".to_owned());
        let e = exec()
            .apply_device_update(
                &DeviceUpdate {
                    status: Some(InProgress),
                    status_details: Some(d),
                    ..Default::default()
                },
                1001,
            )
            .expect("start");
        let mut d2 = BTreeMap::new();
        d2.insert("b".to_owned(), "2".to_owned());
        let e2 = e
            .apply_device_update(
                &DeviceUpdate {
                    status: Some(InProgress),
                    status_details: Some(d2.clone()),
                    ..Default::default()
                },
                1002,
            )
            .expect("progress");
        assert_eq!(e2.status_details, d2);
        let e3 = e2
            .apply_device_update(
                &DeviceUpdate {
                    status: Some(InProgress),
                    ..Default::default()
                },
                1003,
            )
            .expect("unchanged details");
        assert_eq!(e3.status_details, d2);
        assert_eq!(e3.version_number, 4);
    }

    #[test]
    fn expected_version_mismatch_is_refused() {
        let e = exec().apply_device_update(
            &DeviceUpdate {
                status: Some(InProgress),
                expected_version: Some(2),
                ..Default::default()
            },
            1,
        );
        assert_eq!(
            e,
            Err(Error::VersionMismatch {
                expected: 2,
                current: 1
            })
        );
    }

    #[test]
    fn step_timers_follow_the_documented_example() {
        // 20-minute job timer from 12:00; step 7 at 12:05 → 12:12; 5 at 12:10 → 12:15;
        // 9 at 12:13 → 12:20 (capped by the in-progress bound).
        let t0 = 12 * 3600;
        let e = exec()
            .apply_device_update(
                &DeviceUpdate {
                    status: Some(InProgress),
                    ..Default::default()
                },
                t0,
            )
            .expect("start");
        assert_eq!(e.timeout_at, Some(t0 + 20 * 60));
        let step = |e: &JobExecution, at: u64, m: i64| {
            e.apply_device_update(
                &DeviceUpdate {
                    status: Some(InProgress),
                    step_timeout_minutes: Some(m),
                    ..Default::default()
                },
                t0 + at * 60,
            )
            .expect("step")
        };
        let e = step(&e, 5, 7);
        assert_eq!(e.timeout_at, Some(t0 + 12 * 60));
        let e = step(&e, 10, 5);
        assert_eq!(e.timeout_at, Some(t0 + 15 * 60));
        let e = step(&e, 13, 9);
        assert_eq!(e.timeout_at, Some(t0 + 20 * 60));
        assert_eq!(e.seconds_before_timed_out(t0 + 19 * 60), Some(60));
    }

    #[test]
    fn status_details_limits_are_enforced() {
        let many: BTreeMap<String, String> =
            (0..11).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        assert!(check_status_details(&many).is_err());
        let bad_key: BTreeMap<String, String> = [("a b".to_owned(), "v".to_owned())].into();
        assert!(check_status_details(&bad_key).is_err());
        let ctrl: BTreeMap<String, String> = [("a".to_owned(), "x\ny".to_owned())].into();
        assert!(check_status_details(&ctrl).is_err());
        let ok: BTreeMap<String, String> = [("step:1".to_owned(), "é".repeat(1024))].into();
        assert!(check_status_details(&ok).is_ok());
    }
}
